/* file_io_idata.c - inline data for file_io: reads, writes and conversion
 * of files whose bytes live in meta (meta.h "inline data").
 *
 * HOW IT WORKS. While the inode is inline (st->on), a write whose end
 * stays within META_IDATA_MAX goes to meta in one IDATA_WRITE (durable as
 * any metadata change; the reply's inode gives the new size). Meta answers
 * -CFS_ENOTINLINE when the end passes its own threshold or the file became
 * chunked: then, as for a write past META_IDATA_MAX, this client converts
 * (below) and file_io writes the chunks as usual. A read is served from
 * the bytes meta returned with the open or with the last IDATA_READ when
 * they are younger than fio_snapshot_ms (the read-ahead staleness bound,
 * file_io.h COHERENCE) and no write through this client came since; else
 * one IDATA_READ fetches the bytes (and tells whether the file is still
 * inline).
 *
 * CONVERSION (meta_idata.c has the server half). With empty data: one
 * commit with EMPTY. Otherwise (docs/inline-data.md "Growing past the
 * threshold" has the rule and why it holds): meta told (MARK) that chunk
 * 0 may exist from now on, so that GC removes it with the file even if
 * this client dies before its begin; chunk 0's version V, from the
 * answer to a placeholder of one zero byte written "if absent" at a
 * random version (placeholder_ver), or, refused, read (a committed
 * version: file_io_backend.chunk_ver);
 * begin claims the file and returns the bytes and their version; chunk 0
 * is replaced by the bytes only if its version is still V (the chain's
 * head decides, under the chunk's lock: STO_WRITE_IF), else the loop
 * starts over; commit flips the inode if the bytes' version still
 * matches, else the loop starts over with the new bytes. The claim is a
 * lease (10 s): a converter stalled past it, or whose write the storage
 * client is still retrying, finds chunk 0 changed by the converter that
 * committed (and by the writes after), so its late copy is refused
 * instead of landing the old bytes over the new ones or, after a
 * truncate to 0 removed chunk 0, under a later extension. A backend or
 * storage without the conditional write: an earlier attempt's chunk 0 is
 * removed, then the bytes are written "if absent" (the session-29 fence,
 * open to both cases). Another client's claim (-EBUSY) is waited out (at
 * most the lease). One conversion per inode at a time in this client
 * (st->conv).
 *
 * INVARIANT. st->on only goes 1 -> 0. The cache (snap) holds the whole
 * inline content as of snap_ms; it is dropped on every write through this
 * client, whenever meta reports another size, and by file_io_invalidate
 * (a granted file lock: readers after it must see what the previous
 * holder wrote, test_integ_locks' SQLite on two mounts).
 */
#include "client/file_io_idata.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/block_hint.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"

struct fio_idata {
	_Atomic int on;          /* the file is inline, as far as this client knows */
	pthread_mutex_t conv;    /* one conversion at a time */
	pthread_mutex_t lock;    /* guards the cache below */
	uint8_t *snap;           /* META_IDATA_MAX bytes, or NULL */
	uint32_t snap_len;
	int snap_valid;
	uint64_t snap_ms;        /* mono ms the bytes were current */
	uint64_t drop_ns;        /* mono ns of the last drop: bytes fetched by a
	                          * request sent before it may predate a write
	                          * through this client and are not cached */
};

static const struct meta_cred ROOT = { 0, 0, 0, NULL };

struct fio_idata *fio_idata_new(const struct meta_inode *in)
{
	if (!in->idata)
		return NULL;
	struct fio_idata *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	atomic_init(&st->on, 1);
	pthread_mutex_init(&st->conv, NULL);
	pthread_mutex_init(&st->lock, NULL);
	return st;
}

void fio_idata_free(struct fio_idata *st)
{
	if (!st)
		return;
	pthread_mutex_destroy(&st->conv);
	pthread_mutex_destroy(&st->lock);
	free(st->snap);
	free(st);
}

int fio_idata_on(const struct fio_idata *st)
{
	return st && atomic_load_explicit(&st->on, memory_order_acquire);
}

static void snap_drop(struct fio_idata *st)
{
	pthread_mutex_lock(&st->lock);
	st->snap_valid = 0;
	st->drop_ns = clock_mono_ns();
	pthread_mutex_unlock(&st->lock);
}

void fio_idata_invalidate(struct fio_idata *st)
{
	if (st)
		snap_drop(st);
}

