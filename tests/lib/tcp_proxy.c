/* tcp_proxy.c - one poll() thread relaying up to MAX_PAIRS connections.
 * A pipe wakes the thread for cut, delay and free; writes are blocking,
 * which is fine for the small request/response traffic of a control
 * connection. With a delay, what upstream sends is queued per connection
 * with the time it is due, and the poll timeout wakes the thread for the
 * earliest: every reply is late by the delay, concurrent ones are not
 * serialised behind each other (a slow server, not a slow link). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tcp_proxy.h"

#define MAX_PAIRS 64

struct chunk {
	struct chunk *next;
	uint64_t due_ns; /* monotonic */
	size_t n;
	char data[];
};

struct tcp_proxy {
	int lfd, wake[2];
	uint16_t port, upstream;
	atomic_bool cut, stop;
	atomic_uint delay_ms;
	pthread_t th;
	int a[MAX_PAIRS], b[MAX_PAIRS]; /* client side, upstream side; -1 free */
	struct chunk *qh[MAX_PAIRS], *qt[MAX_PAIRS]; /* upstream bytes not yet due */
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void close_pair(struct tcp_proxy *p, int i)
{
	close(p->a[i]);
	close(p->b[i]);
	p->a[i] = p->b[i] = -1;
	while (p->qh[i]) {
		struct chunk *c = p->qh[i];
		p->qh[i] = c->next;
		free(c);
	}
	p->qt[i] = NULL;
}

static bool send_all(int to, const char *buf, size_t n)
{
	for (size_t off = 0; off < n;) {
		ssize_t w = send(to, buf + off, n - off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		off += (size_t)w;
	}
	return true;
}

static int connect_upstream(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static bool relay(int from, int to)
{
	char buf[65536];
	ssize_t n = read(from, buf, sizeof(buf));
	if (n <= 0)
		return false;
	return send_all(to, buf, (size_t)n);
}

/* Upstream bytes of pair I: queued when a delay is set or bytes wait. */
static bool relay_up(struct tcp_proxy *p, int i)
{
	unsigned d = atomic_load(&p->delay_ms);
	if (!d && !p->qh[i])
		return relay(p->b[i], p->a[i]);
	char buf[65536];
	ssize_t n = read(p->b[i], buf, sizeof(buf));
	if (n <= 0)
		return false;
	struct chunk *c = malloc(sizeof(*c) + (size_t)n);
	if (!c)
		return false;
	c->next = NULL;
	c->due_ns = now_ns() + (uint64_t)d * 1000000ull;
	c->n = (size_t)n;
	memcpy(c->data, buf, (size_t)n);
	if (p->qt[i])
		p->qt[i]->next = c;
	else
		p->qh[i] = c;
	p->qt[i] = c;
	return true;
}

/* Sends every queued chunk that is due; returns the poll timeout (ms) to
 * the earliest one still queued, at most MAX_MS. */
static int flush_due(struct tcp_proxy *p, int max_ms)
{
	uint64_t now = now_ns();
	int tmo = max_ms;
	for (int i = 0; i < MAX_PAIRS; i++) {
		while (p->a[i] >= 0 && p->qh[i] && p->qh[i]->due_ns <= now) {
			struct chunk *c = p->qh[i];
			p->qh[i] = c->next;
			if (!p->qh[i])
				p->qt[i] = NULL;
			bool ok = send_all(p->a[i], c->data, c->n);
			free(c);
			if (!ok)
				close_pair(p, i);
		}
		if (p->a[i] >= 0 && p->qh[i]) {
			uint64_t ms = (p->qh[i]->due_ns - now + 999999) / 1000000;
			if (ms < (uint64_t)tmo)
				tmo = (int)ms;
		}
	}
	return tmo;
}

static void *proxy_main(void *arg)
{
	struct tcp_proxy *p = arg;
	struct pollfd fds[2 + 2 * MAX_PAIRS];
	int who[2 + 2 * MAX_PAIRS];
	while (!atomic_load(&p->stop)) {
		if (atomic_load(&p->cut))
			for (int i = 0; i < MAX_PAIRS; i++)
				if (p->a[i] >= 0)
					close_pair(p, i);
		int n = 0;
		fds[n] = (struct pollfd){ .fd = p->wake[0], .events = POLLIN };
		who[n++] = -1;
		fds[n] = (struct pollfd){ .fd = p->lfd, .events = POLLIN };
		who[n++] = -2;
		for (int i = 0; i < MAX_PAIRS; i++) {
			if (p->a[i] < 0)
				continue;
			fds[n] = (struct pollfd){ .fd = p->a[i], .events = POLLIN };
			who[n++] = i;
			fds[n] = (struct pollfd){ .fd = p->b[i], .events = POLLIN };
			who[n++] = MAX_PAIRS + i;
		}
		int tmo = flush_due(p, 1000);
		if (poll(fds, (nfds_t)n, tmo) <= 0)
			continue;
		for (int k = 0; k < n; k++) {
			if (!fds[k].revents)
				continue;
			if (who[k] == -1) {
				char c[64];
				if (read(p->wake[0], c, sizeof(c)) < 0)
					continue;
			} else if (who[k] == -2) {
				int c = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
				if (c < 0)
					continue;
				int slot = -1;
				for (int i = 0; i < MAX_PAIRS && slot < 0; i++)
					if (p->a[i] < 0)
						slot = i;
				int u = atomic_load(&p->cut) || slot < 0 ? -1
									  : connect_upstream(p->upstream);
				if (u < 0) {
					close(c);
					continue;
				}
				p->a[slot] = c;
				p->b[slot] = u;
			} else {
				int i = who[k] % MAX_PAIRS;
				if (p->a[i] < 0)
					continue; /* closed earlier in this round */
				bool ok = who[k] < MAX_PAIRS ? relay(p->a[i], p->b[i])
							      : relay_up(p, i);
				if (!ok)
					close_pair(p, i);
			}
		}
	}
	return NULL;
}

struct tcp_proxy *tcp_proxy_start(uint16_t upstream)
{
	struct tcp_proxy *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	for (int i = 0; i < MAX_PAIRS; i++)
		p->a[i] = p->b[i] = -1;
	p->upstream = upstream;
	p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(p->lfd, 64) ||
	    getsockname(p->lfd, (struct sockaddr *)&sa, &sl) || pipe2(p->wake, O_CLOEXEC)) {
		if (p->lfd >= 0)
			close(p->lfd);
		free(p);
		return NULL;
	}
	p->port = ntohs(sa.sin_port);
	if (pthread_create(&p->th, NULL, proxy_main, p)) {
		close(p->lfd);
		close(p->wake[0]);
		close(p->wake[1]);
		free(p);
		return NULL;
	}
	return p;
}

uint16_t tcp_proxy_port(const struct tcp_proxy *p)
{
	return p->port;
}

static void wake(struct tcp_proxy *p)
{
	char c = 1;
	if (write(p->wake[1], &c, 1) < 0)
		return; /* the pipe is full: the thread is awake anyway */
}

void tcp_proxy_cut(struct tcp_proxy *p, bool cut)
{
	atomic_store(&p->cut, cut);
	wake(p);
}

void tcp_proxy_delay(struct tcp_proxy *p, unsigned ms)
{
	atomic_store(&p->delay_ms, ms);
	wake(p);
}

void tcp_proxy_free(struct tcp_proxy *p)
{
	if (!p)
		return;
	atomic_store(&p->stop, true);
	wake(p);
	pthread_join(p->th, NULL);
	for (int i = 0; i < MAX_PAIRS; i++)
		if (p->a[i] >= 0)
			close_pair(p, i);
	close(p->lfd);
	close(p->wake[0]);
	close(p->wake[1]);
	free(p);
}
