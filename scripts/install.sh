#!/bin/sh
# Sets strata up on a fresh machine: build dependencies, the binary (cargo install), and
# a busybox image imported from Debian's busybox-static; then runs a container from it.
set -eu
cd "$(dirname "$0")/.."
need=""
for p in busybox-static gcc pkg-config tini runc; do dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"; done
if [ -n "$need" ]; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi
cargo install --locked --quiet --path crates/strata --root /usr/local
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
scripts/busybox-image.sh "$t/busybox.tar"
strata image inspect busybox >/dev/null 2>&1 || strata import -c 'CMD ["sh"]' "$t/busybox.tar" busybox:latest
strata images
strata run --rm busybox echo hello
