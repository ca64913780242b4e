#!/usr/bin/python3
"""chaos_netns.py - the chaos harness on the multi-host topology (issue 16).

    chaos_netns.py --bin build/chainfs [--cycles N | --minutes T] [--seed S]
                   [--faults part-storage,stop-meta,...] [--dir D] [--keep]
                   [--loop-mb 128]

The cluster is scripts/netns_cluster.py's: 13 network-namespace hosts (3
etcd, 2 mgmtd, 4 storage with 3 targets each on their own --loop-mb MiB
ext4 loop image, 2 meta, 2 clients with a mount each). The workload and
the checks are tests/chaos/chaos.py's, unchanged: writer0 and churn on
client1's mount, writer1 on client2's, the probe on client1's; after every
cycle, with the workers paused, every acknowledged block and namespace
change is read back through client1's mount (so writer1's data crosses
clients).

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
After each: every chain member serving, both mounts up and a fresh probe
success (recovery time = fault start to that point), then the checks.

At the end: the checks once more, the roles stopped except etcd, `chainfs
fsck --kv etcd://... --targets ...` (every chunk on three agreeing
replicas, no orphan, link counts right), then everything removed. Exit 0
only when lost = corrupted = 0, every cycle recovered and fsck is clean.
Needs root (network namespaces, loop devices) and /dev/fuse (else 77).
"""
import argparse
import collections
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
import chaos  # noqa: E402
import netns_cluster  # noqa: E402

FAULTS = ["part-storage", "part-meta", "part-mgmtd", "part-etcd", "stop-storage", "stop-meta",
          "stop-mgmtd", "kill-storage", "kill-meta", "kill-mgmtd", "disk-full"]


def pick(rnd, kind):
    return {"storage": "storage%d" % rnd.randint(1, 4), "meta": "meta%d" % rnd.randint(1, 2),
            "mgmtd": "mgmtd%d" % rnd.randint(1, 2), "etcd": "etcd%d" % rnd.randint(1, 3)}[kind]


def inject(nc, rnd, kind):
    """Runs one fault to its end (recovery action included); its detail."""
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
            last = [float(f[1]) for f in chaos.read_log(os.path.join(ctl, "probe.log"))
                    if f[0] == "S"]
            if last and last[-1] > time.time() - 2:
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
    ap.add_argument("--bin", default=os.environ.get("CFS_BIN", "build/chainfs"))
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--minutes", type=float, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--faults", default="")
    ap.add_argument("--dir", default="")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--loop-mb", type=int, default=128)
    ap.add_argument("--max-files", type=int, default=100)
    ap.add_argument("--stop-on-failure", action="store_true")
    ap.add_argument("--each", action="store_true",
                    help="one cycle per fault kind of --faults, in a seeded order (the smoke)")
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
    nc.up(args.loop_mb)
    try:
        return run(args, rnd, root, ctl, faults, nc, t_up)
    finally:
        nc.down()   # a no-op when run() brought it down already


def run(args, rnd, root, ctl, faults, nc, t_up):
    print("cluster up in %.1f s: %d chains, targets on %d MiB loop images" % (
        time.time() - t_up, nc.st.get("chains", 0), args.loop_mb), flush=True)
    m1, m2 = nc.mnt("client1"), nc.mnt("client2")
    wargs = argparse.Namespace(max_files=args.max_files)
    names = ["writer0", "writer1", "churn"]
    procs = [chaos.spawn_worker(wargs, root, ctl, m1 if i == 0 else m2, "writer", i,
                                args.seed * 10 + i) for i in range(2)]
    procs.append(chaos.spawn_worker(wargs, root, ctl, m1, "churn", 0, args.seed * 10 + 7))
    procs.append(chaos.spawn_worker(wargs, root, ctl, m1, "probe", 0, 0))
    kinds = collections.Counter()
    worst = collections.defaultdict(float)
    rec = collections.defaultdict(list)
    errs = collections.defaultdict(collections.Counter)
    failed_cycles = 0
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
        while (t_end and time.time() < t_end) or (not t_end and cycle < args.cycles):
            cycle += 1
            kind = order[cycle - 1] if args.each else rnd.choice(faults)
            t0 = time.time()
            try:
                detail = inject(nc, rnd, kind)
            except netns_cluster.Error as e:
                detail = "fault failed: %s" % e
            ok = recovered(nc, ctl, 180)
            t1 = time.time()
            kinds[kind] += 1
            rec[kind].append(t1 - t0)
            worst[kind] = max(worst[kind], chaos.probe_gaps(ctl, t0, t1))
            errs[kind].update(chaos.errors_between(ctl, names + ["probe"], t0, t1))
            if not ok:
                failed_cycles += 1
            if not chaos.pause_workers(ctl, names):
                print("chaos-netns: workers did not pause", flush=True)
                failed_cycles += 1
            nfiles, nblocks, l1, c1, p1 = chaos.check_writers(ctl, m1, 2)
            nns, l2, p2 = chaos.check_churn(ctl, m1)
            chaos.resume_workers(ctl)
            lost, corrupted = l1 + l2, c1
            print("cycle %3d %-12s %-38s recovered %s in %5.1f s; checked %d files / %d blocks, "
                  "%d namespace changes: lost %d corrupted %d" %
                  (cycle, kind, detail[:38], "yes" if ok else "NO", t1 - t0, nfiles, nblocks,
                   nns, lost, corrupted), flush=True)
            for p in (p1 + p2)[:10]:
                print("   ", p, flush=True)
            if not ok:
                print("    not recovered; chains:\n" + nc.admin("list-chains")[1], flush=True)
            if lost or corrupted or not ok:
                status = 1
                if args.stop_on_failure:
                    break
    finally:
        open(os.path.join(ctl, "stop"), "w").close()
        chaos.resume_workers(ctl)
        for p in procs:
            try:
                p.wait(timeout=90)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    try:
        nfiles, nblocks, l1, c1, p1 = chaos.check_writers(ctl, m1, 2)
        nns, l2, p2 = chaos.check_churn(ctl, m1)
        lost, corrupted = l1 + l2, c1
        for p in (p1 + p2)[:20]:
            print("   ", p)
        clean, out = fsck(nc)
    finally:
        nc.down()
    print()
    print("chaos-netns summary (seed %d, %.1f min)" % (args.seed, (time.time() - t_start) / 60))
    print("  cycles run: %d (%s)" % (cycle, ", ".join("%s %d" % kv for kv in sorted(kinds.items()))))
    print("  acknowledged: %d files / %d blocks, %d namespace changes checked" % (nfiles, nblocks, nns))
    print("  lost: %d / corrupted: %d" % (lost, corrupted))
    print("  cycles that did not recover: %d" % failed_cycles)
    print("  recovery (fault start to all serving + probe ok): median / worst, and worst probe gap:")
    for k in sorted(kinds):
        r = sorted(rec[k])
        print("    %-13s %5.1f s / %5.1f s   gap %5.1f s" % (k, r[len(r) // 2], r[-1], worst[k]))
    print("  client-visible errors per fault kind:")
    for k in sorted(kinds):
        print("    %-13s %s" % (k, ", ".join("%s %d" % kv for kv in sorted(errs[k].items())) or "none"))
    print("  fsck (roles stopped, etcd up): %s" % ("clean" if clean else "PROBLEMS"))
    for l in out.splitlines():
        if not clean or "=" in l:
            print("    " + l)
    if lost or corrupted or failed_cycles or not clean:
        status = 1
    if not args.keep and status == 0:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print("  kept: %s" % root)
    return status


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
