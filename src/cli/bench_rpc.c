/* bench_rpc.c - chainfs bench rpc: the RPC echo server and load generator.
 *
 *   chainfs bench rpc --serve --listen 127.0.0.1:PORT --cluster-id X --secret-file F
 * serves RPC_MSG_ECHO until SIGTERM/SIGINT: the payload comes back, the
 * request bulk is echoed (RPC_ECHO_F_BULK) or dropped, and delay_ms makes
 * the reply come later from a separate delay thread (which is how the
 * deadline tests exercise "reply from another thread").
 *
 *   chainfs bench rpc [--seconds S] [--rounds N] [--rows all|small|bulk] [--connect ADDR ...]
 * measures, in one run and on one machine, RPC figures next to raw loopback
 * TCP (plain blocking sockets, one thread per side per connection):
 *   small round trips, 1 conn, 1 in flight     vs 1 raw 64-byte ping-pong
 *   small round trips, 16 conns, 1 in flight   vs 16 raw ping-pong pairs
 *   small round trips, 16 conns, 16 in flight  vs 16 raw pairs moving 16
 *                                                messages per exchange
 *   1 MiB bulk upload, 1 conn, 4 in flight     vs raw 1 MiB write pump
 *   the same with CRC32C on the bulk at both ends
 *   blocking rpc_call from 1 and 4 application threads on 1 conn, and a
 *   64 KiB echo into the caller's buffer (--rows sync: these only), with
 *   the context switches per call of this process
 * Raw and RPC rounds alternate and the best of each is shown, since other
 * tenants of the machine only ever slow a round down.
 *   chainfs bench rpc --rows transport
 * compares the same-host unix socket with TCP: 64 KiB, 256 KiB and 1 MiB
 * uploads and echoes, one in flight, the two transports alternating, with
 * the CPU seconds per GiB of this process (server and client).
 * --no-local-socket makes the server and the clients TCP only.
 * Without --connect it starts its own server in this process on a free
 * loopback port with a random secret. Figures are ratios against the raw
 * baseline because the machine is shared and noisy.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/bench_stats.h"
#include "cli/cli.h"
#include "common/cfg.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "net/auth.h"
#include "net/rpc.h"
#include "net/rpc_proto.h"
#include "net/transport.h"

struct bench_conf {
	int serve;
	char *listen;
	char *connect;
	char *cluster_id;
	char *secret_file;
	int64_t threads;
	int64_t seconds;
	char *log_level;
	char *rows;
	int64_t rounds;
	int no_local_socket;
};

static const struct cfg_opt opts[] = {
	{ "serve", CFG_BOOL, "false", 0, 0, offsetof(struct bench_conf, serve),
	  "run the echo server instead of the benchmark" },
	{ "listen", CFG_STR, "127.0.0.1:0", 0, 0, offsetof(struct bench_conf, listen),
	  "server: ip:port to listen on" },
	{ "connect", CFG_STR, "", 0, 0, offsetof(struct bench_conf, connect),
	  "bench: ip:port of a running server (default: start one in-process)" },
	{ "cluster-id", CFG_STR, "bench", 0, 0, offsetof(struct bench_conf, cluster_id),
	  "cluster id presented at the handshake" },
	{ "secret-file", CFG_STR, "", 0, 0, offsetof(struct bench_conf, secret_file),
	  "file holding the cluster secret (required with --serve or --connect)" },
	{ "threads", CFG_INT, "2", 1, 64, offsetof(struct bench_conf, threads),
	  "loop threads of the server (and of the bench client)" },
	{ "seconds", CFG_INT, "2", 1, 600, offsetof(struct bench_conf, seconds),
	  "bench: seconds per measurement" },
	{ "rounds", CFG_INT, "3", 1, 100, offsetof(struct bench_conf, rounds),
	  "bench: rounds per row, raw and rpc alternating; the best of each is shown" },
	{ "log-level", CFG_STR, "notice", 0, 0, offsetof(struct bench_conf, log_level),
	  "err|warn|notice|info|debug" },
	{ "rows", CFG_STR, "all", 0, 0, offsetof(struct bench_conf, rows),
	  "bench: which rows to run: all, small, sync (blocking calls from application threads), "
	  "bulk or transport (same-host unix socket "
	  "against TCP at 64 KiB, 256 KiB and 1 MiB, with CPU per GiB)" },
	{ "no-local-socket", CFG_BOOL, "false", 0, 0, offsetof(struct bench_conf, no_local_socket),
	  "TCP only: no same-host unix socket for the server or the bench client" },
	CFG_END
};

/* ---- echo server ---- */