void fio_idata_update(struct fio_idata *st, const struct meta_inode *in)
{
	if (!st)
		return;
	if (!in->idata)
		atomic_store_explicit(&st->on, 0, memory_order_release);
	pthread_mutex_lock(&st->lock);
	if (!in->idata || in->size != st->snap_len) {
		st->snap_valid = 0;
		st->drop_ns = clock_mono_ns();
	}
	pthread_mutex_unlock(&st->lock);
}

/* Caches LEN bytes that meta read at or after AT_NS (the request's send
 * time). Bytes whose request went out before the last drop are not
 * cached: a write through this client may have completed after meta read
 * them, and a read served from them would return the old, shorter content
 * while the kernel already knows the new size (zeros where the write put
 * bytes: test_integ_idata test_readers_while_growing). */
static void snap_set_at(struct fio_idata *st, const void *data, uint32_t len, uint64_t at_ns)
{
	pthread_mutex_lock(&st->lock);
	if (at_ns <= st->drop_ns) {
		pthread_mutex_unlock(&st->lock);
		return;
	}
	if (!st->snap)
		st->snap = malloc(META_IDATA_MAX);
	if (st->snap && len <= META_IDATA_MAX) {
		if (len)
			memcpy(st->snap, data, len);
		st->snap_len = len;
		st->snap_valid = 1;
		st->snap_ms = at_ns / 1000000;
	}
	pthread_mutex_unlock(&st->lock);
}

void fio_idata_prime_at(struct fio_idata *st, const void *data, uint32_t len, uint64_t read_ns)
{
	if (st && fio_idata_on(st))
		snap_set_at(st, data, len, read_ns);
}

/* Copies [off, off+len) of the cached bytes when they are fresh: 1 with
 * *n, else 0. */
static int snap_read(file_io *f, struct fio_idata *st, uint64_t off, size_t len, void *buf,
                     ssize_t *n)
{
	int hit = 0;
	uint64_t now = (uint64_t)(clock_mono_ns() / 1000000);
	pthread_mutex_lock(&st->lock);
	if (st->snap_valid && now - st->snap_ms <= fio_snapshot_ms(f)) {
		size_t k = off >= st->snap_len ? 0 : st->snap_len - off < len ? st->snap_len - off : len;
		if (k)
			memcpy(buf, st->snap + off, k);
		*n = (ssize_t)k;
		hit = 1;
	}
	pthread_mutex_unlock(&st->lock);
	return hit;
}

int fio_idata_cached(file_io *f, struct fio_idata *st)
{
	if (!fio_idata_on(st))
		return 0;
	uint64_t now = (uint64_t)(clock_mono_ns() / 1000000);
	pthread_mutex_lock(&st->lock);
	int hit = st->snap_valid && now - st->snap_ms <= fio_snapshot_ms(f);
	pthread_mutex_unlock(&st->lock);
	return hit;
}

ssize_t fio_idata_read(file_io *f, file_io_inode *fi, struct fio_idata *st, uint64_t off,
                       size_t len, void *buf, int *handled)
{
	ssize_t n = 0;
	*handled = 0;
	if (!fio_idata_on(st))
		return 0;
	if (snap_read(f, st, off, len, buf, &n)) {
		*handled = 1;
		return n;
	}
	struct meta_inode *in = malloc(sizeof(*in));
	struct meta_idata_out d = { .buf = malloc(META_IDATA_MAX) };
	int has = 0, rc = in && d.buf ? 0 : -ENOMEM;
	uint64_t sent_ns = clock_mono_ns();
	if (rc == 0)
		rc = meta_client_idata_read(fio_meta(f), &ROOT, file_io_ino(fi), in, &d, &has);
	if (rc == 0) {
		/* cached before the update, which then sees its own size */
		if (has)
			snap_set_at(st, d.buf, d.len, sent_ns);
		file_io_update(fi, in); /* also fio_idata_update: may end "on" */
		if (has) {
			size_t k = off >= d.len ? 0 : d.len - off < len ? d.len - off : len;
			if (k)
				memcpy(buf, d.buf + off, k);
			n = (ssize_t)k;
			*handled = 1;
		}
	} else {
		*handled = 1;
		n = rc;
	}
	free(d.buf);
	free(in);
	return n;
}

