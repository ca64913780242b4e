/* bench_kv.c - chainfs bench kv: the metadata workload on a KV engine.
 *
 *   chainfs bench kv [--url URL] [--dir DIR] [--seconds S] [--entries N]
 *                    [--clients 1,8,64]
 *
 * Runs, against any kv URL (lmdb, etcd, mem), the workload of the metadata
 * service with the 3FS key schema (kv-notes.md §2):
 *   "INOD" + u64le(ino) -> 100-byte inode;
 *   "DENT" + u64be(parent) + name -> u64 ino + u8 type.
 * - create: the 3FS-style create txn: non-snapshot reads of the parent
 *   inode and of the dentry (both become read conflicts), the dentry must be
 *   absent, then set dentry + new inode; the parent is NOT written, so
 *   creates in one directory do not conflict. All clients create in ONE
 *   directory, each client a thread running kv_run; per second, with 1, 8
 *   and 64 clients.
 * - lookup: one read-only txn = get dentry + get inode, one thread.
 * - scan: one read-only snapshot range over a directory of N entries.
 * Without --url it runs lmdb durable (sync=full, group commit) and lmdb
 * relaxed (sync=none) in a fresh directory under --dir, removed afterwards.
 *
 * Baselines measured in the same run, since the machine is shared and noisy:
 * the rate of 4 KiB write + fdatasync in the same directory (what one
 * durable commit costs at least), and bsearch lookups over the same number
 * of keys in memory (what a point lookup costs at least). Figures are
 * printed with their ratio to the matching baseline.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/cfg.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "kv/kv.h"
#include "kv/kv_int.h"

struct kvb_conf {
	char *url;
	char *dir;
	int64_t seconds;
	int64_t entries;
	char *clients;
	char *log_level;
};

static const struct cfg_opt opts[] = {
	{ "url", CFG_STR, "", 0, 0, offsetof(struct kvb_conf, url),
	  "kv URL to measure (default: lmdb durable and relaxed in a temp dir under --dir)" },
	{ "dir", CFG_STR, "/var/tmp", 0, 0, offsetof(struct kvb_conf, dir),
	  "directory for the default lmdb runs and the fdatasync baseline" },
	{ "seconds", CFG_INT, "3", 1, 600, offsetof(struct kvb_conf, seconds),
	  "seconds per measurement" },
	{ "entries", CFG_INT, "10000", 1, 1000000, offsetof(struct kvb_conf, entries),
	  "entries in the scanned directory (also the lookup key set)" },
	{ "clients", CFG_STR, "1,8,64", 0, 0, offsetof(struct kvb_conf, clients),
	  "comma-separated client (thread) counts for the create phase" },
	{ "log-level", CFG_STR, "warn", 0, 0, offsetof(struct kvb_conf, log_level),
	  "err|warn|notice|info|debug" },
	CFG_END
};

#define SCAN_DIR 2
#define CREATE_DIR 3
#define INODE_SIZE 100
#define MAX_CLIENTS 256

/* ---- schema ------------------------------------------------------------- */

static size_t inode_key(uint8_t *k, uint64_t ino)
{
	memcpy(k, "INOD", 4);
	for (int i = 0; i < 8; i++)
		k[4 + i] = (uint8_t)(ino >> (8 * i));
	return 12;
}

static size_t dent_key(uint8_t *k, uint64_t parent, const char *name)
{
	size_t n = strlen(name);

	memcpy(k, "DENT", 4);
	for (int i = 0; i < 8; i++)
		k[4 + i] = (uint8_t)(parent >> (56 - 8 * i));
	memcpy(k + 12, name, n);
	return 12 + n;
}

static void inode_val(uint8_t *v, uint64_t ino)
{
	memset(v, 0, INODE_SIZE);
	for (int i = 0; i < 8; i++)
		v[i] = (uint8_t)(ino >> (8 * i));
	v[8] = 1; /* type: file */
}

static void dent_val(uint8_t *v, uint64_t ino)
{
	for (int i = 0; i < 8; i++)
		v[i] = (uint8_t)(ino >> (8 * i));
	v[8] = 1;
}

