#!/usr/bin/env bash
# Issue 2 benchmarks: import and load of a 335 MB image, and mounting a 100-layer image,
# strata against the reference docker in one interleaved run.
set -euo pipefail
cd "$(dirname "$0")/.."
STRATA=${STRATA:-target/release/strata}
W=${BENCH_DIR:-/var/tmp/strata-bench}
ROUNDS=${ROUNDS:-3}
mkdir -p "$W"
export STRATA_DATA_ROOT="$W/root"
have_docker=0; docker info >/dev/null 2>&1 && have_docker=1
python3 bench/gen-data.py "$W" >/dev/null
DATA="$W/data.tar"
now() { date +%s.%N; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
t() { local s e; s=$(now); "$@" >/dev/null; e=$(now); echo "$e - $s" | bc; }
ratio() { echo "scale=1; $1 / $2" | bc; }
best() { printf '%s\n' "$@" | sort -n | head -1; }
row() { printf '%-34s %10s %10s %8s\n' "$@"; }

rm -rf "$STRATA_DATA_ROOT"
row "operation (best of $ROUNDS, seconds)" strata docker "ratio"
for mode in cold warm; do
  si=(); di=()
  for r in $(seq "$ROUNDS"); do
    $STRATA rmi -f bench:import >/dev/null 2>&1 || true; $STRATA image prune -a -f >/dev/null
    [ $mode = cold ] && drop || { cat "$DATA" >/dev/null; sync; }
    si+=("$(t $STRATA import "$DATA" bench:import)")
    if [ $have_docker = 1 ]; then
      docker rmi -f bench:import >/dev/null 2>&1 || true
      [ $mode = cold ] && drop || { cat "$DATA" >/dev/null; sync; }
      di+=("$(t docker import "$DATA" bench:import)")
    fi
  done
  s=$(best "${si[@]}"); d=$( [ $have_docker = 1 ] && best "${di[@]}" || echo "-")
  row "import 335 MB ($mode)" "$s" "$d" "$( [ $have_docker = 1 ] && ratio "$d" "$s" || echo -)x"
done

# load: the same image saved by docker (what users load)
if [ $have_docker = 1 ]; then docker save bench:import -o "$W/saved.tar"; else $STRATA save bench:import -o "$W/saved.tar"; fi
for mode in cold warm; do
  si=(); di=()
  for r in $(seq "$ROUNDS"); do
    $STRATA image prune -a -f >/dev/null
    [ $mode = cold ] && drop || { cat "$W/saved.tar" >/dev/null; sync; }
    si+=("$(t $STRATA load -i "$W/saved.tar")")
    if [ $have_docker = 1 ]; then
      docker rmi -f bench:import >/dev/null 2>&1 || true
      [ $mode = cold ] && drop || { cat "$W/saved.tar" >/dev/null; sync; }
      di+=("$(t docker load -i "$W/saved.tar")")
    fi
  done
  s=$(best "${si[@]}"); d=$( [ $have_docker = 1 ] && best "${di[@]}" || echo "-")
  row "load 335 MB ($mode)" "$s" "$d" "$( [ $have_docker = 1 ] && ratio "$d" "$s" || echo -)x"
done

# 100-layer image: strata mounts it (prepare + overlay mount + unmount + remove);
# docker has no mount-only command, so its figure is `docker create` + `start` of a
# 100-layer container minus the same for a 1-layer one.
python3 bench/deep-image.py 100 "$W/deep.tar" deep:100
$STRATA load -i "$W/deep.tar" >/dev/null
mount_cycle() { $STRATA image mount "$1" >/dev/null && $STRATA image unmount "$1"; }
sm=(); for r in $(seq "$ROUNDS"); do sm+=("$(t mount_cycle deep:100)"); done
s1=(); python3 bench/deep-image.py 1 "$W/deep1.tar" deep:1; $STRATA load -i "$W/deep1.tar" >/dev/null
for r in $(seq "$ROUNDS"); do s1+=("$(t mount_cycle deep:1)"); done
row "image mount+unmount, 100 layers" "$(best "${sm[@]}")" "-" "-"
row "image mount+unmount, 1 layer" "$(best "${s1[@]}")" "-" "-"
if [ $have_docker = 1 ]; then
  docker load -i "$W/deep.tar" >/dev/null; docker load -i "$W/deep1.tar" >/dev/null
  dc() { docker rm -f "$(docker create "$1")"; }
  d100=(); d1=(); for r in $(seq "$ROUNDS"); do d100+=("$(t dc deep:100)"); d1+=("$(t dc deep:1)"); done
  row "docker create+rm, 100 layers" "-" "$(best "${d100[@]}")" "-"
  row "docker create+rm, 1 layer" "-" "$(best "${d1[@]}")" "-"
fi
