#!/usr/bin/python3
"""chaos_netns.py - the chaos harness on the multi-host topology (issue 16).

    chaos_netns.py --bin build/chainfs [--cycles N | --minutes T] [--seed S]
                   [--faults part-storage,stop-meta,...] [--dir D] [--keep]
                   [--loop-mb 128]

The cluster is scripts/netns_cluster.py's: 13 network-namespace hosts (3
etcd, 2 mgmtd, 4 storage with 3 targets each on their own --loop-mb MiB
ext4 loop image, 2 meta, 2 clients with a mount each). The workload and
the checks are tests/chaos/chaos.py's: writer0, the appender writer2 (one
file always open for writing, a block + fsync at a time) and churn on
client1's mount, writer1 and the appender writer3 on client2's, the probe
on client1's; after every
cycle, with the workers paused, what was acknowledged since the previous
check (every file and churn name whose log got a line) and a seeded sample
of older acknowledged data (--sample files, names, and a quarter as many
removed files; chaos.Checker) is read back through client1's mount (so
writer1's data crosses clients), on 8 threads and with the probe paused
too; the cycle line gives the check's time.
--sample 0 checks everything every cycle.

Faults (one per cycle, seeded; the same seed gives the same sequence):
  part-storage / part-meta / part-mgmtd / part-etcd
                   a host's link down for 2..10 s, then up (the storage
                   host fences itself and is moved out when the cut
                   outlasts the heartbeat timeout, then resyncs)
  stop-storage / stop-meta / stop-mgmtd
                   SIGSTOP for 1..8 s, then SIGCONT
  kill-storage / kill-meta / kill-mgmtd
                   kill -9, 1..4 s down, then the same command again
  disk-full        one target's file system filled to ENOSPC by a fill
                   file for 3..10 s, then the file removed
                   (docs/operations.md "A full disk")
  part-client      a client host's link down for 8..12 s (beyond mgmtd's
                   6 s heartbeat timeout, so meta prunes its write
                   sessions) while its writer and appender hold files open
                   for writing, then up; the sessions pruned are counted
                   from the meta logs. Its workers' errors are application
                   errors of the kind; an acknowledged write must survive
                   and no file may be longer than its writes made it
  corrupt          with the workers paused, 8 bytes flipped inside one
                   acknowledged block (every stored copy of it on one
                   target: copy-on-write leaves released copies beside the
                   live one) while the storage process runs; the file is
                   then read through both mounts until that storage logs
                   the bad CRC ("corrupt data") and its repair from a good
                   replica ("repaired chunk", craq_repair.c), and 8 times
                   more (no new corrupt read allowed). Every read is
                   checked block by block: a corrupted byte returned counts
                   as corrupted, a chunk not repaired within 60 s fails
After each: every chain member serving, both mounts up and a fresh probe
success (recovery time = fault start to that point), then the checks.

At the end the full check (chaos.check_all: every acknowledged block,
removal and namespace change) runs once more, and any loss fails the run.

SIGTERM or SIGINT ends the run after the cycle in progress, with everything
below as at a normal end (a second signal interrupts at once, still
bringing the hosts down).

At the end: the full check, the roles stopped except etcd, `chainfs
fsck --kv etcd://... --targets ...` (every chunk on three agreeing
replicas, no orphan, link counts right), then everything removed. Exit 0
only when lost = corrupted = 0, every cycle recovered and fsck is clean.
Needs root (network namespaces, loop devices) and /dev/fuse (else 77).
"""
import argparse
import os
import random
import re
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
import chaos  # noqa: E402
import netns_cluster  # noqa: E402

FAULTS = ["part-storage", "part-meta", "part-mgmtd", "part-etcd", "stop-storage", "stop-meta",
          "stop-mgmtd", "kill-storage", "kill-meta", "kill-mgmtd", "disk-full", "part-client",
          "corrupt"]
# writer0 and writer2 (the appender, a file always open for writing) on
# client1's mount, writer1 and writer3 on client2's
NWRITERS = 4
WORKERS = ["writer0", "writer1", "writer2", "writer3", "churn"]


def pick(rnd, kind):
    return {"storage": "storage%d" % rnd.randint(1, 4), "meta": "meta%d" % rnd.randint(1, 2),
            "mgmtd": "mgmtd%d" % rnd.randint(1, 2), "etcd": "etcd%d" % rnd.randint(1, 3),
            "client": "client%d" % rnd.randint(1, 2)}[kind]


def log_mark(nc, roles):
    """{role: size of its log now}, for log_since."""
    out = {}
    for r in roles:
        try:
            out[r] = os.path.getsize(os.path.join(nc.dir, "logs", r + ".log"))
        except OSError:
            out[r] = 0
    return out


