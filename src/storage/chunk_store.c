/* chunk_store.c - chunk metadata in LMDB, one environment per target.
 *
 * Layout: <target>/meta/{data.mdb,lock.mdb}, one unnamed database whose keys
 * are chunk_key_encode() (12 bytes, big-endian inode then index) and whose
 * values are chunk_meta_encode() records (chunk_format.c). There is no other
 * persistent allocator state: the engine rebuilds its block bitmaps from a
 * scan at open, so whatever a committed transaction says is, by
 * construction, what the allocator believes after a crash.
 *
 * Why LMDB and not RocksDB. Measured on this machine (2 shared cores, one
 * virtual disk, load average 3-9 from other builds) with
 * tests/storage/measure_meta_kv.c, the same pattern for both: 1068-byte
 * values (the metadata of a 1 MiB chunk) under 12-byte (inode, index)
 * keys, random chunks of 20,000 inodes; 100,000 puts committed durably in
 * batches of B (LMDB: one write txn, default two syncs; RocksDB 7.8.3: one
 * WriteBatch with sync=1; B=1: 3,000 puts), then 100,000 random gets.
 * Two runs each:
 *
 *   B    LMDB puts/s     RocksDB puts/s    LMDB gets/s     RocksDB gets/s
 *   1    2,656 / 3,104   4,718 / 5,522
 *   8    12.3k / 13.1k   23.2k / 26.7k     1.51M / 1.43M   157k / 168k
 *   64   30.0k / 32.5k   77.3k / 93.8k     1.29M / 1.61M   146k / 168k
 *
 * RocksDB commits metadata 2-3x faster; LMDB looks chunks up ~9x faster.
 * We chose LMDB: (1) the engine group-commits everything whose data I/O
 * finished while the previous commit ran, and even at B=8 LMDB's 12k
 * updates/s is 12 GiB/s of 1 MiB chunk writes or 48 MiB/s of 4 KiB random
 * writes - the data I/O, not the metadata, is the limit on this disk;
 * (2) every read does a lookup, and at 4 KiB random reads a 6 us RocksDB
 * get (C API malloc per value, LSM levels) is a large share of our 2
 * cores, where LMDB's is a memory access; (3) no background compaction
 * competing with data I/O, and 88 KB of C with no new dependency.
 * MDB_NOTLS lets a read transaction be used from any thread.
 *
 * WRITE-AHEAD LOG (opened with sync). An LMDB commit costs two device
 * flushes (its pages, then its meta page written O_DSYNC), and before it
 * the engine's fdatasync of the data files costs a third (ext4: a journal
 * commit for the extent conversion of fallocated blocks). On a disk with
 * a volatile cache and no FUA each is a cache flush of the whole disk. So
 * in sync mode a batch does not commit to LMDB; it appends ONE record to
 * <meta>/wal (every change of the batch, CRC32C) and is durable after ONE
 * flush that follows the record's write:
 *
 *   engine: data writes complete (O_DIRECT, in the device cache)
 *        -> chunk_store_batch_write: the record, O_DIRECT, into the
 *           preallocated log whose extents are written zeros (no metadata
 *           change, so no journal commit is needed to read it back)
 *        -> fdatasync of each data file the batch wrote (the same
 *           filesystem: every fdatasync ends with a flush of the device
 *           cache issued after it was called, either the journal commit's
 *           pre-flush or an explicit one, so it covers the record too),
 *           or a device flush shared with the disk's other targets
 *           (chunk_flush.c, for batches that only overwrote written
 *           blocks), or, with no data file to sync, fdatasync of the log
 *        -> chunk_store_batch_commit_flushed: the changes enter the
 *           in-memory overlay, which every read consults before LMDB;
 *           the caller acknowledges.
 *
 * Every read checks the record CRC of the value it uses, from the overlay
 * or from LMDB alike: skipping it for overlay values (checked once at
 * ov_set) saved server CPU under load but no IOPS on a quiet host, and a
 * record corrupted in memory would then go unnoticed in its length and
 * version fields (bench/history.md, sb25).
 *
 * Checkpoints (chunk_store_maintain, when the log is half full or the
 * overlay large; at close) write the overlay into LMDB in one ordinary
 * synced transaction and restart the log at offset 0, so LMDB's protocol
 * (pages durable before the meta page that points at them) is unchanged
 * and LMDB is always a consistent snapshot; its two flushes are paid once
 * per checkpoint, not per batch. The log is not cut there: replaying its
 * old run over the checkpoint (a crash before the next record) rewrites
 * the same values. A checkpoint that carries a batch too big for the log
 * (commit_direct) does cut it: LMDB then holds changes newer than the run.
 *
 * Why one flush is enough. The record and the data it points at reach
 * the disk in any order, but the caller acknowledges only after a flush
 * that followed both, and the next record is written only after that.
 * So after a power loss every record of the run but the last was
 * followed by a completed flush (its data durable); only the last may
 * name data that never left the cache. Open therefore checks the chunks
 * the last record puts against their page CRCs (chunk_store_verify_fn)
 * and drops the record when one fails: it was never acknowledged (a
 * check that could not run, for want of memory or a file descriptor,
 * fails the open instead: dropping would be for good). The
 * chunk is then its previous version, whose block the allocator had not
 * reused (a block is freed only after the commit that stops pointing at
 * it, and reused by writes after that). The check runs in every boot:
 * the engine writes a batch's record while its data writes run
 * (chunk_engine.c "record beside data"), so after kill -9 alone the last
 * record may name a data write that was still queued and never issued.
 * The engine writes the next record only after the previous batch's
 * flush, so this stays true of the last record only.
 *
 * Except for cache-mode batches (chunk_engine.c noflush_batch: KVCache
 * namespaces with --durability cache), committed with flushed = 1 and no
 * flush at all: after POWER LOSS several records at the end of the run may
 * name data that never reached the media (those after the device's last
 * flush), and only the last is verified. Replay still yields the state
 * after a prefix of the batches (a record lost ends the run), the
 * allocator is rebuilt from it, and a chunk whose data did not land fails
 * its page CRCs on every read (-CFS_ECORRUPT, never wrong bytes). After
 * kill -9 alone nothing changes: such a batch's record is written after
 * its data writes completed, and the next record after its commit.
 *
 * Replay (wal_open): see there. A torn or corrupt record fails its CRC
 * and ends the run; replay is idempotent.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/log.h"
#include "common/status.h"
#include "common/xalloc.h"
#include "storage/chunk_store.h"

#define WAL_MAGIC 0x4c574643u      /* "CFWL" */
#define WAL_HDR 32                 /* magic, crc, seq, payload len, changes, boot */
#define WAL_BYTES (4u << 20)       /* log size per target */
#define WAL_CKPT_ENTRIES 8192      /* overlay size that triggers a checkpoint */
#define OV_BUCKETS 4096

