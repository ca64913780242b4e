/* meta_local.c - a metadata instance in the client's process (meta_local.h).
 *
 * Scratch: a meta_scratch is large (a readdir page, an xattr value), so
 * threads take one from a free list and give it back; the list grows to
 * the number of threads that ever called at once (the mount's FUSE
 * threads) and is freed at close.
 *
 * Compaction hand-off (kv_lmdb.c "Hand-off"): the meta service compacts
 * its store online only while no other process has it open. When it wants
 * to, it writes DIR/compact.want; the watch thread here (one stat every
 * WATCH_MS) then releases the store: calls answer META_LOCAL_PASS (the
 * client sends them to the service over RPC, with the same request id, so
 * idempotency holds), in-flight calls drain (the rwlock), the engine
 * closes (its window sync first: acknowledged commits are in the page
 * cache and the service syncs the whole file before it copies). Once the
 * file is gone the store is opened again (the compacted file) and calls
 * run here again. A want older than WANT_STALE_MS is ignored: the service
 * asks for at most COMPACT_ASK_MS (2 s), so an older one was left by a
 * service that died asking.
 *
 * No idempotency records. Calls run here through meta_dispatch_in_process:
 * a mutation neither reads nor writes IDEM(client, seq) nor the client's
 * floor (a third of an in-process unlink's LMDB txn in one profile, 1.3 %
 * of the mount's CPU under meta-bench: bench/history.md). CLOSE, SYNC,
 * CLOSE_MANY and IDATA_CONVERT never had records (idempotent as they
 * are, see local_type): unchanged. Records exist so that a
 * request DELIVERED AGAIN after its first delivery committed (a lost
 * reply, a failover) is applied once. A call that committed here is never
 * delivered again:
 * 1. It is delivered a second time only by meta_client.c
 *    send_with_failover, and only when this function returned
 *    META_LOCAL_PASS or a failover_error() code (-CFS_ECONFLICT,
 *    -CFS_ETOOOLD, -CFS_EUNAVAIL, -ETIMEDOUT and transport codes); every
 *    other outcome goes back to the caller. Each of those means nothing
 *    of the request committed:
 *    - PASS before the dispatch: a type or form not run here, or the
 *      store released to a compaction (checked under the read lock, which
 *      the release waits for, so a call in flight finishes first);
 *    - PASS for a missing chain table: local_table fails only inside
 *      meta_layout_validate / _assign, which then return -EINVAL, a code
 *      kv_run does not retry: the run ends there, uncommitted;
 *    - the KV codes: kv_lmdb.c never reports -CFS_ETOOOLD, and
 *      -CFS_EUNAVAIL only for MDB_READERS_FULL / MDB_MAP_RESIZED, which
 *      LMDB returns where a txn (or a batch's write txn) begins; the
 *      transport codes and -ETIMEDOUT never come from here (the one
 *      -ETIMEDOUT of meta, a stale copy below the floor, comes from the
 *      idempotency check, not run here); -CFS_ECONFLICT for a failed
 *      validation (checked before the member's writes are
 *      applied; its nested txn is aborted, or, with writemap, validation
 *      only reads) or a commit queued during a compaction (nothing
 *      applied); a group commit hands each member its own outcome, and a
 *      member that failed is not in the batch that commits. A commit that
 *      fails in LMDB gives every applied member -CFS_EMAYBE (or -ENOSPC),
 *      neither a failover code; without a seq meta_run_rw no longer
 *      retries it (kv_run retries -CFS_EMAYBE only for idempotent txns),
 *      so it reaches the caller as an error and is not sent again. kv_run
 *      returns a failover code only when its last attempt failed with it,
 *      and every earlier attempt ended in a retried, i.e. uncommitted,
 *      code. Untracked SETATTR (no size change here) retries -CFS_EMAYBE
 *      itself (meta_attr.c): it sets absolute values, so even a commit
 *      reported as maybe and applied again by the service ends the same;
 *    - each operation run here commits one txn of the request (CREATE's
 *      inode-id range is its own txn: a range taken twice is a gap), and
 *      nothing after that commit returns a failover code (CREATE_DIR's
 *      parent read and OPEN's inline-bytes read are ignored on failure;
 *      the reply encoding gives -ENOMEM / -CFS_ETOOLARGE);
 *    - send_with_failover never comes back here after the first try, so
 *      an RPC copy (recorded by the service) and a local run never both
 *      apply.
 * 2. Nothing else resends a request: each meta_client call encodes it once
 *    with a fresh seq (call_keep), and the mount's own second calls are
 *    new requests that never relied on a record (a record answers only
 *    its own seq): create's non-exclusive retry after -EEXIST (fuse_fs.c)
 *    follows an exclusive create that failed, so committed nothing.
 * 3. The client draws a seq only for a mutation that goes the encoded
 *    way (call_keep: a call answered here never needs one; one passed on
 *    or failed over draws it after this try, before its first RPC), lists
 *    it and marks it done when send_with_failover returns, so the
 *    idem_low its RPC calls carry still advances and still bounds the
 *    floor they raise. A failed-over call's seq stays listed until its
 *    RPC attempts end, so the floor never passes it.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/block_hint.h"
#include "common/log.h"
#include "common/status.h"
#include "common/xalloc.h"
#include "kv/kv.h"
#include "meta/meta.h"
#include "meta/meta_dispatch.h"
#include "meta/meta_local.h"
#include "meta/meta_proto.h"
#include "meta/meta_storage.h"
#include "meta/schema.h"

struct scratch_node {
	struct meta_scratch sc;
	struct scratch_node *next;
};

/* Scratches parked in lock-free slots (one atomic exchange to take one, one
 * compare-and-swap to give it back) before the mutex-guarded free list:
 * as many as FUSE threads usually call at once. */
