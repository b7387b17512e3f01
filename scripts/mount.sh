#!/usr/bin/env bash
# From a fresh clone to a mounted, syncing folder: installs fuse3 if missing, builds the release
# binary, starts the bundled dev platform unless HYPERCLAY_URL is set, and mounts at MOUNTPOINT
# (default ~/Hyperclay) until Ctrl-C.
#   scripts/mount.sh [MOUNTPOINT]
set -euo pipefail
cd "$(dirname "$0")/.."
mountpoint="${1:-$HOME/Hyperclay}"

if ! command -v fusermount3 >/dev/null 2>&1; then
  echo "installing fuse3..."
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq fuse3
fi
[ -e /dev/fuse ] || { echo "/dev/fuse is missing: load the fuse module (modprobe fuse)" >&2; exit 1; }

cargo build --release --locked
bin="$PWD/target/release/hyperclay"

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

mkdir -p "$mountpoint"
echo "mounting at $mountpoint; Ctrl-C unmounts"
"$bin" mount "$mountpoint"
