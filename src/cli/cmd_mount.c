/* cmd_mount.c - `chainfs mount`: the FUSE client.
 *
 *   chainfs mount --mgmtd IP:PORT[,...] --cluster-id ID --secret-file F
 *                 [--meta IP:PORT[,...]] [-o OPTS] [--attr-timeout S] ...
 *                 MOUNTPOINT
 *
 * Starts a mgmtd_client registered as a client node (its lease lets the
 * cluster clean up after a client that died) whose routing cache gives the
 * meta instances (unless --meta names them), a meta_client over those, the
 * data path (file_io over a storage_client, chunks addressed by chain), and
 * serves the mount in the foreground until it is unmounted or the process
 * gets SIGTERM / SIGINT (then it unmounts itself). It prints "mounting on
 * MOUNTPOINT" when it is about to mount; callers that need the mount ready
 * poll it (chainfs up does).
 *
 * Meta instances that become active in routing after the mount started are
 * added to the meta_client as routing updates arrive (on_routing), so a
 * mount started while only one of two metas had registered still fails
 * over to the second. With --meta the named instances are used as given.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "client/file_io.h"
#include "client/meta_client.h"
#include "meta/meta.h"
#include "meta/meta_local.h"
#include "storage_client/storage_client.h"
#include "common/cfg.h"
#include "common/log.h"
#include "common/status.h"
#include "fuse/fuse_fs.h"
#include "fuse/fuse_loop.h"
#include "mgmtd/mgmtd_client.h"
#include "net/auth.h"
#include "usrbio/usrbio.h"

#define MOUNT_MAX_ADDRS 16

struct mount_conf {
	char *mgmtd;
	char *meta;
	char *cluster_id;
	char *secret_file;
	char *o;
	char *attr_timeout;
	char *entry_timeout;
	char *negative_timeout;
	int64_t dircache_poll_ms;
	int keep_cache_ro;
	int64_t threads;
	int64_t io_threads;
	int64_t read_piece;
	int64_t write_behind;
	int64_t storage_conns;
	int64_t storage_threads;
	int allow_other;
	int64_t sync_interval_ms;
	int64_t timeout_ms;
	int64_t meta_wait_ms;
	int64_t wait_ms;
	char *log_level;
	char *log_file;
	int debug;
	int usrbio;
	int64_t usrbio_workers;
	int64_t usrbio_batch;
	int64_t usrbio_piece;
	int fuse_uring;
	char *meta_local;
	int64_t meta_local_inline_max;
};

static const struct cfg_opt opts[] = {
    {"mgmtd", CFG_STR, "", 0, 0, offsetof(struct mount_conf, mgmtd),
     "mgmtd ip:port[,ip:port...]; required"},
    {"meta", CFG_STR, "", 0, 0, offsetof(struct mount_conf, meta),
     "meta instances ip:port[,...] (default: the active meta nodes in routing info)"},
    {"cluster-id", CFG_STR, "", 0, 0, offsetof(struct mount_conf, cluster_id),
     "cluster id; required"},
    {"secret-file", CFG_STR, "", 0, 0, offsetof(struct mount_conf, secret_file),
     "file holding the cluster secret; required"},
    {"o", CFG_STR, "", 0, 0, offsetof(struct mount_conf, o),
     "extra FUSE mount options, comma-separated (e.g. ro,noatime)"},
    {"attr-timeout", CFG_STR, "1", 0, 0, offsetof(struct mount_conf, attr_timeout),
     "seconds the kernel caches file attributes"},
    {"entry-timeout", CFG_STR, "30", 0, 0, offsetof(struct mount_conf, entry_timeout),
     "seconds the kernel caches names (a change through another mount still shows "
     "within --dircache-poll-ms; without the poll at most 1)"},
    {"negative-timeout", CFG_STR, "30", 0, 0, offsetof(struct mount_conf, negative_timeout),
     "seconds the kernel caches 'no such file' answers (likewise; without the poll 0)"},
    {"dircache-poll-ms", CFG_INT, "100", 0, 60000, offsetof(struct mount_conf, dircache_poll_ms),
     "how often the mount asks meta which directories other clients changed, to drop "
     "the names the kernel caches there (0: no poll, names cached at most 1 s)"},
    {"keep-cache-ro", CFG_BOOL, "false", 0, 0, offsetof(struct mount_conf, keep_cache_ro),
     "keep the kernel page cache for files opened read-only (default: direct I/O)"},
    {"threads", CFG_INT, "64", 1, 256, offsetof(struct mount_conf, threads),
     "FUSE request threads (each serves one request at a time)"},
    {"io-threads", CFG_INT, "8", 1, 256, offsetof(struct mount_conf, io_threads),
     "threads issuing chunk requests in parallel under one read or write"},
    {"read-piece", CFG_SIZE, "256K", 4096, 64 << 20, offsetof(struct mount_conf, read_piece),
     "reads are cut into pieces of this size inside a chunk, read from replicas in parallel"},
    {"write-behind", CFG_SIZE, "0", 0, 256 << 20, offsetof(struct mount_conf, write_behind),
     "bytes per file a write may leave in flight after it returns (0: write through, "
     "every write durable on all replicas when it returns); close and fsync wait for "
     "them and report their errors; 16M about doubles one sequential writer"},
    {"storage-conns", CFG_INT, "2", 1, 64, offsetof(struct mount_conf, storage_conns),
     "connections to each storage service"},
    {"storage-threads", CFG_INT, "2", 1, 64, offsetof(struct mount_conf, storage_threads),
     "RPC loop threads for the storage connections"},
    {"allow-other", CFG_BOOL, "true", 0, 0, offsetof(struct mount_conf, allow_other),
     "let every user use the mount (when running as root)"},
    {"sync-interval-ms", CFG_INT, "5000", 100, 3600000,
     offsetof(struct mount_conf, sync_interval_ms),
     "how often lengths of files being written are reported to meta"},
    {"timeout-ms", CFG_INT, "5000", 100, 600000, offsetof(struct mount_conf, timeout_ms),
     "per-attempt RPC timeout"},
    {"meta-wait-ms", CFG_INT, "60000", 1000, 3600000, offsetof(struct mount_conf, meta_wait_ms),
     "how long a metadata call waits and retries (same request id) while no meta instance "
     "answers, before the file system call fails with EIO"},
    {"wait-ms", CFG_INT, "30000", 100, 3600000, offsetof(struct mount_conf, wait_ms),
     "how long to wait for mgmtd and a meta instance at start"},
    {"log-level", CFG_STR, "notice", 0, 0, offsetof(struct mount_conf, log_level),
     "err|warn|notice|info|debug"},
    {"log-file", CFG_STR, "", 0, 0, offsetof(struct mount_conf, log_file),
     "append log lines here instead of stderr"},
    {"debug", CFG_BOOL, "false", 0, 0, offsetof(struct mount_conf, debug),
     "trace every FUSE request to stderr"},
    {"usrbio", CFG_BOOL, "true", 0, 0, offsetof(struct mount_conf, usrbio),
     "serve shared-memory I/O rings (libchainfs, hf3fs_usrbio.h; docs/usrbio.md)"},
    {"usrbio-workers", CFG_INT, "64", 1, 256, offsetof(struct mount_conf, usrbio_workers),
     "threads running ring I/O batches"},
    {"usrbio-batch", CFG_SIZE, "2M", 4096, 1 << 30, offsetof(struct mount_conf, usrbio_batch),
     "bytes of ring reads sent as one batched storage request"},
    {"usrbio-piece", CFG_SIZE, "256K", 4096, 64 << 20, offsetof(struct mount_conf, usrbio_piece),
     "ring reads are cut into pieces of this size inside a chunk (spread over replicas)"},
    {"fuse-uring", CFG_BOOL, "false", 0, 0, offsetof(struct mount_conf, fuse_uring),
     "serve FUSE requests over io_uring (kernel 6.14+ with the fuse module parameter "
     "enable_uring=Y; otherwise, or when the kernel refuses, over /dev/fuse as by default)"},
    {"meta-local", CFG_STR, "", 0, 0, offsetof(struct mount_conf, meta_local),
     "run metadata reads, namespace changes and the store-only forms of open, close and "
     "setattr in this process on the meta service's "
     "LMDB store: its KV URL exactly as meta has it (lmdb://DIR?sync=...; this host only; "
     "`chainfs up --meta-local`; CFS_META_LOCAL=0 turns it off; README \"Durability of "
     "metadata\")"},
    {"meta-local-inline-max", CFG_SIZE, "64K", 0, 65536,
     offsetof(struct mount_conf, meta_local_inline_max),
     "with --meta-local: the meta service's --inline-max"},
    CFG_END};

/* Splits a comma list in place into ADDRS; returns the count or -1. */
static int split_addrs(char *s, const char **addrs, int max)
{
	int n = 0;
	for (char *save = NULL, *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (n == max)
			return -1;
		addrs[n++] = t;
	}
	return n;
}

