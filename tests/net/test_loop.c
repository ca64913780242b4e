/* test_loop.c - the event loop: timers fire in deadline order and not when
 * cancelled, messages posted from many threads all run on the loop thread,
 * every post wakes a sleeping loop (the eventfd is edge-triggered and only
 * drained now and then), fd readiness reaches its callback, and stop/join
 * returns. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/sched_hint.h"
#include "net/loop.h"
#include "testenv.h"

struct tctx {
	struct loop *l;
	int order[16];
	int n;
	atomic_int done;
	struct loop_timer t[8];
	int wrong_thread;
};

static void on_timer(struct loop_timer *t)
{
	struct tctx *c = t->arg;
	if (!loop_in_thread(c->l))
		c->wrong_thread = 1;
	c->order[c->n++] = (int)(t - c->t);
	if (c->n == 5)
		atomic_store(&c->done, 1);
}

static void arm_all(struct loop_msg *m)
{
	struct tctx *c = m->arg;
	uint64_t now = clock_mono_ns();
	/* Armed out of order; timer 5 is cancelled, timer 2 re-armed later. */
	static const int ms[8] = { 50, 10, 5, 30, 20, 15, 0, 0 };
	for (int i = 0; i < 6; i++) {
		c->t[i] = (struct loop_timer)LOOP_TIMER_INIT(on_timer, c);
		loop_timer_arm(c->l, &c->t[i], now + (uint64_t)ms[i] * 1000000u);
	}
	loop_timer_cancel(c->l, &c->t[5]);
	loop_timer_arm(c->l, &c->t[2], now + 40 * 1000000ull);
}

static int is_done(void *arg) { return atomic_load(&((struct tctx *)arg)->done); }

static void test_timers(void **state)
{
	struct tctx c = { 0 };
	struct loop_msg m = { .fn = arm_all, .arg = &c };
	assert_int_equal(loop_new(&c.l), 0);
	assert_int_equal(loop_thread_start(c.l, "t-loop"), 0);
	loop_post(c.l, &m);
	assert_true(testenv_wait(is_done, &c, 5000));
	clock_sleep_ms(30);
	loop_thread_stop(c.l);
	assert_int_equal(c.n, 5);
	assert_int_equal(c.order[0], 1);
	assert_int_equal(c.order[1], 4);
	assert_int_equal(c.order[2], 3);
	assert_int_equal(c.order[3], 2);
	assert_int_equal(c.order[4], 0);
	assert_int_equal(c.wrong_thread, 0);
	assert_false(loop_timer_armed(&c.t[5]));
	loop_free(c.l);
}

#define POSTERS 4
#define POSTS 2000

struct pctx {
	struct loop *l;
	struct loop_msg msgs[POSTERS][POSTS];
	long count;          /* loop thread only */
	int wrong_thread;
	int last[POSTERS];   /* FIFO per poster */
	int reorder;
};

static void on_msg(struct loop_msg *m)
{
	struct pctx *p = m->arg;
	if (!loop_in_thread(p->l))
		p->wrong_thread = 1;
	size_t idx = (size_t)(m - &p->msgs[0][0]);
	int who = (int)(idx / POSTS), seq = (int)(idx % POSTS);
	if (seq != p->last[who] + 1)
		p->reorder = 1;
	p->last[who] = seq;
	p->count++;
}

struct poster {
	struct pctx *p;
	int who;
};

static void *poster_main(void *arg)
{
	struct poster *ps = arg;
	for (int i = 0; i < POSTS; i++) {
		struct loop_msg *m = &ps->p->msgs[ps->who][i];
		m->fn = on_msg;
		m->arg = ps->p;
		loop_post(ps->p->l, m);
	}
	return NULL;
}

static void test_post_many_threads(void **state)
{
	struct pctx *p = calloc(1, sizeof(*p));
	pthread_t th[POSTERS];
	struct poster ps[POSTERS];
	for (int i = 0; i < POSTERS; i++)
		p->last[i] = -1;
	assert_int_equal(loop_new(&p->l), 0);
	assert_int_equal(loop_thread_start(p->l, "t-loop"), 0);
	for (int i = 0; i < POSTERS; i++) {
		ps[i] = (struct poster){ p, i };
		pthread_create(&th[i], NULL, poster_main, &ps[i]);
	}
	for (int i = 0; i < POSTERS; i++)
		pthread_join(th[i], NULL);
	loop_thread_stop(p->l); /* runs what is still queued */
	assert_int_equal(p->count, POSTERS * POSTS);
	assert_int_equal(p->wrong_thread, 0);
	assert_int_equal(p->reorder, 0);
	loop_free(p->l);
	free(p);
}

struct fctx {
	struct loop_io io;
	int fd;
	atomic_int got;
};

static void on_fd(struct loop_io *io, uint32_t ev)
{
	struct fctx *f = io->arg;
	char b[16];
	if ((ev & LOOP_IN) && read(f->fd, b, sizeof(b)) > 0)
		atomic_fetch_add(&f->got, 1);
}

struct reg {
	struct loop_msg m;
	struct loop *l;
	struct fctx *f;
	int rc;
	atomic_int done;
};

static void do_reg(struct loop_msg *m)
{
	struct reg *r = m->arg;
	r->rc = loop_fd_add(r->l, r->f->fd, LOOP_IN, &r->f->io);
	atomic_store(&r->done, 1);
}

static int reg_done(void *arg) { return atomic_load(&((struct reg *)arg)->done); }
static int fd_got(void *arg) { return atomic_load(&((struct fctx *)arg)->got) > 0; }

