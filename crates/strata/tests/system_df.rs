//! `strata system df [-v] [--format]`: docker's summary and verbose tables, sizes of
//! images, container layers and volumes, reclaimable space; plus a differential test of
//! the layout against the reference docker when it runs.

mod common;


use common::*;
use serde_json::Value;

const SUMMARY_HEADER: &str = "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE";

/// The summary rows as JSON objects, keyed by `Type`.
fn summary(s: &Strata) -> Vec<Value> {
    s.ok(&["system", "df", "--format", "{{json .}}"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn row<'a>(rows: &'a [Value], typ: &str) -> &'a Value {
    rows.iter().find(|r| r["Type"] == typ).unwrap_or_else(|| panic!("no {typ} row in {rows:?}"))
}

/// The whitespace-separated fields of the line of `out` starting with `first`.
fn fields_of(out: &str, first: &str) -> Vec<String> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no line for {first} in:\n{out}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn summary_verbose_sizes_links_and_reclaimable() {
    let s = Strata::new();
    // Empty: docker's four rows, all zero.
    let out = s.ok(&["system", "df"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], SUMMARY_HEADER);
    assert_eq!(&lines[1..], ["Images          0         0         0B        0B", "Containers      0         0         0B        0B", "Local Volumes   0         0         0B        0B", "Build Cache     0         0         0B        0B"]);

    s.import_busybox("busybox");
    let r = summary(&s);
    let images = row(&r, "Images");
    assert_eq!((images["TotalCount"].as_str(), images["Active"].as_str()), (Some("1"), Some("0")));
    assert!(images["Reclaimable"].as_str().unwrap().ends_with(" (100%)"), "{images}");
    assert_eq!(images["Size"], images["Reclaimable"].as_str().unwrap().trim_end_matches(" (100%)"));

    // A volume with 1 MiB written by one container (plus a hardlink to it, counted once),
    // held by a second, stopped one; a third container has a small writable layer.
    s.ok(&["volume", "create", "dfvol"]);
    s.ok(&["run", "--name", "writer", "-v", "dfvol:/d", "busybox", "sh", "-c", "dd if=/dev/zero of=/d/f bs=1024 count=1024 2>/dev/null && ln /d/f /d/hard && echo hi > /tmp/x"]);
    s.ok(&["create", "--name", "holder", "-v", "dfvol:/e", "busybox", "true"]);
    // An option-backed volume is not listed (docker leaves those out of system df).
    s.ok(&["volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "tmpvol"]);

    let r = summary(&s);
    let vols = row(&r, "Local Volumes");
    assert_eq!((vols["TotalCount"].as_str(), vols["Active"].as_str()), (Some("1"), Some("1")));
    assert_eq!(vols["Size"], "1.049MB", "{vols}");
    assert_eq!(vols["Reclaimable"], "0B (0%)");
    let ctrs = row(&r, "Containers");
    assert_eq!((ctrs["TotalCount"].as_str(), ctrs["Active"].as_str()), (Some("2"), Some("0")));
    assert_eq!(ctrs["Size"], "3B", "/tmp/x in writer's layer: {ctrs}");
    assert_eq!(ctrs["Reclaimable"], "3B (100%)");
    let images = row(&r, "Images");
    assert_eq!(images["Active"], "1");
    assert_eq!(images["Reclaimable"], "0B (0%)", "the only image is in use");
    assert_eq!(row(&r, "Build Cache")["Size"], "0B");

    // -v: docker's four sections.
    let v = s.ok(&["system", "df", "-v"]);
    let expect_order = ["Images space usage:", "Containers space usage:", "Local Volumes space usage:", "Build cache usage: 0B"];
    let mut at = 0;
    for h in expect_order {
        let i = v[at..].find(&format!("{h}\n\n")).unwrap_or_else(|| panic!("no {h:?} after byte {at}:\n{v}"));
        at += i + h.len();
    }
    assert!(v.starts_with("Images space usage:\n\nREPOSITORY   TAG       IMAGE ID       CREATED"), "{v}");
    let heads: Vec<Vec<&str>> = v.lines().filter(|l| l.starts_with("REPOSITORY") || l.starts_with("CONTAINER ID") || l.starts_with("VOLUME NAME") || l.starts_with("CACHE ID")).map(|l| l.split("  ").map(str::trim).filter(|x| !x.is_empty()).collect()).collect();
    assert_eq!(
        heads,
        [
            vec!["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"],
            vec!["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS", "NAMES"],
            vec!["VOLUME NAME", "LINKS", "SIZE"],
            vec!["CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "LAST USED", "USAGE", "SHARED"],
        ]
    );
    assert_eq!(fields_of(&v, "dfvol"), ["dfvol", "2", "1.049MB"]);
    assert!(!v.contains("tmpvol"), "{v}");
    let img = fields_of(&v, "busybox");
    assert_eq!(img[1], "latest");
    assert_eq!(img.last().unwrap(), "2", "two containers use the image: {img:?}");
    assert_eq!(img[img.len() - 3], "0B", "shared size: {img:?}");
    let writer = v.lines().find(|l| l.ends_with(" writer")).unwrap();
    assert!(writer.contains("   busybox   \"sh -c 'dd if=/dev/z…\"   1               3B "), "{writer}");
    assert!(writer.contains("Exited (0)"), "{writer}");
    assert!(v.ends_with("\nBuild cache usage: 0B\n\nCACHE ID   CACHE TYPE   SIZE      CREATED   LAST USED   USAGE     SHARED\n"), "{v}");

    // --format: the whole usage at once; strata's UsedBy names the holders.
    let j: Value = serde_json::from_str(&s.ok(&["system", "df", "-v", "--format", "{{json .}}"])).unwrap();
    let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["Images", "Containers", "Volumes", "BuildCache"]);
    assert_eq!(j["BuildCache"], serde_json::json!([]));
    let vol = &j["Volumes"][0];
    assert_eq!((vol["Name"].as_str(), vol["Links"].as_str(), vol["Size"].as_str()), (Some("dfvol"), Some("2"), Some("1.049MB")));
    assert_eq!(vol["UsedBy"], "holder,writer");
    assert_eq!(j["Images"][0]["ID"].as_str().unwrap().len(), 71, "not truncated outside tables");
    assert_eq!(j["Images"][0]["Size"].as_str().unwrap(), s.ok(&["images", "--format", "{{.Size}}"]).trim(), "the image's size as `images` shows it");
    assert_eq!(j["Images"][0]["UniqueSize"], j["Images"][0]["VirtualSize"], "nothing shared");
    let used = s.ok(&["system", "df", "-v", "--format", "{{range .Volumes}}{{.Name}}={{.UsedBy}};{{end}}"]);
    assert_eq!(used, "dfvol=holder,writer;", "no newline added, as docker");

    // Without containers everything is reclaimable.
    s.ok(&["rm", "writer", "holder"]);
    let r = summary(&s);
    assert_eq!(row(&r, "Local Volumes")["Reclaimable"], "1.049MB (100%)");
    assert_eq!(row(&r, "Local Volumes")["Active"], "0");
    assert_eq!(row(&r, "Containers")["Size"], "0B");
    assert!(row(&r, "Images")["Reclaimable"].as_str().unwrap().ends_with("(100%)"));
    assert_eq!(fields_of(&s.ok(&["system", "df", "-v"]), "dfvol"), ["dfvol", "0", "1.049MB"]);

    // Bad templates are usage errors, as elsewhere.
    let out = s.run(&["system", "df", "--format", "{{.Nope"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("template parsing error"), "{}", stderr(&out));
}

#[test]
fn shared_layers_count_once() {
    let s = Strata::new();
    // Two images over one layer (different configs) share its size; the layer counts once.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.tar"), tar_of(&[("base", &[7u8; 5000])])).unwrap();
    std::fs::write(dir.path().join("top.tar"), tar_of(&[("top", &[9u8; 300])])).unwrap();
    let base = dir.path().join("base.tar");
    s.ok(&["import", "-c", "ENV A=1", base.to_str().unwrap(), "one:v1"]);
    s.ok(&["import", "-c", "ENV A=2", base.to_str().unwrap(), "two:v1"]);
    s.ok(&["import", dir.path().join("top.tar").to_str().unwrap(), "three:v1"]);
    let j: Value = serde_json::from_str(&s.ok(&["system", "df", "-v", "--format", "json"])).unwrap();
    let images = j["Images"].as_array().unwrap();
    assert_eq!(images.len(), 3, "{j}");
    let by = |repo: &str| images.iter().find(|i| i["Repository"] == repo).unwrap();
    for repo in ["one", "two"] {
        let i = by(repo);
        assert_eq!(i["SharedSize"], "5kB", "{i}");
        assert_eq!(i["UniqueSize"], "0B", "{i}");
        assert_eq!(i["Size"], "5kB", "{i}");
    }
    let three = by("three");
    assert_eq!((three["SharedSize"].as_str(), three["UniqueSize"].as_str()), (Some("0B"), Some("300B")));
    let r = summary(&s);
    assert_eq!(row(&r, "Images")["Size"], "5.3kB", "the shared layer is counted once: {r:?}");
    assert_eq!(row(&r, "Images")["Reclaimable"], "5.3kB (100%)");
    let out = s.ok(&["system", "df", "-v"]);
    let three = fields_of(&out, "three");
    assert_eq!(three[2].len(), 12, "truncated id in the table: {three:?}");
    assert_eq!(three[1], "v1");
}


struct DockerCleanup(Vec<Vec<String>>);
impl Drop for DockerCleanup {
    fn drop(&mut self) {
        for c in &self.0 {
            let args: Vec<&str> = c.iter().map(String::as_str).collect();
            let _ = docker(&args);
        }
    }
}

/// The header lines (whitespace-normalised) and section lines of `df -v`, and the
/// summary's first column.
fn layout(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| {
            l.is_empty()
                || l.ends_with("usage:")
                || l.starts_with("Build cache usage:")
                || ["TYPE ", "REPOSITORY ", "CONTAINER ID ", "VOLUME NAME ", "CACHE ID "].iter().any(|h| l.starts_with(h))
        })
        .map(|l| if l.starts_with("Build cache usage:") { "Build cache usage:".to_string() } else { l.split_whitespace().collect::<Vec<_>>().join(" ") })
        .collect()
}

#[test]
fn differential_layout_against_docker() {
    if !reference_docker() {
        eprintln!("skipped: the reference docker is not running (sh ../shared/peers/setup.sh docker)");
        return;
    }
    let pid = std::process::id();
    let vol = format!("strata-df-{pid}");
    let name = format!("strata-df-{pid}");
    let tag = format!("strata-df-img:{pid}");
    let _cleanup = DockerCleanup(vec![
        vec!["rm".into(), "-f".into(), name.clone()],
        vec!["volume".into(), "rm".into(), "-f".into(), vol.clone()],
        vec!["rmi".into(), "-f".into(), tag.clone()],
    ]);
    docker_ok(&["import", "-c", r#"CMD ["sh"]"#, busybox_tar().to_str().unwrap(), &tag]);
    let s = Strata::new();
    s.import_busybox(&tag);
    let script = "dd if=/dev/zero of=/d/f bs=1024 count=1024 2>/dev/null; echo hi > /tmp/x";
    let mount = format!("{vol}:/d");
    docker_ok(&["run", "--name", &name, "-v", &mount, &tag, "sh", "-c", script]);
    s.ok(&["run", "--name", &name, "-v", &mount, &tag, "sh", "-c", script]);

    // Summary: same header, same row names, same row keys in --format json.
    let (d, o) = (docker_ok(&["system", "df"]), s.ok(&["system", "df"]));
    assert_eq!(o.lines().next(), d.lines().next());
    let first = |t: &str| t.lines().skip(1).map(|l| l.split("  ").next().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(first(&o), first(&d));
    let keys = |t: &str| -> Vec<Vec<String>> {
        t.lines().map(|l| serde_json::from_str::<Value>(l).unwrap().as_object().unwrap().keys().cloned().collect()).collect()
    };
    assert_eq!(keys(&s.ok(&["system", "df", "--format", "json"])), keys(&docker_ok(&["system", "df", "--format", "json"])));
    let raw = |t: &str| t.lines().map(|l| l.split(':').next().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(raw(&s.ok(&["system", "df", "--format", "raw"])), raw(&docker_ok(&["system", "df", "--format", "raw"])));

    // Verbose: the same sections and column headers; our volume and container rows read the same.
    let (d, o) = (docker_ok(&["system", "df", "-v"]), s.ok(&["system", "df", "-v"]));
    assert_eq!(layout(&o), layout(&d), "ours:\n{o}\ndocker's:\n{d}");
    assert_eq!(fields_of(&o, &vol), fields_of(&d, &vol));
    let ctr = |t: &str| -> Vec<String> {
        let l = t.lines().find(|l| l.ends_with(&format!(" {name}"))).unwrap();
        // Less the id and the clock columns.
        l.split("   ").map(str::trim).filter(|x| !x.is_empty()).skip(1).filter(|x| !x.contains("ago")).map(str::to_string).collect()
    };
    assert_eq!(ctr(&o), ctr(&d));

    // --format json of -v: the same keys for each kind of row (strata adds UsedBy to volumes).
    let dj: Value = serde_json::from_str(&docker_ok(&["system", "df", "-v", "--format", "{{json .}}"])).unwrap();
    let oj: Value = serde_json::from_str(&s.ok(&["system", "df", "-v", "--format", "{{json .}}"])).unwrap();
    let top = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(top(&oj), top(&dj));
    for kind in ["Images", "Containers", "Volumes"] {
        let k = |v: &Value| v[kind][0].as_object().map(|m| m.keys().filter(|k| *k != "UsedBy").cloned().collect::<Vec<_>>());
        assert_eq!(k(&oj), k(&dj), "{kind}");
    }
    let raw_keys = |t: &str| t.lines().map(|l| l.split(':').next().unwrap().to_string()).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(raw_keys(&s.ok(&["system", "df", "-v", "--format", "raw"])), raw_keys(&docker_ok(&["system", "df", "-v", "--format", "raw"])));
    let ov = oj["Volumes"].as_array().unwrap().iter().find(|v| v["Name"] == vol.as_str()).unwrap();
    let dv = dj["Volumes"].as_array().unwrap().iter().find(|v| v["Name"] == vol.as_str()).unwrap();
    for k in ["Links", "Size", "Driver", "Scope", "Labels"] {
        assert_eq!(ov[k], dv[k], "volume {k}");
    }
}
