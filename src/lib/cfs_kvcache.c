/* cfs_kvcache.c - the KVCache client (include/chainfs.h "KVCache"):
 * index calls to the metadata service (meta_kvc_proto.h through
 * meta_client), page data through the rings of cfs_usrbio.c.
 *
 * Put:  RESERVE (slots) -> ring writes of the pages -> PUBLISH; every
 *       slot not published gives its reservation back at once (RELEASE):
 *       a failed write, a publish call that failed, an item the publish
 *       refused, so failed puts never hold pages until their lease ends.
 *       Each put has its own random token in its RESERVE, so a RESERVE
 *       that meta_client resends after a timed-out attempt gets the
 *       slots of the attempt that committed, not more (meta_kvcache.h
 *       "Resends"). A delete and a namespace create and delete carry a
 *       token too: their resends answer what the first attempt did.
 * Get:  LOOKUP (with recency) -> ring reads -> LOOKUP again: a key whose
 *       version changed, or whose bytes fail the writer's CRC32C, is a
 *       miss (meta_kvcache.h "Readers").
 * Each call takes one ring pair from a small pool, so calls from several
 * threads run in parallel; the meta_client is thread-safe.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chainfs.h"
#include "client/meta_client.h"
#include "common/buf.h"
#include "common/crc32c.h"
#include "common/status.h"
#include "lib/cfs_usrbio_int.h"
#include "meta/meta_kvc_proto.h"
#include "net/auth.h"

#define DEFAULT_RINGS 4
#define DEFAULT_ENTRIES 64
#define DEFAULT_SLABS 8

struct pair {
	pthread_mutex_t mu;
	cfs_ior *rd, *wr;
};

struct cfs_kvc {
	meta_client *mc;
	struct kvc_ns ns;
	int *fds;          /* registered slab fds, ns.nslabs */
	struct pair *pairs;
	int npairs;
	unsigned rr;       /* next pair to try (racy on purpose: a hint) */
	uint64_t owner;    /* reservation owner: the meta client id */
	uint64_t calls;    /* calls with a token so far (atomic): the token fallback */
	uint32_t lease_ms; /* 0: the namespace's */
	uint32_t ttl_ms;   /* puts' TTL; 0: the namespace's */
	uint32_t piece;    /* a put writes a page in ring writes of at most this
			    * (the slabs' chunk size when smaller than a page) */
	/* Test hook ($CFS_KVC_TEST_DIE_BEFORE_PUBLISH set at open): a put
	 * SIGKILLs its own process after writing its pages, before
	 * publishing, so a test can prove a dead writer's pages come back. */
	int die_before_publish;
	/* Test hook ($CFS_KVC_TEST_FAIL_PUBLISH set at open): a put skips its
	 * PUBLISH call and fails as if the call had failed (-EIO), so a test
	 * can check that the slots come back at once. */
	int fail_publish;
};

/* ---- connecting ---- */

static int conf_value(const char *path, const char *key, char *out, size_t cap)
{
	char line[1200];
	FILE *f = fopen(path, "r");
	int found = 0;
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char k[64], v[1100];
		if (sscanf(line, " %63[^= ] = %1099s", k, v) == 2 && !strcmp(k, key)) {
			size_t n = strlen(v);
			if (n >= cap)
				continue;
			memcpy(out, v, n + 1);
			found = 1;
		}
	}
	fclose(f);
	return found ? 0 : -ENOENT;
}

static int connect_meta(const struct cfs_kvc_opts *o, meta_client **out)
{
	char path[PATH_MAX], cid[128] = "", port[16], addrs_buf[1024] = "", err[256];
	const char *secret_file = o ? o->secret_file : NULL;
	const char *addrs[META_CLIENT_MAX_ADDRS];
	uint8_t secret[AUTH_SECRET_MAX];
	size_t n = 0;
	int rc;
	if (!o)
		return -EINVAL;
	if (o->cluster_dir) {
		snprintf(path, sizeof(path), "%s/cluster.conf", o->cluster_dir);
		if ((rc = conf_value(path, "cluster_id", cid, sizeof(cid))) ||
		    (rc = conf_value(path, "meta_port", port, sizeof(port))))
			return rc;
		snprintf(addrs_buf, sizeof(addrs_buf), "127.0.0.1:%s", port);
		snprintf(path, sizeof(path), "%s/secret", o->cluster_dir);
		secret_file = path;
	} else {
		if (!o->meta || !o->cluster_id || !o->secret_file)
			return -EINVAL;
		snprintf(cid, sizeof(cid), "%s", o->cluster_id);
		snprintf(addrs_buf, sizeof(addrs_buf), "%s", o->meta);
	}
	for (char *save, *t = strtok_r(addrs_buf, ",", &save); t && n < META_CLIENT_MAX_ADDRS;
	     t = strtok_r(NULL, ",", &save))
		addrs[n++] = t;
	int slen = auth_load_secret(secret_file, secret, err, sizeof(err));
	if (slen < 0)
		return slen;
	struct meta_client_opts mo = { .addrs = addrs, .naddrs = n, .cluster_id = cid,
				       .secret = secret, .secret_len = (size_t)slen,
				       .timeout_ms = o->meta_timeout_ms };
	return meta_client_new(&mo, out, err, sizeof(err));
}

