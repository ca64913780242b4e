/* mgmtd_service.h - the cluster manager daemon (`chainfs mgmtd`).
 *
 * One mgmtd_service = an RPC server answering the mgmtd messages
 * (net/rpc_proto.h, types 100..105) + one worker thread that runs the
 * primary election, applies registrations, heartbeats that change state and
 * admin requests, detects failed nodes, runs the chain state machine and
 * persists every change (mgmtd_store.h) before anyone can see it.
 * Several services may share one KV store; one is primary (see
 * mgmtd_store.h, "Lease"), the others answer -CFS_ENOT_PRIMARY with the
 * primary's address. docs/mgmtd.md describes the protocol and timings.
 */
#ifndef CFS_MGMTD_MGMTD_SERVICE_H
#define CFS_MGMTD_MGMTD_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mgmtd_service;

/* Zero fields take the defaults in brackets. */
struct mgmtd_service_opts {
	const char *kv_url;     /* required (kv.h URLs) */
	const char *listen;     /* required: "ip:port" (port 0 picks one) */
	const char *advertise;  /* address given to others [listen, with the bound port] */
	const char *cluster_id; /* required; <= 255 bytes */
	const uint8_t *secret;  /* required; >= 16 bytes; copied */
	size_t secret_len;
	uint32_t heartbeat_timeout_ms; /* no heartbeat for this long: node failed [10000] */
	uint32_t lease_ms;             /* primary lease length [5000]; renewed every third */
	int rpc_threads;               /* [1] */
};

/* Opens the KV store, starts the RPC server and the worker. Returns 0, or
 * -EINVAL (bad option) / a kv_open or rpc_server_start error with a
 * message in ERR. The service becomes primary on its own when it can. */
int mgmtd_service_new(const struct mgmtd_service_opts *o, struct mgmtd_service **out, char *err,
                      size_t errlen);
/* Stops the worker and the server (held long-polls are answered
 * -CFS_EUNAVAIL first) and releases the lease if held, so a standby takes
 * over at once. NULL-safe. Not from an RPC loop thread. */
void mgmtd_service_free(struct mgmtd_service *m);
uint16_t mgmtd_service_port(const struct mgmtd_service *m);
/* 1 while primary with its state loaded. Any thread. */
bool mgmtd_service_is_primary(struct mgmtd_service *m);

#endif
