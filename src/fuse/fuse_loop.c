/* fuse_loop.c - leader/follower session loop with a LIFO of idle threads
 * (fuse_loop.h).
 *
 * State (all under fuseloop.mu): READER says whether a thread is reading
 * /dev/fuse or has been told to (at most one at a time); IDLE is the
 * stack of threads waiting (each on its own semaphore) to be told; the
 * thread list is for the stop.
 *
 * A worker's round: become the reader (or wait on the stack until a
 * hand-over names it), read one request, clear READER, hand over at once
 * unless the opcode is a fast one, process (cancellation off), then read
 * again if nobody does, else go idle. fuseloop_will_block hands over from
 * inside a fast request, once.
 *
 * Stop: when a read returns 0 or an error, or the main thread sees the
 * session exited (its semaphore wait is interrupted by the stop signal,
 * libfuse's handler having called fuse_session_exit), every thread is
 * cancelled and joined as libfuse's loop does: only the reader can be in
 * a cancellation point with cancellation enabled (the read); the others
 * see STOP when they next look and leave.
 */
#define FUSE_USE_VERSION 312
#include "fuse/fuse_loop.h"

#include <errno.h>
#include <fuse3/fuse_lowlevel.h>
#include <linux/fuse.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/block_hint.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/sched_hint.h"
#include "fuse/fuse_uring.h"

struct fl_worker {
	struct fl_worker *next_idle; /* IDLE stack link */
	struct fl_worker *next;      /* every worker, for the stop */
	struct fuseloop *fl;
	pthread_t th;
	sem_t wake;   /* posted once per pop from IDLE (hand-over or stop) */
	int told;     /* a hand-over made this thread the reader */
	int promoted; /* this request already handed the reading over */
	int reading;  /* serving a fast request still as the reader (fl_main) */
	struct fuse_buf buf;
	struct fuse_buf rbuf; /* a ring request (in its entry's memory) */
	struct furing_ent *ent;
};

struct fuseloop {
	struct fuse_session *se;
	furing *ring; /* NULL: this loop reads /dev/fuse */
	int q;        /* the ring queue this loop serves */
	sem_t *done;  /* shared by the loops of a session */
	pthread_mutex_t mu;
	int reader;
	int stop;
	int error; /* first read error (-errno) */
	int nthreads, max_threads;
	unsigned flags; /* FUSELOOP_* */
	_Atomic uint64_t pressure_at; /* FUSELOOP_NS_AUTO: when PRESSURE was read
	                               * (mono ns; any thread, no lock) */
	_Atomic int pressure;         /* sched_hint_cpu_pressure then */
	uint64_t spin_ns;             /* fl_spin's bound; 0: off */
	int spin_force;               /* test hook: spin on a contended host too */
	struct fl_worker *idle;
	struct fl_worker *all;
};

static __thread struct fl_worker *fl_cur;

static void *fl_main(void *arg);

/* Starts a thread that begins as the reader (READER already set by the
 * caller). mu held. 0 or -errno. */
