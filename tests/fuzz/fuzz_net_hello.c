/* fuzz_net_hello.c - libFuzzer target for rpc_hello_decode (rpc_proto.h).
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
	struct rpc_hello m, m2;
	struct buf b = BUF_INIT;
	int rc = rpc_hello_decode(data, size, &m);
	if (rc) {
		if (rc != -CFS_EPROTO)
			abort();
		return 0;
	}
	if (rpc_hello_encode(&b, &m) || rpc_hello_decode(b.data, b.len, &m2))
		abort();
	if (m2.major != m.major || m2.minor != m.minor || m2.features != m.features || m2.cluster_id_len != m.cluster_id_len || memcmp(m2.cluster_id, m.cluster_id, m.cluster_id_len) || memcmp(m2.nonce, m.nonce, RPC_NONCE_LEN))
		abort();
	buf_fini(&b);
	return 0;
}
