"""Unit tests of the Python layer (chainfs._chainfs and the pure-Python
packages) over the in-process stub of the USRBIO C API (usrbio_stub.c).

The stub serves a ring with pread/pwrite on a plain local directory that
stands for the mount ($CFS_STUB_MOUNT), so every byte read through a ring
is compared against os.pread on the same file. What the real mount does is
tested by test_py_hf3fs_io.py and test_py_chainfs.py.
"""

import datetime
import errno
import gc
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest
import uuid
from multiprocessing.shared_memory import SharedMemory

MOUNT = tempfile.mkdtemp(prefix="cfs-pyunit-")
os.environ["CFS_STUB_MOUNT"] = MOUNT
os.makedirs(os.path.join(MOUNT, "3fs-virt", "iovs"))

import chainfs  # noqa: E402
import hf3fs_fuse.io as h3io  # noqa: E402
import hf3fs_py_usrbio  # noqa: E402


def iov_links():
    return sorted(os.listdir(os.path.join(MOUNT, "3fs-virt", "iovs")))


class Base(unittest.TestCase):
    def setUp(self):
        os.environ.pop("CFS_STUB_DELAY_MS", None)
        self.shm = SharedMemory(create=True, size=1 << 20)
        self.path = os.path.join(MOUNT, "data-%s" % self.id().split(".")[-1])
        self.data = os.urandom(3 << 20)
        with open(self.path, "wb") as f:
            f.write(self.data)
        self.fds = []

    def tearDown(self):
        for fd in self.fds:
            h3io.deregister_fd(fd)
            os.close(fd)
        gc.collect()
        self.shm.close()
        self.shm.unlink()
        os.unlink(self.path)

    def open_reg(self, flags=os.O_RDONLY):
        fd = os.open(self.path, flags)
        self.fds.append(fd)
        h3io.register_fd(fd)
        return fd

    def assertErrno(self, err, fn, *args, **kw):
        with self.assertRaises(OSError) as cm:
            fn(*args, **kw)
        self.assertEqual(cm.exception.errno, err, cm.exception)


class TestIovec(Base):
    def test_registration_lives_as_long_as_any_slice(self):
        before = iov_links()
        iov = h3io.make_iovec(self.shm, MOUNT)
        links = iov_links()
        self.assertEqual(len(links), len(before) + 1)
        new = [link for link in links if link not in before][0]
        target = os.readlink(os.path.join(MOUNT, "3fs-virt", "iovs", new))
        self.assertEqual(target, "/dev/shm/" + self.shm.name)
        self.assertEqual(uuid.UUID(new).bytes, iov.id)
        part = iov[10:20]
        del iov
        gc.collect()
        self.assertEqual(len(iov_links()), len(before) + 1)  # the slice keeps it
        del part
        gc.collect()
        self.assertEqual(iov_links(), before)

    def test_block_size_suffix(self):
        iov = h3io.make_iovec(self.shm, MOUNT, 4096)
        self.assertTrue(any(link.endswith(".b4096") for link in iov_links()))
        self.assertEqual(iov.block_size, 4096)
        del iov
        self.assertFalse(any(link.endswith(".b4096") for link in iov_links()))

    def test_buffer_protocol_shares_pages_with_shm(self):
        iov = h3io.make_iovec(self.shm, MOUNT)
        mv = memoryview(iov)
        self.assertEqual(len(mv), 1 << 20)
        self.assertFalse(mv.readonly)
        self.shm.buf[100:104] = b"abcd"
        self.assertEqual(bytes(mv[100:104]), b"abcd")
        self.assertEqual(bytes(iov[100:104]), b"abcd")
        iov[200:203] = b"xyz"
        self.assertEqual(bytes(self.shm.buf[200:203]), b"xyz")
        iov[5] = 7
        self.assertEqual(iov[5], 7)
        self.assertEqual(self.shm.buf[5], 7)
        with self.assertRaises(ValueError):
            iov[0:4] = b"toolong"
        mv.release()

    def test_slicing(self):
        iov = h3io.make_iovec(self.shm, MOUNT)
        s = iov[10:20]
        self.assertIsInstance(s, chainfs.iovec)
        self.assertEqual((len(s), s.base_off), (10, 10))
        t = s[2:4]
        self.assertEqual((len(t), t.base_off), (2, 12))
        self.assertEqual(len(iov[-10:]), 10)
        self.assertEqual(iov[-10:].base_off, (1 << 20) - 10)
        self.assertEqual(len(iov[:]), 1 << 20)
        self.assertEqual(len(iov[5:5]), 0)
        self.assertEqual(len(iov[(1 << 21):]), 0)
        with self.assertRaises(ValueError):
            iov[0:10:2]
        with self.assertRaises(IndexError):
            iov[1 << 20]
        self.assertEqual(iov.mount_point, MOUNT)
        u = iov.slice_by(memoryview(iov)[100:300])
        self.assertEqual((u.base_off, len(u)), (100, 200))
        with self.assertRaises(IndexError):
            iov.slice_by(b"not inside")

    def test_shm_may_close_while_iovec_lives(self):
        shm = SharedMemory(create=True, size=8192)
        iov = h3io.make_iovec(shm, MOUNT)
        shm.buf[0:3] = b"abc"
        shm.close()
        shm.unlink()  # the iovec keeps its own mapping
        self.assertEqual(bytes(iov[0:3]), b"abc")
        iov[3:6] = b"def"
        self.assertEqual(bytes(iov[0:6]), b"abcdef")

    def test_low_level_constructor_as_3fs(self):
        ident = str(uuid.uuid4())
        iov = hf3fs_py_usrbio.iovec(self.shm.buf, ident, MOUNT)
        self.assertEqual(iov.id, uuid.UUID(ident).bytes)
        self.assertEqual(len(iov), 1 << 20)
        with self.assertRaises(ValueError):
            hf3fs_py_usrbio.iovec(self.shm.buf, "not-a-uuid", MOUNT)
        with self.assertRaises(BufferError):  # read-only memory
            hf3fs_py_usrbio.iovec(b"readonly bytes", ident, MOUNT)
        del iov

    def test_library_allocated(self):
        iov = chainfs.iovec.create(MOUNT, 65536)
        self.assertEqual(len(iov), 65536)
        iov[0:2] = b"hi"
        self.assertEqual(bytes(iov[0:2]), b"hi")
        self.assertErrno(errno.EINVAL, chainfs.iovec.create, MOUNT, 0)

    def test_make_iovec_missing_shm(self):
        class Fake:
            name = "cfs-no-such-shm-%d" % os.getpid()
            size = 4096

        before = iov_links()
        self.assertErrno(errno.ENOENT, h3io.make_iovec, Fake(), MOUNT)
        self.assertEqual(iov_links(), before)  # the failed registration was undone


