/* test_rpc_local.c - RPC server and client in one process: bulk received
 * into handler-provided memory and sent from it (zero-copy paths), the
 * frame starts read exactly after a big bulk (no copy through the receive
 * buffer), the bulk_drop hand-back when a request dies mid-bulk, a deadline that passes
 * while the request frame is still being written, API argument checks, and
 * address parsing errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "net/rpc.h"
#include "net/transport.h"
#include "testenv.h"

#define T_PUT 20
#define T_GET 21
#define BIG (48u << 20)

static const char secret[] = "local-test-secret-0123456789";

struct srvctx {
	uint8_t *dest;            /* bulk_dest memory */
	uint64_t dest_len;
	atomic_int dest_calls, drops, handled, sent_done;
	int dest_stall_ms;        /* put_dest sleeps this long first */
	uint8_t src[1 << 16];     /* reply bulk for T_GET */
};

static void *put_dest(struct rpc_req *req, uint64_t len, void *arg)
{
	struct srvctx *s = arg;
	atomic_fetch_add(&s->dest_calls, 1);
	if (s->dest_stall_ms)
		usleep((useconds_t)s->dest_stall_ms * 1000);
	return len <= s->dest_len ? s->dest : NULL;
}

static void put_drop(struct rpc_req *req, void *mem, void *arg)
{
	struct srvctx *s = arg;
	if (mem == s->dest)
		atomic_fetch_add(&s->drops, 1);
}

static void put_handler(struct rpc_req *req, void *arg)
{
	struct srvctx *s = arg;
	uint64_t len;
	const uint8_t *b = rpc_req_bulk(req, &len);
	atomic_fetch_add(&s->handled, 1);
	/* Our memory, not a copy; and not adoptable by take_bulk. */
	int ok = b == s->dest && !rpc_req_take_bulk(req, &len);
	rpc_reply(req, ok ? 0 : -EIO, NULL, 0);
}

static void get_sent(void *arg)
{
	atomic_fetch_add(&((struct srvctx *)arg)->sent_done, 1);
}

static void get_handler(struct rpc_req *req, void *arg)
{
	struct srvctx *s = arg;
	rpc_reply_bulk(req, 0, "meta", 4, s->src, sizeof(s->src), get_sent, s);
}

static struct rpc_opts opts(void)
{
	struct rpc_opts o = { .cluster_id = "local", .secret = (const uint8_t *)secret,
			      .secret_len = sizeof(secret) - 1, .nthreads = 1 };
	return o;
}

static struct rpc_server *start(struct srvctx *s, char *addr)
{
	struct rpc_opts o = opts();
	struct rpc_server *srv;
	char err[128];
	struct rpc_handler put = { put_handler, put_dest, put_drop, s };
	struct rpc_handler get = { .fn = get_handler, .arg = s };
	assert_int_equal(rpc_server_new(&o, &srv), 0);
	assert_int_equal(rpc_server_handle(srv, T_PUT, &put), 0);
	assert_int_equal(rpc_server_handle(srv, T_GET, &get), 0);
	assert_int_equal(rpc_server_start(srv, "127.0.0.1:0", err, sizeof(err)), 0);
	snprintf(addr, 64, "127.0.0.1:%u", rpc_server_port(srv));
	return srv;
}

/* A client of its own and its peer for the server at ADDR. */
static struct rpc_peer *client_to(const char *addr, struct rpc_client **c)
{
	struct rpc_opts o = opts();
	struct rpc_peer *p;
	char err[128];
	assert_int_equal(rpc_client_new(&o, c), 0);
	assert_int_equal(rpc_client_peer(*c, addr, &p, err, sizeof(err)), 0);
	return p;
}

static int sent_once(void *arg) { return atomic_load(&((struct srvctx *)arg)->sent_done) == 1; }

