/* cmd_admin.c - chainfs admin <command>: cluster administration. Each
 * command lives in its own cmd_admin_<x>.c; add a row below to register one. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli/admin.h"
#include "cli/cli.h"
#include "common/cfg.h"
#include "common/status.h"
#include "net/auth.h"
#include "net/rpc.h"

static const struct cli_admin_cmd commands[] = {
    {"gen-chain-table", cli_admin_gen_chain_table,
     "generate a balanced chain table offline and print its balance figures"},
    {"init-cluster", cli_admin_init_cluster, "bind the KV store to the cluster id (mgmtd)"},
    {"routing-version", cli_admin_routing_version, "print the routing info version (mgmtd)"},
    {"list-nodes", cli_admin_list_nodes, "list registered nodes and their state (mgmtd)"},
    {"list-targets", cli_admin_list_targets, "list storage targets and their states (mgmtd)"},
    {"list-chains", cli_admin_list_chains, "list chains, versions and members (mgmtd)"},
    {"list-chain-tables", cli_admin_list_chain_tables, "list chain tables (mgmtd)"},
    {"create-chain-table", cli_admin_create_chain_table,
     "build a chain table over the free storage targets (mgmtd)"},
    {"set-target-offline", cli_admin_set_target_offline,
     "take a target out of service for maintenance (mgmtd)"},
    {"set-target-online", cli_admin_set_target_online,
     "undo set-target-offline (mgmtd)"},
    {"layout", cli_admin_layout, "get|set DIR: a directory's default file layout (meta)"},
    {"meta-status", cli_admin_meta_status,
     "a meta instance's id, workers and whether it takes writes (exit 1: refused)"},
    {"rpc-stats", cli_admin_rpc_stats,
     "connection counters of any server: accepted, refused, malformed, half-open"},
    {NULL, NULL, NULL},
};

int cli_admin(int argc, char **argv)
{
	if (argc >= 2) {
		for (size_t i = 0; commands[i].name; i++)
			if (!strcmp(argv[1], commands[i].name))
				return commands[i].run(argc - 1, argv + 1);
	}
	int help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
	FILE *out = help ? stdout : stderr;
	if (argc >= 2 && !help)
		fprintf(stderr, "chainfs admin: unknown command '%s'\n", argv[1]);
	fprintf(out, "usage: chainfs admin <command> [options]\n\ncommands:\n");
	for (size_t i = 0; commands[i].name; i++)
		fprintf(out, "  %-16s %s\n", commands[i].name, commands[i].help);
	return help ? 0 : 2;
}

int cli_admin_peer(const char *cmd, const char *addr, const char *cluster_id,
                   const char *secret_file, int timeout_ms, struct rpc_client **cli,
                   struct rpc_peer **p)
{
	char err[512];
	uint8_t secret[AUTH_SECRET_MAX];
	int rc = auth_load_secret(secret_file, secret, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "chainfs admin %s: %s\n", cmd, err);
		return 1;
	}
	struct rpc_opts ro = {.cluster_id = cluster_id,
	                      .secret = secret,
	                      .secret_len = (size_t)rc,
	                      .nthreads = 1,
	                      .timeout_ms = (uint32_t)timeout_ms,
	                      .handshake_ms = (uint32_t)timeout_ms};
	if ((rc = rpc_client_new(&ro, cli)) ||
	    (rc = rpc_client_peer(*cli, addr, p, err, sizeof(err)))) {
		fprintf(stderr, "chainfs admin %s: %s\n", cmd, rc == -EINVAL ? err : cfs_strerror(rc));
		return 1;
	}
	return 0;
}

static const struct cfg_opt target_opts[] = {
    {"addr", CFG_STR, "", 0, 0, offsetof(struct cli_admin_target, addr),
     "ip:port of the server; required"},
    {"cluster-id", CFG_STR, "", 0, 0, offsetof(struct cli_admin_target, cluster_id),
     "cluster id; required"},
    {"secret-file", CFG_STR, "", 0, 0, offsetof(struct cli_admin_target, secret_file),
     "file holding the cluster secret; required"},
    {"timeout-ms", CFG_INT, "3000", 100, 600000, offsetof(struct cli_admin_target, timeout_ms),
     "request deadline"},
    CFG_END,
};

int cli_admin_target_parse(const char *cmd, const char *addr_help, int argc, char **argv,
                           struct cli_admin_target *t)
{
	struct cfg_opt opts[sizeof(target_opts) / sizeof(target_opts[0])];
	memcpy(opts, target_opts, sizeof(opts));
	opts[0].help = addr_help; /* each command says which servers answer it */
	char err[512];
	int npos = 0;
	int rc = cfg_parse(opts, t, argc, argv, &npos, err, sizeof(err));
	if (rc == 1)
		return 1;
	if (rc || npos || !*t->addr || !*t->cluster_id || !*t->secret_file) {
		fprintf(stderr, "chainfs admin %s: %s\n", cmd,
		        rc ? err : "--addr, --cluster-id and --secret-file are required");
		return 2;
	}
	return 0;
}

void cli_admin_target_free(struct cli_admin_target *t)
{
	cfg_free(target_opts, t);
}
