/* bench_kvcache.c - `chainfs bench kvcache`: the KVCache page store
 * (include/chainfs.h "KVCache") against its baselines, in one run:
 *   - batch put and batch get of pages (4 threads, batches of 16) vs fio
 *     write / 3 (replication 3) and fio randread at the page size on the
 *     raw local directory;
 *   - index lookups per second from one thread in batches of 64;
 *   - puts into the full namespace (new keys: every page taken evicts the
 *     least recently used), with evictions/s from the bench's own count
 *     and from the service's stats (last 10 s);
 *   - the naive alternative: one file per page (write, then random whole
 *     file reads, same threads) through the FUSE mount and on local disk.
 * Needs a running cluster (`chainfs up`): --mount, --cluster-dir, and
 * --raw-dir (a local directory on the disk the cluster's targets use).
 * Namespaces are made prefilled (CFS_KVC_PREFILL; the create's time is
 * printed): fio's write runs over the file its randread laid out, so it
 * overwrites written space, and so do the puts then. --prefill 0 makes
 * them sparse: the first puts fill fresh space (docs/kvcache.md
 * "Prefill"). --durability cache makes them cache-mode namespaces
 * (CFS_KVC_CACHE: page writes without a device flush; docs/kvcache.md
 * "Durability"); the first line says which.
 *
 * --index-meta ADDR[,ADDR] runs only the index part against another meta
 * service (e.g. one over etcd, started by hand beside the cluster): a
 * namespace made through it, --index-keys entries put with empty values
 * (reserve + publish, no page I/O) in batches of 64, then lookups/s from
 * one thread in batches of 64, gets of those empty values (the index
 * side of a get: LOOKUP with recency and the version check), and puts of
 * new keys into the then full namespace with evictions/s. The cluster id
 * and secret come from --cluster-dir. --meta-pid PID (that meta service,
 * on this host) adds its CPU time per key of each phase, from
 * /proc/PID/stat: a figure other load on the machine moves much less
 * than the rates. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chainfs.h"
#include "cli/bench_fio.h"
#include "cli/cli.h"
#include "common/clock.h"
#include "common/status.h"

#define BATCH 16

struct bk {
	const char *mount, *cluster_dir, *raw;
	unsigned seconds, threads, mb;
	cfs_kvc *kv;
	cfs_iov *iov;
	uint32_t page;
	uint64_t npages;
	atomic_ullong bytes, ops, next;
	int stop_at_put;
	uint64_t deadline_ms;
	const char *filedir; /* one-file-per-page directory */
	atomic_int errors;
	uint64_t key_base;   /* put_thread: first key number */
	const char *index_meta;
	unsigned index_keys;
	int meta_pid;        /* --meta-pid: report that process's CPU per key */
	int prefill;         /* --prefill: namespaces made with CFS_KVC_PREFILL */
	int cache;           /* --durability cache: namespaces made with CFS_KVC_CACHE */
	char cluster_id[128];
};

/* The key arguments of one call of up to 64 keys ("page-%016llx" of a
 * key number). */
struct keys {
	char names[64][32];
	const void *p[64];
	size_t len[64];
};

/* Key I of K is key number ID. */
static void keys_set(struct keys *k, int i, uint64_t id)
{
	snprintf(k->names[i], sizeof(k->names[i]), "page-%016llx", (unsigned long long)id);
	k->p[i] = k->names[i];
	k->len[i] = strlen(k->names[i]);
}

/* The first N keys of K are random key numbers below RANGE. */
static void keys_random(struct keys *k, int n, unsigned *seed, uint64_t range)
{
	for (int i = 0; i < n; i++)
		keys_set(k, i, (uint64_t)rand_r(seed) % range);
}