static void test_bulk_in_place(void **state)
{
	struct srvctx *s = calloc(1, sizeof(*s));
	char addr[64];
	s->dest_len = 1 << 20;
	s->dest = calloc(1, s->dest_len);
	for (size_t i = 0; i < sizeof(s->src); i++)
		s->src[i] = (uint8_t)(i ^ 0x5a);
	struct rpc_server *srv = start(s, addr);
	struct rpc_client *c;
	struct rpc_peer *p = client_to(addr, &c);

	uint8_t *data = malloc(s->dest_len);
	for (size_t i = 0; i < s->dest_len; i++)
		data[i] = (uint8_t)(i * 31);
	struct rpc_call put = { .type = T_PUT, .flags = RPC_CALL_BULK_CRC, .bulk = data,
				.bulk_len = s->dest_len };
	assert_int_equal(rpc_call(p, &put, NULL, NULL), 0);
	assert_memory_equal(s->dest, data, s->dest_len);
	assert_int_equal(atomic_load(&s->dest_calls), 1);
	assert_int_equal(atomic_load(&s->drops), 0);

	uint8_t in[1 << 16];
	struct buf resp = BUF_INIT;
	uint64_t got = 0;
	struct rpc_call get = { .type = T_GET, .flags = RPC_CALL_BULK_CRC, .resp_bulk = in,
				.resp_bulk_cap = sizeof(in) };
	assert_int_equal(rpc_call(p, &get, &resp, &got), 0);
	assert_true(got == sizeof(in));
	assert_memory_equal(in, s->src, sizeof(in));
	assert_int_equal(resp.len, 4);
	assert_memory_equal(resp.data, "meta", 4);
	/* The send-side done runs after the server's writev, which may be just
	 * after the client already has the reply. */
	assert_true(testenv_wait(sent_once, s, 5000));

	buf_fini(&resp);
	rpc_client_free(c);
	rpc_server_free(srv);
	free(data);
	free(s->dest);
	free(s);
}

/* A reply bulk scattered over caller segments (resp_iov): the bytes land
 * in order across them, with and without the bulk CRC, over more segments
 * than one readv takes; a bulk longer than the segments is -EMSGSIZE. */
static void test_bulk_scattered(void **state)
{
	struct srvctx *s = calloc(1, sizeof(*s));
	char addr[64];
	for (size_t i = 0; i < sizeof(s->src); i++)
		s->src[i] = (uint8_t)(i * 7 ^ 0x33);
	struct rpc_server *srv = start(s, addr);
	struct rpc_client *c;
	struct rpc_peer *p = client_to(addr, &c);
	static uint8_t mem[3 << 16];
	for (int round = 0; round < 4; round++) {
		/* 40 segments of uneven sizes summing to the bulk, with gaps. */
		struct iovec iov[40];
		size_t left = sizeof(s->src), at = 0;
		int n = 0;
		memset(mem, 0xEE, sizeof(mem));
		while (left) {
			size_t k = n == 39 ? left : 1 + (size_t)((n * 977 + round * 131) % 3000);
			if (k > left)
				k = left;
			iov[n].iov_base = mem + at;
			iov[n++].iov_len = k;
			at += k + 3; /* a gap the reply must not touch */
			left -= k;
		}
		assert_true(at <= sizeof(mem));
		uint64_t got = 0;
		struct rpc_call get = { .type = T_GET, .flags = round & 1 ? RPC_CALL_BULK_CRC : 0,
					.resp_iov = iov, .resp_niov = n };
		assert_int_equal(rpc_call(p, &get, NULL, &got), 0);
		assert_true(got == sizeof(s->src));
		size_t off = 0;
		for (int i = 0; i < n; i++) {
			assert_memory_equal(iov[i].iov_base, s->src + off, iov[i].iov_len);
			off += iov[i].iov_len;
			assert_int_equal(((uint8_t *)iov[i].iov_base)[iov[i].iov_len], 0xEE);
		}
	}
	struct iovec small[2] = { { mem, 100 }, { mem + 200, 100 } };
	struct rpc_call get = { .type = T_GET, .resp_iov = small, .resp_niov = 2 };
	assert_int_equal(rpc_call(p, &get, NULL, NULL), -EMSGSIZE);
	rpc_client_free(c);
	rpc_server_free(srv);
	free(s);
}

