/* storage_proto.c - codecs of the storage messages (storage_proto.h).
 *
 * Each message is a fixed sequence of little-endian fields written and read
 * through wire.h; a decoder reads its fields, then checks the reader's
 * latched error once, so a truncated message fails as a whole. Counts are
 * checked against the caller's array before any element is read.
 */
#include <errno.h>

#include "common/status.h"
#include "common/wire.h"
#include "storage/storage_proto.h"

static int wdone(struct wire_writer *w) { return w->err ? -ENOMEM : 0; }
static int rdone(struct wire_reader *r) { return r->err ? -CFS_EPROTO : 0; }

int sto_write_req_encode(struct buf *b, const struct sto_write_req *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, m->target);
	wire_put_u32(&w, m->chain);
	wire_put_u32(&w, m->chain_ver);
	wire_put_u64(&w, m->ino);
	wire_put_u32(&w, m->idx);
	wire_put_u32(&w, m->off);
	wire_put_u32(&w, m->len);
	wire_put_u32(&w, m->crc);
	wire_put_u64(&w, m->update_ver);
	wire_put_u32(&w, m->flags);
	wire_put_u64(&w, m->client);
	wire_put_u64(&w, m->channel);
	wire_put_u64(&w, m->seq);
	return wdone(&w);
}

int sto_write_req_decode(const void *p, size_t n, struct sto_write_req *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u32(&r, &m->target);
	wire_get_u32(&r, &m->chain);
	wire_get_u32(&r, &m->chain_ver);
	wire_get_u64(&r, &m->ino);
	wire_get_u32(&r, &m->idx);
	wire_get_u32(&r, &m->off);
	wire_get_u32(&r, &m->len);
	wire_get_u32(&r, &m->crc);
	wire_get_u64(&r, &m->update_ver);
	wire_get_u32(&r, &m->flags);
	wire_get_u64(&r, &m->client);
	wire_get_u64(&r, &m->channel);
	wire_get_u64(&r, &m->seq);
	return rdone(&r);
}

int sto_write_resp_encode(struct buf *b, const struct sto_write_resp *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u64(&w, m->commit_ver);
	wire_put_u32(&w, m->len);
	wire_put_u32(&w, m->crc);
	return wdone(&w);
}

int sto_write_resp_decode(const void *p, size_t n, struct sto_write_resp *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u64(&r, &m->commit_ver);
	wire_get_u32(&r, &m->len);
	wire_get_u32(&r, &m->crc);
	return rdone(&r);
}

int sto_read_req_encode(struct buf *b, const struct sto_read_req *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, m->flags);
	wire_put_u32(&w, m->n);
	for (uint32_t i = 0; i < m->n; i++) {
		const struct sto_read_range *x = &m->r[i];
		wire_put_u32(&w, x->target);
		wire_put_u32(&w, x->chain);
		wire_put_u32(&w, x->chain_ver);
		wire_put_u64(&w, x->ino);
		wire_put_u32(&w, x->idx);
		wire_put_u32(&w, x->off);
		wire_put_u32(&w, x->len);
	}
	return wdone(&w);
}

int sto_read_req_decode(const void *p, size_t n, struct sto_read_req *m,
			struct sto_read_range *out, size_t cap)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u32(&r, &m->flags);
	if (wire_get_u32(&r, &m->n) || m->n > cap || m->n > STO_MAX_BATCH)
		return -CFS_EPROTO;
	m->r = out;
	for (uint32_t i = 0; i < m->n; i++) {
		struct sto_read_range *x = &out[i];
		wire_get_u32(&r, &x->target);
		wire_get_u32(&r, &x->chain);
		wire_get_u32(&r, &x->chain_ver);
		wire_get_u64(&r, &x->ino);
		wire_get_u32(&r, &x->idx);
		wire_get_u32(&r, &x->off);
		wire_get_u32(&r, &x->len);
	}
	return rdone(&r);
}

