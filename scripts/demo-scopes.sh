#!/bin/sh
# Key scopes demo: one volume, two customers, each in a directory of its own with its own
# customer-managed key (CMK) in the in-repo Key Vault emulator (real REST API over TLS).
# Writes to both, revokes customer A's key (A gets EKEYREVOKED, B keeps working), restores it,
# locks and unlocks B, lists the scopes and verifies the audit log.
# Fresh Debian 12 as root: installs fuse3, a C toolchain, curl and Rust when missing.
# Every step is bounded by `timeout`; the script exits non-zero if any expectation fails.
set -eu
cd "$(dirname "$0")/.."
D=${CMKFS_DEMO_DIR:-/tmp/cmkfs-demo-scopes}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
if ! command -v fusermount3 >/dev/null 2>&1 || ! command -v cc >/dev/null 2>&1 \
    || ! command -v curl >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq fuse3 build-essential curl ca-certificates >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
    [ -f "$HOME/.cargo/env" ] || curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    . "$HOME/.cargo/env"
fi
cargo build --quiet -p cmkfs -p kv-emulator
CMKFS=$PWD/target/debug/cmkfs
EMU=$PWD/target/debug/kv-emulator
M=$D/mnt
T="timeout 60"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }
run() { echo "\$ $*"; $T "$@"; }
cleanup() {
    timeout 30 "$CMKFS" umount "$M" 2>/dev/null || fusermount3 -u -z "$M" 2>/dev/null || true
    [ -n "${EMU_PID:-}" ] && kill "$EMU_PID" 2>/dev/null || true
}
trap cleanup EXIT
# The file must be readable and hold $2.
expect_read() {
    echo "\$ cat $1"
    out=$($T cat "$1") || fail "cat $1"
    echo "$out"
    [ "$out" = "$2" ] || fail "$1 holds '$out', not '$2'"
}
# Waits (bounded) until `cmkfs scope list` shows scope $1 in state $2: the revocation watcher
# checks every key with cached data keys each --revocation-check-interval (5 s here).
wait_state() {
    i=0
    until $T "$CMKFS" scope list "$M" | grep -Eq "^scope $1 +$2 "; do
        i=$((i + 1)); [ $i -gt 60 ] && fail "scope $1 did not become $2 within 30 s"
        sleep 0.5
    done
    echo "(scope $1 is $2 after ~$((i / 2)) s)"
}
# The command must fail with EKEYREVOKED ("Key has been revoked").
expect_revoked() {
    echo "\$ $*"
    if err=$($T "$@" 2>&1); then fail "$* succeeded"; fi
    echo "$err"
    case $err in *"Key has been revoked"*) ;; *) fail "$*: not EKEYREVOKED" ;; esac
}

if mountpoint -q "$M" 2>/dev/null; then timeout 30 "$CMKFS" umount "$M" || true; fi
rm -rf "$D" && mkdir -p "$M"

say "Start the Key Vault emulator (HTTPS, test CA)"
"$EMU" --ca-out "$D/ca.pem" > "$D/emulator.out" &
EMU_PID=$!
i=0
while ! grep -q '^ready ' "$D/emulator.out" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 100 ] && fail "emulator did not start"
    sleep 0.1
done
URL=$(sed -n 's/^ready //p' "$D/emulator.out")
C="$T curl -fsS --cacert $D/ca.pem"
echo "vault: $URL"

say "Each customer creates its own key in Key Vault: cust-a, cust-b"
$C -X POST "${URL}_emulator/keys/cust-a"; echo
$C -X POST "${URL}_emulator/keys/cust-b"; echo
echo "operator-token" > "$D/token"
KV="--azure-credential access-token-file:$D/token --ca-file $D/ca.pem --no-verify-challenge-resource"

say "A volume with the service-managed key (scope 0), mounted"
run "$CMKFS" init "$D/backing" --service-key "$D/service.key" --audit-log "$D/audit.log"
run "$CMKFS" mount "$D/backing" "$M" --service-key "$D/service.key" $KV \
    --revocation-check-interval 5 --log-file "$D/cmkfs.log" --audit-log "$D/audit.log"

