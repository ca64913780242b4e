/* cmd_admin_mgmtd.c - the admin commands that talk to mgmtd:
 *   chainfs admin <cmd> --mgmtd ADDR[,ADDR...] --cluster-id ID --secret-file F [...]
 * init-cluster, routing-version, list-nodes, list-targets, list-chains,
 * list-chain-tables, create-chain-table --replicas R [--seed S],
 * set-target-offline TARGET, set-target-online TARGET.
 * Every command reaches the primary through mgmtd_conn (redirects and
 * failover); the list commands fetch the routing info and print from it.
 * All share one option table; each uses the options it names.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/admin.h"
#include "common/cfg.h"
#include "common/log.h"
#include "common/status.h"
#include "common/wire.h"
#include "mgmtd/mgmtd_conn.h"
#include "mgmtd/mgmtd_proto.h"
#include "mgmtd/routing.h"
#include "net/auth.h"
#include "net/rpc_proto.h"

struct admin_conf {
	char *mgmtd;
	char *cluster_id;
	char *secret_file;
	int64_t replicas;
	int64_t seed;
	int64_t timeout_ms;
};

static const struct cfg_opt opts[] = {
    {"mgmtd", CFG_STR, "", 0, 0, offsetof(struct admin_conf, mgmtd),
     "mgmtd address(es), comma-separated ip:port; required"},
    {"cluster-id", CFG_STR, "", 0, 0, offsetof(struct admin_conf, cluster_id),
     "cluster id; required"},
    {"secret-file", CFG_STR, "", 0, 0, offsetof(struct admin_conf, secret_file),
     "file holding the cluster secret; required"},
    {"replicas", CFG_INT, "0", 0, CHAIN_MAX_TARGETS, offsetof(struct admin_conf, replicas),
     "create-chain-table: targets per chain (R)"},
    {"seed", CFG_INT, "1", 0, INT64_MAX, offsetof(struct admin_conf, seed),
     "create-chain-table: generator seed (same seed, same table)"},
    {"timeout-ms", CFG_INT, "3000", 100, 600000, offsetof(struct admin_conf, timeout_ms),
     "per-attempt request deadline"},
    CFG_END,
};

struct admin_ctx {
	const char *cmd;
	struct admin_conf ac;
	struct mgmtd_conn *conn;
	int npos;
	char **pos;
};

/* Parses options and connects. Returns 0, or the exit status to return. */
static int admin_open(struct admin_ctx *x, int argc, char **argv, int want_pos)
{
	char err[512];
	uint8_t secret[AUTH_SECRET_MAX];
	const char *addrs[MGMTD_CONN_MAX_ADDRS];
	size_t n = 0;
	x->cmd = argv[0];
	/* This command prints its own errors; the RPC layer's lines are noise. */
	log_set_level(LOG_LVL_ERR);
	int rc = cfg_parse(opts, &x->ac, argc, argv, &x->npos, err, sizeof(err));
	if (rc == 1)
		return -1;
	if (rc) {
		fprintf(stderr, "chainfs admin %s: %s\n", x->cmd, err);
		return 2;
	}
	x->pos = argv;
	if (x->npos != want_pos) {
		fprintf(stderr, "chainfs admin %s: expected %d argument(s), got %d\n", x->cmd,
		        want_pos, x->npos);
		return 2;
	}
	if (!*x->ac.mgmtd || !*x->ac.cluster_id || !*x->ac.secret_file) {
		fprintf(stderr,
		        "chainfs admin %s: --mgmtd, --cluster-id and --secret-file are "
		        "required\n",
		        x->cmd);
		return 2;
	}
	for (char *s = x->ac.mgmtd, *tok; (tok = strsep(&s, ","));) {
		if (!*tok)
			continue;
		if (n == MGMTD_CONN_MAX_ADDRS) {
			fprintf(stderr, "chainfs admin %s: at most %d mgmtd addresses\n", x->cmd,
			        MGMTD_CONN_MAX_ADDRS);
			return 2;
		}
		addrs[n++] = tok;
	}
	rc = auth_load_secret(x->ac.secret_file, secret, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "chainfs admin %s: %s\n", x->cmd, err);
		return 1;
	}
	struct mgmtd_conn_opts co = {addrs,  n,          x->ac.cluster_id,
	                             secret, (size_t)rc, (uint32_t)x->ac.timeout_ms, 0};
	rc = mgmtd_conn_new(&co, &x->conn, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "chainfs admin %s: %s\n", x->cmd, err);
		return 2;
	}
	return 0;
}

