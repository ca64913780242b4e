/* test_transport.c - the same-host unix transport (transport.h xport_unix)
 * and its use by the RPC layer: connect/accept and bytes both ways, EOF and
 * EPIPE, partial writes and reads of a non-blocking stream, the fallback to
 * TCP when no unix listener exists (and when either side turns it off) or
 * when another user's process holds the name, the
 * handshake still required on it (wrong secret, garbage, a request before
 * the handshake), and a client killed mid-upload (the server hands the
 * bulk memory back and keeps serving). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "net/frame.h"
#include "net/rpc.h"
#include "net/transport.h"
#include "testenv.h"

#define T_PUT 20
#define T_GET 21

static const char secret[] = "transport-test-secret-0123456789";

/* A loopback address with a port nobody uses: bind TCP to port 0 and keep it. */
static struct xport *tcp_listener(struct sockaddr_in *sa)
{
	struct xport *l;
	char err[128];
	assert_int_equal(xport_addr_parse("127.0.0.1:0", sa, err, sizeof(err)), 0);
	assert_int_equal(xport_tcp.listen(sa, 16, &l), 0);
	assert_int_equal(l->ops->local_addr(l, sa), 0);
	return l;
}

static struct xport *accept_one(struct xport *l)
{
	struct xport *x = NULL;
	struct sockaddr_in peer;
	struct pollfd pfd = { .fd = l->ops->fd(l), .events = POLLIN };
	assert_true(poll(&pfd, 1, 5000) == 1);
	assert_int_equal(l->ops->accept(l, &x, &peer), 0);
	return x;
}

static void test_name(void **state)
{
	struct sockaddr_in sa;
	struct sockaddr_un su;
	char err[128];
	assert_int_equal(xport_addr_parse("127.0.0.1:4242", &sa, err, sizeof(err)), 0);
	socklen_t len = xport_unix_name(&sa, &su);
	assert_int_equal(su.sun_family, AF_UNIX);
	assert_int_equal(su.sun_path[0], '\0'); /* abstract: no file to clean up */
	const char want[] = "chainfs-rpc:127.0.0.1:4242";
	assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + 1 + strlen(want));
	assert_memory_equal(su.sun_path + 1, want, strlen(want));
}

static void test_connect_bytes_eof(void **state)
{
	struct sockaddr_in sa;
	struct xport *tl = tcp_listener(&sa), *ul, *c, *s;
	/* Nothing on the unix name yet: refused, as the fallback expects. */
	assert_int_equal(xport_unix.connect(&sa, &c), -ECONNREFUSED);
	assert_int_equal(xport_unix.listen(&sa, 16, &ul), 0);
	/* The name is taken while the listener lives. */
	struct xport *dup;
	assert_int_equal(xport_unix.listen(&sa, 16, &dup), -EADDRINUSE);
	assert_int_equal(xport_unix.connect(&sa, &c), 0);
	assert_ptr_equal(c->ops, &xport_unix);
	assert_int_equal(c->ops->connect_finish(c), 0);
	s = accept_one(ul);
	char ps[XPORT_ADDRSTRLEN], want[XPORT_ADDRSTRLEN];
	snprintf(want, sizeof(want), "unix:pid=%d", (int)getpid());
	assert_string_equal(xport_unix_peer_str(s, ps), want);

	char a[] = "hello", b[] = " world", in[32] = { 0 };
	struct iovec iov[2] = { { a, 5 }, { b, 6 } };
	assert_int_equal(c->ops->writev(c, iov, 2), 11);
	struct iovec r[2] = { { in, 3 }, { in + 3, 20 } };
	assert_int_equal(s->ops->readv(s, r, 2), 11);
	assert_string_equal(in, "hello world");
	/* Nothing more: -EAGAIN, not a block. */
	assert_int_equal(s->ops->readv(s, r, 1), -EAGAIN);
	c->ops->close(c);
	assert_int_equal(s->ops->readv(s, r, 1), 0); /* EOF */
	/* Writing to a closed peer: -EPIPE, no SIGPIPE. */
	assert_int_equal(s->ops->writev(s, iov, 1), -EPIPE);
	s->ops->close(s);
	ul->ops->close(ul);
	/* The name is free again once the listener is closed. */
	assert_int_equal(xport_unix.connect(&sa, &c), -ECONNREFUSED);
	tl->ops->close(tl);
}

/* 8 MiB through a non-blocking pair from one thread: writes stop short
 * with -EAGAIN when the socket is full, reads come in pieces of uneven
 * iovecs; every byte arrives in order. */
