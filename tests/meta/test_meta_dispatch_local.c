/* test_meta_dispatch_local.c - meta_dispatch_kv_only: the forms of OPEN,
 * CLOSE, SETATTR and SYNC an in-process instance (meta_local.h, no
 * storage) runs, and the forms it must hand to the service untouched.
 *
 * Against a chunked file (its chunks on the fixture's fake storage):
 * - handed over (META_DISPATCH_PASS), with nothing committed and no
 *   storage call: an OPEN with META_O_TRUNC (no session recorded, size
 *   kept), a SETATTR of the size (size kept), a CLOSE without the length
 *   (the session stays), a SYNC with a storage query;
 * - run here, with the service's effect: an OPEN for writing (a session
 *   recorded and its id in the reply), a SETATTR of mode and mtime, a
 *   CLOSE with the known length (session gone, length raised), a SYNC of
 *   a reported length; none calls storage.
 *
 * Idempotency (test_no_idem): the same mutations (create, mkdir, symlink,
 * link, setattr, open, rename, unlink, rmdir), each with a seq and an
 * idem_low that would raise the floor, write no IDEM record through
 * meta_dispatch_in_process (the in-process instance's path, meta_local.c
 * "No idempotency records") and one each through meta_dispatch (the
 * service's path), where a second delivery of a request answers from its
 * record instead of applying again.
 * Runs on mem:// and lmdb:// (meta_fixture.h).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/buf.h"
#include "meta/meta_dispatch.h"
#include "meta/schema.h"
#include "meta_fixture.h"

#define R1 META_ROOT_INO
#define CLIENT 77u
#define CHUNK (1u << 20) /* the fixture root's chunk size */

static struct fx F;
static meta_ctx *M;
static struct meta_scratch *S;
static uint64_t next_seq = 1;

static int setup(void **state)
{
	S = calloc(1, sizeof(*S));
	assert_non_null(S);
	buf_init(&S->out);
	return fx_setup_meta(&F, &M);
}

static int teardown(void **state)
{
	buf_fini(&S->out);
	free(S);
	return fx_teardown_meta(&F, &M);
}

static int idem_keys(void);

static uint64_t sessions(void)
{
	struct meta_fsck_report r;
	assert_int_equal(meta_fsck(M, NULL, 0, &r), 0);
	return r.sessions;
}

/* Encodes M0 (type, fields set by the caller; client, seq filled here)
 * and runs it through meta_dispatch_kv_only; the reply decoded into *OUT
 * (inode into IN) when it ran. */
static int run(struct meta_rpc_req *m0, struct meta_rpc_resp *out, struct meta_inode *in)
{
	struct buf b = BUF_INIT;
	char err[256];
	int malformed;
	m0->client = CLIENT;
	m0->seq = next_seq++;
	assert_int_equal(meta_rpc_req_encode(&b, m0), 0);
	int rc = meta_dispatch_kv_only(M, S, m0->type, b.data, (uint32_t)b.len, err,
				       sizeof(err), &malformed);
	buf_fini(&b);
	assert_int_equal(malformed, 0);
	if (rc == 0 && out) {
		memset(out, 0, sizeof(*out));
		out->type = m0->type;
		out->inode = in;
		assert_int_equal(meta_rpc_resp_decode(S->out.data, S->out.len, out), 0);
	}
	return rc;
}

