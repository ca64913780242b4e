/* test_meta_cluster.c - the metadata service among real processes: one
 * `chainfs mgmtd` (heartbeat timeout T = 2 s), two `chainfs storage`
 * services with two targets each (chain table 1: four one-replica chains)
 * and one `chainfs meta --mgmtd` wired to the storage chains.
 *
 * layout: `chainfs admin layout set|get DIR` run as a child process. set
 *   changes a directory's default (only the fields given), get prints it,
 *   a file created in DIR afterwards has that layout, and bad layouts
 *   (chunk size not a power of two / out of range, stripe 0 / wider than
 *   the table, unknown table) exit 1 with the server's reason and EINVAL,
 *   leaving the default unchanged; missing paths and files are refused.
 *
 * dead clients: a child process (this binary with --child) registers with
 *   mgmtd as a CLIENT node, uses its node id as meta client id, creates a
 *   file for write, writes a chunk to storage and is kill -9'd; the file is
 *   unlinked. While the node is not yet failed the chunk stays (the session
 *   holds GC); once mgmtd declares the node failed the meta instance drops
 *   the session and GC removes the chunk. Meanwhile three other sessions on
 *   unlinked files: this process's own (a live CLIENT node) and an
 *   unmanaged client's (random id >= 2^32) are kept until they close; a
 *   client id in the node range that mgmtd never listed is dropped only
 *   after the absence grace (2 x meta's fence_ms).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/meta_client.h"
#include "storage_client/storage_client.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "meta/layout.h"
#include "meta/meta.h"
#include "mgmtd/mgmtd_client.h"
#include "mgmtd/routing.h"
#include "stor_cluster.h"
#include "testenv.h"

#define T_MS 2000       /* mgmtd heartbeat timeout */
#define FENCE_MS 1000   /* meta's fence window: absence grace 2 s */
#define CHUNK_LEN 65536
#define WAIT_MS 20000

static const struct meta_cred ROOT = { 0, 0, 0, NULL };
static char self_exe[512];

static struct stor_cluster sc;
static struct mgmtd_client *obs;
static struct storage_client *sto;
static meta_client *mc; /* unmanaged (random id) */
static pid_t meta_pid;
static char meta_addr[32], meta_log[700];

static const char *const *one(const char *a)
{
	static __thread const char *arr[1];
	arr[0] = a;
	return arr;
}

static int count_targets(void *unused)
{
	struct mgmtd_routing *snap = mgmtd_client_routing(obs);
	int n = snap ? (int)mgmtd_routing_info(snap)->n_targets : 0;
	mgmtd_routing_put(snap);
	return n == 4;
}

static int table_ready(void *unused)
{
	struct mgmtd_routing *snap = mgmtd_client_routing(obs);
	int ok = snap && route_find_table(mgmtd_routing_info(snap), 1) != NULL;
	mgmtd_routing_put(snap);
	return ok;
}

static int meta_up(void *unused)
{
	uint16_t port = (uint16_t)atoi(strchr(meta_addr, ':') + 1);
	return testenv_port_open(port);
}

