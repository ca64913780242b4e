/* fuzz_storage_proto.c - every storage message decoder (storage_proto.h)
 * over arbitrary bytes. The first byte picks the decoder; a successful
 * decode is re-encoded and decoded again, and must give the same fields. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "storage/storage_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	struct buf b;
	buf_init(&b);
	/* 0xf0.. pick the shared-memory messages (0xf0: 310, 0xf1: 311,
	 * 0xf2: 312, 0xf3: 313, 0xf4: 314), 0xf5 / 0xf6 the short-circuit
	 * map request / reply (315), 0xf7 the batched map's request and
	 * reply (316: the same bytes through both), 0xf8 the truncate
	 * request (317), 0xfa the conditional write request (320); below,
	 * the older decoders keep the selector their corpus files use. */
	unsigned sel = data[0] == 0xfa                    ? 22
		       : data[0] >= 0xf0 && data[0] <= 0xf8 ? 12 + (unsigned)(data[0] - 0xf0)
		       : data[0] >= 0xf9                    ? 12 + (unsigned)(data[0] - 0xf0) % 3
							    : data[0] % 12;
	switch (sel) {
	case 0: {
		struct sto_write_req m, m2;
		if (!sto_write_req_decode(p, n, &m)) {
			check(!sto_write_req_encode(&b, &m));
			check(!sto_write_req_decode(b.data, b.len, &m2));
			check(m.ino == m2.ino && m.len == m2.len && m.seq == m2.seq && m.flags == m2.flags);
		}
		break;
	}
	case 1: {
		struct sto_write_resp m;
		sto_write_resp_decode(p, n, &m);
		break;
	}
	case 2: {
		static struct sto_read_range r[STO_MAX_BATCH], r2[STO_MAX_BATCH];
		struct sto_read_req m, m2;
		if (!sto_read_req_decode(p, n, &m, r, STO_MAX_BATCH)) {
			check(!sto_read_req_encode(&b, &m));
			check(!sto_read_req_decode(b.data, b.len, &m2, r2, STO_MAX_BATCH));
			check(m.n == m2.n);
			for (uint32_t i = 0; i < m.n; i++)
				check(r[i].ino == r2[i].ino && r[i].len == r2[i].len);
		}
		break;
	}
	case 3: {
		static struct sto_read_res r[STO_MAX_BATCH];
		struct sto_read_resp m;
		sto_read_resp_decode(p, n, &m, r, 16);
		break;
	}
	case 4: {
		struct sto_remove_req m;
		sto_remove_req_decode(p, n, &m);
		break;
	}
	case 5: {
		struct sto_remove_resp m;
		sto_remove_resp_decode(p, n, &m);
		break;
	}
	case 6: {
		struct sto_query_req m;
		struct sto_query_resp r;
		sto_query_req_decode(p, n, &m);
		sto_query_resp_decode(p, n, &r);
		break;
	}
	case 7: {
		struct sto_stat_req m;
		struct sto_stat_resp r;
		sto_stat_req_decode(p, n, &m);
		sto_stat_resp_decode(p, n, &r);
		break;
	}
	case 8: {
		struct sto_dump_req m;
		if (!sto_dump_req_decode(p, n, &m))
			check(m.max >= 1 && m.max <= STO_MAX_DUMP);
		break;
	}
	case 9: {
		static struct sto_dump_ent e[STO_MAX_DUMP];
		struct sto_dump_resp m;
		if (!sto_dump_resp_decode(p, n, &m, e, STO_MAX_DUMP)) {
			check(m.n <= STO_MAX_DUMP);
			check(!sto_dump_resp_encode(&b, &m));
		}
		break;
	}
	case 10: {
		struct sto_witness_req m, m2;
		struct sto_witness_resp r;
		if (!sto_witness_req_decode(p, n, &m)) {
			check(!sto_witness_req_encode(&b, &m));
			check(!sto_witness_req_decode(b.data, b.len, &m2));
			check(m.node == m2.node && m.routing_version == m2.routing_version);
		}
		sto_witness_resp_decode(p, n, &r);
		break;
	}
	case 12: {
		struct sto_shm_reg_req m, m2;
		struct sto_shm_reg_resp r, r2;
		if (!sto_shm_reg_req_decode(p, n, &m)) {
			check(!sto_shm_reg_req_encode(&b, &m));
			check(!sto_shm_reg_req_decode(b.data, b.len, &m2));
			check(m.size == m2.size && m.flags == m2.flags);
		}
		if (!sto_shm_reg_resp_decode(p, n, &r)) {
			buf_reset(&b);
			check(!sto_shm_reg_resp_encode(&b, &r));
			check(!sto_shm_reg_resp_decode(b.data, b.len, &r2));
			check(r.region == r2.region);
		}
		break;
	}
	case 13: {
		static struct sto_read_range r[STO_MAX_BATCH], r2[STO_MAX_BATCH];
		struct sto_shm_at at, at2;
		struct sto_read_req m, m2;
		if (!sto_shm_read_req_decode(p, n, &at, &m, r, STO_MAX_BATCH)) {
			check(!sto_shm_read_req_encode(&b, &at, &m));
			check(!sto_shm_read_req_decode(b.data, b.len, &at2, &m2, r2, STO_MAX_BATCH));
			check(at.region == at2.region && at.off == at2.off && at.cap == at2.cap);
			check(m.n == m2.n && m.flags == m2.flags);
			for (uint32_t i = 0; i < m.n; i++)
				check(r[i].ino == r2[i].ino && r[i].off == r2[i].off &&
				      r[i].len == r2[i].len);
		}
		break;
	}
	case 14: {
		struct sto_shm_at at, at2;
		struct sto_write_req m, m2;
		if (!sto_shm_write_req_decode(p, n, &at, &m)) {
			check(!sto_shm_write_req_encode(&b, &at, &m));
			check(!sto_shm_write_req_decode(b.data, b.len, &at2, &m2));
			check(at.region == at2.region && at.off == at2.off && at.cap == at2.cap);
			check(m.ino == m2.ino && m.off == m2.off && m.len == m2.len &&
			      m.crc == m2.crc && m.seq == m2.seq && m.flags == m2.flags);
		}
		break;
	}
	case 15: {
		struct sto_shm_unreg_req m, m2;
		if (!sto_shm_unreg_req_decode(p, n, &m)) {
			check(!sto_shm_unreg_req_encode(&b, &m));
			check(!sto_shm_unreg_req_decode(b.data, b.len, &m2));
			check(m.region == m2.region);
		}
		break;
	}
	case 16: {
		static struct sto_read_range r[STO_MAX_BATCH], r2[STO_MAX_BATCH];
		static uint64_t offs[STO_MAX_BATCH], offs2[STO_MAX_BATCH];
		uint64_t region, region2;
		struct sto_read_req m, m2;
		if (!sto_shm_readv_req_decode(p, n, &region, offs, &m, r, STO_MAX_BATCH)) {
			check(m.n >= 1 && m.n <= STO_MAX_BATCH);
			check(!sto_shm_readv_req_encode(&b, region, offs, &m));
			check(!sto_shm_readv_req_decode(b.data, b.len, &region2, offs2, &m2, r2,
							STO_MAX_BATCH));
			check(region == region2 && m.n == m2.n && m.flags == m2.flags);
			for (uint32_t i = 0; i < m.n; i++)
				check(offs[i] == offs2[i] && r[i].ino == r2[i].ino &&
				      r[i].off == r2[i].off && r[i].len == r2[i].len);
		}
		break;
	}
	case 17: {
		struct sto_sc_map_req m, m2;
		if (!sto_sc_map_req_decode(p, n, &m)) {
			check(!sto_sc_map_req_encode(&b, &m));
			check(!sto_sc_map_req_decode(b.data, b.len, &m2));
			check(m.region == m2.region && m.target == m2.target && m.chain == m2.chain &&
			      m.ino == m2.ino && m.idx == m2.idx);
		}
		break;
	}
	case 18: {
		struct sto_sc_map_resp r, r2;
		if (!sto_sc_map_resp_decode(p, n, &r)) {
			check(r.f.len <= (64u << 20) && r.f.npages == (r.f.len + 4095u) / 4096u);
			check(r.path_len >= 1 && r.path_len <= STO_SC_MAX_PATH);
			uint32_t *crcs = malloc((size_t)(r.f.npages ? r.f.npages : 1) * 4);
			char *path = malloc(r.path_len + 1);
			check(crcs && path);
			for (uint32_t i = 0; i < r.f.npages; i++)
				crcs[i] = wire_load_u32(r.crcs + 4 * i);
			memcpy(path, r.path, r.path_len);
			path[r.path_len] = 0;
			/* A path with a NUL inside encodes shorter: compare what
			 * the encoder takes. */
			size_t plen = strlen(path);
			if (plen) {
				check(!sto_sc_map_resp_encode(&b, &r.f, crcs, path));
				check(!sto_sc_map_resp_decode(b.data, b.len, &r2));
				check(r2.f.slot == r.f.slot && r2.f.seq == r.f.seq &&
				      r2.f.len == r.f.len && r2.path_len == plen &&
				      !memcmp(r2.path, path, plen) &&
				      !memcmp(r2.crcs, r.crcs, (size_t)r.f.npages * 4));
			}
			free(crcs);
			free(path);
		}
		break;
	}
	case 19: {
		struct sto_sc_map_ent e[8], e2[8];
		struct sto_sc_map_many_req q, q2;
		if (!sto_sc_map_many_req_decode(p, n, &q, e, 8)) {
			check(q.n <= 8);
			check(!sto_sc_map_many_req_encode(&b, &q));
			check(!sto_sc_map_many_req_decode(b.data, b.len, &q2, e2, 8));
			check(q.region == q2.region && q.n == q2.n);
			for (uint32_t i = 0; i < q.n; i++)
				check(e[i].target == e2[i].target && e[i].chain == e2[i].chain &&
				      e[i].ino == e2[i].ino && e[i].idx == e2[i].idx);
		}
		struct sto_sc_map_many_res r[8], r2[8];
		struct sto_sc_map_many_resp m, m2;
		if (!sto_sc_map_many_resp_decode(p, n, &m, r, 8)) {
			check(m.n <= 8);
			b.len = 0;
			check(!sto_sc_map_many_resp_head_encode(&b, m.n));
			for (uint32_t i = 0; i < m.n; i++) {
				struct sto_sc_map_resp one;
				/* a mapped entry holds a well-formed SC_MAP answer */
				check(r[i].result || !sto_sc_map_resp_decode(r[i].body, r[i].len, &one));
				check(r[i].len <= STO_SC_MAP_BODY_MAX);
				check(!sto_sc_map_many_res_encode(&b, r[i].result, r[i].body, r[i].len));
			}
			check(!sto_sc_map_many_resp_decode(b.data, b.len, &m2, r2, 8));
			check(m2.n == m.n);
			for (uint32_t i = 0; i < m.n; i++)
				check(r2[i].result == r[i].result && r2[i].len == r[i].len &&
				      (!r[i].len || !memcmp(r2[i].body, r[i].body, r[i].len)));
		}
		break;
	}
	case 20: {
		struct sto_truncate_req m, m2;
		if (!sto_truncate_req_decode(p, n, &m)) {
			check(!sto_truncate_req_encode(&b, &m));
			check(!sto_truncate_req_decode(b.data, b.len, &m2));
			check(m.target == m2.target && m.chain == m2.chain &&
			      m.chain_ver == m2.chain_ver && m.ino == m2.ino && m.idx == m2.idx &&
			      m.len == m2.len && m.flags == m2.flags && m.client == m2.client &&
			      m.channel == m2.channel && m.seq == m2.seq);
		}
		break;
	}
	case 22: {
		struct sto_write_if_req m, m2;
		if (!sto_write_if_req_decode(p, n, &m)) {
			check(!sto_write_if_req_encode(&b, &m));
			check(!sto_write_if_req_decode(b.data, b.len, &m2));
			check(m.target == m2.target && m.chain == m2.chain &&
			      m.chain_ver == m2.chain_ver && m.ino == m2.ino && m.idx == m2.idx &&
			      m.off == m2.off && m.len == m2.len && m.crc == m2.crc &&
			      m.update_ver == m2.update_ver && m.flags == m2.flags &&
			      m.client == m2.client && m.channel == m2.channel && m.seq == m2.seq &&
			      m.expect == m2.expect && m.expect_len == m2.expect_len &&
			      m.expect_crc == m2.expect_crc);
		}
		break;
	}
	default: {
		struct sto_sync_done_req m;
		sto_sync_done_req_decode(p, n, &m);
		break;
	}
	}
	buf_fini(&b);
	return 0;
}
