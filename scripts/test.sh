#!/bin/sh
# Runs every test: unit tests, format/crypto oracle tests and the real-mount integration tests.
# Needs root (or fuse3's fusermount3) and /dev/fuse. Installs nothing; see .ci/run for that.
set -eu
cd "$(dirname "$0")/.."
export RUST_BACKTRACE=1
cargo build --quiet --all-targets
# Mount tests are heavy; run test binaries in parallel but keep each one's threads modest.
cargo test --quiet --no-fail-fast -- --test-threads="${CMKFS_TEST_THREADS:-4}"
