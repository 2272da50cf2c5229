#!/usr/bin/env python3
"""Writes a deterministic, Linux-kernel-like source tree straight into a tar archive.

    gen_tree.py OUT.tar --files N [--seed S]

Shape (for the default 31,000 files): ~2,000 directories up to 7 levels deep, file sizes
log-normal around a 6 KiB median (most between 1 and 20 KiB, a thin tail up to 1 MiB), about
300 MB in total; kernel-like names (*.c, *.h, Makefile, Kconfig, ...). The same N and seed give
a byte-identical archive. Nothing touches the filesystem except OUT.tar (written via a temp
file, then renamed), so generation runs at disk speed. A JSON summary (files, dirs, bytes) is
printed on stdout and also written to OUT.tar.json.
"""
import argparse
import io
import json
import math
import os
import random
import sys
import tarfile

SYLLABLES = ["ac", "al", "ar", "ba", "bu", "ca", "ch", "co", "de", "di", "dr", "fs", "gp", "hw",
             "io", "ir", "ke", "li", "ma", "mm", "ne", "pc", "pi", "po", "qu", "ra", "re", "sc",
             "se", "sk", "sp", "st", "ti", "tr", "ud", "us", "vi", "wa", "x8", "zr"]
EXTS = [".c"] * 50 + [".h"] * 30 + [".S"] * 3 + [".txt", ".rst"] * 4 + [".yaml", ".py", ".sh"] * 2
SPECIAL = ["Makefile", "Kconfig"]
MTIME = 1_700_000_000


def word(rng, lo=1, hi=4):
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(lo, hi)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--files", type=int, default=31000)
    ap.add_argument("--seed", type=int, default=20240601)
    a = ap.parse_args()
    if a.files < 1:
        sys.exit("gen_tree.py: --files must be >= 1")
    rng = random.Random(a.seed)
    n_dirs = max(1, round(a.files / 15.5))

    # Directory tree: each new directory hangs under a random existing one, favouring shallow
    # parents, depth capped at 7 (the kernel's drivers/net/ethernet/intel/ice/... feel).
    dirs = ["tree"]
    depth = {"tree": 0}
    used = {"tree": set()}
    while len(dirs) < n_dirs:
        parent = dirs[min(len(dirs) - 1, int(rng.paretovariate(1.2)) - 1)] if rng.random() < 0.3 \
            else rng.choice(dirs)
        if depth[parent] >= 7:
            continue
        name = word(rng)
        if name in used[parent]:
            continue
        used[parent].add(name)
        d = parent + "/" + name
        dirs.append(d)
        depth[d] = depth[parent] + 1
        used[d] = set()

    # Files: spread over directories with skew (some directories hold hundreds of files).
    weights = [rng.paretovariate(1.5) for _ in dirs]
    total_w = sum(weights)
    cum, acc = [], 0.0
    for w in weights:
        acc += w / total_w
        cum.append(acc)

    # One pseudo-random 2 MiB pool; file contents are slices of it (fast and deterministic;
    # contents do not matter to the filesystems under test, none of them compresses).
    pool = rng.randbytes(2 << 20)

    tmp = a.out + ".tmp"
    n_bytes = 0
    with open(tmp, "wb") as fh, tarfile.open(fileobj=fh, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime, ti.uname, ti.gname = tarfile.DIRTYPE, 0o755, MTIME, "root", "root"
            tar.addfile(ti)
        for i in range(a.files):
            r = rng.random()
            lo, hi = 0, len(cum) - 1
            while lo < hi:
                mid = (lo + hi) // 2
                if cum[mid] < r:
                    lo = mid + 1
                else:
                    hi = mid
            d = dirs[lo]
            if rng.random() < 0.03:
                name = rng.choice(SPECIAL)
            else:
                name = word(rng) + ("_" + word(rng, 1, 2) if rng.random() < 0.4 else "") + rng.choice(EXTS)
            if name in used[d]:
                name = f"{name}.{i}"
            used[d].add(name)
            size = min(1 << 20, int(rng.lognormvariate(math.log(6144), 1.0)))
            off = rng.randrange(0, len(pool) - size)
            ti = tarfile.TarInfo(d + "/" + name)
            ti.size, ti.mode, ti.mtime, ti.uname, ti.gname = size, 0o644, MTIME, "root", "root"
            tar.addfile(ti, io.BytesIO(pool[off:off + size]))
            n_bytes += size
    os.replace(tmp, a.out)
    summary = {"files": a.files, "dirs": len(dirs), "bytes": n_bytes, "seed": a.seed,
               "tar_bytes": os.path.getsize(a.out)}
    with open(a.out + ".json", "w") as fh:
        json.dump(summary, fh)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
