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
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "client/meta_client.h"
#include "common/status.h"
#include "meta/meta_proto.h"
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hook),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