class TestRing(Base):
    def test_reads_match_pread(self):
        fd = self.open_reg()
        iov = h3io.make_iovec(self.shm, MOUNT)
        ior = h3io.make_ioring(MOUNT, 64, True, 0)
        self.assertGreaterEqual(ior.entries, 64)
        ios = [(iov[0:4096], 0), (iov[4096:5000], 12345), (iov[8192:8193], len(self.data) - 1),
               (iov[16384:20480], len(self.data) - 100), (iov[65536:65536 + 1000], len(self.data))]
        for i, (v, off) in enumerate(ios):
            self.assertIs(ior.prepare(v, True, fd, off, userdata=("io", i)), ior)
        self.assertEqual(ior.in_flight, len(ios))
        done = ior.submit().wait(min_results=len(ios))
        self.assertEqual(len(done), len(ios))
        self.assertEqual(ior.in_flight, 0)
        for d in done:
            i = d.userdata[1]
            v, off = ios[i]
            self.assertIs(d, v)
            want = self.data[off:off + len(v)]
            self.assertEqual(d.result, len(want))
            self.assertEqual(bytes(d[:d.result]), want)
            self.assertEqual(bytes(v[:d.result]), os.pread(fd, len(v), off))

    def test_writes_then_normal_read(self):
        fd = self.open_reg(os.O_RDWR)
        iov = h3io.make_iovec(self.shm, MOUNT)
        ior = h3io.make_ioring(MOUNT, 8, for_read=False)
        payload = os.urandom(10000)
        iov[0:10000] = payload
        ior.prepare(iov[0:10000], False, fd, 777, userdata=1)
        ior.prepare(iov[0:5], False, fd, 0, userdata=2)
        done = ior.submit().wait(min_results=2, timeout=datetime.timedelta(seconds=10))
        self.assertEqual(sorted((d.userdata, d.result) for d in done), [(1, 10000), (2, 5)])
        with open(self.path, "rb") as f:
            got = f.read()
        self.assertEqual(got[777:10777], payload)
        self.assertEqual(got[0:5], payload[0:5])

    def test_same_iovec_twice_in_flight_gets_two_results(self):
        fd = self.open_reg()
        iov = h3io.make_iovec(self.shm, MOUNT)
        ior = h3io.make_ioring(MOUNT, 4)
        v = iov[0:100]
        ior.prepare(v, True, fd, 0, userdata="a")
        ior.prepare(v, True, fd, len(self.data) - 10, userdata="b")
        done = ior.submit().wait(min_results=2)
        res = {d.userdata: d.result for d in done}
        self.assertEqual(res, {"a": 100, "b": 10})
        self.assertEqual(len({id(d) for d in done}), 2)

    def test_userdata_kept_alive(self):
        fd = self.open_reg()
        iov = h3io.make_iovec(self.shm, MOUNT)
        ior = h3io.make_ioring(MOUNT, 4)
        ior.prepare(iov[0:10], True, fd, 0, userdata=["only", "ref"])
        ior.prepare(iov[10:20], True, fd, 0)
        gc.collect()
        done = ior.submit().wait(min_results=2)
        uds = [d.userdata for d in done]
        self.assertIn(["only", "ref"], uds)
        self.assertIn(None, uds)

    def test_wait_counts(self):
        fd = self.open_reg()
        iov = h3io.make_iovec(self.shm, MOUNT)
        ior = h3io.make_ioring(MOUNT, 16)
        self.assertEqual(ior.wait(), [])  # nothing prepared: returns at once
        for i in range(6):
            ior.prepare(iov[i * 10:(i + 1) * 10], True, fd, i)
        ior.submit()
        self.assertEqual(len(ior.wait(max_results=2, min_results=2)), 2)
        self.assertEqual(len(ior.wait(min_results=1)), 1)  # max 0 -> at most min
        rest = ior.wait(max_results=10, min_results=3)
        self.assertEqual(len(rest), 3)
        self.assertEqual(ior.wait(max_results=10), [])
        self.assertErrno(errno.EINVAL, ior.wait, min_results=-1)

    def test_wait_timeout(self):
        ior = h3io.make_ioring(MOUNT, 4)
        t0 = time.monotonic()
        self.assertEqual(ior.wait(min_results=1, timeout=datetime.timedelta(milliseconds=250)), [])
        el = time.monotonic() - t0
        self.assertGreaterEqual(el, 0.2)
        self.assertLess(el, 5)
        self.assertEqual(ior.wait(min_results=1, timeout=0.05), [])
        with self.assertRaises(TypeError):
            ior.wait(min_results=1, timeout="soon")

    def test_gil_released_while_waiting(self):
        os.environ["CFS_STUB_DELAY_MS"] = "400"
        fd = self.open_reg()
        iov = h3io.make_iovec(self.shm, MOUNT)
        ior = h3io.make_ioring(MOUNT, 4)
        count = [0]
        stop = threading.Event()

        def spin():
            while not stop.is_set():
                count[0] += 1

        t = threading.Thread(target=spin)
        t.start()
        try:
            ior.prepare(iov[0:10], True, fd, 0)
            time.sleep(0.05)
            before = count[0]
            done = ior.submit().wait(min_results=1)
            during = count[0] - before
        finally:
            stop.set()
            t.join()
        self.assertEqual(done[0].result, 10)
        # Another thread ran Python code the whole time wait() blocked.
        self.assertGreater(during, 10000)

    def test_signal_interrupts_wait_and_keeps_completions(self):
        os.environ["CFS_STUB_DELAY_MS"] = "600"
        fd = self.open_reg()
        iov = h3io.make_iovec(self.shm, MOUNT)
        ior = h3io.make_ioring(MOUNT, 4)
        ior.prepare(iov[0:10], True, fd, 0, userdata="kept")

        class Stop(Exception):
            pass

        def handler(signum, frame):
            raise Stop()

        old = signal.signal(signal.SIGALRM, handler)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            t0 = time.monotonic()
            with self.assertRaises(Stop):
                ior.submit().wait(min_results=2)  # 2 never come
            self.assertLess(time.monotonic() - t0, 3)
            # The completion that may have arrived meanwhile is not lost.
            done = ior.wait(min_results=1, timeout=5)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        self.assertEqual([(d.userdata, d.result) for d in done], [("kept", 10)])

    def test_threads_prepare_and_wait(self):
        fd = self.open_reg()
        iov = h3io.make_iovec(self.shm, MOUNT)
        ior = h3io.make_ioring(MOUNT, 32)
        n = 400
        got = []

        def reaper():
            while len(got) < n:
                got.extend((d.userdata, d.result, bytes(d)) for d in ior.wait(max_results=8, min_results=1, timeout=10))

        t = threading.Thread(target=reaper)
        t.start()
        i = 0
        while i < n:
            try:
                ior.prepare(iov[i * 100:i * 100 + 100], True, fd, i * 1000, userdata=i)
                i += 1
            except BlockingIOError:  # EAGAIN: ring full, the reaper frees slots
                ior.submit()
                time.sleep(0.001)
        ior.submit()
        t.join(30)
        self.assertFalse(t.is_alive())
        self.assertEqual(sorted(g[0] for g in got), list(range(n)))
        for ud, res, b in got:
            self.assertEqual((res, b), (100, self.data[ud * 1000:ud * 1000 + 100]))
        self.assertEqual(ior.stray_completions, 0)


