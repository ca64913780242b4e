/* storage_proto.c - codecs of the storage messages (storage_proto.h).
 *
 * Each message is a fixed sequence of little-endian fields written and read
 * through wire.h; a decoder reads its fields, then checks the reader's
 * latched error once, so a truncated message fails as a whole. Counts are
 * checked against the caller's array before any element is read.
 *
 * The fixed messages and array elements come from their field lists in
 * storage_proto.h (WIRE_FIELDS_CODEC); only counts and limits are written
 * here by hand.
 */
#include <errno.h>
#include <string.h>

#include "common/status.h"
#include "common/wire.h"
#include "storage/storage_proto.h"

static int wdone(struct wire_writer *w) { return w->err ? -ENOMEM : 0; }
static int rdone(struct wire_reader *r) { return r->err ? -CFS_EPROTO : 0; }

WIRE_FIELDS_CODEC(sto_write_req, STO_WRITE_REQ)
WIRE_FIELDS_CODEC(sto_write_if_req, STO_WRITE_IF_REQ)
WIRE_FIELDS_CODEC(sto_write_resp, STO_WRITE_RESP)
WIRE_FIELDS_CODEC(sto_read_range, STO_READ_RANGE)
WIRE_FIELDS_CODEC(sto_read_res, STO_READ_RES)
WIRE_FIELDS_CODEC(sto_remove_req, STO_REMOVE_REQ)
WIRE_FIELDS_CODEC(sto_remove_resp, STO_REMOVE_RESP)
WIRE_FIELDS_CODEC(sto_truncate_req, STO_TRUNCATE_REQ)
WIRE_FIELDS_CODEC(sto_query_req, STO_QUERY_REQ)
WIRE_FIELDS_CODEC(sto_query_resp, STO_QUERY_RESP)
WIRE_FIELDS_CODEC(sto_stat_req, STO_STAT_REQ)
WIRE_FIELDS_CODEC(sto_stat_resp, STO_STAT_RESP)
WIRE_FIELDS_CODEC(sto_dump_ent, STO_DUMP_ENT)
WIRE_FIELDS_CODEC(sto_dump_req, STO_DUMP_REQ)
WIRE_FIELDS_CODEC(sto_sync_done_req, STO_SYNC_DONE_REQ)
WIRE_FIELDS_CODEC(sto_witness_req, STO_WITNESS_REQ)
WIRE_FIELDS_CODEC(sto_witness_resp, STO_WITNESS_RESP)
WIRE_FIELDS_CODEC(sto_shm_reg_req, STO_SHM_REG_REQ)
WIRE_FIELDS_CODEC(sto_shm_reg_resp, STO_SHM_REG_RESP)
WIRE_FIELDS_CODEC(sto_shm_unreg_req, STO_SHM_UNREG_REQ)
WIRE_FIELDS_CODEC(sto_shm_at, STO_SHM_AT)
WIRE_FIELDS_CODEC(sto_sc_map_req, STO_SC_MAP_REQ)
WIRE_FIELDS_CODEC(sto_sc_map_fix, STO_SC_MAP_FIX)
WIRE_FIELDS_CODEC(sto_sc_map_ent, STO_SC_MAP_ENT)

/* The public encode/decode pair of a message that is only its fields. */
#define STO_FIXED_CODEC(name)                                          \
	int name##_encode(struct buf *b, const struct name *m)         \
	{                                                              \
		struct wire_writer w;                                  \
		wire_writer_init(&w, b);                               \
		name##_put(&w, m);                                     \
		return wdone(&w);                                      \
	}                                                              \
	int name##_decode(const void *p, size_t n, struct name *m)     \
	{                                                              \
		struct wire_reader r;                                  \
		wire_reader_init(&r, p, n);                            \
		name##_get(&r, m);                                     \
		return rdone(&r);                                      \
	}

