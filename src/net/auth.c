/* auth.c - HMAC-SHA256 handshake proofs (auth.h) over libcrypto.
 *
 * MAC input: label ("chainfs-auth-c" or "chainfs-auth-s", without NUL),
 * u32 little-endian cluster id length, the cluster id, client nonce,
 * server nonce. The length prefix keeps (id, nonce) splits unambiguous.
 * Comparison is CRYPTO_memcmp, so timing says nothing about how many
 * bytes matched.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "common/status.h"
#include "common/wire.h"
#include "net/auth.h"

int auth_nonce(uint8_t out[RPC_NONCE_LEN])
{
	return RAND_bytes(out, RPC_NONCE_LEN) == 1 ? 0 : -EIO;
}

int auth_proof(const uint8_t *secret, size_t secret_len, enum auth_role role,
	       const void *cluster_id, size_t cluster_id_len,
	       const uint8_t cnonce[RPC_NONCE_LEN], const uint8_t snonce[RPC_NONCE_LEN],
	       uint8_t out[RPC_PROOF_LEN])
{
	static const char lc[] = "chainfs-auth-c", ls[] = "chainfs-auth-s";
	const char *label = role == AUTH_ROLE_CLIENT ? lc : ls;
	uint8_t msg[sizeof(lc) - 1 + 4 + RPC_CLUSTER_ID_MAX + 2 * RPC_NONCE_LEN];
	size_t n = 0;
	unsigned int outlen = 0;

	if (cluster_id_len > RPC_CLUSTER_ID_MAX)
		return -EINVAL;
	memcpy(msg, label, sizeof(lc) - 1);
	n += sizeof(lc) - 1;
	wire_store_u32(msg + n, (uint32_t)cluster_id_len);
	n += 4;
	memcpy(msg + n, cluster_id, cluster_id_len);
	n += cluster_id_len;
	memcpy(msg + n, cnonce, RPC_NONCE_LEN);
	n += RPC_NONCE_LEN;
	memcpy(msg + n, snonce, RPC_NONCE_LEN);
	n += RPC_NONCE_LEN;
	if (!HMAC(EVP_sha256(), secret, (int)secret_len, msg, n, out, &outlen) ||
	    outlen != RPC_PROOF_LEN)
		return -EIO;
	return 0;
}

int auth_verify(const uint8_t *secret, size_t secret_len, enum auth_role role,
		const void *cluster_id, size_t cluster_id_len,
		const uint8_t cnonce[RPC_NONCE_LEN], const uint8_t snonce[RPC_NONCE_LEN],
		const uint8_t proof[RPC_PROOF_LEN])
{
	uint8_t want[RPC_PROOF_LEN];
	int rc = auth_proof(secret, secret_len, role, cluster_id, cluster_id_len,
			    cnonce, snonce, want);
	if (rc)
		return rc;
	rc = CRYPTO_memcmp(want, proof, RPC_PROOF_LEN) ? -CFS_EAUTH : 0;
	OPENSSL_cleanse(want, sizeof(want));
	return rc;
}

int auth_load_secret(const char *path, uint8_t *out, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "secret file %s: %s", path, strerror(e));
		return -e;
	}
	size_t n = 0;
	for (;;) {
		uint8_t extra;
		ssize_t r = n < AUTH_SECRET_MAX ? read(fd, out + n, AUTH_SECRET_MAX - n)
						: read(fd, &extra, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			close(fd);
			snprintf(err, errlen, "secret file %s: %s", path, strerror(e));
			return -e;
		}
		if (r == 0)
			break;
		if (n == AUTH_SECRET_MAX) {
			close(fd);
			snprintf(err, errlen, "secret file %s: longer than %d bytes", path,
				 AUTH_SECRET_MAX);
			return -EINVAL;
		}
		n += (size_t)r;
	}
	close(fd);
	if (n > 0 && out[n - 1] == '\n')
		n--;
	if (n < AUTH_SECRET_MIN) {
		snprintf(err, errlen, "secret file %s: %zu bytes, need at least %d", path, n,
			 AUTH_SECRET_MIN);
		return -EINVAL;
	}
	return (int)n;
}
