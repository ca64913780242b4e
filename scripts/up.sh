#!/usr/bin/env bash
# make up: start a local cluster with `chainfs up` (mgmtd, meta, three
# storage services with two targets each, a replication-3 chain table and
# the FUSE mount), then show it working: write a file, list it, read it
# back, and print the cluster's state. `make down` stops it.
set -eu
bin=$1 data=$2 mnt=$3

"$bin" up --dir "$data" --mount "$mnt"

conf="$data/cluster.conf"
get() { sed -n "s/^$1 = //p" "$conf"; }
cluster_id=$(get cluster_id)
mgmtd="127.0.0.1:$(get mgmtd_port)"
mnt_abs=$(get mount)
admin() { "$bin" admin "$1" --mgmtd "$mgmtd" --cluster-id "$cluster_id" --secret-file "$data/secret"; }

echo
echo "== demo: write, list, read back =="
demo="$mnt_abs/hello-chainfs.txt"
echo "hello from ChainFS, written at $(date -u +%FT%TZ)" > "$demo.tmp"
mv -f "$demo.tmp" "$demo"
head -c 8388608 /dev/urandom > "$mnt_abs/random-8MiB.bin.tmp"
mv -f "$mnt_abs/random-8MiB.bin.tmp" "$mnt_abs/random-8MiB.bin"
ls -l "$mnt_abs"
cat "$demo"
echo "random-8MiB.bin crc: $(cksum < "$mnt_abs/random-8MiB.bin")"

echo
echo "== cluster status =="
admin list-nodes || true
admin list-chains || true
echo
echo "ChainFS is mounted on $mnt_abs; stop it with: make down (or $bin down --dir $data)"
