/* file_io.c - file ranges to parallel chunk requests, and open-file state.
 *
 * HOW IT WORKS. A read or write is cut into pieces at chunk boundaries.
 * Each piece is a job {chain, chunk id, offset in chunk, length, buffer
 * slice} of one call's group. The calling thread queues every piece but the
 * first on the shared worker queue, runs the first itself, then waits on
 * the group until its pending count reaches zero; the group keeps the first
 * error. A piece's buffer slice is disjoint from every other's, so workers
 * write into the caller's buffer without locks. Queued jobs live in the
 * caller's stack frame: the caller cannot return before its group drains,
 * so they stay valid.
 *
 * Open-file state lives in a hash table keyed by inode (mutex f->lock),
 * one entry per inode however many opens share it. Per entry, fi->lock
 * guards size, written, truncate_ver and dirty; the layout and perm never
 * change after creation (a file's layout is fixed at create).
 *
 * INVARIANTS. written only grows between truncates, and only after every
 * piece of a write succeeded. A state with refs == 0 is unlinked and freed
 * at once. The sync thread holds a reference while it reports an inode.
 */
#include "client/file_io.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/status.h"

#define FIO_BUCKETS 1024

struct file_io_inode {
	uint64_t ino;
	int refs;                   /* guarded by file_io.lock */
	struct file_io_inode *next; /* hash chain; guarded by file_io.lock */
	pthread_mutex_t lock;       /* guards the four fields below */
	uint64_t size;              /* size meta last reported */
	uint64_t written;           /* highest end written here under truncate_ver */
	uint64_t truncate_ver;
	int dirty;                      /* written moved since the last report */
	int wrote;                      /* anything written under truncate_ver */
	pthread_mutex_t append_lock;    /* see file_io_append_lock */
	struct meta_layout layout;      /* immutable */
	uint32_t perm[META_MAX_STRIPE]; /* immutable: meta_layout_perm of layout */
};

struct fio_group {
	pthread_mutex_t lock;
	pthread_cond_t done;
	int pending;
	int err;
};

struct fio_job {
	struct fio_job *next;
	struct fio_group *g;
	int write;
	uint32_t chain, index, off, len, chunk_size;
	uint64_t ino;
	char *buf;
};

struct file_io {
	struct file_io_opts o;
	pthread_mutex_t lock; /* inode table */
	struct file_io_inode *tab[FIO_BUCKETS];
	pthread_mutex_t qlock; /* job queue and stop */
	pthread_cond_t qcond;
	struct fio_job *qhead, *qtail;
	int stop;
	pthread_t *workers;
	int nworkers;
	pthread_t syncer;
	int syncer_started;
	pthread_cond_t sync_cond; /* with qlock: wakes the syncer to stop */
};

static void job_run(struct file_io *f, struct fio_job *j)
{
	int rc;
	if (j->write) {
		rc = f->o.backend.write(f->o.backend.arg, j->chain, j->ino, j->index, j->off,
		                        j->len, j->buf, j->chunk_size);
	} else {
		rc = f->o.backend.read(f->o.backend.arg, j->chain, j->ino, j->index, j->off, j->len,
		                       j->buf);
		if (rc >= 0) {
			uint32_t got = (uint32_t)rc > j->len ? j->len : (uint32_t)rc;
			memset(j->buf + got, 0, j->len - got);
			rc = 0;
		}
	}
	struct fio_group *g = j->g;
	pthread_mutex_lock(&g->lock);
	if (rc < 0 && !g->err)
		g->err = rc;
	if (--g->pending == 0)
		pthread_cond_signal(&g->done);
	pthread_mutex_unlock(&g->lock);
}

static void *worker_main(void *arg)
{
	struct file_io *f = arg;
	for (;;) {
		pthread_mutex_lock(&f->qlock);
		while (!f->qhead && !f->stop)
			pthread_cond_wait(&f->qcond, &f->qlock);
		struct fio_job *j = f->qhead;
		if (!j) {
			pthread_mutex_unlock(&f->qlock);
			return NULL;
		}
		f->qhead = j->next;
		if (!f->qhead)
			f->qtail = NULL;
		pthread_mutex_unlock(&f->qlock);
		job_run(f, j);
	}
}

