/* file_io_idata.h - inline data in file_io (internal to src/client).
 *
 * file_io.c keeps one struct fio_idata per open inode that was inline when
 * first opened here (NULL for chunked files: a file never goes back to
 * inline), and calls these hooks at the top of its read, write and punch
 * paths. The hooks serve an inline file from meta (meta.h "inline data")
 * and convert it to chunks when a write or a caller needs chunks; once the
 * file is chunked they answer "not handled" and file_io goes on as for any
 * file. Threads: as file_io (any thread; conversions of one inode are
 * serialized here).
 */
#ifndef CFS_CLIENT_FILE_IO_IDATA_H
#define CFS_CLIENT_FILE_IO_IDATA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "client/file_io.h"

struct fio_idata;

/* What the hooks need from file_io.c (defined there). */
meta_client *fio_meta(const file_io *f);
uint32_t fio_snapshot_ms(const file_io *f);
/* Writes BUF to chunks [OFF, OFF+LEN) without touching the written end.
 * WFLAGS (FILE_IO_WF_*) reach the backend's write_crc when the range is
 * one chunk piece; else they are dropped. */
int fio_write_chunks(file_io *f, file_io_inode *fi, uint64_t off, size_t len, const void *buf,
                     uint32_t wflags);
/* The conditional replace of chunk 0 (file_io_backend.chunk_ver and
 * write_if): 1 when the backend has it. */
int fio_can_fence(const file_io *f);
/* Chunk 0's state (ver 0: absent) into *ST; 0 or <0. */
int fio_chunk0_ver(file_io *f, file_io_inode *fi, struct file_io_chunk_state *st);
/* Chunk 0 becomes BUF's LEN bytes if its state is *EXPECT (ver 0:
 * absent; then made at CREATE_VER when storage can, 0: 1): 0 with its
 * new state in *NOW (may be NULL), -ESTALE, -EOPNOTSUPP
 * (backend.write_if's contract), or <0. */
int fio_write_chunk0_if(file_io *f, file_io_inode *fi, const void *buf, uint32_t len,
                        const struct file_io_chunk_state *expect, uint64_t create_ver,
                        struct file_io_chunk_state *now);
/* Removes chunk 0 of FI when the backend can (0 otherwise). */
int fio_remove_chunk0(file_io *f, file_io_inode *fi);

/* NULL unless IN is inline (or on -ENOMEM, when the file is then treated
 * as chunked-unknown: every hook converts first). */
struct fio_idata *fio_idata_new(const struct meta_inode *in);
void fio_idata_free(struct fio_idata *st);
/* Attributes from meta: a chunked IN ends the inline state; a changed
 * size drops the cached bytes. NULL-safe. */
void fio_idata_update(struct fio_idata *st, const struct meta_inode *in);
int fio_idata_on(const struct fio_idata *st);
/* Forgets the cached bytes (file_io_invalidate: e.g. a granted lock). */
void fio_idata_invalidate(struct fio_idata *st);

/* Hooks: *handled = 1 when the call was served here (return value is
 * the result), 0 when file_io should go on with chunks. ATTR (may be
 * NULL; caller sets ->ino = 0) receives the inode meta returned for a
 * write served inline, read right after it committed. */
ssize_t fio_idata_read(file_io *f, file_io_inode *fi, struct fio_idata *st, uint64_t off,
                       size_t len, void *buf, int *handled);
ssize_t fio_idata_write(file_io *f, file_io_inode *fi, struct fio_idata *st, uint64_t off,
                        size_t len, const void *buf, int *handled,
                        struct meta_inode *attr);
/* Makes the file chunked (no-op when it is). 0 or <0. */
int fio_idata_convert(file_io *f, file_io_inode *fi, struct fio_idata *st);
/* 1 when a read of ST would be served from the cached bytes now (no
 * round trip): inline, cache valid and fresh. A hint: it may expire
 * before the read. */
int fio_idata_cached(file_io *f, struct fio_idata *st);
/* Caches bytes meta returned with an open whose request was sent at
 * READ_NS (mono clock), or read by a lookup-ahead batch at READ_NS: served
 * to reads until fio_snapshot_ms after READ_NS, and not cached at all when
 * a write through this client (or a size change it learnt) came after
 * READ_NS. */
void fio_idata_prime_at(struct fio_idata *st, const void *data, uint32_t len, uint64_t read_ns);

#endif
