#!/bin/bash
# usage: [SCRATCH=DIR] scripts/gc-latency.sh BINARY TAG -- fresh cluster with --meta-local; 5 rounds of: write 32 x 1 MiB
# files (fsync), settle 1.5 s, rm -rf, then poll storage1's request counter (chainfs admin
# rpc-stats, +1 per poll itself) until GC's chunk removals reach it: the time from rm's start.
S=${SCRATCH:-/tmp/cfs-bench}; mkdir -p $S
B=$1; T=$2; D=$S/c-$T; M=$S/m-$T
rm -rf $D; mkdir -p $M
$B up --dir $D --mount $M --meta-local >$S/up-$T.log 2>&1 || { echo up failed; cat $S/up-$T.log; exit 1; }
grep -q "meta in-process" $D/logs/mount.log || echo "WARN: not in-process"
ID=$(awk '/cluster_id/ {print $3}' $D/cluster.conf); P=$(awk '/storage1_port/ {print $3}' $D/cluster.conf)
python3 - "$M" "$B" "$ID" "$P" "$D/secret" <<'PY'
import os, sys, time, shutil, subprocess, re
m, b, cid, port, sec = sys.argv[1:]
def reqs():
    o = subprocess.run([b, "admin", "rpc-stats", "--addr", "127.0.0.1:" + port, "--cluster-id", cid,
                        "--secret-file", sec], capture_output=True, text=True).stdout
    return int(re.search(r"requests=(\d+)", o).group(1))
blob = os.urandom(1 << 20)
res = []
for r in range(5):
    d = "%s/d%d" % (m, r)
    os.mkdir(d)
    for i in range(32):
        with open("%s/f%d" % (d, i), "wb") as f:
            f.write(blob); os.fsync(f.fileno())
    time.sleep(1.5)
    last = reqs()
    t0 = time.monotonic(); shutil.rmtree(d); t1 = time.monotonic()
    while time.monotonic() - t0 < 10:
        n = reqs()
        if n > last + 1: break
        last = n
    t2 = time.monotonic()
    res.append((t2 - t0) * 1e3)
    print("round %d: rm %.0f ms, GC reached storage %.0f ms after rm start" % (r, (t1-t0)*1e3, (t2-t0)*1e3))
print("GC start after rm, ms: " + " ".join("%.0f" % x for x in res) + "  mean %.0f" % (sum(res)/len(res)))
PY
$B down --dir $D >/dev/null 2>&1
fusermount3 -u $M 2>/dev/null
rm -rf $D
