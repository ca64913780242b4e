/* chunk_alloc.c - size-class block allocator over fallocated data files.
 *
 * Files: DIR/data/cCC/fFFF for class CC (block = 64 KiB << CC) and file
 * FFF; each starts with a 4 KiB header (chunk_format.h), blocks follow.
 *
 * Groups: a class's groups are numbered gid = g * 256 + file, where g is the
 * group's place inside its file, so consecutive new groups stripe across
 * the 256 files. Group gid holds blocks g*256 .. g*256+255 of its file.
 *
 * Per group, in memory:
 *   used    bit set = block holds a committed chunk or a write in flight
 *   pfree   bit set = metadata no longer points here but readers still
 *           hold references; freed when refs[i] drops to 0
 *   refs    reader reference counts (allocated on first use)
 *   owner   the chunk the block was allocated for (or marked for at
 *           open): lets the compactor find what to move without a reverse
 *           index, and lets the engine refuse metadata that points at a
 *           block it does not own
 *
 * Space: a group of class <= 1 MiB is fallocated whole when first used and
 * punched out when its last block is freed. Larger classes would need
 * 2..16 GiB per group, so there each block is fallocated on allocation and
 * punched on free. reserved_bytes counts fallocated bytes and is what the
 * capacity limit applies to. A real ENOSPC from fallocate is returned as is.
 *
 * Near full (disk-full rule, docs/operations.md): a reservation that would
 * leave less than the caller's keep_free bytes free on the filesystem
 * fails with -ENOSPC before fallocate, so the metadata store (LMDB grows
 * in the same filesystem) and deletes keep working on a full target. A
 * small-class group whose whole fallocate fails (a small or nearly full
 * filesystem: a 1 MiB class group is 256 MiB) is reserved block by block
 * instead (reserved == GROUP_PER_BLOCK): each block is fallocated when
 * taken and punched when freed, as the large classes do.
 *
 * Invariants: count == popcount(used); pfree is a subset of used; a block
 * with refs > 0 is used; a group with count == 0 is not reserved (its space
 * has been punched), except transiently inside chunk_alloc_get.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/cfs_assert.h"
#include "common/log.h"
#include "common/status.h"
#include "common/xalloc.h"
#include "storage/chunk_alloc.h"

#define WORDS (CHUNK_GROUP_BLOCKS / 64)
#define SMALL_CLASS_MAX 4 /* classes 0..4 (<= 1 MiB) fallocate whole groups */
enum { GROUP_WHOLE = 1, GROUP_PER_BLOCK = 2 };
#define OPEN_WHOLE_ROOM (1ULL << 30) /* free space above a group to re-reserve it whole at open */

struct group {
	uint64_t used[WORDS];  /* allocated blocks */
	uint64_t pfree[WORDS]; /* released, waiting for readers */
	uint64_t written[WORDS]; /* whole block written and its extent conversion
				  * durable (chunk_alloc_set_written); cleared
				  * when the block is punched */
	uint32_t count;        /* popcount(used) */
	uint8_t reserved;      /* small class: GROUP_WHOLE (fallocated), GROUP_PER_BLOCK
				* (each used block fallocated) or 0 */
	uint8_t frozen;        /* compaction source: no new allocations */
	uint8_t idle;          /* count == 0 but kept reserved (GROUP_WHOLE) for reuse */
	uint32_t *refs;        /* [256] reader references, lazily allocated */
	struct chunk_id *owner;/* [256] committed owner of each block */
	uint32_t *wpre;        /* [256] pages from each block's start written and
				* synced (chunk_alloc_set_written_upto); lazily
				* allocated, cleared with written */
};

struct size_class {
	struct group **groups; /* by gid; NULL = never used */
	uint32_t ngroups;      /* length of groups */
	int fds[CHUNK_MAX_FILES]; /* -1 = not open */
	int bfds[CHUNK_MAX_FILES]; /* buffered read-only fds of the same files
				    * (chunk_alloc_cached_fd); -1 = none */
	uint64_t used;         /* allocated blocks */
	uint64_t reserved;     /* reserved (non-empty) groups */
};

