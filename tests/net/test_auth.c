/* test_auth.c - handshake proofs: the right secret verifies, a wrong
 * secret, cluster id, nonce or role does not, a proof is not reflectable
 * between roles, and secret files are read and bounded. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "net/auth.h"
#include "testenv.h"

static const uint8_t secret[] = "0123456789abcdef-cluster-secret";
#define SLEN (sizeof(secret) - 1)

static void test_proof_verifies(void **state)
{
	uint8_t cn[RPC_NONCE_LEN], sn[RPC_NONCE_LEN], p[RPC_PROOF_LEN], q[RPC_PROOF_LEN];
	assert_int_equal(auth_nonce(cn), 0);
	assert_int_equal(auth_nonce(sn), 0);
	assert_memory_not_equal(cn, sn, RPC_NONCE_LEN);

	assert_int_equal(auth_proof(secret, SLEN, AUTH_ROLE_CLIENT, "c1", 2, cn, sn, p), 0);
	assert_int_equal(auth_verify(secret, SLEN, AUTH_ROLE_CLIENT, "c1", 2, cn, sn, p), 0);
	/* Deterministic for the same inputs. */
	assert_int_equal(auth_proof(secret, SLEN, AUTH_ROLE_CLIENT, "c1", 2, cn, sn, q), 0);
	assert_memory_equal(p, q, RPC_PROOF_LEN);

	/* Wrong secret, cluster id, role (reflection), nonces. */
	static const uint8_t other[] = "0123456789abcdef-cluster-secreT";
	assert_int_equal(auth_verify(other, SLEN, AUTH_ROLE_CLIENT, "c1", 2, cn, sn, p), -CFS_EAUTH);
	assert_int_equal(auth_verify(secret, SLEN, AUTH_ROLE_CLIENT, "c2", 2, cn, sn, p), -CFS_EAUTH);
	assert_int_equal(auth_verify(secret, SLEN, AUTH_ROLE_SERVER, "c1", 2, cn, sn, p), -CFS_EAUTH);
	assert_int_equal(auth_verify(secret, SLEN, AUTH_ROLE_CLIENT, "c1", 2, sn, cn, p), -CFS_EAUTH);
	/* The id length is part of the MAC: "c1"+nonce must not equal "c"+... */
	assert_int_equal(auth_verify(secret, SLEN, AUTH_ROLE_CLIENT, "c1", 1, cn, sn, p), -CFS_EAUTH);
	p[RPC_PROOF_LEN - 1] ^= 1;
	assert_int_equal(auth_verify(secret, SLEN, AUTH_ROLE_CLIENT, "c1", 2, cn, sn, p), -CFS_EAUTH);
}

static void write_file(const char *path, const char *data, size_t n)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, n, f), n);
	fclose(f);
}

static void test_load_secret(void **state)
{
	char *dir = testenv_tmpdir("net-auth");
	char path[512], err[256];
	uint8_t out[AUTH_SECRET_MAX];

	snprintf(path, sizeof(path), "%s/secret", dir);
	write_file(path, "sixteen-bytes-ok\n", 17);
	assert_int_equal(auth_load_secret(path, out, err, sizeof(err)), 16);
	assert_memory_equal(out, "sixteen-bytes-ok", 16);

	write_file(path, "short\n", 6);
	assert_int_equal(auth_load_secret(path, out, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "at least"));

	static char big[AUTH_SECRET_MAX + 1];
	memset(big, 's', sizeof(big));
	write_file(path, big, sizeof(big));
	assert_int_equal(auth_load_secret(path, out, err, sizeof(err)), -EINVAL);
	write_file(path, big, AUTH_SECRET_MAX);
	assert_int_equal(auth_load_secret(path, out, err, sizeof(err)), AUTH_SECRET_MAX);

	snprintf(path, sizeof(path), "%s/missing", dir);
	assert_int_equal(auth_load_secret(path, out, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "missing"));
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_proof_verifies),
		cmocka_unit_test(test_load_secret),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
