#!/usr/bin/env bash
# From a fresh clone to a running platform: installs fuse3 if missing, builds the release binary,
# starts the bundled dev platform (unless HYPERCLAY_URL is set).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v fusermount3 >/dev/null 2>&1; then
  echo "installing fuse3 (needs root)..."
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq fuse3
fi
cargo build --release --locked
bin=target/release/hyperclay

if [ -z "${HYPERCLAY_URL:-}" ]; then
  data="${XDG_DATA_HOME:-$HOME/.local/share}/hyperclay/dev-platform"
  [ -n "${HYPERCLAY_HOME:-}" ] && data="$HYPERCLAY_HOME/data/dev-platform"
  echo "starting the dev platform (data: $data); Ctrl-C stops it"
  exec "$bin" dev-platform --data "$data" --api-key hcsk_local_dev --samples
fi
echo "HYPERCLAY_URL=$HYPERCLAY_URL is set: nothing to start yet (the mount comes next)."
