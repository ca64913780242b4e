/* test_mgmtd_integ.c - `chainfs mgmtd` as a real process on 127.0.0.1.
 *
 * Each test starts its own mgmtd(s) on an lmdb store in a private tmp dir
 * (heartbeat timeout T = 2 s, fence = T/2, lease 1 s), drives it through
 * `chainfs admin` and fake nodes (mgmtd_client in this process), and stops
 * every process it started by pid. Scenarios:
 *   node_failure   create a table (R=3) over 3 fake storage nodes; stop a
 *                  node's heartbeats: after T its targets go offline and
 *                  the chain versions bump; an admin change reaches a
 *                  long-poll within ~1 s; the node returns reporting
 *                  ONLINE (-> syncing) then UPTODATE (-> serving)
 *   restart        kill -9 mgmtd and restart it: state comes back from the
 *                  KV store, nodes keep heartbeating, nothing is failed
 *   election       two mgmtds on one store: one primary, the other
 *                  redirects; kill -9 the primary: the standby takes over
 *                  after the lease and the clients follow
 *   fencing        SIGSTOP mgmtd: the client is fenced after T/2; SIGCONT:
 *                  unfenced, and mgmtd did not fail the paused-for node
 *   admin_errors   unreachable mgmtd, unknown target, no cluster init
 * Built a second time with MGMTD_TEST_ETCD as test_mgmtd_etcd: restart and
 * election again, on a real one-member etcd cluster (tests/kv/etcd_cluster.h)
 * instead of lmdb; it exits 77 when no etcd binary is installed.
 * Every wait is bounded; timings allow for ASan builds on a shared box.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "mgmtd/mgmtd_client.h"
#include "mgmtd/mgmtd_conn.h"
#include "mgmtd/mgmtd_proto.h"
#include "common/wire.h"
#include "net/rpc_proto.h"
#include "testenv.h"
#ifdef MGMTD_TEST_ETCD
#include "etcd_cluster.h"
static struct etcd_cluster *etcd;
#endif

#define T_MS     2000
#define FENCE_MS (T_MS / 2)
#define CLUSTER  "itest"
#define SECRET   "0123456789abcdef0123456789abcdef"

struct env {
	char *dir;
	char secret_path[512];
	char kv_url[600];
};

struct mgmtd_proc {
	pid_t pid;
	uint16_t port;
	char addr[32];
	char log[600];
};

static void env_init(struct env *e, const char *tag)
{
	e->dir = testenv_tmpdir(tag);
	testenv_write_secret(e->dir, SECRET, e->secret_path, sizeof(e->secret_path));
#ifdef MGMTD_TEST_ETCD
	static int seq;
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "%s%d", tag, ++seq);
	etcd_cluster_url(etcd, prefix, NULL, e->kv_url, sizeof(e->kv_url));
#else
	snprintf(e->kv_url, sizeof(e->kv_url), "lmdb://%s/kv", e->dir);
#endif
}

static void mgmtd_spawn(struct env *e, struct mgmtd_proc *m, uint16_t port)
{
	char hb[16];
	m->port = port ? port : testenv_free_port();
	snprintf(m->addr, sizeof(m->addr), "127.0.0.1:%u", m->port);
	snprintf(m->log, sizeof(m->log), "%s/mgmtd-%u.log", e->dir, m->port);
	snprintf(hb, sizeof(hb), "%ums", T_MS);
	char *argv[] = {(char *)testenv_chainfs(),
	                "mgmtd",
	                "--kv",
	                e->kv_url,
	                "--listen",
	                m->addr,
	                "--cluster-id",
	                CLUSTER,
	                "--secret-file",
	                e->secret_path,
	                "--heartbeat-timeout",
	                hb,
	                "--lease",
	                "1s",
	                "--log-level",
	                "info",
	                NULL};
	m->pid = testenv_spawn(argv, m->log);
}

static void mgmtd_start(struct env *e, struct mgmtd_proc *m, uint16_t port)
{
	mgmtd_spawn(e, m, port);
	uint64_t deadline = clock_mono_ms() + 10000;
	while (!testenv_port_open(m->port) && clock_mono_ms() < deadline)
		clock_sleep_ms(20);
	assert_true(testenv_port_open(m->port));
}

/* Stops M with SIG; after SIGTERM it must exit cleanly (status 0: no
 * sanitizer report, lease released). */