struct delayed {
	struct delayed *next;
	struct rpc_req *req;
	uint64_t due;
};

/* Requests with a delay wait here; a thread replies when they are due. */
struct delayer {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct delayed *head;  /* sorted by due */
	unsigned n;
	int stop;
	pthread_t th;
};

#define DELAY_MAX_QUEUED 100000

static void echo_reply(struct rpc_req *req)
{
	uint32_t plen;
	const uint8_t *p = rpc_req_payload(req, &plen);
	struct rpc_echo_req m;
	struct rpc_echo_resp r;
	struct buf b = BUF_INIT;
	uint64_t blen = 0;

	if (rpc_echo_req_decode(p, plen, &m)) {
		rpc_reply(req, -CFS_EPROTO, NULL, 0);
		return;
	}
	rpc_req_bulk(req, &blen);
	r.data = m.data;
	r.data_len = m.data_len;
	r.bulk_len = blen;
	if (rpc_echo_resp_encode(&b, &r)) {
		rpc_reply(req, -ENOMEM, NULL, 0);
		return;
	}
	if ((m.flags & RPC_ECHO_F_BULK) && blen) {
		void *bulk = rpc_req_take_bulk(req, &blen);
		rpc_reply_bulk(req, 0, b.data, (uint32_t)b.len, bulk, blen, free, bulk);
	} else {
		rpc_reply(req, 0, b.data, (uint32_t)b.len);
	}
	buf_fini(&b);
}

