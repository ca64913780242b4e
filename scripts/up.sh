#!/usr/bin/env bash
# make up: start a local cluster with a mounted file system, or, while the
# roles are still being built, say what exists.
set -eu
bin=$1 data=$2 mnt=$3
if "$bin" up --help >/dev/null 2>&1; then
  exec "$bin" up --dir "$data" --mount "$mnt"
fi
echo "chainfs is built at $bin; 'chainfs up' (local cluster + FUSE mount) is not built yet."
echo "What exists now:"
"$bin" --help
"$bin" version
