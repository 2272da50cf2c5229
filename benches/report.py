#!/usr/bin/env python3
"""Turns the raw samples of scripts/bench.sh into the summary table and bench-results.json.

    report.py RESULTS.tsv META.tsv OUT.json

RESULTS.tsv: run, workload, target, value (seconds; KiB for rss_*; ERR for a failed sample).
Medians over runs; the ratio columns are cmkfs time / gocryptfs time and cmkfs time / bindfs
time (lower is better; for the throughput rows the same ratio applies, since the bytes are
equal). Targets come from the issue: sequential write <= 0.50, sequential read <= 0.67, every
other workload <= 0.80 (against gocryptfs), and the cmkfs daemon's peak RSS during the untar
< 100 MiB. A second table gives each daemon's peak RSS per workload.
"""
import json
import statistics
import sys

TARGETS = ["plain", "bindfs", "gocryptfs", "cmkfs", "cmkfs-base"]
# workload key, label template, ratio target (None: no ratio target)
ROWS = [
    ("seqwrite", "seq write {size_mb} MiB + fsync (s)", 0.50),
    ("seqread", "cold seq read {size_mb} MiB (s)", 0.67),
    ("randread", "fio 4 KiB random read {rand_mb} MiB (s)", 0.80),
    ("randwrite", "fio 4 KiB random write {rand_mb} MiB + fsync (s)", 0.80),
    ("mount", "time to mount (s)", 0.80),
    ("untar", "untar {files} files (s)", 0.80),
    ("lsR", "ls -lR, cold (s)", 0.80),
    ("readall", "read all files, cold (s)", 0.80),
    ("rm", "rm -rf tree, cold (s)", 0.80),
    ("small_create", "small: create {small_files} x 100 B (s)", 0.80),
    ("small_stat", "small: stat all, cold (s)", 0.80),
    ("small_delete", "small: delete all, cold (s)", 0.80),
    ("sparse", "sparse: 10 GiB truncate + 1,000 random 4 KiB writes + fsync (s)", None),
    ("sparse_space", "  sparse: backing space used (MiB)", None),
]
RSS_LIMIT_MIB = 100


def fmt(v, digits=2):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if v >= 1000:
        return f"{v:.0f}"
    if v >= 100:
        return f"{v:.1f}"
    return f"{v:.{digits}f}" if v >= 0.01 else f"{v:.4f}"


