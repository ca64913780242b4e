/* fuzz_chunk_file_hdr.c - the data-file header decoder. */
#include <stdint.h>
#include <string.h>

#include "common/cfs_assert.h"
#include "storage/chunk_format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct chunk_file_hdr h;
	if (chunk_file_hdr_decode(data, size, &h))
		return 0;
	uint8_t out[CHUNK_FILE_HDR_USED];
	chunk_file_hdr_encode(&h, out);
	ASSERT(!memcmp(out, data, CHUNK_FILE_HDR_USED));
	return 0;
}
