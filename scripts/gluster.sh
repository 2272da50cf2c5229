#!/bin/sh
# A single-node GlusterFS volume on this machine, mounted twice through its FUSE client: two
# "hosts" seeing one distributed filesystem, for cmkfs's shared-mode tests and demo.
#
#   scripts/gluster.sh up [MOUNT1 MOUNT2]   install (Debian packages) if missing, start glusterd,
#                                           create and start volume cmkfs-gv, mount it at
#                                           MOUNT1 and MOUNT2 (default /mnt/cmkfs-gluster-{a,b})
#   scripts/gluster.sh down [MOUNT1 MOUNT2] unmount, stop and delete the volume and its brick
#
# Needs root. Prints one line per step; exits non-zero with a one-line reason if GlusterFS
# cannot be started here (tests then say so and fall back).
set -eu
VOL=${CMKFS_GLUSTER_VOLUME:-cmkfs-gv}
BRICK=${CMKFS_GLUSTER_BRICK:-/srv/cmkfs-gluster/brick}
cmd=${1:-up}
M1=${2:-/mnt/cmkfs-gluster-a}
M2=${3:-/mnt/cmkfs-gluster-b}
say() { echo "gluster: $*" >&2; }

start_glusterd() {
    if ! command -v glusterd >/dev/null 2>&1 || ! command -v mount.glusterfs >/dev/null 2>&1; then
        say "installing glusterfs-server and glusterfs-client"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q glusterfs-server glusterfs-client >/dev/null
    fi
    if ! gluster --mode=script pool list >/dev/null 2>&1; then
        say "starting glusterd"
        glusterd -p /run/glusterd.pid
        i=0
        until gluster --mode=script pool list >/dev/null 2>&1; do
            i=$((i + 1))
            [ $i -lt 100 ] || { say "glusterd did not answer within 20 s"; exit 1; }
            sleep 0.2
        done
    fi
}

# A client that died (killed, or gone with an earlier run's machine state) leaves its mount
# behind: every access gives ENOTCONN. Detach such a mount so the path can be used again.
clear_stale() {
    if grep -q " $1 " /proc/mounts && ! stat "$1" >/dev/null 2>&1; then
        say "detaching a dead mount at $1"
        umount -l "$1" 2>/dev/null || fusermount3 -uz "$1" 2>/dev/null || true
    fi
}

case $cmd in
up)
    start_glusterd
    if ! gluster --mode=script volume info "$VOL" >/dev/null 2>&1; then
        mkdir -p "$BRICK"
        # A brick on localhost is refused; the hostname works. force: the brick is on the
        # root filesystem.
        gluster --mode=script volume create "$VOL" "$(hostname):$BRICK" force >/dev/null
        say "created volume $VOL on $(hostname):$BRICK"
    fi
    # No client-side caching translators: each of them serves stale data or attributes to one
    # client after the other changed a file (docs/shared.md).
    for o in quick-read io-cache read-ahead stat-prefetch open-behind write-behind \
        readdir-ahead nl-cache parallel-readdir; do
        gluster --mode=script volume set "$VOL" "performance.$o" off >/dev/null
    done
    if ! gluster --mode=script volume status "$VOL" >/dev/null 2>&1; then
        gluster --mode=script volume start "$VOL" >/dev/null
    fi
    for m in "$M1" "$M2"; do
        clear_stale "$m"
        mkdir -p "$m"
        if ! mountpoint -q "$m"; then
            i=0
            # The client itself, not mount.glusterfs (whose fopen-keep-cache=VALUE is passed
            # on as "==VALUE"): no kernel attribute, entry or page cache kept across opens.
            until glusterfs --volfile-server=127.0.0.1 --volfile-id="$VOL" \
                --attribute-timeout=0 --entry-timeout=0 --negative-timeout=0 \
                --fopen-keep-cache=off "$m" 2>/dev/null && [ -d "$m" ] && ls "$m" >/dev/null 2>&1; do
                i=$((i + 1))
                [ $i -lt 50 ] || { say "cannot mount 127.0.0.1:/$VOL at $m"; exit 1; }
                sleep 0.2
            done
        fi
    done
    say "volume $VOL mounted at $M1 and $M2"
    ;;
down)
    for m in "$M1" "$M2"; do
        clear_stale "$m"
        if mountpoint -q "$m" 2>/dev/null; then
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
        fi
    done
    if command -v gluster >/dev/null 2>&1 && gluster --mode=script volume info "$VOL" >/dev/null 2>&1; then
        gluster --mode=script volume stop "$VOL" force >/dev/null 2>&1 || true
        gluster --mode=script volume delete "$VOL" >/dev/null 2>&1 || true
    fi
    rm -rf "$BRICK"
    say "volume $VOL removed"
    ;;
*)
    echo "usage: $0 up|down [MOUNT1 MOUNT2]" >&2
    exit 2
    ;;
esac
