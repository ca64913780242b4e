/* fuzz_meta_proto.c - libFuzzer target for every metadata-service codec
 * (meta/meta_proto.h): requests and replies of all types 200..224, the
 * lock types 230..232, the 240 block, DIRVER (242), the inline-data types
 * 260..262, the 265 block (CREATE_DIR, UNLINK_DIR), the 267 block
 * (LOOKUP_PLUS), the 225 block (CLOSE_MANY) and the 233 block (LOOKUP_PLUSD).
 * Input: byte 0 picks the type (from 250 the 240 block, from 0xE0 the lock
 * types, 0xD8..0xDF the 265 block, 0xD0..0xD7 the inline-data types,
 * 0xCC..0xCF the 233 block, 0xC8..0xCB the 225 block, 0xC0..0xC7 the 267
 * block, below that
 * META_RPC_FIRST + b % count), byte 1 bit 0
 * picks request (0) or reply (1); the rest is the payload.
 * Properties: decoding never reads out of bounds or fails with a code
 * outside its contract; whatever decodes re-encodes to a canonical form
 * that decodes and re-encodes to the same bytes. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/status.h"
#include "meta/meta_proto.h"

static struct meta_inode in1, in2, dir1, dir2;
static struct meta_dirent ents1[META_RPC_READDIR_MAX], ents2[META_RPC_READDIR_MAX];
static struct meta_layout lay1, lay2;
static struct meta_rpc_req rq1, rq2;

static void check_req(uint16_t type, const uint8_t *p, size_t n)
{
	struct buf b1 = BUF_INIT, b2 = BUF_INIT;
	int rc = meta_rpc_req_decode(type, p, n, &rq1);
	if (rc) {
		if (rc != -CFS_EPROTO && rc != -ENAMETOOLONG && rc != -E2BIG && rc != -EINVAL &&
		    rc != -CFS_ENOTINLINE)
			abort();
		return;
	}
	if (rq1.type != type || rq1.ngroups > META_RPC_GROUPS_MAX ||
	    rq1.name.n > META_NAME_MAX || rq1.name2.n > META_NAME_MAX)
		abort();
	/* meta would drop records the client still waits for */
	if (rq1.idem_low > rq1.seq || (rq1.idem_low && !meta_rpc_is_mutation(type)))
		abort();
	if (meta_rpc_req_encode(&b1, &rq1) || meta_rpc_req_decode(type, b1.data, b1.len, &rq2) ||
	    meta_rpc_req_encode(&b2, &rq2))
		abort();
	if (b1.len != b2.len || (b1.len && memcmp(b1.data, b2.data, b1.len)))
		abort();
	buf_fini(&b1);
	buf_fini(&b2);
}

