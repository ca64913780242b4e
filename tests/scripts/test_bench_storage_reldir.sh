#!/usr/bin/env bash
# `chainfs bench storage --replicas R --dir D` with a relative D failed:
# the mgmtd it starts got the kv URL lmdb://D/kv, which reads D as a host
# ("lmdb URL needs an absolute path"), and the bench gave up after 10 s of
# init-cluster retries. The bench now resolves D once at start. This runs
# the chain bench on a relative directory at its smallest (4 MiB, one
# round of 1 s phases, ~5 s) and checks it ends with its medians and
# prints the absolute directory; and that a --dir it cannot create is a
# clear error, not a retry loop.
set -u
bin=${CFS_BIN:?}
command -v fio >/dev/null || { echo "skip: no fio"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }

out=$(timeout 90 "$bin" bench storage --replicas 1 --dir sb --size-mb 4 --rounds 1 \
	--seconds 1 --qd-rand 8 2>&1)
rc=$?
printf '%s\n' "$out"
check "relative --dir: exit 0" '[ $rc = 0 ]'
check "relative --dir: the medians printed" 'printf "%s\n" "$out" | grep -q "^median: write vs fio"'
check "relative --dir: resolved to $tmp/sb" 'printf "%s\n" "$out" | grep -q "dir=$tmp/sb "'
[ $rc = 0 ] || cat sb/cluster.log 2>/dev/null

out=$(timeout 20 "$bin" bench storage --replicas 1 --dir no/such/dir --size-mb 4 2>&1)
rc=$?
check "missing parent: exit 1" '[ $rc = 1 ]'
check "missing parent: says which --dir" 'printf "%s\n" "$out" | grep -q -- "--dir no/such/dir: No such file"'
exit $fail
