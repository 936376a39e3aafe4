#!/usr/bin/env bash
# Issue 7: builds, strata against docker's classic builder (DOCKER_BUILDKIT=0), same
# contexts, same run, interleaved:
#  1. one COPY of the ~335 MB / 20k-file context (no cache; docker's time includes
#     sending the context tar, which is how docker builds);
#  2. a fully cached rebuild of a 10-step Dockerfile over the same context;
#  3. a 10-step RUN chain (no cache).
set -euo pipefail
cd "$(dirname "$0")/.."
STRATA=${STRATA:-target/release/strata}
W=${BENCH_DIR:-/var/tmp/strata-bench}
ROUNDS=${ROUNDS:-3}
export STRATA_DATA_ROOT="$W/root-build"
have_docker=0; docker info >/dev/null 2>&1 && have_docker=1
DOCKER="env DOCKER_BUILDKIT=0 docker"
python3 bench/gen-data.py "$W" >/dev/null
sh scripts/busybox-image.sh "$W/busybox.tar"
$STRATA image inspect busybox >/dev/null 2>&1 || $STRATA import -c 'CMD ["sh"]' "$W/busybox.tar" busybox >/dev/null
[ $have_docker = 1 ] && { docker image inspect busybox >/dev/null 2>&1 || docker import -c 'CMD ["sh"]' "$W/busybox.tar" busybox >/dev/null; }
CTX="$W/tree"
DF="$W/dockerfiles"; mkdir -p "$DF"
printf 'FROM busybox\nCOPY data /data\n' > "$DF/copy"
{ echo 'FROM busybox'; echo 'ENV A=1'; echo 'COPY data /data'; echo 'LABEL b=2'; echo 'WORKDIR /w';
  for i in 1 2 3 4 5; do echo "RUN echo $i > /w/f$i"; done; } > "$DF/ten"
{ echo 'FROM busybox'; for i in $(seq 10); do echo "RUN echo $i > /f$i"; done; } > "$DF/runs"
now() { date +%s%N; }
timeit() { local t; t=$(now); "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; echo $(( $(now) - t )); }
s1=(); d1=(); s2=(); d2=(); s3=(); d3=()
# The cached rebuild needs one uncached build first.
$STRATA build -q -f "$DF/ten" -t bench-ten "$CTX" >/dev/null
[ $have_docker = 1 ] && $DOCKER build -q -f "$DF/ten" -t bench-ten "$CTX" >/dev/null
for r in $(seq "$ROUNDS"); do
  # Images are kept until the end: on this machine's journal-less ext4 a create right
  # after a big delete scans the freed inodes (see RESULTS.md), for either engine.
  sync; s1+=($(timeit $STRATA build --no-cache -f "$DF/copy" -t "bench-copy$r" "$CTX"))
  [ $have_docker = 1 ] && { sync; d1+=($(timeit $DOCKER build --no-cache -f "$DF/copy" -t "bench-copy$r" "$CTX")); }
  sync; s2+=($(timeit $STRATA build -f "$DF/ten" -t bench-ten "$CTX"))
  [ $have_docker = 1 ] && { sync; d2+=($(timeit $DOCKER build -f "$DF/ten" -t bench-ten "$CTX")); }
  sync; s3+=($(timeit $STRATA build --no-cache -f "$DF/runs" -t bench-runs "$CTX/data/d000"))
  [ $have_docker = 1 ] && { sync; d3+=($(timeit $DOCKER build --no-cache -f "$DF/runs" -t bench-runs "$CTX/data/d000")); }
done
med() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
best() { printf '%s\n' "$@" | sort -n | head -1; }
sec() { echo "scale=2; $1 / 1000000000" | bc; }
ratio() { [ "$2" -gt 0 ] && echo "scale=1; $1 / $2" | bc || echo "-"; }
[ $have_docker = 1 ] || { d1=(0); d2=(0); d3=(0); }
printf '%-52s %9s %9s %9s\n' "build, $ROUNDS rounds (median; best in brackets)" strata docker ratio
row() { printf '%-52s %8ss %8ss %8sx   [%ss %ss]\n' "$1" "$(sec "$(med "${!2}")")" "$(sec "$(med "${!3}")")" "$(ratio "$(med "${!3}")" "$(med "${!2}")")" "$(sec "$(best "${!2}")")" "$(sec "$(best "${!3}")")"; }
row "1. COPY of 335 MB / 20k files, no cache" 's1[@]' 'd1[@]'
row "2. 10-step Dockerfile, fully cached" 's2[@]' 'd2[@]'
row "3. 10-step RUN chain, no cache" 's3[@]' 'd3[@]'
for r in $(seq "$ROUNDS"); do
  $STRATA rmi "bench-copy$r" >/dev/null 2>&1 || true
  [ $have_docker = 1 ] && docker rmi "bench-copy$r" >/dev/null 2>&1 || true
done
$STRATA rmi bench-ten bench-runs >/dev/null 2>&1 || true
[ $have_docker = 1 ] && docker rmi bench-ten bench-runs >/dev/null 2>&1 || true
