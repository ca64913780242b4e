"""3FS-style Python code against a real ChainFS mount: this file uses only
hf3fs_fuse.io (and the standard library), the way code written for 3FS
does, and compares every byte that goes through a ring with the same bytes
through the normal file API on the FUSE mount.

The cluster (`chainfs up` in a temp dir, `chainfs down` at the end) comes
from cfs_cluster.run_tests. Chunks are 1 MiB and files stripe over two
chains, so ranges crossing a MiB boundary cross chunks and chains.
"""

import datetime
import errno
import hashlib
import os
import random
import tempfile
import unittest
from multiprocessing.shared_memory import SharedMemory

import cfs_cluster
from hf3fs_fuse.io import (
    deregister_fd,
    extract_mount_point,
    make_ioring,
    make_iovec,
    read_file,
    register_fd,
)

MiB = 1 << 20


def mnt():
    return cfs_cluster.cluster.mnt


def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)


class Case(unittest.TestCase):
    def setUp(self):
        self.mp = extract_mount_point(os.path.join(mnt(), "."))
        self.shm = SharedMemory(size=8 * MiB, create=True)
        self.addCleanup(self.shm.unlink)
        self.addCleanup(self.shm.close)
        self.fds = []
        self.iov = make_iovec(self.shm, self.mp)

    def tearDown(self):
        for fd in self.fds:
            deregister_fd(fd)
            os.close(fd)
        del self.iov

    def open_reg(self, path, flags=os.O_RDONLY, mode=0o644):
        fd = os.open(path, flags, mode)
        self.fds.append(fd)
        register_fd(fd)
        return fd

    def assertErrno(self, err, fn, *args, **kw):
        with self.assertRaises(OSError) as cm:
            fn(*args, **kw)
        self.assertEqual(cm.exception.errno, err, cm.exception)


class TestRead(Case):
    @classmethod
    def setUpClass(cls):
        cls.data = random.Random(11).randbytes(5 * MiB + 12345)
        cls.path = os.path.join(mnt(), "ring-read.bin")
        write_file(cls.path, cls.data)

    def test_mount_point(self):
        self.assertEqual(os.path.realpath(self.mp), os.path.realpath(mnt()))
        self.assertEqual(extract_mount_point(self.path), self.mp)
        self.assertIsNone(extract_mount_point(tempfile.gettempdir()))

    def test_ranges_match_file_api(self):
        fd = self.open_reg(self.path)
        ior = make_ioring(self.mp, 64, True, 0)
        size = len(self.data)
        ranges = [
            (0, 1), (1, 4096), (4095, 3), (MiB - 100, 200),  # across a chunk boundary
            (MiB, MiB), (2 * MiB - 1, 2 * MiB + 2),  # across chunks and chains
            (123457, 1000001), (size - 10, 10), (size - 10, 4096),  # short at EOF
            (size, 100), (size + MiB, 10),  # at and past EOF: 0 bytes
        ]
        pos = 0
        ios = []
        for off, n in ranges:
            ios.append((self.iov[pos:pos + n], off))
            pos += n
        self.assertLessEqual(pos, 8 * MiB)
        for i, (v, off) in enumerate(ios):
            ior.prepare(v, True, fd, off, userdata=i)
        done = ior.submit().wait(min_results=len(ios), timeout=datetime.timedelta(seconds=60))
        self.assertEqual(len(done), len(ios))
        self.assertEqual(sorted(d.userdata for d in done), list(range(len(ios))))
        with open(self.path, "rb") as f:
            for d in done:
                v, off = ios[d.userdata]
                f.seek(off)
                want = f.read(len(v))  # through FUSE
                self.assertEqual(want, self.data[off:off + len(v)])
                self.assertEqual(d.result, len(want), (off, len(v)))
                self.assertEqual(bytes(d[:d.result]), want, (off, len(v)))
                self.assertEqual(bytes(self.shm.buf[d.base_off:d.base_off + d.result]), want)

    def test_3fs_demo(self):
        # hf3fs_fuse/fuse_demo.py from 3FS, with our mount and file.
        fd = os.open(self.path, os.O_RDONLY)
        register_fd(fd)
        try:
            ior = make_ioring(self.mp, 100, True, 0)
            ios = [(self.iov[:512], fd, 512), (self.iov[512:1024], fd, 0)]
            for io in ios:
                expected_size = len(memoryview(io[0]))
                ior.prepare(io[0], True, io[1], io[2], userdata=expected_size)
            resv = ior.submit().wait(min_results=2)
            self.assertEqual(len(resv), 2)
            for res in resv:
                self.assertEqual(res.result, res.userdata)
            self.assertEqual(bytes(self.shm.buf[:512]), self.data[512:1024])
            self.assertEqual(bytes(self.shm.buf[512:1024]), self.data[:512])
        finally:
            deregister_fd(fd)
            os.close(fd)

    def test_deep_queue_of_1mib_reads(self):
        fd = self.open_reg(self.path)
        ior = make_ioring(self.mp, 32, True, -8)
        order = list(range(5))
        random.Random(3).shuffle(order)
        for slot, chunk in enumerate(order):
            ior.prepare(self.iov[slot * MiB:(slot + 1) * MiB], True, fd, chunk * MiB,
                        userdata=chunk)
        got = []
        ior.submit()
        while len(got) < len(order):
            got += ior.wait(max_results=8, min_results=1, timeout=datetime.timedelta(seconds=60))
        for d in got:
            self.assertEqual(d.result, MiB)
            self.assertEqual(hashlib.sha256(d).digest(),
                             hashlib.sha256(self.data[d.userdata * MiB:(d.userdata + 1) * MiB]).digest())

    def test_read_file_helper(self):
        self.assertEqual(read_file(self.path, block_size=2 * MiB), self.data)


