/* stor_shm.h - the storage service's side of the same-host shared-memory
 * bulk path (docs/rpc.md "Shared memory"): regions a client registered on
 * its connection (SHM_REG, a sealed memfd passed with SCM_RIGHTS) and the
 * bounds-checked lookup SHM_READ uses to place read bytes in them.
 *
 * A region belongs to the connection it was registered on: the service
 * maps it once (MAP_SHARED) and unmaps it when the connection's memory
 * goes (every request of it replied), whatever the client did with its
 * own mapping. Region ids are unique over the service's life, so an id
 * from a closed connection is never valid on a new one.
 *
 * Threads: stor_shm_register, _unregister, _lookup and _hold run on the
 * request's loop thread (handlers; one connection's handlers all run on
 * its loop); stor_shm_release on any thread.
 */
#ifndef CFS_STORAGE_STOR_SHM_H
#define CFS_STORAGE_STOR_SHM_H

#include <stdint.h>

#include "net/rpc.h"

#define STOR_SHM_MAX_REGIONS 16             /* per connection */
#define STOR_SHM_MAX_SIZE (64ull << 30)     /* per region */

struct chunk_fixed;

/* Answers an SHM_REG request (consumes REQ): takes the passed descriptor,
 * checks it (a memfd sealed against shrinking, at least the asked size),
 * maps it and replies with the region id; -EBADF (no or unusable
 * descriptor, e.g. over TCP), -EINVAL (size), -ENOSPC (too many regions),
 * -CFS_EPROTO (malformed) otherwise. The mapping is added to FIXED
 * (borrowed, may be NULL; outlives every region) until it is unmapped:
 * a forwarded write goes to disk from a predecessor's arena in place. */
void stor_shm_register(struct rpc_req *req, struct chunk_fixed *fixed);
/* Where CAP bytes at OFF of REGION are in this service, for REQ's
 * connection: 0 with *OUT set, -ESTALE (no such region on this
 * connection: register again) or -EFAULT (outside the region). *OUT is
 * valid only until the handler returns (a later SHM_UNREG may unmap it):
 * for use beyond that, stor_shm_hold. */
int stor_shm_lookup(struct rpc_req *req, uint64_t region, uint64_t off, uint64_t cap,
		    uint8_t **out);

/* A mapped region (opaque). */
struct stor_shm_region;
/* stor_shm_lookup that also takes a reference on the region (*HOLD): the
 * mapping behind *OUT stays until stor_shm_release(*HOLD), whatever
 * SHM_UNREG or the connection's end do meanwhile. Handler thread. */
int stor_shm_hold(struct rpc_req *req, uint64_t region, uint64_t off, uint64_t cap,
		  uint8_t **out, struct stor_shm_region **hold);
/* Where LEN bytes at OFF of held region R are: 0 with *OUT set, or
 * -EFAULT (outside it; overflow-safe). Any thread. */
int stor_shm_span(const struct stor_shm_region *r, uint64_t off, uint64_t len, uint8_t **out);
/* Copies N bytes from SRC to DST (inside held region R) unless the
 * region was revoked (SHM_UNREG): 0, or -ECANCELED (nothing copied; the
 * client gave up on the request). Any thread. */
int stor_shm_copy_in(struct stor_shm_region *r, uint8_t *dst, const void *src, size_t n);
/* Drops a hold (NULL-safe); any thread. The last reference unmaps. */
void stor_shm_release(struct stor_shm_region *r);
/* Answers an SHM_UNREG request (consumes REQ): the region leaves REQ's
 * connection (later requests naming it get -ESTALE) and is unmapped when
 * its holds are gone. -ESTALE (not on this connection), -CFS_EPROTO. */
void stor_shm_unregister(struct rpc_req *req);

/* One more pointer of REQ's connection, for the short-circuit read table
 * (stor_sc.c): FREE_FN(DATA) runs when the connection's memory goes,
 * before its regions are released. Set once; -ENOMEM, -EEXIST.
 * Handler thread. */
void *stor_shm_conn_ext(struct rpc_req *req);
int stor_shm_set_conn_ext(struct rpc_req *req, void *data, void (*free_fn)(void *));

#endif
