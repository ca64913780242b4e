/* craq_list.c - the listing pool: the LMDB listings a request waits on
 * (a SYNCING target's answer to its predecessor's DUMP, craq_resync.c; a
 * head's listing of a range remove, craq_write.c) run on a small pool of
 * their own, not on a loop (they read LMDB) and not on the scheduler
 * thread: that one runs every target's forward retries and held
 * truncates, and a target whose disk hangs in a listing held all of them
 * (test_craq.c dump_hung_sibling, rm_hung_sibling).
 *
 * Each target has a FIFO of jobs and at most one of them runs at a time,
 * so one target's listings are done (and answered) in the order they
 * came; the threads (min(targets, LIST_THREADS_MAX)) take targets round
 * robin. What a hung listing holds is bounded: one pool thread, and the
 * jobs its caller lets queue behind it (craq_list_queue's MAX; more are
 * refused at once with -CFS_EUNAVAIL, which the sender retries). With
 * LIST_THREADS_MAX targets hung at once the other targets' listings wait
 * too, and nothing else. A job's listing counts as local engine work for
 * the I/O watchdog (the job enters it, stor_iowatch.c): a target whose
 * listing hangs fences itself like one whose apply hangs.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "common/status.h"
#include "common/xalloc.h"
#include "storage/storage_int.h"

#define LIST_THREADS_MAX 4

struct list_queue {
	struct craq_list_job *head, *tail;
	uint32_t n; /* queued, not counting the running one */
	bool busy;  /* a thread runs one of this target's jobs */
};

struct craq_list {
	pthread_mutex_t mu; /* guards q[], rr, stop */
	pthread_cond_t cv;  /* a job queued, a target freed, or the stop */
	size_t nq;          /* = s->nt */
	size_t rr;          /* the next target a thread looks at first */
	bool stop;
	size_t nthr;
	pthread_t thr[LIST_THREADS_MAX];
	struct list_queue q[];
};

static void *list_main(void *arg)
{
	struct storage_service *s = arg;
	struct craq_list *d = s->list;
	pthread_mutex_lock(&d->mu);
	while (!d->stop) {
		size_t k = d->nq;
		for (size_t i = 0; i < d->nq && k == d->nq; i++) {
			size_t c = (d->rr + i) % d->nq;
			if (d->q[c].head && !d->q[c].busy)
				k = c;
		}
		if (k == d->nq) {
			pthread_cond_wait(&d->cv, &d->mu);
			continue;
		}
		struct list_queue *q = &d->q[k];
		struct craq_list_job *j = q->head;
		q->head = j->next;
		if (!q->head)
			q->tail = NULL;
		q->n--;
		q->busy = true;
		d->rr = (k + 1) % d->nq;
		pthread_mutex_unlock(&d->mu);
		j->run(j);
		pthread_mutex_lock(&d->mu);
		q->busy = false;
		/* The target's next job may wait for a thread that found it busy. */
		if (q->head)
			pthread_cond_broadcast(&d->cv);
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

int craq_list_start(struct storage_service *s)
{
	struct craq_list *d = xcalloc(1, sizeof(*d) + s->nt * sizeof(d->q[0]));
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	d->nq = s->nt;
	s->list = d;
	size_t want = s->nt < LIST_THREADS_MAX ? s->nt : LIST_THREADS_MAX;
	for (size_t k = 0; k < want; k++) {
		if (pthread_create(&d->thr[k], NULL, list_main, s))
			return -EAGAIN;
		d->nthr = k + 1;
	}
	return 0;
}

void craq_list_stop(struct storage_service *s)
{
	struct craq_list *d = s->list;
	if (!d)
		return;
	pthread_mutex_lock(&d->mu);
	d->stop = true;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
	for (size_t k = 0; k < d->nthr; k++)
		pthread_join(d->thr[k], NULL);
	/* The threads are gone: what is still queued is answered here. */
	for (size_t k = 0; k < d->nq; k++)
		while (d->q[k].head) {
			struct craq_list_job *j = d->q[k].head;
			d->q[k].head = j->next;
			j->drop(j);
		}
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	free(d);
	s->list = NULL;
}

int craq_list_queue(struct storage_service *s, struct craq_list_job *j, uint32_t max)
{
	struct craq_list *d = s->list;
	struct list_queue *q = &d->q[j->t - s->t];
	pthread_mutex_lock(&d->mu);
	bool full = d->stop || q->n >= max;
	if (!full) {
		j->next = NULL;
		if (q->tail)
			q->tail->next = j;
		else
			q->head = j;
		q->tail = j;
		q->n++;
		pthread_cond_signal(&d->cv);
	}
	pthread_mutex_unlock(&d->mu);
	return full ? -CFS_EUNAVAIL : 0;
}
