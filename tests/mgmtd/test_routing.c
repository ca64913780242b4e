/* test_routing.c - routing info model and codec: round trip, every
 * truncation rejected (with and without a fixed-up checksum), unknown
 * trailing bytes skipped, bounds and enum checks, reference checks, the
 * id scheme. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/crc32c.h"
#include "common/status.h"
#include "common/wire.h"
#include "mgmtd/routing.h"

static void add_node(struct route_info *ri, uint32_t id, enum route_node_type type,
                     const char *addr)
{
	struct route_node n = {.id = id, .type = type, .state = ROUTE_NODE_ACTIVE};
	snprintf(n.addr, sizeof(n.addr), "%s", addr);
	assert_int_equal(route_info_add_node(ri, &n), 0);
}

static void add_target(struct route_info *ri, uint32_t id, uint32_t chain, enum chain_pub_state ps)
{
	struct route_target t = {.id = id,
	                         .node_id = route_target_node(id),
	                         .chain_id = chain,
	                         .local_state =
	                             ps == CHAIN_PS_SYNCING ? CHAIN_LS_ONLINE : CHAIN_LS_UPTODATE,
	                         .pub_state = ps,
	                         .capacity = 1ull << 40,
	                         .used = id * 1000ull};
	assert_int_equal(route_info_add_target(ri, &t), 0);
}

/* Three nodes, four targets, two chains, table 1 in two versions. Added
 * out of order on purpose: the model keeps them sorted. */
static void sample(struct route_info *ri)
{
	route_info_init(ri);
	ri->version = 0x0102030405060708ull;
	add_node(ri, 2, ROUTE_NODE_STORAGE, "127.0.0.1:7002");
	add_node(ri, 1, ROUTE_NODE_STORAGE, "127.0.0.1:7001");
	add_node(ri, 9, ROUTE_NODE_MGMTD, "localhost:9000");
	add_target(ri, 2001, 1000001, CHAIN_PS_SERVING);
	add_target(ri, 1001, 1000001, CHAIN_PS_SERVING);
	add_target(ri, 1002, 1000002, CHAIN_PS_SYNCING);
	add_target(ri, 2002, 1000002, CHAIN_PS_SERVING);
	struct route_chain c = {.id = 1000002,
	                        .version = 7,
	                        .n = 2,
	                        .m = {{2002, CHAIN_PS_SERVING}, {1002, CHAIN_PS_SYNCING}}};
	assert_int_equal(route_info_add_chain(ri, &c), 0);
	c = (struct route_chain){.id = 1000001,
	                         .version = 3,
	                         .n = 2,
	                         .m = {{1001, CHAIN_PS_SERVING}, {2001, CHAIN_PS_SERVING}}};
	assert_int_equal(route_info_add_chain(ri, &c), 0);
	const uint32_t v2[2] = {1000001, 1000002}, v1[1] = {1000001};
	assert_int_equal(route_info_add_table(ri, 1, 2, v2, 2), 0);
	assert_int_equal(route_info_add_table(ri, 1, 1, v1, 1), 0);
	assert_int_equal(route_info_check(ri, NULL, 0), 0);
}

static void assert_ri_equal(const struct route_info *a, const struct route_info *b)
{
	assert_true(a->version == b->version);
	assert_int_equal(a->n_nodes, b->n_nodes);
	for (size_t i = 0; i < a->n_nodes; i++) {
		assert_int_equal(a->nodes[i].id, b->nodes[i].id);
		assert_int_equal(a->nodes[i].type, b->nodes[i].type);
		assert_int_equal(a->nodes[i].state, b->nodes[i].state);
		assert_string_equal(a->nodes[i].addr, b->nodes[i].addr);
	}
	assert_int_equal(a->n_targets, b->n_targets);
	for (size_t i = 0; i < a->n_targets; i++) {
		const struct route_target *x = &a->targets[i], *y = &b->targets[i];
		assert_int_equal(x->id, y->id);
		assert_int_equal(x->node_id, y->node_id);
		assert_int_equal(x->chain_id, y->chain_id);
		assert_int_equal(x->local_state, y->local_state);
		assert_int_equal(x->pub_state, y->pub_state);
		assert_true(x->capacity == y->capacity && x->used == y->used);
	}
	assert_int_equal(a->n_chains, b->n_chains);
	for (size_t i = 0; i < a->n_chains; i++) {
		assert_int_equal(a->chains[i].id, b->chains[i].id);
		assert_int_equal(a->chains[i].version, b->chains[i].version);
		assert_int_equal(a->chains[i].n, b->chains[i].n);
		for (uint32_t j = 0; j < a->chains[i].n; j++) {
			assert_int_equal(a->chains[i].m[j].target_id, b->chains[i].m[j].target_id);
			assert_int_equal(a->chains[i].m[j].state, b->chains[i].m[j].state);
		}
	}
	assert_int_equal(a->n_tables, b->n_tables);
	for (size_t i = 0; i < a->n_tables; i++) {
		assert_int_equal(a->tables[i].id, b->tables[i].id);
		assert_int_equal(a->tables[i].version, b->tables[i].version);
		assert_int_equal(a->tables[i].n, b->tables[i].n);
		assert_memory_equal(a->tables[i].chains, b->tables[i].chains, a->tables[i].n * 4);
	}
}

