#!/bin/bash
# bench/count-requests.sh BIN LABEL [N] [WORKLOAD]: FUSE requests and fsync-family calls of a
# `hyperclay mount` (the binary BIN, over its own dev platform) while a Python loop writes N new
# small files (open, write, close; 200 by default; WORKLOAD `loop`), or `git clone` of a
# repository of N files (`git`), or `tar xf` of an archive of N files (`tar`), both in folders of
# 50 files as `cargo bench --bench smallfiles` makes them; then, traced apart, one file written and fsync'ed and its
# folder fsync'ed. Requests are counted from each read of /dev/fuse (`strace -y -xx`), by the
# opcode in the request's header. Needs strace, python3, curl, fusermount3. BENCHMARKS.md,
# "Close without fsync (issue 25)".
set -u
. "$(dirname "$0")/lib.sh"
BIN=$1; LABEL=$2; N=${3:-200}; WORKLOAD=${4:-loop}
W=$(mktemp -d)
if [ "$WORKLOAD" != loop ]; then
    make_tree $W/src/tree $N
    if [ "$WORKLOAD" = git ]; then
        git -C $W/src/tree init -q && git -C $W/src/tree add . &&
            git -C $W/src/tree -c user.name=bench -c user.email=bench@localhost commit -q -m files
    else
        tar cf $W/src/tree.tar -C $W/src tree
    fi
fi
start_mount $BIN $W
mkdir $W/mnt/loop
sleep 1
trace() { strace -f -p $MP -y -xx -e trace=read,fsync,fdatasync,syncfs,sync_file_range -o $1 2>/dev/null & SP=$!; sleep 1; }
untrace() { sleep 1; kill $SP; wait $SP 2>/dev/null; }
trace $W/loop.log
case $WORKLOAD in
git) git clone -q --no-hardlinks $W/src/tree $W/mnt/loop/clone ;;
tar) tar xf $W/src/tree.tar -C $W/mnt/loop ;;
*) python3 - $W/mnt $N <<'PY'
import sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(f'{d}/loop/f{i}.txt', 'w') as f: f.write('line of file ' + str(i) * 40)
PY
;;
esac
untrace
trace $W/fsync.log
python3 - $W/mnt <<'PY'
import sys, os
d = sys.argv[1]
with open(f'{d}/loop/synced.txt', 'w') as f:
    f.write('fsynced'); f.flush(); os.fsync(f.fileno())
fd = os.open(f'{d}/loop', os.O_RDONLY); os.fsync(fd); os.close(fd)
PY
untrace
WORKLOAD=$WORKLOAD python3 - $W "$LABEL" $N <<'PY'
import sys, re, os, collections
w, label, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
names = {1:'lookup',2:'forget',3:'getattr',4:'setattr',14:'open',15:'read',16:'write',17:'statfs',18:'release',20:'fsync',25:'flush',35:'create',42:'batch_forget',44:'readdirplus',27:'opendir',28:'readdir',29:'releasedir',30:'fsyncdir',9:'mkdir',10:'unlink',12:'rename',39:'ioctl',22:'getxattr',34:'access'}
def kind(path):
    if path.endswith('-wal') or path.endswith('.db'): return 'index'
    if '/sites-versions/' in path: return 'version'
    if os.path.isdir(path): return 'folder'
    if not os.path.exists(path): return 'temp (working copy)'
    return 'mirror file'
def count(log):
    ops, calls, waiting = collections.Counter(), collections.Counter(), set()
    unhex = lambda t: bytes(int(x,16) for x in re.findall(r'\\x([0-9a-f]{2})', t)).decode('utf-8','replace') if t.startswith('\\x') else t
    for line in open(log):
        line = re.sub(r'<((?:\\x[0-9a-f]{2})+)>', lambda m: '<' + unhex(m.group(1)) + '>', line)
        pid = line.split(' ', 1)[0]
        if re.search(r'read\(\d+</dev/fuse>,\s+<unfinished', line):
            waiting.add(pid)
            continue
        m = re.search(r'read\(\d+</dev/fuse>, "((?:\\x[0-9a-f]{2}){8})', line)
        if not m and pid in waiting and '<... read resumed>' in line:
            waiting.discard(pid)
            m = re.search(r'resumed>\s*"((?:\\x[0-9a-f]{2}){8})', line)
        if m:
            b = bytes(int(x,16) for x in re.findall(r'\\x([0-9a-f]{2})', m.group(1)))
            ops[names.get(int.from_bytes(b[4:8],'little'), 'op%d' % int.from_bytes(b[4:8],'little'))] += 1
            continue
        m = re.search(r'(fsync|fdatasync|syncfs|sync_file_range)\(\d+<([^>]*)>', line)
        if m: calls[(m.group(1), kind(m.group(2)))] += 1
    return ops, calls
ops, calls = count(f'{w}/loop.log')
t = sum(ops.values()); f = sum(calls.values())
print(f"{label}: {os.environ['WORKLOAD']} of {n} new files: {t} FUSE requests ({t/n:.2f}/file) {dict(ops.most_common())}; {f} fsync-family calls ({f/n:.2f}/file) {dict(calls)}")
ops, calls = count(f'{w}/fsync.log')
print(f"{label}: one file written+fsync'ed, its folder fsync'ed: {sum(ops.values())} FUSE requests {dict(ops.most_common())}; fsync-family calls {dict(calls)}")
PY
fusermount3 -u $W/mnt 2>/dev/null; wait $MP 2>/dev/null
kill $PP 2>/dev/null; wait $PP 2>/dev/null
echo "work dir: $W"