/* A new call's token: random, never 0; unique per call with overwhelming
 * odds (OWNER, the meta client's id, and the count *CALLS if getrandom
 * fails). */
static uint64_t new_token(uint64_t owner, uint64_t *calls)
{
	uint64_t v = 0;
	if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
		v = owner * 0x9e3779b97f4a7c15ull + __atomic_add_fetch(calls, 1, __ATOMIC_RELAXED);
	return v ? v : 1;
}

/* One index call: Q encoded, sent, R decoded (kvc_msg_fini frees it). */
static int call(meta_client *mc, const struct kvc_msg *q, struct kvc_msg *r)
{
	struct buf b = BUF_INIT, resp = BUF_INIT;
	int rc = kvc_msg_encode(&b, q);
	if (!rc)
		rc = meta_client_call_raw(mc, q->type, &b, &resp);
	if (!rc) {
		rc = kvc_msg_decode(resp.data, resp.len, r);
		if (!rc && q->n && r->n != q->n) {
			kvc_msg_fini(r);
			rc = -EPROTO;
		}
		if (rc == -CFS_EPROTO)
			rc = -EPROTO;
	}
	buf_fini(&b);
	buf_fini(&resp);
	return rc;
}

static int ns_get(meta_client *mc, const char *name, struct kvc_ns *ns)
{
	struct kvc_msg *q = calloc(1, sizeof(*q)), *r = calloc(1, sizeof(*r));
	int rc = -ENOMEM;
	if (q && r) {
		q->type = META_RPC_KVC_NS_GET;
		q->name = (const uint8_t *)name;
		q->name_len = (uint32_t)strlen(name);
		rc = q->name_len > KVC_NAME_MAX ? -EINVAL : call(mc, q, r);
		if (!rc)
			*ns = r->ns;
	}
	free(q);
	free(r);
	return rc;
}

static void slab_path(char *out, size_t cap, const char *mount, const char *dir, uint32_t i)
{
	snprintf(out, cap, "%s/%s/slab.%04u", mount, dir, i);
}

/* Chunk size of the slab directory: when a page is smaller than the
 * directory's chunk, one page per chunk (chunks are 64 KiB..64 MiB, pages
 * 64 KiB..16 MiB). A page is then written as a whole chunk: no
 * read-modify-write of a bigger chunk around it, and the pages of one
 * batch never wait on each other's chunk lock (the storage engine runs
 * one mutation per chunk at a time). With the default 1 MiB chunks a
 * 64 KiB put was a partial overwrite of a chunk sixteen pages share.
 * Pages at least a chunk long are whole chunks already (aligned) and keep
 * spreading over several chains. The stripe and chain table stay the
 * directory's. Only files created afterwards take it: the slabs. */
static int slab_layout(meta_client *mc, const char *dir, uint32_t page_size)
{
	static const struct meta_cred root = { 0, 0, 0, NULL };
	struct meta_layout l;
	struct stat st;
	int has = 0;
	if (stat(dir, &st) < 0)
		return -errno;
	int rc = meta_client_layout_get(mc, &root, st.st_ino, &has, &l);
	if (rc == -ENOENT)
		return 0; /* the index lives in another meta than the files */
	if (rc || !has || l.chunk_size <= page_size)
		return rc;
	return meta_client_layout_set(mc, &root, st.st_ino, page_size, l.stripe, l.table_id);
}

static int prefill(const char *mount, const struct kvc_ns *ns);

