#!/usr/bin/env python3
# conv-cost.py BASE_BIN NEW_BIN PAIRS: what an inline conversion costs
# (docs/inline-data.md "The fence", Cost). Per run a fresh `chainfs up`
# (scratch under $TMPDIR), 200 inline files of 1000 bytes written, then
# each extended by one 64 KiB pwrite at 1000 (a conversion, then the
# chunk write); ms per file for each run, runs alternated, then medians
# and the per-pair ratio new/base.
import os, sys, time, subprocess, tempfile, statistics
base, new, pairs = sys.argv[1], sys.argv[2], int(sys.argv[3])
N = 200
def run(binp):
    d = tempfile.mkdtemp(prefix="conv-cost-")
    data, mnt = d + "/data", d + "/mnt"
    os.makedirs(mnt)
    out = open(d + "/up.out", "w")
    subprocess.run([binp, "up", "--dir", data, "--mount", mnt, "--timeout-ms", "60000"],
                   stdout=out, stderr=out, check=True, timeout=180)
    try:
        os.makedirs(mnt + "/c")
        blk = b"x" * 1000
        for i in range(N):
            with open(f"{mnt}/c/f{i}", "wb") as f:
                f.write(blk)
        big = b"y" * 65536
        t0 = time.monotonic()
        for i in range(N):
            fd = os.open(f"{mnt}/c/f{i}", os.O_WRONLY)
            os.pwrite(fd, big, 1000)
            os.close(fd)
        t = (time.monotonic() - t0) / N * 1000
        for i in range(3):
            st = os.stat(f"{mnt}/c/f{i}")
            assert st.st_size == 66536, st.st_size
    finally:
        subprocess.run([binp, "down", "--dir", data], stdout=out, stderr=out, timeout=120)
        subprocess.run(["rm", "-rf", d])
    return t
res = {"base": [], "new": []}
for p in range(pairs):
    order = [("base", base), ("new", new)] if p % 2 == 0 else [("new", new), ("base", base)]
    for name, b in order:
        t = run(b)
        res[name].append(t)
        print(f"pair {p} {name} {t:.2f} ms/file load={os.getloadavg()[0]:.1f}", flush=True)
b, n = res["base"], res["new"]
r = [y / x for x, y in zip(b, n)]
print("base median %.2f range %.2f-%.2f" % (statistics.median(b), min(b), max(b)))
print("new  median %.2f range %.2f-%.2f" % (statistics.median(n), min(n), max(n)))
print("ratio new/base per pair median %.2f range %.2f-%.2f" % (statistics.median(r), min(r), max(r)))
