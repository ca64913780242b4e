/* fuzz_chunk_wal.c - the metadata log decoder (chunk_store.c, replayed at
 * every open of a synced target) must walk any bytes without crashing or
 * reading past them. */
#include <stdint.h>
#include <stdlib.h>

#include "storage/chunk_store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t records, changes;
	(void)chunk_store_wal_decode(data, size, &records, &changes);
	return 0;
}
