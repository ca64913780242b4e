/* rendezvous.c - rendezvous hashing of inodes over meta instances
 * (rendezvous.h). The weight function is part of the protocol: every
 * client must pick the same owner, so it never changes. */
#include "meta/layout.h"
#include "meta/rendezvous.h"

uint64_t meta_rendezvous(uint64_t ino, const uint64_t *instances, size_t n)
{
	uint64_t best = 0, best_w = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t s = instances[i] ^ (ino * 0x9E3779B97F4A7C15ULL);
		uint64_t w = meta_splitmix64(&s);
		if (i == 0 || w > best_w || (w == best_w && instances[i] < best)) {
			best = instances[i];
			best_w = w;
		}
	}
	return best;
}
