/* iobuf.h - the process's pool of IOBUF_SIZE I/O buffers.
 *
 * Read-ahead units (client/file_io.c) and the mount's large read replies
 * (fuse/fuse_fs.c) each want a page-aligned 1 MiB buffer per request, on
 * one thread, freed on another. From malloc that cost twice: the arenas
 * of the many threads fragmented around the smaller allocations between
 * them (a mount held 1.7 GB of free heap after 28 GiB of 4-job
 * sequential reads, 28 MB in use, and grew with every pass), and every
 * buffer carved from fresh heap was faulted and zeroed page by page on
 * its first O_DIRECT read (7 % of the mount's CPU in that profile). The
 * pool hands the same buffers out again: mapped once, faulted once.
 *
 * MEMORY. Buffers are mapped two to a 2 MiB region that asks for a
 * transparent huge page (MADV_HUGEPAGE; where the kernel grants it, the
 * pinning of a buffer for O_DIRECT and for the FUSE reply walks one page
 * table entry instead of 256). At most IOBUF_KEEP idle buffers are kept
 * (64 MiB); one put beyond that is unmapped.
 */
#ifndef CFS_COMMON_IOBUF_H
#define CFS_COMMON_IOBUF_H

#include <stddef.h>

#define IOBUF_SIZE (1u << 20)
#define IOBUF_KEEP 64

/* A page-aligned buffer of IOBUF_SIZE bytes (contents undefined), or
 * NULL (out of memory). Thread-safe. */
void *iobuf_get(void);
/* Gives back a buffer iobuf_get returned (NULL: nothing). Any thread. */
void iobuf_put(void *b);
/* Buffers mapped now (handed out or idle): for tests. */
size_t iobuf_mapped(void);

#endif
