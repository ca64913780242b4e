#!/usr/bin/python3
"""test_py_diskfull.py - a full disk through a real cluster (issue 16, the
disk-full rule of docs/operations.md).

Every storage target of a `chainfs up` cluster sits on its own small ext4
file system (a loop-mounted image, made before `up`). The test writes
1 MiB files through the mount until the cluster is full and checks:
  - the failing write (or its fsync/close) reports ENOSPC, never EIO or a
    network errno;
  - every file acknowledged before is read back byte for byte;
  - every chain member is still serving, and the chain versions moved by
    at most a small bound (no fence/resync loop: it once went to 498);
  - after deleting half of the files, writes succeed again (the freed
    chunks are given back) and read back right.
First, one replica's disk filled by something else (a fill file, on an
empty cluster): writes go on over the other replicas (the replica fences
itself: a real divergence), the chain versions stay within a bound (it
rejoins only after a backoff, no flapping), and once the fill file is
removed every member is serving again and every file reads back right.
Needs root (mount -o loop) and mkfs.ext4; exits 77 without them or FUSE.
"""
import errno
import os
import re
import shutil
import subprocess
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cfs_cluster  # noqa: E402

IMG_MB = 40
FILE = 1 << 20
MAX_FILES = 400            # far beyond what 2 chains x ~30 MiB hold
VERSION_BOUND = 6          # chain version bumps allowed over the whole test


