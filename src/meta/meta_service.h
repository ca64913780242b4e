/* meta_service.h - one metadata-service instance: the RPC front end over
 * a meta_ctx (meta.h), with its worker pool and background thread.
 *
 * Stateless like the ctx: any number of instances (processes) may serve one
 * KV store. RPC handlers run on loop threads and queue the request; a pool
 * of workers decodes it, runs the meta.h operation (which blocks on the KV
 * store) and replies. On lmdb, read-only operations run on the loop thread
 * instead (meta_inline_reads). A background thread prunes idempotency records,
 * drops the write sessions of dead clients (with mgmtd) and, when a storage
 * service is wired, runs GC steps.
 *
 * With mgmtd addresses the instance also registers with mgmtd (node type
 * meta), heartbeats, and reads chain tables and client liveness from
 * routing. It does NOT fence: all its state is in the KV store and every
 * operation is one KV transaction, so an instance cut off from mgmtd still
 * answers correctly (at worst with chain tables as of its last routing),
 * and the file system keeps working while mgmtd is down. Losing mgmtd only
 * pauses dead-client session pruning (its liveness view is stale).
 *
 * Threads: meta_service_start/stop from one controlling thread; the rest is
 * internal.
 */
#ifndef CFS_META_META_SERVICE_H
#define CFS_META_META_SERVICE_H

#include <stddef.h>
#include <stdint.h>

/* Which storage service the instance talks to for chunk removal, truncate,
 * length queries and capacity. */
enum meta_storage_kind {
	/* No storage service: chunk removal, truncate, length queries and
	 * capacity fail with -EOPNOTSUPP, so unlinked files stay in the GC
	 * queue as pending work (GC does not run) and nothing pretends. */
	META_STORAGE_NONE = 0,
	/* Storage chains from mgmtd routing (meta_storage.h); needs mgmtd.
	 * GC runs in the background thread. */
	META_STORAGE_CHAINS = 1,
};

/* Where read-only operations run (meta_service.c "Inline reads"). */
enum meta_inline_reads {
	META_INLINE_AUTO = 0, /* on the RPC loop thread when the KV engine is lmdb */
	META_INLINE_OFF = 1,  /* always through the worker queue */
};

struct meta_service_opts {
	const char *kv_url;          /* required: kv_open URL */
	const char *listen;          /* required: "ip:port" (port 0: any) */
	const char *cluster_id;      /* required */
	const uint8_t *secret;       /* required, >= 16 bytes; copied */
	size_t secret_len;
	uint64_t instance_id;        /* 0: random */
	int loop_threads;            /* RPC loop threads [1] */
	int workers;                 /* worker threads [16] */
	uint32_t queue_max;          /* queued requests before -CFS_EUNAVAIL [65536] */
	const char *chain_tables;    /* static chain-table view "ID:FIRST-LAST[,...]" */
	uint32_t chunk_size;         /* root default layout */
	uint32_t stripe;
	uint32_t table_id;
	enum meta_storage_kind storage;
	uint32_t bg_interval_ms;     /* background pass period [1000] */
	/* mgmtd "ip:port[,ip:port...]" (NULL or empty: none). With mgmtd the
	 * instance registers as a meta node, takes chain tables from routing
	 * info instead of chain_tables, and prunes dead clients' sessions. */
	const char *mgmtd;
	const char *advertise;       /* address registered [the listen ip:bound port] */
	/* mgmtd_client fence_ms [5000], by convention T/2 of mgmtd's heartbeat
	 * timeout T. The instance keeps serving when "fenced"; it only stops
	 * pruning sessions (routing may be stale), and a node routing does not
	 * list counts dead after 2 x fence_ms of absence. */
	uint32_t fence_ms;
	uint32_t heartbeat_ms;       /* mgmtd_client heartbeat_ms [its default] */
	/* Period of the dead-client session check [5000]. A client (id = its
	 * mgmtd node id, meta.h META_CLIENT_NODE_MAX) whose node routing shows
	 * FAILED loses its write sessions at the next check, so files it had
	 * open and that were unlinked become reclaimable by GC. */
	uint32_t session_check_ms;
	enum meta_inline_reads inline_reads;
	uint32_t idata_max;          /* inline data threshold (meta.h meta_opts.idata_max) */
};

struct meta_service;

/* Opens the KV store, formats the root if needed and starts serving.
 * 0, or -EINVAL (bad options, message in ERR) / the kv_open or rpc error
 * (message in ERR). */
int meta_service_start(const struct meta_service_opts *o, struct meta_service **out,
		       char *err, size_t errlen);
uint16_t meta_service_port(const struct meta_service *s);
uint64_t meta_service_instance(const struct meta_service *s);
/* Stops accepting, drains the workers (queued requests are answered),
 * stops the background thread and frees everything. NULL-safe. */
void meta_service_stop(struct meta_service *s);

#endif
