/* fuse_loop.c - leader/follower session loop with a LIFO of idle threads
 * (fuse_loop.h).
 *
 * State (all under fuseloop.mu): READER says whether a thread is reading
 * /dev/fuse or has been told to (at most one at a time); IDLE is the
 * stack of threads waiting to be told; the thread list is for the stop.
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
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/sched_hint.h"

struct fl_worker {
	struct fl_worker *next_idle; /* IDLE stack link */
	struct fl_worker *next;      /* every worker, for the stop */
	struct fuseloop *fl;
	pthread_t th;
	pthread_cond_t cv;
	int told;     /* a hand-over made this thread the reader */
	int promoted; /* this request already handed the reading over */
	struct fuse_buf buf;
};

struct fuseloop {
	struct fuse_session *se;
	pthread_mutex_t mu;
	int reader;
	int stop;
	int error;    /* first read error (-errno) */
	int nthreads, max_threads;
	struct fl_worker *idle;
	struct fl_worker *all;
	sem_t done;   /* posted when a worker sees the session end */
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
	pthread_cond_init(&w->cv, NULL);
	/* Signals go to the thread that runs fuseloop_run (its wait is
	 * what a stop signal interrupts), as in libfuse's loop. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = pthread_create(&w->th, NULL, fl_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		pthread_cond_destroy(&w->cv);
		free(w);
		return -rc;
	}
	w->next = fl->all;
	fl->all = w;
	fl->nthreads++;
	return 0;
}

/* Lets another thread read the next request while the caller processes
 * one: the most recently idle thread, else a new one. mu held. */
static void fl_hand_over_locked(struct fuseloop *fl)
{
	if (fl->reader || fl->stop)
		return;
	struct fl_worker *w = fl->idle;
	if (w) {
		fl->idle = w->next_idle;
		w->told = 1;
		fl->reader = 1;
		pthread_cond_signal(&w->cv);
		return;
	}
	if (fl->nthreads >= fl->max_threads)
		return; /* every thread busy: the next to finish reads */
	fl->reader = 1;
	if (fl_spawn_locked(fl) < 0) {
		fl->reader = 0;
		if (fl->nthreads == 0)
			LOG_WARN("fuse", "cannot start a FUSE thread");
	}
}

void fuseloop_will_block(void)
{
	struct fl_worker *w = fl_cur;
	if (!w || w->promoted)
		return;
	w->promoted = 1;
	pthread_mutex_lock(&w->fl->mu);
	fl_hand_over_locked(w->fl);
	pthread_mutex_unlock(&w->fl->mu);
}

/* Opcodes the mount usually answers from memory (its handlers call
 * fuseloop_will_block before anything that waits). */
static int fl_fast(const struct fuse_buf *b)
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
		return 1;
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
			pthread_cond_signal(&w->cv);
		fl->idle = NULL;
		sem_post(&fl->done);
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
	pthread_mutex_lock(&fl->mu);
	for (;;) {
		/* READER is set for us when TOLD; else wait our turn */
		while (!w->told && !fl->stop) {
			if (!fl->reader) {
				fl->reader = 1;
				w->told = 1;
				break;
			}
			w->next_idle = fl->idle;
			fl->idle = w;
			while (!w->told && !fl->stop)
				pthread_cond_wait(&w->cv, &fl->mu);
		}
		if (fl->stop)
			break;
		w->told = 0;
		pthread_mutex_unlock(&fl->mu);

		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		int res = fuse_session_receive_buf(fl->se, &w->buf);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);

		pthread_mutex_lock(&fl->mu);
		fl->reader = 0;
		if ((res == -EINTR || res == -EAGAIN) && !fuse_session_exited(fl->se))
			continue;
		if (res <= 0 || fuse_session_exited(fl->se)) {
			fl_end_locked(fl, res == -EINTR || res == -EAGAIN ? 0 : res);
			break;
		}
		w->promoted = 0;
		if (!fl_fast(&w->buf)) {
			w->promoted = 1;
			fl_hand_over_locked(fl);
		}
		pthread_mutex_unlock(&fl->mu);
		fuse_session_process_buf(fl->se, &w->buf);
		pthread_mutex_lock(&fl->mu);
		/* nobody reads: this thread does (the next loop round) */
	}
	pthread_mutex_unlock(&fl->mu);
	return NULL;
}

int fuseloop_run(struct fuse_session *se, int max_threads)
{
	struct fuseloop fl;
	memset(&fl, 0, sizeof(fl));
	fl.se = se;
	fl.max_threads = max_threads > 0 ? max_threads : 1;
	pthread_mutex_init(&fl.mu, NULL);
	sem_init(&fl.done, 0, 0);

	pthread_mutex_lock(&fl.mu);
	fl.reader = 1;
	int rc = fl_spawn_locked(&fl);
	if (rc < 0)
		fl.reader = 0;
	pthread_mutex_unlock(&fl.mu);

	if (rc == 0) {
		/* a stop signal interrupts the wait (EINTR) after libfuse's
		 * handler marked the session exited */
		while (!fuse_session_exited(se)) {
			if (sem_wait(&fl.done) == 0)
				break;
		}
	}

	/* Also when a read ended the loop (the connection went away): the
	 * mount's unmount guard watches for an exited session to bound the
	 * joins below, as libfuse's own loop marks it. */
	fuse_session_exit(se);
	pthread_mutex_lock(&fl.mu);
	fl_end_locked(&fl, 0);
	for (struct fl_worker *w = fl.all; w; w = w->next)
		pthread_cancel(w->th);
	pthread_mutex_unlock(&fl.mu);
	/* no thread is started once STOP is set, so the list is final */
	while (fl.all) {
		struct fl_worker *w = fl.all;
		fl.all = w->next;
		pthread_join(w->th, NULL);
		pthread_cond_destroy(&w->cv);
		free(w->buf.mem);
		free(w);
	}
	int err = fl.error;
	sem_destroy(&fl.done);
	pthread_mutex_destroy(&fl.mu);
	if (rc < 0)
		return rc;
	return err < 0 ? err : 0;
}
