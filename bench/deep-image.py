#!/usr/bin/env python3
"""Writes a docker-archive with N one-file layers. Usage: deep-image.py N OUT.tar TAG"""
import hashlib, io, json, sys, tarfile

n, out, tag = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def tar_bytes(files):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, data in files:
            ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = 1700000000
            t.addfile(ti, io.BytesIO(data))
    return b.getvalue()
layers = [tar_bytes([(f"l{i}", f"layer {i}\n".encode())]) for i in range(n)]
diff_ids = ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"]},
                     "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
cname = hashlib.sha256(config).hexdigest() + ".json"
manifest = json.dumps([{"Config": cname, "RepoTags": [tag], "Layers": [f"{i}/layer.tar" for i in range(n)]}]).encode()
with tarfile.open(out, "w") as t:
    def add(name, data):
        ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
    for i, l in enumerate(layers):
        add(f"{i}/layer.tar", l)
    add(cname, config)
    add("manifest.json", manifest)