ssize_t fio_idata_write(file_io *f, file_io_inode *fi, struct fio_idata *st, uint64_t off,
                        size_t len, const void *buf, int *handled, struct meta_inode *attr)
{
	*handled = 0;
	if (!fio_idata_on(st))
		return 0;
	int rc = -CFS_ENOTINLINE;
	if (off <= META_IDATA_MAX && len <= META_IDATA_MAX - off) {
		struct meta_inode *in = attr ? attr : malloc(sizeof(*in));
		if (!in) {
			*handled = 1;
			return -ENOMEM;
		}
		snap_drop(st);
		rc = meta_client_idata_write(fio_meta(f), &ROOT, file_io_ino(fi), off, buf, len, in);
		/* again once it is done: bytes read by a request sent while
		 * it was in flight may not hold it (snap_set_at) */
		snap_drop(st);
		if (rc == 0)
			file_io_update(fi, in);
		else if (attr)
			attr->ino = 0;
		if (in != attr)
			free(in);
		if (rc == 0) {
			*handled = 1;
			return (ssize_t)len;
		}
	}
	if (rc != -CFS_ENOTINLINE) {
		*handled = 1;
		return rc;
	}
	rc = fio_idata_convert(f, fi, st);
	if (rc < 0) {
		*handled = 1;
		return rc;
	}
	return 0; /* chunked now: file_io writes the chunks */
}

/* After meta said the file is not inline: learn its attributes. */
static int learn_chunked(file_io *f, file_io_inode *fi, struct fio_idata *st)
{
	struct meta_inode *in = malloc(sizeof(*in));
	if (!in)
		return -ENOMEM;
	int rc = meta_client_getattr(fio_meta(f), &ROOT, file_io_ino(fi), in);
	if (rc == 0) {
		file_io_update(fi, in);
		if (in->idata)
			rc = -EAGAIN; /* not inline for the write, yet inline: start over */
	}
	free(in);
	(void)st;
	return rc;
}

/* Whether the hold file P says to hold a conversion whose begin said
 * ATTEMPTED (or not): it exists, and unless it starts with "attempted"
 * it holds every conversion. */
static int hold_on(const char *p, int attempted)
{
	int fd = open(p, O_RDONLY);
	if (fd < 0)
		return 0;
	char b[9] = {0};
	ssize_t n = read(fd, b, sizeof(b));
	close(fd);
	return attempted || n < (ssize_t)sizeof(b) || memcmp(b, "attempted", sizeof(b)) != 0;
}

/* Fault injection (tests only): while the file named by
 * CFS_FAULTINJ_CONVERT_HOLD exists, a conversion waits after its begin
 * (its claim held, then expired), having created that name + ".held"
 * (test_integ_idata.c test_stalled_converter). While the file starts
 * with "attempted", only a conversion whose begin said ATTEMPTED waits
 * (a waiting one that did not goes on: test_stalled_attempted). */
static void convert_hold(int attempted)
{
	const char *p = getenv("CFS_FAULTINJ_CONVERT_HOLD");
	if (!p || !hold_on(p, attempted))
		return;
	char held[4200];
	snprintf(held, sizeof(held), "%s.held", p);
	int fd = open(held, O_WRONLY | O_CREAT, 0644);
	if (fd >= 0)
		close(fd);
	while (hold_on(p, attempted)) {
		struct timespec ts = {0, 20 * 1000000};
		nanosleep(&ts, NULL);
	}
}

/* Whether the hold file (above) exists and starts with WORD. */
static int hold_says(const char *word)
{
	const char *p = getenv("CFS_FAULTINJ_CONVERT_HOLD");
	if (!p)
		return 0;
	int fd = open(p, O_RDONLY);
	if (fd < 0)
		return 0;
	char b[16] = {0};
	size_t k = strlen(word);
	ssize_t n = k <= sizeof(b) ? read(fd, b, k) : -1;
	close(fd);
	return n == (ssize_t)k && memcmp(b, word, k) == 0;
}

/* Fault injection (tests only): while the hold file (above) starts with
 * "placed", a conversion fails with -EIO right after its placeholder
 * landed, before its begin, as if its process died there (having
 * created the ".held" name: test_integ_idata test_placeholder_leak). */
static int convert_placed_fault(void)
{
	if (!hold_says("placed"))
		return 0;
	char held[4200];
	snprintf(held, sizeof(held), "%s.held", getenv("CFS_FAULTINJ_CONVERT_HOLD"));
	int fd = open(held, O_WRONLY | O_CREAT, 0644);
	if (fd >= 0)
		close(fd);
	return 1;
}

