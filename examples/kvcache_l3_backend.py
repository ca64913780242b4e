"""An inference engine's "L3 cache" storage backend on ChainFS KVCache.

The engine hands over pages of attention keys/values under prefix-hash
keys; this backend stores them in a shared ChainFS KVCache namespace so
every engine on every host can reuse them. Interface (as engines' storage
backends have it): batch_set, batch_get, exists. Run with a cluster up:

    chainfs kvcache create l3 --mount MNT --page-size 64K --capacity 1G
    /usr/bin/python3 examples/kvcache_l3_backend.py MNT CLUSTER_DIR
"""
import hashlib
import sys

from chainfs.kvcache import KVCacheStore


class ChainFSL3Backend:
    def __init__(self, mount, cluster_dir, namespace="l3", batch_pages=64):
        self.store = KVCacheStore(mount, namespace, cluster_dir=cluster_dir,
                                  batch_pages=batch_pages)
        self.page_size = self.store.page_size

    @staticmethod
    def key(token_ids):
        """Prefix hash of a token sequence: identical prefixes, identical pages."""
        return hashlib.sha256(repr(tuple(token_ids)).encode()).digest()

    def batch_set(self, keys, values):
        """values: buffer-protocol pages (bytes, numpy arrays, tensor.numpy()).
        True per key stored (or already there: keys are content hashes)."""
        return [r == 0 for r in self.store.batch_set(keys, values)]

    def batch_get(self, keys, outs):
        """Fills outs[i]; True per key found. A miss means: recompute."""
        return [r >= 0 for r in self.store.batch_get(keys, outs)]

    def exists(self, keys):
        return self.store.batch_exists(keys)

    def close(self):
        self.store.close()


def main(mount, cluster_dir):
    be = ChainFSL3Backend(mount, cluster_dir)
    prefixes = [list(range(n)) for n in range(1, 9)]
    keys = [be.key(p) for p in prefixes]
    pages = [bytes([i]) * 4096 for i in range(len(keys))]
    assert all(be.batch_set(keys, pages))
    outs = [bytearray(4096) for _ in keys]
    assert all(be.batch_get(keys, outs))
    assert [bytes(o) for o in outs] == pages
    assert be.exists(keys + [be.key([999])]) == [True] * len(keys) + [False]
    be.close()
    print("l3 backend: %d pages stored, read back and verified" % len(keys))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
