/* transport.h - the byte-stream transport under the RPC layer.
 *
 * A transport is a small vtable so an RDMA transport can sit beside TCP:
 * the RPC code only listens, accepts, connects, moves bytes with
 * readv/writev-style calls and polls the fd. Every endpoint is non-blocking.
 * An xport belongs to one thread at a time (the loop that polls it).
 * Addresses are IPv4 "host:port" for now; the unix transport derives its
 * socket name from such an address (see xport_unix).
 */
#ifndef CFS_NET_TRANSPORT_H
#define CFS_NET_TRANSPORT_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>

struct xport;

struct transport_ops {
	const char *name;
	/* Binds and listens on ADDR (port 0 picks one). 0 or -errno. */
	int (*listen)(const struct sockaddr_in *addr, int backlog, struct xport **out);
	/* Accepts one connection. 0, -EAGAIN when none is pending, or -errno. */
	int (*accept)(struct xport *lst, struct xport **out, struct sockaddr_in *peer);
	/* Starts a connect. 0 (connected) or -EINPROGRESS (poll for writable,
	 * then call connect_finish), *out set in both cases; or -errno. */
	int (*connect)(const struct sockaddr_in *addr, struct xport **out);
	/* Result of an in-progress connect: 0 or -errno. */
	int (*connect_finish)(struct xport *x);
	/* Bytes moved (>0), 0 on EOF (readv only), -EAGAIN, or -errno. */
	ssize_t (*readv)(struct xport *x, const struct iovec *iov, int iovcnt);
	ssize_t (*writev)(struct xport *x, const struct iovec *iov, int iovcnt);
	/* The fd to poll for readiness. */
	int (*fd)(const struct xport *x);
	/* Local address (for a listener: the bound port). 0 or -errno. */
	int (*local_addr)(const struct xport *x, struct sockaddr_in *out);
	/* Closes and frees. NULL-safe. */
	void (*close)(struct xport *x);
};

/* Every transport's endpoint starts with this. */
struct xport {
	const struct transport_ops *ops;
};

/* TCP: non-blocking, TCP_NODELAY, SO_KEEPALIVE, close-on-exec. */
extern const struct transport_ops xport_tcp;

/* Same host: an abstract-namespace unix stream socket whose name is derived
 * from the IPv4 address passed to listen/connect ("chainfs-rpc:ip:port"), so
 * a server listening on TCP ADDR can also be reached on this host (and
 * network namespace) by ADDR without TCP. connect never returns
 * -EINPROGRESS. accept reports a loopback peer with port 0; local_addr is
 * -EAFNOSUPPORT. */
extern const struct transport_ops xport_unix;
/* The unix socket name for A into OUT; returns its length for bind/connect. */
socklen_t xport_unix_name(const struct sockaddr_in *a, struct sockaddr_un *out);
/* "unix:pid=N" of the peer process of a unix endpoint X into OUT
 * (XPORT_ADDRSTRLEN bytes); returns OUT. */
char *xport_unix_peer_str(const struct xport *x, char *out);
/* Passing descriptors over a unix endpoint (the shared-memory bulk path,
 * docs/rpc.md). xport_fd_send queues a dup of FD to ride on the next write
 * of X (SCM_RIGHTS), so the peer receives it no later than the bytes
 * queued after this call; call it under the lock that serialises X's
 * writes. 0, -EOPNOTSUPP (not a unix endpoint), -EBUSY (4 queued), -errno.
 * xport_fd_take pops the oldest descriptor received on X (the caller owns
 * it): fd, -EBADF when none arrived, -EOPNOTSUPP. Loop thread of X.
 * At most 4 received descriptors wait; more are closed on arrival and
 * counted by xport_fd_dropped. Closing X closes what is still queued. */
int xport_fd_send(struct xport *x, int fd);
int xport_fd_take(struct xport *x);
unsigned xport_fd_dropped(const struct xport *x);
/* Connects to ADDR: with TRY_LOCAL over xport_unix when a server on this
 * host listens there as root or as this process's user, otherwise (or when
 * that fails in any way) over TCP.
 * Returns as xport_tcp.connect; (*out)->ops tells which one was used. */
int xport_connect_prefer_local(const struct sockaddr_in *addr, int try_local, struct xport **out);

/* For socket transports: readv/writev on a non-blocking socket FD with EINTR
 * retried, as the ops above return (writev with MSG_NOSIGNAL: EPIPE, not
 * SIGPIPE); and the pending SO_ERROR as 0 or -errno. */
ssize_t xport_sock_readv(int fd, const struct iovec *iov, int iovcnt);
ssize_t xport_sock_writev(int fd, const struct iovec *iov, int iovcnt);
int xport_sock_error(int fd);

/* Parses IPv4 "a.b.c.d:port" or "localhost:port" into OUT. 0, or -EINVAL
 * with the reason in ERR ("missing ':port'", "bad port", "bad IPv4 address"). */
int xport_addr_parse(const char *s, struct sockaddr_in *out, char *err, size_t errlen);
/* Formats "a.b.c.d:port" into OUT (XPORT_ADDRSTRLEN bytes); returns OUT. */
#define XPORT_ADDRSTRLEN 24
char *xport_addr_str(const struct sockaddr_in *a, char *out);

/* Fills OUT with N distinct TCP ports on 127.0.0.1 that were free a moment
 * ago, for starting local servers (tests, benchmarks, `chainfs up`). They
 * lie below the ephemeral range (12,000 ports under the 12,000 the tests
 * lease, tests/lib/testenv.c) when it starts high enough, so no outgoing
 * connection takes one while its server is down for a restart. No
 * port is handed out twice by one process (the last 4,096 are remembered):
 * the kernel may pick the same ephemeral port for two bind-and-close probes
 * in a row, and two servers of one test cluster once got the same port.
 * Another process may still take a port before its server binds it.
 * Thread-safe. 0, or -errno when no socket could be bound. */
int xport_free_ports(uint16_t *out, int n);
/* Ports per band below the ephemeral range: xport_free_ports hands out
 * [lo - 2 * BAND, lo - BAND), tests lease [lo - BAND, lo). */
#define XPORT_PORT_BAND 12000
/* The first port of the kernel's ephemeral range
 * (/proc/sys/net/ipv4/ip_local_port_range), or 0 when unknown. */
unsigned xport_ephemeral_low(void);

#endif
