/* file_io.h - file data I/O for the client: file ranges to chunk requests.
 *
 * A file_io turns a read or write of a byte range of one file into chunk
 * requests: the range is cut at chunk boundaries of the file's layout (reads
 * of an otherwise idle file_io also every read_piece bytes inside a chunk)
 * (layout.h: chunk i on chains[perm[i % stripe]], chunk id (ino, i)), the
 * pieces run in parallel on a worker pool (the calling thread takes one
 * piece itself), and the call returns when every piece finished. Where a
 * chunk is absent or shorter than the range, a read returns zeros (sparse
 * files), and reads stop at the file size the client knows.
 *
 * The chunk requests go through a backend (struct file_io_backend): the
 * storage client in the mount, an in-memory fake in tests. Chain heads,
 * replica choice, retries and checksums are the backend's business.
 *
 * OPEN-FILE STATE. Each inode open through this file_io has one
 * file_io_inode (refcounted: file_io_open / file_io_release) with its
 * layout, the size meta last reported, and the highest end offset written
 * through this client under the inode's current truncate version. The
 * client reports that length to meta (meta_client_sync, query 0) from a
 * background thread every sync_interval_ms while it changed, and callers
 * report it on fsync and close (file_io_length). file_io_size is what stat
 * should show while the file is open here: max(meta size, written end).
 *
 * Threads: every call is thread-safe; reads and writes of one inode run
 * concurrently (disjoint ranges of one file are not serialized here). The
 * library never aborts and logs nothing unless a log sink is installed.
 */
#ifndef CFS_CLIENT_FILE_IO_H
#define CFS_CLIENT_FILE_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "client/meta_client.h"
#include "meta/layout.h"
#include "meta/schema.h"

typedef struct file_io file_io;
typedef struct file_io_inode file_io_inode;

/* One piece of a batched read (file_io_backend.read_batch). */
struct file_io_piece {
	uint32_t chain, index, off, len; /* in: as for read */
	uint64_t ino;                    /* in */
	void *buf;                       /* in: len bytes */
	int result;                      /* out: as read's return value */
};

/* A chunk as the conditional write sees it (file_io_backend.write_if). */
struct file_io_chunk_state {
	uint64_t ver; /* 0: absent */
	uint32_t len, crc;
};

/* Chunk storage as file_io needs it. Every call must be thread-safe and
 * may block; they return <0 (-errno or -CFS_E*) on failure. */
