/* meta_ns_cost.c - the in-process meta path of one create and one unlink,
 * for counting (not a test: built, never run by ctest).
 *
 *   meta_ns_cost [-b] DIR NFILES NDIRS [URLOPTS]
 *
 * Formats a fresh LMDB store under DIR (lmdb://DIR/meta?sync=window&
 * writemap=1, as `chainfs up` opens it, plus URLOPTS), makes NDIRS
 * directories under the root, then runs what the mount's in-process
 * instance (meta_local.c) runs for the peer job `meta-bench meta M NFILES
 * NDIRS 1 1`: per file i (in directory i % NDIRS) an encoded CREATE_DIR
 * (O_EXCL | write | inline, as fuse_fs.c sends for open(O_CREAT|O_EXCL|
 * O_WRONLY)) as a direct call (meta_dispatch_in_process_req, as the
 * mount's meta_local_call_req; -b: encoded, through
 * meta_dispatch_in_process and the reply decoded), the sessions closed in
 * batches of META_CLOSE_MANY_MAX (the mount's closer), then one UNLINK_DIR
 * per file, likewise. Each phase's CPU time per operation is printed.
 *
 * Under valgrind --tool=callgrind --collect-atstart=no only the create
 * phase and the unlink phase are collected (each dumped on its own:
 * callgrind.out.PID.1 creates, .2 unlinks), so Ir / NFILES is the
 * user-space instructions of one operation, deterministic run to run. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <valgrind/callgrind.h>

#include "common/buf.h"
#include "kv/kv.h"
#include "meta/meta.h"
#include "meta/meta_dispatch.h"
#include "meta/meta_proto.h"
#include "meta/meta_storage.h"
#include "net/rpc_proto.h"

static int one_table(void *arg, uint32_t table_id, uint32_t *chains, uint32_t cap)
{
	(void)arg;
	if (table_id != 1)
		return -ENOENT;
	if (cap)
		chains[0] = 1;
	return 1;
}

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

/* R: a request of TYPE from uid 1000 for file I ("f<I>", in NAME) in DIR. */
static void req_at(struct meta_rpc_req *r, uint16_t type, uint64_t dir, char *name, size_t cap,
		   int i)
{
	memset(r, 0, sizeof(*r));
	r->type = type;
	r->uid = r->gid = 1000;
	r->client = 42;
	r->ino = dir;
	snprintf(name, cap, "f%d", i);
	r->name = meta_name_c(name);
}

static int bytes; /* -b */

/* R run as the mount runs it, its reply into RESP (type and caller memory
 * set). */
