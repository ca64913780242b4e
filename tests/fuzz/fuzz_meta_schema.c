/* fuzz_meta_schema.c - feeds arbitrary bytes to every meta record decoder.
 * The first byte picks the decoder. Decoders must return 0 or a negative
 * code, never crash or read out of bounds; a record that decodes must
 * re-encode and decode to the same fields (for inodes, a byte-identical
 * re-encoding when no trailing bytes were skipped is not required).
 * 9: the inline data record (IDAT). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/cfs_assert.h"
#include "meta/acl.h"
#include "meta/meta_lock.h"
#include "meta/schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct meta_inode in, in2;
	struct buf b = BUF_INIT;
	if (size < 1)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	switch (data[0] % 10) {
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
	case 7: { /* lock table (meta_lock.h) */
		struct meta_lock_table t = { 0 }, t2 = { 0 };
		if (meta_lock_decode(p, n, &t) == 0) {
			ASSERT(t.n <= META_LOCK_MAX);
			ASSERT(meta_lock_encode(&t, &b) == 0);
			ASSERT(meta_lock_decode(b.data, b.len, &t2) == 0);
			ASSERT(t2.n == t.n);
			for (size_t i = 0; i < t.n; i++) {
				const struct meta_lock *x = &t.v[i], *y = &t2.v[i];
				ASSERT(x->client == y->client && x->owner == y->owner &&
				       x->pid == y->pid && x->kind == y->kind && x->type == y->type &&
				       x->start == y->start && x->end == y->end);
			}
		}
		meta_lock_table_free(&t);
		meta_lock_table_free(&t2);
		break;
	}
	case 8: { /* POSIX ACL xattr value (acl.h) */
		uint8_t *c = malloc(n ? n : 1);
		ASSERT(c != NULL);
		if (meta_acl_check(p, n) == 0) {
			uint32_t mode = 0777;
			ASSERT(meta_acl_mode(p, n) <= 0777);
			memcpy(c, p, n);
			meta_acl_chmod(c, n, 0750);
			ASSERT(meta_acl_check(c, n) == 0 && meta_acl_mode(c, n) == 0750);
			memcpy(c, p, n);
			meta_acl_create(c, n, &mode);
			ASSERT(meta_acl_check(c, n) == 0 && (mode & ~0777u) == 0);
			ASSERT(meta_acl_mode(c, n) == mode);
		}
		free(c);
		break;
	}
	case 9: { /* inline data record (meta_idata.c) */
		struct meta_idata_rec r, r2;
		if (meta_idata_decode(p, n, &r) == 0) {
			ASSERT(r.len <= META_IDATA_MAX && r.data + r.len <= p + n);
			ASSERT(meta_idata_encode(&r, &b) == 0);
			ASSERT(meta_idata_decode(b.data, b.len, &r2) == 0);
			ASSERT(r2.ver == r.ver && r2.conv_owner == r.conv_owner &&
			       r2.conv_until == r.conv_until && r2.flags == r.flags &&
			       r2.len == r.len && !memcmp(r2.data, r.data, r.len));
		}
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
