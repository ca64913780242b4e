#!/usr/bin/python3
"""A PyTorch Dataset that reads random fixed-size samples of one large file
on a ChainFS mount through a USRBIO ring (zero-copy: the mount reads from
storage straight into shared memory this process maps).

Each batch of sample indices becomes one ring round trip: every sample is
prepared as one read into its own slice of a registered SharedMemory
buffer, the ring is submitted once, and wait() returns when all are in.
Samples come back as torch tensors when PyTorch is installed (Debian's
python3-torch), else as numpy arrays (python3-numpy), else as bytes.

Usage with a DataLoader (each worker process opens its own ring, since
rings belong to the process that made them):

    ds = RingSampleDataset("/mnt/chainfs/train.bin", sample_size=4096)
    sampler = torch.utils.data.BatchSampler(
        torch.utils.data.RandomSampler(ds), batch_size=256, drop_last=False)
    for batch in torch.utils.data.DataLoader(ds, sampler=sampler, batch_size=None):
        ...  # batch: uint8 tensor [256, 4096]

From the command line (make a file, read random batches, check them
against the normal file API, print the rate):

    PYTHONPATH=build/python /usr/bin/python3 examples/torch_dataset.py \\
        --file MNT/train.bin --create-mb 256 --sample-size 4096 --batch 256 --batches 100 --verify
"""

import argparse
import os
import random
import sys
import time
from multiprocessing.shared_memory import SharedMemory

import chainfs

try:
    import torch
    from torch.utils.data import Dataset
except ImportError:  # numpy (or bytes) only
    torch = None
    Dataset = object
try:
    import numpy
except ImportError:
    numpy = None


class RingSampleReader:
    """Reads batches of samples of PATH through one ring. One per process."""

    def __init__(self, path, sample_size, max_batch):
        self.sample_size = sample_size
        self.max_batch = max_batch
        mp = chainfs.extract_mount_point(path)
        if mp is None:
            raise OSError(22, "not on a ChainFS mount", path)
        self.fd = os.open(path, os.O_RDONLY)
        try:
            chainfs.register_fd(self.fd)
        except BaseException:
            os.close(self.fd)
            raise
        shm = SharedMemory(create=True, size=sample_size * max_batch)
        # The iovec maps the shm file itself: the SharedMemory object and
        # its name can go at once (the mount holds its own mapping).
        try:
            self.iov = chainfs.make_iovec(shm, mp)
        finally:
            shm.close()
            shm.unlink()
        self.ring = chainfs.make_ioring(mp, max_batch, for_read=True)

    def read(self, indices):
        """Returns one buffer (memoryview) holding the samples INDICES in
        order, valid until the next call."""
        n = len(indices)
        if n > self.max_batch:
            raise ValueError("batch of %d > max_batch %d" % (n, self.max_batch))
        ss = self.sample_size
        for slot, idx in enumerate(indices):
            self.ring.prepare(self.iov[slot * ss:(slot + 1) * ss], True, self.fd, idx * ss,
                              userdata=slot)
        done = self.ring.submit().wait(min_results=n)
        if len(done) != n:
            raise OSError(5, "ring returned %d of %d samples" % (len(done), n))
        for d in done:
            if d.result != ss:
                err = -d.result if d.result < 0 else 5
                raise OSError(err, "sample %d: result %d" % (indices[d.userdata], d.result))
        return memoryview(self.iov[:n * ss])

    def close(self):
        self.ring.destroy()
        del self.iov
        chainfs.deregister_fd(self.fd)
        os.close(self.fd)