struct file_io_backend {
	void *arg;
	/* Reads bytes [OFF, OFF+LEN) of chunk (INO, INDEX) on CHAIN into BUF.
	 * Returns how many bytes from OFF the chunk holds (0..LEN: 0 when the
	 * chunk is absent or ends before OFF); file_io zero-fills the rest. */
	int (*read)(void *arg, uint32_t chain, uint64_t ino, uint32_t index, uint32_t off,
	            uint32_t len, void *buf);
	/* Writes BUF to bytes [OFF, OFF+LEN) of chunk (INO, INDEX) on CHAIN
	 * (chunks are at most CHUNK_SIZE bytes; a write past a chunk's end
	 * extends it, with zeros in any gap). 0 when the write is durable on
	 * the chain. */
	int (*write)(void *arg, uint32_t chain, uint64_t ino, uint32_t index, uint32_t off,
	             uint32_t len, const void *buf, uint32_t chunk_size);
	/* Optional: as write, with CRC the CRC32C of the LEN bytes at BUF from
	 * the caller of file_io_write_crc (the backend need not compute it;
	 * bytes that do not match it must never be written). FLAGS:
	 * FILE_IO_WF_* from file_io_write_crc_flags (0 otherwise). */
	int (*write_crc)(void *arg, uint32_t chain, uint64_t ino, uint32_t index, uint32_t off,
	                 uint32_t len, const void *buf, uint32_t chunk_size, uint32_t crc,
	                 uint32_t flags);
	/* Optional: reads N pieces at once, each as read does (P[i].result).
	 * 0, or <0 when the whole call failed. With it, a read's pieces go
	 * out together from the calling thread (the backend overlaps them)
	 * instead of through the worker pool. */
	int (*read_batch)(void *arg, struct file_io_piece *p, size_t n);
	/* Optional: as read, but returns at once; DONE(DARG, read's return
	 * value) runs exactly once, on any thread (perhaps before read_async
	 * returns), and must not block. Returns 0, or <0 when the read could
	 * not start (DONE not called). */
	int (*read_async)(void *arg, uint32_t chain, uint64_t ino, uint32_t index, uint32_t off,
	                  uint32_t len, void *buf, void (*done)(void *darg, int rc), void *darg);
	/* Optional: removes chunks [BEGIN, END) of INO that live on CHAIN
	 * (absent ones are fine). 0 or <0. Without it file_io_punch writes
	 * zeros over whole chunks too. */
	int (*remove)(void *arg, uint32_t chain, uint64_t ino, uint32_t begin, uint32_t end);
	/* Optional (both or neither; the inline data conversion's fence,
	 * file_io_idata.c): CHUNK_VER sets *ST to the state of chunk (INO,
	 * INDEX) on CHAIN (ver 0: absent); WRITE_IF replaces that chunk with
	 * LEN (>= 1) bytes only if its state at the chain's head is *EXPECT
	 * (ver 0: absent; else version, length and CRC), decided there: 0
	 * with the chunk's new state in *NOW (may be NULL), -ESTALE when it
	 * is not (nothing written), -EOPNOTSUPP when storage cannot decide it
	 * (a head that predates the condition; nothing written). A chunk made
	 * "if absent" gets version CREATE_VER when it is not 0 and storage
	 * can (else 1: *NOW says which). CHUNK_VER's state is one every
	 * replica applied (the chain's committed one), never a pending one a
	 * failing head could take with it. */
	int (*chunk_ver)(void *arg, uint32_t chain, uint64_t ino, uint32_t index,
	                 struct file_io_chunk_state *st);
	int (*write_if)(void *arg, uint32_t chain, uint64_t ino, uint32_t index, uint32_t len,
	                const void *buf, const struct file_io_chunk_state *expect,
	                uint64_t create_ver, struct file_io_chunk_state *now);
};

/* Zero fields take the defaults in brackets. */
struct file_io_opts {
	struct file_io_backend backend;
	meta_client *meta;         /* borrowed, for periodic length reports; may be NULL */
	int workers;               /* chunk-request threads [8] */
	uint32_t sync_interval_ms; /* periodic length report [5000] */
	uint32_t read_piece;       /* while fewer than 2 reads are in progress, reads are
	                              also cut every this many bytes inside a chunk and
	                              the pieces run in parallel [256 KiB]; a value >=
	                              the chunk size cuts at chunk boundaries only */
	uint32_t write_behind;     /* file_io_write_behind keeps up to this many bytes
	                              per inode in flight; 0: it writes synchronously */
	uint64_t write_behind_total; /* ... and this many over all inodes [64 MiB] */
	int read_ahead;            /* bytes fetched ahead of a sequential reader of an
	                              inode [4 MiB]; < 0: no read-ahead */
	uint32_t read_ahead_ttl_ms; /* read-ahead data fetched longer ago than this is
	                              dropped, not served [500]: the staleness bound */
	/* Tests only (NULL in the mount): called with RA_WAIT_ARG each time a
	 * read starts waiting for a read-ahead unit still in flight, with the
	 * inode's lock held until the wait releases it (so a unit cannot
	 * finish between the call and the wait). Must not block or call
	 * file_io. Lets a test finish a unit only once its readers wait. */
	void (*ra_wait)(void *ra_wait_arg);
	void *ra_wait_arg;
};

/* 0, -EINVAL (no backend; message in ERR), -ENOMEM, -errno. */
int file_io_new(const struct file_io_opts *o, file_io **out, char *err, size_t errlen);
/* Stops the workers and the sync thread (reporting dirty lengths once
 * more) and frees. Every inode must have been released. NULL-safe. */
void file_io_free(file_io *f);

