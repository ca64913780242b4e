"""ChainFS native zero-copy I/O (USRBIO rings) from Python.

The C part (chainfs._chainfs) wraps the USRBIO C library: an ``iovec`` is a
range of a buffer registered with a ChainFS mount (it supports the buffer
protocol and slicing ``iov[a:b]`` into a sub-iovec that shares the memory),
an ``ioring`` carries prepared reads or writes to the mount and their
completions back. The mount moves the data between storage and the
buffer's pages; nothing is copied through FUSE.

Typical use::

    import chainfs, os
    from multiprocessing.shared_memory import SharedMemory

    mp = chainfs.extract_mount_point(path)
    shm = SharedMemory(create=True, size=1 << 20)
    iov = chainfs.make_iovec(shm, mp)            # register the buffer
    ring = chainfs.make_ioring(mp, entries=64)   # a read ring
    fd = os.open(path, os.O_RDONLY)
    chainfs.register_fd(fd)
    ring.prepare(iov[:4096], True, fd, 0, userdata="first page")
    done = ring.submit().wait(min_results=1)[0]
    print(done.result, done.userdata, bytes(done[:16]))
    chainfs.deregister_fd(fd); os.close(fd)

``hf3fs_fuse.io`` exposes the same calls under 3FS's names, so code written
for 3FS's USRBIO runs unchanged. Errors from the C library raise OSError
with the errno (ring completions carry -errno in ``.result`` instead).
"""

import os
import uuid

from chainfs._chainfs import (  # noqa: F401  (re-exported API)
    IOR_ALLOW_READ_UNCOMMITTED,
    IOR_FORBID_READ_HOLES,
    _iovec_from_shm,
    deregister_fd,
    extract_mount_point,
    ioring,
    iovec,
    is_hf3fs,
    punch_hole,
    register_fd,
)

is_chainfs = is_hf3fs

# The mount's virtual directory where a symlink named after a buffer's id
# and pointing at its /dev/shm file registers the buffer (3FS's protocol).
VIRT_IOVS_DIR = "3fs-virt/iovs"

__all__ = [
    "IOR_ALLOW_READ_UNCOMMITTED",
    "IOR_FORBID_READ_HOLES",
    "deregister_fd",
    "extract_mount_point",
    "ioring",
    "iovec",
    "is_chainfs",
    "make_ioring",
    "make_iovec",
    "read_file",
    "register_fd",
]


def _shm_path(shm):
    name = shm.name
    return name if name.startswith("/dev/shm/") else os.path.join("/dev/shm", name.lstrip("/"))


def make_iovec(shm, mount_point, block_size=0, numa=-1):
    """Registers a multiprocessing.shared_memory.SharedMemory (or any object
    with .name and .size naming a /dev/shm file) with the mount at
    MOUNT_POINT and returns the iovec over all of it.

    The iovec maps the shm file itself, so the SharedMemory may be closed
    and unlinked once this returns (the mount keeps its own mapping); the
    registration ends when the iovec and every slice of it are gone.
    """
    if block_size < 0:
        raise OSError(22, os.strerror(22))
    target = os.path.normpath(_shm_path(shm))
    ident = uuid.uuid4()
    suffix = ".b%d" % block_size if block_size > 0 else ""
    # The dashed UUID form, as 3FS's io.py writes it; the daemon also
    # takes the 32 plain hex digits that the C library uses.
    link = os.path.join(mount_point, VIRT_IOVS_DIR, str(ident) + suffix)
    os.symlink(target, link)
    try:
        return _iovec_from_shm(target, shm.size, ident.bytes, mount_point,
                               block_size, numa, link)
    except BaseException:
        try:
            os.unlink(link)
        except OSError:
            pass
        raise


def make_ioring(mount_point, entries, for_read=True, io_depth=0, priority=None,
                timeout=None, numa=-1, flags=0):
    """Creates a ring of ENTRIES slots on the mount at MOUNT_POINT.

    io_depth > 0: the mount takes exactly io_depth I/Os per batch; 0: as soon
    as possible; < 0: as soon as possible, at most -io_depth per batch.
    timeout: milliseconds (or a timedelta) the mount waits to fill a batch.
    flags: IOR_ALLOW_READ_UNCOMMITTED, IOR_FORBID_READ_HOLES (a read of a
    hole fails instead of returning zeros).
    """
    return ioring(mount_point, entries, for_read, io_depth, priority, timeout, numa, flags)


def read_file(path, mount_point=None, block_size=1 << 26, off=0, priority=None, cb=None):
    """Reads the file at PATH from OFF to its end through a ring, BLOCK_SIZE
    bytes at a time. Returns the bytes, or, with CB, calls
    cb(memoryview_of_chunk, offset) for each chunk and returns None (CB may
    return an int, the next offset, or True to stop)."""
    if mount_point is None:
        mount_point = extract_mount_point(path)
        if mount_point is None:
            raise OSError(22, "not on a ChainFS mount", path)
    from multiprocessing.shared_memory import SharedMemory

    fd = os.open(path, os.O_RDONLY)
    shm = None
    registered = False
    try:
        register_fd(fd)
        registered = True
        shm = SharedMemory(create=True, size=block_size)
        iov = make_iovec(shm, mount_point)
        ring = make_ioring(mount_point, 1, True, 0, priority)
        parts = []
        roff = off
        while True:
            ring.prepare(iov, True, fd, roff)
            done = ring.submit().wait(min_results=1)[0]
            n = done.result
            del done
            if n < 0:
                raise OSError(-n, os.strerror(-n), path)
            if n == 0:
                break
            if cb is None:
                parts.append(bytes(shm.buf[:n]))
            else:
                res = cb(shm.buf[:n], roff)
                if type(res) is int:
                    roff = res
                    continue
                if res:
                    return None
            if n < block_size:
                break
            roff += n
        del ring, iov
        return None if cb is not None else b"".join(parts)
    finally:
        if registered:
            deregister_fd(fd)
        os.close(fd)
        if shm is not None:
            shm.close()
            shm.unlink()
