/* test_frame.c - the frame header and every message codec of rpc_proto.h:
 * round trips, every truncation point fails with -CFS_EPROTO, trailing
 * bytes from a newer peer are skipped, and a bad magic, version, header
 * crc, unknown flag or oversize length is refused with its own code. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "common/buf.h"
#include "common/crc32c.h"
#include "common/status.h"
#include "common/wire.h"
#include "net/frame.h"
#include "net/rpc_proto.h"

static const struct frame_limits lim = { 1u << 20, 64ull << 20 };

static void sample_hdr(struct frame_hdr *h)
{
	h->flags = FRAME_F_RESPONSE | FRAME_F_BULK_CRC;
	h->type = RPC_MSG_ECHO;
	h->req_id = 0x1122334455667788ull;
	h->status = -CFS_ETIMEDOUT;
	h->payload_len = 1000;
	h->bulk_len = 5ull << 20;
	h->bulk_crc = 0xcafef00d;
}

static void test_frame_roundtrip(void **state)
{
	struct frame_hdr h, d;
	uint8_t b[FRAME_HDR_LEN];
	sample_hdr(&h);
	frame_encode(&h, b);
	assert_int_equal(wire_load_u32(b), FRAME_MAGIC);
	assert_memory_equal(b, "CFS\x01", 4);
	assert_int_equal(frame_decode(b, sizeof(b), &lim, &d), 0);
	assert_int_equal(d.flags, h.flags);
	assert_int_equal(d.type, h.type);
	assert_true(d.req_id == h.req_id);
	assert_int_equal(d.status, h.status);
	assert_int_equal(d.payload_len, h.payload_len);
	assert_true(d.bulk_len == h.bulk_len);
	assert_int_equal(d.bulk_crc, h.bulk_crc);
	/* Pinned offsets: the layout table in frame.h is the contract. */
	assert_int_equal(wire_load_u16(b + 8), RPC_MSG_ECHO);
	assert_true(wire_load_u64(b + 12) == h.req_id);
	assert_int_equal(wire_load_u32(b + 24), 1000);
	assert_true(wire_load_u64(b + 28) == (5ull << 20));
	assert_int_equal(wire_load_u32(b + 44), crc32c(0, b, 44));
}

static void recrc(uint8_t *b) { wire_store_u32(b + 44, crc32c(0, b, 44)); }

static void test_frame_rejects(void **state)
{
	struct frame_hdr h, d;
	uint8_t good[FRAME_HDR_LEN], b[FRAME_HDR_LEN];
	sample_hdr(&h);
	frame_encode(&h, good);

	for (size_t n = 0; n < FRAME_HDR_LEN; n++)
		assert_int_equal(frame_decode(good, n, &lim, &d), -CFS_EPROTO);

	memcpy(b, good, sizeof(b));
	b[0] ^= 0xff; /* magic is checked before the crc */
	assert_int_equal(frame_decode(b, sizeof(b), &lim, &d), -CFS_EPROTO);

	memcpy(b, good, sizeof(b));
	wire_store_u16(b + 4, FRAME_VERSION + 1);
	recrc(b);
	assert_int_equal(frame_decode(b, sizeof(b), &lim, &d), -CFS_EVERSION);

	for (size_t i = 4; i < FRAME_HDR_LEN; i++) {
		if (i == 4 || i == 5)
			continue; /* a flipped version byte reports the version */
		memcpy(b, good, sizeof(b));
		b[i] ^= 0x01;
		assert_int_equal(frame_decode(b, sizeof(b), &lim, &d), -CFS_ECHECKSUM);
	}

	memcpy(b, good, sizeof(b));
	wire_store_u16(b + 6, 0x100);
	recrc(b);
	assert_int_equal(frame_decode(b, sizeof(b), &lim, &d), -CFS_EPROTO);

	memcpy(b, good, sizeof(b));
	wire_store_u16(b + 6, FRAME_F_RESPONSE | FRAME_F_ONEWAY);
	recrc(b);
	assert_int_equal(frame_decode(b, sizeof(b), &lim, &d), -CFS_EPROTO);

	h.payload_len = lim.max_payload + 1;
	frame_encode(&h, b);
	assert_int_equal(frame_decode(b, sizeof(b), &lim, &d), -EMSGSIZE);
	h.payload_len = lim.max_payload;
	h.bulk_len = lim.max_bulk + 1;
	frame_encode(&h, b);
	assert_int_equal(frame_decode(b, sizeof(b), &lim, &d), -EMSGSIZE);
	h.bulk_len = lim.max_bulk;
	frame_encode(&h, b);
	assert_int_equal(frame_decode(b, sizeof(b), &lim, &d), 0);
}

/* Encodes M with ENC into B, checks DEC refuses every shorter prefix and
 * accepts the message followed by bytes a newer peer appended, and leaves
 * OUT decoded from B (its borrowed pointers point into B). */
typedef int (*enc_fn)(struct buf *b, const void *m);
typedef int (*dec_fn)(const void *p, size_t n, void *m);

