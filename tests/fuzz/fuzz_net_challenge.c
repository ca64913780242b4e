/* fuzz_net_challenge.c - libFuzzer target for rpc_challenge_decode (rpc_proto.h).
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
	struct rpc_challenge m, m2;
	struct buf b = BUF_INIT;
	int rc = rpc_challenge_decode(data, size, &m);
	if (rc) {
		if (rc != -CFS_EPROTO)
			abort();
		return 0;
	}
	if (rpc_challenge_encode(&b, &m) || rpc_challenge_decode(b.data, b.len, &m2))
		abort();
	if (m2.major != m.major || m2.minor != m.minor || m2.features != m.features || memcmp(m2.nonce, m.nonce, RPC_NONCE_LEN))
		abort();
	buf_fini(&b);
	return 0;
}
