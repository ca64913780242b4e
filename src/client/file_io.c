/* file_io.c - file ranges to parallel chunk requests, and open-file state.
 *
 * HOW IT WORKS. A read or write is cut into pieces at chunk boundaries,
 * and a read also every read_piece bytes inside a chunk: the pieces of one
 * chunk then go to different replicas at once (storage_client rotates
 * over the serving ones), so a 1 MiB read overlaps three disks' reads and
 * the transfers instead of waiting for one replica. Writes are not cut
 * inside a chunk: the chain head takes a per-chunk lock, so pieces of one
 * chunk would only queue there, each paying the whole chain's latency.
 * Reads are cut inside chunks only while fewer than FIO_SPLIT_BUSY reads
 * are in progress: measured on 2 cores, the extra requests cost more CPU
 * than the overlap gains once several readers keep the replicas busy.
 * With a read_batch backend the pieces of one read go out in one call
 * from the calling thread; otherwise the pieces but the first are queued
 * to the worker pool.
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
 * WRITE-BEHIND (file_io_write_behind). The data is copied into a struct
 * fio_wb, its pieces go to the worker queue, and the call returns; the
 * worker that finishes the last piece runs wb_done, which raises written
 * (or keeps the error in wb_err), unlinks it from fi->wb and wakes waiters
 * on fi->wb_cond. A wb holds a reference on its inode. Ordering: a write
 * waits while a queued one touches the same chunks (the head applies
 * writes of a chunk in arrival order, so two in flight could land in
 * either order); a read waits while a queued one overlaps its bytes.
 * Budget: write_behind bytes per inode and write_behind_total in all
 * (f->wb_lock), taken before fi->lock and never while holding it.
 *
 * READ-AHEAD (file_io_read). Per inode up to FIO_RA_STREAMS streams,
 * each remembering where its last read ended; a read starting there
 * continues that stream (sequential), any other read replaces the least
 * recently used stream. A sequential read
 * first takes what it can from the inode's units (struct fio_ra, 1 MiB
 * each, one worker job per chunk it spans: units in flight already
 * overlap the replicas, and cutting them into read pieces as well cost
 * more CPU than it gained with several readers), waiting for a unit still in
 * flight; if the units cover the whole range it is served from them,
 * else read normally. Then it launches units up to read_ahead bytes past
 * its end (never past the known size, never while write-behind writes
 * are in flight; units are shared, so none is fetched twice). After each
 * read, units outside every stream's window [next, next + read_ahead +
 * unit) are dropped: a seek cancels what its stream fetched. A unit in flight holds a reference on its inode; dropping one
 * in flight only marks it, and its last piece frees it (ra_done). Units
 * older than read_ahead_ttl_ms are not served (the staleness bound for
 * other mounts' writes); every write through this file_io drops them
 * when it ends (a unit launched during a write could hold old bytes),
 * and write-behind drops them when queued. fi->ra, ra_st and the units'
 * ready/dropped/err/holds are guarded by fi->lock. A read one finished
 * unit holds whole may be handed over by reference
 * (file_io_read_async_ref: the mount's FUSE reply is written from the
 * unit, saving a 1 MiB copy per read): a unit's bytes never change once
 * ready, so replying from it later is replying with a copy made at the
 * read; a dropped unit that is held is freed by its last unref.
 *
 * Small files read at random. git's index-pack, resolving a pack it has
 * just written, reads thousands of objects of tens of bytes at random
 * offsets of it (a 10k-file clone: ~10,000 FUSE reads of a 0.7 MB pack,
 * each a storage round trip, 60 % of the clone's FUSE time). So a read
 * that continues no stream, of at most FIO_RA_RAND_MAX bytes, of a file
 * of at most FIO_RA_SMALL bytes, fetches the whole file as one unit from
 * the inode's second such read on (one read alone costs no more than
 * before), and such reads are served from units like sequential ones:
 * under the same staleness bound and the same drops on writes. The unit
 * is kept while the inode is open (at most FIO_RA_SMALL bytes each).
 *
 * INVARIANTS. written only grows between truncates, and only after every
 * piece of a write succeeded. A state with refs == 0 is unlinked and freed
 * at once. The sync thread holds a reference while it reports an inode.
 */
#include "client/file_io.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/file_io_idata.h"
#include "common/block_hint.h"
#include "common/clock.h"
#include "common/crc32c.h"
#include "common/iobuf.h"
#include "common/log.h"
#include "common/status.h"

#define FIO_BUCKETS 1024
#define FIO_RA_UNIT (1u << 20) /* read-ahead unit: one FUSE request's worth */
#define FIO_RA_STREAMS 4       /* sequential readers followed per inode */
/* Random reads of a file up to FIO_RA_SMALL bytes, each at most
 * FIO_RA_RAND_MAX, fetch the whole file as one unit from the second such
 * read on (READ-AHEAD, "small files read at random"). */
#define FIO_RA_SMALL FIO_RA_UNIT
#define FIO_RA_RAND_MAX (16u << 10)

/* One sequential reader of an inode: reads starting at next continue it. */
struct fio_ra_stream {
	uint64_t next; /* where its next read starts */
	uint64_t fill; /* end of the last unit launched for it */
	uint64_t used; /* LRU stamp (0: never) */
};
#define FIO_SPLIT_BUSY 2 /* reads are cut at read_piece while fewer are in flight */

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
	int rep_valid;                  /* rep_* hold a length meta acknowledged */
	uint64_t rep_len, rep_tv;
	/* Written under an older truncate_ver and not reported when this
	 * client heard of a newer one (0: nothing): some of it may have landed
	 * after that truncate and must extend the file, so it is reported
	 * under stale_tv, which meta settles against storage (meta_file.c
	 * "Length"), until meta acknowledged it. */
	uint64_t stale_len, stale_tv;
	struct fio_wb *wb;              /* write-behind writes in flight; under lock */
	uint64_t wb_bytes;              /* their bytes; under lock */
	int wb_err;                     /* first failed write-behind not yet reported */
	uint64_t wb_seq;                /* write-behind writes queued so far; under lock */
	pthread_cond_t wb_cond;         /* with lock: a write-behind write finished */
	pthread_mutex_t append_lock;    /* see file_io_append_lock */
	struct fio_ra *ra;              /* read-ahead units; under lock */
	struct fio_ra_stream ra_st[FIO_RA_STREAMS]; /* sequential readers; under lock */
	uint64_t ra_clock;              /* LRU stamp source for ra_st; under lock */
	int ra_rand;                    /* small random reads seen (capped at 2); under lock */
	pthread_cond_t ra_cond;         /* with lock: a unit finished */
	struct meta_layout layout;      /* immutable */
	uint32_t perm[META_MAX_STRIPE]; /* immutable: meta_layout_perm of layout */
	struct fio_idata *idata;        /* set at creation: inline data (file_io_idata.c);
	                                   NULL: chunked */
};

struct fio_group {
	pthread_mutex_t lock;
	pthread_cond_t done;
	int pending;
	int err;
	struct fio_wb *wb; /* a write-behind write: finished by wb_done, not waited for */
	struct fio_ra *ra; /* a read-ahead unit: finished by ra_done, not waited for */
};