static void *delayer_main(void *arg)
{
	struct delayer *d = arg;
	pthread_mutex_lock(&d->mu);
	for (;;) {
		uint64_t now = clock_mono_ns();
		while (d->head && (d->head->due <= now || d->stop)) {
			struct delayed *x = d->head;
			d->head = x->next;
			d->n--;
			pthread_mutex_unlock(&d->mu);
			echo_reply(x->req);
			free(x);
			pthread_mutex_lock(&d->mu);
		}
		if (d->stop)
			break;
		if (d->head) {
			uint64_t due = d->head->due;
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			uint64_t wait = due > now ? due - now : 0;
			uint64_t abs_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + wait;
			ts.tv_sec = (time_t)(abs_ns / 1000000000u);
			ts.tv_nsec = (long)(abs_ns % 1000000000u);
			pthread_cond_timedwait(&d->cv, &d->mu, &ts);
		} else {
			pthread_cond_wait(&d->cv, &d->mu);
		}
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

static void echo_handler(struct rpc_req *req, void *arg)
{
	struct delayer *d = arg;
	uint32_t plen;
	const uint8_t *p = rpc_req_payload(req, &plen);
	struct rpc_echo_req m;

	if (rpc_echo_req_decode(p, plen, &m) || !m.delay_ms) {
		echo_reply(req);
		return;
	}
	struct delayed *x = malloc(sizeof(*x));
	pthread_mutex_lock(&d->mu);
	if (!x || d->n >= DELAY_MAX_QUEUED) {
		pthread_mutex_unlock(&d->mu);
		free(x);
		rpc_reply_error(req, -CFS_EUNAVAIL, "too many delayed requests");
		return;
	}
	x->req = req;
	x->due = clock_mono_ns() + (uint64_t)m.delay_ms * 1000000u;
	struct delayed **pp = &d->head;
	while (*pp && (*pp)->due <= x->due)
		pp = &(*pp)->next;
	x->next = *pp;
	*pp = x;
	d->n++;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

static int delayer_start(struct delayer *d)
{
	memset(d, 0, sizeof(*d));
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	return -pthread_create(&d->th, NULL, delayer_main, d);
}

/* Replies to everything still delayed, then joins. */
static void delayer_stop(struct delayer *d)
{
	pthread_mutex_lock(&d->mu);
	d->stop = 1;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
	pthread_join(d->th, NULL);
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
}

/* Starts an echo server with its delay thread. */
static int echo_server_start(const struct rpc_opts *o, const char *listen, struct delayer *d,
			     struct rpc_server **out)
{
	char err[256];
	struct rpc_server *s = NULL;
	int rc = rpc_server_new(o, &s);
	if (rc) {
		fprintf(stderr, "chainfs bench rpc: server: %s\n", cfs_strerror(rc));
		return rc;
	}
	rc = delayer_start(d);
	if (rc) {
		rpc_server_free(s);
		return rc;
	}
	struct rpc_handler h = { .fn = echo_handler, .arg = d };
	rpc_server_handle(s, RPC_MSG_ECHO, &h);
	rc = rpc_server_start(s, listen, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "chainfs bench rpc: %s\n", err);
		delayer_stop(d);
		rpc_server_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

static void echo_server_stop(struct rpc_server *s, struct delayer *d)
{
	delayer_stop(d);
	rpc_server_free(s);
}

static int serve(const struct rpc_opts *o, const char *listen)
{
	struct rpc_server *s;
	struct delayer d;
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by every thread */
	if (echo_server_start(o, listen, &d, &s))
		return 1;
	printf("listening on 127.0.0.1:%u\n", rpc_server_port(s));
	fflush(stdout);
	sigwait(&set, &sig);
	struct rpc_stats st;
	rpc_server_stats(s, &st);
	LOG_NOTICE("bench", "stopping: signal=%d accepted=%" PRIu64 " requests=%" PRIu64
		   " auth_fail=%" PRIu64 " bad_input=%" PRIu64, sig, st.accepted, st.requests,
		   st.auth_fail, st.bad_input);
	echo_server_stop(s, &d);
	return 0;
}

/* ---- raw TCP baselines ---- */

struct raw_pair {
	int cfd, sfd;
	size_t msg;        /* bytes per exchange (ping-pong) or per write (pump) */
	int depth;         /* messages per exchange */
	int pump;          /* 1: one-way bulk pump; 0: echo ping-pong */
	uint64_t until;    /* monotonic ns */
	uint64_t ops;      /* exchanges (ping-pong) or bytes (pump) done */
	pthread_t ct, st;
};

static int full_io(int fd, void *p, size_t n, int wr)
{
	size_t done = 0;
	while (done < n) {
		ssize_t r = wr ? write(fd, (char *)p + done, n - done) : read(fd, (char *)p + done, n - done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		done += (size_t)r;
	}
	return 0;
}

static void *raw_server(void *arg)
{
	struct raw_pair *rp = arg;
	size_t n = rp->pump ? rp->msg : rp->msg * (size_t)rp->depth;
	char *b = malloc(n);
	for (;;) {
		if (rp->pump) {
			if (read(rp->sfd, b, n) <= 0)
				break;
		} else if (full_io(rp->sfd, b, n, 0) || full_io(rp->sfd, b, n, 1)) {
			break;
		}
	}
	free(b);
	return NULL;
}

static void *raw_client(void *arg)
{
	struct raw_pair *rp = arg;
	size_t n = rp->pump ? rp->msg : rp->msg * (size_t)rp->depth;
	char *b = calloc(1, n);
	while (clock_mono_ns() < rp->until) {
		if (full_io(rp->cfd, b, n, 1))
			break;
		if (!rp->pump && full_io(rp->cfd, b, n, 0))
			break;
		rp->ops += rp->pump ? n : (uint64_t)rp->depth;
	}
	shutdown(rp->cfd, SHUT_WR);
	free(b);
	return NULL;
}

static int raw_socketpair(int *cfd, int *sfd)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int one = 1;
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &len))
		goto fail;
	*cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*cfd < 0 || connect(*cfd, (struct sockaddr *)&a, sizeof(a)))
		goto fail;
	*sfd = accept(l, NULL, NULL);
	if (*sfd < 0)
		goto fail;
	close(l);
	setsockopt(*cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(*sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return 0;
fail:
	if (l >= 0)
		close(l);
	return -1;
}

/* Runs NCONN raw pairs for SECONDS; returns ops per second. */
static double raw_run(int nconn, size_t msg, int depth, int pump, int64_t seconds)
{
	struct raw_pair *rp = calloc((size_t)nconn, sizeof(*rp));
	uint64_t t0 = clock_mono_ns(), total = 0;
	int n = 0;
	for (; n < nconn; n++) {
		rp[n] = (struct raw_pair){ .msg = msg, .depth = depth, .pump = pump,
					   .until = t0 + (uint64_t)seconds * 1000000000u };
		if (raw_socketpair(&rp[n].cfd, &rp[n].sfd))
			break;
		pthread_create(&rp[n].st, NULL, raw_server, &rp[n]);
		pthread_create(&rp[n].ct, NULL, raw_client, &rp[n]);
	}
	for (int i = 0; i < n; i++) {
		pthread_join(rp[i].ct, NULL);
		pthread_join(rp[i].st, NULL);
		close(rp[i].cfd);
		close(rp[i].sfd);
		total += rp[i].ops;
	}
	double secs = (double)(clock_mono_ns() - t0) / 1e9;
	free(rp);
	return n == nconn ? (double)total / secs : 0;
}

/* ---- RPC load ---- */

struct rpc_load {
	struct rpc_peer *peer;
	uint8_t payload[64];
	uint32_t plen;
	const uint8_t *bulk;
	uint64_t bulk_len;
	uint8_t *resp;         /* reply bulk (echo of the request bulk) or NULL */
	uint64_t resp_cap;
	uint32_t flags;
	uint64_t until;
	atomic_uint_fast64_t ops, bytes, errors;
	atomic_int outstanding;
	int first_error;
};

static void load_done(void *arg, const struct rpc_result *res);

static int load_issue(struct rpc_load *ld)
{
	struct rpc_call c = {
		.type = RPC_MSG_ECHO, .flags = ld->flags, .payload = ld->payload,
		.payload_len = ld->plen, .bulk = ld->bulk, .bulk_len = ld->bulk_len,
		.resp_bulk = ld->resp, .resp_bulk_cap = ld->resp_cap,
		.done = load_done, .arg = ld,
	};
	atomic_fetch_add(&ld->outstanding, 1);
	int rc = rpc_call_async(ld->peer, &c);
	if (rc)
		atomic_fetch_sub(&ld->outstanding, 1);
	return rc;
}

/* Runs on a client loop thread: count, then keep the pipeline full. */
static void load_done(void *arg, const struct rpc_result *res)
{
	struct rpc_load *ld = arg;
	if (res->status) {
		if (!atomic_fetch_add(&ld->errors, 1))
			ld->first_error = res->status;
	} else {
		atomic_fetch_add_explicit(&ld->ops, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&ld->bytes, ld->bulk_len + res->bulk_len,
					  memory_order_relaxed);
	}
	if (!res->status && clock_mono_ns() < ld->until)
		load_issue(ld);
	atomic_fetch_sub(&ld->outstanding, 1);
}

/* Keeps DEPTH requests in flight for SECONDS; returns ops/s (BYTES: bytes/s). */
static double rpc_run_echo(struct rpc_peer *peer, int depth, const uint8_t *bulk,
			   uint64_t bulk_len, uint32_t flags, int64_t seconds, int bytes,
			   uint8_t *resp, uint64_t resp_cap)
{
	struct rpc_load *ld = calloc(1, sizeof(*ld));
	/* With a reply buffer the server sends the request bulk back. */
	struct rpc_echo_req m = { 0, resp ? RPC_ECHO_F_BULK : 0,
				  (const uint8_t *)"0123456789abcdef", 16 };
	ld->resp = resp;
	ld->resp_cap = resp_cap;
	struct buf b = BUF_INIT;
	rpc_echo_req_encode(&b, &m);
	memcpy(ld->payload, b.data, b.len);
	ld->plen = (uint32_t)b.len;
	buf_fini(&b);
	ld->peer = peer;
	ld->bulk = bulk;
	ld->bulk_len = bulk_len;
	ld->flags = flags;
	uint64_t t0 = clock_mono_ns();
	ld->until = t0 + (uint64_t)seconds * 1000000000u;
	for (int i = 0; i < depth; i++)
		load_issue(ld);
	while (atomic_load(&ld->outstanding) > 0)
		clock_sleep_ms(5);
	double secs = (double)(clock_mono_ns() - t0) / 1e9;
	double r = (double)(bytes ? atomic_load(&ld->bytes) : atomic_load(&ld->ops)) / secs;
	if (atomic_load(&ld->errors)) {
		fprintf(stderr, "chainfs bench rpc: %" PRIuFAST64 " errors, first: %s\n",
			(uint_fast64_t)atomic_load(&ld->errors), cfs_strerror(ld->first_error));
		r = 0;
	}
	free(ld);
	return r;
}

static double rpc_run(struct rpc_peer *peer, int depth, const uint8_t *bulk, uint64_t bulk_len,
		      uint32_t flags, int64_t seconds, int bytes)
{
	return rpc_run_echo(peer, depth, bulk, bulk_len, flags, seconds, bytes, NULL, 0);
}

/* CPU seconds (user + system) of this process: server and client both. */
static double cpu_self(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* One transport row: the same RPC load over the same-host socket (PLOC)
 * and over TCP (PTCP), alternating for bc->rounds rounds; bytes/s best of
 * each and the median CPU seconds per GiB moved (both directions counted;
 * server and client are this process). ECHO: the bulk comes back too. */
static void row_transport(const struct bench_conf *bc, const char *name, struct rpc_peer *ploc,
			  struct rpc_peer *ptcp, const uint8_t *bulk, uint64_t len, int echo,
			  uint8_t *resp)
{
	double best[2] = { 0, 0 }, cpg[2][100] = { { 0 } };
	int n = (int)bc->rounds;
	for (int i = 0; i < n; i++) {
		for (int t = 0; t < 2; t++) {
			double c0 = cpu_self();
			double r = rpc_run_echo(t ? ptcp : ploc, 1, bulk, len, 0, bc->seconds, 1,
						echo ? resp : NULL, echo ? len : 0);
			double c = cpu_self() - c0;
			best[t] = r > best[t] ? r : best[t];
			double gib = r * (double)bc->seconds / (double)(1u << 30);
			cpg[t][i] = gib > 0 ? c / gib : 0;
		}
	}
	printf("%-34s %9.1f %9.1f %6.2f   %6.3f %6.3f\n", name, best[0] / (1 << 20),
	       best[1] / (1 << 20), best[1] > 0 ? best[0] / best[1] : 0.0,
	       bench_median(cpg[0], (unsigned)n), bench_median(cpg[1], (unsigned)n));
	fflush(stdout);
}

static int bench_transport(const struct rpc_opts *base, const struct bench_conf *bc,
			   const char *addr)
{
	struct rpc_opts o = *base;
	struct rpc_client *cl = NULL, *ct = NULL;
	struct rpc_peer *pl, *pt;
	char err[256];
	int rc = 1;
	o.nthreads = 1;
	o.conns_per_peer = 1;
	o.no_local_socket = 0;
	if (rpc_client_new(&o, &cl) || rpc_client_peer(cl, addr, &pl, err, sizeof(err)))
		goto out;
	o.no_local_socket = 1;
	if (rpc_client_new(&o, &ct) || rpc_client_peer(ct, addr, &pt, err, sizeof(err)))
		goto out;
	size_t mib = 1u << 20;
	uint8_t *bulk = malloc(mib), *resp = malloc(mib);
	for (size_t i = 0; i < mib; i++)
		bulk[i] = (uint8_t)(i * 131);
	printf("%-34s %9s %9s %6s   %13s\n", "transport, 1 conn, 1 in flight", "unix", "tcp",
	       "ratio", "CPU s/GiB u/t");
	static const uint64_t sizes[] = { 64 << 10, 256 << 10, 1 << 20 };
	for (int i = 0; i < 3; i++) {
		char name[64];
		for (int echo = 0; echo < 2; echo++) {
			snprintf(name, sizeof(name), "%4" PRIu64 " KiB %s MiB/s", sizes[i] >> 10,
				 echo ? "echo (up+down)" : "upload       ");
			row_transport(bc, name, pl, pt, bulk, sizes[i], echo, resp);
		}
	}
	struct rpc_stats sl, st;
	rpc_client_stats(cl, &sl);
	rpc_client_stats(ct, &st);
	printf("connections: unix client %" PRIu64 " (%" PRIu64 " local), tcp client %" PRIu64
	       " (%" PRIu64 " local)\n", sl.accepted, sl.accepted_local, st.accepted,
	       st.accepted_local);
	if (!sl.accepted_local)
		printf("note: the server has no same-host socket here (another host or "
		       "CFS_NO_LOCAL_SOCKET): both columns are TCP\n");
	free(bulk);
	free(resp);
	rc = 0;
out:
	if (rc)
		fprintf(stderr, "chainfs bench rpc: client setup failed: %s\n", err);
	rpc_client_free(cl);
	rpc_client_free(ct);
	return rc;
}

/* ---- blocking calls from application threads ---- */

struct sync_load {
	struct rpc_peer *peer;
	const uint8_t *payload;
	uint32_t plen;
	const uint8_t *bulk;   /* request bulk, echoed back into resp */
	uint64_t bulk_len;
	uint64_t until;
	uint64_t ops;
	int err;
	pthread_t th;
};

static void *sync_main(void *arg)
{
	struct sync_load *sl = arg;
	struct buf resp = BUF_INIT;
	uint8_t *rb = sl->bulk_len ? malloc(sl->bulk_len) : NULL;
	while (clock_mono_ns() < sl->until) {
		struct rpc_call c = { .type = RPC_MSG_ECHO, .payload = sl->payload,
				      .payload_len = sl->plen, .bulk = sl->bulk,
				      .bulk_len = sl->bulk_len, .resp_bulk = rb,
				      .resp_bulk_cap = sl->bulk_len };
		uint64_t got = 0;
		int rc = rpc_call(sl->peer, &c, &resp, &got);
		if (!rc && sl->bulk_len && (got != sl->bulk_len || memcmp(rb, sl->bulk, got)))
			rc = -EIO;
		if (rc) {
			sl->err = rc;
			break;
		}
		sl->ops++;
	}
	free(rb);
	buf_fini(&resp);
	return NULL;
}

/* Context switches (voluntary + involuntary) of this process so far. */
static uint64_t csw_self(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)ru.ru_nvcsw + (uint64_t)ru.ru_nivcsw;
}

/* NTHREADS threads each making blocking rpc_call echoes over PEER (with a
 * BULK_LEN request bulk echoed into the caller's buffer) for SECONDS;
 * returns calls/s and *CSW context switches of this process per call. */
static double sync_run(struct rpc_peer *peer, int nthreads, const uint8_t *bulk,
		       uint64_t bulk_len, int64_t seconds, double *csw)
{
	struct rpc_echo_req m = { 0, bulk_len ? RPC_ECHO_F_BULK : 0,
				  (const uint8_t *)"0123456789abcdef", 16 };
	struct buf b = BUF_INIT;
	rpc_echo_req_encode(&b, &m);
	struct sync_load *sl = calloc((size_t)nthreads, sizeof(*sl));
	uint64_t c0 = csw_self(), t0 = clock_mono_ns(), total = 0;
	int err = 0;
	for (int i = 0; i < nthreads; i++) {
		sl[i] = (struct sync_load){ .peer = peer, .payload = b.data, .plen = (uint32_t)b.len,
					    .bulk = bulk, .bulk_len = bulk_len,
					    .until = t0 + (uint64_t)seconds * 1000000000u };
		pthread_create(&sl[i].th, NULL, sync_main, &sl[i]);
	}
	for (int i = 0; i < nthreads; i++) {
		pthread_join(sl[i].th, NULL);
		total += sl[i].ops;
		if (sl[i].err && !err)
			err = sl[i].err;
	}
	double secs = (double)(clock_mono_ns() - t0) / 1e9;
	*csw = total ? (double)(csw_self() - c0) / (double)total : 0;
	free(sl);
	buf_fini(&b);
	if (err) {
		fprintf(stderr, "chainfs bench rpc: blocking call failed: %s\n", cfs_strerror(err));
		return 0;
	}
	return (double)total / secs;
}

/* A row of blocking calls against NCONN raw ping-pong pairs, alternating;
 * best of each, and the median context switches per call (this process:
 * with the in-process server, both ends). */
static void row_sync(const struct bench_conf *bc, const char *name, struct rpc_peer *peer,
		     int nthreads, const uint8_t *bulk, uint64_t bulk_len, int nconn, size_t msg)
{
	double rpc = 0, raw = 0, cs[100] = { 0 };
	int n = (int)bc->rounds;
	for (int i = 0; i < n; i++) {
		double w = raw_run(nconn, msg, 1, 0, bc->seconds);
		double r = sync_run(peer, nthreads, bulk, bulk_len, bc->seconds, &cs[i]);
		raw = w > raw ? w : raw;
		rpc = r > rpc ? r : rpc;
	}
	printf("%-40s %12.1f %12.1f %-6s %6.2f  %5.2f csw/call\n", name, rpc / 1e3, raw / 1e3,
	       "k/s", raw > 0 ? rpc / raw : 0.0, bench_median(cs, (unsigned)n));
	fflush(stdout);
}

/* One output row: RPC (DEPTH in flight over PEER, optional bulk) against
 * raw TCP (NCONN pairs, MSG bytes, RDEPTH per exchange or a one-way PUMP),
 * alternating for bc->rounds rounds; the best of each side is printed, as
 * interference from other tenants only ever slows a round down. */
static void row2(const struct bench_conf *bc, const char *name, struct rpc_peer *peer,
		 int depth, const uint8_t *bulk, uint64_t bulk_len, uint32_t flags, int nconn,
		 size_t msg, int rdepth, int pump, const char *unit, double scale)
{
	double rpc = 0, raw = 0;
	for (int64_t i = 0; i < bc->rounds; i++) {
		double w = raw_run(nconn, msg, rdepth, pump, bc->seconds);
		double r = rpc_run(peer, depth, bulk, bulk_len, flags, bc->seconds, bulk_len > 0);
		raw = w > raw ? w : raw;
		rpc = r > rpc ? r : rpc;
	}
	printf("%-40s %12.1f %12.1f %-6s %6.2f\n", name, rpc / scale, raw / scale, unit,
	       raw > 0 ? rpc / raw : 0.0);
	fflush(stdout);
}

static int bench(const struct rpc_opts *base, const struct bench_conf *bc)
{
	struct rpc_opts o = *base;
	struct rpc_server *srv = NULL;
	struct delayer d;
	char addr[64], err[256];
	int rc = 1;

	if (*bc->connect) {
		snprintf(addr, sizeof(addr), "%s", bc->connect);
	} else {
		if (echo_server_start(&o, "127.0.0.1:0", &d, &srv))
			return 1;
		snprintf(addr, sizeof(addr), "127.0.0.1:%u", rpc_server_port(srv));
	}
	struct rpc_client *c1 = NULL, *c16 = NULL;
	struct rpc_peer *p1, *p16;
	if (!strcmp(bc->rows, "transport")) {
		printf("chainfs bench rpc: server %s%s, %" PRId64 " rounds of %" PRId64
		       " s per side, unix and tcp alternating (compare ratios, not absolutes)\n",
		       addr, srv ? " (in-process)" : "", bc->rounds, bc->seconds);
		rc = bench_transport(&o, bc, addr);
		if (srv)
			echo_server_stop(srv, &d);
		return rc;
	}
	o.nthreads = 1;
	o.conns_per_peer = 1;
	if (rpc_client_new(&o, &c1) || rpc_client_peer(c1, addr, &p1, err, sizeof(err)))
		goto out;
	o.nthreads = (int)bc->threads;
	o.conns_per_peer = 16;
	if (rpc_client_new(&o, &c16) || rpc_client_peer(c16, addr, &p16, err, sizeof(err)))
		goto out;

	size_t mib = 1u << 20;
	uint8_t *bulk = malloc(mib);
	for (size_t i = 0; i < mib; i++)
		bulk[i] = (uint8_t)(i * 131);
	/* The echo request payload is 24 bytes and the reply 28; the raw
	 * ping-pong moves 64 bytes each way. */
	printf("chainfs bench rpc: server %s%s, best of %" PRId64 " rounds of %" PRId64
	       " s per side, loopback TCP on a shared machine (compare ratios, not absolutes)\n",
	       addr, srv ? " (in-process)" : "", bc->rounds, bc->seconds);
	printf("%-40s %12s %12s %-6s %6s\n", "measurement", "rpc", "raw tcp", "unit", "ratio");
	if (strcmp(bc->rows, "bulk") && strcmp(bc->rows, "sync")) {
		row2(bc, "small round trips, 1 conn, 1 in flight", p1, 1, NULL, 0, 0, 1, 64, 1, 0, "k/s", 1e3);
		row2(bc, "small round trips, 16 conns, 1 each", p16, 16, NULL, 0, 0, 16, 64, 1, 0, "k/s", 1e3);
		row2(bc, "small round trips, 16 conns, 16 each [1]", p16, 256, NULL, 0, 0, 16, 64, 16, 0,
		     "k/s", 1e3);
	}
	if (strcmp(bc->rows, "bulk")) {
		row_sync(bc, "blocking calls, 1 thread, 1 conn", p1, 1, NULL, 0, 1, 64);
		row_sync(bc, "blocking calls, 4 threads, 1 conn", p1, 4, NULL, 0, 4, 64);
		row_sync(bc, "blocking 64 KiB echo, 1 thread [2]", p1, 1, bulk, 64 << 10, 1, 64 << 10);
	}
	if (strcmp(bc->rows, "small") && strcmp(bc->rows, "sync")) {
		row2(bc, "1 MiB bulk upload, 1 conn, 4 in flight", p1, 4, bulk, mib, 0, 1, mib, 1, 1,
		     "MiB/s", (double)mib);
		row2(bc, "  same with bulk CRC32C both ends", p1, 4, bulk, mib, RPC_CALL_BULK_CRC, 1, mib,
		     1, 1, "MiB/s", (double)mib);
	}
	printf("[1] raw: each of 16 threads writes 16 messages at once, then reads 16 back\n"
	       "[2] the request bulk comes back into the caller's buffer; raw: 64 KiB ping-pong\n"
	       "blocking calls: rpc_call from application threads (as the mount's meta client);\n"
	       "csw/call: context switches of this process per call (median round)\n");
	struct rpc_stats cs;
	rpc_client_stats(c1, &cs);
	/* The raw baseline is always TCP; the RPC side used the same-host
	 * socket when it could (--no-local-socket for TCP against TCP). */
	printf("rpc transport: %s\n", cs.accepted_local ? "same-host unix socket" : "tcp");
	free(bulk);
	rc = 0;
out:
	if (rc)
		fprintf(stderr, "chainfs bench rpc: client setup failed: %s\n", err);
	rpc_client_free(c1);
	rpc_client_free(c16);
	if (srv)
		echo_server_stop(srv, &d);
	return rc;
}

int cli_bench_rpc(int argc, char **argv)
{
	struct bench_conf bc = { 0 };
	char err[256];
	int npos = 0;
	uint8_t secret[AUTH_SECRET_MAX];
	int rc = cfg_parse(opts, &bc, argc, argv, &npos, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc) {
		fprintf(stderr, "chainfs bench rpc: %s\n", err);
		return 2;
	}
	enum log_level lvl;
	if (log_parse_level(bc.log_level, &lvl)) {
		fprintf(stderr, "chainfs bench rpc: bad --log-level '%s'\n", bc.log_level);
		cfg_free(opts, &bc);
		return 2;
	}
	log_set_level(lvl);
	if (strcmp(bc.rows, "all") && strcmp(bc.rows, "small") && strcmp(bc.rows, "bulk") &&
	    strcmp(bc.rows, "transport") && strcmp(bc.rows, "sync")) {
		fprintf(stderr, "chainfs bench rpc: --rows must be all, small, sync, bulk or transport\n");
		cfg_free(opts, &bc);
		return 2;
	}
	int slen;
	if (*bc.secret_file) {
		slen = auth_load_secret(bc.secret_file, secret, err, sizeof(err));
		if (slen < 0) {
			fprintf(stderr, "chainfs bench rpc: %s\n", err);
			cfg_free(opts, &bc);
			return 2;
		}
	} else if (bc.serve || *bc.connect) {
		fprintf(stderr, "chainfs bench rpc: --secret-file is required with --serve or --connect\n");
		cfg_free(opts, &bc);
		return 2;
	} else {
		slen = 32;
		if (auth_nonce(secret)) {
			cfg_free(opts, &bc);
			return 1;
		}
	}
	struct rpc_opts o = {
		.cluster_id = bc.cluster_id, .secret = secret, .secret_len = (size_t)slen,
		.nthreads = (int)bc.threads, .no_local_socket = bc.no_local_socket,
	};
	if (strlen(bc.cluster_id) > RPC_CLUSTER_ID_MAX) {
		fprintf(stderr, "chainfs bench rpc: --cluster-id longer than %d bytes\n",
			RPC_CLUSTER_ID_MAX);
		cfg_free(opts, &bc);
		return 2;
	}
	rc = bc.serve ? serve(&o, bc.listen) : bench(&o, &bc);
	cfg_free(opts, &bc);
	return rc;
}
