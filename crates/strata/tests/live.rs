//! The live container (issue 5): the writable layer seen through `diff`.

mod common;

use std::process::Command;

use common::*;

const SCRIPT: &str = "echo x>/mydata/f; touch /tmp/a; rm /etc/group; mkdir -p /usr/x/y; echo hi > /usr/x/y/z; rm -rf /home; mkdir /home; touch /home/new; touch /bin/ls";

fn sorted(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn diff_lists_the_writable_layer_against_the_image() {
    let s = Strata::new();
    s.import_busybox("busybox");
    s.ok(&["create", "--name", "fresh", "busybox"]);
    assert_eq!(s.ok(&["diff", "fresh"]), "", "nothing changed yet: the init layer's files never show");
    s.ok(&["run", "--name", "tt", "-v", "/mydata", "busybox", "sh", "-c", SCRIPT]);
    let got = sorted(&s.ok(&["diff", "tt"]));
    let want = [
        "A /home/new", "A /mydata", "A /tmp/a", "A /usr/x", "A /usr/x/y", "A /usr/x/y/z", "C /bin", "C /bin/busybox",
        "C /etc", "C /home", "C /tmp", "C /usr", "D /etc/group",
    ];
    assert_eq!(got, want, "volume content (/mydata/f) never shows; deletions and opaque dirs do");
    // Parents come before their children.
    let lines: Vec<String> = s.ok(&["container", "diff", "tt"]).lines().map(str::to_string).collect();
    let pos = |p: &str| lines.iter().position(|l| l == p).unwrap();
    assert!(pos("C /usr") < pos("A /usr/x") && pos("A /usr/x") < pos("A /usr/x/y/z"), "{lines:?}");
    // A running container, then a removed one.
    let id = s.ok(&["run", "-d", "busybox", "sh", "-c", "touch /root/live; sleep 30"]).trim().to_string();
    let mut seen = String::new();
    for _ in 0..100 {
        seen = s.ok(&["diff", &id]);
        if seen.contains("A /root/live") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    assert_eq!(sorted(&seen), ["A /root/live", "C /root"]);
    s.ok(&["rm", "-f", &id]);
    s.ok(&["rm", "tt"]);
    let out = s.run(&["diff", "tt"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "Error response from daemon: No such container: tt\n");
}

#[test]
fn diff_matches_docker() {
    if !reference_docker() {
        eprintln!("skipped: the reference docker is not running");
        return;
    }
    let s = Strata::new();
    let tag = format!("strata-diff-live:{}", std::process::id());
    docker_ok(&["import", "-c", r#"CMD ["sh"]"#, busybox_tar().to_str().unwrap(), &tag]);
    s.ok(&["import", "-c", r#"CMD ["sh"]"#, busybox_tar().to_str().unwrap(), &tag]);
    let name = format!("strata-diff-live-{}", std::process::id());
    let args = ["run", "--name", name.as_str(), "-v", "/mydata", tag.as_str(), "sh", "-c", SCRIPT];
    docker_ok(&args);
    s.ok(&args);
    let d = sorted(&docker_ok(&["diff", &name]));
    let o = sorted(&s.ok(&["diff", &name]));
    let _ = docker(&["rm", "-fv", &name]);
    let _ = docker(&["rmi", &tag]);
    assert_eq!(o, d);
}

fn tar_listing(bytes: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(bytes);
    let mut v: Vec<String> = a
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            // Permission bits only: docker's Go writer adds the file-type bits (0100644).
            format!("{:o} {}", h.mode().unwrap() & 0o7777, String::from_utf8_lossy(&e.path_bytes()))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn export_writes_the_flattened_filesystem_without_volumes() {
    let s = Strata::new();
    s.import_busybox("busybox");
    s.ok(&["run", "--name", "ex", "-v", "/mydata", "busybox", "sh", "-c", "echo x > /mydata/f; echo y > /root/y; rm /etc/group"]);
    let tar = s.cmd(&["export", "ex"]).output().unwrap();
    assert!(tar.status.success(), "{}", stderr(&tar));
    let names = tar_listing(&tar.stdout);
    for want in ["644 root/y", "755 mydata/", "755 .dockerenv", "777 etc/mtab", "644 etc/passwd"] {
        assert!(names.iter().any(|n| n == want), "{want} missing");
    }
    assert!(!names.iter().any(|n| n.ends_with("mydata/f") || n.ends_with("etc/group")), "volume content or deleted files");
    // -o: the same bytes, through a temporary name.
    let out = s.root.join("ex.tar");
    s.ok(&["container", "export", "-o", out.to_str().unwrap(), "ex"]);
    assert_eq!(std::fs::read(&out).unwrap(), tar.stdout, "deterministic");
    assert!(!s.root.join("ex.tar.strata-tmp").exists());
    let missing = s.run(&["export", "-o", out.to_str().unwrap(), "nosuch"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(stderr(&missing), "Error response from daemon: No such container: nosuch\n");
}

#[test]
fn export_matches_docker() {
    if !reference_docker() {
        eprintln!("skipped: the reference docker is not running");
        return;
    }
    let s = Strata::new();
    let tag = format!("strata-export-live:{}", std::process::id());
    docker_ok(&["import", "-c", r#"CMD ["sh"]"#, busybox_tar().to_str().unwrap(), &tag]);
    s.ok(&["import", "-c", r#"CMD ["sh"]"#, busybox_tar().to_str().unwrap(), &tag]);
    let name = format!("strata-export-live-{}", std::process::id());
    let args = ["run", "--name", name.as_str(), "-v", "/mydata", tag.as_str(), "sh", "-c", SCRIPT];
    docker_ok(&args);
    s.ok(&args);
    let d = Command::new("docker").args(["export", &name]).output().unwrap();
    let o = s.cmd(&["export", &name]).output().unwrap();
    let _ = docker(&["rm", "-fv", &name]);
    let _ = docker(&["rmi", &tag]);
    assert_eq!(tar_listing(&o.stdout), tar_listing(&d.stdout));
}

#[test]
fn rename_keeps_the_container_and_frees_the_old_name() {
    let s = Strata::new();
    s.import_busybox("busybox");
    let id = s.ok(&["run", "-d", "--name", "ra", "busybox", "sleep", "30"]).trim().to_string();
    s.ok(&["create", "--name", "rb", "busybox"]);
    s.ok(&["rename", "ra", "rc"]);
    assert_eq!(s.ok(&["inspect", "-f", "{{.Name}} {{.State.Running}} {{.Id}}", "rc"]), format!("/rc true {id}\n"));
    s.ok(&["create", "--name", "ra", "busybox"]);
    let out = s.run(&["container", "rename", "rc", "rb"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("Error response from daemon: Error when allocating new name: Conflict. The container name \"/rb\" is already in use by container \""), "{err}");
    assert!(err.ends_with("\nError: failed to rename container named rc\n"), "{err}");
    s.ok(&["rm", "-f", "rc", "ra", "rb"]);
}

#[test]
fn rename_errors_match_docker() {
    if !reference_docker() {
        eprintln!("skipped: the reference docker is not running");
        return;
    }
    let s = Strata::new();
    let tag = format!("strata-rename:{}", std::process::id());
    docker_ok(&["import", "-c", r#"CMD ["sh"]"#, busybox_tar().to_str().unwrap(), &tag]);
    s.ok(&["import", "-c", r#"CMD ["sh"]"#, busybox_tar().to_str().unwrap(), &tag]);
    let p = std::process::id();
    let (a, b) = (format!("sr-a-{p}"), format!("sr-b-{p}"));
    for n in [&a, &b] {
        docker_ok(&["create", "--name", n, &tag]);
        s.ok(&["create", "--name", n, &tag]);
    }
    let nosuch = format!("sr-none-{p}");
    for args in [vec!["rename", &nosuch, "x1"], vec!["rename", &a, &a], vec!["rename", &a, "b@d"]] {
        let d = docker(&args);
        let o = s.run(&args);
        assert_eq!(o.status.code(), d.status.code(), "{args:?}");
        assert_eq!(stderr(&o), stderr(&d), "{args:?}");
    }
    let d = docker(&["rename", &a, &b]);
    let o = s.run(&["rename", &a, &b]);
    let _ = docker(&["rm", "-f", &a, &b]);
    let _ = docker(&["rmi", &tag]);
    assert_eq!(o.status.code(), d.status.code());
    let strip_id = |e: String| e.split("by container").next().unwrap().to_string();
    assert_eq!(strip_id(stderr(&o)), strip_id(stderr(&d)));
}

#[test]
fn pause_freezes_every_process_and_stop_thaws_it() {
    let s = Strata::new();
    s.import_busybox("busybox");
    s.ok(&["volume", "create", "ticks"]);
    let id = s.ok(&["run", "-d", "--name", "pz", "-v", "ticks:/t", "busybox", "sh", "-c", "trap 'exit 7' TERM; i=0; while true; do i=$((i+1)); echo $i > /t/n; usleep 20000; done"])
        .trim()
        .to_string();
    let data = s.root.join("volumes/ticks/_data/n");
    let read = || std::fs::read_to_string(&data).unwrap_or_default();
    let wait_moving = || {
        let first = read();
        for _ in 0..200 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            if read() != first && !read().is_empty() {
                return true;
            }
        }
        false
    };
    assert!(wait_moving(), "the counter runs");
    assert_eq!(s.ok(&["pause", "pz"]), "pz\n");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let frozen = read();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(read(), frozen, "no process runs while paused");
    assert_eq!(s.ok(&["inspect", "-f", "{{.State.Status}} {{.State.Running}} {{.State.Paused}}", "pz"]), "paused true true\n");
    assert!(s.ok(&["ps", "--format", "{{.Status}}"]).ends_with("(Paused)\n"));
    let again = s.run(&["pause", "pz"]);
    assert_eq!(stderr(&again), format!("Error response from daemon: Container {id} is already paused\n"));
    let start = s.run(&["start", "pz"]);
    assert!(stderr(&start).contains("cannot start a paused container, try unpause instead"), "{}", stderr(&start));
    assert_eq!(s.ok(&["unpause", "pz"]), "pz\n");
    assert!(wait_moving(), "runs again after unpause");
    let not = s.run(&["unpause", "pz"]);
    assert_eq!(stderr(&not), format!("Error response from daemon: Container {id} is not paused\n"));
    // stop of a paused container: the signal lands once it is thawed.
    s.ok(&["pause", "pz"]);
    s.ok(&["stop", "pz"]);
    assert_eq!(s.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "pz"]), "exited 7\n");
    let out = s.run(&["pause", "pz"]);
    assert_eq!(stderr(&out), format!("Error response from daemon: Container {id} is not running\n"));
    s.ok(&["rm", "pz"]);
}

#[test]
fn top_lists_the_containers_processes_only() {
    let s = Strata::new();
    s.import_busybox("busybox");
    s.ok(&["run", "-d", "--name", "tp", "busybox", "sh", "-c", "sleep 31 & sleep 32"]);
    let mut out = String::new();
    for _ in 0..100 {
        out = s.ok(&["top", "tp"]);
        if out.contains("sleep 31") && out.contains("sleep 32") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]);
    assert!(lines[0].starts_with("UID                 PID                 "), "docker's column widths: {out}");
    // sh execs its last command: two processes, nothing from the host.
    assert_eq!(lines.len(), 3, "{out}");
    assert!(out.contains("sleep 31") && out.contains("sleep 32"), "{out}");
    let custom = s.ok(&["container", "top", "tp", "-o", "pid,comm"]);
    assert!(custom.starts_with("PID                 COMMAND\n"), "{custom}");
    s.ok(&["rm", "-f", "tp"]);
    let id = s.ok(&["create", "--name", "tp2", "busybox"]).trim().to_string();
    let out = s.run(&["top", "tp2"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), format!("Error response from daemon: Container {id} is not running\n"));
}
