/* test_meta_proto.c - metadata-service message codecs (meta_proto.h).
 *
 * test_wire_layout pins the bytes of a set of requests and replies against
 * bytes built here field by field from the catalog (net/rpc_proto.h), so a
 * swapped, dropped or resized field fails; the other tests pin the
 * optional tails old peers omit, the error code of each limit, and a round
 * trip of every type. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "common/status.h"
#include "meta/meta_proto.h"
#include "test_rand.h"

struct golden {
	uint8_t b[2048];
	size_t n;
};

static void g_le(struct golden *g, uint64_t v, int bytes)
{
	assert_true(g->n + (size_t)bytes <= sizeof(g->b));
	for (int i = 0; i < bytes; i++)
		g->b[g->n++] = (uint8_t)(v >> (8 * i));
}

static void g_blob(struct golden *g, const void *p, uint32_t n)
{
	g_le(g, n, 4);
	assert_true(g->n + n <= sizeof(g->b));
	memcpy(g->b + g->n, p, n);
	g->n += n;
}

static void assert_golden(const struct buf *b, const struct golden *g)
{
	assert_int_equal(b->len, g->n);
	assert_memory_equal(b->data, g->b, g->n);
}

/* Every request starts: u32 uid, u32 gid, u32 ngroups, groups, u64 client, u64 seq. */
static void g_hdr(struct golden *g)
{
	g->n = 0;
	g_le(g, 0x01010101, 4), g_le(g, 0x02020202, 4), g_le(g, 2, 4);
	g_le(g, 0x0a0a0a0a, 4), g_le(g, 0x0b0b0b0b, 4);
	g_le(g, 0x0c0c0c0c0c0c0c0cull, 8), g_le(g, 0x0d0d0d0d0d0d0d0dull, 8);
}

/* A mutation's request ends with u64 idem_low (<= seq). */
#define IDEM_LOW 0x0d0d0d0d0d0d0d00ull

static void req_init(struct meta_rpc_req *m, uint16_t type)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
	m->uid = 0x01010101;
	m->gid = 0x02020202;
	m->ngroups = 2;
	m->groups[0] = 0x0a0a0a0a;
	m->groups[1] = 0x0b0b0b0b;
	m->client = 0x0c0c0c0c0c0c0c0cull;
	m->seq = 0x0d0d0d0d0d0d0d0dull;
	m->idem_low = meta_rpc_is_mutation(type) ? IDEM_LOW : 0;
}

/* An inode record: u64 ino, u8 type, u32 mode uid gid nlink, u64 size,
 * i64 atime mtime ctime, u64 truncate_ver, u32 chains_used, u64 parent,
 * u8 has_layout, [layout: u32 chunk_size stripe table_id, u64 seed,
 * u32 n, n x u32 chain], target blob. */
static void g_inode(struct golden *g, const struct meta_inode *in)
{
	g_le(g, in->ino, 8), g_le(g, in->type, 1);
	g_le(g, in->mode, 4), g_le(g, in->uid, 4), g_le(g, in->gid, 4), g_le(g, in->nlink, 4);
	g_le(g, in->size, 8);
	g_le(g, (uint64_t)in->atime, 8), g_le(g, (uint64_t)in->mtime, 8), g_le(g, (uint64_t)in->ctime, 8);
	g_le(g, in->truncate_ver, 8), g_le(g, in->chains_used, 4), g_le(g, in->parent, 8);
	g_le(g, (uint64_t)in->has_layout, 1);
	if (in->has_layout) {
		g_le(g, in->layout.chunk_size, 4), g_le(g, in->layout.stripe, 4);
		g_le(g, in->layout.table_id, 4), g_le(g, in->layout.seed, 8);
		g_le(g, in->layout.nchains, 4);
		for (uint32_t i = 0; i < in->layout.nchains; i++)
			g_le(g, in->layout.chains[i], 4);
	}
	g_blob(g, in->target, in->type == META_T_SYMLINK ? in->target_len : 0);
}

static void make_inode(struct meta_inode *in, int symlink)
{
	memset(in, 0, sizeof(*in));
	in->ino = 0x1111111111111111ull;
	in->type = symlink ? META_T_SYMLINK : META_T_FILE;
	in->mode = 0x21212121, in->uid = 0x22222222, in->gid = 0x23232323, in->nlink = 0x24242424;
	in->size = 0x2525252525252525ull;
	in->atime = 0x2626262626262626ll, in->mtime = 0x2727272727272727ll, in->ctime = 0x2828282828282828ll;
	in->truncate_ver = 0x2929292929292929ull, in->chains_used = 0x2a2a2a2a;
	in->parent = 0x2b2b2b2b2b2b2b2bull;
	in->has_layout = 1;
	in->layout = (struct meta_layout){ 0x31313131, 0x32323232, 0x33333333, 0x3434343434343434ull,
					   2, { 0x35353535, 0x36363636 } };
	if (symlink) {
		strcpy(in->target, "../t");
		in->target_len = 4;
	}
	in->rdev = 0x3737373737373737ull;
	in->idata = 1;
}

static void check_req(const struct meta_rpc_req *m, const struct golden *g)
{
	static struct meta_rpc_req d;
	struct buf b = BUF_INIT, b2 = BUF_INIT;
	assert_int_equal(meta_rpc_req_encode(&b, m), 0);
	assert_golden(&b, g);
	assert_int_equal(meta_rpc_req_decode(m->type, g->b, g->n, &d), 0);
	assert_int_equal(meta_rpc_req_encode(&b2, &d), 0);
	assert_golden(&b2, g);
	buf_fini(&b);
	buf_fini(&b2);
}