static void test_fd_readiness(void **state)
{
	int sv[2];
	struct fctx f = { 0 };
	struct reg r = { 0 };
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	f.fd = sv[0];
	f.io.fn = on_fd;
	f.io.arg = &f;
	assert_int_equal(loop_new(&r.l), 0);
	assert_int_equal(loop_thread_start(r.l, "t-loop"), 0);
	r.f = &f;
	r.m.fn = do_reg;
	r.m.arg = &r;
	loop_post(r.l, &r.m);
	assert_true(testenv_wait(reg_done, &r, 5000));
	assert_int_equal(r.rc, 0);
	assert_int_equal(write(sv[1], "x", 1), 1);
	assert_true(testenv_wait(fd_got, &f, 5000));
	loop_thread_stop(r.l);
	loop_free(r.l);
	close(sv[0]);
	close(sv[1]);
}

struct slice_ctx {
	long long slice;
	atomic_int done;
};

static void read_slice(struct loop_msg *m)
{
	struct slice_ctx *c = m->arg;
	c->slice = sched_hint_slice_ns();
	atomic_store(&c->done, 1);
}

static int slice_done(void *arg) { return atomic_load(&((struct slice_ctx *)arg)->done); }

/* A loop thread asks for a short scheduler slice (sched_hint.h): the
 * wake-ups of an RPC chain must not wait out other tasks' slices. */
static void test_loop_thread_short_slice(void **state)
{
	(void)state;
	unsetenv("CFS_SLICE_US");
	struct slice_ctx c = { .slice = -2 };
	struct loop_msg m = { .fn = read_slice, .arg = &c };
	struct loop *l;
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(loop_thread_start(l, "t-loop"), 0);
	loop_post(l, &m);
	assert_true(testenv_wait(slice_done, &c, 5000));
	loop_thread_stop(l);
	loop_free(l);
	if (c.slice < 0 || sched_hint_slice_ns() == 100000)
		skip(); /* no custom slices here, or ours is 100 us already */
	assert_int_equal(c.slice, 100000);
}

struct wctx {
	atomic_int ran;
};

static void count_run(struct loop_msg *m) { atomic_fetch_add(&((struct wctx *)m->arg)->ran, 1); }

/* Each post finds the loop asleep in epoll_wait with no timer armed, so
 * only the eventfd can wake it: if a write did not make the edge-triggered
 * eventfd report again (before or after a drain), a message would wait
 * forever. More rounds than the loop's drain period (4096). */
static void test_post_wakes_sleeping_loop(void **state)
{
	(void)state;
	struct loop *l;
	struct wctx w = { 0 };
	enum { ROUNDS = 2 * 4096 + 64 };
	static struct loop_msg m;
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(loop_thread_start(l, "t-loop"), 0);
	for (int i = 0; i < ROUNDS; i++) {
		m = (struct loop_msg){ .fn = count_run, .arg = &w };
		loop_post(l, &m);
		/* testenv_wait polls every 20 ms: too slow for 8k rounds. */
		uint64_t until = clock_mono_ms() + 10000;
		while (atomic_load(&w.ran) < i + 1 && clock_mono_ms() < until)
			usleep(50);
		if (atomic_load(&w.ran) < i + 1)
			fail_msg("post %d did not wake the loop", i);
	}
	loop_thread_stop(l);
	loop_free(l);
	assert_int_equal(atomic_load(&w.ran), ROUNDS);
}

/* loop_idle (the hint callers use to send themselves rather than wake the
 * loop, rpc_client.c DIRECT SEND): 1 while the owner sleeps in its wait, 0
 * while it runs a message, 0 again once the loop stopped. */
static atomic_int idle_gate, idle_in_msg;

static void idle_block(struct loop_msg *m)
{
	(void)m;
	atomic_store(&idle_in_msg, 1);
	while (!atomic_load(&idle_gate))
		usleep(100);
}

static int wait_idle(struct loop *l, int want)
{
	uint64_t until = clock_mono_ms() + 10000;
	while (loop_idle(l) != want && clock_mono_ms() < until)
		usleep(100);
	return loop_idle(l) == want;
}

static void test_idle_hint(void **state)
{
	(void)state;
	struct loop *l;
	static struct loop_msg m = { .fn = idle_block };
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(loop_idle(l), 0); /* not running */
	assert_int_equal(loop_thread_start(l, "t-loop"), 0);
	assert_true(wait_idle(l, 1)); /* nothing to do: asleep */
	loop_post(l, &m);
	uint64_t until = clock_mono_ms() + 10000;
	while (!atomic_load(&idle_in_msg) && clock_mono_ms() < until)
		usleep(100);
	assert_int_equal(atomic_load(&idle_in_msg), 1);
	for (int i = 0; i < 20; i++) { /* busy the whole time the message runs */
		assert_int_equal(loop_idle(l), 0);
		usleep(500);
	}
	atomic_store(&idle_gate, 1);
	assert_true(wait_idle(l, 1)); /* asleep again */
	loop_thread_stop(l);
	assert_int_equal(loop_idle(l), 0);
	loop_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_loop_thread_short_slice),
		cmocka_unit_test(test_timers),
		cmocka_unit_test(test_post_many_threads),
		cmocka_unit_test(test_post_wakes_sleeping_loop),
		cmocka_unit_test(test_fd_readiness),
		cmocka_unit_test(test_idle_hint),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
