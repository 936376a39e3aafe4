//! `strata build`: the seeds' builds, the cache, the semantics docker users meet, bad
//! input, and interrupted builds. Real containers, real overlay mounts.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

fn write(dir: &Path, name: &str, data: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn ctx() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("ctx-").tempdir_in("/var/tmp").unwrap()
}

fn build(s: &Strata, dir: &Path, args: &[&str]) -> std::process::Output {
    let mut a = vec!["build"];
    a.extend_from_slice(args);
    let d = dir.to_str().unwrap().to_string();
    a.push(&d);
    s.run(&a)
}

fn build_ok(s: &Strata, dir: &Path, args: &[&str]) -> String {
    let o = build(s, dir, args);
    assert!(o.status.success(), "build failed: {}\n{}", stderr(&o), stdout(&o));
    stdout(&o)
}

fn image_id(out: &str) -> String {
    out.lines().find_map(|l| l.strip_prefix("Successfully built ")).expect("built").to_string()
}

#[test]
fn seed_data_only_images_and_a_chowned_volume() {
    let s = Strata::new();
    s.import_busybox("busybox:latest");
    let c = ctx();
    write(c.path(), "some-data/a.txt", "hello\n");
    write(c.path(), "some-data/sub/b.txt", "b\n");
    // FROM scratch: a data-only image.
    write(c.path(), "Dockerfile", "FROM scratch\nADD some-data /mydata\nVOLUME /mydata\n");
    let out = build_ok(&s, c.path(), &["--rm", "-t", "demo/mydata-image"]);
    assert!(out.contains("Step 1/3 : FROM scratch\n ---> \nStep 2/3 : ADD some-data /mydata\n"), "{out}");
    assert!(out.contains("Successfully tagged demo/mydata-image:latest"), "{out}");
    s.ok(&["create", "--name", "mydata-container", "demo/mydata-image", "xyz"]);
    let ls = s.ok(&["run", "--rm", "--volumes-from", "mydata-container", "busybox", "sh", "-c", "cat /mydata/a.txt /mydata/sub/b.txt; stat -c '%u:%g' /mydata/a.txt"]);
    assert_eq!(ls, "hello\nb\n0:0\n");

    // FROM busybox + RUN chown before VOLUME: the volume comes out owned by 1000:1000.
    write(c.path(), "Dockerfile", "FROM busybox\nADD some-data /mydata\n\n## change owner to uid=1000 with guid=1000\nRUN chown -R 1000:1000 /mydata\nVOLUME /mydata\n");
    let out = build_ok(&s, c.path(), &["-t", "demo/owned"]);
    assert!(out.contains(" ---> Running in "), "{out}");
    assert!(out.contains(" ---> Removed intermediate container "), "{out}");
    s.ok(&["create", "--name", "owned", "demo/owned", "true"]);
    let st = s.ok(&["run", "--rm", "--volumes-from", "owned", "busybox", "stat", "-c", "%u:%g %a %n", "/mydata", "/mydata/a.txt", "/mydata/sub"]);
    assert_eq!(st, "1000:1000 755 /mydata\n1000:1000 644 /mydata/a.txt\n1000:1000 755 /mydata/sub\n");
    // No build container is left behind.
    let ps = s.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(ps.lines().filter(|l| *l != "mydata-container" && *l != "owned").count(), 0, "{ps}");
}

#[test]
fn seed_secrets_image_and_a_dockerfile_on_stdin() {
    let s = Strata::new();
    s.import_busybox("busybox:latest");
    let c = ctx();
    for t in ["tenant1", "tenant2", "tenant3"] {
        write(c.path(), &format!("{t}-secret"), &format!("{t} secret\n"));
    }
    write(c.path(), "Dockerfile", "FROM busybox\n\n# Copy the secrets file into the container\nCOPY tenant1-secret /etc/secrets/tenant1\nCOPY tenant2-secret /etc/secrets/tenant2\nCOPY tenant3-secret /etc/secrets/tenant3\n\n# Declare a volume at the location of the secrets\nVOLUME /etc/secrets\n");
    build_ok(&s, c.path(), &["-t", "secrets"]);
    s.ok(&["create", "-v", "/etc/secrets", "--name", "secrets", "secrets:latest"]);
    let out = s.ok(&["run", "--rm", "--volumes-from", "secrets", "busybox", "sh", "-c", "ls -ln /etc/secrets | awk '{print $1, $3, $4, $9}'; cat /etc/secrets/tenant2"]);
    assert_eq!(out, "total   \n-rw-r--r-- 0 0 tenant1\n-rw-r--r-- 0 0 tenant2\n-rw-r--r-- 0 0 tenant3\ntenant2 secret\n");

    // docker build --tag x -<<EOF
    let o = s.run_stdin(&["build", "--tag", "my-image", "-"], b"FROM busybox\nRUN echo built > /marker\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(s.ok(&["run", "--rm", "my-image", "cat", "/marker"]), "built\n");
    // A tar stream on stdin is a context.
    let tar = tar_of(&[("Dockerfile", b"FROM busybox\nCOPY f /f\n"), ("f", b"from tar\n")]);
    let o = s.run_stdin(&["build", "-q", "-t", "fromtar", "-"], &tar);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).trim().starts_with("sha256:") && stdout(&o).lines().count() == 1, "-q prints only the id: {}", stdout(&o));
    assert_eq!(s.ok(&["run", "--rm", "fromtar", "cat", "/f"]), "from tar\n");
}