static int fl_spawn_locked(struct fuseloop *fl)
{
	struct fl_worker *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fl = fl;
	w->told = 1;
	sem_init(&w->wake, 0, 0);
	/* Signals go to the thread that runs fuseloop_run (its wait is
	 * what a stop signal interrupts), as in libfuse's loop. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = pthread_create(&w->th, NULL, fl_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		sem_destroy(&w->wake);
		free(w);
		return -rc;
	}
	w->next = fl->all;
	fl->all = w;
	fl->nthreads++;
	return 0;
}

/* Lets another thread read the next request while the caller processes
 * one: the most recently idle thread, else a new one. mu held. Returns
 * the idle thread told, for the caller to wake with fl_wake after it
 * lets go of mu. Woken under mu (a condition variable's signal), that
 * thread woke into a held mutex, and glibc's condvar marks the mutex it
 * takes back contended, so its unlock was one more futex wake: 4.4 futex
 * calls per unlink through the mount (strace -c), for one hand-over.
 * Workers live until fl_join, which joins the caller first, so W stays
 * valid. */
static struct fl_worker *fl_hand_over_locked(struct fuseloop *fl)
{
	if (fl->reader || fl->stop)
		return NULL;
	struct fl_worker *w = fl->idle;
	if (w) {
		fl->idle = w->next_idle;
		w->told = 1;
		fl->reader = 1;
		return w;
	}
	if (fl->nthreads >= fl->max_threads)
		return NULL; /* every thread busy: the next to finish reads */
	fl->reader = 1;
	if (fl_spawn_locked(fl) < 0) {
		fl->reader = 0;
		if (fl->nthreads == 0)
			LOG_WARN("fuse", "cannot start a FUSE thread");
	}
	return NULL;
}

/* Wakes W (from fl_hand_over_locked; NULL: nobody), mu not held. */
static void fl_wake(struct fl_worker *w)
{
	if (w)
		sem_post(&w->wake);
}

void fuseloop_will_block(void)
{
	struct fl_worker *w = fl_cur;
	if (!w || w->promoted)
		return;
	w->promoted = 1;
	pthread_mutex_lock(&w->fl->mu);
	if (w->reading) { /* a fast request read while this thread stayed the reader */
		w->reading = 0;
		w->fl->reader = 0;
	}
	struct fl_worker *wake = fl_hand_over_locked(w->fl);
	pthread_mutex_unlock(&w->fl->mu);
	fl_wake(wake);
}

/* FUSELOOP_NS_AUTO: whether the thread that read a namespace change
 * serves it itself: while the host's CPUs are not contended (CPU
 * pressure, sched_hint_cpu_pressure, below NS_AUTO_PRESSURE; read again
 * at most every NS_AUTO_PERIOD_NS by whichever thread finds it stale).
 * On a busy host the reading thread, preempted when its reply woke the
 * caller, was runnable instead of asleep in read(2) when the next
 * request came and waited behind the other load for its CPU, while a
 * reader asleep in read(2) is woken on whichever CPU is free
 * (bench/history.md "Fast namespace opcodes", "Adaptive fast namespace
 * opcodes"). Unknown pressure (no PSI): hand over, the safe side. */
#define NS_AUTO_PRESSURE 2000                 /* 20.00 % some avg10 */
#define NS_AUTO_PERIOD_NS (250ull * 1000000u) /* 250 ms */
#define SPIN_MAX_US       1000ull             /* CFS_FUSE_SPIN_US's cap */
#define SPIN_DEFAULT_US   100ull              /* CFS_FUSE_SPIN_US unset */

static int fl_uncontended(struct fuseloop *fl)
{
	uint64_t now = clock_mono_ns();
	uint64_t at = atomic_load_explicit(&fl->pressure_at, memory_order_relaxed);
	/* NOW > AT: another thread may have stored a later reading time */
	if (now > at && now - at >= NS_AUTO_PERIOD_NS &&
	    atomic_compare_exchange_strong_explicit(&fl->pressure_at, &at, now,
	                                            memory_order_relaxed, memory_order_relaxed))
		atomic_store_explicit(&fl->pressure, sched_hint_cpu_pressure(),
		                      memory_order_relaxed);
	int p = atomic_load_explicit(&fl->pressure, memory_order_relaxed);
	return p >= 0 && p < NS_AUTO_PRESSURE;
}

static int fl_ns_serve_here(struct fuseloop *fl)
{
	return fl_uncontended(fl);
}

/* Spin-wait (CFS_FUSE_SPIN_US, 100 us by default, 0 turns it off): after
 * a fast reply other than READ/WRITE the
 * reader polls /dev/fuse for up to spin_ns before it sleeps in read(2),
 * while the host's CPUs are not contended. WHY: on an idle 2-vCPU VM the
 * scheduler wakes the reader on the idle vCPU, away from its caller, and
 * the vCPU halts between requests (guest halt polling is off on this
 * host), so each request paid a wake-up of the other vCPU: with the
 * caller and the mount held on different CPUs (taskset, loaded host) the
 * peer job's stats ran at p50 48 us against 14 us on one CPU, and polling
 * took them to 26 us (bench/history.md "st33"). On a contended host the poller takes a CPU
 * others wait for (creates there fell to 0.2-0.3x when it was forced on),
 * hence the CPU-pressure gate; a caller sharing the reader's CPU gets it
 * through sched_yield. On a quiet host it doubled the peer job's
 * creates, stats and deletes (bench/history.md "st33 on a quieter
 * host"); after data requests it cost 4 KiB random readers a few percent
 * of IOPS, hence not after READ/WRITE. */
static void fl_spin(struct fuseloop *fl)
{
	if (!fl->spin_ns || (!fl->spin_force && !fl_uncontended(fl)))
		return;
	struct pollfd pfd = {.fd = fuse_session_fd(fl->se), .events = POLLIN};
	uint64_t end = clock_mono_ns() + fl->spin_ns;
	do {
		if (poll(&pfd, 1, 0) != 0)
			return;
		sched_yield();
	} while (clock_mono_ns() < end);
}

/* Opcodes the mount usually answers from memory (its handlers call
 * fuseloop_will_block before anything that waits), and with
 * FUSELOOP_NS_FAST the namespace changes, which then run through the
 * metadata instance in this process (meta_local.h): whatever inside them
 * waits (an RPC when the instance declines, LMDB's writer lock held by
 * another process, another thread's group commit, a synchronous fsync, a
 * dircache poll) hands over through block_hint_wait, which FUSE threads
 * point at fuseloop_will_block. Handing over for every unlink cost ~2
 * sleeps of the reading thread and a futex sleep of the other per
 * delete: 35.5 us per delete instead of 19.7 with one thread (issue 13,
 * bench/history.md). Always (FUSELOOP_NS_FAST) lost on a loaded host: the
 * reading thread, preempted when its reply woke the caller, was runnable
 * instead of asleep in read(2) when the next request came, and creates
 * and deletes ran slower ("Fast namespace opcodes"); FUSELOOP_NS_AUTO
 * serves them here only while the host's CPUs are not contended
 * (fl_ns_serve_here). */
static int fl_fast(struct fuseloop *fl, const struct fuse_buf *b)
{
	if ((b->flags & FUSE_BUF_IS_FD) || b->size < sizeof(struct fuse_in_header))
		return 0;
	const struct fuse_in_header *h = b->mem;
	switch (h->opcode) {
	case FUSE_LOOKUP:
	case FUSE_GETATTR:
	case FUSE_FORGET:
	case FUSE_BATCH_FORGET:
	/* a small file read whole: answered from memory when its bytes
	 * came with the lookup (fuse_fs.c "Open-ahead") */
	case FUSE_OPEN:
	case FUSE_READ:
	case FUSE_FLUSH:
	case FUSE_RELEASE:
	/* the root's access ACL, asked on every path walk of a caller other
	 * than root: answered from fuse_fs.c's "no access ACL" cache */
	case FUSE_GETXATTR:
		return 1;
	case FUSE_CREATE:
	case FUSE_MKNOD:
	case FUSE_MKDIR:
	case FUSE_SYMLINK:
	case FUSE_LINK:
	case FUSE_UNLINK:
	case FUSE_RMDIR:
	case FUSE_RENAME:
	case FUSE_RENAME2:
	/* a write of a small file: one txn on the in-process store, as a
	 * create (docs/inline-data.md "Writing a small file"); op_write
	 * hands over first for any other write (chunks, RPC) */
	case FUSE_WRITE:
		if (fl->flags & FUSELOOP_NS_FAST)
			return 1;
		if (fl->flags & FUSELOOP_NS_AUTO)
			return fl_ns_serve_here(fl);
		return 0;
	}
	return 0;
}

static void fl_end_locked(struct fuseloop *fl, int err)
{
	if (err < 0 && !fl->error)
		fl->error = err;
	if (!fl->stop) {
		fl->stop = 1;
		for (struct fl_worker *w = fl->idle; w; w = w->next_idle)
			sem_post(&w->wake);
		fl->idle = NULL;
		/* a ring queue that never started (refused) or ended with
		 * its connection does not end the session: /dev/fuse's does */
		if (!fl->ring)
			sem_post(fl->done);
	}
}

static void *fl_main(void *arg)
{
	struct fl_worker *w = arg;
	struct fuseloop *fl = w->fl;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	/* each request is a short turn an application waits on */
	sched_hint_latency();
	fl_cur = w;
	/* waits deep in the meta client and the KV hand the reading over */
	block_hint_set(fuseloop_will_block);
	pthread_mutex_lock(&fl->mu);
	for (;;) {
		/* READER is set for us when TOLD; else wait our turn */
		while (!w->told && !fl->stop) {
			if (!fl->reader) {
				fl->reader = 1;
				w->told = 1;
				break;
			}
			/* Only a pop from IDLE posts WAKE, so when the wait
			 * returns this thread is told or the loop stops. */
			w->next_idle = fl->idle;
			fl->idle = w;
			pthread_mutex_unlock(&fl->mu);
			while (sem_wait(&w->wake) < 0 && errno == EINTR)
				;
			pthread_mutex_lock(&fl->mu);
		}
		if (fl->stop)
			break;
		w->told = 0;
		pthread_mutex_unlock(&fl->mu);

		if (fl->ring) {
			/* not a cancellation point: furing_stop wakes it */
			int rc = furing_receive(fl->ring, fl->q, &w->ent, &w->rbuf);
			pthread_mutex_lock(&fl->mu);
			fl->reader = 0;
			if (rc < 0) {
				fl_end_locked(fl, 0);
				break;
			}
			w->promoted = 0;
			struct fl_worker *wake = NULL;
			if (!fl_fast(fl, &w->rbuf)) {
				w->promoted = 1;
				wake = fl_hand_over_locked(fl);
			}
			pthread_mutex_unlock(&fl->mu);
			fl_wake(wake);
			fuse_session_process_buf(fl->se, &w->rbuf);
			furing_done(fl->ring, w->ent);
			pthread_mutex_lock(&fl->mu);
			continue;
		}

		/* A fast request is served by its reader, which stays the
		 * reader (fuseloop_will_block gives the reading up before a
		 * wait) and reads the next request without taking MU: two lock
		 * pairs fewer per 4 KiB read served from the page cache
		 * (bench/history.md, rr25). A stop cancels the read. */
		int res, served = 0;
		for (;;) {
			pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
			res = fuse_session_receive_buf(fl->se, &w->buf);
			pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
			if (res <= 0 || fuse_session_exited(fl->se) || !fl_fast(fl, &w->buf))
				break;
			w->promoted = 0;
			w->reading = 1;
			uint32_t op = ((const struct fuse_in_header *)w->buf.mem)->opcode;
			fuse_session_process_buf(fl->se, &w->buf);
			if (w->promoted) { /* the reading went over (fuseloop_will_block) */
				served = 1;
				break;
			}
			w->reading = 0;
			/* not after data: a spinning reader took CPU from 4 KiB
			 * random readers (0.92-0.97x IOPS, bench/history.md) */
			if (op != FUSE_READ && op != FUSE_WRITE)
				fl_spin(fl);
		}
		pthread_mutex_lock(&fl->mu);
		if (served)
			continue;
		fl->reader = 0;
		if ((res == -EINTR || res == -EAGAIN) && !fuse_session_exited(fl->se))
			continue;
		if (res <= 0 || fuse_session_exited(fl->se)) {
			fl_end_locked(fl, res == -EINTR || res == -EAGAIN ? 0 : res);
			break;
		}
		/* not a fast request: another thread reads meanwhile */
		w->promoted = 1;
		struct fl_worker *wake = fl_hand_over_locked(fl);
		pthread_mutex_unlock(&fl->mu);
		fl_wake(wake);
		fuse_session_process_buf(fl->se, &w->buf);
		pthread_mutex_lock(&fl->mu);
		/* nobody reads: this thread does (the next loop round) */
	}
	pthread_mutex_unlock(&fl->mu);
	return NULL;
}

/* Starts FL's first thread (it reads first). 0 or -errno. */
static int fl_start(struct fuseloop *fl, struct fuse_session *se, furing *ring, int q, sem_t *done,
                    int max_threads, unsigned flags)
{
	memset(fl, 0, sizeof(*fl));
	fl->flags = flags;
	fl->se = se;
	fl->ring = ring;
	fl->q = q;
	fl->done = done;
	fl->max_threads = max_threads > 0 ? max_threads : 1;
	atomic_init(&fl->pressure, -1);
	atomic_init(&fl->pressure_at, 0);
	const char *sp = getenv("CFS_FUSE_SPIN_US");
	unsigned long long us = sp ? strtoull(sp, NULL, 10) : SPIN_DEFAULT_US;
	fl->spin_ns = (us > SPIN_MAX_US ? SPIN_MAX_US : us) * 1000ull;
	fl->spin_force = getenv("CFS_FUSE_TEST_SPIN_FORCE") != NULL;
	pthread_mutex_init(&fl->mu, NULL);
	pthread_mutex_lock(&fl->mu);
	fl->reader = 1;
	int rc = fl_spawn_locked(fl);
	if (rc < 0) {
		fl->reader = 0;
		fl->stop = 1;
	}
	pthread_mutex_unlock(&fl->mu);
	return rc;
}

/* Stops FL (STOP set: no thread starts any more) and joins its threads. */
static int fl_join(struct fuseloop *fl)
{
	pthread_mutex_lock(&fl->mu);
	fl_end_locked(fl, 0);
	/* /dev/fuse readers sit in a cancellable read; ring readers were
	 * woken by furing_stop */
	if (!fl->ring)
		for (struct fl_worker *w = fl->all; w; w = w->next)
			pthread_cancel(w->th);
	pthread_mutex_unlock(&fl->mu);
	/* no thread is started once STOP is set, so the list is final */
	while (fl->all) {
		struct fl_worker *w = fl->all;
		fl->all = w->next;
		pthread_join(w->th, NULL);
		sem_destroy(&w->wake);
		free(w->buf.mem);
		free(w);
	}
	int err = fl->error;
	pthread_mutex_destroy(&fl->mu);
	return err;
}

int fuseloop_run(struct fuse_session *se, int max_threads, furing *ring, unsigned flags)
{
	sem_t done;
	sem_init(&done, 0, 0);
	int nq = ring ? furing_nqueues(ring) : 0;
	struct fuseloop *fls = calloc((size_t)nq + 1, sizeof(*fls));
	if (!fls) {
		sem_destroy(&done);
		return -ENOMEM;
	}
	int rc = fl_start(&fls[0], se, NULL, 0, &done, max_threads, flags);
	if (fls[0].spin_ns)
		LOG_NOTICE("fuse", "the reader polls up to %llu us for the next request%s",
		           (unsigned long long)(fls[0].spin_ns / 1000),
		           fls[0].spin_force ? "" : " while the CPUs are not contended");
	/* A queue's requests in flight are bounded by its entries: as many
	 * threads as those at most. Their first thread waits for the ring
	 * to start (after INIT) or be refused, and then ends. */
	for (int q = 0; q < nq; q++)
		if (fl_start(&fls[q + 1], se, ring, q, &done,
		             furing_queue_threads(ring) ? furing_queue_threads(ring)
		                                        : max_threads,
		             flags) < 0)
			LOG_WARN("fuse", "cannot start the thread of ring queue %d", q);

	if (rc == 0) {
		/* a stop signal interrupts the wait (EINTR) after libfuse's
		 * handler marked the session exited */
		while (!fuse_session_exited(se)) {
			if (sem_wait(&done) == 0)
				break;
		}
	}

	/* Also when a read ended the loop (the connection went away): the
	 * mount's unmount guard watches for an exited session to bound the
	 * joins below, as libfuse's own loop marks it. */
	fuse_session_exit(se);
	furing_stop(ring);
	int err = 0;
	for (int i = 0; i <= nq; i++) {
		int e = fl_join(&fls[i]);
		if (i == 0)
			err = e;
	}
	free(fls);
	sem_destroy(&done);
	if (rc < 0)
		return rc;
	return err < 0 ? err : 0;
}
