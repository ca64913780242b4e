/* mgmtd_proto.h - codecs of the mgmtd messages (types 100..105).
 *
 * The layouts are in the catalog in net/rpc_proto.h. Encoders append to a
 * struct buf and return 0 or -ENOMEM. Decoders read N bytes at P, skip
 * unknown trailing bytes, and return 0 or -CFS_EPROTO (truncated, a count
 * or length over its limit, an unknown enum value); pointers they store
 * borrow from P. Thread-safe.
 */
#ifndef CFS_MGMTD_MGMTD_PROTO_H
#define CFS_MGMTD_MGMTD_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "mgmtd/chain_state.h"
#include "mgmtd/routing.h"

/* Most targets one node may report (slots are 1..ROUTE_SLOT_MAX). */
#define MGMTD_MAX_NODE_TARGETS ROUTE_SLOT_MAX
#define MGMTD_REPORT_MAX       65536 /* bytes of a create-table report */

/* One target as its node reports it. */
struct mgmtd_target_report {
	uint32_t slot;                      /* 1..ROUTE_SLOT_MAX: target id = node * 1000 + slot */
	enum chain_local_state local_state; /* UPTODATE, ONLINE or OFFLINE */
	uint64_t capacity;                  /* bytes */
	uint64_t used;                      /* bytes */
};

struct mgmtd_register_req {
	enum route_node_type type;
	uint32_t node_id;              /* 0: mgmtd assigns one */
	const char *addr;              /* borrowed; addr_len bytes, not NUL-terminated */
	uint32_t addr_len;             /* <= ROUTE_ADDR_MAX */
	uint32_t n;                    /* <= MGMTD_MAX_NODE_TARGETS */
	struct mgmtd_target_report *t; /* encode: borrowed; decode: caller array of
	                                  MGMTD_MAX_NODE_TARGETS entries */
	uint64_t incarnation;          /* random per process, 0: none (an older peer);
	                                  a retried REGISTER whose reply was lost gets
	                                  the node id the first one was given */
};

struct mgmtd_heartbeat_req {
	uint32_t node_id;
	uint64_t seq; /* increases per heartbeat of one client (diagnostics) */
	uint32_t n;
	struct mgmtd_target_report *t; /* as in mgmtd_register_req */
};

struct mgmtd_routing_req {
	uint64_t known_version; /* 0: always answer with the routing info */
	uint32_t wait_ms;       /* how long to hold the request when unchanged */
};

struct mgmtd_routing_resp {
	uint64_t version;
	uint8_t changed;     /* 1: info holds the encoded routing info */
	const uint8_t *info; /* borrowed */
	uint32_t info_len;
};

struct mgmtd_table_resp {
	uint32_t table_id;
	uint32_t chains;
	const char *report; /* borrowed; not NUL-terminated */
	uint32_t report_len;
};

int mgmtd_register_encode(struct buf *b, const struct mgmtd_register_req *m);
int mgmtd_register_decode(const void *p, size_t n, struct mgmtd_register_req *m);
int mgmtd_heartbeat_encode(struct buf *b, const struct mgmtd_heartbeat_req *m);
int mgmtd_heartbeat_decode(const void *p, size_t n, struct mgmtd_heartbeat_req *m);
int mgmtd_routing_req_encode(struct buf *b, const struct mgmtd_routing_req *m);
int mgmtd_routing_req_decode(const void *p, size_t n, struct mgmtd_routing_req *m);
int mgmtd_routing_resp_encode(struct buf *b, const struct mgmtd_routing_resp *m);
int mgmtd_routing_resp_decode(const void *p, size_t n, struct mgmtd_routing_resp *m);
int mgmtd_table_resp_encode(struct buf *b, const struct mgmtd_table_resp *m);
int mgmtd_table_resp_decode(const void *p, size_t n, struct mgmtd_table_resp *m);

#endif
