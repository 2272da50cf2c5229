#!/bin/sh
# Installs (apt-get, Debian) what the test suite runs for real: FUSE's mount helper, the
# programs the application tests drive (sqlite3, git, tar, attr, acl, rsync), GlusterFS (the
# distributed filesystem of the shared-mode tests, started by scripts/gluster.sh), and
# checks /dev/fuse. Used by scripts/test.sh and .ci/run; does nothing when all are present.
# With --fips also what the fips build needs to compile AWS-LC-FIPS (cmake, Go); with --package
# what checks the Debian package (lintian; scripts/test-package.sh).
set -eu
export DEBIAN_FRONTEND=noninteractive
need=""
have() { command -v "$1" >/dev/null 2>&1; }
have fusermount3 || need="$need fuse3"
have sqlite3 || need="$need sqlite3"
have git || need="$need git"
have tar || need="$need tar"
have getfattr || need="$need attr"
have getfacl || need="$need acl"
have rsync || need="$need rsync"
have glusterd || need="$need glusterfs-server"
have mount.glusterfs || need="$need glusterfs-client"
for arg in "$@"; do
    case "$arg" in
        --fips)
            have cmake || need="$need cmake"
            have go || need="$need golang-go"
            ;;
        --package) have lintian || need="$need lintian" ;;
    esac
done
if [ -n "$need" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "test-deps: missing:$need (install them as root: apt-get install -y$need)" >&2
        exit 1
    fi
    echo "test-deps: installing$need" >&2
    apt-get update -qq || true
    apt-get install -y -qq $need >/dev/null
fi
[ -e /dev/fuse ] || { echo "test-deps: /dev/fuse is missing (modprobe fuse, or give the container --device /dev/fuse)" >&2; exit 1; }
