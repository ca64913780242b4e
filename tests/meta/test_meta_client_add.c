/* test_meta_client_add.c - meta_client_add_addr: instances added to a
 * running client (the mount feeds it the metas that register after it
 * started).
 *
 * errors: bad addresses are -EINVAL and change nothing; the same address
 *   (as given at creation or added before, or spelt the same way) is 1;
 *   past META_CLIENT_MAX_ADDRS it is -ENOSPC, while a known one is still 1.
 * used: a client whose only instance is dead fails its calls; once an
 *   in-process echo server's address is added, calls succeed through it.
 * concurrent: threads calling through the client while another adds
 *   instances (ASan/UBSan builds check the table accesses); every call
 *   succeeds (the live instance is first) and every add lands once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "client/meta_client.h"
#include "common/status.h"
#include "net/rpc.h"
#include "net/rpc_proto.h"
#include "testenv.h"

static const char CID[] = "test-cluster";
static const uint8_t SECRET[32] = "0123456789abcdef0123456789abcdef";

static meta_client *client_of(const char *addr, uint32_t retry_ms)
{
	const char *addrs[] = {addr};
	struct meta_client_opts o = {.addrs = addrs,
	                             .naddrs = 1,
	                             .cluster_id = CID,
	                             .secret = SECRET,
	                             .secret_len = sizeof(SECRET),
	                             .timeout_ms = 500,
	                             .retry_ms = retry_ms,
	                             .down_ms = 200};
	meta_client *c = NULL;
	char err[256];
	assert_int_equal(meta_client_new(&o, &c, err, sizeof(err)), 0);
	return c;
}

/* An address nothing listens on (refused at once). */
static void dead_addr(char *out, size_t cap)
{
	snprintf(out, cap, "127.0.0.1:%u", (unsigned)testenv_free_port());
}

static void test_errors(void **state)
{
	(void)state;
	meta_client *c = client_of("127.0.0.1:7001", 200);
	assert_int_equal(meta_client_naddrs(c), 1);
	assert_int_equal(meta_client_add_addr(c, NULL), -EINVAL);
	assert_int_equal(meta_client_add_addr(c, ""), -EINVAL);
	assert_int_equal(meta_client_add_addr(c, "nope"), -EINVAL);
	assert_int_equal(meta_client_add_addr(c, "127.0.0.1"), -EINVAL);
	assert_int_equal(meta_client_add_addr(c, "127.0.0.1:99999"), -EINVAL);
	char big[META_CLIENT_ADDR_MAX + 8];
	memset(big, '1', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	assert_int_equal(meta_client_add_addr(c, big), -EINVAL);
	assert_int_equal(meta_client_naddrs(c), 1);

	assert_int_equal(meta_client_add_addr(c, "127.0.0.1:7001"), 1); /* from creation */
	assert_int_equal(meta_client_add_addr(c, "127.0.0.1:7002"), 0);
	assert_int_equal(meta_client_add_addr(c, "127.0.0.1:7002"), 1);
	assert_int_equal(meta_client_naddrs(c), 2);

	/* Fill the table: 62 more fit, the next does not. */
	char a[32];
	for (int i = 0; i < META_CLIENT_MAX_ADDRS - 2; i++) {
		snprintf(a, sizeof(a), "127.0.0.1:%d", 8000 + i);
		assert_int_equal(meta_client_add_addr(c, a), 0);
	}
	assert_int_equal(meta_client_naddrs(c), META_CLIENT_MAX_ADDRS);
	assert_int_equal(meta_client_add_addr(c, "127.0.0.1:9999"), -ENOSPC);
	assert_int_equal(meta_client_add_addr(c, "127.0.0.1:8005"), 1);
	assert_int_equal(meta_client_naddrs(c), META_CLIENT_MAX_ADDRS);
	meta_client_free(c);
}

/* ---- an in-process echo server (meta_client_ping sends ECHO) ---- */

static void echo_handler(struct rpc_req *req, void *arg)
{
	(void)arg;
	uint32_t len;
	const uint8_t *p = rpc_req_payload(req, &len);
	rpc_reply(req, 0, p, len);
}

static struct rpc_server *echo_start(char *addr, size_t cap)
{
	struct rpc_opts o = {
	    .cluster_id = CID, .secret = SECRET, .secret_len = sizeof(SECRET), .nthreads = 1};
	struct rpc_server *s = NULL;
	char err[256];
	assert_int_equal(rpc_server_new(&o, &s), 0);
	struct rpc_handler h = {.fn = echo_handler};
	assert_int_equal(rpc_server_handle(s, RPC_MSG_ECHO, &h), 0);
	assert_int_equal(rpc_server_start(s, "127.0.0.1:0", err, sizeof(err)), 0);
	snprintf(addr, cap, "127.0.0.1:%u", (unsigned)rpc_server_port(s));
	return s;
}

static void test_used(void **state)
{
	(void)state;
	char dead[32], live[32];
	dead_addr(dead, sizeof(dead));
	meta_client *c = client_of(dead, 300);
	assert_int_not_equal(meta_client_ping(c), 0);

	struct rpc_server *s = echo_start(live, sizeof(live));
	assert_int_equal(meta_client_add_addr(c, live), 0);
	assert_int_equal(meta_client_naddrs(c), 2);
	for (int i = 0; i < 10; i++)
		assert_int_equal(meta_client_ping(c), 0);
	struct meta_client_stats st;
	meta_client_get_stats(c, &st);
	assert_true(st.failovers >= 1); /* the dead one was tried and skipped */
	meta_client_free(c);
	rpc_server_free(s);
}

struct pinger {
	pthread_t th;
	meta_client *c;
	atomic_int *stop;
	int calls, fails;
};

static void *pinger_main(void *arg)
{
	struct pinger *p = arg;
	while (!atomic_load(p->stop)) {
		p->calls++;
		if (meta_client_ping(p->c))
			p->fails++;
	}
	return NULL;
}

static void test_concurrent(void **state)
{
	(void)state;
	char live[32], a[32];
	struct rpc_server *s = echo_start(live, sizeof(live));
	meta_client *c = client_of(live, 5000);
	atomic_int stop = 0;
	struct pinger p[3];
	for (int i = 0; i < 3; i++) {
		p[i] = (struct pinger){.c = c, .stop = &stop};
		assert_int_equal(pthread_create(&p[i].th, NULL, pinger_main, &p[i]), 0);
	}
	/* Dead instances: a call that starts at one is refused and moves on,
	 * so the pingers walk the growing table. */
	int added = 0;
	for (int i = 0; i < META_CLIENT_MAX_ADDRS - 1; i++) {
		dead_addr(a, sizeof(a));
		int rc = meta_client_add_addr(c, a);
		assert_true(rc == 0 || rc == 1); /* a port handed out twice is known */
		added += rc == 0;
		if (i % 8 == 0)
			meta_client_ping(c);
	}
	atomic_store(&stop, 1);
	int calls = 0;
	for (int i = 0; i < 3; i++) {
		pthread_join(p[i].th, NULL);
		assert_int_equal(p[i].fails, 0);
		calls += p[i].calls;
	}
	assert_true(calls > 0);
	assert_int_equal(meta_client_naddrs(c), (size_t)(1 + added));
	meta_client_free(c);
	rpc_server_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_used),
	    cmocka_unit_test(test_concurrent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
