/* meta_acl.c - POSIX ACL xattrs in the KV store (acl.h for the rules).
 *
 * ACLs are ordinary xattr records under their system.posix_acl_* names;
 * what differs is done here, inside the xattr or setattr transaction:
 * setting an access ACL sets the mode's permission bits and keeps no
 * record for an ACL the mode expresses exactly; a default ACL exists only
 * on directories; removing an absent ACL is not an error (ext4's
 * behaviour); chmod rewrites the access ACL's base entries. Inheritance at
 * create is the mount's (fuse_fs.c "ACLs"). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "common/wire.h"
#include "meta/acl.h"
#include "meta/meta_int.h"

static int put_value(kv_txn *t, const struct meta_key *k, const void *val, size_t len)
{
	struct buf b = BUF_INIT;
	int rc = meta_xattr_encode(val, len, &b);
	if (rc == 0)
		rc = kv_set(t, kv_mem(k->b, k->n), kv_mem(b.data, b.len));
	buf_fini(&b);
	return rc;
}

int meta_acl_setx(meta_ctx *m, kv_txn *t, struct meta_inode *in, int deflt,
		  const struct meta_key *k, int exists, const void *val, size_t len)
{
	(void)m;
	if (!val) /* remove */
		return exists ? kv_clear(t, kv_mem(k->b, k->n)) : 0;
	if (meta_acl_check(val, len))
		return -EINVAL;
	if (deflt) {
		if (in->type != META_T_DIR)
			return -EACCES;
		return put_value(t, k, val, len);
	}
	in->mode = (in->mode & ~0777u) | meta_acl_mode(val, len);
	if (meta_acl_equiv(val, len))
		return exists ? kv_clear(t, kv_mem(k->b, k->n)) : 0;
	return put_value(t, k, val, len);
}

int meta_acl_chmod_txn(kv_txn *t, const struct meta_inode *in)
{
	struct meta_key k;
	struct kv_slice v;
	const uint8_t *val;
	uint32_t len;
	meta_key_xattr(&k, in->ino, META_ACL_ACCESS, sizeof(META_ACL_ACCESS) - 1);
	int rc = kv_get(t, kv_mem(k.b, k.n), 0, &v);
	if (rc <= 0)
		return rc;
	if ((rc = meta_xattr_decode(v.p, v.n, &val, &len)))
		return rc;
	if (meta_acl_check(val, len))
		return -CFS_ECORRUPT;
	uint8_t *copy = malloc(len);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, val, len);
	meta_acl_chmod(copy, len, in->mode);
	rc = put_value(t, &k, copy, len);
	free(copy);
	return rc;
}

/* posix_acl_permission over the xattr bytes (checked well-formed). */
static int acl_permits(const uint8_t *b, size_t n, const struct meta_inode *in,
		       const struct meta_cred *c, unsigned want)
{
	const uint8_t *hit = NULL;
	int found = 0, masked = 0;
	for (size_t off = 4; off + 8 <= n && !hit; off += 8) {
		const uint8_t *e = b + off;
		uint16_t tag = wire_load_u16(e);
		unsigned perm = wire_load_u16(e + 2);
		uint32_t id = wire_load_u32(e + 4);
		switch (tag) {
		case 0x01: /* USER_OBJ */
			if (c->uid == in->uid)
				return (perm & want) == want ? 0 : -EACCES;
			break;
		case 0x02: /* USER */
			if (c->uid == id) {
				hit = e;
				masked = 1;
			}
			break;
		case 0x04: /* GROUP_OBJ */
		case 0x08: /* GROUP */
			if (meta_in_group(c, tag == 0x04 ? in->gid : id)) {
				found = 1;
				if ((perm & want) == want) {
					hit = e;
					masked = 1;
				}
			}
			break;
		case 0x20: /* OTHER */
			if (found)
				return -EACCES;
			return (perm & want) == want ? 0 : -EACCES;
		}
	}
	if (!hit)
		return -EACCES;
	unsigned perm = wire_load_u16(hit + 2);
	for (const uint8_t *e = hit + 8; masked && e + 8 <= b + n; e += 8)
		if (wire_load_u16(e) == 0x10) /* MASK */
			return (perm & wire_load_u16(e + 2) & want) == want ? 0 : -EACCES;
	return (perm & want) == want ? 0 : -EACCES;
}

int meta_acl_may(kv_txn *t, const struct meta_inode *in, const struct meta_cred *c, int mask)
{
	struct meta_key k;
	struct kv_slice v;
	const uint8_t *val;
	uint32_t len;
	if (c->uid == 0)
		return -EACCES;
	meta_key_xattr(&k, in->ino, META_ACL_ACCESS, sizeof(META_ACL_ACCESS) - 1);
	if (kv_get(t, kv_mem(k.b, k.n), 1, &v) <= 0)
		return -EACCES;
	if (meta_xattr_decode(v.p, v.n, &val, &len) || meta_acl_check(val, len))
		return -EACCES;
	return acl_permits(val, len, in, c, (unsigned)mask);
}
