/* kv_int.h - what a kv backend implements, and the helpers kv.c gives it.
 *
 * Split of work. kv.c owns everything backend-independent: argument and
 * limit checks, poisoning, the per-txn arena, the write buffer with
 * read-your-writes (reads are merged with pending writes before the caller
 * sees them), read-conflict counting, kv_range_continue and kv_run. A
 * backend only reads its stored data at the txn's read version, records
 * read conflicts, and applies a write buffer atomically at commit.
 *
 * Adding a backend: define a `const struct kv_backend_ops` (scheme, sizes,
 * functions below), embed `struct kv_engine` as the FIRST member of the
 * backend's engine struct, and list the ops in the table in kv.c.
 *
 * Threads: the engine ops may be called from any thread at once; the txn
 * ops are called for one txn by one thread at a time. Memory: a backend
 * allocates txn-lifetime memory with kv_arena_alloc(&t->arena, ...) or keeps
 * it in its txn private area (kv_txn_priv); returned slices must stay valid
 * until txn_free.
 */
#ifndef CFS_KV_KV_INT_H
#define CFS_KV_KV_INT_H

#include <stddef.h>
#include <stdint.h>

#include "kv/kv.h"

/* ---- URL ---------------------------------------------------------------- */

#define KV_URL_MAX_OPTS 16

/* scheme://authority/path?k=v&k=v, percent-decoded. All strings are owned
 * by the struct (freed by kv_url_fini) and NUL-terminated; missing parts
 * are "" (never NULL). */
struct kv_url {
	char *scheme;    /* "lmdb", "etcd", "mem" */
	char *authority; /* "h1:2379,h2:2379" or "" */
	char *path;      /* "/var/lib/x" or "" (leading '/' kept) */
	int nopts;
	struct {
		char *key;
		char *val;   /* "" for "?flag" */
	} opts[KV_URL_MAX_OPTS];
};

/* Parses URL. 0, -EINVAL (err says why) or -ENOMEM. */
int kv_url_parse(const char *url, struct kv_url *u, char *err, size_t errlen);
void kv_url_fini(struct kv_url *u);
/* Value of option KEY (the last one if KEY repeats), or NULL if absent.
 * Borrowed from U. */
const char *kv_url_opt(const struct kv_url *u, const char *key);
/* Fails with -EINVAL (err names it) if U has an option not in ALLOWED
 * (a NULL-terminated list). */
int kv_url_check_opts(const struct kv_url *u, const char *const *allowed, char *err,
		      size_t errlen);
/* Parses an unsigned size option with optional k/m/g/t suffix (powers of
 * 1024) into *out; absent option leaves *out unchanged. 0 or -EINVAL. */
int kv_url_opt_size(const struct kv_url *u, const char *key, uint64_t *out, char *err,
		    size_t errlen);

