/* fuzz_net_proof.c - libFuzzer target for rpc_proof_decode (rpc_proto.h).
 * Property: decoding never reads out of bounds; whatever decodes
 * re-encodes to bytes that decode to the same message. */
#include <string.h>

#include "fuzz_roundtrip.h"
#include "net/rpc_proto.h"

static int same(const struct rpc_proof *a, const struct rpc_proof *b)
{
	return !memcmp(a->mac, b->mac, RPC_PROOF_LEN);
}

FUZZ_ROUNDTRIP(rpc_proof, same)