struct chunk_alloc {
	char *dir;               /* DIR/data */
	uint64_t capacity;       /* 0 = unlimited */
	uint64_t reserved_bytes; /* fallocated bytes */
	uint64_t punched;        /* groups punched so far */
	uint64_t keep_free;      /* chunk_alloc_get_keep's, for this call */
	uint64_t idle_max;       /* bytes of idle groups kept (0: punch at once) */
	uint64_t idle_bytes;     /* bytes of idle groups (part of reserved_bytes) */
	uint64_t recycled;       /* idle groups taken again */
	struct size_class cls[CHUNK_NCLASS];
};

static inline uint32_t gid_of(struct chunk_pos p)
{
	return (p.block / CHUNK_GROUP_BLOCKS) * CHUNK_MAX_FILES + p.file;
}
static inline uint64_t group_bytes(unsigned cls) { return chunk_class_size(cls) * CHUNK_GROUP_BLOCKS; }
static inline uint64_t block_off(unsigned cls, uint32_t block)
{
	return CHUNK_FILE_HDR + (uint64_t)block * chunk_class_size(cls);
}
static inline uint64_t group_off(unsigned cls, uint32_t gid)
{
	return block_off(cls, (gid / CHUNK_MAX_FILES) * CHUNK_GROUP_BLOCKS);
}

static struct group *group_get(struct size_class *c, uint32_t gid, int create)
{
	if (gid >= c->ngroups) {
		if (!create)
			return NULL;
		uint32_t n = c->ngroups ? c->ngroups : 256;
		while (n <= gid)
			n *= 2;
		c->groups = xrealloc(c->groups, n * sizeof(*c->groups));
		memset(c->groups + c->ngroups, 0, (n - c->ngroups) * sizeof(*c->groups));
		c->ngroups = n;
	}
	if (!c->groups[gid] && create)
		c->groups[gid] = xcalloc(1, sizeof(struct group));
	return c->groups[gid];
}

static int open_file(struct chunk_alloc *a, unsigned cls, unsigned file, int create)
{
	struct size_class *c = &a->cls[cls];
	if (c->fds[file] >= 0)
		return c->fds[file];
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/c%02u", a->dir, cls);
	if (create && mkdir(path, 0755) && errno != EEXIST)
		return -errno;
	chunk_alloc_path(a, (struct chunk_pos){ .cls = (uint8_t)cls, .file = (uint16_t)file }, path,
			 sizeof(path));
	int fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC | (create ? O_CREAT : 0), 0644);
	if (fd < 0)
		return -errno;
	int err = 0;
	void *page = NULL;
	struct stat st;
	if (fstat(fd, &st) || posix_memalign(&page, CHUNK_PAGE, CHUNK_PAGE)) {
		err = -errno ? -errno : -ENOMEM;
		goto fail;
	}
	memset(page, 0, CHUNK_PAGE);
	if (st.st_size == 0) {
		if (!create) {
			err = -CFS_ECORRUPT;
			goto fail;
		}
		struct chunk_file_hdr h = { (uint8_t)cls, (uint16_t)file };
		chunk_file_hdr_encode(&h, page);
		ssize_t n = pwrite(fd, page, CHUNK_PAGE, 0);
		if (n != CHUNK_PAGE || fdatasync(fd)) {
			err = n < 0 || n == CHUNK_PAGE ? -errno : -EIO;
			goto fail;
		}
	} else {
		struct chunk_file_hdr h;
		ssize_t n = pread(fd, page, CHUNK_PAGE, 0);
		if (n != CHUNK_PAGE || chunk_file_hdr_decode(page, CHUNK_PAGE, &h) ||
		    h.cls != cls || h.file != file) {
			LOG_ERR("chunk", "bad data file header: path=%s", path);
			err = -CFS_ECORRUPT;
			goto fail;
		}
	}
	free(page);
	/* A second, buffered descriptor for small reads from the page cache
	 * (chunk_alloc.h). Readahead off: a 4 KiB random read must read 4 KiB,
	 * not fill a window nobody asked for. Without it (-1) reads stay direct. */
	c->bfds[file] = open(path, O_RDONLY | O_CLOEXEC);
	if (c->bfds[file] >= 0)
		(void)posix_fadvise(c->bfds[file], 0, 0, POSIX_FADV_RANDOM);
	c->fds[file] = fd;
	return fd;
