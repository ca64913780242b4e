/* chunk_crc.h - CRC32C bookkeeping of a chunk: per-page CRCs and the
 * whole-chunk CRC derived from them without a second pass over the data.
 * Pure functions; thread-safe.
 */
#ifndef CFS_STORAGE_CHUNK_CRC_H
#define CFS_STORAGE_CHUNK_CRC_H

#include <stddef.h>
#include <stdint.h>

/* CRC32C of A||B from crc(A), crc(B) and len(B) (the zlib combine method,
 * over the Castagnoli polynomial). */
uint32_t chunk_crc_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);
/* Computes the CRC of each CHUNK_PAGE of DATA[0, LEN) into PAGE_CRC[FIRST
 * ...] where DATA starts at page FIRST of the chunk, and returns the CRC of
 * those LEN bytes. */
uint32_t chunk_crc_pages(const uint8_t *data, size_t len, uint32_t *page_crc);

#endif