int cfs_kvc_create(const char *mount, const char *name, const char *dir, uint32_t page_size,
		   uint64_t capacity, int slabs, const struct cfs_kvc_opts *o)
{
	meta_client *mc = NULL;
	struct kvc_msg *q = NULL, *r = NULL;
	char path[PATH_MAX];
	int rc;
	if (!mount || !name || !dir || !*dir || strlen(dir) > KVC_DIR_MAX || slabs < 0 ||
	    slabs > KVC_SLABS_MAX || !capacity || !page_size || (page_size & (page_size - 1)) ||
	    page_size < KVC_PAGE_MIN || page_size > KVC_PAGE_MAX ||
	    (o && (o->flags & ~(CFS_KVC_PREFILL | CFS_KVC_CACHE))))
		return -EINVAL;
	if ((rc = connect_meta(o, &mc)))
		return rc;
	q = calloc(1, sizeof(*q));
	r = calloc(1, sizeof(*r));
	if (!q || !r) {
		rc = -ENOMEM;
		goto out;
	}
	rc = ns_get(mc, name, &r->ns);
	if (rc != -ENOENT) {
		rc = rc ? rc : -EEXIST;
		goto out;
	}
	struct kvc_ns *ns = &q->ns;
	ns->page_size = page_size;
	ns->nslots = (capacity + page_size - 1) / page_size;
	ns->nslabs = (uint32_t)(slabs ? slabs : DEFAULT_SLABS);
	if (ns->nslabs > ns->nslots)
		ns->nslabs = (uint32_t)ns->nslots;
	ns->slots_per_slab = (ns->nslots + ns->nslabs - 1) / ns->nslabs;
	ns->ttl_ms = o->ttl_ms;
	ns->durability = (o->flags & CFS_KVC_CACHE) ? KVC_DUR_CACHE : KVC_DUR_SYNC;
	snprintf(ns->dir, sizeof(ns->dir), "%s", dir);
	/* mkdir -p of DIR under the mount */
	snprintf(path, sizeof(path), "%s/%s", mount, dir);
	for (char *p = path + strlen(mount) + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			mkdir(path, 0755);
			*p = '/';
		}
	if (mkdir(path, 0755) < 0 && errno != EEXIST) {
		rc = -errno;
		goto out;
	}
	if ((rc = slab_layout(mc, path, page_size)))
		goto out;
	for (uint32_t i = 0; i < ns->nslabs; i++) {
		struct stat st;
		slab_path(path, sizeof(path), mount, dir, i);
		int fd = open(path, O_RDWR | O_CREAT, 0644);
		if (fd < 0) {
			rc = -errno;
			goto out;
		}
		if (ftruncate(fd, (off_t)(ns->slots_per_slab * page_size)) < 0 ||
		    fstat(fd, &st) < 0) {
			rc = -errno;
			close(fd);
			goto out;
		}
		ns->slab_ino[i] = st.st_ino;
		if (close(fd) < 0) {
			rc = -errno;
			goto out;
		}
	}
	/* Before the namespace exists: no put can race the zeros. */
	if ((o->flags & CFS_KVC_PREFILL) && (rc = prefill(mount, ns)))
		goto out;
	q->type = META_RPC_KVC_NS_CREATE;
	/* A resend of this create answers the namespace it made. */
	uint64_t once = 0;
	q->token = new_token(meta_client_id(mc), &once);
	q->name = (const uint8_t *)name;
	q->name_len = (uint32_t)strlen(name);
	rc = q->name_len > KVC_NAME_MAX ? -EINVAL : call(mc, q, r);
out:
	free(q);
	free(r);
	meta_client_free(mc);
	return rc;
}

int cfs_kvc_destroy(const char *mount, const char *name, const struct cfs_kvc_opts *o)
{
	meta_client *mc = NULL;
	struct kvc_msg *q = calloc(1, sizeof(*q)), *r = calloc(1, sizeof(*r));
	char path[PATH_MAX];
	int rc = q && r ? 0 : -ENOMEM;
	if (!rc && (!mount || !name))
		rc = -EINVAL;
	if (!rc)
		rc = connect_meta(o, &mc);
	if (!rc)
		rc = ns_get(mc, name, &q->ns);
	if (!rc) {
		struct kvc_ns ns = q->ns;
		memset(&q->ns, 0, sizeof(q->ns));
		q->type = META_RPC_KVC_NS_DELETE;
		/* A resend of this delete answers OK, not -ENOENT, and
		 * deletes no namespace of the name made since. */
		uint64_t once = 0;
		q->token = new_token(meta_client_id(mc), &once);
		q->name = (const uint8_t *)name;
		q->name_len = (uint32_t)strlen(name);
		rc = call(mc, q, r);
		for (uint32_t i = 0; !rc && i < ns.nslabs; i++) {
			slab_path(path, sizeof(path), mount, ns.dir, i);
			unlink(path);
		}
		if (!rc) {
			snprintf(path, sizeof(path), "%s/%s", mount, ns.dir);
			rmdir(path); /* only when empty: the caller's files stay */
		}
	}
	free(q);
	free(r);
	meta_client_free(mc);
	return rc;
}

void cfs_kvc_close(cfs_kvc *kv)
{
	if (!kv)
		return;
	for (int i = 0; i < kv->npairs; i++) {
		cfs_ior_destroy(kv->pairs[i].rd);
		cfs_ior_destroy(kv->pairs[i].wr);
		pthread_mutex_destroy(&kv->pairs[i].mu);
	}
	free(kv->pairs);
	for (uint32_t i = 0; kv->fds && i < kv->ns.nslabs; i++)
		if (kv->fds[i] > 0) {
			cfs_dereg_fd(kv->fds[i]);
			close(kv->fds[i]);
		}
	free(kv->fds);
	meta_client_free(kv->mc);
	free(kv);
}