static void test_forms(void **state)
{
	struct meta_inode in, got;
	struct meta_rpc_resp r;
	uint64_t sess = 0;
	struct meta_req *rq = fx_req(CLIENT);
	assert_int_equal(meta_create(M, &FX_ROOT, rq, R1, meta_name_c("f"), 0644,
				     META_O_EXCL | META_O_WRITE, &in, &sess), 0);
	struct meta_length len = { .length = 3 * CHUNK / 2, .truncate_ver = in.truncate_ver };
	assert_int_equal(meta_close_known(M, fx_req(CLIENT), in.ino, sess, &len), 0);
	fx_put_chunk(&F.st, 101, in.ino, 0, CHUNK);
	fx_put_chunk(&F.st, 102, in.ino, 1, CHUNK / 2);
	assert_int_equal(sessions(), 0);
	int storage_calls = F.st.remove_calls + F.st.truncate_calls + F.st.query_calls;

	/* handed over, nothing done */
	struct meta_rpc_req m = { .type = META_RPC_OPEN, .ino = in.ino,
				  .flags = META_O_WRITE | META_O_TRUNC };
	assert_int_equal(run(&m, NULL, NULL), META_DISPATCH_PASS);
	m = (struct meta_rpc_req){ .type = META_RPC_SETATTR, .ino = in.ino,
				   .sa = { .valid = META_SET_SIZE, .size = 10 } };
	assert_int_equal(run(&m, NULL, NULL), META_DISPATCH_PASS);
	m = (struct meta_rpc_req){ .type = META_RPC_SYNC, .ino = in.ino, .query = 1 };
	assert_int_equal(run(&m, NULL, NULL), META_DISPATCH_PASS);
	assert_int_equal(sessions(), 0);
	assert_int_equal(meta_getattr(M, in.ino, &got), 0);
	assert_int_equal(got.size, 3 * CHUNK / 2);

	/* an open for writing runs: a session, and (unlike
	 * meta_dispatch_in_process) its idempotency record */
	int keys0 = idem_keys();
	m = (struct meta_rpc_req){ .type = META_RPC_OPEN, .ino = in.ino,
				   .flags = META_O_READ | META_O_WRITE };
	assert_int_equal(run(&m, &r, &got), 0);
	assert_true(idem_keys() > keys0);
	assert_int_not_equal(r.session, 0);
	assert_int_equal(got.ino, in.ino);
	assert_int_equal(sessions(), 1);

	/* its close without the length goes to the service: session kept */
	m = (struct meta_rpc_req){ .type = META_RPC_CLOSE, .ino = in.ino, .ino2 = r.session };
	assert_int_equal(run(&m, NULL, NULL), META_DISPATCH_PASS);
	assert_int_equal(sessions(), 1);

	/* mode and times run here */
	m = (struct meta_rpc_req){ .type = META_RPC_SETATTR, .ino = in.ino,
				   .sa = { .valid = META_SET_MODE | META_SET_MTIME,
					   .mode = 0600, .mtime = 1234567890123456789ll } };
	assert_int_equal(run(&m, NULL, NULL), 0);
	assert_int_equal(meta_getattr(M, in.ino, &got), 0);
	assert_int_equal(got.mode & 07777, 0600);
	assert_int_equal(got.mtime, 1234567890123456789ll);

	/* a reported length, then the close with its length, run here */
	m = (struct meta_rpc_req){ .type = META_RPC_SYNC, .ino = in.ino, .has_len = 1,
				   .len = { .length = 2 * CHUNK, .truncate_ver = got.truncate_ver } };
	assert_int_equal(run(&m, NULL, NULL), 0);
	assert_int_equal(meta_getattr(M, in.ino, &got), 0);
	assert_int_equal(got.size, 2 * CHUNK);
	m = (struct meta_rpc_req){ .type = META_RPC_CLOSE, .ino = in.ino, .ino2 = r.session,
				   .flags = META_CLOSE_LEN_KNOWN, .has_len = 1,
				   .len = { .length = 5 * CHUNK / 2,
					    .truncate_ver = got.truncate_ver } };
	assert_int_equal(run(&m, NULL, NULL), 0);
	assert_int_equal(sessions(), 0);
	assert_int_equal(meta_getattr(M, in.ino, &got), 0);
	assert_int_equal(got.size, 5 * CHUNK / 2);

	assert_int_equal(F.st.remove_calls + F.st.truncate_calls + F.st.query_calls,
			 storage_calls);
}

/* The stored IDEM keys (records and floors). */
static int idem_keys(void)
{
	struct meta_key b, e;
	struct kv_range r;
	kv_txn *t = NULL;
	meta_key_prefix_range(&b, &e, "IDEM");
	assert_int_equal(kv_begin(F.kv, KV_RDONLY, &t), 0);
	assert_int_equal(kv_get_range(t, kv_mem(b.b, b.n), kv_mem(e.b, e.n), 10000, 1, 0, &r), 0);
	int n = r.n;
	kv_txn_free(t);
	return n;
}

/* M0 encoded with SEQ (and idem_low SEQ: the floor would rise) through the
 * in-process dispatch (LOCAL) or the service's; its result. */
static int run_as(int local, struct meta_rpc_req *m0, uint64_t seq, struct meta_inode *in)
{
	struct buf b = BUF_INIT;
	char err[256];
	int malformed;
	m0->client = CLIENT;
	m0->seq = seq;
	m0->idem_low = seq;
	assert_int_equal(meta_rpc_req_encode(&b, m0), 0);
	int rc = local ? meta_dispatch_in_process(M, S, m0->type, b.data, (uint32_t)b.len, err,
						  sizeof(err), &malformed)
		       : meta_dispatch(M, S, m0->type, b.data, (uint32_t)b.len, err,
				       sizeof(err), &malformed);
	buf_fini(&b);
	assert_int_equal(malformed, 0);
	if (rc == 0 && in) {
		struct meta_rpc_resp r = { .type = m0->type, .inode = in };
		assert_int_equal(meta_rpc_resp_decode(S->out.data, S->out.len, &r), 0);
	}
	return rc;
}

