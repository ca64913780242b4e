#!/usr/bin/python3
"""A storage host partitioned, then a storage process paused (issue 16 s.2).

1. storage1's link goes down while both client hosts write (write + fsync
   per file). Asserted: storage1 fences itself (its log) before mgmtd
   declares it failed (the primary's log); the writes go on over the other
   replicas with no error and no stall longer than STALL_BOUND_S; after
   the link comes back every chain returns to serving within 60 s; every
   acknowledged file reads back byte-equal through both mounts. Then the
   two storage hosts whose loss leaves one chain on storage1's resynced
   replica alone are killed -9, and everything reads back equal again
   (so the healed replica really holds the data written while it was cut
   off).
2. storage2 is paused (SIGSTOP) until mgmtd moved its targets out; a file
   is overwritten meanwhile; after SIGCONT, reads through both mounts for
   3 s return only the new content (the paused process serves nothing
   stale).
"""
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nettest  # noqa: E402
from nettest import Writer, check, content, log, verify, wait_serving, write_file  # noqa: E402

# A chain waits for mgmtd to declare the cut-off head failed (the heartbeat
# timeout, 6 s here) and to publish the new chain; allow as much again.
STALL_BOUND_S = 15


def node_ids(c):
    ids = {}
    for i in (1, 2, 3, 4):
        h = "storage%d" % i
        with open(os.path.join(c.dir, "logs", h + ".log"), errors="replace") as f:
            m = re.search(r"registered: node=(\d+) type=storage", f.read())
        check(m, h + " never registered")
        ids[h] = int(m.group(1))
    return ids


def chains(c):
    """[(chain, [(node, state), ...]), ...] from admin list-chains."""
    rc, out = c.admin("list-chains")
    check(rc == 0, "list-chains: " + out)
    res = []
    for line in out.splitlines()[1:]:
        f = line.split()
        if len(f) < 3:
            continue
        mem = [(int(t.split("(")[0]) // 1000, t.split("(")[1].rstrip(")")) for t in f[2:]]
        res.append((f[0], mem))
    return res


def offline(c, node):
    return all(st == "offline" for _, mem in chains(c) for n, st in mem if n == node)


def primary_logs(c):
    return [os.path.join(c.dir, "logs", "mgmtd%d.log" % i) for i in (1, 2)]


def body(c):
    m1, m2 = c.mnt("client1"), c.mnt("client2")
    ids = node_ids(c)
    files = {}
    pre = Writer(m1, "pre")
    pre.run_for(2)
    files.update(pre.acked)

    # ---- 1. partition storage1
    t_cut = time.time()
    c.partition("storage1")
    log("storage1 cut off")
    wa, wb = Writer(m1, "cut1").start(), Writer(m2, "cut2").start()
    c.wait(lambda: offline(c, ids["storage1"]), 30, "storage1's targets offline")
    t_moved = time.time()
    # A write in flight to the cut-off head waits out the storage client's
    # RPC timeout (10 s) before it goes to the new chain: a writer stalled
    # 10.6 s once, and with "moved + 5 s" ending 11 s after the cut it had
    # written 1 file. Write on until the stall bound has passed, plus time
    # for a few files after it.
    time.sleep(max(5, t_cut + STALL_BOUND_S + 3 - time.time()))
    wa.stop()
    wb.stop()
    for w in (wa, wb):
        log("%s: %d files, longest stall %.1f s, errors %s" % (w.prefix, len(w.acked),
                                                            w.worst_gap, w.errors[:3]))
        files.update(w.acked)
        check(not w.errors, "writes failed while storage1 was cut off: %s" % w.errors[:3])
        check(len(w.acked) >= 3, "%s: only %d files written" % (w.prefix, len(w.acked)))
        check(w.worst_gap < STALL_BOUND_S, "%s: writes stalled %.1f s (bound %d)" % (
            w.prefix, w.worst_gap, STALL_BOUND_S))
    log("targets moved out %.1f s after the cut; longest write stall %.1f / %.1f s; "
        "%d files written meanwhile" % (t_moved - t_cut, wa.worst_gap, wb.worst_gap,
                                         len(wa.acked) + len(wb.acked)))
    fenced = [t for t in nettest.log_times(os.path.join(c.dir, "logs", "storage1.log"),
                                           r"fenced") if t >= t_cut - 1]
    failed = [t for p in primary_logs(c) for t in nettest.log_times(
        p, r"node failed: node=%d " % ids["storage1"]) if t >= t_cut - 1]
    check(fenced, "storage1 never logged that it fenced itself")
    check(failed, "no mgmtd logged storage1 failed")
    check(min(fenced) < min(failed), "storage1 fenced at +%.2f s, after mgmtd failed it at "
          "+%.2f s" % (min(fenced) - t_cut, min(failed) - t_cut))
    log("storage1 fenced at +%.2f s, mgmtd failed it at +%.2f s" % (
        min(fenced) - t_cut, min(failed) - t_cut))

    c.heal("storage1")
    took = wait_serving(c, 60)
    log("every chain serving %.1f s after healing" % took)
    post = Writer(m2, "post")
    post.run_for(1)
    files.update(post.acked)
    verify(files, [m1, m2])
    log("%d files read back equal through both mounts" % len(files))

    # Leave storage1 and one host X such that a chain keeps only storage1.
    cs = chains(c)
    s1 = ids["storage1"]
    keep = None
    for h in ("storage2", "storage3", "storage4"):
        x = ids[h]
        nodes = [set(n for n, _ in mem) for _, mem in cs]
        if all(s1 in ns or x in ns for ns in nodes) and any(
                s1 in ns and x not in ns for ns in nodes):
            keep = h
            break
    check(keep, "no storage host pairs with storage1 to cover every chain: %s" % cs)
    gone = [h for h in ("storage2", "storage3", "storage4") if h != keep]
    for h in gone:
        c.kill(h)
    c.wait(lambda: all(offline(c, ids[h]) for h in gone), 30, "%s offline" % gone)
    verify(files, [m2])
    log("with %s killed, everything reads back from storage1 + %s" % (gone, keep))
    for h in gone:
        c.restart(h)
    took = wait_serving(c, 60)
    log("restarted %s, every chain serving after %.1f s" % (gone, took))

    # ---- 2. a paused storage process resumed after its targets moved out
    rel = "paused-file"
    write_file(os.path.join(m1, rel), content(rel + "v1", 512 << 10))
    c.stop("storage2")
    t0 = time.time()
    try:
        c.wait(lambda: offline(c, ids["storage2"]), 30, "storage2's targets offline")
        log("storage2 paused; targets moved out after %.1f s" % (time.time() - t0))
        new = content(rel + "v2", 512 << 10)
        write_file(os.path.join(m1, rel), new)
    finally:
        c.cont("storage2")
    end = time.time() + 3
    reads = 0
    while time.time() < end:
        for m in (m1, m2):
            got = nettest.read_file(os.path.join(m, rel))
            check(got == new, "read %d after SIGCONT returned stale data through %s" % (
                reads, m))
            reads += 1
    log("%d reads after SIGCONT: all the new content" % reads)
    took = wait_serving(c, 60)
    files[rel] = new
    verify(files, [m1, m2])
    log("storage2 back to serving after %.1f s; all %d files equal" % (took, len(files)))


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(nettest.run("netns-storage", body))
