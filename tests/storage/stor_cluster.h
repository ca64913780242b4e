/* stor_cluster.h - a test cluster of real processes: one `chainfs mgmtd`
 * (lmdb store) and N `chainfs storage` services with temp target dirs,
 * all on 127.0.0.1, started and stopped by pid (testenv.h). Without
 * mgmtd (stor_cluster_start_storage before stor_cluster_start_mgmtd) a
 * storage service runs standalone. Helpers fail the cmocka test on error.
 */
#ifndef CFS_TESTS_STOR_CLUSTER_H
#define CFS_TESTS_STOR_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Cluster id of this test process's clusters: "stortest-PID", passed to
 * the processes it spawns in CFS_TEST_CLUSTER_ID. Programs run
 * in parallel (ctest -j) and reuse each other's freed ports; with one id
 * for all, a storage process of one program could register with another
 * program's mgmtd on a reused port (seen as "4 targets instead of 3"). */
char *stor_cluster_id(void);
#define SC_CLUSTER stor_cluster_id()
#define SC_SECRET "0123456789abcdef0123456789abcdef"
#define SC_MAX_NODES 6

struct sc_node {
	pid_t pid;
	uint16_t port;
	char addr[32];
	char dirs[2][700];
	char log[700];
	char mgmtd_via[32]; /* "" or the address to use for mgmtd (a tcp_proxy) */
};

struct stor_cluster {
	char *dir;
	char secret_path[600];
	char kv_url[700];
	uint32_t hb_timeout_ms;     /* mgmtd heartbeat timeout T (fence = T/2) */
	int targets_per_node;       /* 1 or 2 */
	int sync;                   /* 1: services start with --sync=1 (0, the default:
				       --sync=0, no fdatasync or flush at all) */
	pid_t mgmtd_pid;
	uint16_t mgmtd_port;
	char mgmtd_addr[32];
	char mgmtd_log[700];
	int n;
	struct sc_node node[SC_MAX_NODES];
};

void stor_cluster_init(struct stor_cluster *c, const char *tag, int nodes, int targets_per_node,
		       uint32_t hb_timeout_ms);
void stor_cluster_start_mgmtd(struct stor_cluster *c);
/* Starts (or restarts, same dirs and port) storage node I. */
void stor_cluster_start_storage(struct stor_cluster *c, int i);
/* Sends SIG to node I; SIGKILL/SIGTERM also reap it; after SIGTERM the
 * service must have exited with status 0. */
void stor_cluster_signal(struct stor_cluster *c, int i, int sig);
/* `chainfs admin CMD --mgmtd ... EXTRA... NULL`, output in OUT; exit status. */
int stor_cluster_admin(struct stor_cluster *c, char *out, size_t outlen, const char *cmd, ...);
/* The last LINES (<= 60) lines of mgmtd's and every storage node's log on
 * stdout: for a test about to fail on the cluster's state. */
void stor_cluster_print_logs(struct stor_cluster *c, int lines);
/* Kills everything and frees. */
void stor_cluster_fini(struct stor_cluster *c);

struct storage_client;
/* A storage client for this process's clusters (SC_CLUSTER, SC_SECRET;
 * 5 s per call, 3 s retry budget); fails the test when it cannot be
 * made. The caller frees it with storage_client_free. */
struct storage_client *stor_cluster_client(void);

struct rpc_client;
/* A raw RPC client for this process's clusters (SC_CLUSTER, SC_SECRET),
 * for tests that send hand-made requests; fails the test when it cannot
 * be made. The caller frees it with rpc_client_free. */
struct rpc_client *stor_cluster_rpc_client(void);

#endif
