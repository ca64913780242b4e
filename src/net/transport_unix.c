/* transport_unix.c - the same-host transport (transport.h).
 *
 * A server listening on TCP "ip:port" also listens on an abstract-namespace
 * unix stream socket named after that address ("chainfs-rpc:ip:port"), and a
 * client that connects to "ip:port" tries that name first. The unix socket
 * skips the TCP/IP stack on loopback: about 1.3x the bytes per second of
 * loopback TCP for 64 KiB messages and a third less CPU per byte (the
 * figures and the command are in bench/history.md). Abstract names live in the
 * network namespace, not the file system: nothing to clean up after
 * kill -9, and a client in another namespace (another host in the netns
 * tests) never finds the name and uses TCP. The RPC handshake runs on it as
 * on TCP, so a local process still has to know the cluster secret.
 *
 * A client only keeps a unix connection whose listener runs as root or as
 * its own user (SO_PEERCRED), so another user cannot take the name first
 * and turn the client's connects into handshake failures; it uses TCP then.
 *
 * The address is the only key: a client connecting to 10.0.0.5:9000 finds
 * the unix socket only if a server on this host (and namespace) listens on
 * exactly 10.0.0.5:9000, which is the same server TCP would reach. The RPC
 * server names a listener on 0.0.0.0:PORT after 127.0.0.1:PORT (the address
 * a local client of it uses); its clients that name another address of
 * this host use TCP.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/xalloc.h"
#include "net/transport.h"

/* File descriptors passed with SCM_RIGHTS (xport_fd_send / xport_fd_take):
 * at most this many wait on either side; more received ones are closed at
 * once and counted (fd_dropped), so a peer sending descriptors nobody asks
 * for cannot exhaust this process's fd table. */
#define UNIX_FDQ 4

struct unix_xport {
	struct xport x; /* first: ops */
	int fd;
	int rxq[UNIX_FDQ]; /* received, oldest first; loop thread */
	int nrx;
	int txq[UNIX_FDQ]; /* to attach to the next write; under the writer's lock */
	int ntx;
	unsigned fd_dropped;
};

static struct xport *unix_wrap(int fd)
{
	struct unix_xport *u = xcalloc(1, sizeof(*u));
	u->x.ops = &xport_unix;
	u->fd = fd;
	return &u->x;
}

static int unix_fd_of(const struct xport *x) { return ((const struct unix_xport *)x)->fd; }

socklen_t xport_unix_name(const struct sockaddr_in *a, struct sockaddr_un *out)
{
	char as[XPORT_ADDRSTRLEN];
	memset(out, 0, sizeof(*out));
	out->sun_family = AF_UNIX;
	/* sun_path[0] == '\0': the abstract namespace; the name is not
	 * NUL-terminated, its length is part of the address. */
	int n = snprintf(out->sun_path + 1, sizeof(out->sun_path) - 1, "chainfs-rpc:%s",
			 xport_addr_str(a, as));
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static void unix_tune(int fd)
{
	/* A stream unix socket's in-flight bytes are bounded by the sender's
	 * buffer (about 200 KiB by default): a 1 MiB bulk then takes several
	 * wake-ups of the reader. Failure only costs speed. */
	int sz = 4 << 20;
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
}

static int unix_listen(const struct sockaddr_in *addr, int backlog, struct xport **out)
{
	struct sockaddr_un su;
	socklen_t len = xport_unix_name(addr, &su);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (const struct sockaddr *)&su, len) < 0 || listen(fd, backlog) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	*out = unix_wrap(fd);
	return 0;
}

static int unix_accept(struct xport *lst, struct xport **out, struct sockaddr_in *peer)
{
	for (;;) {
		int fd = accept4(unix_fd_of(lst), NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			unix_tune(fd);
			/* No IP peer: loopback, port 0 (xport_unix_peer_str names it). */
			memset(peer, 0, sizeof(*peer));
			peer->sin_family = AF_INET;
			peer->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			*out = unix_wrap(fd);
			return 0;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	}
}

static int unix_connect(const struct sockaddr_in *addr, struct xport **out)
{
	struct sockaddr_un su;
	socklen_t len = xport_unix_name(addr, &su);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unix_tune(fd);
	/* A non-blocking unix connect completes at once or fails: EAGAIN means
	 * the listener's backlog is full (the caller falls back to TCP, which
	 * waits properly), never EINPROGRESS. */
	for (;;) {
		if (connect(fd, (const struct sockaddr *)&su, len) == 0)
			break;
		if (errno == EINTR)
			continue;
		int e = errno;
		close(fd);
		return -e;
	}
	*out = unix_wrap(fd);
	return 0;
}

static int unix_connect_finish(struct xport *x) { return xport_sock_error(unix_fd_of(x)); }

/* Keeps the descriptors of a received SCM_RIGHTS message (closing what
 * does not fit the queue). */
static void unix_take_cmsg(struct unix_xport *u, struct msghdr *mh)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (u->nrx < UNIX_FDQ) {
				u->rxq[u->nrx++] = fd;
			} else {
				close(fd);
				u->fd_dropped++;
			}
		}
	}
	if (mh->msg_flags & MSG_CTRUNC)
		u->fd_dropped++;
}

