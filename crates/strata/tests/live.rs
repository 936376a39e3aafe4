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

/// Each exec case: arguments after `exec`, and stdin.
const EXEC_CASES: &[(&[&str], &str)] = &[
    (&["nosuch"], ""),
    (&["sh", "-c", "exit 3"], ""),
    (&["/etc"], ""),
    (&["-u", "nobody", "id"], ""),
    (&["-u", "1234:5", "id"], ""),
    (&["-u", "nouser", "id"], ""),
    (&["-w", "/tmp", "pwd"], ""),
    (&["-w", "/nope", "pwd"], ""),
    (&["-e", "A=1", "sh", "-c", "echo $A $HOME $PATH"], ""),
    (&["-i", "cat"], "hello\nworld\n"),
    (&["sh", "-c", "echo out; echo err >&2; exit 5"], ""),
];

fn exec_in(run: &dyn Fn(&[&str], &str) -> std::process::Output, name: &str) -> Vec<(Option<i32>, String, String)> {
    EXEC_CASES
        .iter()
        .map(|(args, input)| {
            let mut full = vec!["exec"];
            let (flags, cmd): (Vec<&str>, Vec<&str>) = {
                // Flags go before the container name.
                let split = args.iter().position(|a| !a.starts_with('-') && !["nobody", "1234:5", "nouser", "/tmp", "/nope", "A=1"].contains(a)).unwrap_or(0);
                (args[..split].to_vec(), args[split..].to_vec())
            };
            full.extend(flags);
            full.push(name);
            full.extend(cmd);
            let o = run(&full, input);
            (o.status.code(), stdout(&o), stderr(&o))
        })
        .collect()
}

