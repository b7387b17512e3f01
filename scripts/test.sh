#!/usr/bin/env bash
# Every test: unit tests, and integration tests against real servers on loopback and real FUSE
# mounts. Fails (never skips) when FUSE is not available.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -e /dev/fuse ] || { echo "FATAL: /dev/fuse is missing (FUSE tests cannot run)" >&2; exit 1; }
command -v fusermount3 >/dev/null || { echo "FATAL: fusermount3 is missing: apt-get install fuse3" >&2; exit 1; }
# The browser tests drive Debian's Chromium through playwright-core (pinned in its lock file).
command -v node >/dev/null || { echo "FATAL: Node.js is missing (the browser tests need it): apt-get install nodejs npm" >&2; exit 1; }
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  npm ci --prefix tests/browser --silent --no-audit --no-fund
fi
exec cargo test --locked "$@"
