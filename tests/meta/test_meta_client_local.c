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
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>

#include "client/meta_client.h"
#include "common/clock.h"
#include "common/status.h"
#include "meta/meta_proto.h"
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

static void test_hook(void **state)
{
	char addr[32];
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)testenv_free_port());
	const char *addrs[] = {addr};
	struct meta_client_opts o = {.addrs = addrs, .naddrs = 1, .cluster_id = CID,
	                             .secret = SECRET, .secret_len = sizeof(SECRET),
	                             .timeout_ms = 200, .retry_ms = 300, .down_ms = 100};
	meta_client *c = NULL;
	char err[256];
	struct meta_inode in;
	struct meta_client_stats st;
	struct hook h = {0};
	assert_int_equal(meta_client_new(&o, &c, err, sizeof(err)), 0);
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

static void test_gc_kicks(void **state)
{
	struct rpc_opts so = {
	    .cluster_id = CID, .secret = SECRET, .secret_len = sizeof(SECRET), .nthreads = 1};
	struct rpc_server *srv = NULL;
	char addr[32], err[256];
	assert_int_equal(rpc_server_new(&so, &srv), 0);
	struct rpc_handler hk = {.fn = kick_handler};
	assert_int_equal(rpc_server_handle(srv, META_RPC_GC_KICK, &hk), 0);
	assert_int_equal(rpc_server_start(srv, "127.0.0.1:0", err, sizeof(err)), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)rpc_server_port(srv));
	const char *addrs[] = {addr};
	struct meta_client_opts o = {.addrs = addrs, .naddrs = 1, .cluster_id = CID,
	                             .secret = SECRET, .secret_len = sizeof(SECRET),
	                             .timeout_ms = 2000, .retry_ms = 3000, .down_ms = 100};
	meta_client *c = NULL;
	struct meta_inode in;
	struct hook h = {0};
	struct meta_name a = {"a", 1}, b = {"b", 1};
	assert_int_equal(meta_client_new(&o, &c, err, sizeof(err)), 0);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hook),
		cmocka_unit_test(test_gc_kicks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
