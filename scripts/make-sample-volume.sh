#!/bin/sh
# Regenerates tests/fixtures/volume-v1, the committed sample volume that tests/sample_volume.rs
# reads. Only run this for a deliberate format change (and bump the format version).
set -eu
cd "$(dirname "$0")/.."
cargo build --quiet
BIN=$PWD/target/debug/cmkfs
OUT=tests/fixtures/volume-v1
KEY=tests/fixtures/volume-v1.key
rm -rf "$OUT" "$KEY"
TMP=$(mktemp -d)
"$BIN" init "$OUT" --service-key "$KEY" >/dev/null
"$BIN" mount "$OUT" "$TMP" --service-key "$KEY"
printf 'Hello from the cmkfs v1 sample volume.\n' > "$TMP/hello.txt"
mkdir "$TMP/docs"
python3 -c 'import sys; sys.stdout.buffer.write(bytes(i % 251 for i in range(10000)))' > "$TMP/docs/numbers.bin"
: > "$TMP/docs/empty"
printf 'long name\n' > "$TMP/$(printf 'L%.0s' $(seq 200)).txt"
printf 'unicode\n' > "$TMP/grüße-日本.txt"
ln -s hello.txt "$TMP/link"
"$BIN" umount "$TMP"
rmdir "$TMP"
chmod 644 "$KEY"   # git does not keep modes; the test copies it and sets 0600
echo "wrote $OUT"
