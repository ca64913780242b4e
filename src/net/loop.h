/* loop.h - an event loop per thread: fd readiness, timers, messages.
 *
 * One loop runs on one thread for life (its owner). Everything registered
 * with it (fds, timers) is touched only by the owner. Other threads reach
 * the loop only with loop_post(), which queues a message the owner runs.
 *
 * Callback objects (struct loop_io, loop_timer, loop_msg) are embedded in
 * the caller's structs and borrowed by the loop while registered/armed/
 * queued; the caller must keep them alive for that long.
 *
 * One iteration: wait for fds (or the earliest timer) -> run fd callbacks ->
 * run due timers -> run queued messages (and those they post, a few passes
 * deep). A message posted from the owner during an iteration runs at the
 * end of that same iteration, after every fd callback of the batch: use
 * that to free objects an fd event of the same batch might still name.
 */
#ifndef CFS_NET_LOOP_H
#define CFS_NET_LOOP_H

#include <stddef.h>
#include <stdint.h>

struct loop;
struct loop_io;
struct loop_timer;
struct loop_msg;

/* LOOP_PEER_CLOSE (registration only): without LOOP_IN, report the peer's
 * close or an error once, as LOOP_ERR, edge-triggered (EPOLLRDHUP|EPOLLET),
 * and any LOOP_OUT with it edge-triggered too: for an fd another thread is
 * reading for now, so the loop neither reads it nor spins on its hang-up. */
enum loop_events { LOOP_IN = 1, LOOP_OUT = 2, LOOP_ERR = 4 /* error or hang-up */,
		   LOOP_PEER_CLOSE = 8 };

typedef void (*loop_io_fn)(struct loop_io *io, uint32_t events);
typedef void (*loop_timer_fn)(struct loop_timer *t);
typedef void (*loop_msg_fn)(struct loop_msg *m);

struct loop_io {
	loop_io_fn fn;
	void *arg; /* for the callback */
};

struct loop_timer {
	loop_timer_fn fn;
	void *arg;      /* for the callback */
	uint64_t when;  /* monotonic ns; set by loop_timer_arm */
	size_t idx;     /* heap slot; LOOP_TIMER_IDLE when not armed */
};
#define LOOP_TIMER_IDLE ((size_t)-1)
#define LOOP_TIMER_INIT(f, a) { (f), (a), 0, LOOP_TIMER_IDLE }

struct loop_msg {
	struct loop_msg *next; /* queue link, the loop's while queued */
	loop_msg_fn fn;
	void *arg;
};

/* Creates a loop (epoll fd + eventfd). 0 or -errno. Any thread. */
int loop_new(struct loop **out);
/* Frees a loop that is not running. Registered fds are not closed. NULL-safe. */
void loop_free(struct loop *l);
/* Runs iterations on the calling thread until loop_stop(). */
void loop_run(struct loop *l);
/* Starts a thread named NAME running loop_run. 0 or -errno. */
int loop_thread_start(struct loop *l, const char *name);
/* Stops the loop and joins the thread loop_thread_start made. Any other thread. */
void loop_thread_stop(struct loop *l);
/* Asks loop_run to return after the current iteration. Any thread. */
void loop_stop(struct loop *l);
/* 1 when called on the loop's owner thread. */
int loop_in_thread(const struct loop *l);
/* A hint, any thread: 1 while the owner is blocked (or about to block) in
 * its wait for events with nothing queued, so a loop_post now would cost
 * a wake-up of the owner (an eventfd write and a context switch); 0 while
 * it runs an iteration, which drains posts without one. It may change
 * right after the call: use it only to choose between paths that are
 * both correct. */
int loop_idle(const struct loop *l);

/* Queues M (fn and arg set by the caller) to run on the owner. Any thread;
 * never fails; FIFO per posting thread. */
void loop_post(struct loop *l, struct loop_msg *m);

/* Watches FD for EVENTS (LOOP_IN|LOOP_OUT; LOOP_ERR is always reported).
 * Level-triggered. Owner only. 0 or -errno. */
int loop_fd_add(struct loop *l, int fd, uint32_t events, struct loop_io *io);
int loop_fd_mod(struct loop *l, int fd, uint32_t events, struct loop_io *io);
void loop_fd_del(struct loop *l, int fd);

/* Arms T to fire at monotonic WHEN (ns), re-arming if armed. Owner only. */
void loop_timer_arm(struct loop *l, struct loop_timer *t, uint64_t when);
/* Disarms T if armed. Owner only. */
void loop_timer_cancel(struct loop *l, struct loop_timer *t);
static inline int loop_timer_armed(const struct loop_timer *t) { return t->idx != LOOP_TIMER_IDLE; }

#endif
