/* rpc_proto.c - codecs for the messages in the rpc_proto.h catalog.
 *
 * Each decoder reads its fields through a wire_reader, checks once at the
 * end (the reader latches the first error), and ignores bytes left over:
 * they are fields a newer peer appended. Blob lengths are bounded by each
 * field's limit as well as by the bytes present.
 */
#include <errno.h>
#include <stdio.h>

#include "common/status.h"
#include "common/wire.h"
#include "net/rpc_proto.h"

const char *rpc_msg_name(uint16_t type)
{
	static __thread char other[16];

	switch (type) {
	case RPC_MSG_HELLO: return "HELLO";
	case RPC_MSG_CHALLENGE: return "CHALLENGE";
	case RPC_MSG_AUTH: return "AUTH";
	case RPC_MSG_AUTH_OK: return "AUTH_OK";
	case RPC_MSG_ECHO: return "ECHO";
	case RPC_MSG_STATS: return "STATS";
	}
	snprintf(other, sizeof(other), "type-%u", type);
	return other;
}

static int finish(struct wire_writer *w) { return w->err; }

int rpc_hello_encode(struct buf *b, const struct rpc_hello *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u16(&w, m->major);
	wire_put_u16(&w, m->minor);
	wire_put_u64(&w, m->features);
	wire_put_blob(&w, m->cluster_id, m->cluster_id_len);
	wire_put_bytes(&w, m->nonce, RPC_NONCE_LEN);
	return finish(&w);
}

int rpc_hello_decode(const void *p, size_t n, struct rpc_hello *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u16(&r, &m->major);
	wire_get_u16(&r, &m->minor);
	wire_get_u64(&r, &m->features);
	wire_get_blob(&r, RPC_CLUSTER_ID_MAX, &m->cluster_id, &m->cluster_id_len);
	wire_get_bytes(&r, m->nonce, RPC_NONCE_LEN);
	return r.err;
}

int rpc_challenge_encode(struct buf *b, const struct rpc_challenge *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u16(&w, m->major);
	wire_put_u16(&w, m->minor);
	wire_put_u64(&w, m->features);
	wire_put_bytes(&w, m->nonce, RPC_NONCE_LEN);
	return finish(&w);
}

int rpc_challenge_decode(const void *p, size_t n, struct rpc_challenge *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u16(&r, &m->major);
	wire_get_u16(&r, &m->minor);
	wire_get_u64(&r, &m->features);
	wire_get_bytes(&r, m->nonce, RPC_NONCE_LEN);
	return r.err;
}

int rpc_proof_encode(struct buf *b, const struct rpc_proof *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_bytes(&w, m->mac, RPC_PROOF_LEN);
	return finish(&w);
}

int rpc_proof_decode(const void *p, size_t n, struct rpc_proof *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_bytes(&r, m->mac, RPC_PROOF_LEN);
	return r.err;
}

int rpc_error_encode(struct buf *b, const struct rpc_error *m)
{
	struct wire_writer w;
	uint32_t len = m->text_len > RPC_ERROR_TEXT_MAX ? RPC_ERROR_TEXT_MAX : m->text_len;
	wire_writer_init(&w, b);
	wire_put_blob(&w, m->text, len);
	return finish(&w);
}

int rpc_error_decode(const void *p, size_t n, struct rpc_error *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_blob(&r, RPC_ERROR_TEXT_MAX, &m->text, &m->text_len);
	return r.err;
}

int rpc_echo_req_encode(struct buf *b, const struct rpc_echo_req *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, m->delay_ms);
	wire_put_u32(&w, m->flags);
	wire_put_blob(&w, m->data, m->data_len);
	return finish(&w);
}

int rpc_echo_req_decode(const void *p, size_t n, struct rpc_echo_req *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u32(&r, &m->delay_ms);
	wire_get_u32(&r, &m->flags);
	wire_get_blob(&r, n, &m->data, &m->data_len);
	return r.err;
}

int rpc_echo_resp_encode(struct buf *b, const struct rpc_echo_resp *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_blob(&w, m->data, m->data_len);
	wire_put_u64(&w, m->bulk_len);
	return finish(&w);
}

int rpc_echo_resp_decode(const void *p, size_t n, struct rpc_echo_resp *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_blob(&r, n, &m->data, &m->data_len);
	wire_get_u64(&r, &m->bulk_len);
	return r.err;
}

int rpc_stats_resp_encode(struct buf *b, const struct rpc_stats_resp *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u64(&w, m->accepted);
	wire_put_u64(&w, m->auth_fail);
	wire_put_u64(&w, m->bad_input);
	wire_put_u64(&w, m->requests);
	wire_put_u64(&w, m->handshake_timeout);
	wire_put_u64(&w, m->accepted_local);
	return finish(&w);
}

int rpc_stats_resp_decode(const void *p, size_t n, struct rpc_stats_resp *m)
{
	struct wire_reader r;
	wire_reader_init(&r, p, n);
	wire_get_u64(&r, &m->accepted);
	wire_get_u64(&r, &m->auth_fail);
	wire_get_u64(&r, &m->bad_input);
	wire_get_u64(&r, &m->requests);
	wire_get_u64(&r, &m->handshake_timeout);
	/* Added in 1.x with the same-host socket: a server from before sends
	 * five fields. */
	m->accepted_local = 0;
	if (!r.err && r.end - r.p >= 8)
		wire_get_u64(&r, &m->accepted_local);
	return r.err;
}
