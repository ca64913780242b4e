#!/usr/bin/python3
"""mgmtd primary partitioned from etcd, then killed (issue 16 s.2).

1. The primary mgmtd host is cut off from the three etcd hosts only (tc
   drop both ways; storage, meta and clients still reach it). Asserted:
   the standby becomes primary (its log: "primary: term=T+1") within
   TAKEOVER_BOUND_S; a routing
   change made by the new primary (storage4 killed -9 and declared
   failed) is what `admin list-chains` shows when asked through the old
   primary's address alone after healing (during the cut the old
   primary refuses or redirects, never serves its stale routing); back
   on etcd the old primary logs that it stepped down;
   chain versions never go back; the old primary never logs becoming
   primary again while the new one lives.
2. The new primary is killed -9: the old one takes over within the bound.
Writes through both mounts go on during all of it, and every acknowledged
file reads back byte-equal through both mounts at the end.
"""
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nettest  # noqa: E402
from nettest import Writer, check, log, verify, wait_serving  # noqa: E402

# The lease is 3 s; a standby tries every lease/3 and the old holder's
# record must have expired: 3 s + 1 s, plus a loaded machine's slack.
TAKEOVER_BOUND_S = 10


def terms(c, role, since=0):
    """[(time, term)] of "primary: term=" lines in ROLE's log after SINCE."""
    out = []
    with open(os.path.join(c.dir, "logs", role + ".log"), errors="replace") as f:
        for line in f:
            m = re.search(r"primary: term=(\d+)", line)
            if m:
                t = nettest.parse_ts(line.split()[0])
                if t >= since:
                    out.append((t, int(m.group(1))))
    return out


def primary(c):
    best = None
    for r in ("mgmtd1", "mgmtd2"):
        for t, term in terms(c, r):
            if best is None or term > best[1]:
                best = (r, term)
    check(best, "no mgmtd became primary")
    return best


def chains_via(c, mgmtd_role, refused_ok=False):
    """{chain: (version, [(node, state)])} asked through MGMTD_ROLE alone;
    None when it refused as not primary and REFUSED_OK."""
    r = c.run_in("client1", c.chainfs("admin", "list-chains", "--mgmtd",
                                      "%s:8000" % c.ip(mgmtd_role), *c.common()), timeout=30)
    if r.returncode != 0 and refused_ok and "CFS_ENOT_PRIMARY" in r.stdout + r.stderr:
        return None
    check(r.returncode == 0, "list-chains via %s: %s" % (mgmtd_role, r.stdout + r.stderr))
    res = {}
    for line in r.stdout.splitlines()[1:]:
        f = line.split()
        if len(f) >= 3:
            res[f[0]] = (int(f[1]), [(int(t.split("(")[0]) // 1000, t.split("(")[1][:-1])
                                     for t in f[2:]])
    return res


def node_of(c, host):
    with open(os.path.join(c.dir, "logs", host + ".log"), errors="replace") as f:
        m = re.search(r"registered: node=(\d+) type=storage", f.read())
    check(m, host + " never registered")
    return int(m.group(1))


def offline_in(chs, node):
    return all(st == "offline" for _, mem in chs.values() for n, st in mem if n == node)


def wait_takeover(c, role, term, since):
    c.wait(lambda: any(t > term for _, t in terms(c, role, since)), TAKEOVER_BOUND_S + 20,
           role + " to become primary")
    t, new_term = [x for x in terms(c, role, since) if x[1] > term][0]
    check(t - since < TAKEOVER_BOUND_S, "%s became primary %.1f s after the fault (bound %d)"
          % (role, t - since, TAKEOVER_BOUND_S))
    return t - since, new_term


def body(c):
    m1, m2 = c.mnt("client1"), c.mnt("client2")
    old, term = primary(c)
    new = "mgmtd2" if old == "mgmtd1" else "mgmtd1"
    s4 = node_of(c, "storage4")
    log("primary %s term %d; standby %s" % (old, term, new))
    wa, wb = Writer(m1, "a").start(), Writer(m2, "b").start()
    time.sleep(1)

    # ---- 1. cut the primary off from etcd
    t_cut = time.time()
    for e in ("etcd1", "etcd2", "etcd3"):
        c.partition(old, e)
    took, new_term = wait_takeover(c, new, term, t_cut)
    log("%s primary (term %d) %.1f s after %s lost etcd" % (new, new_term, took, old))
    before = chains_via(c, new)
    # a routing change only the new primary may make
    c.kill("storage4")
    c.wait(lambda: offline_in(chains_via(c, new), s4), 30, "storage4 offline")
    # Cut off from etcd, the old primary knows no primary: it refuses
    # (ENOT_PRIMARY) or redirects, and never answers with its stale routing.
    via_old = chains_via(c, old, refused_ok=True)
    check(via_old is None or offline_in(via_old, s4), "the old primary, cut off from etcd, "
          "still shows storage4 serving: %s" % via_old)
    log("storage4 failed by %s; asked through %s alone during the cut: %s" % (
        new, old, "refused (not primary)" if via_old is None else "the same"))

    for e in ("etcd1", "etcd2", "etcd3"):
        c.heal(old, e)
    # Cut off, the old primary's KV calls only time out; back on etcd it
    # finds the lease taken and steps down.
    c.wait(lambda: nettest.log_times(os.path.join(c.dir, "logs", old + ".log"),
                                     r"stepping down") and max(nettest.log_times(
                                         os.path.join(c.dir, "logs", old + ".log"),
                                         r"stepping down")) >= t_cut - 1,
           30, old + " to step down after healing")
    time.sleep(1)
    after_new, after_old = chains_via(c, new), chains_via(c, old)
    check(after_new == after_old, "after healing the mgmtds disagree: %s vs %s" % (
        after_new, after_old))
    check(offline_in(after_new, s4), "storage4 back in the chains after healing: %s" %
          after_new)
    for ch, (v, _) in before.items():
        check(after_new[ch][0] >= v, "chain %s version went back from %d to %d" % (
            ch, v, after_new[ch][0]))
    check(not terms(c, old, t_cut), "%s became primary again after healing: %s" % (
        old, terms(c, old, t_cut)))
    log("after healing %s stays standby; routing the same through both" % old)

    # ---- 2. kill the new primary: the old one takes over
    t_kill = time.time()
    c.kill(new)
    took2, term2 = wait_takeover(c, old, new_term, t_kill)
    log("%s primary again (term %d) %.1f s after %s was killed" % (old, term2, took2, new))
    c.restart("storage4")
    c.restart(new)
    wait_serving(c, 60)
    time.sleep(1)
    wa.stop()
    wb.stop()
    files = {}
    for w in (wa, wb):
        log("%s: %d files, longest stall %.1f s, errors %s" % (
            w.prefix, len(w.acked), w.worst_gap, w.errors[:3]))
        check(not w.errors, "writes failed: %s" % w.errors[:3])
        files.update(w.acked)
    verify(files, [m1, m2])
    log("%d files read back equal through both mounts" % len(files))


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(nettest.run("netns-mgmtd", body))
