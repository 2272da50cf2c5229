#!/bin/sh
# Installs cmkfs: the binary, the mount helper convention (mount -t fuse.cmkfs runs
# `cmkfs BACKING MOUNTPOINT -o ...` through mount.fuse3), the systemd template unit, an example
# config, the man pages and the shell completions. Idempotent. (On Debian, the package built by
# scripts/package.sh installs the same under /usr.) Usage:
#   scripts/install.sh [--prefix DIR] [--destdir DIR] [--binary FILE] [--fips] [--uninstall]
# Defaults: binary in /usr/local/bin, units in /etc/systemd/system, mount helper link in /sbin.
# --fips: build and install the fips build (AWS-LC-FIPS; needs Debian's cmake and golang-go).
set -eu
cd "$(dirname "$0")/.."
PREFIX=/usr/local
DESTDIR=""
UNINSTALL=0
BINARY=""
FIPS=0
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=$2; shift 2 ;;
        --prefix=*) PREFIX=${1#--prefix=}; shift ;;
        --destdir) DESTDIR=$2; shift 2 ;;
        --destdir=*) DESTDIR=${1#--destdir=}; shift ;;
        --binary) BINARY=$2; shift 2 ;;
        --binary=*) BINARY=${1#--binary=}; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        --fips) FIPS=1; shift ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
BIN=$DESTDIR$PREFIX/bin/cmkfs
MANDIR=$DESTDIR$PREFIX/share/man/man8
BASHCOMP=$DESTDIR$PREFIX/share/bash-completion/completions/cmkfs
ZSHCOMP=$DESTDIR$PREFIX/share/zsh/vendor-completions/_cmkfs
FISHCOMP=$DESTDIR$PREFIX/share/fish/vendor_completions.d/cmkfs.fish
UNIT=$DESTDIR/etc/systemd/system/cmkfs@.service
HELPER=$DESTDIR/sbin/mount.fuse.cmkfs
EXAMPLE=$DESTDIR/etc/cmkfs/example.toml.sample

if [ "$UNINSTALL" -eq 1 ]; then
    rm -f "$BIN" "$UNIT" "$HELPER" "$EXAMPLE" "$BASHCOMP" "$ZSHCOMP" "$FISHCOMP"
    for page in docs/man/*.8; do rm -f "$MANDIR/$(basename "$page")"; done
    rmdir "$DESTDIR/etc/cmkfs" 2>/dev/null || true
    [ -z "$DESTDIR" ] && command -v systemctl >/dev/null 2>&1 && systemctl daemon-reload 2>/dev/null || true
    echo "cmkfs uninstalled (volumes, keys and /etc/cmkfs/*.toml are left alone)"
    exit 0
fi

if [ -z "$BINARY" ] && [ "$FIPS" -eq 1 ]; then
    for tool in cmake go; do
        command -v $tool >/dev/null 2>&1 || {
            echo "install.sh: the fips build needs $tool: apt-get install cmake golang-go" >&2
            exit 1
        }
    done
    # Its own target dir, so the default build is not rebuilt (and the reverse).
    CARGO_TARGET_DIR=target/fips cargo build --release --quiet -p cmkfs --features fips
    BINARY=target/fips/release/cmkfs
    "$BINARY" --version | grep -qx 'FIPS mode: on' || { echo "install.sh: $BINARY is not in FIPS mode" >&2; exit 1; }
fi
if [ -z "$BINARY" ]; then
    [ -x target/release/cmkfs ] || cargo build --release --quiet -p cmkfs
    BINARY=target/release/cmkfs
fi
install -D -m 0755 "$BINARY" "$BIN"
install -d -m 0755 "$MANDIR"
install -m 0644 docs/man/*.8 "$MANDIR"
install -D -m 0644 completions/cmkfs "$BASHCOMP"
install -D -m 0644 completions/_cmkfs "$ZSHCOMP"
install -D -m 0644 completions/cmkfs.fish "$FISHCOMP"
# The unit names /usr/bin/cmkfs (where the Debian package puts it); point it at this binary.
mkdir -p "$(dirname "$UNIT")"
sed "s#/usr/bin/cmkfs#$PREFIX/bin/cmkfs#g" systemd/cmkfs@.service > "$UNIT.tmp"
chmod 0644 "$UNIT.tmp"
mv "$UNIT.tmp" "$UNIT"
# mount -t fuse.cmkfs runs /sbin/mount.fuse.cmkfs SOURCE MOUNTPOINT -o OPTIONS; it hands over
# to mount.fuse3 (with a PATH that finds cmkfs), which runs `cmkfs SOURCE MOUNTPOINT -o OPTIONS`.
mkdir -p "$(dirname "$HELPER")"
sed "s#^PATH=#PATH=$PREFIX/bin:#" packaging/mount.fuse.cmkfs > "$HELPER.tmp"
chmod 0755 "$HELPER.tmp"
mv "$HELPER.tmp" "$HELPER"
install -d -m 0755 "$DESTDIR/etc/cmkfs" "$DESTDIR/etc/cmkfs/keys"
chmod 0700 "$DESTDIR/etc/cmkfs/keys"
install -m 0644 systemd/examples/data.toml "$EXAMPLE"
[ -z "$DESTDIR" ] && command -v systemctl >/dev/null 2>&1 && systemctl daemon-reload 2>/dev/null || true
echo "installed: $BIN $UNIT $HELPER $MANDIR/cmkfs.8 (and the completions)"
