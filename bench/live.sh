#!/usr/bin/env bash
# Issue 5: the live container against docker, interleaved in one run:
#   diff    of a container that changed 10k files
#   exec    `exec C true`, a whole round trip
#   cp      a 256 MiB file out of a container, and into a volume, against a local cp
#   commit  of a 335 MB / 20k-file writable layer
# Usage: STRATA=target/release/strata ROUNDS=5 bash bench/live.sh
set -euo pipefail
cd "$(dirname "$0")/.."
STRATA=${STRATA:-target/release/strata}
W=${BENCH_DIR:-/var/tmp/strata-bench}
ROUNDS=${ROUNDS:-5}
export STRATA_DATA_ROOT="$W/root-live"
mkdir -p "$W"
have_docker=0; docker info >/dev/null 2>&1 && have_docker=1
[ -f "$W/busybox.tar" ] || sh scripts/busybox-image.sh "$W/busybox.tar"
python3 bench/gen-data.py "$W" >/dev/null   # $W/data.tar: 335 MB in ~20k files
$STRATA image inspect busybox >/dev/null 2>&1 || $STRATA import -c 'CMD ["sh"]' "$W/busybox.tar" busybox >/dev/null
[ $have_docker = 1 ] && { docker image inspect busybox >/dev/null 2>&1 || docker import -c 'CMD ["sh"]' "$W/busybox.tar" busybox >/dev/null; }
head -c $((256 << 20)) /dev/urandom > "$W/big.bin"

engines="strata"; [ $have_docker = 1 ] && engines="strata docker"
e() { if [ "$1" = strata ]; then shift; $STRATA "$@"; else shift; docker "$@"; fi; }
now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
med() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
declare -A R

for en in $engines; do
  e $en rm -f lb-diff lb-exec lb-commit >/dev/null 2>&1 || true
  e $en volume rm -f lb-vol >/dev/null 2>&1 || true
  e $en run --name lb-diff busybox sh -c 'mkdir /data; i=0; while [ $i -lt 10000 ]; do echo $i > /data/f$i; i=$((i+1)); done' >/dev/null
  e $en run -d --name lb-exec -v lb-vol:/vol -v "$W/big.bin:/big.bin:ro" busybox sh -c 'cp /big.bin /big; sleep 3600' >/dev/null
  e $en run --name lb-commit -v "$W/data.tar:/w/data.tar:ro" busybox tar -xf /w/data.tar -C / >/dev/null
done
sleep 2   # the exec container's copy of big.bin

for r in $(seq "$ROUNDS"); do
  for en in $engines; do
    t=$(now); e $en diff lb-diff >/dev/null; R[$en-diff]+="$(ms $t $(now)) "
    rm -f "$W/out.bin"; sync
    t=$(now); e $en cp lb-exec:/big "$W/out.bin"; R[$en-cpout]+="$(ms $t $(now)) "
    # A fresh destination, as for the local cp below (replacing a file also pays for
    # freeing the old one's blocks).
    e $en exec lb-exec rm -f /vol/big.bin; sync
    t=$(now); e $en cp "$W/big.bin" lb-exec:/vol/big.bin; R[$en-cpin]+="$(ms $t $(now)) "
    t=$(now); id=$(e $en commit lb-commit); R[$en-commit]+="$(ms $t $(now)) "
    e $en rmi "$id" >/dev/null
  done
  rm -f "$W/out.bin"; sync
  t=$(now); cp "$W/big.bin" "$W/out.bin"; R[local-cp]+="$(ms $t $(now)) "
done

# exec on its own, once the writeback of the rounds above is done: the round trip, not
# the disk (cp and commit leave hundreds of MB dirty, which slows everything after them).
sync; sleep 1
for i in $(seq 20); do
  for en in $engines; do
    t=$(now); e $en exec lb-exec true; R[$en-exec]+="$(( ($(now) - t) / 1000 )) "
  done
done

printf '%-44s %10s %10s %8s\n' "median of $ROUNDS (exec: of 20), ms" strata docker "d/s"
for k in diff exec cpout cpin commit; do
  s=$(med ${R[strata-$k]}); d=$( [ $have_docker = 1 ] && med ${R[docker-$k]} || echo 0)
  ratio=$(echo "scale=1; $d / $s" | bc)
  # exec is kept in microseconds
  [ $k = exec ] && { s=$(echo "scale=1; $s / 1000" | bc); d=$(echo "scale=1; $d / 1000" | bc); }
  printf '%-44s %10s %10s %7sx\n' "$k" "$s" "$d" "$ratio"
done
printf '%-44s %10s\n' "local cp of the 256 MiB file" "$(med ${R[local-cp]})"
for en in $engines; do e $en rm -f lb-diff lb-exec lb-commit >/dev/null; e $en volume rm lb-vol >/dev/null; done
