#!/usr/bin/python3
"""One etcd member killed, then one cut off (issue 16 s.2).

Both client hosts write files (write + fsync + close: a create and a
length update in meta's etcd transactions, chunks on storage) the whole
time. 1. The etcd leader is killed -9, and restarted after the writes
went on. 2. A follower host's link goes down: a put through that member
(etcdctl from its own host) must fail, the minority refusing writes,
while a put through a majority member succeeds; then the link comes back
and a put through it succeeds again. Asserted: no write fails, the
longest gap between two acknowledged writes stays under ETCD_BOUND_S, and
every acknowledged file reads back byte-equal through both mounts.
"""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nettest  # noqa: E402
from nettest import Writer, check, log, verify  # noqa: E402

# etcd elects within its election timeout (1 s here); the chainfs etcd
# client moves to the next endpoint after a 1 s attempt timeout.
ETCD_BOUND_S = 15


def status(c, member):
    r = c.run_in(member, ["etcdctl", "--endpoints", "http://%s:2379" % c.ip(member),
                          "--command-timeout=2s", "endpoint", "status", "-w", "json"],
                 timeout=10)
    if r.returncode != 0:
        return None
    try:
        s = json.loads(r.stdout)[0]["Status"]
        return s["header"]["member_id"], s["leader"]
    except (ValueError, KeyError, IndexError):
        return None


def leader(c):
    for i in (1, 2, 3):
        m = "etcd%d" % i
        s = status(c, m)
        if s and s[0] == s[1]:
            return m
    return None


def body(c):
    m1, m2 = c.mnt("client1"), c.mnt("client2")
    wa, wb = Writer(m1, "a", 64 << 10).start(), Writer(m2, "b", 64 << 10).start()
    time.sleep(2)

    # ---- 1. kill the leader
    lead = leader(c)
    check(lead, "no etcd leader")
    t0 = time.time()
    c.kill(lead)
    log("etcd leader %s killed -9" % lead)
    c.wait(lambda: leader(c) not in (None, lead), 20, "a new etcd leader")
    log("new leader %s after %.1f s" % (leader(c), time.time() - t0))
    time.sleep(5)
    c.restart(lead)
    c.wait(lambda: status(c, lead) is not None, 30, lead + " back")
    log("%s restarted and answering" % lead)
    time.sleep(2)

    # ---- 2. cut a follower off: the minority refuses writes
    lead = leader(c)
    check(lead, "no etcd leader after the restart")
    fol = [m for m in ("etcd1", "etcd2", "etcd3") if m != lead][0]
    c.partition(fol)
    log("follower %s cut off" % fol)
    time.sleep(2)
    check(not c.etcd_put(fol, "/netns-test/minority", "x", timeout_s=3),
          "a put through the cut-off member %s succeeded" % fol)
    check(c.etcd_put(lead, "/netns-test/majority", "x", timeout_s=5),
          "a put through the majority (%s) failed" % lead)
    log("put through %s refused, through %s committed" % (fol, lead))
    time.sleep(3)
    c.heal(fol)
    c.wait(lambda: c.etcd_put(fol, "/netns-test/healed", "x", timeout_s=3), 30,
           "a put through %s after healing" % fol)
    log("%s takes writes again after healing" % fol)
    time.sleep(2)

    wa.stop()
    wb.stop()
    files = {}
    for w in (wa, wb):
        log("%s: %d files, longest stall %.1f s, errors %s" % (
            w.prefix, len(w.acked), w.worst_gap, w.errors[:3]))
        check(not w.errors, "%s: writes failed: %s" % (w.prefix, w.errors[:3]))
        check(w.worst_gap < ETCD_BOUND_S, "%s: writes stalled %.1f s (bound %d)" % (
            w.prefix, w.worst_gap, ETCD_BOUND_S))
        files.update(w.acked)
    verify(files, [m1, m2])
    log("%d files read back equal through both mounts" % len(files))


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(nettest.run("netns-etcd", body))