fail:
	free(page);
	close(fd);
	return err;
}

int chunk_alloc_open(const char *dir, uint64_t capacity, struct chunk_alloc **out)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/data", dir);
	if (mkdir(path, 0755) && errno != EEXIST)
		return -errno;
	struct chunk_alloc *a = xcalloc(1, sizeof(*a));
	a->dir = xstrdup(path);
	a->capacity = capacity;
	for (unsigned i = 0; i < CHUNK_NCLASS; i++)
		for (unsigned f = 0; f < CHUNK_MAX_FILES; f++) {
			a->cls[i].fds[f] = -1;
			a->cls[i].bfds[f] = -1;
		}
	*out = a;
	return 0;
}

void chunk_alloc_close(struct chunk_alloc *a)
{
	if (!a)
		return;
	for (unsigned i = 0; i < CHUNK_NCLASS; i++) {
		struct size_class *c = &a->cls[i];
		for (unsigned f = 0; f < CHUNK_MAX_FILES; f++) {
			if (c->fds[f] >= 0)
				close(c->fds[f]);
			if (c->bfds[f] >= 0)
				close(c->bfds[f]);
		}
		for (uint32_t g = 0; g < c->ngroups; g++) {
			if (c->groups[g]) {
				free(c->groups[g]->refs);
				free(c->groups[g]->owner);
				free(c->groups[g]->wpre);
				free(c->groups[g]);
			}
		}
		free(c->groups);
	}
	free(a->dir);
	free(a);
}

static inline int bit_test(const uint64_t *w, unsigned i) { return (w[i / 64] >> (i % 64)) & 1; }
static inline void bit_set(uint64_t *w, unsigned i) { w[i / 64] |= UINT64_C(1) << (i % 64); }
static inline void bit_clear(uint64_t *w, unsigned i) { w[i / 64] &= ~(UINT64_C(1) << (i % 64)); }

static void set_owner(struct group *g, unsigned i, struct chunk_id id)
{
	if (!g->owner)
		g->owner = xcalloc(CHUNK_GROUP_BLOCKS, sizeof(*g->owner));
	g->owner[i] = id;
}

int chunk_alloc_mark(struct chunk_alloc *a, struct chunk_pos pos, struct chunk_id id)
{
	int fd = open_file(a, pos.cls, pos.file, 0);
	if (fd < 0)
		return fd == -ENOENT ? -CFS_ECORRUPT : fd;
	struct size_class *c = &a->cls[pos.cls];
	struct group *g = group_get(c, gid_of(pos), 1);
	unsigned i = pos.block % CHUNK_GROUP_BLOCKS;
	if (bit_test(g->used, i))
		return -EEXIST;
	bit_set(g->used, i);
	set_owner(g, i, id);
	if (g->count++ == 0)
		c->reserved++;
	c->used++;
	if (pos.cls <= SMALL_CLASS_MAX) {
		if (!g->reserved)
			a->reserved_bytes += group_bytes(pos.cls);
		g->reserved = 1;
	} else {
		a->reserved_bytes += chunk_class_size(pos.cls);
	}
	return 0;
}

static void punch(struct chunk_alloc *a, int fd, unsigned cls, uint64_t off, uint64_t len)
{
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
		LOG_WARN("chunk", "punch hole failed: class=%u off=%llu err=%s", cls,
			 (unsigned long long)off, cfs_strerror(errno));
}