/* One chunk's change in the overlay or a batch: the encoded value, or a
 * delete. */
struct ov_ent {
	struct chunk_id id;
	uint8_t *val;           /* owned, chunk_meta_encode() bytes; NULL for a delete */
	uint32_t len;
	struct ov_ent *next;    /* bucket chain */
};

struct chunk_store {
	MDB_env *env; /* owned */
	MDB_dbi dbi;  /* the unnamed database */
	/* Write-ahead log (WAL mode: opened with sync). -1: none, batches
	 * are LMDB transactions. */
	int wal_fd;             /* O_DIRECT, the preallocated log file */
	uint64_t wal_size;      /* bytes, multiple of CHUNK_PAGE */
	uint64_t wal_off;       /* where the next record goes; batch owner only */
	uint64_t wal_seq;       /* seq of the last record written; batch owner only */
	pthread_mutex_t omu;    /* guards the overlay */
	struct ov_ent **ov;     /* [OV_BUCKETS] committed changes not yet in LMDB */
	size_t ov_n;
	uint64_t wal_syncs, checkpoints; /* counters, batch owner only */
	uint64_t boot;          /* boot_id() at open, written in every record */
};

struct chunk_batch {
	struct chunk_store *s; /* borrowed */
	MDB_txn *txn;          /* owned: write transaction, or in WAL mode a read
				* snapshot for lookups */
	struct ov_ent *ops;    /* WAL mode: the batch's changes, in order */
	size_t nops, cap;
	uint8_t *rec;          /* WAL mode: the encoded record once written */
	size_t rec_len;        /* its padded length */
	int written;           /* the record is in the log (not yet flushed) */
	int direct;            /* too big for the log: commit through LMDB */
};

static int map_err(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
		return -ENOSPC;
	case MDB_INVALID:
	case MDB_CORRUPTED:
	case MDB_VERSION_MISMATCH:
		return -CFS_ECORRUPT;
	default:
		return rc > 0 && rc < 4096 ? -rc : -EIO;
	}
}

/* ---- little-endian fields of the log record ---------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* ---- overlay (WAL mode) ------------------------------------------------ */

static unsigned ov_bucket(struct chunk_id id)
{
	uint64_t h = (id.ino * 0x9e3779b97f4a7c15ull) ^ (id.idx * 0xc2b2ae3d27d4eb4full);
	return (unsigned)(h >> 40) % OV_BUCKETS;
}

/* Under omu. */
static struct ov_ent *ov_find(struct chunk_store *s, struct chunk_id id)
{
	for (struct ov_ent *o = s->ov[ov_bucket(id)]; o; o = o->next)
		if (!chunk_id_cmp(o->id, id))
			return o;
	return NULL;
}

/* Takes over E->val. Under omu. */
static void ov_set(struct chunk_store *s, const struct ov_ent *e)
{
	struct ov_ent *o = ov_find(s, e->id);
	if (!o) {
		o = xcalloc(1, sizeof(*o));
		o->id = e->id;
		unsigned b = ov_bucket(e->id);
		o->next = s->ov[b];
		s->ov[b] = o;
		s->ov_n++;
	}
	free(o->val);
	o->val = e->val;
	o->len = e->len;
}

/* Under omu. */
static void ov_clear(struct chunk_store *s)
{
	for (unsigned b = 0; b < OV_BUCKETS; b++) {
		struct ov_ent *o = s->ov[b];
		while (o) {
			struct ov_ent *next = o->next;
			free(o->val);
			free(o);
			o = next;
		}
		s->ov[b] = NULL;
	}
	s->ov_n = 0;
}

/* Pages [first, first + count) of a read's lookup (chunk_meta_decode_pages
 * into pc); NULL: the whole value (chunk_meta_decode). */
struct page_win {
	uint32_t first, count;
	uint32_t *pc;
};

static int decode_win(const void *p, size_t n, struct chunk_meta *out, const struct page_win *w)
{
	return w ? chunk_meta_decode_pages(p, n, w->first, w->count, out, w->pc)
		 : chunk_meta_decode(p, n, out);
}

/* ID as the overlay has it: 1 with *OUT a decode of it (or -ENOENT in RC
 * for a delete) as W asks, 0 when the overlay does not have ID. */
static int ov_get_win(struct chunk_store *s, struct chunk_id id, struct chunk_meta *out, int *rc,
		      const struct page_win *w)
{
	if (!s->ov)
		return 0;
	pthread_mutex_lock(&s->omu);
	struct ov_ent *o = ov_find(s, id);
	if (o)
		*rc = o->val ? decode_win(o->val, o->len, out, w) : -ENOENT;
	pthread_mutex_unlock(&s->omu);
	return o != NULL;
}

static int ov_get(struct chunk_store *s, struct chunk_id id, struct chunk_meta *out, int *rc)
{
	return ov_get_win(s, id, out, rc, NULL);
}

/* ---- write-ahead log --------------------------------------------------- */

/* This boot of the machine, as a number, stamped in every record (for a
 * post-mortem: which boot wrote it). Replay no longer depends on it: the
 * last record is verified in every boot (wal_open). CFS_TEST_BOOT_ID
 * overrides it: tests simulate a reboot with it. */