static void test_wire_layout_req(void **state)
{
	(void)state;
	static struct meta_rpc_req m;
	struct golden g;

	/* 210 RENAME: u64 parent, name, u64 new parent, name, u32 flags. */
	req_init(&m, META_RPC_RENAME);
	m.ino = 0x4141414141414141ull, m.name = meta_name_c("from");
	m.ino2 = 0x4242424242424242ull, m.name2 = meta_name_c("to-name"), m.flags = 0x43434343;
	g_hdr(&g);
	g_le(&g, 0x4141414141414141ull, 8), g_blob(&g, "from", 4);
	g_le(&g, 0x4242424242424242ull, 8), g_blob(&g, "to-name", 7), g_le(&g, 0x43434343, 4);
	g_le(&g, IDEM_LOW, 8);
	check_req(&m, &g);

	/* 203 SETATTR: u64 ino, u32 valid mode uid gid, u64 size, i64 atime mtime ctime. */
	req_init(&m, META_RPC_SETATTR);
	m.ino = 5;
	m.sa = (struct meta_setattr){ 0x51515151, 0x52525252, 0x53535353, 0x54545454,
				      0x5555555555555555ull, 0x56, 0x57, 0x58 };
	g_hdr(&g);
	g_le(&g, 5, 8), g_le(&g, 0x51515151, 4), g_le(&g, 0x52525252, 4), g_le(&g, 0x53535353, 4);
	g_le(&g, 0x54545454, 4), g_le(&g, 0x5555555555555555ull, 8);
	g_le(&g, 0x56, 8), g_le(&g, 0x57, 8), g_le(&g, 0x58, 8), g_le(&g, IDEM_LOW, 8);
	check_req(&m, &g);

	/* 206 CLOSE: u64 ino, u64 session, length report (u8 has, u64 length,
	 * u64 truncate_ver), u32 flags. */
	req_init(&m, META_RPC_CLOSE);
	m.ino = 0x61, m.ino2 = 0x62, m.has_len = 1;
	m.len = (struct meta_length){ 0x6363636363636363ull, 0x64 };
	m.flags = META_CLOSE_LEN_KNOWN;
	g_hdr(&g);
	g_le(&g, 0x61, 8), g_le(&g, 0x62, 8), g_le(&g, 1, 1);
	g_le(&g, 0x6363636363636363ull, 8), g_le(&g, 0x64, 8), g_le(&g, META_CLOSE_LEN_KNOWN, 4);
	g_le(&g, IDEM_LOW, 8);
	check_req(&m, &g);
	/* without a length report its values travel as zeros */
	m.has_len = 0;
	g_hdr(&g);
	g_le(&g, 0x61, 8), g_le(&g, 0x62, 8), g_le(&g, 0, 1), g_le(&g, 0, 8), g_le(&g, 0, 8);
	g_le(&g, META_CLOSE_LEN_KNOWN, 4), g_le(&g, IDEM_LOW, 8);
	struct buf b = BUF_INIT;
	assert_int_equal(meta_rpc_req_encode(&b, &m), 0);
	assert_golden(&b, &g);
	buf_fini(&b);

	/* 220 SYNC: u64 ino, length report, u8 query. */
	req_init(&m, META_RPC_SYNC);
	m.ino = 0x71, m.has_len = 1, m.len = (struct meta_length){ 0x72, 0x73 }, m.query = 1;
	g_hdr(&g);
	g_le(&g, 0x71, 8), g_le(&g, 1, 1), g_le(&g, 0x72, 8), g_le(&g, 0x73, 8), g_le(&g, 1, 1);
	check_req(&m, &g);

	/* 230 LOCK_SET: u64 ino, u64 owner, u32 pid, u8 kind, u8 type, u64 start, u64 end. */
	req_init(&m, META_RPC_LOCK_SET);
	m.ino = 0x81;
	m.lock = (struct meta_lock){ 0, 0x8282828282828282ull, 0x83838383, META_LOCK_POSIX,
				     META_LOCK_WR, 0x84, 0x85 };
	g_hdr(&g);
	g_le(&g, 0x81, 8), g_le(&g, 0x8282828282828282ull, 8), g_le(&g, 0x83838383, 4);
	g_le(&g, META_LOCK_POSIX, 1), g_le(&g, META_LOCK_WR, 1), g_le(&g, 0x84, 8), g_le(&g, 0x85, 8);
	check_req(&m, &g);

	/* 262 IDATA_CONVERT: u64 ino, u32 step, u32 flags, u64 ver. */
	req_init(&m, META_RPC_IDATA_CONVERT);
	m.ino = 0x91, m.count = META_RPC_IDATA_COMMIT, m.flags = 0x92929292, m.ver = 0x93;
	g_hdr(&g);
	g_le(&g, 0x91, 8), g_le(&g, META_RPC_IDATA_COMMIT, 4), g_le(&g, 0x92929292, 4), g_le(&g, 0x93, 8);
	g_le(&g, IDEM_LOW, 8);
	check_req(&m, &g);

	/* 216 SETXATTR: u64 ino, name, value blob, u32 flags. */
	req_init(&m, META_RPC_SETXATTR);
	m.ino = 0xa1, m.name = meta_name_c("user.k"), m.data = (const uint8_t *)"val";
	m.data_len = 3, m.flags = 0xa2a2a2a2;
	g_hdr(&g);
	g_le(&g, 0xa1, 8), g_blob(&g, "user.k", 6), g_blob(&g, "val", 3), g_le(&g, 0xa2a2a2a2, 4);
	g_le(&g, IDEM_LOW, 8);
	check_req(&m, &g);
}