static void mgmtd_stop(struct mgmtd_proc *m, int sig)
{
	int st = m->pid > 0 ? testenv_kill(m->pid, sig) : 0;
	m->pid = 0;
	if (sig == SIGTERM) {
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			print_message("mgmtd exit status %d; log %s\n", st, m->log);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
}

static void env_fini(struct env *e)
{
	free(e->dir);
	e->dir = NULL;
}

/* Runs `chainfs admin CMD --mgmtd ADDRS ... EXTRA...` with its output in
 * OUT (may be NULL); returns the exit status (-1 if it did not exit in
 * 20 s, then it is killed). */
static int admin(struct env *e, const char *addrs, char *out, size_t outlen, const char *cmd, ...)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/admin.out", e->dir);
	struct testenv_admin a = { .mgmtd = addrs, .cluster_id = CLUSTER,
				   .secret_path = e->secret_path, .log = path };
#ifdef MGMTD_TEST_ETCD
	/* On etcd a fresh mgmtd's election (lease grant, campaign, state
	 * load) and each admin write are etcd round trips with fsyncs: at
	 * load 40 they passed admin's 3 s default and init-cluster exited 1
	 * ("not primary ... election under way"). mgmtd_conn waits for the
	 * election until this deadline; refusals still end at once. */
	a.timeout_ms = "15000";
#endif
	va_list ap;
	va_start(ap, cmd);
	int st = testenv_admin_v(&a, out, outlen, cmd, ap);
	va_end(ap);
	if (st) { /* say why in the test output */
		char cmdl[800];
		snprintf(cmdl, sizeof(cmdl), "sed 's/^/admin %s: /' %s >&2", cmd, path);
		if (system(cmdl) != 0)
			fprintf(stderr, "admin %s: no output\n", cmd);
	}
	return st;
}

/* ---- fake nodes ---- */

struct fence_log {
	atomic_int fenced_calls, unfenced_calls;
};

static void on_fence(void *arg, bool fenced)
{
	struct fence_log *fl = arg;
	if (fl)
		atomic_fetch_add(fenced ? &fl->fenced_calls : &fl->unfenced_calls, 1);
}

/* A storage node with NT targets in local state LS. */
static struct mgmtd_client *node_start(const char *const *addrs, size_t n_addrs, uint32_t id,
                                       uint32_t nt, enum chain_local_state ls, struct fence_log *fl)
{
	struct mgmtd_target_report t[8];
	char self[32], err[256];
	snprintf(self, sizeof(self), "127.0.0.1:%u", 20000 + id);
	for (uint32_t i = 0; i < nt; i++)
		t[i] = (struct mgmtd_target_report){i + 1, ls, 1ull << 30, 0};
	struct mgmtd_client_opts o = {
	    .mgmtd_addrs = addrs,
	    .n_mgmtd = n_addrs,
	    .cluster_id = CLUSTER,
	    .secret = (const uint8_t *)SECRET,
	    .secret_len = strlen(SECRET),
	    .type = ROUTE_NODE_STORAGE,
	    .node_id = id,
	    .addr = self,
	    .heartbeat_ms = 200,
	    .fence_ms = FENCE_MS,
	    .poll_wait_ms = 1000,
	    .targets = t,
	    .n_targets = nt,
	    .on_fence = on_fence,
	    .cb_arg = fl,
	};
	struct mgmtd_client *c = NULL;
	assert_int_equal(mgmtd_client_new(&o, &c, err, sizeof(err)), 0);
	return c;
}

static void set_all(struct mgmtd_client *c, uint32_t nt, enum chain_local_state ls)
{
	struct mgmtd_target_report t[8];
	for (uint32_t i = 0; i < nt; i++)
		t[i] = (struct mgmtd_target_report){i + 1, ls, 1ull << 30, 0};
	assert_int_equal(mgmtd_client_set_targets(c, t, nt), 0);
}

struct observer {
	struct mgmtd_client *c;
	atomic_uint_fast64_t last_change_ms; /* when on_routing last ran */
};

static void on_routing(void *arg, struct mgmtd_routing *snap)
{
	struct observer *ob = arg;
	assert_non_null(mgmtd_routing_info(snap));
	atomic_store(&ob->last_change_ms, clock_mono_ms());
}

static void observer_start(struct observer *ob, const char *const *addrs, size_t n)
{
	char err[256];
	struct mgmtd_client_opts o = {
	    .mgmtd_addrs = addrs,
	    .n_mgmtd = n,
	    .cluster_id = CLUSTER,
	    .secret = (const uint8_t *)SECRET,
	    .secret_len = strlen(SECRET),
	    .poll_wait_ms = 1000,
	    .on_routing = on_routing,
	    .cb_arg = ob,
	};
	atomic_init(&ob->last_change_ms, 0);
	assert_int_equal(mgmtd_client_new(&o, &ob->c, err, sizeof(err)), 0);
	assert_false(mgmtd_client_fenced(ob->c)); /* no node type: never fenced */
}