int chunk_alloc_open_done(struct chunk_alloc *a)
{
	/* Files in a class directory that metadata never mentioned are opened
	 * here too, so their leftover reservations are found. */
	for (unsigned cls = 0; cls < CHUNK_NCLASS; cls++) {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/c%02u", a->dir, cls);
		DIR *d = opendir(path);
		if (!d)
			continue;
		struct dirent *e;
		while ((e = readdir(d))) {
			unsigned f;
			char extra;
			if (sscanf(e->d_name, "f%3u%c", &f, &extra) != 1 || f >= CHUNK_MAX_FILES)
				continue;
			/* create = 1: an empty file is one a crash cut off
			 * between its creation and its header (it holds
			 * nothing); it gets the header now instead of failing
			 * the open. */
			int fd = open_file(a, cls, f, 1);
			if (fd < 0) {
				closedir(d);
				return fd;
			}
		}
		closedir(d);
		struct size_class *c = &a->cls[cls];
		uint64_t bs = chunk_class_size(cls);
		for (unsigned f = 0; f < CHUNK_MAX_FILES; f++) {
			struct stat st;
			if (c->fds[f] < 0 || fstat(c->fds[f], &st))
				continue;
			uint64_t nblocks = st.st_size > CHUNK_FILE_HDR ? (st.st_size - CHUNK_FILE_HDR + bs - 1) / bs : 0;
			for (uint64_t b = 0; b < nblocks; b += CHUNK_GROUP_BLOCKS) {
				struct chunk_pos p = { (uint8_t)cls, (uint16_t)f, (uint32_t)b };
				struct group *g = group_get(c, gid_of(p), 0);
				if (!g || g->count == 0) {
					punch(a, c->fds[f], cls, block_off(cls, (uint32_t)b), group_bytes(cls));
					continue;
				}
				/* Whole again (a no-op when it was) only with
				 * ample room: on a nearly full disk this must
				 * not eat the free floor. */
				struct statvfs sv;
				if (cls <= SMALL_CLASS_MAX && !fstatvfs(c->fds[f], &sv) &&
				    (uint64_t)sv.f_bavail * sv.f_frsize >=
					    group_bytes(cls) + OPEN_WHOLE_ROOM &&
				    !fallocate(c->fds[f], 0, (off_t)block_off(cls, (uint32_t)b),
					       (off_t)group_bytes(cls)))
					continue;
				if (cls <= SMALL_CLASS_MAX && g->reserved == GROUP_WHOLE) {
					/* Reserved block by block before, or no
					 * room to make sure it is whole: its free
					 * blocks may be holes. Per block from now. */
					g->reserved = GROUP_PER_BLOCK;
					a->reserved_bytes -= group_bytes(cls) - (uint64_t)g->count * bs;
				}
				for (unsigned i = 0; i < CHUNK_GROUP_BLOCKS && b + i < nblocks; i++)
					if (!bit_test(g->used, i))
						punch(a, c->fds[f], cls, block_off(cls, (uint32_t)(b + i)), bs);
			}
		}
	}
	return 0;
}

/* The group's blocks were punched: nothing of them is known written. */
static void clear_written(struct group *g)
{
	memset(g->written, 0, sizeof(g->written));
	free(g->wpre);
	g->wpre = NULL;
}

/* Punches every idle group of every class: their room is wanted. */
static void drop_idle(struct chunk_alloc *a)
{
	for (unsigned cls = 0; cls <= SMALL_CLASS_MAX && a->idle_bytes; cls++) {
		struct size_class *c = &a->cls[cls];
		for (uint32_t gid = 0; gid < c->ngroups; gid++) {
			struct group *g = c->groups[gid];
			if (!g || !g->idle)
				continue;
			punch(a, c->fds[gid % CHUNK_MAX_FILES], cls, group_off(cls, gid),
			      group_bytes(cls));
			clear_written(g);
			g->idle = 0;
			g->reserved = 0;
			a->reserved_bytes -= group_bytes(cls);
			a->idle_bytes -= group_bytes(cls);
			a->punched++;
		}
	}
}