static uint64_t boot_id(void)
{
	char id[64] = "";
	const char *t = getenv("CFS_TEST_BOOT_ID");
	if (t) {
		snprintf(id, sizeof(id), "%s", t);
	} else {
		FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
		if (f) {
			if (!fgets(id, sizeof(id), f))
				id[0] = 0;
			fclose(f);
		}
	}
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (const char *c = id; *c && *c != '\n'; c++)
		h = (h ^ (uint8_t)*c) * 1099511628211ull;
	return h | 1; /* never 0 */
}

static size_t rec_pad(size_t n)
{
	return (n + CHUNK_PAGE - 1) / CHUNK_PAGE * CHUNK_PAGE;
}

/* The record starting at BUF[0] (AVAIL bytes there): its padded length and
 * seq, or 0 when there is no whole record with a good CRC. */
static size_t rec_parse(const uint8_t *buf, size_t avail, uint64_t *seq)
{
	if (avail < WAL_HDR || get32(buf) != WAL_MAGIC)
		return 0;
	uint64_t len = get32(buf + 16);
	if (len > avail - WAL_HDR)
		return 0;
	if (crc32c(0, buf + 8, WAL_HDR - 8 + len) != get32(buf + 4))
		return 0;
	*seq = get64(buf + 8);
	return rec_pad(WAL_HDR + len);
}

/* Calls FN for each change of the record at BUF: 0, FN's nonzero value, or
 * -CFS_ECORRUPT when the (CRC-checked) payload does not parse. */
static int rec_each(const uint8_t *buf, int (*fn)(void *, const struct ov_ent *), void *arg)
{
	uint32_t len = get32(buf + 16), nops = get32(buf + 20);
	const uint8_t *p = buf + WAL_HDR, *end = p + len;
	for (uint32_t i = 0; i < nops; i++) {
		struct ov_ent e = { 0 };
		if (end - p < 1 + CHUNK_KEY_LEN + 4 || chunk_key_decode(p + 1, CHUNK_KEY_LEN, &e.id))
			return -CFS_ECORRUPT;
		int del = p[0];
		e.len = get32(p + 1 + CHUNK_KEY_LEN);
		p += 1 + CHUNK_KEY_LEN + 4;
		if ((uint64_t)(end - p) < e.len)
			return -CFS_ECORRUPT;
		e.val = del ? NULL : (uint8_t *)p;
		p += e.len;
		int rc = fn(arg, &e);
		if (rc)
			return rc;
	}
	return 0;
}

static int txn_apply(MDB_txn *txn, MDB_dbi dbi, const struct ov_ent *e)
{
	uint8_t k[CHUNK_KEY_LEN];
	chunk_key_encode(e->id, k);
	MDB_val key = { sizeof(k), k };
	if (!e->val) {
		int rc = mdb_del(txn, dbi, &key, NULL);
		return rc == MDB_NOTFOUND ? 0 : rc;
	}
	MDB_val val = { e->len, e->val };
	return mdb_put(txn, dbi, &key, &val, 0);
}

struct replay_ctx {
	struct chunk_store *s;
	MDB_txn *txn;
	chunk_store_verify_fn verify;
	void *arg;
	uint64_t ops;
	struct chunk_id *ids;   /* verify: the last record's ids, in order */
	size_t nids, capids, at;
};

static int replay_op(void *arg, const struct ov_ent *e)
{
	struct replay_ctx *c = arg;
	int rc = txn_apply(c->txn, c->s->dbi, e);
	c->ops++;
	return rc ? map_err(rc) : 0;
}

static int collect_id(void *arg, const struct ov_ent *e)
{
	struct replay_ctx *c = arg;
	if (c->nids == c->capids) {
		c->capids = c->capids ? c->capids * 2 : 16;
		c->ids = xrealloc(c->ids, c->capids * sizeof(*c->ids));
	}
	c->ids[c->nids++] = e->id;
	return 0;
}

/* Only a chunk's final value in the record is checked: an earlier one in
 * the same record (a retirement before the chunk's next write) describes a
 * block that the later change may already have altered in place. */
static int verify_op(void *arg, const struct ov_ent *e)
{
	struct replay_ctx *c = arg;
	size_t i = c->at++;
	for (size_t j = i + 1; j < c->nids; j++)
		if (!chunk_id_cmp(c->ids[j], e->id))
			return 0;
	if (!e->val)
		return 0;
	struct chunk_meta m;
	int rc = chunk_meta_decode(e->val, e->len, &m);
	if (rc)
		return rc;
	rc = c->verify(c->arg, e->id, &m);
	chunk_meta_fini(&m);
	return rc;
}

static int count_op(void *arg, const struct ov_ent *e)
{
	uint64_t *n = arg;
	if (e->val) {
		struct chunk_meta m;
		int rc = chunk_meta_decode(e->val, e->len, &m);
		if (rc)
			return rc;
		chunk_meta_fini(&m);
	}
	(*n)++;
	return 0;
}

int chunk_store_wal_decode(const void *data, size_t size, uint64_t *records, uint64_t *changes)
{
	const uint8_t *buf = data;
	uint64_t off = 0, prev = 0, seq;
	size_t n;
	*records = *changes = 0;
	while (off < size && (n = rec_parse(buf + off, size - off, &seq)) &&
	       (!prev || seq == prev + 1)) {
		int err = rec_each(buf + off, count_op, changes);
		if (err)
			return err;
		prev = seq;
		off += n;
		(*records)++;
	}
	return 0;
}

static int snap_op(void *arg, const struct ov_ent *e)
{
	struct chunk_store *s = arg;
	struct ov_ent c = *e;
	if (e->val) {
		c.val = xmalloc(e->len);
		memcpy(c.val, e->val, e->len);
	}
	ov_set(s, &c);
	return 0;
}

/* Snapshot open: the log's run (a running target's may be in use) goes
 * into the overlay, nothing is written. */
