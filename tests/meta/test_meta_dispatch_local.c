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

	/* a length reported under an older truncate_ver than the file's
	 * needs storage (meta_file.c "Length"): handed over, nothing done,
	 * the close's session kept */
	struct meta_setattr sa = { .valid = META_SET_SIZE, .size = CHUNK };
	assert_int_equal(meta_setattr(M, &FX_ROOT, fx_req(CLIENT + 1), in.ino, &sa, &got), 0);
	assert_int_equal(got.truncate_ver, 1);
	m = (struct meta_rpc_req){ .type = META_RPC_OPEN, .ino = in.ino,
				   .flags = META_O_READ | META_O_WRITE };
	assert_int_equal(run(&m, &r, &got), 0);
	storage_calls = F.st.remove_calls + F.st.truncate_calls + F.st.query_calls;
	m = (struct meta_rpc_req){ .type = META_RPC_SYNC, .ino = in.ino, .has_len = 1,
				   .len = { .length = 2 * CHUNK, .truncate_ver = 0 } };
	assert_int_equal(run(&m, NULL, NULL), META_DISPATCH_PASS);
	m = (struct meta_rpc_req){ .type = META_RPC_CLOSE, .ino = in.ino, .ino2 = r.session,
				   .flags = META_CLOSE_LEN_KNOWN, .has_len = 1,
				   .len = { .length = 2 * CHUNK, .truncate_ver = 0 } };
	assert_int_equal(run(&m, NULL, NULL), META_DISPATCH_PASS);
	assert_int_equal(sessions(), 1);
	assert_int_equal(meta_getattr(M, in.ino, &got), 0);
	assert_int_equal(got.size, CHUNK);
	assert_int_equal(F.st.remove_calls + F.st.truncate_calls + F.st.query_calls,
			 storage_calls);
	/* the service's path (meta_dispatch) settles it: storage holds
	 * nothing past the cut, so the size stays */
	struct buf b = BUF_INIT;
	char err[256];
	int malformed;
	m.client = CLIENT;
	m.seq = next_seq++;
	assert_int_equal(meta_rpc_req_encode(&b, &m), 0);
	assert_int_equal(meta_dispatch(M, S, m.type, b.data, (uint32_t)b.len, err, sizeof(err),
				       &malformed),
			 0);
	buf_fini(&b);
	assert_int_equal(sessions(), 0);
	assert_int_equal(meta_getattr(M, in.ino, &got), 0);
	assert_int_equal(got.size, CHUNK);
	assert_true(F.st.query_calls > 0);
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

/* ---- direct calls (meta_dispatch_in_process_req) ---- */

static struct fx F2;
static meta_ctx *M2;
static struct meta_scratch *S2;

/* An inode with what differs between two stores run alike zeroed: the
 * times (the clock), the layout seed and the chains it picked (random). */
static void norm_inode(struct meta_inode *in)
{
	in->atime = in->mtime = in->ctime = 0;
	in->layout.seed = 0;
	memset(in->layout.chains, 0, sizeof(in->layout.chains));
}

/* M0 run on M through the bytes (meta_dispatch_in_process, the reply
 * decoded) and on M2 directly; asserts the same code, reply text and
 * reply (inode, session given or not, parent), and returns the code. */
