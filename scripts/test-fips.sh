#!/bin/sh
# The fips build's focused test subset (the default build runs the full suite, scripts/test.sh):
# the dependency/symbol check, unit tests, the crypto known-answer tests, the format oracle, the
# committed sample volumes, the FIPS mount tests (tests/fips.rs; with CMKFS_OTHER_BUILD set
# to the default build's binary, volumes cross between the builds both ways), and the mount
# tests that exercise names and authentication hardest (ciphertext, namespace, posix, tamper,
# fsck, reencrypt), on volumes that the fips build creates with the FIPS name scheme, and the
# customer-managed-key tests (TLS to the Key Vault emulator on rustls' FIPS provider).
# Needs cmake and golang-go (Debian) to build AWS-LC-FIPS; root and /dev/fuse for the mounts.
set -eu
cd "$(dirname "$0")/.."
scripts/test-deps.sh --fips
export RUST_BACKTRACE=1
export CARGO_TARGET_DIR=target/fips
# One build (the test profile) serves the dependency/symbol check and the tests.
cargo build --quiet --features fips --all-targets
scripts/check-fips-deps.sh target/fips/debug/cmkfs
# The check must be able to fail: the default build's binary (non-FIPS AWS-LC linked) is refused.
if [ -x target/debug/cmkfs ] && scripts/check-fips-deps.sh target/debug/cmkfs >/dev/null 2>&1; then
    echo "test-fips: check-fips-deps.sh accepted the default build's binary" >&2
    exit 1
fi
if [ -z "${CMKFS_OTHER_BUILD:-}" ] && [ -x target/debug/cmkfs ]; then
    CMKFS_OTHER_BUILD=$PWD/target/debug/cmkfs
    export CMKFS_OTHER_BUILD
fi
cargo test --quiet --features fips --no-fail-fast --lib \
    --test crypto_kat --test format_oracle --test sample_volume --test fips --test ciphertext \
    --test namespace --test posix --test tamper --test fsck --test reencrypt --test cmk \
    -- --test-threads="${CMKFS_TEST_THREADS:-4}"
