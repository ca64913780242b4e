#!/usr/bin/env bash
# meta-proto-diff.sh [REV] [BUILD] - differential check of the meta message
# codecs: src/meta/meta_proto.c at git revision REV (default HEAD) against
# the working tree's, over random messages of every type, their
# truncations and mutations, and tests/fuzz/corpus/meta_proto
# (tests/meta/meta_proto_diff.c). Needs BUILD (default build) built for
# libcfs_common.a. ITERS (default 200) sets messages per type and
# direction; SAN="-fsanitize=address,undefined" runs it sanitized.
# Exit 0 and a summary when both agree, else the first difference.
set -eu
rev=${1:-HEAD} build=${2:-build}
src=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d /tmp/meta-proto-diff.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
git -C "$src" show "$rev:src/meta/meta_proto.c" > "$tmp/old_meta_proto.c"
ren=""
for s in meta_rpc_name meta_rpc_is_mutation meta_rpc_req_encode meta_rpc_req_decode \
         meta_rpc_resp_encode meta_rpc_resp_decode meta_rpc_plus_put meta_rpc_plus_next; do
  ren="$ren -D$s=old_$s"
done
cf="-O1 -g -std=gnu11 -D_GNU_SOURCE -I$src/src ${SAN:-}"
cc=${CC:-cc}
$cc $cf $ren -c "$tmp/old_meta_proto.c" -o "$tmp/old.o"
$cc $cf -c "$src/src/meta/meta_proto.c" -o "$tmp/new.o"
$cc $cf -c "$src/tests/meta/meta_proto_diff.c" -o "$tmp/diff.o"
$cc ${SAN:-} "$tmp/old.o" "$tmp/new.o" "$tmp/diff.o" "$src/$build/src/common/libcfs_common.a" \
  -o "$tmp/meta_proto_diff" -lpthread
"$tmp/meta_proto_diff" "${ITERS:-200}" "$src/tests/fuzz/corpus/meta_proto"