/* Waits until PRED holds on the observer's routing. */
typedef bool (*route_pred)(const struct route_info *ri, const void *arg);

struct wait_ctx {
	struct observer *ob;
	route_pred pred;
	const void *arg;
};

static int wait_cond(void *arg)
{
	struct wait_ctx *w = arg;
	struct mgmtd_routing *s = mgmtd_client_routing(w->ob->c);
	bool ok = s && w->pred(mgmtd_routing_info(s), w->arg);
	mgmtd_routing_put(s);
	return ok;
}

static int wait_routing(struct observer *ob, route_pred pred, const void *arg, int timeout_ms)
{
	struct wait_ctx w = {ob, pred, arg};
	return testenv_wait(wait_cond, &w, timeout_ms);
}

static bool node_in_state(const struct route_info *ri, const void *arg)
{
	const uint32_t *a = arg; /* {node id, state} */
	const struct route_node *n = route_find_node(ri, a[0]);
	return n && n->state == a[1];
}

static bool chains_count(const struct route_info *ri, const void *arg)
{
	return ri->n_chains == *(const size_t *)arg;
}

/* Every chain has its member on node A[0] in public state A[1]. */
static bool node_targets_in(const struct route_info *ri, const void *arg)
{
	const uint32_t *a = arg;
	if (!ri->n_chains)
		return false;
	for (size_t i = 0; i < ri->n_chains; i++)
		for (uint32_t k = 0; k < ri->chains[i].n; k++) {
			const struct route_target *t =
			    route_find_target(ri, ri->chains[i].m[k].target_id);
			if (t->node_id == a[0] && ri->chains[i].m[k].state != a[1])
				return false;
		}
	return true;
}

/* Target A[0] is in public state A[1]. */
static bool target_in(const struct route_info *ri, const void *arg)
{
	const uint32_t *a = arg;
	const struct route_target *t = route_find_target(ri, a[0]);
	return t && t->pub_state == a[1];
}

static bool version_above(const struct route_info *ri, const void *arg)
{
	return ri->version > *(const uint64_t *)arg;
}

static struct route_info *snapshot_copy(struct observer *ob, struct mgmtd_routing **hold)
{
	*hold = mgmtd_client_routing(ob->c);
	assert_non_null(*hold);
	return (struct route_info *)mgmtd_routing_info(*hold);
}

static int registered(void *arg)
{
	return mgmtd_client_node_id(arg) != 0 && !mgmtd_client_fenced(arg);
}

/* ---- tests ---- */