static ssize_t unix_readv(struct xport *x, const struct iovec *iov, int iovcnt)
{
	/* recvmsg with room for descriptors: a peer may pass shared memory
	 * (xport_fd_take); MSG_CMSG_CLOEXEC so none leaks into a child. */
	struct unix_xport *u = (struct unix_xport *)x;
	union {
		char b[CMSG_SPACE(UNIX_FDQ * sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt,
			     .msg_control = cbuf.b, .msg_controllen = sizeof(cbuf.b) };
	for (;;) {
		ssize_t n = recvmsg(u->fd, &mh, MSG_CMSG_CLOEXEC);
		if (n >= 0) {
			if (mh.msg_controllen)
				unix_take_cmsg(u, &mh);
			return n;
		}
		if (errno == EINTR)
			continue;
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	}
}

static ssize_t unix_writev(struct xport *x, const struct iovec *iov, int iovcnt)
{
	struct unix_xport *u = (struct unix_xport *)x;
	if (!u->ntx)
		return xport_sock_writev(u->fd, iov, iovcnt);
	/* Queued descriptors ride on this write: the kernel attaches them to
	 * its first byte, so the peer has them no later than the bytes that
	 * follow (the frame that names them was queued after them). */
	union {
		char b[CMSG_SPACE(UNIX_FDQ * sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	memset(&cbuf, 0, sizeof(cbuf));
	struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt,
			     .msg_control = cbuf.b,
			     .msg_controllen = CMSG_SPACE((size_t)u->ntx * sizeof(int)) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN((size_t)u->ntx * sizeof(int));
	memcpy(CMSG_DATA(cm), u->txq, (size_t)u->ntx * sizeof(int));
	for (;;) {
		ssize_t n = sendmsg(u->fd, &mh, MSG_NOSIGNAL);
		if (n >= 0) {
			for (int i = 0; i < u->ntx; i++)
				close(u->txq[i]);
			u->ntx = 0;
			return n;
		}
		if (errno == EINTR)
			continue;
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	}
}

int xport_fd_send(struct xport *x, int fd)
{
	if (!x || x->ops != &xport_unix)
		return -EOPNOTSUPP;
	struct unix_xport *u = (struct unix_xport *)x;
	if (u->ntx == UNIX_FDQ)
		return -EBUSY;
	int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (d < 0)
		return -errno;
	u->txq[u->ntx++] = d;
	return 0;
}

int xport_fd_take(struct xport *x)
{
	if (!x || x->ops != &xport_unix)
		return -EOPNOTSUPP;
	struct unix_xport *u = (struct unix_xport *)x;
	if (!u->nrx)
		return -EBADF;
	int fd = u->rxq[0];
	memmove(u->rxq, u->rxq + 1, (size_t)(u->nrx - 1) * sizeof(int));
	u->nrx--;
	return fd;
}

unsigned xport_fd_dropped(const struct xport *x)
{
	return x && x->ops == &xport_unix ? ((const struct unix_xport *)x)->fd_dropped : 0;
}

static int unix_local_addr(const struct xport *x, struct sockaddr_in *out)
{
	(void)x;
	/* The TCP address is the name's key; callers ask the TCP listener. */
	memset(out, 0, sizeof(*out));
	return -EAFNOSUPPORT;
}

static void unix_close(struct xport *x)
{
	if (!x)
		return;
	struct unix_xport *u = (struct unix_xport *)x;
	for (int i = 0; i < u->nrx; i++)
		close(u->rxq[i]);
	for (int i = 0; i < u->ntx; i++)
		close(u->txq[i]);
	close(u->fd);
	free(x);
}

const struct transport_ops xport_unix = {
	.name = "unix",
	.listen = unix_listen,
	.accept = unix_accept,
	.connect = unix_connect,
	.connect_finish = unix_connect_finish,
	.readv = unix_readv,
	.writev = unix_writev,
	.fd = unix_fd_of,
	.local_addr = unix_local_addr,
	.close = unix_close,
};

char *xport_unix_peer_str(const struct xport *x, char *out)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	if (getsockopt(unix_fd_of(x), SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0)
		snprintf(out, XPORT_ADDRSTRLEN, "unix:pid=%d", (int)cr.pid);
	else
		snprintf(out, XPORT_ADDRSTRLEN, "unix:pid=?");
	return out;
}

/* 1 when the process listening behind X runs as root or as this process's
 * user. Any local user can bind an abstract name first (a TCP port held by
 * the server cannot be taken): such a squatter cannot pass the handshake
 * (the server proves the secret too), but it would turn every connect into
 * -CFS_EAUTH instead of reaching the real server over TCP. */
static int unix_peer_trusted(const struct xport *x)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	if (getsockopt(unix_fd_of(x), SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return 0;
	return cr.uid == 0 || cr.uid == geteuid();
}

int xport_connect_prefer_local(const struct sockaddr_in *addr, int try_local, struct xport **out)
{
	if (try_local && xport_unix.connect(addr, out) == 0) {
		if (unix_peer_trusted(*out))
			return 0;
		(*out)->ops->close(*out);
		*out = NULL;
	}
	/* No listener (ECONNREFUSED), another namespace, a full backlog
	 * (EAGAIN), a server started with the local socket off: TCP. */
	return xport_tcp.connect(addr, out);
}
