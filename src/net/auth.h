/* auth.h - the cluster-secret proofs of the connection handshake.
 *
 * Both sides hold the cluster secret. The client proves it knows the secret
 * with HMAC-SHA256 over a role label, the cluster id and both nonces; the
 * server answers with the same MAC under the other role label, so the
 * client also knows it reached a server of its cluster (mutual, and a proof
 * can't be reflected back). Nonces are 32 random bytes per connection, so a
 * recorded proof does not replay. All functions are thread-safe.
 */
#ifndef CFS_NET_AUTH_H
#define CFS_NET_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "net/rpc_proto.h"

#define AUTH_SECRET_MIN 16   /* bytes; shorter secrets are refused */
#define AUTH_SECRET_MAX 1024

enum auth_role { AUTH_ROLE_CLIENT, AUTH_ROLE_SERVER };

/* Fills OUT with RPC_NONCE_LEN random bytes. 0 or -EIO (no entropy). */
int auth_nonce(uint8_t out[RPC_NONCE_LEN]);

/* Computes the proof of ROLE into OUT. 0 or -EIO (libcrypto failure). */
int auth_proof(const uint8_t *secret, size_t secret_len, enum auth_role role,
	       const void *cluster_id, size_t cluster_id_len,
	       const uint8_t cnonce[RPC_NONCE_LEN], const uint8_t snonce[RPC_NONCE_LEN],
	       uint8_t out[RPC_PROOF_LEN]);

/* Recomputes the proof of ROLE and compares in constant time.
 * 0 when it matches, -CFS_EAUTH when not, -EIO on libcrypto failure. */
int auth_verify(const uint8_t *secret, size_t secret_len, enum auth_role role,
		const void *cluster_id, size_t cluster_id_len,
		const uint8_t cnonce[RPC_NONCE_LEN], const uint8_t snonce[RPC_NONCE_LEN],
		const uint8_t proof[RPC_PROOF_LEN]);

/* Reads a secret file: its bytes minus one trailing newline (so `echo x >
 * f` works). OUT must hold AUTH_SECRET_MAX bytes. Returns the length, or
 * -errno / -EINVAL (shorter than AUTH_SECRET_MIN, longer than the max) with
 * a message in ERR. */
int auth_load_secret(const char *path, uint8_t *out, char *err, size_t errlen);

#endif
