#!/bin/sh
# Regenerates tests/fixtures/volume-v2-scopes, the committed sample of a format-2 volume with
# key scopes (keystore.json "scopes") that tests/sample_volume.rs reads: the volume root, a
# scope "customer" (service key only; a file and a subdirectory), and a locked scope
# "offboarded". Only run this for a deliberate change of how scopes are stored.
set -eu
cd "$(dirname "$0")/.."
cargo build --quiet
BIN=$PWD/target/debug/cmkfs
OUT=tests/fixtures/volume-v2-scopes
KEY=tests/fixtures/volume-v2-scopes.key
rm -rf "$OUT" "$KEY"
TMP=$(mktemp -d)
AUDIT=$(mktemp)
"$BIN" init "$OUT" --service-key "$KEY" --audit-log "$AUDIT" >/dev/null
"$BIN" mount "$OUT" "$TMP" --service-key "$KEY" --audit-log "$AUDIT"
printf 'the operator\n' > "$TMP/root.txt"
mkdir "$TMP/customer" "$TMP/offboarded"
"$BIN" scope create "$TMP/customer" --service-key-only >/dev/null
"$BIN" scope create "$TMP/offboarded" --service-key-only >/dev/null
printf "customer's contract\n" > "$TMP/customer/contract.txt"
mkdir "$TMP/customer/sub"
printf 'deep\n' > "$TMP/customer/sub/deep.txt"
printf 'gone customer\n' > "$TMP/offboarded/old.txt"
"$BIN" scope lock "$TMP/offboarded" >/dev/null
"$BIN" umount "$TMP"
rmdir "$TMP"
rm -f "$OUT/.cmkfs/mount.lock" "$AUDIT"
chmod 644 "$KEY"   # git does not keep modes; the test copies it and sets 0600
echo "wrote $OUT"
