/* fuzz_net_proof.c - libFuzzer target for rpc_proof_decode (rpc_proto.h).
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
	struct rpc_proof m, m2;
	struct buf b = BUF_INIT;
	int rc = rpc_proof_decode(data, size, &m);
	if (rc) {
		if (rc != -CFS_EPROTO)
			abort();
		return 0;
	}
	if (rpc_proof_encode(&b, &m) || rpc_proof_decode(b.data, b.len, &m2))
		abort();
	if (memcmp(m2.mac, m.mac, RPC_PROOF_LEN))
		abort();
	buf_fini(&b);
	return 0;
}