#define SPARE_SLOTS 4

#define WATCH_MS 50
#define WANT_STALE_MS 5000

struct meta_local {
	/* kv and meta: NULL while released to a compaction. Calls hold rw for
	 * reading; only the watch thread (and open/close) set them, under rw
	 * for writing. */
	pthread_rwlock_t rw;
	kv_engine *kv;
	meta_ctx *meta;
	char *url;                   /* the service's URL, plus compact=0 */
	char want[PATH_MAX];         /* DIR/compact.want */
	struct meta_local_opts o;    /* kv_url not kept (url) */
	uint64_t id;                 /* instance id, the same across reopens */
	pthread_mutex_t mu;          /* guards free_list, stop */
	pthread_cond_t cv;           /* wakes the watch thread to stop */
	int stop, watching;
	pthread_t watch_th;
	struct scratch_node *free_list;
	_Atomic(struct scratch_node *) spare[SPARE_SLOTS]; /* owned by no call */
	_Atomic uint64_t calls;
	_Atomic uint64_t handoffs;
};

static _Thread_local int table_missing;

/* The chain-table view of this instance: mgmtd's routing snapshot. A table
 * missing from it (a table created after the mount's last routing refresh)
 * marks the call, which then goes to the service (meta_local_call). */
static int local_table(void *mgmtd, uint32_t table_id, uint32_t *chains, uint32_t cap)
{
	int rc = meta_routing_table(mgmtd, table_id, chains, cap);
	if (rc < 0)
		table_missing = 1;
	return rc;
}

/* The operations that touch only the KV (the service runs the same set on
 * its loop threads when commits do not wait for the disk), and
 * IDATA_CONVERT (meta_idata.c: a claim and a flip; the client copies the
 * bytes). OPEN, CLOSE, SETATTR and SYNC only in their KV-only forms (meta_request_kv_only:
 * no truncate, a known length, no size change, no storage query); the
 * rest of each goes to the service. What keeps them right here:
 * - a write session an OPEN records carries the mount's client id, as
 *   CREATE's always did here: meta's session prune sees it in the KV and
 *   drops it when the mount dies (meta_service.c prune_sessions);
 * - every storage-dependent step (cutting chunks, asking storage for a
 *   length) is in the forms left to the service: this instance has no
 *   storage (meta_storage_none);
 * - a failover error (meta_client.c) comes from the KV before the commit
 *   (see "No idempotency records"), and the service then runs the
 *   request for the first time; CLOSE and SYNC are idempotent (a session
 *   key cleared twice, a length only raised), IDATA_CONVERT's begin
 *   re-claims and its commit replayed answers "not inline", which the
 *   client takes as done (meta_idata.c);
 * - none of them changes a directory, so other mounts learn of them as
 *   before: attributes within their attr timeout (no notification is sent
 *   for these by the service either). */
static int local_type(uint16_t t)
{
	if (meta_type_read_only(t) || meta_type_kv_only_mutation(t))
		return 1;
	switch (t) {
	case META_RPC_DIRVER: case META_RPC_LOOKUP_PLUS: case META_RPC_LOOKUP_PLUSD:
	case META_RPC_DIRLIST: case META_RPC_CLOSE_MANY: case META_RPC_IDATA_READ:
	case META_RPC_IDATA_WRITE: case META_RPC_IDATA_CONVERT: case META_RPC_OPEN:
	case META_RPC_CLOSE: case META_RPC_SETATTR: case META_RPC_SYNC:
		return 1;
	}
	return 0;
}

