/* chunk_format.c - encode and decode the chunk engine's on-disk records.
 *
 * Chunk key (CHUNK_KEY_LEN = 12 bytes, big-endian so that the store's byte
 * order is (inode, index) order and "last chunk of an inode" is one seek):
 *
 *   OFFSET SIZE  FIELD
 *   0      8     inode id, BE
 *   8      4     chunk index, BE
 *
 * Chunk metadata value, version 1 (little-endian):
 *
 *   OFFSET SIZE  FIELD
 *   0      4     magic "CFSM"
 *   4      1     version (1)
 *   5      1     size class 0..10
 *   6      2     data file 0..255
 *   8      4     block index in the file
 *   12     4     length (<= block size)
 *   16     4     CRC32C of the chunk bytes [0, length)
 *   20     4     chain version
 *   24     8     committed version
 *   32     8     pending version (>= committed)
 *   40     4*N   CRC32C of each 4 KiB page (N = ceil(length / 4096))
 *   40+4N  4     CRC32C of bytes [0, 40+4N)
 *
 * Version 2 is version 1 with a journal of new page contents (a small
 * overwrite committed before it is applied in place; see chunk_engine.c)
 * between the page CRCs and the final CRC:
 *
 *   40+4N    4   journal offset in the chunk (multiple of 4096)
 *   44+4N    4   journal length J (multiple of 4096, > 0)
 *   48+4N    J   the pages' bytes
 *   48+4N+J  4   CRC32C of bytes [0, 48+4N+J)
 *
 * A value without a journal is written as version 1, so a target only
 * holds version 2 values while overwrites are being applied (an older
 * binary refuses exactly those chunks).
 *
 * The page CRCs let a 4 KiB read be verified without reading the whole
 * chunk; the whole-chunk CRC is what clients and resync compare.
 *
 * Data-file header (first 4096 bytes of each data file, rest zero):
 *
 *   OFFSET SIZE  FIELD
 *   0      4     magic "CFSD"
 *   4      2     version (1)
 *   6      1     size class
 *   7      1     reserved, 0
 *   8      2     file number
 *   10     2     reserved, 0
 *   12     4     CRC32C of bytes [0, 12)
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/status.h"
#include "common/wire.h"
#include "storage/chunk_format.h"

#define META_MAGIC 0x4d534643u /* "CFSM" little-endian */
#define META_VERSION 1
#define META_VERSION_JRNL 2
#define META_FIXED 40
#define FILE_MAGIC 0x44534643u /* "CFSD" */
#define FILE_VERSION 1

unsigned chunk_class_for(uint64_t len)
{
	unsigned cls = 0;
	while (cls + 1 < CHUNK_NCLASS && chunk_class_size(cls) < len)
		cls++;
	return cls;
}

void chunk_key_encode(struct chunk_id id, uint8_t out[CHUNK_KEY_LEN])
{
	wire_store_be64(out, id.ino);
	wire_store_be32(out + 8, id.idx);
}

int chunk_key_decode(const void *p, size_t n, struct chunk_id *out)
{
	if (n != CHUNK_KEY_LEN)
		return -CFS_ECORRUPT;
	out->ino = wire_load_be64(p);
	out->idx = wire_load_be32((const uint8_t *)p + 8);
	return 0;
}

size_t chunk_meta_size(const struct chunk_meta *m)
{
	size_t n = META_FIXED + 4 * (size_t)m->npages + 4;
	return m->jrnl_len ? n + 8 + m->jrnl_len : n;
}

void chunk_meta_encode(const struct chunk_meta *m, uint8_t *out)
{
	wire_store_u32(out, META_MAGIC);
	out[4] = m->jrnl_len ? META_VERSION_JRNL : META_VERSION;
	out[5] = m->pos.cls;
	wire_store_u16(out + 6, m->pos.file);
	wire_store_u32(out + 8, m->pos.block);
	wire_store_u32(out + 12, m->len);
	wire_store_u32(out + 16, m->crc);
	wire_store_u32(out + 20, m->chain_ver);
	wire_store_u64(out + 24, m->commit_ver);
	wire_store_u64(out + 32, m->pending_ver);
	for (uint32_t i = 0; i < m->npages; i++)
		wire_store_u32(out + META_FIXED + 4 * i, m->page_crc[i]);
	size_t body = META_FIXED + 4 * (size_t)m->npages;
	if (m->jrnl_len) {
		wire_store_u32(out + body, m->jrnl_off);
		wire_store_u32(out + body + 4, m->jrnl_len);
		memcpy(out + body + 8, m->jrnl, m->jrnl_len);
		body += 8 + (size_t)m->jrnl_len;
	}
	wire_store_u32(out + body, crc32c(0, out, body));
}

/* Checks a value (magic, version, class, length, the record's CRC over
 * all of it, position) and fills OUT's fields but page_crc and jrnl (left
 * NULL). 0 or -CFS_ECORRUPT. */
