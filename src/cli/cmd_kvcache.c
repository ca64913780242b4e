/* cmd_kvcache.c - `chainfs kvcache create|info|delete|clear`: KVCache
 * namespaces (include/chainfs.h "KVCache", docs/kvcache.md) from the
 * command line, through the library calls applications use. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainfs.h"
#include "cli/cli.h"
#include "common/clock.h"
#include "common/status.h"

static const char usage[] =
	"usage: chainfs kvcache create NAME --mount M [--page-size 256K] [--capacity 1G]\n"
	"                          [--dir kv/NAME] [--slabs 8] [--ttl-ms 0] [--prefill]\n"
	"                          [--durability sync|cache] [CLUSTER]\n"
	"       chainfs kvcache info|clear|delete NAME --mount M [--reclaim] [CLUSTER]\n"
	"CLUSTER: --cluster-dir D (a `chainfs up --dir`, default ./chainfs-data)\n"
	"         or --meta IP:PORT[,...] --cluster-id ID --secret-file F\n"
	"info prints the namespace and its counters (--reclaim first frees puts\n"
	"whose writer died); clear drops every entry; delete drops the index and\n"
	"the slab files. Sizes take K, M, G, T suffixes (powers of 1024).\n"
	"--ttl-ms: entries expire that long after their put (0: never).\n"
	"--prefill: write zeros over every page at create (capacity x replicas bytes\n"
	"of writes, once), so that puts overwrite written space (docs/kvcache.md).\n"
	"--durability: sync (default) returns a put after its pages were flushed to\n"
	"the device on every replica; cache after they were written and committed\n"
	"without a device flush: safe against any process crash, but after a power\n"
	"loss the last puts may read back as misses (never wrong bytes). Kept in the\n"
	"namespace: every client of it uses it (docs/kvcache.md \"Durability\").\n";

/* "256K" -> bytes; 0 on a malformed size. */
static uint64_t parse_size(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	int shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	}
	if (*end == 'i' || *end == 'B')
		end++;
	if (*end || end == s || v > (UINT64_MAX >> shift))
		return 0;
	return (uint64_t)v << shift;
}