/* Nine mutations in directory DIR (names prefixed P) through the
 * in-process dispatch or the service's, seqs from *SEQ. */
static void mutations(int local, const char *p, uint64_t *seq)
{
	char f[8], d[8], l[8], h[8], g[8];
	struct meta_inode in, file;
	snprintf(f, sizeof(f), "%sf", p);
	snprintf(d, sizeof(d), "%sd", p);
	snprintf(l, sizeof(l), "%sl", p);
	snprintf(h, sizeof(h), "%sh", p);
	snprintf(g, sizeof(g), "%sg", p);
	struct meta_rpc_req m = { .type = META_RPC_CREATE, .ino = R1, .name = meta_name_c(f),
				  .mode = 0644, .flags = META_O_EXCL };
	assert_int_equal(run_as(local, &m, (*seq)++, &file), 0);
	m = (struct meta_rpc_req){ .type = META_RPC_MKDIR, .ino = R1, .name = meta_name_c(d),
				   .mode = 0755 };
	assert_int_equal(run_as(local, &m, (*seq)++, &in), 0);
	m = (struct meta_rpc_req){ .type = META_RPC_SYMLINK, .ino = R1, .name = meta_name_c(l),
				   .data = (const uint8_t *)"t", .data_len = 1 };
	assert_int_equal(run_as(local, &m, (*seq)++, &in), 0);
	m = (struct meta_rpc_req){ .type = META_RPC_LINK, .ino = file.ino, .ino2 = R1,
				   .name = meta_name_c(h) };
	assert_int_equal(run_as(local, &m, (*seq)++, &in), 0);
	m = (struct meta_rpc_req){ .type = META_RPC_SETATTR, .ino = file.ino,
				   .sa = { .valid = META_SET_MODE, .mode = 0600 } };
	assert_int_equal(run_as(local, &m, (*seq)++, &in), 0);
	m = (struct meta_rpc_req){ .type = META_RPC_OPEN, .ino = file.ino,
				   .flags = META_O_READ | META_O_WRITE };
	assert_int_equal(run_as(local, &m, (*seq)++, &in), 0);
	m = (struct meta_rpc_req){ .type = META_RPC_RENAME, .ino = R1, .name = meta_name_c(h),
				   .ino2 = R1, .name2 = meta_name_c(g) };
	assert_int_equal(run_as(local, &m, (*seq)++, NULL), 0);
	m = (struct meta_rpc_req){ .type = META_RPC_UNLINK, .ino = R1, .name = meta_name_c(g) };
	assert_int_equal(run_as(local, &m, (*seq)++, NULL), 0);
	m = (struct meta_rpc_req){ .type = META_RPC_RMDIR, .ino = R1, .name = meta_name_c(d) };
	assert_int_equal(run_as(local, &m, (*seq)++, NULL), 0);
}

static void test_no_idem(void **state)
{
	uint64_t seq = 1000;
	int before = idem_keys();
	mutations(1, "a", &seq);
	print_message("IDEM keys: %d before, %d after 9 in-process mutations\n", before,
		      idem_keys());
	assert_int_equal(idem_keys(), before);

	/* the service's path still records each (and a floor) */
	mutations(0, "b", &seq);
	int after = idem_keys();
	print_message("IDEM keys after 9 over the service's path: %d\n", after);
	assert_true(after >= before + 9);
	/* a second delivery of the service's last request (rmdir of "bd")
	 * answers from its record: done, not -ENOENT */
	struct meta_rpc_req m = { .type = META_RPC_RMDIR, .ino = R1, .name = meta_name_c("bd") };
	assert_int_equal(run_as(0, &m, seq - 1, NULL), 0);
	/* an in-process request is not looked up: the same seq reused there
	 * runs (and finds the directory gone) */
	m = (struct meta_rpc_req){ .type = META_RPC_RMDIR, .ino = R1, .name = meta_name_c("bd") };
	assert_int_equal(run_as(1, &m, seq - 1, NULL), -ENOENT);
}

/* The other types are the type set's business: meta_request_kv_only is 1. */
static void test_other_types(void **state)
{
	struct meta_rpc_req m = { .type = META_RPC_FSYNC, .query = 1 };
	assert_int_equal(meta_request_kv_only(&m), 1);
	m = (struct meta_rpc_req){ .type = META_RPC_OPEN, .flags = META_O_READ };
	assert_int_equal(meta_request_kv_only(&m), 1);
	m.flags |= META_O_TRUNC;
	assert_int_equal(meta_request_kv_only(&m), 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_forms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_idem, setup, teardown),
		cmocka_unit_test(test_other_types),
	};
	return fx_run_groups("meta dispatch kv-only", tests, sizeof(tests) / sizeof(tests[0]),
			     argc, argv, NULL);
}
