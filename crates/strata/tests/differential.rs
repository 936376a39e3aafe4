//! Differential tests against the reference docker engine (started by
//! ../shared/peers/setup.sh). Skipped, with a message, when no docker answers.

mod common;

use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;


struct DockerTag(String);
impl Drop for DockerTag {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.0]);
    }
}

#[test]
fn docker_save_loads_into_strata_and_back() {
    if !reference_docker() {
        eprintln!("skipped: the reference docker is not running (sh ../shared/peers/setup.sh docker)");
        return;
    }
    let tag = format!("strata-diff-a:{}", std::process::id());
    let _guard = DockerTag(tag.clone());
    let did = docker_ok(&["import", "-c", r#"CMD ["sh"]"#, "-c", "ENV A=1", busybox_tar().to_str().unwrap(), &tag]).trim().to_string();
    let archive = Command::new("docker").args(["save", &tag]).output().unwrap();
    assert!(archive.status.success());

    let s = Strata::new();
    let out = s.run_stdin(&["load"], &archive.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), format!("Loaded image: {tag}"));
    let theirs: Value = serde_json::from_str(&docker_ok(&["image", "inspect", &tag])).unwrap();
    let ours: Value = serde_json::from_str(&s.ok(&["image", "inspect", &tag])).unwrap();
    let (t, o) = (&theirs[0], &ours[0]);
    assert_eq!(o["Id"], did.as_str());
    for k in ["Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "DockerVersion", "Author", "Architecture", "Os", "Size", "RootFS"] {
        assert_eq!(o[k], t[k], "field {k}");
    }
    for k in ["Cmd", "Env", "Entrypoint", "User", "WorkingDir", "Labels", "Volumes", "OnBuild"] {
        assert_eq!(o["Config"][k], t["Config"][k], "Config.{k}");
    }
    // Same keys in the same order, less what API 1.44+ removed.
    let tk: Vec<&String> = t.as_object().unwrap().keys().filter(|k| !["Container", "ContainerConfig", "VirtualSize"].contains(&k.as_str())).collect();
    let ok: Vec<&String> = o.as_object().unwrap().keys().collect();
    assert_eq!(ok, tk);
    // The table line is the same but for the CREATED column's clock.
    let fmt = "{{.Repository}} {{.Tag}} {{.ID}} {{.Size}}";
    assert_eq!(s.ok(&["images", "--format", fmt, &tag]), docker_ok(&["images", "--format", fmt, &tag]));
    let hist = "{{.ID}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}";
    assert_eq!(s.ok(&["history", "--format", hist, &tag]), docker_ok(&["history", "--format", hist, &tag]));

    // And back: strata's archive loads into docker with the same id.
    let tag2 = format!("strata-diff-b:{}", std::process::id());
    let _guard2 = DockerTag(tag2.clone());
    s.ok(&["tag", &tag, &tag2]);
    let ours = s.cmd(&["save", &tag2]).output().unwrap();
    assert!(ours.status.success());
    let _ = docker(&["rmi", "-f", &tag]);
    let mut child = Command::new("docker").arg("load").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &ours.stdout).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "docker load: {}", stderr(&out));
    assert!(stdout(&out).contains(&format!("Loaded image: {tag2}")), "{}", stdout(&out));
    assert_eq!(docker_ok(&["image", "inspect", "-f", "{{.Id}}", &tag2]).trim(), did);
}

#[test]
fn error_texts_match_docker() {
    if !reference_docker() {
        eprintln!("skipped: the reference docker is not running");
        return;
    }
    let s = Strata::new();
    for args in [
        vec!["rmi", "strata-nonexistent"],
        vec!["tag", "strata-nonexistent", "x"],
        vec!["import", "-c", "RUN x", busybox_tar().to_str().unwrap()],
        vec!["import", "/strata-nonexistent.tar"],
        vec!["history", "strata-nonexistent"],
        // Not compared: `images --filter bogus=1` (20.10 says "Invalid filter", Docker 28
        // "invalid filter"; the spec is 28).
    ] {
        let d = docker(&args);
        let o = s.run(&args);
        assert_eq!(o.status.code(), d.status.code(), "exit code of {args:?}");
        assert_eq!(stderr(&o), stderr(&d), "stderr of {args:?}");
    }
}

