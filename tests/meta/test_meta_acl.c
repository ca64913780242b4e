/* test_meta_acl.c - POSIX ACLs in meta (acl.h, meta_acl.c): the xattr
 * value rules (check, mode, create masking) on buffers, then through meta
 * on each KV URL of the run (meta_fixture.h): setting an access ACL sets
 * the mode and an equivalent one is not kept, chmod rewrites the mask, a
 * named-user entry grants what the mode denies (open, and create in a
 * directory), default ACLs only on directories, only the owner or root
 * sets ACLs, removing an absent ACL succeeds. Built with
 * META_ACL_TEST_ETCD it runs the meta group on a real one-member etcd
 * (exit 77 without etcd). The kernel-facing behaviour is checked against
 * the local disk in tests/integ/test_integ_acl.c. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "common/wire.h"
#include "meta/acl.h"
#include "meta_fixture.h"

#define N(s) meta_name_c(s)
#define RQ fx_req(9)

static struct fx F;
static meta_ctx *M;
static const struct meta_cred ALICE = { 1000, 1000, 0, NULL };
static const struct meta_cred BOB = { 1001, 1001, 0, NULL };

/* Builds an ACL value from (tag, perm, id) triples. */
static size_t acl(uint8_t *b, int n, const uint16_t (*e)[3])
{
	wire_store_u32(b, 2);
	for (int i = 0; i < n; i++) {
		wire_store_u16(b + 4 + 8 * i, e[i][0]);
		wire_store_u16(b + 6 + 8 * i, e[i][1]);
		wire_store_u32(b + 8 + 8 * i, e[i][2]);
	}
	return 4 + 8 * (size_t)n;
}

static const uint16_t NAMED[][3] = { { 1, 6, 0 }, { 2, 6, 1001 }, { 4, 4, 0 }, { 0x10, 6, 0 },
				     { 0x20, 0, 0 } };
static const uint16_t BASE[][3] = { { 1, 7, 0 }, { 4, 5, 0 }, { 0x20, 1, 0 } };

static void test_values(void **state)
{
	uint8_t b[128];
	size_t n = acl(b, 5, NAMED);
	assert_int_equal(meta_acl_check(b, n), 0);
	assert_int_equal(meta_acl_mode(b, n), 0660);
	assert_int_equal(meta_acl_equiv(b, n), 0);
	assert_int_equal(meta_acl_check(b, n - 1), -EINVAL);
	assert_int_equal(meta_acl_check(b, n - 8), -EINVAL); /* no OTHER */
	wire_store_u32(b, 1);
	assert_int_equal(meta_acl_check(b, n), -EINVAL);
	n = acl(b, 5, NAMED);
	meta_acl_chmod(b, n, 0741);
	assert_int_equal(meta_acl_mode(b, n), 0741);
	assert_int_equal(wire_load_u16(b + 4 + 8 + 2), 6); /* named entry kept */
	/* Create masking: mode 0666 under a default ACL with mask rw. */
	n = acl(b, 5, NAMED);
	uint32_t mode = 0644;
	assert_int_equal(meta_acl_create(b, n, &mode), 1);
	assert_int_equal(mode, 0640); /* owner rw, mask r (0644's group), other none */
	n = acl(b, 3, BASE);
	assert_int_equal(meta_acl_equiv(b, n), 1);
	mode = 0777;
	assert_int_equal(meta_acl_create(b, n, &mode), 0);
	assert_int_equal(mode, 0751);
}

static int setup(void **state) { return fx_setup_meta(&F, &M); }

static int teardown(void **state) { return fx_teardown_meta(&F, &M); }

