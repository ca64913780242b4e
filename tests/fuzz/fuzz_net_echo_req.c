/* fuzz_net_echo_req.c - libFuzzer target for rpc_echo_req_decode (rpc_proto.h).
 * Property: decoding never reads out of bounds; whatever decodes
 * re-encodes to bytes that decode to the same message. */
#include <string.h>

#include "fuzz_roundtrip.h"
#include "net/rpc_proto.h"

static int same(const struct rpc_echo_req *a, const struct rpc_echo_req *b)
{
	return a->delay_ms == b->delay_ms && a->flags == b->flags && a->data_len == b->data_len &&
	       (!a->data_len || !memcmp(a->data, b->data, a->data_len));
}

FUZZ_ROUNDTRIP(rpc_echo_req, same)
