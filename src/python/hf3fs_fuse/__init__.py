"""3FS-compatible names for ChainFS (see hf3fs_fuse.io)."""
