#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS]: runs every cargo-fuzz target under fuzz/ for SECONDS each
# (default 20), starting from the committed seed corpus fuzz/corpus/<target>/ (read-only:
# new inputs go to fuzz/work/<target>/, crashes to fuzz/artifacts/<target>/), then prints one
# line of figures per target: runs, coverage (cov/ft), corpus size, exec/s, crashes.
#
# Needs cargo-fuzz (installed with `cargo install cargo-fuzz --locked` if missing) and
# nightly features: the nightly toolchain when rustup has one, RUSTC_BOOTSTRAP=1 otherwise.
# Env: FUZZ_TARGETS="a b" to run a subset, FUZZ_SANITIZER=none|address (default address),
# FUZZ_JOBS (libFuzzer -jobs, default 1).
# Exit status: 0 when no target crashed, 1 otherwise.
set -euo pipefail

secs="${1:-20}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

toolchain=()
if command -v rustup >/dev/null 2>&1 && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi
sanitizer="${FUZZ_SANITIZER:-address}"
jobs="${FUZZ_JOBS:-1}"
parallel=()
if [ "$jobs" -gt 1 ]; then parallel=(-jobs="$jobs" -workers="$jobs"); fi

targets="${FUZZ_TARGETS:-$(cargo "${toolchain[@]}" fuzz list)}"
cargo "${toolchain[@]}" fuzz build -s "$sanitizer" $targets >&2 2>/dev/null || cargo "${toolchain[@]}" fuzz build -s "$sanitizer" >&2

mkdir -p work logs
summary=()
failed=0
for t in $targets; do
    mkdir -p "work/$t" "corpus/$t"
    log="logs/$t.log"
    echo "fuzz.sh: $t for ${secs}s" >&2
    set +e
    cargo "${toolchain[@]}" fuzz run -s "$sanitizer" "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 "${parallel[@]}" >"$log" 2>&1
    rc=$?
    set -e
    runs="$(grep -oE 'Done [0-9]+ runs' "$log" | tail -1 | grep -oE '[0-9]+' || true)"
    [ -n "$runs" ] || runs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$' || echo '?')"
    last="$(grep -E '^#[0-9]+' "$log" | tail -1 || true)"
    cov="$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")"
    ft="$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")"
    corp="$(sed -nE 's/.* corp: ([0-9]+).*/\1/p' <<<"$last")"
    eps="$(sed -nE 's/.* exec\/s: ([0-9]+).*/\1/p' <<<"$last")"
    crashes="$(ls "artifacts/$t" 2>/dev/null | grep -cE '^(crash|leak|timeout|oom)-' || true)"
    if [ "$rc" -ne 0 ]; then
        failed=1
        echo "fuzz.sh: $t FAILED (exit $rc); see fuzz/$log" >&2
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -5 >&2 || true
    fi
    summary+=("$(printf '%-16s runs=%-10s cov=%-6s ft=%-6s corpus=%-6s exec/s=%-8s crashes=%s exit=%s' \
        "$t" "$runs" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${eps:-?}" "$crashes" "$rc")")
done

echo "cmkfs fuzz run: $(date -u +%Y-%m-%dT%H:%MZ), ${secs}s per target, sanitizer $sanitizer, $(rustc "${toolchain[@]}" -V 2>/dev/null || rustc -V)"
printf '%s\n' "${summary[@]}"
exit "$failed"