static int wal_load(struct chunk_store *s, const char *dir)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/wal", dir);
	/* O_DIRECT as the writer: no stale page cache of the log. */
	int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	uint8_t *buf;
	if (posix_memalign((void **)&buf, CHUNK_PAGE, WAL_BYTES)) {
		close(fd);
		return -ENOMEM;
	}
	ssize_t got = pread(fd, buf, WAL_BYTES, 0);
	close(fd);
	int err = 0;
	uint64_t off = 0, prev = 0, seq;
	size_t n;
	while (got > 0 && off < (uint64_t)got &&
	       (n = rec_parse(buf + off, (size_t)got - off, &seq)) && (!prev || seq == prev + 1) &&
	       !err) {
		err = rec_each(buf + off, snap_op, s);
		prev = seq;
		off += n;
	}
	free(buf);
	return err;
}

/* Zeroes the log page at OFF and syncs it: the run of records no longer
 * starts there. */
static int wal_cut(struct chunk_store *s, uint8_t *page)
{
	memset(page, 0, CHUNK_PAGE);
	if (pwrite(s->wal_fd, page, CHUNK_PAGE, 0) != CHUNK_PAGE || fdatasync(s->wal_fd))
		return errno ? -errno : -EIO;
	return 0;
}

/* Opens (creating and zero-filling) DIR/wal and replays it into LMDB.
 *
 * The log is a run of records from offset 0 with consecutive seqs; it ends
 * at the first page that is not a whole record with a good CRC or whose
 * seq does not follow (an older record left from before the last
 * checkpoint; seqs only grow, so it cannot follow by accident). The run is
 * exactly the changes since the last checkpoint, older ones possibly
 * included (every checkpoint holds them too): applying it is idempotent.
 * The LAST record of the run alone may name data that is not durable
 * (power lost after its page reached the disk but before the flush that
 * would have acknowledged it, or kill -9 before its data write was
 * issued; every earlier record was followed by a completed flush before
 * the next was written): VERIFY checks each chunk it puts, in every boot,
 * and when one fails the record is dropped, as never acknowledged. */
static int wal_open(struct chunk_store *s, const char *dir, chunk_store_verify_fn verify,
		    void *varg)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/wal", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	s->wal_fd = fd;
	s->wal_size = WAL_BYTES;
	struct stat st;
	uint8_t *buf = NULL;
	int err = 0;
	if (fstat(fd, &st) || posix_memalign((void **)&buf, CHUNK_PAGE, WAL_BYTES))
		return errno ? -errno : -ENOMEM;
	if ((uint64_t)st.st_size < WAL_BYTES) {
		/* Written zeros, not fallocate: a record then overwrites
		 * written extents, so making it durable needs only a device
		 * flush, no journal commit of an extent conversion. */
		memset(buf, 0, WAL_BYTES);
		uint64_t from = (uint64_t)st.st_size / CHUNK_PAGE * CHUNK_PAGE;
		if (pwrite(fd, buf, WAL_BYTES - from, (off_t)from) != (ssize_t)(WAL_BYTES - from) ||
		    fsync(fd)) {
			err = errno ? -errno : -EIO;
			goto out;
		}
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			(void)fsync(dfd);
			close(dfd);
		}
	}
	if (pread(fd, buf, WAL_BYTES, 0) != (ssize_t)WAL_BYTES) {
		err = errno ? -errno : -EIO;
		goto out;
	}
	/* Highest seq anywhere in the file: new records must exceed it. */
	uint64_t max_seq = 0, seq;
	for (uint64_t off = 0; off < WAL_BYTES; off += CHUNK_PAGE)
		if (rec_parse(buf + off, WAL_BYTES - off, &seq) && seq > max_seq)
			max_seq = seq;
	uint64_t off = 0, prev = 0, last = UINT64_MAX, nrec = 0;
	size_t n;
	while (off < WAL_BYTES && (n = rec_parse(buf + off, WAL_BYTES - off, &seq)) &&
	       (!prev || seq == prev + 1)) {
		last = off;
		prev = seq;
		off += n;
		nrec++;
	}
	s->wal_seq = max_seq;
	struct replay_ctx c = { s, NULL, verify, varg, 0, NULL, 0, 0, 0 };
	if (nrec && verify && !(err = rec_each(buf + last, collect_id, &c)))
		err = rec_each(buf + last, verify_op, &c);
	free(c.ids);
	if (err == -ENOMEM || err == -EMFILE || err == -ENFILE) {
		/* Could not check (chunk_store_verify_fn): dropping the record
		 * (and cutting the log below) would lose it for good if it was
		 * acknowledged. Fail the open (store_open logs it); a later
		 * one checks again. */
		goto out;
	}
	if (err) {
		LOG_WARN("chunk", "wal: last record names data that is not on disk, dropped as "
			 "never acknowledged: dir=%s seq=%llu err=%s", dir,
			 (unsigned long long)prev, cfs_strerror(err));
		nrec--;
		err = 0;
	}
	if (nrec) {
		int rc = mdb_txn_begin(s->env, NULL, 0, &c.txn);
		if (rc) {
			err = map_err(rc);
			goto out;
		}
		off = 0;
		for (uint64_t i = 0; i < nrec && !err; i++) {
			err = rec_each(buf + off, replay_op, &c);
			off += rec_parse(buf + off, WAL_BYTES - off, &seq);
		}
		if (err) {
			mdb_txn_abort(c.txn);
			goto out;
		}
		if ((rc = mdb_txn_commit(c.txn))) {
			err = map_err(rc);
			goto out;
		}
		/* LMDB (synced) holds the run: later opens must not replay it
		 * over changes made without the log (a sync-off open). */
		if ((err = wal_cut(s, buf)))
			goto out;
		LOG_INFO("chunk", "wal replayed: dir=%s records=%llu changes=%llu", dir,
			 (unsigned long long)nrec, (unsigned long long)c.ops);
	}
out:
	free(buf);
	return err;
}

/* Writes every overlay change, then OPS[0..NOPS) (a batch too big for the
 * log, or none), into LMDB in one synced transaction, then empties the
 * overlay and restarts the log at offset 0. Batch owner only, no batch
 * open. */