class TestWrite(Case):
    def test_ring_writes_read_back_through_fuse(self):
        path = os.path.join(mnt(), "ring-write.bin")
        fd = self.open_reg(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        ior = make_ioring(self.mp, 16, for_read=False)
        rnd = random.Random(5)
        payload = rnd.randbytes(3 * MiB + 777)
        self.iov[:len(payload)] = payload
        # Pieces written out of order, unaligned, one crossing chunk and chain.
        pieces = [(MiB + 333, 2 * MiB + 444), (0, 1), (1, MiB + 333)]
        for lo, hi in pieces:
            ior.prepare(self.iov[lo:hi], False, fd, lo, userdata=(lo, hi))
        done = ior.submit().wait(min_results=len(pieces), timeout=datetime.timedelta(seconds=60))
        self.assertEqual(sorted(d.userdata for d in done), sorted(pieces))
        for d in done:
            self.assertEqual(d.result, d.userdata[1] - d.userdata[0])
        deregister_fd(fd)
        os.close(fd)
        self.fds.remove(fd)
        self.assertEqual(os.stat(path).st_size, 2 * MiB + 444)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), payload[:2 * MiB + 444])

    def test_fuse_writes_read_back_through_ring(self):
        path = os.path.join(mnt(), "fuse-write.bin")
        data = random.Random(6).randbytes(2 * MiB + 5)
        write_file(path, data)
        fd = self.open_reg(path)
        ior = make_ioring(self.mp, 4)
        ior.prepare(self.iov[:len(data)], True, fd, 0)
        d = ior.submit().wait(min_results=1)[0]
        self.assertEqual(d.result, len(data))
        self.assertEqual(bytes(self.shm.buf[:len(data)]), data)


class TestErrors(Case):
    @classmethod
    def setUpClass(cls):
        cls.path = os.path.join(mnt(), "ring-errors.bin")
        write_file(cls.path, b"x" * 8192)

    def test_register_fd(self):
        with tempfile.TemporaryFile() as other:  # another file system
            self.assertErrno(errno.EBADF, register_fd, other.fileno())
        fd = self.open_reg(self.path)
        self.assertErrno(errno.EINVAL, register_fd, fd)  # already registered
        deregister_fd(fd)
        register_fd(fd)
        deregister_fd(123456)  # unknown: ignored

    def test_make_ioring(self):
        self.assertErrno(errno.ENOENT, make_ioring, tempfile.gettempdir(), 4)
        self.assertErrno(errno.EINVAL, make_ioring, self.mp, 0)

    def test_prepare(self):
        fd = self.open_reg(self.path)
        rd = make_ioring(self.mp, 4)
        wr = make_ioring(self.mp, 4, for_read=False)
        self.assertErrno(errno.EINVAL, rd.prepare, self.iov[:10], False, fd, 0)  # direction
        self.assertErrno(errno.EINVAL, wr.prepare, self.iov[:10], True, fd, 0)
        self.assertErrno(errno.EINVAL, rd.prepare, self.iov[10:10], True, fd, 0)  # 0 bytes
        self.assertErrno(errno.EACCES, wr.prepare, self.iov[:10], False, fd, 0)  # O_RDONLY fd
        other = os.open(self.path, os.O_RDONLY)
        try:
            self.assertErrno(errno.EBADF, rd.prepare, self.iov[:10], True, other, 0)
        finally:
            os.close(other)
        n = rd.entries
        for _ in range(n):
            rd.prepare(self.iov[:10], True, fd, 0)
        self.assertErrno(errno.EAGAIN, rd.prepare, self.iov[:10], True, fd, 0)  # full
        self.assertEqual(len(rd.submit().wait(min_results=n, timeout=datetime.timedelta(seconds=30))), n)

    def test_forbid_read_holes(self):
        path = os.path.join(mnt(), "sparse.bin")
        with open(path, "wb") as f:
            f.seek(3 * MiB)
            f.write(b"end")
        fd = self.open_reg(path)
        zeros = make_ioring(self.mp, 4)
        d = zeros.prepare(self.iov[:4096], True, fd, MiB).submit().wait(min_results=1)[0]
        self.assertEqual(d.result, 4096)
        self.assertEqual(bytes(d), bytes(4096))  # a hole reads as zeros
        strict = make_ioring(self.mp, 4, flags=2)  # HF3FS_IOR_FORBID_READ_HOLES
        d = strict.prepare(self.iov[:4096], True, fd, MiB).submit().wait(min_results=1)[0]
        self.assertLess(d.result, 0)
        self.assertEqual(d.result, -errno.ENODATA)


if __name__ == "__main__":
    cfs_cluster.run_tests(__name__, "pyio")
