#!/usr/bin/env bash
# Issue 4: write throughput inside a container — its writable layer (overlay upper dir),
# a named volume, a bind-mounted host directory — against the same work on the host
# with no container, strata and docker in one run, interleaved.
#
# Two workloads, timed inside the container by busybox's `time` (0.01 s resolution, so
# container start and removal are not counted):
#   big    dd if=/dev/zero bs=1M count=$BIG_MB conv=fsync      one large file, flushed
#   small  tar -x of $SMALL_FILES × 4 KiB files in 100 dirs, then sync -f (syncfs)
# Usage: STRATA=target/release/strata ROUNDS=3 bash bench/write.sh
set -euo pipefail
cd "$(dirname "$0")/.."
STRATA=${STRATA:-target/release/strata}
W=${BENCH_DIR:-/var/tmp/strata-bench}
ROUNDS=${ROUNDS:-3}
BIG_MB=${BIG_MB:-512}
SMALL_FILES=${SMALL_FILES:-20000}
export STRATA_DATA_ROOT="$W/root-write"
mkdir -p "$W"
have_docker=0; docker info >/dev/null 2>&1 && have_docker=1

# The same busybox image in both engines (no image can be pulled here).
[ -f "$W/busybox.tar" ] || sh scripts/busybox-image.sh "$W/busybox.tar"
$STRATA image inspect busybox >/dev/null 2>&1 || $STRATA import -c 'CMD ["sh"]' "$W/busybox.tar" busybox >/dev/null
if [ $have_docker = 1 ]; then
  docker image inspect busybox >/dev/null 2>&1 || docker import -c 'CMD ["sh"]' "$W/busybox.tar" busybox >/dev/null
fi
# The host runs the very same busybox applets (not the host's dash, GNU dd and tar).
BB=$(command -v busybox)
mkdir -p "$W/bb-path"
for a in sh dd tar sync mkdir; do ln -sf "$BB" "$W/bb-path/$a"; done

# The small-files input: a tar read from a read-only bind (page-cached after round 1).
SRC="$W/write-src"
if [ ! -f "$SRC/small.tar" ] || [ "$(cat "$SRC/small.count" 2>/dev/null)" != "$SMALL_FILES" ]; then
  mkdir -p "$SRC"
  python3 - "$SRC/small.tar" "$SMALL_FILES" <<'EOF'
import io, sys, tarfile
out, n = sys.argv[1], int(sys.argv[2])
block = bytes(range(256)) * 16
with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as t:
    for d in range(100):
        ti = tarfile.TarInfo(f"d{d:03}"); ti.type = tarfile.DIRTYPE; ti.mode = 0o755; ti.mtime = 1700000000
        t.addfile(ti)
    for i in range(n):
        ti = tarfile.TarInfo(f"d{i % 100:03}/f{i:06}"); ti.size = len(block); ti.mode = 0o644; ti.mtime = 1700000000
        t.addfile(ti, io.BytesIO(block))
EOF
  echo "$SMALL_FILES" > "$SRC/small.count"
fi

work_big="dd if=/dev/zero of=big bs=1M count=$BIG_MB conv=fsync 2>/dev/null"
work_small="tar -xf /src/small.tar && sync -f ."

# Seconds from busybox `time`'s "real	0m 1.23s" line (stderr of the timed command).
real_secs() { awk '/^real/ { m = $2; s = $3; sub(/m/, "", m); sub(/s/, "", s); printf "%.2f\n", m * 60 + s }'; }
inner() { echo "mkdir -p /w && cd /w && { time sh -c '$1'; } 2>&1 >/dev/null"; }

# run_case ENGINE WHERE WORK -> seconds
run_case() {
  local eng=$1 where=$2 work=$3 cli mnt=() out
  case $eng in strata) cli=$STRATA ;; docker) cli=docker ;; esac
  case $where in
    layer) ;;
    volume) $cli volume create wbench-vol >/dev/null; mnt=(-v wbench-vol:/w) ;;
    bind) rm -rf "$W/write-bind"; mkdir -p "$W/write-bind"; mnt=(-v "$W/write-bind:/w") ;;
  esac
  sync
  out=$($cli run --rm "${mnt[@]}" -v "$SRC:/src:ro" busybox sh -c "$(inner "$work")" | real_secs)
  case $where in
    volume) $cli volume rm wbench-vol >/dev/null ;;
    bind) rm -rf "$W/write-bind" ;;
  esac
  echo "$out"
}