static void test_wire_layout_resp(void **state)
{
	(void)state;
	static struct meta_inode in, din, out, dout;
	struct golden g;
	struct buf b = BUF_INIT;
	make_inode(&in, 1);

	/* 205 OPEN: inode, u64 session, tail: u64 rdev, u8 inline flag,
	 * u8 has_idata [u64 ver, u32 flags, blob]. */
	struct meta_rpc_resp r = { .type = META_RPC_OPEN, .inode = &in, .session = 0xb1b1b1b1b1b1b1b1ull,
				   .has_idata = 1, .idata_ver = 0xb2, .idata_flags = 0xb3b3b3b3,
				   .idata = (const uint8_t *)"inline", .idata_len = 6 };
	g.n = 0;
	g_inode(&g, &in);
	g_le(&g, 0xb1b1b1b1b1b1b1b1ull, 8), g_le(&g, in.rdev, 8), g_le(&g, 1, 1);
	g_le(&g, 1, 1), g_le(&g, 0xb2, 8), g_le(&g, 0xb3b3b3b3, 4), g_blob(&g, "inline", 6);
	assert_int_equal(meta_rpc_resp_encode(&b, &r), 0);
	assert_golden(&b, &g);
	struct meta_rpc_resp d = { .type = META_RPC_OPEN, .inode = &out };
	assert_int_equal(meta_rpc_resp_decode(g.b, g.n, &d), 0);
	assert_int_equal(d.session, 0xb1b1b1b1b1b1b1b1ull);
	assert_int_equal(out.rdev, in.rdev);
	assert_int_equal(out.idata, 1);
	assert_string_equal(out.target, "../t");
	assert_int_equal(out.layout.chains[1], 0x36363636);
	assert_int_equal(d.has_idata, 1);
	assert_int_equal(d.idata_flags, 0xb3b3b3b3);
	assert_int_equal(d.idata_len, 6);
	assert_memory_equal(d.idata, "inline", 6);

	/* 265 CREATE_DIR: inode, u64 session, the directory's inode, then the
	 * first inode's tail (rdev, inline flag). */
	make_inode(&din, 0);
	din.type = META_T_DIR, din.has_layout = 0;
	r = (struct meta_rpc_resp){ .type = META_RPC_CREATE_DIR, .inode = &in, .session = 0xc1,
				    .dir = &din };
	g.n = 0;
	g_inode(&g, &in), g_le(&g, 0xc1, 8), g_inode(&g, &din), g_le(&g, in.rdev, 8), g_le(&g, 1, 1);
	buf_reset(&b);
	assert_int_equal(meta_rpc_resp_encode(&b, &r), 0);
	assert_golden(&b, &g);
	d = (struct meta_rpc_resp){ .type = META_RPC_CREATE_DIR, .inode = &out, .dir = &dout };
	assert_int_equal(meta_rpc_resp_decode(g.b, g.n, &d), 0);
	assert_int_equal(dout.type, META_T_DIR);
	assert_int_equal(dout.rdev, 0);
	assert_int_equal(out.rdev, in.rdev);

	/* 214 READDIR: u8 eof, u32 n, n x (u64 ino, u8 type, name). */
	struct meta_dirent ents[2] = { { 0xd1, META_T_FILE, 1, "a" }, { 0xd2, META_T_DIR, 2, "bc" } };
	r = (struct meta_rpc_resp){ .type = META_RPC_READDIR, .ents = ents, .n = 2, .eof = 1 };
	g.n = 0;
	g_le(&g, 1, 1), g_le(&g, 2, 4);
	g_le(&g, 0xd1, 8), g_le(&g, META_T_FILE, 1), g_blob(&g, "a", 1);
	g_le(&g, 0xd2, 8), g_le(&g, META_T_DIR, 1), g_blob(&g, "bc", 2);
	buf_reset(&b);
	assert_int_equal(meta_rpc_resp_encode(&b, &r), 0);
	assert_golden(&b, &g);

	/* 226 DIRLIST: u64 dir_ver, then READDIR's reply. */
	r = (struct meta_rpc_resp){ .type = META_RPC_DIRLIST, .ents = ents, .n = 2, .eof = 0,
				    .dir_ver = 0x7171717171717171ull };
	g.n = 0;
	g_le(&g, 0x7171717171717171ull, 8), g_le(&g, 0, 1), g_le(&g, 2, 4);
	g_le(&g, 0xd1, 8), g_le(&g, META_T_FILE, 1), g_blob(&g, "a", 1);
	g_le(&g, 0xd2, 8), g_le(&g, META_T_DIR, 1), g_blob(&g, "bc", 2);
	buf_reset(&b);
	assert_int_equal(meta_rpc_resp_encode(&b, &r), 0);
	assert_golden(&b, &g);
	{
		struct meta_dirent got[2];
		d = (struct meta_rpc_resp){ .type = META_RPC_DIRLIST, .ents = got, .ents_cap = 2 };
		assert_int_equal(meta_rpc_resp_decode(g.b, g.n, &d), 0);
		assert_int_equal(d.dir_ver, 0x7171717171717171ull);
		assert_int_equal(d.n, 2);
		assert_int_equal(d.eof, 0);
		assert_string_equal(got[1].name, "bc");
		/* hostile replies: more entries than the caller's array, a
		 * count over the page limit, a truncated entry, no version */
		d = (struct meta_rpc_resp){ .type = META_RPC_DIRLIST, .ents = got, .ents_cap = 1 };
		assert_int_equal(meta_rpc_resp_decode(g.b, g.n, &d), -CFS_EPROTO);
		d = (struct meta_rpc_resp){ .type = META_RPC_DIRLIST, .ents = got, .ents_cap = 2 };
		assert_int_equal(meta_rpc_resp_decode(g.b, g.n - 1, &d), -CFS_EPROTO);
		assert_int_equal(meta_rpc_resp_decode(g.b, 7, &d), -CFS_EPROTO);
		static struct golden h;
		h.n = 0;
		g_le(&h, 1, 8), g_le(&h, 1, 1), g_le(&h, META_RPC_READDIR_MAX + 1, 4);
		assert_int_equal(meta_rpc_resp_decode(h.b, h.n, &d), -CFS_EPROTO);
		h.n = 0;
		g_le(&h, 1, 8), g_le(&h, 2, 1), g_le(&h, 0, 4); /* eof not 0/1 */
		assert_int_equal(meta_rpc_resp_decode(h.b, h.n, &d), -CFS_EPROTO);
		h.n = 0;
		g_le(&h, 1, 8), g_le(&h, 1, 1), g_le(&h, 1, 4);
		g_le(&h, 5, 8), g_le(&h, META_T_FILE, 1), g_le(&h, META_NAME_MAX + 1, 4);
		assert_int_equal(meta_rpc_resp_decode(h.b, h.n, &d), -CFS_EPROTO);
	}

	/* 231 LOCK_GET: u8 has_lock [u64 client, u64 owner, u32 pid, u8 kind,
	 * u8 type, u64 start, u64 end]. */
	r = (struct meta_rpc_resp){ .type = META_RPC_LOCK_GET, .has_lock = 1,
				    .lock = { 0xe1, 0xe2, 0xe3e3e3e3, META_LOCK_FLOCK, META_LOCK_RD,
					      0xe4, 0xe5 } };
	g.n = 0;
	g_le(&g, 1, 1), g_le(&g, 0xe1, 8), g_le(&g, 0xe2, 8), g_le(&g, 0xe3e3e3e3, 4);
	g_le(&g, META_LOCK_FLOCK, 1), g_le(&g, META_LOCK_RD, 1), g_le(&g, 0xe4, 8), g_le(&g, 0xe5, 8);
	buf_reset(&b);
	assert_int_equal(meta_rpc_resp_encode(&b, &r), 0);
	assert_golden(&b, &g);
	d = (struct meta_rpc_resp){ .type = META_RPC_LOCK_GET };
	assert_int_equal(meta_rpc_resp_decode(g.b, g.n, &d), 0);
	assert_memory_equal(&d.lock, &r.lock, sizeof(r.lock));
	/* no conflict: the flag alone */
	r.has_lock = 0;
	buf_reset(&b);
	assert_int_equal(meta_rpc_resp_encode(&b, &r), 0);
	assert_int_equal(b.len, 1);
	assert_int_equal(b.data[0], 0);

	/* 221 LAYOUT_GET: u8 has_layout [layout]; 200 INFO: u64 instance, u32 threads,
	 * u32 flags (optional). */
	r = (struct meta_rpc_resp){ .type = META_RPC_LAYOUT_GET, .has_layout = 1, .layout = &in.layout };
	g.n = 0;
	g_le(&g, 1, 1), g_le(&g, 0x31313131, 4), g_le(&g, 0x32323232, 4), g_le(&g, 0x33333333, 4);
	g_le(&g, 0x3434343434343434ull, 8), g_le(&g, 2, 4), g_le(&g, 0x35353535, 4), g_le(&g, 0x36363636, 4);
	buf_reset(&b);
	assert_int_equal(meta_rpc_resp_encode(&b, &r), 0);
	assert_golden(&b, &g);
	r = (struct meta_rpc_resp){ .type = META_RPC_INFO, .instance_id = 0xf1f1f1f1f1f1f1f1ull,
				    .threads = 0xf2f2f2f2, .info_flags = META_INFO_F_NO_WRITES };
	g.n = 0;
	g_le(&g, 0xf1f1f1f1f1f1f1f1ull, 8), g_le(&g, 0xf2f2f2f2, 4), g_le(&g, 1, 4);
	buf_reset(&b);
	assert_int_equal(meta_rpc_resp_encode(&b, &r), 0);
	assert_golden(&b, &g);
	/* an older meta's reply has no flags: 0 */
	struct meta_rpc_resp dr = { .type = META_RPC_INFO };
	assert_int_equal(meta_rpc_resp_decode(b.data, b.len - 4, &dr), 0);
	assert_int_equal(dr.threads, 0xf2f2f2f2);
	assert_int_equal(dr.info_flags, 0);
	buf_fini(&b);
}

