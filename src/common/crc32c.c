/* crc32c.c - CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
 *
 * Fast path: Intel ISA-L's crc32_iscsi (libisal, Debian's isa-l), which
 * picks at run time the best of its versions for the CPU: carry-less-
 * multiply folding with AVX-512 VPCLMULQDQ or PCLMULQDQ, the SSE4.2 crc32
 * instruction, or a table. It takes and returns the raw register (no
 * pre/post inversion), so crc32c() inverts around it. Measured in one
 * run on the development machine (AVX-512 VPCLMULQDQ, load 4-6): 256 KiB
 * at 54-62 GB/s and 4 KiB pages at 56-60 GB/s, against 63-67 and 58-63
 * GB/s for the hand-written fold it replaced (2026-12-06, kvput20) and
 * 17-20 and 14-18 for the three-stream crc32-instruction loop before
 * that: the library's code, at 0.9-1.0x, instead of ours.
 * Portable path (tests, and the reference the fast path is checked
 * against): slicing-by-8 tables built at first use. Both give
 * crc32c(0, "123456789", 9) = 0xE3069283. */
#include <isa-l/crc.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>

#include "common/crc32c.h"

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
/* shift_op[k]: the operator appending 2^k zero bytes (crc32c_combine). */
static uint32_t shift_op[64][32];
static void gf2_square(uint32_t *square, const uint32_t *mat);

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
	/* One zero bit, squared three times: one zero byte; then each square
	 * doubles the span. */
	uint32_t a[32], b[32];
	a[0] = 0x82F63B78u;
	for (int n = 1; n < 32; n++)
		a[n] = 1u << (n - 1);
	gf2_square(b, a);
	gf2_square(a, b);
	gf2_square(shift_op[0], a);
	for (int k = 1; k < 64; k++)
		gf2_square(shift_op[k], shift_op[k - 1]);
}

uint32_t crc32c_sw(uint32_t crc, const void *data, size_t len)
{
	pthread_once(&crc_once, crc_init);
	const uint8_t *p = data;
	uint32_t c = ~crc;
	while (len && ((uintptr_t)p & 7)) {
		c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
		len--;
	}
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		w ^= c; /* little-endian hosts only: x86_64 and aarch64 */
		c = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
		    crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
		    crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
		    crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
	return ~c;
}

/* GF(2) 32x32 matrix helpers (crc32c_combine). */
static uint32_t gf2_times(const uint32_t *mat, uint32_t vec)
{
	uint32_t sum = 0;
	while (vec) {
		if (vec & 1)
			sum ^= *mat;
		vec >>= 1;
		mat++;
	}
	return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat)
{
	for (int n = 0; n < 32; n++)
		square[n] = gf2_times(mat, mat[n]);
}

void crc32c_pages(const void *data, size_t len, size_t page, uint32_t *out)
{
	const uint8_t *p = data;
	size_t full = len / page;
	for (size_t i = 0; i < full; i++)
		out[i] = crc32c(0, p + i * page, page);
	if (len % page)
		out[full] = crc32c(0, p + full * page, len % page);
}

/* ISA-L's AVX-512 version (crc32_iscsi_by16_10) returns with the upper
 * halves of the vector registers dirty (no VZEROUPPER): until something
 * clears them, every legacy-SSE instruction after it (glibc's malloc,
 * string functions) carries a merge dependency on those bits, and the
 * core may keep its AVX-512 power state. Cleared here, after every call
 * (bench/history.md, rr25). */
static int has_avx = -1;

static inline void zero_upper(void)
{
#if defined(__x86_64__)
	int a = __atomic_load_n(&has_avx, __ATOMIC_RELAXED);
	if (a < 0) {
		__builtin_cpu_init();
		a = __builtin_cpu_supports("avx");
		__atomic_store_n(&has_avx, a, __ATOMIC_RELAXED);
	}
	if (a)
		__asm__ volatile("vzeroupper" ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5",
		                 "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
		                 "xmm13", "xmm14", "xmm15");
#endif
}

uint32_t crc32c(uint32_t crc, const void *data, size_t len)
{
	/* The library's length is an int: runs of at most 1 GiB. Its buffer
	 * argument is not const but it only reads it. */
	unsigned char *p = (unsigned char *)(uintptr_t)data;
	uint32_t c = ~crc;
	while (len) {
		size_t n = len < (1u << 30) ? len : (1u << 30);
		c = crc32_iscsi(p, (int)n, c);
		p += n;
		len -= n;
	}
	zero_upper();
	return ~c;
}

int crc32c_hw_available(void)
{
#if defined(__x86_64__)
	__builtin_cpu_init();
	return __builtin_cpu_supports("sse4.2");
#else
	return 0;
#endif
}

/* ---- combine (see crc32c.h) ----
 * For a reflected CRC with pre/post inversion crc(A||B) = shift(crc(A),
 * |B|) ^ crc(B), where shift ("append |B| zero bytes", inversions
 * cancelling) is linear over GF(2): one 32x32 operator per set bit of
 * |B|, from the table crc_init squares once. (It squared its way up on
 * every call: 40 matrix squarings for 1 MiB, 9 % of the mount's CPU in
 * KVCache gets of 2 MiB pages, which fold two chunk pieces per page.) */
static uint32_t shift(uint32_t crc, uint64_t len)
{
	pthread_once(&crc_once, crc_init);
	for (int k = 0; len; k++, len >>= 1)
		if (len & 1)
			crc = gf2_times(shift_op[k], crc);
	return crc;
}

uint32_t crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b)
{
	return shift(crc_a, len_b) ^ crc_b;
}
