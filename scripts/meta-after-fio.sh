#!/bin/bash
# usage: [SCRATCH=DIR] [UPOPTS="--no-meta-local"] scripts/meta-after-fio.sh BINARY|bindfs TAG
# Issue 13's "meta job slower after the fio job" check (bench/history.md, 2026-12-06 ctx23): on a fresh
# `chainfs up` (or a bindfs of a scratch dir) runs the peer meta job (meta-bench meta M 20000 1 1 1)
# twice, then the peer fio job as run-all.sh's bench() does (run-fio.sh, SIZE=1G RAND_RUNTIME=15,
# ending with its truncate+unlink of the files), then the meta job twice more at once. Per job:
# ops/s, meta-bench's own CPU (user+sys: the kernel's FUSE side), the CPU of the mount plus meta
# (perf stat task-clock), and the CPU the storage roles spent meanwhile (what GC and any other
# background work cost while the job ran). Needs root (cache drop), perf, fio, bindfs.
S=${SCRATCH:-/tmp/cfs-bench}; B=$1; T=$2; D=$S/c-$T; M=$S/m-$T; OUT=$S/out-$T
PEERS=${PEERS:-/work/shared/peers}
MB=$S/meta-bench; [ -x $MB ] || cc -O2 -pthread -o $MB $PEERS/meta-bench.c || exit 1
rm -rf $D $OUT; mkdir -p $M $OUT
if [ "$B" = bindfs ]; then
	mkdir -p $D/src
	bindfs -f --multithreaded -o big_writes --no-allow-other $D/src $M >$OUT/bindfs.log 2>&1 &
	MPID=$!; FG=$MPID; BG=""; sleep 1
else
	$B up --dir $D --mount $M $UPOPTS >$OUT/up.log 2>&1 || { echo up failed; cat $OUT/up.log; exit 1; }
	pid() { cut -d' ' -f1 $D/pids/$1.pid; }
	MPID=$(pid mount); FG=$MPID,$(pid meta); BG="$(pid storage1) $(pid storage2) $(pid storage3)"
fi
ticks() { local p t=0; for p in $BG; do t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat))); done; echo $t; }
job() {
	perf stat -e task-clock -p $FG -o $OUT/perf-$1.txt & local pp=$!
	sleep 0.2
	local t0=$(ticks)
	local r=$(/usr/bin/time -f "mb_cpu_s=%U+%S" $MB meta $M 20000 1 1 1 2>&1 |
		awk '/RESULT/ {split($3, a, "="); split($8, b, "="); printf "%s=%s ", a[2], b[2]} /mb_cpu/ {print}')
	local t1=$(ticks)
	kill -INT $pp; wait $pp 2>/dev/null
	echo "$T $1 load=$(cut -d' ' -f1 /proc/loadavg) $r fg_cpu_ms=$(awk '/task-clock/ {print $1}' $OUT/perf-$1.txt)" \
	     "storage_cpu_ms=$(((t1 - t0) * 10)) mount_rss_kb=$(awk '/VmRSS/ {print $2}' /proc/$MPID/status)"
}
job fresh1; job fresh2
env BENCH_TMP=$S/bt-$T SIZE=1G RAND_RUNTIME=15 bash $PEERS/run-fio.sh $M $T 1 >$OUT/fio.log 2>&1
job after1; job after2
if [ "$B" = bindfs ]; then fusermount3 -u $M; kill $MPID 2>/dev/null
else $B down --dir $D >/dev/null 2>&1; fusermount3 -u $M 2>/dev/null; fi
rm -rf $D $S/bt-$T
