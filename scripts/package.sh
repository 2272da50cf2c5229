#!/bin/sh
# Builds the Debian package cmkfs_VERSION_amd64.deb with `cargo deb` (cargo-deb from crates.io,
# installed if missing; its settings are [package.metadata.deb] in Cargo.toml) and checks it
# with lintian (installed if missing): any lintian error fails. Prints the package's path.
#   scripts/package.sh [--out DIR]        (default DIR: target/debian)
set -eu
cd "$(dirname "$0")/.."
OUT=${CARGO_TARGET_DIR:-target}/debian
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=$2; shift 2 ;;
        --out=*) OUT=${1#--out=}; shift ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "package.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
export DEBIAN_FRONTEND=noninteractive
if ! cargo deb --version >/dev/null 2>&1; then
    echo "package.sh: installing cargo-deb (cargo install cargo-deb --locked)" >&2
    cargo install cargo-deb --locked --quiet
fi
if ! command -v lintian >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || { echo "package.sh: lintian is missing (apt-get install -y lintian)" >&2; exit 1; }
    echo "package.sh: installing lintian" >&2
    apt-get update -qq || true
    apt-get install -y -qq lintian >/dev/null
fi
mkdir -p "$OUT"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
deb="$OUT/cmkfs_${version}_$(dpkg --print-architecture).deb"
rm -f "$deb"
cargo deb --quiet -p cmkfs --output "$deb" >/dev/null
[ -f "$deb" ] || { echo "package.sh: cargo deb did not write $deb" >&2; exit 1; }
# Errors fail (lintian's default --fail-on error); warnings are shown.
status=0
report=$(lintian --fail-on error "$deb" 2>&1) || status=$?
printf '%s\n' "$report" | grep -v -e 'running with root privileges' -e '^$' >&2 || true
[ "$status" -eq 0 ] || { echo "package.sh: lintian found errors in $deb" >&2; exit 1; }
echo "$deb"