def log_since(nc, mark):
    """What the logs of MARK's roles got since MARK."""
    text = ""
    for r, off in mark.items():
        try:
            with open(os.path.join(nc.dir, "logs", r + ".log"), "rb") as f:
                f.seek(off)
                text += f.read().decode(errors="replace")
        except OSError:
            pass
    return text


def chunk_files(d):
    """The chunk data files of target directory D."""
    out = []
    for dp, _, fns in os.walk(d):
        out += [os.path.join(dp, f) for f in fns
                if not f.endswith((".mdb", ".img", ".lock", "fill.bin", ".tmp"))
                and os.path.getsize(os.path.join(dp, f)) >= chaos.BLOCK]
    return out


def read_both(nc, wl, name, st):
    """Reads and checks WL's file NAME through both mounts; adds what it
    found to ST; the number of reads."""
    for m in (nc.mnt("client1"), nc.mnt("client2")):
        _, l, c, p = wl.check_file(m, name)
        st["lost"] += l
        st["corrupted"] += c
        st["problems"] += p
    return 2


def corrupt_cycle(nc, rnd, ctl, st):
    """Flips 8 bytes in one acknowledged block on one replica (the storage
    process running), with the workers paused so no write replaces the
    chunk meanwhile; then reads the file through both mounts until the
    storage service has caught the bad CRC and repaired its copy from a good
    replica (craq_repair.c), and 8 more times after that. Every read is
    checked block by block (bad bytes returned count as corrupted)."""
    if not chaos.pause_workers(ctl, WORKERS):
        chaos.resume_workers(ctl)
        return "workers did not pause"
    try:
        live = {}
        for w in range(NWRITERS):
            live.update(chaos.WriterLog(ctl, "writer%d" % w).live())
        targets = ["storage%d/t%d" % (i, t) for i in (1, 2, 3, 4)
                   for t in range(1, netns_cluster.TARGETS + 1)]
        rnd.shuffle(targets)
        for target in targets:
            host = target.split("/")[0]
            tdir = os.path.join(nc.dir, target)
            mark = log_mark(nc, [host])
            hit = chaos.flip_live_block(chunk_files(tdir), live, rnd)
            if hit:
                break
        else:
            return "no acknowledged block found on any target"
        name, idx, gen, copies = hit
        wl = chaos.WriterLog(ctl, live[(name, idx, gen)])
        t0 = time.time()
        pat = re.compile(r"corrupt data: target=%s chunk=(\d+):(\d+) " % re.escape(tdir))
        chunk, t_rep, reads = None, None, 0
        while time.time() < t0 + 60 and t_rep is None:
            reads += read_both(nc, wl, name, st)
            text = log_since(nc, mark)
            hits = pat.findall(text)
            if hits and chunk is None:
                chunk = hits[0]
            if chunk and re.search(r"repaired chunk: target=\d+ chain=\d+ ino=%s idx=%s " % chunk,
                                   text):
                t_rep = time.time()
            time.sleep(0.1)
        detected = len(pat.findall(log_since(nc, mark)))
        after = 0
        if t_rep:
            mark2 = log_mark(nc, [host])
            for _ in range(4):
                reads += read_both(nc, wl, name, st)
            after = len(pat.findall(log_since(nc, mark2)))
        st["corrupt_detected"] += detected
        st["corrupt_repaired"] += 1 if t_rep and not after else 0
        st["corrupt_unrepaired"] += 0 if t_rep and not after else 1
        if t_rep:
            st["repair_worst"] = max(st["repair_worst"], t_rep - t0)
        return "%s %s blk %d: %d cop%s, %d bad reads caught, %s" % (
            target, name, idx, copies, "y" if copies == 1 else "ies", detected,
            ("repaired in %.1f s" % (t_rep - t0)) + (", %d AFTER" % after if after else "")
            if t_rep else "NOT repaired in 60 s (%d reads)" % reads)
    finally:
        chaos.resume_workers(ctl)