class TestWaiters(Base):
    def test_second_waiter_queues_within_its_timeout(self):
        # The stub answers 2 s late, so a second waiter that waited for the
        # completion instead of its own 0.1 s takes >= 1.8 s: the 1 s bound
        # leaves room for a loaded sanitizer run and still tells them apart.
        os.environ["CFS_STUB_DELAY_MS"] = "2000"
        fd = self.open_reg()
        iov = h3io.make_iovec(self.shm, MOUNT)
        ior = h3io.make_ioring(MOUNT, 4)
        ior.prepare(iov[0:10], True, fd, 0, userdata="x").submit()
        first = []
        t = threading.Thread(target=lambda: first.extend(ior.wait(min_results=1, timeout=10)))
        t.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        self.assertEqual(ior.wait(min_results=1, timeout=0.1), [])  # behind the first waiter
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertErrno(errno.EBUSY, ior.destroy)  # a thread is waiting
        t.join()
        self.assertEqual([(d.userdata, d.result) for d in first], [("x", 10)])
        ior.destroy()


class TestFork(Base):
    def test_child_leaves_parent_registrations_alone(self):
        fd = self.open_reg()
        iov = h3io.make_iovec(self.shm, MOUNT)
        ior = h3io.make_ioring(MOUNT, 4)
        links = iov_links()
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                try:
                    ior.prepare(iov[0:10], True, fd, 0)
                    code = 4  # an inherited ring must not be usable
                except OSError as e:
                    code = 0 if e.errno == errno.EBADF else 5
                own = h3io.make_ioring(MOUNT, 2)  # its own ring works
                own.prepare(iov[0:10], True, fd, 0)
                if own.submit().wait(min_results=1)[0].result != 10:
                    code = 6
                del ior, iov, own  # must not unlink the parent's registration
                gc.collect()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.assertEqual(iov_links(), links)
        done = ior.prepare(iov[0:10], True, fd, 0).submit().wait(min_results=1)
        self.assertEqual(done[0].result, 10)


