/* test_meta_client_local.c - meta_client_set_local: the in-process hook the
 * mount uses for meta_local (meta_client.h).
 *
 * The client's only instance is dead (connects are refused), so a call
 * that reaches the network fails with a transport error after the retry
 * budget, and one answered by the hook never touches it:
 * - a reply from the hook is decoded as a server's (getattr's inode), and
 *   the hook saw the encoded request of the right type and inode;
 * - an operation error from the hook comes back as is, with its text as
 *   meta_client_last_error, and nothing is sent;
 * - META_LOCAL_PASS (1) and a failover error (-CFS_EUNAVAIL) send the call
 *   to the instances (failovers counted, a transport error returned).
 *
 * GC kicks (meta_client.c "GC kicks"), against an in-process server that
 * holds each GC_KICK without replying until the test releases it: an
 * unlink the hook ran sends one kick; unlinks and renames while it is in
 * flight send nothing more; its reply sends exactly one more (the changes
 * made meanwhile); that one's reply, with no change since, none; a
 * getattr none. The calls return while their kick waits.
 *
 * meta_local itself (test_unknown_table): on a store meta formatted, with
 * a mgmtd client that has no routing yet (its mgmtd is dead), a create
 * needs a chain table the instance cannot see; meta_local_call passes it
 * to the service (the client fails over to its dead instance: a transport
 * error, a failover counted), not -EINVAL; a getattr still runs
 * in-process.
 *
 * Idempotency (meta_local.c "No idempotency records"):
 * - test_local_no_idem: mkdir, symlink, link, rename, setattr, unlink and
 *   rmdir run by meta_local_call on a real store leave no IDEM key in it
 *   (before: one record per mutation), while each one's reply is right;
 * - test_seq_across_local: a client whose mutations alternate between the
 *   hook (run "in-process") and the instance (the hook passes them): every
 *   request the instance gets carries the seq the hook saw for it (the
 *   same request id), and an idem_low equal to that seq, i.e. every
 *   locally answered seq was marked done and the floor can pass it; a
 *   passed request is delivered to the instance exactly once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include "client/meta_client.h"
#include "kv/kv.h"
#include "meta/meta.h"
#include "meta/meta_local.h"
#include "meta/meta_storage.h"
#include "mgmtd/mgmtd_client.h"
#include "common/clock.h"
#include "common/status.h"
#include "meta/meta_proto.h"
#include "meta/schema.h"
#include "net/rpc.h"
#include "testenv.h"

static const char CID[] = "test-cluster";
static const uint8_t SECRET[32] = "0123456789abcdef0123456789abcdef";

struct hook {
	int rc;            /* what the hook returns */
	int calls;
	uint16_t type;     /* last request seen */
	uint64_t ino;
};

static int hook_fn(void *arg, uint16_t type, const uint8_t *req, size_t len, struct buf *resp,
		   char *err, size_t errlen)
{
	struct hook *h = arg;
	struct meta_rpc_req m;
	h->calls++;
	h->type = type;
	h->ino = meta_rpc_req_decode(type, req, len, &m) == 0 ? m.ino : 0;
	if (h->rc) {
		snprintf(err, errlen, "GETATTR: from the hook");
		return h->rc;
	}
	struct meta_inode in = { .ino = h->ino, .type = META_T_FILE, .mode = 0640, .nlink = 1,
				 .size = 4242 };
	struct meta_rpc_resp r = { .type = type, .inode = &in };
	buf_reset(resp);
	return meta_rpc_resp_encode(resp, &r);
}

/* A client whose only instance is dead (a free port), short timeouts. */
static meta_client *dead_client(void)
{
	char addr[32], err[256];
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)testenv_free_port());
	const char *addrs[] = {addr};
	struct meta_client_opts o = {.addrs = addrs, .naddrs = 1, .cluster_id = CID,
	                             .secret = SECRET, .secret_len = sizeof(SECRET),
	                             .timeout_ms = 200, .retry_ms = 300, .down_ms = 100};
	meta_client *c = NULL;
	assert_int_equal(meta_client_new(&o, &c, err, sizeof(err)), 0);
	return c;
}

