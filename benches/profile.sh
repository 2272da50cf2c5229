#!/usr/bin/env bash
# Profiles the cmkfs daemon during one benchmark workload and prints where its time goes.
#
#   benches/profile.sh [--workload W] [--tool perf|callgrind] [--call-graph fp|dwarf]
#                      [--size-mb N] [--files N] [--small-files N] [--top N]
#                      [--workdir DIR] [--cmkfs BIN] [--no-build]
#   benches/profile.sh --report WORKDIR/profile/perf.W.STAMP.data   # re-print an earlier profile
#
# W: seqwrite seqread untar (default) lsR readall rm small_create small_stat small_delete
#    smallfiles (create+stat+delete on one daemon). Preconditions (e.g. the tree for lsR) are
#    set up unprofiled, then the daemon is restarted with cold caches and only the timed body of
#    the workload is profiled.
# perf (default; linux-perf is installed if missing): `perf record -g` attached to the daemon
#   (all its threads; kernel time included), then the top symbols by self time, the split by
#   shared object and a coarse split into categories (benches/perf_summary.py).
#   --call-graph dwarf gives full Rust stacks (release builds have no frame pointers) at the cost
#   of a much bigger perf.data.
# callgrind: the daemon runs `--foreground` under valgrind (50-100x slower: use small sizes),
#   then callgrind_annotate.
# Output files stay in WORKDIR/profile/ (default WORKDIR /var/tmp/cmkfs-profile).
set -eu
set -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR="$ROOT/benches"
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh"

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

WL=untar
TOOL=perf
CALLGRAPH=fp
SIZE_MB=256
FILES=5000
SMALL_FILES=10000
TOP=30
WORK=/var/tmp/cmkfs-profile
CMKFS=""
BUILD=1
SEED=20240601
REPORT=""
need_arg() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value (see --help)"; }
while [ $# -gt 0 ]; do
  case $1 in
    --workload) need_arg "$@"; WL=$2; shift 2 ;;
    --tool) need_arg "$@"; TOOL=$2; shift 2 ;;
    --call-graph) need_arg "$@"; CALLGRAPH=$2; shift 2 ;;
    --size-mb) need_arg "$@"; SIZE_MB=$2; shift 2 ;;
    --files) need_arg "$@"; FILES=$2; shift 2 ;;
    --small-files) need_arg "$@"; SMALL_FILES=$2; shift 2 ;;
    --top) need_arg "$@"; TOP=$2; shift 2 ;;
    --workdir) need_arg "$@"; WORK=$2; shift 2 ;;
    --cmkfs) need_arg "$@"; CMKFS=$2; BUILD=0; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --report) need_arg "$@"; REPORT=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) printf 'profile: error: unknown option %s\n' "$1" >&2; usage 2 >&2 ;;
  esac
done
case $WL in
  seqwrite|seqread|untar|lsR|readall|rm|small_create|small_stat|small_delete) PHASES=$WL ;;
  smallfiles) PHASES="small_create small_stat small_delete" ;;
  *) die "unknown workload '$WL' (seqwrite seqread untar lsR readall rm small_create small_stat small_delete smallfiles)" ;;
esac
case $TOOL in perf|callgrind) ;; *) die "--tool must be perf or callgrind" ;; esac
case $CALLGRAPH in fp) CG=(-g) ;; dwarf) CG=(--call-graph dwarf,16384) ;; *) die "--call-graph must be fp or dwarf" ;; esac

[ "$(id -u)" = 0 ] || die "run as root (FUSE mount, drop_caches, perf attach)"
[ -c /dev/fuse ] || die "/dev/fuse is missing"

# Prints the summary of a perf.data file: perf_print DATA WORKLOAD WALL_SECONDS.
perf_print() {
  local data=$1 wl=$2 total=$3 cpu
  echo
  echo "== perf: cmkfs daemon during '$wl' (${total}s wall clock), $data"
  cpu=$(perf report -i "$data" --stdio -g none 2>/dev/null | awk '/^# Event count/{gsub(/[^0-9]/,"",$NF); print $NF/1e9; exit}' || true)
  [ -z "$cpu" ] || echo "== daemon on-CPU time (cpu-clock): ${cpu}s of ${total}s wall clock, all threads"
  echo "== top $TOP symbols by self time (all daemon threads, user + kernel)"
  perf report -i "$data" --no-children --sort sym --stdio -g none --percent-limit 0.3 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -n "$TOP" || true
  echo
  echo "== by shared object"
  perf report -i "$data" --no-children --sort dso --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -n 12 || true
  echo
  echo "== by category (benches/perf_summary.py)"
  perf report -i "$data" --no-children --sort dso,sym --stdio -g none --field-separator=$'\t' 2>/dev/null \
    | python3 "$BENCH_DIR/perf_summary.py" || true
  echo
  echo "call graphs: perf report -i $data --children   (or --call-graph dwarf for full Rust stacks)"
}

if [ -n "$REPORT" ]; then   # re-print the summary of an earlier perf.data
  [ -r "$REPORT" ] || die "cannot read $REPORT"
  perf_print "$REPORT" "$(basename "$REPORT" | cut -d. -f2)" "?"
  exit 0
fi

perf_works() { command -v perf >/dev/null && perf record -q -o /dev/null -- true >/dev/null 2>&1; }
if [ "$TOOL" = perf ] && ! perf_works; then
  log "perf missing or not working: trying apt-get install -y linux-perf"
  DEBIAN_FRONTEND=noninteractive apt-get install -y linux-perf >/dev/null 2>&1 || true
  if ! perf_works; then
    warn "perf does not work here (kernel.perf_event_paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null), or no perf for this kernel); falling back to callgrind"
    TOOL=callgrind
  fi
