//! The live container (issue 5): the writable layer seen through `diff`.

mod common;

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