/* Reports every dirty inode's length; called by the syncer and at free. */
static void sync_dirty(struct file_io *f)
{
	if (!f->o.meta)
		return;
	for (int b = 0; b < FIO_BUCKETS; b++) {
		for (;;) {
			struct file_io_inode *pick = NULL;
			pthread_mutex_lock(&f->lock);
			for (struct file_io_inode *fi = f->tab[b]; fi; fi = fi->next) {
				pthread_mutex_lock(&fi->lock);
				int d = fi->dirty;
				pthread_mutex_unlock(&fi->lock);
				if (d) {
					pick = fi;
					pick->refs++;
					break;
				}
			}
			pthread_mutex_unlock(&f->lock);
			if (!pick)
				break;
			struct meta_length len;
			file_io_length(pick, &len);
			struct meta_cred cr = {0, 0, 0, NULL};
			int rc = meta_client_sync(f->o.meta, &cr, pick->ino, &len, 0, NULL);
			if (rc < 0)
				LOG_INFO("client", "periodic length report failed: ino=%llu: %s",
				         (unsigned long long)pick->ino, cfs_strerror(rc));
			file_io_release(f, pick);
		}
	}
}

static void *syncer_main(void *arg)
{
	struct file_io *f = arg;
	pthread_mutex_lock(&f->qlock);
	while (!f->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)f->o.sync_interval_ms * 1000000ull;
		ts.tv_sec += (time_t)(ns / 1000000000ull);
		ts.tv_nsec = (long)(ns % 1000000000ull);
		pthread_cond_timedwait(&f->sync_cond, &f->qlock, &ts);
		if (f->stop)
			break;
		pthread_mutex_unlock(&f->qlock);
		sync_dirty(f);
		pthread_mutex_lock(&f->qlock);
	}
	pthread_mutex_unlock(&f->qlock);
	return NULL;
}