#[test]
fn exec_runs_in_the_container_with_its_exit_code() {
    let s = Strata::new();
    s.import_busybox("busybox");
    s.ok(&["run", "-d", "--name", "ex", "busybox", "sleep", "60"]);
    let got = exec_in(&|args, input| s.run_stdin(args, input.as_bytes()), "ex");
    assert_eq!(got[0].0, Some(126));
    assert!(got[0].1.ends_with("executable file not found in $PATH: unknown\r\n"), "{:?}", got[0]);
    assert_eq!(got[1].0, Some(3));
    assert_eq!(got[3].1, "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n");
    assert_eq!(got[7].0, Some(126), "a missing workdir: {:?}", got[7]);
    assert!(got[7].1.contains("chdir to cwd (\"/nope\") set in config.json failed: no such file or directory"), "{:?}", got[7]);
    assert_eq!(got[9], (Some(0), "hello\nworld\n".into(), String::new()), "stdin EOF ends cat");
    assert_eq!(got[10], (Some(5), "out\n".into(), "err\n".into()), "output drained before the exit");
    // Detached: runs on its own; the supervisor reaps it.
    assert_eq!(s.ok(&["exec", "-d", "ex", "sh", "-c", "echo bg > /tmp/bg"]), "");
    let mut seen = String::new();
    for _ in 0..100 {
        seen = stdout(&s.run(&["exec", "ex", "cat", "/tmp/bg"]));
        if seen == "bg\n" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(seen, "bg\n");
    let top = s.ok(&["top", "ex"]);
    assert_eq!(top.lines().count(), 2, "no exec'd process left behind: {top}");
    s.ok(&["pause", "ex"]);
    let paused = s.run(&["exec", "ex", "true"]);
    assert!(stderr(&paused).contains("is paused, unpause the container before exec"), "{}", stderr(&paused));
    s.ok(&["unpause", "ex"]);
    s.ok(&["stop", "-t", "0", "ex"]);
    let stopped = s.run(&["exec", "ex", "true"]);
    assert_eq!(stopped.status.code(), Some(1));
    assert!(stderr(&stopped).ends_with("is not running\n"), "{}", stderr(&stopped));
}

#[test]
fn exec_matches_docker() {
    if !reference_docker() {
        eprintln!("skipped: the reference docker is not running");
        return;
    }
    let s = Strata::new();
    let tag = format!("strata-exec:{}", std::process::id());
    docker_ok(&["import", "-c", r#"CMD ["sh"]"#, busybox_tar().to_str().unwrap(), &tag]);
    s.ok(&["import", "-c", r#"CMD ["sh"]"#, busybox_tar().to_str().unwrap(), &tag]);
    let name = format!("strata-exec-{}", std::process::id());
    docker_ok(&["run", "-d", "--name", &name, &tag, "sleep", "60"]);
    s.ok(&["run", "-d", "--name", &name, &tag, "sleep", "60"]);
    let docker_run = |args: &[&str], input: &str| {
        use std::io::Write;
        let mut child = Command::new("docker").args(args).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let d = exec_in(&docker_run, &name);
    let o = exec_in(&|args, input| s.run_stdin(args, input.as_bytes()), &name);
    let _ = docker(&["rm", "-f", &name]);
    let _ = docker(&["rmi", &tag]);
    for (i, (dd, oo)) in d.iter().zip(&o).enumerate() {
        assert_eq!(oo, dd, "case {:?}", EXEC_CASES[i].0);
    }
}

#[test]
fn commit_makes_the_writable_layer_an_image_without_volumes() {
    let s = Strata::new();
    s.import_busybox("busybox");
    s.ok(&["run", "--name", "cm", "-v", "/mydata", "busybox", "sh", "-c", "echo x > /mydata/f; echo y > /root/y; rm /etc/group; mkdir -p /opt/app && echo app > /opt/app/a"]);
    let id = s.ok(&["commit", "-a", "me <me@x>", "-m", "first", "-c", r#"CMD ["cat","/opt/app/a"]"#, "cm", "myimg:v1"]);
    assert!(id.starts_with("sha256:") && id.trim().len() == 71, "{id}");
    assert_eq!(s.ok(&["run", "--rm", "myimg:v1"]), "app\n", "the -c change applies");
    let probe = s.run(&["run", "--rm", "myimg:v1", "sh", "-c", "cat /root/y; test -e /etc/group || echo gone; ls -A /mydata | wc -l"]);
    assert_eq!(stdout(&probe), "y\ngone\n0\n", "the deletion is a whiteout; the volume's content is not in the layer");
    let fmt = "{{.Author}}|{{.Comment}}|{{json .Config.Volumes}}|{{len .RootFS.Layers}}";
    assert_eq!(s.ok(&["image", "inspect", "-f", fmt, "myimg:v1"]), "me <me@x>|first|{\"/mydata\":{}}|2\n");
    let hist = s.ok(&["history", "--format", "{{.CreatedBy}}|{{.Comment}}", "myimg:v1"]);
    assert!(hist.starts_with("sh -c echo x > /mydata/f;"), "{hist}");
    // A running container is paused for the read and runs on afterwards.
    s.ok(&["run", "-d", "--name", "live", "busybox", "sh", "-c", "echo here > /tmp/mark; sleep 60"]);
    let mut img = String::new();
    for _ in 0..50 {
        s.ok(&["commit", "live", "snap:1"]);
        img = s.ok(&["run", "--rm", "snap:1", "cat", "/tmp/mark"]);
        if img == "here\n" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(img, "here\n");
    assert_eq!(s.ok(&["inspect", "-f", "{{.State.Status}}", "live"]), "running\n");
    s.ok(&["commit", "--pause=false", "live"]);
    let bad = s.run(&["commit", "-c", "FROB x", "live"]);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(s.ok(&["inspect", "-f", "{{.State.Status}}", "live"]), "running\n", "a bad change fails before pausing");
    s.ok(&["rm", "-f", "live", "cm"]);
    assert_eq!(s.run(&["run", "--rm", "myimg:v1", "cat", "/root/y"]).status.code(), Some(0), "the image outlives its container");
}

#[test]
fn cp_both_ways_resolves_every_path_inside_the_container() {
    use std::os::unix::fs::MetadataExt;
    let s = Strata::new();
    s.import_busybox("busybox");
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    // A stopped container with a volume: its content is where the container sees it.
    s.ok(&["run", "--name", "cpx", "-v", "cpvol:/vol", "busybox", "sh", "-c", "mkdir -p /d/sub; echo a > /d/a; echo b > /d/sub/b; echo v > /vol/v; ln -s /etc /vol/esc"]);
    let tar = s.cmd(&["cp", "cpx:/d", "-"]).output().unwrap();
    let names = tar_listing(&tar.stdout);
    assert!(names.iter().any(|n| n.ends_with(" d/sub/b")) && names.iter().any(|n| n.ends_with(" d/a")), "{names:?}");
    s.ok(&["cp", "cpx:/d", h.to_str().unwrap()]);
    assert_eq!(std::fs::read(h.join("d/sub/b")).unwrap(), b"b\n");
    s.ok(&["cp", "cpx:/vol/v", h.join("renamed").to_str().unwrap()]);
    assert_eq!(std::fs::read(h.join("renamed")).unwrap(), b"v\n", "volume content, renamed at the destination");
    // Into the stopped container: a write into the volume lands in the volume.
    std::fs::write(h.join("hf"), b"host file\n").unwrap();
    std::os::unix::fs::chown(h.join("hf"), Some(1234), Some(1234)).unwrap();
    s.ok(&["cp", h.join("hf").to_str().unwrap(), "cpx:/vol/"]);
    let data = s.root.join("volumes/cpvol/_data");
    assert_eq!(std::fs::read(data.join("hf")).unwrap(), b"host file\n");
    assert_eq!(std::fs::metadata(data.join("hf")).unwrap().uid(), 0, "root's without -a");
    s.ok(&["cp", "-a", h.join("hf").to_str().unwrap(), "cpx:/d/kept"]);
    assert_eq!(s.ok(&["run", "--rm", "--volumes-from", "cpx", "busybox", "true"]), "");
    // A symlink in the container resolves in the container, both ways: /vol/esc -> /etc.
    let marker = format!("strata-cp-escape-{}", std::process::id());
    let out = s.cmd(&["cp", "cpx:/vol/esc/passwd", "-"]).output().unwrap();
    let mut a = tar::Archive::new(&out.stdout[..]);
    let mut passwd = String::new();
    std::io::Read::read_to_string(&mut a.entries().unwrap().next().unwrap().unwrap(), &mut passwd).unwrap();
    assert!(passwd.starts_with("root:x:0:0:root:/root:/bin/sh\n"), "the image's passwd, not the host's: {passwd}");
    std::fs::write(h.join(&marker), b"x").unwrap();
    s.ok(&["cp", h.join(&marker).to_str().unwrap(), "cpx:/vol/esc/"]);
    assert!(!std::path::Path::new("/etc").join(&marker).exists(), "nothing written to the host's /etc");
    // A running container: its own mount namespace.
    s.ok(&["run", "-d", "--name", "cpr", "-v", "cpvol:/data", "busybox", "sleep", "60"]);
    s.ok(&["cp", h.join("renamed").to_str().unwrap(), "cpr:/data/"]);
    assert_eq!(s.ok(&["exec", "cpr", "cat", "/data/renamed"]), "v\n");
    assert!(data.join("renamed").exists());
    assert!(s.cmd(&["cp", &format!("cpx:/etc/{marker}"), "-"]).output().unwrap().status.success(), "it went to cpx's own /etc");
    // docker's errors.
    let e = s.run(&["cp", "cpx:/nonexist", h.to_str().unwrap()]);
    assert_eq!((e.status.code(), stderr(&e)), (Some(1), "Error response from daemon: Could not find the file /nonexist in container cpx\n".into()));
    let e = s.run(&["cp", "cpx:/d/a", "/nonexistent-dir-strata/x"]);
    assert_eq!(stderr(&e), "invalid output path: directory \"/nonexistent-dir-strata\" does not exist\n");
    let e = s.run_stdin(&["cp", "-", "cpx:/d/a"], b"");
    assert_eq!(stderr(&e), "Error response from daemon: destination \"cpx:/d/a\" must be a directory\n");
    // Read-only mounts and a read-only rootfs refuse, with docker's messages.
    let ro = format!("{}:/ro:ro", h.display());
    s.ok(&["run", "-d", "--name", "cpro", "--read-only", "-v", &ro, "-v", "cprw:/rw", "busybox", "sleep", "60"]);
    let f = h.join("hf");
    let e = s.run(&["cp", f.to_str().unwrap(), "cpro:/ro/"]);
    assert_eq!((e.status.code(), stderr(&e)), (Some(1), "Error response from daemon: mounted volume is marked read-only\n".into()));
    let e = s.run(&["cp", f.to_str().unwrap(), "cpro:/tmp/"]);
    assert_eq!(stderr(&e), "Error response from daemon: container rootfs is marked read-only\n");
    s.ok(&["cp", f.to_str().unwrap(), "cpro:/rw/"]);
    assert_eq!(s.ok(&["exec", "cpro", "cat", "/rw/hf"]), "host file\n", "a writable volume of a read-only container");
    s.ok(&["rm", "-f", "cpro"]);
    s.ok(&["rm", "-f", "cpr", "cpx"]);
}

/// Drives `strata <args>` on a real pty (python's pty module): sends `input` chunks,
/// each after the previous output contained its `expect`, and returns the exit status
/// and everything read.
fn on_pty(s: &Strata, args: &[&str], steps: &[(&str, &str)]) -> (i32, String) {
    let script = r#"
import os, pty, sys, select, time, json
args, steps = json.loads(sys.argv[1]), json.loads(sys.argv[2])
pid, fd = pty.fork()
if pid == 0:
    os.execv(args[0], args)
out = b""
def read_for(secs, until=None):
    global out
    end = time.time() + secs
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return
            if not data:
                return
            out += data
            if until is not None and until.encode() in out:
                return
for expect, send in steps:
    if expect:
        read_for(10, expect)
    else:
        time.sleep(0.3)
    if send.startswith("@sleep "):
        time.sleep(float(send.split()[1]))
        continue
    if send.startswith("@winsz "):
        import fcntl, struct, termios
        rows, cols = map(int, send.split()[1:])
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        time.sleep(0.3)
        continue
    os.write(fd, send.encode())
read_for(3)
status = None
for _ in range(200):
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        status = os.waitstatus_to_exitcode(st)
        break
    time.sleep(0.05)
if status is None:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    status = -9
print(status)
sys.stdout.write(out.decode(errors="replace"))
"#;
    let mut full = vec![env!("CARGO_BIN_EXE_strata").to_string(), "--data-root".into(), s.root.display().to_string()];
    full.extend(args.iter().map(|a| a.to_string()));
    let steps: Vec<(String, String)> = steps.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    let o = Command::new("python3").arg("-c").arg(script).arg(serde_json::to_string(&full).unwrap()).arg(serde_json::to_string(&steps).unwrap()).output().unwrap();
    let text = stdout(&o);
    let (code, rest) = text.split_once('\n').unwrap_or(("-1", ""));
    (code.trim().parse().unwrap_or(-1), rest.to_string())
}

#[test]
fn attach_on_a_terminal_and_detach_with_the_keys() {
    let s = Strata::new();
    s.import_busybox("busybox");
    s.ok(&["run", "-d", "-i", "-t", "--name", "tt1", "busybox", "sh"]);
    let (code, out) = on_pty(&s, &["attach", "tt1"], &[("", "echo hi-$((40+2))\n"), ("hi-42", "\x10\x11")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("hi-42"), "{out}");
    assert_eq!(s.ok(&["inspect", "-f", "{{.State.Running}}", "tt1"]), "true\n", "detaching leaves it running");
    // Custom keys; then `exit` ends the container and the attach with its code.
    let (code, out) = on_pty(&s, &["attach", "--detach-keys", "ctrl-a,x", "tt1"], &[("", "\x01x")]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = on_pty(&s, &["attach", "tt1"], &[("", "exit 3\n")]);
    assert_eq!(code, 3, "{out}");
    assert_eq!(s.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "tt1"]), "exited 3\n");
    let e = s.run(&["attach", "tt1"]);
    assert!(stderr(&e).contains("You cannot attach to a stopped container, start it first"), "{}", stderr(&e));
    let e = s.run(&["attach", "--detach-keys", "ctrl-zz", "tt1"]);
    assert_eq!((e.status.code(), stderr(&e)), (Some(1), "Invalid detach keys (ctrl-zz) provided\n".into()));
    // run -it on a terminal: the same keys detach from a new container.
    let (code, out) = on_pty(&s, &["run", "-it", "--name", "tt2", "busybox", "sh"], &[("", "echo in-$((1+1))\n"), ("in-2", "\x10\x11")]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(s.ok(&["inspect", "-f", "{{.State.Running}}", "tt2"]), "true\n");
    s.ok(&["rm", "-f", "tt1", "tt2"]);
}

#[test]
fn stats_reads_the_cgroups() {
    let s = Strata::new();
    s.import_busybox("busybox");
    s.ok(&["run", "-d", "--name", "busy", "-m", "64m", "busybox", "sh", "-c", "while true; do :; done"]);
    s.ok(&["create", "--name", "idle", "busybox"]);
    let out = s.ok(&["stats", "--no-stream", "busy", "idle"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0].split("  ").filter(|x| !x.is_empty()).map(str::trim).collect::<Vec<_>>(), ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]);
    let fmt = "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}";
    let rows = s.ok(&["stats", "--no-stream", "--format", fmt, "busy", "idle"]);
    let busy: Vec<&str> = rows.lines().next().unwrap().split('|').collect();
    assert_eq!(busy[0], "busy");
    let cpu: f64 = busy[1].trim_end_matches('%').parse().unwrap();
    assert!(cpu > 30.0, "a spinning shell uses a CPU: {rows}");
    assert!(busy[2].ends_with(" / 64MiB"), "the memory limit: {rows}");
    assert_eq!(busy[3], "1");
    assert_eq!(rows.lines().nth(1).unwrap(), "idle|0.00%|0B / 0B|0", "a container that does not run");
    s.ok(&["rm", "-f", "busy", "idle"]);
}

#[test]
fn update_changes_limits_of_a_running_container_and_its_record() {
    let s = Strata::new();
    s.import_busybox("busybox");
    s.ok(&["run", "-d", "--name", "up", "-m", "64m", "busybox", "sleep", "60"]);
    assert_eq!(s.ok(&["update", "-m", "128m", "--cpus", "0.5", "--pids-limit", "3", "--restart", "on-failure:2", "up"]), "up\n");
    let fmt = "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}";
    assert_eq!(s.ok(&["inspect", "-f", fmt, "up"]), "134217728 500000000 3 on-failure:2\n");
    assert!(s.ok(&["stats", "--no-stream", "--format", "{{.MemUsage}}", "up"]).ends_with(" / 128MiB\n"));
    // The pids limit is live: the fourth process cannot be made.
    let out = s.run(&["exec", "up", "sh", "-c", "sleep 1 & sleep 1 & sleep 1 & wait"]);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    let e = s.run(&["update", "-m", "1k", "up"]);
    assert_eq!(stderr(&e), "Error response from daemon: Minimum memory limit allowed is 6MB\n");
    let e = s.run(&["update", "up"]);
    assert_eq!(stderr(&e), "you must provide one or more flags when using this command\n");
    s.ok(&["rm", "-f", "up"]);
}

#[test]
fn exec_with_a_terminal_gets_its_own_pty() {
    let s = Strata::new();
    s.import_busybox("busybox");
    s.ok(&["run", "-d", "--name", "xt", "busybox", "sleep", "60"]);
    // A script, not an interactive shell: busybox's line editor queries the cursor
    // position, which only a real terminal answers.
    let script = "trap 'echo trapped' INT; tty; echo v=$((6*7)); read line; echo got=$line; sleep 20; echo after=$?; exit 5";
    // ctrl-c only once `sleep` runs (before, it would only reach the shell's trap).
    let steps = [("v=42", "hello\n"), ("got=hello", "@sleep 0.7"), ("", "\x03")];
    let (code, out) = on_pty(&s, &["exec", "-it", "xt", "sh", "-c", script], &steps);
    assert!(out.contains("/dev/pts/"), "a pty inside: {out}");
    assert!(out.contains("after=130"), "ctrl-c reached the foreground process: {out}");
    assert_eq!(code, 5, "{out}");
    // The session's pty follows the terminal's size (SIGWINCH).
    let steps = [("ready", "@winsz 33 111"), ("", "\n")];
    let (_, out) = on_pty(&s, &["exec", "-it", "xt", "sh", "-c", "echo ready; read x; stty size"], &steps);
    assert!(out.contains("33 111"), "{out}");
    // Without -i: output only, through the pty (one stream, \r\n line ends).
    let o = s.run(&["exec", "-t", "xt", "sh", "-c", "echo a; echo b >&2"]);
    assert_eq!(stdout(&o), "a\r\nb\r\n");
    assert_eq!(s.ok(&["top", "xt"]).lines().count(), 2, "nothing left behind");
    s.ok(&["rm", "-f", "xt"]);
}
