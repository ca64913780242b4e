/* fuzz_net_echo_resp.c - libFuzzer target for rpc_echo_resp_decode (rpc_proto.h).
 * Property: decoding never reads out of bounds; whatever decodes
 * re-encodes to bytes that decode to the same message. */
#include <string.h>

#include "fuzz_roundtrip.h"
#include "net/rpc_proto.h"

static int same(const struct rpc_echo_resp *a, const struct rpc_echo_resp *b)
{
	return a->bulk_len == b->bulk_len && a->data_len == b->data_len &&
	       (!a->data_len || !memcmp(a->data, b->data, a->data_len));
}

FUZZ_ROUNDTRIP(rpc_echo_resp, same)