int cfs_kvc_open(const char *mount, const char *name, const struct cfs_kvc_opts *o,
		 cfs_kvc **out)
{
	char path[PATH_MAX];
	int rc;
	if (!mount || !name || !out)
		return -EINVAL;
	cfs_kvc *kv = calloc(1, sizeof(*kv));
	if (!kv)
		return -ENOMEM;
	if ((rc = connect_meta(o, &kv->mc)) || (rc = ns_get(kv->mc, name, &kv->ns)))
		goto fail;
	kv->owner = meta_client_id(kv->mc);
	kv->lease_ms = o->lease_ms;
	kv->ttl_ms = o->ttl_ms;
	kv->die_before_publish = getenv("CFS_KVC_TEST_DIE_BEFORE_PUBLISH") != NULL;
	kv->fail_publish = getenv("CFS_KVC_TEST_FAIL_PUBLISH") != NULL;
	kv->fds = calloc(kv->ns.nslabs, sizeof(int));
	if (!kv->fds) {
		rc = -ENOMEM;
		goto fail;
	}
	for (uint32_t i = 0; i < kv->ns.nslabs; i++) {
		slab_path(path, sizeof(path), mount, kv->ns.dir, i);
		int fd = open(path, O_RDWR);
		if (fd < 0) {
			rc = -errno;
			goto fail;
		}
		/* Keep FD open until close: the library records both numbers,
		 * and a closed one reused by the next open would count as
		 * already registered. */
		rc = cfs_reg_fd(fd, 0);
		if (rc < 0) {
			close(fd);
			goto fail;
		}
		kv->fds[i] = fd;
	}
	/* A page bigger than a chunk goes as one ring write per chunk: each
	 * is one chunk piece, so it carries its own CRC to storage (a write
	 * of several pieces makes the mount compute theirs) and runs on its
	 * own ring worker (the mount's second and later pieces of one write
	 * wait for its few file_io threads). st_blksize is the chunk size. */
	kv->piece = kv->ns.page_size;
	struct stat st;
	if (kv->ns.nslabs && fstat(kv->fds[0], &st) == 0 && st.st_blksize >= KVC_PAGE_MIN &&
	    !(st.st_blksize & (st.st_blksize - 1)) && (uint64_t)st.st_blksize < kv->piece)
		kv->piece = (uint32_t)st.st_blksize;
	kv->npairs = o->rings > 0 ? o->rings : DEFAULT_RINGS;
	kv->pairs = calloc((size_t)kv->npairs, sizeof(*kv->pairs));
	if (!kv->pairs) {
		rc = -ENOMEM;
		goto fail;
	}
	for (int i = 0; i < kv->npairs; i++) {
		struct cfs_ior_opts ro = { .entries = o->ring_entries > 0 ? o->ring_entries
									 : DEFAULT_ENTRIES,
					   .for_read = 1 };
		pthread_mutex_init(&kv->pairs[i].mu, NULL);
		if ((rc = cfs_ior_create(mount, &ro, &kv->pairs[i].rd)))
			goto fail_pairs;
		ro.for_read = 0;
		/* Cache mode (the namespace record says so, for every client):
		 * page writes without a device flush on the replicas. */
		if (kv->ns.durability == KVC_DUR_CACHE)
			ro.flags |= CFS_IOR_NOFLUSH;
		if ((rc = cfs_ior_create(mount, &ro, &kv->pairs[i].wr)))
			goto fail_pairs;
	}
	*out = kv;
	return 0;
fail_pairs:
	for (int i = 0; i < kv->npairs; i++)
		if (!kv->pairs[i].rd || !kv->pairs[i].wr) {
			kv->npairs = i + 1; /* the rest were never initialised */
			break;
		}
fail:
	cfs_kvc_close(kv);
	return rc;
}

uint32_t cfs_kvc_page_size(const cfs_kvc *kv) { return kv ? kv->ns.page_size : 0; }

/* ---- ring I/O ---- */

struct io {
	int fd;
	uint64_t off, len;
	void *ptr;
	int64_t result; /* bytes, or -errno */
	int key;        /* puts: the key the piece belongs to */
	uint32_t crc;   /* reads: CRC32C of the bytes read, from the completion, */
	int crc_ok;     /* when the daemon gave it (it checked them against storage's);
	                 * writes: the value's CRC32C, sent with the write */
};

static struct pair *take_pair(cfs_kvc *kv)
{
	unsigned start = __atomic_fetch_add(&kv->rr, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < kv->npairs; i++) {
		struct pair *p = &kv->pairs[(start + (unsigned)i) % (unsigned)kv->npairs];
		if (pthread_mutex_trylock(&p->mu) == 0)
			return p;
	}
	struct pair *p = &kv->pairs[start % (unsigned)kv->npairs];
	pthread_mutex_lock(&p->mu);
	return p;
}

/* Runs the N I/Os on ring R (the caller holds its pair): keeps the ring
 * full, reaps completions into each io's result. */
static void run_ios(cfs_ior *r, const cfs_iov *iov, int read, struct io *ios, int n)
{
	struct cfs_cqe cqes[64];
	struct cfs_cqe_crc crcs[64];
	int next = 0, inflight = 0;
	while (next < n || inflight) {
		int prepped = 0;
		while (next < n) {
			struct io *x = &ios[next];
			/* A write sends the value's CRC (the index records it): the
			 * mount makes no pass over the page, and storage writes
			 * only bytes that match the CRC published. */
			int rc = read || !x->crc_ok
			             ? cfs_prep_iov(r, iov, read, x->ptr, x->fd, x->off, x->len, x)
			             : cfs_prep_write_crc(r, iov, x->ptr, x->fd, x->off, x->len,
			                                  x->crc, x);
			if (rc == -EAGAIN)
				break;
			if (rc < 0) {
				x->result = rc;
				next++;
				continue;
			}
			next++;
			inflight++;
			prepped++;
		}
		if (prepped)
			cfs_submit_ios(r);
		if (!inflight)
			continue;
		int got = cfs_wait_for_ios_crc(r, cqes, crcs, 64, 1, NULL);
		if (got < 0) {
			/* The daemon is gone: everything in flight failed. */
			for (int i = 0; i < n; i++)
				if (ios[i].result == INT64_MIN)
					ios[i].result = got;
			return;
		}
		for (int i = 0; i < got; i++) {
			struct io *x = (struct io *)cqes[i].userdata;
			x->result = cqes[i].result;
			x->crc = crcs[i].crc;
			x->crc_ok = crcs[i].ok;
			inflight--;
		}
	}
}

