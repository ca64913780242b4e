/* cmd_storage.c - `chainfs storage`: run a storage service.
 *
 *   chainfs storage --targets DIR1,DIR2 --listen IP:PORT --cluster-id ID
 *                   --secret-file F [--mgmtd ADDR1,ADDR2] [--fence 5s]
 *
 * Parses the config table, starts a storage_service (one chunk engine per
 * target directory) and waits for SIGINT/SIGTERM. Without --mgmtd the
 * targets are served directly as ids 1..N (no replication); with it the
 * service registers, follows routing and replicates with CRAQ.
 */
#include <errno.h>
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
#include "net/auth.h"
#include "storage/storage_service.h"

struct storage_conf {
	char *targets;
	char *listen;
	char *advertise;
	char *cluster_id;
	char *secret_file;
	char *mgmtd;
	int64_t fence_ms;
	int64_t heartbeat_ms;
	int64_t threads;
	int sync;
	int64_t capacity;
	int64_t cached_read_max;
	char *log_level;
	char *log_file;
};

static const struct cfg_opt opts[] = {
	{ "targets", CFG_STR, "", 0, 0, offsetof(struct storage_conf, targets),
	  "comma-separated target directories (one chunk engine each); required" },
	{ "listen", CFG_STR, "127.0.0.1:8100", 0, 0, offsetof(struct storage_conf, listen),
	  "ip:port to serve on (port 0 picks one)" },
	{ "advertise", CFG_STR, "", 0, 0, offsetof(struct storage_conf, advertise),
	  "ip:port others reach this service at (default: listen)" },
	{ "cluster-id", CFG_STR, "", 0, 0, offsetof(struct storage_conf, cluster_id),
	  "cluster id; required" },
	{ "secret-file", CFG_STR, "", 0, 0, offsetof(struct storage_conf, secret_file),
	  "file holding the cluster secret; required" },
	{ "mgmtd", CFG_STR, "", 0, 0, offsetof(struct storage_conf, mgmtd),
	  "comma-separated mgmtd addresses (none: standalone, unreplicated)" },
	{ "fence-ms", CFG_INT, "5000", 100, 600000, offsetof(struct storage_conf, fence_ms),
	  "stop serving after this long without mgmtd (T/2 of its heartbeat timeout)" },
	{ "heartbeat-ms", CFG_INT, "1000", 50, 60000, offsetof(struct storage_conf, heartbeat_ms),
	  "heartbeat period" },
	{ "threads", CFG_INT, "2", 1, 64, offsetof(struct storage_conf, threads),
	  "RPC loop threads" },
	{ "sync", CFG_BOOL, "1", 0, 0, offsetof(struct storage_conf, sync),
	  "fdatasync data and metadata before acknowledging a write" },
	{ "capacity", CFG_SIZE, "0", 0, 0, offsetof(struct storage_conf, capacity),
	  "bytes of data per target (0: the filesystem's)" },
	{ "cached-read-max", CFG_SIZE, "64K", 0, 0, offsetof(struct storage_conf, cached_read_max),
	  "reads of up to this many bytes use the page cache, larger ones O_DIRECT (0: all "
	  "direct); coherent with the engine's O_DIRECT writes, CRCs still checked" },
	{ "log-level", CFG_STR, "info", 0, 0, offsetof(struct storage_conf, log_level),
	  "err|warn|notice|info|debug" },
	{ "log-file", CFG_STR, "", 0, 0, offsetof(struct storage_conf, log_file),
	  "append log lines here instead of stderr" },
	CFG_END,
};

/* Splits S at commas in place into at most MAX non-empty items. */
static size_t split(char *s, const char **out, size_t max)
{
	size_t n = 0;
	for (char *save = NULL, *tok = strtok_r(s, ",", &save); tok && n < max;
	     tok = strtok_r(NULL, ",", &save))
		if (*tok)
			out[n++] = tok;
	return n;
}

int cli_storage(int argc, char **argv)
{
	struct storage_conf sc = { 0 };
	struct storage_service *s = NULL;
	uint8_t secret[AUTH_SECRET_MAX];
	const char *dirs[999], *mgmtd[8];
	char err[512];
	int npos = 0, status = 1;
	enum log_level lvl;

	int rc = cfg_parse(opts, &sc, argc, argv, &npos, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc) {
		fprintf(stderr, "chainfs storage: %s\n", err);
		return 2;
	}
	status = 2;
	if (npos) {
		fprintf(stderr, "chainfs storage: unexpected argument '%s'\n", argv[0]);
		goto out;
	}
	if (!*sc.targets || !*sc.cluster_id || !*sc.secret_file) {
		fprintf(stderr,
			"chainfs storage: --targets, --cluster-id and --secret-file are required\n");
		goto out;
	}
	size_t nd = split(sc.targets, dirs, 999);
	size_t nm = split(sc.mgmtd, mgmtd, 8);
	if (nd == 0) {
		fprintf(stderr, "chainfs storage: --targets: no directory given\n");
		goto out;
	}
	if (log_parse_level(sc.log_level, &lvl)) {
		fprintf(stderr, "chainfs storage: --log-level: unknown level '%s'\n", sc.log_level);
		goto out;
	}
	status = 1;
	log_set_level(lvl);
	if (*sc.log_file && (rc = log_open_file(sc.log_file))) {
		fprintf(stderr, "chainfs storage: --log-file %s: %s\n", sc.log_file,
			cfs_strerror(rc));
		goto out;
	}
	rc = auth_load_secret(sc.secret_file, secret, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "chainfs storage: %s\n", err);
		goto out;
	}
	struct storage_service_opts so = {
		.target_dirs = dirs, .n_targets = nd, .listen = sc.listen,
		.advertise = sc.advertise, .cluster_id = sc.cluster_id, .secret = secret,
		.secret_len = (size_t)rc, .mgmtd_addrs = nm ? mgmtd : NULL, .n_mgmtd = nm,
		.fence_ms = (uint32_t)sc.fence_ms, .heartbeat_ms = (uint32_t)sc.heartbeat_ms,
		.rpc_threads = (int)sc.threads, .sync = sc.sync ? 1 : -1,
		.capacity = (uint64_t)sc.capacity,
		.cached_read_max = sc.cached_read_max > UINT32_MAX ? UINT32_MAX
								    : (uint32_t)sc.cached_read_max,
	};
	sigset_t set;
	cli_daemon_block_signals(&set);
	rc = storage_service_new(&so, &s, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "chainfs storage: %s\n", err);
		goto out;
	}
	cli_daemon_wait_stop(&set, "storage");
	storage_service_free(s);
	status = 0;
out:
	cfg_free(opts, &sc);
	return status;
}
