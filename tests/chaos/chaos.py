#!/usr/bin/python3
"""chaos.py - fault harness for ChainFS on a `chainfs up` cluster (issue 16).

    chaos.py --bin build/chainfs [--cycles N | --minutes T | --each] [--seed S]
             [--faults kill-storage,kill-meta,...] [--dir D] [--keep]

Two mounts: the one `chainfs up` starts (mnt) and a second `chainfs mount`
process the harness runs itself (mnt2), so the workload crosses clients:
writer0 and churn work on mnt, writer1 on mnt2, and the checks read every
file through mnt (what one client acknowledged, the other must see).

What runs (each worker is its own process: a process that holds files open
on the mount must not fork+exec `chainfs up` while meta is down, because
exec's close of those descriptors is a FUSE flush that waits for meta):

  writer x2   creates files of 1..48 self-describing 4 KiB blocks and
              overwrites block ranges of its own files (beyond --max-files
              it removes its oldest, logged like any operation); each block carries
              "CHAOS|name|index|gen|" and a CRC32 of itself. An operation is
              logged as intended before it starts and as acknowledged only
              after write + fsync (+ close) returned. Log lines are fsynced
              to local disk (outside the mount).
  churn       namespace changes: mkdir, create, rename, link, unlink, each
              acknowledged in its own log after it returned.
  probe       a small create + write + fsync + read every 100 ms; the gaps
              between its successes measure unavailability.

The controller (seeded: the same seed gives the same fault sequence) runs
cycles: inject one fault, let it act 1..4 s, recover (`chainfs up` again for
kill -9; SIGCONT for SIGSTOP), wait until every chain member is serving and
the probe succeeds, pause the workers, and check everything acknowledged so
far: each acknowledged file's every block parses, has a valid CRC, the right
name and index, and a generation at least the acknowledged one (a newer one
only if it was intended); every acknowledged namespace change holds. Then
the workers resume.

Faults: kill-storage, kill-meta, kill-mgmtd, kill-mount (kill -9 of one
role, then `chainfs up`), kill-mount2 (kill -9 of the second mount, then
a lazy unmount and a new mount process), stop-storage, stop-meta (SIGSTOP for 1..4 s, then
SIGCONT), corrupt (8 bytes flipped in a chunk data file block found by its
CHAOS header).

Output: cycles, faults of each kind, acknowledged writes and namespace
changes checked, "lost: N / corrupted: N" (nonzero fails, exit 1), worst
unavailability window per fault kind, client-visible errors (errno names)
per fault kind, and `chainfs fsck` of the stopped cluster at the end (every
chunk on three agreeing replicas, no orphan, no dangling entry, link counts
right). Exit 0 only when lost and corrupted are both 0, every cycle
recovered and fsck is clean.
"""
import argparse
import collections
import concurrent.futures
import errno
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib

BLOCK = 4096
HDR = 64


# ---------------------------------------------------------------- blocks