static void test_partial(void **state)
{
	struct sockaddr_in sa;
	struct xport *tl = tcp_listener(&sa), *ul, *c, *s;
	assert_int_equal(xport_unix.listen(&sa, 16, &ul), 0);
	assert_int_equal(xport_unix.connect(&sa, &c), 0);
	s = accept_one(ul);
	size_t n = 8u << 20, wr = 0, rd = 0;
	uint8_t *src = malloc(n), *dst = malloc(n);
	for (size_t i = 0; i < n; i++)
		src[i] = (uint8_t)(i * 2654435761u >> 13);
	int short_writes = 0, eagain = 0;
	while (rd < n) {
		if (wr < n) {
			size_t want = n - wr;
			struct iovec iov[2] = { { src + wr, want / 2 }, { src + wr + want / 2,
									  want - want / 2 } };
			ssize_t w = c->ops->writev(c, iov, want > 1 ? 2 : 1);
			if (w == -EAGAIN)
				eagain++;
			else {
				assert_true(w > 0);
				if ((size_t)w < want)
					short_writes++;
				wr += (size_t)w;
			}
		}
		size_t k = n - rd < 3001 ? n - rd : 3001;
		struct iovec r[3] = { { dst + rd, k / 3 }, { dst + rd + k / 3, k / 3 },
				      { dst + rd + 2 * (k / 3), k - 2 * (k / 3) } };
		ssize_t g = s->ops->readv(s, k >= 3 ? r : r + 2, k >= 3 ? 3 : 1);
		if (g != -EAGAIN) {
			assert_true(g > 0);
			rd += (size_t)g;
		}
	}
	assert_true(short_writes + eagain > 0);
	assert_memory_equal(src, dst, n);
	free(src);
	free(dst);
	c->ops->close(c);
	s->ops->close(s);
	ul->ops->close(ul);
	tl->ops->close(tl);
}

static void test_prefer_local(void **state)
{
	struct sockaddr_in sa;
	struct xport *tl = tcp_listener(&sa), *ul, *x;
	/* Only TCP listens: TCP. */
	int rc = xport_connect_prefer_local(&sa, 1, &x);
	assert_true(rc == 0 || rc == -EINPROGRESS);
	assert_ptr_equal(x->ops, &xport_tcp);
	x->ops->close(x);
	struct xport *a = accept_one(tl);
	a->ops->close(a);
	/* Both listen: the unix socket, unless the caller turns it off. */
	assert_int_equal(xport_unix.listen(&sa, 16, &ul), 0);
	assert_int_equal(xport_connect_prefer_local(&sa, 1, &x), 0);
	assert_ptr_equal(x->ops, &xport_unix);
	x->ops->close(x);
	rc = xport_connect_prefer_local(&sa, 0, &x);
	assert_true(rc == 0 || rc == -EINPROGRESS);
	assert_ptr_equal(x->ops, &xport_tcp);
	x->ops->close(x);
	ul->ops->close(ul);
	tl->ops->close(tl);
}

/* A name taken by another user's process (not root, not us): the client
 * does not talk to it and uses TCP. Needs root to run a listener as nobody. */
static void test_squatter_ignored(void **state)
{
	if (geteuid() != 0) {
		fprintf(stderr, "skipped: needs root to listen as another user\n");
		return;
	}
	struct sockaddr_in sa;
	struct xport *tl = tcp_listener(&sa), *x;
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct xport *ul;
		char c = 'x';
		if (setgid(65534) || setuid(65534) || xport_unix.listen(&sa, 16, &ul))
			_exit(2);
		if (write(p[1], &c, 1) != 1)
			_exit(3);
		pause();
		_exit(0);
	}
	char c;
	assert_int_equal(read(p[0], &c, 1), 1);
	/* The squatter is there: a plain unix connect reaches it ... */
	assert_int_equal(xport_unix.connect(&sa, &x), 0);
	x->ops->close(x);
	/* ... but the client's connect does not keep it. */
	int rc = xport_connect_prefer_local(&sa, 1, &x);
	assert_true(rc == 0 || rc == -EINPROGRESS);
	assert_ptr_equal(x->ops, &xport_tcp);
	x->ops->close(x);
	kill(pid, SIGKILL);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	close(p[0]);
	close(p[1]);
	tl->ops->close(tl);
}

/* ---- through the RPC layer ---- */