static int call(meta_ctx *m, struct meta_scratch *s, struct buf *b, struct meta_rpc_req *r,
		struct meta_rpc_resp *resp)
{
	char err[256];
	int malformed;
	if (!bytes) {
		int rc = meta_dispatch_in_process_req(m, s, r, resp, err, sizeof(err));
		if (rc)
			fprintf(stderr, "type %u: %d %s\n", r->type, rc, err);
		return rc;
	}
	buf_reset(b);
	if (meta_rpc_req_encode(b, r))
		return -ENOMEM;
	int rc = meta_dispatch_in_process(m, s, r->type, b->data, (uint32_t)b->len, err,
					  sizeof(err), &malformed);
	if (rc)
		fprintf(stderr, "type %u: %d %s\n", r->type, rc, err);
	if (rc == 0 && meta_rpc_resp_decode(s->out.data, s->out.len, resp)) {
		fprintf(stderr, "type %u: the reply does not decode\n", r->type);
		return -1;
	}
	return rc;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "-b")) {
		bytes = 1;
		argv++, argc--;
	}
	if (argc < 4) {
		fprintf(stderr, "usage: %s [-b] DIR NFILES NDIRS [URLOPTS]\n", argv[0]);
		return 2;
	}
	int nfiles = atoi(argv[2]), ndirs = atoi(argv[3]);
	char url[1024], err[256], name[64];
	snprintf(url, sizeof(url), "lmdb://%s/meta?sync=window&writemap=1%s%s", argv[1],
		 argc > 4 ? "&" : "", argc > 4 ? argv[4] : "");
	kv_engine *kv = NULL;
	meta_ctx *m = NULL;
	if (kv_open(url, &kv, err, sizeof(err))) {
		fprintf(stderr, "%s: %s\n", url, err);
		return 1;
	}
	struct meta_opts mo = { .instance_id = 7,
				.root_layout = { .chunk_size = 1u << 20, .stripe = 1, .table_id = 1 },
				.storage = meta_storage_none(),
				.chains = { NULL, one_table },
				.idata_max = 65536 };
	if (meta_new(kv, &mo, &m) || meta_format(m)) {
		fprintf(stderr, "meta_new/format failed\n");
		return 1;
	}
	struct meta_scratch *s = calloc(1, sizeof(*s));
	uint64_t *dirs = calloc((size_t)ndirs, sizeof(*dirs));
	uint64_t *pairs = calloc(2 * (size_t)nfiles, sizeof(*pairs));
	struct meta_rpc_req r;
	struct meta_rpc_resp resp;
	struct meta_inode in, dir;
	struct buf b = BUF_INIT;
	buf_init(&s->out);
	for (int d = 0; d < ndirs; d++) {
		struct meta_cred c = { 0, 0, 0, NULL }; /* the root is root's, 0755 */
		snprintf(name, sizeof(name), "d%d", d);
		int rc = meta_mkdir(m, &c, NULL, META_ROOT_INO, meta_name_c(name), 0777, &in);
		if (rc) {
			fprintf(stderr, "mkdir %s: %d\n", name, rc);
			return 1;
		}
		dirs[d] = in.ino;
	}
	double t0 = cpu_s();
	CALLGRIND_TOGGLE_COLLECT;
	for (int i = 0; i < nfiles; i++) {
		req_at(&r, META_RPC_CREATE_DIR, dirs[i % ndirs], name, sizeof(name), i);
		r.mode = 0644;
		r.flags = META_O_WRITE | META_O_IDATA | META_O_EXCL;
		memset(&resp, 0, sizeof(resp));
		resp.type = META_RPC_CREATE_DIR;
		resp.inode = &in;
		resp.dir = &dir;
		if (call(m, s, &b, &r, &resp))
			return 1;
		pairs[2 * i] = in.ino;
		pairs[2 * i + 1] = resp.session;
	}
	CALLGRIND_TOGGLE_COLLECT;
	CALLGRIND_DUMP_STATS_AT("create");
	double t1 = cpu_s();
	struct meta_req rq = { .client = 42 };
	for (int i = 0; i < nfiles; i += META_CLOSE_MANY_MAX) {
		int n = nfiles - i < META_CLOSE_MANY_MAX ? nfiles - i : META_CLOSE_MANY_MAX;
		if (meta_close_many(m, &rq, pairs + 2 * i, n)) {
			fprintf(stderr, "close_many failed\n");
			return 1;
		}
	}
	double t2 = cpu_s();
	CALLGRIND_TOGGLE_COLLECT;
	for (int i = 0; i < nfiles; i++) {
		req_at(&r, META_RPC_UNLINK_DIR, dirs[i % ndirs], name, sizeof(name), i);
		memset(&resp, 0, sizeof(resp));
		resp.type = META_RPC_UNLINK_DIR;
		resp.dir = &dir;
		if (call(m, s, &b, &r, &resp))
			return 1;
	}
	CALLGRIND_TOGGLE_COLLECT;
	CALLGRIND_DUMP_STATS_AT("unlink");
	double t3 = cpu_s();
	printf("files %d dirs %d: create %.2f us/op, unlink %.2f us/op (CPU)\n", nfiles, ndirs,
	       (t1 - t0) * 1e6 / nfiles, (t3 - t2) * 1e6 / nfiles);
	buf_fini(&b);
	buf_fini(&s->out);
	free(s);
	free(dirs);
	free(pairs);
	meta_free(m);
	kv_close(kv);
	return 0;
}
