#!/usr/bin/env bash
# cmkfs benchmark: the same workloads, side by side in one run, on the plain backing directory,
# bindfs (the FUSE floor), gocryptfs (Debian package) and cmkfs; all backing directories on the
# same filesystem (under --workdir). Each workload runs --runs times (default 3), interleaved
# across targets; prints the medians and ratios as a table (or, with --json, the JSON on stdout
# and the table on stderr) and writes WORKDIR/bench-results.json (+ bench-results.tsv, the raw
# samples). See docs/performance.md.
#
#   scripts/bench.sh [--size-mb N] [--rand-mb N] [--files N] [--small-files N] [--only W,...]
#                    [--runs N] [--workdir DIR] [--skip-gocryptfs] [--skip-bindfs] [--cmkfs BIN]
#                    [--no-build] [--json] [--baseline BIN]
#   scripts/bench.sh --shared [--size-mb N] [--small-files N] [--runs N] [--cmkfs BIN] [--json]
#   scripts/bench.sh --scopes [--size-mb N] [--nscopes K] [--runs N] [--cmkfs BIN]
#
# Workloads (--only): seqwrite seqread randread randwrite mount untar lsR readall rm smallfiles
#                     sparse
# --shared runs the shared-mode benchmark instead (benches/shared.sh: one host vs two hosts on
# the GlusterFS setup of scripts/gluster.sh; see its --help and docs/shared.md).
# --scopes runs the key-scope benchmark instead (benches/scopes.sh: first byte in a scope not
# yet unlocked, steady-state reads in a scope vs the root, mount with many scopes).
# --baseline BIN adds a second cmkfs target, "cmkfs-base", run from BIN and interleaved with the
# others in every workload: an A/B of two cmkfs builds in one run (column cmkfs/base).
# Needs root (FUSE mounts, drop_caches) and /dev/fuse. Installs gocryptfs, bindfs and fio with
# apt-get when missing. Performance targets are checked here, never as timed assertions in tests.
set -eu
set -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR="$ROOT/benches"
# shellcheck source=../benches/lib.sh
. "$BENCH_DIR/lib.sh"

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
for a in "$@"; do
  [ "$a" != --shared ] || exec bash "$BENCH_DIR/shared.sh" "$@"
  [ "$a" != --scopes ] || exec bash "$BENCH_DIR/scopes.sh" "$@"
done

SIZE_MB=1024
RAND_MB=64
JSON=0
FILES=31000
SMALL_FILES=10000
ONLY=""
WORK=/var/tmp/cmkfs-bench
SKIP_GOCRYPTFS=0
SKIP_BINDFS=0
RUNS=3
CMKFS=""
CMKFS_BASE=""
BUILD=1
SEED=20240601
ARGS="$*"
ALL_WORKLOADS="seqwrite seqread randread randwrite mount untar lsR readall rm smallfiles sparse"

need_arg() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value (see --help)"; }
posint() { case $2 in ''|*[!0-9]*) die "$1 must be a positive integer, got '$2'";; esac; [ "$2" -ge 1 ] || die "$1 must be >= 1"; }
while [ $# -gt 0 ]; do
  case $1 in
    --size-mb) need_arg "$@"; posint "$1" "$2"; SIZE_MB=$2; shift 2 ;;
    --rand-mb) need_arg "$@"; posint "$1" "$2"; RAND_MB=$2; shift 2 ;;
    --json) JSON=1; shift ;;
    --files) need_arg "$@"; posint "$1" "$2"; FILES=$2; shift 2 ;;
    --small-files) need_arg "$@"; posint "$1" "$2"; SMALL_FILES=$2; shift 2 ;;
    --only) need_arg "$@"; ONLY=$2; shift 2 ;;
    --workdir) need_arg "$@"; WORK=$2; shift 2 ;;
    --runs) need_arg "$@"; posint "$1" "$2"; RUNS=$2; shift 2 ;;
    --skip-gocryptfs) SKIP_GOCRYPTFS=1; shift ;;
    --skip-bindfs) SKIP_BINDFS=1; shift ;;
    --cmkfs) need_arg "$@"; CMKFS=$2; BUILD=0; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --baseline) need_arg "$@"; CMKFS_BASE=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) printf 'bench: error: unknown option %s\n' "$1" >&2; usage 2 >&2 ;;
  esac
