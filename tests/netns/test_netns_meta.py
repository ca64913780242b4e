#!/usr/bin/python3
"""A meta instance killed -9, then the other paused (issue 16 s.2).

Both client hosts run a worker that creates a file (write + fsync +
close), renames it to NAME.done, and counts the pair as acknowledged once
the rename returned. meta1 is killed -9 (then restarted), later meta2 is
paused with SIGSTOP for PAUSE_S seconds (then resumed). Asserted:
- no acknowledged operation is lost: every NAME.done exists with its
  content, and no acknowledged NAME is left under its first name;
- none is duplicated: a rename retried after it had been applied would
  fail with ENOENT (or an exclusive create with EEXIST), so no such
  error may appear, and each directory lists every name once;
- the mounts fail over: the longest gap between two acknowledged
  operations of a worker stays under FAILOVER_BOUND_S.
Other client-visible errors during the failover are printed with their
errno (issue 16's "found by a fault run" #2 wants none; see the report).
"""
import errno
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nettest  # noqa: E402
from nettest import check, content, log, read_file, write_file  # noqa: E402

FAILOVER_BOUND_S = 30
PAUSE_S = 10


class Worker:
    def __init__(self, mnt, prefix):
        self.dir = os.path.join(mnt, prefix)
        os.mkdir(self.dir)
        self.prefix = prefix
        self.acked = {}
        self.errors = []
        self.n = 0
        self.last_ok = time.time()
        self.worst_gap = 0.0
        self.stopping = False
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stopping:
            name = "f%05d" % self.n
            self.n += 1
            data = content(self.prefix + name, 64 << 10)
            p = os.path.join(self.dir, name)
            try:
                write_file(p, data)
                os.rename(p, p + ".done")
            except OSError as e:
                self.errors.append((name, e.errno, str(e)))
                time.sleep(0.2)
                continue
            now = time.time()
            self.worst_gap = max(self.worst_gap, now - self.last_ok)
            self.last_ok = now
            self.acked[name] = data

    def stop(self):
        self.stopping = True
        self.thread.join(120)
        check(not self.thread.is_alive(), self.prefix + ": an operation hung for 120 s")


def body(c):
    m1, m2 = c.mnt("client1"), c.mnt("client2")
    ws = [Worker(m1, "w1"), Worker(m2, "w2")]
    time.sleep(2)

    t0 = time.time()
    c.kill("meta1")
    log("meta1 killed -9")
    time.sleep(8)
    for w in ws:
        log("%s: %d acked so far, longest gap %.1f s" % (w.prefix, len(w.acked), w.worst_gap))
    c.restart("meta1")
    log("meta1 restarted %.1f s after the kill" % (time.time() - t0))
    time.sleep(3)
    gap_kill = [w.worst_gap for w in ws]
    for w in ws:
        w.worst_gap = 0.0

    c.stop("meta2")
    log("meta2 paused for %d s" % PAUSE_S)
    try:
        time.sleep(PAUSE_S)
    finally:
        c.cont("meta2")
    time.sleep(3)
    for w in ws:
        w.stop()
    gap_pause = [w.worst_gap for w in ws]

    for w, gk, gp in zip(ws, gap_kill, gap_pause):
        kinds = {}
        for _, en, _ in w.errors:
            kinds[errno.errorcode.get(en, str(en))] = kinds.get(
                errno.errorcode.get(en, str(en)), 0) + 1
        log("%s: %d acknowledged, longest gap %.1f s (kill) / %.1f s (pause); errors %s" % (
            w.prefix, len(w.acked), gk, gp, kinds or "none"))
        check(len(w.acked) >= 10, "%s: only %d operations acknowledged" % (
            w.prefix, len(w.acked)))
        check(max(gk, gp) < FAILOVER_BOUND_S, "%s: no operation for %.1f s (bound %d)" % (
            w.prefix, max(gk, gp), FAILOVER_BOUND_S))
        dup = [e for e in w.errors if e[1] in (errno.ENOENT, errno.EEXIST)]
        check(not dup, "%s: errors that mean an operation applied twice: %s" % (
            w.prefix, dup[:3]))
        for m in (m1, m2):
            names = os.listdir(os.path.join(m, w.prefix))
            check(len(names) == len(set(names)), "%s lists a name twice" % w.prefix)
            have = set(names)
            for name, data in w.acked.items():
                check(name + ".done" in have, "%s/%s.done lost (through %s)" % (
                    w.prefix, name, m))
                check(name not in have, "%s/%s still under its first name" % (w.prefix, name))
                got = read_file(os.path.join(m, w.prefix, name + ".done"))
                check(got == data, "%s/%s.done: wrong content through %s" % (
                    w.prefix, name, m))
    log("every acknowledged create + rename holds once, content equal, through both mounts")


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(nettest.run("netns-meta", body))
