/* fuzz_net_hello.c - libFuzzer target for rpc_hello_decode (rpc_proto.h).
 * Property: decoding never reads out of bounds; whatever decodes
 * re-encodes to bytes that decode to the same message. */
#include <string.h>

#include "fuzz_roundtrip.h"
#include "net/rpc_proto.h"

static int same(const struct rpc_hello *a, const struct rpc_hello *b)
{
	return a->major == b->major && a->minor == b->minor && a->features == b->features &&
	       a->cluster_id_len == b->cluster_id_len &&
	       !memcmp(a->cluster_id, b->cluster_id, a->cluster_id_len) &&
	       !memcmp(a->nonce, b->nonce, RPC_NONCE_LEN);
}

FUZZ_ROUNDTRIP(rpc_hello, same)
