#!/usr/bin/env bash
# hyperclay on the other systems (README, "Other systems"):
#
#   Windows  `cargo build --target x86_64-pc-windows-gnu` with Debian's mingw-w64 as the linker,
#            then under Wine (Debian's wine64): `hyperclay.exe --version`, the library's unit
#            tests (src/os/windows.rs among them), and the plain folder syncing one file each way
#            with a `hyperclay dev-platform` running natively on loopback (`folder_sync_under_wine`).
#   macOS    `cargo check --target aarch64-apple-darwin` of every crate. ring and the bundled
#            SQLite compile C that includes Apple's SDK headers (TargetConditionals.h, stdio.h),
#            which no Linux machine has: their C is handed to a stand-in compiler that writes
#            empty objects. `cargo check` never links, so all the Rust, ours and the
#            dependencies', is checked, and none of that C.
#
# Debug builds, decided: the check is that it builds and behaves, not how fast; a release build
# of the whole tree for a second target takes about three times as long on 2 cores, and debug
# keeps the debug assertions on.
#
# Installs what is missing (rustup targets, mingw-w64, Wine). A target, mingw or Wine that can't
# be installed is said plainly, and only the part that needs it is skipped; anything that fails
# once it runs fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

WINDOWS=x86_64-pc-windows-gnu
MACOS=aarch64-apple-darwin
WORK="$PWD/target/cross-check"
mkdir -p "$WORK"

skipped=()
skip() {
  echo "cross-check: SKIPPED: $*" >&2
  skipped+=("$*")
}
step() { echo "cross-check: $*"; }

sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
apt_updated=false
apt_install() {
  if ! $apt_updated; then
    $sudo_cmd apt-get update -qq || true
    apt_updated=true
  fi
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "$@" >/dev/null
}

has_target() { rustup target list --installed 2>/dev/null | grep -qx "$1"; }
ensure_target() {
  has_target "$1" || rustup target add "$1" >/dev/null 2>&1 || true
  has_target "$1"
}