done

# Workload selection, in canonical order.
WORKLOADS=" $ALL_WORKLOADS"
if [ -n "$ONLY" ]; then
  sel=" "
  for w in $(printf '%s' "$ONLY" | tr ',' ' '); do
    case $w in
      ls|lsr|ls-lR|lslR) w=lsR ;; read|read-all) w=readall ;; small|small-files) w=smallfiles ;;
      write|seq-write) w=seqwrite ;; read-seq|seq-read) w=seqread ;;
      fio|random|rand) w="randread randwrite" ;; mount-time) w=mount ;;
    esac
    for x in $w; do
      case " $ALL_WORKLOADS " in *" $x "*) sel="$sel$x " ;; *) die "unknown workload '$x' (known: $ALL_WORKLOADS)";; esac
    done
  done
  WORKLOADS=""
  for w in $ALL_WORKLOADS; do
    case $sel in *" $w "*) WORKLOADS="$WORKLOADS $w" ;; esac
  done
fi
WORKLOADS=${WORKLOADS# }
[ -n "$WORKLOADS" ] || die "--only selected no workload"
needs_tree=0
case " $WORKLOADS " in *" untar "*|*" lsR "*|*" readall "*|*" rm "*) needs_tree=1 ;; esac

# ---- environment ---------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "run as root: FUSE mounts of gocryptfs/bindfs/cmkfs and drop_caches need it"
[ -c /dev/fuse ] || die "/dev/fuse is missing (modprobe fuse, or run the container with --device /dev/fuse)"
for c in python3 dd tar find sha256sum pgrep timeout; do
  command -v "$c" >/dev/null || die "'$c' is not installed"
done

missing=""
command -v fusermount >/dev/null || missing="$missing fuse3"
[ "$SKIP_GOCRYPTFS" = 1 ] || command -v gocryptfs >/dev/null || missing="$missing gocryptfs"
[ "$SKIP_BINDFS" = 1 ] || command -v bindfs >/dev/null || missing="$missing bindfs"
case " $WORKLOADS " in *" randread "*|*" randwrite "*) command -v fio >/dev/null || missing="$missing fio" ;; esac
if [ -n "$missing" ]; then
  log "installing$missing (apt-get)"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y $missing >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y $missing >/dev/null 2>&1 || true
  fi
fi
command -v fusermount >/dev/null || die "fusermount is not installed and 'apt-get install -y fuse3' failed"
case " $WORKLOADS " in *" randread "*|*" randwrite "*)
  command -v fio >/dev/null || die "fio is not installed and 'apt-get install -y fio' failed; fix that or leave out randread,randwrite (--only)" ;;
esac
TARGETS="plain"
if [ "$SKIP_BINDFS" = 0 ]; then
  if command -v bindfs >/dev/null; then TARGETS="$TARGETS bindfs"
  else warn "bindfs is not available (apt-get install bindfs failed): no FUSE-floor column"; fi
fi
if [ "$SKIP_GOCRYPTFS" = 0 ]; then
  command -v gocryptfs >/dev/null \
    || die "gocryptfs is not installed and 'apt-get install -y gocryptfs' failed; fix that or pass --skip-gocryptfs"
  TARGETS="$TARGETS gocryptfs"
