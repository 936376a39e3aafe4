//! Image commands end to end on a real data root: import, images, inspect, tag, rmi,
//! history, prune, save and load.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn import_list_inspect_tag_rmi() {
    let s = Strata::new();
    let id = s.import_busybox("busybox");
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let tar = std::fs::read(busybox_tar()).unwrap();
    let diff_id = format!("sha256:{}", sha256_hex(&tar));

    let out = s.ok(&["images"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"), "{out}");
    assert!(lines[1].starts_with(&format!("busybox      latest    {}", &id[7..19])), "{out}");

    let v: Value = serde_json::from_str(&s.ok(&["image", "inspect", "busybox"])).unwrap();
    let img = &v[0];
    let keys: Vec<&str> = img.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "DockerVersion", "Author", "Config", "Architecture", "Os", "Size", "GraphDriver", "RootFS", "Metadata"]
    );
    assert_eq!(img["Id"], id.as_str());
    assert_eq!(img["RepoTags"][0], "busybox:latest");
    assert_eq!(img["RootFS"]["Layers"][0], diff_id.as_str());
    assert_eq!(img["Config"]["Cmd"][0], "sh");
    assert_eq!(img["Comment"], "Imported from -");
    assert!(img["Size"].as_u64().unwrap() > 1_000_000);
    // The stored layer blob is the imported tar, byte for byte.
    assert!(s.blobs().contains(&diff_id[7..].to_string()));

    // Names normalise: all of these are the same image.
    for name in ["busybox", "busybox:latest", "docker.io/library/busybox", "docker.io/library/busybox:latest", &id, &id[7..19], &id[7..10]] {
        assert_eq!(s.ok(&["image", "inspect", "-f", "{{.Id}}", name]).trim(), id, "{name}");
    }

    s.ok(&["tag", "busybox", "localhost:5000/my/box:v1"]);
    let tags = s.ok(&["inspect", "-f", "{{json .RepoTags}}", &id[7..19]]);
    assert_eq!(tags.trim(), r#"["busybox:latest","localhost:5000/my/box:v1"]"#);

    // Removing by id with two names needs -f.
    let out = s.run(&["rmi", &id[7..19]]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        format!("Error response from daemon: conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories", &id[7..19])
    );
    assert_eq!(s.ok(&["rmi", "localhost:5000/my/box:v1"]).trim(), "Untagged: localhost:5000/my/box:v1");
    let out = s.ok(&["rmi", "busybox"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Untagged: busybox:latest");
    assert_eq!(lines[1], format!("Deleted: {id}"));
    assert_eq!(lines[2], format!("Deleted: {diff_id}"));
    assert!(s.blobs().is_empty(), "blobs left: {:?}", s.blobs());
    assert!(s.entries("snapshots").is_empty(), "snapshots left: {:?}", s.entries("snapshots"));
    assert_eq!(s.ok(&["images", "-q"]), "");
}

#[test]
fn import_changes_message_and_errors() {
    let s = Strata::new();
    let bb = busybox_tar().to_str().unwrap();
    let out = s.ok(&[
        "import", "-c", r#"CMD ["sh"]"#, "-c", r#"ENV A=1 B="x y""#, "-c", "EXPOSE 80 53/udp", "-c", "VOLUME /data", "-c", "LABEL a=b",
        "-c", "USER nobody", "-c", "WORKDIR /tmp", "-c", "ENTRYPOINT /bin/sh -c", "-c", "STOPSIGNAL SIGINT", "-m", "hello", bb, "t2:x",
    ]);
    assert!(out.starts_with("sha256:"));
    let cfg = s.ok(&["inspect", "-f", "{{json .Config}}", "t2:x"]);
    assert_eq!(
        cfg.trim(),
        r#"{"User":"nobody","ExposedPorts":{"53/udp":{},"80/tcp":{}},"Env":["A=1","B=x y"],"Entrypoint":["/bin/sh","-c","/bin/sh -c"],"Cmd":["sh"],"Volumes":{"/data":{}},"WorkingDir":"/tmp","Labels":{"a":"b"},"StopSignal":"SIGINT","OnBuild":null}"#
    );
    assert_eq!(s.ok(&["inspect", "-f", "{{.Comment}}", "t2:x"]).trim(), "hello");
    let hist = s.ok(&["history", "t2:x"]);
    assert!(hist.starts_with("IMAGE          CREATED"), "{hist}");
    assert!(hist.lines().nth(1).unwrap().trim_end().ends_with("hello"), "{hist}");

    // Bad input: docker's message, exit 1, nothing stored.
    let before = s.blobs();
    for (args, msg) in [
        (vec!["import", "-c", "RUN echo", bb], "Error response from daemon: run is not a valid change command"),
        (vec!["import", "-c", "FOO bar", bb], "Error response from daemon: foo is not a valid change command"),
        (vec!["import", "/nonexistent.tar"], "open /nonexistent.tar: no such file or directory"),
        (vec!["import", bb, "Bad:Tag"], "invalid reference format: repository name (library/Bad) must be lowercase"),
        (vec!["import", bb, "foo:"], "invalid reference format"),
    ] {
        let out = s.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&out).trim(), msg, "{args:?}");
    }
    assert_eq!(s.blobs(), before);
    // Unknown images and bad references.
    let out = s.run(&["rmi", "nonexist"]);
    assert_eq!(stderr(&out).trim(), "Error response from daemon: No such image: nonexist:latest");
    assert_eq!(out.status.code(), Some(1));
    let out = s.run(&["tag", "nonexist", "foo"]);
    assert_eq!(stderr(&out).trim(), "Error response from daemon: No such image: nonexist:latest");
    let out = s.run(&["image", "inspect", "nonexist"]);
    assert_eq!(stdout(&out).trim(), "[]");
    assert_eq!(stderr(&out).trim(), "Error: No such image: nonexist");
    assert_eq!(out.status.code(), Some(1));
    let out = s.run(&["images", "--bogus"]);
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn import_from_stdin_gzip_and_garbage() {
    let s = Strata::new();
    let tar = std::fs::read(busybox_tar()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let gz = gz.finish().unwrap();
    let out = s.run_stdin(&["import", "-", "gz:1"], &gz);
    assert!(out.status.success(), "{}", stderr(&out));
    // The layer is the decompressed tar: same diff id as the plain import.
    let layers = s.ok(&["inspect", "-f", "{{index .RootFS.Layers 0}}", "gz:1"]);
    assert_eq!(layers.trim(), format!("sha256:{}", sha256_hex(&tar)));
    assert_eq!(s.ok(&["history", "--format", "{{.Comment}}", "gz:1"]).trim(), "Imported from -");

    let out = s.run_stdin(&["import", "-"], b"garbage\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("error processing tar file"), "{}", stderr(&out));
    assert_eq!(s.entries("content/ingest"), Vec::<String>::new());
    assert_eq!(s.entries("tmp"), Vec::<String>::new());
}

#[test]
fn save_load_round_trip_is_byte_exact() {
    let a = Strata::new();
    let id = a.import_busybox("busybox:latest");
    a.ok(&["tag", "busybox", "busybox:other"]);
    let archive = a.cmd(&["save", "busybox"]).output().unwrap();
    assert!(archive.status.success(), "{}", stderr(&archive));
    let tar = std::fs::read(busybox_tar()).unwrap();

    // Both formats in one: docker's manifest.json and an OCI layout.
    let mut ar = tar::Archive::new(&archive.stdout[..]);
    let mut names = Vec::new();
    let mut layer_ok = false;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        if p == format!("blobs/sha256/{}", sha256_hex(&tar)) {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut buf).unwrap();
            layer_ok = buf == tar;
        }
        names.push(p);
    }
    assert!(layer_ok, "layer bytes differ from the imported tar");
    for want in ["oci-layout", "index.json", "manifest.json", "repositories"] {
        assert!(names.contains(&want.to_string()), "{want} missing: {names:?}");
    }

    let b = Strata::new();
    let out = b.run_stdin(&["load"], &archive.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines.sort();
    assert_eq!(lines, ["Loaded image: busybox:latest", "Loaded image: busybox:other"]);
    assert_eq!(b.ok(&["inspect", "-f", "{{.Id}}", "busybox:other"]).trim(), id);
    // Saved again from the loaded store: identical bytes.
    let again = b.cmd(&["save", "busybox"]).output().unwrap();
    assert_eq!(sha256_hex(&again.stdout), sha256_hex(&archive.stdout));

    // -o writes a file; -i reads it; loading twice is idempotent.
    let f = b.root.join("out.tar");
    b.ok(&["save", "-o", f.to_str().unwrap(), &id]);
    let out = b.ok(&["load", "-i", f.to_str().unwrap()]);
    assert_eq!(out.trim(), format!("Loaded image ID: {id}"));
}

#[test]
fn load_rejects_bad_archives_and_changes_nothing() {
    let s = Strata::new();
    // A layer whose content does not match the config's diff id.
    let layer = tar_of(&[("hello", b"world")]);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["sha256:{}"]}}}}"#,
        "0".repeat(64)
    );
    let cfg_hex = sha256_hex(config.as_bytes());
    let manifest = format!(r#"[{{"Config":"{cfg_hex}.json","RepoTags":["bad:1"],"Layers":["l/layer.tar"]}}]"#);
    let archive = tar_of(&[("manifest.json", manifest.as_bytes()), (&format!("{cfg_hex}.json"), config.as_bytes()), ("l/layer.tar", &layer)]);
    let out = s.run_stdin(&["load"], &archive);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("layer sha256:{}", "0".repeat(64))), "{}", stderr(&out));
    assert!(s.blobs().is_empty(), "{:?}", s.blobs());
    assert!(s.entries("snapshots").is_empty());
    assert_eq!(s.ok(&["images", "-q"]), "");

    // A manifest pointing outside the archive.
    let manifest = r#"[{"Config":"../../../../etc/passwd","RepoTags":[],"Layers":[]}]"#;
    let out = s.run_stdin(&["load"], &tar_of(&[("manifest.json", manifest.as_bytes())]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("invalid image archive"), "{}", stderr(&out));
    // Not an archive at all.
    let out = s.run_stdin(&["load"], &tar_of(&[("x", b"y")]));
    assert_eq!(stderr(&out).trim(), "Error response from daemon: invalid image archive: no manifest.json or index.json found");
    assert!(s.entries("tmp").is_empty());
}