static int both(struct meta_rpc_req *m0, const struct meta_cred *c, struct meta_inode *out)
{
	static struct meta_inode i1, i2, d1, d2;
	struct buf b = BUF_INIT;
	char e1[256] = "", e2[256] = "";
	int malformed;
	m0->client = CLIENT;
	m0->seq = next_seq, m0->idem_low = next_seq++; /* as the mount sends them */
	m0->uid = c->uid, m0->gid = c->gid, m0->ngroups = 0;
	memset(&i1, 0x5a, sizeof(i1)), memset(&i2, 0x5a, sizeof(i2));
	memset(&d1, 0x5a, sizeof(d1)), memset(&d2, 0x5a, sizeof(d2));
	struct meta_rpc_resp r1 = { .type = m0->type, .inode = &i1, .dir = &d1 };
	struct meta_rpc_resp r2 = { .type = m0->type, .inode = &i2, .dir = &d2 };
	assert_int_equal(meta_rpc_req_encode(&b, m0), 0);
	int rc1 = meta_dispatch_in_process(M, S, m0->type, b.data, (uint32_t)b.len, e1,
					   sizeof(e1), &malformed);
	buf_fini(&b);
	if (rc1 == 0)
		assert_int_equal(meta_rpc_resp_decode(S->out.data, S->out.len, &r1), 0);
	int rc2 = meta_dispatch_in_process_req(M2, S2, m0, &r2, e2, sizeof(e2));
	print_message("%s: %d %s\n", meta_rpc_name(m0->type), rc1, e1);
	assert_int_equal(rc1, rc2);
	assert_string_equal(e1, e2);
	if (rc1 == 0) {
		norm_inode(&i1), norm_inode(&i2), norm_inode(&d1), norm_inode(&d2);
		assert_memory_equal(&i1, &i2, sizeof(i1));
		assert_memory_equal(&d1, &d2, sizeof(d1));
		assert_int_equal(!r1.session, !r2.session);
		r1.session = r2.session = 0;
		r1.inode = r2.inode = NULL, r1.dir = r2.dir = NULL;
		assert_memory_equal(&r1, &r2, sizeof(r1));
		if (out)
			*out = i1;
	}
	return rc1;
}

/* The same requests through the bytes and directly, on two stores that
 * start alike: the same codes and texts (operation errors, a name over
 * its limit caught as the decoder catches it, a request passed on), the
 * same replies, and neither writes an idempotency record, so a request
 * sent again runs again on both. */
