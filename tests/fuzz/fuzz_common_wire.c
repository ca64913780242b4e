/* fuzz_common_wire.c - drives the wire_reader with an arbitrary sequence of
 * getters chosen by the input itself: no read may pass the end, and once
 * failed the reader stays failed. */
#include <stdint.h>
#include <stdlib.h>

#include "common/cfs_assert.h"
#include "common/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wire_reader r;
	wire_reader_init(&r, data, size);
	size_t ops = 0;
	int failed = 0;
	while (ops++ < 256) {
		uint8_t op;
		if (wire_get_u8(&r, &op))
			break;
		uint64_t v64; uint32_t v32; uint16_t v16; const uint8_t *p; uint32_t n;
		uint8_t tmp[16];
		switch (op % 6) {
		case 0: wire_get_u16(&r, &v16); break;
		case 1: wire_get_u32(&r, &v32); break;
		case 2: wire_get_u64(&r, &v64); break;
		case 3: wire_get_blob(&r, 64, &p, &n); ASSERT(r.err || n <= 64); break;
		case 4: wire_get_bytes(&r, tmp, op % 17); break;
		case 5: wire_get_ref(&r, op % 9, &p); break;
		}
		ASSERT(r.p <= r.end);
		if (failed)
			ASSERT(r.err);
		failed = r.err != 0;
	}
	return 0;
}
