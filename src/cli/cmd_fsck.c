/* cmd_fsck.c - chainfs fsck: check a cluster's metadata and chunk replicas.
 *
 *   chainfs fsck --dir D                 a `chainfs up` data directory
 *   chainfs fsck --kv URL --targets T1,T2,... [--replicas N]
 *
 * Two passes, both read-only:
 *   chunks  every target's chunk store (LMDB, T/meta) is scanned; each chunk
 *           id must be held by exactly N targets (the chain length) with the
 *           same committed version, length and CRC, no update pending and a
 *           record that decodes. A chunk on fewer targets is under-replicated
 *           (a replica lost it, or a resync has not run; not counted for
 *           an inode GC is removing), on more it is
 *           duplicated (a target moved between chains kept a stale copy),
 *           differing copies are divergent.
 *   meta    meta_fsck over one snapshot of the metadata store, given the
 *           chunk ids found above: dangling dentries, link counts of files and
 *           directories, orphan inodes, parents, reachability, chunks of
 *           inodes that do not exist.
 *
 * The answer is exact for a stopped cluster (`chainfs down` first). On a
 * running one both stores are read through LMDB's shared snapshots, so the
 * pass is safe, but writes in flight can show as divergent or pending.
 * Output: one key=value line per pass; exit 0 when nothing is wrong, 1 when
 * something is (each finding is also logged at WARN), 2 on a usage error.
 */
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/cfg.h"
#include "common/log.h"
#include "common/status.h"
#include "kv/kv.h"
#include "meta/meta.h"
#include "storage/chunk_store.h"

struct fsck_conf {
	char *dir;
	char *kv;
	char *targets;
	int64_t replicas;
	char *log_level;
};

static const struct cfg_opt opts[] = {
    {"dir", CFG_STR, "", 0, 0, offsetof(struct fsck_conf, dir),
     "a `chainfs up` data directory (sets --kv and --targets)"},
    {"kv", CFG_STR, "", 0, 0, offsetof(struct fsck_conf, kv),
     "metadata KV store URL (lmdb://DIR or etcd://host:port,...)"},
    {"targets", CFG_STR, "", 0, 0, offsetof(struct fsck_conf, targets),
     "storage target directories, comma-separated"},
    {"replicas", CFG_INT, "3", 1, 16, offsetof(struct fsck_conf, replicas),
     "copies each chunk must have (the chain length)"},
    {"log-level", CFG_STR, "warn", 0, 0, offsetof(struct fsck_conf, log_level),
     "err|warn|notice|info|debug: warn lists every finding"},
    CFG_END,
};

/* One copy of a chunk, as one target's store records it. */
struct copy {
	uint64_t ino;
	uint32_t idx;
	uint32_t target;
	uint32_t len, crc;
	uint64_t commit_ver;
	uint8_t pending, corrupt;
};

struct copies {
	struct copy *v;
	size_t n, cap;
	uint32_t target;
};

