/* transport_tcp.c - the TCP transport (transport.h).
 *
 * Plain non-blocking sockets: accept4/socket with SOCK_NONBLOCK|SOCK_CLOEXEC,
 * TCP_NODELAY because RPC frames are written whole with one writev and
 * Nagle would only add latency, SO_KEEPALIVE so a vanished peer is noticed
 * even on an idle connection. EINTR is retried here; everything else is
 * returned as -errno for the RPC layer to decide.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/xalloc.h"
#include "net/transport.h"

struct tcp_xport {
	struct xport x; /* first: ops */
	int fd;
};

static struct xport *tcp_wrap(int fd)
{
	struct tcp_xport *t = xmalloc(sizeof(*t));
	t->x.ops = &xport_tcp;
	t->fd = fd;
	return &t->x;
}

static int tcp_fd_of(const struct xport *x) { return ((const struct tcp_xport *)x)->fd; }

static void tcp_tune(int fd)
{
	int one = 1;
	/* Failures only cost latency or liveness detection, never correctness. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

static int tcp_listen(const struct sockaddr_in *addr, int backlog, struct xport **out)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0 || listen(fd, backlog) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	*out = tcp_wrap(fd);
	return 0;
}

static int tcp_accept(struct xport *lst, struct xport **out, struct sockaddr_in *peer)
{
	socklen_t len = sizeof(*peer);
	for (;;) {
		int fd = accept4(tcp_fd_of(lst), (struct sockaddr *)peer, &len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			tcp_tune(fd);
			*out = tcp_wrap(fd);
			return 0;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	}
}

static int tcp_connect(const struct sockaddr_in *addr, struct xport **out)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	tcp_tune(fd);
	int rc = connect(fd, (const struct sockaddr *)addr, sizeof(*addr));
	if (rc < 0 && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		return -e;
	}
	*out = tcp_wrap(fd);
	return rc < 0 ? -EINPROGRESS : 0;
}

int xport_sock_error(int fd)
{
	int soerr = 0;
	socklen_t len = sizeof(soerr);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		return -errno;
	return -soerr;
}

ssize_t xport_sock_readv(int fd, const struct iovec *iov, int iovcnt)
{
	for (;;) {
		ssize_t n = iovcnt == 1 ? read(fd, iov[0].iov_base, iov[0].iov_len)
					: readv(fd, iov, iovcnt);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	}
}

ssize_t xport_sock_writev(int fd, const struct iovec *iov, int iovcnt)
{
	struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
	for (;;) {
		/* sendmsg so a reset peer gives EPIPE instead of SIGPIPE. */
		ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	}
}

static int tcp_connect_finish(struct xport *x) { return xport_sock_error(tcp_fd_of(x)); }

static ssize_t tcp_readv(struct xport *x, const struct iovec *iov, int iovcnt)
{
	return xport_sock_readv(tcp_fd_of(x), iov, iovcnt);
}

static ssize_t tcp_writev(struct xport *x, const struct iovec *iov, int iovcnt)
{
	return xport_sock_writev(tcp_fd_of(x), iov, iovcnt);
}

static int tcp_local_addr(const struct xport *x, struct sockaddr_in *out)
{
	socklen_t len = sizeof(*out);
	return getsockname(tcp_fd_of(x), (struct sockaddr *)out, &len) < 0 ? -errno : 0;
}

static void tcp_close(struct xport *x)
{
	if (!x)
		return;
	close(tcp_fd_of(x));
	free(x);
}

const struct transport_ops xport_tcp = {
	.name = "tcp",
	.listen = tcp_listen,
	.accept = tcp_accept,
	.connect = tcp_connect,
	.connect_finish = tcp_connect_finish,
	.readv = tcp_readv,
	.writev = tcp_writev,
	.fd = tcp_fd_of,
	.local_addr = tcp_local_addr,
	.close = tcp_close,
};