static void test_node_failure(void **state)
{
	struct env e;
	struct mgmtd_proc m = {0};
	struct observer ob;
	char out[8192];
	env_init(&e, "mgmtd-fail");
	mgmtd_start(&e, &m, 0);
	const char *addrs[] = {m.addr};
	assert_int_equal(admin(&e, m.addr, out, sizeof(out), "init-cluster", NULL), 0);
	assert_non_null(strstr(out, "initialised"));

	struct mgmtd_client *n[3];
	for (int i = 0; i < 3; i++)
		n[i] = node_start(addrs, 1, 0, 2, CHAIN_LS_UPTODATE, NULL);
	for (int i = 0; i < 3; i++)
		assert_true(testenv_wait(registered, n[i], 10000));
	uint32_t id3 = mgmtd_client_node_id(n[2]);
	assert_int_not_equal(id3, mgmtd_client_node_id(n[0]));

	assert_int_equal(
	    admin(&e, m.addr, out, sizeof(out), "create-chain-table", "--replicas", "3", NULL), 0);
	assert_non_null(strstr(out, "2 chains"));
	assert_non_null(strstr(out, "#")); /* balance figures */
	/* No free targets left: a second table is refused with a reason. */
	assert_int_equal(
	    admin(&e, m.addr, out, sizeof(out), "create-chain-table", "--replicas", "3", NULL), 1);
	assert_non_null(strstr(out, "chain table"));

	observer_start(&ob, addrs, 1);
	size_t two = 2;
	assert_true(wait_routing(&ob, chains_count, &two, 5000));
	uint32_t serving3[2] = {id3, CHAIN_PS_SERVING};
	assert_true(wait_routing(&ob, node_targets_in, serving3, 5000));
	struct mgmtd_routing *hold;
	struct route_info *ri = snapshot_copy(&ob, &hold);
	uint32_t v0[2] = {ri->chains[0].version, ri->chains[1].version};
	assert_int_equal(ri->chains[0].n, 3);
	mgmtd_routing_put(hold);
	assert_int_equal(admin(&e, m.addr, out, sizeof(out), "list-chains", NULL), 0);
	assert_non_null(strstr(out, "serving"));

	/* Node 3 stops heartbeating. */
	uint64_t t0 = clock_mono_ms();
	mgmtd_client_free(n[2]);
	uint32_t failed3[2] = {id3, ROUTE_NODE_FAILED};
	assert_true(wait_routing(&ob, node_in_state, failed3, T_MS + 5000));
	uint64_t dt = clock_mono_ms() - t0;
	assert_true(dt >= T_MS - 300); /* not before its lease ran out */
	uint32_t offline3[2] = {id3, CHAIN_PS_OFFLINE};
	assert_true(wait_routing(&ob, node_targets_in, offline3, 2000));
	ri = snapshot_copy(&ob, &hold);
	assert_true(ri->chains[0].version > v0[0]);
	assert_true(ri->chains[1].version > v0[1]);
	/* Failed targets move to the end of their chains. */
	for (int c = 0; c < 2; c++)
		assert_int_equal(route_target_node(ri->chains[c].m[2].target_id), id3);
	mgmtd_routing_put(hold);

	/* Node 3 comes back: ONLINE -> syncing, then UPTODATE -> serving. */
	n[2] = node_start(addrs, 1, id3, 2, CHAIN_LS_ONLINE, NULL);
	assert_true(testenv_wait(registered, n[2], 10000));
	assert_int_equal(mgmtd_client_node_id(n[2]), id3);
	uint32_t syncing3[2] = {id3, CHAIN_PS_SYNCING};
	assert_true(wait_routing(&ob, node_targets_in, syncing3, 5000));
	set_all(n[2], 2, CHAIN_LS_UPTODATE);
	assert_true(wait_routing(&ob, node_targets_in, serving3, 5000));
	/* The returning node's targets are the tails now. */
	ri = snapshot_copy(&ob, &hold);
	for (int c = 0; c < 2; c++)
		assert_int_equal(route_target_node(ri->chains[c].m[2].target_id), id3);
	uint64_t rv = ri->version;
	mgmtd_routing_put(hold);

	/* Maintenance: an operator takes a target of node 1 offline. The
	 * change reaches a waiting long-poll within about a second. */
	uint32_t id1 = mgmtd_client_node_id(n[0]), t11 = route_target_id(id1, 1);
	char tid[16];
	snprintf(tid, sizeof(tid), "%u", t11);
	uint64_t t1 = clock_mono_ms();
	assert_int_equal(admin(&e, m.addr, out, sizeof(out), "set-target-offline", tid, NULL), 0);
	uint64_t t2 = clock_mono_ms();
	assert_true(wait_routing(&ob, version_above, &rv, 3000));
	uint64_t seen = atomic_load(&ob.last_change_ms);
	assert_true(seen >= t1);
	assert_true(seen <= t2 + 1000);
	print_message("admin change seen by a long-poll %lld ms after the command returned\n",
	              (long long)seen - (long long)t2);
	uint32_t t11_off[2] = {t11, CHAIN_PS_OFFLINE};
	assert_true(wait_routing(&ob, target_in, t11_off, 2000));
	/* Its node keeps reporting UPTODATE, but the operator's word wins. */
	clock_sleep_ms(500);
	assert_true(wait_routing(&ob, target_in, t11_off, 100));
	/* Back online: UPTODATE from an offline target is not trusted (it
	 * waits); the storage service drops to ONLINE, the target syncs, and
	 * serves once it reports UPTODATE again. */
	assert_int_equal(admin(&e, m.addr, out, sizeof(out), "set-target-online", tid, NULL), 0);
	uint32_t t11_wait[2] = {t11, CHAIN_PS_WAITING};
	assert_true(wait_routing(&ob, target_in, t11_wait, 3000));
	struct mgmtd_target_report r1[2] = {{1, CHAIN_LS_ONLINE, 1ull << 30, 0},
	                                    {2, CHAIN_LS_UPTODATE, 1ull << 30, 0}};
	assert_int_equal(mgmtd_client_set_targets(n[0], r1, 2), 0);
	uint32_t t11_sync[2] = {t11, CHAIN_PS_SYNCING};
	assert_true(wait_routing(&ob, target_in, t11_sync, 3000));
	r1[0].local_state = CHAIN_LS_UPTODATE;
	assert_int_equal(mgmtd_client_set_targets(n[0], r1, 2), 0);
	uint32_t t11_srv[2] = {t11, CHAIN_PS_SERVING};
	assert_true(wait_routing(&ob, target_in, t11_srv, 3000));
	assert_int_equal(admin(&e, m.addr, out, sizeof(out), "set-target-offline", "999999", NULL),
	                 1);
	assert_non_null(strstr(out, "no such target"));

	assert_int_equal(admin(&e, m.addr, out, sizeof(out), "list-nodes", NULL), 0);
	assert_non_null(strstr(out, "storage"));
	assert_int_equal(admin(&e, m.addr, out, sizeof(out), "list-targets", NULL), 0);
	assert_non_null(strstr(out, "uptodate"));
	assert_int_equal(admin(&e, m.addr, out, sizeof(out), "list-chain-tables", NULL), 0);
	assert_non_null(strstr(out, "1000001..1000002"));

	mgmtd_client_free(ob.c);
	for (int i = 0; i < 3; i++)
		mgmtd_client_free(n[i]);
	mgmtd_stop(&m, SIGTERM);
	env_fini(&e);
}