/* Fields added later are absent from old peers' messages: they decode as 0. */
static void test_optional_tails(void **state)
{
	(void)state;
	static struct meta_rpc_req m, d;
	static struct meta_inode in, out;
	struct buf b = BUF_INIT;

	/* CLOSE without its trailing idem_low, or flags and idem_low, is an
	 * old client's */
	req_init(&m, META_RPC_CLOSE);
	m.ino = 1, m.ino2 = 2, m.flags = META_CLOSE_LEN_KNOWN;
	assert_int_equal(meta_rpc_req_encode(&b, &m), 0);
	assert_int_equal(meta_rpc_req_decode(META_RPC_CLOSE, b.data, b.len, &d), 0);
	assert_int_equal(d.flags, META_CLOSE_LEN_KNOWN);
	assert_int_equal(d.idem_low, IDEM_LOW);
	for (size_t cut = 1; cut <= 12; cut++) {
		assert_int_equal(meta_rpc_req_decode(META_RPC_CLOSE, b.data, b.len - cut, &d), 0);
		assert_int_equal(d.idem_low, 0);
		assert_int_equal(d.flags, cut <= 8 ? META_CLOSE_LEN_KNOWN : 0);
		assert_int_equal(d.ino2, 2);
	}
	/* ... but the length report before them is not optional */
	assert_int_equal(meta_rpc_req_decode(META_RPC_CLOSE, b.data, b.len - 13, &d), -CFS_EPROTO);
	/* a watermark above the request's own seq, or on an untracked request,
	 * is malformed: it would drop a record the client still waits for */
	m.idem_low = m.seq + 1;
	buf_reset(&b);
	assert_int_equal(meta_rpc_req_encode(&b, &m), 0);
	assert_int_equal(meta_rpc_req_decode(META_RPC_CLOSE, b.data, b.len, &d), -CFS_EPROTO);
	m.seq = 0, m.idem_low = 1;
	buf_reset(&b);
	assert_int_equal(meta_rpc_req_encode(&b, &m), 0);
	assert_int_equal(meta_rpc_req_decode(META_RPC_CLOSE, b.data, b.len, &d), -CFS_EPROTO);
	m.idem_low = m.seq = 7; /* the lowest awaited may be the request itself */
	buf_reset(&b);
	assert_int_equal(meta_rpc_req_encode(&b, &m), 0);
	assert_int_equal(meta_rpc_req_decode(META_RPC_CLOSE, b.data, b.len, &d), 0);
	assert_int_equal(d.idem_low, 7);
	buf_reset(&b);

	/* OPEN's reply from older servers: without the idata block, the inline
	 * flag, the rdev */
	make_inode(&in, 0);
	struct meta_rpc_resp r = { .type = META_RPC_OPEN, .inode = &in, .session = 9, .has_idata = 1,
				   .idata = (const uint8_t *)"x", .idata_len = 1 };
	buf_reset(&b);
	assert_int_equal(meta_rpc_resp_encode(&b, &r), 0);
	size_t full = b.len, idata_block = 1 + 8 + 4 + 4 + 1;
	struct meta_rpc_resp dr = { .type = META_RPC_OPEN, .inode = &out };
	assert_int_equal(meta_rpc_resp_decode(b.data, full, &dr), 0);
	assert_int_equal(dr.has_idata, 1);
	assert_int_equal(meta_rpc_resp_decode(b.data, full - idata_block, &dr), 0);
	assert_int_equal(dr.has_idata, 0);
	assert_int_equal(out.idata, 1);
	assert_int_equal(out.rdev, in.rdev);
	assert_int_equal(meta_rpc_resp_decode(b.data, full - idata_block - 1, &dr), 0);
	assert_int_equal(out.idata, 0);
	assert_int_equal(out.rdev, in.rdev);
	assert_int_equal(dr.session, 9);
	/* a partial rdev is ignored like any unknown trailing bytes */
	for (size_t cut = 1; cut <= 9; cut++) {
		assert_int_equal(meta_rpc_resp_decode(b.data, full - idata_block - cut, &dr), 0);
		assert_int_equal(out.rdev, cut == 1 ? in.rdev : 0);
	}
	/* a truncated idata block once its flag is there is not */
	assert_int_equal(meta_rpc_resp_decode(b.data, full - 1, &dr), -CFS_EPROTO);
	buf_fini(&b);
}

