#!/usr/bin/env bash
# A burst into the plain folder: `tar x` of 3,000 small files, ROUNDS times into the same running
# folder. Per round: tar's wall time, the CPU (user+sys) the folder process and the dev platform
# used while tar ran, the time until the platform lists all 3,000, and the folder's CPU until
# then (BENCHMARKS.md, "The plain folder" and "A burst held"). Over `hyperclay dev-platform` on
# loopback, with this checkout's release build, or BIN (another build, for an A/B).
#   bench/folder-burst.sh [ROUNDS] [BIN]      (4 rounds by default)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-4}
if [ -n "${2:-}" ]; then
  bin=$2
else
  cargo build --release --quiet
  bin="$PWD/target/release/hyperclay"
fi
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
key=hcsk_benchburst0123456789abcdef
export HYPERCLAY_DEV_API_KEY=$key HYPERCLAY_HOME=$work/home HYPERCLAY_URL=http://127.0.0.1:$port \
  HYPERCLAY_API_KEY=$key RUST_LOG=warn
"$bin" dev-platform --data "$work/platform" --listen "127.0.0.1:$port" >/dev/null 2>&1 &
platform=$!
folder=
trap 'kill $platform $folder 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -sf -H "X-API-Key: $key" "$HYPERCLAY_URL/_/sync/status" >/dev/null && break; sleep 0.1; done
"$bin" mount "$work/folder" --folder --no-serve >/dev/null 2>&1 &
folder=$!
until [ -d "$work/folder/.hyperclay" ]; do sleep 0.1; done
sleep 2
mkdir -p "$work/src"
( cd "$work/src" && for i in $(seq 0 2999); do d=t/d$((i / 50)); mkdir -p "$d"; echo "line $i" > "$d/f$i.txt"; done && tar cf "$work/t.tar" t )
up() {
  curl -s -H "X-API-Key: $key" "$HYPERCLAY_URL/_/sync/nodes" |
    python3 -c 'import json,sys; print(sum(1 for n in json.load(sys.stdin)["nodes"] if n["type"] != "folder"))'
}
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
hz=$(getconf CLK_TCK)
for n in $(seq "$rounds"); do
  want=$(( $(up) + 3000 ))
  mkdir -p "$work/folder/r$n"
  sleep 1
  f0=$(ticks $folder); p0=$(ticks $platform); t0=$(date +%s.%N)
  tar xf "$work/t.tar" -C "$work/folder/r$n"
  t1=$(date +%s.%N); f1=$(ticks $folder); p1=$(ticks $platform)
  while [ "$(up)" -lt "$want" ]; do sleep 0.25; done
  t2=$(date +%s.%N); f2=$(ticks $folder)
  python3 -c "print('round $n: tar %.3f s; while tar ran: folder cpu %.2f s, platform cpu %.2f s; all up %.2f s; folder cpu until all up %.2f s (load %s)' % ($t1-$t0, ($f1-$f0)/$hz, ($p1-$p0)/$hz, $t2-$t0, ($f2-$f0)/$hz, open('/proc/loadavg').read().split()[0]))"
done
