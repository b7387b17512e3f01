#!/usr/bin/env python3
# bench/inode-reuse.py MODE N: the disk side of N new small files, in folders of 50, as a save
# through the mount lays them down, without the mount: MODE `rename` (an empty copy made at create,
# then a finished temp file renamed over it: one inode freed per file, what the mount did before),
# `exchange` (the temp file swapped in with renameat2(RENAME_EXCHANGE) and the empty copy reused
# for the next file's: no inode freed, what the mount does now on Linux), `plain` (each file
# written in place). Prints microseconds per file. Run under /tmp on the bench machine (ext4
# without a journal: there every inode allocation skips the inodes freed in the last half
# minute, one by one). BENCHMARKS.md, "Inodes, symlink checks, a commit (issue 25)".
import ctypes, os, shutil, sys, tempfile, time
libc = ctypes.CDLL(None, use_errno=True)
RENAME_EXCHANGE = 2
def exchange(a, b):
    if libc.renameat2(-100, a.encode(), -100, b.encode(), RENAME_EXCHANGE) != 0:
        raise OSError(ctypes.get_errno(), 'renameat2')
mode, n = sys.argv[1], int(sys.argv[2])
root = tempfile.mkdtemp(prefix=f'inode-{mode}-')
os.makedirs(root + '/tmp')
spares = []
t = time.perf_counter()
for i in range(n):
    d = f'{root}/d{i // 50}'
    if i % 50 == 0:
        os.mkdir(d)
    target = f'{d}/f{i}.txt'
    if mode == 'plain':
        with open(target, 'w') as f:
            f.write('x' * 100)
        continue
    if mode == 'exchange' and spares:
        os.rename(spares.pop(), target)
    else:
        open(target, 'w').close()
    work = f'{root}/tmp/w{i}'
    with open(work, 'w') as f:
        f.write('x' * 100)
    if mode == 'rename':
        os.rename(work, target)
    else:
        exchange(work, target)
        spares.append(work)
print(mode, n, f'{(time.perf_counter() - t) / n * 1e6:.0f} us/file')
shutil.rmtree(root)
