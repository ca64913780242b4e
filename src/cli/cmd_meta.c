/* cmd_meta.c - `chainfs meta`: run one metadata-service instance.
 *
 *   chainfs meta --kv URL --listen IP:PORT --cluster-id ID --secret-file F
 *                [--threads N] [--loop-threads N] [--instance-id X]
 *                [--chain-tables 1:1-8] [--chunk-size 1M] [--stripe 1]
 *                [--table 1] [--storage auto|chains|none] [--mgmtd IP:PORT[,...]]
 *                [--advertise IP:PORT]
 *
 * The instance is stateless (meta_service.h): start as many as you like over
 * one KV store. It prints "listening on IP:PORT" once serving and runs until
 * SIGTERM or SIGINT. With --mgmtd it registers as a meta node, takes chain
 * tables from routing info and drops the write sessions of clients whose
 * node failed (it keeps serving when mgmtd is unreachable); without,
 * the chain-table view is static (--chain-tables). --storage chains (the
 * default with --mgmtd) reaches the storage chains of routing for chunk
 * removal, truncate, length queries, capacity and GC; --storage none (the
 * default without --mgmtd) makes those fail with EOPNOTSUPP and says so in
 * the log.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/daemon.h"
#include "common/cfg.h"
#include "common/log.h"
#include "common/status.h"
#include "meta/meta_service.h"
#include "net/auth.h"

struct meta_conf {
	char *kv;
	char *listen;
	char *cluster_id;
	char *secret_file;
	int64_t threads;
	int64_t loop_threads;
	char *instance_id;
	char *chain_tables;
	int64_t chunk_size;
	int64_t stripe;
	int64_t table;
	char *storage;
	int64_t queue;
	char *log_level;
	char *mgmtd;
	char *advertise;
	int64_t fence_ms;
	int64_t heartbeat_ms;
	int64_t session_check_ms;
	char *inline_reads;
	int64_t inline_max;
};

static const struct cfg_opt opts[] = {
	{ "kv", CFG_STR, "", 0, 0, offsetof(struct meta_conf, kv),
	  "KV store URL (lmdb:///path, etcd://host:port/prefix, mem://)" },
	{ "listen", CFG_STR, "127.0.0.1:0", 0, 0, offsetof(struct meta_conf, listen),
	  "ip:port to serve on (port 0: any free port)" },
	{ "cluster-id", CFG_STR, "", 0, 0, offsetof(struct meta_conf, cluster_id),
	  "cluster id checked at the RPC handshake" },
	{ "secret-file", CFG_STR, "", 0, 0, offsetof(struct meta_conf, secret_file),
	  "file holding the cluster secret (>= 16 bytes)" },
	{ "threads", CFG_INT, "16", 1, 256, offsetof(struct meta_conf, threads),
	  "worker threads running operations (each blocks on the KV store)" },
	{ "loop-threads", CFG_INT, "1", 1, 64, offsetof(struct meta_conf, loop_threads),
	  "RPC event-loop threads" },
	{ "instance-id", CFG_STR, "", 0, 0, offsetof(struct meta_conf, instance_id),
	  "64-bit instance id, decimal or 0x-hex (default: random at start)" },
	{ "chain-tables", CFG_STR, "1:1-8", 0, 0, offsetof(struct meta_conf, chain_tables),
	  "static chain-table view ID:FIRST-LAST[,...] until routing comes from mgmtd" },
	{ "chunk-size", CFG_SIZE, "1M", 65536, 64 << 20, offsetof(struct meta_conf, chunk_size),
	  "root directory default chunk size (power of two)" },
	{ "stripe", CFG_INT, "1", 1, 256, offsetof(struct meta_conf, stripe),
	  "root directory default stripe (chains per file)" },
	{ "table", CFG_INT, "1", 1, UINT32_MAX, offsetof(struct meta_conf, table),
	  "root directory default chain table" },
	{ "storage", CFG_STR, "auto", 0, 0, offsetof(struct meta_conf, storage),
	  "storage service: chains (from mgmtd routing; needs --mgmtd), none (chunk removal, "
	  "truncate, length queries fail with EOPNOTSUPP), auto (chains with --mgmtd, else none)" },
	{ "queue", CFG_INT, "65536", 16, 1 << 24, offsetof(struct meta_conf, queue),
	  "requests queued for workers before answering EUNAVAIL" },
	{ "log-level", CFG_STR, "notice", 0, 0, offsetof(struct meta_conf, log_level),
	  "err|warn|notice|info|debug" },
	{ "mgmtd", CFG_STR, "", 0, 0, offsetof(struct meta_conf, mgmtd),
	  "mgmtd ip:port[,ip:port]: register (type meta), chain tables and client liveness "
	  "from routing" },
	{ "advertise", CFG_STR, "", 0, 0, offsetof(struct meta_conf, advertise),
	  "ip:port registered with mgmtd (default: --listen, which then needs a fixed port)" },
	{ "fence-ms", CFG_INT, "5000", 100, 600000, offsetof(struct meta_conf, fence_ms),
	  "with --mgmtd: routing counts as stale (no session pruning) this long after the "
	  "last good heartbeat (T/2); requests are served regardless" },
	{ "heartbeat-ms", CFG_INT, "1000", 50, 60000, offsetof(struct meta_conf, heartbeat_ms),
	  "with --mgmtd: heartbeat period" },
	{ "session-check-ms", CFG_INT, "5000", 100, 3600000,
	  offsetof(struct meta_conf, session_check_ms),
	  "with --mgmtd: how often write sessions of clients whose node failed are dropped" },
	{ "inline-reads", CFG_STR, "auto", 0, 0, offsetof(struct meta_conf, inline_reads),
	  "auto: read-only operations run on the RPC loop thread when --kv is lmdb; off: "
	  "always on the worker threads" },
	{ "inline-max", CFG_SIZE, "64K", 0, 65536, offsetof(struct meta_conf, inline_max),
	  "inline data: files created through the mount keep their bytes in the metadata "
	  "store while they stay at most this long (one metadata txn per small write, no "
	  "chunks); 0: off (docs/inline-data.md)" },
	CFG_END
};

int cli_meta(int argc, char **argv)
{
	struct meta_conf mc;
	char err[512];
	int npos = 0, rc, ret = 1;
	uint8_t secret[AUTH_SECRET_MAX];
	struct meta_service *svc = NULL;
	enum log_level lvl;
	uint64_t instance = 0;

	memset(&mc, 0, sizeof(mc));
	rc = cfg_parse(opts, &mc, argc, argv, &npos, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "chainfs meta: %s\n", err);
		return 2;
	}
	if (npos > 0 || !*mc.kv || !*mc.cluster_id || !*mc.secret_file) {
		fprintf(stderr, "chainfs meta: --kv, --cluster-id and --secret-file are required "
			"(no positional arguments)\n");
		ret = 2;
		goto out;
	}
	if (log_parse_level(mc.log_level, &lvl)) {
		fprintf(stderr, "chainfs meta: bad --log-level '%s'\n", mc.log_level);
		ret = 2;
		goto out;
	}
	log_set_level(lvl);
	enum meta_storage_kind storage = META_STORAGE_NONE;
	if (!strcmp(mc.storage, "chains") || (!strcmp(mc.storage, "auto") && *mc.mgmtd)) {
		storage = META_STORAGE_CHAINS;
	} else if (strcmp(mc.storage, "none") && strcmp(mc.storage, "auto")) {
		fprintf(stderr, "chainfs meta: unknown --storage '%s' (auto, chains or none)\n",
			mc.storage);
		ret = 2;
		goto out;
	}
	enum meta_inline_reads inl = META_INLINE_AUTO;
	if (!strcmp(mc.inline_reads, "off")) {
		inl = META_INLINE_OFF;
	} else if (strcmp(mc.inline_reads, "auto")) {
		fprintf(stderr, "chainfs meta: unknown --inline-reads '%s' (auto or off)\n",
			mc.inline_reads);
		ret = 2;
		goto out;
	}
	if (storage == META_STORAGE_CHAINS && !*mc.mgmtd) {
		fprintf(stderr, "chainfs meta: --storage chains needs --mgmtd\n");
		ret = 2;
		goto out;
	}
	if (*mc.instance_id) {
		char *end;
		errno = 0;
		instance = strtoull(mc.instance_id, &end, 0);
		if (errno || *end || !instance) {
			fprintf(stderr, "chainfs meta: bad --instance-id '%s' (nonzero u64)\n",
				mc.instance_id);
			ret = 2;
			goto out;
		}
	}
	rc = auth_load_secret(mc.secret_file, secret, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "chainfs meta: %s\n", err);
		goto out;
	}

	sigset_t set;
	cli_daemon_block_signals(&set);

	struct meta_service_opts so = {
		.kv_url = mc.kv, .listen = mc.listen, .cluster_id = mc.cluster_id,
		.secret = secret, .secret_len = (size_t)rc, .instance_id = instance,
		.loop_threads = (int)mc.loop_threads, .workers = (int)mc.threads,
		.queue_max = (uint32_t)mc.queue, .chain_tables = mc.chain_tables,
		.chunk_size = (uint32_t)mc.chunk_size, .stripe = (uint32_t)mc.stripe,
		.table_id = (uint32_t)mc.table, .storage = storage,
		.mgmtd = mc.mgmtd, .advertise = mc.advertise, .fence_ms = (uint32_t)mc.fence_ms,
		.heartbeat_ms = (uint32_t)mc.heartbeat_ms,
		.session_check_ms = (uint32_t)mc.session_check_ms, .inline_reads = inl,
		.idata_max = (uint32_t)mc.inline_max,
	};
	rc = meta_service_start(&so, &svc, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "chainfs meta: %s\n", err);
		goto out;
	}
	printf("listening on %.*s:%u instance %016" PRIx64 "\n",
	       (int)strcspn(mc.listen, ":"), mc.listen, meta_service_port(svc),
	       meta_service_instance(svc));
	fflush(stdout);
	cli_daemon_wait_stop(&set, "meta");
	meta_service_stop(svc);
	ret = 0;
out:
	cfg_free(opts, &mc);
	return ret;
}
