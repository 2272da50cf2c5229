#!/bin/sh
# Fresh Debian 12: installs what cmkfs needs, builds it, creates a demo volume with the default
# service-managed key and mounts it. Re-running reuses the existing demo volume.
# --fips: the fips build (AWS-LC-FIPS in FIPS mode, FIPS name scheme; also installs cmake and
# golang-go), demo volume in /tmp/cmkfs-demo-fips.
set -eu
cd "$(dirname "$0")/.."
FIPS=0
[ "${1:-}" = "--fips" ] && FIPS=1
if [ "$FIPS" -eq 1 ]; then
    DEMO=${CMKFS_DEMO_DIR:-/tmp/cmkfs-demo-fips}
else
    DEMO=${CMKFS_DEMO_DIR:-/tmp/cmkfs-demo}
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
if ! command -v fusermount3 >/dev/null 2>&1 || ! command -v cc >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq fuse3 build-essential curl ca-certificates >/dev/null
fi
if [ "$FIPS" -eq 1 ] && { ! command -v cmake >/dev/null 2>&1 || ! command -v go >/dev/null 2>&1; }; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq cmake golang-go >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    . "$HOME/.cargo/env"
fi
if [ "$FIPS" -eq 1 ]; then
    CARGO_TARGET_DIR=target/fips cargo build --release --quiet --features fips
    BIN=$PWD/target/fips/release/cmkfs
    "$BIN" --version
else
    cargo build --release --quiet
    BIN=$PWD/target/release/cmkfs
fi
mkdir -p "$DEMO/mnt"
if [ ! -d "$DEMO/backing/.cmkfs" ]; then
    "$BIN" init "$DEMO/backing" --service-key "$DEMO/service.key"
fi
if ! grep -qs " $DEMO/mnt " /proc/self/mountinfo; then
    "$BIN" mount "$DEMO/backing" "$DEMO/mnt" --service-key "$DEMO/service.key" --log-file "$DEMO/cmkfs.log"
fi
echo "hello from cmkfs" > "$DEMO/mnt/hello.txt"
echo
echo "Mounted: $DEMO/mnt (plaintext)  <-  $DEMO/backing (ciphertext)"
echo "  plaintext:  $(cat "$DEMO/mnt/hello.txt")"
echo "  on disk:    $(ls "$DEMO/backing" | head -3 | tr '\n' ' ')"
[ "$FIPS" -eq 1 ] && echo "  names:      $(sed -n 's/.*"name_cipher": "\(.*\)".*/\1/p' "$DEMO/backing/.cmkfs/volume.json")"
echo "Unmount with: $BIN umount $DEMO/mnt"
