#!/bin/bash
# bench/count-syscalls.sh BIN [N]: the system calls a `hyperclay mount` (the binary BIN, over its
# own dev platform) makes while `tar xf` unpacks N new small files (3,000 by default, in folders
# of 50 as `cargo bench --bench smallfiles` makes them), counted by `strace -c -f` on the mount
# process, its pushes included. Deterministic where timings are not: a change's cost per file
# shows however busy the machine is. Needs strace, python3, curl, tar, fusermount3.
# BENCHMARKS.md, "System calls per file (issue 25)".
set -u
BIN=$1; N=${2:-3000}
W=$(mktemp -d)
python3 - $W/src/tree $N <<'PY'
import sys, os
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = f'{root}/d{i // 50}'
    os.makedirs(d, exist_ok=True)
    with open(f'{d}/f{i}.txt', 'w') as f: f.write('line of file ' + str(i) * 40)
PY
tar cf $W/tree.tar -C $W/src tree
PORT=$((20000 + RANDOM % 20000))
HYPERCLAY_DEV_API_KEY=hcsk_bench $BIN dev-platform --data $W/platform --listen 127.0.0.1:$PORT >$W/platform.log 2>&1 &
PP=$!
for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:$PORT/ && break; sleep 0.1; done
mkdir -p $W/mnt
export HYPERCLAY_HOME=$W/home HYPERCLAY_URL=http://127.0.0.1:$PORT HYPERCLAY_API_KEY=hcsk_bench RUST_LOG=warn
$BIN mount $W/mnt --mirror $W/mirror --no-serve >$W/mount.out 2>$W/mount.err &
MP=$!
for i in $(seq 300); do grep -q "mounted at" $W/mount.out && break; sleep 0.1; done
mkdir $W/mnt/t
strace -c -f -p $MP -o $W/strace.txt 2>/dev/null & SP=$!
sleep 1
tar xf $W/tree.tar -C $W/mnt/t
# Every file up (the pushes are counted too).
for i in $(seq 600); do
    [ "$(curl -s -H 'X-API-Key: hcsk_bench' http://127.0.0.1:$PORT/_/sync/nodes | grep -o '"name"' | wc -l)" -ge "$N" ] && break
    sleep 0.1
done
sleep 1
kill -INT $SP; wait $SP 2>/dev/null
fusermount3 -u $W/mnt; sleep 1; kill $MP $PP 2>/dev/null; wait 2>/dev/null
echo "$BIN, tar xf of $N files: system calls of the mount (strace -c -f)"
awk -v n=$N 'NR>2 && $0 !~ /^-/ && $NF == "total" { printf "total        %8d (%.1f per file)\n", $4, $4/n }' $W/strace.txt
awk -v n=$N 'NR>2 && $0 !~ /^-/ && $NF != "total" { printf "%-12s %8d (%.2f per file)\n", $NF, $4, $4/n }' $W/strace.txt | sort -k2 -n -r | head -14
rm -rf $W
