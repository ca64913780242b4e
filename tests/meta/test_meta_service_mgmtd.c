/* test_meta_service_mgmtd.c - `chainfs meta --mgmtd` with a real `chainfs
 * mgmtd` on 127.0.0.1: the instance registers as a meta node (routing
 * lists it at its advertised address), file layouts take their chains
 * from the chain table mgmtd generated (a stripe wider than the table is
 * refused), and while mgmtd is stopped (SIGSTOP) for longer than the
 * fence window the instance keeps serving reads and mutations (meta does
 * not fence: its state is the KV store), and after SIGCONT too.
 * The storage side is one fake storage node (mgmtd_client in this process)
 * with two targets, so the table (replicas 1) has two chains.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/meta_client.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "meta/meta.h"
#include "mgmtd/mgmtd_client.h"
#include "mgmtd/routing.h"
#include "testenv.h"

static const char SECRET[] = "meta-mgmtd-test-secret-0123456789";
static const char CLUSTER[] = "metamgmtd";
static const struct meta_cred ROOT = { 0, 0, 0, NULL };

static char *dir;
static char secret_path[512], kv_mgmtd[600], kv_meta[600];

static int port_open(void *arg) { return testenv_port_open(*(uint16_t *)arg); }

static pid_t spawn_wait(char **argv, const char *log, uint16_t port)
{
	pid_t pid = testenv_spawn(argv, log);
	assert_true(testenv_wait(port_open, &port, 20000));
	return pid;
}

static int admin(const char *maddr, const char *cmd, ...)
{
	char *argv[16], path[600];
	int n = 0;
	va_list ap;
	snprintf(path, sizeof(path), "%s/admin.out", dir);
	argv[n++] = (char *)testenv_chainfs();
	argv[n++] = "admin";
	argv[n++] = (char *)cmd;
	argv[n++] = "--mgmtd";
	argv[n++] = (char *)maddr;
	argv[n++] = "--cluster-id";
	argv[n++] = (char *)CLUSTER;
	argv[n++] = "--secret-file";
	argv[n++] = secret_path;
	va_start(ap, cmd);
	for (const char *a; (a = va_arg(ap, const char *)) && n < 15;)
		argv[n++] = (char *)a;
	va_end(ap);
	argv[n] = NULL;
	unlink(path);
	return testenv_run(argv, NULL, path, 20000);
}

static int registered(void *arg) { return mgmtd_client_node_id(arg) != 0; }

static int meta_listed(void *arg)
{
	struct mgmtd_client *obs = ((void **)arg)[0];
	const char *addr = ((void **)arg)[1];
	struct mgmtd_routing *snap = mgmtd_client_routing(obs);
	int found = 0;
	if (!snap)
		return 0;
	const struct route_info *ri = mgmtd_routing_info(snap);
	for (size_t i = 0; i < ri->n_nodes; i++)
		if (ri->nodes[i].type == ROUTE_NODE_META && !strcmp(ri->nodes[i].addr, addr) &&
		    ri->nodes[i].state == ROUTE_NODE_ACTIVE)
			found = 1;
	mgmtd_routing_put(snap);
	return found;
}

static void test_mgmtd(void **state)
{
	char maddr[32], meta_addr[32], mlog[600], xlog[600];
	uint16_t mport = testenv_free_port(), xport = testenv_free_port();
	char err[256];

	dir = testenv_tmpdir("meta_mgmtd");
	testenv_write_secret(dir, SECRET, secret_path, sizeof(secret_path));
	snprintf(kv_mgmtd, sizeof(kv_mgmtd), "lmdb://%s/mgmtd", dir);
	snprintf(kv_meta, sizeof(kv_meta), "lmdb://%s/meta?sync=nometa", dir);
	snprintf(maddr, sizeof(maddr), "127.0.0.1:%u", mport);
	snprintf(meta_addr, sizeof(meta_addr), "127.0.0.1:%u", xport);
	snprintf(mlog, sizeof(mlog), "%s/mgmtd.log", dir);
	snprintf(xlog, sizeof(xlog), "%s/meta.log", dir);

	char *margv[] = { (char *)testenv_chainfs(), "mgmtd", "--kv", kv_mgmtd, "--listen", maddr,
			  "--cluster-id", (char *)CLUSTER, "--secret-file", secret_path,
			  "--heartbeat-timeout", "2s", "--lease", "1s", NULL };
	pid_t mgmtd = spawn_wait(margv, mlog, mport);
	assert_int_equal(admin(maddr, "init-cluster", NULL), 0);

	/* A fake storage node with two up-to-date targets, then a table. */
	const char *maddrs[] = { maddr };
	struct mgmtd_target_report t[2] = { { 1, CHAIN_LS_UPTODATE, 1ull << 30, 0 },
					    { 2, CHAIN_LS_UPTODATE, 1ull << 30, 0 } };
	struct mgmtd_client_opts so = { .mgmtd_addrs = maddrs, .n_mgmtd = 1, .cluster_id = CLUSTER,
					.secret = (const uint8_t *)SECRET,
					.secret_len = strlen(SECRET), .type = ROUTE_NODE_STORAGE,
					.addr = "127.0.0.1:1", .heartbeat_ms = 200, .fence_ms = 1000,
					.poll_wait_ms = 1000, .targets = t, .n_targets = 2 };
	struct mgmtd_client *storage = NULL, *obs = NULL;
	assert_int_equal(mgmtd_client_new(&so, &storage, err, sizeof(err)), 0);
	assert_true(testenv_wait(registered, storage, 10000));
	assert_int_equal(admin(maddr, "create-chain-table", "--replicas", "1", NULL), 0);

	char *xargv[] = { (char *)testenv_chainfs(), "meta", "--kv", kv_meta, "--listen", meta_addr,
			  "--cluster-id", (char *)CLUSTER, "--secret-file", secret_path,
			  "--mgmtd", maddr, "--table", "1", "--threads", "4",
			  "--fence-ms", "1000", "--heartbeat-ms", "200", NULL };
	pid_t meta = spawn_wait(xargv, xlog, xport);

	/* Routing lists the instance. */
	struct mgmtd_client_opts oo = { .mgmtd_addrs = maddrs, .n_mgmtd = 1, .cluster_id = CLUSTER,
					.secret = (const uint8_t *)SECRET,
					.secret_len = strlen(SECRET), .poll_wait_ms = 500 };
	assert_int_equal(mgmtd_client_new(&oo, &obs, err, sizeof(err)), 0);
	void *arg[2] = { obs, meta_addr };
	assert_true(testenv_wait(meta_listed, arg, 10000));

	/* Layouts come from table 1's two chains. */
	const char *a[] = { meta_addr };
	struct meta_client_opts co = { .addrs = a, .naddrs = 1, .cluster_id = CLUSTER,
				       .secret = (const uint8_t *)SECRET,
				       .secret_len = strlen(SECRET), .retry_ms = 1500,
				       .down_ms = 100 };
	meta_client *mc = NULL;
	assert_int_equal(meta_client_new(&co, &mc, err, sizeof(err)), 0);
	struct meta_inode d, x;
	assert_int_equal(meta_client_mkdir(mc, &ROOT, META_ROOT_INO, meta_name_c("d"), 0755, &d), 0);
	assert_int_equal(meta_client_layout_set(mc, &ROOT, d.ino, 1 << 20, 2, 1), 0);
	assert_int_equal(meta_client_create(mc, &ROOT, d.ino, meta_name_c("f"), 0644, 0, &x, NULL),
			 0);
	assert_int_equal(x.layout.stripe, 2);
	assert_int_equal(x.layout.table_id, 1);
	for (int i = 0; i < 2; i++)
		assert_int_equal(route_chain_table(x.layout.chains[i]), 1);
	assert_int_not_equal(x.layout.chains[0], x.layout.chains[1]);
	assert_int_equal(meta_client_layout_set(mc, &ROOT, d.ino, 1 << 20, 3, 1), -EINVAL);
	assert_int_equal(meta_client_layout_set(mc, &ROOT, d.ino, 1 << 20, 1, 9), -EINVAL);

	/* No fencing: with mgmtd paused for 3x the fence window, reads and
	 * mutations are still served; and after it resumes. */
	assert_int_equal(testenv_stop(mgmtd), 0);
	clock_sleep_ms(3000);
	assert_int_equal(meta_client_getattr(mc, &ROOT, META_ROOT_INO, &x), 0);
	assert_int_equal(meta_client_create(mc, &ROOT, d.ino, meta_name_c("g"), 0644, 0, &x, NULL),
			 0);
	assert_int_equal(x.layout.stripe, 2);
	assert_int_equal(meta_client_lookup(mc, &ROOT, d.ino, meta_name_c("g"), &x), 0);
	assert_int_equal(kill(mgmtd, SIGCONT), 0);
	assert_int_equal(meta_client_unlink(mc, &ROOT, d.ino, meta_name_c("g")), 0);
	assert_int_equal(meta_client_lookup(mc, &ROOT, d.ino, meta_name_c("g"), &x), -ENOENT);

	meta_client_free(mc);
	mgmtd_client_free(obs);
	mgmtd_client_free(storage);
	int st = testenv_kill(meta, SIGTERM);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	testenv_kill(mgmtd, SIGTERM);
	free(dir);
}

int main(void)
{
	log_set_sink(NULL, NULL);
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_mgmtd) };
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	testenv_cleanup();
	return rc;
}
