#!/bin/sh
# The Debian package on this machine (root; run by .ci/run after the test suite, bounded by a
# timeout): builds it (scripts/package.sh, lintian clean of errors), installs it with
# `apt-get install ./cmkfs_*.deb`, checks what it put in place, mounts a volume through
# `systemctl start cmkfs@NAME` when systemd is PID 1 or through the installed mount helper
# (mount -t fuse.cmkfs) otherwise, writes and reads a file, unmounts, then `apt-get remove`s
# it and checks that the volume, its key and its config are untouched and still check clean.
# Ends with one "N passed, N failed" line.
#   scripts/test-package.sh [--deb FILE]   (an already built package instead of building one)
set -eu
cd "$(dirname "$0")/.."
REPO=$PWD
DEB=""
[ "${1:-}" = --deb ] && DEB=$2
[ "$(id -u)" = 0 ] || { echo "test-package: needs root (apt-get install, mount)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
if dpkg-query -W -f='${Status}' cmkfs 2>/dev/null | grep -q 'install ok installed'; then
    echo "test-package: a cmkfs package is already installed here; not touching it" >&2
    exit 1
fi
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }
bad() { failed=$((failed + 1)); echo "FAILED: $*" >&2; }
check() { what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

W=$(mktemp -d /tmp/cmkfs-pkg-XXXXXX)
NAME=pkgtest$$
CONF=/etc/cmkfs/$NAME.toml
KEY=/etc/cmkfs/keys/$NAME.key
cleanup() {
    [ -x /usr/bin/cmkfs ] && /usr/bin/cmkfs umount "$W/mnt" >/dev/null 2>&1 || true
    grep -qs " $W/mnt " /proc/mounts && umount -l "$W/mnt" 2>/dev/null || true
    if dpkg-query -W -f='${Status}' cmkfs 2>/dev/null | grep -q 'install ok installed'; then
        apt-get remove -y -qq cmkfs >/dev/null 2>&1 || true
    fi
    rm -f "$CONF" "$KEY"
    rm -rf "$W"
}
trap cleanup EXIT

if [ -z "$DEB" ]; then
    DEB=$(scripts/package.sh --out "$W/out")
fi
check "package file is named cmkfs_VERSION_ARCH.deb" sh -c "basename '$DEB' | grep -Eq '^cmkfs_[0-9][^_]*_[a-z0-9]+\.deb$'"
mkdir -p "$W/inst"
cp "$DEB" "$W/inst/"
(cd "$W/inst" && apt-get install -y -qq ./cmkfs_*.deb >/dev/null) && ok "apt-get install ./cmkfs_*.deb" || bad "apt-get install ./cmkfs_*.deb"

check "binary in /usr/bin runs" sh -c '/usr/bin/cmkfs --version | grep -q "^crypto module"'
check "systemd template unit installed" test -f /lib/systemd/system/cmkfs@.service
check "unit runs /usr/bin/cmkfs" grep -q '^ExecStart=/usr/bin/cmkfs mount' /lib/systemd/system/cmkfs@.service
check "mount helper installed" test -x /usr/sbin/mount.fuse.cmkfs
check "man page installed" test -f /usr/share/man/man8/cmkfs.8.gz
check "subcommand man page installed" test -f /usr/share/man/man8/cmkfs-mount.8.gz
check "bash completion installed" test -f /usr/share/bash-completion/completions/cmkfs
check "zsh completion installed" test -f /usr/share/zsh/vendor-completions/_cmkfs
check "fish completion installed" test -f /usr/share/fish/vendor_completions.d/cmkfs.fish
check "example config installed" test -f /usr/share/doc/cmkfs/examples/data.toml
check "postinst made /etc/cmkfs/keys (0700)" sh -c '[ "$(stat -c %a /etc/cmkfs/keys)" = 700 ]'

mkdir -p "$W/mnt"
/usr/bin/cmkfs init "$W/backing" --service-key "$KEY" --audit-log "$W/audit.log" >/dev/null
cat > "$CONF" <<CONF
name = "$NAME"
backing = "$W/backing"
mountpoint = "$W/mnt"
service_key = "$KEY"
audit_log = "$W/audit.log"
log_file = "$W/daemon.log"
CONF
mounted() { grep -qs " $W/mnt " /proc/mounts; }
wait_mounted() {
    i=0
    until mounted; do i=$((i + 1)); [ $i -gt 100 ] && return 1; sleep 0.1; done
}
if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
    via="systemctl start cmkfs@$NAME"
    # The unit's LoadCredential= reads /etc/cmkfs/keys/NAME.key, the file the config names.
    systemctl start "cmkfs@$NAME" && wait_mounted && ok "mounted through $via" || bad "mounted through $via"
else
    via="mount -t fuse.cmkfs (installed helper)"
    mount -t fuse.cmkfs "$W/backing" "$W/mnt" -o "config=$CONF" && wait_mounted && ok "mounted through $via" || bad "mounted through $via"
fi
if mounted; then
    echo "packaged and mounted" > "$W/mnt/hello.txt"
    check "file written and read back through the mount" sh -c "[ \"\$(cat '$W/mnt/hello.txt')\" = 'packaged and mounted' ]"
    check "status through the control socket" sh -c "/usr/bin/cmkfs status '$W/mnt' --json | grep -q volume_id"
fi
if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
    systemctl stop "cmkfs@$NAME" || true
else
    /usr/bin/cmkfs umount "$W/mnt" || true
fi
i=0
while mounted && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
check "unmounted" sh -c "! grep -qs ' $W/mnt ' /proc/mounts"

apt-get remove -y -qq cmkfs >/dev/null && ok "apt-get remove cmkfs" || bad "apt-get remove cmkfs"
check "binary removed" test ! -e /usr/bin/cmkfs
check "unit removed" test ! -e /lib/systemd/system/cmkfs@.service
check "mount helper removed" test ! -e /usr/sbin/mount.fuse.cmkfs
check "service key left alone" test -s "$KEY"
check "config left alone" test -f "$CONF"
check "backing directory left alone" test -d "$W/backing/.cmkfs"
# The volume is intact: the build's own binary checks it and reads the file back.
BIN=${CARGO_TARGET_DIR:-$REPO/target}/debug/cmkfs
if [ -x "$BIN" ]; then
    check "volume checks clean after removal" sh -c "'$BIN' fsck '$W/backing' --service-key '$KEY' >/dev/null"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