static int checkpoint_with(struct chunk_store *s, struct ov_ent *ops, size_t nops)
{
	if (s->ov_n || nops) {
		MDB_txn *txn = NULL;
		int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
		for (unsigned b = 0; b < OV_BUCKETS && !rc; b++)
			for (struct ov_ent *o = s->ov[b]; o && !rc; o = o->next)
				rc = txn_apply(txn, s->dbi, o);
		for (size_t i = 0; i < nops && !rc; i++)
			rc = txn_apply(txn, s->dbi, &ops[i]);
		if (rc) {
			if (txn) /* NULL when the begin failed */
				mdb_txn_abort(txn);
			return map_err(rc);
		}
		if ((rc = mdb_txn_commit(txn)))
			return map_err(rc);
		pthread_mutex_lock(&s->omu);
		ov_clear(s);
		pthread_mutex_unlock(&s->omu);
		s->checkpoints++;
		if (nops) {
			/* LMDB now holds changes newer than the log's run, which
			 * stays replayable until the next record overwrites its
			 * start: replayed over them after a crash, it would put
			 * back the older values of the chunks OPS changed (an
			 * acknowledged write lost, a removed chunk back). So cut
			 * it first. A failed cut is -EIO (ERROR state: no record
			 * may follow); the batch is then not acknowledged, and a
			 * replay leaves each of its chunks old or new. */
			uint8_t *page = NULL;
			int err = posix_memalign((void **)&page, CHUNK_PAGE, CHUNK_PAGE) ? -ENOMEM
											: 0;
			if (!err && wal_cut(s, page))
				err = -EIO;
			free(page);
			s->wal_off = 0;
			if (err)
				LOG_ERR("chunk", "wal: log cut after a direct commit failed: err=%s",
					cfs_strerror(err));
			return err;
		}
	}
	s->wal_off = 0;
	return 0;
}

static int checkpoint(struct chunk_store *s)
{
	return checkpoint_with(s, NULL, 0);
}

int chunk_store_maintain(struct chunk_store *s)
{
	if (s->wal_fd < 0 || (s->ov_n < WAL_CKPT_ENTRIES && s->wal_off < s->wal_size / 2))
		return 0;
	int err = checkpoint(s);
	if (err)
		LOG_WARN("chunk", "metadata checkpoint failed: err=%s", cfs_strerror(err));
	return err;
}

/* ---- open / close ------------------------------------------------------- */

static int store_open(const char *dir, uint64_t map_bytes, int sync, int snapshot,
		      chunk_store_verify_fn verify, void *arg, struct chunk_store **out)
{
	struct chunk_store *s = xcalloc(1, sizeof(*s));
	MDB_txn *txn = NULL;
	s->wal_fd = -1;
	s->boot = boot_id();
	pthread_mutex_init(&s->omu, NULL);
	int err = 0;
	int rc = mdb_env_create(&s->env);
	if (rc)
		goto fail;
	rc = mdb_env_set_mapsize(s->env, (size_t)map_bytes);
	if (rc)
		goto fail;
	/* With the log, LMDB commits only at checkpoints, synced as ever. */
	rc = mdb_env_open(s->env, dir,
			  MDB_NOTLS | (sync ? 0 : MDB_NOSYNC) | (snapshot ? MDB_RDONLY : 0), 0644);
	if (rc)
		goto fail;
	if (snapshot) {
		rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
		if (!rc)
			rc = mdb_dbi_open(txn, NULL, 0, &s->dbi);
		if (txn)
			mdb_txn_abort(txn);
		txn = NULL;
		if (rc)
			goto fail;
		s->ov = xcalloc(OV_BUCKETS, sizeof(*s->ov));
		if ((err = wal_load(s, dir)))
			goto fail;
		*out = s;
		return 0;
	}
	rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc)
		goto fail;
	rc = mdb_dbi_open(txn, NULL, 0, &s->dbi);
	if (rc)
		goto fail;
	rc = mdb_txn_commit(txn);
	txn = NULL;
	if (rc)
		goto fail;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/wal", dir);
	if (sync || !access(path, F_OK)) {
		/* A log left by a synced open is replayed whatever this open's
		 * mode: its records are committed changes. */
		if ((err = wal_open(s, dir, verify, arg)))
			goto fail;
		if (!sync) {
			close(s->wal_fd);
			s->wal_fd = -1;
		} else {
			s->ov = xcalloc(OV_BUCKETS, sizeof(*s->ov));
		}
	}
	*out = s;
	return 0;
fail:
	if (!err) {
		LOG_ERR("chunk", "store open failed: dir=%s err=%s", dir, mdb_strerror(rc));
		err = map_err(rc);
	} else {
		LOG_ERR("chunk", "store log open failed: dir=%s err=%s", dir, cfs_strerror(err));
	}
	if (txn)
		mdb_txn_abort(txn);
	if (s->wal_fd >= 0)
		close(s->wal_fd);
	if (s->ov) {
		ov_clear(s);
		free(s->ov);
	}
	if (s->env)
		mdb_env_close(s->env);
	pthread_mutex_destroy(&s->omu);
	free(s);
	return err;
}

int chunk_store_open_verified(const char *dir, uint64_t map_bytes, int sync,
			      chunk_store_verify_fn verify, void *arg, struct chunk_store **out)
{
	return store_open(dir, map_bytes, sync, 0, verify, arg, out);
}

int chunk_store_open(const char *dir, uint64_t map_bytes, int sync, struct chunk_store **out)
{
	return store_open(dir, map_bytes, sync, 0, NULL, NULL, out);
}

int chunk_store_open_snapshot(const char *dir, uint64_t map_bytes, struct chunk_store **out)
{
	return store_open(dir, map_bytes, 0, 1, NULL, NULL, out);
}

void chunk_store_close(struct chunk_store *s)
{
	if (!s)
		return;
	if (s->wal_fd >= 0) {
		/* Leaves LMDB complete and the log empty: a clean close needs
		 * no replay. On failure the log keeps the changes. */
		uint8_t *page = NULL;
		if (!checkpoint(s) && !posix_memalign((void **)&page, CHUNK_PAGE, CHUNK_PAGE))
			(void)wal_cut(s, page);
		free(page);
		close(s->wal_fd);
	}
	if (s->ov) {
		ov_clear(s);
		free(s->ov);
	}
	mdb_env_close(s->env);
	pthread_mutex_destroy(&s->omu);
	free(s);
}

