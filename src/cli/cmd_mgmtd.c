/* cmd_mgmtd.c - `chainfs mgmtd`: run the cluster manager daemon.
 *
 * Parses the one config table (flags and an optional INI file), starts a
 * mgmtd_service and waits for SIGINT or SIGTERM, then stops it (releasing
 * the primary lease so a standby takes over at once). Durations accept a
 * unit: "10s", "500ms", "2m"; a bare number means seconds.
 */
#include <errno.h>
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
#include "mgmtd/mgmtd_service.h"
#include "net/auth.h"

struct mgmtd_conf {
	char *kv;
	char *listen;
	char *advertise;
	char *cluster_id;
	char *secret_file;
	char *heartbeat_timeout;
	char *lease;
	int64_t threads;
	char *log_level;
	char *log_file;
};

static const struct cfg_opt opts[] = {
    {"kv", CFG_STR, "", 0, 0, offsetof(struct mgmtd_conf, kv),
     "KV store URL (lmdb:///dir, etcd://host:port/prefix); required"},
    {"listen", CFG_STR, "127.0.0.1:8000", 0, 0, offsetof(struct mgmtd_conf, listen),
     "ip:port to serve on"},
    {"advertise", CFG_STR, "", 0, 0, offsetof(struct mgmtd_conf, advertise),
     "ip:port other nodes reach this mgmtd at (default: the listen address)"},
    {"cluster-id", CFG_STR, "", 0, 0, offsetof(struct mgmtd_conf, cluster_id),
     "cluster id (the handshake checks it; the KV store is bound to it); required"},
    {"secret-file", CFG_STR, "", 0, 0, offsetof(struct mgmtd_conf, secret_file),
     "file holding the cluster secret; required"},
    {"heartbeat-timeout", CFG_STR, "10s", 0, 0, offsetof(struct mgmtd_conf, heartbeat_timeout),
     "a node silent this long is failed (services fence themselves after half)"},
    {"lease", CFG_STR, "5s", 0, 0, offsetof(struct mgmtd_conf, lease),
     "primary lease length; a standby takes over this long after the primary died"},
    {"threads", CFG_INT, "1", 1, 64, offsetof(struct mgmtd_conf, threads), "RPC loop threads"},
    {"log-level", CFG_STR, "info", 0, 0, offsetof(struct mgmtd_conf, log_level),
     "err|warn|notice|info|debug"},
    {"log-file", CFG_STR, "", 0, 0, offsetof(struct mgmtd_conf, log_file),
     "append log lines here instead of stderr"},
    CFG_END,
};

/* "10s", "500ms", "2m", "3" (seconds) -> milliseconds in 1..1 day. */
static int parse_duration_ms(const char *s, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || s[0] == '-')
		return -EINVAL;
	unsigned long long mul;
	if (!strcmp(end, "ms"))
		mul = 1;
	else if (!strcmp(end, "s") || !*end)
		mul = 1000;
	else if (!strcmp(end, "m"))
		mul = 60000;
	else
		return -EINVAL;
	if (v == 0 || v > 86400000ull / mul)
		return -EINVAL;
	*out = (uint32_t)(v * mul);
	return 0;
}

int cli_mgmtd(int argc, char **argv)
{
	struct mgmtd_conf mc = {0};
	struct mgmtd_service *m = NULL;
	uint8_t secret[AUTH_SECRET_MAX];
	char err[512];
	int npos = 0, status = 1;
	enum log_level lvl;
	uint32_t hb_ms, lease_ms;

	int rc = cfg_parse(opts, &mc, argc, argv, &npos, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc) {
		fprintf(stderr, "chainfs mgmtd: %s\n", err);
		return 2;
	}
	if (npos) {
		fprintf(stderr, "chainfs mgmtd: unexpected argument '%s'\n", argv[0]);
		status = 2;
		goto out;
	}
	if (!*mc.kv || !*mc.cluster_id || !*mc.secret_file) {
		fprintf(stderr,
		        "chainfs mgmtd: --kv, --cluster-id and --secret-file are required\n");
		status = 2;
		goto out;
	}
	if (parse_duration_ms(mc.heartbeat_timeout, &hb_ms) || hb_ms < 200) {
		fprintf(stderr,
		        "chainfs mgmtd: --heartbeat-timeout: '%s' is not a duration of at "
		        "least 200ms (e.g. 10s)\n",
		        mc.heartbeat_timeout);
		status = 2;
		goto out;
	}
	if (parse_duration_ms(mc.lease, &lease_ms) || lease_ms < 300) {
		fprintf(stderr,
		        "chainfs mgmtd: --lease: '%s' is not a duration of at least 300ms\n",
		        mc.lease);
		status = 2;
		goto out;
	}
	if (log_parse_level(mc.log_level, &lvl)) {
		fprintf(stderr, "chainfs mgmtd: --log-level: unknown level '%s'\n", mc.log_level);
		status = 2;
		goto out;
	}
	log_set_level(lvl);
	if (*mc.log_file && (rc = log_open_file(mc.log_file))) {
		fprintf(stderr, "chainfs mgmtd: --log-file %s: %s\n", mc.log_file,
		        cfs_strerror(rc));
		goto out;
	}
	rc = auth_load_secret(mc.secret_file, secret, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "chainfs mgmtd: %s\n", err);
		goto out;
	}
	struct mgmtd_service_opts so = {
	    .kv_url = mc.kv,
	    .listen = mc.listen,
	    .advertise = mc.advertise,
	    .cluster_id = mc.cluster_id,
	    .secret = secret,
	    .secret_len = (size_t)rc,
	    .heartbeat_timeout_ms = hb_ms,
	    .lease_ms = lease_ms,
	    .rpc_threads = (int)mc.threads,
	};

	sigset_t set;
	cli_daemon_block_signals(&set);
	cli_daemon_guard_start(&set, "mgmtd");
	rc = mgmtd_service_new(&so, &m, err, sizeof(err));
	cli_daemon_guard_end();
	if (rc) {
		fprintf(stderr, "chainfs mgmtd: %s\n", err);
		goto out;
	}
	cli_daemon_wait_stop(&set, "mgmtd");
	mgmtd_service_free(m);
	status = 0;
out:
	cfg_free(opts, &mc);
	return status;
}