static void *put_thread(void *arg)
{
	struct bk *b = arg;
	unsigned t = (unsigned)atomic_fetch_add(&b->ops, 1);
	uint8_t *mem = (uint8_t *)cfs_iov_base(b->iov) + (size_t)t * BATCH * b->page;
	memset(mem, (int)t + 1, (size_t)BATCH * b->page);
	for (;;) {
		uint64_t first = atomic_fetch_add(&b->next, BATCH);
		if (first >= b->npages && !b->deadline_ms)
			break;
		if (b->deadline_ms && clock_mono_ms() >= b->deadline_ms)
			break;
		uint64_t kfirst = b->key_base + first;
		int n = (int)(!b->deadline_ms && b->npages - first < BATCH ? b->npages - first : BATCH),
		    res[BATCH];
		struct keys k;
		const void *vals[BATCH];
		size_t lens[BATCH];
		for (int i = 0; i < n; i++) {
			keys_set(&k, i, kfirst + (uint64_t)i);
			vals[i] = mem + (size_t)i * b->page;
			lens[i] = b->page;
		}
		if (cfs_kvc_put(b->kv, b->iov, n, k.p, k.len, vals, lens, res)) {
			atomic_fetch_add(&b->errors, 1);
			continue;
		}
		for (int i = 0; i < n; i++)
			if (res[i] == 0)
				atomic_fetch_add(&b->bytes, b->page);
			else
				atomic_fetch_add(&b->errors, 1);
	}
	return NULL;
}

static void *get_thread(void *arg)
{
	struct bk *b = arg;
	unsigned t = (unsigned)atomic_fetch_add(&b->next, 1), seed = t * 7919u + 3;
	uint8_t *mem = (uint8_t *)cfs_iov_base(b->iov) + (size_t)t * BATCH * b->page;
	while (clock_mono_ms() < b->deadline_ms) {
		struct keys k;
		void *bufs[BATCH];
		size_t caps[BATCH];
		int res[BATCH];
		keys_random(&k, BATCH, &seed, b->npages);
		for (int i = 0; i < BATCH; i++) {
			bufs[i] = mem + (size_t)i * b->page;
			caps[i] = b->page;
		}
		if (cfs_kvc_get(b->kv, b->iov, BATCH, k.p, k.len, bufs, caps, res)) {
			atomic_fetch_add(&b->errors, 1);
			continue;
		}
		for (int i = 0; i < BATCH; i++)
			if (res[i] == (int)b->page)
				atomic_fetch_add(&b->bytes, b->page);
	}
	return NULL;
}

/* One file per page: write npages files, then random whole-file reads. */
static void *file_write_thread(void *arg)
{
	struct bk *b = arg;
	char *buf = malloc(b->page), path[1200];
	memset(buf, 7, b->page);
	for (;;) {
		uint64_t i = atomic_fetch_add(&b->next, 1);
		if (i >= b->npages)
			break;
		snprintf(path, sizeof(path), "%s/p%llu", b->filedir, (unsigned long long)i);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || write(fd, buf, b->page) != (ssize_t)b->page || close(fd) < 0)
			atomic_fetch_add(&b->errors, 1);
		else
			atomic_fetch_add(&b->bytes, b->page);
	}
	free(buf);
	return NULL;
}

static void *file_read_thread(void *arg)
{
	struct bk *b = arg;
	unsigned seed = (unsigned)atomic_fetch_add(&b->next, 1) * 31u + 5;
	char *buf = malloc(b->page), path[1200];
	while (clock_mono_ms() < b->deadline_ms) {
		snprintf(path, sizeof(path), "%s/p%llu", b->filedir,
			 (unsigned long long)((uint64_t)rand_r(&seed) % b->npages));
		int fd = open(path, O_RDONLY);
		if (fd < 0) {
			atomic_fetch_add(&b->errors, 1);
			continue;
		}
		if (pread(fd, buf, b->page, 0) == (ssize_t)b->page)
			atomic_fetch_add(&b->bytes, b->page);
		close(fd);
	}
	free(buf);
	return NULL;
}