static int setup(void **state)
{
	char out[4096], err[256];
	stor_cluster_init(&sc, "metaclu", 2, 2, T_MS);
	stor_cluster_start_mgmtd(&sc);
	assert_int_equal(stor_cluster_admin(&sc, out, sizeof(out), "init-cluster", NULL), 0);
	for (int i = 0; i < 2; i++)
		stor_cluster_start_storage(&sc, i);
	struct mgmtd_client_opts mo = { .mgmtd_addrs = one(sc.mgmtd_addr), .n_mgmtd = 1,
					.cluster_id = SC_CLUSTER,
					.secret = (const uint8_t *)SC_SECRET,
					.secret_len = strlen(SC_SECRET), .poll_wait_ms = 500 };
	assert_int_equal(mgmtd_client_new(&mo, &obs, err, sizeof(err)), 0);
	assert_true(testenv_wait(count_targets, NULL, 15000));
	int rc = stor_cluster_admin(&sc, out, sizeof(out), "create-chain-table", "--replicas", "1",
				    NULL);
	if (rc)
		print_message("create-chain-table: %s\n", out);
	assert_int_equal(rc, 0);
	assert_true(testenv_wait(table_ready, NULL, 15000));

	struct storage_client_opts so = { .cluster_id = SC_CLUSTER,
					  .secret = (const uint8_t *)SC_SECRET,
					  .secret_len = strlen(SC_SECRET),
					  .mgmtd_addrs = one(sc.mgmtd_addr), .n_mgmtd = 1,
					  .timeout_ms = 3000, .retry_budget_ms = 20000 };
	assert_int_equal(storage_client_new(&so, &sto, err, sizeof(err)), 0);

	char kv[700], fence[16];
	snprintf(kv, sizeof(kv), "lmdb://%s/meta?sync=nometa", sc.dir);
	snprintf(meta_addr, sizeof(meta_addr), "127.0.0.1:%u", testenv_free_port());
	snprintf(meta_log, sizeof(meta_log), "%s/meta.log", sc.dir);
	snprintf(fence, sizeof(fence), "%d", FENCE_MS);
	char *argv[] = { (char *)testenv_chainfs(), "meta", "--kv", kv, "--listen", meta_addr,
			 "--cluster-id", SC_CLUSTER, "--secret-file", sc.secret_path,
			 "--mgmtd", sc.mgmtd_addr, "--table", "1", "--threads", "4",
			 "--fence-ms", fence, "--heartbeat-ms", "200", "--session-check-ms", "300",
			 "--log-level", "info", NULL };
	meta_pid = testenv_spawn(argv, meta_log);
	assert_true(testenv_wait(meta_up, NULL, 20000));

	struct meta_client_opts co = { .addrs = one(meta_addr), .naddrs = 1,
				       .cluster_id = SC_CLUSTER,
				       .secret = (const uint8_t *)SC_SECRET,
				       .secret_len = strlen(SC_SECRET), .retry_ms = 10000 };
	assert_int_equal(meta_client_new(&co, &mc, err, sizeof(err)), 0);
	return 0;
}

static int teardown(void **state)
{
	meta_client_free(mc);
	storage_client_free(sto);
	mgmtd_client_free(obs);
	if (meta_pid > 0) {
		int st = testenv_kill(meta_pid, SIGTERM);
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			print_message("meta exit status %d; log %s\n", st, meta_log);
	}
	for (int i = 0; i < sc.n; i++)
		stor_cluster_signal(&sc, i, SIGTERM);
	stor_cluster_fini(&sc);
	return 0;
}

/* `chainfs admin layout ARGS... NULL`; output in OUT; exit status. */
static int layout_cmd(char *out, size_t cap, ...)
{
	const char *a[10] = { NULL };
	int n = 0;
	va_list ap;
	va_start(ap, cap);
	for (const char *s; (s = va_arg(ap, const char *)) && n < 9;)
		a[n++] = s;
	va_end(ap);
	int rc = stor_cluster_admin(&sc, out, cap, "layout", a[0], a[1], a[2], a[3], a[4], a[5],
				    a[6], a[7], a[8], NULL);
	print_message("layout %s %s -> %d\n%s", a[0], n > 1 ? a[1] : "", rc, out);
	return rc;
}

