/* chunk_format.h - on-disk records of the chunk engine: chunk ids as store
 * keys, chunk metadata values, data-file headers.
 *
 * Pure codecs: no I/O, no allocation beyond what a decoded value owns.
 * Every decoder validates its input and returns -CFS_ECORRUPT on anything
 * malformed (bytes come from the disk: never asserted on). Thread-safe.
 */
#ifndef CFS_STORAGE_CHUNK_FORMAT_H
#define CFS_STORAGE_CHUNK_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define CHUNK_NCLASS 11                   /* block sizes 64 KiB << 0..10 */
#define CHUNK_MIN_SHIFT 16                /* 64 KiB */
#define CHUNK_MAX_SIZE (64u << 20)        /* 64 MiB, the largest chunk */
#define CHUNK_PAGE 4096u                  /* I/O alignment and checksum unit */
#define CHUNK_GROUP_BLOCKS 256u           /* blocks per allocation group */
#define CHUNK_MAX_FILES 256u              /* data files per size class */
#define CHUNK_FILE_HDR 4096u              /* data-file header; blocks follow */
#define CHUNK_KEY_LEN 12                  /* inode u64 BE ++ index u32 BE */

struct chunk_id {
	uint64_t ino; /* inode id */
	uint32_t idx; /* chunk index within the file */
};

/* Where a chunk's block lives. Byte offset in data file `file` of class
 * `cls` is CHUNK_FILE_HDR + block * (64 KiB << cls). */
struct chunk_pos {
	uint8_t cls;    /* size class 0..10 */
	uint16_t file;  /* data file 0..255 */
	uint32_t block; /* block index in that file; group = block / 256 */
};

/* Decoded chunk metadata (the value stored under a chunk key). */
struct chunk_meta {
	struct chunk_pos pos;
	uint32_t len;           /* chunk length in bytes, <= block size */
	uint32_t crc;           /* CRC32C of bytes [0, len) */
	uint32_t chain_ver;     /* chain version of the last update */
	uint64_t commit_ver;    /* last committed update version */
	uint64_t pending_ver;   /* == commit_ver unless an update is pending */
	uint32_t npages;        /* ceil(len / CHUNK_PAGE) */
	uint32_t *page_crc;     /* owned, npages CRC32Cs of each page's bytes < len */
	/* Journaled small overwrite (chunk_engine.c): the pages
	 * [jrnl_off, jrnl_off + jrnl_len) of the chunk as this metadata
	 * describes them, committed here before they are written in place in
	 * the block. jrnl_len == 0: none. Both multiples of CHUNK_PAGE,
	 * jrnl_off + jrnl_len <= npages * CHUNK_PAGE. */
	uint32_t jrnl_off;
	uint32_t jrnl_len;
	uint8_t *jrnl;          /* owned by decoded values; jrnl_len bytes */
};

static inline int chunk_pos_eq(struct chunk_pos a, struct chunk_pos b)
{
	return a.cls == b.cls && a.file == b.file && a.block == b.block;
}
static inline uint64_t chunk_class_size(unsigned cls) { return (uint64_t)1 << (CHUNK_MIN_SHIFT + cls); }
/* Smallest class whose block holds LEN bytes (LEN <= CHUNK_MAX_SIZE). */
unsigned chunk_class_for(uint64_t len);
static inline uint32_t chunk_npages(uint64_t len) { return (uint32_t)((len + CHUNK_PAGE - 1) / CHUNK_PAGE); }
static inline int chunk_id_cmp(struct chunk_id a, struct chunk_id b)
{
	if (a.ino != b.ino) return a.ino < b.ino ? -1 : 1;
	return a.idx == b.idx ? 0 : (a.idx < b.idx ? -1 : 1);
}

/* Key codec: big-endian so one inode's chunks sort together by index. */
void chunk_key_encode(struct chunk_id id, uint8_t out[CHUNK_KEY_LEN]);
/* 0, or -CFS_ECORRUPT when N != CHUNK_KEY_LEN. */
int chunk_key_decode(const void *p, size_t n, struct chunk_id *out);

/* Encoded size of M's value. */
size_t chunk_meta_size(const struct chunk_meta *m);
/* Writes chunk_meta_size(m) bytes into OUT. */
void chunk_meta_encode(const struct chunk_meta *m, uint8_t *out);
/* Decodes a value into OUT (OUT->page_crc allocated, caller frees with
 * chunk_meta_fini). 0, -CFS_ECORRUPT (bad magic/version/crc/fields) or
 * -ENOMEM. On error OUT holds nothing to free. */
int chunk_meta_decode(const void *p, size_t n, struct chunk_meta *out);
/* chunk_meta_decode for a read of pages [FIRST, FIRST + COUNT): the same
 * checks of the whole value (its CRC included), but it allocates and
 * copies nothing else: OUT->page_crc and OUT->jrnl stay NULL (npages,
 * jrnl_off and jrnl_len are set) and PC[i] gets the CRC of page FIRST + i
 * for each such page below npages (PC holds COUNT). A 4 KiB read of a
 * 1 MiB chunk needs one of its 256 page CRCs. 0 or -CFS_ECORRUPT; OUT
 * holds nothing to free either way. */
int chunk_meta_decode_pages(const void *p, size_t n, uint32_t first, uint32_t count,
			    struct chunk_meta *out, uint32_t *pc);
/* Frees OUT->page_crc. NULL-safe; leaves OUT zeroed. */
void chunk_meta_fini(struct chunk_meta *m);
/* Deep copy (the journal too); 0 or -ENOMEM. */
int chunk_meta_copy(struct chunk_meta *dst, const struct chunk_meta *src);

/* Data-file header (first CHUNK_FILE_HDR bytes of every data file). */
struct chunk_file_hdr {
	uint8_t cls;   /* size class of the file's blocks */
	uint16_t file; /* file number within the class */
};
#define CHUNK_FILE_HDR_USED 16 /* encoded bytes; the rest of the page is zero */
void chunk_file_hdr_encode(const struct chunk_file_hdr *h, uint8_t out[CHUNK_FILE_HDR_USED]);
/* 0 or -CFS_ECORRUPT. */
int chunk_file_hdr_decode(const void *p, size_t n, struct chunk_file_hdr *out);

#endif