/* Encodes M and decodes the bytes: the decoder's code. */
static int decode_req(const struct meta_rpc_req *m)
{
	static struct meta_rpc_req d;
	struct buf b = BUF_INIT;
	assert_int_equal(meta_rpc_req_encode(&b, m), 0);
	int rc = meta_rpc_req_decode(m->type, b.data, b.len, &d);
	buf_fini(&b);
	return rc;
}

static void test_limits(void **state)
{
	(void)state;
	static struct meta_rpc_req m;
	static char big[META_XATTR_VALUE_MAX + 2];
	memset(big, 'x', sizeof(big));

	req_init(&m, META_RPC_LOOKUP);
	m.name = (struct meta_name){ big, META_NAME_MAX };
	assert_int_equal(decode_req(&m), 0);
	m.name.n = META_NAME_MAX + 1;
	assert_int_equal(decode_req(&m), -ENAMETOOLONG);
	/* RENAME's second name too */
	req_init(&m, META_RPC_RENAME);
	m.name = meta_name_c("a");
	m.name2 = (struct meta_name){ big, META_NAME_MAX + 1 };
	assert_int_equal(decode_req(&m), -ENAMETOOLONG);

	req_init(&m, META_RPC_SYMLINK);
	m.name = meta_name_c("l");
	m.data = (const uint8_t *)big, m.data_len = META_SYMLINK_MAX;
	assert_int_equal(decode_req(&m), 0);
	m.data_len = META_SYMLINK_MAX + 1;
	assert_int_equal(decode_req(&m), -ENAMETOOLONG);

	req_init(&m, META_RPC_SETXATTR);
	m.name = meta_name_c("user.a");
	m.data = (const uint8_t *)big, m.data_len = META_XATTR_VALUE_MAX + 1;
	assert_int_equal(decode_req(&m), -E2BIG);

	req_init(&m, META_RPC_IDATA_WRITE);
	m.data = (const uint8_t *)big, m.data_len = META_IDATA_MAX + 1;
	assert_int_equal(decode_req(&m), -CFS_ENOTINLINE);

	req_init(&m, META_RPC_READDIR);
	m.count = 0;
	assert_int_equal(decode_req(&m), -EINVAL);
	m.count = META_RPC_READDIR_MAX;
	assert_int_equal(decode_req(&m), 0);
	m.count = META_RPC_READDIR_MAX + 1;
	assert_int_equal(decode_req(&m), -EINVAL);
	m.type = META_RPC_LOOKUP_PLUS;
	m.count = META_PLUS_MAX + 1;
	assert_int_equal(decode_req(&m), -EINVAL);
	m.count = META_PLUS_MAX;
	assert_int_equal(decode_req(&m), 0);

	req_init(&m, META_RPC_IDATA_CONVERT);
	m.count = META_RPC_IDATA_COMMIT + 1;
	assert_int_equal(decode_req(&m), -EINVAL);

	req_init(&m, META_RPC_LOCK_SET);
	m.lock = (struct meta_lock){ .kind = 9, .type = META_LOCK_RD };
	assert_int_equal(decode_req(&m), -EINVAL);

	req_init(&m, META_RPC_DIRVER);
	m.data = (const uint8_t *)big, m.data_len = 12;
	assert_int_equal(decode_req(&m), -CFS_EPROTO);
	m.data_len = 8 * (META_RPC_DIRVER_MAX + 1);
	assert_int_equal(decode_req(&m), -EINVAL);

	/* CLOSE_MANY: whole (ino, session) pairs, 1..META_CLOSE_MANY_MAX of them */
	req_init(&m, META_RPC_CLOSE_MANY);
	m.data = (const uint8_t *)big, m.data_len = 24;
	assert_int_equal(decode_req(&m), -CFS_EPROTO);
	m.data_len = 16 * (META_CLOSE_MANY_MAX + 1);
	assert_int_equal(decode_req(&m), -EINVAL);
	m.data_len = 16 * META_CLOSE_MANY_MAX;
	assert_int_equal(decode_req(&m), 0);

	req_init(&m, META_RPC_SYNC);
	struct buf b = BUF_INIT;
	static struct meta_rpc_req d;
	assert_int_equal(meta_rpc_req_encode(&b, &m), 0);
	b.data[b.len - 1] = 2; /* query is 0 or 1 */
	assert_int_equal(meta_rpc_req_decode(META_RPC_SYNC, b.data, b.len, &d), -CFS_EPROTO);

	/* groups over the limit; a name over its limit but cut short is a protocol error */
	buf_reset(&b);
	req_init(&m, META_RPC_LOOKUP);
	m.name = (struct meta_name){ big, META_NAME_MAX + 10 };
	assert_int_equal(meta_rpc_req_encode(&b, &m), 0);
	assert_int_equal(meta_rpc_req_decode(META_RPC_LOOKUP, b.data, b.len - 1, &d), -CFS_EPROTO);
	buf_reset(&b);
	req_init(&m, META_RPC_GETATTR);
	m.ngroups = META_RPC_GROUPS_MAX + 1;
	assert_int_equal(meta_rpc_req_encode(&b, &m), 0);
	uint8_t pad[8 * META_RPC_GROUPS_MAX] = { 0 };
	buf_append(&b, pad, sizeof(pad));
	assert_int_equal(meta_rpc_req_decode(META_RPC_GETATTR, b.data, b.len, &d), -EINVAL);

	/* unknown types */
	assert_int_equal(meta_rpc_req_decode(227, b.data, b.len, &d), -CFS_EPROTO);
	m.type = 227;
	buf_reset(&b);
	assert_int_equal(meta_rpc_req_encode(&b, &m), -EINVAL);
	assert_int_equal(b.len, 0);
	struct meta_rpc_resp r = { .type = 199 };
	assert_int_equal(meta_rpc_resp_encode(&b, &r), -EINVAL);
	assert_int_equal(meta_rpc_resp_decode("", 0, &r), -CFS_EPROTO);
	assert_null(meta_rpc_name(227));
	assert_string_equal(meta_rpc_name(META_RPC_LOOKUP_PLUS), "LOOKUP_PLUS");
	assert_true(meta_rpc_is_mutation(META_RPC_UNLINK_DIR));
	assert_false(meta_rpc_is_mutation(META_RPC_LOCK_SET));
	/* an inode reply needs its inode */
	r = (struct meta_rpc_resp){ .type = META_RPC_GETATTR };
	assert_int_equal(meta_rpc_resp_encode(&b, &r), -EINVAL);
	buf_fini(&b);
}