def block_bytes(name, idx, gen):
    head = ("CHAOS|%s|%d|%d|" % (name, idx, gen)).encode()
    assert len(head) <= HDR
    head = head.ljust(HDR, b".")
    seed = hashlib.blake2b(head, digest_size=32).digest()
    body = (seed * ((BLOCK - HDR - 4) // 32 + 1))[: BLOCK - HDR - 4]
    data = head + body
    return data + zlib.crc32(data).to_bytes(4, "little")


def parse_block(b):
    """(name, idx, gen) of a valid block, else None."""
    if len(b) != BLOCK or not b.startswith(b"CHAOS|"):
        return None
    if zlib.crc32(b[:-4]).to_bytes(4, "little") != b[-4:]:
        return None
    try:
        _, name, idx, gen, _ = b[:HDR].decode().split("|", 4)
        return name, int(idx), int(gen)
    except ValueError:
        return None


# ---------------------------------------------------------------- workers

class Log:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)

    def put(self, *fields):
        self.f.write(" ".join(str(x) for x in fields) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())


def wait_unpaused(ctl, me):
    pause = os.path.join(ctl, "pause")
    mark = os.path.join(ctl, "paused-" + me)
    while os.path.exists(pause):
        if not os.path.exists(mark):
            open(mark, "w").close()
        if os.path.exists(os.path.join(ctl, "stop")):
            return False
        time.sleep(0.05)
    if os.path.exists(mark):
        os.unlink(mark)
    return not os.path.exists(os.path.join(ctl, "stop"))


def errname(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if isinstance(e, OSError) else type(e).__name__


def writer(args):
    rnd = random.Random(args.seed)
    me = "writer%d" % args.id
    log = Log(os.path.join(args.ctl, me + ".log"))
    d = os.path.join(args.mnt, me)
    os.makedirs(d, exist_ok=True)
    files = {}  # name -> nblocks (acknowledged files only)
    n = 0
    while wait_unpaused(args.ctl, me):
        try:
            if len(files) > args.max_files and rnd.random() < 0.6:
                # retire the oldest file, so a long run's checks stay bounded
                name = min(files, key=lambda x: int(x.rsplit("f", 1)[1]))
                log.put("R", name)
                os.unlink(os.path.join(d, name))
                log.put("X", name)
                del files[name]
            elif not files or rnd.random() < 0.5:
                name = "%s-f%d" % (me, n)
                n += 1
                nb = rnd.randint(1, 48)
                log.put("I", name, 0, nb, 1)
                fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    os.write(fd, b"".join(block_bytes(name, i, 1) for i in range(nb)))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                log.put("A", name, 0, nb, 1)
                files[name] = (nb, 1)
            else:
                name = rnd.choice(sorted(files))
                nb, gen = files[name]
                first = rnd.randrange(nb)
                cnt = rnd.randint(1, nb - first)
                gen += 1
                log.put("I", name, first, cnt, gen)
                fd = os.open(os.path.join(d, name), os.O_WRONLY)
                try:
                    os.pwrite(fd, b"".join(block_bytes(name, i, gen) for i in range(first, first + cnt)),
                              first * BLOCK)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                log.put("A", name, first, cnt, gen)
                files[name] = (nb, gen)
        except OSError as e:
            log.put("E", "%.3f" % time.time(), errname(e))
            time.sleep(0.2)


def appender(args):
    """Keeps one file open for writing and appends a block + fsync at a time
    (acknowledged after the fsync), so a fault always finds a file open for
    writing on this mount (issue 16: a client host cut off while it holds
    files open). 16..48 blocks per file, then close and a new file; on an
    error the descriptor is dropped (its session may be gone) and a new file
    begins. Its log has the writers' format, so check_writers checks it."""
    rnd = random.Random(args.seed)
    me = "writer%d" % args.id
    log = Log(os.path.join(args.ctl, me + ".log"))
    d = os.path.join(args.mnt, me)
    os.makedirs(d, exist_ok=True)
    live = []
    n = 0
    fd, name, nb, want = -1, None, 0, 0
    while wait_unpaused(args.ctl, me):
        try:
            if fd < 0:
                if len(live) > args.max_files // 2:
                    old = live.pop(0)
                    log.put("R", old)
                    os.unlink(os.path.join(d, old))
                    log.put("X", old)
                name = "%s-f%d" % (me, n)
                n += 1
                nb, want = 0, rnd.randint(16, 48)
                fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                live.append(name)
            log.put("I", name, nb, 1, 1)
            os.pwrite(fd, block_bytes(name, nb, 1), nb * BLOCK)
            os.fsync(fd)
            log.put("A", name, nb, 1, 1)
            nb += 1
            if nb >= want:
                f, fd = fd, -1
                os.close(f)
            time.sleep(0.05)
        except OSError as e:
            log.put("E", "%.3f" % time.time(), errname(e))
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
                fd = -1
            time.sleep(0.2)
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


def churn(args):
    rnd = random.Random(args.seed)
    me = "churn"
    log = Log(os.path.join(args.ctl, me + ".log"))
    base = os.path.join(args.mnt, me)
    os.makedirs(base, exist_ok=True)
    n = 0
    live = []  # relative paths of regular files we created and believe exist
    while wait_unpaused(args.ctl, me):
        op = rnd.choice(["mkdir", "create", "create", "rename", "link", "unlink"])
        try:
            if op == "mkdir" or not live:
                rel = "d%d" % n
                n += 1
                os.mkdir(os.path.join(base, rel))
                log.put("A", "mkdir", rel)
                rel2 = rel + "/f"
                open(os.path.join(base, rel2), "w").close()
                log.put("A", "create", rel2)
                live.append(rel2)
            elif op == "create":
                rel = "c%d" % n
                n += 1
                open(os.path.join(base, rel), "w").close()
                log.put("A", "create", rel)
                live.append(rel)
            elif op == "rename":
                src = rnd.choice(live)
                dst = "r%d" % n
                n += 1
                live.remove(src)  # uncertain until acknowledged
                log.put("I", "rename", src, dst)
                os.rename(os.path.join(base, src), os.path.join(base, dst))
                log.put("A", "rename", src, dst)
                live.append(dst)
            elif op == "link":
                src = rnd.choice(live)
                dst = "l%d" % n
                n += 1
                os.link(os.path.join(base, src), os.path.join(base, dst))
                log.put("A", "link", src, dst)
                live.append(dst)
            else:
                victim = rnd.choice(live)
                live.remove(victim)
                log.put("I", "unlink", victim)
                os.unlink(os.path.join(base, victim))
                log.put("A", "unlink", victim)
        except OSError as e:
            log.put("E", "%.3f" % time.time(), errname(e))
            time.sleep(0.2)


def probe(args):
    me = "probe"
    log = Log(os.path.join(args.ctl, me + ".log"))
    d = os.path.join(args.mnt, "probe")
    os.makedirs(d, exist_ok=True)
    i = 0
    while not os.path.exists(os.path.join(args.ctl, "stop")):
        if os.path.exists(os.path.join(args.ctl, "pause-probe")):
            # the checks' reads and lookups queue behind its creates and
            # fsyncs (a loaded machine: 10x slower checks); it has nothing
            # to measure between a cycle's recovery and the next fault
            mark = os.path.join(args.ctl, "paused-probe")
            if not os.path.exists(mark):
                open(mark, "w").close()
            time.sleep(0.05)
            continue
        if os.path.exists(os.path.join(args.ctl, "paused-probe")):
            os.unlink(os.path.join(args.ctl, "paused-probe"))
        p = os.path.join(d, "p%d" % (i % 50))
        i += 1
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, b"probe %d" % i)
                os.fsync(fd)
            finally:
                os.close(fd)
            with open(p, "rb") as f:
                if f.read() != b"probe %d" % i:
                    raise OSError(errno.EILSEQ, "probe mismatch")
            log.put("S", "%.3f" % time.time())
        except OSError as e:
            log.put("E", "%.3f" % time.time(), errname(e))
        time.sleep(0.1)


# ---------------------------------------------------------------- checks

def read_log(path):
    try:
        with open(path) as f:
            return [l.split() for l in f if l.endswith("\n")]
    except FileNotFoundError:
        return []


class WriterLog:
    """What one writer's log says: acked[name] = [gen per block],
    intended[(name, idx)] = gens ever intended, extent[name] = blocks any
    write intended, retiring / retired names."""

    def __init__(self, ctl, me, lines=None):
        self.me = me
        self.acked = {}
        self.intended = collections.defaultdict(set)
        self.extent = collections.Counter()
        self.retiring, self.retired = set(), set()
        if lines is None:
            lines = read_log(os.path.join(ctl, me + ".log"))
        for f in lines:
            if f[0] == "R":
                self.retiring.add(f[1])
            elif f[0] == "X":
                self.retired.add(f[1])
            elif f[0] in ("I", "A"):
                name, first, cnt, gen = f[1], int(f[2]), int(f[3]), int(f[4])
                self.extent[name] = max(self.extent[name], first + cnt)
                for i in range(first, first + cnt):
                    if f[0] == "I":
                        self.intended[(name, i)].add(gen)
                    else:
                        g = self.acked.setdefault(name, [])
                        while len(g) <= i:
                            g.append(0)
                        g[i] = gen

    def live(self):
        """{(name, idx, gen): me} of every acknowledged block whose stored
        generation is certain (no newer write was intended)."""
        out = {}
        for name, gens in self.acked.items():
            if name in self.retiring:
                continue
            for i, g in enumerate(gens):
                if g and max(self.intended[(name, i)], default=g) == g:
                    out[(name, i, g)] = self.me
        return out

    def check_file(self, mnt, name):
        """Reads NAME through MNT: (blocks, lost, corrupted, problems)."""
        gens = self.acked[name]
        path = os.path.join(mnt, self.me, name)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as e:
            return 0, len(gens), 0, ["%s: %s" % (path, errname(e))]
        lost = corrupted = blocks = 0
        problems = []
        if len(data) > self.extent[name] * BLOCK:
            # longer than any write made it: a wrong length (a pruned
            # session's length sync, say) is as bad as a wrong byte
            corrupted += 1
            problems.append("%s: %d bytes, longer than the %d blocks ever written" %
                            (path, len(data), self.extent[name]))
        for i, g in enumerate(gens):
            blocks += 1
            b = data[i * BLOCK:(i + 1) * BLOCK]
            if len(b) < BLOCK:
                lost += 1
                problems.append("%s block %d missing (file %d bytes)" % (path, i, len(data)))
                continue
            p = parse_block(b)
            if p is None or p[0] != name or p[1] != i:
                corrupted += 1
                problems.append("%s block %d corrupt" % (path, i))
            elif p[2] < g:
                lost += 1
                problems.append("%s block %d gen %d < acknowledged %d" % (path, i, p[2], g))
            elif p[2] > g and p[2] not in self.intended[(name, i)]:
                corrupted += 1
                problems.append("%s block %d gen %d never written" % (path, i, p[2]))
        return blocks, lost, corrupted, problems


def check_writers(ctl, mnt, nwriters):
    """(files, blocks checked, lost, corrupted, problems)."""
    lost = corrupted = blocks = 0
    problems = []
    nfiles = 0
    for w in range(nwriters):
        wl = WriterLog(ctl, "writer%d" % w)
        for name in wl.retired:
            if os.path.lexists(os.path.join(mnt, wl.me, name)):
                lost += 1
                problems.append("%s/%s: removal acknowledged, still there" % (wl.me, name))
        for name in wl.acked:
            if name in wl.retiring:
                continue
            nfiles += 1
            b, l, c, p = wl.check_file(mnt, name)
            blocks += b
            lost += l
            corrupted += c
            problems += p
    return nfiles, blocks, lost, corrupted, problems


HEAD_RE = re.compile(rb"CHAOS\|([A-Za-z0-9_-]+)\|(\d+)\|(\d+)\|")


def flip_live_block(files, live, rnd, nbytes=8):
    """Flips NBYTES inside every stored copy, in FILES (one replica's chunk
    data files), of one acknowledged block of LIVE (WriterLog.live()):
    copy-on-write leaves released copies of a block beside the live one,
    and only this way is the live copy certainly hit. Returns (name, idx,
    gen, copies) or None when FILES hold no block of LIVE."""
    where = collections.defaultdict(list)
    for path in files:
        with open(path, "rb") as f:
            buf = f.read()
        for m in HEAD_RE.finditer(buf):
            key = (m.group(1).decode(), int(m.group(2)), int(m.group(3)))
            if key in live:
                where[key].append((path, m.start()))
    if not where:
        return None
    key = rnd.choice(sorted(where))
    for path, off in where[key]:
        at = off + HDR + rnd.randrange(0, BLOCK - HDR - nbytes)
        with open(path, "r+b") as f:
            f.seek(at)
            b = f.read(nbytes)
            f.seek(at)
            f.write(bytes(x ^ 0x5A for x in b))
            f.flush()
            os.fsync(f.fileno())
    return key + (len(where[key]),)


def check_churn(ctl, mnt):
    """(namespace changes checked, lost, problems)."""
    checked, present, absent = churn_expect(read_log(os.path.join(ctl, "churn.log")))
    lost, problems = check_names(mnt, present, absent)
    return checked, lost, problems


def check_names(mnt, present, absent):
    """Looks up PRESENT (must exist) and ABSENT (must not) relative names
    under MNT/churn: (lost, problems)."""
    base = os.path.join(mnt, "churn")
    lost = 0
    problems = []
    for rel in sorted(present):
        if not os.path.lexists(os.path.join(base, rel)):
            lost += 1
            problems.append("churn: %s acknowledged but missing" % rel)
    for rel in sorted(absent):
        if os.path.lexists(os.path.join(base, rel)):
            lost += 1
            problems.append("churn: %s acknowledged removed but present" % rel)
    return lost, problems


def churn_expect(lines):
    """What the churn log LINES make certain: (acknowledged changes, names
    that must exist, names that must not). A name an unacknowledged
    operation touched is in neither."""
    exists, gone = set(), set()
    uncertain = set()
    checked = 0
    pending = None
    for f in lines:
        if f[0] == "I":
            pending = f
            if f[1] == "rename":
                uncertain.update([f[2], f[3]])
            else:
                uncertain.add(f[2])
            continue
        if f[0] != "A":
            continue
        checked += 1
        op = f[1]
        if op in ("mkdir", "create"):
            exists.add(f[2])
        elif op == "rename":
            exists.discard(f[2])
            gone.add(f[2])
            exists.add(f[3])
            uncertain.discard(f[2])
            uncertain.discard(f[3])
        elif op == "link":
            exists.add(f[3])
        elif op == "unlink":
            exists.discard(f[2])
            gone.add(f[2])
            uncertain.discard(f[2])
        pending = None
    return checked, exists - uncertain, gone - exists - uncertain


class Checker:
    """The per-cycle check of a long run: everything acknowledged since the
    previous check, plus a seeded random sample of what was acknowledged
    before, so a cycle's check costs about the same in cycle 200 as in
    cycle 2 (a full check looks up every namespace name ever touched and
    every removed file through meta; a 157-cycle run's checks grew from 1 s
    to 118 s). check_all stays the full check: it runs at the end of a run
    and fails it on any loss.

    Each check reads every acknowledged file and looks up every name whose
    log got a line since the previous check (the workers are paused, so
    the logs are complete), then at most SAMPLE older live files, SAMPLE
    older churn names and SAMPLE // 4 older removed files, drawn by a
    random.Random(SEED). SAMPLE 0 checks everything every cycle."""

    def __init__(self, ctl, mnt, nwriters, sample, seed, threads=8):
        self.ctl, self.mnt, self.nwriters, self.sample = ctl, mnt, nwriters, sample
        self.threads = threads
        self.op_median, self.op_worst = 0.0, "-"
        self.rnd = random.Random(seed)
        self.done = collections.Counter()   # log name -> lines already covered
        self.totals = collections.Counter()  # over all checks of the run

    def _new(self, me):
        lines = read_log(os.path.join(self.ctl, me + ".log"))
        fresh = lines[self.done[me]:]
        self.done[me] = len(lines)
        return lines, fresh

    def _pick(self, pool, k):
        pool = sorted(pool)
        if self.sample <= 0 or len(pool) <= k:
            return pool
        return self.rnd.sample(pool, k)

    def _job(self, job):
        """One check, timed: (blocks, lost, corrupted, problems, seconds)."""
        t = time.time()
        r = self._job1(job)
        return r + (time.time() - t,)

    def _job1(self, job):
        """One check: (blocks, lost, corrupted, problems)."""
        kind, who, name = job
        if kind == "file":
            return who.check_file(self.mnt, name)
        if kind == "gone":
            if os.path.lexists(os.path.join(self.mnt, who, name)):
                return 0, 1, 0, ["%s/%s: removal acknowledged, still there" % (who, name)]
            return 0, 0, 0, []
        l, p = check_names(self.mnt, [name] if kind == "present" else [],
                           [name] if kind == "absent" else [])
        return 0, l, 0, p

    def check(self):
        """(figures, lost, corrupted, problems); figures: files, blocks,
        removed (files whose removal was checked), names (churn names
        looked up), changes (acknowledged namespace changes so far), and
        how many of the files / names were new since the last check. The
        reads and lookups run on THREADS threads: each waits on meta and
        storage far more than it computes, and on a loaded machine one at a
        time made a 300-file check take 20+ s."""
        fig = collections.Counter()
        logs, old_live, old_gone = {}, [], []
        for w in range(self.nwriters):
            me = "writer%d" % w
            lines, fresh = self._new(me)
            wl = WriterLog(self.ctl, me, lines)
            touched = {f[1] for f in fresh if f[0] in ("I", "A", "R", "X")}
            logs[me] = (wl, touched)
            old_live += [(me, n) for n in wl.acked if n not in wl.retiring and n not in touched]
            old_gone += [(me, n) for n in wl.retired if n not in touched]
        sample_live = set(self._pick(old_live, self.sample))
        sample_gone = set(self._pick(old_gone, max(1, self.sample // 4)))
        jobs = []
        for me, (wl, touched) in logs.items():
            for name in sorted(wl.retired):
                if name in touched or (me, name) in sample_gone:
                    fig["removed"] += 1
                    jobs.append(("gone", me, name))
            for name in sorted(wl.acked):
                if name in wl.retiring:
                    continue
                if name in touched:
                    fig["new_files"] += 1
                elif (me, name) not in sample_live:
                    continue
                fig["files"] += 1
                jobs.append(("file", wl, name))
        lines, fresh = self._new("churn")
        changes, present, absent = churn_expect(lines)
        touched = set()
        for f in fresh:
            if f[0] in ("I", "A"):
                touched.update(f[2:])
        old = [r for r in present | absent if r not in touched]
        pick = touched | set(self._pick(old, self.sample))
        jobs += [("present", None, r) for r in sorted(present & pick)]
        jobs += [("absent", None, r) for r in sorted(absent & pick)]
        fig["names"] = len(pick & (present | absent))
        fig["new_names"] = len(touched & (present | absent))
        fig["changes"] = changes
        lost = corrupted = 0
        problems = []
        times = []
        with concurrent.futures.ThreadPoolExecutor(self.threads) as ex:
            for job, (b, l, c, p, dt) in zip(jobs, ex.map(self._job, jobs)):
                fig["blocks"] += b
                lost += l
                corrupted += c
                problems += p
                times.append((dt, job[0], getattr(job[1], "me", job[1]) or "churn", job[2]))
        # where a slow check's time went: the median and the slowest single
        # read or lookup
        times.sort()
        self.op_median = times[len(times) // 2][0] if times else 0.0
        self.op_worst = "%.2f s %s %s/%s" % times[-1] if times else "-"
        self.totals.update(fig)
        self.totals["checks"] += 1
        return fig, lost, corrupted, problems


# ---------------------------------------------------------------- cluster

class Cluster:
    def __init__(self, binary, root):
        self.bin = binary
        self.root = root
        self.data = os.path.join(root, "data")
        self.mnt = os.path.join(root, "mnt")

    def up(self, timeout=180):
        with open(os.path.join(self.root, "up.out"), "a") as out:
            return subprocess.run([self.bin, "up", "--dir", self.data, "--mount", self.mnt],
                                  stdout=out, stderr=subprocess.STDOUT, timeout=timeout).returncode

    def down(self):
        subprocess.run([self.bin, "down", "--dir", self.data], timeout=120,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def conf(self, key):
        with open(os.path.join(self.data, "cluster.conf")) as f:
            for l in f:
                m = re.match(r"(\S+) = (.*)", l)
                if m and m.group(1) == key:
                    return m.group(2)
        return None

    def pid(self, role):
        """The role's running pid, or 0. The pid file holds "pid starttime"
        (cmd_up.c): a pid whose process has since died may belong to another
        test's server by now (ctest runs two tests at once), so a pid whose
        start time differs is never handed out for a signal."""
        try:
            with open(os.path.join(self.data, "pids", role + ".pid")) as f:
                pid, start = (int(x) for x in f.read().split()[:2])
            with open("/proc/%d/stat" % pid) as f:
                stat = f.read()
            if int(stat[stat.rindex(")") + 2:].split()[19]) != start:
                return 0
            return pid
        except (OSError, ValueError, IndexError):
            return 0

    def all_serving(self):
        try:
            r = subprocess.run([self.bin, "admin", "list-chains", "--mgmtd",
                                "127.0.0.1:" + self.conf("mgmtd_port"), "--cluster-id",
                                self.conf("cluster_id"), "--secret-file",
                                os.path.join(self.data, "secret")],
                               capture_output=True, text=True, timeout=20)
        except subprocess.TimeoutExpired:
            return False
        o = r.stdout
        return r.returncode == 0 and "(serving)" in o and not any(
            s in o for s in ("(offline)", "(syncing)", "(waiting)", "(lastsrv)"))

    def corrupt_one(self, rnd):
        """Flips 8 bytes inside one stored CHAOS block of one replica."""
        files = []
        for s in ("storage1", "storage2", "storage3"):
            for dp, _, fns in os.walk(os.path.join(self.data, s)):
                files += [os.path.join(dp, f) for f in fns
                          if not f.endswith(".mdb") and os.path.getsize(os.path.join(dp, f)) >= BLOCK]
        rnd.shuffle(files)
        for path in files:
            size = os.path.getsize(path)
            with open(path, "r+b") as f:
                for _ in range(8):
                    off = rnd.randrange(0, max(1, size - (1 << 20) + 1)) & ~(BLOCK - 1)
                    f.seek(off)
                    buf = f.read(1 << 20)
                    hits = [m.start() for m in re.finditer(rb"CHAOS\|", buf)]
                    if not hits:
                        continue
                    at = off + rnd.choice(hits) + 200
                    f.seek(at)
                    b = bytearray(f.read(8))
                    f.seek(at)
                    f.write(bytes(x ^ 0x5A for x in b))
                    f.flush()
                    os.fsync(f.fileno())
                    return "%s@%d" % (os.path.relpath(path, self.data), at)
        return None


class Mount2:
    """A second client: a `chainfs mount` process of the same cluster."""

    def __init__(self, cl):
        self.cl = cl
        self.mnt = os.path.join(cl.root, "mnt2")
        self.proc = None
        os.makedirs(self.mnt, exist_ok=True)

    def mounted(self):
        with open("/proc/mounts") as f:
            return any(l.split()[1] == self.mnt for l in f)

    def start(self, timeout=60):
        if self.mounted():  # a killed daemon leaves its mount behind
            subprocess.run(["fusermount3", "-u", "-z", self.mnt], stderr=subprocess.DEVNULL)
        cl = self.cl
        self.proc = subprocess.Popen(
            [cl.bin, "mount", "--mgmtd", "127.0.0.1:" + cl.conf("mgmtd_port"), "--cluster-id",
             cl.conf("cluster_id"), "--secret-file", os.path.join(cl.data, "secret"),
             "--log-file", os.path.join(cl.root, "mount2.log"), self.mnt],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(cl.root, "mount2.err"), "a"),
            start_new_session=True)
        end = time.time() + timeout
        while time.time() < end:
            if self.mounted() and os.path.isdir(os.path.join(self.mnt, ".")):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.1)
        return False

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.mounted():
            subprocess.run(["fusermount3", "-u", "-z", self.mnt], stderr=subprocess.DEVNULL)


def run_fsck(cl):
    """`chainfs fsck` of the stopped cluster: (clean, its output)."""
    r = subprocess.run([cl.bin, "fsck", "--dir", cl.data, "--log-level", "warn"],
                       capture_output=True, text=True, timeout=600)
    return r.returncode == 0, (r.stdout + r.stderr).strip()


# ---------------------------------------------------------------- controller

FAULTS = ["kill-storage", "kill-meta", "kill-mgmtd", "kill-mount", "kill-mount2", "stop-storage",
          "stop-meta", "corrupt"]


def spawn_worker(args, root, ctl, mnt, role, wid, seed):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", role, "--ctl", ctl,
           "--mnt", mnt, "--id", str(wid), "--seed", str(seed), "--max-files", str(args.max_files)]
    return subprocess.Popen(cmd, stdout=open(os.path.join(ctl, role + str(wid) + ".out"), "w"),
                            stderr=subprocess.STDOUT, close_fds=True, start_new_session=True)


def pause_workers(ctl, names, timeout=120):
    open(os.path.join(ctl, "pause"), "w").close()
    end = time.time() + timeout
    while time.time() < end:
        if all(os.path.exists(os.path.join(ctl, "paused-" + n)) for n in names):
            return True
        time.sleep(0.05)
    return False


def pause_probe(ctl, timeout=30):
    """Pauses the probe (the checks of a long run; see probe()); True once
    it is idle."""
    open(os.path.join(ctl, "pause-probe"), "w").close()
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(os.path.join(ctl, "paused-probe")):
            return True
        time.sleep(0.05)
    return False


def resume_probe(ctl):
    try:
        os.unlink(os.path.join(ctl, "pause-probe"))
    except FileNotFoundError:
        pass


def resume_workers(ctl):
    try:
        os.unlink(os.path.join(ctl, "pause"))
    except FileNotFoundError:
        pass


def last_probe_success(ctl):
    """The time of the probe's last success (0 if none in its log's last
    64 KiB): read from the end, since a long run's log is large and
    recovery polls this twice a second."""
    try:
        with open(os.path.join(ctl, "probe.log"), "rb") as f:
            f.seek(0, os.SEEK_END)
            at = max(0, f.tell() - 65536)
            f.seek(at)
            tail = f.read().decode(errors="replace").split("\n")[1 if at else 0:]
    except FileNotFoundError:
        return 0.0
    for l in reversed(tail):
        f = l.split()
        if len(f) == 2 and f[0] == "S":
            return float(f[1])
    return 0.0


def probe_gaps(ctl, start, end):
    """Longest stretch without a probe success inside [start, end]."""
    t = [float(f[1]) for f in read_log(os.path.join(ctl, "probe.log")) if f[0] == "S"]
    t = [x for x in t if start - 5 <= x <= end + 5]
    prev = start
    worst = 0.0
    for x in t:
        if x >= start:
            worst = max(worst, min(x, end) - max(prev, start))
        prev = x
    if prev < end:
        worst = max(worst, end - max(prev, start))
    return worst


def errors_between(ctl, names, start, end):
    c = collections.Counter()
    for n in names:
        for f in read_log(os.path.join(ctl, n + ".log")):
            if f[0] == "E" and start <= float(f[1]) <= end:
                c[f[2]] += 1
    return c


class Tally:
    """The per-fault-kind figures of a run (chaos.py and chaos_netns.py):
    cycles, recovery times (fault start to everything serving and the probe
    answering), the worst probe gap, and client-visible errors (errno names
    the workers logged) inside each cycle."""

    def __init__(self, ctl, names):
        self.ctl, self.names = ctl, list(names) + ["probe"]
        self.kinds = collections.Counter()
        self.rec = collections.defaultdict(list)
        self.worst = collections.defaultdict(float)
        self.errs = collections.defaultdict(collections.Counter)
        self.failed = 0       # cycles that did not recover (or pause)
        self.bad_checks = 0   # cycles whose check found a loss or corruption

    def record(self, kind, t0, t1, ok):
        self.kinds[kind] += 1
        self.rec[kind].append(t1 - t0)
        self.worst[kind] = max(self.worst[kind], probe_gaps(self.ctl, t0, t1))
        self.errs[kind].update(errors_between(self.ctl, self.names, t0, t1))
        if not ok:
            self.failed += 1

    def summary(self, cycles, checked, lost, corrupted):
        """Prints the summary; CHECKED = (files, blocks, namespace changes)."""
        print("  cycles run: %d (%s)" % (cycles, ", ".join(
            "%s %d" % kv for kv in sorted(self.kinds.items()))))
        print("  acknowledged: %d files / %d blocks, %d namespace changes checked" % checked)
        print("  lost: %d / corrupted: %d" % (lost, corrupted))
        print("  cycles that did not recover: %d; cycles whose check found a loss or "
              "corruption: %d" % (self.failed, self.bad_checks))
        print("  recovery (fault start to all serving + probe ok): median / worst, and the "
              "worst probe (create+write+fsync+read) gap:")
        for k in sorted(self.kinds):
            r = sorted(self.rec[k])
            print("    %-13s %5.1f s / %5.1f s   gap %5.1f s" % (k, r[len(r) // 2], r[-1],
                                                               self.worst[k]))
        print("  client-visible errors per fault kind:")
        for k in sorted(self.kinds):
            print("    %-13s %s" % (k, ", ".join("%s %d" % kv for kv in
                                                 sorted(self.errs[k].items())) or "none"))


def check_all(ctl, mnt, nwriters):
    """Every acknowledged block of NWRITERS writers and every acknowledged
    namespace change, through MNT: ((files, blocks, changes), lost,
    corrupted, problems)."""
    nfiles, nblocks, l1, c1, p1 = check_writers(ctl, mnt, nwriters)
    nns, l2, p2 = check_churn(ctl, mnt)
    return (nfiles, nblocks, nns), l1 + l2, c1, p1 + p2


def stop_workers(ctl, procs):
    open(os.path.join(ctl, "stop"), "w").close()
    resume_workers(ctl)
    for p in procs:
        try:
            p.wait(timeout=90)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_args(ap, cycles, max_files):
    """The options chaos.py and chaos_netns.py share."""
    ap.add_argument("--bin", default=os.environ.get("CFS_BIN", "build/chainfs"))
    ap.add_argument("--cycles", type=int, default=cycles)
    ap.add_argument("--minutes", type=float, default=0,
                    help="run for T minutes (a cycle started before the end finishes)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--faults", default="")
    ap.add_argument("--dir", default="")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--each", action="store_true",
                    help="one cycle per fault kind of --faults, in a seeded order (the CI pass)")
    ap.add_argument("--stop-on-failure", action="store_true")
    ap.add_argument("--max-files", type=int, default=max_files,
                    help="files each writer keeps; older ones are removed (bounds the checks)")


class Stopper:
    """SIGTERM or SIGINT (Ctrl-C) ends a run after its current cycle, with
    the final checks, fsck and cleanup as at a normal end (a second signal
    of either kind interrupts at once, still cleaning up)."""

    def __init__(self):
        self.asked = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handler)

    def _handler(self, signum, frame):
        if self.asked:
            raise KeyboardInterrupt
        self.asked = True
        print("chaos: signal %d: stopping after this cycle" % signum, flush=True)


def controller(args):
    rnd = random.Random(args.seed)
    root = args.dir or tempfile.mkdtemp(prefix="cfs-chaos-")
    os.makedirs(root, exist_ok=True)
    os.chmod(root, 0o755)
    cl = Cluster(os.path.abspath(args.bin), root)
    ctl = os.path.join(root, "ctl")
    os.makedirs(ctl, exist_ok=True)
    faults = args.faults.split(",") if args.faults else FAULTS
    print("chaos: seed %d, faults %s, dir %s" % (args.seed, ",".join(faults), root), flush=True)
    if cl.up() != 0:
        print("chaos: chainfs up failed (see %s/up.out)" % root)
        return 2
    m2 = Mount2(cl)
    if not m2.start():
        print("chaos: the second mount did not start (see %s/mount2.err)" % root)
        cl.down()
        return 2
    names = ["writer0", "writer1", "churn"]
    procs = [spawn_worker(args, root, ctl, cl.mnt if i == 0 else m2.mnt, "writer", i,
                          args.seed * 10 + i) for i in range(2)]
    procs.append(spawn_worker(args, root, ctl, cl.mnt, "churn", 0, args.seed * 10 + 7))
    procs.append(spawn_worker(args, root, ctl, cl.mnt, "probe", 0, 0))
    tally = Tally(ctl, names)
    stopper = Stopper()
    lost = corrupted = 0
    t_end = time.time() + args.minutes * 60 if args.minutes else None
    cycle = 0
    status = 0
    try:
        time.sleep(3)
        order = []
        while not stopper.asked and (
                (t_end and time.time() < t_end) or (not t_end and cycle < args.cycles) or
                (args.each and cycle < len(faults))):
            cycle += 1
            if args.each:  # every kind once, in a seeded order
                if cycle == 1:
                    order = list(faults)
                    rnd.shuffle(order)
                if cycle > len(order):
                    cycle -= 1
                    break
                kind = order[cycle - 1]
            else:
                kind = rnd.choice(faults)
            hold = rnd.uniform(1.0, 4.0)
            t0 = time.time()
            detail = ""
            if kind == "kill-mount2":
                detail = "mount2 pid %d" % m2.proc.pid
                m2.kill()
                time.sleep(hold)
                if not m2.start():
                    detail += " (restart failed, retried)"
                    time.sleep(1)
                    m2.start()
            elif kind.startswith("kill-"):
                role = {"kill-storage": rnd.choice(["storage1", "storage2", "storage3"]),
                        "kill-meta": "meta", "kill-mgmtd": "mgmtd", "kill-mount": "mount"}[kind]
                pid = cl.pid(role)
                detail = "%s pid %d" % (role, pid)
                if pid:
                    os.kill(pid, signal.SIGKILL)
                time.sleep(hold)
                rc = cl.up()
                if rc != 0:
                    detail += " (up failed %d, retried)" % rc
                    time.sleep(1)
                    rc = cl.up()
            elif kind.startswith("stop-"):
                role = rnd.choice(["storage1", "storage2", "storage3"]) if kind == "stop-storage" else "meta"
                pid = cl.pid(role)
                detail = "%s pid %d for %.1f s" % (role, pid, hold)
                if pid:  # os.kill(0, ...) would stop this whole process group
                    os.kill(pid, signal.SIGSTOP)
                time.sleep(hold)
                if pid:
                    os.kill(pid, signal.SIGCONT)
            else:
                detail = cl.corrupt_one(rnd) or "no CHAOS block found"
                time.sleep(hold)
            # recovery: every chain serving and the probe answering
            deadline = time.time() + 180
            ok = False
            while time.time() < deadline:
                if cl.all_serving() and m2.mounted():
                    last = [float(f[1]) for f in read_log(os.path.join(ctl, "probe.log")) if f[0] == "S"]
                    if last and last[-1] > time.time() - 2:
                        ok = True
                        break
                time.sleep(0.5)
            t1 = time.time()
            tally.record(kind, t0, t1, ok)
            if not pause_workers(ctl, names):
                print("chaos: workers did not pause", flush=True)
                tally.failed += 1
            (nfiles, nblocks, nns), lost, corrupted, probs = check_all(ctl, cl.mnt, 2)
            resume_workers(ctl)
            tally.bad_checks += 1 if lost or corrupted else 0
            print("cycle %3d %-12s %-40s recovered %s in %5.1f s; checked %d files / %d blocks, "
                  "%d namespace changes: lost %d corrupted %d" %
                  (cycle, kind, detail[:40], "yes" if ok else "NO", t1 - t0, nfiles, nblocks,
                   nns, lost, corrupted), flush=True)
            for p in probs[:10]:
                print("   ", p, flush=True)
            if lost or corrupted or not ok:
                status = 1
                if args.stop_on_failure:
                    break
    except KeyboardInterrupt:
        print("chaos: interrupted in cycle %d" % cycle, flush=True)
    finally:
        stop_workers(ctl, procs)
    # final full check after the workers stopped
    checked, lost, corrupted, probs = check_all(ctl, cl.mnt, 2)
    for p in probs[:20]:
        print("   ", p)
    print()
    print("chaos summary (seed %d)" % args.seed)
    tally.summary(cycle, checked, lost, corrupted)
    m2.stop()
    cl.down()
    clean, out = run_fsck(cl)
    print("  fsck of the stopped cluster: %s" % ("clean" if clean else "PROBLEMS"))
    for l in out.splitlines():
        if not clean or not l.startswith("20"):
            print("    " + l)
    if lost or corrupted or tally.failed or tally.bad_checks or not clean:
        status = 1
    if not args.keep and status == 0:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print("  kept: %s" % root)
    return status


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    run_args(ap, 10, 150)
    ap.add_argument("--worker", default="")
    ap.add_argument("--ctl", default="")
    ap.add_argument("--mnt", default="")
    ap.add_argument("--id", type=int, default=0)
    args = ap.parse_args()
    if args.worker:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        {"writer": writer, "churn": churn, "probe": probe, "appender": appender}[args.worker](args)
        return 0
    if not os.path.exists("/dev/fuse"):
        print("skip: /dev/fuse is missing")
        return 77
    return controller(args)


if __name__ == "__main__":
    sys.exit(main())