/* Re-seals a possibly edited body: length and CRC. */
static void reseal(uint8_t *p, size_t n)
{
	wire_store_u32(p + 8, (uint32_t)(n - ROUTE_HEADER_LEN));
	wire_store_u32(p + 12, crc32c(0, p + ROUTE_HEADER_LEN, n - ROUTE_HEADER_LEN));
}

static int decode_resealed(const uint8_t *p, size_t n)
{
	uint8_t *c = malloc(n ? n : 1);
	memcpy(c, p, n);
	if (n >= ROUTE_HEADER_LEN)
		reseal(c, n);
	struct route_info ri;
	int rc = route_info_decode(c, n, &ri);
	if (rc < 0)
		assert_true(ri.nodes == NULL && ri.n_nodes == 0 && ri.n_tables == 0);
	route_info_fini(&ri);
	free(c);
	return rc;
}

static void test_roundtrip(void **state)
{
	(void)state;
	struct route_info a, b;
	struct buf buf = BUF_INIT;
	sample(&a);
	assert_int_equal(a.nodes[0].id, 1);
	assert_int_equal(a.tables[0].version, 1);
	assert_int_equal(route_info_encode(&a, &buf), 0);
	assert_int_equal(route_info_decode(buf.data, buf.len, &b), 0);
	assert_ri_equal(&a, &b);
	/* Encoding is canonical. */
	struct buf again = BUF_INIT;
	assert_int_equal(route_info_encode(&b, &again), 0);
	assert_int_equal(again.len, buf.len);
	assert_memory_equal(again.data, buf.data, buf.len);
	route_info_fini(&b);
	/* An empty info round-trips too. */
	struct route_info e;
	route_info_init(&e);
	buf_reset(&again);
	assert_int_equal(route_info_encode(&e, &again), 0);
	assert_int_equal(again.len, ROUTE_HEADER_LEN + 8 + 16);
	assert_int_equal(route_info_decode(again.data, again.len, &b), 0);
	assert_int_equal(b.n_nodes + b.n_targets + b.n_chains + b.n_tables, 0);
	route_info_fini(&b);
	buf_fini(&again);
	buf_fini(&buf);
	route_info_fini(&a);
	route_info_fini(&a); /* fini twice is safe */
}

