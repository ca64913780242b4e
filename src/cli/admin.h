/* admin.h - `chainfs admin <command>`: the admin commands, dispatched by
 * cli_admin (cmd_admin.c). Each returns the process exit status (0 success,
 * 1 failure, 2 usage error). Add a command: write it in its own
 * cmd_admin_<x>.c, declare it here, add a row to the table in cmd_admin.c. */
#ifndef CFS_CLI_ADMIN_H
#define CFS_CLI_ADMIN_H

#include <stdint.h>

struct cli_admin_cmd {
	const char *name;
	int (*run)(int argc, char **argv); /* argv[0] is the command name */
	const char *help;
};

int cli_admin_gen_chain_table(int argc, char **argv); /* cmd_admin_chaintable.c */
/* cmd_admin_mgmtd.c: commands served by mgmtd */
int cli_admin_init_cluster(int argc, char **argv);
int cli_admin_routing_version(int argc, char **argv);
int cli_admin_list_nodes(int argc, char **argv);
int cli_admin_list_targets(int argc, char **argv);
int cli_admin_list_chains(int argc, char **argv);
int cli_admin_list_chain_tables(int argc, char **argv);
int cli_admin_create_chain_table(int argc, char **argv);
int cli_admin_set_target_offline(int argc, char **argv);
int cli_admin_set_target_online(int argc, char **argv);
int cli_admin_layout(int argc, char **argv); /* cmd_admin_layout.c: get|set DIR (meta) */
/* cmd_admin_metastatus.c: a meta instance's state (writes taken or refused) */
int cli_admin_meta_status(int argc, char **argv);
/* cmd_admin_rpcstats.c: any server's connection counters */
int cli_admin_rpc_stats(int argc, char **argv);

struct rpc_client;
struct rpc_peer;
/* The options of an admin command talking to one server. */
struct cli_admin_target {
	char *addr;
	char *cluster_id;
	char *secret_file;
	int64_t timeout_ms;
};
/* cmd_admin.c: parses ARGV (--addr, --cluster-id, --secret-file,
 * --timeout-ms; no positional arguments) into *T, which starts zeroed;
 * ADDR_HELP is --addr's help line. 0: parsed, all three required options
 * given; 1: --help was printed (the command exits 0); 2: a usage error,
 * printed to stderr naming CMD. Whatever it returns, the caller frees *T
 * with cli_admin_target_free. Any thread. */
int cli_admin_target_parse(const char *cmd, const char *addr_help, int argc, char **argv,
                           struct cli_admin_target *t);
void cli_admin_target_free(struct cli_admin_target *t);
/* cmd_admin.c: connects an admin command (CMD names it in messages) to
 * the server at ADDR: loads SECRET_FILE, makes a one-thread client whose
 * calls and handshake time out after TIMEOUT_MS, and its peer. 0 with
 * *CLI (the caller's: rpc_client_free) and *P (owned by *CLI); else 1
 * after printing why to stderr (*CLI NULL or to be freed as on success).
 * Any thread. */
int cli_admin_peer(const char *cmd, const char *addr, const char *cluster_id,
                   const char *secret_file, int timeout_ms, struct rpc_client **cli,
                   struct rpc_peer **p);

#endif
