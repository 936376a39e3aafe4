#!/usr/bin/env python3
"""Writes the benchmark tree: 100 dirs x 200 files of 4 KiB random data + one 256 MiB
random file (~335 MB), then a tar of it. Usage: gen-data.py DIR"""
import os, sys, tarfile

root = sys.argv[1]
tree = os.path.join(root, "tree")
if not os.path.exists(os.path.join(root, "data.tar")):
    os.makedirs(tree, exist_ok=True)
    for d in range(100):
        p = os.path.join(tree, "data", f"d{d:03}")
        os.makedirs(p, exist_ok=True)
        for f in range(200):
            with open(os.path.join(p, f"f{f:03}"), "wb") as fh:
                fh.write(os.urandom(4096))
    with open(os.path.join(tree, "data", "big"), "wb") as fh:
        for _ in range(256):
            fh.write(os.urandom(1 << 20))
    with tarfile.open(os.path.join(root, "data.tar"), "w", format=tarfile.PAX_FORMAT) as t:
        t.add(tree, arcname=".")
print(os.path.join(root, "data.tar"))
