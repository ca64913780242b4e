/* fuzz_roundtrip.h - the libFuzzer target of a message codec pair
 * NAME_decode / NAME_encode (net/rpc_proto.h style: decode(data, len,
 * &msg) returns 0 or -CFS_EPROTO; encode(&buf, &msg) returns 0 or
 * -ENOMEM).
 *
 * FUZZ_ROUNDTRIP(NAME, SAME) defines LLVMFuzzerTestOneInput for struct
 * NAME with the property every such codec must have: any input either
 * decodes or is refused with -CFS_EPROTO (any other result aborts), never
 * reading out of bounds; what decodes re-encodes to bytes that decode
 * again, to a message SAME(&first, &second) accepts (SAME: a function
 * taking two const struct NAME * and returning nonzero when they are the
 * same message). A macro, not a function, so that each codec keeps its
 * own typed signatures (no calls through cast function pointers).
 */
#ifndef CFS_TESTS_FUZZ_ROUNDTRIP_H
#define CFS_TESTS_FUZZ_ROUNDTRIP_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/buf.h"
#include "common/status.h"

#define FUZZ_ROUNDTRIP(NAME, SAME)                                                     \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)                   \
	{                                                                              \
		struct NAME m, m2;                                                     \
		struct buf b = BUF_INIT;                                               \
		int rc = NAME##_decode(data, size, &m);                                \
		if (rc) {                                                              \
			if (rc != -CFS_EPROTO)                                         \
				abort();                                               \
			return 0;                                                      \
		}                                                                      \
		if (NAME##_encode(&b, &m) || NAME##_decode(b.data, b.len, &m2))        \
			abort();                                                       \
		if (!SAME(&m, &m2))                                                    \
			abort();                                                       \
		buf_fini(&b);                                                          \
		return 0;                                                              \
	}

#endif