/* Runs FN on b->threads threads; returns MB/s of b->bytes over the run. */
static double run_threads(struct bk *b, void *(*fn)(void *), unsigned seconds)
{
	pthread_t th[64];
	atomic_store(&b->bytes, 0);
	atomic_store(&b->next, 0);
	atomic_store(&b->ops, 0);
	uint64_t t0 = clock_mono_ns();
	b->deadline_ms = seconds ? clock_mono_ms() + seconds * 1000ull : 0;
	for (unsigned i = 0; i < b->threads; i++)
		pthread_create(&th[i], NULL, fn, b);
	for (unsigned i = 0; i < b->threads; i++)
		pthread_join(th[i], NULL);
	uint64_t t1 = clock_mono_ns();
	double s = (double)(t1 - t0) / 1e9;
	/* CFS_BENCH_PHASES=1: each phase's CLOCK_MONOTONIC window on stderr,
	 * to cut a whole-machine profile (perf record -k CLOCK_MONOTONIC,
	 * perf report --time A,B) down to one phase. */
	const char *ph = getenv("CFS_BENCH_PHASES");
	if (ph && *ph == '1')
		fprintf(stderr, "phase %s page %u: %.6f,%.6f\n",
			fn == put_thread ? "put" : fn == get_thread ? "get" : "files", b->page,
			(double)t0 / 1e9, (double)t1 / 1e9);
	return (double)atomic_load(&b->bytes) / s / 1e6;
}

static double files_bench(struct bk *b, const char *base, double *write_mbs)
{
	char dir[1100];
	snprintf(dir, sizeof(dir), "%s/kvbench-files-%u", base, b->page);
	mkdir(dir, 0755);
	b->filedir = dir;
	*write_mbs = run_threads(b, file_write_thread, 0);
	double r = run_threads(b, file_read_thread, b->seconds);
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench kvcache: could not remove %s\n", dir);
	return r;
}

static int bench_page(struct bk *b, uint32_t page, int lookups)
{
	char name[64], dir[96];
	struct cfs_kvc_opts o = { .cluster_dir = b->cluster_dir, .rings = (int)b->threads,
				  .flags = (b->prefill ? CFS_KVC_PREFILL : 0) |
					   (b->cache ? CFS_KVC_CACHE : 0) };
	snprintf(name, sizeof(name), "bench-%u-%d", page, (int)getpid());
	snprintf(dir, sizeof(dir), "kvbench/%s", name);
	b->page = page;
	b->npages = ((uint64_t)b->mb << 20) / page;
	uint64_t c0 = clock_mono_ns();
	int rc = cfs_kvc_create(b->mount, name, dir, page, (uint64_t)b->mb << 20, 8, &o);
	double create_s = (double)(clock_mono_ns() - c0) / 1e9;
	if (!rc)
		rc = cfs_kvc_open(b->mount, name, &o, &b->kv);
	if (!rc)
		rc = cfs_iov_create(b->mount, (size_t)b->threads * BATCH * page, 0, -1, &b->iov);
	if (rc) {
		fprintf(stderr, "bench kvcache: namespace %s: %s\n", name, cfs_strerror(rc));
		return 1;
	}
	double put = run_threads(b, put_thread, 0);
	double get = run_threads(b, get_thread, b->seconds);
	/* Full namespace: new keys, each page taken evicts the LRU entry. */
	struct cfs_kvc_info i0 = { 0 }, i1 = { 0 };
	cfs_kvc_stats(b->kv, 0, &i0);
	b->key_base = b->npages;
	uint64_t e0 = clock_mono_ns();
	double putfull = run_threads(b, put_thread, b->seconds);
	double es = (double)(clock_mono_ns() - e0) / 1e9;
	b->key_base = 0;
	cfs_kvc_stats(b->kv, 0, &i1);
	char bs[32];
	snprintf(bs, sizeof(bs), "%uk", page >> 10);
	double fr = bench_fio_iops("bench kvcache", b->raw, b->mb, b->seconds, "randread", bs, 16,
				   NULL) * page / 1e6;
	double fw = bench_fio_iops("bench kvcache", b->raw, b->mb, b->seconds, "write", bs, 16,
				   NULL) * page / 1e6;
	double fwrite_fuse, fwrite_local;
	double fuse_rd = files_bench(b, b->mount, &fwrite_fuse);
	double local_rd = files_bench(b, b->raw, &fwrite_local);
	printf("page %7u  kvcache get %8.1f MB/s  fio randread %8.1f MB/s  ratio %.2f | "
	       "put %7.1f MB/s  fio write/3 %7.1f MB/s  ratio %.2f\n",
	       page, get, fr, fr > 0 ? get / fr : 0, put, fw / 3, fw > 0 ? put / (fw / 3) : 0);
	printf("             put into the full namespace %7.1f MB/s: %.0f evictions/s "
	       "(service stats, last 10 s: %.0f/s)\n",
	       putfull, (double)(i1.evictions - i0.evictions) / es, i1.evictions_per_s);
	printf("             create %.2f s (%s, %.1f s per GiB)\n", create_s,
	       b->prefill ? "prefilled" : "sparse", create_s * 1024.0 / b->mb);
	printf("             file-per-page read: FUSE %8.1f MB/s  local %8.1f MB/s | "
	       "write: FUSE %7.1f MB/s  local %7.1f MB/s\n",
	       fuse_rd, local_rd, fwrite_fuse, fwrite_local);
	if (lookups) {
		uint64_t n = 0, t0 = clock_mono_ns(), end = clock_mono_ms() + b->seconds * 1000ull;
		unsigned seed = 1;
		while (clock_mono_ms() < end) {
			struct keys k;
			int res[64];
			keys_random(&k, 64, &seed, b->npages);
			if (cfs_kvc_exists(b->kv, 64, k.p, k.len, res) == 0)
				n += 64;
		}
		printf("index lookups (1 thread, batches of 64): %.0f /s\n",
		       (double)n / ((double)(clock_mono_ns() - t0) / 1e9));
	}
	if (atomic_load(&b->errors))
		printf("             (%d errors)\n", atomic_load(&b->errors));
	cfs_iov_destroy(b->iov);
	cfs_kvc_close(b->kv);
	cfs_kvc_destroy(b->mount, name, &o);
	return 0;
}