/* CFS_KVC_PREFILL: zeros over every slab, one ring write per chunk (the
 * slabs' st_blksize, at most a page), up to PREFILL_DEPTH in flight. Why:
 * storage keeps chunks in blocks of fallocated data files, and a direct
 * write into fallocated space that was never written makes ext4 convert
 * the extent, a metadata change every durable commit must then flush
 * (docs/kvcache.md "Prefill": fresh puts ran at about 0.6x the rate of
 * puts that reuse written blocks). A put replaces a whole chunk and storage
 * frees the old block, which the next write takes, so once every page was
 * written puts keep landing in written blocks. One zero buffer serves
 * every write (nothing writes into it); its CRC is computed once. */
#define PREFILL_DEPTH 64   /* ring slots */
#define PREFILL_BATCH 1024 /* writes per run_ios call */
static int prefill(const char *mount, const struct kvc_ns *ns)
{
	char path[PATH_MAX];
	uint64_t size = ns->slots_per_slab * (uint64_t)ns->page_size;
	uint32_t piece = ns->page_size;
	int rc = 0, *fds = calloc(ns->nslabs, sizeof(int));
	cfs_iov *iov = NULL;
	cfs_ior *ring = NULL;
	struct io *ios = calloc(PREFILL_BATCH, sizeof(*ios));
	if (!fds || !ios) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < ns->nslabs; i++) {
		struct stat st;
		slab_path(path, sizeof(path), mount, ns->dir, i);
		int fd = open(path, O_RDWR);
		if (fd < 0) {
			rc = -errno;
			goto out;
		}
		if ((rc = cfs_reg_fd(fd, 0)) < 0) {
			close(fd);
			goto out;
		}
		rc = 0;
		fds[i] = fd;
		if (fstat(fd, &st) == 0 && st.st_blksize >= KVC_PAGE_MIN &&
		    !(st.st_blksize & (st.st_blksize - 1)) && (uint64_t)st.st_blksize < piece)
			piece = (uint32_t)st.st_blksize;
	}
	struct cfs_ior_opts ro = { .entries = PREFILL_DEPTH };
	if ((rc = cfs_iov_create(mount, piece, 0, -1, &iov)) ||
	    (rc = cfs_ior_create(mount, &ro, &ring)))
		goto out;
	void *zero = cfs_iov_base(iov);
	memset(zero, 0, piece);
	uint32_t crc = crc32c(0, zero, piece);
	/* Slab by slab in runs of PREFILL_BATCH writes; run_ios keeps
	 * PREFILL_DEPTH of them in flight. */
	uint32_t slab = 0;
	uint64_t off = 0;
	while (slab < ns->nslabs && !rc) {
		int n = 0;
		for (; n < PREFILL_BATCH && slab < ns->nslabs; n++) {
			struct io *x = &ios[n];
			x->fd = fds[slab];
			x->off = off;
			x->len = size - off < piece ? size - off : piece;
			x->ptr = zero;
			x->crc = x->len == piece ? crc : crc32c(0, zero, x->len);
			x->crc_ok = 1;
			x->result = INT64_MIN;
			off += x->len;
			if (off >= size) {
				off = 0;
				slab++;
			}
		}
		run_ios(ring, iov, 0, ios, n);
		for (int i = 0; i < n && !rc; i++)
			if (ios[i].result != (int64_t)ios[i].len)
				rc = ios[i].result < 0 ? (int)ios[i].result : -EIO;
	}
out:
	cfs_ior_destroy(ring);
	cfs_iov_destroy(iov);
	for (uint32_t i = 0; fds && i < ns->nslabs; i++)
		if (fds[i] > 0) {
			cfs_dereg_fd(fds[i]);
			close(fds[i]);
		}
	free(fds);
	free(ios);
	return rc;
}

static int check_keys(int n, const void *const *keys, const size_t *key_lens)
{
	if (n < 0 || (n && (!keys || !key_lens)))
		return -EINVAL;
	if (n > CFS_KVC_BATCH_MAX)
		return -E2BIG;
	for (int i = 0; i < n; i++)
		if (!keys[i] || key_lens[i] < 1 || key_lens[i] > CFS_KVC_KEY_MAX)
			return -EINVAL;
	return 0;
}

static int in_iov(const cfs_iov *iov, const void *p, size_t len)
{
	const char *b = cfs_iov_base(iov), *q = p;
	return q >= b && len <= cfs_iov_size(iov) && (size_t)(q - b) <= cfs_iov_size(iov) - len;
}

