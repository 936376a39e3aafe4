#!/usr/bin/env bash
# Issue 4: volume seeding. An image whose VOLUME /data holds ~335 MB in ~20k files;
# `create` (which seeds the anonymous volume) + `rm -v`, strata against docker.
set -euo pipefail
cd "$(dirname "$0")/.."
STRATA=${STRATA:-target/release/strata}
W=${BENCH_DIR:-/var/tmp/strata-bench}
ROUNDS=${ROUNDS:-3}
export STRATA_DATA_ROOT="$W/root-vol"
have_docker=0; docker info >/dev/null 2>&1 && have_docker=1
python3 bench/gen-data.py "$W" >/dev/null
sh scripts/busybox-image.sh "$W/busybox.tar"
# busybox + the data tree as one layer, with VOLUME /data.
rm -rf "$W/seedroot"; mkdir -p "$W/seedroot"; tar -C "$W/seedroot" -xf "$W/busybox.tar"; tar -C "$W/seedroot" -xf "$W/data.tar"
tar -C "$W/seedroot" -cf "$W/seed.tar" .
$STRATA image inspect seedimg >/dev/null 2>&1 || $STRATA import -c 'VOLUME /data' -c 'CMD ["true"]' "$W/seed.tar" seedimg >/dev/null
[ $have_docker = 1 ] && { docker image inspect seedimg >/dev/null 2>&1 || docker import -c 'VOLUME /data' -c 'CMD ["true"]' "$W/seed.tar" seedimg >/dev/null; }
now() { date +%s%N; }
s=(); d=()
for r in $(seq "$ROUNDS"); do
  sync; t=$(now); id=$($STRATA create seedimg); $STRATA rm -v "$id" >/dev/null; s+=($(( $(now) - t )))
  if [ $have_docker = 1 ]; then sync; t=$(now); id=$(docker create seedimg); docker rm -v "$id" >/dev/null; d+=($(( $(now) - t ))); fi
done
best() { printf '%s\n' "$@" | sort -n | head -1; }
sec() { echo "scale=2; $1 / 1000000000" | bc; }
printf '%-44s %8s %8s %8s\n' "create + rm -v, seeding 335 MB (best of $ROUNDS)" strata docker ratio
sb=$(best "${s[@]}"); if [ $have_docker = 1 ]; then db=$(best "${d[@]}"); else db=0; fi
printf '%-44s %8s %8s %8s\n' "" "$(sec "$sb")s" "$(sec "$db")s" "$(echo "scale=1; $db / $sb" | bc)x"
