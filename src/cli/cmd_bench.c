/* cmd_bench.c - chainfs bench <group>: built-in load generators. Each group
 * lives in its own bench_<group>.c; add a row below to register one. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct cli_bench_cmd groups[] = {
	{ "rpc", cli_bench_rpc, "RPC round trips and bulk vs raw loopback TCP; --serve runs the echo server" },
	{ "chunk", cli_bench_chunk, "chunk engine vs fio: 1 MiB sequential write/read, 4 KiB random read" },
	{ "kv", cli_bench_kv, "KV engine: 3FS-style creates (1/8/64 clients), lookups, 10k scans vs fdatasync" },
	{ "meta", cli_bench_meta, "meta service over RPC: create/stat/readdir/unlink per second vs RPC ping, 1/2 instances, 1/8 clients" },
	{ "storage", cli_bench_storage, "storage server over loopback vs fio: 1 MiB seq write/read, 4 KiB random read QD 32" },
	{ "fuse", cli_bench_fuse, "fio through a ChainFS mount vs a local directory: 1 MiB seq write/read (1, 4 jobs), 4 KiB random read, create/stat/unlink" },
	{ "usrbio", cli_bench_usrbio, "shared-memory rings through a mount vs fio raw and fio through FUSE: 1 MiB seq write/read (1, 4 rings), 4K/64K random reads, daemon CPU/GiB" },
	{ "kvcache", cli_bench_kvcache, "KVCache page store: batch get/put of 64K/256K/2M pages (4 threads) vs fio randread and write/3 on the raw dir, index lookups/s, one file per page via FUSE and local disk" },
	{ NULL, NULL, NULL },
};

int cli_bench(int argc, char **argv)
{
	if (argc >= 2) {
		for (size_t i = 0; groups[i].name; i++)
			if (!strcmp(argv[1], groups[i].name))
				return groups[i].run(argc - 1, argv + 1);
	}
	FILE *out = argc >= 2 && strcmp(argv[1], "--help") ? stderr : stdout;
	if (argc >= 2 && strcmp(argv[1], "--help"))
		fprintf(stderr, "chainfs bench: unknown group '%s'\n", argv[1]);
	fprintf(out, "usage: chainfs bench <group> [options]\n\ngroups:\n");
	for (size_t i = 0; groups[i].name; i++)
		fprintf(out, "  %-8s %s\n", groups[i].name, groups[i].help);
	return out == stdout ? 0 : 2;
}
