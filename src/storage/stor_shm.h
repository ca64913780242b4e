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
 * Threads: stor_shm_register and stor_shm_lookup run on the request's
 * loop thread (handlers); the pointer a lookup returns stays valid while
 * that request is unreplied (the connection outlives its requests).
 */
#ifndef CFS_STORAGE_STOR_SHM_H
#define CFS_STORAGE_STOR_SHM_H

#include <stdint.h>

#include "net/rpc.h"

#define STOR_SHM_MAX_REGIONS 16             /* per connection */
#define STOR_SHM_MAX_SIZE (64ull << 30)     /* per region */

/* Answers an SHM_REG request (consumes REQ): takes the passed descriptor,
 * checks it (a memfd sealed against shrinking, at least the asked size),
 * maps it and replies with the region id; -EBADF (no or unusable
 * descriptor, e.g. over TCP), -EINVAL (size), -ENOSPC (too many regions),
 * -CFS_EPROTO (malformed) otherwise. */
void stor_shm_register(struct rpc_req *req);
/* Where CAP bytes at OFF of REGION are in this service, for REQ's
 * connection: 0 with *OUT set, -ESTALE (no such region on this
 * connection: register again) or -EFAULT (outside the region). */
int stor_shm_lookup(struct rpc_req *req, uint64_t region, uint64_t off, uint64_t cap,
		    uint8_t **out);

#endif