void chunk_store_get_stat(struct chunk_store *s, struct chunk_store_stat *out)
{
	out->wal = s->wal_fd >= 0;
	out->wal_syncs = s->wal_syncs;
	out->checkpoints = s->checkpoints;
	pthread_mutex_lock(&s->omu);
	out->pending = s->ov_n;
	pthread_mutex_unlock(&s->omu);
}

/* ---- reads -------------------------------------------------------------- */

static int get_in_win(MDB_txn *txn, MDB_dbi dbi, struct chunk_id id, struct chunk_meta *out,
		      const struct page_win *w)
{
	uint8_t k[CHUNK_KEY_LEN];
	chunk_key_encode(id, k);
	MDB_val key = { sizeof(k), k }, val;
	int rc = mdb_get(txn, dbi, &key, &val);
	if (rc)
		return map_err(rc);
	return decode_win(val.mv_data, val.mv_size, out, w);
}

static int get_in(MDB_txn *txn, MDB_dbi dbi, struct chunk_id id, struct chunk_meta *out)
{
	return get_in_win(txn, dbi, id, out, NULL);
}

int chunk_store_get(struct chunk_store *s, struct chunk_id id, struct chunk_meta *out)
{
	int rc;
	if (ov_get(s, id, out, &rc))
		return rc;
	MDB_txn *txn;
	rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return map_err(rc);
	rc = get_in(txn, s->dbi, id, out);
	mdb_txn_abort(txn);
	return rc;
}

struct chunk_store_reader {
	struct chunk_store *s; /* borrowed */
	MDB_txn *txn;          /* owned, kept reset between lookups */
};

int chunk_store_reader_new(struct chunk_store *s, struct chunk_store_reader **out)
{
	struct chunk_store_reader *r = xcalloc(1, sizeof(*r));
	r->s = s;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &r->txn);
	if (rc) {
		free(r);
		return map_err(rc);
	}
	mdb_txn_reset(r->txn);
	*out = r;
	return 0;
}

void chunk_store_reader_free(struct chunk_store_reader *r)
{
	if (!r)
		return;
	mdb_txn_abort(r->txn);
	free(r);
}

static int reader_get_win(struct chunk_store_reader *r, struct chunk_id id,
			  struct chunk_meta *out, const struct page_win *w)
{
	/* Overlay first: a checkpoint commits LMDB before it empties the
	 * overlay, so a miss here is answered by LMDB as new or newer. */
	int rc;
	if (ov_get_win(r->s, id, out, &rc, w))
		return rc;
	rc = mdb_txn_renew(r->txn);
	if (rc)
		return map_err(rc);
	rc = get_in_win(r->txn, r->s->dbi, id, out, w);
	mdb_txn_reset(r->txn);
	return rc;
}

int chunk_store_reader_get(struct chunk_store_reader *r, struct chunk_id id, struct chunk_meta *out)
{
	return reader_get_win(r, id, out, NULL);
}

int chunk_store_reader_get_pages(struct chunk_store_reader *r, struct chunk_id id, uint32_t first,
				 uint32_t count, struct chunk_meta *out, uint32_t *pc)
{
	struct page_win w = { first, count, pc };
	return reader_get_win(r, id, out, &w);
}

struct last_ctx {
	struct chunk_id id;
	int found;
};

static int last_cb(void *arg, struct chunk_id id, const struct chunk_meta *m, int derr)
{
	(void)m;
	(void)derr;
	struct last_ctx *c = arg;
	c->id = id;
	c->found = 1;
	return 0;
}

static int ov_has_ino(struct chunk_store *s, uint64_t ino)
{
	int has = 0;
	if (!s->ov)
		return 0;
	pthread_mutex_lock(&s->omu);
	for (unsigned b = 0; b < OV_BUCKETS && !has && s->ov_n; b++)
		for (struct ov_ent *o = s->ov[b]; o && !has; o = o->next)
			has = o->id.ino == ino;
	pthread_mutex_unlock(&s->omu);
	return has;
}