static void test_hook(void **state)
{
	meta_client *c = dead_client();
	struct meta_inode in;
	struct meta_client_stats st;
	struct hook h = {0};
	meta_client_set_local(c, hook_fn, &h);

	assert_int_equal(meta_client_getattr(c, NULL, 77, &in), 0);
	assert_int_equal(h.calls, 1);
	assert_int_equal(h.type, META_RPC_GETATTR);
	assert_int_equal(h.ino, 77);
	assert_int_equal(in.ino, 77);
	assert_int_equal(in.size, 4242);

	h.rc = -ENOENT;
	assert_int_equal(meta_client_getattr(c, NULL, 78, &in), -ENOENT);
	assert_string_equal(meta_client_last_error(), "GETATTR: from the hook");
	meta_client_get_stats(c, &st);
	assert_int_equal(st.failovers, 0);

	h.rc = 1; /* META_LOCAL_PASS */
	int rc = meta_client_getattr(c, NULL, 79, &in);
	assert_true(rc < 0 && rc != -ENOENT);
	meta_client_get_stats(c, &st);
	assert_true(st.failovers >= 1);
	uint64_t before = st.failovers;

	h.rc = -CFS_EUNAVAIL;
	rc = meta_client_getattr(c, NULL, 80, &in);
	assert_true(rc < 0 && rc != -ENOENT);
	meta_client_get_stats(c, &st);
	assert_true(st.failovers > before);
	assert_int_equal(h.calls, 4);
	meta_client_free(c);
}

/* The direct hook of test_direct_hook (meta_client_set_local_req): ARG
 * is the set_local hook's; answers a getattr with size 4343. */
static int dcalls, drc;
static uint64_t dseq;

static int direct_fn(void *arg, const struct meta_rpc_req *m, struct meta_rpc_resp *r,
		     char *err, size_t errlen)
{
	assert_non_null(arg);
	dcalls++;
	dseq = m->seq;
	if (drc) {
		snprintf(err, errlen, "GETATTR: from the direct hook");
		return drc;
	}
	assert_int_equal(r->type, m->type);
	memset(r->inode, 0, sizeof(*r->inode));
	r->inode->ino = m->ino, r->inode->type = META_T_FILE, r->inode->size = 4343;
	return 0;
}

/* Direct calls first: an answer or an operation error from the direct
 * hook is the call's (the encoded hook and the instance untouched); a
 * pass goes to the encoded hook; a failover error goes to the instance,
 * not to the encoded hook (a call is tried in-process once); without the
 * encoded hook the direct one is off too. */
static void test_direct_hook(void **state)
{
	meta_client *c = dead_client();
	struct meta_inode in;
	struct meta_client_stats st;
	struct hook h = {0};
	meta_client_set_local_req(c, direct_fn); /* no local yet: ignored */
	meta_client_set_local(c, hook_fn, &h);
	meta_client_set_local_req(c, direct_fn);

	assert_int_equal(meta_client_getattr(c, NULL, 77, &in), 0);
	assert_int_equal(dcalls, 1);
	assert_int_equal(h.calls, 0);
	assert_int_equal(in.ino, 77);
	assert_int_equal(in.size, 4343);

	drc = -ENOENT;
	assert_int_equal(meta_client_getattr(c, NULL, 78, &in), -ENOENT);
	assert_string_equal(meta_client_last_error(), "GETATTR: from the direct hook");
	assert_int_equal(h.calls, 0);

	drc = 1; /* META_LOCAL_PASS: the encoded hook answers */
	assert_int_equal(meta_client_getattr(c, NULL, 79, &in), 0);
	assert_int_equal(in.size, 4242);
	assert_int_equal(h.calls, 1);
	assert_int_equal(h.ino, 79);
	meta_client_get_stats(c, &st);
	assert_int_equal(st.failovers, 0);

	drc = -CFS_EUNAVAIL; /* to the (dead) instance, not to the encoded hook */
	int rc = meta_client_getattr(c, NULL, 80, &in);
	assert_true(rc < 0 && rc != -ENOENT);
	assert_int_equal(h.calls, 1);
	meta_client_get_stats(c, &st);
	assert_true(st.failovers >= 1);
	assert_int_equal(dcalls, 4);

	meta_client_set_local(c, NULL, NULL); /* both off */
	rc = meta_client_getattr(c, NULL, 81, &in);
	assert_true(rc < 0 && rc != -ENOENT);
	assert_int_equal(dcalls, 4);
	meta_client_free(c);
}

/* The kicks the server got, and those it has not answered yet. */
static pthread_mutex_t kick_mu = PTHREAD_MUTEX_INITIALIZER;
static int nkicks;
static struct rpc_req *held[8];
static int nheld;

