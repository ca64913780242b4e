/* storage_service.h - the storage service: a node's targets served over RPC.
 *
 * One storage_service owns one chunk engine per target directory, an RPC
 * server answering the storage messages (storage_proto.h) and, when given
 * mgmtd addresses, the CRAQ machinery: registration and target reports
 * (mgmtd_link.c), chain writes and forwarding (craq_write.c) and resync
 * of a successor that comes back (craq_resync.c). Without mgmtd it serves
 * its targets directly as ids 1..N, unreplicated.
 */
#ifndef CFS_STORAGE_STORAGE_SERVICE_H
#define CFS_STORAGE_STORAGE_SERVICE_H

#include <stddef.h>
#include <stdint.h>

struct storage_service;

/* Zero fields take the defaults in brackets. */
struct storage_service_opts {
	const char *const *target_dirs; /* 1..999 directories, one target each; borrowed */
	size_t n_targets;
	const char *listen;             /* "ip:port" (port 0 picks one) */
	const char *advertise;          /* address others reach us at [listen, real port] */
	const char *cluster_id;
	const uint8_t *secret;          /* >= 16 bytes; copied */
	size_t secret_len;
	const char *const *mgmtd_addrs; /* NULL/0: standalone, no replication */
	size_t n_mgmtd;
	uint32_t fence_ms;              /* [5000] T/2 of mgmtd's heartbeat timeout */
	uint32_t heartbeat_ms;          /* [1000] */
	int rpc_threads;                /* [2] */
	int sync;                       /* engines fdatasync before acking [1] when >= 0; -1 off */
	uint64_t capacity;              /* bytes per target; 0 = the filesystem's */
	uint32_t cached_read_max;       /* chunk_engine_cfg's; 0 = all reads O_DIRECT */
};

/* Opens the targets, starts serving (and, with mgmtd, registering in the
 * background). 0, or -errno / -CFS_E* with a message in ERR. */
int storage_service_new(const struct storage_service_opts *o, struct storage_service **out,
			char *err, size_t errlen);
/* The bound RPC port. */
uint16_t storage_service_port(const struct storage_service *s);
/* Stops serving, waits for in-flight work and closes everything. NULL-safe. */
void storage_service_free(struct storage_service *s);

#endif
