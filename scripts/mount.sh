#!/usr/bin/env bash
# From a fresh clone to a mounted, syncing folder: installs fuse3 if missing, builds the release
# binary, starts the bundled dev platform unless HYPERCLAY_URL is set, and mounts at MOUNTPOINT
# (default ~/Hyperclay) until Ctrl-C; where FUSE is missing (no /dev/fuse, macOS, Windows under
# a POSIX shell), the same command keeps MOUNTPOINT as a plain folder in sync. Every argument after MOUNTPOINT goes to `hyperclay mount`
# (--serve-port N, --no-serve, --mirror DIR, --daemon ...). HYPERCLAY_BIN names a hyperclay
# binary to run instead of building one.
#   scripts/mount.sh [MOUNTPOINT] [MOUNT OPTIONS...]
set -euo pipefail
cd "$(dirname "$0")/.."
mountpoint="$HOME/Hyperclay"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then mountpoint="$1"; shift; fi

# The FUSE mount needs fuse3 (Linux); where it can't be had, `hyperclay mount` keeps the folder
# as a plain folder in sync instead and says so in one line.
if [ "$(uname -s)" = Linux ] && ! command -v fusermount3 >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "installing fuse3..."
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  { $sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq fuse3; } ||
    echo "fuse3 could not be installed: the folder is kept as a plain folder in sync instead" >&2
fi

if [ -n "${HYPERCLAY_BIN:-}" ]; then
  bin="$HYPERCLAY_BIN"
else
  cargo build --release --locked
  bin="$PWD/target/release/hyperclay"
fi

platform_pid=""
cleanup() { [ -n "$platform_pid" ] && kill "$platform_pid" 2>/dev/null || true; }
trap cleanup EXIT

if [ -z "${HYPERCLAY_URL:-}" ]; then
  if [ -n "${HYPERCLAY_HOME:-}" ]; then data="$HYPERCLAY_HOME/data/dev-platform"
  else data="${XDG_DATA_HOME:-$HOME/.local/share}/hyperclay/dev-platform"; fi
  port="${HYPERCLAY_DEV_PORT:-8787}"
  export HYPERCLAY_URL="http://127.0.0.1:$port"
  export HYPERCLAY_API_KEY="hcsk_local_dev"
  # The key goes by the environment, not the command line (which any local user sees in ps).
  HYPERCLAY_DEV_API_KEY="$HYPERCLAY_API_KEY" "$bin" dev-platform --data "$data" --listen "127.0.0.1:$port" --samples &
  platform_pid=$!
  for _ in $(seq 50); do
    curl -fs -H "X-API-Key: $HYPERCLAY_API_KEY" "$HYPERCLAY_URL/_/sync/status" >/dev/null 2>&1 && break
    kill -0 "$platform_pid" 2>/dev/null || { echo "the dev platform did not start" >&2; exit 1; }
    sleep 0.1
  done
  echo "dev platform: $HYPERCLAY_URL (key $HYPERCLAY_API_KEY, data $data)"
fi

daemon=""
for arg in "$@"; do [ "$arg" = "--daemon" ] && daemon=1; done

mkdir -p "$mountpoint"
if [ -n "$daemon" ]; then echo "mounting at $mountpoint in the background"
else echo "mounting at $mountpoint; Ctrl-C unmounts"; fi
"$bin" mount "$mountpoint" "$@"
if [ -n "$daemon" ] && [ -n "$platform_pid" ]; then
  echo "the dev platform keeps running for the mount (pid $platform_pid): stop it after \`hyperclay unmount $mountpoint\`"
  platform_pid=""
fi
