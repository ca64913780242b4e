/* fuzz_net_challenge.c - libFuzzer target for rpc_challenge_decode (rpc_proto.h).
 * Property: decoding never reads out of bounds; whatever decodes
 * re-encodes to bytes that decode to the same message. */
#include <string.h>

#include "fuzz_roundtrip.h"
#include "net/rpc_proto.h"

static int same(const struct rpc_challenge *a, const struct rpc_challenge *b)
{
	return a->major == b->major && a->minor == b->minor && a->features == b->features &&
	       !memcmp(a->nonce, b->nonce, RPC_NONCE_LEN);
}

FUZZ_ROUNDTRIP(rpc_challenge, same)
