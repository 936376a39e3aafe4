#!/bin/sh
# Runs the whole test suite. Needs root (tests mount overlays and create device nodes).
# Differential tests compare with the reference docker when `docker info` works
# (../shared/peers/setup.sh starts it) and say they were skipped otherwise.
set -eu
cd "$(dirname "$0")/.."
need=""
for p in busybox-static gcc pkg-config tini runc; do dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"; done
if [ -n "$need" ]; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi
exec cargo test --locked --workspace --no-fail-fast "$@"