int sto_read_resp_encode(struct buf *b, const struct sto_read_resp *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, m->n);
	for (uint32_t i = 0; i < m->n; i++) {
		wire_put_i32(&w, m->r[i].result);
		wire_put_u32(&w, m->r[i].crc);
		wire_put_u64(&w, m->r[i].commit_ver);
	}
	return wdone(&w);
}

int sto_read_resp_decode(const void *p, size_t n, struct sto_read_resp *m,
			 struct sto_read_res *out, size_t cap)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	if (wire_get_u32(&r, &m->n) || m->n > cap || m->n > STO_MAX_BATCH)
		return -CFS_EPROTO;
	m->r = out;
	for (uint32_t i = 0; i < m->n; i++) {
		wire_get_i32(&r, &out[i].result);
		wire_get_u32(&r, &out[i].crc);
		wire_get_u64(&r, &out[i].commit_ver);
	}
	return rdone(&r);
}

int sto_remove_req_encode(struct buf *b, const struct sto_remove_req *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, m->target);
	wire_put_u32(&w, m->chain);
	wire_put_u32(&w, m->chain_ver);
	wire_put_u64(&w, m->ino);
	wire_put_u32(&w, m->begin);
	wire_put_u32(&w, m->end);
	wire_put_u32(&w, m->flags);
	wire_put_u64(&w, m->client);
	wire_put_u64(&w, m->channel);
	wire_put_u64(&w, m->seq);
	return wdone(&w);
}

int sto_remove_req_decode(const void *p, size_t n, struct sto_remove_req *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u32(&r, &m->target);
	wire_get_u32(&r, &m->chain);
	wire_get_u32(&r, &m->chain_ver);
	wire_get_u64(&r, &m->ino);
	wire_get_u32(&r, &m->begin);
	wire_get_u32(&r, &m->end);
	wire_get_u32(&r, &m->flags);
	wire_get_u64(&r, &m->client);
	wire_get_u64(&r, &m->channel);
	wire_get_u64(&r, &m->seq);
	return rdone(&r);
}

int sto_remove_resp_encode(struct buf *b, const struct sto_remove_resp *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, m->removed);
	return wdone(&w);
}

int sto_remove_resp_decode(const void *p, size_t n, struct sto_remove_resp *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u32(&r, &m->removed);
	return rdone(&r);
}

int sto_query_req_encode(struct buf *b, const struct sto_query_req *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, m->target);
	wire_put_u32(&w, m->chain);
	wire_put_u64(&w, m->ino);
	wire_put_u32(&w, m->idx);
	wire_put_u8(&w, m->last);
	return wdone(&w);
}

int sto_query_req_decode(const void *p, size_t n, struct sto_query_req *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u32(&r, &m->target);
	wire_get_u32(&r, &m->chain);
	wire_get_u64(&r, &m->ino);
	wire_get_u32(&r, &m->idx);
	wire_get_u8(&r, &m->last);
	return rdone(&r);
}

int sto_query_resp_encode(struct buf *b, const struct sto_query_resp *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, m->idx);
	wire_put_u32(&w, m->len);
	wire_put_u32(&w, m->crc);
	wire_put_u32(&w, m->chain_ver);
	wire_put_u64(&w, m->commit_ver);
	wire_put_u64(&w, m->pending_ver);
	return wdone(&w);
}

int sto_query_resp_decode(const void *p, size_t n, struct sto_query_resp *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u32(&r, &m->idx);
	wire_get_u32(&r, &m->len);
	wire_get_u32(&r, &m->crc);
	wire_get_u32(&r, &m->chain_ver);
	wire_get_u64(&r, &m->commit_ver);
	wire_get_u64(&r, &m->pending_ver);
	return rdone(&r);
}

int sto_stat_req_encode(struct buf *b, const struct sto_stat_req *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, m->target);
	return wdone(&w);
}

int sto_stat_req_decode(const void *p, size_t n, struct sto_stat_req *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u32(&r, &m->target);
	return rdone(&r);
}

