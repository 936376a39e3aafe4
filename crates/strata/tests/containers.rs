//! Containers end to end: real processes in real namespaces on real overlay mounts.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn with_busybox() -> Strata {
    let s = Strata::new();
    s.import_busybox("busybox");
    s
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn run_rm_echo_and_exit_codes() {
    let s = with_busybox();
    let out = s.run(&["run", "--rm", "busybox", "echo", "hello"]);
    assert_eq!(stdout(&out), "hello\n", "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(s.ok(&["ps", "-aq"]), "", "--rm left the container");
    assert_eq!(s.run(&["run", "--rm", "busybox", "sh", "-c", "echo err >&2; exit 3"]).status.code(), Some(3));
    let out = s.run(&["run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2"]);
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(stderr(&out), "err\n");

    let out = s.run(&["run", "--rm", "busybox", "nonexistent-cmd"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(stderr(&out).contains("exec: \"nonexistent-cmd\": executable file not found in $PATH"), "{}", stderr(&out));
    let out = s.run(&["run", "--rm", "busybox", "/tmp"]);
    assert_eq!(out.status.code(), Some(126));
    assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));
    let out = s.run(&["run", "--rm", "nonexistent-image"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).starts_with("Unable to find image 'nonexistent-image:latest' locally\n"), "{}", stderr(&out));
    assert_eq!(s.ok(&["ps", "-aq"]), "");
    // A child killed by a signal: the shell reports 128+9.
    assert_eq!(s.run(&["run", "--rm", "busybox", "sh", "-c", "sleep 10 & kill -9 $!; wait $!"]).status.code(), Some(137));
}

#[test]
fn environment_hostname_user_workdir() {
    let s = with_busybox();
    let env = s.ok(&["run", "--rm", "-h", "myhost", "-e", "A=1", "busybox", "env"]);
    let mut lines: Vec<&str> = env.lines().collect();
    lines.sort();
    assert!(lines.contains(&"HOSTNAME=myhost"), "{env}");
    assert!(lines.contains(&"HOME=/root"), "{env}");
    assert!(lines.contains(&"A=1"), "{env}");
    assert!(lines.iter().any(|l| l.starts_with("PATH=/usr/local/sbin:")), "{env}");
    assert!(!lines.iter().any(|l| l.starts_with("TERM=")), "{env}");
    assert_eq!(s.ok(&["run", "--rm", "-h", "myhost", "busybox", "hostname"]), "myhost\n");
    assert_eq!(s.ok(&["run", "--rm", "-u", "nobody", "busybox", "id", "-u"]), "65534\n");
    assert_eq!(s.ok(&["run", "--rm", "-w", "/etc", "busybox", "pwd"]), "/etc\n");
    assert_eq!(s.ok(&["run", "--rm", "busybox", "sh", "-c", "echo $$"]), "1\n");
    let out = s.run(&["run", "--rm", "-u", "nosuchuser", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("unable to find user nosuchuser"), "{}", stderr(&out));
    // -t: a terminal, with TERM.
    let out = s.ok(&["run", "--rm", "-t", "busybox", "sh", "-c", "[ -t 1 ] && echo tty; echo $TERM"]);
    assert_eq!(out.replace('\r', ""), "tty\nxterm\n");
    // --init: docker-init (tini) is PID 1 and the command its child.
    let ps = s.ok(&["run", "--rm", "--init", "busybox", "ps", "-o", "pid,args"]);
    assert!(ps.lines().nth(1).unwrap().contains("/sbin/docker-init -- ps"), "{ps}");
    // no-new-privileges reaches the process.
    let nnp = s.ok(&["run", "--rm", "--security-opt", "no-new-privileges", "busybox", "grep", "NoNewPrivs", "/proc/self/status"]);
    assert_eq!(nnp.split_whitespace().last(), Some("1"), "{nnp}");
    // The same container through an external OCI runtime.
    if std::path::Path::new("/usr/sbin/runc").exists() {
        assert_eq!(s.ok(&["run", "--rm", "--runtime", "runc", "-h", "viarunc", "busybox", "hostname"]), "viarunc\n");
    }
    // stdin with -i.
    let out = s.run_stdin(&["run", "--rm", "-i", "busybox", "cat"], b"piped\n");
    assert_eq!(stdout(&out), "piped\n");
}

#[test]
fn detached_lifecycle_ps_logs_stop_start_rm() {
    let s = with_busybox();
    let id = s.ok(&["run", "-d", "--name", "web", "busybox", "sh", "-c", "echo started; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done"]).trim().to_string();
    assert_eq!(id.len(), 64);
    wait_until("log line", || s.ok(&["logs", "web"]).contains("started"));
    let ps = s.ok(&["ps"]);
    let lines: Vec<&str> = ps.lines().collect();
    assert!(lines[0].starts_with("CONTAINER ID   IMAGE     COMMAND                  CREATED"), "{ps}");
    assert!(lines[1].starts_with(&id[..12]) && lines[1].contains("Up ") && lines[1].trim_end().ends_with("web"), "{ps}");
    assert!(lines[1].contains("\"sh -c 'echo started…\""), "{ps}");
    let v: Value = serde_json::from_str(&s.ok(&["inspect", "web"])).unwrap();
    let keys: Vec<&str> = v[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(&keys[..8], ["Id", "Created", "Path", "Args", "State", "Image", "ResolvConfPath", "HostnamePath"]);
    assert_eq!(v[0]["State"]["Status"], "running");
    assert!(v[0]["State"]["Pid"].as_i64().unwrap() > 0);
    assert_eq!(v[0]["Name"], "/web");
    assert_eq!(v[0]["Path"], "sh");
    let log_path = v[0]["LogPath"].as_str().unwrap().to_string();
    assert!(std::fs::read_to_string(&log_path).unwrap().contains(r#""log":"started\n","stream":"stdout""#));

    // Name taken.
    let out = s.run(&["run", "-d", "--name", "web", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains(&format!("Conflict. The container name \"/web\" is already in use by container \"{id}\"")), "{}", stderr(&out));
    // rm of a running container is refused.
    let out = s.run(&["rm", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("container is running: stop the container before removing or force remove"), "{}", stderr(&out));

    assert_eq!(s.ok(&["stop", "web"]), "web\n");
    assert_eq!(s.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "web"]), "exited 0\n");
    assert!(s.ok(&["logs", "web"]).ends_with("started\nbye\n"));
    assert_eq!(s.ok(&["ps", "-q"]), "");
    let psa = s.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(psa.starts_with("web Exited (0) "), "{psa}");
    assert_eq!(s.ok(&["wait", "web"]), "0\n");

    // start runs it again on the same writable layer.
    s.ok(&["start", "web"]);
    wait_until("second start", || s.ok(&["logs", "web"]).matches("started").count() == 2);
    assert_eq!(s.ok(&["kill", "web"]), "web\n");
    assert_eq!(s.ok(&["wait", "web"]), "137\n");
    let out = s.run(&["kill", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not running"), "{}", stderr(&out));
    assert_eq!(s.ok(&["rm", "web"]), "web\n");
    let out = s.run(&["inspect", "web"]);
    assert_eq!(stderr(&out).trim(), "Error: No such object: web");
    assert!(s.entries("containers").is_empty(), "{:?}", s.entries("containers"));
}

#[test]
fn writable_layer_survives_stop_and_start() {
    let s = with_busybox();
    let out = s.ok(&["run", "--name", "keep", "busybox", "sh", "-c", "cat /f 2>/dev/null; echo x >> /f"]);
    assert_eq!(out, "");
    assert_eq!(s.ok(&["start", "-a", "keep"]), "x\n");
    assert_eq!(s.ok(&["start", "-a", "keep"]), "x\nx\n");
    s.ok(&["rm", "keep"]);
}

#[test]
fn stop_timeout_then_kill_and_rm_force() {
    let s = with_busybox();
    // PID 1 ignores SIGTERM without a handler: stop must fall back to SIGKILL.
    s.ok(&["run", "-d", "--name", "stubborn", "busybox", "sleep", "1000"]);
    let t = Instant::now();
    s.ok(&["stop", "-t", "1", "stubborn"]);
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert_eq!(s.ok(&["inspect", "-f", "{{.State.ExitCode}}", "stubborn"]), "137\n");
    s.ok(&["start", "stubborn"]);
    assert_eq!(s.ok(&["rm", "-f", "stubborn"]), "stubborn\n");
    assert_eq!(s.ok(&["ps", "-aq"]), "");
}

#[test]
fn restart_policy_on_failure_counts() {
    let s = with_busybox();
    s.ok(&["run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 1"]);
    wait_until("two restarts", || s.ok(&["inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "flaky"]) == "2 exited\n");
    let out = s.run(&["run", "--rm", "--restart", "always", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let out = s.run(&["run", "-d", "--restart", "sometimes", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("invalid restart policy format"), "{}", stderr(&out));
    s.ok(&["rm", "-f", "flaky"]);
}

#[test]
fn killed_supervisor_leaves_a_controllable_container() {
    let s = with_busybox();
    let id = s.ok(&["run", "-d", "busybox", "sleep", "1000"]).trim().to_string();
    // Find the supervisor: the process whose argv is `strata ... __supervise <id>`.
    let sup = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .find(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).map(|c| String::from_utf8_lossy(&c).contains(&format!("__supervise\0{id}"))).unwrap_or(false))
        .expect("supervisor process");
    // SAFETY: killing a test-owned process.
    unsafe { libc::kill(sup, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(s.ok(&["inspect", "-f", "{{.State.Status}}", &id]), "running\n");
    s.ok(&["kill", &id]);
    wait_until("exit recorded", || s.ok(&["inspect", "-f", "{{.State.Status}}", &id]) == "exited\n");
    assert_eq!(s.ok(&["inspect", "-f", "{{.State.ExitCode}}", &id]), "255\n");
    s.ok(&["rm", &id]);
}

#[test]
fn killed_cli_leaves_the_container_running() {
    let s = with_busybox();
    let mut child = s.cmd(&["run", "--name", "fg", "busybox", "sleep", "1000"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_until("container running", || s.ok(&["ps", "--format", "{{.Names}}"]).contains("fg"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(s.ok(&["inspect", "-f", "{{.State.Status}}", "fg"]), "running\n");
    s.ok(&["stop", "-t", "0", "fg"]);
    assert_eq!(s.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "fg"]), "exited 137\n");
    s.ok(&["rm", "fg"]);
}

#[test]
fn ten_parallel_runs_lose_nothing() {
    let s = with_busybox();
    let children: Vec<_> = (0..10)
        .map(|i| s.cmd(&["run", "-d", "--name", &format!("p{i}"), "busybox", "sleep", "30"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let names = s.ok(&["ps", "--format", "{{.Names}}"]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9"]);
    let ids = s.ok(&["ps", "-q"]);
    let ids: Vec<&str> = ids.lines().collect();
    let mut args = vec!["rm", "-f"];
    args.extend(ids);
    s.ok(&args);
    assert_eq!(s.ok(&["ps", "-aq"]), "");
}

#[test]
fn bad_flags_and_values() {
    let s = with_busybox();
    for (args, code, needle) in [
        (vec!["run", "--bogus", "busybox"], 125, "--bogus"),
        (vec!["run", "-m", "12x", "busybox", "true"], 125, "invalid argument \"12x\" for \"-m, --memory\" flag"),
        (vec!["run", "-m", "1k", "busybox", "true"], 125, "Minimum memory limit allowed is 6MB"),
        (vec!["run", "--cpus", "99", "busybox", "true"], 125, "range of CPUs is from 0.01"),
        (vec!["run", "--name=-x", "busybox", "true"], 125, "Invalid container name (-x)"),
        (vec!["run", "--runtime", "nosuchruntime", "busybox", "true"], 125, "unknown or invalid runtime name: nosuchruntime"),
        (vec!["run", "--stop-signal", "SIGFOO", "busybox", "true"], 125, "Invalid signal: SIGFOO"),
    ] {
        let out = s.run(&args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    // An image without a command.
    s.ok(&["import", busybox_tar().to_str().unwrap(), "nocmd"]);
    let out = s.run(&["run", "nocmd"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("No command specified"), "{}", stderr(&out));
    assert_eq!(s.ok(&["ps", "-aq"]), "");
}

#[test]
fn images_in_use_are_not_removed() {
    let s = with_busybox();
    let id = s.ok(&["inspect", "-f", "{{.Id}}", "busybox"]).trim().to_string();
    let cid = s.ok(&["create", "busybox", "true"]).trim().to_string();
    let out = s.run(&["rmi", &id[7..]]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        format!("Error response from daemon: conflict: unable to delete {} (must be forced) - image is being used by stopped container {}", &id[7..19], &cid[..12])
    );
    let out = s.run(&["rmi", "busybox"]);
    assert!(stderr(&out).contains("(must force) - container"), "{}", stderr(&out));
    // Forced: the name goes, the image stays for its container, which still runs.
    assert_eq!(s.ok(&["rmi", "-f", "busybox"]).trim(), "Untagged: busybox:latest");
    assert_eq!(s.ok(&["start", "-a", &cid]), "");
    s.ok(&["rm", &cid]);
}

#[test]
fn binds_and_tmpfs() {
    let s = with_busybox();
    let host = tempfile::Builder::new().prefix("bind-").tempdir_in("/var/tmp").unwrap();
    std::fs::write(host.path().join("f"), "fromhost").unwrap();
    let h = host.path().to_str().unwrap();
    assert_eq!(s.ok(&["run", "--rm", "-v", &format!("{h}:/data"), "busybox", "cat", "/data/f"]), "fromhost");
    // Writes through a bind land on the host; :ro refuses them.
    s.ok(&["run", "--rm", "-v", &format!("{h}:/data"), "busybox", "sh", "-c", "echo in > /data/g"]);
    assert_eq!(std::fs::read_to_string(host.path().join("g")).unwrap(), "in\n");
    let out = s.run(&["run", "--rm", "-v", &format!("{h}:/data:ro"), "busybox", "sh", "-c", "echo x > /data/h"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
    // A missing -v source is created at start; a missing --mount source is an error at create.
    let missing = host.path().join("made");
    s.ok(&["run", "--rm", "-v", &format!("{}:/m", missing.display()), "busybox", "true"]);
    assert!(missing.is_dir());
    let out = s.run(&["create", "--mount", "type=bind,src=/nonexistent-src,target=/x", "busybox"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("bind source path does not exist: /nonexistent-src"), "{}", stderr(&out));
    let out = s.run(&["create", "-v", &format!("{h}:/a"), "--tmpfs", "/a", "busybox"]);
    assert!(stderr(&out).contains("Duplicate mount point: /a"), "{}", stderr(&out));
    let out = s.run(&["create", "-v", ":/x", "busybox"]);
    assert!(stderr(&out).contains("invalid spec: :/x: empty section between colons"), "{}", stderr(&out));
    // tmpfs with docker's default flags and the user's size.
    let m = s.ok(&["run", "--rm", "--tmpfs", "/scratch:size=1m", "busybox", "grep", " /scratch ", "/proc/mounts"]);
    assert!(m.contains("nosuid,nodev,noexec") && m.contains("size=1024k"), "{m}");
    // inspect Mounts as docker shows binds.
    let id = s.ok(&["create", "-v", &format!("{h}:/data:ro"), "busybox"]).trim().to_string();
    assert_eq!(
        s.ok(&["inspect", "-f", "{{json .Mounts}}", &id]).trim(),
        format!(r#"[{{"Type":"bind","Source":"{h}","Destination":"/data","Mode":"ro","RW":false,"Propagation":"rprivate"}}]"#)
    );
    s.ok(&["rm", &id]);
    assert_eq!(s.ok(&["ps", "-aq"]), "");
}

/// Seed 002's way into the machine's own namespaces (`--privileged --pid=host` and
/// nsenter): here the target is this test process, as PID 1 of this sandbox is out of
/// everyone's reach.
#[test]
fn privileged_with_the_hosts_pids_reaches_the_host() {
    let s = with_busybox();
    s.ok(&["volume", "create", "my-volume"]);
    s.ok(&["run", "--rm", "--mount", "source=my-volume,destination=/my-data/", "busybox", "sh", "-c", "echo found > /my-data/hello.txt"]);
    let me = std::process::id().to_string();
    let file = s.root.join("volumes/my-volume/_data/hello.txt");
    let inner = format!("cat {}", file.display());
    let out = s.ok(&["run", "--rm", "--privileged", "--pid=host", "busybox", "nsenter", "-t", &me, "-m", "-u", "-i", "-n", "sh", "-c", &inner]);
    assert_eq!(out, "found\n");
    // Every capability this host can grant, its devices, /sys writable, nothing masked.
    let bnd = std::fs::read_to_string("/proc/self/status").unwrap().lines().find(|l| l.starts_with("CapBnd:")).unwrap().split_whitespace().nth(1).unwrap().to_string();
    let out = s.ok(&["run", "--rm", "--privileged", "busybox", "sh", "-c", "grep CapEff /proc/self/status; mount | grep ' /sys '; test -e /dev/loop-control && echo loop; true"]);
    assert!(out.contains(&format!("CapEff:\t{bnd}")), "{out}");
    assert!(out.contains("sysfs on /sys type sysfs (rw,"), "{out}");
    assert!(out.contains("loop\n") || !std::path::Path::new("/dev/loop-control").exists(), "{out}");
    let plain = s.ok(&["run", "--rm", "busybox", "sh", "-c", "grep CapEff /proc/self/status; mount | grep ' /sys '; test -e /dev/loop-control && echo loop; true"]);
    assert!(plain.contains("CapEff:\t00000000a80425fb"), "{plain}");
    assert!(plain.contains("(ro,"), "{plain}");
    assert!(!plain.contains("loop"), "{plain}");
    // The host's PID namespace: PID 1 is the machine's init, not the container's command.
    let ps = s.ok(&["run", "--rm", "--pid", "host", "busybox", "sh", "-c", "cat /proc/1/comm"]);
    assert_eq!(ps.trim(), std::fs::read_to_string("/proc/1/comm").unwrap().trim());
    let own = s.ok(&["run", "--rm", "busybox", "cat", "/proc/1/comm"]);
    assert_eq!(own.trim(), "cat");
    let bad = s.run(&["run", "--rm", "--pid", "bogus", "busybox", "true"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(stderr(&bad).contains("invalid PID mode: bogus"), "{}", stderr(&bad));
    let id = s.ok(&["create", "--privileged", "--pid=host", "busybox"]).trim().to_string();
    let j: Value = serde_json::from_str(&s.ok(&["inspect", &id])).unwrap();
    assert_eq!(j[0]["HostConfig"]["Privileged"], true);
    assert_eq!(j[0]["HostConfig"]["PidMode"], "host");
}
