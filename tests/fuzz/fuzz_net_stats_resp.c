/* fuzz_net_stats_resp.c - libFuzzer target for rpc_stats_resp_decode (rpc_proto.h).
 * Property: decoding never reads out of bounds; whatever decodes
 * re-encodes to bytes that decode to the same message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/status.h"
#include "net/rpc_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rpc_stats_resp m, m2;
	struct buf b = BUF_INIT;
	int rc = rpc_stats_resp_decode(data, size, &m);
	if (rc) {
		if (rc != -CFS_EPROTO)
			abort();
		return 0;
	}
	if (rpc_stats_resp_encode(&b, &m) || rpc_stats_resp_decode(b.data, b.len, &m2))
		abort();
	if (memcmp(&m, &m2, sizeof(m)))
		abort();
	buf_fini(&b);
	return 0;
}