class TestErrors(Base):
    def test_register_fd(self):
        outside = tempfile.NamedTemporaryFile()
        self.assertErrno(errno.EBADF, h3io.register_fd, outside.fileno())
        self.assertErrno(errno.EBADF, h3io.register_fd, 100000)
        fd = self.open_reg()
        self.assertErrno(errno.EINVAL, h3io.register_fd, fd)  # twice
        h3io.deregister_fd(fd)
        h3io.register_fd(fd)  # again after deregistering
        h3io.deregister_fd(12345)  # unknown fd: no error, as in 3FS

    def test_prepare_errors(self):
        fd = self.open_reg()
        wfd = self.open_reg(os.O_RDONLY)
        iov = h3io.make_iovec(self.shm, MOUNT)
        rd = h3io.make_ioring(MOUNT, 2)
        wr = h3io.make_ioring(MOUNT, 2, for_read=False)
        self.assertErrno(errno.EINVAL, rd.prepare, iov[0:10], False, fd, 0)  # wrong direction
        self.assertErrno(errno.EINVAL, rd.prepare, iov[5:5], True, fd, 0)  # zero length
        self.assertErrno(errno.EINVAL, rd.prepare, iov[0:10], True, fd, -1)  # negative offset
        unreg = os.open(self.path, os.O_RDONLY)
        try:
            self.assertErrno(errno.EBADF, rd.prepare, iov[0:10], True, unreg, 0)
        finally:
            os.close(unreg)
        self.assertErrno(errno.EACCES, wr.prepare, iov[0:10], False, wfd, 0)  # read-only fd
        with self.assertRaises(TypeError):
            rd.prepare(b"not an iovec", True, fd, 0)
        with self.assertRaises(TypeError):
            rd.prepare(iov[0:10], True, fd)  # no offset
        rd.prepare(iov[0:10], True, fd, offset=0)  # keyword spelling of the brief
        # A full ring: EAGAIN, as BlockingIOError.
        n = rd.entries
        for i in range(n - 1):
            rd.prepare(iov[0:10], True, fd, 0)
        with self.assertRaises(BlockingIOError) as cm:
            rd.prepare(iov[0:10], True, fd, 0)
        self.assertEqual(cm.exception.errno, errno.EAGAIN)
        self.assertEqual(len(rd.submit().wait(min_results=n, timeout=10)), n)
        rd.prepare(iov[0:10], True, fd, 0)  # slots are free again

    def test_completion_errno(self):
        # A write ring over an fd the stub registered read-write but that
        # is a directory: the I/O itself fails, and the errno comes back
        # in .result, not as an exception.
        d = os.open(MOUNT, os.O_RDONLY | os.O_DIRECTORY)
        self.fds.append(d)
        h3io.register_fd(d)
        iov = h3io.make_iovec(self.shm, MOUNT)
        rd = h3io.make_ioring(MOUNT, 2)
        done = rd.prepare(iov[0:10], True, d, 0).submit().wait(min_results=1)
        self.assertEqual(done[0].result, -errno.EISDIR)

    def test_ring_errors(self):
        self.assertErrno(errno.EINVAL, h3io.make_ioring, MOUNT, 0)
        self.assertErrno(errno.ENOENT, h3io.make_ioring, "/proc", 4)
        with self.assertRaises(ValueError):
            h3io.make_ioring(MOUNT, 4, timeout=-5)
        r = h3io.make_ioring(MOUNT, 4, timeout=datetime.timedelta(milliseconds=20), priority=1)
        r2 = h3io.make_ioring(MOUNT, 4, io_depth=-2, flags=chainfs.IOR_FORBID_READ_HOLES,
                              priority=h3io.IorPriority.HIGH)
        del r2
        r.destroy()
        with self.assertRaises(ValueError):
            r.wait()
        with self.assertRaises(ValueError):
            r.prepare(h3io.make_iovec(self.shm, MOUNT), True, 0, 0)
        r.destroy()  # twice is fine

    def test_extract_mount_point(self):
        self.assertEqual(h3io.extract_mount_point(self.path), os.path.realpath(MOUNT))
        self.assertEqual(h3io.extract_mount_point(MOUNT), os.path.realpath(MOUNT))
        self.assertIsNone(h3io.extract_mount_point("/proc/self"))
        self.assertIsNone(h3io.extract_mount_point("/no/such/path"))


