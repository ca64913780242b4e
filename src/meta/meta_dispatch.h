/* meta_dispatch.h - one encoded meta request run to its encoded reply:
 * decode, the meta.h operation, encode. The code path both the meta
 * service's RPC handlers (meta_service.c) and an in-process instance
 * (meta_local.h) run, so the two answer byte for byte alike.
 *
 * Threads: a meta_scratch is used by one thread at a time; any number of
 * threads may dispatch on one meta_ctx, each with its own scratch.
 */
#ifndef CFS_META_META_DISPATCH_H
#define CFS_META_META_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "meta/meta.h"
#include "meta/meta_proto.h"

/* Per-thread scratch of one request (large: keep it off the stack). */
struct meta_scratch {
	struct meta_rpc_req req;                        /* decoded request */
	struct meta_inode inode;                        /* reply scratch */
	struct meta_inode dir;                          /* CREATE_DIR, UNLINK_DIR scratch */
	struct meta_dirent ents[META_RPC_READDIR_MAX];  /* readdir scratch */
	uint8_t xval[META_XATTR_VALUE_MAX];             /* getxattr scratch */
	char link[META_SYMLINK_MAX + 1];                /* readlink scratch */
	char *list;                                     /* listxattr names, one request */
	struct buf out;                                 /* reply encoding */
};

/* Runs the meta request of TYPE whose payload is the PLEN bytes at P on
 * MC, with S's scratch. 0: S->out holds the encoded reply payload (valid
 * until S's next dispatch). <0: the error to answer (-errno / -CFS_E*),
 * with the reply text "OP: strerror[: detail]" in ERR (ERRLEN >= 1);
 * *MALFORMED is set to 1 when the payload did not decode (-CFS_EPROTO),
 * else 0. TYPE must be a meta message (meta_rpc_name(TYPE) != NULL),
 * KVCache messages excepted; others give -CFS_EBADMSG_TYPE. */
int meta_dispatch(meta_ctx *mc, struct meta_scratch *s, uint16_t type, const uint8_t *p,
		  uint32_t plen, char *err, size_t errlen, int *malformed);

/* meta_dispatch for a caller that runs only what touches nothing but the
 * KV (an in-process instance without storage, meta_local.h): a request
 * that needs more (meta_request_kv_only 0) is decoded and left alone,
 * nothing committed, and META_DISPATCH_PASS comes back. */
#define META_DISPATCH_PASS 1
int meta_dispatch_kv_only(meta_ctx *mc, struct meta_scratch *s, uint16_t type,
			  const uint8_t *p, uint32_t plen, char *err, size_t errlen, int *malformed);
/* meta_dispatch_kv_only without idempotency: the request's seq and
 * idem_low are dropped after decoding, so a mutation neither checks nor
 * writes an IDEM record, nor raises the client's floor (meta.h
 * "Idempotency"), and its txn is not retried after a maybe-committed
 * outcome (meta_run_rw: -CFS_EMAYBE comes back). Only for a caller whose
 * request cannot be delivered twice once it committed: meta_local.c
 * "No idempotency records" has the proof for the mount's in-process
 * instance. */
int meta_dispatch_in_process(meta_ctx *mc, struct meta_scratch *s, uint16_t type,
			     const uint8_t *p, uint32_t plen, char *err, size_t errlen,
			     int *malformed);
/* meta_dispatch_in_process without the bytes, for a caller in this
 * process (meta_local.h "Direct calls"): M is taken as
 * meta_rpc_req_copy takes it (as if decoded from its encoding, checks and
 * codes included), runs through the same operation code, and on success
 * the reply goes to OUT (OUT->type M's type, its caller memory set as for
 * meta_rpc_resp_decode) as meta_rpc_resp_copy gives it, instead of to
 * S->out. The codes, reply texts and META_DISPATCH_PASS are
 * meta_dispatch_in_process's; a reply the client's decoder would refuse
 * (an inode of no known type) is -CFS_EPROTO here. M's type must have a
 * copyable reply (meta_rpc_resp_copyable), else -EINVAL before anything
 * runs. */
int meta_dispatch_in_process_req(meta_ctx *mc, struct meta_scratch *s,
				 const struct meta_rpc_req *m, struct meta_rpc_resp *out, char *err,
				 size_t errlen);
/* 1 when the decoded request M, of a type the KV-only set may hold
 * (meta_local.c local_type), runs on the KV alone in this instance: an
 * OPEN without META_O_TRUNC, a CLOSE with META_CLOSE_LEN_KNOWN, a SETATTR
 * without META_SET_SIZE, a SYNC without a storage query, a CREATE or
 * CREATE_DIR with META_O_EXCL or without META_O_TRUNC (one that opens an
 * existing file truncates it); 1 for every other type (the type set
 * decides those). */
int meta_request_kv_only(const struct meta_rpc_req *m);

/* 1 for the read-only operations (lookup, getattr, access, readlink,
 * readdir, getxattr, listxattr, layout get). */
int meta_type_read_only(uint16_t type);
/* 1 for the namespace mutations that touch nothing but the KV (meta_ns.c:
 * no storage call, no lock wait): create, mkdir, mknod, unlink, rmdir,
 * rename, link, symlink, create-dir, unlink-dir; except the forms
 * meta_request_kv_only leaves out (a create that may truncate). */
int meta_type_kv_only_mutation(uint16_t type);

#endif