static void test_restart(void **state)
{
	struct env e;
	struct mgmtd_proc m = {0};
	struct observer ob;
	char out[8192];
	env_init(&e, "mgmtd-restart");
	mgmtd_start(&e, &m, 0);
	const char *addrs[] = {m.addr};
	assert_int_equal(admin(&e, m.addr, out, sizeof(out), "init-cluster", NULL), 0);
	struct mgmtd_client *n[2];
	for (int i = 0; i < 2; i++)
		n[i] = node_start(addrs, 1, 0, 1, CHAIN_LS_UPTODATE, NULL);
	for (int i = 0; i < 2; i++)
		assert_true(testenv_wait(registered, n[i], 10000));
	assert_int_equal(
	    admin(&e, m.addr, out, sizeof(out), "create-chain-table", "--replicas", "2", NULL), 0);
	observer_start(&ob, addrs, 1);
	size_t one = 1;
	assert_true(wait_routing(&ob, chains_count, &one, 5000));
	struct mgmtd_routing *hold;
	struct route_info *ri = snapshot_copy(&ob, &hold);
	uint64_t v_before = ri->version;
	uint32_t cv_before = ri->chains[0].version;
	mgmtd_routing_put(hold);

	mgmtd_stop(&m, SIGKILL);
	clock_sleep_ms(300);
	mgmtd_start(&e, &m, m.port);
	/* The new instance bumps the version on takeover; state is the same. */
	assert_true(wait_routing(&ob, version_above, &v_before, 10000));
	ri = snapshot_copy(&ob, &hold);
	assert_int_equal(ri->n_nodes, 2);
	assert_int_equal(ri->n_chains, 1);
	assert_int_equal(ri->n_tables, 1);
	assert_int_equal(ri->chains[0].version, cv_before);
	mgmtd_routing_put(hold);
	/* The nodes keep heartbeating: after more than T nobody failed. */
	for (int i = 0; i < 2; i++)
		assert_true(testenv_wait(registered, n[i], 10000));
	clock_sleep_ms(T_MS + 500);
	for (int i = 0; i < 2; i++) {
		uint32_t active[2] = {mgmtd_client_node_id(n[i]), ROUTE_NODE_ACTIVE};
		assert_true(wait_routing(&ob, node_in_state, active, 100));
	}
	ri = snapshot_copy(&ob, &hold);
	assert_int_equal(ri->chains[0].version, cv_before);
	mgmtd_routing_put(hold);

	mgmtd_client_free(ob.c);
	for (int i = 0; i < 2; i++)
		mgmtd_client_free(n[i]);
	mgmtd_stop(&m, SIGTERM);
	env_fini(&e);
}

struct conn_call {
	struct mgmtd_conn *c;
	char primary[ROUTE_ADDR_MAX + 1];
};

static struct mgmtd_conn *conn_new(const char *const *addrs, size_t n)
{
	struct mgmtd_conn_opts o = {addrs,          n,  CLUSTER, (const uint8_t *)SECRET,
	                            strlen(SECRET), 500, 0};
	struct mgmtd_conn *c = NULL;
	char err[256];
	assert_int_equal(mgmtd_conn_new(&o, &c, err, sizeof(err)), 0);
	return c;
}

