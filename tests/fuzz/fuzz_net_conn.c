/* fuzz_net_conn.c - libFuzzer target for a server connection's receive
 * path: the input is written as a byte stream to a real RPC server on
 * 127.0.0.1 (started once per process), then the write side is shut and
 * the reply stream is drained until the server closes. The first input
 * byte picks the mode: odd means "authenticate first" (this target runs a
 * correct handshake, so the rest reaches the post-auth dispatcher), even
 * means the bytes hit the handshake itself. This drives the frame state
 * machine (header, payload, bulk phases, buffer growth), the handshake
 * decoders and dispatch with whatever the fuzzer invents. Property: the
 * server never crashes, never trips a sanitizer, and always closes the
 * connection after EOF. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "net/auth.h"
#include "net/frame.h"
#include "net/rpc.h"
#include "net/rpc_proto.h"

static const char secret[] = "fuzz-secret-0123456789";
static struct rpc_server *srv;
static uint16_t port;

static void send_all(int fd, const void *p, size_t n)
{
	size_t off = 0;
	while (off < n) {
		ssize_t w = send(fd, (const uint8_t *)p + off, n - off, MSG_NOSIGNAL);
		if (w <= 0)
			abort();
		off += (size_t)w;
	}
}

static void send_frame(int fd, uint16_t type, uint64_t id, const struct buf *b)
{
	uint8_t h[FRAME_HDR_LEN];
	struct frame_hdr fh = { .type = type, .req_id = id, .payload_len = (uint32_t)b->len };
	frame_encode(&fh, h);
	send_all(fd, h, sizeof(h));
	send_all(fd, b->data, b->len);
}

/* Reads one reply of at most sizeof(p) payload bytes into P; returns its length. */
static uint32_t recv_frame(int fd, uint8_t *p, size_t cap)
{
	uint8_t h[FRAME_HDR_LEN];
	const struct frame_limits lim = { (uint32_t)cap, 0 };
	struct frame_hdr fh;
	size_t got = 0;
	while (got < sizeof(h)) {
		ssize_t r = read(fd, h + got, sizeof(h) - got);
		if (r <= 0)
			abort();
		got += (size_t)r;
	}
	if (frame_decode(h, sizeof(h), &lim, &fh) || fh.status)
		abort();
	for (got = 0; got < fh.payload_len;) {
		ssize_t r = read(fd, p + got, fh.payload_len - got);
		if (r <= 0)
			abort();
		got += (size_t)r;
	}
	return fh.payload_len;
}

static void handshake(int fd)
{
	struct buf b = BUF_INIT;
	uint8_t p[512];
	struct rpc_hello hello = { RPC_PROTO_MAJOR, 0, 0, (const uint8_t *)"fuzz", 4, { 0 } };
	struct rpc_challenge ch;
	struct rpc_proof pr;
	memset(hello.nonce, 7, sizeof(hello.nonce));
	rpc_hello_encode(&b, &hello);
	send_frame(fd, RPC_MSG_HELLO, 1, &b);
	if (rpc_challenge_decode(p, recv_frame(fd, p, sizeof(p)), &ch) ||
	    auth_proof((const uint8_t *)secret, sizeof(secret) - 1, AUTH_ROLE_CLIENT, "fuzz", 4,
		       hello.nonce, ch.nonce, pr.mac))
		abort();
	buf_reset(&b);
	rpc_proof_encode(&b, &pr);
	send_frame(fd, RPC_MSG_AUTH, 2, &b);
	recv_frame(fd, p, sizeof(p));
	buf_fini(&b);
}

static void echo(struct rpc_req *req, void *arg)
{
	uint32_t n;
	const uint8_t *p = rpc_req_payload(req, &n);
	rpc_reply(req, 0, p, n);
}

static void start(void)
{
	struct rpc_opts o = { .cluster_id = "fuzz", .secret = (const uint8_t *)secret,
			      .secret_len = sizeof(secret) - 1, .nthreads = 1,
			      .max_payload = 1 << 20, .max_bulk = 1 << 20 };
	struct rpc_handler h = { .fn = echo };
	char err[128];
	log_set_sink(NULL, NULL); /* the refusals would flood the output */
	if (rpc_server_new(&o, &srv) || rpc_server_handle(srv, RPC_MSG_ECHO, &h) ||
	    rpc_server_start(srv, "127.0.0.1:0", err, sizeof(err)))
		abort();
	port = rpc_server_port(srv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!srv)
		start();
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)))
		abort();
	/* Header and payload go in separate sends: without this, Nagle and
	 * delayed ACKs add 40 ms per handshake step. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	size_t off = 0;
	if (size && (data[0] & 1))
		handshake(fd);
	if (size)
		off = 1;
	while (off < size) {
		ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL);
		if (w <= 0)
			break; /* the server already closed on bad input */
		off += (size_t)w;
	}
	shutdown(fd, SHUT_WR);
	char buf[4096];
	for (;;) {
		struct pollfd pf = { fd, POLLIN, 0 };
		if (poll(&pf, 1, 10000) != 1)
			abort(); /* the server must close: EOF is always final */
		if (read(fd, buf, sizeof(buf)) <= 0)
			break;
	}
	close(fd);
	return 0;
}