/* Every named type: a filled request and reply decode and re-encode to the
 * same bytes, and a request one byte short fails unless its tail is optional. */
static void test_every_type(void **state)
{
	(void)state;
	static struct meta_rpc_req m, d;
	static struct meta_inode in, dir, out, dout;
	static struct meta_dirent ents[3], dents[3];
	static struct meta_layout lay;
	int types = 0;
	make_inode(&in, 1);
	make_inode(&dir, 0);
	dir.type = META_T_DIR;
	for (int i = 0; i < 3; i++)
		ents[i] = (struct meta_dirent){ 10 + (uint64_t)i, META_T_FILE, 1, "e" };
	for (uint32_t t = 0; t <= UINT16_MAX; t++) {
		if (!meta_rpc_name((uint16_t)t))
			continue;
		types++;
		struct buf b1 = BUF_INIT, b2 = BUF_INIT;
		req_init(&m, (uint16_t)t);
		m.ino = 1, m.ino2 = 2, m.name = meta_name_c("n"), m.name2 = meta_name_c("m");
		m.count = 1, m.data = (const uint8_t *)"12345678", m.data_len = 8;
		if (t == META_RPC_CLOSE_MANY) /* whole 16-byte pairs */
			m.data = (const uint8_t *)"1234567812345678", m.data_len = 16;
		m.lock = (struct meta_lock){ 0, 1, 2, META_LOCK_POSIX, META_LOCK_RD, 0, 9 };
		assert_int_equal(meta_rpc_req_encode(&b1, &m), 0);
		assert_int_equal(meta_rpc_req_decode((uint16_t)t, b1.data, b1.len, &d), 0);
		assert_int_equal(meta_rpc_req_encode(&b2, &d), 0);
		assert_int_equal(b1.len, b2.len);
		assert_memory_equal(b1.data, b2.data, b1.len);
		/* one byte short fails, but for mutations, whose last field
		 * (idem_low) is optional */
		assert_int_equal(d.idem_low, meta_rpc_is_mutation((uint16_t)t) ? IDEM_LOW : 0);
		int rc = meta_rpc_req_decode((uint16_t)t, b1.data, b1.len - 1, &d);
		assert_int_equal(rc, meta_rpc_is_mutation((uint16_t)t) ? 0 : -CFS_EPROTO);

		struct meta_rpc_resp r = { .type = (uint16_t)t, .inode = &in, .dir = &dir, .ents = ents,
					   .n = 3, .eof = 1, .has_layout = 1, .layout = &in.layout,
					   .data = (const uint8_t *)"12345678", .data_len = 8,
					   .has_lock = 1, .lock = { 3, 1, 2, META_LOCK_POSIX,
								    META_LOCK_RD, 0, 9 } };
		struct buf plus = BUF_INIT;
		if (t == META_RPC_LOOKUP_PLUS) {
			assert_int_equal(meta_rpc_plus_put(&plus, &ents[0], &in), 0);
			r.data = plus.data, r.data_len = (uint32_t)plus.len, r.n = 1;
		}
		if (t == META_RPC_LOOKUP_PLUSD) {
			assert_int_equal(meta_rpc_plusd_put(&plus, &ents[0], &in, NULL, 0), 0);
			r.data = plus.data, r.data_len = (uint32_t)plus.len, r.n = 1;
		}
		buf_reset(&b1);
		buf_reset(&b2);
		assert_int_equal(meta_rpc_resp_encode(&b1, &r), 0);
		struct meta_rpc_resp dr = { .type = (uint16_t)t, .inode = &out, .dir = &dout,
					    .ents = dents, .ents_cap = 3, .layout = &lay };
		assert_int_equal(meta_rpc_resp_decode(b1.data, b1.len, &dr), 0);
		assert_int_equal(meta_rpc_resp_encode(&b2, &dr), 0);
		assert_int_equal(b1.len, b2.len);
		assert_memory_equal(b1.data, b2.data, b1.len);
		buf_fini(&plus);
		buf_fini(&b1);
		buf_fini(&b2);
	}
	assert_true(types >= 38); /* 200..225, 230..233, 240, 242, 260..262, 265..267 */
}