static struct kvc_msg *batch_msg(cfs_kvc *kv, uint16_t type, int n, const void *const *keys,
				 const size_t *key_lens)
{
	struct kvc_msg *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->items = calloc((size_t)n + 1, sizeof(*q->items));
	if (!q->items) {
		free(q);
		return NULL;
	}
	q->type = type;
	q->ns_id = kv->ns.id;
	q->owner = kv->owner;
	q->n = (uint32_t)n;
	for (int i = 0; keys && i < n; i++) {
		q->items[i].key = keys[i];
		q->items[i].key_len = (uint32_t)key_lens[i];
	}
	return q;
}

static void batch_free(struct kvc_msg *q)
{
	if (q)
		free(q->items);
	free(q);
}

static void slot_pos(const cfs_kvc *kv, uint64_t slot, int *fd, uint64_t *off)
{
	*fd = kv->fds[slot / kv->ns.slots_per_slab];
	*off = (slot % kv->ns.slots_per_slab) * kv->ns.page_size;
}

int cfs_kvc_put(cfs_kvc *kv, const cfs_iov *iov, int n, const void *const *keys,
		const size_t *key_lens, const void *const *vals, const size_t *lens, int *results)
{
	int rc = check_keys(n, keys, key_lens);
	if (rc)
		return rc;
	if (!kv || !iov || !results || (n && (!vals || !lens)))
		return -EINVAL;
	for (int i = 0; i < n; i++) {
		if (lens[i] > kv->ns.page_size)
			return -EMSGSIZE;
		if (lens[i] && !in_iov(iov, vals[i], lens[i]))
			return -EINVAL;
	}
	if (!n)
		return 0;
	struct kvc_msg *q = batch_msg(kv, META_RPC_KVC_RESERVE, n, keys, key_lens);
	struct kvc_msg *r = calloc(1, sizeof(*r));
	size_t npieces = 0;
	for (int i = 0; i < n; i++)
		npieces += (lens[i] + kv->piece - 1) / kv->piece;
	struct io *ios = calloc(npieces + 1, sizeof(*ios));
	int *which = calloc((size_t)n, sizeof(int));
	int64_t *done = calloc((size_t)n, sizeof(*done)); /* per key: bytes written or -errno */
	if (!q || !r || !ios || !which || !done) {
		rc = -ENOMEM;
		goto out;
	}
	for (int i = 0; i < n; i++)
		q->items[i].len = (uint32_t)lens[i];
	q->lease_ms = kv->lease_ms;
	q->token = new_token(kv->owner, &kv->calls);
	if ((rc = call(kv->mc, q, r)))
		goto out;
	/* Write the reserved pages, a piece per chunk; the value's CRC is
	 * folded from the pieces' (one pass over the bytes). */
	int nio = 0, k = 0;
	for (int i = 0; i < n; i++) {
		struct kvc_item *it = &r->items[i];
		results[i] = it->status == KVC_ST_OK || it->status == KVC_ST_EXISTS ? 0
			     : it->status < 0				 ? it->status
									 : -EIO;
		q->items[i].slot = it->slot;
		q->items[i].version = it->version;
		q->items[i].crc = 0;
		if (it->status != KVC_ST_OK)
			continue;
		if (lens[i] && it->slot >= kv->ns.nslots) {
			results[i] = -EIO;
			continue;
		}
		which[nio++] = i;
		int fd;
		uint64_t base;
		if (lens[i])
			slot_pos(kv, it->slot, &fd, &base);
		for (uint64_t po = 0; po < lens[i]; po += kv->piece) {
			struct io *x = &ios[k++];
			x->fd = fd;
			x->off = base + po;
			x->len = lens[i] - po < kv->piece ? lens[i] - po : kv->piece;
			x->ptr = (char *)vals[i] + po;
			x->crc = crc32c(0, x->ptr, x->len);
			x->crc_ok = 1;
			x->key = i;
			x->result = INT64_MIN;
			q->items[i].crc = po ? crc32c_combine(q->items[i].crc, x->crc, x->len) : x->crc;
		}
	}
	struct pair *p = take_pair(kv);
	run_ios(p->wr, iov, 0, ios, k);
	pthread_mutex_unlock(&p->mu);
	for (int j = 0; j < k; j++) {
		int i = ios[j].key;
		if (done[i] < 0)
			continue;
		done[i] = ios[j].result == (int64_t)ios[j].len ? done[i] + ios[j].result
			  : ios[j].result < 0			  ? ios[j].result
								  : -EIO;
	}
	if (kv->die_before_publish)
		raise(SIGKILL);
	/* Publish the pages written; give back the slots of failed writes. */
	kvc_msg_fini(r);
	struct kvc_msg *pub = batch_msg(kv, META_RPC_KVC_PUBLISH, 0, NULL, NULL);
	struct kvc_msg *rel = batch_msg(kv, META_RPC_KVC_RELEASE, 0, NULL, NULL);
	int *pidx = calloc((size_t)n, sizeof(int));
	if (pub && rel) {
		free(pub->items);
		free(rel->items);
		pub->items = calloc((size_t)n, sizeof(*pub->items));
		rel->items = calloc((size_t)n, sizeof(*rel->items));
	}
	if (!pub || !rel || !pidx || !pub->items || !rel->items) {
		/* Give every slot back with the reserve request itself (its
		 * items hold slot and version; RELEASE skips the ones that
		 * are not reservations of ours). */
		struct kvc_msg rr;
		q->type = META_RPC_KVC_RELEASE;
		if (call(kv->mc, q, &rr) == 0)
			kvc_msg_fini(&rr);
		for (int i = 0; i < n; i++)
			results[i] = results[i] ? results[i] : -ENOMEM;
		rc = -ENOMEM;
		goto out2;
	}
	for (int j = 0; j < nio; j++) {
		int i = which[j];
		int64_t res = done[i];
		if (res == (int64_t)lens[i]) {
			pidx[pub->n] = i;
			pub->items[pub->n] = q->items[i];
			pub->items[pub->n++].len = (uint32_t)lens[i];
		} else {
			results[i] = res < 0 ? (int)res : -EIO;
			rel->items[rel->n++] = q->items[i];
		}
	}
	if (pub->n) {
		pub->ttl_ms = kv->ttl_ms;
		rc = kv->fail_publish ? -EIO : call(kv->mc, pub, r);
		if (rc) {
			/* The publish may or may not have applied (meta failover):
			 * RELEASE drops only reservations still there, so a
			 * published entry stays and the rest come back now. */
			for (uint32_t j = 0; j < pub->n; j++) {
				results[pidx[j]] = rc;
				rel->items[rel->n++] = pub->items[j];
			}
		} else {
			for (uint32_t j = 0; j < pub->n; j++) {
				int st = r->items[j].status;
				results[pidx[j]] = st == KVC_ST_OK || st == KVC_ST_EXISTS ? 0
						   : st < 0				 ? st
											 : -EIO;
				if (st < 0 && st != -ESTALE)
					rel->items[rel->n++] = pub->items[j];
			}
			kvc_msg_fini(r);
		}
	}
	if (rel->n) {
		struct kvc_msg rr;
		if (call(kv->mc, rel, &rr) == 0)
			kvc_msg_fini(&rr);
	}
out2:
	free(pidx);
	batch_free(pub);
	batch_free(rel);
out:
	if (r)
		kvc_msg_fini(r);
	free(r);
	batch_free(q);
	free(ios);
	free(which);
	free(done);
	return rc;
}