int sto_stat_resp_encode(struct buf *b, const struct sto_stat_resp *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u64(&w, m->capacity);
	wire_put_u64(&w, m->used);
	wire_put_u64(&w, m->chunks);
	wire_put_u64(&w, m->corrupt_reads);
	return wdone(&w);
}

int sto_stat_resp_decode(const void *p, size_t n, struct sto_stat_resp *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u64(&r, &m->capacity);
	wire_get_u64(&r, &m->used);
	wire_get_u64(&r, &m->chunks);
	wire_get_u64(&r, &m->corrupt_reads);
	return rdone(&r);
}

int sto_dump_req_encode(struct buf *b, const struct sto_dump_req *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, m->target);
	wire_put_u32(&w, m->chain);
	wire_put_u64(&w, m->from_ino);
	wire_put_u32(&w, m->from_idx);
	wire_put_u32(&w, m->max);
	return wdone(&w);
}

int sto_dump_req_decode(const void *p, size_t n, struct sto_dump_req *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u32(&r, &m->target);
	wire_get_u32(&r, &m->chain);
	wire_get_u64(&r, &m->from_ino);
	wire_get_u32(&r, &m->from_idx);
	wire_get_u32(&r, &m->max);
	if (!r.err && (m->max == 0 || m->max > STO_MAX_DUMP))
		return -CFS_EPROTO;
	return rdone(&r);
}

int sto_dump_resp_encode(struct buf *b, const struct sto_dump_resp *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u8(&w, m->more);
	wire_put_u32(&w, m->n);
	for (uint32_t i = 0; i < m->n; i++) {
		const struct sto_dump_ent *e = &m->e[i];
		wire_put_u64(&w, e->ino);
		wire_put_u32(&w, e->idx);
		wire_put_u32(&w, e->len);
		wire_put_u32(&w, e->crc);
		wire_put_u32(&w, e->chain_ver);
		wire_put_u64(&w, e->commit_ver);
	}
	return wdone(&w);
}

int sto_dump_resp_decode(const void *p, size_t n, struct sto_dump_resp *m,
			 struct sto_dump_ent *out, size_t cap)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u8(&r, &m->more);
	if (wire_get_u32(&r, &m->n) || m->n > cap || m->n > STO_MAX_DUMP)
		return -CFS_EPROTO;
	m->e = out;
	for (uint32_t i = 0; i < m->n; i++) {
		struct sto_dump_ent *e = &out[i];
		wire_get_u64(&r, &e->ino);
		wire_get_u32(&r, &e->idx);
		wire_get_u32(&r, &e->len);
		wire_get_u32(&r, &e->crc);
		wire_get_u32(&r, &e->chain_ver);
		wire_get_u64(&r, &e->commit_ver);
	}
	return rdone(&r);
}

int sto_sync_done_req_encode(struct buf *b, const struct sto_sync_done_req *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, m->target);
	wire_put_u32(&w, m->chain);
	wire_put_u32(&w, m->chain_ver);
	return wdone(&w);
}

int sto_sync_done_req_decode(const void *p, size_t n, struct sto_sync_done_req *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u32(&r, &m->target);
	wire_get_u32(&r, &m->chain);
	wire_get_u32(&r, &m->chain_ver);
	return rdone(&r);
}

int sto_witness_req_encode(struct buf *b, const struct sto_witness_req *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, m->node);
	wire_put_u64(&w, m->routing_version);
	return wdone(&w);
}

int sto_witness_req_decode(const void *p, size_t n, struct sto_witness_req *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u32(&r, &m->node);
	wire_get_u64(&r, &m->routing_version);
	return rdone(&r);
}

int sto_witness_resp_encode(struct buf *b, const struct sto_witness_resp *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u64(&w, m->contact_age_ms);
	wire_put_u64(&w, m->routing_version);
	wire_put_u32(&w, m->promise_ms);
	return wdone(&w);
}

int sto_witness_resp_decode(const void *p, size_t n, struct sto_witness_resp *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u64(&r, &m->contact_age_ms);
	wire_get_u64(&r, &m->routing_version);
	wire_get_u32(&r, &m->promise_ms);
	return rdone(&r);
}
