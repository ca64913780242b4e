#!/usr/bin/env bash
# Runs every libFuzzer target in DIR for SECONDS each over its corpus in
# CORPUS/<name>, then prints "N passed, N failed". A crash leaves the
# crashing input in CORPUS/<name>-crashes/ to be fixed and added to the
# corpus (which `make test` then replays forever).
#
# Targets run FUZZ_JOBS at a time (default: the number of CPUs). Each one is
# a single-threaded process, so on a 2-core CI machine two at once halve the
# wall time without shortening any target's own fuzzing time.
set -u
dir=$1 corpus=$2 secs=${3:-30}
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
work=/tmp/cfs-fuzz-work

run_one() {   # name binary -> exit status of the fuzzer
  local name=$1 f=$2
  mkdir -p "$corpus/$name" "$work/$name"
  # New inputs go to a scratch dir so the checked-in corpus only changes by hand.
  "$f" -max_total_time="$secs" -print_final_stats=0 -artifact_prefix="$work/$name-" \
    "$work/$name" "$corpus/$name" > "$work/$name.log" 2>&1
}

report() {    # name status: count it, keep a crash's inputs
  local name=$1 rc=$2
  if [ "$rc" -eq 0 ]; then
    pass=$((pass + 1)); echo "fuzz: $name passed"
  else
    fail=$((fail + 1))
    mkdir -p "$corpus/$name-crashes"; cp "$work/$name"-* "$corpus/$name-crashes"/ 2>/dev/null
    echo "fuzz: $name FAILED; tail of its log:"; tail -30 "$work/$name.log"
  fi
}

mkdir -p "$work"
pass=0 fail=0
declare -A names=()   # pid -> target name
for f in "$dir"/fuzz-*; do
  [ -x "$f" ] || continue
  name=${f##*/fuzz-}
  while [ "${#names[@]}" -ge "$jobs" ]; do
    wait -n -p done_pid; rc=$?
    report "${names[$done_pid]}" "$rc"; unset "names[$done_pid]"
  done
  echo "fuzz: $name for ${secs}s"
  run_one "$name" "$f" &
  names[$!]=$name
done
while [ "${#names[@]}" -gt 0 ]; do
  wait -n -p done_pid; rc=$?
  report "${names[$done_pid]}" "$rc"; unset "names[$done_pid]"
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
