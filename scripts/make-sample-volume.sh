#!/bin/sh
# Regenerates tests/fixtures/volume-v2, the committed format-2 sample volume that
# tests/sample_volume.rs reads. Only run this for a deliberate format change (and bump the
# format version). tests/fixtures/volume-v1 stays as it is: it was made by this script's
# format-1 version (git show 5e873b1:scripts/make-sample-volume.sh) and must keep mounting.
set -eu
cd "$(dirname "$0")/.."
cargo build --quiet
BIN=$PWD/target/debug/cmkfs
OUT=tests/fixtures/volume-v2
KEY=tests/fixtures/volume-v2.key
rm -rf "$OUT" "$KEY"
TMP=$(mktemp -d)
"$BIN" init "$OUT" --service-key "$KEY" >/dev/null
"$BIN" mount "$OUT" "$TMP" --service-key "$KEY"
printf 'Hello from the cmkfs v2 sample volume.\n' > "$TMP/hello.txt"
mkdir "$TMP/docs"
python3 -c 'import sys; sys.stdout.buffer.write(bytes(i % 251 for i in range(10000)))' > "$TMP/docs/numbers.bin"
: > "$TMP/docs/empty"
printf 'long name\n' > "$TMP/$(printf 'L%.0s' $(seq 200)).txt"
printf 'unicode\n' > "$TMP/grüße-日本.txt"
ln -s hello.txt "$TMP/link"
# Format 2: a sparse file (4 MiB: data at 1 MiB and in the last block, a punched hole in the
# middle of the data at 1 MiB, holes elsewhere).
python3 - "$TMP/sparse.bin" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, 4 << 20)
os.pwrite(fd, bytes(i % 253 for i in range(65536)), 1 << 20)
os.pwrite(fd, b"tail\n", (4 << 20) - 5)
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2
if libc.fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, ctypes.c_long((1 << 20) + 16384), ctypes.c_long(16384)) != 0:
    raise OSError(ctypes.get_errno(), "fallocate")
os.fsync(fd)
os.close(fd)
PY
# A 4,003-byte symlink target (side record). Nothing that git cannot carry: no xattrs (so no
# ACLs, and the directory ids' xattr copies are missing in a clone: mounts read the file copy),
# no device nodes (whiteouts).
ln -s "$(python3 -c 'print("t" * 3999, end="")')/end" "$TMP/long-link"
"$BIN" umount "$TMP"
rmdir "$TMP"
rm -f "$OUT/.cmkfs/mount.lock"
chmod 644 "$KEY"   # git does not keep modes; the test copies it and sets 0600
echo "wrote $OUT"