static int parse_seconds(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || v < 0 || v > 86400)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Copies the addresses of active meta nodes in routing into BUF (a comma
 * list). Returns the count. */
static int meta_from_routing(struct mgmtd_client *mc, char *buf, size_t cap)
{
	struct mgmtd_routing *snap = mgmtd_client_routing(mc);
	int n = 0;
	size_t used = 0;
	buf[0] = 0;
	if (!snap)
		return 0;
	const struct route_info *ri = mgmtd_routing_info(snap);
	for (size_t i = 0; i < ri->n_nodes && n < MOUNT_MAX_ADDRS; i++) {
		const struct route_node *nd = &ri->nodes[i];
		if (nd->type != ROUTE_NODE_META || nd->state != ROUTE_NODE_ACTIVE)
			continue;
		int w = snprintf(buf + used, cap - used, "%s%s", n ? "," : "", nd->addr);
		if (w < 0 || (size_t)w >= cap - used)
			break;
		used += (size_t)w;
		n++;
	}
	mgmtd_routing_put(snap);
	return n;
}

/* What the routing callback feeds: the meta client once it exists. The
 * callback runs on the mgmtd client's routing thread; MU keeps the client
 * from being freed under it (the mount clears META before freeing). */
struct meta_feed {
	pthread_mutex_t mu;
	meta_client *meta; /* NULL: not yet / no longer */
	int warned;        /* a refused address was logged (once: every update
	                    * would repeat it) */
};