/* Fault injection (tests only): while the hold file (above) starts with
 * "absent", storage disagrees with itself about chunk 0: the placeholder
 * is refused (as if chunk 0 existed) and chunk 0's read answers "absent"
 * (version 0), every time (test_integ_idata test_chunk0_disagrees). */
static int convert_absent_fault(void)
{
	return hold_says("absent");
}

/* Fault injection (tests only): while the hold file (above) starts with
 * "markbusy", the first MARK of each conversion answers -EBUSY without
 * reaching meta (test_integ_idata test_mark_transient). */
static int convert_mark_fault(int tries)
{
	return tries == 0 && hold_says("markbusy") ? -EBUSY : 0;
}

/* Fault injection (tests only): while the hold file (above) starts with
 * "marked", a conversion waits right after its MARK, before its
 * placeholder (having created the ".held" name: test_integ_idata
 * test_marked_unlinked); the hold file gone, it goes on. */
static void convert_marked_hold(void)
{
	const char *p = getenv("CFS_FAULTINJ_CONVERT_HOLD");
	if (!p)
		return;
	char held[4200];
	snprintf(held, sizeof(held), "%s.held", p);
	for (int first = 1;; first = 0) {
		int fd = open(p, O_RDONLY);
		if (fd < 0)
			return;
		char b[6] = {0};
		ssize_t n = read(fd, b, sizeof(b));
		close(fd);
		if (n != (ssize_t)sizeof(b) || memcmp(b, "marked", sizeof(b)) != 0)
			return;
		if (first && (fd = open(held, O_WRONLY | O_CREAT, 0644)) >= 0)
			close(fd);
		struct timespec ts = {0, 20 * 1000000};
		nanosleep(&ts, NULL);
	}
}

/* The version a placeholder is made at: random in [2^32, 2^62), one per
 * attempt. A chunk 0 made again after a removal by ordinary writes starts
 * at 1 and counts up by one, so it never reaches a state a stalled
 * converter read from a placeholder (or from the replaces after one)
 * while that converter can still act: the fence's "same version, length
 * and CRC" then needs that many writes (docs/inline-data.md "The
 * fence"). Two placeholders collide with odds 2^-62. */
static uint64_t placeholder_ver(uint64_t ino)
{
	static _Atomic uint64_t n;
	uint64_t r = 0;
	if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		/* splitmix64 of what differs between attempts */
		r = clock_mono_ns() ^ ((uint64_t)getpid() << 40) ^ ino ^
		    (atomic_fetch_add(&n, 1) * 0x9e3779b97f4a7c15ULL);
		r = (r ^ (r >> 30)) * 0xbf58476d1ce4e5b9ULL;
		r = (r ^ (r >> 27)) * 0x94d049bb133111ebULL;
		r ^= r >> 31;
	}
	return (1ULL << 32) + r % ((1ULL << 62) - (1ULL << 32));
}

/* How often a conversion tries again, with backoff (retry_pause), when
 * storage answers chunk 0 absent right after refusing the placeholder
 * because it is present, or MARK answers busy (mark_transient): a
 * removal between the two passes in that time; what lasts longer is an
 * error, not a reason to spin. */
#define CONVERT_RETRIES 5

/* Sleeps before retry number K (0, 1, ...): 10 ms doubling, at most
 * 160 ms (some 0.3 s for CONVERT_RETRIES). */
static void retry_pause(int k)
{
	clock_sleep_ms(10u << (k < 4 ? k : 4));
}

/* Whether a MARK that failed with RC is sent again: a busy answer (none
 * today: meta's MARK waits on no claim; test_mark_transient injects it). Not
 * the errors meta_client resends itself (meta_client.c failover_error:
 * conflicts, an unavailable or fenced instance, timeouts, connections):
 * the call ends with one only once the mount's whole bound
 * (--meta-wait-ms) is spent, when the file system call is to fail with
 * EIO (fuse_fs.c transport_errno); sending MARK again would hold the
 * write that many bounds (test_integ_outage test_meta_down_past_bound).
 * -EAGAIN is not one either: for MARK it means a meta that predates it. */
static int mark_transient(int rc)
{
	return rc == -EBUSY;
}

