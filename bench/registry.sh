#!/usr/bin/env bash
# Issue 8: `strata registry serve` against Debian's docker-registry (distribution 2.8)
# on the same data in one run, on loopback, interleaved round by round:
#   push     256 MiB blobs, monolithic (POST + one PUT) and chunked (8 x 32 MiB PATCH)
#   pull     a 256 MiB blob, read in 1 MiB chunks (page cache)
#   manifest GET by tag, 32 keep-alive connections, 10 s
#   HEAD     a blob, 32 keep-alive connections, 10 s
# and the RSS of `strata registry serve` idle and after the load.
# Usage: ROUNDS=3 bash bench/registry.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
W=${BENCH_DIR:-/var/tmp/strata-bench}/registry
command -v docker-registry >/dev/null || { echo "docker-registry missing: sh ../shared/peers/setup.sh registry" >&2; exit 1; }
cargo build --release -q -p strata
cargo build --release -q -p strata-registry --example loadgen
STRATA=target/release/strata
LG=target/release/examples/loadgen
rm -rf "$W"; mkdir -p "$W/strata" "$W/ref"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PS=$(port); PR=$(port)
cat > "$W/ref.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $W/ref
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PR
YML
$STRATA registry serve --addr 127.0.0.1:$PS --root "$W/strata" >/dev/null &
SP=$!
docker-registry serve "$W/ref.yml" >/dev/null 2>&1 &
RP=$!
trap 'kill $SP $RP 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"' EXIT
for p in $PS $PR; do for i in $(seq 50); do curl -fs http://127.0.0.1:$p/v2/ >/dev/null && break; sleep 0.1; done; done
rss() { awk -v k="$2:" '$1==k {print $2}' /proc/$1/status; }
idle=$(rss $SP VmRSS)

declare -A R
addr() { [ "$1" = strata ] && echo 127.0.0.1:$PS || echo 127.0.0.1:$PR; }
declare -A D
for s in strata ref; do D[$s]=$($LG "$(addr $s)" seed bench/app $((256 << 20))); done
for r in $(seq "$ROUNDS"); do
  for s in strata ref; do
    a=$(addr $s)
    R[$s-mono]+="$($LG "$a" push bench/push $((256 << 20)) 1) "
    R[$s-chunk]+="$($LG "$a" push bench/push $((256 << 20)) 1 $((32 << 20))) "
    $LG "$a" pull bench/app "${D[$s]}" 1 >/dev/null   # warm the page cache
    R[$s-pull]+="$($LG "$a" pull bench/app "${D[$s]}" 4) "
    R[$s-mget]+="$($LG "$a" rate /v2/bench/app/manifests/bench GET 32 10) "
    R[$s-head]+="$($LG "$a" rate /v2/bench/app/blobs/${D[$s]} HEAD 32 10) "
  done
done
loaded=$(rss $SP VmHWM); anon=$(rss $SP RssAnon); file=$(rss $SP RssFile)
med() { printf '%s\n' $@ | sort -n | sed -n "$(( ($(printf '%s\n' $@ | wc -l) + 1) / 2 ))p"; }
printf '%-34s %12s %12s %8s\n' "operation (median of $ROUNDS)" strata reference ratio
row() {
  s=$(med ${R[strata-$1]}); f=$(med ${R[ref-$1]})
  printf '%-34s %12s %12s %7sx\n' "$2" "$s $3" "$f $3" "$(python3 -c "print(f'{$s/$f:.2f}')")"
}
row mono  "push 256 MiB monolithic" MB/s
row chunk "push 256 MiB, 8 x 32 MiB chunks" MB/s
row pull  "pull 256 MiB blob (1 MiB reads)" MB/s
row mget  "manifest GET, 32 conns" req/s
row head  "blob HEAD, 32 conns" req/s
echo "strata registry serve RSS: idle ${idle} KiB; peak under load ${loaded} KiB (after it: ${anon} KiB anonymous, ${file} KiB mapped blob pages of the page cache)"
