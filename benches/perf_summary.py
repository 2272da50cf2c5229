#!/usr/bin/env python3
"""Reads `perf report --no-children --sort dso,sym --stdio -g none --field-separator=TAB` on
stdin and splits the daemon's samples into coarse categories (first matching rule wins):
crypto, FUSE device/request handling in the kernel, backing-filesystem I/O in the kernel,
syscall entry/exit and scheduling, memory copies, allocation, cmkfs code, fuser, other.
"""
import re
import sys

RULES = [
    ("crypto (AES-GCM, GHASH, SHA-256, HKDF, key wrap)",
     r"aws_lc|aes|gcm|ghash|gfmul|sha256|sha2|hkdf|EVP_|CRYPTO_|polyval|siv|ring_core|OPENSSL"),
    # With the cpu-clock event (VMs without a PMU) samples taken while interrupts were off land
    # on the irq-restore that follows, mostly the tail of a context switch or a wake-up.
    ("kernel: context switches + wake-ups (sleep/wake per request)",
     r"finish_task_switch|_raw_spin_unlock_irq|schedule|switch_to|try_to_wake|ttwu|enqueue|dequeue|"
     r"pick_next|select_task|futex|wake_up|idle|^__softirq|irq"),
    ("memory copies (user<->kernel, memcpy/memset)",
     r"copy_user|copy_to_user|copy_from_user|memcpy|memmove|memset|rep_mov|copy_page|clear_page|copy_folio|_copy_to_iter|_copy_from_iter|copy_page_from_iter"),
    ("kernel: FUSE device + request queue", r"^fuse_|fuse_dev|request_wait|fuse_copy|gup_|pin_user|get_user_pages"),
    ("kernel: backing fs + page cache + block I/O (ext4, jbd2, vfs)",
     r"ext4|jbd2|^vfs_|filemap|^generic_perform_write|^generic_file|iomap|__block|^blk_|^bio_|mpage|"
     r"page_cache|folio|^d_|dentry|^path_|link_path|inode|^do_filp_open|namei|lookup_|xattr|readdir|getdents|"
     r"find_get_block|brelse|buffer|^bh_|recently_deleted|_find_next_zero_bit|block_commit|block_write|"
     r"iowrite|virtio|vring|^xas_|^xa_|mark_accessed|dcache|^fd|fget|fput|^do_sys_open|^do_dentry_open"),
    ("kernel: syscall entry/exit, locking",
     r"entry_SYSCALL|syscall|^__x64_sys|^do_syscall|_raw_spin|mutex|rwsem|^native_|rcu|^__list|^update_"),
    ("allocation (malloc/free, kernel slab)", r"malloc|^free|cfree|_int_|realloc|alloc|kmem_cache|slab|__rust_dealloc"),
    ("fuser (FUSE protocol crate)", r"fuser::"),
    ("cmkfs code", r"cmkfs::"),
    ("libc syscall wrappers", r"^(read|write|pread64|pwrite64|__libc_\w+|openat64|__open64|close|fsync|fstat\w*|statx|writev|readv)$"),
    ("std/core (hashing, formatting, collections)", r"^std::|^core::|^alloc::|hashbrown|lru::"),
]


def main():
    totals = {}
    unknown = {}
    for line in sys.stdin:
        if line.startswith("#") or not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 3:
            continue
        try:
            pct = float(parts[0].strip().rstrip("%"))
        except ValueError:
            continue
        dso = parts[1].strip()
        sym = re.sub(r"^\[[.k]\]\s*", "", parts[2].strip())
        cat = "other"
        for name, rx in RULES:
            if re.search(rx, sym) or (name.startswith("crypto") and re.search(r"aws.lc|libcrypto", dso)):
                cat = name
                break
        totals[cat] = totals.get(cat, 0.0) + pct
        if cat == "other":
            unknown[sym] = unknown.get(sym, 0.0) + pct
    for cat, pct in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"{pct:6.2f}%  {cat}")
    if unknown:
        top = sorted(unknown.items(), key=lambda kv: -kv[1])[:6]
        print("        'other' is mostly: " + ", ".join(f"{s} {p:.1f}%" for s, p in top))


if __name__ == "__main__":
    main()