static int new_ctx(struct meta_local *l, kv_engine *kv, const struct meta_layout *root,
		   meta_ctx **out)
{
	struct meta_opts mo = {
		.instance_id = l->id,
		.root_layout = *root,
		/* never called by the operations run here (local_type) */
		.storage = meta_storage_none(),
		.chains = { l->o.mgmtd, local_table },
		.idata_max = l->o.idata_max <= META_IDATA_MAX ? l->o.idata_max : META_IDATA_MAX,
	};
	return meta_new(kv, &mo, out);
}

/* Opens l->url and a meta instance on it into *KV, *META: 0, or an error
 * with a message in ERR. */
static int open_store(struct meta_local *l, kv_engine **kvp, meta_ctx **metap, char *err,
		      size_t errlen)
{
	struct meta_inode root;
	/* Only to read the root: its default layout is the instance's
	 * root_layout, as the service formatted it. */
	struct meta_layout probe = { .chunk_size = 1 << 20, .stripe = 1, .table_id = 1 };
	kv_engine *kv = NULL;
	meta_ctx *m = NULL;
	int rc;

	if ((rc = kv_open(l->url, &kv, err, errlen)))
		return rc;
	if ((rc = new_ctx(l, kv, &probe, &m))) {
		snprintf(err, errlen, "meta instance: %s", cfs_strerror(rc));
		goto fail;
	}
	rc = meta_getattr(m, META_ROOT_INO, &root);
	meta_free(m);
	m = NULL;
	if (rc == 0 && !root.has_layout)
		rc = -EINVAL;
	if (rc) {
		snprintf(err, errlen, "%s: no root directory with a layout (%s): start meta first",
			 l->url, cfs_strerror(rc));
		goto fail;
	}
	if ((rc = new_ctx(l, kv, &root.layout, &m))) {
		snprintf(err, errlen, "meta instance: %s", cfs_strerror(rc));
		goto fail;
	}
	*kvp = kv;
	*metap = m;
	return 0;
fail:
	kv_close(kv);
	return rc;
}

/* 1 if the service asks for the store (a fresh DIR/compact.want). */
static int want_fresh(const struct meta_local *l)
{
	struct stat st;
	struct timespec now;

	if (stat(l->want, &st))
		return 0;
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t age_ms = ((int64_t)now.tv_sec - (int64_t)st.st_mtim.tv_sec) * 1000 +
			 ((int64_t)now.tv_nsec - (int64_t)st.st_mtim.tv_nsec) / 1000000;
	return age_ms < WANT_STALE_MS;
}

static void release_store(struct meta_local *l)
{
	pthread_rwlock_wrlock(&l->rw);
	meta_ctx *m = l->meta;
	kv_engine *kv = l->kv;
	l->meta = NULL;
	l->kv = NULL;
	pthread_rwlock_unlock(&l->rw);
	/* No call uses them now: close outside the lock (kv_close syncs). */
	meta_free(m);
	kv_close(kv);
	atomic_fetch_add_explicit(&l->handoffs, 1, memory_order_relaxed);
	LOG_INFO("meta", "in-process meta: store released for the service's compaction; "
		 "calls go over RPC until it is done");
}

