#!/bin/bash
# bench/paired-mounts.sh A B [ROUNDS]: two `hyperclay mount`s (binaries A and B, each over its own
# dev platform) up at once; each round runs `tar xf` of 3,478 files (the smallfiles bench's sizes)
# and then a Python loop of 2,000 new files into A, then into B, 2 s apart, and prints the seconds.
# Run it a second time with A and B swapped to cancel the order. BENCHMARKS.md, "Round trips
# (issue 25)". Needs python3, tar, curl, fusermount3.
set -u
A=$1; B=$2; ROUNDS=${3:-8}
W=$(mktemp -d)
python3 - $W/src/tree 3478 <<'PY'
import sys, os
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = f'{root}/d{i // 50}'
    os.makedirs(d, exist_ok=True)
    with open(f'{d}/f{i}.txt', 'w') as f: f.write(f'line of file {i}\n' * (1 + (i * 7919) % 256))
PY
tar cf $W/src/tree.tar -C $W/src tree
start() { # name bin
  local PORT=$((20000 + RANDOM % 20000))
  HYPERCLAY_DEV_API_KEY=hcsk_bench $2 dev-platform --data $W/$1/platform --listen 127.0.0.1:$PORT >$W/$1.platform.log 2>&1 &
  echo $! >> $W/pids
  for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:$PORT/ && break; sleep 0.1; done
  mkdir -p $W/$1/mnt
  HYPERCLAY_HOME=$W/$1/home HYPERCLAY_URL=http://127.0.0.1:$PORT HYPERCLAY_API_KEY=hcsk_bench RUST_LOG=warn \
    $2 mount $W/$1/mnt --mirror $W/$1/mirror --no-serve >$W/$1.mount.out 2>$W/$1.mount.err &
  echo $! >> $W/mpids
  for i in $(seq 300); do grep -q "mounted at" $W/$1.mount.out && break; sleep 0.1; done
}
start a $A; start b $B
sleep 2
for r in $(seq $ROUNDS); do
  for v in a b; do
    mkdir $W/$v/mnt/t$r $W/$v/mnt/l$r
    python3 - $W/$v/mnt $r $v $W/src/tree.tar <<'PY'
import sys, time, subprocess
d, r, v, tarf = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
t = time.perf_counter(); subprocess.run(['tar', 'xf', tarf, '-C', f'{d}/t{r}'], check=True); tt = time.perf_counter() - t
t = time.perf_counter()
for i in range(2000):
    with open(f'{d}/l{r}/f{i}.txt', 'w') as f: f.write('line of file ' + str(i) * 40)
tl = time.perf_counter() - t
print(f'{r} {v} tar {tt:.3f} loop {tl:.3f}', flush=True)
PY
    sleep 2
  done
done
for m in a b; do fusermount3 -u $W/$m/mnt; done
for p in $(cat $W/mpids); do wait $p 2>/dev/null; done
for p in $(cat $W/pids); do kill $p; done
echo "work dir $W"