static int meta_check(const uint8_t *b, size_t n, struct chunk_meta *out)
{
	memset(out, 0, sizeof(*out));
	if (n < META_FIXED + 4 || wire_load_u32(b) != META_MAGIC ||
	    (b[4] != META_VERSION && b[4] != META_VERSION_JRNL))
		return -CFS_ECORRUPT;
	uint32_t len = wire_load_u32(b + 12);
	uint8_t cls = b[5];
	if (cls >= CHUNK_NCLASS || len > chunk_class_size(cls))
		return -CFS_ECORRUPT;
	uint32_t npages = chunk_npages(len);
	size_t body = META_FIXED + 4 * (size_t)npages;
	uint32_t joff = 0, jlen = 0;
	if (b[4] == META_VERSION_JRNL) {
		if (n < body + 12)
			return -CFS_ECORRUPT;
		joff = wire_load_u32(b + body);
		jlen = wire_load_u32(b + body + 4);
		if (!jlen || joff % CHUNK_PAGE || jlen % CHUNK_PAGE ||
		    (uint64_t)joff + jlen > (uint64_t)npages * CHUNK_PAGE)
			return -CFS_ECORRUPT;
		body += 8 + (size_t)jlen;
	}
	if (n != body + 4 || wire_load_u32(b + body) != crc32c(0, b, body))
		return -CFS_ECORRUPT;
	uint16_t file = wire_load_u16(b + 6);
	uint32_t block = wire_load_u32(b + 8);
	uint64_t commit = wire_load_u64(b + 24), pending = wire_load_u64(b + 32);
	/* The block's end offset must fit a file offset. */
	if (file >= CHUNK_MAX_FILES || pending < commit ||
	    (uint64_t)block > (UINT64_C(1) << 62) / chunk_class_size(cls))
		return -CFS_ECORRUPT;
	out->pos.cls = cls;
	out->pos.file = file;
	out->pos.block = block;
	out->len = len;
	out->crc = wire_load_u32(b + 16);
	out->chain_ver = wire_load_u32(b + 20);
	out->commit_ver = commit;
	out->pending_ver = pending;
	out->npages = npages;
	out->jrnl_off = joff;
	out->jrnl_len = jlen;
	return 0;
}

int chunk_meta_decode(const void *p, size_t n, struct chunk_meta *out)
{
	const uint8_t *b = p;
	int rc = meta_check(b, n, out);
	if (rc)
		return rc;
	uint32_t *pc = NULL;
	uint8_t *jr = NULL;
	if (out->npages) {
		pc = malloc(4 * (size_t)out->npages);
		if (!pc)
			goto nomem;
		for (uint32_t i = 0; i < out->npages; i++)
			pc[i] = wire_load_u32(b + META_FIXED + 4 * i);
	}
	if (out->jrnl_len) {
		jr = malloc(out->jrnl_len);
		if (!jr) {
			free(pc);
			goto nomem;
		}
		memcpy(jr, b + META_FIXED + 4 * (size_t)out->npages + 8, out->jrnl_len);
	}
	out->page_crc = pc;
	out->jrnl = jr;
	return 0;
nomem:
	memset(out, 0, sizeof(*out));
	return -ENOMEM;
}

int chunk_meta_decode_pages(const void *p, size_t n, uint32_t first, uint32_t count,
			    struct chunk_meta *out, uint32_t *pc)
{
	const uint8_t *b = p;
	int rc = meta_check(b, n, out);
	for (uint32_t i = 0; !rc && i < count && first + i < out->npages; i++)
		pc[i] = wire_load_u32(b + META_FIXED + 4 * ((size_t)first + i));
	return rc;
}

void chunk_meta_fini(struct chunk_meta *m)
{
	if (!m)
		return;
	free(m->page_crc);
	free(m->jrnl);
	memset(m, 0, sizeof(*m));
}

int chunk_meta_copy(struct chunk_meta *dst, const struct chunk_meta *src)
{
	*dst = *src;
	dst->page_crc = NULL;
	dst->jrnl = NULL;
	if (src->npages) {
		dst->page_crc = malloc(4 * (size_t)src->npages);
		if (!dst->page_crc)
			return -ENOMEM;
		memcpy(dst->page_crc, src->page_crc, 4 * (size_t)src->npages);
	}
	if (src->jrnl_len) {
		dst->jrnl = malloc(src->jrnl_len);
		if (!dst->jrnl) {
			free(dst->page_crc);
			dst->page_crc = NULL;
			return -ENOMEM;
		}
		memcpy(dst->jrnl, src->jrnl, src->jrnl_len);
	}
	return 0;
}

void chunk_file_hdr_encode(const struct chunk_file_hdr *h, uint8_t out[CHUNK_FILE_HDR_USED])
{
	memset(out, 0, CHUNK_FILE_HDR_USED);
	wire_store_u32(out, FILE_MAGIC);
	wire_store_u16(out + 4, FILE_VERSION);
	out[6] = h->cls;
	wire_store_u16(out + 8, h->file);
	wire_store_u32(out + 12, crc32c(0, out, 12));
}

int chunk_file_hdr_decode(const void *p, size_t n, struct chunk_file_hdr *out)
{
	const uint8_t *b = p;
	if (n < CHUNK_FILE_HDR_USED || wire_load_u32(b) != FILE_MAGIC ||
	    wire_load_u16(b + 4) != FILE_VERSION || wire_load_u32(b + 12) != crc32c(0, b, 12))
		return -CFS_ECORRUPT;
	if (b[6] >= CHUNK_NCLASS || b[7] || wire_load_u16(b + 8) >= CHUNK_MAX_FILES || b[10] || b[11])
		return -CFS_ECORRUPT;
	out->cls = b[6];
	out->file = wire_load_u16(b + 8);
	return 0;
}