/* One read-ahead unit: [off, off+len) of the file fetched into data. */
struct fio_ra {
	struct fio_ra *next;      /* file_io_inode.ra while listed */
	struct file_io_inode *fi; /* holds a reference while in flight */
	uint64_t off;
	uint32_t len;
	uint64_t born_ms;         /* fetch started: the data is no older */
	int ready;                /* fetch finished (err has its result); under fi->lock */
	int dropped;              /* unlisted while in flight or held: ra_done or the
	                             last file_io_read_unref frees it */
	int holds;                /* readers replying from data (file_io_read_async_ref);
	                             each holds a reference on fi; under fi->lock */
	int waiters;              /* readers in ra_read waiting for it to be ready;
	                             the last one out frees it if it was dropped
	                             meanwhile; under fi->lock */
	int err;
	struct fio_group g;
	struct fio_job *jobs;
	char *data;
	int pooled; /* data is an iobuf_get buffer */
};

/* One write-behind write: a private copy of the data and its pieces. */
struct fio_wb {
	struct fio_wb *next;     /* file_io_inode.wb */
	struct file_io_inode *fi; /* holds a reference */
	uint64_t off, len;
	uint64_t truncate_ver;   /* fi's when queued: a later truncate voids it */
	uint64_t seq;            /* fi->wb_seq when queued */
	struct fio_group g;
	struct fio_job *jobs;
	char *data;
};

struct fio_job {
	struct fio_job *next;
	struct fio_group *g;
	int write;
	uint32_t chain, index, off, len, chunk_size;
	uint64_t ino;
	char *buf;
	int has_crc; /* write: crc is the caller's CRC32C of the piece */
	uint32_t crc;
	uint32_t wflags; /* write with has_crc: FILE_IO_WF_* for write_crc */
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
	_Atomic int reads;        /* file_io_read calls in progress */
	_Atomic int areads;       /* async reads whose DONE has not returned yet */
	pthread_mutex_t wb_lock;  /* guards wb_total */
	pthread_cond_t wb_cond;   /* wb_total went down */
	uint64_t wb_total;        /* write-behind bytes in flight, all inodes */
};

static void wb_done(struct file_io *f, struct fio_wb *w);
static void ra_done(struct file_io *f, struct fio_ra *u);
static void ra_drop_all(struct file_io_inode *fi);
static void ra_free_ready(struct file_io_inode *fi);
static void wb_wait_overlap(struct file_io_inode *fi, uint64_t off, uint64_t end, int chunks);

/* Appends JOBS (N >= 1) to the worker queue and wakes as many workers. */
static void queue_jobs(file_io *f, struct fio_job *jobs, size_t n)
{
	pthread_mutex_lock(&f->qlock);
	for (size_t i = 0; i < n; i++) {
		jobs[i].next = NULL;
		if (f->qtail)
			f->qtail->next = &jobs[i];
		else
			f->qhead = &jobs[i];
		f->qtail = &jobs[i];
	}
	if (n > 1)
		pthread_cond_broadcast(&f->qcond);
	else
		pthread_cond_signal(&f->qcond);
	pthread_mutex_unlock(&f->qlock);
}

static void job_run(struct file_io *f, struct fio_job *j)
{
	int rc;
	if (j->write && j->has_crc && f->o.backend.write_crc) {
		rc = f->o.backend.write_crc(f->o.backend.arg, j->chain, j->ino, j->index, j->off,
		                            j->len, j->buf, j->chunk_size, j->crc, j->wflags);
	} else if (j->write) {
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
	int last = --g->pending == 0;
	/* Read under the lock: a waited-on group lives in its waiter's stack
	 * frame, gone once the waiter saw pending reach 0. */
	struct fio_wb *wb = g->wb;
	struct fio_ra *ra = g->ra;
	if (last && !wb && !ra)
		pthread_cond_signal(&g->done);
	pthread_mutex_unlock(&g->lock);
	/* Nobody waits on a write-behind or read-ahead group: its last piece
	 * finishes it (and frees the group with it). */
	if (last && wb)
		wb_done(f, wb);
	else if (last && ra)
		ra_done(f, ra);
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
	if (!f->o.read_piece)
		f->o.read_piece = 256u << 10;
	if (f->o.write_behind && !f->o.write_behind_total)
		f->o.write_behind_total = 64u << 20;
	if (!f->o.read_ahead)
		f->o.read_ahead = 4 << 20;
	if (!f->o.read_ahead_ttl_ms)
		f->o.read_ahead_ttl_ms = 500;
	pthread_mutex_init(&f->wb_lock, NULL);
	pthread_cond_init(&f->wb_cond, NULL);
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
	file_io_wait_reads(f);
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
			ra_free_ready(fi);
			pthread_cond_destroy(&fi->ra_cond);
			pthread_cond_destroy(&fi->wb_cond);
			pthread_mutex_destroy(&fi->lock);
			pthread_mutex_destroy(&fi->append_lock);
			free(fi);
		}
	}
	free(f->workers);
	pthread_cond_destroy(&f->wb_cond);
	pthread_mutex_destroy(&f->wb_lock);
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

/* Writes zeros over [OFF, END) in pieces of at most 1 MiB. */
static int zero_range(file_io *f, file_io_inode *fi, uint64_t off, uint64_t end)
{
	const size_t piece = 1u << 20;
	char *z = calloc(1, piece);
	int rc = 0;
	if (!z)
		return -ENOMEM;
	while (off < end && rc == 0) {
		size_t n = end - off < piece ? (size_t)(end - off) : piece;
		ssize_t w = file_io_write(f, fi, off, n, z);
		if (w < 0)
			rc = (int)w;
		off += n;
	}
	free(z);
	return rc;
}

int file_io_punch(file_io *f, file_io_inode *fi, uint64_t off, uint64_t len)
{
	if (fio_idata_on(fi->idata)) {
		int rc = fio_idata_convert(f, fi, fi->idata);
		if (rc < 0)
			return rc;
	}
	uint64_t end = off + len, cs = fi->layout.chunk_size, size = file_io_size(fi);
	if (len == 0)
		return 0;
	/* Whole chunks [a, b) inside the range, short of the last chunk. */
	uint64_t a = (off + cs - 1) / cs, b = end / cs;
	uint64_t last = size ? (size - 1) / cs : 0;
	if (b > last)
		b = last;
	if (!f->o.backend.remove || a >= b || b > UINT32_MAX)
		return zero_range(f, fi, off, end);
	int rc = zero_range(f, fi, off, a * cs);
	pthread_mutex_lock(&fi->lock);
	ra_drop_all(fi);
	pthread_mutex_unlock(&fi->lock);
	/* Each chain holds its own share of [a, b): ask every chain of the
	 * layout once. */
	for (uint32_t i = 0; rc == 0 && i < fi->layout.nchains; i++)
		rc = f->o.backend.remove(f->o.backend.arg, fi->layout.chains[i], fi->ino, (uint32_t)a,
		                         (uint32_t)b);
	if (rc == 0)
		rc = zero_range(f, fi, b * cs, end);
	return rc;
}

void file_io_invalidate(file_io_inode *fi)
{
	pthread_mutex_lock(&fi->lock);
	ra_drop_all(fi);
	pthread_mutex_unlock(&fi->lock);
	fio_idata_invalidate(fi->idata); /* cached inline bytes too */
}

void file_io_update(file_io_inode *fi, const struct meta_inode *in)
{
	fio_idata_update(fi->idata, in);
	pthread_mutex_lock(&fi->lock);
	if (in->truncate_ver > fi->truncate_ver) {
		ra_drop_all(fi);
		if (fi->wrote && !(fi->rep_valid && fi->rep_len == fi->written &&
		                   fi->rep_tv == fi->truncate_ver)) {
			if (!fi->stale_len)
				fi->stale_tv = fi->truncate_ver;
			if (fi->written > fi->stale_len)
				fi->stale_len = fi->written;
		}
		fi->truncate_ver = in->truncate_ver;
		fi->written = 0;
		fi->wrote = 0;
		fi->dirty = 0;
	}
	fi->size = in->size;
	pthread_mutex_unlock(&fi->lock);
}

