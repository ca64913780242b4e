/* fuzz_net_stats_resp.c - libFuzzer target for rpc_stats_resp_decode (rpc_proto.h).
 * Property: decoding never reads out of bounds; whatever decodes
 * re-encodes to bytes that decode to the same message. */
#include <string.h>

#include "fuzz_roundtrip.h"
#include "net/rpc_proto.h"

static int same(const struct rpc_stats_resp *a, const struct rpc_stats_resp *b)
{
	return !memcmp(a, b, sizeof(*a));
}

FUZZ_ROUNDTRIP(rpc_stats_resp, same)