static int reserve_once(struct chunk_alloc *a, int fd, unsigned cls, uint64_t off, uint64_t len);

/* Reserves [OFF, OFF + LEN) of FD; when that fails for room and idle
 * groups hold some, they are given back first and it is tried again. */
static int reserve(struct chunk_alloc *a, int fd, unsigned cls, uint64_t off, uint64_t len)
{
	int err = reserve_once(a, fd, cls, off, len);
	if (err == -ENOSPC && a->idle_bytes) {
		drop_idle(a);
		err = reserve_once(a, fd, cls, off, len);
	}
	return err;
}

static int reserve_once(struct chunk_alloc *a, int fd, unsigned cls, uint64_t off, uint64_t len)
{
	if (a->capacity && a->reserved_bytes + len > a->capacity)
		return -ENOSPC;
	if (a->keep_free) {
		struct statvfs sv;
		if (!fstatvfs(fd, &sv) &&
		    (uint64_t)sv.f_bavail * sv.f_frsize < len + a->keep_free)
			return -ENOSPC;
	}
	if (fallocate(fd, 0, (off_t)off, (off_t)len)) {
		int err = -errno;
		LOG_WARN("chunk", "fallocate failed: class=%u off=%llu len=%llu err=%s", cls,
			 (unsigned long long)off, (unsigned long long)len, cfs_strerror(err));
		return err;
	}
	a->reserved_bytes += len;
	return 0;
}

static int take_block(struct chunk_alloc *a, unsigned cls, uint32_t gid, struct group *g,
		      struct chunk_id id, struct chunk_pos *out)
{
	unsigned i = 0;
	for (unsigned w = 0; w < WORDS; w++) {
		if (~g->used[w]) {
			i = w * 64 + (unsigned)__builtin_ctzll(~g->used[w]);
			break;
		}
	}
	struct chunk_pos p = { (uint8_t)cls, (uint16_t)(gid % CHUNK_MAX_FILES),
			       (gid / CHUNK_MAX_FILES) * CHUNK_GROUP_BLOCKS + i };
	struct size_class *c = &a->cls[cls];
	if (cls > SMALL_CLASS_MAX || g->reserved == GROUP_PER_BLOCK) {
		int err = reserve(a, c->fds[p.file], cls, block_off(cls, p.block), chunk_class_size(cls));
		if (err)
			return err;
	}
	bit_set(g->used, i);
	set_owner(g, i, id);
	if (g->count++ == 0)
		c->reserved++;
	c->used++;
	*out = p;
	return 0;
}

int chunk_alloc_get(struct chunk_alloc *a, unsigned cls, struct chunk_id id, struct chunk_pos *out)
{
	ASSERT(cls < CHUNK_NCLASS);
	struct size_class *c = &a->cls[cls];
	struct group *best = NULL;
	uint32_t best_gid = 0;
	for (uint32_t gid = 0; gid < c->ngroups; gid++) {
		struct group *g = c->groups[gid];
		if (!g || g->frozen || g->count == 0 || g->count == CHUNK_GROUP_BLOCKS)
			continue;
		if (!best || g->count > best->count) {
			best = g;
			best_gid = gid;
		}
	}
	if (best)
		return take_block(a, cls, best_gid, best, id, out);
	/* No partly used group: the lowest idle one, whose blocks are written. */
	for (uint32_t gid = 0; a->idle_bytes && gid < c->ngroups; gid++) {
		struct group *g = c->groups[gid];
		if (!g || !g->idle || g->frozen)
			continue;
		g->idle = 0;
		a->idle_bytes -= group_bytes(cls);
		a->recycled++;
		return take_block(a, cls, gid, g, id, out);
	}
	/* Else the lowest-numbered empty one. */
	for (uint32_t gid = 0;; gid++) {
		if (gid / CHUNK_MAX_FILES > UINT32_MAX / CHUNK_GROUP_BLOCKS - 1)
			return -EMFILE;
		struct group *g = group_get(c, gid, 0);
		if (g && (g->count || g->frozen))
			continue;
		int fd = open_file(a, cls, gid % CHUNK_MAX_FILES, 1);
		if (fd < 0)
			return fd;
		g = group_get(c, gid, 1);
		if (cls <= SMALL_CLASS_MAX && !g->reserved) {
			int err = reserve(a, fd, cls, group_off(cls, gid), group_bytes(cls));
			if (err == -ENOSPC) {
				/* Not room for the whole group: block by block. */
				g->reserved = GROUP_PER_BLOCK;
				err = take_block(a, cls, gid, g, id, out);
				if (err)
					g->reserved = 0;
				return err;
			}
			if (err)
				return err;
			g->reserved = GROUP_WHOLE;
		}
		return take_block(a, cls, gid, g, id, out);
	}
}