static uint64_t le64(const void *p)
{
	uint64_t x = 0;

	for (int i = 0; i < 8; i++)
		x |= (uint64_t)((const uint8_t *)p)[i] << (8 * i);
	return x;
}

/* ---- preload ------------------------------------------------------------ */

struct preload {
	uint64_t dir;
	int64_t from, to; /* entry indexes */
};

static int preload_body(kv_txn *t, void *arg)
{
	struct preload *p = arg;
	uint8_t k[64], v[INODE_SIZE];
	char name[32];
	int rc;

	if (p->from == 0) {
		for (uint64_t d = SCAN_DIR; d <= CREATE_DIR; d++) {
			inode_val(v, d);
			v[8] = 2; /* directory */
			if ((rc = kv_set(t, kv_mem(k, inode_key(k, d)), kv_mem(v, INODE_SIZE))))
				return rc;
		}
	}
	for (int64_t i = p->from; i < p->to; i++) {
		uint64_t ino = 1000000 + (uint64_t)i;
		snprintf(name, sizeof(name), "s%08" PRId64, i);
		dent_val(v, ino);
		if ((rc = kv_set(t, kv_mem(k, dent_key(k, p->dir, name)), kv_mem(v, 9))))
			return rc;
		inode_val(v, ino);
		if ((rc = kv_set(t, kv_mem(k, inode_key(k, ino)), kv_mem(v, INODE_SIZE))))
			return rc;
	}
	return 0;
}

struct preload_thr {
	kv_engine *e;
	int64_t entries;
	int id, nthr, rc;
};

static void *preload_thread(void *arg)
{
	struct preload_thr *pt = arg;
	struct kv_run_opts o = { .idempotent = 1, .max_retries = 100 };
	/* 30 entries = 60 writes (+2 in the first): under KV_MAX_WRITES. */
	const int64_t per = 30;

	for (int64_t from = (int64_t)pt->id * per; from < pt->entries; from += per * pt->nthr) {
		struct preload p = { SCAN_DIR, from, from + per < pt->entries ? from + per : pt->entries };
		if ((pt->rc = kv_run(pt->e, &o, preload_body, &p, NULL)))
			return NULL;
	}
	return NULL;
}

static int preload(kv_engine *e, int64_t entries)
{
	pthread_t tid[8];
	struct preload_thr pt[8];

	for (int i = 0; i < 8; i++) {
		pt[i] = (struct preload_thr){ e, entries, i, 8, 0 };
		pthread_create(&tid[i], NULL, preload_thread, &pt[i]);
	}
	int rc = 0;
	for (int i = 0; i < 8; i++) {
		pthread_join(tid[i], NULL);
		if (pt[i].rc && !rc)
			rc = pt[i].rc;
	}
	return rc;
}

/* ---- create ------------------------------------------------------------- */

struct create_arg {
	uint64_t ino;
	char name[48];
};

static int create_body(kv_txn *t, void *arg)
{
	struct create_arg *c = arg;
	uint8_t pk[12], dk[64], v[INODE_SIZE], ik[12];
	size_t dn = dent_key(dk, CREATE_DIR, c->name);
	struct kv_slice pv, dv;
	int rc;

	/* Parent inode and dentry as read conflicts (3FS createInodeAndEntry). */
	if ((rc = kv_get(t, kv_mem(pk, inode_key(pk, CREATE_DIR)), 0, &pv)) < 0)
		return rc;
	if (!rc)
		return -ENOENT;
	if ((rc = kv_get(t, kv_mem(dk, dn), 0, &dv)) < 0)
		return rc;
	if (rc) /* a retried maybe-committed attempt of ours already applied */
		return dv.n >= 8 && le64(dv.p) == c->ino ? 0 : -EEXIST;
	dent_val(v, c->ino);
	if ((rc = kv_set(t, kv_mem(dk, dn), kv_mem(v, 9))))
		return rc;
	inode_val(v, c->ino);
	return kv_set(t, kv_mem(ik, inode_key(ik, c->ino)), kv_mem(v, INODE_SIZE));
}

struct client {
	kv_engine *e;
	int id;
	uint32_t run;
	atomic_int *stop;
	uint64_t ops, retries, errors;
	int last_err;
};

