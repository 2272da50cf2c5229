# shellcheck shell=bash
# Shared by scripts/bench.sh and benches/profile.sh: the filesystems under test ("targets"),
# mounting/unmounting them, cache dropping, and the workload bodies. Source it after setting:
#   BENCH_DIR   benches/ directory          WORK   work directory (absolute)
#   CMKFS       cmkfs binary (absolute)     FSDIR  "$WORK/fs"; LOGDIR "$WORK/logs"
#   SIZE_MB     sequential file size        FILES  small-file count for the small-file phases
#   RAND_MB     bytes moved by each random 4 KiB workload (fio), MiB
#   TAR         the tree tarball            TREE_BYTES  its total file bytes (from gen_tree.py)
# Targets: plain (a directory), bindfs, gocryptfs, cmkfs. Every backing directory lives under
# $FSDIR, i.e. on the same filesystem.

MOUNTED=()          # targets currently mounted by us (the cleanup trap unmounts these)
DROP_OK=0           # 1 when /proc/sys/vm/drop_caches is writable (cold-cache runs possible)
T_ELAPSED=""        # seconds, set by the timed workload bodies
CMKFS_MOUNT_EXTRA=()

log() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }
warn() { printf '%s bench: WARNING: %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

is_fuse() { [ "$1" != plain ]; }
is_cmkfs() { [ "$1" = cmkfs ] || [ "$1" = cmkfs-base ]; }
# The binary of a cmkfs target: the one under test, or the --baseline one (A/B).
t_bin() { if [ "$1" = cmkfs-base ]; then printf '%s' "$CMKFS_BASE"; else printf '%s' "$CMKFS"; fi; }
t_base() { printf '%s/%s' "$FSDIR" "$1"; }
t_backing() { printf '%s/%s/backing' "$FSDIR" "$1"; }
t_mnt() { printf '%s/%s/mnt' "$FSDIR" "$1"; }
# Where workloads operate: the mountpoint, or the directory itself for plain.
t_root() { if [ "$1" = plain ]; then t_backing plain; else t_mnt "$1"; fi; }

# A bash builtin loop, no grep: the mount workload times this right after dropping caches,
# where starting a program costs milliseconds.
is_mounted() {
  local l
  while IFS= read -r l; do [[ $l == *" $1 "* ]] && return 0; done < /proc/self/mountinfo
  return 1
}

# The pid of the daemon serving target $1 (empty when none).
t_pid() {
  local t=$1 m b id pid=""
  m=$(t_mnt "$t"); b=$(t_backing "$t")
  case $t in
    cmkfs|cmkfs-base)
      id=$(printf '%s' "$(realpath "$m")" | sha256sum | cut -c1-16)
      for f in "/run/cmkfs/$id.pid" "${XDG_RUNTIME_DIR:-/nonexistent}/cmkfs/$id.pid"; do
        if [ -r "$f" ]; then pid=$(tr -dc 0-9 < "$f"); break; fi
      done
      if [ -z "$pid" ] || [ ! -d "/proc/$pid" ]; then
        pid=$(pgrep -n -f -- "cmkfs.* mount $b $m( |\$)" || true)
      fi ;;
    gocryptfs) pid=$(pgrep -n -f -- "gocryptfs .*$b $m\$" || true) ;;
    bindfs) pid=$(pgrep -n -f -- "^bindfs $b $m\$" || true) ;;
  esac
  printf '%s' "$pid"
}

# Waits (up to 30 s) for pid $1 to exit or become a zombie.
wait_pid_gone() {
  local pid=$1 i
  [ -n "$pid" ] || return 0
  for i in $(seq 300); do
    [ -d "/proc/$pid" ] || return 0
    grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# Creates a fresh, empty instance of target $1 (not mounted).
t_setup() {
  local t=$1 base
  base=$(t_base "$t")
  rm -rf "$base"
  mkdir -p "$base"
  case $t in
    plain) mkdir -p "$(t_backing plain)" ;;
    bindfs) mkdir -p "$(t_backing bindfs)" "$(t_mnt bindfs)" ;;
    gocryptfs)
      mkdir -p "$(t_backing gocryptfs)" "$(t_mnt gocryptfs)"
      gocryptfs -init -q -nosyslog -extpass 'echo pw' -scryptn 10 "$(t_backing gocryptfs)" \
        >>"$LOGDIR/gocryptfs-init.log" 2>&1 \
        || { warn "gocryptfs -init failed, see $LOGDIR/gocryptfs-init.log"; return 1; } ;;
    cmkfs|cmkfs-base)
      mkdir -p "$(t_mnt "$t")"
      "$(t_bin "$t")" init "$(t_backing "$t")" --service-key "$base/service.key" \
        >>"$LOGDIR/$t-init.log" 2>&1 \
        || { warn "$t init failed, see $LOGDIR/$t-init.log"; return 1; } ;;
  esac
}