host_case() {
  local work=$1 out
  rm -rf "$W/write-host"; mkdir -p "$W/write-host"
  sync
  # /src is the container's view of $SRC; the host reads the same file.
  out=$(cd "$W/write-host" && PATH="$W/bb-path" "$BB" sh -c "{ time sh -c '${work//\/src/$SRC}'; } 2>&1 >/dev/null" | real_secs)
  rm -rf "$W/write-host"
  echo "$out"
}

check() { [[ "$2" =~ ^[0-9]+\.[0-9]+$ ]] || { echo "write.sh: $1: no timing (${2:-empty})" >&2; exit 1; }; }
best() { printf '%s\n' "$@" | sort -n | head -1; }
declare -A T
for r in $(seq "$ROUNDS"); do
  for w in big small; do
    work=work_$w
    # The order rotates each round: the first case after the previous workload's
    # deletions is slower on this disk (discards), and no case should always pay for it.
    order=(host layer volume bind); k=$(( (r - 1) % 4 )); order=("${order[@]:k}" "${order[@]:0:k}")
    for where in "${order[@]}"; do
      if [ "$where" = host ]; then
        v=$(host_case "${!work}"); check host "$v"; T[$w,host]+=" $v"
        continue
      fi
      v=$(run_case strata $where "${!work}"); check "strata $where $w" "$v"; T[$w,strata,$where]+=" $v"
      if [ $have_docker = 1 ]; then
        v=$(run_case docker $where "${!work}"); check "docker $where $w" "$v"; T[$w,docker,$where]+=" $v"
      fi
    done
  done
done

rate() { # MB and seconds -> MB/s
  awk -v mb="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", mb / s; else printf "-" }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else printf "-" }'; }
small_mb=$(awk -v n="$SMALL_FILES" 'BEGIN { printf "%.1f", n * 4096 / 1e6 }')
echo "write throughput, best of $ROUNDS (MB/s = 10^6 bytes/s; time in seconds)"
for w in big small; do
  if [ $w = big ]; then mb=$(awk -v m="$BIG_MB" 'BEGIN { print m * 1.048576 }'); title="dd bs=1M count=$BIG_MB conv=fsync"
  else mb=$small_mb; title="tar -x of $SMALL_FILES × 4 KiB files + syncfs"; fi
  h=$(best ${T[$w,host]})
  printf '\n%s\n' "$title"
  printf '  %-18s %8s %11s %8s %11s %14s %12s %12s\n' where strata_s strata_MB/s docker_s docker_MB/s strata/docker strata/host docker/host
  printf '  %-18s %8s %11s %8s %11s %14s %12s %12s\n' "host, no container" "$h" "$(rate "$mb" "$h")" "" "" "" "1.00" "1.00"
  for where in layer volume bind; do
    s=$(best ${T[$w,strata,$where]})
    if [ $have_docker = 1 ]; then d=$(best ${T[$w,docker,$where]}); else d=0; fi
    label=$where; [ $where = layer ] && label="container layer"; [ $where = bind ] && label="bind (host dir)"
    # Ratios of throughput: above 1 means faster than the other.
    printf '  %-18s %8s %11s %8s %11s %14s %12s %12s\n' "$label" "$s" "$(rate "$mb" "$s")" "$d" "$(rate "$mb" "$d")" \
      "$(ratio "$d" "$s")" "$(ratio "$h" "$s")" "$(ratio "$h" "$d")"
  done
done

echo
echo "every round (seconds):"
for w in big small; do
  echo "  $w host:${T[$w,host]}"
  for where in layer volume bind; do
    echo "  $w strata $where:${T[$w,strata,$where]}"
    if [ $have_docker = 1 ]; then echo "  $w docker $where:${T[$w,docker,$where]}"; fi
  done
done
