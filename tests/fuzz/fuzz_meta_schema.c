/* fuzz_meta_schema.c - feeds arbitrary bytes to every meta record decoder.
 * The first byte picks the decoder. Decoders must return 0 or a negative
 * code, never crash or read out of bounds; a record that decodes must
 * re-encode and decode to the same fields (for inodes, a byte-identical
 * re-encoding when no trailing bytes were skipped is not required). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/cfs_assert.h"
#include "meta/schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct meta_inode in, in2;
	struct buf b = BUF_INIT;
	if (size < 1)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	switch (data[0] % 7) {
	case 0:
		if (meta_inode_decode(p, n, &in) == 0) {
			ASSERT(in.ino != 0);
			ASSERT(in.type >= META_T_FILE && in.type <= META_T_MAX);
			ASSERT(!in.has_layout || in.layout.nchains <= META_MAX_STRIPE);
			ASSERT(in.target_len <= META_SYMLINK_MAX);
			ASSERT(meta_inode_encode(&in, &b) == 0);
			ASSERT(meta_inode_decode(b.data, b.len, &in2) == 0);
			ASSERT(in2.ino == in.ino && in2.size == in.size && in2.mode == in.mode);
			ASSERT(in2.target_len == in.target_len);
			ASSERT(in2.type == in.type && in2.rdev == in.rdev);
		}
		break;
	case 1: {
		struct meta_dentry d;
		if (meta_dentry_decode(p, n, &d) == 0)
			ASSERT(d.ino != 0);
		break;
	}
	case 2: {
		const uint8_t *v;
		uint32_t len;
		if (meta_xattr_decode(p, n, &v, &len) == 0)
			ASSERT(len <= META_XATTR_VALUE_MAX && v + len <= p + n);
		break;
	}
	case 3: {
		struct meta_session_rec s;
		meta_session_decode(p, n, &s);
		break;
	}
	case 4: {
		struct meta_gc_rec g;
		meta_gc_decode(p, n, &g);
		break;
	}
	case 5: {
		struct meta_idem_rec r;
		if (meta_idem_decode(p, n, &r) == 0)
			ASSERT(r.result <= 0);
		break;
	}
	default: {
		uint64_t next;
		meta_idalloc_decode(p, n, &next);
		break;
	}
	}
	buf_fini(&b);
	return 0;
}
