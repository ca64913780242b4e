/* mgmtd_proto.c - codecs of the mgmtd messages (catalog: net/rpc_proto.h).
 *
 * Decoders read through a wire_reader and check once at the end; counts are
 * checked against their limit and against the bytes present before the
 * loop that reads them, so a hostile count cannot make a decoder write past
 * the caller's array or spin.
 */
#include <errno.h>

#include "common/status.h"
#include "common/wire.h"
#include "mgmtd/mgmtd_proto.h"

#define TGT_WIRE_LEN 21 /* u32 slot, u8 state, u64 capacity, u64 used */

static void put_targets(struct wire_writer *w, uint32_t n, const struct mgmtd_target_report *t)
{
	wire_put_u32(w, n);
	for (uint32_t i = 0; i < n; i++) {
		wire_put_u32(w, t[i].slot);
		wire_put_u8(w, (uint8_t)t[i].local_state);
		wire_put_u64(w, t[i].capacity);
		wire_put_u64(w, t[i].used);
	}
}

static int get_targets(struct wire_reader *r, uint32_t *n, struct mgmtd_target_report *t)
{
	wire_get_u32(r, n);
	if (r->err)
		return r->err;
	if (*n > MGMTD_MAX_NODE_TARGETS || *n > wire_left(r) / TGT_WIRE_LEN) {
		*n = 0;
		return wire_fail(r, -CFS_EPROTO);
	}
	for (uint32_t i = 0; i < *n; i++) {
		uint8_t ls = 0;
		wire_get_u32(r, &t[i].slot);
		wire_get_u8(r, &ls);
		wire_get_u64(r, &t[i].capacity);
		wire_get_u64(r, &t[i].used);
		t[i].local_state = (enum chain_local_state)ls;
		if (!r->err &&
		    (!chain_local_state_valid(ls) || t[i].slot == 0 || t[i].slot > ROUTE_SLOT_MAX))
			return wire_fail(r, -CFS_EPROTO);
	}
	return r->err;
}

int mgmtd_register_encode(struct buf *b, const struct mgmtd_register_req *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u8(&w, (uint8_t)m->type);
	wire_put_u32(&w, m->node_id);
	wire_put_blob(&w, m->addr, m->addr_len);
	put_targets(&w, m->n, m->t);
	wire_put_u64(&w, m->incarnation);
	return w.err;
}

int mgmtd_register_decode(const void *p, size_t n, struct mgmtd_register_req *m)
{
	struct wire_reader r;
	uint8_t type = 0;
	const uint8_t *addr = NULL;
	wire_reader_init(&r, p, n);
	wire_get_u8(&r, &type);
	wire_get_u32(&r, &m->node_id);
	wire_get_blob(&r, ROUTE_ADDR_MAX, &addr, &m->addr_len);
	m->addr = (const char *)addr;
	m->type = (enum route_node_type)type;
	if (!r.err &&
	    (type < ROUTE_NODE_MGMTD || type > ROUTE_NODE_CLIENT ||
	     m->node_id > ROUTE_NODE_ID_MAX || m->addr_len == 0 || memchr(addr, 0, m->addr_len)))
		return -CFS_EPROTO;
	if (get_targets(&r, &m->n, m->t))
		return r.err;
	/* Appended field: absent from older peers. */
	m->incarnation = 0;
	if (wire_left(&r) >= 8)
		wire_get_u64(&r, &m->incarnation);
	return r.err;
}

int mgmtd_heartbeat_encode(struct buf *b, const struct mgmtd_heartbeat_req *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, m->node_id);
	wire_put_u64(&w, m->seq);
	put_targets(&w, m->n, m->t);
	return w.err;
}

int mgmtd_heartbeat_decode(const void *p, size_t n, struct mgmtd_heartbeat_req *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u32(&r, &m->node_id);
	wire_get_u64(&r, &m->seq);
	if (!r.err && (m->node_id == 0 || m->node_id > ROUTE_NODE_ID_MAX))
		return -CFS_EPROTO;
	return get_targets(&r, &m->n, m->t);
}

int mgmtd_routing_req_encode(struct buf *b, const struct mgmtd_routing_req *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u64(&w, m->known_version);
	wire_put_u32(&w, m->wait_ms);
	return w.err;
}

int mgmtd_routing_req_decode(const void *p, size_t n, struct mgmtd_routing_req *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u64(&r, &m->known_version);
	wire_get_u32(&r, &m->wait_ms);
	return r.err;
}

int mgmtd_routing_resp_encode(struct buf *b, const struct mgmtd_routing_resp *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u64(&w, m->version);
	wire_put_u8(&w, m->changed);
	wire_put_blob(&w, m->info, m->info_len);
	return w.err;
}

int mgmtd_routing_resp_decode(const void *p, size_t n, struct mgmtd_routing_resp *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u64(&r, &m->version);
	wire_get_u8(&r, &m->changed);
	wire_get_blob(&r, UINT32_MAX, &m->info, &m->info_len);
	if (!r.err && (m->changed > 1 || (m->changed && m->info_len == 0)))
		return -CFS_EPROTO;
	return r.err;
}

int mgmtd_table_resp_encode(struct buf *b, const struct mgmtd_table_resp *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, m->table_id);
	wire_put_u32(&w, m->chains);
	wire_put_blob(&w, m->report, m->report_len);
	return w.err;
}

int mgmtd_table_resp_decode(const void *p, size_t n, struct mgmtd_table_resp *m)
{
	struct wire_reader r;
	const uint8_t *rep = NULL;
	wire_reader_init(&r, p, n);
	wire_get_u32(&r, &m->table_id);
	wire_get_u32(&r, &m->chains);
	wire_get_blob(&r, MGMTD_REPORT_MAX, &rep, &m->report_len);
	m->report = (const char *)rep;
	return r.err;
}
