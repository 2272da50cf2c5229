#!/usr/bin/env bash
# Key-scope benchmark (scripts/bench.sh --scopes): what a key scope costs on one cmkfs mount.
#
#   first_byte:  a fresh mount (cold data-key cache, cold page cache), then the time to open a
#                file and read its first byte, in the volume root (its key was unwrapped at
#                mount) and in a not-yet-unlocked scope: one unwrap with the service key alone
#                (scope-sk) or through Key Vault (scope-cmk, the in-repo emulator over TLS on
#                this host: a real vault adds its network round trip).
#   seqread:     steady state: a cold read of an N MiB file (drop_caches between), in the root,
#                and in each scope.
#   mount:       the mount with --nscopes K service-key-only scopes on the volume (lazy unwrap:
#                the scopes' keys are not touched at mount).
#
# Targets are interleaved in every run, their order rotated per run; prints min and median
# per row (seconds) and writes WORKDIR/bench-scopes-results.json.
#
#   scripts/bench.sh --scopes [--size-mb N] [--nscopes K] [--runs N] [--workdir DIR]
#                             [--cmkfs BIN] [--no-build]
#
# Needs root (FUSE mounts, drop_caches).
set -eu
set -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "bench-scopes: $*" >&2; exit 1; }
log() { echo "bench-scopes: $*" >&2; }

SIZE_MB=256
NSCOPES=1000
RUNS=5
WORK=/var/tmp/cmkfs-bench-scopes
CMKFS=""
BUILD=1
while [ $# -gt 0 ]; do
  case $1 in
    --scopes) shift ;;
    --size-mb) SIZE_MB=$2; shift 2 ;;
    --nscopes) NSCOPES=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --workdir) WORK=$2; shift 2 ;;
    --cmkfs) CMKFS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) usage ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[ "$(id -u)" = 0 ] || die "needs root (FUSE mounts, drop_caches)"
if [ "$BUILD" = 1 ]; then
  (cd "$ROOT" && cargo build --quiet --release -p cmkfs -p kv-emulator) || die "build failed"
fi
CMKFS=${CMKFS:-$ROOT/target/release/cmkfs}
EMU=$ROOT/target/release/kv-emulator
[ -x "$EMU" ] || EMU=$ROOT/target/debug/kv-emulator
[ -x "$CMKFS" ] && [ -x "$EMU" ] || die "cmkfs or kv-emulator binary missing (cargo build --release -p cmkfs -p kv-emulator)"

rm -rf "$WORK"; mkdir -p "$WORK/m" "$WORK/big/m"
cleanup() {
  for m in "$WORK/m" "$WORK/big/m"; do
    mountpoint -q "$m" && { "$CMKFS" umount "$m" 2>/dev/null || umount -l "$m"; }
  done
  [ -n "${EMU_PID:-}" ] && kill "$EMU_PID" 2>/dev/null || true
}
trap cleanup EXIT

"$EMU" --ca-out "$WORK/ca.pem" > "$WORK/emulator.out" &
EMU_PID=$!
for _ in $(seq 100); do grep -q '^ready ' "$WORK/emulator.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^ready //p' "$WORK/emulator.out")
[ -n "$URL" ] || die "the emulator did not start"
echo t > "$WORK/token"
curl -fsS --cacert "$WORK/ca.pem" -X POST "${URL}_emulator/keys/bench" >/dev/null || die "emulator key"
KV=(--azure-credential "access-token-file:$WORK/token" --ca-file "$WORK/ca.pem" --no-verify-challenge-resource)
MOUNT=(--service-key "$WORK/sk" --audit-log "$WORK/audit.log" --log-file "$WORK/log" "${KV[@]}")