int file_io_new(const struct file_io_opts *o, file_io **out, char *err, size_t errlen)
{
	struct file_io *f;
	*out = NULL;
	if (!o->backend.read || !o->backend.write) {
		snprintf(err, errlen, "file_io: a backend with read and write is required");
		return -EINVAL;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->o = *o;
	if (f->o.workers <= 0)
		f->o.workers = 8;
	if (!f->o.sync_interval_ms)
		f->o.sync_interval_ms = 5000;
	pthread_mutex_init(&f->lock, NULL);
	pthread_mutex_init(&f->qlock, NULL);
	pthread_cond_init(&f->qcond, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&f->sync_cond, &ca);
	pthread_condattr_destroy(&ca);
	f->workers = calloc((size_t)f->o.workers, sizeof(*f->workers));
	if (!f->workers) {
		file_io_free(f);
		return -ENOMEM;
	}
	for (int i = 0; i < f->o.workers; i++) {
		int rc = pthread_create(&f->workers[i], NULL, worker_main, f);
		if (rc) {
			snprintf(err, errlen, "file_io: cannot start a worker: %s", strerror(rc));
			file_io_free(f);
			return -rc;
		}
		f->nworkers++;
	}
	if (f->o.meta) {
		int rc = pthread_create(&f->syncer, NULL, syncer_main, f);
		if (rc) {
			snprintf(err, errlen, "file_io: cannot start the sync thread: %s",
			         strerror(rc));
			file_io_free(f);
			return -rc;
		}
		f->syncer_started = 1;
	}
	*out = f;
	return 0;
}

void file_io_free(file_io *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->qlock);
	f->stop = 1;
	pthread_cond_broadcast(&f->qcond);
	pthread_cond_broadcast(&f->sync_cond);
	pthread_mutex_unlock(&f->qlock);
	for (int i = 0; i < f->nworkers; i++)
		pthread_join(f->workers[i], NULL);
	if (f->syncer_started) {
		pthread_join(f->syncer, NULL);
		sync_dirty(f);
	}
	for (int b = 0; b < FIO_BUCKETS; b++) {
		while (f->tab[b]) {
			struct file_io_inode *fi = f->tab[b];
			LOG_WARN("client", "file_io_free: inode still open: ino=%llu refs=%d",
			         (unsigned long long)fi->ino, fi->refs);
			f->tab[b] = fi->next;
			pthread_mutex_destroy(&fi->lock);
			pthread_mutex_destroy(&fi->append_lock);
			free(fi);
		}
	}
	free(f->workers);
	pthread_cond_destroy(&f->sync_cond);
	pthread_cond_destroy(&f->qcond);
	pthread_mutex_destroy(&f->qlock);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

static unsigned bucket(uint64_t ino)
{
	return (unsigned)((ino * 0x9E3779B97F4A7C15ull) >> 54) % FIO_BUCKETS;
}

void file_io_update(file_io_inode *fi, const struct meta_inode *in)
{
	pthread_mutex_lock(&fi->lock);
	if (in->truncate_ver > fi->truncate_ver) {
		fi->truncate_ver = in->truncate_ver;
		fi->written = 0;
		fi->wrote = 0;
		fi->dirty = 0;
	}
	fi->size = in->size;
	pthread_mutex_unlock(&fi->lock);
}

int file_io_open(file_io *f, const struct meta_inode *in, file_io_inode **out)
{
	*out = NULL;
	if (in->type != META_T_FILE || !in->has_layout ||
	    !meta_layout_chunk_ok(in->layout.chunk_size) || !in->layout.stripe ||
	    in->layout.stripe > META_MAX_STRIPE || in->layout.nchains != in->layout.stripe)
		return -EINVAL;
	unsigned b = bucket(in->ino);
	pthread_mutex_lock(&f->lock);
	for (struct file_io_inode *fi = f->tab[b]; fi; fi = fi->next) {
		if (fi->ino == in->ino) {
			fi->refs++;
			pthread_mutex_unlock(&f->lock);
			file_io_update(fi, in);
			*out = fi;
			return 0;
		}
	}
	struct file_io_inode *fi = calloc(1, sizeof(*fi));
	if (!fi) {
		pthread_mutex_unlock(&f->lock);
		return -ENOMEM;
	}
	fi->ino = in->ino;
	fi->refs = 1;
	pthread_mutex_init(&fi->lock, NULL);
	pthread_mutex_init(&fi->append_lock, NULL);
	fi->size = in->size;
	fi->truncate_ver = in->truncate_ver;
	fi->layout = in->layout;
	meta_layout_perm(fi->layout.seed, fi->layout.stripe, fi->perm);
	fi->next = f->tab[b];
	f->tab[b] = fi;
	pthread_mutex_unlock(&f->lock);
	*out = fi;
	return 0;
}

file_io_inode *file_io_find(file_io *f, uint64_t ino)
{
	struct file_io_inode *fi;
	pthread_mutex_lock(&f->lock);
	for (fi = f->tab[bucket(ino)]; fi; fi = fi->next)
		if (fi->ino == ino) {
			fi->refs++;
			break;
		}
	pthread_mutex_unlock(&f->lock);
	return fi;
}

void file_io_release(file_io *f, file_io_inode *fi)
{
	if (!fi)
		return;
	pthread_mutex_lock(&f->lock);
	if (--fi->refs > 0) {
		pthread_mutex_unlock(&f->lock);
		return;
	}
	struct file_io_inode **pp = &f->tab[bucket(fi->ino)];
	while (*pp != fi)
		pp = &(*pp)->next;
	*pp = fi->next;
	pthread_mutex_unlock(&f->lock);
	pthread_mutex_destroy(&fi->lock);
	pthread_mutex_destroy(&fi->append_lock);
	free(fi);
}

uint64_t file_io_size(file_io_inode *fi)
{
	pthread_mutex_lock(&fi->lock);
	uint64_t s = fi->size > fi->written ? fi->size : fi->written;
	pthread_mutex_unlock(&fi->lock);
	return s;
}

int file_io_length(file_io_inode *fi, struct meta_length *out)
{
	pthread_mutex_lock(&fi->lock);
	out->length = fi->written;
	out->truncate_ver = fi->truncate_ver;
	int wrote = fi->wrote;
	fi->dirty = 0;
	pthread_mutex_unlock(&fi->lock);
	return wrote;
}

const struct meta_layout *file_io_layout(file_io_inode *fi)
{
	return &fi->layout;
}

void file_io_append_lock(file_io_inode *fi)
{
	pthread_mutex_lock(&fi->append_lock);
}

void file_io_append_unlock(file_io_inode *fi)
{
	pthread_mutex_unlock(&fi->append_lock);
}

/* Cuts [off, off+len) into chunk pieces and runs them; 0 or the first error. */
static int run_range(struct file_io *f, struct file_io_inode *fi, int write, uint64_t off,
                     size_t len, char *buf)
{
	uint32_t cs = fi->layout.chunk_size;
	uint64_t first = off / cs, last = (off + len - 1) / cs;
	if (last > UINT32_MAX)
		return -EFBIG;
	size_t n = (size_t)(last - first + 1);
	struct fio_job stackjobs[16];
	struct fio_job *jobs = n <= 16 ? stackjobs : calloc(n, sizeof(*jobs));
	if (!jobs)
		return -ENOMEM;
	struct fio_group g = {.pending = (int)n};
	pthread_mutex_init(&g.lock, NULL);
	pthread_cond_init(&g.done, NULL);
	uint64_t pos = off;
	for (size_t i = 0; i < n; i++) {
		uint32_t index = (uint32_t)(first + i);
		uint32_t in_off = (uint32_t)(pos % cs);
		uint64_t end = (uint64_t)index * cs + cs;
		if (end > off + len)
			end = off + len;
		jobs[i] = (struct fio_job){
		    .g = &g,
		    .write = write,
		    .chain = meta_layout_chain(&fi->layout, fi->perm, index),
		    .index = index,
		    .off = in_off,
		    .len = (uint32_t)(end - pos),
		    .chunk_size = cs,
		    .ino = fi->ino,
		    .buf = buf + (pos - off),
		};
		pos = end;
	}
	if (n > 1) {
		pthread_mutex_lock(&f->qlock);
		for (size_t i = 1; i < n; i++) {
			jobs[i].next = NULL;
			if (f->qtail)
				f->qtail->next = &jobs[i];
			else
				f->qhead = &jobs[i];
			f->qtail = &jobs[i];
		}
		pthread_cond_broadcast(&f->qcond);
		pthread_mutex_unlock(&f->qlock);
	}
	job_run(f, &jobs[0]);
	pthread_mutex_lock(&g.lock);
	while (g.pending > 0)
		pthread_cond_wait(&g.done, &g.lock);
	int err = g.err;
	pthread_mutex_unlock(&g.lock);
	pthread_cond_destroy(&g.done);
	pthread_mutex_destroy(&g.lock);
	if (jobs != stackjobs)
		free(jobs);
	return err;
}

ssize_t file_io_read(file_io *f, file_io_inode *fi, uint64_t off, size_t len, void *buf)
{
	uint64_t size = file_io_size(fi);
	if (off >= size || len == 0)
		return 0;
	if (len > size - off)
		len = (size_t)(size - off);
	int rc = run_range(f, fi, 0, off, len, buf);
	return rc < 0 ? rc : (ssize_t)len;
}

ssize_t file_io_write(file_io *f, file_io_inode *fi, uint64_t off, size_t len, const void *buf)
{
	if (len == 0)
		return 0;
	if (off + len < off)
		return -EFBIG;
	int rc = run_range(f, fi, 1, off, len, (char *)buf);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&fi->lock);
	if (off + len > fi->written)
		fi->written = off + len;
	fi->wrote = 1;
	fi->dirty = 1;
	pthread_mutex_unlock(&fi->lock);
	return (ssize_t)len;
}
