/* crc32c.h - CRC-32C (Castagnoli), the checksum of every frame header,
 * bulk payload and chunk. Uses the SSE4.2 instruction when the CPU has it
 * (checked once), a table otherwise; both give identical results. */
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
/* OUT[i] = crc32c(0, the i-th PAGE bytes of DATA) for each PAGE-byte
 * piece of LEN bytes (the last may be shorter): ceil(LEN / PAGE) values.
 * The same values as one crc32c call per piece, computed several pieces
 * at a time (faster on data not in the CPU's caches). Thread-safe. */
void crc32c_pages(const void *data, size_t len, size_t page, uint32_t *out);
/* 1 if the hardware path is in use. */
int crc32c_hw_available(void);

#endif