#[test]
fn cache_reuses_steps_by_content_not_mtime() {
    let s = Strata::new();
    s.import_busybox("busybox:latest");
    let c = ctx();
    write(c.path(), "app/a", "one\n");
    write(c.path(), "Dockerfile", "FROM busybox\nENV X=1\nCOPY app /app\nRUN cat /app/a > /copy\nARG V=d\nRUN echo $V > /v\n");
    let first = image_id(&build_ok(&s, c.path(), &[]));
    let again = build_ok(&s, c.path(), &[]);
    assert_eq!(again.matches(" ---> Using cache").count(), 5, "{again}");
    assert_eq!(image_id(&again), first);
    // Only the mtime changes: still cached.
    std::fs::File::options().write(true).open(c.path().join("app/a")).unwrap().set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000)).unwrap();
    assert_eq!(image_id(&build_ok(&s, c.path(), &[])), first);
    // The content changes: COPY and what follows run again.
    write(c.path(), "app/a", "two\n");
    let out = build_ok(&s, c.path(), &["-t", "cached"]);
    assert_eq!(out.matches(" ---> Using cache").count(), 1, "{out}");
    assert_eq!(s.ok(&["run", "--rm", "cached", "cat", "/copy", "/v"]), "two\nd\n");
    // A build arg is part of the key of the RUN that sees it.
    let out = build_ok(&s, c.path(), &["--build-arg", "V=e", "-t", "cached"]);
    assert_eq!(out.matches(" ---> Using cache").count(), 4, "{out}");
    assert_eq!(s.ok(&["run", "--rm", "cached", "cat", "/v"]), "e\n");
    let hist = s.ok(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", "cached"]);
    assert!(hist.starts_with("|1 V=e /bin/sh -c echo $V > /v\n"), "{hist}");
    // --no-cache runs everything.
    let out = build_ok(&s, c.path(), &["--no-cache"]);
    assert_eq!(out.matches("Using cache").count(), 0);
}