static void *create_thread(void *arg)
{
	struct client *c = arg;
	struct kv_run_opts o = { .idempotent = 1, .max_retries = 100 };

	for (uint64_t seq = 0; !atomic_load_explicit(c->stop, memory_order_relaxed); seq++) {
		struct create_arg a;
		struct kv_run_stats st;
		int rc;

		a.ino = (uint64_t)c->run << 40 | (uint64_t)c->id << 32 | seq;
		snprintf(a.name, sizeof(a.name), "c%08x-%03d-%" PRIu64, c->run, c->id, seq);
		rc = kv_run(c->e, &o, create_body, &a, &st);
		c->retries += (uint64_t)st.retries;
		if (rc) {
			c->errors++;
			c->last_err = rc;
		} else {
			c->ops++;
		}
	}
	return NULL;
}

/* Runs NTHR threads of FN for SECONDS; returns total ops/s. */
static double run_clients(kv_engine *e, int nthr, int64_t seconds, void *(*fn)(void *),
			  uint32_t run, uint64_t *retries, uint64_t *errors, int *last_err)
{
	pthread_t tid[MAX_CLIENTS];
	struct client *c = calloc((size_t)nthr, sizeof(*c));
	atomic_int stop = 0;
	uint64_t t0, ops = 0;
	double el;

	*retries = *errors = 0;
	if (!c)
		return -1;
	t0 = clock_mono_ns();
	for (int i = 0; i < nthr; i++) {
		c[i] = (struct client){ .e = e, .id = i, .run = run, .stop = &stop };
		pthread_create(&tid[i], NULL, fn, &c[i]);
	}
	clock_sleep_ms((uint64_t)seconds * 1000);
	atomic_store(&stop, 1);
	*retries = *errors = 0;
	for (int i = 0; i < nthr; i++) {
		pthread_join(tid[i], NULL);
		ops += c[i].ops;
		*retries += c[i].retries;
		*errors += c[i].errors;
		if (c[i].last_err)
			*last_err = c[i].last_err;
	}
	el = (double)(clock_mono_ns() - t0) / 1e9;
	free(c);
	return (double)ops / el;
}

/* ---- lookup and scan ---------------------------------------------------- */

struct lookup_state {
	kv_engine *e;
	int64_t entries;
	uint64_t rng;
	int err;
};

static int lookup_one(struct lookup_state *ls)
{
	uint8_t dk[64], ik[12];
	char name[32];
	struct kv_slice dv, iv;
	kv_txn *t;
	int64_t i;
	int rc;

	ls->rng = ls->rng * 6364136223846793005ull + 1442695040888963407ull;
	i = (int64_t)((ls->rng >> 33) % (uint64_t)ls->entries);
	snprintf(name, sizeof(name), "s%08" PRId64, i);
	if ((rc = kv_begin(ls->e, KV_RDONLY, &t)))
		return rc;
	rc = kv_get(t, kv_mem(dk, dent_key(dk, SCAN_DIR, name)), 1, &dv);
	if (rc == 1 && dv.n >= 8)
		rc = kv_get(t, kv_mem(ik, inode_key(ik, le64(dv.p))), 1, &iv);
	else if (rc >= 0)
		rc = -ENOENT;
	kv_txn_free(t);
	return rc == 1 ? 0 : rc < 0 ? rc : -ENOENT;
}

static int scan_one(kv_engine *e, int64_t entries)
{
	uint8_t b[12], en[12];
	struct kv_range r;
	kv_txn *t;
	int rc;

	dent_key(b, SCAN_DIR, "");
	dent_key(en, SCAN_DIR + 1, "");
	if ((rc = kv_begin(e, KV_RDONLY, &t)))
		return rc;
	rc = kv_get_range(t, kv_mem(b, 12), kv_mem(en, 12), 0, 1, 0, &r);
	if (!rc && r.n != entries)
		rc = -EIO;
	kv_txn_free(t);
	return rc;
}

/* ---- baselines ---------------------------------------------------------- */

