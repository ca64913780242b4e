/* fuzz_net_frame.c - libFuzzer target for the frame header decoder.
 * Property: any input either fails with one of the documented codes or
 * decodes to a header that encodes and decodes back to the same fields. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "net/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct frame_limits lim = { 16u << 20, 64ull << 20 };
	struct frame_hdr h, h2;
	uint8_t b[FRAME_HDR_LEN];
	int rc = frame_decode(data, size, &lim, &h);
	if (rc) {
		if (rc != -CFS_EPROTO && rc != -CFS_EVERSION && rc != -CFS_ECHECKSUM &&
		    rc != -EMSGSIZE)
			abort();
		return 0;
	}
	frame_encode(&h, b);
	if (frame_decode(b, sizeof(b), &lim, &h2) || h2.flags != h.flags || h2.type != h.type ||
	    h2.req_id != h.req_id || h2.status != h.status || h2.payload_len != h.payload_len ||
	    h2.bulk_len != h.bulk_len || h2.bulk_crc != h.bulk_crc)
		abort();
	return 0;
}
