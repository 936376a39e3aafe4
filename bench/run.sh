#!/usr/bin/env bash
# Issue 3 benchmarks, one interleaved run: `strata run --rm busybox true` vs bare
# `runc run` on the same rootfs vs `docker run --rm busybox true`; supervisor RSS per
# container; `ps -a` with 1000 containers.
set -euo pipefail
cd "$(dirname "$0")/.."
STRATA=${STRATA:-target/release/strata}
W=${BENCH_DIR:-/var/tmp/strata-bench-run}
N=${N:-20}
mkdir -p "$W"
export STRATA_DATA_ROOT="$W/root"
have_docker=0; docker info >/dev/null 2>&1 && have_docker=1
sh scripts/busybox-image.sh "$W/busybox.tar"
$STRATA image inspect busybox >/dev/null 2>&1 || $STRATA import -c 'CMD ["sh"]' "$W/busybox.tar" busybox >/dev/null
# A runc bundle on the same rootfs.
B="$W/bundle"; rm -rf "$B"; mkdir -p "$B/rootfs"; tar -C "$B/rootfs" -xf "$W/busybox.tar"
(cd "$B" && runc spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"/"true"/' config.json)
now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
s=(); r=(); d=()
for i in $(seq "$N"); do
  t=$(now); $STRATA run --rm busybox true; s+=($(( $(now) - t )))
  t=$(now); runc run --bundle "$B" "bench-$$-$i" >/dev/null; r+=($(( $(now) - t )))
  if [ $have_docker = 1 ]; then t=$(now); docker run --rm busybox true; d+=($(( $(now) - t ))); fi
done
ms() { echo "scale=1; $1 / 1000000" | bc; }
sm=$(printf '%s\n' "${s[@]}" | median); rm_=$(printf '%s\n' "${r[@]}" | median)
printf '%-40s %10s\n' "median of $N runs" "ms"
printf '%-40s %10s\n' "strata run --rm busybox true" "$(ms "$sm")"
printf '%-40s %10s\n' "runc run (same rootfs)" "$(ms "$rm_")"
if [ $have_docker = 1 ]; then dm=$(printf '%s\n' "${d[@]}" | median); printf '%-40s %10s\n' "docker run --rm busybox true" "$(ms "$dm")"; fi
printf '%-40s %10s\n' "strata / runc" "$(echo "scale=2; $sm / $rm_" | bc)x"
[ $have_docker = 1 ] && printf '%-40s %10s\n' "docker / strata" "$(echo "scale=1; $dm / $sm" | bc)x"

# Supervisor RSS: one idle container.
id=$($STRATA run -d busybox sleep 60)
sleep 0.5
sup=$(pgrep -f "__supervise $id" | head -1)
printf '%-40s %10s\n' "supervisor RSS (kB)" "$(awk '/VmRSS/ {print $2}' /proc/$sup/status)"
$STRATA rm -f "$id" >/dev/null

# ps -a with 1000 containers (created, not started).
existing=$($STRATA ps -aq | wc -l)
for i in $(seq $((1000 - existing))); do $STRATA create busybox true >/dev/null; done
t=$(now); for i in 1 2 3 4 5; do $STRATA ps -a >/dev/null; done; e=$(( ($(now) - t) / 5 ))
printf '%-40s %10s\n' "ps -a, 1000 containers (ms)" "$(ms "$e")"