fi
TARGETS="$TARGETS cmkfs"
if [ -n "$CMKFS_BASE" ]; then
  case $CMKFS_BASE in /*) ;; *) CMKFS_BASE="$(pwd)/$CMKFS_BASE" ;; esac
  [ -x "$CMKFS_BASE" ] || die "baseline binary $CMKFS_BASE does not exist"
  TARGETS="$TARGETS cmkfs-base"
fi

if [ -z "$CMKFS" ]; then
  CMKFS="$ROOT/target/release/cmkfs"
  if [ "$BUILD" = 1 ]; then
    log "building cmkfs (cargo build --release -p cmkfs)"
    (cd "$ROOT" && cargo build --release -p cmkfs) >&2 \
      || die "cargo build --release -p cmkfs failed (someone may be mid-edit); pass --cmkfs BIN or --no-build to use an existing binary"
  fi
fi
case $CMKFS in /*) ;; *) CMKFS="$(pwd)/$CMKFS" ;; esac
[ -x "$CMKFS" ] || die "cmkfs binary $CMKFS does not exist (build it: cargo build --release -p cmkfs)"
# Keep the audit log (key events) inside the work dir rather than /var/log/cmkfs.
if "$CMKFS" mount --help 2>/dev/null | grep -q -- '--audit-log'; then
  CMKFS_MOUNT_EXTRA=(--audit-log "$WORK/logs/cmkfs-audit.log")
fi

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
FSDIR="$WORK/fs"
LOGDIR="$WORK/logs"
CACHE="$WORK/cache"
[ "${#CMKFS_MOUNT_EXTRA[@]}" = 0 ] || CMKFS_MOUNT_EXTRA=(--audit-log "$LOGDIR/cmkfs-audit.log")
mkdir -p "$FSDIR" "$LOGDIR" "$CACHE"
exec 9>"$WORK/.lock"
flock -n 9 || die "another bench run holds $WORK/.lock"
: > "$LOGDIR/op.log"

# Leftovers of an interrupted run: everything mounted under $FSDIR is ours.
for m in $(awk -v p="$FSDIR/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo); do
  warn "unmounting leftover $m"
  fusermount -u "$m" 2>/dev/null || umount -l "$m" || true
done

trap cleanup_mounts EXIT
trap 'warn "interrupted"; exit 130' INT
trap 'warn "terminated"; exit 143' TERM

check_drop_caches
# The block device under the work dir, for settle_disk.
disk_dev=$(readlink -f "$(df -P "$WORK" | awk 'NR==2{print $1}')" 2>/dev/null || true)
DISK_STAT="/sys/class/block/$(basename "${disk_dev:-none}")/stat"
[ -r "$DISK_STAT" ] || { warn "no I/O counters for the work dir's disk (${disk_dev:-?}): workloads start without waiting for it to settle"; DISK_STAT=""; }

# Disk space: per target the big file and an unpacked tree (gocryptfs/cmkfs add a little), plus the tarball.
ntargets=$(printf '%s\n' $TARGETS | wc -l)
need_mb=$(( ntargets * (SIZE_MB + FILES * 12 / 1000 + SMALL_FILES * 5 / 1000) * 11 / 10 + FILES * 12 / 1000 ))
avail_mb=$(df -Pm "$WORK" | awk 'NR==2{print $4}')
[ "$avail_mb" -ge "$need_mb" ] || die "$WORK has ${avail_mb} MB free, the run needs about ${need_mb} MB (use --workdir or smaller --size-mb/--files)"

TAR=""; TREE_BYTES=0; TREE_DIRS=0
if [ "$needs_tree" = 1 ]; then
  TAR="$CACHE/tree-$FILES-s$SEED.tar"
  if [ ! -s "$TAR" ] || [ ! -s "$TAR.json" ]; then
    log "generating the source tree archive ($FILES files) -> $TAR"
    python3 "$BENCH_DIR/gen_tree.py" "$TAR" --files "$FILES" --seed "$SEED" >/dev/null \
      || die "gen_tree.py failed"
  fi
  TREE_BYTES=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes"])' "$TAR.json")
  TREE_DIRS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["dirs"])' "$TAR.json")
fi

RES="$WORK/bench-results.tsv"
META="$WORK/bench-meta.tsv"
printf 'run\tworkload\ttarget\tvalue\n' > "$RES"
{
  printf 'date\t%s\n' "$(date -Is)"
  printf 'command\t%s\n' "scripts/bench.sh $ARGS"
  printf 'host\t%s\n' "$(hostname)"
  printf 'kernel\t%s\n' "$(uname -r)"
  printf 'cpus\t%s\n' "$(nproc)"
  printf 'mem_mib\t%s\n' "$(awk '/^MemTotal:/{print int($2/1024)}' /proc/meminfo)"
  printf 'loadavg_start\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
  printf 'workdir\t%s\n' "$WORK"
  printf 'workdir_fs\t%s\n' "$(df -PT "$WORK" | awk 'NR==2{print $2" on "$1}')"
  printf 'size_mb\t%s\n' "$SIZE_MB"
  printf 'rand_mb\t%s\n' "$RAND_MB"
  printf 'files\t%s\n' "$FILES"
  printf 'tree_dirs\t%s\n' "$TREE_DIRS"
  printf 'tree_bytes\t%s\n' "$TREE_BYTES"
  printf 'small_files\t%s\n' "$SMALL_FILES"
  printf 'runs\t%s\n' "$RUNS"
  printf 'workloads\t%s\n' "$WORKLOADS"
  printf 'targets\t%s\n' "$TARGETS"
  printf 'cold_caches\t%s\n' "$DROP_OK"
  printf 'disk_settle\t%s\n' "${DISK_STAT:-none}"
  printf 'cmkfs_binary\t%s\n' "$CMKFS"
  [ -z "$CMKFS_BASE" ] || printf 'cmkfs_base_binary\t%s\n' "$CMKFS_BASE"
  printf 'cmkfs_git\t%s\n' "$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$ROOT" && git diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo '+dirty')"
  command -v gocryptfs >/dev/null && printf 'gocryptfs_version\t%s\n' "$(gocryptfs -version 2>/dev/null | head -1)"
  command -v fio >/dev/null && printf 'fio_version\t%s\n' "$(fio --version 2>/dev/null | head -1)"
  command -v bindfs >/dev/null && printf 'bindfs_version\t%s\n' "$(bindfs --version 2>/dev/null | head -1)"
} > "$META"

phases_of() {
  case $1 in
    smallfiles) echo small_create small_stat small_delete ;;
    *) echo "$1" ;;
  esac
}

# Workloads that mean nothing for a target (a plain directory is never mounted).
applies() { [ "$1" != mount ] || is_fuse "$2"; }

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RES"; }

log "targets: $TARGETS; workloads: $WORKLOADS; runs: $RUNS; work dir: $WORK"
set -- $TARGETS
NT=$#
for run in $(seq "$RUNS"); do
  # Rotate the target order each run so no target always goes first (or last) in a phase.
  order=""
  for i in $(seq 0 $((NT - 1))); do
    idx=$(( (i + run - 1) % NT + 1 ))
    order="$order ${!idx}"
  done
  log "run $run/$RUNS: setting up fresh targets (order:$order)"
  for t in $order; do
    t_setup "$t" || die "setting up $t failed (logs in $LOGDIR)"
    t_mount "$t" || die "mounting $t failed (logs in $LOGDIR)"
  done
  for w in $WORKLOADS; do
    for ph in $(phases_of "$w"); do
      for t in $order; do
        applies "$ph" "$t" || continue
        if "prep_$ph" "$t" && "body_$ph" "$t"; then
          record "$run" "$ph" "$t" "$T_ELAPSED"
          log "run $run $ph $t: ${T_ELAPSED}s"
          [ "$ph" != sparse ] || record "$run" sparse_space "$t" "$SPARSE_KIB"
        else
          record "$run" "$ph" "$t" ERR
          warn "run $run $ph $t FAILED (see $LOGDIR/op.log and $LOGDIR/$t*.log)"
        fi
        # Every workload starts with a fresh daemon, so its VmHWM now is its peak during it.
        if is_fuse "$t"; then
          rss=$(t_rss "$t")
          if [ -n "$rss" ]; then
            record "$run" "rss_peak:$ph" "$t" "${rss% *}"
            if [ "$ph" = untar ]; then
              record "$run" rss_untar_peak "$t" "${rss% *}"
              record "$run" rss_untar_end "$t" "${rss#* }"
            fi
          fi
        fi
      done
    done
  done
  log "run $run/$RUNS: tearing down"
  for t in $order; do
    t_umount "$t" || warn "unmounting $t failed"
    rm -rf "$(t_base "$t")"
  done
done
printf 'loadavg_end\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$META"
printf 'date_end\t%s\n' "$(date -Is)" >> "$META"

if [ "$JSON" = 1 ]; then
  python3 "$BENCH_DIR/report.py" "$RES" "$META" "$WORK/bench-results.json" >&2
  cat "$WORK/bench-results.json"
else
  python3 "$BENCH_DIR/report.py" "$RES" "$META" "$WORK/bench-results.json"
fi