/* INODE RECORDS. A struct file_io_inode is 2.5 KiB (its layout's chain
 * table and permutation), past glibc's thread cache (1,032 bytes): its
 * calloc took _int_malloc's large-request path (fast bins consolidated
 * first) and cleared it, ~2,800 instructions of every create through the
 * mount (callgrind), and its free _int_free's locked path. Each thread
 * keeps the last record it freed, and its next file_io_open takes that
 * one back, cleared; a key frees a thread's spare when the thread ends.
 * A record is never shared by the spare: it is only there once freed. */
static __thread struct file_io_inode *fi_spare;
static __thread int fi_spare_armed; /* fi_spare_key set for this thread */
static pthread_key_t fi_spare_key;
static pthread_once_t fi_spare_once = PTHREAD_ONCE_INIT;
static int fi_spare_ok; /* the key exists */

static void fi_spare_drop(void *unused)
{
	(void)unused;
	free(fi_spare);
	fi_spare = NULL;
}

static void fi_spare_init(void)
{
	fi_spare_ok = pthread_key_create(&fi_spare_key, fi_spare_drop) == 0;
#if defined(__SANITIZE_ADDRESS__)
	fi_spare_ok = 0; /* ASan builds: every record fresh, so a use after free shows */
#endif
}

/* A zeroed record, as calloc's. */
static struct file_io_inode *fi_alloc(void)
{
	struct file_io_inode *fi = fi_spare;
	if (!fi)
		return calloc(1, sizeof(*fi));
	fi_spare = NULL;
	memset(fi, 0, sizeof(*fi));
	return fi;
}

/* Frees FI (its locks destroyed), kept as this thread's spare when it has
 * none. */
static void fi_dispose(struct file_io_inode *fi)
{
	if (!fi_spare_armed) {
		pthread_once(&fi_spare_once, fi_spare_init);
		/* any non-NULL value: the destructor runs at the thread's end */
		if (fi_spare_ok && pthread_setspecific(fi_spare_key, &fi_spare_armed) == 0)
			fi_spare_armed = 1;
	}
	if (fi_spare_armed && !fi_spare) {
		fi_spare = fi;
		return;
	}
	free(fi);
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
	struct file_io_inode *fi = fi_alloc();
	if (!fi) {
		pthread_mutex_unlock(&f->lock);
		return -ENOMEM;
	}
	fi->ino = in->ino;
	fi->refs = 1;
	pthread_mutex_init(&fi->lock, NULL);
	pthread_cond_init(&fi->wb_cond, NULL);
	pthread_cond_init(&fi->ra_cond, NULL);
	pthread_mutex_init(&fi->append_lock, NULL);
	fi->size = in->size;
	fi->truncate_ver = in->truncate_ver;
	fi->layout = in->layout;
	meta_layout_perm(fi->layout.seed, fi->layout.stripe, fi->perm);
	if (in->idata && (!f->o.meta || !(fi->idata = fio_idata_new(in)))) {
		/* inline bytes are reachable only through meta */
		pthread_mutex_unlock(&f->lock);
		pthread_mutex_destroy(&fi->lock);
		pthread_cond_destroy(&fi->wb_cond);
		pthread_cond_destroy(&fi->ra_cond);
		pthread_mutex_destroy(&fi->append_lock);
		fi_dispose(fi);
		return f->o.meta ? -ENOMEM : -EOPNOTSUPP;
	}
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
	ra_free_ready(fi); /* units in flight hold a reference: none left */
	pthread_cond_destroy(&fi->ra_cond);
	pthread_cond_destroy(&fi->wb_cond);
	pthread_mutex_destroy(&fi->lock);
	pthread_mutex_destroy(&fi->append_lock);
	fio_idata_free(fi->idata);
	fi_dispose(fi);
}

/* file_io_size; caller holds fi->lock. */
static uint64_t size_locked(const struct file_io_inode *fi)
{
	uint64_t s = fi->size > fi->written ? fi->size : fi->written;
	for (const struct fio_wb *w = fi->wb; w; w = w->next)
		if (w->off + w->len > s)
			s = w->off + w->len;
	return s;
}

uint64_t file_io_size(file_io_inode *fi)
{
	pthread_mutex_lock(&fi->lock);
	uint64_t s = size_locked(fi);
	pthread_mutex_unlock(&fi->lock);
	return s;
}

/* The length to report into OUT; caller holds fi->lock. With stale_len,
 * everything written since under the newer truncate_ver rides along under
 * the old one (meta counts only what storage holds). */
static void length_locked(const struct file_io_inode *fi, struct meta_length *out)
{
	out->length = fi->written;
	out->truncate_ver = fi->truncate_ver;
	if (fi->stale_len) {
		if (fi->stale_len > out->length)
			out->length = fi->stale_len;
		out->truncate_ver = fi->stale_tv;
	}
}

int file_io_length(file_io_inode *fi, struct meta_length *out)
{
	pthread_mutex_lock(&fi->lock);
	length_locked(fi, out);
	int wrote = fi->wrote || fi->stale_len;
	fi->dirty = 0;
	pthread_mutex_unlock(&fi->lock);
	return wrote;
}

/* file_io_length_unreported; caller holds fi->lock. */
static int unreported_locked(struct file_io_inode *fi, struct meta_length *out)
{
	length_locked(fi, out);
	int news = fi->stale_len || (fi->wrote && !(fi->rep_valid && fi->rep_len == fi->written &&
	                                            fi->rep_tv == fi->truncate_ver));
	if (news)
		fi->dirty = 0;
	return news;
}

int file_io_length_unreported(file_io_inode *fi, struct meta_length *out)
{
	pthread_mutex_lock(&fi->lock);
	int news = unreported_locked(fi, out);
	pthread_mutex_unlock(&fi->lock);
	return news;
}