/* LOOKUP of KEYS into R (kvc_msg_fini). */
static int lookup(cfs_kvc *kv, int n, const void *const *keys, const size_t *key_lens,
		  uint32_t flags, struct kvc_msg *r)
{
	struct kvc_msg *q = batch_msg(kv, META_RPC_KVC_LOOKUP, n, keys, key_lens);
	if (!q)
		return -ENOMEM;
	q->flags = flags;
	int rc = call(kv->mc, q, r);
	batch_free(q);
	return rc;
}

int cfs_kvc_get(cfs_kvc *kv, const cfs_iov *iov, int n, const void *const *keys,
		const size_t *key_lens, void *const *bufs, const size_t *caps, int *results)
{
	int rc = check_keys(n, keys, key_lens);
	if (rc)
		return rc;
	if (!kv || !iov || !results || (n && (!bufs || !caps)))
		return -EINVAL;
	for (int i = 0; i < n; i++)
		if (caps[i] && !in_iov(iov, bufs[i], caps[i]))
			return -EINVAL;
	if (!n)
		return 0;
	struct kvc_msg *r1 = calloc(1, sizeof(*r1)), *r2 = calloc(1, sizeof(*r2));
	struct io *ios = calloc((size_t)n, sizeof(*ios));
	int *which = calloc((size_t)n, sizeof(int));
	const void **k2 = calloc((size_t)n, sizeof(void *));
	size_t *kl2 = calloc((size_t)n, sizeof(size_t));
	if (!r1 || !r2 || !ios || !which || !k2 || !kl2) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = lookup(kv, n, keys, key_lens, KVC_LOOKUP_TOUCH, r1)))
		goto out;
	int nio = 0;
	for (int i = 0; i < n; i++) {
		struct kvc_item *it = &r1->items[i];
		results[i] = -ENOENT;
		if (it->status != KVC_ST_OK)
			continue;
		if (it->len > caps[i]) {
			results[i] = -ENOBUFS;
			continue;
		}
		if (it->slot >= kv->ns.nslots) {
			results[i] = -EIO;
			continue;
		}
		which[nio] = i;
		struct io *x = &ios[nio++];
		x->len = it->len;
		x->ptr = bufs[i];
		x->result = it->len ? INT64_MIN : 0;
		slot_pos(kv, it->slot, &x->fd, &x->off);
	}
	if (nio) {
		/* The non-empty reads go to the ring, in a compact array. */
		struct io *rd = calloc((size_t)nio, sizeof(*rd));
		int *map = calloc((size_t)nio, sizeof(int));
		int k = 0;
		if (!rd || !map) {
			free(rd);
			free(map);
			rc = -ENOMEM;
			goto out;
		}
		for (int j = 0; j < nio; j++)
			if (ios[j].len) {
				map[k] = j;
				rd[k++] = ios[j];
			}
		struct pair *p = take_pair(kv);
		run_ios(p->rd, iov, 1, rd, k);
		pthread_mutex_unlock(&p->mu);
		for (int j = 0; j < k; j++)
			ios[map[j]] = rd[j];
		free(rd);
		free(map);
		/* Check that every key read still has the version read. */
		for (int j = 0; j < nio; j++) {
			k2[j] = keys[which[j]];
			kl2[j] = key_lens[which[j]];
		}
		if ((rc = lookup(kv, nio, k2, kl2, 0, r2)))
			goto out;
		for (int j = 0; j < nio; j++) {
			int i = which[j];
			const struct kvc_item *a = &r1->items[i], *b = &r2->items[j];
			if (ios[j].result == -EBADMSG)
				/* The stored page failed its CRC on every
				 * replica (storage_client.c read_avoid): a
				 * cache-mode page after power loss, or a bad
				 * disk. The value is gone, not wrong: a miss
				 * (docs/kvcache.md "Durability"). */
				results[i] = -ENOENT;
			else if (ios[j].result != (int64_t)a->len)
				results[i] = ios[j].result < 0 ? (int)ios[j].result : -EIO;
			else if (b->status != KVC_ST_OK || b->version != a->version)
				results[i] = -ENOENT;
			else if ((!a->len       ? 0
				  : ios[j].crc_ok ? ios[j].crc
						  : crc32c(0, bufs[i], a->len)) != a->crc)
				results[i] = -ENOENT; /* a writer past its lease wrote here */
			else
				results[i] = (int)a->len;
		}
	}
