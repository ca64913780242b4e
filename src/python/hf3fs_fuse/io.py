"""3FS's Python USRBIO API (``hf3fs_fuse.io``) over ChainFS.

Code written for 3FS runs unchanged: make_iovec(shm, mount_point,
block_size=0, numa=-1), make_ioring(mount_point, entries, for_read=True,
io_depth=0, priority=None, timeout=None, numa=-1, flags=0), register_fd,
deregister_fd, extract_mount_point, and on a ring prepare(iov, read, fd,
off, userdata=None), submit(), wait(max_results=0, min_results=0,
timeout=None) returning finished iovecs with .result and .userdata.

Differences from 3FS, all on the safe side: the iovec returned by
make_iovec is itself the buffer (3FS wraps it in a Python object without
the buffer protocol; slicing and item assignment work the same); the
buffer's registration lasts while any slice or in-flight I/O uses it (3FS
drops it when the outer object dies); the SharedMemory may be closed while
the iovec lives (the iovec maps the shm file itself).
"""

import os

import chainfs
from chainfs import (  # noqa: F401  (3FS's names)
    deregister_fd,
    extract_mount_point,
    ioring,
    iovec,
    punch_hole,
    register_fd,
)


# The wrappers keep 3FS's parameter names, so keyword calls work too.
def make_iovec(shm, hf3fs_mount_point, block_size=0, numa=-1):
    return chainfs.make_iovec(shm, hf3fs_mount_point, block_size, numa)


def make_ioring(hf3fs_mount_point, entries, for_read=True, io_depth=0, priority=None,
                timeout=None, numa=-1, flags=0):
    return chainfs.make_ioring(hf3fs_mount_point, entries, for_read, io_depth, priority,
                               timeout, numa, flags)


def read_file(fn, hf3fs_mount_point=None, block_size=1 << 30, off=0, priority=None, cb=None):
    return chainfs.read_file(fn, hf3fs_mount_point, block_size, off, priority, cb)


make_iovec.__doc__ = chainfs.make_iovec.__doc__
make_ioring.__doc__ = chainfs.make_ioring.__doc__
read_file.__doc__ = chainfs.read_file.__doc__


class IorPriority(object):
    HIGH = -1
    NORMAL = 0
    LOW = 1


def force_fsync(fd):
    """Makes the file's length visible to stat (3FS needs this after ring
    writes; on ChainFS it is an fsync)."""
    os.fsync(fd)
    return 0


def hardlink(target, link_name):
    os.link(target, link_name)
