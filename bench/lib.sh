# Shared by bench/count-requests.sh and bench/count-syscalls.sh (sourced, not run).

# make_tree DIR N: N small files in folders of 50, as `cargo bench --bench smallfiles` makes them.
make_tree() {
    python3 - "$1" "$2" <<'PY'
import sys, os
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = f'{root}/d{i // 50}'
    os.makedirs(d, exist_ok=True)
    with open(f'{d}/f{i}.txt', 'w') as f: f.write('line of file ' + str(i) * 40)
PY
}

# start_mount BIN W: the dev platform (PORT, PP) and `hyperclay mount` of it at W/mnt (MP).
start_mount() {
    PORT=$((20000 + RANDOM % 20000))
    HYPERCLAY_DEV_API_KEY=hcsk_bench $1 dev-platform --data $2/platform --listen 127.0.0.1:$PORT >$2/platform.log 2>&1 &
    PP=$!
    for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:$PORT/ && break; sleep 0.1; done
    mkdir -p $2/mnt
    export HYPERCLAY_HOME=$2/home HYPERCLAY_URL=http://127.0.0.1:$PORT HYPERCLAY_API_KEY=hcsk_bench RUST_LOG=warn
    $1 mount $2/mnt --mirror $2/mirror --no-serve >$2/mount.out 2>$2/mount.err &
    MP=$!
    for i in $(seq 300); do grep -q "mounted at" $2/mount.out && break; sleep 0.1; done
}