#[test]
fn containers_match_docker() {
    if !reference_docker() {
        eprintln!("skipped: the reference docker is not running");
        return;
    }
    let s = Strata::new();
    let tag = format!("strata-diff-c:{}", std::process::id());
    let _guard = DockerTag(tag.clone());
    docker_ok(&["import", "-c", r#"CMD ["sh"]"#, busybox_tar().to_str().unwrap(), &tag]);
    s.ok(&["import", "-c", r#"CMD ["sh"]"#, busybox_tar().to_str().unwrap(), &tag]);
    // Exit codes, including docker's 126 and 127.
    for cmd in [vec!["true"], vec!["sh", "-c", "exit 3"], vec!["nonexistent-cmd"], vec!["/tmp"], vec!["/etc/passwd"]] {
        let mut args = vec!["run", "--rm", tag.as_str()];
        args.extend(cmd.iter().copied());
        let d = docker(&args);
        let o = s.run(&args);
        assert_eq!(o.status.code(), d.status.code(), "exit code of {cmd:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), stdout(&d), "stdout of {cmd:?}");
    }
    // What the process sees.
    let probe = "id; hostname | wc -c; cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /dev | sort | tr '\\n' ' '; echo; grep -c . /proc/self/mounts >/dev/null; env | sort | grep -v HOSTNAME";
    let d = docker_ok(&["run", "--rm", &tag, "sh", "-c", probe]);
    let o = s.ok(&["run", "--rm", &tag, "sh", "-c", probe]);
    assert_eq!(o, d);
    // Inspect: the same keys in the same order, State and Config in docker's shape.
    let name = format!("strata-diff-{}", std::process::id());
    docker_ok(&["create", "--name", &name, &tag, "sleep", "1"]);
    s.ok(&["create", "--name", &name, &tag, "sleep", "1"]);
    let d: Value = serde_json::from_str(&docker_ok(&["inspect", &name])).unwrap();
    let o: Value = serde_json::from_str(&s.ok(&["inspect", &name])).unwrap();
    let _ = docker(&["rm", "-f", &name]);
    s.ok(&["rm", &name]);
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&o[0]), keys(&d[0]));
    assert_eq!(keys(&o[0]["State"]), keys(&d[0]["State"]));
    assert_eq!(keys(&o[0]["Config"]), keys(&d[0]["Config"]));
    for k in ["Status", "Running", "Pid", "ExitCode", "Error"] {
        assert_eq!(o[0]["State"][k], d[0]["State"][k], "State.{k}");
    }
    for k in ["User", "Env", "Cmd", "Image", "Entrypoint", "Labels", "Tty", "OpenStdin", "AttachStdin", "AttachStdout", "AttachStderr", "StdinOnce"] {
        assert_eq!(o[0]["Config"][k], d[0]["Config"][k], "Config.{k}");
    }
    assert_eq!(o[0]["Path"], d[0]["Path"]);
    assert_eq!(o[0]["Args"], d[0]["Args"]);
    // ps: the same header and columns.
    let fmt = "{{.Image}}|{{.Command}}|{{.Status}}|{{.Names}}";
    docker_ok(&["create", "--name", &name, &tag, "sh", "-c", "echo a long command line"]);
    s.ok(&["create", "--name", &name, &tag, "sh", "-c", "echo a long command line"]);
    let dp = docker_ok(&["ps", "-a", "--filter", &format!("name={name}"), "--format", fmt]);
    let op = s.ok(&["ps", "-a", "--filter", &format!("name={name}"), "--format", fmt]);
    let _ = docker(&["rm", "-f", &name]);
    assert_eq!(op, dp);
    let dh = docker_ok(&["ps", "--filter", "name=nothing-matches"]);
    let oh = s.ok(&["ps", "--filter", "name=nothing-matches"]);
    assert_eq!(oh, dh);
}

#[test]
fn mounts_in_inspect_match_docker() {
    if !reference_docker() {
        eprintln!("skipped: the reference docker is not running");
        return;
    }
    let s = Strata::new();
    let tag = format!("strata-diff-m:{}", std::process::id());
    let _guard = DockerTag(tag.clone());
    docker_ok(&["import", "-c", "VOLUME /img", "-c", r#"CMD ["sh"]"#, busybox_tar().to_str().unwrap(), &tag]);
    s.ok(&["import", "-c", "VOLUME /img", "-c", r#"CMD ["sh"]"#, busybox_tar().to_str().unwrap(), &tag]);
    let host = tempfile::tempdir().unwrap();
    let h = host.path().display().to_string();
    let pid = std::process::id();
    let (v1, v2, v3) = (format!("sdm1-{pid}"), format!("sdm2-{pid}"), format!("sdm3-{pid}"));
    let specs: Vec<String> = vec![
        "-v".into(), format!("{h}:/a"),
        "-v".into(), format!("{h}:/b:ro"),
        "-v".into(), format!("{h}:/c:rshared"),
        "-v".into(), format!("{v1}:/d"),
        "-v".into(), format!("{v2}:/e:ro,nocopy"),
        "-v".into(), "/f".into(),
        "--mount".into(), format!("type=bind,src={h},dst=/g,readonly"),
        "--mount".into(), format!("type=volume,src={v3},dst=/h"),
        "--mount".into(), "type=volume,dst=/i".into(),
        "--mount".into(), "type=tmpfs,dst=/j".into(),
        "--tmpfs".into(), "/k".into(),
    ];
    let name = format!("strata-diff-mounts-{pid}");
    let mut args = vec!["create", "--name", name.as_str()];
    args.extend(specs.iter().map(String::as_str));
    args.push(&tag);
    docker_ok(&args);
    s.ok(&args);
    let norm = |v: &Value| -> Vec<Value> {
        let mut ms = v.as_array().unwrap().clone();
        for m in &mut ms {
            let m = m.as_object_mut().unwrap();
            // Host paths of volumes and anonymous names differ by engine; their shape not.
            if m["Type"] == "volume" {
                let src = m["Source"].as_str().unwrap().to_string();
                assert!(src.ends_with("/_data"), "{src}");
                m.insert("Source".into(), Value::from("<volume>/_data"));
                let n = m["Name"].as_str().unwrap().to_string();
                if n.len() == 64 {
                    m.insert("Name".into(), Value::from("<anonymous>"));
                }
            }
        }
        ms.sort_by_key(|m| m["Destination"].as_str().unwrap().to_string());
        ms
    };
    let fmt = "{{json .Mounts}}";
    let d: Value = serde_json::from_str(&docker_ok(&["inspect", "-f", fmt, &name])).unwrap();
    let o: Value = serde_json::from_str(&s.ok(&["inspect", "-f", fmt, &name])).unwrap();
    // Binds in any order: the docker CLI builds them from a Go map.
    let binds = |out: String| -> Vec<String> {
        let mut b: Vec<String> = serde_json::from_str(&out).unwrap();
        b.sort();
        b
    };
    let (db, ob) = (binds(docker_ok(&["inspect", "-f", "{{json .HostConfig.Binds}}", &name])), binds(s.ok(&["inspect", "-f", "{{json .HostConfig.Binds}}", &name])));
    let hc = "{{json .HostConfig.Tmpfs}} {{json .Config.Volumes}}";
    let dh = docker_ok(&["inspect", "-f", hc, &name]);
    let oh = s.ok(&["inspect", "-f", hc, &name]);
    let _ = docker(&["rm", "-fv", &name]);
    let _ = docker(&["volume", "rm", &v1, &v2, &v3]);
    let (d, o) = (norm(&d), norm(&o));
    assert_eq!(o.len(), d.len(), "strata {o:#?}\ndocker {d:#?}");
    for (om, dm) in o.iter().zip(&d) {
        assert_eq!(om, dm, "mount {}", dm["Destination"]);
    }
    assert_eq!(ob, db);
    assert_eq!(ob, db);
    assert_eq!(oh, dh);
}

/// docker's classic builder (DOCKER_BUILDKIT=0), the reference for `strata build`.
fn docker_build(args: &[&str]) -> std::process::Output {
    Command::new("docker").env("DOCKER_BUILDKIT", "0").arg("build").args(args).stdin(Stdio::null()).output().unwrap()
}

#[test]
fn builds_match_docker_s_classic_builder() {
    if !reference_docker() {
        eprintln!("skipped: the reference docker is not running (sh ../shared/peers/setup.sh docker)");
        return;
    }
    let s = Strata::new();
    let pid = std::process::id();
    let base = format!("strata-diff-base:{pid}");
    let _g0 = DockerTag(base.clone());
    docker_ok(&["import", "-c", r#"CMD ["sh"]"#, busybox_tar().to_str().unwrap(), &base]);
    s.ok(&["import", "-c", r#"CMD ["sh"]"#, busybox_tar().to_str().unwrap(), &base]);
    let ctx = tempfile::Builder::new().prefix("dctx-").tempdir_in("/var/tmp").unwrap();
    let c = ctx.path();
    std::fs::create_dir_all(c.join("some-data/sub")).unwrap();
    std::fs::write(c.join("some-data/a"), "a\n").unwrap();
    std::fs::write(c.join("some-data/sub/b"), "b\n").unwrap();
    std::fs::write(c.join("f.txt"), "f\n").unwrap();
    std::fs::write(c.join("exec.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(c.join("exec.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
    std::fs::write(c.join(".dockerignore"), "*.log\n").unwrap();
    std::fs::write(c.join("x.log"), "ignored\n").unwrap();
    let df = format!(
        "ARG G=glob\nFROM {base} AS first\nARG B=bee\nENV E1=one E2=\"two words\"\nENV LEG legacy value\nLABEL l1=v1 \"l 2\"=\"v 2\"\n\
         WORKDIR /w/$E1\nUSER 1000:1000\nUSER root\nEXPOSE 80 53/udp\nVOLUME [\"/v1\", \"/v2\"]\nSTOPSIGNAL SIGINT\nSHELL [\"/bin/sh\", \"-c\"]\n\
         HEALTHCHECK --interval=5s --retries=2 CMD true\nONBUILD RUN echo triggered\nCMD [\"sh\"]\nENTRYPOINT echo hi\nRUN echo $B $G ${{B:-x}} > /run.txt\n\
         COPY f.txt some-data /dst/\nADD --chown=1:2 f.txt /dst2\nCOPY exec.sh rel/\nCOPY some-data /data\nRUN chown -R 1000:1000 /data\nVOLUME /data\n\
         RUN touch /data/lost && echo $E2 \\\n    && echo done\nMAINTAINER me\nFROM {base}\nCOPY --from=first /dst /from-first\n"
    );
    std::fs::write(c.join("Dockerfile"), &df).unwrap();
    let tag = format!("strata-diff-build:{pid}");
    let _g1 = DockerTag(tag.clone());
    let first = format!("strata-diff-first:{pid}");
    let _g2 = DockerTag(first.clone());
    let d = docker_build(&["-t", &tag, c.to_str().unwrap()]);
    assert!(d.status.success(), "docker build: {}", stderr(&d));
    let o = s.run(&["build", "-t", &tag, c.to_str().unwrap()]);
    assert!(o.status.success(), "strata build: {}", stderr(&o));
    // The same steps, printed the same way; the same output of RUN.
    let steps = |out: &str| out.lines().filter(|l| l.starts_with("Step ") || *l == "bee glob bee" || l.starts_with("Successfully tagged")).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(steps(&stdout(&o)), steps(&stdout(&d)));
    let ids = |out: &str| out.lines().filter(|l| l.starts_with(" ---> ") && !l.contains(" in ") && !l.contains("intermediate")).count();
    assert_eq!(ids(&stdout(&o)), ids(&stdout(&d)), "one ' ---> <id>' per step");
    // The first stage again, by target, to compare its config and history.
    assert!(docker_build(&["-t", &first, "--target", "first", c.to_str().unwrap()]).status.success());
    s.ok(&["build", "-q", "-t", &first, "--target", "first", c.to_str().unwrap()]);
    let dj: Value = serde_json::from_str(&docker_ok(&["image", "inspect", &first])).unwrap();
    let oj: Value = serde_json::from_str(&s.ok(&["image", "inspect", &first])).unwrap();
    for k in ["User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels", "StopSignal", "Healthcheck", "OnBuild", "Shell"] {
        assert_eq!(oj[0]["Config"][k], dj[0]["Config"][k], "Config.{k}");
    }
    assert_eq!(oj[0]["Author"], dj[0]["Author"]);
    assert_eq!(oj[0]["RootFS"]["Layers"].as_array().unwrap().len(), dj[0]["RootFS"]["Layers"].as_array().unwrap().len(), "the same steps made layers");
    // History: the same steps recorded the same way (content hashes are each engine's own).
    let norm = |h: String| {
        h.lines()
            .map(|l| match l.find(" file:").or_else(|| l.find(" dir:")).or_else(|| l.find(" multi:")).or_else(|| l.find("file:")) {
                Some(i) => {
                    let rest = &l[i..];
                    let kind = rest.trim_start().split(':').next().unwrap_or("");
                    format!("{}{kind}:<hash>{}", &l[..i + (rest.len() - rest.trim_start().len())], &rest[rest.find(" in ").unwrap_or(rest.len())..])
                }
                // Docker 28's HealthConfig has StartInterval, 20.10's not.
                None if l.contains("HEALTHCHECK") => l.replace(" \"0s\"", ""),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
    };
    let fmt = "{{.CreatedBy}}";
    assert_eq!(norm(s.ok(&["history", "--no-trunc", "--format", fmt, &first])), norm(docker_ok(&["history", "--no-trunc", "--format", fmt, &first])));
    // Files: owners, modes, contents; changes to a VOLUME path after it was declared are gone.
    let probe = "cd /; for p in /w/one /dst /dst/f.txt /dst/a /dst/sub /dst/sub/b /dst2 /w/one/rel /w/one/rel/exec.sh /data /data/a /run.txt; do stat -c '%n %u:%g %a %F' $p; done; ls /data; cat /run.txt";
    let dout = docker_ok(&["run", "--rm", "--entrypoint", "sh", &first, "-c", probe]);
    let oout = s.ok(&["run", "--rm", "--entrypoint", "sh", &first, "-c", probe]);
    assert_eq!(oout, dout);
    // And the images cross: strata's runs on docker, docker's on strata.
    let saved = s.cmd(&["save", &first]).output().unwrap();
    assert!(saved.status.success());
    let _ = docker(&["rmi", "-f", &first]);
    let mut child = Command::new("docker").arg("load").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &saved.stdout).unwrap();
    drop(child.stdin.take());
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(docker_ok(&["run", "--rm", "--entrypoint", "sh", &first, "-c", probe]), oout, "strata's image on docker");
    let theirs = Command::new("docker").args(["save", &tag]).output().unwrap();
    let s2 = Strata::new();
    let l = s2.run_stdin(&["load"], &theirs.stdout);
    assert!(l.status.success(), "{}", stderr(&l));
    assert_eq!(s2.ok(&["run", "--rm", &tag, "cat", "/from-first/f.txt", "/from-first/sub/b"]), "f\nb\n", "docker's image on strata");
}