/* Takes a reference on the open state of IN (a file with a layout),
 * creating it or refreshing it from IN: the meta size, and when IN's
 * truncate_ver is newer than the state's, the written end starts over
 * under it (a truncate by anyone invalidates it); a written end not
 * reported yet is still reported, under the old truncate_ver (meta counts
 * of it only what storage holds past the cut: writes made after the
 * truncate). 0, -EINVAL (not a file or bad layout), -ENOMEM. */
int file_io_open(file_io *f, const struct meta_inode *in, file_io_inode **out);
/* Drops the reference. NULL-safe. */
void file_io_release(file_io *f, file_io_inode *fi);
/* The state of INO if some open holds it (a new reference), else NULL. */
file_io_inode *file_io_find(file_io *f, uint64_t ino);

/* Reads up to LEN bytes at OFF into BUF, stopping at file_io_size.
 * Returns the bytes read (0 at or past the end) or <0 from the backend;
 * -EFBIG when the range goes past chunk index 2^32-1.
 *
 * READ-AHEAD. A read that starts where one of the inode's last few
 * readers (up to 4 streams) stopped is sequential: file_io then keeps
 * opts.read_ahead bytes past it in flight (1 MiB units on the worker
 * pool) and serves later sequential reads from
 * them; a read that continues no stream starts one in place of the least
 * recently used, whose units are dropped (a seek cancels). A file of at
 * most 1 MiB read at random in pieces of at most 16 KiB (git's index-pack
 * on the pack it wrote) is fetched whole as one unit from its second such
 * read on, and later reads are served from it.
 * COHERENCE: a served unit was fetched from storage at most
 * read_ahead_ttl_ms before the read began; a write or write-behind
 * through this file_io, and a truncate it learns of (file_io_update),
 * drop the inode's units, so a reader sees its own mount's writes at
 * once and another mount's writes within read_ahead_ttl_ms. No units are
 * fetched while write-behind writes of the inode are in flight. */
ssize_t file_io_read(file_io *f, file_io_inode *fi, uint64_t off, size_t len, void *buf);
/* file_io_read without waiting where it can: DONE(ARG, what file_io_read
 * would return) runs exactly once. A read that read-ahead does not serve
 * and that is one chunk piece of at most 128 KiB goes to the backend's read_async and DONE
 * runs on the backend's thread; anything else runs as file_io_read on the
 * calling thread, which then calls DONE before returning. DONE must not
 * block. BUF and FI (a reference) stay the caller's until DONE. */
void file_io_read_async(file_io *f, file_io_inode *fi, uint64_t off, size_t len, void *buf,
                        void (*done)(void *arg, ssize_t n), void *arg);
/* file_io_read_async that may skip the copy into BUF: *DATA and *HOLD
 * are set before DONE runs. A read served whole from one finished
 * read-ahead unit leaves the bytes there: *DATA points at them and they
 * stay valid and unchanged until file_io_read_unref(F, *HOLD) (the unit
 * and FI stay alive until then; a write meanwhile drops the unit from
 * later reads only, as if the bytes had been copied when DONE ran).
 * Otherwise *DATA is BUF and *HOLD NULL. Call file_io_read_unref once
 * after DONE, from any thread (NULL: no-op). */
void file_io_read_async_ref(file_io *f, file_io_inode *fi, uint64_t off, size_t len, void *buf,
                            const void **data, void **hold,
                            void (*done)(void *arg, ssize_t n), void *arg);
void file_io_read_unref(file_io *f, void *hold);
/* Waits until every DONE of file_io_read_async that went to the backend
 * has returned (each ends within the backend's request timeout). Call
 * before tearing down what the DONEs use (the FUSE session); file_io_free
 * calls it too. Any thread but a backend completion thread. */
void file_io_wait_reads(file_io *f);
/* Makes bytes [OFF, OFF+LEN) read as zeros without changing the size
 * (fallocate PUNCH_HOLE / ZERO_RANGE inside the file). Chunks wholly inside
 * the range are removed from storage when the backend can (their space
 * comes back; a missing chunk reads as zeros), except the chunk holding
 * the file's last byte, whose length storage reports as the file's end;
 * the partial chunks at the edges get zeros written. Caller drains
 * write-behind first. 0 or <0 from the backend. */
