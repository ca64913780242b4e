/* meta_service.h - one metadata-service instance: the RPC front end over
 * a meta_ctx (meta.h), with its worker pool and background thread.
 *
 * Stateless like the ctx: any number of instances (processes) may serve one
 * KV store. RPC handlers run on loop threads and only queue the request; a
 * pool of workers decodes it, runs the meta.h operation (which blocks on the
 * KV store) and replies. A background thread prunes idempotency records and,
 * when a storage service is wired, runs GC steps.
 *
 * With mgmtd addresses the instance also registers with mgmtd (node type
 * meta), refuses requests while fenced, and reads chain tables from routing.
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
	 * instance registers as a meta node, answers -CFS_EFENCED while it is
	 * fenced (mgmtd_client.h), and takes chain tables from routing info
	 * instead of chain_tables. */
	const char *mgmtd;
	const char *advertise;       /* address registered [the listen ip:bound port] */
	uint32_t fence_ms;           /* mgmtd_client fence_ms [its default] */
	uint32_t heartbeat_ms;       /* mgmtd_client heartbeat_ms [its default] */
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