def data_of(i):
    seed = zlib.crc32(b"diskfull %d" % i).to_bytes(4, "little")
    return (seed * (FILE // 4))


def admin(c, *args):
    conf = dict(l.split(" = ", 1) for l in open(os.path.join(c.data, "cluster.conf")).read()
                .splitlines() if " = " in l)
    r = subprocess.run([cfs_cluster.CFS_BIN, "admin", *args, "--mgmtd",
                        "127.0.0.1:" + conf["mgmtd_port"], "--cluster-id", conf["cluster_id"],
                        "--secret-file", os.path.join(c.data, "secret")],
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


def chain_versions(c):
    rc, out = admin(c, "list-chains")
    assert rc == 0, out
    vers = [int(m.group(2)) for m in re.finditer(r"^(\d+)\s+(\d+)\s", out, re.M)]
    assert vers, "no chain in:\n" + out
    return out, sum(vers)


def all_serving(out):
    return "(serving)" in out and not any(
        s in out for s in ("(offline)", "(syncing)", "(waiting)", "(lastsrv)"))


def write_file(path, data):
    """0, or the errno of the first failing call (write, fsync or close)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as e:
        return e.errno
    err = 0
    try:
        os.write(fd, data)
        os.fsync(fd)
    except OSError as e:
        err = e.errno
    try:
        os.close(fd)
    except OSError as e:
        err = err or e.errno
    return err


def target_dir(c, tid):
    for s in (1, 2, 3):
        for t in (1, 2):
            d = os.path.join(c.data, "storage%d" % s, "target%d" % t)
            with open(os.path.join(d, "node_id")) as f:
                if int(f.read()) * 1000 + t == tid:
                    return d
    raise AssertionError("no directory holds target %d" % tid)


def wait_serving(c, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        rc, out = admin(c, "list-chains")
        if rc == 0 and all_serving(out):
            return time.time()
        time.sleep(0.5)
    raise AssertionError("not every member serving after %d s:\n%s" % (timeout, out))


def replica_filled(c):
    out, v0 = chain_versions(c)
    first = re.search(r"^\d+\s+\d+\s+(.*)$", out, re.M).group(1)
    tail = int(re.findall(r"(\d+)\(serving\)", first)[-1])
    d = target_dir(c, tail)
    fill = os.path.join(d, "fill.bin")
    with open(fill, "ab") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            pass
    print("filled target %d (%s) with %d MiB" % (tail, d, os.path.getsize(fill) >> 20))
    rd = os.path.join(c.mnt, "replica")
    os.mkdir(rd)
    t0 = time.time()
    for i in range(12):
        err = write_file(os.path.join(rd, "r%d" % i), data_of(40000 + i))
        assert err == 0, "r%d: %s with one replica full" % (i, errno.errorcode.get(err, err))
        time.sleep(1)
    out1, v1 = chain_versions(c)
    print("12 writes in %.1f s with target %d full; chains:\n%s" % (time.time() - t0, tail, out1))
    assert v1 - v0 <= 10, "chain versions moved %d in 12 s (flapping)" % (v1 - v0)
    os.unlink(fill)
    t1 = time.time()
    t2 = wait_serving(c, 90)
    print("every member serving %.1f s after the fill file went" % (t2 - t1))
    for i in range(12):
        with open(os.path.join(rd, "r%d" % i), "rb") as f:
            assert f.read() == data_of(40000 + i), "r%d reads back wrong" % i
        os.unlink(os.path.join(rd, "r%d" % i))
    time.sleep(3)  # the removals reach the targets


def main():
    if not os.path.exists("/dev/fuse"):
        print("skip: /dev/fuse is missing")
        return 77
    if os.geteuid() != 0 or not shutil.which("mkfs.ext4"):
        print("skip: needs root and mkfs.ext4 (loop-mounted targets)")
        return 77
    c = cfs_cluster.Cluster("diskfull")
    loops = []
    status = 1
    try:
        for s in (1, 2, 3):
            for t in (1, 2):
                d = os.path.join(c.data, "storage%d" % s, "target%d" % t)
                os.makedirs(d)
                img = d + ".img"
                with open(img, "wb") as f:
                    f.truncate(IMG_MB << 20)
                subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", img], check=True)
                r = subprocess.run(["mount", "-o", "loop", img, d], capture_output=True, text=True)
                if r.returncode:
                    print("skip: cannot loop-mount (%s)" % r.stderr.strip())
                    return 77
                loops.append(d)
                shutil.rmtree(os.path.join(d, "lost+found"), ignore_errors=True)
        c.up()
        replica_filled(c)
        out0, v0 = chain_versions(c)
        print("chains before:\n" + out0)
        d = os.path.join(c.mnt, "full")
        os.mkdir(d)
        written, failed = [], None
        t0 = time.time()
        for i in range(MAX_FILES):
            err = write_file(os.path.join(d, "f%d" % i), data_of(i))
            if err:
                failed = (i, err)
                break
            written.append(i)
        print("wrote %d files of 1 MiB in %.1f s, then %s" % (
            len(written), time.time() - t0,
            "errno %s" % errno.errorcode.get(failed[1], failed[1]) if failed else "no error"))
        assert failed, "the cluster never filled up"
        assert failed[1] == errno.ENOSPC, "full disk gave %s, not ENOSPC" % \
            errno.errorcode.get(failed[1], failed[1])
        assert len(written) >= 10, "full after only %d MiB" % len(written)
        # A few more tries: they fail with ENOSPC too, and change nothing.
        for k in range(3):
            err = write_file(os.path.join(d, "again%d" % k), data_of(10000 + k))
            assert err in (0, errno.ENOSPC), errno.errorcode.get(err, err)
        for i in written:
            with open(os.path.join(d, "f%d" % i), "rb") as f:
                assert f.read() == data_of(i), "f%d reads back wrong while full" % i
        time.sleep(2)
        out1, v1 = chain_versions(c)
        print("chains when full:\n" + out1)
        assert all_serving(out1), "a chain member stopped serving on a full disk"
        assert v1 - v0 <= VERSION_BOUND, "chain versions moved %d (bound %d)" % (
            v1 - v0, VERSION_BOUND)
        # Free half, then writes must work again (chunk removal gives the
        # blocks back; it may take a moment).
        for i in written[::2]:
            os.unlink(os.path.join(d, "f%d" % i))
        for k in range(3):
            try:
                os.unlink(os.path.join(d, "again%d" % k))
            except FileNotFoundError:
                pass
        ok_after = None
        deadline = time.time() + 60
        while time.time() < deadline:
            err = write_file(os.path.join(d, "after"), data_of(20000))
            if err == 0:
                ok_after = time.time()
                break
            assert err == errno.ENOSPC, errno.errorcode.get(err, err)
            time.sleep(1)
        assert ok_after, "writes still fail 60 s after freeing half the space"
        # GC gives the freed chunks back in batches (it waits briefly after
        # each unlink to collect one), so the space returns over a few
        # seconds: an ENOSPC here is retried until a deadline.
        more = 0
        deadline = time.time() + 30
        for k in range(len(written) // 4):
            err = write_file(os.path.join(d, "more%d" % k), data_of(30000 + k))
            while err == errno.ENOSPC and time.time() < deadline:
                time.sleep(0.5)
                err = write_file(os.path.join(d, "more%d" % k), data_of(30000 + k))
            if err:
                assert err == errno.ENOSPC, errno.errorcode.get(err, err)
                break
            more += 1
        print("after freeing %d MiB: writes work again; %d more files fit" % (
            len(written[::2]), more))
        assert more >= len(written) // 8, "only %d MiB fit after freeing" % more
        with open(os.path.join(d, "after"), "rb") as f:
            assert f.read() == data_of(20000)
        for k in range(more):
            with open(os.path.join(d, "more%d" % k), "rb") as f:
                assert f.read() == data_of(30000 + k), "more%d reads back wrong" % k
        for i in written[1::2]:
            with open(os.path.join(d, "f%d" % i), "rb") as f:
                assert f.read() == data_of(i), "f%d reads back wrong after refill" % i
        out2, v2 = chain_versions(c)
        print("chains at the end:\n" + out2)
        assert all_serving(out2)
        assert v2 - v0 <= VERSION_BOUND, "chain versions moved %d (bound %d)" % (
            v2 - v0, VERSION_BOUND)
        print("ok: chain versions moved %d" % (v2 - v0))
        status = 0
    finally:
        problems = c.down() if c.is_up else []
        for p in problems:
            print("down: " + p)
            status = 1
        for d in loops:
            subprocess.run(["umount", "-l", d], capture_output=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