static void test_truncation(void **state)
{
	(void)state;
	struct route_info a, b;
	struct buf buf = BUF_INIT;
	sample(&a);
	assert_int_equal(route_info_encode(&a, &buf), 0);
	for (size_t k = 0; k < buf.len; k++) {
		assert_int_equal(route_info_decode(buf.data, k, &b), -CFS_EPROTO);
		/* Past the checksum too: the structure itself must fail. */
		assert_int_equal(decode_resealed(buf.data, k), -CFS_EPROTO);
	}
	/* Every single-byte corruption of the body fails the CRC. */
	for (size_t k = ROUTE_HEADER_LEN; k < buf.len; k++) {
		buf.data[k] ^= 0x40;
		assert_int_equal(route_info_decode(buf.data, buf.len, &b), -CFS_EPROTO);
		buf.data[k] ^= 0x40;
	}
	/* Header fields. */
	buf.data[0] ^= 1;
	assert_int_equal(route_info_decode(buf.data, buf.len, &b), -CFS_EPROTO);
	buf.data[0] ^= 1;
	wire_store_u16(buf.data + 4, 2);
	assert_int_equal(route_info_decode(buf.data, buf.len, &b), -CFS_EPROTO);
	wire_store_u16(buf.data + 4, ROUTE_FORMAT_MAJOR);
	wire_store_u16(buf.data + 6, 77); /* newer minor: accepted */
	assert_int_equal(route_info_decode(buf.data, buf.len, &b), 0);
	route_info_fini(&b);
	/* A byte past the sealed body is not part of it: rejected. */
	assert_int_equal(buf_append(&buf, "x", 1), 0);
	assert_int_equal(route_info_decode(buf.data, buf.len, &b), -CFS_EPROTO);
	/* Appended to the body by a later minor: skipped. */
	assert_int_equal(buf_append(&buf, "future", 6), 0);
	reseal(buf.data, buf.len);
	assert_int_equal(route_info_decode(buf.data, buf.len, &b), 0);
	assert_ri_equal(&a, &b);
	route_info_fini(&b);
	buf_fini(&buf);
	route_info_fini(&a);
}

static void test_records(void **state)
{
	(void)state;
	struct route_info a;
	sample(&a);
	struct buf buf = BUF_INIT;
	/* Each record: every prefix fails, appended bytes are skipped. */
	assert_int_equal(route_node_encode(&a.nodes[0], &buf), 0);
	size_t len = buf.len;
	assert_int_equal(buf_append(&buf, "\x01\x02\x03", 3), 0);
	struct route_node n;
	for (size_t k = 0; k < len; k++)
		assert_int_equal(route_node_decode(buf.data, k, &n), -CFS_EPROTO);
	assert_int_equal(route_node_decode(buf.data, buf.len, &n), 0);
	assert_string_equal(n.addr, "127.0.0.1:7001");

	buf_reset(&buf);
	assert_int_equal(route_target_encode(&a.targets[1], &buf), 0);
	len = buf.len;
	assert_int_equal(buf_append(&buf, "\x00", 1), 0);
	struct route_target t;
	for (size_t k = 0; k < len; k++)
		assert_int_equal(route_target_decode(buf.data, k, &t), -CFS_EPROTO);
	assert_int_equal(route_target_decode(buf.data, buf.len, &t), 0);
	assert_int_equal(t.id, a.targets[1].id);
	assert_true(t.used == a.targets[1].used);

	buf_reset(&buf);
	assert_int_equal(route_chain_encode(&a.chains[1], &buf), 0);
	len = buf.len;
	assert_int_equal(buf_append(&buf, "\x00\x00", 2), 0);
	struct route_chain c;
	for (size_t k = 0; k < len; k++)
		assert_int_equal(route_chain_decode(buf.data, k, &c), -CFS_EPROTO);
	assert_int_equal(route_chain_decode(buf.data, buf.len, &c), 0);
	assert_int_equal(c.m[1].state, CHAIN_PS_SYNCING);

	buf_reset(&buf);
	assert_int_equal(route_table_encode(&a.tables[1], &buf), 0);
	len = buf.len;
	assert_int_equal(buf_append(&buf, "\x00\x00", 2), 0);
	struct route_table tb;
	for (size_t k = 0; k < len; k++) {
		assert_int_equal(route_table_decode(buf.data, k, &tb), -CFS_EPROTO);
		assert_null(tb.chains);
	}
	assert_int_equal(route_table_decode(buf.data, buf.len, &tb), 0);
	assert_int_equal(tb.n, 2);
	assert_int_equal(tb.chains[1], 1000002);
	route_table_fini(&tb);
	route_table_fini(&tb);
	buf_fini(&buf);
	route_info_fini(&a);
}

/* Encodes RI as given (the encoder does not validate) and expects the
 * decoder to refuse it. */
static void expect_rejected(const struct route_info *ri)
{
	struct buf buf = BUF_INIT;
	struct route_info b;
	assert_int_equal(route_info_encode(ri, &buf), 0);
	assert_int_equal(route_info_decode(buf.data, buf.len, &b), -CFS_EPROTO);
	assert_null(b.nodes);
	buf_fini(&buf);
}