static int admin_close(struct admin_ctx *x, int status)
{
	mgmtd_conn_free(x->conn);
	cfg_free(opts, &x->ac);
	return status < 0 ? 0 : status;
}

static int call(struct admin_ctx *x, uint16_t type, const struct buf *req, struct buf *resp)
{
	char err[512];
	int rc = mgmtd_conn_call(x->conn, type, req ? req->data : NULL,
	                         req ? (uint32_t)req->len : 0, 0, resp, err, sizeof(err));
	if (rc)
		fprintf(stderr, "chainfs admin %s: %s (%s)\n", x->cmd, err, cfs_errname(rc));
	return rc;
}

/* Fetches the whole routing info into RI. 0 or the exit status. */
static int fetch_routing(struct admin_ctx *x, struct route_info *ri)
{
	struct buf req = BUF_INIT, resp = BUF_INIT;
	struct mgmtd_routing_req q = {0, 0};
	struct mgmtd_routing_resp r;
	int status = 1;
	mgmtd_routing_req_encode(&req, &q);
	if (call(x, RPC_MSG_MGMTD_GET_ROUTING, &req, &resp))
		goto out;
	if (mgmtd_routing_resp_decode(resp.data, resp.len, &r) || !r.changed ||
	    route_info_decode(r.info, r.info_len, ri)) {
		fprintf(stderr, "chainfs admin %s: malformed routing info from mgmtd\n", x->cmd);
		goto out;
	}
	status = 0;
out:
	buf_fini(&req);
	buf_fini(&resp);
	return status;
}

typedef void (*print_fn)(const struct route_info *ri);

static int list_cmd(int argc, char **argv, print_fn print)
{
	struct admin_ctx x = {0};
	struct route_info ri;
	int st = admin_open(&x, argc, argv, 0);
	if (st)
		return admin_close(&x, st);
	st = fetch_routing(&x, &ri);
	if (!st) {
		print(&ri);
		route_info_fini(&ri);
	}
	return admin_close(&x, st);
}

static void print_version(const struct route_info *ri)
{
	printf("%" PRIu64 "\n", ri->version);
}

static void print_nodes(const struct route_info *ri)
{
	printf("%-8s %-8s %-8s %s\n", "NODE", "TYPE", "STATE", "ADDRESS");
	for (size_t i = 0; i < ri->n_nodes; i++)
		printf("%-8u %-8s %-8s %s\n", ri->nodes[i].id,
		       route_node_type_name(ri->nodes[i].type),
		       route_node_state_name(ri->nodes[i].state), ri->nodes[i].addr);
}

static void print_targets(const struct route_info *ri)
{
	printf("%-10s %-8s %-10s %-9s %-8s %14s %14s\n", "TARGET", "NODE", "CHAIN", "LOCAL",
	       "PUBLIC", "CAPACITY", "USED");
	for (size_t i = 0; i < ri->n_targets; i++) {
		const struct route_target *t = &ri->targets[i];
		printf("%-10u %-8u %-10u %-9s %-8s %14" PRIu64 " %14" PRIu64 "\n", t->id,
		       t->node_id, t->chain_id, chain_local_state_name(t->local_state),
		       chain_pub_state_name(t->pub_state), t->capacity, t->used);
	}
}

static void print_chains(const struct route_info *ri)
{
	printf("%-10s %-8s %s\n", "CHAIN", "VERSION", "TARGETS (head first)");
	for (size_t i = 0; i < ri->n_chains; i++) {
		const struct route_chain *c = &ri->chains[i];
		printf("%-10u %-8u", c->id, c->version);
		for (uint32_t k = 0; k < c->n; k++)
			printf(" %u(%s)", c->m[k].target_id, chain_pub_state_name(c->m[k].state));
		printf("\n");
	}
}

static void print_tables(const struct route_info *ri)
{
	printf("%-6s %-8s %-7s %s\n", "TABLE", "VERSION", "CHAINS", "FIRST..LAST");
	for (size_t i = 0; i < ri->n_tables; i++) {
		const struct route_table *t = &ri->tables[i];
		printf("%-6u %-8u %-7u", t->id, t->version, t->n);
		if (t->n)
			printf(" %u..%u", t->chains[0], t->chains[t->n - 1]);
		printf("\n");
	}
}

