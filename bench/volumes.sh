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
s=(); d=(); c=(); sc=(); sr=(); dc=(); dr=()
# Each timed step starts after `sync`. On a journal-less ext4 (this machine's) every
# create scans the inodes freed in the same inode-table block in the last 5 minutes, so
# figures vary from round to round for all three; medians are the fairer comparison.
settle() { sync; }
for r in $(seq "$ROUNDS"); do
  settle; t=$(now); id=$($STRATA create seedimg); t2=$(now); $STRATA rm -v "$id" >/dev/null; t3=$(now)
  s+=($(( t3 - t ))); sc+=($(( t2 - t ))); sr+=($(( t3 - t2 )))
  if [ $have_docker = 1 ]; then
    settle; t=$(now); id=$(docker create seedimg); t2=$(now); docker rm -v "$id" >/dev/null; t3=$(now)
    d+=($(( t3 - t ))); dc+=($(( t2 - t ))); dr+=($(( t3 - t2 )))
  fi
  # The floor: the same tree copied and deleted by coreutils on the same filesystem.
  settle; t=$(now); cp -a "$W/seedroot/data" "$W/cp-floor"; rm -rf "$W/cp-floor"; c+=($(( $(now) - t )))
done
best() { printf '%s\n' "$@" | sort -n | head -1; }
med() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
sec() { echo "scale=2; $1 / 1000000000" | bc; }
ratio() { [ "$2" -gt 0 ] && echo "scale=1; $1 / $2" | bc || echo "-"; }
[ $have_docker = 1 ] || { d=(0); dc=(0); dr=(0); }
printf '%-40s %9s %9s %9s %9s\n' "seeding 335 MB / 20k files, $ROUNDS rounds" strata docker ratio "cp+rm"
for kind in best median; do
  f=best; [ $kind = median ] && f=med
  printf '%-40s %8ss %8ss %8sx %8ss\n' "create + rm -v ($kind)" "$(sec "$($f "${s[@]}")")" "$(sec "$($f "${d[@]}")")" "$(ratio "$($f "${d[@]}")" "$($f "${s[@]}")")" "$(sec "$($f "${c[@]}")")"
done
printf '%-40s %8ss %8ss %8sx\n' "  create alone (median)" "$(sec "$(med "${sc[@]}")")" "$(sec "$(med "${dc[@]}")")" "$(ratio "$(med "${dc[@]}")" "$(med "${sc[@]}")")"
printf '%-40s %8ss %8ss %8sx\n' "  rm -v alone (median)" "$(sec "$(med "${sr[@]}")")" "$(sec "$(med "${dr[@]}")")" "$(ratio "$(med "${dr[@]}")" "$(med "${sr[@]}")")"