int fio_idata_convert(file_io *f, file_io_inode *fi, struct fio_idata *st)
{
	if (!fio_idata_on(st))
		return 0;
	meta_client *mc = fio_meta(f);
	uint64_t ino = file_io_ino(fi);
	struct meta_inode *in = malloc(sizeof(*in));
	struct meta_idata_out d = { .buf = malloc(META_IDATA_MAX) };
	int rc = in && d.buf ? 0 : -ENOMEM;
	uint64_t give_up = clock_mono_ns() + (uint64_t)META_IDATA_LEASE_NS + 5000000000ULL;
	/* the conversion waits on storage and on another client's claim: a
	 * FUSE thread that read the write itself lets another read meanwhile */
	block_hint_wait();
	pthread_mutex_lock(&st->conv);
	snap_drop(st);
	/* Empty inline data: nothing to copy, one txn. */
	if (rc == 0 && file_io_size(fi) == 0) {
		rc = meta_client_idata_commit(mc, &ROOT, ino, 0, META_IDATA_COMMIT_EMPTY, in);
		if (rc == 0)
			file_io_update(fi, in);
		else if (rc == -CFS_ENOTINLINE)
			rc = learn_chunked(f, fi, st);
		if (rc == -EAGAIN)
			rc = 0; /* not empty after all (or still inline): copy below */
	}
	int fenced = fio_can_fence(f), marked = 0, mark_tries = 0, absent_tries = 0;
	while (rc == 0 && fio_idata_on(st)) {
		/* Fenced: chunk 0's version, read BEFORE the begin: a begin
		 * that then finds the file inline proves no conversion
		 * committed before the read, so V is an uncommitted attempt's
		 * (or none) and the conditional replace below lands only if
		 * nothing changed chunk 0 since (every commit follows a change
		 * of it: a converter always writes at least one byte). */
		struct file_io_chunk_state v0 = {0};
		static const struct file_io_chunk_state absent = {0};
		if (fenced) {
			/* Never replace "if absent" with the bytes: chunk 0 of a
			 * converted file is absent again after a truncate to 0,
			 * and a late copy would land there (the old bytes
			 * showing when the file is extended). A placeholder of
			 * one zero byte "if absent" first, whose late landing
			 * shows zeros, made at a random version (a nonce: the
			 * same byte written by the application to a chunk 0
			 * made again is at 1, not at V); landed, its answer is
			 * V; refused, chunk 0 exists and is read. */
			if (!marked) {
				/* Meta learns first that chunk 0 may exist, so
				 * that GC removes it with the file even if this
				 * client dies before its begin (which says so
				 * too). */
				rc = convert_mark_fault(mark_tries);
				if (rc == 0)
					rc = meta_client_idata_commit(mc, &ROOT, ino, UINT64_MAX,
					                              META_IDATA_COMMIT_MARK, in);
				if (rc == -CFS_ENOTINLINE) {
					rc = learn_chunked(f, fi, st);
					if (rc == -EAGAIN)
						rc = 0;
					continue;
				}
				if (mark_transient(rc) && mark_tries < CONVERT_RETRIES) {
					/* Nothing placed yet: going on unmarked would
					 * leave the placeholder to no one if this
					 * client died before its begin. */
					LOG_INFO("client",
					         "inline data: MARK failed, again: ino=%llu: %s",
					         (unsigned long long)ino, cfs_strerror(rc));
					retry_pause(mark_tries++);
					rc = 0;
					continue;
				}
				if (rc == -EAGAIN) {
					/* Only a meta from before MARK answers it so
					 * (it takes MARK for a commit whose version
					 * never matches; a meta that knows MARK never
					 * does: meta_idata_convert_commit). */
					LOG_WARN(
					    "client",
					    "inline data: meta predates MARK: converting unmarked "
					    "(a placeholder of a converter that dies before its "
					    "begin stays): ino=%llu",
					    (unsigned long long)ino);
					rc = 0;
				}
				if (rc < 0)
					break;
				marked = 1;
				convert_marked_hold();
			}
			static const uint8_t zero[1];
			rc =
			    fio_write_chunk0_if(f, fi, zero, 1, &absent, placeholder_ver(ino), &v0);
			if (rc == 0 && convert_placed_fault())
				rc = -EIO;
			if (rc == 0 && convert_absent_fault())
				rc = -ESTALE;
			if (rc == -ESTALE) {
				rc = fio_chunk0_ver(f, fi, &v0);
				if (rc == 0 && convert_absent_fault())
					v0 = absent;
			}
			if (rc == -EOPNOTSUPP) {
				rc = 0;
				fenced = 0;
				LOG_WARN("client",
				         "inline data: storage predates the conditional write (STO_WRITE_IF): "
				         "converting unfenced: ino=%llu",
				         (unsigned long long)ino);
			}
			if (rc < 0)
				break;
			if (fenced && v0.ver == 0) {
				/* Refused as present, then read as absent: chunk
				 * 0 removed between the two (again), or storage
				 * that disagrees with itself (a replica that lost
				 * it, a bug), which would have this write spin
				 * for good. Nothing changed yet: the bytes stay
				 * inline. EIO, not EAGAIN: a write(2) on a
				 * blocking descriptor is not expected to answer
				 * "try again", and this is storage failing the
				 * I/O. */
				if (absent_tries >= CONVERT_RETRIES) {
					LOG_WARN(
					    "client",
					    "inline data: chunk 0's placeholder refused as present "
					    "but chunk 0 read as absent, %d times: ino=%llu: "
					    "giving up (EIO)",
					    absent_tries + 1, (unsigned long long)ino);
					rc = -EIO;
					break;
				}
				retry_pause(absent_tries++);
				continue;
			}
		}
		rc = meta_client_idata_begin(mc, &ROOT, ino, in, &d);
		if (rc == -ENOENT && fenced) {
			/* The file is gone: its last unlink and GC ran while
			 * this conversion was past its MARK, and GC's removal of
			 * the chunks may have come before the placeholder above
			 * landed, which nothing would remove then (an orphan
			 * chunk for good). An inode's number is never used
			 * again: its chunk 0 is ours to remove. */
			int r = fio_remove_chunk0(f, fi);
			if (r < 0)
				LOG_WARN("client", "inline data: file gone: ino=%llu: chunk 0: %s",
				         (unsigned long long)ino, cfs_strerror(r));
			break;
		}
		if (rc == -CFS_ENOTINLINE) {
			rc = learn_chunked(f, fi, st);
			if (rc == -EAGAIN)
				rc = 0;
			continue;
		}
		if (rc == -EBUSY && clock_mono_ns() < give_up) {
			struct timespec ts = { 0, 20 * 1000000 };
			nanosleep(&ts, NULL);
			rc = 0;
			continue;
		}
		if (rc < 0)
			break;
		convert_hold((d.flags & META_IDATA_F_ATTEMPTED) != 0);
		if (fenced) {
			/* The whole chunk becomes the bytes (an earlier attempt's
			 * tail goes with the replace); one zero byte when there
			 * are none, so that this commit too follows a change. */
			static const uint8_t zero[1];
			rc = fio_write_chunk0_if(f, fi, d.len ? d.buf : zero, d.len ? d.len : 1,
			                         &v0, 0, NULL);
			if (rc == -ESTALE) {
				LOG_INFO("client", "inline data: chunk 0 changed meanwhile, again: ino=%llu",
				         (unsigned long long)ino);
				rc = 0;
				continue;
			}
			if (rc == -EOPNOTSUPP) {
				rc = 0;
				fenced = 0;
				continue;
			}
		} else if (d.flags & META_IDATA_F_ATTEMPTED) {
			rc = fio_remove_chunk0(f, fi);
		}
		/* Unfenced (a backend or storage without the conditional
		 * write): only into an absent chunk 0, which stops a late copy
		 * after a commit unless chunk 0 was removed since. */
		if (rc == 0 && !fenced && d.len)
			rc = fio_write_chunks(f, fi, 0, d.len, d.buf, FILE_IO_WF_IF_ABSENT);
		if (rc == -EEXIST) {
			LOG_INFO("client",
			         "inline data: chunk 0 written meanwhile, again: ino=%llu",
			         (unsigned long long)ino);
			rc = 0;
			continue;
		}
		if (rc < 0)
			break;
		rc = meta_client_idata_commit(mc, &ROOT, ino, d.ver, 0, in);
		if (rc == 0) {
			file_io_update(fi, in);
		} else if (rc == -EAGAIN) {
			rc = 0; /* the bytes changed (or the claim went): again */
		} else if (rc == -CFS_ENOTINLINE) {
			LOG_WARN("client", "inline data: converted by another client meanwhile: ino=%llu",
			         (unsigned long long)ino);
			rc = learn_chunked(f, fi, st);
			if (rc == -EAGAIN)
				rc = 0;
		}
	}
	pthread_mutex_unlock(&st->conv);
	if (rc < 0)
		LOG_WARN("client", "inline data: conversion to chunks failed: ino=%llu: %s",
		         (unsigned long long)ino, cfs_strerror(rc));
	free(d.buf);
	free(in);
	return rc;
}