static void test_meta_acls(void **state)
{
	uint8_t b[128], got[128];
	struct meta_inode in;
	uint64_t sess;
	assert_int_equal(meta_create(M, &ALICE, RQ, META_ROOT_INO, N("f"), 0600, META_O_EXCL, &in,
				     NULL), -EACCES); /* root dir is 0755 root's */
	assert_int_equal(meta_mkdir(M, &FX_ROOT, RQ, META_ROOT_INO, N("d"), 0777, &in), 0);
	uint64_t d = in.ino;
	assert_int_equal(meta_create(M, &ALICE, RQ, d, N("f"), 0600, META_O_EXCL, &in, NULL), 0);
	uint64_t f = in.ino;
	/* Bob is "other": denied by 0600. */
	assert_int_equal(meta_open(M, &BOB, RQ, f, META_O_READ, &in, &sess), -EACCES);
	size_t n = acl(b, 5, NAMED);
	assert_int_equal(meta_setxattr(M, &BOB, RQ, f, N(META_ACL_ACCESS), b, n, 0), -EPERM);
	assert_int_equal(meta_setxattr(M, &ALICE, RQ, f, N(META_ACL_ACCESS), b, 3, 0), -EINVAL);
	assert_int_equal(meta_setxattr(M, &ALICE, RQ, f, N(META_ACL_ACCESS), b, n, 0), 0);
	assert_int_equal(meta_getattr(M, f, &in), 0);
	assert_int_equal(in.mode, 0660);
	assert_int_equal(meta_getxattr(M, &BOB, f, N(META_ACL_ACCESS), got, sizeof(got)), (int)n);
	assert_memory_equal(got, b, n);
	/* The named entry grants Bob read and write, the mode alone would not. */
	assert_int_equal(meta_open(M, &BOB, RQ, f, META_O_READ | META_O_WRITE, &in, &sess), 0);
	assert_int_equal(meta_close(M, fx_req(9), f, sess, NULL), 0);
	/* chmod narrows the mask: Bob keeps read only. */
	struct meta_setattr sa = { .valid = META_SET_MODE, .mode = 0640 };
	assert_int_equal(meta_setattr(M, &ALICE, RQ, f, &sa, &in), 0);
	assert_int_equal(meta_getxattr(M, &ALICE, f, N(META_ACL_ACCESS), got, sizeof(got)), (int)n);
	assert_int_equal(meta_acl_mode(got, n), 0640);
	assert_int_equal(meta_open(M, &BOB, RQ, f, META_O_READ, &in, &sess), 0);
	assert_int_equal(meta_open(M, &BOB, RQ, f, META_O_WRITE, &in, &sess), -EACCES);
	/* An ACL the mode expresses is folded into it. */
	n = acl(b, 3, BASE);
	assert_int_equal(meta_setxattr(M, &ALICE, RQ, f, N(META_ACL_ACCESS), b, n, 0), 0);
	assert_int_equal(meta_getattr(M, f, &in), 0);
	assert_int_equal(in.mode, 0751);
	assert_int_equal(meta_getxattr(M, &ALICE, f, N(META_ACL_ACCESS), got, sizeof(got)),
			 -ENODATA);
	assert_int_equal(meta_removexattr(M, &ALICE, RQ, f, N(META_ACL_ACCESS)), 0);
	/* Default ACLs: directories only. */
	assert_int_equal(meta_setxattr(M, &ALICE, RQ, f, N(META_ACL_DEFAULT), b, n, 0), -EACCES);
	assert_int_equal(meta_setxattr(M, &FX_ROOT, RQ, d, N(META_ACL_DEFAULT), b, n, 0), 0);
	assert_int_equal(meta_getxattr(M, &ALICE, d, N(META_ACL_DEFAULT), got, sizeof(got)),
			 (int)n);
	/* A named entry on a directory lets Bob create in it. */
	sa.mode = 0700;
	assert_int_equal(meta_setattr(M, &FX_ROOT, RQ, d, &sa, &in), 0);
	assert_int_equal(meta_create(M, &BOB, RQ, d, N("g"), 0600, META_O_EXCL, &in, NULL),
			 -EACCES);
	static const uint16_t DIRACL[][3] = { { 1, 7, 0 }, { 2, 7, 1001 }, { 4, 0, 0 },
					      { 0x10, 7, 0 }, { 0x20, 0, 0 } };
	n = acl(b, 5, DIRACL);
	assert_int_equal(meta_setxattr(M, &FX_ROOT, RQ, d, N(META_ACL_ACCESS), b, n, 0), 0);
	assert_int_equal(meta_create(M, &BOB, RQ, d, N("g"), 0600, META_O_EXCL, &in, NULL), 0);
	assert_int_equal(meta_create(M, &ALICE, RQ, d, N("h"), 0600, META_O_EXCL, &in, NULL),
			 -EACCES);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest pure[] = { cmocka_unit_test(test_values) };
	const struct CMUnitTest kv[] = {
		cmocka_unit_test_setup_teardown(test_meta_acls, setup, teardown),
	};
	int fails = cmocka_run_group_tests_name("acl values", pure, NULL, NULL);
#ifdef META_ACL_TEST_ETCD
	const char *etcd = "acls";
#else
	const char *etcd = NULL;
#endif
	int rc = fx_run_groups("meta acls", kv, sizeof(kv) / sizeof(kv[0]), argc, argv, etcd);
	return fails ? 1 : rc;
}