int file_io_punch(file_io *f, file_io_inode *fi, uint64_t off, uint64_t len);
/* Forgets the inode's read-ahead: no data fetched before this call is
 * served by a later read (units in flight are dropped when they land).
 * For callers that learn another client may have changed the file, such
 * as a granted file lock (readers after a lock must see the holder's
 * predecessors' writes at once, not within read_ahead_ttl_ms). Any
 * thread. */
void file_io_invalidate(file_io_inode *fi);
/* Writes LEN bytes of BUF at OFF and raises the written end. Returns LEN
 * or <0 (-EFBIG as above; a backend error leaves the written end where it
 * was: pieces that did land are not reported until a later write covers
 * them). */
ssize_t file_io_write(file_io *f, file_io_inode *fi, uint64_t off, size_t len, const void *buf);
/* file_io_write that also hands back, when the write was served inline
 * (meta held the bytes), the inode meta returned right after the write
 * committed: ATTR->ino is the file's then, 0 otherwise (a chunk write,
 * an error). ATTR may be NULL. */
ssize_t file_io_write_attr(file_io *f, file_io_inode *fi, uint64_t off, size_t len,
                           const void *buf, struct meta_inode *attr);
/* file_io_write with CRC, the CRC32C of the LEN bytes of BUF, computed by
 * the caller: a write that is one chunk piece hands it to the backend's
 * write_crc (one pass over the bytes fewer), which fails the write when
 * the bytes do not match it; other writes (several pieces, inline data,
 * no write_crc) go as file_io_write and CRC is not used. */
ssize_t file_io_write_crc(file_io *f, file_io_inode *fi, uint64_t off, size_t len, const void *buf,
                          uint32_t crc);
/* Cache mode (KVCache namespaces with --durability cache): the storage
 * write may be acknowledged without a device flush (STO_WF_NOFLUSH,
 * docs/kvcache.md "Durability"). */
#define FILE_IO_WF_NOFLUSH 1u
/* The chunk is written only if it is absent (STO_WF_IF_ABSENT): else the
 * write fails with -EEXIST. Used by the inline-data conversion as its
 * fence (file_io_idata.c); a backend without write_crc cannot fence. */
#define FILE_IO_WF_IF_ABSENT 2u
/* file_io_write_crc with FLAGS (FILE_IO_WF_*) for the backend's write_crc;
 * a write that does not go through write_crc (see above) ignores them and
 * is as durable as any. */
ssize_t file_io_write_crc_flags(file_io *f, file_io_inode *fi, uint64_t off, size_t len,
                                const void *buf, uint32_t crc, uint32_t flags);

/* WRITE-BEHIND. Like file_io_write, but returns once a private copy of
 * BUF is queued (up to opts.write_behind bytes per inode and
 * write_behind_total overall in flight; beyond that it waits for room).
 * Writes touching the same chunks as a queued one wait for it, so the
 * chain heads see them in order; reads wait for queued writes of their
 * range; file_io_size counts queued writes; the written end (what
 * file_io_length reports) moves only when a write landed. A queued write
 * that fails is kept as the inode's error: returned by every later
 * write-behind call and once by file_io_drain. Returns LEN, or <0: the
 * kept error, -EFBIG. Falls back to file_io_write when write_behind is 0,
 * LEN is larger, or memory for the copy is short. */
ssize_t file_io_write_behind(file_io *f, file_io_inode *fi, uint64_t off, size_t len,
                             const void *buf);
/* Waits for every write-behind write of FI queued before the call, then
 * returns and clears the kept error (0 when none). Call before reporting
 * the length (close, fsync, truncate). */
int file_io_drain(file_io_inode *fi);

/* max(meta size, written end, end of queued write-behind writes). */
uint64_t file_io_size(file_io_inode *fi);
/* The length to report to meta: {written end, truncate_ver}; 1 when
 * anything was written since the state was created or truncated, else 0.
 * Clears the periodic-sync dirty mark. */
int file_io_length(file_io_inode *fi, struct meta_length *out);
/* As file_io_length, but 1 only when that length differs from the last
 * one passed to file_io_length_reported: a close(2) of a file whose length
 * meta already has sends nothing (a forked child's exec closing inherited
 * descriptors then needs no meta). */