int chunk_alloc_get_keep(struct chunk_alloc *a, unsigned cls, struct chunk_id id,
			 uint64_t keep_free, struct chunk_pos *out)
{
	a->keep_free = keep_free;
	int err = chunk_alloc_get(a, cls, id, out);
	a->keep_free = 0;
	return err;
}

int chunk_alloc_written(struct chunk_alloc *a, struct chunk_pos pos)
{
	if (pos.cls >= CHUNK_NCLASS || pos.file >= CHUNK_MAX_FILES)
		return 0;
	struct group *g = group_get(&a->cls[pos.cls], gid_of(pos), 0);
	return g && bit_test(g->written, pos.block % CHUNK_GROUP_BLOCKS);
}

void chunk_alloc_set_written(struct chunk_alloc *a, struct chunk_pos pos)
{
	struct group *g = group_get(&a->cls[pos.cls], gid_of(pos), 0);
	unsigned i = pos.block % CHUNK_GROUP_BLOCKS;
	if (g && bit_test(g->used, i))
		bit_set(g->written, i);
}

uint64_t chunk_alloc_written_upto(struct chunk_alloc *a, struct chunk_pos pos)
{
	if (pos.cls >= CHUNK_NCLASS || pos.file >= CHUNK_MAX_FILES)
		return 0;
	struct group *g = group_get(&a->cls[pos.cls], gid_of(pos), 0);
	unsigned i = pos.block % CHUNK_GROUP_BLOCKS;
	if (!g)
		return 0;
	if (bit_test(g->written, i))
		return chunk_class_size(pos.cls);
	return g->wpre ? (uint64_t)g->wpre[i] * CHUNK_PAGE : 0;
}

void chunk_alloc_set_written_upto(struct chunk_alloc *a, struct chunk_pos pos, uint64_t end)
{
	if (pos.cls >= CHUNK_NCLASS || pos.file >= CHUNK_MAX_FILES)
		return;
	struct group *g = group_get(&a->cls[pos.cls], gid_of(pos), 0);
	unsigned i = pos.block % CHUNK_GROUP_BLOCKS;
	if (!g || !bit_test(g->used, i))
		return;
	if (end >= chunk_class_size(pos.cls)) {
		bit_set(g->written, i);
		return;
	}
	uint32_t pages = (uint32_t)(end / CHUNK_PAGE); /* whole pages only */
	if (!pages)
		return;
	if (!g->wpre)
		g->wpre = xcalloc(CHUNK_GROUP_BLOCKS, sizeof(*g->wpre));
	if (g->wpre[i] < pages)
		g->wpre[i] = pages;
}

int chunk_alloc_owns(struct chunk_alloc *a, struct chunk_pos pos, struct chunk_id id)
{
	if (pos.cls >= CHUNK_NCLASS || pos.file >= CHUNK_MAX_FILES)
		return 0;
	struct group *g = group_get(&a->cls[pos.cls], gid_of(pos), 0);
	unsigned i = pos.block % CHUNK_GROUP_BLOCKS;
	return g && g->owner && bit_test(g->used, i) && !chunk_id_cmp(g->owner[i], id);
}

