#!/bin/bash
# bench/count-syscalls.sh BIN [N]: the system calls a `hyperclay mount` (the binary BIN, over its
# own dev platform) makes while `tar xf` unpacks N new small files (3,000 by default, in folders
# of 50 as `cargo bench --bench smallfiles` makes them), counted by `strace -c -f` on the mount
# process, its pushes included. Deterministic where timings are not: a change's cost per file
# shows however busy the machine is. Needs strace, python3, curl, tar, fusermount3.
# BENCHMARKS.md, "System calls per file (issue 25)".
set -u
. "$(dirname "$0")/lib.sh"
BIN=$1; N=${2:-3000}
W=$(mktemp -d)
make_tree $W/src/tree $N
tar cf $W/tree.tar -C $W/src tree
start_mount $BIN $W
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
