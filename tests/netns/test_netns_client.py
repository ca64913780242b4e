#!/usr/bin/python3
"""A client host partitioned with files open for writing (issue 16 s.2).

Through client1's mount: file F gets 1 MiB, fsync, then 300 KiB more
(write(2) returned, so the chain has them, but no fsync or close reported
the length); file G gets 200 KiB and no fsync. Both stay open. Then
client1's link goes down. Asserted: a meta instance drops client1's write
sessions (its log: "session prune: dropped=N", N >= 2) within
PRUNE_BOUND_S; afterwards client2 sees both files with their full lengths
(1 MiB + 300 KiB and 200 KiB: the prune syncs each length from storage)
and their exact content. After healing, client1's mount works again (a
new file written through it reads back through client2) within 30 s.
"""
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nettest  # noqa: E402
from nettest import check, content, log, read_file, write_file  # noqa: E402

# mgmtd fails a silent node after its heartbeat timeout (6 s); meta checks
# every second (--session-check-ms 1000); slack for a loaded machine.
PRUNE_BOUND_S = 20


def pruned_since(c, t0):
    n = 0
    for i in (1, 2):
        p = os.path.join(c.dir, "logs", "meta%d.log" % i)
        with open(p, errors="replace") as f:
            for line in f:
                m = re.search(r"session prune: dropped=(\d+)", line)
                if m and nettest.parse_ts(line.split()[0]) >= t0:
                    n += int(m.group(1))
    return n


def body(c):
    m1, m2 = c.mnt("client1"), c.mnt("client2")
    f_data = content("F", (1 << 20) + (300 << 10))
    g_data = content("G", 200 << 10)
    # A child process holds the open files: a process holding descriptors
    # on a cut-off mount must not fork + exec (ip, nsenter), because the
    # child's close of them is a FUSE flush that waits for the network.
    go_r, go_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(go_w)
        os.close(done_r)
        try:
            fd_f = os.open(os.path.join(m1, "F"), os.O_WRONLY | os.O_CREAT, 0o644)
            fd_g = os.open(os.path.join(m1, "G"), os.O_WRONLY | os.O_CREAT, 0o644)
            ok = os.write(fd_f, f_data[:1 << 20]) == 1 << 20
            os.fsync(fd_f)
            ok = ok and os.write(fd_f, f_data[1 << 20:]) == 300 << 10
            ok = ok and os.write(fd_g, g_data) == len(g_data)
            os.write(done_w, b"1" if ok else b"0")
            os.read(go_r, 1)     # until the parent healed client1
            for fd in (fd_f, fd_g):
                try:
                    os.close(fd)
                except OSError:
                    pass
        finally:
            os._exit(0)
    os.close(go_r)
    os.close(done_w)
    check(os.read(done_r, 1) == b"1", "the writes through client1 failed")
    log("F: 1 MiB fsynced + 300 KiB written; G: 200 KiB written; both open on client1")

    t0 = time.time()
    c.partition("client1")
    log("client1 cut off")
    c.wait(lambda: pruned_since(c, t0) >= 2, PRUNE_BOUND_S + 20, "client1's sessions pruned")
    took = time.time() - t0
    check(took < PRUNE_BOUND_S, "sessions pruned after %.1f s (bound %d)" % (
        took, PRUNE_BOUND_S))
    log("%d sessions pruned %.1f s after the cut" % (pruned_since(c, t0), took))
    for name, data in (("F", f_data), ("G", g_data)):
        p = os.path.join(m2, name)
        # the attribute cache of client2 is 1 s
        c.wait(lambda: os.stat(p).st_size == len(data), 5,
               "%s's length %d through client2 (now %d)" % (
                   name, len(data), os.stat(p).st_size))
        check(read_file(p) == data, name + ": wrong content through client2")
    log("through client2: F is %d bytes and G %d, content equal" % (len(f_data), len(g_data)))

    t1 = time.time()
    c.heal("client1")
    log("client1 healed (%.1f s)" % (time.time() - t1))
    os.write(go_w, b"1")
    os.waitpid(pid, 0)

    def usable():
        try:
            write_file(os.path.join(m1, "after"), content("after", 64 << 10))
            return read_file(os.path.join(m2, "after")) == content("after", 64 << 10)
        except OSError:
            return False
    c.wait(usable, 30, "client1's mount to work again")
    log("client1's mount works again %.1f s after healing" % (time.time() - t1))
    for name, data in (("F", f_data), ("G", g_data)):
        check(read_file(os.path.join(m1, name)) == data, name + ": wrong through client1")
        check(os.stat(os.path.join(m2, name)).st_size == len(data),
              name + ": length changed after client1 closed it")


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(nettest.run("netns-client", body))
