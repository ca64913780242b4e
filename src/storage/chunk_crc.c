/* chunk_crc.c - page CRCs and CRC combination for chunk metadata.
 *
 * A chunk's metadata keeps one CRC32C per 4 KiB page (so a small read is
 * verified by reading only its pages) and one over the whole chunk (what
 * clients and resync compare). Computing both naively reads the data twice;
 * instead the whole CRC is folded from the page CRCs: for a reflected CRC
 * with pre/post inversion, crc(A||B) = shift(crc(A), |B|) ^ crc(B), where
 * shift is linear over GF(2). The operator for one full page is a 32x32
 * bit matrix computed once (pthread_once; constant afterwards), tabulated
 * per input byte (4 x 256 words: by linearity the shift of a CRC is the
 * XOR of the shifts of its four bytes), so folding a page costs four
 * lookups; 32 data-dependent branches per page cost as much as a third of
 * the page CRC itself on 1 MiB writes.
 */
#include <pthread.h>

#include "common/crc32c.h"
#include "storage/chunk_crc.h"
#include "storage/chunk_format.h"

static uint32_t page_tab[4][256]; /* [k][b]: the page shift of b << 8k */
static pthread_once_t page_once = PTHREAD_ONCE_INIT;

static uint32_t gf2_times(const uint32_t *mat, uint32_t vec)
{
	uint32_t sum = 0;
	for (int i = 0; vec; vec >>= 1, i++)
		if (vec & 1)
			sum ^= mat[i];
	return sum;
}

static void page_init(void)
{
	uint32_t op[32];
	for (int i = 0; i < 32; i++)
		op[i] = crc32c_combine(1u << i, 0, CHUNK_PAGE);
	for (int k = 0; k < 4; k++)
		for (uint32_t b = 0; b < 256; b++)
			page_tab[k][b] = gf2_times(op, b << (8 * k));
}

static inline uint32_t page_shift(uint32_t crc)
{
	return page_tab[0][crc & 0xff] ^ page_tab[1][(crc >> 8) & 0xff] ^
	       page_tab[2][(crc >> 16) & 0xff] ^ page_tab[3][crc >> 24];
}

uint32_t chunk_crc_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b)
{
	if (len_b == CHUNK_PAGE) {
		pthread_once(&page_once, page_init);
		return page_shift(crc_a) ^ crc_b;
	}
	return crc32c_combine(crc_a, crc_b, len_b);
}

uint32_t chunk_crc_pages(const uint8_t *data, size_t len, uint32_t *page_crc)
{
	pthread_once(&page_once, page_init);
	uint32_t whole = 0;
	crc32c_pages(data, len, CHUNK_PAGE, page_crc);
	for (size_t off = 0, i = 0; off < len; off += CHUNK_PAGE, i++) {
		size_t n = len - off < CHUNK_PAGE ? len - off : CHUNK_PAGE;
		if (!off)
			whole = page_crc[i];
		else if (n == CHUNK_PAGE)
			whole = page_shift(whole) ^ page_crc[i];
		else
			whole = crc32c_combine(whole, page_crc[i], n);
	}
	return whole;
}
