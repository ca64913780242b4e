/* cmd_admin_rpcstats.c - chainfs admin rpc-stats --addr ADDR --cluster-id ID
 * --secret-file F: the connection counters of any ChainFS server (mgmtd,
 * meta, storage): connections accepted, handshakes refused (wrong secret or
 * cluster id), connections dropped for malformed input, requests served and
 * connections that never finished the handshake (half-open), and of the
 * accepted ones how many came over the same-host unix socket (accepted_local;
 * this command's own connection is one of them when run on the server's
 * host). The server's
 * RPC layer answers the STATS message itself (rpc_proto.h), so this works
 * for every role. One line of key=value, for people and scripts.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/admin.h"
#include "common/buf.h"
#include "common/cfg.h"
#include "common/log.h"
#include "common/status.h"
#include "net/auth.h"
#include "net/rpc.h"
#include "net/rpc_proto.h"

struct rpcstats_conf {
	char *addr;
	char *cluster_id;
	char *secret_file;
	int64_t timeout_ms;
};

static const struct cfg_opt opts[] = {
    {"addr", CFG_STR, "", 0, 0, offsetof(struct rpcstats_conf, addr),
     "ip:port of the server (mgmtd, meta or storage); required"},
    {"cluster-id", CFG_STR, "", 0, 0, offsetof(struct rpcstats_conf, cluster_id),
     "cluster id; required"},
    {"secret-file", CFG_STR, "", 0, 0, offsetof(struct rpcstats_conf, secret_file),
     "file holding the cluster secret; required"},
    {"timeout-ms", CFG_INT, "3000", 100, 600000, offsetof(struct rpcstats_conf, timeout_ms),
     "request deadline"},
    CFG_END,
};

int cli_admin_rpc_stats(int argc, char **argv)
{
	struct rpcstats_conf c = {0};
	char err[512];
	struct rpc_client *cli = NULL;
	struct buf resp = BUF_INIT;
	int npos = 0, ret = 1;
	log_set_level(LOG_LVL_ERR);
	int rc = cfg_parse(opts, &c, argc, argv, &npos, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc || npos || !*c.addr || !*c.cluster_id || !*c.secret_file) {
		fprintf(stderr, "chainfs admin rpc-stats: %s\n",
		        rc ? err : "--addr, --cluster-id and --secret-file are required");
		ret = 2;
		goto out;
	}
	struct rpc_peer *p;
	if (cli_admin_peer("rpc-stats", c.addr, c.cluster_id, c.secret_file, c.timeout_ms, &cli, &p))
		goto out;
	struct rpc_call call = {.type = RPC_MSG_STATS};
	struct rpc_stats_resp m;
	rc = rpc_call(p, &call, &resp, NULL);
	if (!rc)
		rc = rpc_stats_resp_decode(resp.data, resp.len, &m);
	if (rc) {
		fprintf(stderr, "chainfs admin rpc-stats: %s: %s\n", c.addr, cfs_strerror(rc));
		goto out;
	}
	printf("accepted=%llu auth_fail=%llu bad_input=%llu handshake_timeout=%llu requests=%llu "
	       "accepted_local=%llu\n",
	       (unsigned long long)m.accepted, (unsigned long long)m.auth_fail,
	       (unsigned long long)m.bad_input, (unsigned long long)m.handshake_timeout,
	       (unsigned long long)m.requests, (unsigned long long)m.accepted_local);
	ret = 0;
out:
	buf_fini(&resp);
	rpc_client_free(cli);
	cfg_free(opts, &c);
	return ret;
}
