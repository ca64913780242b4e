/* kvc_test.h - what the KVCache integration tests (test_integ_kvcache.c,
 * test_integ_kvcache_cache.c) put and read back: self-checking values,
 * key names, batches of keys over a registered buffer, and the log of
 * acknowledged puts a writer child keeps while a test kills services
 * (every id in it must read back afterwards).
 *
 * Values are self-checking, so a reader needs only the key to tell right
 * bytes from wrong ones: [u32 crc32c of the rest][u32 key id][bytes...].
 * Keys are "key-%08x" of a u32 id. Functions that assert do so through
 * cmocka (a failed check fails the running test); the writer child never
 * asserts (it is a forked process: it exits with a status instead).
 */
#ifndef CFS_TESTS_INTEG_KVC_TEST_H
#define CFS_TESTS_INTEG_KVC_TEST_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "chainfs.h"
#include "integ_env.h"

#define KVT_PAGE (64u << 10) /* the page size of the tests' namespaces */
#define KVT_BATCH 64         /* keys in one struct kvt_batch at most */
#define KVT_NAME_CAP 32      /* bytes of a key name, with its NUL */

/* Fills P with LEN bytes derived from KEY and SEED; from LEN >= 8 on they
 * are self-checking (kvt_self_ok accepts them for KEY, whatever SEED). */
void kvt_fill(uint8_t *p, size_t len, uint32_t key, uint32_t seed);
/* 1 when P (LEN bytes, LEN >= 8) is a value kvt_fill made for KEY. */
int kvt_self_ok(const uint8_t *p, size_t len, uint32_t key);
/* The name of key ID ("key-%08x") into OUT (KVT_NAME_CAP bytes). */
void kvt_keyname(char *out, uint32_t id);

/* The arguments of one put, get, delete or exists call of N keys. */
struct kvt_batch {
	int n;
	uint32_t ids[KVT_BATCH];
	char names[KVT_BATCH][KVT_NAME_CAP];
	const void *keys[KVT_BATCH], *vals[KVT_BATCH];
	void *bufs[KVT_BATCH];
	size_t kl[KVT_BATCH], lens[KVT_BATCH], caps[KVT_BATCH];
};
/* Sets B's N (<= KVT_BATCH) keys: key-IDS[i], or with IDS NULL key-(ID0+i). */
void kvt_batch_keys(struct kvt_batch *b, int n, const uint32_t *ids, uint32_t id0);
/* Sets B's values (for a put): LEN bytes kvt_fill makes (SEED) for key i,
 * written to page i of MEM (pages of KVT_PAGE bytes). */
void kvt_batch_vals(struct kvt_batch *b, uint8_t *mem, size_t len, uint32_t seed);
/* Sets B's buffers (for a get): page i of MEM, KVT_PAGE bytes each. */
void kvt_batch_bufs(struct kvt_batch *b, uint8_t *mem);

/* The put/get pair most tests use on an iov of at least 32 pages: values
 * are written from pages 0..N-1, gets land in pages 16..16+N-1 (N <= 16),
 * so a get does not overwrite what the last put sent.
 * kvt_put_n puts keys key-(BASE+i) with LEN bytes (kvt_fill, SEED) and
 * kvt_get_n gets them, each returning the call's result, RES per key. */
int kvt_put_n(cfs_kvc *kv, cfs_iov *iov, int n, uint32_t base, size_t len, uint32_t seed,
	      int *res);
int kvt_get_n(cfs_kvc *kv, cfs_iov *iov, int n, uint32_t base, int *res);
/* kvt_put_n where every key must be stored. */
void kvt_put_n_ok(cfs_kvc *kv, cfs_iov *iov, int n, uint32_t base, size_t len, uint32_t seed);
/* kvt_get_n where every key must be found with LEN self-checking bytes. */
void kvt_get_n_check(cfs_kvc *kv, cfs_iov *iov, int n, uint32_t base, size_t len);

/* ---- acknowledged puts under a kill -9 ----
 * A writer child appends the u32 id of every put that returned 0 to a
 * file (ACKS); the test kills and restarts services meanwhile, stops the
 * child, then reads every id back. */
struct kvt_writer {
	const char *mnt;              /* the mount */
	const struct cfs_kvc_opts *o; /* options of the child's handle */
	const char *ns;               /* namespace (made already) */
	const char *acks, *stopf;     /* the ids file; the child stops once STOPF exists */
	uint32_t id0, max_ids;        /* ids ID0.. ID0+MAX_IDS-1, 8 per put, then idle */
	size_t len;                   /* bytes of every value (<= KVT_PAGE) */
	int pause_ms;                 /* between puts (keeps a namespace from filling) */
};
/* Forks the writer child (the caller must have no threads: see
 * integ_run) and returns its pid. The child never returns: it exits 0
 * once STOPF exists, 2 when it cannot open the namespace, 4 when ACKS
 * cannot be written. */
pid_t kvt_writer_start(const struct kvt_writer *w);
/* How many ids ACKS holds so far (0 when it does not exist yet). */
long kvt_acked(const char *acks);
/* Waits (up to 60 s) until ACKS holds AHEAD more ids than now, kill -9s
 * ROLE of E's cluster, brings it back (integ_up_again), then waits (up to
 * 90 s) until 64 more ids are acknowledged, or ACKS holds CAP (the
 * writer's last ids): puts go on after the restart. Fails the test when
 * a wait runs out or the restart fails. */
void kvt_kill_under_load(const struct integ *e, const char *acks, const char *role, long ahead,
			 long cap);
/* Stops W's child PID (creates STOPF; it must exit 0), waits up to 60 s
 * for every chain of E to serve again, then gets every acknowledged id
 * back through a new handle (W's options). Returns how many did not come
 * back as W's LEN bytes kvt_fill made for their id; *ACKED gets how many
 * puts were acknowledged. */
long kvt_writer_lost(const struct kvt_writer *w, pid_t pid, const struct integ *e, long *acked);

#endif