static void kick_handler(struct rpc_req *req, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&kick_mu);
	nkicks++;
	if (nheld < 8)
		held[nheld++] = req;
	else
		rpc_reply(req, 0, NULL, 0);
	pthread_mutex_unlock(&kick_mu);
}

static int kicks(void)
{
	pthread_mutex_lock(&kick_mu);
	int n = nkicks;
	pthread_mutex_unlock(&kick_mu);
	return n;
}

/* Waits up to MS for at least WANT kicks; returns the count. */
static int wait_kicks(int want, int ms)
{
	uint64_t until = clock_mono_ms() + (uint64_t)ms;
	while (kicks() < want && clock_mono_ms() < until)
		clock_sleep_ms(5);
	return kicks();
}

static void release_kicks(void)
{
	pthread_mutex_lock(&kick_mu);
	for (int i = 0; i < nheld; i++)
		rpc_reply(held[i], 0, NULL, 0);
	nheld = 0;
	pthread_mutex_unlock(&kick_mu);
}

/* An in-process instance that serves only TYPE, with FN, in *SRV, and a
 * client of it in *C. */
static void one_type_server(uint16_t type, void (*fn)(struct rpc_req *, void *),
			    struct rpc_server **srv, meta_client **c)
{
	struct rpc_opts so = {
	    .cluster_id = CID, .secret = SECRET, .secret_len = sizeof(SECRET), .nthreads = 1};
	char addr[32], err[256];
	assert_int_equal(rpc_server_new(&so, srv), 0);
	struct rpc_handler h = {.fn = fn};
	assert_int_equal(rpc_server_handle(*srv, type, &h), 0);
	assert_int_equal(rpc_server_start(*srv, "127.0.0.1:0", err, sizeof(err)), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)rpc_server_port(*srv));
	const char *addrs[] = {addr};
	struct meta_client_opts o = {.addrs = addrs, .naddrs = 1, .cluster_id = CID,
	                             .secret = SECRET, .secret_len = sizeof(SECRET),
	                             .timeout_ms = 2000, .retry_ms = 3000, .down_ms = 100};
	assert_int_equal(meta_client_new(&o, c, err, sizeof(err)), 0);
}

static void test_gc_kicks(void **state)
{
	struct rpc_server *srv = NULL;
	meta_client *c = NULL;
	struct meta_inode in;
	struct hook h = {0};
	struct meta_name a = {"a", 1}, b = {"b", 1};
	one_type_server(META_RPC_GC_KICK, kick_handler, &srv, &c);
	meta_client_set_local(c, hook_fn, &h);

	assert_int_equal(meta_client_getattr(c, NULL, 77, &in), 0);
	assert_int_equal(meta_client_unlink(c, NULL, 1, a), 0);
	assert_int_equal(wait_kicks(1, 5000), 1);
	/* kick 1 is held: these only mark it dirty */
	assert_int_equal(meta_client_unlink(c, NULL, 1, b), 0);
	assert_int_equal(meta_client_rename(c, NULL, 1, a, 1, b, 0), 0);
	assert_int_equal(meta_client_unlink(c, NULL, 1, a), 0);
	clock_sleep_ms(200);
	assert_int_equal(kicks(), 1);
	release_kicks();
	assert_int_equal(wait_kicks(2, 5000), 2);
	release_kicks();
	clock_sleep_ms(200);
	assert_int_equal(kicks(), 2);
	assert_int_equal(meta_client_getattr(c, NULL, 78, &in), 0);
	clock_sleep_ms(100);
	assert_int_equal(kicks(), 2);
	/* idle again: the next unlink kicks at once */
	assert_int_equal(meta_client_unlink(c, NULL, 1, b), 0);
	assert_int_equal(wait_kicks(3, 5000), 3);
	assert_int_equal(h.calls, 7);
	meta_client_free(c); /* with kick 3 still held */
	release_kicks();
	rpc_server_free(srv);
}

static int one_table(void *arg, uint32_t table_id, uint32_t *chains, uint32_t cap)
{
	(void)arg;
	if (table_id != 1)
		return -ENOENT;
	if (cap)
		chains[0] = 1;
	return 1;
}