t_mount() {
  local t=$1 b m
  is_fuse "$t" || return 0
  b=$(t_backing "$t"); m=$(t_mnt "$t")
  is_mounted "$m" && return 0
  mount_only "$t" || return 1
  MOUNTED+=("$t")
  is_mounted "$m" || { warn "$t: $m is not a mountpoint after mounting"; return 1; }
}

# Runs only the mount command of FUSE target $1 (what the mount workload times).
mount_only() {
  local t=$1 b m
  b=$(t_backing "$t"); m=$(t_mnt "$t")
  case $t in
    bindfs) bindfs "$b" "$m" >>"$LOGDIR/bindfs.log" 2>&1 ;;
    gocryptfs) gocryptfs -q -nosyslog -extpass 'echo pw' "$b" "$m" >>"$LOGDIR/gocryptfs.log" 2>&1 ;;
    cmkfs|cmkfs-base) "$(t_bin "$t")" mount "$b" "$m" --service-key "$(t_base "$t")/service.key" \
             --log-file "$LOGDIR/$t-daemon.log" "${CMKFS_MOUNT_EXTRA[@]}" >>"$LOGDIR/$t-mount.log" 2>&1 ;;
  esac || { warn "mounting $t failed (see $LOGDIR/$t*.log)"; return 1; }
}

t_umount() {
  local t=$1 m pid rest=() x
  is_fuse "$t" || return 0
  m=$(t_mnt "$t")
  for x in "${MOUNTED[@]}"; do [ "$x" = "$t" ] || rest+=("$x"); done
  MOUNTED=("${rest[@]}")
  is_mounted "$m" || return 0
  pid=$(t_pid "$t")
  if is_cmkfs "$t"; then
    timeout 120 "$(t_bin "$t")" umount "$m" >>"$LOGDIR/$t-mount.log" 2>&1 || { warn "$t umount $m failed"; return 1; }
  else
    timeout 60 fusermount -u "$m" 2>>"$LOGDIR/$t.log" || timeout 60 umount "$m" 2>>"$LOGDIR/$t.log" \
      || { warn "unmounting $m failed"; return 1; }
  fi
  wait_pid_gone "$pid" || { warn "$t daemon $pid still running 30 s after unmount"; return 1; }
}

t_remount() { t_umount "$1" && t_mount "$1"; }

# Aborts the FUSE connection of mountpoint $1 (a hung daemon): pending requests fail with
# ENOTCONN. Needs fusectl (/sys/fs/fuse/connections).
fuse_abort() {
  local minor
  minor=$(awk -v m="$1" '$5 == m {split($3, a, ":"); print a[2]; exit}' /proc/self/mountinfo)
  [ -n "$minor" ] || return 0
  [ -d /sys/fs/fuse/connections/"$minor" ] || mount -t fusectl fusectl /sys/fs/fuse/connections 2>/dev/null || true
  [ -w /sys/fs/fuse/connections/"$minor"/abort ] && echo 1 > /sys/fs/fuse/connections/"$minor"/abort
  return 0
}

# Unmounts everything we mounted; used by the EXIT trap, so never fails (and never hangs on a
# stuck daemon: after 60 s the FUSE connection is aborted and the mount detached).
cleanup_mounts() {
  local t m
  for t in "${MOUNTED[@]}"; do
    m=$(t_mnt "$t")
    is_mounted "$m" || continue
    if [ "$t" = cmkfs ]; then timeout 60 "$CMKFS" umount "$m" >/dev/null 2>&1 && continue; fi
    timeout 30 fusermount -u "$m" >/dev/null 2>&1 && continue
    warn "unmounting $m failed: aborting its FUSE connection and detaching it"
    fuse_abort "$m"
    umount -l "$m" >/dev/null 2>&1 || warn "could not unmount $m"
  done
  MOUNTED=()
}