int cli_admin_routing_version(int argc, char **argv)
{
	return list_cmd(argc, argv, print_version);
}
int cli_admin_list_nodes(int argc, char **argv)
{
	return list_cmd(argc, argv, print_nodes);
}
int cli_admin_list_targets(int argc, char **argv)
{
	return list_cmd(argc, argv, print_targets);
}
int cli_admin_list_chains(int argc, char **argv)
{
	return list_cmd(argc, argv, print_chains);
}
int cli_admin_list_chain_tables(int argc, char **argv)
{
	return list_cmd(argc, argv, print_tables);
}

int cli_admin_init_cluster(int argc, char **argv)
{
	struct admin_ctx x = {0};
	struct buf req = BUF_INIT, resp = BUF_INIT;
	int st = admin_open(&x, argc, argv, 0);
	if (st)
		return admin_close(&x, st);
	uint8_t flags[4] = {0};
	buf_append(&req, flags, sizeof(flags));
	st = 1;
	if (!call(&x, RPC_MSG_MGMTD_INIT_CLUSTER, &req, &resp) && resp.len >= 1) {
		printf("cluster %s %s\n", x.ac.cluster_id,
		       resp.data[0] ? "initialised" : "was already initialised");
		st = 0;
	}
	buf_fini(&req);
	buf_fini(&resp);
	return admin_close(&x, st);
}

int cli_admin_create_chain_table(int argc, char **argv)
{
	struct admin_ctx x = {0};
	struct buf req = BUF_INIT, resp = BUF_INIT;
	struct wire_writer w;
	struct mgmtd_table_resp r;
	int st = admin_open(&x, argc, argv, 0);
	if (st)
		return admin_close(&x, st);
	st = 1;
	if (x.ac.replicas < 1) {
		fprintf(stderr, "chainfs admin %s: --replicas R is required\n", x.cmd);
		st = 2;
		goto out;
	}
	wire_writer_init(&w, &req);
	wire_put_u32(&w, (uint32_t)x.ac.replicas);
	wire_put_u64(&w, (uint64_t)x.ac.seed);
	if (call(&x, RPC_MSG_MGMTD_CREATE_TABLE, &req, &resp))
		goto out;
	if (mgmtd_table_resp_decode(resp.data, resp.len, &r)) {
		fprintf(stderr, "chainfs admin %s: malformed reply\n", x.cmd);
		goto out;
	}
	printf("chain table %u: %u chains of %" PRId64 " targets\n%.*s", r.table_id, r.chains,
	       x.ac.replicas, (int)r.report_len, r.report);
	st = 0;
out:
	buf_fini(&req);
	buf_fini(&resp);
	return admin_close(&x, st);
}

static int set_target(int argc, char **argv, uint8_t off)
{
	struct admin_ctx x = {0};
	struct buf req = BUF_INIT, resp = BUF_INIT;
	struct wire_writer w;
	int st = admin_open(&x, argc, argv, 1);
	if (st)
		return admin_close(&x, st);
	char *end;
	errno = 0;
	unsigned long id = strtoul(x.pos[0], &end, 10);
	if (errno || *end || end == x.pos[0] || !id || id > UINT32_MAX) {
		fprintf(stderr, "chainfs admin %s: '%s' is not a target id\n", x.cmd, x.pos[0]);
		return admin_close(&x, 2);
	}
	wire_writer_init(&w, &req);
	wire_put_u32(&w, (uint32_t)id);
	wire_put_u8(&w, off);
	st = 1;
	if (!call(&x, RPC_MSG_MGMTD_SET_TARGET, &req, &resp) && resp.len >= 8) {
		printf("target %lu set %s (routing version %" PRIu64 ")\n", id,
		       off ? "offline" : "online", wire_load_u64(resp.data));
		st = 0;
	}
	buf_fini(&req);
	buf_fini(&resp);
	return admin_close(&x, st);
}

int cli_admin_set_target_offline(int argc, char **argv)
{
	return set_target(argc, argv, 1);
}
int cli_admin_set_target_online(int argc, char **argv)
{
	return set_target(argc, argv, 0);
}
