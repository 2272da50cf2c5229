#!/usr/bin/env python3
"""Small-file phases for the benchmark: one phase per invocation, so the caller can remount
(cold caches) between phases.

    smallfiles.py create DIR N [SIZE]   # DIR is created; files f00000..f(N-1), SIZE bytes each (100)
    smallfiles.py stat   DIR N          # lstat every file, checks the size
    smallfiles.py delete DIR N          # unlink every file, then rmdir DIR

Prints the elapsed wall-clock seconds of the phase (time.perf_counter, interpreter start-up
excluded) on stdout. Exits non-zero with a message on the first error.
"""
import os
import sys
import time


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in ("create", "stat", "delete"):
        sys.exit(__doc__)
    phase, d, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    size = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    names = [os.path.join(d, f"f{i:05d}") for i in range(n)]
    payload = (b"cmkfs-bench small file payload " * ((size // 31) + 1))[:size]
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    t0 = time.perf_counter()
    try:
        if phase == "create":
            os.mkdir(d)
            for p in names:
                fd = os.open(p, flags, 0o644)
                try:
                    if os.write(fd, payload) != size:
                        raise OSError(f"short write to {p}")
                finally:
                    os.close(fd)
        elif phase == "stat":
            for p in names:
                st = os.lstat(p)
                if st.st_size != size:
                    raise OSError(f"{p}: size {st.st_size}, expected {size}")
        else:
            for p in names:
                os.unlink(p)
            os.rmdir(d)
    except OSError as e:
        sys.exit(f"smallfiles.py {phase}: {e}")
    print(f"{time.perf_counter() - t0:.6f}")


if __name__ == "__main__":
    main()