int file_io_length_unreported(file_io_inode *fi, struct meta_length *out);
/* file_io_drain then file_io_length_unreported in one hold of the inode's
 * lock (a close's two steps, and one interleaving of calling them in
 * turn): the kept error goes to *ERR, the length to *OUT, and the result
 * is file_io_length_unreported's. With WAIT 0 and a write-behind write
 * queued before the call still in flight, returns -EAGAIN and takes
 * nothing (the caller hands its thread over, then calls with WAIT 1). */
int file_io_drain_unreported(file_io_inode *fi, int wait, struct meta_length *out, int *err);
/* 1 when file_io_drain would not wait (no write-behind write queued)
 * and file_io_length_unreported would report nothing: closing a handle
 * of FI then costs no wait and no meta call. Any thread; a snapshot. */
int file_io_settled(file_io_inode *fi);
/* Records LEN as acknowledged by meta. Any thread. */
void file_io_length_reported(file_io_inode *fi, const struct meta_length *len);
/* INLINE DATA (meta.h "inline data"; file_io_idata.c). A file that was
 * inline when its state was created here is read and written through meta
 * while it stays inline (file_io_read/write do it: callers need nothing
 * else); a write past the threshold first converts it to chunks. Reads
 * are served from bytes meta returned at most read_ahead_ttl_ms earlier
 * (the same staleness bound as read-ahead). Needs opts.meta (file_io_open
 * of an inline file without it: -EOPNOTSUPP). */
uint64_t file_io_ino(const file_io_inode *fi);
/* 1 while FI's data is inline as far as this client knows. */
int file_io_idata_on(file_io_inode *fi);
/* Caches the bytes an open returned with the inode (meta_client_open_idata,
 * its request sent at READ_NS, mono clock) or a lookup-ahead batch read at
 * READ_NS: they serve reads only until read_ahead_ttl_ms after READ_NS,
 * and not at all when a write through this client came after READ_NS
 * (the bytes may predate it). */
void file_io_idata_prime_at(file_io_inode *fi, const void *data, uint32_t len, uint64_t read_ns);
/* 1 when a read of [OFF, OFF+LEN) of FI would be answered from memory
 * now, without any wait (an inline file whose cached bytes are fresh, or
 * a fresh read-ahead unit that finished and holds all of it). A hint (it
 * may expire). */
int file_io_read_cached_range(file_io *f, file_io_inode *fi, uint64_t off, size_t len);
/* The mount's READ hints, under one lock: *SIZE gets file_io_size(FI),
 * and it returns 1 when file_io_read_cached_range of [OFF, OFF+LEN) is
 * 1, or when file_io_read_async of it is sure to return without waiting
 * (a chunked file with no write-behind in flight, a read small enough for
 * the async path within one piece, not continuing a read-ahead stream,
 * which may wait for a unit in flight). The mount's FUSE loop then serves
 * it on its reading thread without handing the reading over. A hint (it
 * may expire): a read that waits after all only delays the next request. */
int file_io_read_wont_wait(file_io *f, file_io_inode *fi, uint64_t off, size_t len,
                           uint64_t *size);
/* read_ahead_ttl_ms: how old inline bytes may be when they serve a read. */
uint32_t file_io_snapshot_ms(const file_io *f);
/* Moves FI's data to chunks (no-op when chunked): for callers that need
 * chunks (ring I/O, a truncate past the threshold). 0 or <0. */
int file_io_idata_convert(file_io *f, file_io_inode *fi);

/* Records attributes meta returned (getattr, setattr, sync): a newer
 * truncate_ver drops the written end; the meta size is taken as is. */
void file_io_update(file_io_inode *fi, const struct meta_inode *in);
/* The file's layout (borrowed while the reference is held). */
const struct meta_layout *file_io_layout(file_io_inode *fi);

/* Serialises appends of one inode: hold it from reading file_io_size to
 * the end of the write. */
void file_io_append_lock(file_io_inode *fi);
void file_io_append_unlock(file_io_inode *fi);

#endif