static int scan_cb(void *arg, struct chunk_id id, const struct chunk_meta *m, int decode_err)
{
	struct copies *c = arg;
	if (c->n == c->cap) {
		size_t nc = c->cap ? 2 * c->cap : 4096;
		struct copy *nv = realloc(c->v, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		c->v = nv;
		c->cap = nc;
	}
	c->v[c->n++] = (struct copy){ .ino = id.ino, .idx = id.idx, .target = c->target,
				      .len = m->len, .crc = m->crc, .commit_ver = m->commit_ver,
				      .pending = m->pending_ver != m->commit_ver,
				      .corrupt = decode_err != 0 };
	return 0;
}

static int copy_cmp(const void *a, const void *b)
{
	const struct copy *x = a, *y = b;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	if (x->idx != y->idx)
		return x->idx < y->idx ? -1 : 1;
	return x->target < y->target ? -1 : x->target > y->target;
}

struct chunk_report {
	uint64_t copies, chunks, under, over, divergent, pending, corrupt;
	uint64_t removing; /* under-replicated chunks of inodes GC is removing */
};

static int scan_target(const char *dir, uint32_t ti, struct copies *c)
{
	char path[PATH_MAX];
	struct chunk_store *s;
	if (snprintf(path, sizeof(path), "%s/meta", dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	/* A snapshot: a running target's metadata log must stay untouched. */
	int rc = chunk_store_open_snapshot(path, UINT64_C(64) << 30, &s);
	if (rc)
		return rc;
	c->target = ti;
	rc = chunk_store_scan(s, (struct chunk_id){ 0, 0 },
			      (struct chunk_id){ UINT64_MAX, UINT32_MAX }, scan_cb, c);
	chunk_store_close(s);
	return rc;
}

/* Counts what disagrees among the copies (sorted, grouped by chunk id;
 * REFS holds one entry per group, in the same order, flagged by meta). */
static void judge(const struct copies *c, const struct meta_chunk_ref *refs, char **names,
		  uint32_t replicas, struct chunk_report *r)
{
	r->copies = c->n;
	for (size_t i = 0, g = 0; i < c->n; g++) {
		size_t j = i;
		int differ = 0;
		while (j < c->n && c->v[j].ino == c->v[i].ino && c->v[j].idx == c->v[i].idx) {
			const struct copy *x = &c->v[j], *f = &c->v[i];
			if (x->corrupt) {
				LOG_WARN("fsck", "undecodable chunk record: chunk=%llu:%u target=%s",
					 (unsigned long long)x->ino, x->idx, names[x->target]);
				r->corrupt++;
			}
			if (x->pending) {
				LOG_WARN("fsck", "update pending: chunk=%llu:%u target=%s",
					 (unsigned long long)x->ino, x->idx, names[x->target]);
				r->pending++;
			}
			if (x->len != f->len || x->crc != f->crc || x->commit_ver != f->commit_ver)
				differ = 1;
			j++;
		}
		uint32_t n = (uint32_t)(j - i);
		const struct copy *f = &c->v[i];
		r->chunks++;
		if (n < replicas && refs[g].in_gc) {
			r->removing++;
		} else if (n < replicas) {
			LOG_WARN("fsck", "under-replicated: chunk=%llu:%u copies=%u of %u (on %s)",
				 (unsigned long long)f->ino, f->idx, n, replicas, names[f->target]);
			r->under++;
		} else if (n > replicas) {
			LOG_WARN("fsck", "too many copies: chunk=%llu:%u copies=%u of %u",
				 (unsigned long long)f->ino, f->idx, n, replicas);
			r->over++;
		}
		if (differ) {
			for (size_t k = i; k < j; k++)
				LOG_WARN("fsck", "divergent: chunk=%llu:%u target=%s ver=%llu len=%u "
					 "crc=%08x", (unsigned long long)c->v[k].ino, c->v[k].idx,
					 names[c->v[k].target], (unsigned long long)c->v[k].commit_ver,
					 c->v[k].len, c->v[k].crc);
			r->divergent++;
		}
		i = j;
	}
}

/* Target directories: --targets split on commas, or D/storage* /target*. */
static int list_targets(const struct fsck_conf *c, char ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (*c->targets) {
		char *dup = strdup(c->targets), *save = NULL;
		if (!dup)
			return -ENOMEM;
		for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			char **nv = realloc(*out, (*n + 1) * sizeof(**out));
			if (!nv || !(nv[*n] = strdup(t))) {
				*out = nv ? nv : *out;
				free(dup);
				return -ENOMEM;
			}
			*out = nv;
			(*n)++;
		}
		free(dup);
		return 0;
	}
	char pat[PATH_MAX];
	glob_t g;
	snprintf(pat, sizeof(pat), "%s/storage*/target*", c->dir);
	int rc = glob(pat, 0, NULL, &g);
	if (rc == GLOB_NOMATCH)
		return 0;
	if (rc)
		return -ENOMEM;
	*out = calloc(g.gl_pathc, sizeof(**out));
	for (size_t i = 0; *out && i < g.gl_pathc; i++)
		if (((*out)[i] = strdup(g.gl_pathv[i])))
			(*n)++;
	globfree(&g);
	return *out ? 0 : -ENOMEM;
}

static int meta_pass(const char *url, struct meta_chunk_ref *refs, size_t nrefs,
		     struct meta_fsck_report *r)
{
	char err[256];
	kv_engine *kv = NULL;
	meta_ctx *m = NULL;
	int rc = kv_open(url, &kv, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "chainfs fsck: %s: %s\n", url, err);
		return rc;
	}
	/* The root layout only has to validate: fsck creates nothing. */
	struct meta_opts mo = { .instance_id = 1,
				.root_layout = { .chunk_size = 1u << 20, .stripe = 1 } };
	if ((rc = meta_new(kv, &mo, &m)))
		goto out;
	rc = meta_fsck(m, refs, nrefs, r);
out:
	if (rc)
		fprintf(stderr, "chainfs fsck: metadata: %s\n", cfs_strerror(rc));
	meta_free(m);
	kv_close(kv);
	return rc;
}

int cli_fsck(int argc, char **argv)
{
	struct fsck_conf c = { 0 };
	char err[512], url[PATH_MAX + 16];
	char **targets = NULL;
	size_t ntargets = 0;
	struct copies cp = { 0 };
	struct meta_chunk_ref *refs = NULL;
	size_t nrefs = 0;
	int npos = 0, ret = 1;
	int rc = cfg_parse(opts, &c, argc, argv, &npos, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc || npos || (!*c.dir && (!*c.kv || !*c.targets))) {
		fprintf(stderr, "chainfs fsck: %s\n",
			rc ? err : "give --dir, or --kv and --targets");
		ret = 2;
		goto out;
	}
	enum log_level lvl;
	if (log_parse_level(c.log_level, &lvl)) {
		fprintf(stderr, "chainfs fsck: bad --log-level '%s'\n", c.log_level);
		ret = 2;
		goto out;
	}
	log_set_level(lvl);
	if (*c.kv)
		snprintf(url, sizeof(url), "%s", c.kv);
	else
		snprintf(url, sizeof(url), "lmdb://%s/meta", c.dir);
	if ((rc = list_targets(&c, &targets, &ntargets)))
		goto fail;
	if (!ntargets) {
		fprintf(stderr, "chainfs fsck: no storage targets found\n");
		goto out;
	}
	struct meta_fsck_report mr;
	struct chunk_report cr;
	/* The targets are scanned before meta is read, so a file whose GC was
	 * removing its chunks in between looks like orphan (or
	 * under-replicated) chunks. Such findings are checked once more after
	 * a second; only what is still there is reported. */
	for (int pass = 0;; pass++) {
		free(cp.v);
		cp = (struct copies){ 0 };
		free(refs);
		refs = NULL;
		nrefs = 0;
		for (size_t i = 0; i < ntargets; i++) {
			if ((rc = scan_target(targets[i], (uint32_t)i, &cp))) {
				fprintf(stderr, "chainfs fsck: target %s: %s\n", targets[i],
					cfs_strerror(rc));
				goto out;
			}
		}
		if (cp.n) /* qsort(NULL, 0) is undefined (UBSan stops fsck there) */
			qsort(cp.v, cp.n, sizeof(*cp.v), copy_cmp);
		refs = calloc(cp.n ? cp.n : 1, sizeof(*refs));
		if (!refs) {
			rc = -ENOMEM;
			goto fail;
		}
		for (size_t i = 0; i < cp.n; i++)
			if (!i || cp.v[i].ino != cp.v[i - 1].ino || cp.v[i].idx != cp.v[i - 1].idx)
				refs[nrefs++] = (struct meta_chunk_ref){ cp.v[i].ino, cp.v[i].idx, 0, 0 };
		if ((rc = meta_pass(url, refs, nrefs, &mr)))
			goto out;
		cr = (struct chunk_report){ 0 };
		judge(&cp, refs, targets, (uint32_t)c.replicas, &cr);
		uint64_t other = cr.over + cr.divergent + cr.pending + cr.corrupt +
				 mr.dangling_dentries + mr.nlink_mismatch + mr.dir_nlink_mismatch +
				 mr.orphan_inodes + mr.bad_parent + mr.unreachable_dirs +
				 mr.corrupt_records + mr.idata_mismatch;
		if (pass > 0 || other || !(cr.under + mr.orphan_chunks))
			break;
		fprintf(stderr, "chainfs fsck: %llu orphan and %llu under-replicated chunks: "
			"checking again in 1 s (a file's GC may have been running)\n",
			(unsigned long long)mr.orphan_chunks, (unsigned long long)cr.under);
		sleep(1);
	}
	printf("chunks targets=%zu copies=%llu chunks=%llu under_replicated=%llu "
	       "over_replicated=%llu divergent=%llu pending=%llu corrupt=%llu "
	       "being_removed=%llu\n",
	       ntargets, (unsigned long long)cr.copies, (unsigned long long)cr.chunks,
	       (unsigned long long)cr.under, (unsigned long long)cr.over,
	       (unsigned long long)cr.divergent, (unsigned long long)cr.pending,
	       (unsigned long long)cr.corrupt, (unsigned long long)cr.removing);
	printf("meta inodes=%llu dentries=%llu dangling_dentries=%llu nlink_mismatch=%llu "
	       "dir_nlink_mismatch=%llu orphan_inodes=%llu bad_parent=%llu "
	       "unreachable_dirs=%llu orphan_chunks=%llu corrupt_records=%llu "
	       "gc_pending=%llu sessions=%llu\n",
	       (unsigned long long)mr.inodes, (unsigned long long)mr.dentries,
	       (unsigned long long)mr.dangling_dentries, (unsigned long long)mr.nlink_mismatch,
	       (unsigned long long)mr.dir_nlink_mismatch, (unsigned long long)mr.orphan_inodes,
	       (unsigned long long)mr.bad_parent, (unsigned long long)mr.unreachable_dirs,
	       (unsigned long long)mr.orphan_chunks, (unsigned long long)mr.corrupt_records,
	       (unsigned long long)mr.gc_pending, (unsigned long long)mr.sessions);
	printf("meta inline_files=%llu inline_mismatch=%llu\n",
	       (unsigned long long)mr.idata_files, (unsigned long long)mr.idata_mismatch);
	uint64_t bad = cr.under + cr.over + cr.divergent + cr.pending + cr.corrupt +
		       mr.dangling_dentries + mr.nlink_mismatch + mr.dir_nlink_mismatch +
		       mr.orphan_inodes + mr.bad_parent + mr.unreachable_dirs + mr.orphan_chunks +
		       mr.corrupt_records + mr.idata_mismatch;
	printf("fsck: %s\n", bad ? "PROBLEMS FOUND" : "clean");
	ret = bad ? 1 : 0;
	goto out;
fail:
	fprintf(stderr, "chainfs fsck: %s\n", cfs_strerror(rc));
out:
	for (size_t i = 0; i < ntargets; i++)
		free(targets[i]);
	free(targets);
	free(cp.v);
	free(refs);
	cfg_free(opts, &c);
	return ret;
}