STO_FIXED_CODEC(sto_write_req)
STO_FIXED_CODEC(sto_write_if_req)
STO_FIXED_CODEC(sto_write_resp)
STO_FIXED_CODEC(sto_remove_req)
STO_FIXED_CODEC(sto_remove_resp)
STO_FIXED_CODEC(sto_truncate_req)
STO_FIXED_CODEC(sto_query_req)
STO_FIXED_CODEC(sto_query_resp)
STO_FIXED_CODEC(sto_stat_req)
STO_FIXED_CODEC(sto_stat_resp)
STO_FIXED_CODEC(sto_sync_done_req)
STO_FIXED_CODEC(sto_witness_req)
STO_FIXED_CODEC(sto_witness_resp)

int sto_read_req_encode(struct buf *b, const struct sto_read_req *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, m->flags);
	wire_put_u32(&w, m->n);
	for (uint32_t i = 0; i < m->n; i++)
		sto_read_range_put(&w, &m->r[i]);
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
	for (uint32_t i = 0; i < m->n; i++)
		sto_read_range_get(&r, &out[i]);
	return rdone(&r);
}

int sto_read_resp_encode(struct buf *b, const struct sto_read_resp *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, m->n);
	for (uint32_t i = 0; i < m->n; i++)
		sto_read_res_put(&w, &m->r[i]);
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
	for (uint32_t i = 0; i < m->n; i++)
		sto_read_res_get(&r, &out[i]);
	return rdone(&r);
}

STO_FIXED_CODEC(sto_shm_reg_req)
STO_FIXED_CODEC(sto_shm_reg_resp)
STO_FIXED_CODEC(sto_shm_unreg_req)
STO_FIXED_CODEC(sto_sc_map_req)

int sto_sc_map_resp_encode(struct buf *b, const struct sto_sc_map_fix *f, const uint32_t *crcs,
			   const char *path)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	sto_sc_map_fix_put(&w, f);
	for (uint32_t i = 0; i < f->npages; i++)
		wire_put_u32(&w, crcs[i]);
	wire_put_blob(&w, path, (uint32_t)strlen(path));
	return wdone(&w);
}

int sto_sc_map_resp_decode(const void *p, size_t n, struct sto_sc_map_resp *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	sto_sc_map_fix_get(&r, &m->f);
	if (rdone(&r) || m->f.len > (64u << 20) || m->f.npages != (m->f.len + 4095u) / 4096u)
		return -CFS_EPROTO;
	if (wire_get_ref(&r, (size_t)m->f.npages * 4, &m->crcs) ||
	    wire_get_blob(&r, STO_SC_MAX_PATH, &m->path, &m->path_len) || m->path_len == 0)
		return -CFS_EPROTO;
	return rdone(&r);
}

int sto_sc_map_many_req_encode(struct buf *b, const struct sto_sc_map_many_req *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u64(&w, m->region);
	wire_put_u32(&w, m->n);
	for (uint32_t i = 0; i < m->n; i++)
		sto_sc_map_ent_put(&w, &m->e[i]);
	return wdone(&w);
}

int sto_sc_map_many_req_decode(const void *p, size_t n, struct sto_sc_map_many_req *m,
			       struct sto_sc_map_ent *out, size_t cap)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u64(&r, &m->region);
	wire_get_u32(&r, &m->n);
	if (rdone(&r) || m->n > cap || m->n > STO_SC_MAP_MANY_MAX)
		return -CFS_EPROTO;
	m->e = out;
	for (uint32_t i = 0; i < m->n; i++)
		sto_sc_map_ent_get(&r, &out[i]);
	return rdone(&r);
}

int sto_sc_map_many_resp_head_encode(struct buf *b, uint32_t n)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, n);
	return wdone(&w);
}

int sto_sc_map_many_res_encode(struct buf *b, int32_t result, const void *body, uint32_t len)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_i32(&w, result);
	wire_put_blob(&w, body, len);
	return wdone(&w);
}