/* Whether an emptied group of class CLS (in file FD) stays idle. */
static int keep_idle(struct chunk_alloc *a, int fd, unsigned cls)
{
	struct statvfs sv;
	return a->idle_bytes + group_bytes(cls) <= a->idle_max && !fstatvfs(fd, &sv) &&
	       (uint64_t)sv.f_bavail * sv.f_frsize >= OPEN_WHOLE_ROOM + a->idle_max;
}

void chunk_alloc_set_idle_max(struct chunk_alloc *a, uint64_t max)
{
	a->idle_max = max;
}

static void free_block(struct chunk_alloc *a, struct chunk_pos pos, struct group *g, unsigned i)
{
	struct size_class *c = &a->cls[pos.cls];
	bit_clear(g->used, i);
	bit_clear(g->pfree, i);
	g->count--;
	c->used--;
	int fd = c->fds[pos.file];
	if (pos.cls > SMALL_CLASS_MAX || g->reserved == GROUP_PER_BLOCK) {
		punch(a, fd, pos.cls, block_off(pos.cls, pos.block), chunk_class_size(pos.cls));
		bit_clear(g->written, i);
		if (g->wpre)
			g->wpre[i] = 0;
		a->reserved_bytes -= chunk_class_size(pos.cls);
	}
	if (g->count)
		return;
	c->reserved--;
	if (pos.cls <= SMALL_CLASS_MAX && g->reserved == GROUP_WHOLE && !g->frozen &&
	    keep_idle(a, fd, pos.cls)) {
		g->idle = 1;
		a->idle_bytes += group_bytes(pos.cls);
		free(g->refs);
		free(g->owner);
		g->refs = NULL;
		g->owner = NULL;
		return;
	}
	if (pos.cls <= SMALL_CLASS_MAX && g->reserved) {
		/* Per block: the whole group too, for what a failed whole
		 * fallocate may have left allocated. */
		punch(a, fd, pos.cls, group_off(pos.cls, gid_of(pos)), group_bytes(pos.cls));
		clear_written(g);
		if (g->reserved == GROUP_WHOLE)
			a->reserved_bytes -= group_bytes(pos.cls);
		g->reserved = 0;
	}
	a->punched++;
	free(g->refs);
	free(g->owner);
	g->refs = NULL;
	g->owner = NULL;
}

void chunk_alloc_release(struct chunk_alloc *a, struct chunk_pos pos)
{
	struct group *g = group_get(&a->cls[pos.cls], gid_of(pos), 0);
	unsigned i = pos.block % CHUNK_GROUP_BLOCKS;
	ASSERT(g && bit_test(g->used, i) && !bit_test(g->pfree, i));
	if (g->refs && g->refs[i])
		bit_set(g->pfree, i);
	else
		free_block(a, pos, g, i);
}

void chunk_alloc_ref(struct chunk_alloc *a, struct chunk_pos pos)
{
	struct group *g = group_get(&a->cls[pos.cls], gid_of(pos), 0);
	unsigned i = pos.block % CHUNK_GROUP_BLOCKS;
	ASSERT(g && bit_test(g->used, i));
	if (!g->refs)
		g->refs = xcalloc(CHUNK_GROUP_BLOCKS, sizeof(*g->refs));
	g->refs[i]++;
}

void chunk_alloc_unref(struct chunk_alloc *a, struct chunk_pos pos)
{
	struct group *g = group_get(&a->cls[pos.cls], gid_of(pos), 0);
	unsigned i = pos.block % CHUNK_GROUP_BLOCKS;
	ASSERT(g && g->refs && g->refs[i] > 0);
	if (--g->refs[i] == 0 && bit_test(g->pfree, i))
		free_block(a, pos, g, i);
}

uint32_t chunk_alloc_refs(struct chunk_alloc *a, struct chunk_pos pos)
{
	struct group *g = group_get(&a->cls[pos.cls], gid_of(pos), 0);
	unsigned i = pos.block % CHUNK_GROUP_BLOCKS;
	return g && g->refs ? g->refs[i] : 0;
}

