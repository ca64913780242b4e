/* fuzz_net_echo_req.c - libFuzzer target for rpc_echo_req_decode (rpc_proto.h).
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
	struct rpc_echo_req m, m2;
	struct buf b = BUF_INIT;
	int rc = rpc_echo_req_decode(data, size, &m);
	if (rc) {
		if (rc != -CFS_EPROTO)
			abort();
		return 0;
	}
	if (rpc_echo_req_encode(&b, &m) || rpc_echo_req_decode(b.data, b.len, &m2))
		abort();
	if (m2.delay_ms != m.delay_ms || m2.flags != m.flags || m2.data_len != m.data_len || (m.data_len && memcmp(m2.data, m.data, m.data_len)))
		abort();
	buf_fini(&b);
	return 0;
}
