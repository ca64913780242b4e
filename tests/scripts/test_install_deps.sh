#!/usr/bin/env bash
# Regression test for issue 16 "A newcomer's first command": plain `make`
# on a fresh machine stopped inside CMake with "A required package was not
# found". Now `make` runs scripts/install-deps.sh first. This checks, with
# stub dpkg-query/id/sudo/apt-get on PATH (nothing is installed for real):
#  1. `make` (target all) runs the package check before the build;
#  2. a missing package as root is passed to apt-get install;
#  3. a missing package for a user without usable sudo stops with exit 1
#     and exactly one line that names `make deps`, and apt-get is not run;
#  4. nothing missing: exit 0 without apt-get.
set -u
src=${CFS_SRC:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }

# 1. make's plan for `all` runs install-deps.sh before cmake.
plan=$(make -n -C "$src" all 2>/dev/null)
first_deps=$(printf '%s\n' "$plan" | grep -n 'install-deps.sh' | head -1 | cut -d: -f1)
check "make (all) runs install-deps.sh" '[ -n "$first_deps" ]'

mkdir -p "$tmp/bin"
# dpkg-query: every package installed except those in $MISSING.
cat > "$tmp/bin/dpkg-query" <<'S'
#!/bin/bash
pkg=${@: -1}
for m in $MISSING; do [ "$m" = "$pkg" ] && exit 1; done
echo -n "install ok installed"
S
cat > "$tmp/bin/id" <<'S'
#!/bin/bash
echo "$FAKE_UID"
S
cat > "$tmp/bin/apt-get" <<'S'
#!/bin/bash
echo "apt-get $*" >> "$LOG"
S
cat > "$tmp/bin/sudo" <<'S'
#!/bin/bash
[ "$1" = "-n" ] && exit 1
exit 1
S
chmod +x "$tmp/bin/"*
export LOG="$tmp/apt.log" PATH="$tmp/bin:$PATH"

# 2. root, fuse3 missing: apt-get install gets it.
: > "$LOG"
MISSING="fuse3" FAKE_UID=0 bash "$src/scripts/install-deps.sh" > "$tmp/out2" 2>&1 < /dev/null
rc=$?
check "root: exit 0" '[ $rc -eq 0 ]'
check "root: apt-get install fuse3" 'grep -q "install .*fuse3" "$LOG"'

# 3. non-root, sudo needs a password, no terminal: one line naming make deps.
: > "$LOG"
MISSING="fuse3 liblmdb-dev" FAKE_UID=1000 bash "$src/scripts/install-deps.sh" > "$tmp/out3" 2>&1 < /dev/null
rc=$?
check "user: exit 1" '[ $rc -eq 1 ]'
check "user: one line" '[ "$(wc -l < "$tmp/out3")" -eq 1 ]'
check "user: names make deps" 'grep -q "make deps" "$tmp/out3"'
check "user: names the packages" 'grep -q "fuse3" "$tmp/out3" && grep -q "liblmdb-dev" "$tmp/out3"'
check "user: apt-get not run" '[ ! -s "$LOG" ]'
cat "$tmp/out3"

# 4. nothing missing.
: > "$LOG"
MISSING="" FAKE_UID=1000 bash "$src/scripts/install-deps.sh" > "$tmp/out4" 2>&1 < /dev/null
rc=$?
check "all present: exit 0" '[ $rc -eq 0 ]'
check "all present: apt-get not run" '[ ! -s "$LOG" ]'
exit $fail