/* "cluster_id = X" of DIR/cluster.conf into OUT; 0 or -1. */
static int read_cluster_id(const char *dir, char *out, size_t cap)
{
	char path[1100], line[512];
	int found = -1;
	snprintf(path, sizeof(path), "%s/cluster.conf", dir);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char v[256];
		if (sscanf(line, " cluster_id = %255s", v) == 1 && strlen(v) < cap) {
			memcpy(out, v, strlen(v) + 1);
			found = 0;
		}
	}
	fclose(f);
	return found;
}

/* CPU seconds (user + system) process PID has used so far; 0 when
 * unknown (no such process, not readable). */
static double proc_cpu_s(int pid)
{
	double v = pid > 0 ? bench_proc_cpu(pid) : -1;
	return v < 0 ? 0 : v;
}

/* --index-meta: puts of empty values and lookups, in batches of 64, on a
 * namespace made through that meta service. */
static int bench_index(struct bk *b)
{
	char name[64], secret[1100];
	snprintf(secret, sizeof(secret), "%s/secret", b->cluster_dir);
	if (read_cluster_id(b->cluster_dir, b->cluster_id, sizeof(b->cluster_id))) {
		fprintf(stderr, "bench kvcache: no cluster_id in %s/cluster.conf\n", b->cluster_dir);
		return 1;
	}
	struct cfs_kvc_opts o = { .meta = b->index_meta, .cluster_id = b->cluster_id,
				  .secret_file = secret, .rings = 1 };
	snprintf(name, sizeof(name), "bench-index-%d", (int)getpid());
	int rc = cfs_kvc_create(b->mount, name, "kvbench/index", 64u << 10,
				(uint64_t)b->index_keys << 16, 1, &o);
	if (!rc)
		rc = cfs_kvc_open(b->mount, name, &o, &b->kv);
	if (!rc)
		rc = cfs_iov_create(b->mount, 1u << 20, 0, -1, &b->iov);
	if (rc) {
		fprintf(stderr, "bench kvcache: index namespace %s via %s: %s\n", name,
			b->index_meta, cfs_strerror(rc));
		return 1;
	}
	double cpu[5];
	cpu[0] = proc_cpu_s(b->meta_pid);
	uint64_t t0 = clock_mono_ns(), put = 0;
	const void *vals[64];
	size_t lens[64];
	for (int i = 0; i < 64; i++) {
		vals[i] = cfs_iov_base(b->iov);
		lens[i] = 0;
	}
	for (unsigned first = 0; first < b->index_keys; first += 64) {
		struct keys k;
		int res[64], n = b->index_keys - first < 64 ? (int)(b->index_keys - first) : 64;
		for (int i = 0; i < n; i++)
			keys_set(&k, i, first + (uint64_t)i);
		if (cfs_kvc_put(b->kv, b->iov, n, k.p, k.len, vals, lens, res) == 0)
			for (int i = 0; i < n; i++)
				put += res[i] == 0;
	}
	double ps = (double)(clock_mono_ns() - t0) / 1e9;
	cpu[1] = proc_cpu_s(b->meta_pid);
	uint64_t n = 0, hits = 0, end;
	unsigned seed = 1;
	t0 = clock_mono_ns();
	end = clock_mono_ms() + b->seconds * 1000ull;
	while (clock_mono_ms() < end) {
		struct keys k;
		int res[64];
		keys_random(&k, 64, &seed, b->index_keys);
		if (cfs_kvc_exists(b->kv, 64, k.p, k.len, res) == 0) {
			n += 64;
			for (int i = 0; i < 64; i++)
				hits += res[i] == 1;
		}
	}
	double ls = (double)(clock_mono_ns() - t0) / 1e9;
	cpu[2] = proc_cpu_s(b->meta_pid);
	printf("index via %s: %llu puts of empty values in %.2f s (%.0f /s, batches of 64); "
	       "lookups (1 thread, batches of 64): %.0f /s, %.1f%% hits\n",
	       b->index_meta, (unsigned long long)put, ps, (double)put / ps, (double)n / ls,
	       n ? 100.0 * (double)hits / (double)n : 0);
	/* Gets of the empty values: what a get costs the index (LOOKUP with
	 * recency, then the version check), without page I/O. */
	uint64_t gn = 0, ghits = 0;
	t0 = clock_mono_ns();
	end = clock_mono_ms() + b->seconds * 1000ull;
	while (clock_mono_ms() < end) {
		struct keys k;
		void *bufs[64];
		size_t caps[64];
		int res[64];
		keys_random(&k, 64, &seed, b->index_keys);
		for (int i = 0; i < 64; i++) {
			bufs[i] = cfs_iov_base(b->iov);
			caps[i] = 0;
		}
		if (cfs_kvc_get(b->kv, b->iov, 64, k.p, k.len, bufs, caps, res) == 0) {
			gn += 64;
			for (int i = 0; i < 64; i++)
				ghits += res[i] == 0;
		}
	}
	double gs = (double)(clock_mono_ns() - t0) / 1e9;
	cpu[3] = proc_cpu_s(b->meta_pid);
	/* New keys into the full namespace: every slot taken evicts. */
	struct cfs_kvc_info i0 = { 0 }, i1 = { 0 };
	uint64_t fput = 0, next = b->index_keys;
	cfs_kvc_stats(b->kv, 0, &i0);
	t0 = clock_mono_ns();
	end = clock_mono_ms() + b->seconds * 1000ull;
	while (clock_mono_ms() < end) {
		struct keys k;
		int res[64];
		for (int i = 0; i < 64; i++)
			keys_set(&k, i, next++);
		if (cfs_kvc_put(b->kv, b->iov, 64, k.p, k.len, vals, lens, res) == 0)
			for (int i = 0; i < 64; i++)
				fput += res[i] == 0;
	}
	double fs = (double)(clock_mono_ns() - t0) / 1e9;
	cpu[4] = proc_cpu_s(b->meta_pid);
	cfs_kvc_stats(b->kv, 0, &i1);
	printf("index via %s: gets of empty values (1 thread, batches of 64): %.0f /s, %.1f%% "
	       "hits; puts into the full namespace: %.0f /s, %.0f evictions/s\n",
	       b->index_meta, (double)gn / gs, gn ? 100.0 * (double)ghits / (double)gn : 0,
	       (double)fput / fs, (double)(i1.evictions - i0.evictions) / fs);
	if (b->meta_pid && cpu[0] > 0) {
		uint64_t per[4] = { put, n, gn, fput };
		double us[4];
		for (int i = 0; i < 4; i++)
			us[i] = per[i] ? (cpu[i + 1] - cpu[i]) * 1e6 / (double)per[i] : 0;
		printf("index via %s: meta CPU per key: puts of empty values %.2f us, lookups %.2f "
		       "us, gets %.2f us, puts into the full namespace %.2f us\n",
		       b->index_meta, us[0], us[1], us[2], us[3]);
	}
	cfs_iov_destroy(b->iov);
	cfs_kvc_close(b->kv);
	cfs_kvc_destroy(b->mount, name, &o);
	return 0;
}