static void check_resp(uint16_t type, const uint8_t *p, size_t n)
{
	struct buf b1 = BUF_INIT, b2 = BUF_INIT;
	struct meta_rpc_resp r1 = { .type = type, .inode = &in1, .ents = ents1,
				    .ents_cap = META_RPC_READDIR_MAX, .layout = &lay1, .dir = &dir1 };
	struct meta_rpc_resp r2 = { .type = type, .inode = &in2, .ents = ents2,
				    .ents_cap = META_RPC_READDIR_MAX, .layout = &lay2, .dir = &dir2 };
	int rc = meta_rpc_resp_decode(p, n, &r1);
	if (rc) {
		if (rc != -CFS_EPROTO)
			abort();
		return;
	}
	if (type == META_RPC_LOOKUP_PLUSD) {
		/* likewise, and every entry's bytes lie inside the input */
		const uint8_t *q = r1.data, *bytes;
		uint32_t blen;
		size_t left = r1.data_len;
		struct meta_dirent de;
		if (r1.n > META_PLUS_MAX || (r1.data_len && (r1.data < p || r1.data + r1.data_len > p + n)))
			abort();
		for (int i = 0; i < r1.n; i++) {
			if (meta_rpc_plusd_next(&q, &left, &de, &in2, &bytes, &blen) || de.name_len == 0)
				abort();
			if (bytes && (blen != in2.size || bytes < p || bytes + blen > p + n))
				abort();
		}
		if (left)
			abort();
	}
	if (type == META_RPC_LOOKUP_PLUS) {
		/* every entry the decoder accepted walks without error, and
		 * exactly fills the data */
		const uint8_t *q = r1.data;
		size_t left = r1.data_len;
		struct meta_dirent de;
		if (r1.n > META_PLUS_MAX || (r1.data_len && (r1.data < p || r1.data + r1.data_len > p + n)))
			abort();
		for (int i = 0; i < r1.n; i++)
			if (meta_rpc_plus_next(&q, &left, &de, &in2) || de.name_len == 0)
				abort();
		if (left)
			abort();
	}
	if (r1.n < 0 || r1.n > META_RPC_READDIR_MAX || r1.idata_len > META_IDATA_MAX ||
	    (r1.idata_len && (r1.idata < p || r1.idata + r1.idata_len > p + n)))
		abort();
	if (meta_rpc_resp_encode(&b1, &r1) || meta_rpc_resp_decode(b1.data, b1.len, &r2) ||
	    meta_rpc_resp_encode(&b2, &r2))
		abort();
	if (b1.len != b2.len || (b1.len && memcmp(b1.data, b2.data, b1.len)))
		abort();
	buf_fini(&b1);
	buf_fini(&b2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	/* The first byte picks the type: from 250 the 240..249 block, from
	 * 0xE0 the lock types (230..), 0xBC the 290 block (GC_KICK), below the
	 * main range, so that seeds keep their type when any range grows. */
	uint16_t type;
	if (data[0] >= 250) {
		type = (uint16_t)(META_RPC_FSYNC + (data[0] - 250)); /* 252: DIRVER */
		if (!meta_rpc_name(type))
			type = META_RPC_FSYNC;
	}
	else if (data[0] >= 0xD0 && data[0] < 0xD8)
		type = (uint16_t)(META_RPC_IDATA_FIRST +
				  (data[0] - 0xD0) % (META_RPC_IDATA_LAST - META_RPC_IDATA_FIRST + 1));
	else if (data[0] >= 0xE0)
		type = (uint16_t)(META_RPC_LOCK_FIRST +
				  (data[0] - 0xE0) % (META_RPC_LOCK_LAST - META_RPC_LOCK_FIRST + 1));
	else if (data[0] >= 0xD8)
		type = (uint16_t)(META_RPC_FIRST_265 +
				  (data[0] - 0xD8) % (META_RPC_LAST_265 - META_RPC_FIRST_265 + 1));
	else if (data[0] >= 0xCC)
		type = (uint16_t)(META_RPC_FIRST_233 +
				  (data[0] - 0xCC) % (META_RPC_LAST_233 - META_RPC_FIRST_233 + 1));
	else if (data[0] >= 0xC8)
		type = (uint16_t)(META_RPC_FIRST_225 +
				  (data[0] - 0xC8) % (META_RPC_LAST_225 - META_RPC_FIRST_225 + 1));
	else if (data[0] >= 0xC0)
		type = (uint16_t)(META_RPC_FIRST_267 +
				  (data[0] - 0xC0) % (META_RPC_LAST_267 - META_RPC_FIRST_267 + 1));
	else if (data[0] >= 0xBC)
		type = (uint16_t)(META_RPC_FIRST_290 +
				  (data[0] - 0xBC) % (META_RPC_LAST_290 - META_RPC_FIRST_290 + 1));
	else
		type = (uint16_t)(META_RPC_FIRST + data[0] % (META_RPC_LAST - META_RPC_FIRST + 1));
	if (data[1] & 1)
		check_resp(type, data + 2, size - 2);
	else
		check_req(type, data + 2, size - 2);
	return 0;
}
