/* etcd_client.h - a small etcd v3 client over the JSON gateway (libcurl +
 * jansson): range, txn, compaction, leases, member status.
 *
 * One struct etcdc serves every thread of a process: requests borrow a curl
 * easy handle from an internal pool (a handle is never used by two threads
 * at once) and keep their HTTP connections alive between requests.
 *
 * Endpoints and failover. The client keeps a list of members and a current
 * one. A request goes to the current member; on a connection error, a
 * timeout or a "this member cannot serve now" answer (no leader, stopping,
 * too many requests) the client moves to the next member and, if the
 * request may be repeated, sends it again, until the operation deadline.
 * Every request carries gRPC metadata "hasleader: true", so a member cut off
 * from its leader refuses at once instead of hanging.
 *
 * Repeating writes. A request marked ETCDC_ONCE (a txn with puts or deletes,
 * a lease grant) is only sent again when it provably never reached a member
 * (connect refused before curl read any of its body, or a refusal that etcd
 * gives before proposing: no leader, too many requests). Any other failure
 * after sending returns -CFS_EMAYBE: the outcome is unknown.
 *
 * Errors (all functions): 0 ok; -CFS_ETOOOLD the revision was compacted;
 * -ENOSPC the cluster's quota is exhausted ("mvcc: database space
 * exceeded": compact, defragment and disarm the NOSPACE alarm);
 * -CFS_ETOOLARGE over --max-txn-ops or --max-request-bytes; -CFS_EMAYBE see
 * above; -CFS_EUNAVAIL no member answered before the deadline; -ENOENT lease
 * not found; -EINVAL rejected as invalid; -CFS_EPROTO a reply we could not
 * parse; -ENOMEM.
 */
#ifndef CFS_KV_ETCD_CLIENT_H
#define CFS_KV_ETCD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct etcdc;

struct etcdc_opts {
	int attempt_timeout_ms; /* one HTTP request; 0 = 5000 */
	int op_timeout_ms;      /* whole operation incl. failover; 0 = 10000 */
	int connect_timeout_ms; /* TCP connect; 0 = 1000 */
};

/* Opens a client for ENDPOINTS, "host:port[,host:port...]" (an "http://"
 * prefix per entry is accepted; https is not supported). Contacts nobody.
 * OPTS may be NULL for defaults. Returns 0 and *out, -EINVAL with a message
 * in ERR (ERRLEN bytes, may be NULL) on a bad list, or -ENOMEM. */
int etcdc_open(const char *endpoints, const struct etcdc_opts *opts, struct etcdc **out,
	       char *err, size_t errlen);
/* Shutdown: every call in progress ends soon (an attempt in flight is
 * aborted within about a second, a backoff nap within 50 ms) and every
 * later call at once, with -ECANCELED. Irreversible. Thread-safe. */
void etcdc_cancel(struct etcdc *c);
/* Frees the client; no request may be running. NULL-safe. */
void etcdc_close(struct etcdc *c);
/* Number of members in the endpoint list, and the "host:port" of member I
 * (borrowed; valid until etcdc_close). */
int etcdc_endpoint_count(const struct etcdc *c);
const char *etcdc_endpoint(const struct etcdc *c, int i);
/* Index of the member the next request goes to first (moves on failover).
 * Any thread; a snapshot, for tests and diagnostics. */
int etcdc_current(const struct etcdc *c);

/* One key-value as etcd returns it. key/val point into the owning result's
 * memory and stay valid until that result is freed. val is NULL with
 * val_len 0 for keys_only ranges. */
struct etcdc_kv {
	const uint8_t *key;
	size_t key_len;
	const uint8_t *val;
	size_t val_len;
	int64_t create_rev; /* revision that created the key (this incarnation) */
	int64_t mod_rev;    /* revision of the last write */
	int64_t version;    /* writes since creation, 1 after a create */
	int64_t lease;      /* attached lease id, 0 for none */
};

enum etcdc_sort_order { ETCDC_SORT_NONE = 0, ETCDC_SORT_ASCEND, ETCDC_SORT_DESCEND };

/* A range request. end NULL reads the single key; end_len 1 with end[0]
 * == 0 means "every key >= key". Keys are byte strings; all lengths are
 * bytes. Pointers are borrowed for the duration of the call. */
struct etcdc_range_req {
	const void *key;
	size_t key_len;
	const void *end;
	size_t end_len;
	int64_t revision;    /* read at this revision; 0 = latest */
	int64_t limit;       /* at most this many keys; 0 = no limit */
	enum etcdc_sort_order sort; /* by key; NONE is ascending in practice */
	bool keys_only;      /* omit values */
	bool count_only;     /* only count matching keys */
	bool serializable;   /* answer from the member's local state (no
	                        round to the leader); stale unless revision
	                        is given and already applied there */
};

/* Result of a range. Owned by the caller; free with etcdc_range_res_fini. */
struct etcdc_range_res {
	int64_t revision;     /* store revision the answer was read at */
	uint64_t member_id;   /* member that answered */
	struct etcdc_kv *kvs; /* n entries, in the requested order */
	size_t n;
	bool more;            /* limit cut the answer short */
	int64_t count;        /* keys in the range (ignores limit) */
	uint8_t *mem;         /* backing store for kvs' bytes */
};

void etcdc_range_res_fini(struct etcdc_range_res *r);

/* Range read. Idempotent: fails over and repeats until op_timeout_ms. A
 * serializable read at a revision the member has not applied yet is
 * repeated after a short wait. */
int etcdc_range(struct etcdc *c, const struct etcdc_range_req *req, struct etcdc_range_res *out);