/* The watch thread (see the file comment). */
static void *watch_main(void *arg)
{
	struct meta_local *l = arg;
	uint64_t failed = 0;

	pthread_mutex_lock(&l->mu);
	while (!l->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += WATCH_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&l->cv, &l->mu, &ts);
		if (l->stop)
			break;
		pthread_mutex_unlock(&l->mu);
		int want = want_fresh(l);
		if (want && l->meta) {
			release_store(l);
		} else if (!want && !l->meta) {
			kv_engine *kv;
			meta_ctx *m;
			char err[256];
			if (open_store(l, &kv, &m, err, sizeof(err)) == 0) {
				pthread_rwlock_wrlock(&l->rw);
				l->kv = kv;
				l->meta = m;
				pthread_rwlock_unlock(&l->rw);
				LOG_INFO("meta", "in-process meta: store open again");
				failed = 0;
			} else if (failed++ % 200 == 0) { /* every 10 s */
				LOG_WARN("meta", "in-process meta: reopen: %s (calls stay on RPC)",
					 err);
			}
		}
		pthread_mutex_lock(&l->mu);
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

/* L->url: URL with compact=0 (compaction is the service's: a second
 * compacting engine here would ask itself for the store), unless the URL
 * sets compact itself; L->want from its path. Refuses a path without a
 * store: only the service formats one. 0, or -EINVAL / -ENOENT with ERR. */
static int local_url(struct meta_local *l, const char *url, char *err, size_t errlen)
{
	const char *path = url + 7, *q = strchr(path, '?');
	size_t plen = q ? (size_t)(q - path) : strlen(path);
	struct stat st;
	char data[PATH_MAX];

	if (!plen || path[0] != '/' || plen + sizeof("/compact.want") > sizeof(l->want)) {
		snprintf(err, errlen, "in-process meta: '%s' has no absolute store path", url);
		return -EINVAL;
	}
	snprintf(l->want, sizeof(l->want), "%.*s/compact.want", (int)plen, path);
	snprintf(data, sizeof(data), "%.*s/data.mdb", (int)plen, path);
	if (stat(data, &st) || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: no meta store there (%s): give the meta service's "
			 "--kv URL, on this host, and start meta first", data,
			 strerror(errno ? errno : EINVAL));
		return -ENOENT;
	}
	/* Always compact=0, even over a compact= of meta's URL (the last of
	 * a repeated key wins, kv_url_opt): a mount that compacted would ask
	 * for the store itself and its own watch thread would release it. */
	size_t n = strlen(url) + sizeof("&compact=0");
	l->url = xmalloc(n);
	snprintf(l->url, n, "%s%scompact=0", url, q ? (q[1] ? "&" : "") : "?");
	return 0;
}

int meta_local_open(const struct meta_local_opts *o, struct meta_local **out, char *err,
		    size_t errlen)
{
	struct meta_local *l;
	pthread_rwlockattr_t ra;
	uint64_t id = 0;
	int rc;

	if (!o->kv_url || strncmp(o->kv_url, "lmdb://", 7) || !o->mgmtd) {
		snprintf(err, errlen, "in-process meta needs the meta service's lmdb:// store URL "
			 "and mgmtd (got '%s')", o->kv_url ? o->kv_url : "");
		return -EINVAL;
	}
	while (!id)
		if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id)) {
			snprintf(err, errlen, "no entropy for an instance id");
			return -EIO;
		}
	l = xcalloc(1, sizeof(*l));
	for (int i = 0; i < SPARE_SLOTS; i++)
		atomic_init(&l->spare[i], NULL);
	l->o = *o;
	l->o.kv_url = NULL;
	l->id = id;
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cv, NULL);
	/* Writers first: a release must not wait behind a stream of calls. */
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&l->rw, &ra);
	pthread_rwlockattr_destroy(&ra);
	if ((rc = local_url(l, o->kv_url, err, errlen)) ||
	    (rc = open_store(l, &l->kv, &l->meta, err, errlen)))
		goto fail;
	if ((rc = pthread_create(&l->watch_th, NULL, watch_main, l))) {
		snprintf(err, errlen, "in-process meta: watch thread: %s", strerror(rc));
		rc = -rc;
		goto fail;
	}
	l->watching = 1;
	*out = l;
	return 0;
fail:
	meta_local_close(l);
	return rc;
}

/* Takes the store for a call of TYPE (the read lock) and a scratch into
 * *N: 0, META_LOCAL_PASS (released to a compaction, or a mutation while
 * the store refuses writes) or -ENOMEM, with nothing held then.
 *
 * A store that refuses writes (kv_write_error: a sync of it failed, in
 * the service or here; kv_lmdb.c sync_sticky) keeps answering reads
 * here, and passes every mutation to the service before anything runs
 * (nothing committed: "No idempotency records" holds). The service
 * answers EIO while it refuses too, and takes the call again once it was
 * restarted on a repaired disk; this engine refuses until the mount
 * reopens it. */
static int call_begin(struct meta_local *l, uint16_t type, struct scratch_node **np)
{
	struct scratch_node *n;

	if (pthread_rwlock_tryrdlock(&l->rw)) {
		/* the watch thread swaps the store, after the calls in flight
		 * (which may wait on LMDB): a FUSE thread hands its reading
		 * over first (common/block_hint.h) */
		block_hint_wait();
		pthread_rwlock_rdlock(&l->rw);
	}
	if (!l->meta || (meta_rpc_is_mutation(type) && kv_write_error(l->kv))) {
		/* released to a compaction, or no writes: the service answers */
		pthread_rwlock_unlock(&l->rw);
		return META_LOCAL_PASS;
	}
	n = NULL;
	for (int i = 0; i < SPARE_SLOTS && !n; i++)
		if (atomic_load_explicit(&l->spare[i], memory_order_relaxed))
			n = atomic_exchange_explicit(&l->spare[i], NULL, memory_order_acquire);
	if (!n) {
		pthread_mutex_lock(&l->mu);
		n = l->free_list;
		if (n)
			l->free_list = n->next;
		pthread_mutex_unlock(&l->mu);
	}
	if (!n) {
		n = calloc(1, sizeof(*n));
		if (!n) {
			pthread_rwlock_unlock(&l->rw);
			return -ENOMEM;
		}
		buf_init(&n->sc.out);
	}
	table_missing = 0;
	*np = n;
	return 0;
}

