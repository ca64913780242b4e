/* fuzz_mgmtd_routing.c - the routing-info decoder on arbitrary bytes: it
 * must reject or accept cleanly, and what it accepts must re-encode to a
 * fixed point: encode(decode(x)) decodes again to the same encoding.
 * The first input byte picks the target: 0 = a whole routing info with
 * its checksum fixed up (so the fuzzer gets past the CRC), 1..4 = one
 * record codec, 5..8 = a sealed record of kind 1..4, else the raw bytes
 * as given. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/cfs_assert.h"
#include "common/crc32c.h"
#include "common/wire.h"
#include "mgmtd/routing.h"

static void whole(const uint8_t *data, size_t size)
{
	struct route_info ri, again;
	if (route_info_decode(data, size, &ri) < 0) {
		ASSERT(ri.n_nodes == 0 && ri.nodes == NULL && ri.n_tables == 0);
		return;
	}
	struct buf b1 = BUF_INIT, b2 = BUF_INIT;
	ASSERT(route_info_encode(&ri, &b1) == 0);
	ASSERT(route_info_decode(b1.data, b1.len, &again) == 0);
	ASSERT(route_info_encode(&again, &b2) == 0);
	ASSERT(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
	ASSERT(again.version == ri.version && again.n_chains == ri.n_chains);
	route_info_fini(&again);
	route_info_fini(&ri);
	buf_fini(&b1);
	buf_fini(&b2);
}

static void record(unsigned kind, const uint8_t *data, size_t size)
{
	struct buf b1 = BUF_INIT, b2 = BUF_INIT;
	switch (kind) {
	case 1: {
		struct route_node a, c;
		if (route_node_decode(data, size, &a) < 0)
			break;
		ASSERT(route_node_encode(&a, &b1) == 0 &&
		       route_node_decode(b1.data, b1.len, &c) == 0);
		ASSERT(route_node_encode(&c, &b2) == 0);
		break;
	}
	case 2: {
		struct route_target a, c;
		if (route_target_decode(data, size, &a) < 0)
			break;
		ASSERT(route_target_encode(&a, &b1) == 0 &&
		       route_target_decode(b1.data, b1.len, &c) == 0);
		ASSERT(route_target_encode(&c, &b2) == 0);
		break;
	}
	case 3: {
		struct route_chain a, c;
		if (route_chain_decode(data, size, &a) < 0)
			break;
		ASSERT(route_chain_encode(&a, &b1) == 0 &&
		       route_chain_decode(b1.data, b1.len, &c) == 0);
		ASSERT(route_chain_encode(&c, &b2) == 0);
		break;
	}
	default: {
		struct route_table a, c;
		if (route_table_decode(data, size, &a) < 0) {
			ASSERT(a.chains == NULL);
			break;
		}
		ASSERT(route_table_encode(&a, &b1) == 0 &&
		       route_table_decode(b1.data, b1.len, &c) == 0);
		ASSERT(route_table_encode(&c, &b2) == 0);
		route_table_fini(&a);
		route_table_fini(&c);
		break;
	}
	}
	ASSERT(b1.len == b2.len && (b1.len == 0 || memcmp(b1.data, b2.data, b1.len) == 0));
	buf_fini(&b1);
	buf_fini(&b2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0) {
		whole(data, 0);
		return 0;
	}
	unsigned kind = data[0];
	data++, size--;
	if (kind >= 1 && kind <= 4) {
		record(kind, data, size);
	} else if (kind >= 5 && kind <= 8) {
		const uint8_t *rec;
		size_t len;
		if (route_unseal(data, size, (enum route_rec)(kind - 4), &rec, &len) == 0) {
			ASSERT(rec == data + ROUTE_SEAL_LEN && len == size - ROUTE_SEAL_LEN);
			record(kind - 4, rec, len);
		}
	} else if (kind == 0 && size >= ROUTE_HEADER_LEN) {
		uint8_t *copy = malloc(size);
		ASSERT(copy);
		memcpy(copy, data, size);
		wire_store_u32(copy + 8, (uint32_t)(size - ROUTE_HEADER_LEN));
		wire_store_u32(copy + 12,
		               crc32c(0, copy + ROUTE_HEADER_LEN, size - ROUTE_HEADER_LEN));
		whole(copy, size);
		free(copy);
	} else {
		whole(data, size);
	}
	return 0;
}
