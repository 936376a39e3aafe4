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
  # docker's shim and cgroup teardown continue after the CLI returns: let them settle
  # so they are not billed to the next command measured.
  if [ $have_docker = 1 ]; then t=$(now); docker run --rm busybox true; d+=($(( $(now) - t ))); sleep 0.5; fi
done
ms() { echo "scale=1; $1 / 1000000" | bc; }
sm=$(printf '%s\n' "${s[@]}" | median); rm_=$(printf '%s\n' "${r[@]}" | median)
printf '%-40s %10s\n' "median of $N runs" "ms"
printf '%-40s %10s\n' "strata run --rm busybox true" "$(ms "$sm")"
printf '%-40s %10s\n' "runc run (same rootfs)" "$(ms "$rm_")"
if [ $have_docker = 1 ]; then dm=$(printf '%s\n' "${d[@]}" | median); printf '%-40s %10s\n' "docker run --rm busybox true" "$(ms "$dm")"; fi
printf '%-40s %10s\n' "strata / runc" "$(echo "scale=2; $sm / $rm_" | bc)x"
[ $have_docker = 1 ] && printf '%-40s %10s\n' "docker / strata" "$(echo "scale=1; $dm / $sm" | bc)x"

# Supervisor memory with 10 idle containers: RSS counts the binary's shared pages in
# every supervisor; PSS shares them out; USS (private) is what one more container costs.
ids=$(for i in $(seq 10); do $STRATA run -d busybox sleep 60; done)
sleep 0.5
read rss pss uss < <(for p in $(pgrep -f "__supervise"); do awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} /^Private_(Clean|Dirty):/ {u+=$2} END {print r, p, u}' /proc/$p/smaps_rollup; done | awk '{r+=$1; p+=$2; u+=$3; n++} END {printf "%d %d %d\n", r/n, p/n, u/n}')
printf '%-40s %10s\n' "supervisor RSS / PSS / USS (kB, mean of 10)" "$rss / $pss / $uss"
$STRATA rm -f $ids >/dev/null

# ps -a with 1000 containers (created, not started).
existing=$($STRATA ps -aq | wc -l)
for i in $(seq $((1000 - existing))); do $STRATA create busybox true >/dev/null; done
t=$(now); for i in 1 2 3 4 5; do $STRATA ps -a >/dev/null; done; e=$(( ($(now) - t) / 5 ))
printf '%-40s %10s\n' "ps -a, 1000 containers (ms)" "$(ms "$e")"