def inject(nc, rnd, kind, ctl, st):
    """Runs one fault to its end (recovery action included); its detail."""
    if kind == "corrupt":
        return corrupt_cycle(nc, rnd, ctl, st)
    if kind == "disk-full":
        target = "storage%d/t%d" % (rnd.randint(1, 4), rnd.randint(1, netns_cluster.TARGETS))
        hold = rnd.uniform(3, 10)
        path = nc.fill(target)
        mb = os.path.getsize(path) >> 20
        time.sleep(hold)
        os.unlink(path)
        return "%s filled (%d MiB) for %.1f s" % (target, mb, hold)
    verb, role_kind = kind.split("-", 1)
    role = pick(rnd, role_kind)
    if verb == "part" and role_kind == "client":
        # longer than mgmtd's heartbeat timeout (6 s), so meta prunes the
        # host's write sessions (each open file's length synced from
        # storage) while its appender and writer hold files open
        hold = rnd.uniform(8, 12)
        mark = log_mark(nc, ["meta1", "meta2"])
        nc.partition(role)
        time.sleep(hold)
        nc.heal(role)
        pruned = sum(int(x) for x in re.findall(r"session prune: dropped=(\d+)",
                                                 log_since(nc, mark)))
        st["pruned"] += pruned
        return "%s cut off for %.1f s, %d sessions pruned" % (role, hold, pruned)
    if verb == "part":
        hold = rnd.uniform(2, 10)
        nc.partition(role)
        time.sleep(hold)
        nc.heal(role)
        return "%s cut off for %.1f s" % (role, hold)
    if verb == "stop":
        hold = rnd.uniform(1, 8)
        nc.stop(role)
        time.sleep(hold)
        nc.cont(role)
        return "%s stopped for %.1f s" % (role, hold)
    hold = rnd.uniform(1, 4)
    nc.kill(role)
    time.sleep(hold)
    nc.restart(role)
    return "%s killed, %.1f s down" % (role, hold)