static void test_direct_same(void **state)
{
	(void)state;
	struct meta_cred user = { 1000, 1000, 0, NULL };
	struct meta_inode d, f, s;
	char longname[META_NAME_MAX + 2];
	fx_setup(&F2);
	M2 = fx_meta(&F2, 1);
	S2 = calloc(1, sizeof(*S2));
	assert_non_null(S2);
	buf_init(&S2->out);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;

	struct meta_rpc_req m = { .type = META_RPC_MKDIR, .ino = R1, .name = meta_name_c("d"),
				  .mode = 0755 };
	assert_int_equal(both(&m, &FX_ROOT, &d), 0);
	uint32_t cflags = META_O_EXCL | META_O_WRITE | META_O_IDATA;
	m = (struct meta_rpc_req){ .type = META_RPC_CREATE_DIR, .ino = d.ino,
				   .name = meta_name_c("f"), .mode = 0644, .flags = cflags };
	assert_int_equal(both(&m, &FX_ROOT, &f), 0);
	assert_int_equal(both(&m, &FX_ROOT, NULL), -EEXIST); /* sent again: runs again */
	m.flags = META_O_WRITE;
	assert_int_equal(both(&m, &FX_ROOT, NULL), 0); /* opens the file */
	m.flags = cflags;
	m.ino = 999999;
	assert_int_equal(both(&m, &FX_ROOT, NULL), -ENOENT);
	m.ino = f.ino;
	assert_int_equal(both(&m, &FX_ROOT, NULL), -ENOTDIR);
	m.ino = d.ino;
	m.name = meta_name_c(longname);
	assert_int_equal(both(&m, &FX_ROOT, NULL), -ENAMETOOLONG);
	m.name = meta_name_c("g");
	assert_int_equal(both(&m, &user, NULL), -EACCES);
	m = (struct meta_rpc_req){ .type = META_RPC_LOOKUP, .ino = d.ino, .name = meta_name_c("f") };
	assert_int_equal(both(&m, &FX_ROOT, NULL), 0);
	m.name = meta_name_c("none");
	assert_int_equal(both(&m, &FX_ROOT, NULL), -ENOENT);
	m = (struct meta_rpc_req){ .type = META_RPC_GETATTR, .ino = d.ino };
	assert_int_equal(both(&m, &FX_ROOT, NULL), 0);
	m = (struct meta_rpc_req){ .type = META_RPC_SYMLINK, .ino = d.ino, .name = meta_name_c("s"),
				   .data = (const uint8_t *)"target", .data_len = 6 };
	assert_int_equal(both(&m, &FX_ROOT, &s), 0);
	assert_int_equal(s.target_len, 6);
	m = (struct meta_rpc_req){ .type = META_RPC_LINK, .ino = f.ino, .ino2 = d.ino,
				   .name = meta_name_c("h") };
	assert_int_equal(both(&m, &FX_ROOT, NULL), 0);
	m = (struct meta_rpc_req){ .type = META_RPC_RENAME, .ino = d.ino, .name = meta_name_c("h"),
				   .ino2 = d.ino, .name2 = meta_name_c("h2") };
	assert_int_equal(both(&m, &FX_ROOT, NULL), 0);
	m = (struct meta_rpc_req){ .type = META_RPC_SETATTR, .ino = f.ino,
				   .sa = { .valid = META_SET_MODE, .mode = 0600 } };
	assert_int_equal(both(&m, &FX_ROOT, NULL), 0);
	m.sa = (struct meta_setattr){ .valid = META_SET_SIZE, .size = 5 };
	assert_int_equal(both(&m, &FX_ROOT, NULL), META_DISPATCH_PASS); /* the service's */
	m = (struct meta_rpc_req){ .type = META_RPC_UNLINK_DIR, .ino = d.ino, .name = meta_name_c("f") };
	assert_int_equal(both(&m, &FX_ROOT, NULL), 0);
	assert_int_equal(both(&m, &FX_ROOT, NULL), -ENOENT);
	m = (struct meta_rpc_req){ .type = META_RPC_RMDIR, .ino = R1, .name = meta_name_c("d") };
	assert_int_equal(both(&m, &FX_ROOT, NULL), -ENOTEMPTY);
	m = (struct meta_rpc_req){ .type = META_RPC_UNLINK, .ino = d.ino, .name = meta_name_c("h2") };
	assert_int_equal(both(&m, &FX_ROOT, NULL), 0);
	m.name = meta_name_c("s");
	assert_int_equal(both(&m, &FX_ROOT, NULL), 0);
	m = (struct meta_rpc_req){ .type = META_RPC_RMDIR, .ino = R1, .name = meta_name_c("d") };
	assert_int_equal(both(&m, &FX_ROOT, NULL), 0);
	assert_int_equal(idem_keys(), 0);

	/* a type whose reply borrows its bytes is refused before it runs */
	char err[256];
	struct meta_rpc_resp r = { .type = META_RPC_READDIR };
	m = (struct meta_rpc_req){ .type = META_RPC_READDIR, .ino = R1, .count = 10 };
	assert_int_equal(meta_dispatch_in_process_req(M2, S2, &m, &r, err, sizeof(err)), -EINVAL);

	buf_fini(&S2->out);
	free(S2);
	meta_free(M2);
	fx_teardown(&F2);
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
	/* a create that may open an existing file and truncate it */
	for (int i = 0; i < 2; i++) {
		uint16_t type = i ? META_RPC_CREATE_DIR : META_RPC_CREATE;
		m = (struct meta_rpc_req){ .type = type, .flags = META_O_WRITE };
		assert_int_equal(meta_request_kv_only(&m), 1);
		m.flags |= META_O_TRUNC;
		assert_int_equal(meta_request_kv_only(&m), 0);
		m.flags |= META_O_EXCL;
		assert_int_equal(meta_request_kv_only(&m), 1);
	}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_forms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_idem, setup, teardown),
		cmocka_unit_test(test_other_types),
		cmocka_unit_test_setup_teardown(test_direct_same, setup, teardown),
	};
	return fx_run_groups("meta dispatch kv-only", tests, sizeof(tests) / sizeof(tests[0]),
			     argc, argv, NULL);
}