class TestHelpers(Base):
    def test_read_file(self):
        self.assertEqual(h3io.read_file(self.path, block_size=1 << 20), self.data)
        self.assertEqual(chainfs.read_file(self.path, MOUNT, block_size=999 * 1000, off=5),
                         self.data[5:])
        seen = []
        h3io.read_file(self.path, block_size=1 << 20, cb=lambda b, off: seen.append((off, len(b))))
        self.assertEqual(seen, [(0, 1 << 20), (1 << 20, 1 << 20), (2 << 20, 1 << 20)])

    def test_3fs_keyword_names(self):
        iov = h3io.make_iovec(shm=self.shm, hf3fs_mount_point=MOUNT, block_size=0, numa=-1)
        ior = h3io.make_ioring(hf3fs_mount_point=MOUNT, entries=4, for_read=True, io_depth=0,
                               priority=None, timeout=None, numa=-1, flags=0)
        fd = self.open_reg()
        done = ior.prepare(iov=iov[0:8], read=True, fd=fd, off=16, userdata=None).submit().wait(
            max_results=1, min_results=1, timeout=datetime.timedelta(seconds=5))
        self.assertEqual(bytes(done[0]), self.data[16:24])
        self.assertEqual(h3io.read_file(fn=self.path, hf3fs_mount_point=MOUNT, block_size=1 << 20,
                                        off=0, priority=None, cb=None), self.data)
        self.assertEqual(h3io.ioring.size_for_entries(4), h3io.ioring.size_for_entries(4))
        self.assertEqual(h3io.IorPriority.HIGH, -1)

    def test_force_fsync_and_hardlink(self):
        fd = os.open(self.path, os.O_RDONLY)
        try:
            self.assertEqual(h3io.force_fsync(fd), 0)
        finally:
            os.close(fd)
        link = self.path + ".link"
        h3io.hardlink(self.path, link)
        self.assertEqual(os.stat(link).st_ino, os.stat(self.path).st_ino)
        os.unlink(link)


if __name__ == "__main__":
    try:
        r = unittest.main(exit=False, verbosity=2).result
        ok = r.wasSuccessful() and not r.skipped
    finally:
        shutil.rmtree(MOUNT, ignore_errors=True)
    sys.exit(0 if ok else 1)
