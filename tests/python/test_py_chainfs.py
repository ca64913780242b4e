"""The chainfs Python API (`import chainfs`) and examples/torch_dataset.py
against a real ChainFS mount (`chainfs up` in a temp dir, from
cfs_cluster.run_tests). Every byte read through a ring is compared with
os.pread through the FUSE mount.
"""

import datetime
import importlib.util
import os
import random
import tempfile
import threading
import unittest

import cfs_cluster
import chainfs

MiB = 1 << 20
T60 = datetime.timedelta(seconds=60)


def mnt():
    return cfs_cluster.cluster.mnt


def load_example():
    path = os.path.join(os.environ["CFS_SRC"], "examples", "torch_dataset.py")
    spec = importlib.util.spec_from_file_location("torch_dataset", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class TestChainfsApi(unittest.TestCase):
    def test_is_chainfs(self):
        path = os.path.join(mnt(), "is.bin")
        with open(path, "wb") as f:
            self.assertTrue(chainfs.is_chainfs(f.fileno()))
        with tempfile.TemporaryFile() as f:
            self.assertFalse(chainfs.is_chainfs(f))

    def test_library_buffer_write_then_read(self):
        mp = chainfs.extract_mount_point(mnt())
        path = os.path.join(mnt(), "libbuf.bin")
        iov = chainfs.iovec.create(mp, 4 * MiB)  # created and registered by libchainfs
        data = random.Random(8).randbytes(MiB + 99)
        iov[:len(data)] = data
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        chainfs.register_fd(fd)
        try:
            wr = chainfs.ioring(mp, 8, for_read=False)
            d = wr.prepare(iov[:len(data)], False, fd, 5).submit().wait(min_results=1, timeout=T60)
            self.assertEqual([x.result for x in d], [len(data)])
            rd = chainfs.ioring(mp, 8)
            d = rd.prepare(iov[2 * MiB:4 * MiB], True, fd, 0).submit().wait(min_results=1, timeout=T60)
            self.assertEqual(d[0].result, len(data) + 5)  # short: EOF
            self.assertEqual(bytes(d[0][:d[0].result]), os.pread(fd, 2 * MiB, 0))
            self.assertEqual(bytes(d[0][5:5 + len(data)]), data)
        finally:
            chainfs.deregister_fd(fd)
            os.close(fd)
        self.assertEqual(os.stat(path).st_size, len(data) + 5)

    def test_rings_in_threads(self):
        from multiprocessing.shared_memory import SharedMemory

        mp = chainfs.extract_mount_point(mnt())
        path = os.path.join(mnt(), "threads.bin")
        data = random.Random(9).randbytes(4 * MiB)
        with open(path, "wb") as f:
            f.write(data)
        fd = os.open(path, os.O_RDONLY)
        chainfs.register_fd(fd)
        shm = SharedMemory(create=True, size=4 * MiB)
        iov = chainfs.make_iovec(shm, mp)
        shm.close()
        shm.unlink()
        errors = []

        def worker(t):
            try:
                ring = chainfs.make_ioring(mp, 16)
                rnd = random.Random(t)
                base = t * MiB
                for _ in range(20):
                    offs = [rnd.randrange(0, len(data) - 4096) for _ in range(16)]
                    for k, off in enumerate(offs):
                        ring.prepare(iov[base + k * 4096:base + (k + 1) * 4096], True, fd, off,
                                     userdata=off)
                    for d in ring.submit().wait(min_results=16, timeout=T60):
                        if d.result != 4096 or bytes(d) != data[d.userdata:d.userdata + 4096]:
                            errors.append((t, d.userdata, d.result))
            except Exception as e:  # reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        chainfs.deregister_fd(fd)
        os.close(fd)
        self.assertEqual(errors, [])


class TestDatasetExample(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ex = load_example()
        cls.path = os.path.join(mnt(), "train.bin")
        cls.data = random.Random(10).randbytes(8 * MiB)
        with open(cls.path, "wb") as f:
            f.write(cls.data)

    def sample(self, i, ss=4096):
        return self.data[i * ss:(i + 1) * ss]

    def as_bytes(self, row):
        if self.ex.torch is not None:
            row = row.numpy()
        return bytes(memoryview(row))

    def test_backend(self):
        # numpy is a build dependency (scripts/install-deps.sh): the example
        # must not have fallen back to bytes.
        self.assertTrue(self.ex.torch is not None or self.ex.numpy is not None)

    def test_samples_match_file(self):
        ds = self.ex.RingSampleDataset(self.path, 4096, max_batch=64)
        try:
            self.assertEqual(len(ds), 2048)
            self.assertEqual(self.as_bytes(ds[7]), self.sample(7))
            idx = random.Random(4).sample(range(len(ds)), 150)  # > max_batch: 3 round trips
            batch = ds[idx]
            self.assertEqual(tuple(batch.shape), (150, 4096))
            for k, i in enumerate(idx):
                self.assertEqual(self.as_bytes(batch[k]), self.sample(i))
            with self.assertRaises(IndexError):
                ds[len(ds)]
        finally:
            ds.close()

    def test_forked_worker_opens_its_own_ring(self):
        ds = self.ex.RingSampleDataset(self.path, 4096, max_batch=16)
        self.assertEqual(self.as_bytes(ds[1]), self.sample(1))  # parent's ring
        pid = os.fork()
        if pid == 0:  # a DataLoader worker, in effect
            code = 1
            try:
                ok = all(self.as_bytes(ds[i]) == self.sample(i) for i in (3, 2000, 999))
                code = 0 if ok else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.assertEqual(self.as_bytes(ds[5]), self.sample(5))  # parent still fine
        ds.close()

    def test_main_verifies(self):
        rc = self.ex.main(["--file", self.path, "--sample-size", "65536", "--batch", "32",
                           "--batches", "8", "--verify"])
        self.assertEqual(rc, 0)


if __name__ == "__main__":
    cfs_cluster.run_tests(__name__, "pychainfs")
