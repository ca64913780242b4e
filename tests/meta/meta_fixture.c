/* meta_fixture.c - see meta_fixture.h. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "etcd_cluster.h"
#include "meta_fixture.h"
#include "testenv.h"

const char *fx_url = "mem://";
const struct meta_cred FX_ROOT = { 0, 0, 0, NULL };

const char *const *fx_urls(int argc, char **argv, int *n)
{
	static const char *one[1];
	static const char *const dflt[] = { "mem://", "lmdb://" };
	const char *env = getenv("CFS_META_KV");
	if (argc > 1 || (env && *env)) {
		one[0] = argc > 1 ? argv[1] : env;
		*n = 1;
		return one;
	}
	*n = 2;
	return dflt;
}

static int fx_table(void *arg, uint32_t table_id, uint32_t *chains, uint32_t cap)
{
	uint32_t n, base;
	if (table_id == 1) {
		n = FX_TABLE_CHAINS;
		base = 101;
	} else if (table_id == 2) {
		n = 2;
		base = 201;
	} else {
		return -ENOENT;
	}
	for (uint32_t i = 0; i < n && i < cap; i++)
		chains[i] = base + i;
	return (int)n;
}

/* Under S->mu: KEY (or none) as the next entry of S->cut_keys. */
static void fx_note_key(struct fx_storage *s, const struct meta_cut_key *key)
{
	if (s->ncut_keys < FX_MAX_CHUNKS)
		s->cut_keys[s->ncut_keys++] = key ? *key : (struct meta_cut_key){0, 0};
}

/* With head_cache: 1 when KEY's cut of KIND on CHAIN came before (a late
 * copy), else notes it, 0. Under s->mu. */
static int fx_cut_seen(struct fx_storage *s, const struct meta_cut_key *key, uint32_t chain,
                       int kind)
{
	if (!s->head_cache || !key || !key->seq)
		return 0;
	for (int i = 0; i < s->nseen; i++)
		if (s->seen[i].key.client == key->client && s->seen[i].key.seq == key->seq &&
		    s->seen[i].chain == chain && s->seen[i].kind == kind)
			return 1;
	if (s->nseen < FX_MAX_CHUNKS)
		s->seen[s->nseen++] = (struct fx_seen_cut){*key, chain, kind};
	return 0;
}

static int fx_remove(void *arg, uint32_t chain, uint64_t ino, uint32_t first,
                     const struct meta_cut_key *key)
{
	struct fx_storage *s = arg;
	pthread_mutex_lock(&s->mu);
	void (*hook)(void *) = s->on_remove;
	s->on_remove = NULL;
	pthread_mutex_unlock(&s->mu);
	if (hook)
		hook(s->on_remove_arg);
	pthread_mutex_lock(&s->mu);
	s->remove_calls++;
	fx_note_key(s, key);
	if (s->fail_remove) {
		pthread_mutex_unlock(&s->mu);
		return -EIO;
	}
	if (fx_cut_seen(s, key, chain, 0)) {
		pthread_mutex_unlock(&s->mu);
		return 0;
	}
	if (first == 0 && s->nremoved < FX_MAX_CHUNKS)
		s->removed_inos[s->nremoved++] = ino;
	for (int i = 0; i < s->nchunks;) {
		struct fx_chunk *c = &s->chunks[i];
		if (c->chain == chain && c->ino == ino && c->index >= first)
			*c = s->chunks[--s->nchunks];
		else
			i++;
	}
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static int fx_truncate(void *arg, uint32_t chain, uint64_t ino, uint32_t index, uint32_t len,
                       const struct meta_cut_key *key)
{
	struct fx_storage *s = arg;
	pthread_mutex_lock(&s->mu);
	s->truncate_calls++;
	fx_note_key(s, key);
	int late = fx_cut_seen(s, key, chain, 1);
	for (int i = 0; i < s->nchunks && !late; i++) {
		struct fx_chunk *c = &s->chunks[i];
		if (c->chain == chain && c->ino == ino && c->index == index && c->len > len)
			c->len = len;
	}
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static int fx_query(void *arg, uint32_t chain, uint64_t ino, uint32_t *index, uint32_t *len)
{
	struct fx_storage *s = arg;
	int found = 0;
	pthread_mutex_lock(&s->mu);
	s->query_calls++;
	if (s->fail_query) {
		int rc = s->fail_query == 1 ? -EIO : -s->fail_query;
		pthread_mutex_unlock(&s->mu);
		return rc;
	}
	for (int i = 0; i < s->nchunks; i++) {
		struct fx_chunk *c = &s->chunks[i];
		if (c->chain == chain && c->ino == ino && (!found || c->index > *index)) {
			*index = c->index;
			*len = c->len;
			found = 1;
		}
	}
	pthread_mutex_unlock(&s->mu);
	return found;
}

static int fx_capacity(void *arg, uint64_t *total, uint64_t *free_bytes)
{
	*total = 1ULL << 40;
	*free_bytes = 1ULL << 39;
	return 0;
}

void fx_put_chunk(struct fx_storage *s, uint32_t chain, uint64_t ino, uint32_t index,
		  uint32_t len)
{
	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < s->nchunks; i++) {
		struct fx_chunk *c = &s->chunks[i];
		if (c->chain == chain && c->ino == ino && c->index == index) {
			c->len = len;
			pthread_mutex_unlock(&s->mu);
			return;
		}
	}
	if (s->nchunks < FX_MAX_CHUNKS)
		s->chunks[s->nchunks++] = (struct fx_chunk){ chain, ino, index, len };
	pthread_mutex_unlock(&s->mu);
}

int fx_count_chunks(struct fx_storage *s, uint64_t ino)
{
	int n = 0;
	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < s->nchunks; i++)
		n += s->chunks[i].ino == ino;
	pthread_mutex_unlock(&s->mu);
	return n;
}