int chunk_alloc_fd(struct chunk_alloc *a, struct chunk_pos pos, uint64_t *off)
{
	*off = block_off(pos.cls, pos.block);
	return a->cls[pos.cls].fds[pos.file];
}

void chunk_alloc_path(struct chunk_alloc *a, struct chunk_pos pos, char *buf, size_t n)
{
	snprintf(buf, n, "%s/c%02u/f%03u", a->dir, pos.cls, pos.file);
}

int chunk_alloc_cached_fd(struct chunk_alloc *a, struct chunk_pos pos)
{
	return a->cls[pos.cls].bfds[pos.file];
}

int chunk_alloc_is_used(struct chunk_alloc *a, struct chunk_pos pos)
{
	struct group *g = group_get(&a->cls[pos.cls], gid_of(pos), 0);
	return g && bit_test(g->used, pos.block % CHUNK_GROUP_BLOCKS);
}

uint64_t chunk_alloc_used_total(struct chunk_alloc *a)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < CHUNK_NCLASS; i++)
		n += a->cls[i].used;
	return n;
}

void chunk_alloc_get_stat(struct chunk_alloc *a, struct chunk_alloc_stat *out)
{
	memset(out, 0, sizeof(*out));
	out->reserved_bytes = a->reserved_bytes;
	out->punched_groups = a->punched;
	out->idle_bytes = a->idle_bytes;
	out->recycled_groups = a->recycled;
	for (unsigned i = 0; i < CHUNK_NCLASS; i++) {
		out->used_blocks[i] = a->cls[i].used;
		out->groups[i] = a->cls[i].reserved;
	}
}

size_t chunk_alloc_fds(struct chunk_alloc *a, int *fds, size_t max)
{
	size_t n = 0;
	for (unsigned i = 0; i < CHUNK_NCLASS; i++)
		for (unsigned f = 0; f < CHUNK_MAX_FILES && n < max; f++)
			if (a->cls[i].fds[f] >= 0)
				fds[n++] = a->cls[i].fds[f];
	return n;
}

int chunk_alloc_pick_sparse(struct chunk_alloc *a, double threshold, unsigned *cls, uint32_t *gid)
{
	for (unsigned ci = 0; ci < CHUNK_NCLASS; ci++) {
		struct size_class *c = &a->cls[ci];
		if (c->reserved < 2 || (double)c->used >= threshold * (double)(c->reserved * CHUNK_GROUP_BLOCKS))
			continue;
		struct group *best = NULL;
		uint32_t best_gid = 0;
		for (uint32_t g = 0; g < c->ngroups; g++) {
			struct group *gr = c->groups[g];
			if (!gr || !gr->count || gr->frozen)
				continue;
			if (!best || gr->count < best->count) {
				best = gr;
				best_gid = g;
			}
		}
		if (!best)
			continue;
		best->frozen = 1;
		*cls = ci;
		*gid = best_gid;
		return 1;
	}
	return 0;
}

size_t chunk_alloc_group_live(struct chunk_alloc *a, unsigned cls, uint32_t gid,
			      struct chunk_pos *pos, struct chunk_id *ids, size_t max)
{
	struct group *g = group_get(&a->cls[cls], gid, 0);
	size_t n = 0;
	if (!g || !g->owner)
		return 0;
	for (unsigned i = 0; i < CHUNK_GROUP_BLOCKS && n < max; i++) {
		if (!bit_test(g->used, i) || bit_test(g->pfree, i))
			continue;
		pos[n] = (struct chunk_pos){ (uint8_t)cls, (uint16_t)(gid % CHUNK_MAX_FILES),
					     (gid / CHUNK_MAX_FILES) * CHUNK_GROUP_BLOCKS + i };
		ids[n++] = g->owner[i];
	}
	return n;
}

void chunk_alloc_unfreeze(struct chunk_alloc *a, unsigned cls, uint32_t gid)
{
	struct group *g = group_get(&a->cls[cls], gid, 0);
	if (g)
		g->frozen = 0;
}