def print_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths]] + rows:
        print("  ".join(str(c).ljust(widths[0]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(r)))


def main():
    res_path, meta_path, out_path = sys.argv[1:4]
    meta = {}
    with open(meta_path) as fh:
        for line in fh:
            k, _, v = line.rstrip("\n").partition("\t")
            meta[k] = v
    for k in ("size_mb", "rand_mb", "files", "small_files", "runs", "cpus", "tree_bytes", "tree_dirs", "mem_mib", "cold_caches"):
        if k in meta and meta[k].isdigit():
            meta[k] = int(meta[k])
    samples = {}
    with open(res_path) as fh:
        next(fh)
        for line in fh:
            run, wl, tgt, val = line.rstrip("\n").split("\t")
            samples.setdefault(wl, {}).setdefault(tgt, []).append(val)
    present = [t for t in TARGETS if t in meta.get("targets", "").split()]

    def summary(wl, tgt):
        vals = samples.get(wl, {}).get(tgt)
        if not vals:
            return None
        nums = [float(v) for v in vals if v != "ERR"]
        return {"median": statistics.median(nums) if nums else None, "samples": nums,
                "errors": len(vals) - len(nums)}

    def med(wl, tgt):
        s = summary(wl, tgt)
        if s is None:
            return None
        return s["median"] if s["median"] is not None else "ERR"

    results = {}
    table = []
    size_mb = meta.get("size_mb", 0)
    for key, label, target in ROWS:
        if key not in samples:
            continue
        row = {t: summary(key, t) for t in present}
        c, g, p, b = (med(key, t) for t in ("cmkfs", "gocryptfs", "plain", "bindfs"))
        ratio = c / g if isinstance(c, float) and isinstance(g, float) and g > 0 else None
        ratio_plain = c / p if isinstance(c, float) and isinstance(p, float) and p > 0 else None
        ratio_bindfs = c / b if isinstance(c, float) and isinstance(b, float) and b > 0 else None
        if key == "sparse_space":
            row = {t: s and {"median": s["median"] / 1024 if s["median"] is not None else None,
                             "samples": [v / 1024 for v in s["samples"]], "errors": s["errors"]}
                   for t, s in row.items()}
            c, g, p, b = (row[t]["median"] if row.get(t) else None for t in ("cmkfs", "gocryptfs", "plain", "bindfs"))
            ratio = c / g if isinstance(c, float) and isinstance(g, float) and g > 0 else None
            ratio_plain = c / p if isinstance(c, float) and isinstance(p, float) and p > 0 else None
            ratio_bindfs = c / b if isinstance(c, float) and isinstance(b, float) and b > 0 else None
        entry = {"unit": "MiB" if key == "sparse_space" else "s", "by_target": row, "ratio_cmkfs_gocryptfs": ratio,
                 "ratio_cmkfs_bindfs": ratio_bindfs, "ratio_cmkfs_plain": ratio_plain,
                 "ratio_target_max": target,
                 "met": (ratio <= target) if ratio is not None and target is not None else None}
        cells = [label.format(**{k: meta.get(k, "?") for k in ("size_mb", "rand_mb", "files", "small_files")})]
        cells += [fmt(row[t]["median"] if row.get(t) else None) if key == "sparse_space" else fmt(med(key, t))
                  for t in present]
        cells += [fmt(ratio), f"<= {target:.2f}" if target is not None else "-",
                  {True: "yes", False: "NO", None: "-"}[entry["met"]],
                  fmt(ratio_bindfs), fmt(ratio_plain)]
        if "cmkfs-base" in present:
            # A/B of two cmkfs builds in one run: medians and minimums.
            cs, bs = row.get("cmkfs"), row.get("cmkfs-base")
            ab_med = ab_min = None
            if cs and bs and cs["median"] and bs["median"]:
                ab_med = cs["median"] / bs["median"]
            if cs and bs and cs["samples"] and bs["samples"] and min(bs["samples"]) > 0:
                ab_min = min(cs["samples"]) / min(bs["samples"])
            entry["ratio_cmkfs_base_median"] = ab_med
            entry["ratio_cmkfs_base_min"] = ab_min
            cells += [fmt(ab_med), fmt(ab_min)]
        table.append(cells)
        if key in ("randread", "randwrite") and meta.get("rand_mb"):
            ops = meta["rand_mb"] * 256
            iops = {}
            for t in present:
                m = med(key, t)
                iops[t] = ops / m if isinstance(m, float) and m > 0 else None
            entry["iops"] = iops
            table.append(["  IOPS"] + [fmt(iops[t], 0) for t in present] + ["", "", "", "", ""])
        if key in ("seqwrite", "seqread") and size_mb:
            mbps = {}
            for t in present:
                m = med(key, t)
                mbps[t] = size_mb * 1048576 / 1e6 / m if isinstance(m, float) and m > 0 else None
            entry["throughput_MBps"] = mbps
            table.append(["  throughput (MB/s)"] + [fmt(mbps[t], 1) for t in present] + ["", "", "", "", ""])
        results[key] = entry
    if "rss_untar_peak" in samples:
        row = {}
        for t in present:
            s = summary("rss_untar_peak", t)
            if s and s["median"] is not None:
                s = {"median": s["median"] / 1024, "samples": [v / 1024 for v in s["samples"]], "errors": s["errors"]}
            row[t] = s
        c = row.get("cmkfs") and row["cmkfs"]["median"]
        g = row.get("gocryptfs") and row["gocryptfs"]["median"]
        results["rss_untar_peak"] = {"unit": "MiB", "by_target": row,
                                     "ratio_cmkfs_gocryptfs": c / g if c and g else None,
                                     "cmkfs_limit_mib": RSS_LIMIT_MIB,
                                     "met": (c < RSS_LIMIT_MIB) if c else None}
        table.append(["daemon peak RSS, untar (MiB)"] + [fmt(row[t]["median"] if row.get(t) else None, 1) for t in present]
                     + [fmt(c / g if c and g else None), f"cmkfs < {RSS_LIMIT_MIB}",
                        {True: "yes", False: "NO", None: "-"}[results["rss_untar_peak"]["met"]], "", ""])

    # Peak RSS of each daemon per workload (every workload starts with a fresh daemon).
    fuse_targets = [t for t in present if t != "plain"]
    rss_rows = []
    rss_results = {}
    for key, label, _ in ROWS:
        wl = f"rss_peak:{key}"
        if wl not in samples:
            continue
        by = {}
        for t in fuse_targets:
            s = summary(wl, t)
            by[t] = s["median"] / 1024 if s and s["median"] is not None else None
        rss_results[key] = by
        rss_rows.append([key] + [fmt(by[t], 1) for t in fuse_targets])
    if rss_results:
        results["rss_peak_mib_by_workload"] = rss_results

    out = {"meta": meta, "results": results,
           "notes": "times are medians of wall-clock seconds over runs; ratio = cmkfs / gocryptfs "
                    "(lower is better); rss in MiB (VmHWM of the daemon after the untar, fresh daemon)"}
    with open(out_path, "w") as fh:
        json.dump(out, fh, indent=2)

    header = ["workload"] + present + ["cmkfs/gocryptfs", "target", "met", "cmkfs/bindfs", "cmkfs/plain"]
    if "cmkfs-base" in present:
        header += ["cmkfs/base", "min/min"]
    table = [r + [""] * (len(header) - len(r)) for r in table]
    print()
    print(f"cmkfs benchmark, {meta.get('date', '?')}, {meta.get('cpus', '?')} CPUs, load {meta.get('loadavg_start', '?')} -> "
          f"{meta.get('loadavg_end', '?')}, median of {meta.get('runs', 1)} run(s), caches "
          f"{'dropped' if meta.get('cold_caches') == 1 else 'NOT dropped'}, cmkfs {meta.get('cmkfs_git', '?')}")
    print_table(header, table)
    if rss_rows:
        print("\ndaemon peak RSS per workload (MiB, fresh daemon per workload)")
        print_table(["workload"] + fuse_targets, rss_rows)
    errs = [(wl, t) for wl, d in samples.items() for t, v in d.items() if "ERR" in v]
    if errs:
        print("\nFAILED samples: " + ", ".join(f"{wl}/{t}" for wl, t in errs) + " (see logs/ in the work dir)")
    print(f"\nresults: {out_path}")


if __name__ == "__main__":
    main()