int xport_addr_parse(const char *s, struct sockaddr_in *out, char *err, size_t errlen)
{
	const char *colon = s ? strrchr(s, ':') : NULL;
	char host[64];

	if (!colon) {
		snprintf(err, errlen, "address '%s': missing ':port'", s ? s : "");
		return -EINVAL;
	}
	size_t hlen = (size_t)(colon - s);
	if (hlen == 0 || hlen >= sizeof(host)) {
		snprintf(err, errlen, "address '%s': missing or overlong host", s);
		return -EINVAL;
	}
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	char *end = NULL;
	errno = 0;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (errno || !colon[1] || *end || port > 65535) {
		snprintf(err, errlen, "address '%s': bad port '%s'", s, colon + 1);
		return -EINVAL;
	}
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	out->sin_port = htons((uint16_t)port);
	if (!strcmp(host, "localhost"))
		out->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else if (inet_pton(AF_INET, host, &out->sin_addr) != 1) {
		snprintf(err, errlen, "address '%s': bad IPv4 address '%s'", s, host);
		return -EINVAL;
	}
	return 0;
}

char *xport_addr_str(const struct sockaddr_in *a, char *out)
{
	char ip[INET_ADDRSTRLEN];
	if (!inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip)))
		snprintf(ip, sizeof(ip), "?");
	snprintf(out, XPORT_ADDRSTRLEN, "%s:%u", ip, ntohs(a->sin_port));
	return out;
}

#define HANDED_MAX 4096

static pthread_mutex_t handed_mu = PTHREAD_MUTEX_INITIALIZER;
static uint16_t handed[HANDED_MAX];
static unsigned n_handed;

static bool port_handed(uint16_t port)
{
	unsigned n = n_handed < HANDED_MAX ? n_handed : HANDED_MAX;
	for (unsigned i = 0; i < n; i++)
		if (handed[i] == port)
			return true;
	return false;
}

/* Servers of `chainfs up` keep their ports across restarts of a role:
 * a port in the ephemeral range may meanwhile be the source port of an
 * outgoing connection on the host (any process's), and the restarted
 * server then cannot bind it. So ports come from a band below that
 * range: [lo - 2 * BAND, lo - BAND), clear of the tests' leased band
 * [lo - BAND, lo) (tests/lib/testenv.c); where the range starts too low
 * for that, from the kernel (bind to port 0) as before. */
#define FREE_PORT_BAND XPORT_PORT_BAND

unsigned xport_ephemeral_low(void)
{
	unsigned lo = 0, hi = 0;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	if (!f)
		return 0;
	if (fscanf(f, "%u %u", &lo, &hi) != 2)
		lo = 0;
	fclose(f);
	return lo;
}

/* Binds a probe socket to 127.0.0.1:PORT (0: the kernel picks); the port
 * bound, or -errno. */
static int probe_port(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int rc = 0;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0)
		rc = -errno;
	close(fd);
	return rc ? rc : ntohs(a.sin_port);
}

/* A port of the band below the ephemeral range that binds and was not
 * handed out, or 0. handed_mu held. */
static uint16_t band_port(unsigned lo)
{
	static unsigned next;
	if (!next)
		next = ((unsigned)getpid() * 2654435761u) ^ (unsigned)time(NULL) ^ 1u;
	unsigned base = lo - 2 * FREE_PORT_BAND;
	for (int tries = 0; tries < FREE_PORT_BAND; tries++) {
		uint16_t port = (uint16_t)(base + next++ % FREE_PORT_BAND);
		if (!port_handed(port) && probe_port(port) == port)
			return port;
	}
	return 0;
}

int xport_free_ports(uint16_t *out, int n)
{
	int rc = 0;
	unsigned lo = xport_ephemeral_low();
	int band = lo > 2 * FREE_PORT_BAND + 1024 && lo <= 65535;
	pthread_mutex_lock(&handed_mu);
	for (int i = 0; i < n && !rc; i++) {
		uint16_t port = band ? band_port(lo) : 0;
		/* Else a handful of kernel picks: the ephemeral range is large,
		 * so a repeat in a row is rare, and two are vanishingly so. */
		for (int tries = 0; !port; tries++) {
			int p = probe_port(0);
			if (p < 0) {
				rc = p;
				break;
			}
			if (!port_handed((uint16_t)p) || tries >= 64)
				port = (uint16_t)p;
		}
		if (port) {
			handed[n_handed++ % HANDED_MAX] = port;
			out[i] = port;
		}
	}
	pthread_mutex_unlock(&handed_mu);
	return rc;
}