static int conn_ok(void *arg)
{
	struct conn_call *cc = arg;
	struct mgmtd_routing_req q = {0, 0};
	struct buf req = BUF_INIT, resp = BUF_INIT;
	mgmtd_routing_req_encode(&req, &q);
	int rc = mgmtd_conn_call(cc->c, RPC_MSG_MGMTD_GET_ROUTING, req.data, (uint32_t)req.len, 0,
	                         &resp, NULL, 0);
	buf_fini(&req);
	buf_fini(&resp);
	if (!rc)
		mgmtd_conn_primary(cc->c, cc->primary);
	return rc == 0;
}

static void test_election(void **state)
{
	struct env e;
	struct mgmtd_proc a = {0}, b = {0};
	char out[8192];
	env_init(&e, "mgmtd-elect");
	mgmtd_start(&e, &a, 0);
	mgmtd_start(&e, &b, 0);
	const char *both[] = {a.addr, b.addr};

	/* Through B alone: B redirects to A (the first to start), or A is
	 * reached through B's redirect either way. */
	struct conn_call ca = {conn_new(both, 1), ""}, cb = {conn_new(both + 1, 1), ""};
	assert_true(testenv_wait(conn_ok, &ca, 10000));
	assert_true(testenv_wait(conn_ok, &cb, 10000));
	assert_string_equal(ca.primary, cb.primary); /* one primary, reached both ways */
	bool a_primary = !strcmp(ca.primary, a.addr);
	assert_true(a_primary || !strcmp(ca.primary, b.addr));
	/* The admin command follows the redirect too, and says who's who. */
	assert_int_equal(
	    admin(&e, a_primary ? b.addr : a.addr, out, sizeof(out), "init-cluster", NULL), 0);

	struct fence_log fl = {0};
	struct mgmtd_client *n = node_start(both, 2, 0, 1, CHAIN_LS_UPTODATE, &fl);
	assert_true(testenv_wait(registered, n, 10000));
	uint32_t id = mgmtd_client_node_id(n);

	/* Kill -9 the primary: the standby takes over once the lease lapses. */
	struct mgmtd_proc *dead = a_primary ? &a : &b, *alive = a_primary ? &b : &a;
	uint64_t t0 = clock_mono_ms();
	mgmtd_stop(dead, SIGKILL);
	struct conn_call cs = {conn_new((const char *const[]){alive->addr}, 1), ""};
	assert_true(testenv_wait(conn_ok, &cs, 10000));
	uint64_t takeover = clock_mono_ms() - t0;
	assert_string_equal(cs.primary, alive->addr);
	assert_true(takeover < 6000);
	/* The node follows: unfenced, still itself, still active. */
	assert_true(testenv_wait(registered, n, 10000));
	assert_int_equal(mgmtd_client_node_id(n), id);
	struct observer ob;
	observer_start(&ob, both, 2);
	uint32_t active[2] = {id, ROUTE_NODE_ACTIVE};
	assert_true(wait_routing(&ob, node_in_state, active, 5000));
	print_message("takeover after kill -9: %llu ms (lease 1 s)\n",
	              (unsigned long long)takeover);

	mgmtd_client_free(ob.c);
	mgmtd_client_free(n);
	mgmtd_conn_free(ca.c);
	mgmtd_conn_free(cb.c);
	mgmtd_conn_free(cs.c);
	mgmtd_stop(alive, SIGTERM);
	env_fini(&e);
}

static int is_fenced(void *arg)
{
	return mgmtd_client_fenced(arg);
}
static int fenced_cb(void *arg)
{
	return atomic_load(&((struct fence_log *)arg)->fenced_calls) > 0;
}
static int unfenced_cb1(void *arg)
{
	return atomic_load(&((struct fence_log *)arg)->unfenced_calls) >= 1;
}
static int unfenced_cb2(void *arg)
{
	return atomic_load(&((struct fence_log *)arg)->unfenced_calls) >= 2;
}

