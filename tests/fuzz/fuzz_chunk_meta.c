/* fuzz_chunk_meta.c - the chunk metadata value and key decoders must reject
 * or accept any bytes without crashing, and what they accept re-encodes to
 * the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cfs_assert.h"
#include "storage/chunk_format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct chunk_id id;
	if (!chunk_key_decode(data, size, &id)) {
		uint8_t k[CHUNK_KEY_LEN];
		chunk_key_encode(id, k);
		ASSERT(!memcmp(k, data, CHUNK_KEY_LEN));
	}
	struct chunk_meta m;
	if (chunk_meta_decode(data, size, &m))
		return 0;
	ASSERT(chunk_meta_size(&m) == size);
	uint8_t *out = malloc(size);
	chunk_meta_encode(&m, out);
	ASSERT(!memcmp(out, data, size));
	free(out);
	chunk_meta_fini(&m);
	return 0;
}