/* ---- copies without the bytes (meta_rpc_req_copy, meta_rpc_resp_copy) ---- */

static uint64_t rng = 88172645463325252ull; /* one seed: a failure repeats */
static uint64_t rnd(void) { return test_rand_next(&rng); }
static void fill(void *p, size_t n) { test_rand_fill(&rng, p, n); }

/* A small value mostly, sometimes any: ranges, flags and enums get hit. */
static uint64_t pick(void)
{
	switch (rnd() % 4) {
	case 0: return 0;
	case 1: return 1 + rnd() % 4;
	default: return rnd();
	}
}

static uint8_t names[2][META_NAME_MAX + 8], blob[16 * META_CLOSE_MANY_MAX + 16];

/* A request of TYPE with every field random, in the encoder's domain
 * (ngroups <= META_RPC_GROUPS_MAX, names and the blob in memory), names
 * and blob lengths across their limits. */
static void random_req(struct meta_rpc_req *m, uint16_t type)
{
	fill(m, sizeof(*m));
	m->type = type;
	m->ngroups = (uint32_t)(rnd() % 4 ? rnd() % 4 : rnd() % (META_RPC_GROUPS_MAX + 1));
	uint32_t *u32s[] = { &m->uid, &m->gid, &m->mode, &m->flags, &m->count, &m->chunk_size,
			     &m->stripe, &m->table_id };
	for (size_t i = 0; i < sizeof(u32s) / sizeof(u32s[0]); i++)
		*u32s[i] = (uint32_t)pick();
	m->seq = pick(), m->idem_low = pick(), m->has_len = (int)pick(), m->query = (int)pick();
	m->lock.kind = (uint8_t)pick(), m->lock.type = (uint8_t)pick();
	m->lock.start = pick(), m->lock.end = pick();
	size_t n1 = rnd() % 3 ? rnd() % 8 : META_NAME_MAX - 1 + rnd() % 4;
	size_t n2 = rnd() % 3 ? rnd() % 8 : META_NAME_MAX - 1 + rnd() % 4;
	fill(names, sizeof(names));
	m->name = (struct meta_name){ (const char *)names[0], n1 };
	m->name2 = (struct meta_name){ (const char *)names[1], n2 };
	m->data = blob;
	m->data_len = (uint32_t)(rnd() % 2 ? 8 * (rnd() % 4) : rnd() % sizeof(blob));
	if (rnd() % 8 == 0)
		m->data = NULL, m->data_len = 0;
}

/* Pointer members compared by what they point to, then zeroed. */
static void req_norm(struct meta_rpc_req *a, struct meta_rpc_req *b)
{
	assert_int_equal(a->name.n, b->name.n);
	assert_int_equal(a->name2.n, b->name2.n);
	assert_int_equal(a->data_len, b->data_len);
	assert_true(!a->name.p == !b->name.p && !a->name2.p == !b->name2.p && !a->data == !b->data);
	if (a->name.n)
		assert_memory_equal(a->name.p, b->name.p, a->name.n);
	if (a->name2.n)
		assert_memory_equal(a->name2.p, b->name2.p, a->name2.n);
	if (a->data_len)
		assert_memory_equal(a->data, b->data, a->data_len);
	a->name.p = b->name.p = NULL;
	a->name2.p = b->name2.p = NULL;
	a->data = b->data = NULL;
}

/* Every named type, random requests: the copy gives what decoding the
 * encoding gives, code and fields. */
static void test_req_copy(void **state)
{
	(void)state;
	static struct meta_rpc_req src, viaw, copy;
	int errs = 0, oks = 0;
	for (uint32_t t = 0; t <= UINT16_MAX; t++) {
		if (!meta_rpc_name((uint16_t)t))
			continue;
		for (int i = 0; i < 400; i++) {
			struct buf b = BUF_INIT;
			random_req(&src, (uint16_t)t);
			assert_int_equal(meta_rpc_req_encode(&b, &src), 0);
			int rc1 = meta_rpc_req_decode((uint16_t)t, b.data, b.len, &viaw);
			int rc2 = meta_rpc_req_copy(&copy, &src);
			buf_fini(&b);
			assert_int_equal(rc1, rc2);
			if (rc1) {
				errs++;
				continue;
			}
			oks++;
			req_norm(&viaw, &copy);
			assert_memory_equal(&viaw, &copy, sizeof(viaw));
		}
	}
	assert_true(errs > 100 && oks > 1000);
}

static void random_inode(struct meta_inode *in)
{
	fill(in, sizeof(*in));
	in->type = (uint8_t)(rnd() % 10 ? 1 + rnd() % META_T_MAX : rnd() % 256);
	in->has_layout = (int)pick(), in->idata = (int)pick();
	in->layout.nchains = (uint32_t)(rnd() % 4 ? rnd() % 4 : rnd() % (2 * META_MAX_STRIPE));
	in->target_len = (uint32_t)(rnd() % 4 ? rnd() % 16 : rnd() % (2 * META_SYMLINK_MAX));
}

/* Every type whose reply the copy takes, random replies (records of bad
 * types, NULL record pointers, caller memory or none): the copy gives
 * what encoding then decoding gives, code, fields and caller memory. */
