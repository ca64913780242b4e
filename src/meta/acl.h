/* acl.h - POSIX ACLs in their Linux xattr form (system.posix_acl_access,
 * system.posix_acl_default), as the mount and the meta service keep them.
 *
 * Format (<linux/posix_acl_xattr.h>, little-endian): u32 version (2), then
 * entries of { u16 tag, u16 perm (rwx bits), u32 id }, sorted by tag and,
 * for named users and groups, by id. Tags: USER_OBJ 0x01, USER 0x02,
 * GROUP_OBJ 0x04, GROUP 0x08, MASK 0x10, OTHER 0x20.
 *
 * The kernel enforces ACLs (FUSE_CAP_POSIX_ACL with default_permissions)
 * and validates what applications set, but leaves three things to the
 * file system, done with these functions:
 *   - setting an access ACL sets the mode's permission bits from it
 *     (meta_acl_mode), and an ACL the mode expresses exactly is not kept
 *     (meta_acl_equiv), as posix_acl_update_mode does for local disks;
 *   - chmod rewrites the owner, mask (or group) and other entries
 *     (meta_acl_chmod), as posix_acl_chmod does;
 *   - a new node in a directory with a default ACL gets that ACL masked by
 *     its create mode instead of the umask (meta_acl_create), as
 *     posix_acl_create does.
 * Pure functions on caller buffers; thread-safe.
 */
#ifndef CFS_META_ACL_H
#define CFS_META_ACL_H

#include <stddef.h>
#include <stdint.h>

#define META_ACL_ACCESS "system.posix_acl_access"
#define META_ACL_DEFAULT "system.posix_acl_default"
#define META_ACL_MAX_ENTRIES 1024

/* 0 when P (N bytes) is a well-formed ACL: version 2, whole entries,
 * known tags, exactly one USER_OBJ, GROUP_OBJ and OTHER, a MASK when there
 * is a named entry; else -EINVAL. */
int meta_acl_check(const void *p, size_t n);
/* The 0777 permission bits the ACL P gives (group bits: MASK's if any,
 * else GROUP_OBJ's). P must pass meta_acl_check. */
uint32_t meta_acl_mode(const void *p, size_t n);
/* 1 when P has only the three base entries (the mode says it all). */
int meta_acl_equiv(const void *p, size_t n);
/* Sets P's USER_OBJ, MASK (else GROUP_OBJ) and OTHER perms from MODE. */
void meta_acl_chmod(void *p, size_t n, uint32_t mode);
/* Turns the default ACL P (copied by the caller) into a new node's access
 * ACL for create mode *MODE, and narrows *MODE to it (umask ignored).
 * Returns 1 when the result must be stored (not equivalent to *MODE). */
int meta_acl_create(void *p, size_t n, uint32_t *mode);

#endif
