#!/bin/sh
# Customer-managed key demo: starts the in-repo Key Vault emulator (real REST API over TLS),
# creates a CMK, binds a new volume to it, mounts, writes, revokes the key and restores it,
# printing what a user sees at each step. Needs root (FUSE) and fuse3.
set -eu
cd "$(dirname "$0")/.."
D=${CMKFS_DEMO_DIR:-/tmp/cmkfs-demo-cmk}
cargo build --quiet -p cmkfs -p kv-emulator
CMKFS=$PWD/target/debug/cmkfs
EMU=$PWD/target/debug/kv-emulator
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() {
    "$CMKFS" umount "$D/mnt" 2>/dev/null || true
    [ -n "${EMU_PID:-}" ] && kill "$EMU_PID" 2>/dev/null || true
}
trap cleanup EXIT
rm -rf "$D" && mkdir -p "$D/mnt"

say "Start the Key Vault emulator (HTTPS, test CA)"
"$EMU" --ca-out "$D/ca.pem" > "$D/emulator.out" &
EMU_PID=$!
i=0
while ! grep -q '^ready ' "$D/emulator.out" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "emulator did not start" >&2; exit 1; }
    sleep 0.1
done
URL=$(sed -n 's/^ready //p' "$D/emulator.out")
C="curl -sS --cacert $D/ca.pem"
echo "vault: $URL"

say "Create the customer-managed key 'kek' (RSA 2048)"
$C -X POST "${URL}_emulator/keys/kek"; echo
echo "operator-token" > "$D/token"
KV="--azure-credential access-token-file:$D/token --ca-file $D/ca.pem --no-verify-challenge-resource"

say "cmkfs init --cmk ${URL}keys/kek"
"$CMKFS" init "$D/backing" --service-key "$D/service.key" --cmk "${URL}keys/kek" $KV

say "Mount and write"
"$CMKFS" mount "$D/backing" "$D/mnt" --service-key "$D/service.key" $KV --revocation-check-interval 5 --log-file "$D/cmkfs.log"
echo "quarterly numbers: 42" > "$D/mnt/report.txt"
echo "\$ cat $D/mnt/report.txt"; cat "$D/mnt/report.txt"
"$CMKFS" status "$D/mnt"

say "The customer disables the key in Key Vault"
$C -X POST "${URL}_emulator/keys/kek/disable" > /dev/null
"$CMKFS" key check "$D/mnt" || true
echo "\$ cat $D/mnt/report.txt"; cat "$D/mnt/report.txt" || true

say "The customer enables the key again (no remount)"
$C -X POST "${URL}_emulator/keys/kek/enable" > /dev/null
"$CMKFS" key check "$D/mnt"
echo "\$ cat $D/mnt/report.txt"; cat "$D/mnt/report.txt"

say "Key Vault outage (503): not a revocation, cached keys keep serving"
$C -X POST "${URL}_emulator/faults?kind=503" > /dev/null
"$CMKFS" key check "$D/mnt" || true
echo "\$ cat $D/mnt/report.txt"; cat "$D/mnt/report.txt"
$C -X DELETE "${URL}_emulator/faults" > /dev/null

say "Rotate the CMK in the vault, re-wrap the data keys (no data re-encrypted)"
$C -X POST "${URL}_emulator/keys/kek/rotate"; echo
"$CMKFS" key rotate "$D/mnt"

say "What the daemon logged"
grep -E "revoked|restored|unreachable|re-wrapped" "$D/cmkfs.log" | sed 's/^/  /'
"$CMKFS" umount "$D/mnt"
echo
echo "Done. Files are in $D."