void fx_setup(struct fx *f)
{
	static atomic_int serial;
	char err[256];
	memset(&f->st, 0, sizeof(f->st));
	pthread_mutex_init(&f->st.mu, NULL);
	if (strcmp(fx_url, "lmdb://") == 0) {
		char *dir = testenv_tmpdir("meta");
		snprintf(f->url, sizeof(f->url), "lmdb://%s?sync=none", dir);
		free(dir);
	} else if (strncmp(fx_url, "etcd://", 7) == 0) {
		snprintf(f->url, sizeof(f->url), "%s_%d_%d", fx_url, (int)getpid(),
			 atomic_fetch_add(&serial, 1));
	} else {
		snprintf(f->url, sizeof(f->url), "%s", fx_url);
	}
	int rc = kv_open(f->url, &f->kv, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "kv_open(%s): %s\n", f->url, err);
		abort();
	}
}

void fx_teardown(struct fx *f)
{
	kv_close(f->kv);
	f->kv = NULL;
	pthread_mutex_destroy(&f->st.mu);
}

uint32_t fx_idata_max;
int64_t (*fx_now_ns)(void);

meta_ctx *fx_meta(struct fx *f, uint64_t instance)
{
	struct meta_opts o = { 0 };
	meta_ctx *m = NULL;
	o.instance_id = instance;
	o.idata_max = fx_idata_max;
	o.now_ns = fx_now_ns;
	o.id_batch = 64;
	o.root_layout.chunk_size = 1 << 20;
	o.root_layout.stripe = 4;
	o.root_layout.table_id = 1;
	o.storage = (struct meta_storage){ &f->st, fx_remove, fx_truncate, fx_query, fx_capacity, NULL };
	o.chains = (struct meta_chain_view){ NULL, fx_table };
	if (meta_new(f->kv, &o, &m) || meta_format(m)) {
		fprintf(stderr, "meta instance setup failed\n");
		abort();
	}
	return m;
}

int fx_setup_meta(struct fx *f, meta_ctx **m)
{
	fx_setup(f);
	*m = fx_meta(f, 1);
	return 0;
}

int fx_teardown_meta(struct fx *f, meta_ctx **m)
{
	meta_free(*m);
	*m = NULL;
	fx_teardown(f);
	return 0;
}

void fx_assert_fsck_clean(const struct meta_fsck_report *r)
{
	assert_int_equal(r->dangling_dentries, 0);
	assert_int_equal(r->nlink_mismatch, 0);
	assert_int_equal(r->dir_nlink_mismatch, 0);
	assert_int_equal(r->orphan_inodes, 0);
	assert_int_equal(r->bad_parent, 0);
	assert_int_equal(r->unreachable_dirs, 0);
	assert_int_equal(r->corrupt_records, 0);
}

struct meta_req *fx_req(uint64_t client)
{
	static atomic_ullong seq = 1;
	static __thread struct meta_req r[8];
	static __thread int slot;
	struct meta_req *q = &r[slot++ & 7];
	q->client = client;
	q->seq = atomic_fetch_add(&seq, 1);
	return q;
}

int fx_run_groups(const char *what, const struct CMUnitTest *tests, size_t n, int argc,
		  char **argv, const char *etcd_prefix)
{
	char group[600];
	int fails = 0;
	if (etcd_prefix) {
		static char url[512];
		struct etcd_cluster *ec = NULL;
		if (!etcd_cluster_available())
			return 77;
		if (etcd_cluster_start(&(struct etcd_cluster_opts){ .members = 1 }, &ec)) {
			fprintf(stderr, "etcd did not start\n");
			return 1;
		}
		etcd_cluster_url(ec, etcd_prefix, NULL, url, sizeof(url));
		fx_url = url;
		snprintf(group, sizeof(group), "%s on etcd", what);
		fails = _cmocka_run_group_tests(group, tests, n, NULL, NULL);
		etcd_cluster_stop(ec);
		return fails ? 1 : 0;
	}
	int nurl;
	const char *const *urls = fx_urls(argc, argv, &nurl);
	for (int i = 0; i < nurl; i++) {
		fx_url = urls[i];
		snprintf(group, sizeof(group), "%s on %s", what, fx_url);
		fails += _cmocka_run_group_tests(group, tests, n, NULL, NULL);
	}
	return fails ? 1 : 0;
}