static void test_bounds(void **state)
{
	(void)state;
	struct route_info a;
	sample(&a);
	/* Bad enums, zero ids, sizes, order and duplicates, one at a time. */
	a.nodes[0].type = 0;
	expect_rejected(&a);
	a.nodes[0].type = ROUTE_NODE_CLIENT + 1;
	expect_rejected(&a);
	a.nodes[0].type = ROUTE_NODE_STORAGE;
	a.nodes[1].state = 0;
	expect_rejected(&a);
	a.nodes[1].state = ROUTE_NODE_FAILED;
	a.nodes[2].id = 2; /* duplicate of nodes[1] */
	expect_rejected(&a);
	a.nodes[2].id = 9;
	a.targets[0].pub_state = 3;
	expect_rejected(&a);
	a.targets[0].pub_state = CHAIN_PS_SERVING;
	a.targets[0].local_state = 8;
	expect_rejected(&a);
	a.targets[0].local_state = CHAIN_LS_UPTODATE;
	a.chains[0].n = 0;
	expect_rejected(&a);
	a.chains[0].n = CHAIN_MAX_TARGETS + 1;
	expect_rejected(&a);
	a.chains[0].n = 2;
	a.chains[0].m[1].target_id = a.chains[0].m[0].target_id;
	expect_rejected(&a);
	a.chains[0].m[1].target_id = 2001;
	struct route_table tmp = a.tables[0];
	a.tables[0] = a.tables[1];
	a.tables[1] = tmp; /* versions out of order */
	expect_rejected(&a);
	a.tables[1] = a.tables[0];
	a.tables[0] = tmp;

	/* A count larger than the bytes could hold is refused before any
	 * allocation: n_nodes patched to 0xffffffff. */
	struct buf buf = BUF_INIT;
	assert_int_equal(route_info_encode(&a, &buf), 0);
	wire_store_u32(buf.data + ROUTE_HEADER_LEN + 8, 0xffffffffu);
	assert_int_equal(decode_resealed(buf.data, buf.len), -CFS_EPROTO);
	wire_store_u32(buf.data + ROUTE_HEADER_LEN + 8, 3);
	assert_int_equal(decode_resealed(buf.data, buf.len), 0);
	buf_fini(&buf);

	/* Address bounds: 255 bytes fit, 256 do not; NUL inside refused. */
	struct route_node n = {.id = 5, .type = ROUTE_NODE_META, .state = ROUTE_NODE_ACTIVE};
	memset(n.addr, 'a', ROUTE_ADDR_MAX);
	assert_int_equal(route_info_add_node(&a, &n), 0);
	struct buf nb = BUF_INIT;
	struct route_node out;
	assert_int_equal(route_node_encode(&n, &nb), 0);
	assert_int_equal(route_node_decode(nb.data, nb.len, &out), 0);
	assert_int_equal(strlen(out.addr), ROUTE_ADDR_MAX);
	buf_reset(&nb);
	struct wire_writer w;
	wire_writer_init(&w, &nb);
	wire_put_u32(&w, 6);
	wire_put_u8(&w, ROUTE_NODE_META);
	wire_put_u8(&w, ROUTE_NODE_ACTIVE);
	char big[ROUTE_ADDR_MAX + 1];
	memset(big, 'b', sizeof(big));
	wire_put_blob(&w, big, sizeof(big));
	assert_int_equal(route_node_decode(nb.data, nb.len, &out), -CFS_EPROTO);
	buf_reset(&nb);
	wire_put_u32(&w, 6);
	wire_put_u8(&w, ROUTE_NODE_META);
	wire_put_u8(&w, ROUTE_NODE_ACTIVE);
	wire_put_blob(&w, "a\0b", 3);
	assert_int_equal(route_node_decode(nb.data, nb.len, &out), -CFS_EPROTO);
	buf_fini(&nb);

	/* The model refuses what the decoder would. */
	n.id = 0;
	assert_int_equal(route_info_add_node(&a, &n), -EINVAL);
	n.id = ROUTE_NODE_ID_MAX + 1;
	assert_int_equal(route_info_add_node(&a, &n), -EINVAL);
	n.id = 5;
	assert_int_equal(route_info_add_node(&a, &n), -EEXIST);
	struct route_chain c = {.id = 7, .version = 1, .n = 0};
	assert_int_equal(route_info_add_chain(&a, &c), -EINVAL);
	const uint32_t bad[1] = {0};
	assert_int_equal(route_info_add_table(&a, 2, 1, bad, 1), -EINVAL);
	assert_int_equal(route_info_add_table(&a, ROUTE_TABLE_ID_MAX + 1, 1, NULL, 0), -EINVAL);
	assert_int_equal(route_info_add_table(&a, 1, 2, NULL, 0), -EEXIST);
	route_info_fini(&a);
}