"$CMKFS" init "$WORK/b" --service-key "$WORK/sk" --audit-log "$WORK/audit.log" >/dev/null
"$CMKFS" mount "$WORK/b" "$WORK/m" "${MOUNT[@]}"
mkdir "$WORK/m/sk" "$WORK/m/cmk"
"$CMKFS" scope create "$WORK/m/sk" --service-key-only >/dev/null
"$CMKFS" scope create "$WORK/m/cmk" --cmk "${URL}keys/bench" >/dev/null
for d in root sk cmk; do
  p="$WORK/m/$d"; [ "$d" = root ] && p="$WORK/m"
  dd if=/dev/urandom of="$p/big" bs=1M count="$SIZE_MB" conv=fsync status=none
done
"$CMKFS" umount "$WORK/m"

# A second volume with NSCOPES service-key-only scopes, for the mount row.
log "making $NSCOPES scopes for the mount row"
"$CMKFS" init "$WORK/big/b" --service-key "$WORK/big/sk" --audit-log "$WORK/audit.log" >/dev/null
"$CMKFS" mount "$WORK/big/b" "$WORK/big/m" --service-key "$WORK/big/sk" --audit-log "$WORK/audit.log"
for i in $(seq "$NSCOPES"); do
  mkdir "$WORK/big/m/c$i"
  "$CMKFS" scope create "$WORK/big/m/c$i" --service-key-only >/dev/null
done
"$CMKFS" umount "$WORK/big/m"

RES="$WORK/bench-scopes.tsv"
: > "$RES"
now() { date +%s.%N; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# Open + first byte, timed inside one process (no fork in the measurement).
first_byte() { python3 -c 'import sys,time
t=time.perf_counter(); f=open(sys.argv[1],"rb"); f.read(1); print(time.perf_counter()-t)' "$1"; }

for run in $(seq "$RUNS"); do
  set -- root sk cmk
  order=$(for i in 0 1 2; do k=$(( (i + run) % 3 + 1 )); echo "${!k}"; done)
  for t in $order; do
    p="$WORK/m/$t/big"; [ "$t" = root ] && p="$WORK/m/big"
    drop
    "$CMKFS" mount "$WORK/b" "$WORK/m" "${MOUNT[@]}"
    printf '%s\tfirst_byte\t%s\t%s\n' "$run" "$t" "$(first_byte "$p")" >> "$RES"
    drop
    s=$(now); cat "$p" > /dev/null; e=$(now)
    printf '%s\tseqread\t%s\t%s\n' "$run" "$t" "$(echo "$e - $s" | bc)" >> "$RES"
    "$CMKFS" umount "$WORK/m"
  done
  drop
  s=$(now); "$CMKFS" mount "$WORK/big/b" "$WORK/big/m" --service-key "$WORK/big/sk" --audit-log "$WORK/audit.log"; e=$(now)
  printf '%s\tmount_%s_scopes\tcmkfs\t%s\n' "$run" "$NSCOPES" "$(echo "$e - $s" | bc)" >> "$RES"
  "$CMKFS" umount "$WORK/big/m"
  log "run $run/$RUNS done"
done

python3 - "$RES" "$WORK/bench-scopes-results.json" "$SIZE_MB" <<'EOF'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    run, w, t, v = line.split("\t")
    rows.setdefault((w, t), []).append(float(v))
out = {}
print(f"{'workload':<22}{'target':<8}{'min s':>10}{'median s':>10}   (n)")
for (w, t), vs in sorted(rows.items()):
    out[f"{w}/{t}"] = {"min": min(vs), "median": statistics.median(vs), "samples": vs}
    print(f"{w:<22}{t:<8}{min(vs):>10.4f}{statistics.median(vs):>10.4f}   ({len(vs)})")
mb = float(sys.argv[3])
for t in ("sk", "cmk"):
    if ("seqread", t) in rows and ("seqread", "root") in rows:
        r = statistics.median(rows[("seqread", t)]) / statistics.median(rows[("seqread", "root")])
        print(f"seqread {t}/root (median): {r:.2f}")
json.dump(out, open(sys.argv[2], "w"), indent=1)
EOF