/* Adds every active meta node of SNAP the client does not know yet. */
static void meta_feed_snap(struct meta_feed *f, struct mgmtd_routing *snap)
{
	const struct route_info *ri = mgmtd_routing_info(snap);
	pthread_mutex_lock(&f->mu);
	for (size_t i = 0; f->meta && i < ri->n_nodes; i++) {
		const struct route_node *nd = &ri->nodes[i];
		if (nd->type != ROUTE_NODE_META || nd->state != ROUTE_NODE_ACTIVE)
			continue;
		int rc = meta_client_add_addr(f->meta, nd->addr);
		if (rc == 0)
			LOG_NOTICE("mount", "meta instance %s joined (from routing): %zu known",
			           nd->addr, meta_client_naddrs(f->meta));
		else if (rc < 0 && !f->warned) {
			f->warned = 1;
			LOG_WARN("mount", "meta instance %s in routing not added: %s", nd->addr,
			         cfs_strerror(rc));
		}
	}
	pthread_mutex_unlock(&f->mu);
}

static void on_routing(void *arg, struct mgmtd_routing *snap) { meta_feed_snap(arg, snap); }

/* Publishes META to the callback and catches up with the routing that
 * arrived before it did. */
static void meta_feed_start(struct meta_feed *f, struct mgmtd_client *mg, meta_client *meta)
{
	pthread_mutex_lock(&f->mu);
	f->meta = meta;
	pthread_mutex_unlock(&f->mu);
	struct mgmtd_routing *snap = mgmtd_client_routing(mg);
	if (snap) {
		meta_feed_snap(f, snap);
		mgmtd_routing_put(snap);
	}
}