fi
if [ "$TOOL" = callgrind ] && ! command -v valgrind >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind >/dev/null 2>&1 || die "neither perf nor valgrind is usable"
fi

if [ -z "$CMKFS" ]; then
  # The release build with line tables, so reports can name source lines.
  CMKFS="$ROOT/target/profiling/cmkfs"
  if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --profile profiling -p cmkfs) >&2 \
      || die "cargo build --profile profiling -p cmkfs failed; pass --cmkfs BIN or --no-build"
  fi
fi
case $CMKFS in /*) ;; *) CMKFS="$(pwd)/$CMKFS" ;; esac
[ -x "$CMKFS" ] || die "cmkfs binary $CMKFS does not exist"

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
FSDIR="$WORK/fs"; LOGDIR="$WORK/logs"; CACHE="$WORK/cache"; OUT="$WORK/profile"
mkdir -p "$FSDIR" "$LOGDIR" "$CACHE" "$OUT"
exec 9>"$WORK/.lock"
flock -n 9 || die "another run holds $WORK/.lock"
: > "$LOGDIR/op.log"
if "$CMKFS" mount --help 2>/dev/null | grep -q -- '--audit-log'; then
  CMKFS_MOUNT_EXTRA=(--audit-log "$LOGDIR/cmkfs-audit.log")
fi

PERF_PID=""
VG_PID=""
on_exit() {
  [ -z "$PERF_PID" ] || kill -INT "$PERF_PID" 2>/dev/null || true
  cleanup_mounts
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
check_drop_caches

TAR=""; TREE_BYTES=0
case $WL in
  untar|lsR|readall|rm)
    TAR="$CACHE/tree-$FILES-s$SEED.tar"
    [ -s "$TAR" ] && [ -s "$TAR.json" ] || python3 "$BENCH_DIR/gen_tree.py" "$TAR" --files "$FILES" --seed "$SEED" >/dev/null
    TREE_BYTES=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes"])' "$TAR.json") ;;
esac

t_setup cmkfs || die "cmkfs init failed (see $LOGDIR)"
t_mount cmkfs || die "cmkfs mount failed (see $LOGDIR)"
first=${PHASES%% *}
log "preparing $first (unprofiled)"
"prep_$first" cmkfs || die "preparing $first failed (see $LOGDIR/op.log)"
[ "$WL" != untar ] || cat "$TAR" > /dev/null

STAMP=$(date +%Y%m%d-%H%M%S)
if [ "$TOOL" = callgrind ]; then
  # Restart the daemon in the foreground under callgrind.
  t_umount cmkfs || die "unmounting cmkfs failed"
  drop_caches
  [ "$WL" != untar ] || cat "$TAR" > /dev/null
  CG_OUT="$OUT/callgrind.$WL.$STAMP.out"
  # fuse-compatible: the daemon reads its own mount (readiness probe); without the hint
  # valgrind holds its big lock across that syscall and the daemon deadlocks.
  valgrind --tool=callgrind --sim-hints=fuse-compatible --callgrind-out-file="$CG_OUT" --trace-children=no \
    "$CMKFS" mount "$(t_backing cmkfs)" "$(t_mnt cmkfs)" --foreground \
    --service-key "$(t_base cmkfs)/service.key" "${CMKFS_MOUNT_EXTRA[@]}" \
    >>"$LOGDIR/cmkfs-valgrind.log" 2>&1 &
  VG_PID=$!
  MOUNTED+=(cmkfs)
  for _ in $(seq 600); do is_mounted "$(t_mnt cmkfs)" && break; kill -0 "$VG_PID" 2>/dev/null || break; sleep 0.1; done
  is_mounted "$(t_mnt cmkfs)" || die "cmkfs under valgrind did not mount (see $LOGDIR/cmkfs-valgrind.log)"
else
  PID=$(t_pid cmkfs)
  [ -n "$PID" ] || die "cannot find the cmkfs daemon pid"
  PERF_DATA="$OUT/perf.$WL.$STAMP.data"
  perf record "${CG[@]}" -F 999 -p "$PID" -o "$PERF_DATA" >>"$LOGDIR/perf.log" 2>&1 &
  PERF_PID=$!
  sleep 1   # let perf attach to every thread
  kill -0 "$PERF_PID" 2>/dev/null || die "perf record failed (see $LOGDIR/perf.log)"
fi

total=0
for ph in $PHASES; do
  "body_$ph" cmkfs || die "$ph failed on cmkfs (see $LOGDIR/op.log)"
  log "$ph on cmkfs: ${T_ELAPSED}s (under $TOOL)"
  total=$(awk -v a="$total" -v b="$T_ELAPSED" 'BEGIN{print a+b}')
done

if [ "$TOOL" = perf ]; then
  kill -INT "$PERF_PID"; wait "$PERF_PID" || true; PERF_PID=""
  t_umount cmkfs || true
  perf_print "$PERF_DATA" "$WL" "$total"
else
  t_umount cmkfs || true
  wait "$VG_PID" || true
  echo
  echo "== callgrind: cmkfs daemon during '$WL', $CG_OUT"
  callgrind_annotate --inclusive=no "$CG_OUT" 2>/dev/null | head -n $((TOP + 20)) || true
fi
rm -rf "$(t_base cmkfs)"   # the volume (the profile output stays in $OUT)
