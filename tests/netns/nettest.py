"""nettest.py - shared pieces of the network-namespace HA tests (issue 16 s.2).

Each test program brings up the multi-host topology of
scripts/netns_cluster.py in a private temp dir, injects faults, checks data
written and read back through the two client mounts, and brings the
cluster down again. Whatever happens (assertion, exception, SIGTERM from
ctest, SIGALRM near ctest's timeout) the cluster is brought down and every
namespace, veth, bridge and route it made is removed; the last checks
assert that none is left, that every role stopped on SIGTERM and that no
log holds a sanitizer report.

A machine that cannot create network namespaces FAILS these tests with the
reason (they are not skipped): a CI runner without them would otherwise
report HA as tested when it was not. The only skip (77) is a missing
/dev/fuse or etcd binary, the same rule as the other integration tests.
"""
import atexit
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("CFS_SRC", os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRC, "scripts"))
import netns_cluster  # noqa: E402

HARD_TIMEOUT_S = 170   # ctest TIMEOUT is 180: bring the cluster down first


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


class Failed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failed(msg)


def start(tag):
    """Brings up the cluster; returns it. Exits 77 / 1 as the module doc says."""
    if not os.path.exists("/dev/fuse"):
        print("skip: /dev/fuse is missing", file=sys.stderr)
        sys.exit(77)
    if not os.access(netns_cluster.ETCD_BIN, os.X_OK):
        print("skip: %s is missing (etcd-server)" % netns_cluster.ETCD_BIN, file=sys.stderr)
        sys.exit(77)
    try:
        netns_cluster.check_environment()
    except netns_cluster.Error as e:
        print("FAIL: this machine cannot run the multi-host tests: %s" % e, file=sys.stderr)
        sys.exit(1)
    binp = os.environ.get("CFS_BIN") or os.path.join(SRC, "build", "chainfs")
    d = tempfile.mkdtemp(prefix="cfs-%s-" % tag)
    os.chmod(d, 0o755)
    c = netns_cluster.Cluster(os.path.join(d, "c"), binp, log=log)
    c.tmp = d

    def bring_down(*_):
        if c.st.get("netns"):
            log("bringing the cluster down")
            c.down()
        if not os.environ.get("CFS_KEEP_TMP") and getattr(c, "passed", False):
            shutil.rmtree(d, ignore_errors=True)

    def on_signal(sig, _):
        log("signal %d: stopping" % sig)
        bring_down()
        os._exit(1)
    atexit.register(bring_down)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(HARD_TIMEOUT_S)
    t0 = time.time()
    c.up()
    log("cluster %s up in %.1f s (%s)" % (c.st["id"], time.time() - t0, c.dir))
    return c


def finish(c):
    """Brings the cluster down and asserts nothing of it is left."""
    ids = c.st["id"]
    c.down()
    check(not c.killed, "stopped only by SIGKILL after 10 s of SIGTERM: %s" % c.killed)
    bad = []
    for f in sorted(os.listdir(os.path.join(c.dir, "logs"))):
        with open(os.path.join(c.dir, "logs", f), errors="replace") as fh:
            if any("Sanitizer" in line or "runtime error:" in line for line in fh):
                bad.append(f)
    check(not bad, "sanitizer reports in %s" % bad)
    ns, links = c.leftovers()
    mine = [n for n in ns + links if ids in n]
    check(not mine, "left after down: %s" % mine)
    for m in (c.mnt("client1"), c.mnt("client2")):
        check(not c.mounted(m), "still mounted after down: " + m)
    c.passed = True


def run(tag, body):
    """main(): start, BODY(c), finish; exit status 0 only when all held."""
    c = start(tag)
    try:
        body(c)
        finish(c)
    except Failed as e:
        log("FAIL: %s (logs in %s)" % (e, c.dir))
        c.down()
        return 1
    except Exception as e:  # noqa: BLE001 - report any error as a failure
        log("FAIL: %s: %s (logs in %s)" % (type(e).__name__, e, c.dir))
        c.down()
        return 1
    log("PASS")
    return 0


# ---------------------------------------------------------------- data

def content(name, size):
    """Self-describing bytes for file NAME: a seed from its name."""
    rnd = random.Random(zlib.crc32(name.encode()))
    return rnd.randbytes(size)


def write_file(path, data):
    """create + write + fsync + close; raises OSError."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        off = 0
        while off < len(data):
            off += os.write(fd, data[off:off + (1 << 20)])
        os.fsync(fd)
    finally:
        os.close(fd)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def verify(files, mnts):
    """Every (rel -> bytes) of FILES reads back equal through every mount."""
    bad = []
    for m in mnts:
        for rel, data in sorted(files.items()):
            try:
                got = read_file(os.path.join(m, rel))
            except OSError as e:
                bad.append("%s/%s: %s" % (m, rel, e))
                continue
            if got != data:
                bad.append("%s/%s: %d bytes read, %d written, equal prefix %d" % (
                    m, rel, len(got), len(data),
                    next((i for i in range(min(len(got), len(data))) if got[i] != data[i]),
                         min(len(got), len(data)))))
    check(not bad, "%d bad reads: %s" % (len(bad), "; ".join(bad[:5])))


class Writer:
    """Writes files of SIZE bytes one after another (fsync each) and records
    the acknowledged ones and the longest gap between two acknowledgements."""

    def __init__(self, mnt, prefix, size=256 << 10):
        self.mnt, self.prefix, self.size = mnt, prefix, size
        self.acked = {}
        self.errors = []
        self.n = 0
        self.last_ok = time.time()
        self.worst_gap = 0.0

    def step(self):
        rel = "%s-%05d" % (self.prefix, self.n)
        self.n += 1
        data = content(rel, self.size)
        try:
            write_file(os.path.join(self.mnt, rel), data)
        except OSError as e:
            self.errors.append("%s: %s" % (rel, e))
            return False
        now = time.time()
        self.worst_gap = max(self.worst_gap, now - self.last_ok)
        self.last_ok = now
        self.acked[rel] = data
        return True

    def start(self):
        """Writes in a background thread until stop()."""
        self.stopping = False

        def loop():
            while not self.stopping:
                if not self.step():
                    time.sleep(0.1)
        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()
        return self

    def stop(self, timeout=90):
        self.stopping = True
        self.thread.join(timeout)
        check(not self.thread.is_alive(), "%s: a write hung for %d s" % (self.prefix, timeout))

    def run_for(self, seconds, until=None):
        end = time.time() + seconds
        while time.time() < end and not (until and until()):
            self.step()


def wait_serving(c, timeout=60):
    t0 = time.time()
    c.wait(c.all_serving, timeout, "every chain member serving")
    return time.time() - t0


def log_times(path, pattern):
    """Timestamps (epoch s) of the lines of log PATH matching PATTERN."""
    out = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if re.search(pattern, line):
                    out.append(parse_ts(line.split()[0]))
    except OSError:
        pass
    return out


def parse_ts(ts):
    # 2026-12-02T20:39:21.717Z
    t = time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")
    import calendar
    return calendar.timegm(t) + float("0" + ts[19:-1])
