/* fuzz_kv_etcd_reply.c - the etcd gateway's JSON replies are peer bytes:
 * the range and txn reply decoders must turn anything into either a result
 * (freed here) or an error, never a crash or a leak. The first input byte
 * picks the decoder. */
#include <stddef.h>
#include <stdint.h>

#include "kv/etcd_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *json = (const char *)data + 1;
	size_t len = size - 1;
	if (data[0] & 1) {
		struct etcdc_txn_res t;
		if (etcdc_parse_txn_reply(json, len, &t) == 0)
			etcdc_txn_res_fini(&t);
	} else {
		struct etcdc_range_res r;
		if (etcdc_parse_range_reply(json, len, &r) == 0)
			etcdc_range_res_fini(&r);
	}
	return 0;
}
