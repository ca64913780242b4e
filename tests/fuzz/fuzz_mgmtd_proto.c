/* fuzz_mgmtd_proto.c - the mgmtd message and lease decoders on arbitrary
 * bytes. The first byte picks the decoder (register, heartbeat, routing
 * request, routing reply, table reply, lease); the rest is its input. What
 * a decoder accepts must re-encode to bytes that decode to the same
 * fields, and every count it returns must be within its limit. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/cfs_assert.h"
#include "mgmtd/mgmtd_proto.h"
#include "mgmtd/mgmtd_store.h"

static struct mgmtd_target_report t1[MGMTD_MAX_NODE_TARGETS], t2[MGMTD_MAX_NODE_TARGETS];

static void reg(const uint8_t *p, size_t n)
{
	struct mgmtd_register_req a = {.t = t1}, b = {.t = t2};
	if (mgmtd_register_decode(p, n, &a))
		return;
	ASSERT(a.n <= MGMTD_MAX_NODE_TARGETS && a.addr_len <= ROUTE_ADDR_MAX);
	struct buf x = BUF_INIT;
	ASSERT(mgmtd_register_encode(&x, &a) == 0);
	ASSERT(mgmtd_register_decode(x.data, x.len, &b) == 0);
	ASSERT(a.type == b.type && a.node_id == b.node_id && a.n == b.n);
	ASSERT(a.addr_len == b.addr_len && !memcmp(a.addr, b.addr, a.addr_len));
	ASSERT(!memcmp(t1, t2, a.n * sizeof(t1[0])));
	buf_fini(&x);
}

static void hb(const uint8_t *p, size_t n)
{
	struct mgmtd_heartbeat_req a = {.t = t1}, b = {.t = t2};
	if (mgmtd_heartbeat_decode(p, n, &a))
		return;
	ASSERT(a.n <= MGMTD_MAX_NODE_TARGETS);
	struct buf x = BUF_INIT;
	ASSERT(mgmtd_heartbeat_encode(&x, &a) == 0);
	ASSERT(mgmtd_heartbeat_decode(x.data, x.len, &b) == 0);
	ASSERT(a.node_id == b.node_id && a.seq == b.seq && a.n == b.n);
	ASSERT(!memcmp(t1, t2, a.n * sizeof(t1[0])));
	buf_fini(&x);
}

static void routing(const uint8_t *p, size_t n)
{
	struct mgmtd_routing_req q;
	struct mgmtd_routing_resp r, r2;
	struct mgmtd_table_resp t;
	if (!mgmtd_routing_req_decode(p, n, &q)) {
		struct buf x = BUF_INIT;
		ASSERT(mgmtd_routing_req_encode(&x, &q) == 0 && x.len == 12);
		buf_fini(&x);
	}
	if (!mgmtd_routing_resp_decode(p, n, &r)) {
		ASSERT(r.info_len <= n && r.changed <= 1);
		struct buf x = BUF_INIT;
		ASSERT(mgmtd_routing_resp_encode(&x, &r) == 0);
		ASSERT(mgmtd_routing_resp_decode(x.data, x.len, &r2) == 0);
		ASSERT(r2.version == r.version && r2.info_len == r.info_len);
		buf_fini(&x);
	}
	if (!mgmtd_table_resp_decode(p, n, &t))
		ASSERT(t.report_len <= MGMTD_REPORT_MAX && t.report_len <= n);
}

static void lease(const uint8_t *p, size_t n)
{
	struct mgmtd_lease l, l2;
	if (mgmtd_lease_decode(p, n, &l))
		return;
	ASSERT(strlen(l.addr) <= ROUTE_ADDR_MAX);
	struct buf x = BUF_INIT;
	ASSERT(mgmtd_lease_encode(&l, &x) == 0);
	ASSERT(mgmtd_lease_decode(x.data, x.len, &l2) == 0);
	ASSERT(l.holder == l2.holder && l.term == l2.term && l.expiry_ms == l2.expiry_ms);
	ASSERT(!strcmp(l.addr, l2.addr));
	buf_fini(&x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!size)
		return 0;
	switch (data[0] % 4) {
	case 0:
		reg(data + 1, size - 1);
		break;
	case 1:
		hb(data + 1, size - 1);
		break;
	case 2:
		routing(data + 1, size - 1);
		break;
	case 3:
		lease(data + 1, size - 1);
		break;
	}
	return 0;
}
