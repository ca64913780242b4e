/* acl.c - POSIX ACL xattr values (acl.h). The rules mirror the kernel's
 * fs/posix_acl.c (posix_acl_valid, posix_acl_equiv_mode, __posix_acl_chmod,
 * posix_acl_create_masq), applied to the xattr bytes in place. */
#include <errno.h>
#include <string.h>

#include "common/wire.h"
#include "meta/acl.h"

#define ACL_VERSION 2
#define HDR 4
#define ENT 8

enum { T_USER_OBJ = 0x01, T_USER = 0x02, T_GROUP_OBJ = 0x04, T_GROUP = 0x08, T_MASK = 0x10,
       T_OTHER = 0x20 };

static uint16_t tag(const uint8_t *e) { return wire_load_u16(e); }
static uint16_t perm(const uint8_t *e) { return wire_load_u16(e + 2); }
static void set_perm(uint8_t *e, uint16_t v) { wire_store_u16(e + 2, v & 7); }

int meta_acl_check(const void *p, size_t n)
{
	const uint8_t *b = p;
	int uo = 0, go = 0, oth = 0, mask = 0, named = 0;
	if (!p || n < HDR || (n - HDR) % ENT || (n - HDR) / ENT > META_ACL_MAX_ENTRIES ||
	    wire_load_u32(b) != ACL_VERSION)
		return -EINVAL;
	for (size_t off = HDR; off < n; off += ENT) {
		const uint8_t *e = b + off;
		if (perm(e) & ~7u)
			return -EINVAL;
		switch (tag(e)) {
		case T_USER_OBJ: uo++; break;
		case T_GROUP_OBJ: go++; break;
		case T_OTHER: oth++; break;
		case T_MASK: mask++; break;
		case T_USER: case T_GROUP: named++; break;
		default: return -EINVAL;
		}
	}
	if (uo != 1 || go != 1 || oth != 1 || mask > 1 || (named && !mask))
		return -EINVAL;
	return 0;
}

uint32_t meta_acl_mode(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint32_t u = 0, g = 0, o = 0, m = 0;
	int has_mask = 0;
	for (size_t off = HDR; off + ENT <= n; off += ENT) {
		const uint8_t *e = b + off;
		switch (tag(e)) {
		case T_USER_OBJ: u = perm(e); break;
		case T_GROUP_OBJ: g = perm(e); break;
		case T_OTHER: o = perm(e); break;
		case T_MASK: m = perm(e); has_mask = 1; break;
		}
	}
	return (u << 6) | ((has_mask ? m : g) << 3) | o;
}

int meta_acl_equiv(const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t off = HDR; off + ENT <= n; off += ENT) {
		uint16_t t = tag(b + off);
		if (t != T_USER_OBJ && t != T_GROUP_OBJ && t != T_OTHER)
			return 0;
	}
	return 1;
}

void meta_acl_chmod(void *p, size_t n, uint32_t mode)
{
	uint8_t *b = p, *go = NULL, *mask = NULL;
	for (size_t off = HDR; off + ENT <= n; off += ENT) {
		uint8_t *e = b + off;
		switch (tag(e)) {
		case T_USER_OBJ: set_perm(e, (uint16_t)(mode >> 6)); break;
		case T_GROUP_OBJ: go = e; break;
		case T_MASK: mask = e; break;
		case T_OTHER: set_perm(e, (uint16_t)mode); break;
		}
	}
	if (mask)
		set_perm(mask, (uint16_t)(mode >> 3));
	else if (go)
		set_perm(go, (uint16_t)(mode >> 3));
}

int meta_acl_create(void *p, size_t n, uint32_t *modep)
{
	uint8_t *b = p, *go = NULL, *mask = NULL;
	uint32_t mode = *modep;
	int not_equiv = 0;
	for (size_t off = HDR; off + ENT <= n; off += ENT) {
		uint8_t *e = b + off;
		switch (tag(e)) {
		case T_USER_OBJ:
			set_perm(e, perm(e) & (mode >> 6));
			mode &= ((uint32_t)perm(e) << 6) | ~0700u;
			break;
		case T_USER:
		case T_GROUP:
			not_equiv = 1;
			break;
		case T_GROUP_OBJ: go = e; break;
		case T_MASK: mask = e; not_equiv = 1; break;
		case T_OTHER:
			set_perm(e, perm(e) & mode);
			mode &= perm(e) | ~0007u;
			break;
		}
	}
	uint8_t *g = mask ? mask : go;
	if (g) {
		set_perm(g, perm(g) & (mode >> 3));
		mode &= ((uint32_t)perm(g) << 3) | ~0070u;
	}
	*modep = mode;
	return not_equiv;
}
