#!/usr/bin/env bash
# `chainfs bench fuse --only mtcreate` (issue 13: 8 threads in 8 directories
# against one thread). Runs on two local directories standing in for the
# mount and the raw directory (the phase only needs directories), small:
# checks the rows for 1 and T threads and the scaling rows are printed
# with rates, that nothing is left behind, that a directory it cannot make
# fails the run with a message and still cleans up, and that
# --mt-threads below 2 is refused.
set -u
bin=${CFS_BIN:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/m" "$tmp/r"
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }

out=$(timeout 60 "$bin" bench fuse --mount "$tmp/m" --raw-dir "$tmp/r" --only mtcreate \
	--files 400 --mt-threads 4 2>&1)
rc=$?
printf '%s\n' "$out"
check "exit 0" '[ $rc = 0 ]'
for ph in create stat unlink; do
	check "$ph, 1 thread row with rates" \
		'printf "%s\n" "$out" | grep -Eq "^$ph, 1 thr 8 dirs +ops/s +[0-9]+ +[0-9]+ "'
	check "$ph, 4 threads row with rates" \
		'printf "%s\n" "$out" | grep -Eq "^$ph, 4 thr 8 dirs +ops/s +[0-9]+ +[0-9]+ "'
	check "$ph scaling row" \
		'printf "%s\n" "$out" | grep -Eq "^$ph, 4 thr / 1 thr +scaling +[0-9.]+x +[0-9.]+x"'
done
check "create scaling row states the 3x goal" \
	'printf "%s\n" "$out" | grep -Eq "^create, 4 thr / 1 thr .*>= 3x one thread: (met|missed)"'
check "no other workload ran" '! printf "%s\n" "$out" | grep -q "^seq\|^create (open"'
check "mount side cleaned up" '[ -z "$(ls -A "$tmp/m")" ]'
check "raw side cleaned up" '[ -z "$(ls -A "$tmp/r")" ]'

# A file where a directory of the phase goes: mkdir fails on the raw side.
mkdir -p "$tmp/r/cfs-bench-fuse"
: > "$tmp/r/cfs-bench-fuse/mt.d0003"
out=$(timeout 60 "$bin" bench fuse --mount "$tmp/m" --raw-dir "$tmp/r" --only mtcreate \
	--files 100 2>&1)
rc=$?
printf '%s\n' "$out"
check "mkdir failure: exit 1" '[ $rc = 1 ]'
check "mkdir failure: names the path" 'printf "%s\n" "$out" | grep -q "mkdir .*mt.d0003: File exists"'
check "mkdir failure: raw rows say failed" \
	'printf "%s\n" "$out" | grep -Eq "^create, 1 thr 8 dirs +ops/s +[0-9]+ +failed"'
check "mkdir failure: the directories it made are gone" \
	'[ "$(ls -A "$tmp/r/cfs-bench-fuse")" = mt.d0003 ]'
rm -rf "$tmp/r/cfs-bench-fuse"

out=$(timeout 10 "$bin" bench fuse --mount "$tmp/m" --raw-dir "$tmp/r" --only mtcreate \
	--mt-threads 1 2>&1)
rc=$?
check "--mt-threads 1 refused: exit 2" '[ $rc = 2 ]'
check "--mt-threads 1 refused: says which option" 'printf "%s\n" "$out" | grep -q "mt-threads"'
exit $fail
