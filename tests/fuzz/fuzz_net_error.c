/* fuzz_net_error.c - libFuzzer target for rpc_error_decode (rpc_proto.h).
 * Property: decoding never reads out of bounds; whatever decodes
 * re-encodes to bytes that decode to the same message. */
#include <string.h>

#include "fuzz_roundtrip.h"
#include "net/rpc_proto.h"

static int same(const struct rpc_error *a, const struct rpc_error *b)
{
	return a->text_len == b->text_len && (!a->text_len || !memcmp(a->text, b->text, a->text_len));
}

FUZZ_ROUNDTRIP(rpc_error, same)