static void test_fencing(void **state)
{
	struct env e;
	struct mgmtd_proc m = {0};
	char out[4096];
	env_init(&e, "mgmtd-fence");
	mgmtd_start(&e, &m, 0);
	const char *addrs[] = {m.addr};
	assert_int_equal(admin(&e, m.addr, out, sizeof(out), "init-cluster", NULL), 0);
	struct fence_log fl = {0};
	struct mgmtd_client *n = node_start(addrs, 1, 0, 1, CHAIN_LS_UPTODATE, &fl);
	assert_true(testenv_wait(registered, n, 10000));
	assert_true(testenv_wait(unfenced_cb1, &fl, 2000));
	assert_int_equal(atomic_load(&fl.unfenced_calls), 1);
	assert_int_equal(atomic_load(&fl.fenced_calls), 0);
	uint32_t id = mgmtd_client_node_id(n);

	uint64_t t0 = clock_mono_ms();
	assert_int_equal(testenv_stop(m.pid), 0);
	assert_true(testenv_wait(is_fenced, n, FENCE_MS + 3000));
	uint64_t dt = clock_mono_ms() - t0;
	assert_true(dt >= FENCE_MS - 250); /* the last heartbeat was < 200 ms before */
	assert_true(testenv_wait(fenced_cb, &fl, 2000));
	print_message("fenced %llu ms after SIGSTOP (fence %u ms)\n", (unsigned long long)dt,
	              FENCE_MS);
	kill(m.pid, SIGCONT);
	assert_true(testenv_wait(unfenced_cb2, &fl, 5000));
	assert_false(mgmtd_client_fenced(n));

	/* mgmtd was paused for longer than T/2 but does not blame the node. */
	struct observer ob;
	observer_start(&ob, addrs, 1);
	uint32_t active[2] = {id, ROUTE_NODE_ACTIVE};
	assert_true(wait_routing(&ob, node_in_state, active, 5000));
	clock_sleep_ms(500);
	assert_true(wait_routing(&ob, node_in_state, active, 100));

	mgmtd_client_free(ob.c);
	mgmtd_client_free(n);
	mgmtd_stop(&m, SIGTERM);
	env_fini(&e);
}

static void test_admin_errors(void **state)
{
	struct env e;
	struct mgmtd_proc m = {0};
	char out[4096], dead[32];
	env_init(&e, "mgmtd-adminerr");
	snprintf(dead, sizeof(dead), "127.0.0.1:%u", testenv_free_port());
	assert_int_equal(admin(&e, dead, out, sizeof(out), "list-nodes", NULL), 1);
	assert_non_null(strstr(out, "cannot reach mgmtd"));

	mgmtd_start(&e, &m, 0);
	const char *addrs[] = {m.addr};
	/* Registration before init-cluster is refused; the client keeps trying. */
	struct mgmtd_client *n = node_start(addrs, 1, 0, 1, CHAIN_LS_UPTODATE, NULL);
	clock_sleep_ms(500);
	assert_int_equal(mgmtd_client_node_id(n), 0);
	assert_true(mgmtd_client_fenced(n));
	assert_int_equal(admin(&e, m.addr, out, sizeof(out), "init-cluster", NULL), 0);
	assert_true(testenv_wait(registered, n, 10000));
	assert_int_equal(admin(&e, m.addr, out, sizeof(out), "create-chain-table", NULL), 2);
	assert_int_equal(admin(&e, m.addr, out, sizeof(out), "set-target-offline", "abc", NULL), 2);
	assert_int_equal(admin(&e, m.addr, out, sizeof(out), "routing-version", NULL), 0);
	assert_true(strtoull(out, NULL, 10) >= 1);
	mgmtd_client_free(n);
	mgmtd_stop(&m, SIGTERM);
	env_fini(&e);
}

/* One raw REGISTER of a storage node at ADDR with node id 0; the id mgmtd
 * gave, or 0. */
static uint32_t raw_register(struct mgmtd_conn *mc, const char *addr, uint64_t incarnation)
{
	struct mgmtd_target_report t = {1, CHAIN_LS_UPTODATE, 1ull << 30, 0};
	struct mgmtd_register_req q = {ROUTE_NODE_STORAGE, 0, addr, (uint32_t)strlen(addr), 1, &t,
	                               incarnation};
	struct buf req = BUF_INIT, resp = BUF_INIT;
	char err[256];
	assert_int_equal(mgmtd_register_encode(&req, &q), 0);
	int rc = mgmtd_conn_call(mc, RPC_MSG_MGMTD_REGISTER, req.data, (uint32_t)req.len, 5000, &resp,
	                         err, sizeof(err));
	uint32_t id = rc == 0 && resp.len >= 4 ? wire_load_u32(resp.data) : 0;
	buf_fini(&req);
	buf_fini(&resp);
	return id;
}

/* A REGISTER retried after its reply was lost (a timeout under load) gets
 * the node id the first one was given, not a second node with the same
 * targets; another process (another incarnation) gets its own id. */