check_drop_caches() {
  if [ -w /proc/sys/vm/drop_caches ] && sync && (echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null; then
    DROP_OK=1
  else
    DROP_OK=0
    warn "cannot write /proc/sys/vm/drop_caches (not root?): 'cold' runs will only remount, page cache stays warm"
  fi
}

drop_caches() {
  sync
  [ "$DROP_OK" = 1 ] && echo 3 > /proc/sys/vm/drop_caches
  return 0
}

# Waits (at most 30 s) until the disk under the work dir is idle: its /proc-style I/O counters
# (DISK_STAT, a /sys/class/block/DEV/stat file) unchanged for half a second. Deleting the
# previous run's trees and files makes ext4 (mounted with `discard` here) keep the disk busy
# for seconds, which would land on whichever target is timed next.
settle_disk() {
  local prev cur i
  [ -n "${DISK_STAT:-}" ] && [ -r "$DISK_STAT" ] || return 0
  prev=$(cat "$DISK_STAT")
  for i in $(seq 60); do
    sleep 0.5
    cur=$(cat "$DISK_STAT")
    [ "$cur" = "$prev" ] && return 0
    prev=$cur
  done
  warn "the disk did not settle within 30 s"
}

# Cold start for a workload: fresh daemon (remount), empty page/dentry/inode caches, idle disk.
cold() { t_remount "$1" && drop_caches && settle_disk; }

# Peak RSS (VmHWM) and current RSS of the daemon of $1, in KiB: "HWM RSS" or "".
t_rss() {
  local pid
  pid=$(t_pid "$1")
  [ -n "$pid" ] && [ -r "/proc/$pid/status" ] || return 0
  awk '/^VmHWM:/{h=$2} /^VmRSS:/{r=$2} END{if (h!="") print h, r}' "/proc/$pid/status"
}

# Runs "$@" with stdout/stderr to $LOGDIR/op.log, sets T_ELAPSED (seconds, wall clock).
timed() {
  local t0 t1 rc=0
  t0=$EPOCHREALTIME
  "$@" >>"$LOGDIR/op.log" 2>&1 || rc=$?
  t1=$EPOCHREALTIME
  T_ELAPSED=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.6f", b-a}')
  return $rc
}

oplog() { printf '== %s %s\n' "$(date +%T)" "$*" >>"$LOGDIR/op.log"; }

# ---- workload bodies (timed part only) --------------------------------------------------

body_seqwrite() {
  local r; r=$(t_root "$1")
  oplog "seqwrite $1"
  timed dd if=/dev/zero of="$r/big" bs=1M count="$SIZE_MB" conv=fsync status=none || return 1
  [ "$(stat -c %s "$r/big")" = $((SIZE_MB * 1048576)) ] || { warn "$1: $r/big has the wrong size"; return 1; }
}

body_seqread() {
  local r n; r=$(t_root "$1")
  oplog "seqread $1"
  timed dd if="$r/big" of=/dev/null bs=1M || return 1
  n=$(grep -Eo '^[0-9]+ bytes' "$LOGDIR/op.log" | tail -1 | cut -d' ' -f1)
  [ "$n" = $((SIZE_MB * 1048576)) ] || { warn "$1: read $n bytes of $r/big, expected $((SIZE_MB * 1048576))"; return 1; }
}

body_untar() {
  local r; r=$(t_root "$1")
  oplog "untar $1"
  timed tar -xf "$TAR" -C "$r"
}

body_lsR() {
  local r; r=$(t_root "$1")
  oplog "lsR $1"
  timed bash -c 'ls -lR "$1" > /dev/null' _ "$r/tree"
}

# Counts the bytes read (and checks them): GNU tools may skip reading when writing to /dev/null.
body_readall() {
  local r n; r=$(t_root "$1")
  oplog "readall $1"
  timed bash -o pipefail -c 'find "$1" -type f -exec cat -- {} + | wc -c > "$2"' _ "$r/tree" "$LOGDIR/readall.bytes" \
    || return 1
  n=$(tr -dc 0-9 < "$LOGDIR/readall.bytes")
  [ "$n" = "$TREE_BYTES" ] || { warn "$1: read-all got $n bytes, expected $TREE_BYTES"; return 1; }
}

body_rm() {
  local r; r=$(t_root "$1")
  oplog "rm $1"
  timed rm -rf "$r/tree" || return 1
  [ ! -e "$r/tree" ] || { warn "$1: $r/tree still exists after rm -rf"; return 1; }
}

# Random 4 KiB I/O on the sequential file with fio: RAND_MB MiB in 4 KiB requests at random
# offsets, one job, queue depth 1, fixed seed. O_DIRECT where the target accepts it (probed with
# one direct read; the choice is logged as "fio direct=N" in op.log); buffered otherwise.
# Random writes end with an fsync, so the time includes getting the data to the backing disk.
# The time is fio's job runtime (its JSON report), which leaves out fio's start-up.
fio_direct() {
  if dd if="$1" of=/dev/null bs=4k count=1 iflag=direct status=none 2>/dev/null; then echo 1; else echo 0; fi
}
_fio() {
  local rw=$1 t=$2 r d out extra=()
  r=$(t_root "$t")
  d=$(fio_direct "$r/big")
  [ "$rw" = randwrite ] && extra=(--end_fsync=1)
  out="$LOGDIR/fio-$rw-$t.json"
  oplog "$rw $t fio direct=$d (report: $out)"
  timed fio --name="$rw" --filename="$r/big" --rw="$rw" --bs=4k --size="${SIZE_MB}M" \
    --io_size="${RAND_MB}M" --ioengine=psync --iodepth=1 --numjobs=1 --direct="$d" \
    --randseed=20240601 --norandommap --invalidate=1 "${extra[@]}" \
    --output-format=json --output="$out" || return 1
  # fio's own job time (I/O plus the final fsync), without its ~0.3 s of start-up.
  T_ELAPSED=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]; assert j["error"] == 0; print(j["job_runtime"] / 1000)' "$out") \
    || { warn "$t: cannot read fio's report $out"; return 1; }
}
body_randread() { _fio randread "$1"; }
body_randwrite() { _fio randwrite "$1"; }