say "One key scope per customer: an empty directory and the customer's key"
mkdir "$M/customer-a" "$M/customer-b"
run "$CMKFS" scope create "$M/customer-a" --cmk "${URL}keys/cust-a"
run "$CMKFS" scope create "$M/customer-b" --cmk "${URL}keys/cust-b"

say "Write data to both (new files take their directory's scope key)"
mkdir "$M/customer-a/reports" "$M/customer-b/reports"
echo "A: quarterly numbers 42" > "$M/customer-a/reports/q3.txt"
echo "B: quarterly numbers 17" > "$M/customer-b/reports/q3.txt"
echo "shared readme" > "$M/README"
expect_read "$M/customer-a/reports/q3.txt" "A: quarterly numbers 42"
expect_read "$M/customer-b/reports/q3.txt" "B: quarterly numbers 17"
run "$CMKFS" scope list "$M"

say "Renames stay inside a scope: mv across scopes copies (re-encrypting under the target)"
run mv "$M/README" "$M/customer-b/README"
expect_read "$M/customer-b/README" "shared readme"
[ ! -e "$M/README" ] || fail "mv left the source behind"
echo "\$ ln $M/customer-b/README $M/customer-a/README   (a hard link cannot span two scopes)"
if err=$($T ln "$M/customer-b/README" "$M/customer-a/README" 2>&1); then fail "ln across scopes succeeded"; fi
echo "$err"
case $err in *"cross-device"*) ;; *) fail "ln across scopes: not EXDEV" ;; esac

say "Customer A disables its key in Key Vault"
$C -X POST "${URL}_emulator/keys/cust-a/disable" > /dev/null
echo "(the daemon's watcher sees it at its next check, at most 5 s here, no remount)"
wait_state 1 revoked
expect_revoked cat "$M/customer-a/reports/q3.txt"
expect_revoked ls "$M/customer-a"
expect_revoked sh -c "echo new > '$M/customer-a/new.txt'"
echo "(the scope root's own name stays visible in the volume root:)"
run ls "$M"
echo "(customer B is not affected:)"
expect_read "$M/customer-b/reports/q3.txt" "B: quarterly numbers 17"
echo "B: more" > "$M/customer-b/reports/more.txt"
expect_read "$M/customer-b/reports/more.txt" "B: more"
run "$CMKFS" scope list "$M"

say "Customer A enables its key again (no remount)"
$C -X POST "${URL}_emulator/keys/cust-a/enable" > /dev/null
wait_state 1 usable
expect_read "$M/customer-a/reports/q3.txt" "A: quarterly numbers 42"
run ls "$M/customer-a"

say "The operator locks customer B's scope (kept in the key store), then unlocks it"
run "$CMKFS" scope lock "$M/customer-b"
expect_revoked cat "$M/customer-b/reports/q3.txt"
expect_revoked ls "$M/customer-b"
expect_read "$M/customer-a/reports/q3.txt" "A: quarterly numbers 42"
run "$CMKFS" scope list "$M"
run "$CMKFS" scope unlock "$M/customer-b"
expect_read "$M/customer-b/reports/q3.txt" "B: quarterly numbers 17"

say "Scopes, their keys and states"
run "$CMKFS" scope list "$M"

say "What the daemon logged"
grep -E "scope|revoked|restored" "$D/cmkfs.log" | sed 's/^/  /' | tail -20
run "$CMKFS" umount "$M"

say "Offline: scope list of the backing directory, and the audit log's hash chain"
run "$CMKFS" scope list "$D/backing" --service-key "$D/service.key" $KV
run "$CMKFS" audit verify "$D/audit.log"
echo "audit records of the scopes:"
grep -oE '"op":"(Scope[A-Za-z]*|RevocationDetected|AccessRestored)"' "$D/audit.log" | sort | uniq -c | sed 's/^/  /'
echo
echo "Done. Files are in $D."
