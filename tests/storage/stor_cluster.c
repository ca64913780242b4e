/* stor_cluster.c - the test cluster helper (stor_cluster.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "net/rpc.h"
#include "stor_cluster.h"
#include "storage_client/storage_client.h"
#include "testenv.h"

char *stor_cluster_id(void)
{
	static char id[64];
	if (!id[0]) {
		/* Children spawned by the test (--child helpers) join the
		 * parent's clusters: they inherit the id through the environment. */
		const char *env = getenv("CFS_TEST_CLUSTER_ID");
		if (env && *env)
			snprintf(id, sizeof(id), "%s", env);
		else
			snprintf(id, sizeof(id), "stortest-%ld", (long)getpid());
		setenv("CFS_TEST_CLUSTER_ID", id, 1);
	}
	return id;
}

void stor_cluster_init(struct stor_cluster *c, const char *tag, int nodes, int targets_per_node,
		       uint32_t hb_timeout_ms)
{
	memset(c, 0, sizeof(*c));
	assert_true(nodes >= 1 && nodes <= SC_MAX_NODES);
	c->dir = testenv_tmpdir(tag);
	c->n = nodes;
	c->targets_per_node = targets_per_node;
	c->hb_timeout_ms = hb_timeout_ms;
	testenv_write_secret(c->dir, SC_SECRET, c->secret_path, sizeof(c->secret_path));
	snprintf(c->kv_url, sizeof(c->kv_url), "lmdb://%s/kv", c->dir);
	for (int i = 0; i < nodes; i++) {
		struct sc_node *n = &c->node[i];
		n->port = testenv_free_port();
		snprintf(n->addr, sizeof(n->addr), "127.0.0.1:%u", n->port);
		for (int k = 0; k < targets_per_node; k++)
			snprintf(n->dirs[k], sizeof(n->dirs[k]), "%s/n%d-t%d", c->dir, i, k);
		snprintf(n->log, sizeof(n->log), "%s/storage-%d.log", c->dir, i);
	}
}

static void wait_port(uint16_t port)
{
	uint64_t deadline = clock_mono_ms() + 15000;
	while (!testenv_port_open(port) && clock_mono_ms() < deadline)
		clock_sleep_ms(20);
	assert_true(testenv_port_open(port));
}

void stor_cluster_start_mgmtd(struct stor_cluster *c)
{
	char hb[32];
	if (!c->mgmtd_port) {
		c->mgmtd_port = testenv_free_port();
		snprintf(c->mgmtd_addr, sizeof(c->mgmtd_addr), "127.0.0.1:%u", c->mgmtd_port);
		snprintf(c->mgmtd_log, sizeof(c->mgmtd_log), "%s/mgmtd.log", c->dir);
	}
	snprintf(hb, sizeof(hb), "%ums", c->hb_timeout_ms);
	char *argv[] = { (char *)testenv_chainfs(), "mgmtd", "--kv", c->kv_url, "--listen",
			 c->mgmtd_addr, "--cluster-id", SC_CLUSTER, "--secret-file",
			 c->secret_path, "--heartbeat-timeout", hb, "--lease", "1s",
			 "--log-level", "info", NULL };
	c->mgmtd_pid = testenv_spawn(argv, c->mgmtd_log);
	wait_port(c->mgmtd_port);
}

void stor_cluster_start_storage(struct stor_cluster *c, int i)
{
	struct sc_node *n = &c->node[i];
	char targets[1500], fence[32];
	if (c->targets_per_node == 2)
		snprintf(targets, sizeof(targets), "%s,%s", n->dirs[0], n->dirs[1]);
	else
		snprintf(targets, sizeof(targets), "%s", n->dirs[0]);
	snprintf(fence, sizeof(fence), "%u", c->hb_timeout_ms / 2);
	char *argv[24];
	int k = 0;
	argv[k++] = (char *)testenv_chainfs();
	argv[k++] = "storage";
	argv[k++] = "--targets";
	argv[k++] = targets;
	argv[k++] = "--listen";
	argv[k++] = n->addr;
	argv[k++] = "--cluster-id";
	argv[k++] = SC_CLUSTER;
	argv[k++] = "--secret-file";
	argv[k++] = c->secret_path;
	argv[k++] = "--log-level";
	argv[k++] = "info";
	argv[k++] = c->sync ? "--sync=1" : "--sync=0";
	if (c->mgmtd_port) {
		argv[k++] = "--mgmtd";
		argv[k++] = n->mgmtd_via[0] ? n->mgmtd_via : c->mgmtd_addr;
		argv[k++] = "--fence-ms";
		argv[k++] = fence;
		argv[k++] = "--heartbeat-ms";
		argv[k++] = "200";
	}
	argv[k] = NULL;
	n->pid = testenv_spawn(argv, n->log);
	wait_port(n->port);
}