static void test_references(void **state)
{
	(void)state;
	struct route_info a;
	char err[128];
	sample(&a);
	a.targets[0].node_id = 3; /* no node 3 */
	assert_int_equal(route_info_check(&a, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "node 3 unknown"));
	expect_rejected(&a);
	a.targets[0].node_id = 1;
	a.targets[0].pub_state = CHAIN_PS_OFFLINE; /* chain says serving */
	assert_int_equal(route_info_check(&a, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "serving here, offline"));
	expect_rejected(&a);
	a.targets[0].pub_state = CHAIN_PS_SERVING;
	a.targets[0].chain_id = 1000002; /* not a member there */
	assert_int_equal(route_info_check(&a, err, sizeof(err)), -EINVAL);
	expect_rejected(&a);
	a.targets[0].chain_id = 1000001;
	a.tables[1].chains[1] = 1000003;
	assert_int_equal(route_info_check(&a, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "chain 1000003 unknown"));
	expect_rejected(&a);
	a.tables[1].chains[1] = 1000002;
	a.chains[0].m[0].target_id = 1003;
	assert_int_equal(route_info_check(&a, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "target 1001: not in its chain"));
	expect_rejected(&a);
	a.targets[0].chain_id = 0; /* now only the chain's member is dangling */
	assert_int_equal(route_info_check(&a, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "target 1003 unknown"));
	a.targets[0].chain_id = 1000001;
	a.chains[0].m[0].target_id = 1001;
	assert_int_equal(route_info_check(&a, err, sizeof(err)), 0);
	route_info_fini(&a);
}

static void test_lookup_and_ids(void **state)
{
	(void)state;
	struct route_info a;
	sample(&a);
	assert_string_equal(route_find_node(&a, 9)->addr, "localhost:9000");
	assert_null(route_find_node(&a, 3));
	assert_int_equal(route_find_target(&a, 2002)->chain_id, 1000002);
	assert_null(route_find_target(&a, 2003));
	assert_int_equal(route_find_chain(&a, 1000002)->version, 7);
	assert_null(route_find_chain(&a, 1000003));
	assert_int_equal(route_find_table(&a, 1)->version, 2);
	assert_null(route_find_table(&a, 2));
	route_info_fini(&a);

	assert_int_equal(route_target_id(6, 5), 6005);
	assert_int_equal(route_target_node(6005), 6);
	assert_int_equal(route_target_slot(6005), 5);
	assert_true(route_target_id(ROUTE_NODE_ID_MAX, ROUTE_SLOT_MAX) == 4294966999u);
	assert_int_equal(route_target_node(route_target_id(ROUTE_NODE_ID_MAX, ROUTE_SLOT_MAX)),
	                 ROUTE_NODE_ID_MAX);
	assert_int_equal(route_chain_id(1, 10), 1000010);
	assert_true(route_chain_id(ROUTE_TABLE_ID_MAX, ROUTE_CHAIN_INDEX_MAX) == 4293999999u);
	assert_int_equal(route_chain_table(1000010), 1);
	assert_int_equal(route_chain_index(1000010), 10);
	assert_string_equal(route_node_type_name(ROUTE_NODE_STORAGE), "storage");
	assert_string_equal(route_node_state_name(ROUTE_NODE_FAILED), "failed");
	assert_string_equal(route_node_type_name(0), "?");
}