#[test]
fn images_filters_and_formats() {
    let s = Strata::new();
    let id = s.import_busybox("busybox");
    let imp = s.ok(&["import", "-c", "LABEL tier=data", busybox_tar().to_str().unwrap()]);
    let dangling = imp.trim();
    assert_ne!(dangling, id, "different config, different id");
    let q = s.ok(&["images", "-q", "--filter", "dangling=true"]);
    assert_eq!(q.trim(), &dangling[7..19]);
    let q = s.ok(&["images", "--filter", "label=tier=data", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert_eq!(q.trim(), format!("<none>:<none> {}", &dangling[7..19]));
    let q = s.ok(&["images", "busybox", "--format", "{{.Repository}}"]);
    assert_eq!(q.trim(), "busybox");
    let q = s.ok(&["images", "--no-trunc", "-q", "--filter", "reference=busy*"]);
    assert_eq!(q.trim(), id);
    let table = s.ok(&["images", "--format", "table {{.ID}}\t{{.Repository}}", "--filter", "dangling=false"]);
    assert_eq!(table, format!("IMAGE ID       REPOSITORY\n{}   busybox\n", &id[7..19]));
    let out = s.run(&["images", "--filter", "bogus=1"]);
    assert_eq!(stderr(&out).trim(), "Error response from daemon: invalid filter 'bogus'");

    let out = s.ok(&["image", "prune", "-f"]);
    assert!(out.starts_with(&format!("Deleted Images:\ndeleted: {dangling}\n")), "{out}");
    assert!(out.trim_end().ends_with("Total reclaimed space: 0B"), "shared layer frees nothing: {out}");
    assert_eq!(s.ok(&["images", "-q"]).trim(), &id[7..19]);
    let out = s.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("untagged: busybox:latest"), "{out}");
    assert!(s.blobs().is_empty());
}