struct srvctx {
	uint8_t *dest;
	uint64_t dest_len;
	atomic_int dest_calls, drops, handled;
	int stall_ms; /* put_dest holds the loop this long: the sender blocks mid-bulk */
	uint8_t src[1 << 18];
};

static void *put_dest(struct rpc_req *req, uint64_t len, void *arg)
{
	struct srvctx *s = arg;
	atomic_fetch_add(&s->dest_calls, 1);
	if (s->stall_ms)
		clock_sleep_ms((uint64_t)s->stall_ms);
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
	atomic_fetch_add(&s->handled, 1);
	rpc_reply(req, 0, NULL, 0);
}

static void get_handler(struct rpc_req *req, void *arg)
{
	struct srvctx *s = arg;
	rpc_reply_bulk(req, 0, NULL, 0, s->src, sizeof(s->src), NULL, NULL);
}

static struct rpc_opts opts(const char *sec)
{
	struct rpc_opts o = { .cluster_id = "xport", .secret = (const uint8_t *)sec,
			      .secret_len = strlen(sec), .nthreads = 1, .timeout_ms = 10000 };
	return o;
}

static struct rpc_server *start(struct srvctx *s, char *addr, int no_local)
{
	struct rpc_opts o = opts(secret);
	o.no_local_socket = no_local;
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

static struct srvctx *ctx_new(void)
{
	struct srvctx *s = calloc(1, sizeof(*s));
	s->dest_len = 64u << 20;
	s->dest = calloc(1, s->dest_len);
	for (size_t i = 0; i < sizeof(s->src); i++)
		s->src[i] = (uint8_t)(i * 7 ^ 0x3c);
	return s;
}

static void ctx_free(struct srvctx *s)
{
	free(s->dest);
	free(s);
}

/* A PUT of 1 MiB and a GET of 256 KiB with bulk CRCs; data compared. */
static void round_trip(struct rpc_peer *p, struct srvctx *s)
{
	size_t n = 1u << 20;
	uint8_t *data = malloc(n), *in = malloc(sizeof(s->src));
	for (size_t i = 0; i < n; i++)
		data[i] = (uint8_t)(i * 31 + 7);
	struct rpc_call put = { .type = T_PUT, .flags = RPC_CALL_BULK_CRC, .bulk = data,
				.bulk_len = n };
	assert_int_equal(rpc_call(p, &put, NULL, NULL), 0);
	assert_memory_equal(s->dest, data, n);
	uint64_t got = 0;
	struct rpc_call get = { .type = T_GET, .flags = RPC_CALL_BULK_CRC, .resp_bulk = in,
				.resp_bulk_cap = sizeof(s->src) };
	assert_int_equal(rpc_call(p, &get, NULL, &got), 0);
	assert_true(got == sizeof(s->src));
	assert_memory_equal(in, s->src, sizeof(s->src));
	free(data);
	free(in);
}

/* Which transport a client with NO_LOCAL (and the env switch) against a
 * server with SRV_NO_LOCAL ends up on: 1 local, 0 TCP; data checked. */
static int run_pair(int srv_no_local, int cli_no_local)
{
	struct srvctx *s = ctx_new();
	char addr[64], err[128];
	struct rpc_server *srv = start(s, addr, srv_no_local);
	struct rpc_opts o = opts(secret);
	o.no_local_socket = cli_no_local;
	struct rpc_client *c;
	struct rpc_peer *p;
	assert_int_equal(rpc_client_new(&o, &c), 0);
	assert_int_equal(rpc_client_peer(c, addr, &p, err, sizeof(err)), 0);
	round_trip(p, s);
	struct rpc_stats cs, ss;
	rpc_client_stats(c, &cs);
	rpc_server_stats(srv, &ss);
	assert_true(cs.accepted == 1);
	assert_true(ss.accepted == 1);
	assert_true(cs.accepted_local == ss.accepted_local);
	int local = (int)cs.accepted_local;
	rpc_client_free(c);
	rpc_server_free(srv);
	ctx_free(s);
	return local;
}

static void test_rpc_local_and_switches(void **state)
{
	assert_int_equal(run_pair(0, 0), 1); /* same host: the unix socket */
	assert_int_equal(run_pair(0, 1), 0); /* client switch: TCP */
	assert_int_equal(run_pair(1, 0), 0); /* server without it: the client falls back */
	setenv("CFS_NO_LOCAL_SOCKET", "1", 1);
	assert_int_equal(run_pair(0, 0), 0); /* the environment switch, both sides */
	setenv("CFS_NO_LOCAL_SOCKET", "0", 1);
	assert_int_equal(run_pair(0, 0), 1);
	unsetenv("CFS_NO_LOCAL_SOCKET");
}

/* A server listening on every address is found by a client of 127.0.0.1. */
static void test_rpc_any_address(void **state)
{
	struct srvctx *s = ctx_new();
	struct rpc_opts o = opts(secret);
	struct rpc_server *srv;
	char err[128], addr[64];
	struct rpc_handler put = { put_handler, put_dest, put_drop, s };
	struct rpc_handler get = { .fn = get_handler, .arg = s };
	assert_int_equal(rpc_server_new(&o, &srv), 0);
	assert_int_equal(rpc_server_handle(srv, T_PUT, &put), 0);
	assert_int_equal(rpc_server_handle(srv, T_GET, &get), 0);
	assert_int_equal(rpc_server_start(srv, "0.0.0.0:0", err, sizeof(err)), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", rpc_server_port(srv));
	struct rpc_client *c;
	struct rpc_peer *p;
	assert_int_equal(rpc_client_new(&o, &c), 0);
	assert_int_equal(rpc_client_peer(c, addr, &p, err, sizeof(err)), 0);
	round_trip(p, s);
	struct rpc_stats cs;
	rpc_client_stats(c, &cs);
	assert_true(cs.accepted_local == 1);
	rpc_client_free(c);
	rpc_server_free(srv);
	ctx_free(s);
}

/* A raw connection to the server's unix socket. */
static int raw_unix(const char *addr)
{
	struct sockaddr_in sa;
	struct sockaddr_un su;
	char err[128];
	assert_int_equal(xport_addr_parse(addr, &sa, err, sizeof(err)), 0);
	socklen_t len = xport_unix_name(&sa, &su);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&su, len), 0);
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* Reads until EOF (bytes read) or an error/timeout (-1). */
static ssize_t drain_to_eof(int fd)
{
	char b[4096];
	ssize_t total = 0;
	for (;;) {
		ssize_t n = read(fd, b, sizeof(b));
		if (n == 0)
			return total;
		if (n < 0)
			return -1;
		total += n;
	}
}

static int stats_reach(void *arg)
{
	void **a = arg;
	struct rpc_stats st;
	rpc_server_stats(a[0], &st);
	return st.bad_input >= ((uint64_t *)a[1])[0] && st.auth_fail >= ((uint64_t *)a[1])[1];
}

static void test_auth_required(void **state)
{
	struct srvctx *s = ctx_new();
	char addr[64], err[128];
	struct rpc_server *srv = start(s, addr, 0);
	/* Wrong secret over the unix socket: refused like on TCP. */
	struct rpc_opts o = opts("not-the-cluster-secret-at-all!!");
	struct rpc_client *c;
	struct rpc_peer *p;
	assert_int_equal(rpc_client_new(&o, &c), 0);
	assert_int_equal(rpc_client_peer(c, addr, &p, err, sizeof(err)), 0);
	struct rpc_call get = { .type = T_GET, .resp_bulk = s->dest, .resp_bulk_cap = 1 << 20 };
	assert_int_equal(rpc_call(p, &get, NULL, NULL), -CFS_EAUTH);
	struct rpc_stats cs, ss;
	rpc_client_stats(c, &cs);
	assert_true(cs.accepted_local >= 1);
	rpc_client_free(c);
	rpc_server_stats(srv, &ss);
	assert_true(ss.auth_fail >= 1);
	assert_true(ss.accepted_local >= 1);
	uint64_t bad0 = ss.bad_input;

	/* Garbage instead of a frame header: closed without a reply. */
	int fd = raw_unix(addr);
	uint8_t junk[FRAME_HDR_LEN];
	memset(junk, 0xAB, sizeof(junk));
	assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	assert_int_equal(drain_to_eof(fd), 0);
	close(fd);

	/* A well-formed request before the handshake: refused (an auth failure,
	 * as on TCP) and closed; the handler never runs. */
	fd = raw_unix(addr);
	struct frame_hdr h = { .type = T_PUT, .req_id = 1, .payload_len = 0, .bulk_len = 0 };
	uint8_t hb[FRAME_HDR_LEN];
	frame_encode(&h, hb);
	assert_int_equal(write(fd, hb, sizeof(hb)), (ssize_t)sizeof(hb));
	assert_true(drain_to_eof(fd) >= 0);
	close(fd);
	uint64_t want[2] = { bad0 + 1, ss.auth_fail + 1 };
	void *arg[2] = { srv, want };
	assert_true(testenv_wait(stats_reach, arg, 5000));
	assert_int_equal(atomic_load(&s->handled), 0);

	/* The server still serves a good client over the unix socket. */
	o = opts(secret);
	assert_int_equal(rpc_client_new(&o, &c), 0);
	assert_int_equal(rpc_client_peer(c, addr, &p, err, sizeof(err)), 0);
	round_trip(p, s);
	rpc_client_stats(c, &cs);
	assert_true(cs.accepted_local == 1);
	rpc_client_free(c);
	rpc_server_free(srv);
	ctx_free(s);
}

static int dest_called(void *arg) { return atomic_load(&((struct srvctx *)arg)->dest_calls) >= 1; }
static int dropped(void *arg) { return atomic_load(&((struct srvctx *)arg)->drops) == 1; }

/* A client process killed with SIGKILL in the middle of a 48 MiB upload
 * over the unix socket: the server hands the bulk memory back (bulk_drop),
 * never runs the handler, and serves the next client. */
static void test_client_killed_mid_upload(void **state)
{
	struct srvctx *s = ctx_new();
	char addr[64], err[128];
	s->stall_ms = 500;
	struct rpc_server *srv = start(s, addr, 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rpc_opts o = opts(secret);
		struct rpc_client *c;
		struct rpc_peer *p;
		size_t n = 48u << 20;
		uint8_t *data = calloc(1, n);
		if (rpc_client_new(&o, &c) || rpc_client_peer(c, addr, &p, err, sizeof(err)))
			_exit(3);
		struct rpc_call put = { .type = T_PUT, .bulk = data, .bulk_len = n,
					.timeout_ms = 60000 };
		(void)rpc_call(p, &put, NULL, NULL);
		_exit(0);
	}
	/* The server has the header and holds its loop in put_dest for 500 ms
	 * while the client is blocked with most of the bulk unsent: kill now. */
	int in_progress = testenv_wait(dest_called, s, 20000);
	kill(pid, SIGKILL);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(in_progress);
	s->stall_ms = 0;
	assert_true(testenv_wait(dropped, s, 10000));
	assert_int_equal(atomic_load(&s->handled), 0);
	struct rpc_opts o = opts(secret);
	struct rpc_client *c;
	struct rpc_peer *p;
	assert_int_equal(rpc_client_new(&o, &c), 0);
	assert_int_equal(rpc_client_peer(c, addr, &p, err, sizeof(err)), 0);
	round_trip(p, s);
	struct rpc_stats ss;
	rpc_server_stats(srv, &ss);
	assert_true(ss.accepted_local == 2);
	rpc_client_free(c);
	rpc_server_free(srv);
	ctx_free(s);
}

/* Two servers of one test cluster were once handed the same port: every
 * port xport_free_ports returns in a process is new, was bindable, and
 * lies in the band below the ephemeral range (transport_tcp.c). */
static void test_free_ports_distinct(void **state)
{
	(void)state;
	enum { N = 600 };
	static uint16_t p[N];
	assert_int_equal(xport_free_ports(p, N / 2), 0);
	for (int i = N / 2; i < N; i++)
		assert_int_equal(xport_free_ports(&p[i], 1), 0);
	for (int i = 0; i < N; i++) {
		assert_true(p[i] != 0);
		for (int j = 0; j < i; j++)
			assert_int_not_equal(p[i], p[j]);
	}
	/* Below the ephemeral range, where outgoing connections never take
	 * them (when it starts high enough to leave room below). */
	unsigned lo = xport_ephemeral_low();
	if (lo > 2 * XPORT_PORT_BAND + 1024)
		for (int i = 0; i < N; i++)
			assert_true(p[i] >= lo - 2 * XPORT_PORT_BAND && p[i] < lo - XPORT_PORT_BAND);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(p[N - 1]),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	close(fd);
}

int main(void)
{
	log_set_level(LOG_LVL_ERR);
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_name),
		cmocka_unit_test(test_free_ports_distinct),
		cmocka_unit_test(test_connect_bytes_eof),
		cmocka_unit_test(test_partial),
		cmocka_unit_test(test_prefer_local),
		cmocka_unit_test(test_squatter_ignored),
		cmocka_unit_test(test_rpc_local_and_switches),
		cmocka_unit_test(test_rpc_any_address),
		cmocka_unit_test(test_auth_required),
		cmocka_unit_test(test_client_killed_mid_upload),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