class RingSampleDataset(Dataset):
    """Samples of SAMPLE_SIZE bytes of one file. ds[i] is one sample;
    ds[[i, j, ...]] (what a BatchSampler with batch_size=None hands in) is
    a [len, sample_size] uint8 batch read in one ring round trip."""

    def __init__(self, path, sample_size, max_batch=256):
        self.path = path
        self.sample_size = sample_size
        self.max_batch = max_batch
        self.count = os.stat(path).st_size // sample_size
        self._reader = None
        self._pid = None

    def __len__(self):
        return self.count

    def _get_reader(self):
        if self._pid != os.getpid():  # first use, or a DataLoader worker after fork
            self._reader = RingSampleReader(self.path, self.sample_size, self.max_batch)
            self._pid = os.getpid()
        return self._reader

    def _convert(self, buf, n):
        # Copy out of the ring buffer: the next batch reuses it.
        if torch is not None:
            return torch.frombuffer(bytearray(buf), dtype=torch.uint8).reshape(n, self.sample_size)
        if numpy is not None:
            return numpy.frombuffer(buf, dtype=numpy.uint8).reshape(n, self.sample_size).copy()
        return [bytes(buf[i * self.sample_size:(i + 1) * self.sample_size]) for i in range(n)]

    def __getitem__(self, index):
        single = isinstance(index, int)
        indices = [index] if single else list(index)
        for i in indices:
            if not 0 <= i < self.count:
                raise IndexError(i)
        out = []
        for lo in range(0, len(indices), self.max_batch):
            part = indices[lo:lo + self.max_batch]
            out.append(self._convert(self._get_reader().read(part), len(part)))
        if single:
            return out[0][0]
        if len(out) == 1:
            return out[0]
        if torch is not None:
            return torch.cat(out)
        if numpy is not None:
            return numpy.concatenate(out)
        return [s for part in out for s in part]

    def close(self):
        if self._reader is not None and self._pid == os.getpid():
            self._reader.close()
        self._reader = None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--file", required=True)
    ap.add_argument("--create-mb", type=int, default=0,
                    help="first write a file of this many MiB of random bytes")
    ap.add_argument("--sample-size", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--verify", action="store_true",
                    help="compare every sample with os.pread through the mount")
    ap.add_argument("--compare", action="store_true",
                    help="then read the same samples with os.pread through FUSE (one thread, "
                         "as a plain Dataset would) and print both rates")
    a = ap.parse_args(argv)
    if a.create_mb:
        with open(a.file, "wb") as f:
            for _ in range(a.create_mb):
                f.write(os.urandom(1 << 20))
    ds = RingSampleDataset(a.file, a.sample_size, a.batch)
    rnd = random.Random(1)
    vfd = os.open(a.file, os.O_RDONLY) if a.verify else -1
    t0 = time.monotonic()
    bad = 0
    for _ in range(a.batches):
        idx = [rnd.randrange(len(ds)) for _ in range(a.batch)]
        batch = ds[idx]
        if a.verify:
            for k, i in enumerate(idx):
                got = bytes(memoryview(batch[k].numpy() if torch is not None else batch[k]))
                if got != os.pread(vfd, a.sample_size, i * a.sample_size):
                    bad += 1
    el = time.monotonic() - t0
    ds.close()
    if vfd >= 0:
        os.close(vfd)
    total = a.batches * a.batch
    print("ring (%s): %d samples of %d B in %.2f s: %.0f samples/s, %.1f MiB/s%s" % (
        "torch" if torch is not None else "numpy" if numpy is not None else "bytes",
        total, a.sample_size, el, total / el, total * a.sample_size / el / (1 << 20),
        ", %d mismatches" % bad if a.verify else ""))
    if a.compare:
        rnd = random.Random(2)  # other samples of the same file
        fd = os.open(a.file, os.O_RDONLY)
        # Start from a cold page cache (the ring bypasses it; a file just
        # written through FUSE would otherwise be served from memory).
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        t0 = time.monotonic()
        for _ in range(a.batches):
            for _ in range(a.batch):
                os.pread(fd, a.sample_size, rnd.randrange(len(ds)) * a.sample_size)
        el2 = time.monotonic() - t0
        os.close(fd)
        print("pread through FUSE: %.2f s: %.0f samples/s; ring/pread = %.2fx" % (
            el2, total / el2, el2 / el))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