/* Writes a formatted message into err (NULL-safe); returns CODE. */
int kv_errf(char *err, size_t errlen, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* ---- arena -------------------------------------------------------------- */

struct kv_arena_chunk;

/* Bump allocator for txn-lifetime memory; freed all at once. */
struct kv_arena {
	struct kv_arena_chunk *head; /* newest chunk; owned list */
	char *cur, *end;             /* free space in head */
};

void kv_arena_init(struct kv_arena *a);
void kv_arena_fini(struct kv_arena *a);
/* N bytes aligned to 16, or NULL on ENOMEM. */
void *kv_arena_alloc(struct kv_arena *a, size_t n);
/* Grows P, the newest allocation of A (OLDN bytes, or P == NULL), to NEWN
 * bytes: in place when it fits, else moved (contents kept). The new
 * address or NULL on ENOMEM (P is then untouched). */
void *kv_arena_grow(struct kv_arena *a, void *p, size_t oldn, size_t newn);
/* Copy of S in the arena; {NULL,0} stays so. Returns -ENOMEM or 0. */
int kv_arena_dup(struct kv_arena *a, struct kv_slice s, struct kv_slice *out);

/* ---- keys --------------------------------------------------------------- */

/* memcmp order, shorter first on a common prefix. <0, 0, >0. */
int kv_key_cmp(struct kv_slice a, struct kv_slice b);
/* Is K in [b, e)? An empty e means no upper bound; empty b no lower. */
int kv_in_range(struct kv_slice k, struct kv_slice b, struct kv_slice e);

/* ---- write buffer ------------------------------------------------------- */

enum kv_wop {
	KV_WOP_SET,   /* store val */
	KV_WOP_CLEAR, /* delete the key */
	KV_WOP_ADD,   /* stored value (as in kv_atomic_add) + delta */
	KV_WOP_MAX,   /* max(stored value, delta) as signed (kv_atomic_max) */
};

struct kv_wpoint {
	struct kv_slice key; /* arena copy */
	enum kv_wop op;
	struct kv_slice val; /* SET only; arena copy */
	int64_t delta;       /* ADD: the delta; MAX: the operand */
};

struct kv_wrange {
	struct kv_slice begin, end; /* arena copies; end.n == 0: no bound */
};

/* A txn's pending writes, in their net form. Semantics of applying it:
 * first delete every key in every range (ranges may overlap), then apply
 * every point in order (keys are unique, so order does not matter). A
 * point written after a clear_range covering it stays a point; a point
 * written before is dropped by kv_clear_range; an ADD on a key covered by
 * a cleared range is folded into a SET. Hence no ADD point lies inside a
 * range, and an ADD's base is the value stored before the txn. */
struct kv_wbuf {
	struct kv_wpoint pts[KV_MAX_WRITES];    /* sorted by key, unique */
	int npts;
	struct kv_wrange ranges[KV_MAX_WRITES]; /* in call order */
	int nranges;
	int ncalls;                              /* write calls, <= KV_MAX_WRITES */
	size_t bytes;                            /* key + value bytes written */
};

/* Index of KEY's point in W or -1. */
int kv_wbuf_find(const struct kv_wbuf *w, struct kv_slice key);
/* Is KEY inside a cleared range of W? */
int kv_wbuf_cleared(const struct kv_wbuf *w, struct kv_slice key);
/* Applies an atomic add: BASE (found != 0) or absent, plus delta, into the
 * 8 bytes at out8. */
void kv_add_apply(const void *base, size_t n, int found, int64_t delta, uint8_t out8[8]);
/* Applies an ADD or MAX point op with OPERAND over BASE likewise. */
void kv_point_apply(enum kv_wop op, const void *base, size_t n, int found, int64_t operand,
		    uint8_t out8[8]);

/* ---- engine and txn ----------------------------------------------------- */

struct kv_backend_ops;

/* Embedded as the first member of each backend's engine struct. */
struct kv_engine {
	const struct kv_backend_ops *ops;
};

enum kv_txn_state { KV_TXN_OPEN, KV_TXN_DONE };

struct kv_txn {
	struct kv_engine *eng;
	unsigned flags;          /* KV_RDONLY */
	enum kv_txn_state state;
	int err;                 /* sticky error (poison), 0 if none */
	int nconflicts;          /* read-conflict entries counted so far */
	struct kv_arena arena;   /* everything returned to the caller */
	struct kv_wbuf wb;       /* pending writes (read-write txns) */
	int alone;               /* set by a commit that reports it: kv_run_stats.alone */
	/* backend private area of ops->txn_priv_size bytes follows,
	 * zero-initialised at begin; reach it with kv_txn_priv() */
};

static inline void *kv_txn_priv(struct kv_txn *t)
{
	return (char *)t + ((sizeof(struct kv_txn) + 15) & ~(size_t)15);
}

/* What a backend implements. All int returns are 0 / >0 as stated / <0
 * with the codes of kv.h; kv.c poisons the txn on any error. Key and
 * value slices passed in are valid for the call only unless they come
 * from the txn's arena or write buffer (which live until txn_free). */
struct kv_backend_ops {
	const char *scheme;       /* URL scheme, e.g. "lmdb" */
	size_t txn_priv_size;     /* bytes of private state per txn */

	/* Opens from a parsed URL; allocates the engine (struct kv_engine
	 * first, ops set by kv.c after return). err as for kv_open. */
	int (*open)(const struct kv_url *u, struct kv_engine **out, char *err,
		    size_t errlen);
	void (*close)(struct kv_engine *e);

	/* Starts a txn: t->eng, t->flags set, private area zeroed. On error
	 * txn_free is NOT called. */
	int (*txn_begin)(struct kv_txn *t);
	/* Releases the backend's txn state (abort if not committed). */
	void (*txn_free)(struct kv_txn *t);

	int (*read_version)(struct kv_txn *t, int64_t *version);

	/* Stored value of KEY at the read version (no own writes merged):
	 * 1 found (*val valid until txn_free), 0 absent, <0 error. If
	 * CONFLICT != 0, record KEY in the read-conflict set (absent too). */
	int (*get)(struct kv_txn *t, struct kv_slice key, int conflict, struct kv_slice *val);

	/* Optional (NULL: kv.c calls get per key). Stored values of the N
	 * KEYS at the read version, as N get calls: FOUND[i] 1 with VALS[i]
	 * valid until txn_free, or 0; conflicts recorded as get does. 0 or
	 * <0. */
	int (*get_multi)(struct kv_txn *t, int n, const struct kv_slice *keys, int conflict,
			 struct kv_slice *vals, int *found);

	/* Stored pairs in [begin, end) at the read version, ascending (or
	 * descending from the end if REVERSE), at most LIMIT of them (always
	 * > 0; INT_MAX when the caller set no limit);
	 * out->kvs allocated in the arena (or otherwise valid until
	 * txn_free); out->has_more set when LIMIT stopped the scan. If
	 * CONFLICT != 0, record a read conflict on the part examined: the
	 * whole [begin, end) when !has_more, else forward [begin, last key]
	 * / reverse [last key, end). Deletes inside that part must be
	 * detected as well as inserts and updates. */
	int (*get_range)(struct kv_txn *t, struct kv_slice begin, struct kv_slice end,
			 int limit, int reverse, int conflict, struct kv_range *out);

	/* Records a read conflict on [begin, end), or on the single key
	 * BEGIN when SINGLE != 0 (END is then ignored). */
	int (*add_conflict)(struct kv_txn *t, struct kv_slice begin, struct kv_slice end,
			    int single);

	/* Atomically validates the read-conflict set and applies t->wb
	 * (non-empty; read-write txn). *version = commit version. A backend
	 * that sets reports_alone also sets t->alone on success: 1 when no
	 * other write committed between the txn's read version and its
	 * writes (kv_run_stats.alone), else 0. */
	int (*commit)(struct kv_txn *t, int64_t *version);
	int reports_alone;

	/* Makes every commit so far durable (kv_flush). NULL: commits are
	 * durable when they return. */
	int (*flush)(struct kv_engine *e);

	/* kv_write_error. NULL: the backend never refuses writes as a state. */
	int (*write_error)(struct kv_engine *e);

	/* kv_cancel. NULL: the backend never blocks on a peer. */
	void (*cancel)(struct kv_engine *e);
};

/* Group-commit counters of an lmdb engine: write txns committed and the
 * txns they carried (tests, bench). Both 0 for other backends. */
void kv_lmdb_stats(kv_engine *e, uint64_t *batches, uint64_t *txns);
/* sync=window state of an lmdb engine (tests): the newest committed and
 * the newest synced write txn id, and the fdatasyncs done. 0 for others. */
void kv_lmdb_sync_stats(kv_engine *e, int64_t *committed, int64_t *synced, uint64_t *syncs);
/* 1 if E is the background syncer of its store (holds DIR/sync.lock:
 * kv_lmdb.c "one background syncer"), else 0 (also for other backends). */
int kv_lmdb_sync_owner(kv_engine *e);
/* Online compaction of an lmdb engine (compact=1 runs it from the engine's
 * background thread after a large delete; kv_lmdb.c "online
 * compaction"): runs it now, with FORCE whatever the free list. 1 if the
 * environment was replaced by a compacting copy, 0 if not (nothing to
 * gain, another process or engine has the environment open, txns stayed
 * open, a batch was running; 0 too for other backends), or -errno. Commits
 * racing with it fail with -CFS_ECONFLICT (nothing applied) and new txns
 * wait until it ends. The caller must not hold a txn of E. Thread-safe. */
int kv_lmdb_compact(kv_engine *e, int force);
/* Online compactions done by E and how long the last one (done or given
 * up) held commits, in ns. 0 for other backends. */
void kv_lmdb_compact_stats(kv_engine *e, uint64_t *count, uint64_t *last_stall_ns);
/* Tests: an online compaction SIGKILLs its process at step N (1: copy
 * written, 2: copy synced, 3: renamed, 4: directory synced, 5: old
 * environment closed, 6: new one open); 0 (default): never. */
extern int kv_lmdb_crash_step;
/* Tests: how often (ms) an engine's background thread looks at the free
 * list for an online compaction (default 100; <= 0: never). */
extern int kv_lmdb_compact_check_ms;
/* Tests: how long (ms) an online compaction waits for the running batch
 * and the open txns before it gives up (default 250). */
extern int kv_lmdb_compact_drain_ms;

extern const struct kv_backend_ops kv_lmdb_ops;
extern const struct kv_backend_ops kv_mem_ops;
extern const struct kv_backend_ops kv_etcd_ops; /* kv_etcd.c, when built */

#endif