int chunk_store_last(struct chunk_store *s, uint64_t ino, struct chunk_id *id, struct chunk_meta *out)
{
	if (ov_has_ino(s, ino)) {
		/* Changes of this inode not yet in LMDB: the merged scan. */
		struct last_ctx c = { { 0, 0 }, 0 };
		int err = chunk_store_scan(s, (struct chunk_id){ ino, 0 },
					   (struct chunk_id){ ino, UINT32_MAX }, last_cb, &c);
		struct chunk_meta m;
		if (!err && !chunk_store_get(s, (struct chunk_id){ ino, UINT32_MAX }, &m)) {
			chunk_meta_fini(&m);
			c.id = (struct chunk_id){ ino, UINT32_MAX };
			c.found = 1;
		}
		if (err)
			return err;
		if (!c.found)
			return -ENOENT;
		*id = c.id;
		return chunk_store_get(s, c.id, out);
	}
	MDB_txn *txn;
	MDB_cursor *cur;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return map_err(rc);
	rc = mdb_cursor_open(txn, s->dbi, &cur);
	if (rc) {
		mdb_txn_abort(txn);
		return map_err(rc);
	}
	/* Seek to the last key <= (ino, UINT32_MAX). */
	uint8_t k[CHUNK_KEY_LEN];
	chunk_key_encode((struct chunk_id){ ino, UINT32_MAX }, k);
	MDB_val key = { sizeof(k), k }, val;
	rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
	if (rc == 0) {
		if (key.mv_size != CHUNK_KEY_LEN || memcmp(key.mv_data, k, CHUNK_KEY_LEN))
			rc = mdb_cursor_get(cur, &key, &val, MDB_PREV);
	} else if (rc == MDB_NOTFOUND) {
		rc = mdb_cursor_get(cur, &key, &val, MDB_LAST);
	}
	int err = map_err(rc);
	if (!err) {
		err = chunk_key_decode(key.mv_data, key.mv_size, id);
		if (!err && id->ino != ino)
			err = -ENOENT;
		if (!err)
			err = chunk_meta_decode(val.mv_data, val.mv_size, out);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return err;
}

static int ent_cmp(const void *a, const void *b)
{
	return chunk_id_cmp(((const struct ov_ent *)a)->id, ((const struct ov_ent *)b)->id);
}

static int scan_call(chunk_store_scan_fn fn, void *arg, struct chunk_id id, const void *v,
		     size_t n, int *stop)
{
	struct chunk_meta m;
	int derr = chunk_meta_decode(v, n, &m);
	if (derr == -ENOMEM)
		return derr;
	*stop = fn(arg, id, &m, derr);
	chunk_meta_fini(&m);
	return 0;
}

int chunk_store_scan(struct chunk_store *s, struct chunk_id from, struct chunk_id to,
		     chunk_store_scan_fn fn, void *arg)
{
	/* The overlay's changes in range, copied before the LMDB snapshot
	 * is taken: whatever a checkpoint moved out of the overlay before the
	 * copy is in that snapshot. */
	struct ov_ent *ov = NULL;
	size_t nov = 0, cap = 0;
	if (s->ov) {
		pthread_mutex_lock(&s->omu);
		for (unsigned b = 0; b < OV_BUCKETS && s->ov_n; b++)
			for (struct ov_ent *o = s->ov[b]; o; o = o->next) {
				if (chunk_id_cmp(o->id, from) < 0 || chunk_id_cmp(o->id, to) >= 0)
					continue;
				if (nov == cap) {
					cap = cap ? cap * 2 : 64;
					ov = xrealloc(ov, cap * sizeof(*ov));
				}
				ov[nov] = *o;
				ov[nov].val = o->val ? xmalloc(o->len) : NULL;
				if (o->val)
					memcpy(ov[nov].val, o->val, o->len);
				nov++;
			}
		pthread_mutex_unlock(&s->omu);
		if (nov)
			qsort(ov, nov, sizeof(*ov), ent_cmp);
	}
	MDB_txn *txn;
	MDB_cursor *cur = NULL;
	int ret = 0;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (!rc && (rc = mdb_cursor_open(txn, s->dbi, &cur)))
		mdb_txn_abort(txn);
	if (rc) {
		ret = map_err(rc);
		goto out;
	}
	uint8_t k[CHUNK_KEY_LEN];
	chunk_key_encode(from, k);
	MDB_val key = { sizeof(k), k }, val;
	size_t i = 0;
	rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
	for (;;) {
		struct chunk_id id = { 0, 0 };
		int have_l = 0;
		while (rc == 0) {
			if (!chunk_key_decode(key.mv_data, key.mv_size, &id)) {
				have_l = chunk_id_cmp(id, to) < 0;
				break;
			}
			LOG_WARN("chunk", "store: skipping malformed key: len=%zu", key.mv_size);
			rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
		}
		int stop = 0;
		if (i < nov && (!have_l || chunk_id_cmp(ov[i].id, id) <= 0)) {
			if (have_l && !chunk_id_cmp(ov[i].id, id))
				rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
			if (ov[i].val)
				ret = scan_call(fn, arg, ov[i].id, ov[i].val, ov[i].len, &stop);
			i++;
		} else if (have_l) {
			ret = scan_call(fn, arg, id, val.mv_data, val.mv_size, &stop);
			rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
		} else {
			break;
		}
		if (ret)
			break;
		if (stop) {
			ret = stop;
			break;
		}
	}
	if (!ret && rc && rc != MDB_NOTFOUND)
		ret = map_err(rc);
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
out:
	for (size_t j = 0; j < nov; j++)
		free(ov[j].val);
	free(ov);
	return ret;
}

uint64_t chunk_store_count(struct chunk_store *s)
{
	MDB_txn *txn;
	MDB_stat st;
	if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn))
		return 0;
	int rc = mdb_stat(txn, s->dbi, &st);
	uint64_t n = rc ? 0 : st.ms_entries;
	if (!rc && s->ov) {
		pthread_mutex_lock(&s->omu);
		for (unsigned b = 0; b < OV_BUCKETS && s->ov_n; b++)
			for (struct ov_ent *o = s->ov[b]; o; o = o->next) {
				uint8_t k[CHUNK_KEY_LEN];
				chunk_key_encode(o->id, k);
				MDB_val key = { sizeof(k), k }, val;
				int in = !mdb_get(txn, s->dbi, &key, &val);
				if (o->val && !in)
					n++;
				else if (!o->val && in)
					n--;
			}
		pthread_mutex_unlock(&s->omu);
	}
	mdb_txn_abort(txn);
	return n;
}

/* ---- batches ------------------------------------------------------------ */

int chunk_store_batch_begin(struct chunk_store *s, struct chunk_batch **out)
{
	struct chunk_batch *b = xcalloc(1, sizeof(*b));
	b->s = s;
	int rc = mdb_txn_begin(s->env, NULL, s->wal_fd >= 0 ? MDB_RDONLY : 0, &b->txn);
	if (rc) {
		free(b);
		return map_err(rc);
	}
	*out = b;
	return 0;
}

int chunk_store_batch_get(struct chunk_batch *b, struct chunk_id id, struct chunk_meta *out)
{
	for (size_t i = b->nops; i-- > 0;)
		if (!chunk_id_cmp(b->ops[i].id, id))
			return b->ops[i].val ? chunk_meta_decode(b->ops[i].val, b->ops[i].len, out)
					     : -ENOENT;
	int rc;
	if (ov_get(b->s, id, out, &rc))
		return rc;
	return get_in(b->txn, b->s->dbi, id, out);
}

static void batch_add(struct chunk_batch *b, struct chunk_id id, uint8_t *val, uint32_t len)
{
	if (b->nops == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 16;
		b->ops = xrealloc(b->ops, b->cap * sizeof(*b->ops));
	}
	b->ops[b->nops++] = (struct ov_ent){ .id = id, .val = val, .len = len };
}