static void check_codec(struct buf *b, enc_fn enc, const void *m, dec_fn dec, void *out,
			size_t outsz)
{
	assert_int_equal(enc(b, m), 0);
	for (size_t n = 0; n < b->len; n++) {
		memset(out, 0, outsz);
		assert_int_equal(dec(b->data, n, out), -CFS_EPROTO);
	}
	size_t full = b->len;
	assert_int_equal(buf_append(b, "newer-field", 11), 0);
	memset(out, 0, outsz);
	assert_int_equal(dec(b->data, b->len, out), 0);
	memset(out, 0, outsz);
	assert_int_equal(dec(b->data, full, out), 0);
}

#define CODEC(name) (enc_fn)name##_encode, (const void *)&m, (dec_fn)name##_decode, &d, sizeof(d)

static void test_hello(void **state)
{
	struct buf b = BUF_INIT;
	struct rpc_hello m = { 1, 7, 0xabcdef, (const uint8_t *)"prod-cluster", 12, { 0 } }, d;
	for (int i = 0; i < RPC_NONCE_LEN; i++)
		m.nonce[i] = (uint8_t)i;
	check_codec(&b, CODEC(rpc_hello));
	assert_int_equal(d.major, 1);
	assert_int_equal(d.minor, 7);
	assert_true(d.features == 0xabcdef);
	assert_int_equal(d.cluster_id_len, 12);
	assert_memory_equal(d.cluster_id, "prod-cluster", 12);
	assert_memory_equal(d.nonce, m.nonce, RPC_NONCE_LEN);
	buf_fini(&b);

	/* A cluster id over the limit is refused even when the bytes are there. */
	uint8_t big[RPC_CLUSTER_ID_MAX + 1];
	memset(big, 'x', sizeof(big));
	m.cluster_id = big;
	m.cluster_id_len = sizeof(big);
	assert_int_equal(rpc_hello_encode(&b, &m), 0);
	assert_int_equal(rpc_hello_decode(b.data, b.len, &d), -CFS_EPROTO);
	buf_fini(&b);
}

static void test_challenge_and_proof(void **state)
{
	struct buf b = BUF_INIT;
	{
		struct rpc_challenge m = { 1, 0, 1, { 0 } }, d;
		memset(m.nonce, 0x5a, RPC_NONCE_LEN);
		check_codec(&b, CODEC(rpc_challenge));
		assert_int_equal(d.major, 1);
		assert_true(d.features == 1);
		assert_memory_equal(d.nonce, m.nonce, RPC_NONCE_LEN);
		buf_fini(&b);
	}
	{
		struct rpc_proof m, d;
		for (int i = 0; i < RPC_PROOF_LEN; i++)
			m.mac[i] = (uint8_t)(255 - i);
		check_codec(&b, CODEC(rpc_proof));
		assert_memory_equal(d.mac, m.mac, RPC_PROOF_LEN);
		buf_fini(&b);
	}
}

static void test_error(void **state)
{
	struct buf b = BUF_INIT;
	struct rpc_error m = { (const uint8_t *)"no such chunk", 13 }, d;
	check_codec(&b, CODEC(rpc_error));
	assert_int_equal(d.text_len, 13);
	assert_memory_equal(d.text, "no such chunk", 13);
	buf_fini(&b);

	/* Long text is cut to the limit on encode, so it always decodes. */
	static uint8_t big[RPC_ERROR_TEXT_MAX + 50];
	memset(big, 'e', sizeof(big));
	m.text = big;
	m.text_len = sizeof(big);
	assert_int_equal(rpc_error_encode(&b, &m), 0);
	assert_int_equal(rpc_error_decode(b.data, b.len, &d), 0);
	assert_int_equal(d.text_len, RPC_ERROR_TEXT_MAX);
	buf_fini(&b);
}

static void test_echo(void **state)
{
	struct buf b = BUF_INIT;
	{
		struct rpc_echo_req m = { 250, RPC_ECHO_F_BULK, (const uint8_t *)"abc", 3 }, d;
		check_codec(&b, CODEC(rpc_echo_req));
		assert_int_equal(d.delay_ms, 250);
		assert_int_equal(d.flags, RPC_ECHO_F_BULK);
		assert_int_equal(d.data_len, 3);
		assert_memory_equal(d.data, "abc", 3);
		buf_fini(&b);
	}
	{
		struct rpc_echo_resp m = { (const uint8_t *)"", 0, 1ull << 33 }, d;
		check_codec(&b, CODEC(rpc_echo_resp));
		assert_int_equal(d.data_len, 0);
		assert_true(d.bulk_len == 1ull << 33);
		buf_fini(&b);
	}
	/* A blob length pointing past the end fails instead of reading on. */
	uint8_t lie[12] = { 0 };
	wire_store_u32(lie + 8, 0xffffffffu);
	struct rpc_echo_req d;
	assert_int_equal(rpc_echo_req_decode(lie, sizeof(lie), &d), -CFS_EPROTO);
}

static void test_msg_names(void **state)
{
	assert_string_equal(rpc_msg_name(RPC_MSG_HELLO), "HELLO");
	assert_string_equal(rpc_msg_name(RPC_MSG_ECHO), "ECHO");
	assert_string_equal(rpc_msg_name(777), "type-777");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_roundtrip),
		cmocka_unit_test(test_frame_rejects),
		cmocka_unit_test(test_hello),
		cmocka_unit_test(test_challenge_and_proof),
		cmocka_unit_test(test_error),
		cmocka_unit_test(test_echo),
		cmocka_unit_test(test_msg_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
