/* meta_kvc_proto.c - KVCache index message codecs (meta_kvc_proto.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "common/wire.h"
#include "meta/meta_kvc_proto.h"

const char *kvc_rpc_name(uint16_t type)
{
	static const char *const names[] = {
		"KVC_NS_CREATE", "KVC_NS_GET", "KVC_DELETE_NS", "KVC_LOOKUP", "KVC_RESERVE",
		"KVC_PUBLISH", "KVC_DELETE", "KVC_CLEAR", "KVC_RELEASE", "KVC_STATS",
	};
	if (type < META_RPC_KVC_FIRST || type > META_RPC_KVC_LAST)
		return NULL;
	return names[type - META_RPC_KVC_FIRST];
}

int kvc_msg_encode(struct buf *b, const struct kvc_msg *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u16(&w, m->type);
	wire_put_blob(&w, m->name, m->name_len);
	wire_put_u64(&w, m->ns_id);
	wire_put_u64(&w, m->owner);
	wire_put_u32(&w, m->lease_ms);
	wire_put_u32(&w, m->flags);
	const struct kvc_ns *ns = &m->ns;
	uint32_t nslabs = ns->nslabs > KVC_SLABS_MAX ? KVC_SLABS_MAX : ns->nslabs;
	wire_put_u32(&w, ns->page_size);
	wire_put_u64(&w, ns->nslots);
	wire_put_u32(&w, nslabs);
	wire_put_u64(&w, ns->slots_per_slab);
	wire_put_u32(&w, ns->touch_ms);
	wire_put_u32(&w, ns->lease_ms);
	wire_put_u64(&w, ns->id);
	wire_put_i64(&w, ns->created);
	size_t dl = strnlen(ns->dir, KVC_DIR_MAX);
	wire_put_blob(&w, ns->dir, (uint32_t)dl);
	for (uint32_t i = 0; i < nslabs; i++)
		wire_put_u64(&w, ns->slab_ino[i]);
	const uint64_t *st = &m->stats.used;
	for (int i = 0; i < 8; i++)
		wire_put_u64(&w, st[i]);
	wire_put_u32(&w, m->n);
	for (uint32_t i = 0; i < m->n; i++) {
		const struct kvc_item *it = &m->items[i];
		wire_put_blob(&w, it->key, it->key_len);
		wire_put_i32(&w, it->status);
		wire_put_u64(&w, it->slot);
		wire_put_u64(&w, it->version);
		wire_put_u32(&w, it->len);
		wire_put_u32(&w, it->crc);
		wire_put_u64(&w, it->last_used);
	}
	/* Appended fields (decoders before them skip trailing bytes). */
	wire_put_u32(&w, ns->ttl_ms);
	wire_put_u32(&w, m->ttl_ms);
	wire_put_u64(&w, m->stats.evict_recent);
	wire_put_u64(&w, m->token);
	wire_put_u32(&w, ns->durability);
	return w.err;
}

int kvc_msg_decode(const void *p, size_t n, struct kvc_msg *m)
{
	struct wire_reader r;
	const uint8_t *dir;
	uint32_t dl;
	memset(m, 0, sizeof(*m));
	wire_reader_init(&r, p, n);
	wire_get_u16(&r, &m->type);
	if (!r.err && !kvc_rpc_name(m->type))
		return -CFS_EPROTO;
	wire_get_blob(&r, KVC_NAME_MAX, &m->name, &m->name_len);
	wire_get_u64(&r, &m->ns_id);
	wire_get_u64(&r, &m->owner);
	wire_get_u32(&r, &m->lease_ms);
	wire_get_u32(&r, &m->flags);
	struct kvc_ns *ns = &m->ns;
	wire_get_u32(&r, &ns->page_size);
	wire_get_u64(&r, &ns->nslots);
	wire_get_u32(&r, &ns->nslabs);
	if (ns->nslabs > KVC_SLABS_MAX)
		return -CFS_EPROTO;
	wire_get_u64(&r, &ns->slots_per_slab);
	wire_get_u32(&r, &ns->touch_ms);
	wire_get_u32(&r, &ns->lease_ms);
	wire_get_u64(&r, &ns->id);
	wire_get_i64(&r, &ns->created);
	if (wire_get_blob(&r, KVC_DIR_MAX, &dir, &dl))
		return -CFS_EPROTO;
	if (dl) {
		memcpy(ns->dir, dir, dl);
		if (memchr(ns->dir, 0, dl))
			return -CFS_EPROTO;
	}
	ns->dir[dl] = 0;
	for (uint32_t i = 0; i < ns->nslabs; i++)
		wire_get_u64(&r, &ns->slab_ino[i]);
	uint64_t *st = &m->stats.used;
	for (int i = 0; i < 8; i++)
		wire_get_u64(&r, &st[i]);
	wire_get_u32(&r, &m->n);
	if (r.err)
		return r.err;
	/* Each item takes at least 40 bytes: a count the payload cannot
	 * hold is malformed before anything is allocated. */
	if (m->n > KVC_BATCH_MAX || (size_t)m->n * 40 > wire_left(&r))
		return -CFS_EPROTO;
	if (m->n) {
		m->items = calloc(m->n, sizeof(*m->items));
		if (!m->items)
			return -ENOMEM;
		m->items_owned = 1;
	}
	for (uint32_t i = 0; i < m->n; i++) {
		struct kvc_item *it = &m->items[i];
		wire_get_blob(&r, KVC_KEY_MAX, &it->key, &it->key_len);
		wire_get_i32(&r, &it->status);
		wire_get_u64(&r, &it->slot);
		wire_get_u64(&r, &it->version);
		wire_get_u32(&r, &it->len);
		wire_get_u32(&r, &it->crc);
		wire_get_u64(&r, &it->last_used);
	}
	/* Appended fields: absent in messages of older peers (zero then). */
	if (!r.err && wire_left(&r) >= 4)
		wire_get_u32(&r, &ns->ttl_ms);
	if (!r.err && wire_left(&r) >= 4)
		wire_get_u32(&r, &m->ttl_ms);
	if (!r.err && wire_left(&r) >= 8)
		wire_get_u64(&r, &m->stats.evict_recent);
	if (!r.err && wire_left(&r) >= 8)
		wire_get_u64(&r, &m->token);
	if (!r.err && wire_left(&r) >= 4)
		wire_get_u32(&r, &ns->durability);
	if (r.err) {
		kvc_msg_fini(m);
		return r.err;
	}
	return 0;
}

void kvc_msg_fini(struct kvc_msg *m)
{
	if (!m)
		return;
	if (m->items_owned)
		free(m->items);
	m->items = NULL;
	m->items_owned = 0;
	m->n = 0;
}