static void test_resp_copy(void **state)
{
	(void)state;
	static struct meta_inode in, dir, o1, o2, d1, d2;
	static struct meta_layout lay, l1, l2;
	static struct meta_rpc_resp src;
	int types = 0, errs = 0, oks = 0;
	for (uint32_t t = 0; t <= UINT16_MAX; t++) {
		if (!meta_rpc_name((uint16_t)t) || !meta_rpc_resp_copyable((uint16_t)t))
			continue;
		types++;
		for (int i = 0; i < 300; i++) {
			random_inode(&in);
			random_inode(&dir);
			fill(&lay, sizeof(lay));
			lay.nchains = (uint32_t)(rnd() % 2 * META_MAX_STRIPE);
			fill(&src, sizeof(src));
			src.type = (uint16_t)t;
			src.inode = rnd() % 16 ? &in : NULL;
			src.dir = rnd() % 16 ? &dir : NULL;
			src.layout = rnd() % 16 ? &lay : NULL;
			src.has_layout = (int)pick(), src.has_lock = (int)pick();
			src.has_idata = 0; /* IDATA_TAIL replies carry a blob: not copyable */
			src.lock.kind = (uint8_t)pick(), src.lock.type = (uint8_t)pick();
			src.lock.start = pick(), src.lock.end = pick();
			/* the same caller memory on both sides, or none */
			fill(&o1, sizeof(o1));
			fill(&d1, sizeof(d1));
			fill(&l1, sizeof(l1));
			o2 = o1, d2 = d1, l2 = l1;
			int want = (int)(rnd() % 8);
			struct meta_rpc_resp r1 = { .type = (uint16_t)t, .inode = want & 1 ? &o1 : NULL,
						    .dir = want & 2 ? &d1 : NULL,
						    .layout = want & 4 ? &l1 : NULL };
			struct meta_rpc_resp r2 = { .type = (uint16_t)t, .inode = want & 1 ? &o2 : NULL,
						    .dir = want & 2 ? &d2 : NULL,
						    .layout = want & 4 ? &l2 : NULL };
			struct buf b = BUF_INIT;
			int rc1 = meta_rpc_resp_encode(&b, &src);
			if (rc1 == 0)
				rc1 = meta_rpc_resp_decode(b.data, b.len, &r1);
			buf_fini(&b);
			int rc2 = meta_rpc_resp_copy(&r2, &src);
			assert_int_equal(rc1, rc2);
			if (rc1) {
				errs++;
				continue;
			}
			oks++;
			assert_memory_equal(&o1, &o2, sizeof(o1));
			assert_memory_equal(&d1, &d2, sizeof(d1));
			assert_memory_equal(&l1, &l2, sizeof(l1));
			r1.inode = r2.inode = NULL, r1.dir = r2.dir = NULL, r1.layout = r2.layout = NULL;
			assert_memory_equal(&r1, &r2, sizeof(r1));
		}
	}
	/* LOOKUP, GETATTR, CREATE_DIR, UNLINK_DIR among them; READDIR not */
	assert_true(meta_rpc_resp_copyable(META_RPC_CREATE_DIR) &&
		    meta_rpc_resp_copyable(META_RPC_UNLINK_DIR) &&
		    meta_rpc_resp_copyable(META_RPC_LOOKUP) && meta_rpc_resp_copyable(META_RPC_GETATTR));
	assert_false(meta_rpc_resp_copyable(META_RPC_READDIR) ||
		     meta_rpc_resp_copyable(META_RPC_CREATE) || meta_rpc_resp_copyable(META_RPC_READLINK));
	assert_true(types >= 20 && errs > 100 && oks > 1000);
}

/* LOOKUP_PLUSD entries: bytes ride only with an inline file and are
 * exactly its size; the walk returns them in place. */
static void test_plusd_entries(void **state)
{
	(void)state;
	static struct meta_inode in, out;
	struct meta_dirent de = { 10, META_T_FILE, 1, "e" }, dd;
	const uint8_t *bytes;
	uint32_t len;
	struct buf b = BUF_INIT;
	make_inode(&in, 0);
	in.size = 5;
	assert_int_equal(meta_rpc_plusd_put(&b, &de, &in, (const uint8_t *)"hello", 5), 0);
	assert_int_equal(meta_rpc_plusd_put(&b, &de, &in, NULL, 0), 0);
	const uint8_t *p = b.data;
	size_t n = b.len;
	assert_int_equal(meta_rpc_plusd_next(&p, &n, &dd, &out, &bytes, &len), 0);
	assert_non_null(bytes);
	assert_int_equal(len, 5);
	assert_memory_equal(bytes, "hello", 5);
	assert_int_equal(meta_rpc_plusd_next(&p, &n, &dd, &out, &bytes, &len), 0);
	assert_null(bytes);
	assert_int_equal(n, 0);
	/* a length that is not the size, bytes of a chunked file: refused */
	buf_reset(&b);
	assert_int_equal(meta_rpc_plusd_put(&b, &de, &in, (const uint8_t *)"hell", 4), 0);
	p = b.data, n = b.len;
	assert_int_equal(meta_rpc_plusd_next(&p, &n, &dd, &out, &bytes, &len), -CFS_EPROTO);
	buf_reset(&b);
	in.idata = 0;
	assert_int_equal(meta_rpc_plusd_put(&b, &de, &in, (const uint8_t *)"hello", 5), 0);
	p = b.data, n = b.len;
	assert_int_equal(meta_rpc_plusd_next(&p, &n, &dd, &out, &bytes, &len), -CFS_EPROTO);
	/* cut short */
	buf_reset(&b);
	in.idata = 1;
	assert_int_equal(meta_rpc_plusd_put(&b, &de, &in, (const uint8_t *)"hello", 5), 0);
	p = b.data, n = b.len - 1;
	assert_int_equal(meta_rpc_plusd_next(&p, &n, &dd, &out, &bytes, &len), -CFS_EPROTO);
	buf_fini(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wire_layout_req),
		cmocka_unit_test(test_wire_layout_resp),
		cmocka_unit_test(test_optional_tails),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_every_type),
		cmocka_unit_test(test_plusd_entries),
		cmocka_unit_test(test_req_copy),
		cmocka_unit_test(test_resp_copy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
