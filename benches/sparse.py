#!/usr/bin/env python3
"""Sparse-file workload of scripts/bench.sh: creates PATH, sizes it to SIZE_GIB GiB with
truncate (a hole), writes COUNT random 4 KiB blocks at random 4 KiB-aligned offsets (fixed
seed), fsyncs and closes it. Prints the elapsed seconds.

    sparse.py PATH SIZE_GIB COUNT
"""
import os
import random
import sys
import time


def main():
    path, size_gib, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    size = size_gib << 30
    rng = random.Random(20261205)
    offsets = [rng.randrange(size // 4096) * 4096 for _ in range(count)]
    block = rng.randbytes(4096)
    start = time.perf_counter()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.ftruncate(fd, size)
    for off in offsets:
        os.pwrite(fd, block, off)
    os.fsync(fd)
    os.close(fd)
    print(f"{time.perf_counter() - start:.4f}")


if __name__ == "__main__":
    main()