/* Frames with big bulks: after the first, the receiver reads each frame's
 * header and payload exactly (the last payload's length is the guess), so
 * the bulk goes straight into its destination and not through the receive
 * buffer and a copy (rpc_stats.bulk_copied). Payloads longer than the
 * guess cost nothing; shorter ones copy only the difference. Replies
 * pipelined back to back (many calls in flight) still land whole. */
struct pipe_ctx {
	atomic_int done, bad;
};

static void pipe_done(void *arg, const struct rpc_result *res)
{
	struct pipe_ctx *x = arg;
	if (res->status || res->bulk_len != 1 << 16)
		atomic_fetch_add(&x->bad, 1);
	atomic_fetch_add(&x->done, 1);
}

static int all_done(void *arg) { return atomic_load(&((struct pipe_ctx *)arg)->done) == 32; }

static void test_bulk_exact_reads(void **state)
{
	struct srvctx *s = calloc(1, sizeof(*s));
	char addr[64];
	s->dest_len = 1 << 16;
	s->dest = calloc(1, s->dest_len);
	for (size_t i = 0; i < sizeof(s->src); i++)
		s->src[i] = (uint8_t)(i * 13 ^ 0xa5);
	struct rpc_server *srv = start(s, addr);
	struct rpc_client *c;
	struct rpc_peer *p = client_to(addr, &c);
	uint8_t *data = malloc(s->dest_len);
	static uint8_t meta[400];
	const uint32_t plen[] = { 100, 100, 100, 100, 300, 10, 10, 10 };
	struct rpc_stats st;
	uint64_t warm = 0;
	for (int i = 0; i < 8; i++) {
		for (size_t j = 0; j < s->dest_len; j++)
			data[j] = (uint8_t)(j * 31 + (size_t)i);
		struct rpc_call put = { .type = T_PUT, .flags = i & 1 ? RPC_CALL_BULK_CRC : 0,
					.payload = meta, .payload_len = plen[i], .bulk = data,
					.bulk_len = s->dest_len };
		assert_int_equal(rpc_call(p, &put, NULL, NULL), 0);
		assert_memory_equal(s->dest, data, s->dest_len);
		rpc_server_stats(srv, &st);
		if (i == 0)
			warm = st.bulk_copied; /* the first frame: no guess yet */
		else if (i < 5)
			assert_true(st.bulk_copied == warm); /* same or longer payload */
	}
	/* 300 then 10: the read after the 300-byte one takes 290 bulk bytes. */
	assert_true(st.bulk_copied <= warm + 290);

	/* 32 replies in flight at once, each into its own memory. */
	struct pipe_ctx x = { 0 };
	uint8_t *in = calloc(32, 1 << 16);
	for (int i = 0; i < 32; i++) {
		struct rpc_call get = { .type = T_GET, .flags = i & 1 ? RPC_CALL_BULK_CRC : 0,
					.resp_bulk = in + ((size_t)i << 16), .resp_bulk_cap = 1 << 16,
					.done = pipe_done, .arg = &x };
		assert_int_equal(rpc_call_async(p, &get), 0);
	}
	assert_true(testenv_wait(all_done, &x, 10000));
	assert_int_equal(atomic_load(&x.bad), 0);
	for (int i = 0; i < 32; i++)
		assert_memory_equal(in + ((size_t)i << 16), s->src, 1 << 16);

	rpc_client_free(c);
	rpc_server_free(srv);
	free(in);
	free(data);
	free(s->dest);
	free(s);
}

static int dropped(void *arg) { return atomic_load(&((struct srvctx *)arg)->drops) == 1; }