/* 4 KiB pwrite + fdatasync per op in DIR for SECONDS: ops/s, or <0. */
static double fsync_rate(const char dir[4096], int64_t seconds)
{
	char path[4200];
	char buf[4096];
	uint64_t t0, n = 0, end;
	int fd;

	snprintf(path, sizeof(path), "%s/.kvbench-fsync-probe", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -errno;
	memset(buf, 0xab, sizeof(buf));
	t0 = clock_mono_ns();
	end = t0 + (uint64_t)seconds * 1000000000ull;
	while (clock_mono_ns() < end) {
		if (pwrite(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf) || fdatasync(fd)) {
			int e = -errno;
			close(fd);
			unlink(path);
			return e;
		}
		n++;
	}
	close(fd);
	unlink(path);
	return (double)n / ((double)(clock_mono_ns() - t0) / 1e9);
}

static int key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 24);
}

/* bsearch over ENTRIES 24-byte keys: lookups/s. */
static double bsearch_rate(int64_t entries, int64_t seconds)
{
	char (*keys)[24] = calloc((size_t)entries, 24);
	uint64_t rng = 88172645463325252ull, n = 0, found = 0, t0, end;

	if (!keys)
		return -ENOMEM;
	for (int64_t i = 0; i < entries; i++)
		snprintf(keys[i], 24, "DENTxxxxs%08u", (unsigned)i);
	qsort(keys, (size_t)entries, 24, key_cmp);
	t0 = clock_mono_ns();
	end = t0 + (uint64_t)seconds * 1000000000ull;
	while (clock_mono_ns() < end) {
		for (int j = 0; j < 1000; j++, n++) {
			char k[24] = { 0 };
			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			snprintf(k, 24, "DENTxxxxs%08u", (unsigned)((rng >> 33) % (uint64_t)entries));
			found += bsearch(k, keys, (size_t)entries, 24, key_cmp) != NULL;
		}
	}
	free(keys);
	if (found != n) /* every probed key exists; also keeps the loop alive */
		return -EIO;
	return (double)n / ((double)(clock_mono_ns() - t0) / 1e9);
}

/* ---- driver ------------------------------------------------------------- */

static int parse_clients(const char *s, int *out, int max)
{
	int n = 0;

	while (*s && n < max) {
		char *end;
		long v = strtol(s, &end, 10);
		if (end == s || v < 1 || v > MAX_CLIENTS)
			return -EINVAL;
		out[n++] = (int)v;
		s = *end == ',' ? end + 1 : end;
		if (*end && *end != ',')
			return -EINVAL;
	}
	return n ? n : -EINVAL;
}

