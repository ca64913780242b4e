/* crc32c.h - CRC-32C (Castagnoli), the checksum of every frame header,
 * bulk payload and chunk. Computed by ISA-L (libisal: carry-less-multiply
 * folding or the SSE4.2 instruction, whichever the CPU has), with a table
 * path for tests; both give identical results. */
#ifndef CFS_COMMON_CRC32C_H
#define CFS_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends CRC (0 to start) over LEN bytes at DATA. Thread-safe. */
uint32_t crc32c(uint32_t crc, const void *data, size_t len);
/* Same result, always the portable table path (for tests and benches). */
uint32_t crc32c_sw(uint32_t crc, const void *data, size_t len);
/* CRC32C of A||B from crc(A), crc(B) and len(B) (the zlib combine method
 * over the Castagnoli polynomial: about 64 GF(2) matrix products per bit
 * of LEN_B, no pass over the data). Thread-safe. */
uint32_t crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);
/* The CRC32C (from 0) of each PAGE-byte piece of DATA[0, LEN), the last
 * one shorter when LEN is not a multiple of PAGE, into OUT[0 ..
 * ceil(LEN / PAGE)): the values crc32c(0, piece, n) gives (chunk page
 * CRCs: storage's write check and read verification).
 * PAGE > 0. Thread-safe. */
void crc32c_pages(const void *data, size_t len, size_t page, uint32_t *out);
/* 1 if the CPU has SSE4.2 (ISA-L then uses the crc32 instruction or
 * better). */
int crc32c_hw_available(void);

#endif
