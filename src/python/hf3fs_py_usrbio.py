"""3FS's low-level binding module name (hf3fs_py_usrbio) over ChainFS's."""
from chainfs._chainfs import (  # noqa: F401
    deregister_fd,
    extract_mount_point,
    ioring,
    iovec,
    punch_hole,
    register_fd,
)
from hf3fs_fuse.io import force_fsync, hardlink  # noqa: F401
