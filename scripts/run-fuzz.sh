#!/usr/bin/env bash
# Runs every libFuzzer target in DIR for SECONDS each over its corpus in
# CORPUS/<name>, then prints "N passed, N failed". A crash leaves the
# crashing input in CORPUS/<name>-crashes/ to be fixed and added to the
# corpus (which `make test` then replays forever).
set -u
dir=$1 corpus=$2 secs=${3:-30}
pass=0 fail=0
for f in "$dir"/fuzz-*; do
  [ -x "$f" ] || continue
  name=${f##*/fuzz-}
  mkdir -p "$corpus/$name" "/tmp/cfs-fuzz-work/$name"
  crashes="$corpus/$name-crashes"
  echo "fuzz: $name for ${secs}s"
  # New inputs go to a scratch dir so the checked-in corpus only changes by hand.
  if "$f" -max_total_time="$secs" -print_final_stats=0 -artifact_prefix="/tmp/cfs-fuzz-work/$name-" \
       "/tmp/cfs-fuzz-work/$name" "$corpus/$name" > "/tmp/cfs-fuzz-work/$name.log" 2>&1; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    mkdir -p "$crashes"; cp /tmp/cfs-fuzz-work/"$name"-* "$crashes"/ 2>/dev/null
    echo "fuzz: $name FAILED; tail of its log:"; tail -30 "/tmp/cfs-fuzz-work/$name.log"
  fi
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
