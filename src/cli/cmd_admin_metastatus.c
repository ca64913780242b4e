/* cmd_admin_metastatus.c - chainfs admin meta-status --addr ADDR
 * --cluster-id ID --secret-file F: one meta instance's state, from its
 * META_INFO reply: instance id, worker threads, and whether it takes
 * writes. A meta whose metadata store had a sync fail (an I/O error of
 * the disk under LMDB) refuses every change from then on and answers
 * them with EIO (README "Durability of metadata"); this is where an
 * operator or a health check sees it without reading meta's log.
 *
 * Output: one line of key=value, writes=ok or writes=refused (then a
 * second line on stderr with the remedy). Exit status 0 when writes are
 * taken, 1 when refused or the instance did not answer, 2 on a usage
 * error. An older meta sends no flags: writes=ok.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/admin.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/status.h"
#include "meta/meta_proto.h"
#include "net/auth.h"
#include "net/rpc.h"
#include "net/rpc_proto.h"

int cli_admin_meta_status(int argc, char **argv)
{
	struct cli_admin_target c = {0};
	struct rpc_client *cli = NULL;
	struct buf req = BUF_INIT, resp = BUF_INIT;
	int ret = 1;
	log_set_level(LOG_LVL_ERR);
	int rc = cli_admin_target_parse("meta-status", "ip:port of the meta instance; required",
	                                argc, argv, &c);
	if (rc) {
		ret = rc == 1 ? 0 : 2;
		goto out;
	}
	struct rpc_peer *p;
	if (cli_admin_peer("meta-status", c.addr, c.cluster_id, c.secret_file, c.timeout_ms, &cli, &p))
		goto out;
	struct meta_rpc_req m = {.type = META_RPC_INFO};
	if ((rc = meta_rpc_req_encode(&req, &m))) {
		fprintf(stderr, "chainfs admin meta-status: %s\n", cfs_strerror(rc));
		goto out;
	}
	struct rpc_call call = {
	    .type = META_RPC_INFO, .payload = req.data, .payload_len = (uint32_t)req.len};
	struct meta_rpc_resp r = {.type = META_RPC_INFO};
	rc = rpc_call(p, &call, &resp, NULL);
	if (!rc)
		rc = meta_rpc_resp_decode(resp.data, resp.len, &r);
	if (rc) {
		fprintf(stderr, "chainfs admin meta-status: %s: %s\n", c.addr, cfs_strerror(rc));
		goto out;
	}
	int refused = (r.info_flags & META_INFO_F_NO_WRITES) != 0;
	printf("instance=%016llx workers=%u writes=%s\n", (unsigned long long)r.instance_id,
	       r.threads, refused ? "refused" : "ok");
	if (refused)
		fprintf(stderr,
		        "chainfs admin meta-status: %s: a sync of meta's store failed, so it "
		        "refuses changes (EIO); repair the disk, then restart meta (see its "
		        "log)\n",
		        c.addr);
	ret = refused ? 1 : 0;
out:
	buf_fini(&req);
	buf_fini(&resp);
	rpc_client_free(cli);
	cli_admin_target_free(&c);
	return ret;
}