void file_io_length_reported(file_io_inode *fi, const struct meta_length *len)
{
	pthread_mutex_lock(&fi->lock);
	fi->rep_valid = 1;
	fi->rep_len = len->length;
	fi->rep_tv = len->truncate_ver;
	if (fi->stale_len && len->truncate_ver == fi->stale_tv && len->length >= fi->stale_len)
		fi->stale_len = 0; /* meta has it; what follows goes under the new one */
	pthread_mutex_unlock(&fi->lock);
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

/* The end of the piece that starts at POS: the chunk's end, and when
 * SPLIT also the next read_piece boundary inside the chunk, capped at END. */
static uint64_t piece_end(const struct file_io *f, const struct file_io_inode *fi, int split,
                          uint64_t pos, uint64_t end)
{
	uint64_t cs = fi->layout.chunk_size;
	uint64_t e = (pos / cs + 1) * cs;
	uint64_t rp = f->o.read_piece;
	if (split && rp < cs) {
		uint64_t in = pos % cs;
		uint64_t pe = pos - in + (in / rp + 1) * rp;
		if (pe < e)
			e = pe;
	}
	return e < end ? e : end;
}

/* Fills JOBS[0, N) with the N pieces of [OFF, END) of FI (cut as
 * piece_end with SPLIT), each of group G, reading into or writing from its
 * slice of BUF (which holds the bytes from OFF). */
static void jobs_fill(const struct file_io *f, struct file_io_inode *fi, struct fio_group *g,
                      int write, int split, uint64_t off, uint64_t end, char *buf,
                      struct fio_job *jobs, size_t n)
{
	uint32_t cs = fi->layout.chunk_size;
	uint64_t pos = off;
	for (size_t i = 0; i < n; i++) {
		uint32_t index = (uint32_t)(pos / cs);
		uint64_t pend = piece_end(f, fi, split, pos, end);
		jobs[i] = (struct fio_job){
		    .g = g,
		    .write = write,
		    .chain = meta_layout_chain(&fi->layout, fi->perm, index),
		    .index = index,
		    .off = (uint32_t)(pos % cs),
		    .len = (uint32_t)(pend - pos),
		    .chunk_size = cs,
		    .ino = fi->ino,
		    .buf = buf + (pos - off),
		};
		pos = pend;
	}
}

/* Reads the N pieces of [OFF, END) with one backend read_batch call. */
static int run_batch(struct file_io *f, struct file_io_inode *fi, int split, uint64_t off,
                     uint64_t end, size_t n, char *buf)
{
	struct file_io_piece stackp[16];
	struct file_io_piece *p = n <= 16 ? stackp : calloc(n, sizeof(*p));
	if (!p)
		return -ENOMEM;
	uint32_t cs = fi->layout.chunk_size;
	uint64_t pos = off;
	for (size_t i = 0; i < n; i++) {
		uint32_t index = (uint32_t)(pos / cs);
		uint64_t pend = piece_end(f, fi, split, pos, end);
		p[i] = (struct file_io_piece){
		    .chain = meta_layout_chain(&fi->layout, fi->perm, index),
		    .index = index,
		    .off = (uint32_t)(pos % cs),
		    .len = (uint32_t)(pend - pos),
		    .ino = fi->ino,
		    .buf = buf + (pos - off),
		};
		pos = pend;
	}
	int err = f->o.backend.read_batch(f->o.backend.arg, p, n);
	for (size_t i = 0; err == 0 && i < n; i++) {
		if (p[i].result < 0) {
			err = p[i].result;
			break;
		}
		uint32_t got = (uint32_t)p[i].result > p[i].len ? p[i].len : (uint32_t)p[i].result;
		memset((char *)p[i].buf + got, 0, p[i].len - got);
	}
	if (p != stackp)
		free(p);
	return err;
}

/* Cuts [off, off+len) into pieces and runs them; 0 or the first error.
 * SPLIT (reads only): cut at read_piece boundaries too. */
/* Runs [OFF, OFF+LEN) as chunk pieces; CRC (may be NULL): the caller's
 * CRC32C of a write's bytes, passed on when the write is one piece. */
static int run_range_crcf(struct file_io *f, struct file_io_inode *fi, int write, int split,
                          uint64_t off, size_t len, char *buf, const uint32_t *crc,
                          uint32_t wflags)
{
	uint32_t cs = fi->layout.chunk_size;
	uint64_t end = off + len;
	if ((end - 1) / cs > UINT32_MAX)
		return -EFBIG;
	size_t n = 0;
	for (uint64_t pos = off; pos < end; pos = piece_end(f, fi, split, pos, end))
		n++;
	if (!write && n > 1 && f->o.backend.read_batch)
		return run_batch(f, fi, split, off, end, n, buf);
	struct fio_job stackjobs[16];
	struct fio_job *jobs = n <= 16 ? stackjobs : calloc(n, sizeof(*jobs));
	if (!jobs)
		return -ENOMEM;
	struct fio_group g = {.pending = (int)n};
	pthread_mutex_init(&g.lock, NULL);
	pthread_cond_init(&g.done, NULL);
	jobs_fill(f, fi, &g, write, split, off, end, buf, jobs, n);
	if (write && crc && n == 1) {
		jobs[0].has_crc = 1;
		jobs[0].crc = *crc;
		jobs[0].wflags = wflags;
	}
	if (n > 1)
		queue_jobs(f, jobs + 1, n - 1);
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

static int run_range_crc(struct file_io *f, struct file_io_inode *fi, int write, int split,
                         uint64_t off, size_t len, char *buf, const uint32_t *crc)
{
	return run_range_crcf(f, fi, write, split, off, len, buf, crc, 0);
}

static int run_range(struct file_io *f, struct file_io_inode *fi, int write, int split,
                     uint64_t off, size_t len, char *buf)
{
	return run_range_crc(f, fi, write, split, off, len, buf, NULL);
}

/* ---- read-ahead ---- */

static void ra_free(struct fio_ra *u)
{
	pthread_mutex_destroy(&u->g.lock);
	pthread_cond_destroy(&u->g.done);
	free(u->jobs);
	if (u->pooled)
		iobuf_put(u->data);
	else
		free(u->data);
	free(u);
}

/* Whether U may be freed now: finished, and no reader replies from it or
 * waits for it. Caller holds fi->lock. */
static int ra_unused(const struct fio_ra *u)
{
	return u->ready && !u->holds && !u->waiters;
}

/* Unlists every unit of FI: finished ones are freed, those in flight are
 * marked dropped and freed by ra_done. Caller holds fi->lock. */
static void ra_drop_all(struct file_io_inode *fi)
{
	while (fi->ra) {
		struct fio_ra *u = fi->ra;
		fi->ra = u->next;
		if (ra_unused(u))
			ra_free(u);
		else
			u->dropped = 1;
	}
	for (int i = 0; i < FIO_RA_STREAMS; i++)
		fi->ra_st[i].fill = 0;
	pthread_cond_broadcast(&fi->ra_cond);
}

/* Frees the finished units of an inode nobody references any more (a
 * held unit holds a reference: none is held). */
static void ra_free_ready(struct file_io_inode *fi)
{
	while (fi->ra) {
		struct fio_ra *u = fi->ra;
		fi->ra = u->next;
		ra_free(u);
	}
}

static void ra_done(struct file_io *f, struct fio_ra *u)
{
	struct file_io_inode *fi = u->fi;
	pthread_mutex_lock(&fi->lock);
	u->ready = 1;
	u->err = u->g.err;
	int dropped = u->dropped && !u->waiters; /* else the last waiter frees it */
	pthread_cond_broadcast(&fi->ra_cond);
	pthread_mutex_unlock(&fi->lock);
	if (dropped)
		ra_free(u);
	file_io_release(f, fi);
}

/* Unlists and frees (or marks dropped) unit U. Caller holds fi->lock. */
static void ra_unlink(struct file_io_inode *fi, struct fio_ra *u)
{
	struct fio_ra **pp = &fi->ra;
	while (*pp != u)
		pp = &(*pp)->next;
	*pp = u->next;
	if (ra_unused(u))
		ra_free(u);
	else
		u->dropped = 1;
}

/* Starts fetching [OFF, OFF+LEN) of FI; the unit takes over one of the
 * references the caller took beforehand. Caller holds fi->lock.
 * Returns 0, or -ENOMEM / -EFBIG (nothing started). */
static int ra_launch(struct file_io *f, struct file_io_inode *fi, uint64_t off, uint32_t len)
{
	uint32_t cs = fi->layout.chunk_size;
	uint64_t end = off + len;
	if ((end - 1) / cs > UINT32_MAX)
		return -EFBIG;
	size_t n = 0;
	for (uint64_t pos = off; pos < end; pos = piece_end(f, fi, 0, pos, end))
		n++;
	struct fio_ra *u = calloc(1, sizeof(*u));
	/* Page-aligned: a short-circuit read (storage_client/sc_direct.h)
	 * puts its O_DIRECT bytes straight here, no bounce copy. Units of
	 * more than half a pool buffer take one (common/iobuf.h: no heap
	 * fragmentation, no page faults); smaller ones (a file's end, a
	 * small file kept whole while open) their own size. */
	int pooled = len > IOBUF_SIZE / 2 && len <= IOBUF_SIZE;
	char *data = pooled ? iobuf_get() : aligned_alloc(4096, ((size_t)len + 4095) / 4096 * 4096);
	struct fio_job *jobs = calloc(n, sizeof(*jobs));
	if (!u || !data || !jobs) {
		free(u);
		if (pooled)
			iobuf_put(data);
		else
			free(data);
		free(jobs);
		return -ENOMEM;
	}
	u->pooled = pooled;
	u->fi = fi;
	u->off = off;
	u->len = len;
	u->born_ms = clock_mono_ms();
	u->data = data;
	u->jobs = jobs;
	pthread_mutex_init(&u->g.lock, NULL);
	pthread_cond_init(&u->g.done, NULL);
	u->g.pending = (int)n;
	u->g.ra = u;
	jobs_fill(f, fi, &u->g, 0, 0, off, end, data, jobs, n);
	u->next = fi->ra;
	fi->ra = u;
	queue_jobs(f, jobs, n);
	return 0;
}

/* 0 when ra_read of a read at OFF of FI (SIZE bytes long) can neither
 * launch a unit nor hold one, so needs no inode references: it continues
 * no stream and the file is too large to be fetched whole. Caller holds
 * fi->lock. */
static int ra_may_launch(const struct file_io_inode *fi, uint64_t off, uint64_t size)
{
	if (size <= FIO_RA_SMALL)
		return 1;
	for (int i = 0; i < FIO_RA_STREAMS; i++)
		if (fi->ra_st[i].next == off)
			return 1;
	return 0;
}

/* Serves [OFF, OFF+LEN) from FI's units if they cover all of it, fresh
 * enough; updates the sequential detection and, for a sequential read,
 * launches more units. Returns 1 when BUF was filled. Caller holds
 * fi->lock; SIZE is what the read was clamped to. *REFS: inode references
 * the caller took (f->lock comes before fi->lock, so not here); each
 * launched unit uses one, the caller gives back the rest. */
static int ra_read(struct file_io *f, struct file_io_inode *fi, uint64_t off, size_t len,
                   char *buf, uint64_t size, int *refs, struct fio_ra **held)
{
	uint64_t end = off + len;
	int served = 0;
	struct fio_ra_stream *st = NULL, *lru = &fi->ra_st[0];
	for (int i = 0; i < FIO_RA_STREAMS && !st; i++) {
		if (fi->ra_st[i].next == off)
			st = &fi->ra_st[i];
		else if (fi->ra_st[i].used < lru->used)
			lru = &fi->ra_st[i];
	}
	int seq = st != NULL;
	int whole = 0; /* a small file read at random: served from a whole-file unit */
	if (!seq) {
		st = lru; /* a new reader, or one that seeked */
		st->fill = 0;
		if (size <= FIO_RA_SMALL && len <= FIO_RA_RAND_MAX && !fi->wb) {
			if (fi->ra_rand < 2)
				fi->ra_rand++;
			whole = fi->ra_rand >= 2;
		}
		if (whole) {
			struct fio_ra *u = fi->ra;
			while (u && !(u->off <= off && off < u->off + u->len))
				u = u->next;
			if (u && (clock_mono_ms() - u->born_ms > f->o.read_ahead_ttl_ms ||
			          (u->ready && u->err))) {
				ra_unlink(fi, u);
				u = NULL;
			}
			if (!u && *refs > 0 && ra_launch(f, fi, 0, (uint32_t)size) == 0)
				(*refs)--;
		}
	}
	if (seq || whole) {
		uint64_t now = clock_mono_ms();
		uint64_t pos = off;
		while (pos < end) {
			struct fio_ra *u = fi->ra;
			while (u && !(u->off <= pos && pos < u->off + u->len))
				u = u->next;
			if (!u)
				break;
			if (now - u->born_ms > f->o.read_ahead_ttl_ms) {
				ra_unlink(fi, u);
				break;
			}
			if (!u->ready && !u->dropped) {
				/* Counted, so that neither ra_done nor another
				 * reader's ra_unlink frees it under us. */
				u->waiters++;
				if (f->o.ra_wait)
					f->o.ra_wait(f->o.ra_wait_arg);
				while (!u->ready && !u->dropped)
					pthread_cond_wait(&fi->ra_cond, &fi->lock);
				u->waiters--;
			}
			if (u->dropped) {
				/* dropped (a write, another reader) while we
				 * waited: already unlisted */
				if (ra_unused(u))
					ra_free(u);
				break;
			}
			if (u->err) {
				ra_unlink(fi, u);
				break;
			}
			uint64_t ue = u->off + u->len < end ? u->off + u->len : end;
			if (held && pos == off && ue == end && *refs > 0) {
				/* One unit holds it all: the caller replies from
				 * it (its bytes never change once ready). */
				u->holds++;
				(*refs)--;
				*held = u;
			} else {
				memcpy(buf + (pos - off), u->data + (pos - u->off), ue - pos);
			}
			pos = ue;
		}
		served = pos == end;
	}
	st->next = end;
	st->used = ++fi->ra_clock;
	/* Keep only units some stream may still read. */
	uint64_t win = (uint64_t)f->o.read_ahead + FIO_RA_UNIT;
	for (struct fio_ra *u = fi->ra, *nx; u; u = nx) {
		nx = u->next;
		int wanted = 0;
		for (int i = 0; i < FIO_RA_STREAMS && !wanted; i++) {
			const struct fio_ra_stream *x = &fi->ra_st[i];
			wanted = x->used && u->off + u->len > x->next && u->off < x->next + win;
		}
		if (u->off == 0 && u->len >= size && size <= FIO_RA_SMALL)
			wanted = 1; /* a whole small file: any reader may want it */
		if (!wanted)
			ra_unlink(fi, u);
	}
	if (!seq || fi->wb)
		return served; /* a seek, or write-behind in flight: fetch nothing */
	if (st->fill < end)
		st->fill = end;
	uint64_t limit = end + (uint64_t)f->o.read_ahead;
	if (limit > size)
		limit = size;
	while (st->fill < limit) {
		struct fio_ra *have = fi->ra;
		while (have && !(have->off <= st->fill && st->fill < have->off + have->len))
			have = have->next;
		if (have) { /* another stream fetched it already */
			st->fill = have->off + have->len;
			continue;
		}
		uint64_t uend = (st->fill / FIO_RA_UNIT + 1) * FIO_RA_UNIT;
		if (uend > size)
			uend = size;
		if (*refs == 0 || ra_launch(f, fi, st->fill, (uint32_t)(uend - st->fill)))
			break;
		(*refs)--;
		st->fill = uend;
	}
	return served;
}

/* What every read does before its chunk pieces: serves an inline file's
 * bytes, waits out overlapping write-behind, clamps *LEN at the size,
 * serves from read-ahead. Returns 1 when the read is complete (*LEN bytes
 * in BUF, maybe 0), 0 when *LEN bytes remain to fetch, or a negative
 * error. HELD (may be NULL): see ra_read; set only when it returns 1. */
static int read_prelude(file_io *f, file_io_inode *fi, uint64_t off, size_t *len, void *buf,
                        struct fio_ra **held)
{
	if (fi->idata) {
		int handled;
		ssize_t n = fio_idata_read(f, fi, fi->idata, off, *len, buf, &handled);
		if (handled) {
			if (n < 0)
				return (int)n;
			*len = (size_t)n;
			return 1;
		}
	}
	/* Read what this mount wrote: wait out write-behind writes of the
	 * range (the size below then counts only what landed or failed). One
	 * hold of fi->lock for the wait, the size and the read-ahead when the
	 * read can launch no unit (a random read of a large file): it was
	 * five lock pairs per 4 KiB random read, two of them f->lock's for
	 * references nothing used (bench/history.md, rr25). */
	pthread_mutex_lock(&fi->lock);
	if (fi->wb)
		wb_wait_overlap(fi, off, off + *len < off ? UINT64_MAX : off + *len, 0);
	uint64_t size = size_locked(fi);
	if (off >= size) {
		pthread_mutex_unlock(&fi->lock);
		*len = 0;
		return 1;
	}
	if (*len > size - off)
		*len = (size_t)(size - off);
	if (f->o.read_ahead <= 0) {
		pthread_mutex_unlock(&fi->lock);
		return 0;
	}
	int refs = 0;
	if (ra_may_launch(fi, off, size)) {
		/* References for the units this read may launch, taken first
		 * (f->lock comes before fi->lock); the caller's own keeps FI
		 * alive meanwhile. The file may change in the gap, as between
		 * any two reads. */
		pthread_mutex_unlock(&fi->lock);
		refs = f->o.read_ahead / (int)FIO_RA_UNIT + 2;
		pthread_mutex_lock(&f->lock);
		fi->refs += refs;
		pthread_mutex_unlock(&f->lock);
		pthread_mutex_lock(&fi->lock);
	}
	int served = ra_read(f, fi, off, *len, buf, size, &refs, held);
	pthread_mutex_unlock(&fi->lock);
	if (refs) {
		pthread_mutex_lock(&f->lock);
		fi->refs -= refs;
		pthread_mutex_unlock(&f->lock);
	}
	return served;
}

ssize_t file_io_read(file_io *f, file_io_inode *fi, uint64_t off, size_t len, void *buf)
{
	if (len == 0)
		return 0;
	int pre = read_prelude(f, fi, off, &len, buf, NULL);
	if (pre < 0)
		return pre;
	if (pre)
		return (ssize_t)len;
	/* Splitting pays when the mount is otherwise idle (one reader
	 * waiting on one replica); with several reads in flight the replicas
	 * and CPUs are busy already and extra requests only cost. */
	int busy = atomic_fetch_add_explicit(&f->reads, 1, memory_order_relaxed);
	int rc = run_range(f, fi, 0, busy < FIO_SPLIT_BUSY, off, len, buf);
	atomic_fetch_sub_explicit(&f->reads, 1, memory_order_relaxed);
	return rc < 0 ? rc : (ssize_t)len;
}

/* Reads up to this size go async (file_io_read_async). Measured: 4 KiB
 * random reads cost the mount about half the CPU that way; 1 MiB reads
 * showed no gain and 10-20 % more CPU per MiB (their 1 MiB reply copies
 * then run on the RPC loop thread), so they stay on the caller's thread. */
#define FIO_ASYNC_MAX (128u << 10)

/* One async read in flight (file_io_read_async). */
struct fio_aread {
	struct file_io *f;
	char *buf;
	uint32_t plen;  /* the piece's length */
	size_t len;     /* what the read returns */
	void (*done)(void *arg, ssize_t n);
	void *arg;
};

static void aread_done(void *darg, int rc)
{
	struct fio_aread *a = darg;
	if (rc >= 0) {
		uint32_t got = (uint32_t)rc > a->plen ? a->plen : (uint32_t)rc;
		memset(a->buf + got, 0, a->plen - got);
	}
	atomic_fetch_sub_explicit(&a->f->reads, 1, memory_order_relaxed);
	void (*done)(void *, ssize_t) = a->done;
	void *arg = a->arg;
	ssize_t n = rc < 0 ? rc : (ssize_t)a->len;
	struct file_io *f = a->f;
	free(a);
	done(arg, n);
	atomic_fetch_sub_explicit(&f->areads, 1, memory_order_release);
}

void file_io_wait_reads(file_io *f)
{
	if (!f)
		return;
	while (atomic_load_explicit(&f->areads, memory_order_acquire) > 0)
		clock_sleep_ms(1);
}

static void read_async(file_io *f, file_io_inode *fi, uint64_t off, size_t len, void *buf,
                       const void **data, void **hold, void (*done)(void *arg, ssize_t n),
                       void *arg)
{
	struct fio_ra *held = NULL;
	int pre = len ? read_prelude(f, fi, off, &len, buf, hold ? &held : NULL) : 1;
	if (pre) {
		if (held) {
			*data = held->data + (off - held->off);
			*hold = held;
		}
		done(arg, pre < 0 ? (ssize_t)pre : (ssize_t)len);
		return;
	}
	int busy = atomic_fetch_add_explicit(&f->reads, 1, memory_order_relaxed);
	int split = busy < FIO_SPLIT_BUSY;
	uint32_t cs = fi->layout.chunk_size;
	uint64_t end = off + len;
	struct fio_aread *a = NULL;
	if (f->o.backend.read_async && len <= FIO_ASYNC_MAX && (end - 1) / cs <= UINT32_MAX &&
	    piece_end(f, fi, split, off, end) == end && (a = malloc(sizeof(*a)))) {
		uint32_t index = (uint32_t)(off / cs);
		*a = (struct fio_aread){.f = f, .buf = buf, .plen = (uint32_t)len, .len = len,
		                        .done = done, .arg = arg};
		atomic_fetch_add_explicit(&f->areads, 1, memory_order_relaxed);
		if (f->o.backend.read_async(f->o.backend.arg,
		                            meta_layout_chain(&fi->layout, fi->perm, index), fi->ino,
		                            index, (uint32_t)(off % cs), (uint32_t)len, buf,
		                            aread_done, a) == 0)
			return;
		atomic_fetch_sub_explicit(&f->areads, 1, memory_order_relaxed);
		free(a);
	}
	int rc = run_range(f, fi, 0, split, off, len, buf);
	atomic_fetch_sub_explicit(&f->reads, 1, memory_order_relaxed);
	done(arg, rc < 0 ? rc : (ssize_t)len);
}

void file_io_read_async(file_io *f, file_io_inode *fi, uint64_t off, size_t len, void *buf,
                        void (*done)(void *arg, ssize_t n), void *arg)
{
	read_async(f, fi, off, len, buf, NULL, NULL, done, arg);
}

void file_io_read_async_ref(file_io *f, file_io_inode *fi, uint64_t off, size_t len, void *buf,
                            const void **data, void **hold,
                            void (*done)(void *arg, ssize_t n), void *arg)
{
	*data = buf;
	*hold = NULL;
	read_async(f, fi, off, len, buf, data, hold, done, arg);
}

void file_io_read_unref(file_io *f, void *hold)
{
	struct fio_ra *u = hold;
	if (!u)
		return;
	struct file_io_inode *fi = u->fi;
	pthread_mutex_lock(&fi->lock);
	int last = --u->holds == 0 && u->dropped && !u->waiters;
	pthread_mutex_unlock(&fi->lock);
	if (last)
		ra_free(u);
	file_io_release(f, fi);
}

/* file_io_write_attr; CRC (may be NULL) and WFLAGS as for
 * file_io_write_crc_flags. */
static ssize_t write_range(file_io *f, file_io_inode *fi, uint64_t off, size_t len, const void *buf,
                           struct meta_inode *attr, const uint32_t *crc, uint32_t wflags)
{
	if (attr)
		attr->ino = 0;
	if (len == 0)
		return 0;
	if (off + len < off)
		return -EFBIG;
	if (fi->idata) {
		int handled;
		ssize_t n = fio_idata_write(f, fi, fi->idata, off, len, buf, &handled, attr);
		if (handled)
			return n;
	}
	/* chunks: storage RPCs (and a file that became chunked after the
	 * caller looked, fuse_fs.c op_write): a FUSE thread that read the
	 * write itself lets another read meanwhile */
	block_hint_wait();
	pthread_mutex_lock(&fi->lock);
	if (fi->wb)
		wb_wait_overlap(fi, off, off + len, 1);
	pthread_mutex_unlock(&fi->lock);
	int rc = run_range_crcf(f, fi, 1, 0, off, len, (char *)buf, crc, wflags);
	pthread_mutex_lock(&fi->lock);
	ra_drop_all(fi); /* units fetched before the write landed are stale */
	if (rc < 0) {
		pthread_mutex_unlock(&fi->lock);
		return rc;
	}
	if (off + len > fi->written)
		fi->written = off + len;
	fi->wrote = 1;
	fi->dirty = 1;
	pthread_mutex_unlock(&fi->lock);
	return (ssize_t)len;
}

ssize_t file_io_write(file_io *f, file_io_inode *fi, uint64_t off, size_t len, const void *buf)
{
	return file_io_write_attr(f, fi, off, len, buf, NULL);
}

ssize_t file_io_write_crc(file_io *f, file_io_inode *fi, uint64_t off, size_t len, const void *buf,
                          uint32_t crc)
{
	return write_range(f, fi, off, len, buf, NULL, &crc, 0);
}

ssize_t file_io_write_crc_flags(file_io *f, file_io_inode *fi, uint64_t off, size_t len,
                                const void *buf, uint32_t crc, uint32_t flags)
{
	return write_range(f, fi, off, len, buf, NULL, &crc, flags);
}

ssize_t file_io_write_attr(file_io *f, file_io_inode *fi, uint64_t off, size_t len, const void *buf,
                           struct meta_inode *attr)
{
	return write_range(f, fi, off, len, buf, attr, NULL, 0);
}

/* ---- write-behind ---- */

static int wb_overlaps(const struct file_io_inode *fi, uint64_t off, uint64_t end, int chunks)
{
	uint64_t cs = fi->layout.chunk_size;
	if (chunks) { /* writes: same chunk at all, as the head orders per chunk */
		off = off / cs * cs;
		end = (end + cs - 1) / cs * cs;
	}
	for (const struct fio_wb *w = fi->wb; w; w = w->next) {
		uint64_t wo = w->off, we = w->off + w->len;
		if (chunks) {
			wo = wo / cs * cs;
			we = (we + cs - 1) / cs * cs;
		}
		if (wo < end && off < we)
			return 1;
	}
	return 0;
}

static void wb_done(struct file_io *f, struct fio_wb *w)
{
	struct file_io_inode *fi = w->fi;
	pthread_mutex_lock(&fi->lock);
	if (w->g.err) {
		if (!fi->wb_err)
			fi->wb_err = w->g.err;
	} else if (w->truncate_ver == fi->truncate_ver) {
		if (w->off + w->len > fi->written)
			fi->written = w->off + w->len;
		fi->wrote = 1;
		fi->dirty = 1;
	}
	struct fio_wb **pp = &fi->wb;
	while (*pp != w)
		pp = &(*pp)->next;
	*pp = w->next;
	fi->wb_bytes -= w->len;
	pthread_cond_broadcast(&fi->wb_cond);
	pthread_mutex_unlock(&fi->lock);
	pthread_mutex_lock(&f->wb_lock);
	f->wb_total -= w->len;
	pthread_cond_broadcast(&f->wb_cond);
	pthread_mutex_unlock(&f->wb_lock);
	if (w->g.err)
		LOG_INFO("client", "write-behind failed: ino=%llu off=%llu len=%llu: %s",
		         (unsigned long long)fi->ino, (unsigned long long)w->off,
		         (unsigned long long)w->len, cfs_strerror(w->g.err));
	pthread_mutex_destroy(&w->g.lock);
	pthread_cond_destroy(&w->g.done);
	free(w->jobs);
	free(w->data);
	free(w);
	file_io_release(f, fi);
}

/* Waits until no write-behind write of FI touches [OFF, END) (CHUNKS:
 * the chunks of that range). Caller holds fi->lock. */
static void wb_wait_overlap(struct file_io_inode *fi, uint64_t off, uint64_t end, int chunks)
{
	while (wb_overlaps(fi, off, end, chunks))
		pthread_cond_wait(&fi->wb_cond, &fi->lock);
}

ssize_t file_io_write_behind(file_io *f, file_io_inode *fi, uint64_t off, size_t len,
                             const void *buf)
{
	if (!f->o.write_behind || len > f->o.write_behind || fio_idata_on(fi->idata))
		return file_io_write(f, fi, off, len, buf);
	if (len == 0)
		return 0;
	if (off + len < off)
		return -EFBIG;
	uint32_t cs = fi->layout.chunk_size;
	uint64_t end = off + len;
	if ((end - 1) / cs > UINT32_MAX)
		return -EFBIG;
	size_t n = (size_t)((end - 1) / cs - off / cs + 1);
	struct fio_wb *w = calloc(1, sizeof(*w));
	char *data = malloc(len);
	struct fio_job *jobs = calloc(n, sizeof(*jobs));
	if (!w || !data || !jobs) { /* no memory to hold it: write it now */
		free(w);
		free(data);
		free(jobs);
		return file_io_write(f, fi, off, len, buf);
	}
	memcpy(data, buf, len);
	/* Room in the mount-wide budget first (never with fi->lock held: the
	 * writes that free it may belong to this inode). */
	pthread_mutex_lock(&f->wb_lock);
	while (f->wb_total && f->wb_total + len > f->o.write_behind_total)
		pthread_cond_wait(&f->wb_cond, &f->wb_lock);
	f->wb_total += len;
	pthread_mutex_unlock(&f->wb_lock);
	pthread_mutex_lock(&fi->lock);
	while (fi->wb_bytes && fi->wb_bytes + len > f->o.write_behind)
		pthread_cond_wait(&fi->wb_cond, &fi->lock);
	wb_wait_overlap(fi, off, end, 1);
	int err = fi->wb_err;
	if (err) {
		pthread_mutex_unlock(&fi->lock);
		pthread_mutex_lock(&f->wb_lock);
		f->wb_total -= len;
		pthread_cond_broadcast(&f->wb_cond);
		pthread_mutex_unlock(&f->wb_lock);
		free(w);
		free(data);
		free(jobs);
		return err;
	}
	w->off = off;
	w->len = len;
	w->truncate_ver = fi->truncate_ver;
	w->seq = fi->wb_seq++;
	w->fi = fi;
	w->data = data;
	w->jobs = jobs;
	w->next = fi->wb;
	fi->wb = w;
	fi->wb_bytes += len;
	ra_drop_all(fi); /* and none are fetched while it is in flight */
	pthread_mutex_unlock(&fi->lock);
	pthread_mutex_lock(&f->lock);
	fi->refs++;
	pthread_mutex_unlock(&f->lock);
	pthread_mutex_init(&w->g.lock, NULL);
	pthread_cond_init(&w->g.done, NULL);
	w->g.pending = (int)n;
	w->g.wb = w;
	jobs_fill(f, fi, &w->g, 1, 0, off, end, data, jobs, n);
	queue_jobs(f, jobs, n);
	return (ssize_t)len;
}

/* 1 while a write-behind write queued before sequence number SEQ is in
 * flight. Caller holds fi->lock. */
static int wb_before(const struct file_io_inode *fi, uint64_t seq)
{
	for (const struct fio_wb *w = fi->wb; w; w = w->next)
		if (w->seq < seq)
			return 1;
	return 0;
}

int file_io_drain(file_io_inode *fi)
{
	pthread_mutex_lock(&fi->lock);
	/* Only what was queued before: writers that keep going on other
	 * handles must not hold a close or fsync here forever. */
	uint64_t seq = fi->wb_seq;
	while (wb_before(fi, seq))
		pthread_cond_wait(&fi->wb_cond, &fi->lock);
	int err = fi->wb_err;
	fi->wb_err = 0;
	pthread_mutex_unlock(&fi->lock);
	return err;
}

int file_io_drain_unreported(file_io_inode *fi, int wait, struct meta_length *out, int *err)
{
	pthread_mutex_lock(&fi->lock);
	uint64_t seq = fi->wb_seq; /* as file_io_drain: only what was queued before */
	if (!wait && wb_before(fi, seq)) {
		pthread_mutex_unlock(&fi->lock);
		return -EAGAIN;
	}
	while (wb_before(fi, seq))
		pthread_cond_wait(&fi->wb_cond, &fi->lock);
	*err = fi->wb_err;
	fi->wb_err = 0;
	int news = unreported_locked(fi, out);
	pthread_mutex_unlock(&fi->lock);
	return news;
}

int file_io_settled(file_io_inode *fi)
{
	pthread_mutex_lock(&fi->lock);
	int settled = !wb_before(fi, fi->wb_seq) && !fi->stale_len &&
	              !(fi->wrote && !(fi->rep_valid && fi->rep_len == fi->written &&
	                               fi->rep_tv == fi->truncate_ver));
	pthread_mutex_unlock(&fi->lock);
	return settled;
}

/* ---- inline data (file_io_idata.c) ---- */

meta_client *fio_meta(const file_io *f)
{
	return f->o.meta;
}

uint32_t fio_snapshot_ms(const file_io *f)
{
	return f->o.read_ahead_ttl_ms;
}

int fio_write_chunks(file_io *f, file_io_inode *fi, uint64_t off, size_t len, const void *buf,
                     uint32_t wflags)
{
	uint32_t cs = fi->layout.chunk_size;
	int rc;
	/* one piece (inline data fits a chunk: META_CHUNK_MIN) */
	if (wflags && len && off / cs == (off + len - 1) / cs) {
		uint32_t crc = crc32c(0, buf, len);
		rc = run_range_crcf(f, fi, 1, 0, off, len, (char *)buf, &crc, wflags);
	} else {
		rc = run_range(f, fi, 1, 0, off, len, (char *)buf);
	}
	pthread_mutex_lock(&fi->lock);
	ra_drop_all(fi);
	pthread_mutex_unlock(&fi->lock);
	return rc;
}

int fio_can_fence(const file_io *f)
{
	return f->o.backend.chunk_ver && f->o.backend.write_if;
}

int fio_chunk0_ver(file_io *f, file_io_inode *fi, struct file_io_chunk_state *ver)
{
	*ver = (struct file_io_chunk_state){0};
	if (!fio_can_fence(f))
		return -EOPNOTSUPP;
	return f->o.backend.chunk_ver(f->o.backend.arg,
	                              meta_layout_chain(&fi->layout, fi->perm, 0), fi->ino, 0, ver);
}

int fio_write_chunk0_if(file_io *f, file_io_inode *fi, const void *buf, uint32_t len,
                        const struct file_io_chunk_state *expect, uint64_t create_ver,
                        struct file_io_chunk_state *ver)
{
	if (!fio_can_fence(f))
		return -EOPNOTSUPP;
	int rc =
	    f->o.backend.write_if(f->o.backend.arg, meta_layout_chain(&fi->layout, fi->perm, 0),
	                          fi->ino, 0, len, buf, expect, create_ver, ver);
	pthread_mutex_lock(&fi->lock);
	ra_drop_all(fi);
	pthread_mutex_unlock(&fi->lock);
	return rc;
}

int fio_remove_chunk0(file_io *f, file_io_inode *fi)
{
	if (!f->o.backend.remove)
		return 0;
	return f->o.backend.remove(f->o.backend.arg, meta_layout_chain(&fi->layout, fi->perm, 0),
	                           fi->ino, 0, 1);
}

uint64_t file_io_ino(const file_io_inode *fi)
{
	return fi->ino;
}

int file_io_idata_on(file_io_inode *fi)
{
	return fio_idata_on(fi->idata);
}

void file_io_idata_prime_at(file_io_inode *fi, const void *data, uint32_t len, uint64_t read_ns)
{
	fio_idata_prime_at(fi->idata, data, len, read_ns);
}

/* file_io_read_wont_wait's second case; caller holds fi->lock. */
static int no_wait_locked(const struct file_io *f, const struct file_io_inode *fi, uint64_t off,
                          size_t len)
{
	if ((fi->idata && fio_idata_on(fi->idata)) || !f->o.backend.read_async || len == 0 ||
	    len > FIO_ASYNC_MAX || off + len < off || fi->wb)
		return 0;
	uint64_t end = off + len;
	if ((end - 1) / fi->layout.chunk_size > UINT32_MAX || piece_end(f, fi, 1, off, end) != end)
		return 0;
	for (int i = 0; f->o.read_ahead > 0 && fi->ra && i < FIO_RA_STREAMS; i++)
		if (fi->ra_st[i].next == off)
			return 0;
	return 1;
}

/* file_io_read_cached_range for a chunked file; caller holds fi->lock. */
static int cached_locked(const struct file_io *f, const struct file_io_inode *fi, uint64_t off,
                         size_t len)
{
	if (!f->o.read_ahead || fi->wb)
		return 0;
	uint64_t size = fi->size > fi->written ? fi->size : fi->written;
	uint64_t end = off + len < off || off + len > size ? size : off + len;
	if (off >= end || !fi->ra)
		return 0;
	uint64_t now = clock_mono_ms();
	for (const struct fio_ra *u = fi->ra; u; u = u->next)
		if (u->ready && !u->err && !u->dropped && u->off <= off && end <= u->off + u->len &&
		    now - u->born_ms <= f->o.read_ahead_ttl_ms)
			return 1;
	return 0;
}

int file_io_read_cached_range(file_io *f, file_io_inode *fi, uint64_t off, size_t len)
{
	if (fi->idata)
		return fio_idata_cached(f, fi->idata);
	pthread_mutex_lock(&fi->lock);
	int hit = cached_locked(f, fi, off, len);
	pthread_mutex_unlock(&fi->lock);
	return hit;
}

int file_io_read_wont_wait(file_io *f, file_io_inode *fi, uint64_t off, size_t len,
                           uint64_t *size)
{
	/* the inline cache's own lock is not taken under fi->lock */
	int ok = fi->idata && fio_idata_cached(f, fi->idata);
	pthread_mutex_lock(&fi->lock);
	*size = size_locked(fi);
	if (!ok)
		ok = (!fi->idata && cached_locked(f, fi, off, len)) || no_wait_locked(f, fi, off, len);
	pthread_mutex_unlock(&fi->lock);
	return ok;
}

uint32_t file_io_snapshot_ms(const file_io *f)
{
	return fio_snapshot_ms(f);
}

int file_io_idata_convert(file_io *f, file_io_inode *fi)
{
	return fio_idata_on(fi->idata) ? fio_idata_convert(f, fi, fi->idata) : 0;
}
