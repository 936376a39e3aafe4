#!/usr/bin/env bash
# Issue 6: a published port against a direct loopback connection and against the
# reference docker's docker-proxy, in one interleaved run. The same server (netbench,
# run inside each container's network namespace with nsenter) answers everywhere:
#   throughput  1 and 4 streams of 1 MiB writes, MB/s
#   connrate    connect + 1-byte exchange + close, 4 threads, connections/s
# Usage: STRATA=target/release/strata ROUNDS=3 SECS=3 bash bench/network.sh
set -euo pipefail
cd "$(dirname "$0")/.."
STRATA=${STRATA:-target/release/strata}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-3}
W=${BENCH_DIR:-/var/tmp/strata-bench}
export STRATA_DATA_ROOT="$W/root-net"
mkdir -p "$W"
cargo build -q --release -p strata-network --example netbench
NB=target/release/examples/netbench
have_docker=0; docker info >/dev/null 2>&1 && have_docker=1
[ -f "$W/busybox.tar" ] || sh scripts/busybox-image.sh "$W/busybox.tar"
$STRATA image inspect busybox >/dev/null 2>&1 || $STRATA import -c 'CMD ["sh"]' "$W/busybox.tar" busybox >/dev/null
[ $have_docker = 1 ] && { docker image inspect busybox >/dev/null 2>&1 || docker import -c 'CMD ["sh"]' "$W/busybox.tar" busybox >/dev/null; }

P_DIRECT=18601 P_STRATA=18602 P_DOCKER=18603
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  $STRATA rm -f nb-srv >/dev/null 2>&1 || true
  [ $have_docker = 1 ] && docker rm -f nb-srv >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup

$NB serve $P_DIRECT & pids+=($!)
$STRATA run -d --name nb-srv -p $P_STRATA:80 busybox sleep 3600 >/dev/null
nsenter --net=/proc/$($STRATA inspect -f '{{.State.Pid}}' nb-srv)/ns/net $NB serve 80 & pids+=($!)
engines="direct strata"
if [ $have_docker = 1 ]; then
  docker run -d --name nb-srv -p $P_DOCKER:80 busybox sleep 3600 >/dev/null
  nsenter --net=/proc/$(docker inspect -f '{{.State.Pid}}' nb-srv)/ns/net $NB serve 80 & pids+=($!)
  engines="direct strata docker"
fi
sleep 1
port() { case $1 in direct) echo $P_DIRECT;; strata) echo $P_STRATA;; docker) echo $P_DOCKER;; esac; }
med() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
declare -A R
for r in $(seq "$ROUNDS"); do
  for en in $engines; do
    a=127.0.0.1:$(port $en)
    R[$en-t1]+="$($NB throughput $a $SECS 1) "
    R[$en-t4]+="$($NB throughput $a $SECS 4) "
    R[$en-c]+="$($NB connrate $a $SECS 4) "
  done
done
printf '%-28s %10s %10s %10s %10s %10s\n' "median of $ROUNDS" direct strata docker "s/direct" "s/docker"
for k in t1 t4 c; do
  case $k in t1) n="throughput 1 stream, MB/s";; t4) n="throughput 4 streams, MB/s";; c) n="connections/s";; esac
  d=$(med ${R[direct-$k]}); s=$(med ${R[strata-$k]}); k2=0
  [ $have_docker = 1 ] && k2=$(med ${R[docker-$k]})
  printf '%-28s %10s %10s %10s %9s%% %9sx\n' "$n" "$d" "$s" "$k2" "$(( 100 * s / d ))" "$( [ "$k2" -gt 0 ] && echo "scale=1; $s / $k2" | bc || echo -)"
done
echo "strata proxy RSS after the load: $(ps -o rss= -p "$(pgrep -f 'strata __proxy' | head -1)") kB"
