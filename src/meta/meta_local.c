/* meta_local.c - a metadata instance in the client's process (meta_local.h).
 *
 * Scratch: a meta_scratch is large (a readdir page, an xattr value), so
 * threads take one from a free list and give it back; the list grows to
 * the number of threads that ever called at once (the mount's FUSE
 * threads) and is freed at close.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/random.h>

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

struct meta_local {
	kv_engine *kv;
	meta_ctx *meta;
	pthread_mutex_t mu;          /* guards free_list */
	struct scratch_node *free_list;
	_Atomic uint64_t calls;
};

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
 * - a failover error (meta_client.c) comes from the KV before the commit,
 *   and the service's replay under the same request id applies it once
 *   (OPEN and SETATTR keep idempotency records; CLOSE and SYNC are
 *   idempotent: a session key cleared twice, a length only raised;
 *   IDATA_CONVERT's begin re-claims, its commit replayed answers
 *   "not inline", which the client takes as done: meta_idata.c);
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

static int new_ctx(struct meta_local *l, const struct meta_local_opts *o,
		   const struct meta_layout *root, uint64_t id)
{
	struct meta_opts mo = {
		.instance_id = id,
		.root_layout = *root,
		/* never called by the operations run here (local_type) */
		.storage = meta_storage_none(),
		.chains = { o->mgmtd, meta_routing_table },
		.idata_max = o->idata_max <= META_IDATA_MAX ? o->idata_max : META_IDATA_MAX,
	};
	return meta_new(l->kv, &mo, &l->meta);
}

int meta_local_open(const struct meta_local_opts *o, struct meta_local **out, char *err,
		    size_t errlen)
{
	struct meta_local *l;
	struct meta_inode root;
	/* Only to read the root: its default layout is the instance's
	 * root_layout, as the service formatted it. */
	struct meta_layout probe = { .chunk_size = 1 << 20, .stripe = 1, .table_id = 1 };
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
	pthread_mutex_init(&l->mu, NULL);
	rc = kv_open(o->kv_url, &l->kv, err, errlen);
	if (rc)
		goto fail;
	if ((rc = new_ctx(l, o, &probe, id))) {
		snprintf(err, errlen, "meta instance: %s", cfs_strerror(rc));
		goto fail;
	}
	rc = meta_getattr(l->meta, META_ROOT_INO, &root);
	meta_free(l->meta);
	l->meta = NULL;
	if (rc == 0 && !root.has_layout)
		rc = -EINVAL;
	if (rc) {
		snprintf(err, errlen, "%s: no root directory with a layout (%s): start meta first",
			 o->kv_url, cfs_strerror(rc));
		goto fail;
	}
	if ((rc = new_ctx(l, o, &root.layout, id))) {
		snprintf(err, errlen, "meta instance: %s", cfs_strerror(rc));
		goto fail;
	}
	*out = l;
	return 0;
fail:
	meta_local_close(l);
	return rc;
}

int meta_local_call(void *arg, uint16_t type, const uint8_t *req, size_t len, struct buf *resp,
		    char *err, size_t errlen)
{
	struct meta_local *l = arg;
	struct scratch_node *n;
	int malformed, rc;

	if (!local_type(type))
		return META_LOCAL_PASS;
	if (len > UINT32_MAX)
		return -CFS_EPROTO;
	pthread_mutex_lock(&l->mu);
	n = l->free_list;
	if (n)
		l->free_list = n->next;
	pthread_mutex_unlock(&l->mu);
	if (!n) {
		n = calloc(1, sizeof(*n));
		if (!n)
			return -ENOMEM;
		buf_init(&n->sc.out);
	}
	rc = meta_dispatch_kv_only(l->meta, &n->sc, type, req, (uint32_t)len, err, errlen,
				   &malformed);
	if (rc != META_DISPATCH_PASS)
		atomic_fetch_add_explicit(&l->calls, 1, memory_order_relaxed);
	buf_reset(resp);
	if (rc == META_DISPATCH_PASS)
		rc = META_LOCAL_PASS;
	else if (rc == 0 && buf_append(resp, n->sc.out.data, n->sc.out.len))
		rc = -ENOMEM;
	pthread_mutex_lock(&l->mu);
	n->next = l->free_list;
	l->free_list = n;
	pthread_mutex_unlock(&l->mu);
	return rc;
}

uint64_t meta_local_calls(const struct meta_local *l)
{
	return atomic_load_explicit(&l->calls, memory_order_relaxed);
}

void meta_local_close(struct meta_local *l)
{
	if (!l)
		return;
	while (l->free_list) {
		struct scratch_node *n = l->free_list;
		l->free_list = n->next;
		buf_fini(&n->sc.out);
		free(n);
	}
	meta_free(l->meta);
	kv_close(l->kv);
	pthread_mutex_destroy(&l->mu);
	free(l);
}