int sto_sc_map_many_resp_decode(const void *p, size_t n, struct sto_sc_map_many_resp *m,
				struct sto_sc_map_many_res *out, size_t cap)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u32(&r, &m->n);
	if (rdone(&r) || m->n > cap || m->n > STO_SC_MAP_MANY_MAX)
		return -CFS_EPROTO;
	m->r = out;
	for (uint32_t i = 0; i < m->n; i++) {
		struct sto_sc_map_resp one;
		if (wire_get_i32(&r, &out[i].result) ||
		    wire_get_blob(&r, STO_SC_MAP_BODY_MAX, &out[i].body, &out[i].len) ||
		    (!out[i].result && sto_sc_map_resp_decode(out[i].body, out[i].len, &one)))
			return -CFS_EPROTO;
	}
	return rdone(&r);
}

int sto_shm_read_req_encode(struct buf *b, const struct sto_shm_at *at, const struct sto_read_req *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	sto_shm_at_put(&w, at);
	int rc = wdone(&w);
	return rc ? rc : sto_read_req_encode(b, m);
}

int sto_shm_read_req_decode(const void *p, size_t n, struct sto_shm_at *at, struct sto_read_req *m,
			    struct sto_read_range *out, size_t cap)
{
	struct wire_reader r;
	if (n < STO_SHM_AT_LEN)
		return -CFS_EPROTO;
	wire_reader_init(&r, p, STO_SHM_AT_LEN);
	sto_shm_at_get(&r, at);
	if (rdone(&r))
		return -CFS_EPROTO;
	return sto_read_req_decode((const uint8_t *)p + STO_SHM_AT_LEN, n - STO_SHM_AT_LEN, m, out,
				   cap);
}

int sto_shm_readv_req_encode(struct buf *b, uint64_t region, const uint64_t *offs,
			     const struct sto_read_req *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u64(&w, region);
	wire_put_u32(&w, m->n);
	for (uint32_t i = 0; i < m->n; i++)
		wire_put_u64(&w, offs[i]);
	int rc = wdone(&w);
	return rc ? rc : sto_read_req_encode(b, m);
}

int sto_shm_readv_req_decode(const void *p, size_t n, uint64_t *region, uint64_t *offs,
			     struct sto_read_req *m, struct sto_read_range *out, size_t cap)
{
	struct wire_reader r;
	uint32_t k = 0;
	wire_reader_init(&r, p, n);
	wire_get_u64(&r, region);
	wire_get_u32(&r, &k);
	if (rdone(&r) || k == 0 || k > cap || (size_t)k > wire_left(&r) / 8)
		return -CFS_EPROTO;
	for (uint32_t i = 0; i < k; i++)
		wire_get_u64(&r, &offs[i]);
	if (rdone(&r))
		return -CFS_EPROTO;
	size_t used = n - wire_left(&r);
	int rc = sto_read_req_decode((const uint8_t *)p + used, n - used, m, out, cap);
	if (!rc && m->n != k)
		rc = -CFS_EPROTO;
	return rc;
}

int sto_shm_write_req_encode(struct buf *b, const struct sto_shm_at *at,
			     const struct sto_write_req *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	sto_shm_at_put(&w, at);
	sto_write_req_put(&w, m);
	return wdone(&w);
}

int sto_shm_write_req_decode(const void *p, size_t n, struct sto_shm_at *at,
			     struct sto_write_req *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	sto_shm_at_get(&r, at);
	sto_write_req_get(&r, m);
	return rdone(&r);
}

int sto_dump_req_encode(struct buf *b, const struct sto_dump_req *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	sto_dump_req_put(&w, m);
	return wdone(&w);
}

int sto_dump_req_decode(const void *p, size_t n, struct sto_dump_req *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	sto_dump_req_get(&r, m);
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
	for (uint32_t i = 0; i < m->n; i++)
		sto_dump_ent_put(&w, &m->e[i]);
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
	for (uint32_t i = 0; i < m->n; i++)
		sto_dump_ent_get(&r, &out[i]);
	return rdone(&r);
}
