//! Differential tests against the reference docker engine (started by
//! ../shared/peers/setup.sh). Skipped, with a message, when no docker answers.

mod common;

use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).stdin(Stdio::null()).output().unwrap()
}

fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(o.status.success(), "docker {args:?}: {}", stderr(&o));
    stdout(&o)
}

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