int cli_kvcache(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : NULL, *name = argc > 2 ? argv[2] : NULL;
	const char *mount = NULL, *dir = NULL;
	uint64_t page = 256 << 10, cap = 1ull << 30;
	int slabs = 0, reclaim = 0, rc;
	struct cfs_kvc_opts o = { .cluster_dir = "./chainfs-data", .rings = 1 };
	char dirbuf[1100];

	if (!sub || !strcmp(sub, "--help") || !strcmp(sub, "-h")) {
		fputs(usage, sub ? stdout : stderr);
		return sub ? 0 : 2;
	}
	if (!name || name[0] == '-') {
		fputs(usage, stderr);
		return 2;
	}
	for (int i = 3; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--reclaim")) {
			reclaim = 1;
			continue;
		}
		if (!strcmp(a, "--prefill")) {
			o.flags |= CFS_KVC_PREFILL;
			continue;
		}
		if (!v) {
			fprintf(stderr, "chainfs kvcache: %s needs a value\n%s", a, usage);
			return 2;
		}
		i++;
		if (!strcmp(a, "--mount"))
			mount = v;
		else if (!strcmp(a, "--dir"))
			dir = v;
		else if (!strcmp(a, "--page-size"))
			page = parse_size(v);
		else if (!strcmp(a, "--capacity"))
			cap = parse_size(v);
		else if (!strcmp(a, "--slabs"))
			slabs = atoi(v);
		else if (!strcmp(a, "--ttl-ms"))
			o.ttl_ms = (uint32_t)strtoul(v, NULL, 10);
		else if (!strcmp(a, "--durability")) {
			if (!strcmp(v, "cache")) {
				o.flags |= CFS_KVC_CACHE;
			} else if (!strcmp(v, "sync")) {
				o.flags &= ~CFS_KVC_CACHE;
			} else {
				fprintf(stderr, "chainfs kvcache: --durability must be sync or cache, "
						"not '%s'\n", v);
				return 2;
			}
		}
		else if (!strcmp(a, "--cluster-dir"))
			o.cluster_dir = v;
		else if (!strcmp(a, "--meta")) {
			o.meta = v;
			o.cluster_dir = NULL;
		} else if (!strcmp(a, "--cluster-id"))
			o.cluster_id = v;
		else if (!strcmp(a, "--secret-file"))
			o.secret_file = v;
		else {
			fprintf(stderr, "chainfs kvcache: unknown option %s\n%s", a, usage);
			return 2;
		}
	}
	if (!mount) {
		fprintf(stderr, "chainfs kvcache: --mount is required\n%s", usage);
		return 2;
	}
	if (!strcmp(sub, "create")) {
		if (!page || page > UINT32_MAX || !cap) {
			fprintf(stderr, "chainfs kvcache: bad --page-size or --capacity\n");
			return 2;
		}
		if (!dir) {
			snprintf(dirbuf, sizeof(dirbuf), "kv/%s", name);
			dir = dirbuf;
		}
		while (*dir == '/')
			dir++;
		uint64_t t0 = clock_mono_ns();
		rc = cfs_kvc_create(mount, name, dir, (uint32_t)page, cap, slabs, &o);
		double s = (double)(clock_mono_ns() - t0) / 1e9;
		if (rc == -EINVAL)
			fprintf(stderr, "chainfs kvcache create: invalid argument (the page size must "
					"be a power of two from 64K to 16M; the name 1..64 of "
					"[A-Za-z0-9._-]; 1..1024 slabs)\n");
		else if (rc)
			fprintf(stderr, "chainfs kvcache create: %s\n", cfs_strerror(rc));
		else
			printf("created %s: page %llu bytes, %llu pages in %s, durability %s "
			       "(%.2f s%s)\n", name, (unsigned long long)page,
			       (unsigned long long)((cap + page - 1) / page), dir,
			       (o.flags & CFS_KVC_CACHE) ? "cache" : "sync", s,
			       (o.flags & CFS_KVC_PREFILL) ? ", prefilled" : "");
		return rc ? 1 : 0;
	}
	if (!strcmp(sub, "delete")) {
		rc = cfs_kvc_destroy(mount, name, &o);
		if (rc)
			fprintf(stderr, "chainfs kvcache delete: %s\n", cfs_strerror(rc));
		return rc ? 1 : 0;
	}
	if (strcmp(sub, "info") && strcmp(sub, "clear")) {
		fprintf(stderr, "chainfs kvcache: unknown subcommand %s\n%s", sub, usage);
		return 2;
	}
	cfs_kvc *kv;
	rc = cfs_kvc_open(mount, name, &o, &kv);
	if (rc) {
		fprintf(stderr, "chainfs kvcache %s: %s\n", sub, cfs_strerror(rc));
		return 1;
	}
	if (!strcmp(sub, "clear")) {
		rc = cfs_kvc_clear(kv);
	} else {
		struct cfs_kvc_info in;
		rc = cfs_kvc_stats(kv, reclaim, &in);
		if (!rc)
			printf("name %s\npage_size %u\nslots %llu\nslabs %u\ndir %s\nused %llu\n"
			       "reserved %llu\nevictions %llu\nreclaimed %llu\nlost_publishes %llu\n"
			       "expired %llu\nevictions_per_s %.1f\nttl_ms %u\ndurability %s\n",
			       name, in.page_size, (unsigned long long)in.slots, in.slabs, in.dir,
			       (unsigned long long)in.used, (unsigned long long)in.reserved,
			       (unsigned long long)in.evictions, (unsigned long long)in.reclaimed,
			       (unsigned long long)in.lost, (unsigned long long)in.expired,
			       in.evictions_per_s, in.ttl_ms, in.durability ? "cache" : "sync");
	}
	if (rc)
		fprintf(stderr, "chainfs kvcache %s: %s\n", sub, cfs_strerror(rc));
	cfs_kvc_close(kv);
	return rc ? 1 : 0;
}
