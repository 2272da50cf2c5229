#!/bin/sh
# Runs every test: unit tests, format/crypto oracle tests and the real-mount integration tests.
# Needs root (or fuse3's fusermount3) and /dev/fuse. Installs the packages the tests drive
# (scripts/test-deps.sh) when they are missing.
set -eu
cd "$(dirname "$0")/.."
scripts/test-deps.sh
if ! command -v cargo >/dev/null 2>&1; then
    # As scripts/demo.sh: Debian 12's rustc is too old for edition 2024.
    [ -f "$HOME/.cargo/env" ] || curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    . "$HOME/.cargo/env"
fi
export RUST_BACKTRACE=1
cargo build --quiet --all-targets
# Mount tests are heavy; run test binaries in parallel but keep each one's threads modest.
status=0
cargo test --quiet --no-fail-fast -- --test-threads="${CMKFS_TEST_THREADS:-4}" || status=$?
# The GlusterFS volume that tests/gluster.rs started (if any) goes with the run.
scripts/gluster.sh down 2>/dev/null || true
exit $status