/* A formatted lmdb store in a fresh directory; its URL in URL. */
static char *format_store(char *url, size_t n)
{
	char err[256];
	char *dir = testenv_tmpdir("meta-local");
	kv_engine *kv = NULL;
	meta_ctx *m = NULL;
	assert_non_null(dir);
	snprintf(url, n, "lmdb://%s/meta?sync=window", dir);
	assert_int_equal(kv_open(url, &kv, err, sizeof(err)), 0);
	struct meta_opts mo = { .instance_id = 1,
				.root_layout = { .chunk_size = 1u << 20, .stripe = 1, .table_id = 1 },
				.storage = meta_storage_none(),
				.chains = { NULL, one_table } };
	assert_int_equal(meta_new(kv, &mo, &m), 0);
	assert_int_equal(meta_format(m), 0);
	meta_free(m);
	kv_close(kv);
	return dir;
}

/* A formatted store, meta_local on it with a mgmtd client that has no
 * routing (its mgmtd is dead), and a dead client whose hook it is. */
struct on_store {
	char url[600];
	char *dir;
	struct mgmtd_client *mc;
	struct meta_local *l;
	meta_client *c;
};

static void on_store_open(struct on_store *o)
{
	char err[256], mg[32];
	o->dir = format_store(o->url, sizeof(o->url));
	snprintf(mg, sizeof(mg), "127.0.0.1:%u", (unsigned)testenv_free_port());
	const char *mgs[] = {mg};
	struct mgmtd_client_opts mgo = { .mgmtd_addrs = mgs, .n_mgmtd = 1, .cluster_id = CID,
					 .secret = SECRET, .secret_len = sizeof(SECRET) };
	assert_int_equal(mgmtd_client_new(&mgo, &o->mc, err, sizeof(err)), 0);
	struct meta_local_opts lo = { .kv_url = o->url, .mgmtd = o->mc };
	assert_int_equal(meta_local_open(&lo, &o->l, err, sizeof(err)), 0);
	o->c = dead_client();
	meta_client_set_local(o->c, meta_local_call, o->l);
	meta_client_set_local_req(o->c, meta_local_call_req); /* as the mount: direct calls */
}

static void on_store_close(struct on_store *o)
{
	meta_client_free(o->c);
	meta_local_close(o->l);
	mgmtd_client_free(o->mc);
	free(o->dir);
}

static void test_unknown_table(void **state)
{
	struct on_store o;
	on_store_open(&o);
	meta_client *c = o.c;
	struct meta_local *l = o.l;
	struct meta_client_stats st;
	struct meta_inode in;
	struct meta_name name = { "f", 1 };
	int rc = meta_client_create(c, NULL, META_ROOT_INO, name, 0644, 0, NULL, NULL);
	print_message("create with an unknown chain table: %d (%s)\n", rc, cfs_strerror(rc));
	assert_true(rc < 0 && rc != -EINVAL);
	meta_client_get_stats(c, &st);
	assert_true(st.failovers >= 1);
	assert_int_equal(meta_client_getattr(c, NULL, META_ROOT_INO, &in), 0);
	assert_int_equal(in.ino, META_ROOT_INO);
	/* the getattr only: the create went to the service */
	assert_int_equal(meta_local_calls(l), 1);
	on_store_close(&o);
}

static int count_idem(const char *url)
{
	char err[256];
	kv_engine *kv = NULL;
	kv_txn *t = NULL;
	struct meta_key b, e;
	struct kv_range r;
	assert_int_equal(kv_open(url, &kv, err, sizeof(err)), 0);
	meta_key_prefix_range(&b, &e, "IDEM");
	assert_int_equal(kv_begin(kv, KV_RDONLY, &t), 0);
	assert_int_equal(kv_get_range(t, kv_mem(b.b, b.n), kv_mem(e.b, e.n), 10000, 1, 0, &r), 0);
	int n = r.n;
	kv_txn_free(t);
	kv_close(kv);
	return n;
}

