#!/usr/bin/env bash
# `chainfs bench storage` compared the server's 4 KiB random reads, served
# from the page cache (the server's default cached-read-max 64K: a 1 GiB
# data set was all resident after one round), with fio's O_DIRECT reads
# of the disk. The bench now starts the server with --cached-read-max=0.
# This runs it at its smallest (4 MiB, one round of 1 s phases) and
# checks that it says so and that no page of the server's block files is
# in the page cache afterwards (fincore), i.e. every read went O_DIRECT.
# With --qd-rand 16 the batched phase (2 threads x 8) is also compared
# with fio batched (2 jobs that each submit 8 and reap all 8), and the
# write phase with fio --sync=dsync.
set -u
bin=${CFS_BIN:?}
command -v fio >/dev/null || { echo "skip: no fio"; exit 77; }
command -v fincore >/dev/null || { echo "skip: no fincore"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }

out=$(timeout 90 "$bin" bench storage --dir "$tmp/sb" --size-mb 4 --rounds 1 --seconds 1 \
	--qd-rand 16 2>&1)
rc=$?
printf '%s\n' "$out"
check "exit 0" '[ $rc = 0 ]'
check "fio's job printed" 'printf "%s\n" "$out" | grep -q "^fio job: --ioengine=io_uring --direct=1"'
check "server reads said O_DIRECT" 'printf "%s\n" "$out" | grep -q "server reads: all O_DIRECT"'
check "CPU per random read printed" 'printf "%s\n" "$out" | grep -q "rand read batched .*cpu us/read"'
# The batched phase is also compared with fio driven the same way (jobs
# of 8 reads that each wait for all 8), besides fio's plain depth.
check "batched vs fio batched per round" 'printf "%s\n" "$out" | grep -qE "^1 +  vs fio batched +IOPS +[0-9]+ IOPS +[0-9.]+%"'
check "its median printed" 'printf "%s\n" "$out" | grep -qE "rand read batched vs fio batched [0-9.]+%"'
check "fio batched job printed" 'printf "%s\n" "$out" | grep -q -- "--iodepth_batch_complete_min=8"'
# The write phase is also compared with fio doing the server's durable
# work: O_DSYNC writes, each durable when it completes.
check "write vs fio dsync per round" 'printf "%s\n" "$out" | grep -qE "^1 +  vs fio dsync +MiB/s +[0-9]+ MiB/s +[0-9.]+%"'
check "dsync median printed" 'printf "%s\n" "$out" | grep -qE "vs fio dsync [0-9.]+%\)"'
check "fio dsync job printed" 'printf "%s\n" "$out" | grep -q -- "--sync=dsync"'
files=$(find "$tmp/sb/target/data" -type f -name 'f*')
check "block files there" '[ -n "$files" ]'
pages=$(fincore -n -b -o PAGES $files 2>/dev/null | awk '{s += $1} END {print s + 0}')
check "no block file page resident (got $pages)" '[ "$pages" = 0 ]'
exit $fail
