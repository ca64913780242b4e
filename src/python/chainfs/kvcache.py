"""KVCache page store from Python (include/chainfs.h "KVCache", docs/kvcache.md).

``KVCacheStore(mount, name, cluster_dir=...)`` opens a namespace made with
``chainfs kvcache create``. It registers one shared-memory buffer with the
mount once (``store.buffer``, a writable memoryview; ``store.array()`` gives
a numpy view of it when numpy is installed): values placed there and
outputs that lie in it move between storage and that memory with no copy
in Python. Other buffer-protocol objects (bytes, bytearray, numpy arrays,
torch CPU tensors through ``.numpy()``) are staged through the buffer with
one C-level memmove per value.

Calls go through ctypes to ``libchainfs.so.1`` ($CHAINFS_LIB overrides the
path). Whole-call errors raise OSError with the errno; per-key outcomes are
returned as lists.
"""

import ctypes
import ctypes.util
import errno as _errno
import os

_LIB = None


def _lib():
    global _LIB
    if _LIB is None:
        path = os.environ.get("CHAINFS_LIB") or ctypes.util.find_library("chainfs") or "libchainfs.so.1"
        _LIB = ctypes.CDLL(path, use_errno=True)
        _LIB.cfs_iov_base.restype = ctypes.c_void_p
        _LIB.cfs_iov_size.restype = ctypes.c_size_t
        _LIB.cfs_kvc_page_size.restype = ctypes.c_uint32
    return _LIB