static void test_local_no_idem(void **state)
{
	struct on_store o;
	on_store_open(&o);
	meta_client *c = o.c;

	struct meta_inode d, s, in;
	struct meta_client_stats st;
	assert_int_equal(meta_client_mkdir(c, NULL, META_ROOT_INO, meta_name_c("d"), 0755, &d), 0);
	assert_int_equal(meta_client_symlink(c, NULL, d.ino, meta_name_c("s"),
					     meta_name_c("target"), &s), 0);
	assert_int_equal(meta_client_link(c, NULL, s.ino, d.ino, meta_name_c("h"), &in), 0);
	assert_int_equal(in.nlink, 2);
	assert_int_equal(meta_client_rename(c, NULL, d.ino, meta_name_c("h"), d.ino,
					    meta_name_c("g"), 0), 0);
	struct meta_setattr sa = { .valid = META_SET_MODE, .mode = 0700 };
	assert_int_equal(meta_client_setattr(c, NULL, d.ino, &sa, &in), 0);
	assert_int_equal(in.mode & 07777, 0700);
	assert_int_equal(meta_client_unlink(c, NULL, d.ino, meta_name_c("g")), 0);
	assert_int_equal(meta_client_unlink(c, NULL, d.ino, meta_name_c("s")), 0);
	assert_int_equal(meta_client_rmdir(c, NULL, META_ROOT_INO, meta_name_c("d")), 0);
	assert_int_equal(meta_client_getattr(c, NULL, d.ino, &in), -ENOENT);
	meta_client_get_stats(c, &st);
	assert_int_equal(st.failovers, 0);  /* all ran in-process */
	assert_int_equal(meta_local_calls(o.l), 9);
	meta_client_free(c);
	meta_local_close(o.l);
	o.c = NULL;
	o.l = NULL;
	int n = count_idem(o.url);
	print_message("IDEM keys after 8 in-process mutations: %d\n", n);
	assert_int_equal(n, 0);
	on_store_close(&o);
}

/* The instance of test_seq_across_local: answers MKDIR with an inode,
 * recording each request's seq and idem_low. */
static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t seen_seq[64], seen_low[64];
static int nseen;

static void mkdir_handler(struct rpc_req *req, void *arg)
{
	(void)arg;
	uint32_t len;
	const uint8_t *p = rpc_req_payload(req, &len);
	struct meta_rpc_req m;
	struct buf b = BUF_INIT;
	if (meta_rpc_req_decode(META_RPC_MKDIR, p, len, &m)) {
		rpc_reply_error(req, -CFS_EPROTO, "bad request");
		return;
	}
	pthread_mutex_lock(&seen_mu);
	if (nseen < 64) {
		seen_seq[nseen] = m.seq;
		seen_low[nseen] = m.idem_low;
	}
	nseen++;
	pthread_mutex_unlock(&seen_mu);
	struct meta_inode in = { .ino = 5, .type = META_T_DIR, .mode = 0755, .nlink = 2 };
	struct meta_rpc_resp r = { .type = META_RPC_MKDIR, .inode = &in };
	assert_int_equal(meta_rpc_resp_encode(&b, &r), 0);
	rpc_reply(req, 0, b.data, (uint32_t)b.len);
	buf_fini(&b);
}

/* The hook of test_seq_across_local: every third call passes (the
 * instance answers), the others are answered here; each seq seen. */
static uint64_t hook_seq[64];
static int nhook;

static int seq_hook(void *arg, uint16_t type, const uint8_t *req, size_t len, struct buf *resp,
		    char *err, size_t errlen)
{
	(void)arg;
	(void)err;
	(void)errlen;
	struct meta_rpc_req m;
	assert_int_equal(meta_rpc_req_decode(type, req, len, &m), 0);
	int i = nhook++;
	hook_seq[i % 64] = m.seq;
	if (i % 3 == 2)
		return 1; /* META_LOCAL_PASS */
	struct meta_inode in = { .ino = 6, .type = META_T_DIR, .mode = 0755, .nlink = 2 };
	struct meta_rpc_resp r = { .type = type, .inode = &in };
	buf_reset(resp);
	return meta_rpc_resp_encode(resp, &r);
}

static void test_seq_across_local(void **state)
{
	struct rpc_server *srv = NULL;
	meta_client *c = NULL;
	struct meta_inode in;
	one_type_server(META_RPC_MKDIR, mkdir_handler, &srv, &c);
	meta_client_set_local(c, seq_hook, NULL);
	for (int i = 0; i < 60; i++)
		assert_int_equal(meta_client_mkdir(c, NULL, 1, meta_name_c("d"), 0755, &in), 0);
	assert_int_equal(nhook, 60);
	assert_int_equal(nseen, 20); /* each passed call once, nothing else */
	for (int k = 0; k < 20; k++) {
		assert_int_equal(seen_seq[k], hook_seq[3 * k + 2]);
		assert_int_equal(seen_low[k], seen_seq[k]);
	}
	meta_client_free(c);
	rpc_server_free(srv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unknown_table),
		cmocka_unit_test(test_local_no_idem),
		cmocka_unit_test(test_seq_across_local),
		cmocka_unit_test(test_hook),
		cmocka_unit_test(test_direct_hook),
		cmocka_unit_test(test_gc_kicks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
