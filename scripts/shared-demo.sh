#!/bin/sh
# Shared mode from nothing, on one machine: a single-node GlusterFS volume mounted twice (two
# "hosts"), a shared cmkfs volume on it, one daemon per GlusterFS mount. Writes on host A, reads
# on host B, takes an flock on A that B must wait for, lists the hosts, then unmounts
# everything (--keep leaves it mounted: /mnt/cmkfs-shared-a and /mnt/cmkfs-shared-b).
# Needs root. Installs fuse3, GlusterFS and Rust if missing (scripts/test-deps.sh, gluster.sh).
set -eu
cd "$(dirname "$0")/.."
KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1
scripts/test-deps.sh
if ! command -v cargo >/dev/null 2>&1; then
    [ -f "$HOME/.cargo/env" ] || curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    . "$HOME/.cargo/env"
fi
cargo build --release --quiet
CMKFS=$PWD/target/release/cmkfs
scripts/gluster.sh up /mnt/cmkfs-gluster-a /mnt/cmkfs-gluster-b
DEMO=/tmp/cmkfs-shared-demo
A=/mnt/cmkfs-shared-a
B=/mnt/cmkfs-shared-b
mkdir -p "$DEMO" "$A" "$B"
BACKING_A=/mnt/cmkfs-gluster-a/shared-demo
BACKING_B=/mnt/cmkfs-gluster-b/shared-demo
if [ ! -d "$BACKING_A/.cmkfs" ]; then
    mkdir -p "$BACKING_A"
    "$CMKFS" init "$BACKING_A" --shared --service-key "$DEMO/service.key" --audit-log "$DEMO/audit-a.log"
fi
for h in a b; do
    mnt=/mnt/cmkfs-shared-$h
    mountpoint -q "$mnt" && continue
    "$CMKFS" mount "/mnt/cmkfs-gluster-$h/shared-demo" "$mnt" --service-key "$DEMO/service.key" \
        --log-file "$DEMO/daemon-$h.log" --audit-log "$DEMO/audit-$h.log"
done
echo "== host A writes report.txt; host B reads it (close-to-open)"
date > "$A/report.txt"
echo "written on A at $(cat "$A/report.txt")" >> "$A/report.txt"
cat "$B/report.txt"
echo "== host A holds an flock on report.txt; host B waits for it"
( flock "$A/report.txt" sh -c 'echo "A: locked"; sleep 2; echo "A: unlocking"' ) &
sleep 0.5
flock "$B/report.txt" echo "B: got the lock after A"
wait
echo "== the daemons that have the volume mounted"
"$CMKFS" volume hosts "$BACKING_A"
echo "== on GlusterFS (both hosts' view of the backing directory), names and contents are encrypted"
ls "$BACKING_B" | head -5
if [ "$KEEP" -eq 1 ]; then
    echo "Left mounted: $A and $B (cmkfs umount each, then scripts/gluster.sh down)"
    exit 0
fi
"$CMKFS" umount "$A"
"$CMKFS" umount "$B"
echo "Unmounted. The volume stays in GlusterFS ($BACKING_A); scripts/gluster.sh down removes it."
