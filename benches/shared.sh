#!/usr/bin/env bash
# Shared-mode benchmark (scripts/bench.sh --shared): on the GlusterFS setup of
# scripts/gluster.sh (one volume, two FUSE client mounts = two "hosts"), the same work done by
# one host alone and by two hosts at once, each doing its own half:
#
#   gluster-1  plain GlusterFS, client A does everything       (no cmkfs: the floor)
#   gluster-2  plain GlusterFS, clients A and B a half each, concurrently
#   cmkfs-1    a shared cmkfs volume, one daemon (on A) does everything
#   cmkfs-2    the same volume kind, daemons on A and B, a half each, concurrently
#
# Workloads: seqwrite (SIZE_MB in total, dd bs=1M conv=fsync, as two files of SIZE_MB/2),
# seqread (those files, after drop_caches and a remount: cold), smallcreate (SMALL_FILES
# files of 4 KiB in total, two directories of half each). Each run sets every target up fresh;
# targets are interleaved in every workload, their order rotated per run. Prints min and
# median per workload and target, and the throughput of the median; writes
# WORKDIR/bench-shared-results.json (+ .tsv, the raw samples).
#
#   scripts/bench.sh --shared [--size-mb N] [--small-files N] [--runs N] [--workdir DIR]
#                             [--cmkfs BIN] [--no-build] [--json]
#
# Needs root (FUSE mounts, drop_caches) and GlusterFS (scripts/gluster.sh up installs it).
set -eu
set -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR="$ROOT/benches"
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh"

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

SIZE_MB=512
SMALL_FILES=2000
RUNS=3
WORK=/var/tmp/cmkfs-bench-shared
CMKFS=""
BUILD=1
JSON=0
ARGS="$*"
GA=/mnt/cmkfs-gluster-a
GB=/mnt/cmkfs-gluster-b
TARGETS="gluster-1 gluster-2 cmkfs-1 cmkfs-2"

need_arg() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value (see --help)"; }
posint() { case $2 in ''|*[!0-9]*) die "$1 must be a positive integer, got '$2'";; esac; [ "$2" -ge 1 ] || die "$1 must be >= 1"; }
while [ $# -gt 0 ]; do
  case $1 in
    --shared) shift ;;
    --size-mb) need_arg "$@"; posint "$1" "$2"; SIZE_MB=$2; shift 2 ;;
    --small-files) need_arg "$@"; posint "$1" "$2"; SMALL_FILES=$2; shift 2 ;;
    --runs) need_arg "$@"; posint "$1" "$2"; RUNS=$2; shift 2 ;;
    --workdir) need_arg "$@"; WORK=$2; shift 2 ;;
    --cmkfs) need_arg "$@"; CMKFS=$2; BUILD=0; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --json) JSON=1; shift ;;
    -h|--help) usage 0 ;;
    *) printf 'bench --shared: error: unknown or unsupported option %s\n' "$1" >&2; usage 2 >&2 ;;
  esac
done
[ $((SIZE_MB % 2)) = 0 ] || die "--size-mb must be even (two halves)"
[ $((SMALL_FILES % 2)) = 0 ] || die "--small-files must be even (two halves)"
HALF_MB=$((SIZE_MB / 2))
HALF_FILES=$((SMALL_FILES / 2))

[ "$(id -u)" = 0 ] || die "run as root: FUSE mounts and drop_caches need it"
for c in python3 dd timeout; do command -v "$c" >/dev/null || die "'$c' is not installed"; done

if [ -z "$CMKFS" ]; then
  CMKFS="$ROOT/target/release/cmkfs"
  if [ "$BUILD" = 1 ]; then
    log "building cmkfs (cargo build --release -p cmkfs)"
    (cd "$ROOT" && cargo build --release -p cmkfs) >&2 \
      || die "cargo build --release -p cmkfs failed; pass --cmkfs BIN or --no-build"
  fi
