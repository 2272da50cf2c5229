#!/bin/sh
# The man pages (docs/man/) and the shell completions (completions/) are generated from the
# clap definitions by the binary itself; this fails when the committed copies differ from what
# the current binary generates. With --write it regenerates them in place instead.
#   scripts/check-generated.sh [--write] [--binary FILE]
set -eu
cd "$(dirname "$0")/.."
WRITE=0
BINARY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --write) WRITE=1; shift ;;
        --binary) BINARY=$2; shift 2 ;;
        *) echo "check-generated.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ -z "$BINARY" ]; then
    cargo build --quiet -p cmkfs --bin cmkfs
    BINARY=${CARGO_TARGET_DIR:-target}/debug/cmkfs
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$BINARY" generate-man "$out/man"
mkdir -p "$out/completions"
for shell in bash zsh fish; do
    "$BINARY" completions "$shell" --out-dir "$out/completions"
done
if [ "$WRITE" -eq 1 ]; then
    rm -rf docs/man completions
    mkdir -p docs/man completions
    cp "$out"/man/* docs/man/
    cp "$out"/completions/* completions/
    echo "check-generated: wrote docs/man/ and completions/"
    exit 0
fi
status=0
for pair in "man:docs/man" "completions:completions"; do
    gen=$out/${pair%%:*}
    committed=${pair#*:}
    if ! diff -r -u "$committed" "$gen" >"$out/diff" 2>&1; then
        echo "check-generated: $committed/ is not what the binary generates; run scripts/check-generated.sh --write and commit the result:" >&2
        head -n 40 "$out/diff" >&2
        status=1
    fi
done
[ "$status" -eq 0 ] && echo "check-generated: docs/man/ and completions/ are current"
exit "$status"