/* The last LINES lines of PATH on stdout (the temp dir is gone after a
 * failed run, and CI keeps only the test's output). */
static void print_log_tail(const char *path, int lines)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	static char ring[60][512];
	int n = 0;
	while (fgets(ring[n % 60], sizeof(ring[0]), f))
		n++;
	fclose(f);
	if (lines > 60)
		lines = 60;
	for (int k = n > lines ? n - lines : 0; k < n; k++)
		print_message("  | %s", ring[k % 60]);
}

void stor_cluster_print_logs(struct stor_cluster *c, int lines)
{
	print_message("mgmtd log %s ends:\n", c->mgmtd_log);
	print_log_tail(c->mgmtd_log, lines);
	for (int i = 0; i < c->n; i++) {
		print_message("storage %d log %s ends:\n", i, c->node[i].log);
		print_log_tail(c->node[i].log, lines);
	}
}

void stor_cluster_signal(struct stor_cluster *c, int i, int sig)
{
	struct sc_node *n = &c->node[i];
	if (n->pid <= 0)
		return;
	int st = testenv_kill(n->pid, sig);
	if (sig == SIGKILL || sig == SIGTERM)
		n->pid = 0;
	if (sig == SIGTERM) {
		/* A clean stop exits 0: no sanitizer report, nothing stuck. */
		if (!WIFEXITED(st) || WEXITSTATUS(st)) {
			print_message("storage %d exit status %d; log %s ends:\n", i, st, n->log);
			print_log_tail(n->log, 60);
		}
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
}

int stor_cluster_admin(struct stor_cluster *c, char *out, size_t outlen, const char *cmd, ...)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/admin.out", c->dir);
	struct testenv_admin a = { .mgmtd = c->mgmtd_addr, .cluster_id = SC_CLUSTER,
				   .secret_path = c->secret_path, .log = path };
	va_list ap;
	va_start(ap, cmd);
	int st = testenv_admin_v(&a, out, outlen, cmd, ap);
	va_end(ap);
	return st;
}

void stor_cluster_fini(struct stor_cluster *c)
{
	for (int i = 0; i < c->n; i++)
		if (c->node[i].pid > 0) {
			testenv_kill(c->node[i].pid, SIGKILL);
			c->node[i].pid = 0;
		}
	if (c->mgmtd_pid > 0)
		testenv_kill(c->mgmtd_pid, SIGKILL);
	c->mgmtd_pid = 0;
	free(c->dir);
	c->dir = NULL;
}

struct storage_client *stor_cluster_client(void)
{
	struct storage_client_opts o = { .cluster_id = SC_CLUSTER, .secret = (const uint8_t *)SC_SECRET,
					 .secret_len = strlen(SC_SECRET), .timeout_ms = 5000,
					 .retry_budget_ms = 3000 };
	struct storage_client *c = NULL;
	char err[256];
	int rc = storage_client_new(&o, &c, err, sizeof(err));
	if (rc)
		print_message("client: %s\n", err);
	assert_int_equal(rc, 0);
	return c;
}

struct rpc_client *stor_cluster_rpc_client(void)
{
	struct rpc_opts o = { .cluster_id = SC_CLUSTER, .secret = (const uint8_t *)SC_SECRET,
			      .secret_len = strlen(SC_SECRET) };
	struct rpc_client *rc = NULL;
	assert_int_equal(rpc_client_new(&o, &rc), 0);
	return rc;
}