static void test_deadline_mid_write_and_drop(void **state)
{
	struct srvctx *s = calloc(1, sizeof(*s));
	char addr[64];
	s->dest_len = BIG;
	s->dest = malloc(BIG);
	struct rpc_server *srv = start(s, addr);
	struct rpc_client *c;
	struct rpc_peer *p = client_to(addr, &c);
	static uint8_t in[1 << 16];
	struct rpc_call warm = { .type = T_GET, .resp_bulk = in, .resp_bulk_cap = sizeof(in) };
	assert_int_equal(rpc_call(p, &warm, NULL, NULL), 0);

	/* The server stops reading for 200 ms when the 48 MiB frame's header
	 * arrives, so the frame cannot be whole before the deadline, which a
	 * direct send arms up to SWEEP_MS (10 ms) late; a fast quiet machine
	 * moved all of it across loopback inside that slack without the stall.
	 * The deadline passes while the frame is half-written, the connection
	 * is reset, the caller gets -CFS_ETIMEDOUT, and the server hands the
	 * half-filled memory back. */
	s->dest_stall_ms = 200;
	uint8_t *data = calloc(1, BIG);
	struct rpc_call put = { .type = T_PUT, .timeout_ms = 2, .bulk = data, .bulk_len = BIG };
	assert_int_equal(rpc_call(p, &put, NULL, NULL), -CFS_ETIMEDOUT);
	assert_true(testenv_wait(dropped, s, 5000));
	assert_int_equal(atomic_load(&s->handled), 0);
	/* The client reconnects for the next call. */
	assert_int_equal(rpc_call(p, &warm, NULL, NULL), 0);

	rpc_client_free(c);
	rpc_server_free(srv);
	free(data);
	free(s->dest);
	free(s);
}

static void test_api_checks(void **state)
{
	struct rpc_opts o = opts();
	struct rpc_server *srv;
	struct rpc_client *c;
	struct rpc_peer *p;
	char err[128];
	struct rpc_handler h = { .fn = put_handler }, nodrop = { put_handler, put_dest, NULL, NULL };

	o.secret_len = 8;
	assert_int_equal(rpc_server_new(&o, &srv), -EINVAL);
	assert_int_equal(rpc_client_new(&o, &c), -EINVAL);
	o = opts();
	o.cluster_id = NULL;
	assert_int_equal(rpc_server_new(&o, &srv), -EINVAL);
	o = opts();
	assert_int_equal(rpc_server_new(&o, &srv), 0);
	assert_int_equal(rpc_server_handle(srv, 1, &h), -EINVAL);        /* handshake type */
	assert_int_equal(rpc_server_handle(srv, RPC_TYPE_MAX, &h), -EINVAL);
	assert_int_equal(rpc_server_handle(srv, 30, &nodrop), -EINVAL);  /* dest without drop */
	assert_int_equal(rpc_server_start(srv, "127.0.0.1", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "missing ':port'"));
	rpc_server_free(srv);

	assert_int_equal(rpc_client_new(&o, &c), 0);
	assert_int_equal(rpc_client_peer(c, "10.0.0.300:1", &p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "bad IPv4 address"));
	assert_int_equal(rpc_client_peer(c, "127.0.0.1:99999", &p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "bad port"));
	assert_int_equal(rpc_client_peer(c, "localhost:1", &p, err, sizeof(err)), 0);
	struct rpc_call nodone = { .type = 20 };
	assert_int_equal(rpc_call_async(p, &nodone), -EINVAL);
	rpc_client_free(c);
}

int main(void)
{
	log_set_level(LOG_LVL_ERR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bulk_in_place),
		cmocka_unit_test(test_bulk_scattered),
		cmocka_unit_test(test_bulk_exact_reads),
		cmocka_unit_test(test_deadline_mid_write_and_drop),
		cmocka_unit_test(test_api_checks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
