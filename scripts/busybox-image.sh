#!/bin/sh
# Builds a busybox root filesystem tarball from Debian's busybox-static — the image the
# README, the tests and the benchmarks use, since no image can be pulled here.
# Usage: scripts/busybox-image.sh OUT.tar
set -eu
out=${1:?usage: busybox-image.sh OUT.tar}
if ! command -v busybox >/dev/null 2>&1 || ! busybox --list >/dev/null 2>&1; then
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi
bb=$(command -v busybox)
R=$(mktemp -d)
trap 'rm -rf "$R"' EXIT
mkdir -p "$R/bin" "$R/etc" "$R/tmp" "$R/proc" "$R/sys" "$R/dev" "$R/root" "$R/var" "$R/usr/bin" "$R/home"
cp "$bb" "$R/bin/busybox"
for c in $("$R/bin/busybox" --list); do [ "$c" = busybox ] || ln -sf busybox "$R/bin/$c"; done
chmod 1777 "$R/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$R/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$R/etc/group"
# Fixed owner and times so the tarball (and so the image id) is reproducible.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2024-01-01 00:00:00Z' -C "$R" -cf "$out" .
