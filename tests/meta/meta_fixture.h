/* meta_fixture.h - shared setup for the meta tests: a KV engine per test
 * from a URL, a fake storage service that records calls and holds chunk
 * lengths, a fake chain-table view, and meta instances over them.
 *
 * KV URL: argv[1] if given, else $CFS_META_KV, else each of "mem://" and
 * "lmdb://" (a fresh private directory per test). "lmdb://" alone means a
 * fresh temp dir; an etcd:// URL gets a unique suffix on its prefix per
 * test so tests never see each other's keys.
 */
#ifndef CFS_TESTS_META_FIXTURE_H
#define CFS_TESTS_META_FIXTURE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "meta/meta.h"

#define FX_TABLE_CHAINS 8     /* table 1: chains 101..108; table 2: 201..202 */
#define FX_MAX_CHUNKS 4096

struct fx_chunk {
	uint32_t chain;
	uint64_t ino;
	uint32_t index, len;
};

struct fx_storage {
	pthread_mutex_t mu;
	struct fx_chunk chunks[FX_MAX_CHUNKS];
	int nchunks;
	int remove_calls, truncate_calls, query_calls;
	uint64_t removed_inos[FX_MAX_CHUNKS]; /* ino of each remove call with first == 0 */
	int nremoved;
	/* the key of each remove_chunks / truncate_chunk call, in call
	 * order ({0, 0}: none) */
	struct meta_cut_key cut_keys[FX_MAX_CHUNKS];
	int ncut_keys;
	/* != 0: a cut whose key (and chain, kind) an earlier cut carried is
	 * answered as a chain's head answers a late copy from its
	 * exactly-once cache: 0, nothing cut (craq_write.c "Late cuts") */
	int head_cache;
	struct fx_seen_cut {
		struct meta_cut_key key;
		uint32_t chain;
		int kind; /* 0 remove, 1 truncate */
	} seen[FX_MAX_CHUNKS];
	int nseen;
	int fail_remove;  /* != 0: remove_chunks returns -EIO */
	int fail_query;   /* != 0: query_last_chunk fails: -EIO for 1, else -fail_query */
	/* != NULL: runs once, at the start of the next remove_chunks call
	 * (outside mu), then is cleared: a test's step between two of an
	 * operation's txns (GC's read and its clearing txn). */
	void (*on_remove)(void *arg);
	void *on_remove_arg;
};

struct fx {
	kv_engine *kv;
	struct fx_storage st;
	char url[512];
};

/* The URLs this run covers (see the file comment); n set to the count. */
const char *const *fx_urls(int argc, char **argv, int *n);
/* The URL tests currently use (set by the runner). */
extern const char *fx_url;

/* Opens a fresh engine for fx_url into F and clears the fake storage. */
void fx_setup(struct fx *f);
void fx_teardown(struct fx *f);
/* Inline-data threshold fx_meta gives new instances (meta_opts.idata_max;
 * default 0: off). */
extern uint32_t fx_idata_max;
/* Wall clock fx_meta gives new instances (meta_opts.now_ns; NULL: the
 * real one). */
extern int64_t (*fx_now_ns)(void);
/* A meta instance over F with INSTANCE id; formats the root. */
meta_ctx *fx_meta(struct fx *f, uint64_t instance);
/* The setup/teardown pair of a test over one meta instance: fx_setup(F)
 * and *M = fx_meta(F, 1); then meta_free(*M), *M = NULL and
 * fx_teardown(F). Both return 0, what a cmocka setup returns for success
 * (a failed setup aborts, as fx_meta does). */
int fx_setup_meta(struct fx *f, meta_ctx **m);
int fx_teardown_meta(struct fx *f, meta_ctx **m);
/* Asserts that fsck report R found no damage: no dangling dentries, nlink
 * mismatches of files or directories, orphan inodes, bad parents,
 * unreachable directories or corrupt records. */
void fx_assert_fsck_clean(const struct meta_fsck_report *r);

/* Fake storage: a client wrote chunk (ino, index) with LEN bytes on CHAIN. */
void fx_put_chunk(struct fx_storage *s, uint32_t chain, uint64_t ino, uint32_t index,
		  uint32_t len);
int fx_count_chunks(struct fx_storage *s, uint64_t ino);

/* Request ids: a fresh (client, seq) per call. */
struct meta_req *fx_req(uint64_t client);

extern const struct meta_cred FX_ROOT;

struct CMUnitTest;

/* Runs the N cmocka TESTS as one group per KV URL and returns the process
 * exit code (0 passed, 1 a failure or etcd did not start, 77 skipped).
 * ETCD_PREFIX NULL: the URLs of fx_urls(ARGC, ARGV), each group named
 * "WHAT on <url>". Otherwise a one-member etcd is started here (77 when
 * the etcd binary is missing), the group runs on etcd://.../ETCD_PREFIX
 * and the members are stopped by pid before returning. Sets fx_url.
 * Main thread only. */
int fx_run_groups(const char *what, const struct CMUnitTest *tests, size_t n, int argc,
		  char **argv, const char *etcd_prefix);

#endif