#[test]
fn volume_paths_forget_later_run_changes_and_expansion_is_docker_s() {
    let s = Strata::new();
    s.import_busybox("busybox:latest");
    let c = ctx();
    write(
        c.path(),
        "Dockerfile",
        "FROM busybox\nRUN mkdir /data && echo before > /data/f\nVOLUME /data\nRUN echo after > /data/f && echo elsewhere > /kept\n\
         ENV a=1\nENV a=2 b=$a c=${nope:-dflt} d=${a:+alt}\nARG from_arg=arg\nWORKDIR /w/${from_arg}\nRUN echo \"$a $b $c $d $from_arg $(pwd)\" > /vars\n\
         USER nobody\nRUN id -u > /tmp/uid\n",
    );
    build_ok(&s, c.path(), &["-t", "sem"]);
    let out = s.ok(&["run", "--rm", "sem", "cat", "/data/f", "/kept", "/vars", "/tmp/uid"]);
    assert_eq!(out, "before\nelsewhere\n2 1 dflt alt arg /w/arg\n65534\n");
    let cfg = s.ok(&["image", "inspect", "-f", "{{json .Config.Env}} {{.Config.WorkingDir}} {{.Config.User}} {{json .Config.Volumes}}", "sem"]);
    assert_eq!(cfg.trim(), r#"["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","a=2","b=1","c=dflt","d=alt"] /w/arg nobody {"/data":{}}"#);
}

#[test]
fn copy_rules_dockerignore_chown_chmod_heredocs_and_stages() {
    let s = Strata::new();
    s.import_busybox("busybox:latest");
    let c = ctx();
    write(c.path(), "src/keep.txt", "k\n");
    write(c.path(), "src/skip.log", "s\n");
    write(c.path(), "src/deep/x.txt", "x\n");
    write(c.path(), "one.txt", "1\n");
    write(c.path(), "two.txt", "2\n");
    write(c.path(), ".dockerignore", "**/*.log\nsecret\n");
    write(c.path(), "secret", "no\n");
    {
        let f = std::fs::File::create(c.path().join("arch.tar")).unwrap();
        let mut b = tar::Builder::new(f);
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        b.append_data(&mut h, "inner/file", &b"in\n"[..]).unwrap();
        b.finish().unwrap();
    }
    write(c.path(), "etc-passwd", "root:x:0:0::/root:/bin/sh\napp:x:1234:1234::/home/app:/bin/sh\n");
    write(c.path(), "etc-group", "root:x:0:\napp:x:4321:\n");
    write(
        c.path(),
        "Dockerfile",
        "FROM busybox AS base\nCOPY etc-passwd /etc/passwd\nCOPY etc-group /etc/group\nWORKDIR /app\nCOPY src .\nCOPY *.txt multi/\nCOPY --chown=app one.txt owned\nCOPY --chmod=700 two.txt /modes/\n\
         ADD arch.tar /unpacked/\nCOPY arch.tar /packed/\nCOPY <<EOF /inline.txt\nhello $HOSTNAME\nEOF\nRUN <<EOS\necho from heredoc > /hd\nEOS\n\
         FROM scratch AS final\nCOPY --from=base /app /copied\nCOPY --from=0 /inline.txt /\n",
    );
    build_ok(&s, c.path(), &["-t", "rules", "--target", "base"]);
    let out = s.ok(&[
        "run", "--rm", "rules", "sh", "-c",
        "cd /app; find . | sort; stat -c '%u:%g %a %n' owned /modes/two.txt /unpacked/inner/file; cat /inline.txt /hd; ls /packed",
    ]);
    assert_eq!(
        out,
        ".\n./deep\n./deep/x.txt\n./keep.txt\n./multi\n./multi/one.txt\n./multi/two.txt\n./owned\n\
         1234:4321 644 owned\n0:0 700 /modes/two.txt\n0:0 600 /unpacked/inner/file\nhello \nfrom heredoc\narch.tar\n"
    );
    // The last stage, from the first one's files.
    build_ok(&s, c.path(), &["-t", "final"]);
    s.ok(&["create", "--name", "fin", "final", "x"]);
    let mut exp = s.cmd(&["export", "fin"]).output().unwrap();
    assert!(exp.status.success());
    let mut names: Vec<String> = tar::Archive::new(&exp.stdout[..]).entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string().trim_end_matches('/').to_string()).collect();
    names.retain(|n| n.starts_with("copied") || n.starts_with("inline"));
    names.sort();
    assert_eq!(names, ["copied", "copied/deep", "copied/deep/x.txt", "copied/keep.txt", "copied/multi", "copied/multi/one.txt", "copied/multi/two.txt", "copied/owned", "inline.txt"]);
    exp.stdout.clear();
}

#[test]
fn onbuild_triggers_run_in_the_child_image() {
    let s = Strata::new();
    s.import_busybox("busybox:latest");
    let c = ctx();
    write(c.path(), "Dockerfile", "FROM busybox\nONBUILD RUN echo triggered > /t\n");
    build_ok(&s, c.path(), &["-t", "parent"]);
    write(c.path(), "Dockerfile", "FROM parent\nRUN cat /t\n");
    let out = build_ok(&s, c.path(), &["-t", "child"]);
    assert!(out.contains("# Executing 1 build trigger\n"), "{out}");
    assert!(out.contains("triggered\n"), "{out}");
    assert_eq!(s.ok(&["image", "inspect", "-f", "{{json .Config.OnBuild}}", "child"]).trim(), "null");
}