int chunk_store_batch_put(struct chunk_batch *b, struct chunk_id id, const struct chunk_meta *m)
{
	if (b->s->wal_fd >= 0) {
		size_t n = chunk_meta_size(m);
		uint8_t *v = xmalloc(n);
		chunk_meta_encode(m, v);
		batch_add(b, id, v, (uint32_t)n);
		return 0;
	}
	uint8_t k[CHUNK_KEY_LEN];
	chunk_key_encode(id, k);
	MDB_val key = { sizeof(k), k }, val = { chunk_meta_size(m), NULL };
	int rc = mdb_put(b->txn, b->s->dbi, &key, &val, MDB_RESERVE);
	if (rc)
		return map_err(rc);
	chunk_meta_encode(m, val.mv_data);
	return 0;
}

int chunk_store_batch_del(struct chunk_batch *b, struct chunk_id id)
{
	if (b->s->wal_fd >= 0) {
		batch_add(b, id, NULL, 0);
		return 0;
	}
	uint8_t k[CHUNK_KEY_LEN];
	chunk_key_encode(id, k);
	MDB_val key = { sizeof(k), k };
	int rc = mdb_del(b->txn, b->s->dbi, &key, NULL);
	return rc == MDB_NOTFOUND ? 0 : map_err(rc);
}

int chunk_store_batch_write(struct chunk_batch *b)
{
	struct chunk_store *s = b->s;
	if (s->wal_fd < 0 || b->written || b->direct)
		return 0;
	size_t len = 0;
	for (size_t i = 0; i < b->nops; i++)
		len += 1 + CHUNK_KEY_LEN + 4 + b->ops[i].len;
	size_t padded = rec_pad(WAL_HDR + len);
	if (padded > s->wal_size / 4) {
		b->direct = 1; /* a huge batch (a big remove): straight into LMDB */
		return 0;
	}
	if (s->wal_off + padded > s->wal_size) {
		int err = checkpoint(s);
		if (err)
			return err;
	}
	if (posix_memalign((void **)&b->rec, CHUNK_PAGE, padded))
		return -ENOMEM;
	uint8_t *p = b->rec;
	memset(p + WAL_HDR + len, 0, padded - WAL_HDR - len);
	put32(p, WAL_MAGIC);
	put64(p + 8, s->wal_seq + 1);
	put32(p + 16, (uint32_t)len);
	put32(p + 20, (uint32_t)b->nops);
	put64(p + 24, s->boot);
	uint8_t *q = p + WAL_HDR;
	for (size_t i = 0; i < b->nops; i++) {
		q[0] = b->ops[i].val == NULL;
		chunk_key_encode(b->ops[i].id, q + 1);
		put32(q + 1 + CHUNK_KEY_LEN, b->ops[i].len);
		q += 1 + CHUNK_KEY_LEN + 4;
		if (b->ops[i].len)
			memcpy(q, b->ops[i].val, b->ops[i].len);
		q += b->ops[i].len;
	}
	put32(p + 4, crc32c(0, p + 8, WAL_HDR - 8 + len));
	/* The seq is spent even if the write fails: a later record must not
	 * reuse it, whatever part of this one reached the disk. */
	s->wal_seq++;
	ssize_t n = pwrite(s->wal_fd, p, padded, (off_t)s->wal_off);
	if (n != (ssize_t)padded) {
		/* Spent seq: the next record here would end the replay (seqs
		 * must follow one another), so the caller must stop writing
		 * records: -EIO, never the retryable -ENOSPC. */
		LOG_ERR("chunk", "wal: record write failed: off=%llu err=%s",
			(unsigned long long)s->wal_off, n < 0 ? cfs_strerror(-errno) : "short write");
		return -EIO;
	}
	b->rec_len = padded;
	b->written = 1;
	return 0;
}

static void batch_free(struct chunk_batch *b)
{
	for (size_t i = 0; i < b->nops; i++)
		free(b->ops[i].val);
	free(b->ops);
	free(b->rec);
	free(b);
}

/* A batch too big for the log: the overlay and the batch in one synced
 * LMDB transaction (a checkpoint that carries the batch). */
static int commit_direct(struct chunk_batch *b)
{
	mdb_txn_abort(b->txn);
	b->txn = NULL;
	return checkpoint_with(b->s, b->ops, b->nops);
}

int chunk_store_batch_commit_flushed(struct chunk_batch *b, int flushed)
{
	struct chunk_store *s = b->s;
	int err = 0;
	if (s->wal_fd < 0) {
		int rc = mdb_txn_commit(b->txn);
		b->txn = NULL;
		batch_free(b);
		return map_err(rc);
	}
	if (!b->written && !b->direct)
		err = chunk_store_batch_write(b);
	if (!err && b->direct) {
		err = commit_direct(b);
		batch_free(b);
		return err;
	}
	if (!err && !flushed) {
		/* After the record: -EIO as for its write (chunk_store_batch_write) */
		if (fdatasync(s->wal_fd))
			err = errno == ENOSPC ? -EIO : -errno;
		s->wal_syncs++;
	}
	mdb_txn_abort(b->txn);
	b->txn = NULL;
	if (err) {
		batch_free(b);
		return err;
	}
	/* Durable: visible to readers from now on. */
	pthread_mutex_lock(&s->omu);
	for (size_t i = 0; i < b->nops; i++) {
		ov_set(s, &b->ops[i]);
		b->ops[i].val = NULL;
	}
	pthread_mutex_unlock(&s->omu);
	s->wal_off += b->rec_len;
	batch_free(b);
	return 0;
}

int chunk_store_batch_commit(struct chunk_batch *b)
{
	return chunk_store_batch_commit_flushed(b, 0);
}

void chunk_store_batch_abort(struct chunk_batch *b)
{
	if (!b)
		return;
	if (b->txn)
		mdb_txn_abort(b->txn);
	batch_free(b);
}
