#!/bin/bash
# usage: [SCRATCH=DIR] scripts/delete-cpu.sh BINARY TAG -- fresh cluster with --meta-local; create 10000 files of 4 KiB
# in one directory, then unlink them all: deletes/s, mount CPU per delete, meta CPU per delete
# (its GC included: 8 s after the last unlink).
S=${SCRATCH:-/tmp/cfs-bench}; mkdir -p $S
B=$1; T=$2; D=$S/c-$T; M=$S/m-$T
rm -rf $D; mkdir -p $M
$B up --dir $D --mount $M --meta-local >$S/up-$T.log 2>&1 || { echo up failed; exit 1; }
python3 - "$M" $(awk "{print \$1}" $D/pids/mount.pid) $(awk "{print \$1}" $D/pids/meta.pid) <<'PY'
import os, sys, time
m, pm, pmeta = sys.argv[1], sys.argv[2], sys.argv[3]
def cpu(p):
    f = open("/proc/%s/stat" % p).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
d = m + "/d"; os.mkdir(d); N = 10000
blob = b"x" * 4096
for i in range(N):
    with open("%s/f%d" % (d, i), "wb") as f: f.write(blob)
time.sleep(2)
c0 = cpu(pm); k0 = cpu(pmeta); t0 = time.monotonic()
for i in range(N): os.unlink("%s/f%d" % (d, i))
t1 = time.monotonic(); c1 = cpu(pm); time.sleep(8); k1 = cpu(pmeta)
print("deletes/s %.0f  CPU per delete: mount %.1f us, meta (incl. all GC, 8 s after) %.1f us" % (N / (t1 - t0), (c1 - c0) / N * 1e6, (k1 - k0) / N * 1e6))
PY
$B down --dir $D >/dev/null 2>&1
fusermount3 -u $M 2>/dev/null
rm -rf $D