static int bench_url(const struct kvb_conf *bc, const char *url, double fsync_s, double bs_s,
		     const int *clients, int nclients)
{
	char err[256];
	kv_engine *e;
	uint32_t run;
	int rc;

	if ((rc = kv_open(url, &e, err, sizeof(err)))) {
		fprintf(stderr, "chainfs bench kv: %s\n", err);
		return 1;
	}
	run = (uint32_t)(clock_wall_ns() / 1000000);
	printf("\n== %s\n", url);
	uint64_t t0 = clock_mono_ns();
	if ((rc = preload(e, bc->entries))) {
		fprintf(stderr, "chainfs bench kv: preload: %s\n", cfs_strerror(rc));
		kv_close(e);
		return 1;
	}
	printf("preload  %" PRId64 " dentries + inodes in %.2f s\n", bc->entries,
	       (double)(clock_mono_ns() - t0) / 1e9);
	for (int i = 0; i < nclients; i++) {
		uint64_t retries = 0, errors = 0, b0, b1, x0, x1;
		int last = 0;
		double r;

		kv_lmdb_stats(e, &b0, &x0);
		r = run_clients(e, clients[i], bc->seconds, create_thread, run + (uint32_t)i,
				&retries, &errors, &last);
		kv_lmdb_stats(e, &b1, &x1);
		printf("create   %3d client%s %10.0f /s   %6.2f per fdatasync-time", clients[i],
		       clients[i] == 1 ? " " : "s", r, fsync_s > 0 ? r / fsync_s : 0.0);
		if (b1 > b0)
			printf("   %.1f txns/write txn", (double)(x1 - x0) / (double)(b1 - b0));
		printf("   retries %" PRIu64, retries);
		if (errors)
			printf("   ERRORS %" PRIu64 " (%s)", errors, cfs_strerror(last));
		printf("\n");
		fflush(stdout);
	}
	{
		struct lookup_state ls = { e, bc->entries, 12345, 0 };
		uint64_t n = 0, t1 = clock_mono_ns(), end = t1 + (uint64_t)bc->seconds * 1000000000ull;
		while (clock_mono_ns() < end) {
			for (int j = 0; j < 256; j++, n++)
				if ((rc = lookup_one(&ls)))
					break;
			if (rc)
				break;
		}
		double r = (double)n / ((double)(clock_mono_ns() - t1) / 1e9);
		if (rc)
			printf("lookup   ERROR %s\n", cfs_strerror(rc));
		else
			printf("lookup   1 thread  %10.0f /s   %6.3f of bsearch rate\n", r,
			       bs_s > 0 ? r / bs_s : 0.0);
	}
	{
		uint64_t n = 0, t1 = clock_mono_ns(), end = t1 + (uint64_t)bc->seconds * 1000000000ull;
		rc = 0;
		while (clock_mono_ns() < end && !(rc = scan_one(e, bc->entries)))
			n++;
		double r = (double)n / ((double)(clock_mono_ns() - t1) / 1e9);
		if (rc)
			printf("scan     ERROR %s\n", cfs_strerror(rc));
		else
			printf("scan     %" PRId64 " entries %8.1f /s   (%.0f entries/s)\n", bc->entries, r,
			       r * (double)bc->entries);
	}
	kv_close(e);
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

int cli_bench_kv(int argc, char **argv)
{
	struct kvb_conf bc = { 0 };
	char err[256], tmpl[4096], url[4200];
	int clients[16], nclients, npos = 0, rc, ret = 0;
	enum log_level lvl;
	double fs, bs;

	rc = cfg_parse(opts, &bc, argc, argv, &npos, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc) {
		fprintf(stderr, "chainfs bench kv: %s\n", err);
		return 2;
	}
	if (log_parse_level(bc.log_level, &lvl) ||
	    (nclients = parse_clients(bc.clients, clients, 16)) < 0) {
		fprintf(stderr, "chainfs bench kv: bad --log-level or --clients\n");
		cfg_free(opts, &bc);
		return 2;
	}
	log_set_level(lvl);
	snprintf(tmpl, sizeof(tmpl), "%s/chainfs-bench-kv-XXXXXX", bc.dir);
	if (!mkdtemp(tmpl)) {
		fprintf(stderr, "chainfs bench kv: cannot create a directory under %s: %s\n", bc.dir,
			cfs_strerror(-errno));
		cfg_free(opts, &bc);
		return 1;
	}
	{
		char *abs = realpath(tmpl, NULL); /* lmdb URLs need absolute paths */
		if (abs) {
			snprintf(tmpl, sizeof(tmpl), "%s", abs);
			free(abs);
		}
	}
	printf("chainfs bench kv: 3FS-schema metadata txns; %" PRId64 " s per figure; the machine is "
	       "shared and noisy, so read figures against the baselines of this run\n",
	       bc.seconds);
	fs = fsync_rate(tmpl, bc.seconds);
	bs = bsearch_rate(bc.entries, 1);
	if (fs > 0)
		printf("baseline 4 KiB write+fdatasync in %s: %.0f /s (%.0f us each)\n", bc.dir, fs,
		       1e6 / fs);
	else
		printf("baseline fdatasync failed: %s\n", cfs_strerror((int)fs));
	printf("baseline bsearch over %" PRId64 " in-memory keys, 1 thread: %.0f /s\n", bc.entries, bs);
	if (*bc.url) {
		ret = bench_url(&bc, bc.url, fs, bs, clients, nclients);
	} else {
		snprintf(url, sizeof(url), "lmdb://%s/durable", tmpl);
		ret = bench_url(&bc, url, fs, bs, clients, nclients);
		snprintf(url, sizeof(url), "lmdb://%s/relaxed?sync=none", tmpl);
		ret |= bench_url(&bc, url, fs, bs, clients, nclients);
	}
	nftw(tmpl, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	cfg_free(opts, &bc);
	return ret;
}