out:
	if (r1)
		kvc_msg_fini(r1);
	if (r2)
		kvc_msg_fini(r2);
	free(r1);
	free(r2);
	free(ios);
	free(which);
	free(k2);
	free(kl2);
	return rc;
}

int cfs_kvc_exists(cfs_kvc *kv, int n, const void *const *keys, const size_t *key_lens,
		   int *results)
{
	int rc = check_keys(n, keys, key_lens);
	if (rc)
		return rc;
	if (!kv || !results)
		return -EINVAL;
	if (!n)
		return 0;
	struct kvc_msg *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	rc = lookup(kv, n, keys, key_lens, 0, r);
	for (int i = 0; !rc && i < n; i++)
		results[i] = r->items[i].status == KVC_ST_OK;
	kvc_msg_fini(r);
	free(r);
	return rc;
}

int cfs_kvc_delete(cfs_kvc *kv, int n, const void *const *keys, const size_t *key_lens,
		   int *results)
{
	int rc = check_keys(n, keys, key_lens);
	if (rc)
		return rc;
	if (!kv)
		return -EINVAL;
	if (!n)
		return 0;
	struct kvc_msg *q = batch_msg(kv, META_RPC_KVC_DELETE, n, keys, key_lens);
	struct kvc_msg *r = calloc(1, sizeof(*r));
	if (q)
		q->token = new_token(kv->owner, &kv->calls);
	rc = q && r ? call(kv->mc, q, r) : -ENOMEM;
	for (int i = 0; !rc && results && i < n; i++)
		results[i] = r->items[i].status == KVC_ST_OK;
	if (r)
		kvc_msg_fini(r);
	free(r);
	batch_free(q);
	return rc;
}

int cfs_kvc_clear(cfs_kvc *kv)
{
	if (!kv)
		return -EINVAL;
	struct kvc_msg *q = batch_msg(kv, META_RPC_KVC_CLEAR, 0, NULL, NULL);
	struct kvc_msg *r = calloc(1, sizeof(*r));
	int rc = q && r ? call(kv->mc, q, r) : -ENOMEM;
	free(r);
	batch_free(q);
	return rc;
}

int cfs_kvc_stats(cfs_kvc *kv, int reclaim, struct cfs_kvc_info *out)
{
	if (!kv || !out)
		return -EINVAL;
	struct kvc_msg *q = batch_msg(kv, META_RPC_KVC_STATS, 0, NULL, NULL);
	struct kvc_msg *r = calloc(1, sizeof(*r));
	int rc = q && r ? 0 : -ENOMEM;
	if (!rc) {
		q->flags = reclaim ? KVC_STATS_RECLAIM : 0;
		rc = call(kv->mc, q, r);
	}
	if (!rc) {
		memset(out, 0, sizeof(*out));
		out->page_size = r->ns.page_size;
		out->slots = r->ns.nslots;
		out->slabs = r->ns.nslabs;
		snprintf(out->dir, sizeof(out->dir), "%s", r->ns.dir);
		out->used = r->stats.used;
		out->reserved = r->stats.reserved;
		out->evictions = r->stats.evictions;
		out->reclaimed = r->stats.reclaimed;
		out->lost = r->stats.lost;
		out->expired = r->stats.expired;
		out->evictions_per_s = (double)r->stats.evict_recent / KVC_RATE_WINDOW_S;
		out->ttl_ms = r->ns.ttl_ms;
		out->durability = r->ns.durability;
	}
	free(r);
	batch_free(q);
	return rc;
}
