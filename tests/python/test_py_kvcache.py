"""chainfs.kvcache.KVCacheStore on a real `chainfs up` cluster (through
libchainfs and the meta service), and the examples/ L3 backend."""
import os
import subprocess
import sys
import unittest

import cfs_cluster
from chainfs.kvcache import KVCacheStore


def cli(*args):
    return subprocess.run([os.environ["CFS_BIN"], "kvcache", *args, "--mount",
                           cfs_cluster.cluster.mnt, "--cluster-dir", cfs_cluster.cluster.data],
                          capture_output=True).returncode


class TestKVCacheStore(unittest.TestCase):
    def test_round_trip_types(self):
        self.assertEqual(cli("create", "py", "--page-size", "64K", "--capacity", "4M"), 0)
        with KVCacheStore(cfs_cluster.cluster.mnt, "py", cluster_dir=cfs_cluster.cluster.data,
                          batch_pages=8) as s:
            vals = [os.urandom(1 + 997 * i) for i in range(20)]
            keys = [b"k%d" % i for i in range(20)]
            self.assertEqual(s.batch_set(keys, vals), [0] * 20)
            outs = [bytearray(s.page_size) for _ in range(21)]
            res = s.batch_get(keys + [b"missing"], outs)
            self.assertEqual(res[:20], [len(v) for v in vals])
            self.assertLess(res[20], 0)
            for i, v in enumerate(vals):
                self.assertEqual(bytes(outs[i][:res[i]]), v)
            self.assertEqual(s.batch_exists([b"k0", b"nope"]), [True, False])
            self.assertEqual(s.delete([b"k0"]), [True])
            self.assertEqual(s.batch_exists([b"k0"]), [False])
            with self.assertRaises(OSError):
                s.batch_set([b"big"], [bytes(s.page_size + 1)])
            try:
                import numpy
                a = numpy.arange(4096, dtype=numpy.float32)
                o = numpy.zeros_like(a)
                s.batch_set(["arr"], [a])
                self.assertEqual(s.batch_get(["arr"], [o]), [a.nbytes])
                self.assertTrue(numpy.array_equal(a, o))
            except ImportError:
                pass
            self.assertEqual(s.stats()["used"], 20)
            s.clear()
            self.assertEqual(s.stats()["used"], 0)
        self.assertEqual(cli("delete", "py"), 0)

    def test_bad_input(self):
        """Each bad input is a clear OSError and changes nothing."""
        import errno
        out = subprocess.run([os.environ["CFS_BIN"], "kvcache", "create", "pybad",
                              "--page-size", "96K", "--mount", cfs_cluster.cluster.mnt,
                              "--cluster-dir", cfs_cluster.cluster.data],
                             capture_output=True, text=True)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("power of two", out.stderr)
        with self.assertRaises(OSError) as cm:
            KVCacheStore(cfs_cluster.cluster.mnt, "pybad", cluster_dir=cfs_cluster.cluster.data)
        self.assertEqual(cm.exception.errno, errno.ENOENT)
        self.assertEqual(cli("create", "pyin", "--page-size", "64K", "--capacity", "1M"), 0)
        with KVCacheStore(cfs_cluster.cluster.mnt, "pyin", cluster_dir=cfs_cluster.cluster.data,
                          batch_pages=4) as s:
            self.assertEqual(s.batch_set([b"ok"], [b"v" * 100]), [0])
            before = s.stats()
            cases = [
                (errno.EMSGSIZE, lambda: s.batch_set([b"big"], [bytes(s.page_size + 1)])),
                (errno.EINVAL, lambda: s.batch_set([b""], [b"x"])),
                (errno.EINVAL, lambda: s.batch_set([b"k" * 257], [b"x"])),
                (errno.EINVAL, lambda: s.batch_exists([b"k" * 257])),
                (errno.E2BIG, lambda: s.batch_exists([b"k%d" % i for i in range(4097)])),
                (errno.E2BIG, lambda: s.delete([b"k%d" % i for i in range(4097)])),
            ]
            for want, fn in cases:
                with self.assertRaises(OSError) as cm:
                    fn()
                self.assertEqual(cm.exception.errno, want)
            after = s.stats()
            self.assertEqual(after["used"], before["used"])
            self.assertEqual(after["reserved"], 0)
            out = [bytearray(100)]
            self.assertEqual(s.batch_get([b"ok"], out), [100])
        self.assertEqual(cli("delete", "pyin"), 0)

    def test_example_backend(self):
        self.assertEqual(cli("create", "l3", "--page-size", "64K", "--capacity", "4M"), 0)
        ex = os.path.join(os.environ["CFS_SRC"], "examples", "kvcache_l3_backend.py")
        out = subprocess.run([sys.executable, ex, cfs_cluster.cluster.mnt,
                              cfs_cluster.cluster.data], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("verified", out.stdout)


if __name__ == "__main__":
    cfs_cluster.run_tests(__name__, "pykvcache")