/* Ends a call call_begin began whose dispatch returned RC: the store's
 * read lock goes (N stays the caller's until call_put). Returns RC as
 * meta_local_call answers it. */
static int call_end(struct meta_local *l, int rc)
{
	pthread_rwlock_unlock(&l->rw);
	/* A chain table this mount's routing does not know yet: nothing was
	 * committed (the txn failed), and the service, whose routing may
	 * have it, answers instead. */
	if (rc < 0 && table_missing)
		rc = META_DISPATCH_PASS;
	if (rc == META_DISPATCH_PASS)
		return META_LOCAL_PASS;
	atomic_fetch_add_explicit(&l->calls, 1, memory_order_relaxed);
	return rc;
}

static void call_put(struct meta_local *l, struct scratch_node *n)
{
	for (int i = 0; i < SPARE_SLOTS; i++) {
		struct scratch_node *none = NULL;
		if (atomic_compare_exchange_strong_explicit(&l->spare[i], &none, n,
							    memory_order_release,
							    memory_order_relaxed))
			return;
	}
	pthread_mutex_lock(&l->mu);
	n->next = l->free_list;
	l->free_list = n;
	pthread_mutex_unlock(&l->mu);
}

int meta_local_call(void *arg, uint16_t type, const uint8_t *req, size_t len, struct buf *resp,
		    char *err, size_t errlen)
{
	struct meta_local *l = arg;
	struct scratch_node *n = NULL;
	int malformed, rc;

	if (!local_type(type))
		return META_LOCAL_PASS;
	if (len > UINT32_MAX)
		return -CFS_EPROTO;
	if ((rc = call_begin(l, type, &n)))
		return rc;
	rc = meta_dispatch_in_process(l->meta, &n->sc, type, req, (uint32_t)len, err, errlen,
				      &malformed);
	rc = call_end(l, rc);
	buf_reset(resp);
	if (rc == 0 && buf_append(resp, n->sc.out.data, n->sc.out.len))
		rc = -ENOMEM;
	call_put(l, n);
	return rc;
}

int meta_local_call_req(void *arg, const struct meta_rpc_req *m, struct meta_rpc_resp *r,
			char *err, size_t errlen)
{
	struct meta_local *l = arg;
	struct scratch_node *n = NULL;
	int rc;

	if (!local_type(m->type) || !meta_rpc_resp_copyable(m->type))
		return META_LOCAL_PASS;
	if ((rc = call_begin(l, m->type, &n)))
		return rc;
	rc = call_end(l, meta_dispatch_in_process_req(l->meta, &n->sc, m, r, err, errlen));
	call_put(l, n);
	return rc;
}

uint64_t meta_local_calls(const struct meta_local *l)
{
	return atomic_load_explicit(&l->calls, memory_order_relaxed);
}

uint64_t meta_local_handoffs(const struct meta_local *l)
{
	return atomic_load_explicit(&l->handoffs, memory_order_relaxed);
}

void meta_local_close(struct meta_local *l)
{
	if (!l)
		return;
	if (l->watching) {
		pthread_mutex_lock(&l->mu);
		l->stop = 1;
		pthread_cond_signal(&l->cv);
		pthread_mutex_unlock(&l->mu);
		pthread_join(l->watch_th, NULL);
	}
	for (int i = 0; i < SPARE_SLOTS; i++) {
		struct scratch_node *n = atomic_load_explicit(&l->spare[i], memory_order_relaxed);
		if (n) {
			buf_fini(&n->sc.out);
			free(n);
		}
	}
	while (l->free_list) {
		struct scratch_node *n = l->free_list;
		l->free_list = n->next;
		buf_fini(&n->sc.out);
		free(n);
	}
	meta_free(l->meta);
	kv_close(l->kv);
	pthread_rwlock_destroy(&l->rw);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
	free(l->url);
	free(l);
}