#[test]
fn bad_input_gets_docker_s_errors_with_lines() {
    let s = Strata::new();
    s.import_busybox("busybox:latest");
    let c = ctx();
    std::os::unix::fs::symlink("/etc/passwd", c.path().join("esc")).unwrap();
    let cases: &[(&str, &str, i32)] = &[
        ("FROM busybox\nFOO bar\n", "Error response from daemon: dockerfile parse error on line 2: unknown instruction: FOO", 1),
        ("RUN true\n", "Error response from daemon: no build stage in current context", 1),
        ("FROM busybox\nCOPY ../x /x\n", "COPY failed: forbidden path outside the build context: ../x ()", 1),
        ("FROM busybox\nCOPY esc /x\n", "COPY failed: file not found in build context or excluded by .dockerignore: stat esc: file does not exist", 1),
        ("FROM busybox\nRUN <<EOF\necho\n", "Error response from daemon: dockerfile parse error on line 2: unterminated heredoc", 1),
        ("FROM busybox\nENV A \"abc\n", "failed to process \"\\\"abc\": unexpected end of statement while looking for matching double-quote", 1),
        ("FROM busybox\nRUN echo out; echo err >&2; exit 3\n", "The command '/bin/sh -c echo out; echo err >&2; exit 3' returned a non-zero code: 3", 3),
        ("FROM nothere\n", "No such image: nothere:latest", 1),
        ("FROM busybox AS a\nFROM a AS b\nFROM b AS b2\nCOPY --from=nope /x /y\n", "invalid from flag value nope", 1),
    ];
    for (df, msg, code) in cases {
        write(c.path(), "Dockerfile", df);
        let o = build(&s, c.path(), &["-t", "bad"]);
        assert_eq!(o.status.code(), Some(*code), "{df}: {}", stderr(&o));
        assert!(stderr(&o).contains(msg), "{df}: want {msg:?}, got {:?}", stderr(&o));
    }
    // The failing RUN showed its output, tagged nothing, and left its stopped container.
    write(c.path(), "Dockerfile", "FROM busybox\nRUN echo out; echo err >&2; exit 3\n");
    let o = build(&s, c.path(), &["-t", "bad"]);
    assert!(stdout(&o).contains("out\n") && stdout(&o).contains("\u{1b}[91merr\n\u{1b}[0m"), "{}", stdout(&o));
    assert!(!s.run(&["image", "inspect", "bad"]).status.success(), "nothing tagged");
    assert!(s.ok(&["ps", "-a", "--format", "{{.Status}}"]).contains("Exited (3)"));
    // ARG "cycles" are not: expansion is one pass, in order.
    write(c.path(), "Dockerfile", "ARG A=$B\nARG B=$A\nFROM busybox\nARG A\nARG B\nRUN echo \"[$A][$B]\" > /ab\n");
    build_ok(&s, c.path(), &["-t", "args"]);
    assert_eq!(s.ok(&["run", "--rm", "args", "cat", "/ab"]), "[][]\n");
}

#[test]
fn a_killed_build_leaves_no_container_running_and_no_mount() {
    let s = Strata::new();
    s.import_busybox("busybox:latest");
    let c = ctx();
    write(c.path(), "Dockerfile", "FROM busybox\nRUN sleep 600\n");
    for sig in [libc::SIGKILL, libc::SIGINT] {
        let mut child = s.cmd(&["build", c.path().to_str().unwrap()]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        // Wait until the step's container runs.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let ps = s.ok(&["ps", "--format", "{{.Status}}"]);
            if ps.contains("Up") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the RUN never started");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let _ = child.wait();
        // The next command (any) cleans up.
        let ps = s.ok(&["ps", "-a", "--format", "{{.ID}} {{.Status}}"]);
        assert_eq!(ps, "", "after signal {sig}: {ps}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(s.root.to_str().unwrap()), "a mount was left");
        let _ = Command::new("true").status();
    }
}

#[test]
fn rmi_takes_the_intermediate_images_along() {
    let s = Strata::new();
    s.import_busybox("busybox:latest");
    let c = ctx();
    write(c.path(), "f", "x\n");
    write(c.path(), "Dockerfile", "FROM busybox\nENV A=1\nCOPY f /f\nRUN cat /f\n");
    build_ok(&s, c.path(), &["-t", "stacked"]);
    assert_eq!(s.ok(&["images", "-aq"]).lines().count(), 4);
    assert_eq!(s.ok(&["images", "-q"]).lines().count(), 2, "intermediate images are hidden");
    let out = s.ok(&["rmi", "--no-prune", "stacked"]);
    assert!(out.contains("Deleted: sha256:"), "{out}");
    assert_eq!(s.ok(&["images", "-aq"]).lines().count(), 3, "--no-prune keeps the parents: {out}");
    s.ok(&["image", "prune", "-f"]);
    build_ok(&s, c.path(), &["-t", "stacked", "--no-cache"]);
    let out = s.ok(&["rmi", "stacked"]);
    assert!(out.starts_with("Untagged: stacked:latest\nDeleted: sha256:"), "{out}");
    assert_eq!(s.ok(&["images", "-aq"]).lines().count(), 1, "only busybox is left: {out}");
    assert!(!s.entries("snapshots").is_empty());
}