static void test_seal(void **state)
{
	(void)state;
	struct route_info a;
	sample(&a);
	struct buf rec = BUF_INIT, val = BUF_INIT;
	assert_int_equal(route_chain_encode(&a.chains[1], &rec), 0);
	assert_int_equal(route_seal(ROUTE_REC_CHAIN, rec.data, rec.len, &val), 0);
	assert_int_equal(val.len, ROUTE_SEAL_LEN + rec.len);
	const uint8_t *p;
	size_t n;
	assert_int_equal(route_unseal(val.data, val.len, ROUTE_REC_CHAIN, &p, &n), 0);
	assert_int_equal(n, rec.len);
	struct route_chain c;
	assert_int_equal(route_chain_decode(p, n, &c), 0);
	assert_int_equal(c.id, a.chains[1].id);
	assert_int_equal(route_unseal(val.data, val.len, ROUTE_REC_NODE, &p, &n), -CFS_EPROTO);
	assert_null(p);
	for (size_t k = 0; k < val.len; k++) {
		assert_int_equal(route_unseal(val.data, k, ROUTE_REC_CHAIN, &p, &n), -CFS_EPROTO);
		val.data[k] ^= 0x08; /* a flipped bit: header field or checksum */
		int want = k == 6 || k == 7 ? 0 : -CFS_EPROTO; /* the minor is free */
		assert_int_equal(route_unseal(val.data, val.len, ROUTE_REC_CHAIN, &p, &n), want);
		val.data[k] ^= 0x08;
	}
	buf_fini(&rec);
	buf_fini(&val);
	route_info_fini(&a);
}

static void test_update_chains(void **state)
{
	(void)state;
	struct route_info a;
	sample(&a);
	uint64_t v0 = a.version;
	/* Nothing reported differently: nothing changes. */
	assert_int_equal(route_info_update_chains(&a), 0);
	assert_true(a.version == v0);
	/* Target 1002 (syncing) finished its sync and node 2 lost its lease:
	 * chain 1000001 loses its tail 2001; chain 1000002 loses its head 2002
	 * and 1002 serves. */
	((struct route_target *)route_find_target(&a, 1002))->local_state = CHAIN_LS_UPTODATE;
	((struct route_node *)route_find_node(&a, 2))->state = ROUTE_NODE_FAILED;
	assert_int_equal(route_info_update_chains(&a), 2);
	assert_true(a.version == v0 + 1);
	const struct route_chain *c = route_find_chain(&a, 1000001);
	assert_int_equal(c->version, 4);
	assert_int_equal(c->m[0].target_id, 1001);
	assert_int_equal(c->m[1].state, CHAIN_PS_OFFLINE);
	c = route_find_chain(&a, 1000002);
	assert_int_equal(c->version, 8);
	assert_int_equal(c->m[0].target_id, 1002);
	assert_int_equal(c->m[0].state, CHAIN_PS_SERVING);
	assert_int_equal(route_find_target(&a, 2002)->pub_state, CHAIN_PS_OFFLINE);
	assert_int_equal(route_find_target(&a, 1002)->pub_state, CHAIN_PS_SERVING);
	assert_int_equal(route_info_check(&a, NULL, 0), 0);
	assert_int_equal(route_info_update_chains(&a), 0);
	assert_true(a.version == v0 + 1);
	/* An operator takes 1001 offline: chain 1000001 keeps its data on
	 * 1001 as lastsrv (2001 was already gone). */
	((struct route_target *)route_find_target(&a, 1001))->local_state = CHAIN_LS_OFFLINE;
	assert_int_equal(route_info_update_chains(&a), 1);
	c = route_find_chain(&a, 1000001);
	assert_int_equal(c->m[0].state, CHAIN_PS_LASTSRV);
	/* A dangling member fails without touching anything. */
	a.chains[1].m[1].target_id = 3001;
	((struct route_target *)route_find_target(&a, 1001))->local_state = CHAIN_LS_ONLINE;
	uint64_t v1 = a.version;
	assert_int_equal(route_info_update_chains(&a), -EINVAL);
	assert_true(a.version == v1);
	assert_int_equal(route_find_chain(&a, 1000001)->m[0].state, CHAIN_PS_LASTSRV);
	route_info_fini(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip),     cmocka_unit_test(test_truncation),
	    cmocka_unit_test(test_records),       cmocka_unit_test(test_bounds),
	    cmocka_unit_test(test_references),    cmocka_unit_test(test_lookup_and_ids),
	    cmocka_unit_test(test_update_chains), cmocka_unit_test(test_seal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