class _Opts(ctypes.Structure):
    _fields_ = [("cluster_dir", ctypes.c_char_p), ("meta", ctypes.c_char_p),
                ("cluster_id", ctypes.c_char_p), ("secret_file", ctypes.c_char_p),
                ("rings", ctypes.c_int), ("ring_entries", ctypes.c_int),
                ("lease_ms", ctypes.c_uint32), ("ttl_ms", ctypes.c_uint32),
                ("meta_timeout_ms", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("spare", ctypes.c_uint64 * 7)]


class _Info(ctypes.Structure):
    _fields_ = [("page_size", ctypes.c_uint32), ("slots", ctypes.c_uint64),
                ("slabs", ctypes.c_uint32), ("dir", ctypes.c_char * 1025),
                ("used", ctypes.c_uint64), ("reserved", ctypes.c_uint64),
                ("evictions", ctypes.c_uint64), ("reclaimed", ctypes.c_uint64),
                ("lost", ctypes.c_uint64), ("expired", ctypes.c_uint64),
                ("evictions_per_s", ctypes.c_double), ("ttl_ms", ctypes.c_uint32),
                ("spare", ctypes.c_uint64 * 8)]


def _check(rc, what):
    if rc < 0:
        raise OSError(-rc, "%s: %s" % (what, os.strerror(-rc)))
    return rc


def _keys(keys):
    ks = [k.encode() if isinstance(k, str) else bytes(k) for k in keys]
    n = len(ks)
    arr = (ctypes.c_void_p * n)(*[ctypes.cast(ctypes.c_char_p(k), ctypes.c_void_p) for k in ks])
    lens = (ctypes.c_size_t * n)(*[len(k) for k in ks])
    return ks, arr, lens  # ks keeps the bytes alive


class KVCacheStore:
    def __init__(self, mount, name, cluster_dir=None, meta=None, cluster_id=None,
                 secret_file=None, batch_pages=64, rings=4, ttl_ms=0):
        lib = _lib()
        self._o = _Opts(cluster_dir.encode() if cluster_dir else None,
                        meta.encode() if meta else None,
                        cluster_id.encode() if cluster_id else None,
                        secret_file.encode() if secret_file else None, rings, 0, 0,
                        ttl_ms)
        self._kv = ctypes.c_void_p()
        _check(lib.cfs_kvc_open(mount.encode(), name.encode(), ctypes.byref(self._o),
                                ctypes.byref(self._kv)), "open " + name)
        self.page_size = lib.cfs_kvc_page_size(self._kv)
        self._iov = ctypes.c_void_p()
        size = self.page_size * batch_pages
        rc = lib.cfs_iov_create(mount.encode(), ctypes.c_size_t(size), ctypes.c_size_t(0), -1,
                                ctypes.byref(self._iov))
        if rc < 0:
            lib.cfs_kvc_close(self._kv)
            _check(rc, "iov")
        self._base = lib.cfs_iov_base(self._iov)
        self._size = size
        self.batch_pages = batch_pages
        self.buffer = memoryview((ctypes.c_char * size).from_address(self._base)).cast("B")

    def array(self):
        """A numpy uint8 view of the registered buffer (needs numpy)."""
        import numpy
        return numpy.frombuffer(self.buffer, dtype=numpy.uint8)

    def close(self):
        if self._kv:
            self.buffer.release()
            _lib().cfs_iov_destroy(self._iov)
            _lib().cfs_kvc_close(self._kv)
            self._kv = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def _chunks(self, n):
        for i in range(0, n, self.batch_pages):
            yield i, min(n, i + self.batch_pages)

    def batch_set(self, keys, values):
        """Stores values (buffer-protocol objects of <= page_size bytes).
        Returns a list of 0 / -errno per key (0 also when the key already
        held a value: the first put wins)."""
        out = []
        keys, values = list(keys), list(values)
        for a, b in self._chunks(len(keys)):
            n = b - a
            ptrs = (ctypes.c_void_p * n)()
            lens = (ctypes.c_size_t * n)()
            for j in range(n):
                mv = memoryview(values[a + j]).cast("B")
                if mv.nbytes > self.page_size:
                    raise OSError(_errno.EMSGSIZE, "value of %d bytes over the page size" % mv.nbytes)
                self.buffer[j * self.page_size: j * self.page_size + mv.nbytes] = mv
                ptrs[j] = self._base + j * self.page_size
                lens[j] = mv.nbytes
            ks, karr, klens = _keys(keys[a:b])
            res = (ctypes.c_int * n)()
            _check(_lib().cfs_kvc_put(self._kv, self._iov, n, karr, klens, ptrs, lens, res), "put")
            out.extend(res)
        return out

    def batch_get(self, keys, outs):
        """Reads keys into outs (writable buffers). Returns per key the
        length read, or -errno (-ENOENT: missing)."""
        result = []
        keys, outs = list(keys), list(outs)
        for a, b in self._chunks(len(keys)):
            n = b - a
            ptrs = (ctypes.c_void_p * n)()
            caps = (ctypes.c_size_t * n)()
            views = []
            for j in range(n):
                mv = memoryview(outs[a + j]).cast("B")
                views.append(mv)
                ptrs[j] = self._base + j * self.page_size
                caps[j] = min(mv.nbytes, self.page_size)
            ks, karr, klens = _keys(keys[a:b])
            res = (ctypes.c_int * n)()
            _check(_lib().cfs_kvc_get(self._kv, self._iov, n, karr, klens, ptrs, caps, res), "get")
            for j in range(n):
                if res[j] > 0:
                    views[j][:res[j]] = self.buffer[j * self.page_size: j * self.page_size + res[j]]
            result.extend(res)
        return result

    def batch_exists(self, keys):
        keys = list(keys)
        if not keys:
            return []
        ks, karr, klens = _keys(keys)
        res = (ctypes.c_int * len(keys))()
        _check(_lib().cfs_kvc_exists(self._kv, len(keys), karr, klens, res), "exists")
        return [bool(r) for r in res]

    def delete(self, keys):
        keys = list(keys)
        if not keys:
            return []
        ks, karr, klens = _keys(keys)
        res = (ctypes.c_int * len(keys))()
        _check(_lib().cfs_kvc_delete(self._kv, len(keys), karr, klens, res), "delete")
        return [bool(r) for r in res]

    def clear(self):
        _check(_lib().cfs_kvc_clear(self._kv), "clear")

    def stats(self, reclaim=False):
        info = _Info()
        _check(_lib().cfs_kvc_stats(self._kv, 1 if reclaim else 0, ctypes.byref(info)), "stats")
        return {f: getattr(info, f) for f, _ in _Info._fields_ if f not in ("dir", "spare")}