/* file_io's chunk backend over the storage client: chunks by chain. */
static int sto_read(void *arg, uint32_t chain, uint64_t ino, uint32_t index, uint32_t off,
                    uint32_t len, void *buf)
{
	struct storage_read r = {
	    .loc = {.chain = chain},
	    .ino = ino,
	    .idx = index,
	    .off = off,
	    .len = len,
	    .dst = buf,
	};
	int rc = storage_client_read(arg, &r, 1, 0);
	if (rc < 0)
		return rc;
	return r.result == -ENOENT ? 0 : r.result;
}

/* One sto_read_async in flight. */
struct sto_aread {
	struct storage_read r;
	void (*done)(void *darg, int rc);
	void *darg;
};

static void sto_aread_done(void *arg)
{
	struct sto_aread *x = arg;
	int rc = x->r.result == -ENOENT ? 0 : x->r.result;
	void (*done)(void *, int) = x->done;
	void *darg = x->darg;
	free(x);
	done(darg, rc);
}

static int sto_read_async(void *arg, uint32_t chain, uint64_t ino, uint32_t index, uint32_t off,
                          uint32_t len, void *buf, void (*done)(void *darg, int rc), void *darg)
{
	struct sto_aread *x = malloc(sizeof(*x));
	if (!x)
		return -ENOMEM;
	*x = (struct sto_aread){
	    .r = {.loc = {.chain = chain}, .ino = ino, .idx = index, .off = off, .len = len,
	          .dst = buf},
	    .done = done,
	    .darg = darg,
	};
	int rc = storage_client_read_async(arg, &x->r, 0, sto_aread_done, x);
	if (rc)
		free(x);
	return rc;
}

/* All pieces of one read in one storage_client_read: it spreads them over
 * the serving replicas and has every server's share in flight at once. */
static int sto_read_batch(void *arg, struct file_io_piece *p, size_t n)
{
	struct storage_read stack[16];
	struct storage_read *r = n <= 16 ? stack : calloc(n, sizeof(*r));
	if (!r)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		r[i] = (struct storage_read){
		    .loc = {.chain = p[i].chain},
		    .ino = p[i].ino,
		    .idx = p[i].index,
		    .off = p[i].off,
		    .len = p[i].len,
		    .dst = p[i].buf,
		};
	int rc = storage_client_read(arg, r, n, 0);
	for (size_t i = 0; rc == 0 && i < n; i++)
		p[i].result = r[i].result == -ENOENT ? 0 : r[i].result;
	if (r != stack)
		free(r);
	return rc;
}

static int sto_write(void *arg, uint32_t chain, uint64_t ino, uint32_t index, uint32_t off,
                     uint32_t len, const void *buf, uint32_t chunk_size)
{
	struct storage_loc loc = {.chain = chain};
	return storage_client_write(arg, &loc, ino, index, off, len, buf, 0, NULL);
}

static int sto_write_crc(void *arg, uint32_t chain, uint64_t ino, uint32_t index, uint32_t off,
                         uint32_t len, const void *buf, uint32_t chunk_size, uint32_t crc,
                         uint32_t flags)
{
	struct storage_loc loc = {.chain = chain};
	uint32_t sf = ((flags & FILE_IO_WF_NOFLUSH) ? STO_WF_NOFLUSH : 0) |
	              ((flags & FILE_IO_WF_IF_ABSENT) ? STO_WF_IF_ABSENT : 0);
	return storage_client_write_crc(arg, &loc, ino, index, off, len, buf, crc, sf, NULL);
}