static void test_register_retry(void **state)
{
	struct env e;
	struct mgmtd_proc m = {0};
	char out[4096], err[256];
	env_init(&e, "mgmtd-regretry");
	mgmtd_start(&e, &m, 0);
	assert_int_equal(admin(&e, m.addr, out, sizeof(out), "init-cluster", NULL), 0);
	const char *addrs[] = {m.addr};
	struct mgmtd_conn_opts co = {.addrs = addrs, .n_addrs = 1, .cluster_id = CLUSTER,
	                             .secret = (const uint8_t *)SECRET, .secret_len = strlen(SECRET)};
	struct mgmtd_conn *mc = NULL;
	assert_int_equal(mgmtd_conn_new(&co, &mc, err, sizeof(err)), 0);
	uint32_t a = raw_register(mc, "127.0.0.1:20101", 0x1111);
	assert_true(a != 0);
	assert_int_equal(raw_register(mc, "127.0.0.1:20101", 0x1111), a);
	uint32_t b = raw_register(mc, "127.0.0.1:20102", 0x2222);
	assert_true(b != 0 && b != a);
	/* An older peer sends no incarnation: each try is a new node, as before. */
	uint32_t c = raw_register(mc, "127.0.0.1:20103", 0);
	uint32_t d = raw_register(mc, "127.0.0.1:20103", 0);
	assert_true(c != 0 && d != 0 && c != d && c != a && c != b);
	assert_int_equal(admin(&e, m.addr, out, sizeof(out), "list-nodes", NULL), 0);
	mgmtd_conn_free(mc);
	mgmtd_stop(&m, SIGTERM);
	env_fini(&e);
}

#ifdef MGMTD_TEST_ETCD
/* SIGTERM stops mgmtd within a bound while it is cut off from etcd (the
 * only member frozen: connections hang, as in a partition): its KV calls
 * would otherwise fail over and retry for minutes (issue 16). Primary
 * first, then a fresh instance that never reached etcd at all. */
static void test_stop_cut_off(void **state)
{
	struct env e;
	struct mgmtd_proc m = {0};
	char out[8192];
	(void)state;
	env_init(&e, "mgmtd-stopcut");
	for (int round = 0; round < 2; round++) {
		if (round == 0) {
			mgmtd_start(&e, &m, 0);
			assert_int_equal(admin(&e, m.addr, out, sizeof(out), "init-cluster", NULL), 0);
			assert_int_equal(etcd_cluster_pause(etcd, 0, 1), 0);
		} else {
			/* Paused before the start: its KV open hangs. */
			assert_int_equal(etcd_cluster_pause(etcd, 0, 1), 0);
			mgmtd_spawn(&e, &m, 0);
		}
		/* Long enough for the worker to sit inside a hanging KV call. */
		clock_sleep_ms(1500);
		uint64_t t0 = clock_mono_ms();
		int st = testenv_kill(m.pid, SIGTERM);
		uint64_t took = clock_mono_ms() - t0;
		m.pid = 0;
		assert_int_equal(etcd_cluster_pause(etcd, 0, 0), 0);
		print_message("round %d: mgmtd stopped %llu ms after SIGTERM (status %d)\n", round,
		              (unsigned long long)took, st);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		/* The stop waits STOP_KV_GRACE_MS (1 s), then kv_cancel ends
		 * the hanging call within about a second: 1.6-1.9 s under ASan
		 * at load 6-10, so 2.5 s left a loaded CI host ~0.6 s. Without
		 * the cancel the stop takes minutes (testenv_kill's SIGKILL at
		 * 10 s ends it, status 9): 5 s still fails that, as in
		 * test_meta_service_etcd's test_stop_cut_off. */
		assert_true(took < 5000);
	}
	env_fini(&e);
}
#endif

int main(void)
{
	log_set_level(LOG_LVL_ERR);
	signal(SIGPIPE, SIG_IGN);
#ifdef MGMTD_TEST_ETCD
	etcd_cluster_require();
	struct etcd_cluster_opts eo = { .members = 1 };
	if (etcd_cluster_start(&eo, &etcd)) {
		fprintf(stderr, "etcd cluster did not start\n");
		testenv_cleanup();
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_restart),
		cmocka_unit_test(test_election),
		cmocka_unit_test(test_stop_cut_off),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	etcd_cluster_stop(etcd);
	testenv_cleanup();
	return rc;
#else
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_admin_errors), cmocka_unit_test(test_node_failure),
	    cmocka_unit_test(test_restart),      cmocka_unit_test(test_election),
	    cmocka_unit_test(test_fencing),      cmocka_unit_test(test_register_retry),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	testenv_cleanup();
	return rc;
#endif
}