static void test_layout(void **state)
{
	char out[4096];
	struct meta_inode d, f, sub;
	assert_int_equal(meta_client_mkdir(mc, &ROOT, META_ROOT_INO, meta_name_c("d"), 0755, &d),
			 0);

	assert_int_equal(layout_cmd(out, sizeof(out), "set", "/d", "--chunk-size", "256K",
				    "--stripe", "3", "--table", "1", NULL), 0);
	assert_non_null(strstr(out, "chunk-size: 262144\n"));
	assert_int_equal(layout_cmd(out, sizeof(out), "get", "/d", NULL), 0);
	assert_non_null(strstr(out, "chunk-size: 262144\n"));
	assert_non_null(strstr(out, "stripe:     3\n"));
	assert_non_null(strstr(out, "table:      1\n"));

	/* A file created afterwards has the layout, chains from table 1. */
	assert_int_equal(meta_client_create(mc, &ROOT, d.ino, meta_name_c("f"), 0644, 0, &f, NULL),
			 0);
	assert_int_equal(f.layout.chunk_size, 262144);
	assert_int_equal(f.layout.stripe, 3);
	assert_int_equal(f.layout.table_id, 1);
	assert_int_equal(f.layout.nchains, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(route_chain_table(f.layout.chains[i]), 1);
		for (int j = 0; j < i; j++)
			assert_int_not_equal(f.layout.chains[i], f.layout.chains[j]);
	}
	assert_int_equal(layout_cmd(out, sizeof(out), "get", "/d/f", NULL), 0);
	assert_non_null(strstr(out, "chains:"));

	/* Only the fields given change. */
	assert_int_equal(layout_cmd(out, sizeof(out), "set", "/d", "--stripe", "2", NULL), 0);
	assert_non_null(strstr(out, "chunk-size: 262144\n"));
	assert_non_null(strstr(out, "stripe:     2\n"));

	/* Bad layouts: exit 1, the server's reason, EINVAL. */
	static const struct {
		const char *flag, *val, *reason;
	} bad[] = {
		{ "--chunk-size", "100000", "not a power of two" },
		{ "--chunk-size", "32K", "out of range" },
		{ "--chunk-size", "128M", "out of range" },
		{ "--stripe", "0", "stripe size 0" },
		{ "--stripe", "5", "larger than chain table 1" },
		{ "--table", "9", "unknown chain table 9" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(layout_cmd(out, sizeof(out), "set", "/d", bad[i].flag, bad[i].val,
					    NULL), 1);
		assert_non_null(strstr(out, bad[i].reason));
		assert_non_null(strstr(out, "EINVAL"));
	}
	assert_int_equal(layout_cmd(out, sizeof(out), "get", "/d", NULL), 0);
	assert_non_null(strstr(out, "chunk-size: 262144\n"));
	assert_non_null(strstr(out, "stripe:     2\n"));

	/* A subdirectory made now copies the default. */
	assert_int_equal(meta_client_mkdir(mc, &ROOT, d.ino, meta_name_c("sub"), 0755, &sub), 0);
	assert_int_equal(layout_cmd(out, sizeof(out), "get", "/d/sub/", NULL), 0);
	assert_non_null(strstr(out, "stripe:     2\n"));

	/* Paths that do not name a directory. */
	assert_int_equal(layout_cmd(out, sizeof(out), "get", "/nope", NULL), 1);
	assert_non_null(strstr(out, "ENOENT"));
	assert_int_equal(layout_cmd(out, sizeof(out), "set", "/d/f", "--stripe", "1", NULL), 1);
	assert_non_null(strstr(out, "ENOTDIR"));
	assert_int_equal(layout_cmd(out, sizeof(out), "set", "d", "--stripe", "1", NULL), 1);
	assert_int_equal(layout_cmd(out, sizeof(out), "get", "/d", "--stripe", "1", NULL), 2);
	/* The root's default is visible too. */
	assert_int_equal(layout_cmd(out, sizeof(out), "get", "/", NULL), 0);
	assert_non_null(strstr(out, "table:      1\n"));
}

/* ---- dead clients ---- */

/* Creates NAME in the root for write through C and writes one chunk of
 * it to storage. Returns the inode; *session gets the session. */
static uint64_t open_and_write(meta_client *c, const char *name, uint64_t *session)
{
	struct meta_inode in;
	uint32_t perm[META_MAX_STRIPE];
	int rc = meta_client_create(c, &ROOT, META_ROOT_INO, meta_name_c(name), 0644,
				    META_O_WRITE, &in, session);
	/* Each failure says which step and why (one unexplained failure of
	 * test_dead_client_sessions left only "ino_live && ino_unmanaged"). */
	if (rc) {
		print_message("open_and_write %s: create: %s\n", name, cfs_strerror(rc));
		return 0;
	}
	meta_layout_perm(in.layout.seed, in.layout.stripe, perm);
	struct storage_loc loc = { .chain = meta_layout_chain(&in.layout, perm, 0) };
	static uint8_t data[CHUNK_LEN];
	memset(data, 0x5a, sizeof(data));
	if ((rc = storage_client_write(sto, &loc, in.ino, 0, 0, CHUNK_LEN, data, 0, NULL))) {
		print_message("open_and_write %s: write chain %u: %s\n", name, loc.chain,
			      cfs_strerror(rc));
		return 0;
	}
	struct meta_length len = { CHUNK_LEN, in.truncate_ver };
	if ((rc = meta_client_sync(c, &ROOT, in.ino, &len, 0, NULL))) {
		print_message("open_and_write %s: sync: %s\n", name, cfs_strerror(rc));
		return 0;
	}
	return in.ino;
}

/* Chains of table 1 holding a chunk of INO; -1 on a query error. */
static int chains_holding(uint64_t ino)
{
	uint32_t chains[64], n = 0;
	struct mgmtd_routing *snap = mgmtd_client_routing(obs);
	const struct route_table *t = snap ? route_find_table(mgmtd_routing_info(snap), 1) : NULL;
	for (uint32_t i = 0; t && i < t->n && n < 64; i++)
		chains[n++] = t->chains[i];
	mgmtd_routing_put(snap);
	int holding = n ? 0 : -1;
	for (uint32_t i = 0; i < n && holding >= 0; i++) {
		struct storage_loc loc = { .chain = chains[i] };
		struct sto_query_resp q;
		int rc = storage_client_query(sto, &loc, ino, 0, 1, &q);
		if (rc == 0)
			holding++;
		else if (rc != -ENOENT)
			holding = -1;
	}
	return holding;
}

static int gone(void *arg)
{
	return chains_holding(*(uint64_t *)arg) == 0;
}

/* Child mode: register as a CLIENT node, hold a write session on "victim"
 * with one chunk written, report "ino NODE" to OUT and wait to be killed. */
static int child_main(const char *mgmtd, const char *meta, const char *out)
{
	char err[256], tmp[600];
	struct mgmtd_client *mg = NULL;
	log_set_sink(NULL, NULL);
	struct mgmtd_client_opts mo = { .mgmtd_addrs = one(mgmtd), .n_mgmtd = 1,
					.cluster_id = SC_CLUSTER,
					.secret = (const uint8_t *)SC_SECRET,
					.secret_len = strlen(SC_SECRET), .type = ROUTE_NODE_CLIENT,
					.addr = "test/child", .heartbeat_ms = 200,
					.fence_ms = FENCE_MS };
	if (mgmtd_client_new(&mo, &mg, err, sizeof(err)) ||
	    mgmtd_client_wait_registered(mg, 10000)) {
		fprintf(stderr, "child: no registration: %s\n", err);
		return 1;
	}
	uint32_t node = mgmtd_client_node_id(mg);
	const char *metas[] = { meta }, *mgmtds[] = { mgmtd };
	struct meta_client_opts co = { .addrs = metas, .naddrs = 1, .cluster_id = SC_CLUSTER,
				       .secret = (const uint8_t *)SC_SECRET,
				       .secret_len = strlen(SC_SECRET), .client_id = node };
	meta_client *c = NULL;
	struct storage_client_opts so = { .cluster_id = SC_CLUSTER,
					  .secret = (const uint8_t *)SC_SECRET,
					  .secret_len = strlen(SC_SECRET), .mgmtd_addrs = mgmtds,
					  .n_mgmtd = 1, .timeout_ms = 3000,
					  .retry_budget_ms = 20000 };
	if (meta_client_new(&co, &c, err, sizeof(err)) ||
	    storage_client_new(&so, &sto, err, sizeof(err))) {
		fprintf(stderr, "child: clients: %s\n", err);
		return 1;
	}
	uint64_t session = 0;
	uint64_t ino = open_and_write(c, "victim", &session);
	if (!ino || !session) {
		fprintf(stderr, "child: open and write failed: %s\n", meta_client_last_error());
		return 1;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", out);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return 1;
	fprintf(f, "%" PRIu64 " %u\n", ino, node);
	fclose(f);
	rename(tmp, out);
	for (int i = 0; i < 600; i++) /* killed long before: 60 s at most */
		clock_sleep_ms(100);
	return 0;
}

static int read_report(void *arg)
{
	FILE *f = fopen(arg, "r");
	if (!f)
		return 0;
	fclose(f);
	return 1;
}

static int node_failed(void *arg)
{
	uint32_t id = *(uint32_t *)arg;
	struct mgmtd_routing *snap = mgmtd_client_routing(obs);
	const struct route_node *n = snap ? route_find_node(mgmtd_routing_info(snap), id) : NULL;
	int failed = n && n->state == ROUTE_NODE_FAILED;
	mgmtd_routing_put(snap);
	return failed;
}

static void test_dead_client_sessions(void **state)
{
	char err[256], report[700], clog[700];

	/* This process is a live CLIENT node holding a session too. */
	struct mgmtd_client *me = NULL;
	struct mgmtd_client_opts mo = { .mgmtd_addrs = one(sc.mgmtd_addr), .n_mgmtd = 1,
					.cluster_id = SC_CLUSTER,
					.secret = (const uint8_t *)SC_SECRET,
					.secret_len = strlen(SC_SECRET), .type = ROUTE_NODE_CLIENT,
					.addr = "test/parent", .heartbeat_ms = 200,
					.fence_ms = FENCE_MS };
	assert_int_equal(mgmtd_client_new(&mo, &me, err, sizeof(err)), 0);
	assert_int_equal(mgmtd_client_wait_registered(me, 10000), 0);
	struct meta_client_opts co = { .addrs = one(meta_addr), .naddrs = 1,
				       .cluster_id = SC_CLUSTER,
				       .secret = (const uint8_t *)SC_SECRET,
				       .secret_len = strlen(SC_SECRET),
				       .client_id = mgmtd_client_node_id(me) };
	meta_client *live = NULL, *ghost = NULL;
	assert_int_equal(meta_client_new(&co, &live, err, sizeof(err)), 0);
	/* A managed-range id mgmtd never listed (the race of a client that
	 * registered after meta's snapshot, frozen). */
	co.client_id = ROUTE_NODE_ID_MAX;
	assert_int_equal(meta_client_new(&co, &ghost, err, sizeof(err)), 0);
	assert_true(meta_client_id(mc) > META_CLIENT_NODE_MAX);

	uint64_t s_live, s_unmanaged, s_ghost;
	uint64_t ino_live = open_and_write(live, "alive", &s_live);
	uint64_t ino_unmanaged = open_and_write(mc, "unmanaged", &s_unmanaged);
	assert_true(ino_live && ino_unmanaged);
	assert_int_equal(meta_client_unlink(live, &ROOT, META_ROOT_INO, meta_name_c("alive")), 0);
	assert_int_equal(meta_client_unlink(mc, &ROOT, META_ROOT_INO, meta_name_c("unmanaged")),
			 0);

	/* The ghost's session survives at least a second (grace 2 s), then
	 * goes and GC takes the file. */
	uint64_t t_ghost = clock_mono_ms();
	uint64_t ino_ghost = open_and_write(ghost, "ghost", &s_ghost);
	assert_true(ino_ghost);
	assert_int_equal(meta_client_unlink(ghost, &ROOT, META_ROOT_INO, meta_name_c("ghost")), 0);
	clock_sleep_ms(1000);
	if (clock_mono_ms() - t_ghost < 1800) /* only meaningful inside the grace */
		assert_int_equal(chains_holding(ino_ghost), 1);
	assert_true(testenv_wait(gone, &ino_ghost, WAIT_MS));
	assert_true(clock_mono_ms() - t_ghost >= 2 * FENCE_MS);

	/* The child: a managed client that dies. */
	snprintf(report, sizeof(report), "%s/child.report", sc.dir);
	snprintf(clog, sizeof(clog), "%s/child.log", sc.dir);
	char *argv[] = { self_exe, "--child", sc.mgmtd_addr, meta_addr, report, NULL };
	pid_t child = testenv_spawn(argv, clog);
	assert_true(testenv_wait(read_report, report, WAIT_MS));
	uint64_t ino_victim = 0;
	uint32_t node = 0;
	FILE *f = fopen(report, "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%" SCNu64 " %u", &ino_victim, &node), 2);
	fclose(f);
	assert_true(ino_victim && node);
	assert_int_equal(chains_holding(ino_victim), 1);
	testenv_kill(child, SIGKILL);
	uint64_t t_kill = clock_mono_ms();
	assert_int_equal(meta_client_unlink(mc, &ROOT, META_ROOT_INO, meta_name_c("victim")), 0);
	/* Before mgmtd can have failed the node (its last heartbeat was at
	 * most 200 ms before the kill), the session holds GC. */
	clock_sleep_ms(800);
	if (clock_mono_ms() - t_kill < T_MS - 500)
		assert_int_equal(chains_holding(ino_victim), 1);
	assert_true(testenv_wait(node_failed, &node, WAIT_MS));
	assert_true(testenv_wait(gone, &ino_victim, WAIT_MS));
	assert_true(testenv_file_has(meta_log, "session prune: dropped="));

	/* The live and the unmanaged sessions were kept through all that. */
	assert_int_equal(chains_holding(ino_live), 1);
	assert_int_equal(chains_holding(ino_unmanaged), 1);
	struct meta_length len = { CHUNK_LEN, 0 };
	assert_int_equal(meta_client_close(live, &ROOT, ino_live, s_live, &len), 0);
	assert_true(testenv_wait(gone, &ino_live, WAIT_MS));
	assert_int_equal(chains_holding(ino_unmanaged), 1);
	assert_int_equal(meta_client_close(mc, &ROOT, ino_unmanaged, s_unmanaged, &len), 0);
	assert_true(testenv_wait(gone, &ino_unmanaged, WAIT_MS));

	meta_client_free(ghost);
	meta_client_free(live);
	mgmtd_client_free(me);
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "--child"))
		return child_main(argv[2], argv[3], argv[4]);
	ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	if (n <= 0)
		return 1;
	self_exe[n] = 0;
	log_set_sink(NULL, NULL);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_dead_client_sessions),
	};
	int rc = cmocka_run_group_tests(tests, setup, teardown);
	testenv_cleanup();
	return rc;
}