fi
case $CMKFS in /*) ;; *) CMKFS="$(pwd)/$CMKFS" ;; esac
[ -x "$CMKFS" ] || die "cmkfs binary $CMKFS does not exist (cargo build --release -p cmkfs)"

log "GlusterFS: scripts/gluster.sh up"
"$ROOT/scripts/gluster.sh" up >&2 || die "GlusterFS could not be set up (scripts/gluster.sh up)"

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
LOGDIR="$WORK/logs"
FSDIR="$WORK/fs"
mkdir -p "$LOGDIR" "$FSDIR"
exec 9>"$WORK/.lock"
flock -n 9 || die "another bench run holds $WORK/.lock"
: > "$LOGDIR/op.log"
# Everything of this benchmark on the GlusterFS volume lives under one directory.
VOLDIR="bench-shared-$$"
check_drop_caches

MOUNTS=()
cleanup() {
  local m
  for m in "${MOUNTS[@]}"; do
    "$CMKFS" umount "$m" >/dev/null 2>&1 || fusermount -uz "$m" 2>/dev/null || true
  done
  rm -rf "${GA:?}/$VOLDIR"
}
trap cleanup EXIT
trap 'warn "interrupted"; exit 130' INT
trap 'warn "terminated"; exit 143' TERM

# The two "hosts" of target $1: directories work happens in (mountpoints or GlusterFS dirs).
host_dir() { # target host(a|b)
  case $1 in
    gluster-*) if [ "$2" = a ]; then printf '%s/%s/%s' "$GA" "$VOLDIR" "$1"; else printf '%s/%s/%s' "$GB" "$VOLDIR" "$1"; fi ;;
    cmkfs-*) printf '%s/%s-mnt-%s' "$FSDIR" "$1" "$2" ;;
  esac
}
hosts_of() { case $1 in *-1) echo a ;; *) echo "a b" ;; esac; }

mount_host() { # target host
  local t=$1 h=$2 backing mnt
  if [ "$h" = a ]; then backing="$GA/$VOLDIR/$t"; else backing="$GB/$VOLDIR/$t"; fi
  mnt=$(host_dir "$t" "$h")
  mkdir -p "$mnt"
  "$CMKFS" mount "$backing" "$mnt" --service-key "$WORK/key-$t" \
    --log-file "$LOGDIR/$t-$h.log" --audit-log "$LOGDIR/$t-audit-$h.log" >>"$LOGDIR/op.log" 2>&1 \
    || { warn "mounting $t on host $h failed (see $LOGDIR/$t-$h.log)"; return 1; }
  MOUNTS+=("$mnt")
}

umount_host() {
  local mnt
  mnt=$(host_dir "$1" "$2")
  "$CMKFS" umount "$mnt" >>"$LOGDIR/op.log" 2>&1 || fusermount -uz "$mnt" 2>/dev/null || true
}

setup() { # target: a fresh instance, mounted on its hosts
  local t=$1 h
  rm -rf "${GA:?}/$VOLDIR/$t"
  mkdir -p "$GA/$VOLDIR/$t"
  case $t in
    cmkfs-*)
      rm -f "$WORK/key-$t"
      "$CMKFS" init "$GA/$VOLDIR/$t" --shared --service-key "$WORK/key-$t" \
        --audit-log "$LOGDIR/$t-audit-a.log" >>"$LOGDIR/op.log" 2>&1 || return 1
      for h in $(hosts_of "$t"); do mount_host "$t" "$h" || return 1; done ;;
  esac
}

teardown() {
  local t=$1 h
  case $t in cmkfs-*) for h in $(hosts_of "$t"); do umount_host "$t" "$h"; done ;; esac
  rm -rf "${GA:?}/$VOLDIR/$t"
}

# Cold start: fresh daemons, empty page, dentry and inode caches.
cold() {
  local t=$1 h
  case $t in cmkfs-*) for h in $(hosts_of "$t"); do umount_host "$t" "$h"; mount_host "$t" "$h" || return 1; done ;; esac
  drop_caches
}

# The work of half $2 (0 or 1) of workload $1 in directory $3.
half_work() {
  local w=$1 i=$2 d=$3 n
  case $w in
    seqwrite) dd if=/dev/zero of="$d/half$i" bs=1M count="$HALF_MB" conv=fsync status=none ;;
    seqread)
      n=$(dd if="$d/half$i" of=/dev/null bs=1M 2>&1 | grep -Eo '^[0-9]+ bytes' | cut -d' ' -f1)
      [ "$n" = $((HALF_MB * 1048576)) ] || { echo "read $n bytes of $d/half$i" >&2; return 1; } ;;
    smallcreate) python3 "$BENCH_DIR/smallfiles.py" create "$d/small$i" "$HALF_FILES" 4096 >/dev/null ;;
  esac
}

# Times workload $1 on target $2: one host does both halves in turn, or two hosts one half
# each, concurrently. Sets T_ELAPSED.
run_workload() {
  local w=$1 t=$2 t0 t1 rc=0 pa pb
  local a b
  a=$(host_dir "$t" a); b=$(host_dir "$t" b)
  printf '== %s %s %s\n' "$(date +%T)" "$w" "$t" >>"$LOGDIR/op.log"
  t0=$EPOCHREALTIME
  case $t in
    *-1) { half_work "$w" 0 "$a" && half_work "$w" 1 "$a"; } >>"$LOGDIR/op.log" 2>&1 || rc=1 ;;
    *-2)
      half_work "$w" 0 "$a" >>"$LOGDIR/op.log" 2>&1 & pa=$!
      half_work "$w" 1 "$b" >>"$LOGDIR/op.log" 2>&1 & pb=$!
      wait "$pa" || rc=1
      wait "$pb" || rc=1 ;;
  esac
  t1=$EPOCHREALTIME
  T_ELAPSED=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.6f", b-a}')
  return $rc
}

RES="$WORK/bench-shared-results.tsv"
printf 'run\tworkload\ttarget\tvalue\n' > "$RES"
{
  printf 'date\t%s\n' "$(date -Is)"
  printf 'command\t%s\n' "scripts/bench.sh $ARGS"
  printf 'host\t%s\n' "$(hostname)"
  printf 'kernel\t%s\n' "$(uname -r)"
  printf 'cpus\t%s\n' "$(nproc)"
  printf 'loadavg_start\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
  printf 'glusterfs\t%s\n' "$(glusterfs --version 2>/dev/null | head -1)"
  printf 'cmkfs_git\t%s\n' "$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  printf 'size_mb\t%s\nsmall_files\t%s\nruns\t%s\ncold_caches\t%s\n' "$SIZE_MB" "$SMALL_FILES" "$RUNS" "$DROP_OK"
} > "$WORK/bench-shared-meta.tsv"

log "targets: $TARGETS; $SIZE_MB MiB sequential, $SMALL_FILES small files; runs: $RUNS"
mkdir -p "$GA/$VOLDIR"
set -- $TARGETS
NT=$#
for run in $(seq "$RUNS"); do
  order=""
  for i in $(seq 0 $((NT - 1))); do
    idx=$(( (i + run - 1) % NT + 1 ))
    order="$order ${!idx}"
  done
  log "run $run/$RUNS (order:$order)"
  for t in $order; do setup "$t" || die "setting up $t failed (see $LOGDIR)"; done
  for w in seqwrite seqread smallcreate; do
    for t in $order; do
      if [ "$w" = seqread ]; then cold "$t" || die "remounting $t failed"; else drop_caches; fi
      if run_workload "$w" "$t"; then
        printf '%s\t%s\t%s\t%s\n' "$run" "$w" "$t" "$T_ELAPSED" >> "$RES"
        log "run $run $w $t: ${T_ELAPSED}s"
      else
        printf '%s\t%s\t%s\tERR\n' "$run" "$w" "$t" >> "$RES"
        warn "run $run $w $t FAILED (see $LOGDIR/op.log)"
      fi
    done
  done
  for t in $order; do teardown "$t"; done
done
printf 'loadavg_end\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$WORK/bench-shared-meta.tsv"

python3 - "$RES" "$WORK/bench-shared-meta.tsv" "$WORK/bench-shared-results.json" "$SIZE_MB" "$SMALL_FILES" "$JSON" <<'EOF'
import json, statistics, sys
res, meta_p, out, size_mb, files, as_json = sys.argv[1:7]
size_mb, files = int(size_mb), int(files)
meta = dict(l.rstrip("\n").split("\t", 1) for l in open(meta_p) if "\t" in l)
samples = {}
for l in list(open(res))[1:]:
    run, w, t, v = l.rstrip("\n").split("\t")
    samples.setdefault((w, t), []).append(None if v == "ERR" else float(v))
unit = {"seqwrite": ("MiB/s", size_mb), "seqread": ("MiB/s", size_mb), "smallcreate": ("files/s", files)}
rows = []
for (w, t), vs in samples.items():
    ok = [v for v in vs if v is not None]
    if not ok:
        rows.append({"workload": w, "target": t, "errors": len(vs)})
        continue
    u, amount = unit[w]
    med, mn = statistics.median(ok), min(ok)
    rows.append({"workload": w, "target": t, "runs": len(ok), "errors": len(vs) - len(ok),
                 "min_s": round(mn, 3), "median_s": round(med, 3),
                 "median_rate": round(amount / med, 1), "best_rate": round(amount / mn, 1), "unit": u})
order = {"seqwrite": 0, "seqread": 1, "smallcreate": 2}
targets = ["gluster-1", "gluster-2", "cmkfs-1", "cmkfs-2"]
rows.sort(key=lambda r: (order[r["workload"]], targets.index(r["target"])))
json.dump({"meta": meta, "rows": rows}, open(out, "w"), indent=2)
lines = [f"shared-mode benchmark: {meta.get('command')} ({meta.get('date')}, {meta.get('cpus')} cpus, {meta.get('glusterfs')})",
         f"{'workload':<12} {'target':<10} {'min s':>8} {'median s':>9} {'median':>14} {'2 hosts / 1':>12}"]
by = {(r["workload"], r["target"]): r for r in rows}
for r in rows:
    if "median_s" not in r:
        lines.append(f"{r['workload']:<12} {r['target']:<10} {'ERR':>8}")
        continue
    ratio = ""
    if r["target"].endswith("-2"):
        one = by.get((r["workload"], r["target"][:-1] + "1"))
        if one and "median_s" in one:
            ratio = f"{one['median_s'] / r['median_s']:.2f}x"
    lines.append(f"{r['workload']:<12} {r['target']:<10} {r['min_s']:>8.2f} {r['median_s']:>9.2f} {r['median_rate']:>8.1f} {r['unit']:<7}{ratio:>10}")
lines.append("(2 hosts / 1: throughput of the two hosts together over one host alone, medians)")
text = "\n".join(lines)
if as_json == "1":
    print(text, file=sys.stderr)
    print(json.dumps({"meta": meta, "rows": rows}, indent=2))
else:
    print(text)
EOF
