#!/bin/sh
# Fresh Debian 12: installs what cmkfs needs, builds it, creates a demo volume with the default
# service-managed key and mounts it. Re-running reuses the existing demo volume.
set -eu
cd "$(dirname "$0")/.."
DEMO=${CMKFS_DEMO_DIR:-/tmp/cmkfs-demo}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
if ! command -v fusermount3 >/dev/null 2>&1 || ! command -v cc >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq fuse3 build-essential curl ca-certificates >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    . "$HOME/.cargo/env"
fi
cargo build --release --quiet
BIN=$PWD/target/release/cmkfs
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
echo "Unmount with: $BIN umount $DEMO/mnt"
