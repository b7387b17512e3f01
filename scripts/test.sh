#!/usr/bin/env bash
# Every test: unit tests, and integration tests against real servers on loopback and real FUSE
# mounts. Fails (never skips) when FUSE is not available.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -e /dev/fuse ] || { echo "FATAL: /dev/fuse is missing (FUSE tests cannot run)" >&2; exit 1; }
command -v fusermount3 >/dev/null || { echo "FATAL: fusermount3 is missing: apt-get install fuse3" >&2; exit 1; }
command -v node >/dev/null || { echo "FATAL: Node.js is missing (the browser tests need it): apt-get install nodejs npm" >&2; exit 1; }
# The browser tests drive Debian's Chromium through playwright-core, and the save-pattern tests
# run write-file-atomic: both pinned in tests/browser/package-lock.json, installed again when it
# changes.
if ! cmp -s tests/browser/package-lock.json tests/browser/node_modules/.installed-lock; then
  npm ci --prefix tests/browser --silent --no-audit --no-fund
  cp tests/browser/package-lock.json tests/browser/node_modules/.installed-lock
fi
exec cargo test --locked "$@"