static int sto_remove(void *arg, uint32_t chain, uint64_t ino, uint32_t begin, uint32_t end)
{
	struct storage_loc loc = {.chain = chain};
	return storage_client_remove(arg, &loc, ino, begin, end, NULL);
}

/* Chunk metadata as the query answers it (any replica, pending or not). */
static int chunk_query(void *arg, uint32_t chain, uint64_t ino, uint32_t index,
                       struct file_io_chunk_state *st)
{
	struct storage_loc loc = {.chain = chain};
	struct sto_query_resp q;
	int rc = storage_client_query(arg, &loc, ino, index, 0, &q);
	*st = rc == 0 ? (struct file_io_chunk_state){q.commit_ver, q.len, q.crc}
	              : (struct file_io_chunk_state){0};
	return rc == -ENOENT ? 0 : rc;
}

/* The chunk is read whole rather than queried: a replica answers a read
 * only when the chunk has no update pending there (-CFS_ENOT_COMMITTED,
 * retried; craq_write.c "Pending versions"), and a member holds the
 * chunk's lock from its apply until its successor answered, so the
 * version read is one the tail applied: the chain's, never one a failing
 * head takes with it (a query answers the head's copy as it is). Chunks
 * longer than any inline data (a converted file's chunk 0: the begin
 * that follows finds the file chunked and uses nothing of it) are
 * queried. */
static int sto_chunk_ver(void *arg, uint32_t chain, uint64_t ino, uint32_t index,
                         struct file_io_chunk_state *st)
{
	enum { CAP = META_IDATA_MAX + 1 };
	*st = (struct file_io_chunk_state){0};
	uint8_t *buf = malloc(CAP);
	if (!buf)
		return -ENOMEM;
	struct storage_read r = {
	    .loc = {.chain = chain}, .ino = ino, .idx = index, .off = 0, .len = CAP, .dst = buf};
	int rc = storage_client_read(arg, &r, 1, 0);
	free(buf);
	if (rc)
		return rc;
	if (r.result == -ENOENT)
		return 0;
	if (r.result < 0)
		return r.result;
	if (r.result >= CAP)
		return chunk_query(arg, chain, ino, index, st);
	*st = (struct file_io_chunk_state){r.commit_ver, (uint32_t)r.result, r.result ? r.crc : 0};
	return 0;
}

static int sto_write_if(void *arg, uint32_t chain, uint64_t ino, uint32_t index, uint32_t len,
                        const void *buf, const struct file_io_chunk_state *expect,
                        uint64_t create_ver, struct file_io_chunk_state *now)
{
	struct storage_loc loc = {.chain = chain};
	struct sto_write_resp r;
	int rc = storage_client_write_if_at(arg, &loc, ino, index, len, buf,
	                                    expect->ver ? expect->ver : STO_WIF_ABSENT, expect->len,
	                                    expect->crc, expect->ver ? 0 : create_ver, &r);
	if (rc == 0 && now)
		*now = (struct file_io_chunk_state){r.commit_ver, r.len, r.crc};
	return rc == -CFS_EBADMSG_TYPE ? -EOPNOTSUPP : rc;
}

/* The data path: file_io over a storage client. 0 or <0 with a message in
 * ERR. */
static int data_path_new(const struct storage_client_opts *so, meta_client *meta, int io_threads,
                         uint32_t sync_ms, uint32_t read_piece, uint32_t write_behind,
                         struct storage_client **sc, file_io **out, char *err, size_t errlen)
{
	int rc = storage_client_new(so, sc, err, errlen);
	if (rc)
		return rc;
	/* A short-circuit read that must wait for the disk hands the FUSE
	 * loop's reading over first, as a read RPC's caller would. */
	storage_client_set_will_block(*sc, fuseloop_will_block);
	struct file_io_opts fo = {
	    .backend = {.arg = *sc,
	                .read = sto_read,
	                .write = sto_write,
	                .write_crc = sto_write_crc,
	                .read_batch = sto_read_batch,
	                .remove = sto_remove,
	                .chunk_ver = sto_chunk_ver,
	                .write_if = sto_write_if,
	                .read_async = sto_read_async},
	    .meta = meta,
	    .workers = io_threads,
	    .sync_interval_ms = sync_ms,
	    .read_piece = read_piece,
	    .write_behind = write_behind,
	};
	return file_io_new(&fo, out, err, errlen);
}