int cli_bench_kvcache(int argc, char **argv)
{
	struct bk b = { .cluster_dir = "./chainfs-data", .seconds = 3, .threads = 4, .mb = 256,
			.index_keys = 10000, .prefill = 1 };
	const char *pages = "64K,256K,2M";
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v) {
			fprintf(stderr, "bench kvcache: %s needs a value\n", a);
			return 2;
		}
		i++;
		if (!strcmp(a, "--mount"))
			b.mount = v;
		else if (!strcmp(a, "--cluster-dir"))
			b.cluster_dir = v;
		else if (!strcmp(a, "--raw-dir"))
			b.raw = v;
		else if (!strcmp(a, "--seconds"))
			b.seconds = (unsigned)atoi(v);
		else if (!strcmp(a, "--threads"))
			b.threads = (unsigned)atoi(v);
		else if (!strcmp(a, "--mb"))
			b.mb = (unsigned)atoi(v);
		else if (!strcmp(a, "--pages"))
			pages = v;
		else if (!strcmp(a, "--index-meta"))
			b.index_meta = v;
		else if (!strcmp(a, "--index-keys"))
			b.index_keys = (unsigned)atoi(v);
		else if (!strcmp(a, "--meta-pid"))
			b.meta_pid = atoi(v);
		else if (!strcmp(a, "--prefill"))
			b.prefill = atoi(v);
		else if (!strcmp(a, "--durability")) {
			if (strcmp(v, "sync") && strcmp(v, "cache")) {
				fprintf(stderr, "bench kvcache: --durability must be sync or cache, "
						"not '%s'\n", v);
				return 2;
			}
			b.cache = !strcmp(v, "cache");
		} else {
			fprintf(stderr, "bench kvcache: unknown option %s\n", a);
			return 2;
		}
	}
	if (b.index_meta && b.mount && b.seconds && b.index_keys)
		return bench_index(&b);
	if (!b.mount || !b.raw || b.threads < 1 || b.threads > 64 || !b.seconds || !b.mb) {
		fprintf(stderr, "usage: chainfs bench kvcache --mount M --raw-dir R [--cluster-dir D]"
				" [--seconds 3] [--threads 4] [--mb 256] [--pages 64K,256K,2M]"
				" [--prefill 1] [--durability sync|cache]\n"
				"       chainfs bench kvcache --mount M --cluster-dir D --index-meta "
				"ADDR [--index-keys 10000] [--seconds 3] [--meta-pid PID]\n");
		return 2;
	}
	printf("bench kvcache: %u threads, batches of %d, %u MiB per namespace%s, durability "
	       "%s, %u s per read run\n",
	       b.threads, BATCH, b.mb, b.prefill ? " (prefilled)" : "",
	       b.cache ? "cache" : "sync", b.seconds);
	char list[256];
	snprintf(list, sizeof(list), "%s", pages);
	int rc = 0, first = 1;
	for (char *save, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char *end;
		unsigned long v = strtoul(t, &end, 10);
		if (*end == 'K' || *end == 'k')
			v <<= 10;
		else if (*end == 'M' || *end == 'm')
			v <<= 20;
		rc |= bench_page(&b, (uint32_t)v, v == (256u << 10) || (first && !strstr(pages, "256K")));
		first = 0;
	}
	return rc;
}