/* Txn compares and ops. */
enum etcdc_cmp_target { ETCDC_CMP_VERSION, ETCDC_CMP_CREATE, ETCDC_CMP_MOD, ETCDC_CMP_VALUE,
			ETCDC_CMP_LEASE };
enum etcdc_cmp_result { ETCDC_CMP_EQUAL, ETCDC_CMP_GREATER, ETCDC_CMP_LESS,
			ETCDC_CMP_NOT_EQUAL };

/* One compare. With end set it holds for every key in [key, end) (etcd
 * 3.3+); note that keys that do not exist are not in a range, so a
 * deleted key cannot fail a range compare. For a single missing key the
 * compared number is 0. num is the revision/version/lease; for
 * ETCDC_CMP_VALUE compare value/value_len instead. */
struct etcdc_cmp {
	const void *key;
	size_t key_len;
	const void *end; /* NULL: single key */
	size_t end_len;
	enum etcdc_cmp_target target;
	enum etcdc_cmp_result result;
	int64_t num;
	const void *value;
	size_t value_len;
};

enum etcdc_op_type { ETCDC_OP_PUT, ETCDC_OP_DELETE, ETCDC_OP_RANGE };

/* One txn op. PUT uses key/val/lease; DELETE key/end (end NULL deletes one
 * key); RANGE key/end/limit/keys_only at the txn's revision, or at
 * REVISION when non-zero; a read-only txn whose ranges are all
 * SERIALIZABLE is answered by the member locally (etcd's rule), as a
 * serializable etcdc_range is. */
struct etcdc_op {
	enum etcdc_op_type type;
	const void *key;
	size_t key_len;
	const void *end;
	size_t end_len;
	const void *val;
	size_t val_len;
	int64_t lease;
	int64_t limit;
	bool keys_only;
	int64_t revision;  /* RANGE: read at this revision; 0 = the txn's */
	bool serializable; /* RANGE */
};

/* What each executed op returned, in op order (of the branch that ran). */
struct etcdc_op_res {
	enum etcdc_op_type type;
	int64_t deleted;              /* DELETE: keys removed */
	struct etcdc_range_res range; /* RANGE: the answer */
};

struct etcdc_txn_res {
	int64_t revision;  /* store revision after the txn (its commit
	                      revision when it wrote something) */
	bool succeeded;    /* compares held; success ops ran */
	struct etcdc_op_res *ops;
	size_t nops;
};

void etcdc_txn_res_fini(struct etcdc_txn_res *r);

/* Sends one Txn. When any op of either branch writes, the txn is ETCDC_ONCE
 * (see the header comment: may return -CFS_EMAYBE); otherwise it fails over
 * and repeats like a range. Counts are checked against etcd's default
 * --max-txn-ops (128 compares, 128 ops per branch) before sending:
 * -CFS_ETOOLARGE. OUT may be NULL. */
int etcdc_txn(struct etcdc *c, const struct etcdc_cmp *cmps, size_t ncmps,
	      const struct etcdc_op *success, size_t nsuccess, const struct etcdc_op *failure,
	      size_t nfailure, struct etcdc_txn_res *out);

/* Compacts history up to REVISION (physical: waits until the backend has
 * dropped it). Reads below REVISION then fail with -CFS_ETOOOLD. */
int etcdc_compact(struct etcdc *c, int64_t revision);

/* Leases. grant: TTL seconds; ID 0 lets the cluster choose; returns the id
 * and the granted TTL. A grant with ID 0 is ETCDC_ONCE (a repeat could
 * create a second lease); with an explicit ID it is repeated and a repeat
 * that finds the lease already there ("lease already exists") is reported
 * as -EEXIST. keepalive renews once and returns the new TTL, or -ENOENT
 * when the lease expired or never existed. revoke deletes the lease and
 * every key attached to it; -ENOENT when it is gone already. ttl reports
 * the remaining TTL (-ENOENT when gone). */
int etcdc_lease_grant(struct etcdc *c, int64_t ttl_s, int64_t id, int64_t *id_out,
		      int64_t *ttl_out);
int etcdc_lease_keepalive(struct etcdc *c, int64_t id, int64_t *ttl_out);
int etcdc_lease_revoke(struct etcdc *c, int64_t id);
int etcdc_lease_ttl(struct etcdc *c, int64_t id, int64_t *ttl_out);

/* Status of one member (no failover: asks member I only). */
struct etcdc_status {
	uint64_t member_id; /* the member that answered */
	uint64_t leader;    /* member id it believes leads, 0 = none */
	int64_t raft_term;
	int64_t raft_index;
	int64_t revision;
	int64_t db_size;   /* bytes of the backend file (counts toward quota) */
};
int etcdc_status(struct etcdc *c, int i, struct etcdc_status *out);

/* Decoders of the gateway's RangeResponse and TxnResponse JSON bodies, as
 * etcdc_range and etcdc_txn use them; exposed for tests and fuzzing.
 * Bytes from the peer: malformed input gives -CFS_EPROTO (or -ENOMEM),
 * never a crash. On success the caller frees OUT with its _fini. */
int etcdc_parse_range_reply(const char *json, size_t len, struct etcdc_range_res *out);
int etcdc_parse_txn_reply(const char *json, size_t len, struct etcdc_txn_res *out);

/* Operation statistics since open; any thread. */
struct etcdc_stats {
	uint64_t requests;  /* HTTP requests sent (attempts) */
	uint64_t failovers; /* moves to another member */
	uint64_t maybe;     /* requests that ended with -CFS_EMAYBE */
};
void etcdc_get_stats(const struct etcdc *c, struct etcdc_stats *out);

#endif