# Time to mount: from the mount command to a usable mount (each tool returns once it serves).
# Only the tool's own command is timed (no checks around it). One sample is the median of
# MOUNT_REPS cold mounts (unmount, drop caches, idle disk before each): one mount takes a few
# tens of milliseconds and varies by as much.
MOUNT_REPS=5
body_mount() {
  local i m ts=()
  m=$(t_mnt "$1")
  for ((i = 1; i <= MOUNT_REPS; i++)); do
    if [ "$i" -gt 1 ]; then prep_mount "$1" || return 1; fi
    oplog "mount $1 ($i/$MOUNT_REPS)"
    timed mount_only "$1" || return 1
    MOUNTED+=("$1")
    is_mounted "$m" || { warn "$1: $m is not a mountpoint after mounting"; return 1; }
    ts+=("$T_ELAPSED")
  done
  T_ELAPSED=$(printf '%s\n' "${ts[@]}" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
}

_small() {
  local phase=$1 t=$2 out
  oplog "small-$phase $t"
  out=$(python3 "$BENCH_DIR/smallfiles.py" "$phase" "$(t_root "$t")/small" "$SMALL_FILES" 2>>"$LOGDIR/op.log") \
    || { warn "$t: smallfiles $phase failed (see $LOGDIR/op.log)"; return 1; }
  T_ELAPSED=$out
}
# Sparse file: a 10 GiB file made by truncate, 1,000 random 4 KiB blocks written into it, fsync.
# Also records the backing space the file took (KiB, du of the backing directory before/after).
SPARSE_KIB=""
body_sparse() {
  local t=$1 r before after out
  r=$(t_root "$t")
  rm -f "$r/sparse"
  before=$(du -sk "$(t_backing "$t")" | cut -f1)
  oplog "sparse $t"
  out=$(python3 "$BENCH_DIR/sparse.py" "$r/sparse" 10 1000 2>>"$LOGDIR/op.log") \
    || { warn "$t: sparse.py failed (see $LOGDIR/op.log)"; return 1; }
  T_ELAPSED=$out
  sync
  after=$(du -sk "$(t_backing "$t")" | cut -f1)
  SPARSE_KIB=$((after - before))
}
prep_sparse() { rm -f "$(t_root "$1")/sparse" && cold "$1"; }

body_small_create() { _small create "$1"; }
body_small_stat() { _small stat "$1"; }
body_small_delete() { _small delete "$1"; }

# ---- preparation (untimed): preconditions, then a cold start -------------------------------

prep_seqwrite() { rm -f "$(t_root "$1")/big" && cold "$1"; }
prep_seqread() {
  [ -f "$(t_root "$1")/big" ] || body_seqwrite "$1" || return 1
  cold "$1"
}
prep_randread() { prep_seqread "$1"; }
prep_randwrite() { prep_seqread "$1"; }
prep_mount() { t_umount "$1" && drop_caches && settle_disk; }
prep_untar() {
  rm -rf "$(t_root "$1")/tree" || return 1
  cold "$1" || return 1
  cat "$TAR" > /dev/null   # the source archive is read from the page cache for every target
}
ensure_tree() {
  [ -d "$(t_root "$1")/tree" ] && return 0
  prep_untar "$1" && body_untar "$1"
}
prep_lsR() { ensure_tree "$1" && cold "$1"; }
prep_readall() { ensure_tree "$1" && cold "$1"; }
prep_rm() { ensure_tree "$1" && cold "$1"; }
prep_small_create() { rm -rf "$(t_root "$1")/small" && cold "$1"; }
prep_small_stat() {
  [ -d "$(t_root "$1")/small" ] || { prep_small_create "$1" && body_small_create "$1"; } || return 1
  cold "$1"
}
prep_small_delete() { prep_small_stat "$1"; }