command -v python3 >/dev/null || apt_install python3 || true
command -v python3 >/dev/null || { echo "FATAL: python3 could not be installed (the checks read JSON with it)" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Windows

# Each part sets its flag once it is ready; the functions are never called as conditions, so
# `set -e` holds inside them: a build or a check that fails stops the script.
windows_exe=""
windows_tests=""
windows_built=false
wine_ready=false

build_windows() {
  if ! ensure_target "$WINDOWS"; then
    skip "Windows: the Rust target $WINDOWS could not be installed (rustup target add $WINDOWS)"
    return 0
  fi
  command -v x86_64-w64-mingw32-gcc >/dev/null || apt_install gcc-mingw-w64-x86-64 || true
  if ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
    skip "Windows: mingw-w64 could not be installed (Debian package gcc-mingw-w64-x86-64), so nothing links for Windows"
    return 0
  fi
  export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
  step "building hyperclay.exe ($WINDOWS, debug)"
  cargo build --locked --quiet --target "$WINDOWS" --bin hyperclay
  windows_exe="$PWD/target/$WINDOWS/debug/hyperclay.exe"
  step "building the library's unit tests for Windows"
  windows_tests=$(cargo test --locked --quiet --target "$WINDOWS" --lib --no-run --message-format=json \
    | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["lib"]:
        print(m["executable"])')
  [ -n "$windows_tests" ] || { echo "FATAL: no unit-test executable was built for Windows" >&2; exit 1; }
  # Rust's std needs bcryptprimitives.dll's ProcessPrng; Wine 8 has none: the stand-in goes
  # beside each .exe (Windows itself has the real one; it is never shipped).
  local dll="$WORK/bcryptprimitives.dll"
  x86_64-w64-mingw32-gcc -shared -O2 -s -o "$dll" scripts/wine/bcryptprimitives.c -ladvapi32
  cp "$dll" "$(dirname "$windows_exe")/"
  cp "$dll" "$(dirname "$windows_tests")/"
  windows_built=true
}

WINE=""
setup_wine() {
  command -v wine >/dev/null || apt_install wine wine64 || true
  if command -v wine >/dev/null; then
    WINE=wine
  elif [ -x /usr/lib/wine/wine64 ]; then
    WINE=/usr/lib/wine/wine64
  else
    skip "Windows: Wine could not be installed (Debian packages wine, wine64): hyperclay.exe was built but not run"
    return 0
  fi
  export WINEPREFIX="$WORK/wineprefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
  unset DISPLAY
  if [ ! -f "$WINEPREFIX/system.reg" ]; then
    step "making a Wine prefix in $WINEPREFIX"
    $WINE wineboot --init >/dev/null 2>&1 || true
    # The registry files are written when the prefix's wineserver ends.
    wineserver -w >/dev/null 2>&1 || true
  fi
  [ -f "$WINEPREFIX/system.reg" ] || { echo "FATAL: Wine could not make its prefix $WINEPREFIX" >&2; exit 1; }
  wine_ready=true
}

stop_wineserver() {
  if [ -n "$WINE" ] && [ -n "${WINEPREFIX:-}" ]; then
    wineserver -k >/dev/null 2>&1 || true
  fi
}

# The Windows path Wine gives a Linux path (`Z:\...`).
winpath() { winepath -w "$1" 2>/dev/null | tr -d '\r'; }

version_under_wine() {
  step "hyperclay.exe --version under Wine"
  local native windows
  native=$(cargo run --locked --quiet --bin hyperclay -- --version)
  windows=$($WINE "$windows_exe" --version 2>&1 | tr -d '\r')
  if [ "$windows" != "$native" ]; then
    echo "FATAL: hyperclay.exe --version said '$windows', the Linux build '$native'" >&2
    exit 1
  fi
  echo "  $windows"
}

unit_tests_under_wine() {
  step "the library's unit tests under Wine"
  local out="$WORK/unit-tests.log"
  if ! (cd "$WORK" && $WINE "$windows_tests" >"$out" 2>&1); then
    grep -v '^ \+\(at \|[0-9]\+:\)' "$out" | tail -40 >&2
    echo "FATAL: the unit tests failed under Wine (all of it: $out)" >&2
    exit 1
  fi
  grep '^test result' "$out" | tr -d '\r' | sed 's/^/  /'
}

# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
  local seconds=$1
  shift
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.25
  done
}

# The platform's answer to `GET path` (the sync API, docs/sync-api.md).
api() {
  local method=$1 path=$2
  shift 2
  curl -sS --fail -X "$method" -H "X-API-Key: $API_KEY" -H 'Content-Type: application/json' \
    "$PLATFORM_URL/_/sync/$path" "$@"
}

# The node named $1 at the platform's root, as `id checksum`, if there is one.
platform_node() {
  api GET nodes | python3 -c '
import json, sys
for n in json.load(sys.stdin)["nodes"]:
    if n["name"] == sys.argv[1] and n["path"] == "":
        print(n["id"], n.get("checksum", ""))' "$1"
}

checksum() { printf '%s' "$1" | sha256sum | cut -c1-16; }

platform_holds() { [ "$(platform_node "$1" | cut -d' ' -f2)" = "$2" ]; }
file_holds() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
said() { grep -q "$2" "$1" 2>/dev/null; }

# The plain folder, the front door Windows has, kept in sync by hyperclay.exe under Wine against
# a dev platform running natively on loopback: a file a Windows program saves in the folder
# reaches the platform, a platform change lands in the folder, `status` and `unmount` reach the
# running folder over its control pipe.
folder_sync_under_wine() {
  step "the plain folder under Wine, against a native dev platform"
  command -v curl >/dev/null || apt_install curl
  cargo build --locked --quiet --bin hyperclay
  local native="$PWD/target/debug/hyperclay"
  local run="$WORK/folder-run"
  rm -rf "$run"
  mkdir -p "$run/platform" "$run/home" "$run/folder"
  API_KEY="hcsk_cross_check_$(date +%s)"
  HYPERCLAY_DEV_API_KEY="$API_KEY" "$native" dev-platform --data "$run/platform" \
    --listen 127.0.0.1:0 >"$run/platform.log" 2>&1 &
  local platform_pid=$!
  local mount_pid=""
  # shellcheck disable=SC2064
  trap "kill $platform_pid 2>/dev/null || true; stop_wineserver" EXIT
  wait_for 30 said "$run/platform.log" 'HYPERCLAY_URL=' \
    || { cat "$run/platform.log" >&2; echo "FATAL: the dev platform did not start" >&2; exit 1; }
  PLATFORM_URL=$(sed -n 's/.*HYPERCLAY_URL=//p' "$run/platform.log" | head -1 | tr -d '\r')

  # A site on the platform before the folder starts: it comes down, later a change of it too.
  api POST nodes -d '{"type":"site","name":"from-platform.html","parentId":0,"content":"<p>one</p>"}' >/dev/null

  local folder_win home_win
  folder_win=$(winpath "$run/folder")
  home_win=$(winpath "$run/home")
  (cd "$run" && HYPERCLAY_HOME="$home_win" HYPERCLAY_URL="$PLATFORM_URL" HYPERCLAY_API_KEY="$API_KEY" \
    $WINE "$windows_exe" mount "$folder_win" --folder --no-serve >"$run/mount.log" 2>&1) &
  mount_pid=$!
  # shellcheck disable=SC2064
  trap "kill $mount_pid $platform_pid 2>/dev/null || true; stop_wineserver" EXIT
  fail() {
    echo "--- hyperclay.exe mount said:" >&2
    tr -d '\r' <"$run/mount.log" >&2 || true
    echo "--- its log:" >&2
    tail -30 "$run/home/state/sync.log" >&2 2>/dev/null || true
    echo "FATAL: $*" >&2
    exit 1
  }
  wait_for 90 said "$run/mount.log" 'kept in sync at' || fail "the folder did not start under Wine"
  echo "  started: $(grep 'kept in sync at' "$run/mount.log" | tr -d '\r')"
  wait_for 30 file_holds "$run/folder/from-platform.html" '<p>one</p>' \
    || fail "the platform's site did not come down into the folder"
  echo "  the platform's site came down"

  # A Windows program saves a new site in the folder.
  local made='<p>saved on Windows</p>'
  (cd "$run" && $WINE cmd /c "echo ^<p^>saved on Windows^</p^>> $folder_win\\from-windows.html") >/dev/null 2>&1 \
    || fail "cmd could not write into the folder"
  # cmd's echo ends the line with CRLF.
  wait_for 60 platform_holds from-windows.html "$(printf '%s\r\n' "$made" | sha256sum | cut -c1-16)" \
    || fail "from-windows.html did not reach the platform"
  echo "  a file saved by a Windows program reached the platform"

  # A change on the platform lands in the folder.
  local node
  node=$(platform_node from-platform.html | cut -d' ' -f1)
  api PUT "nodes/$node/content" -d '{"content":"<p>two</p>"}' >/dev/null
  wait_for 60 file_holds "$run/folder/from-platform.html" '<p>two</p>' \
    || fail "the platform's change did not land in the folder"
  echo "  a platform change landed in the folder"

  # status and unmount reach the running folder over its control pipe.
  local status
  status=$(cd "$run" && HYPERCLAY_HOME="$home_win" $WINE "$windows_exe" status "$folder_win" 2>&1 | tr -d '\r') \
    || fail "hyperclay.exe status failed: $status"
  grep -q 'folder:' <<<"$status" || fail "hyperclay.exe status did not name the folder: $status"
  echo "  status: $(grep 'folder:' <<<"$status" | sed 's/^ *//')"
  (cd "$run" && HYPERCLAY_HOME="$home_win" $WINE "$windows_exe" unmount "$folder_win" >"$run/unmount.log" 2>&1) \
    || { tr -d '\r' <"$run/unmount.log" >&2; fail "hyperclay.exe unmount failed"; }
  wait_for 60 bash -c "! kill -0 $mount_pid 2>/dev/null" || fail "the folder did not stop after unmount"
  echo "  unmount stopped it"
  kill "$platform_pid" 2>/dev/null || true
  wait "$platform_pid" 2>/dev/null || true
  trap stop_wineserver EXIT
}

build_windows
if $windows_built; then
  setup_wine
fi
if $wine_ready; then
  trap stop_wineserver EXIT
  version_under_wine
  unit_tests_under_wine
  folder_sync_under_wine
fi

# ---------------------------------------------------------------------------------------------
# macOS

check_macos() {
  if ! ensure_target "$MACOS"; then
    skip "macOS: the Rust target $MACOS could not be installed (rustup target add $MACOS)"
    return
  fi
  # The stand-in C compiler and archiver for Apple's (see the top of this file).
  local stub="$WORK/apple-stub"
  mkdir -p "$stub"
  cat >"$stub/cc" <<'EOF'
#!/bin/sh
# Stands in for Apple's C compiler under `cargo check`: an empty object where one is asked for.
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out="$2"; shift ;;
    -o*) out="${1#-o}" ;;
  esac
  shift
done
[ -n "$out" ] && : >"$out"
exit 0
EOF
  cat >"$stub/ar" <<'EOF'
#!/bin/sh
# Stands in for Apple's archiver under `cargo check`: an empty archive.
for arg in "$@"; do
  case "$arg" in *.a) [ -s "$arg" ] || printf '!<arch>\n' >"$arg"; exit 0 ;; esac
done
exit 0
EOF
  chmod +x "$stub/cc" "$stub/ar"
  step "cargo check --target $MACOS (C of ring and SQLite stood in for)"
  CC_aarch64_apple_darwin="$stub/cc" AR_aarch64_apple_darwin="$stub/ar" \
    cargo check --locked --quiet --target "$MACOS"
}
check_macos

if [ ${#skipped[@]} -gt 0 ]; then
  echo "cross-check: done, with ${#skipped[@]} part(s) skipped:" >&2
  printf '  %s\n' "${skipped[@]}" >&2
else
  echo "cross-check: done: Windows built and ran under Wine, macOS checked"
fi
