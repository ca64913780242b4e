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
#include <stdio.h>
#include <stdlib.h>

#include "cli/admin.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/status.h"
#include "net/auth.h"
#include "net/rpc.h"
#include "net/rpc_proto.h"

int cli_admin_rpc_stats(int argc, char **argv)
{
	struct cli_admin_target c = {0};
	struct rpc_client *cli = NULL;
	struct buf resp = BUF_INIT;
	int ret = 1;
	log_set_level(LOG_LVL_ERR);
	int rc = cli_admin_target_parse(
	    "rpc-stats", "ip:port of the server (mgmtd, meta or storage); required", argc, argv, &c);
	if (rc) {
		ret = rc == 1 ? 0 : 2;
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
	cli_admin_target_free(&c);
	return ret;
}