def recovered(nc, ctl, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if nc.all_serving() and all(nc.mounted(nc.mnt(c)) for c in ("client1", "client2")):
            if chaos.last_probe_success(ctl) > time.time() - 2:
                return True
        time.sleep(0.5)
    return False


def fsck(nc):
    """Stops every role but etcd, runs chainfs fsck over etcd and the
    targets from client1's host: (clean, output)."""
    procs = nc.st["procs"]
    for k in ("client", "meta", "storage", "mgmtd"):
        nc.stop_roles([r for r in procs if r.startswith(k)])
    targets = ",".join(os.path.join(nc.dir, "storage%d" % i, "t%d" % t)
                       for i in (1, 2, 3, 4) for t in range(1, netns_cluster.TARGETS + 1))
    r = nc.run_in("client1", [nc.st["bin"], "fsck", "--kv", nc.etcd_url(), "--targets", targets,
                              "--replicas", "3", "--log-level", "warn"], timeout=600)
    return r.returncode == 0, (r.stdout + r.stderr).strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    chaos.run_args(ap, 5, 100)
    ap.add_argument("--loop-mb", type=int, default=128)
    ap.add_argument("--sample", type=int, default=200,
                    help="older acknowledged files / churn names re-checked per cycle beside "
                         "everything new (0: all of them every cycle)")
    args = ap.parse_args()
    if not os.path.exists("/dev/fuse"):
        print("skip: /dev/fuse is missing")
        return 77
    if os.geteuid() != 0:
        print("skip: needs root (network namespaces, loop devices)")
        return 77
    rnd = random.Random(args.seed)
    root = args.dir or tempfile.mkdtemp(prefix="cfs-chaosnet-")
    os.makedirs(root, exist_ok=True)
    os.chmod(root, 0o755)
    ctl = os.path.join(root, "ctl")
    os.makedirs(ctl, exist_ok=True)
    faults = args.faults.split(",") if args.faults else FAULTS
    nc = netns_cluster.Cluster(os.path.join(root, "cluster"), os.path.abspath(args.bin),
                               log=lambda m: print(m, flush=True))
    print("chaos-netns: seed %d, faults %s, dir %s" % (args.seed, ",".join(faults), root),
          flush=True)
    t_up = time.time()
    stopper = chaos.Stopper()   # SIGTERM / SIGINT: end after this cycle, clean up
    nc.up(args.loop_mb)
    try:
        return run(args, rnd, root, ctl, faults, nc, t_up, stopper)
    finally:
        nc.down()   # a no-op when run() brought it down already


def run(args, rnd, root, ctl, faults, nc, t_up, stopper):
    print("cluster up in %.1f s: %d chains, targets on %d MiB loop images" % (
        time.time() - t_up, nc.st.get("chains", 0), args.loop_mb), flush=True)
    m1, m2 = nc.mnt("client1"), nc.mnt("client2")
    wargs = argparse.Namespace(max_files=args.max_files)
    names = WORKERS
    procs = [chaos.spawn_worker(wargs, root, ctl, m1 if i == 0 else m2, "writer", i,
                                args.seed * 10 + i) for i in range(2)]
    procs += [chaos.spawn_worker(wargs, root, ctl, m1 if i == 2 else m2, "appender", i,
                                 args.seed * 10 + i) for i in (2, 3)]
    st = {"lost": 0, "corrupted": 0, "problems": [], "pruned": 0, "corrupt_detected": 0,
          "corrupt_repaired": 0, "corrupt_unrepaired": 0, "repair_worst": 0.0}
    procs.append(chaos.spawn_worker(wargs, root, ctl, m1, "churn", 0, args.seed * 10 + 7))
    procs.append(chaos.spawn_worker(wargs, root, ctl, m1, "probe", 0, 0))
    tally = chaos.Tally(ctl, names)
    checker = chaos.Checker(ctl, m1, NWRITERS, args.sample, args.seed * 10 + 9)
    check_times = []
    cycle = 0
    status = 0
    t_end = time.time() + args.minutes * 60 if args.minutes else None
    t_start = time.time()
    order = list(faults)
    rnd.shuffle(order)
    if args.each:
        args.cycles, t_end = len(order), None
    try:
        time.sleep(3)
        while not stopper.asked and ((t_end and time.time() < t_end) or
                                     (not t_end and cycle < args.cycles)):
            cycle += 1
            kind = order[cycle - 1] if args.each else rnd.choice(faults)
            t0 = time.time()
            try:
                detail = inject(nc, rnd, kind, ctl, st)
            except netns_cluster.Error as e:
                detail = "fault failed: %s" % e
            ok = recovered(nc, ctl, 180)
            t1 = time.time()
            tally.record(kind, t0, t1, ok)
            if not chaos.pause_workers(ctl, names) or not chaos.pause_probe(ctl):
                print("chaos-netns: workers did not pause", flush=True)
                tally.failed += 1
            t_paused = time.time()
            fig, lost, corrupted, probs = checker.check()
            chaos.resume_probe(ctl)
            chaos.resume_workers(ctl)
            t_check = time.time() - t_paused
            check_times.append(t_check)
            # what the corrupt cycles' own reads found counts in every later line
            lost, corrupted = lost + st["lost"], corrupted + st["corrupted"]
            probs = st["problems"] + probs
            tally.bad_checks += 1 if lost or corrupted else 0
            print("%s cycle %3d %-12s recovered %s in %5.1f s; paused in %.1f s, "
                  "check %4.1f s: %d files (%d new) "
                  "/ %d blocks, %d removals, %d names (%d new) of %d namespace changes: "
                  "lost %d corrupted %d (op median %.2f s, slowest %s); %s" %
                  (time.strftime("%H:%M:%S", time.gmtime()), cycle, kind, "yes" if ok else "NO",
                   t1 - t0, t_paused - t1, t_check, fig["files"], fig["new_files"], fig["blocks"],
                   fig["removed"], fig["names"], fig["new_names"], fig["changes"], lost,
                   corrupted, checker.op_median, checker.op_worst, detail), flush=True)
            for p in probs[:10]:
                print("   ", p, flush=True)
            if not ok:
                print("    not recovered; chains:\n" + nc.admin("list-chains")[1], flush=True)
            if lost or corrupted or not ok:
                status = 1
                if args.stop_on_failure:
                    break
    except KeyboardInterrupt:
        print("chaos-netns: interrupted in cycle %d" % cycle, flush=True)
    finally:
        chaos.stop_workers(ctl, procs)
    try:
        t_final = time.time()
        checked, lost, corrupted, probs = chaos.check_all(ctl, m1, NWRITERS)
        t_final = time.time() - t_final
        lost, corrupted = lost + st["lost"], corrupted + st["corrupted"]
        for p in (st["problems"] + probs)[:20]:
            print("   ", p)
        clean, out = fsck(nc)
    finally:
        nc.down()
    print()
    print("chaos-netns summary (seed %d, %.1f min)" % (args.seed, (time.time() - t_start) / 60))
    tally.summary(cycle, checked, lost, corrupted)
    tot = checker.totals
    if check_times:
        ct = sorted(check_times)
        print("  per-cycle checks (new since the last + a sample of %s older): %d files / %d "
              "blocks, %d removals, %d names (%d new) over the run; check time median %.1f s, "
              "worst %.1f s, first %.1f s, last %.1f s" % (
                  args.sample or "all", tot["files"], tot["blocks"], tot["removed"],
                  tot["names"], tot["new_names"], ct[len(ct) // 2], ct[-1], check_times[0],
                  check_times[-1]))
    print("  final full check of everything acknowledged: %.1f s" % t_final)
    if tally.kinds["part-client"]:
        print("  client hosts cut off: %d write sessions pruned by meta" % st["pruned"])
    if tally.kinds["corrupt"]:
        print("  corrupted replicas: %d corrupt reads caught by the storage CRC check, %d chunks "
              "repaired (worst %.1f s after the flip), %d not repaired" % (
                  st["corrupt_detected"], st["corrupt_repaired"], st["repair_worst"],
                  st["corrupt_unrepaired"]))
    print("  fsck (roles stopped, etcd up): %s" % ("clean" if clean else "PROBLEMS"))
    for l in out.splitlines():
        if not clean or "=" in l:
            print("    " + l)
    if lost or corrupted or tally.failed or tally.bad_checks or not clean or \
            st["corrupt_unrepaired"]:
        status = 1
    if not args.keep and status == 0:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print("  kept: %s" % root)
    return status


if __name__ == "__main__":
    sys.exit(main())