int cli_mount(int argc, char **argv)
{
	struct mount_conf mc;
	struct mgmtd_client *mg = NULL;
	meta_client *meta = NULL;
	struct meta_local *local = NULL;
	struct meta_feed feed = {.mu = PTHREAD_MUTEX_INITIALIZER, .meta = NULL};
	file_io *fio = NULL;
	struct storage_client *sc = NULL;
	struct usrbio *ub = NULL;
	uint8_t secret[AUTH_SECRET_MAX];
	char err[512], self[128], metabuf[MOUNT_MAX_ADDRS * (ROUTE_ADDR_MAX + 1)];
	const char *maddrs[MOUNT_MAX_ADDRS], *metas[MOUNT_MAX_ADDRS];
	int npos = 0, ret = 1, rc;
	enum log_level lvl;

	/* Read and write buffers of up to 1 MiB come and go on many threads
	 * (FUSE threads allocate, RPC loop threads may free). With glibc's
	 * defaults an arena's heap was trimmed and grown again around them:
	 * a profile of a 1-job 1 MiB read showed page faults and page
	 * clearing at ~15 % of the mount's CPU after a random-read phase.
	 * Fixed thresholds keep such buffers in the heaps for reuse. */
	mallopt(M_MMAP_THRESHOLD, 8 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	double attr_to, entry_to, neg_to;

	memset(&mc, 0, sizeof(mc));
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help"))
			printf("usage: chainfs mount --mgmtd ADDR --cluster-id ID --secret-file F "
			       "[options] MOUNTPOINT\n\n");
	rc = cfg_parse(opts, &mc, argc, argv, &npos, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "chainfs mount: %s\n", err);
		return 2;
	}
	ret = 2;
	if (npos != 1) {
		fprintf(stderr, "chainfs mount: exactly one MOUNTPOINT argument is needed\n");
		goto out;
	}
	const char *mountpoint = argv[0];
	if (!*mc.mgmtd || !*mc.cluster_id || !*mc.secret_file) {
		fprintf(stderr,
		        "chainfs mount: --mgmtd, --cluster-id and --secret-file are required\n");
		goto out;
	}
	if (parse_seconds(mc.attr_timeout, &attr_to) ||
	    parse_seconds(mc.entry_timeout, &entry_to) ||
	    parse_seconds(mc.negative_timeout, &neg_to)) {
		fprintf(stderr, "chainfs mount: timeouts are seconds in 0..86400\n");
		goto out;
	}
	if (log_parse_level(mc.log_level, &lvl)) {
		fprintf(stderr, "chainfs mount: bad --log-level '%s'\n", mc.log_level);
		goto out;
	}
	int nmg = split_addrs(mc.mgmtd, maddrs, MOUNT_MAX_ADDRS);
	if (nmg <= 0) {
		fprintf(stderr, "chainfs mount: --mgmtd: 1..%d addresses\n", MOUNT_MAX_ADDRS);
		goto out;
	}
	ret = 1;
	log_set_level(lvl);
	if (*mc.log_file && (rc = log_open_file(mc.log_file))) {
		fprintf(stderr, "chainfs mount: --log-file %s: %s\n", mc.log_file,
		        cfs_strerror(rc));
		goto out;
	}
	if (access("/dev/fuse", R_OK | W_OK) < 0) {
		fprintf(stderr,
		        "chainfs mount: FUSE is not available: /dev/fuse: %s (load the fuse kernel "
		        "module; in a container, pass --device /dev/fuse and CAP_SYS_ADMIN)\n",
		        strerror(errno));
		goto out;
	}
	rc = auth_load_secret(mc.secret_file, secret, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "chainfs mount: %s\n", err);
		goto out;
	}
	size_t secret_len = (size_t)rc;

	/* Stop signals stay blocked in every thread the clients start; the
	 * session loop unblocks them in this thread only (fuse_fs.h). */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	char host[64];
	if (gethostname(host, sizeof(host)) < 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = 0;
	/* A client serves nothing: its "address" only names it in listings. */
	snprintf(self, sizeof(self), "%s/mount-pid%d", host, (int)getpid());
	struct mgmtd_client_opts mo = {
	    .mgmtd_addrs = maddrs,
	    .n_mgmtd = (size_t)nmg,
	    .cluster_id = mc.cluster_id,
	    .secret = secret,
	    .secret_len = secret_len,
	    .type = ROUTE_NODE_CLIENT,
	    .addr = self,
	    .poll_wait_ms = 5000,
	    /* --meta names the instances to use, exactly. */
	    .on_routing = *mc.meta ? NULL : on_routing,
	    .cb_arg = &feed,
	};
	rc = mgmtd_client_new(&mo, &mg, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "chainfs mount: %s\n", err);
		goto out;
	}
	/* The node id is the meta client id, so meta drops this mount's write
	 * sessions once mgmtd declares the node failed (meta.h). */
	if (mgmtd_client_wait_registered(mg, (uint32_t)mc.wait_ms)) {
		fprintf(stderr, "chainfs mount: not registered with mgmtd %s within %lld ms\n",
		        maddrs[0], (long long)mc.wait_ms);
		goto out;
	}
	if (mgmtd_client_wait_routing(mg, 1, (uint32_t)mc.wait_ms)) {
		fprintf(stderr, "chainfs mount: no routing info from mgmtd %s within %lld ms\n",
		        maddrs[0], (long long)mc.wait_ms);
		goto out;
	}
	int nmeta;
	if (*mc.meta) {
		snprintf(metabuf, sizeof(metabuf), "%s", mc.meta);
	} else {
		/* Meta instances register shortly after mgmtd starts. */
		for (int waited = 0;
		     !meta_from_routing(mg, metabuf, sizeof(metabuf)) && waited < mc.wait_ms;
		     waited += 100)
			usleep(100 * 1000);
	}
	nmeta = split_addrs(metabuf, metas, MOUNT_MAX_ADDRS);
	if (nmeta <= 0) {
		fprintf(stderr, "chainfs mount: no meta instance (none active in routing info; "
		                "start `chainfs meta --mgmtd ...` or pass --meta)\n");
		goto out;
	}
	/* CFS_MOUNT_META_CONNS=N (2..64; experimental, unset by default): N
	 * connections to each meta instance, a call going on the first with
	 * nothing in flight (rpc.h idle_conn_first), so FUSE threads waiting
	 * on meta together each send and read their own reply. 8 threads
	 * creating in 8 directories then cost the mount ~14 % less CPU per
	 * create, but the create rate did not change measurably on the
	 * shared 2-core machine (docs/inline-data.md "Creates from several
	 * threads"). */
	const char *mcs = getenv("CFS_MOUNT_META_CONNS");
	int meta_conns = mcs ? atoi(mcs) : 0;
	if (meta_conns < 2 || meta_conns > 64)
		meta_conns = 0;
	struct meta_client_opts co = {
	    .addrs = metas,
	    .naddrs = (size_t)nmeta,
	    .cluster_id = mc.cluster_id,
	    .secret = secret,
	    .secret_len = secret_len,
	    .client_id = mgmtd_client_node_id(mg),
	    .timeout_ms = (uint32_t)mc.timeout_ms,
	    .retry_ms = (uint32_t)mc.meta_wait_ms,
	    .loop_threads = 2,
	    .conns_per_peer = meta_conns ? meta_conns : 2,
	    .idle_conn_first = meta_conns > 0,
	};
	rc = meta_client_new(&co, &meta, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "chainfs mount: %s\n", err);
		goto out;
	}
	/* CFS_META_LOCAL=0 turns --meta-local off (docs/operations.md). */
	const char *ml_env = getenv("CFS_META_LOCAL");
	if (*mc.meta_local && !(ml_env && !strcmp(ml_env, "0"))) {
		struct meta_local_opts lo = {
		    .kv_url = mc.meta_local,
		    .mgmtd = mg,
		    .idata_max = (uint32_t)mc.meta_local_inline_max,
		};
		rc = meta_local_open(&lo, &local, err, sizeof(err));
		if (rc) {
			fprintf(stderr, "chainfs mount: --meta-local: %s\n", err);
			goto out;
		}
		meta_client_set_local(meta, meta_local_call, local);
		meta_client_set_local_req(meta, meta_local_call_req);
		LOG_NOTICE("mount", "meta in-process on %s (reads, namespace changes, store-only "
		           "open/close/setattr; the rest "
		           "to meta %s)", mc.meta_local, metabuf);
	}
	if (!*mc.meta)
		meta_feed_start(&feed, mg, meta);
	struct storage_client_opts so = {
	    .cluster_id = mc.cluster_id,
	    .secret = secret,
	    .secret_len = secret_len,
	    .mgmtd_addrs = maddrs,
	    .n_mgmtd = (size_t)nmg,
	    .timeout_ms = (uint32_t)mc.timeout_ms,
	    .threads = (int)mc.storage_threads,
	    .conns_per_peer = (int)mc.storage_conns,
	    /* Small reads of same-host replicas skip the service (docs/rpc.md
	     * "Short-circuit reads"): 4 KiB random reads 1.35x on a quiet
	     * machine; CFS_SHORT_READ=0 turns it off. */
	    .short_read = 1,
	};
	rc = data_path_new(&so, meta, (int)mc.io_threads, (uint32_t)mc.sync_interval_ms,
	                   (uint32_t)mc.read_piece, (uint32_t)mc.write_behind, &sc, &fio, err,
	                   sizeof(err));
	if (rc) {
		fprintf(stderr, "chainfs mount: %s\n", err);
		goto out;
	}
	if (mc.usrbio) {
		struct usrbio_opts uo = {
		    .meta = meta,
		    .fio = fio,
		    .sc = sc,
		    .workers = (int)mc.usrbio_workers,
		    .batch_bytes = (uint32_t)mc.usrbio_batch,
		    .read_piece = (uint32_t)mc.usrbio_piece,
		};
		rc = usrbio_new(&uo, &ub, err, sizeof(err));
		if (rc) {
			fprintf(stderr, "chainfs mount: %s\n", err);
			goto out;
		}
	}
	struct fusefs_opts fo = {
	    .meta = meta,
	    .fio = fio,
	    .attr_timeout = attr_to,
	    .entry_timeout = entry_to,
	    .negative_timeout = neg_to,
	    .keep_cache_ro = mc.keep_cache_ro,
	    .dircache_poll_ms = (uint32_t)mc.dircache_poll_ms,
	    .threads = (int)mc.threads,
	    .allow_other = mc.allow_other && geteuid() == 0,
	    .extra_opts = mc.o,
	    .debug = mc.debug,
	    .usrbio = ub,
	    .fuse_uring = mc.fuse_uring,
	};
	printf("mounting on %s (meta %s)\n", mountpoint, metabuf);
	fflush(stdout);
	rc = fusefs_run(mountpoint, &fo, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "chainfs mount: %s\n", err);
		goto out;
	}
	ret = 0;
out:
	usrbio_free(ub);
	file_io_free(fio);
	storage_client_free(sc);
	/* The routing callback must not see META freed. */
	pthread_mutex_lock(&feed.mu);
	feed.meta = NULL;
	pthread_mutex_unlock(&feed.mu);
	meta_client_free(meta);
	meta_local_close(local); /* after the client: its calls may use it */
	mgmtd_client_free(mg);
	cfg_free(opts, &mc);
	return ret;
}
