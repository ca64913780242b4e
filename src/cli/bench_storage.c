/* bench_storage.c - chainfs bench storage: a real `chainfs storage`
 * process over loopback against fio on the same directory.
 *
 * The bench starts `chainfs storage` (this binary) on DIR/target with a
 * fresh secret, connects a storage_client, and runs three workloads with a
 * fixed number of requests in flight (one client thread per slot, each
 * issuing synchronous calls):
 *   seq write  1 MiB writes of new chunks (one chunk per MiB)
 *   seq read   1 MiB reads of everything written
 *   rand read  4 KiB reads at random pages for a fixed time
 *   rand read batched  the same, 8 reads per request (qd/8 threads), so
 *              the same number of reads is in flight when a request
 *              starts; each request then waits for its slowest read, so
 *              on average fewer are at the disk than fio's qd. Its ratio
 *              is against fio's qd (as before, the goal's definition),
 *              and also against fio run the same way ("vs fio batched":
 *              qd/8 jobs of depth 8 that submit 8 and reap all 8 before
 *              the next, --iodepth_batch_submit/complete_min=8)
 *   rand read async  the same reads kept in flight by RPC completion
 *              callbacks (raw RPC client, one loop thread), the way fio
 *              drives io_uring: the server's cost without a thread per
 *              request on the client side
 * With --replicas R (one CRAQ chain): seq write and read, then
 *   rand write 4 KiB writes at random pages of the written chunks,
 *              --qd-rand threads, for --seconds (durable when acked), vs
 *              fio randwrite 4k at the same depth, plain and with
 *              fdatasync after every write, each divided by R
 * fio runs beside each phase with ioengine=io_uring, direct=1 and the same
 * block size and depth on DIR/fio.dat. The server reads O_DIRECT too
 * (--cached-read-max=0): with its default, small reads go through the
 * page cache, which a 1 GiB data set on this machine fits in, so its
 * random reads were served from memory (every data page resident after
 * one round) while fio's came from the disk. --page-cache keeps the
 * server's default for that figure. Rounds alternate server and fio
 * phase by phase so both see the same background load; the per-round
 * ratios and their medians are printed. The server acknowledges a write
 * once durable (unless --nosync); fio's plain write completes when the
 * device has the data in its volatile cache, with the unwritten extents
 * of its fresh (fallocated) file not yet converted on disk, so it does
 * less durable work. Two more baselines sit under the write line (the
 * plain ratio, the goal's figure, is printed as before):
 *   fio fdatasync  --fdatasync=QD: one fdatasync per QD writes, which with
 *              io_uring runs beside the next writes (a write completes
 *              before it is durable; the flushes per byte of a server
 *              batching QD writes per commit)
 *   fio dsync  --sync=dsync (O_DSYNC): each write completes only once
 *              durable (data, extent conversion, device flush), QD in
 *              flight: the server's own contract, the like-for-like one
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/bench_fio.h"
#include "cli/bench_stats.h"
#include "cli/cli.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "storage_client/storage_client.h"
#include "common/clock.h"
#include "common/status.h"
#include "common/crc32c.h"
#include "mgmtd/mgmtd_client.h"
#include "net/rpc.h"
#include "net/transport.h"

#define MAX_ROUNDS BENCH_FIO_MAX_ROUNDS
#define MAX_QD BENCH_FIO_MAX_QD
#define BENCH_CLUSTER "bench"
#define BENCH_SECRET "bench-storage-secret-0123456789"


/* ---- child processes ---- */

/* EXTRA: one more fio argument or NULL. */
static double run_fio(const struct bench_fio_opts *o, const char *rw, const char *bs, unsigned qd,
		      const char *extra)
{
	return bench_fio_iops("bench storage", o->dir, o->size_mb, o->seconds, rw, bs, qd, extra);
}

/* IOPS of fio's 4 KiB random reads driven as the batched phase drives
 * the server: JOBS jobs, each submitting BATCH reads at once and reaping
 * all BATCH before it submits again (a synchronous call of BATCH ranges
 * waits for its slowest), on the same file and for as long. */
static double run_fio_batched(const struct bench_fio_opts *o, unsigned jobs, unsigned batch)
{
	char nj[32], sub[48], cmin[48];
	snprintf(nj, sizeof(nj), "--numjobs=%u", jobs);
	snprintf(sub, sizeof(sub), "--iodepth_batch_submit=%u", batch);
	snprintf(cmin, sizeof(cmin), "--iodepth_batch_complete_min=%u", batch);
	const char *more[] = { nj, sub, cmin, "--group_reporting", NULL };
	return bench_fio_iops_argv("bench storage", o->dir, o->size_mb, o->seconds, "randread", "4k",
				   batch, more);
}

/* Writes the bench's cluster secret to DIR/secret, its path into PATH
 * (CAP bytes): 0, or -1 when it cannot be written. */
static int write_secret(const struct bench_fio_opts *o, char *path, size_t cap)
{
	snprintf(path, cap, "%s/secret", o->dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(BENCH_SECRET "\n", f);
	return fclose(f) ? -1 : 0;
}

static pid_t start_server(const struct bench_fio_opts *o, uint16_t *port)
{
	char secret[4200], target[4200], log[4200];
	snprintf(target, sizeof(target), "%s/target", o->dir);
	snprintf(log, sizeof(log), "%s/storage.log", o->dir);
	if (write_secret(o, secret, sizeof(secret)) < 0)
		return -1;
	/* A free port: bind 0, read it, close (a small race, fine for a bench). */
	uint16_t p = (uint16_t)(20000 + (getpid() % 20000));
	*port = p;
	char listen[64];
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", p);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 2);
			close(fd);
		}
		char *argv[] = { "chainfs", "storage", "--targets", target, "--listen", listen,
				 "--cluster-id", BENCH_CLUSTER, "--secret-file", secret,
				 "--log-level", "warn", o->sync ? "--sync=1" : "--sync=0",
				 o->page_cache ? NULL : "--cached-read-max=0", NULL };
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	return pid;
}


/* A port on 127.0.0.1 that was free a moment ago (0 if none). */
static uint16_t free_port(void)
{
	uint16_t p = 0;
	(void)xport_free_ports(&p, 1);
	return p;
}

static pid_t spawn(char *const argv[], const char *log)
{
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	return pid;
}

static int run_wait(char *const argv[], const char *log)
{
	pid_t pid = spawn(argv, log);
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define MAX_REPLICAS 8

/* How storage service I was started, to restart it for the resync run. */
struct svc_cmd {
	char target[4200];
	char listen[64];
};
static struct svc_cmd svc[MAX_REPLICAS];
static char cl_secret[4200], cl_log[4200], cl_mgmtd[64];

static pid_t start_svc(const struct bench_fio_opts *o, unsigned i)
{
	char *sargv[] = { "chainfs", "storage", "--targets", svc[i].target, "--listen",
			  svc[i].listen, "--cluster-id", BENCH_CLUSTER, "--secret-file", cl_secret,
			  "--mgmtd", cl_mgmtd, "--log-level", "notice",
			  o->sync ? "--sync=1" : "--sync=0",
			  o->page_cache ? NULL : "--cached-read-max=0", NULL };
	return spawn(sargv, cl_log);
}

/* Serving members of chain 1000001 (0 when unknown). */
static unsigned chain_serving(struct mgmtd_client *mc)
{
	struct mgmtd_routing *snap = mgmtd_client_routing(mc);
	const struct route_chain *c = snap ? route_find_chain(mgmtd_routing_info(snap), 1000001)
					   : NULL;
	unsigned serving = 0;
	for (uint32_t k = 0; c && k < c->n; k++)
		serving += c->m[k].state == CHAIN_PS_SERVING;
	mgmtd_routing_put(snap);
	return serving;
}

/* mgmtd + R storage services (one target each) + a table of one chain of
 * R. PIDS gets R + 1 pids (mgmtd last); *MGMTD its address. */
static int start_cluster(const struct bench_fio_opts *o, pid_t *pids, char *mgmtd, size_t mlen)
{
	char secret[4200], kv[4200], log[4200], hb[] = "4s";
	snprintf(kv, sizeof(kv), "lmdb://%s/kv", o->dir);
	snprintf(log, sizeof(log), "%s/cluster.log", o->dir);
	if (write_secret(o, secret, sizeof(secret)) < 0)
		return -1;
	snprintf(mgmtd, mlen, "127.0.0.1:%u", free_port());
	char *margv[] = { "chainfs", "mgmtd", "--kv", kv, "--listen", mgmtd, "--cluster-id",
			  BENCH_CLUSTER, "--secret-file", secret, "--heartbeat-timeout", hb,
			  "--log-level", "warn", NULL };
	pids[o->replicas] = spawn(margv, log);
	char *init[] = { "chainfs", "admin", "init-cluster", "--mgmtd", mgmtd, "--cluster-id",
			 BENCH_CLUSTER, "--secret-file", secret, NULL };
	int rc = -1, st;
	for (int i = 0; i < 100 && rc; i++) {
		clock_sleep_ms(100);
		if (pids[o->replicas] > 0 && waitpid(pids[o->replicas], &st, WNOHANG) > 0) {
			pids[o->replicas] = 0; /* mgmtd exited (its log says why): no retry helps */
			return -1;
		}
		rc = run_wait(init, log);
	}
	if (rc)
		return -1;
	snprintf(cl_secret, sizeof(cl_secret), "%s", secret);
	snprintf(cl_log, sizeof(cl_log), "%s", log);
	snprintf(cl_mgmtd, sizeof(cl_mgmtd), "%s", mgmtd);
	for (unsigned i = 0; i < o->replicas; i++) {
		snprintf(svc[i].target, sizeof(svc[i].target), "%s/target%u", o->dir, i);
		snprintf(svc[i].listen, sizeof(svc[i].listen), "127.0.0.1:%u", free_port());
		pids[i] = start_svc(o, i);
	}
	/* Wait until every target registered, then make the table. */
	const char *addrs[1] = { mgmtd };
	struct mgmtd_client_opts mo = { .mgmtd_addrs = addrs, .n_mgmtd = 1,
					.cluster_id = BENCH_CLUSTER,
					.secret = (const uint8_t *)BENCH_SECRET,
					.secret_len = strlen(BENCH_SECRET), .poll_wait_ms = 500 };
	struct mgmtd_client *mc = NULL;
	char err[256];
	if (mgmtd_client_new(&mo, &mc, err, sizeof(err)))
		return -1;
	size_t nt = 0;
	for (int i = 0; i < 300 && nt < o->replicas; i++) {
		clock_sleep_ms(100);
		struct mgmtd_routing *snap = mgmtd_client_routing(mc);
		nt = snap ? mgmtd_routing_info(snap)->n_targets : 0;
		mgmtd_routing_put(snap);
	}
	char r[16];
	snprintf(r, sizeof(r), "%u", o->replicas);
	char *table[] = { "chainfs", "admin", "create-chain-table", "--mgmtd", mgmtd,
			  "--cluster-id", BENCH_CLUSTER, "--secret-file", secret, "--replicas", r,
			  NULL };
	rc = nt >= o->replicas ? run_wait(table, log) : -1;
	/* Wait until the chain serves with every target started. */
	for (int i = 0; !rc && i < 300 && chain_serving(mc) != o->replicas; i++)
		clock_sleep_ms(100);
	mgmtd_client_free(mc);
	return rc;
}

/* ---- load ---- */

struct load {
	struct storage_client *c;
	char addr[64];
	int phase; /* 0 write, 1 read, 2 rand, 3 rand batched, 4 rand write */
	unsigned batch; /* phase 3: ranges per request */
	uint32_t chain; /* != 0: write and read through this chain */
	uint64_t ino;   /* the inode whose chunks are used */
	_Atomic uint64_t next;
	uint64_t total;
	uint64_t deadline_ms;
	_Atomic uint64_t ops;
	_Atomic int err;
};

static void *load_thread(void *arg)
{
	struct load *l = arg;
	struct storage_loc loc = { .addr = l->addr, .target = 1 };
	if (l->chain)
		loc = (struct storage_loc){ .chain = l->chain };
	size_t bs = l->phase == 2 || l->phase == 4 ? 4096
		    : l->phase == 3		 ? 4096 * (size_t)l->batch
						 : (1u << 20);
	void *buf = NULL;
	if (posix_memalign(&buf, 4096, bs))
		return NULL;
	memset(buf, 0x5a, bs);
	unsigned seed = (unsigned)(uintptr_t)&seed ^ (unsigned)clock_mono_ns();
	for (;;) {
		int rc;
		if (l->phase < 2) {
			uint64_t i = atomic_fetch_add(&l->next, 1);
			if (i >= l->total)
				break;
			if (l->phase == 0) {
				rc = storage_client_write(l->c, &loc, l->ino, (uint32_t)i, 0,
							  (uint32_t)bs, buf, 0, NULL);
			} else {
				struct storage_read r = { .loc = loc, .ino = l->ino, .idx = (uint32_t)i,
							  .len = (uint32_t)bs, .dst = buf };
				rc = storage_client_read(l->c, &r, 1, 0);
				if (!rc && r.result != (int)bs)
					rc = r.result < 0 ? r.result : -EIO;
			}
		} else if (l->phase == 4) {
			if (clock_mono_ms() >= l->deadline_ms)
				break;
			uint64_t page = (uint64_t)rand_r(&seed) % (l->total * 256);
			memset(buf, (int)(page & 0xff), 8);
			rc = storage_client_write(l->c, &loc, l->ino, (uint32_t)(page / 256),
						  (uint32_t)(page % 256) * 4096, 4096, buf, 0, NULL);
		} else if (l->phase == 3) {
			if (clock_mono_ms() >= l->deadline_ms)
				break;
			struct storage_read r[MAX_QD];
			for (unsigned k = 0; k < l->batch; k++) {
				uint64_t page = (uint64_t)rand_r(&seed) % (l->total * 256);
				r[k] = (struct storage_read){ .loc = loc, .ino = l->ino,
							      .idx = (uint32_t)(page / 256),
							      .off = (uint32_t)(page % 256) * 4096,
							      .len = 4096, .dst = (uint8_t *)buf + 4096 * k };
			}
			rc = storage_client_read(l->c, r, l->batch, 0);
			for (unsigned k = 0; !rc && k < l->batch; k++)
				if (r[k].result != 4096)
					rc = r[k].result < 0 ? r[k].result : -EIO;
			if (!rc)
				atomic_fetch_add(&l->ops, l->batch - 1);
		} else {
			if (clock_mono_ms() >= l->deadline_ms)
				break;
			uint64_t page = (uint64_t)rand_r(&seed) % (l->total * 256);
			struct storage_read r = { .loc = loc, .ino = l->ino, .idx = (uint32_t)(page / 256),
						  .off = (uint32_t)(page % 256) * 4096, .len = 4096,
						  .dst = buf };
			rc = storage_client_read(l->c, &r, 1, 0);
			if (!rc && r.result != 4096)
				rc = r.result < 0 ? r.result : -EIO;
		}
		if (rc) {
			atomic_store(&l->err, rc);
			break;
		}
		atomic_fetch_add(&l->ops, 1);
	}
	free(buf);
	return NULL;
}

/* Operations per second of PHASE with QD threads, or < 0. */
static double run_load(struct storage_client *c, const char *addr, uint32_t chain, uint64_t ino,
		       int phase, unsigned qd, unsigned batch, uint64_t total, unsigned seconds)
{
	struct load l = { .c = c, .phase = phase, .total = total, .batch = batch, .chain = chain,
			  .ino = ino };
	snprintf(l.addr, sizeof(l.addr), "%s", addr ? addr : "");
	pthread_t th[MAX_QD];
	uint64_t t0 = clock_mono_ns();
	l.deadline_ms = clock_mono_ms() + (uint64_t)seconds * 1000;
	for (unsigned i = 0; i < qd; i++)
		pthread_create(&th[i], NULL, load_thread, &l);
	for (unsigned i = 0; i < qd; i++)
		pthread_join(th[i], NULL);
	double secs = (double)(clock_mono_ns() - t0) / 1e9;
	if (atomic_load(&l.err)) {
		fprintf(stderr, "bench storage: request failed: %s\n",
			cfs_strerror(atomic_load(&l.err)));
		return -1;
	}
	return (double)atomic_load(&l.ops) / secs;
}

/* ---- async driver: QD requests in flight on the RPC client, each
 * completion checks its bytes and issues the next (like fio's io_uring
 * loop), so no thread per request is woken. 4 KiB random reads only. ---- */

struct aslot;

struct adriver {
	struct rpc_peer *peer;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned live;          /* slots with a request in flight */
	uint64_t total;         /* chunks */
	uint64_t deadline_ms;
	_Atomic uint64_t ops;
	_Atomic int err;
	struct aslot *slots;
};

struct aslot {
	struct adriver *d;
	unsigned seed;
	uint8_t *buf;           /* 4 KiB, aligned */
	uint8_t payload[64];
	uint32_t payload_len;
};

static void aslot_issue(struct aslot *a);

static void aslot_done(void *arg, const struct rpc_result *res)
{
	struct aslot *a = arg;
	struct adriver *d = a->d;
	struct sto_read_res rr;
	struct sto_read_resp resp;
	int err = res->status;
	if (!err)
		err = sto_read_resp_decode(res->payload, res->payload_len, &resp, &rr, 1);
	if (!err && (rr.result != 4096 || crc32c(0, a->buf, 4096) != rr.crc))
		err = rr.result < 0 ? rr.result : -CFS_ECHECKSUM;
	if (err)
		atomic_store(&d->err, err);
	else
		atomic_fetch_add(&d->ops, 1);
	if (!err && clock_mono_ms() < d->deadline_ms) {
		aslot_issue(a);
		return;
	}
	pthread_mutex_lock(&d->mu);
	if (--d->live == 0)
		pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

static void aslot_issue(struct aslot *a)
{
	struct adriver *d = a->d;
	uint64_t page = (uint64_t)rand_r(&a->seed) % (d->total * 256);
	struct sto_read_range r = { .target = 1, .ino = 1, .idx = (uint32_t)(page / 256),
				    .off = (uint32_t)(page % 256) * 4096, .len = 4096 };
	struct sto_read_req m = { .n = 1, .r = &r };
	struct buf b = { a->payload, 0, sizeof(a->payload) };
	sto_read_req_encode(&b, &m);
	struct rpc_call call = { .type = STO_MSG_READ, .payload = a->payload,
				 .payload_len = (uint32_t)b.len, .resp_bulk = a->buf,
				 .resp_bulk_cap = 4096, .done = aslot_done, .arg = a };
	int rc = rpc_call_async(d->peer, &call);
	if (rc) {
		struct rpc_result res = { .status = rc };
		atomic_store(&d->err, rc);
		aslot_done(a, &res);
	}
}

static double run_async_rand(const char *addr, unsigned qd, uint64_t total, unsigned seconds)
{
	struct rpc_opts ro = { .cluster_id = BENCH_CLUSTER, .secret = (const uint8_t *)BENCH_SECRET,
			       .secret_len = strlen(BENCH_SECRET), .nthreads = 1 };
	struct rpc_client *rc = NULL;
	struct adriver d = { .total = total };
	char err[128];
	double iops = -1;
	if (rpc_client_new(&ro, &rc) || rpc_client_peer(rc, addr, &d.peer, err, sizeof(err)))
		goto out;
	pthread_mutex_init(&d.mu, NULL);
	pthread_cond_init(&d.cv, NULL);
	d.slots = calloc(qd, sizeof(*d.slots));
	for (unsigned i = 0; d.slots && i < qd; i++) {
		d.slots[i].d = &d;
		d.slots[i].seed = i * 7919 + 1;
		if (posix_memalign((void **)&d.slots[i].buf, 4096, 4096))
			goto out;
	}
	uint64_t t0 = clock_mono_ns();
	d.deadline_ms = clock_mono_ms() + (uint64_t)seconds * 1000;
	d.live = qd;
	for (unsigned i = 0; i < qd; i++)
		aslot_issue(&d.slots[i]);
	pthread_mutex_lock(&d.mu);
	while (d.live)
		pthread_cond_wait(&d.cv, &d.mu);
	pthread_mutex_unlock(&d.mu);
	double secs = (double)(clock_mono_ns() - t0) / 1e9;
	if (atomic_load(&d.err))
		fprintf(stderr, "bench storage: async read failed: %s\n",
			cfs_strerror(atomic_load(&d.err)));
	else
		iops = (double)atomic_load(&d.ops) / secs;
out:
	rpc_client_free(rc);
	for (unsigned i = 0; d.slots && i < qd; i++)
		free(d.slots[i].buf);
	free(d.slots);
	return iops;
}

/* CPU seconds so far of this process (the client) and of the servers. */
struct cpu_mark {
	double client, servers;
};

static void cpu_mark(struct cpu_mark *m, const pid_t *pids, unsigned n)
{
	m->client = bench_proc_cpu(getpid());
	m->servers = 0;
	for (unsigned i = 0; i < n; i++) {
		double v = pids[i] > 0 ? bench_proc_cpu(pids[i]) : -1;
		m->servers = v < 0 || m->servers < 0 ? -1 : m->servers + v;
	}
}

/* CPU seconds per GiB moved between A and B (MB MiB moved). */
static void cpu_print(const char *what, const struct cpu_mark *a, const struct cpu_mark *b,
		      unsigned mb)
{
	double gib = (double)mb / 1024;
	if (a->client < 0 || b->client < 0 || a->servers < 0 || b->servers < 0 || gib <= 0)
		return;
	printf("       %-17s cpu s/GiB: client %.2f  servers %.2f\n", what,
	       (b->client - a->client) / gib, (b->servers - a->servers) / gib);
}

/* CPU microseconds per operation between A and B, OPS operations a
 * second for SECS seconds (the random read phases). */
static void cpu_print_ops(const char *what, const struct cpu_mark *a, const struct cpu_mark *b,
			  double ops, unsigned secs)
{
	double n = ops * secs;
	if (a->client < 0 || b->client < 0 || a->servers < 0 || b->servers < 0 || n <= 0)
		return;
	printf("       %-17s cpu us/read: client %.1f  server %.1f\n", what,
	       1e6 * (b->client - a->client) / n, 1e6 * (b->servers - a->servers) / n);
}

/* A phase's second baseline: the line under the phase's own, with the
 * ratio of SRV to FIO (in UNIT). */
static void print_vs(unsigned round, const char *what, const char *unit, double srv, double fio)
{
	printf("%-6u %-17s %9s %s  %9.0f %s  %6.1f%%\n", round + 1, what, "", unit, fio, unit,
	       100 * srv / fio);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: chainfs bench storage --dir DIR [--size-mb N] [--qd-seq N] [--qd-rand N]\n"
		   "                            [--seconds N] [--rounds N] [--nosync] [--replicas R]\n"
		   "                            [--page-cache]\n"
		   "  A chainfs storage process on DIR/target over loopback vs fio on DIR/fio.dat\n"
		   "  (removed afterwards). defaults: --size-mb 1024 --qd-seq 8 --qd-rand 32\n"
		   "  --seconds 10 --rounds 3\n"
		   "  --page-cache: the server's small reads may use the page cache (its\n"
		   "  default); without it every server read is O_DIRECT, as fio's are.\n"
		   "  --replicas R: mgmtd + R storage processes, writes and reads through one\n"
		   "  CRAQ chain of R; writes are compared with fio / R (one disk holds every\n"
		   "  copy), reads (spread over the replicas) with fio.\n");
}

/* --replicas R: seq write and read through one chain vs fio. */
static int bench_chain(const struct bench_fio_opts *o)
{
	pid_t pids[MAX_REPLICAS + 1] = { 0 };
	char mgmtd[64];
	int status = 1;
	struct storage_client *c = NULL;
	char fiofile[4200], err[256];
	snprintf(fiofile, sizeof(fiofile), "%s/fio.dat", o->dir);
	if (start_cluster(o, pids, mgmtd, sizeof(mgmtd))) {
		fprintf(stderr, "bench storage: cannot start the cluster (log in %s/cluster.log)\n",
			o->dir);
		goto out;
	}
	const char *addrs[1] = { mgmtd };
	struct storage_client_opts co = { .cluster_id = BENCH_CLUSTER,
					  .secret = (const uint8_t *)BENCH_SECRET,
					  .secret_len = strlen(BENCH_SECRET), .mgmtd_addrs = addrs,
					  .n_mgmtd = 1, .threads = 2, .conns_per_peer = 4,
					  .retry_budget_ms = 20000 };
	if (storage_client_new(&co, &c, err, sizeof(err))) {
		fprintf(stderr, "bench storage: %s\n", err);
		goto out;
	}
	printf("storage chain of %u (CRAQ, loopback) vs fio: dir=%s size=%u MiB qd=%u sync=%d\n",
	       o->replicas, o->dir, o->size_mb, o->qd_seq, o->sync);
	printf("round  workload          chain            fio baseline     ratio\n");
	double rw[MAX_ROUNDS], rr[MAX_ROUNDS];
	struct storage_loc loc = { .chain = 1000001 };
	for (unsigned round = 0; round < o->rounds; round++) {
		storage_client_remove(c, &loc, 1, 0, o->size_mb, NULL);
		unlink(fiofile);
		struct cpu_mark m0, m1, m2;
		cpu_mark(&m0, pids, o->replicas);
		double w = run_load(c, NULL, 1000001, 1, 0, o->qd_seq, 1, o->size_mb, o->seconds);
		cpu_mark(&m1, pids, o->replicas);
		double fw = run_fio(o, "write", "1m", o->qd_seq, NULL);
		cpu_mark(&m2, pids, o->replicas);
		double r = run_load(c, NULL, 1000001, 1, 1, o->qd_seq, 1, o->size_mb, o->seconds);
		struct cpu_mark m3;
		cpu_mark(&m3, pids, o->replicas);
		double fr = run_fio(o, "read", "1m", o->qd_seq, NULL);
		if (w < 0 || r < 0 || fw <= 0 || fr <= 0)
			goto out;
		rw[round] = w / (fw / o->replicas);
		rr[round] = r / fr;
		printf("%-6u %-17s %9.0f MiB/s  %9.0f MiB/s  %6.1f%%  (fio %.0f / R=%u)\n", round + 1,
		       "seq write 1MiB", w, fw / o->replicas, 100 * rw[round], fw, o->replicas);
		printf("%-6u %-17s %9.0f MiB/s  %9.0f MiB/s  %6.1f%%\n", round + 1, "seq read 1MiB", r,
		       fr, 100 * rr[round]);
		cpu_print("seq write", &m0, &m1, o->size_mb);
		cpu_print("seq read", &m2, &m3, o->size_mb);
	}
	printf("median: write vs fio/R %.1f%%, read vs fio %.1f%%\n", 100 * bench_median(rw, o->rounds),
	       100 * bench_median(rr, o->rounds));
	/* Small random overwrites of the chunks just written, durable when
	 * acknowledged, beside fio randwrite on the file fio just wrote. */
	double rwr[MAX_ROUNDS], rwd[MAX_ROUNDS];
	for (unsigned round = 0; round < o->rounds; round++) {
		double w = run_load(c, NULL, 1000001, 1, 4, o->qd_rand, 1, o->size_mb, o->seconds);
		double fw = run_fio(o, "randwrite", "4k", o->qd_rand, NULL);
		double fd = run_fio(o, "randwrite", "4k", o->qd_rand, "--fdatasync=1");
		if (w < 0 || fw <= 0 || fd <= 0)
			goto out;
		rwr[round] = w / (fw / o->replicas);
		rwd[round] = w / (fd / o->replicas);
		printf("%-6u %-17s %9.0f IOPS   %9.0f IOPS   %6.1f%%  (fio %.0f / R=%u)\n", round + 1,
		       "rand write 4KiB", w, fw / o->replicas, 100 * rwr[round], fw, o->replicas);
		printf("%-6u %-17s %9s        %9.0f IOPS   %6.1f%%  (fio fdatasync=1 %.0f / R)\n",
		       round + 1, "  vs fio fdatasync", "", fd / o->replicas, 100 * rwd[round], fd);
	}
	printf("median: rand write vs fio/R %.1f%%, vs fio fdatasync=1 /R %.1f%% (qd %u)\n",
	       100 * bench_median(rwr, o->rounds), 100 * bench_median(rwd, o->rounds), o->qd_rand);
	if (o->replicas > 1) {
		/* Recovery speed: the last service misses SIZE MiB of writes,
		 * then comes back; time from its restart to SERVING. */
		const char *ma[1] = { mgmtd };
		struct mgmtd_client_opts mo = { .mgmtd_addrs = ma, .n_mgmtd = 1,
						.cluster_id = BENCH_CLUSTER,
						.secret = (const uint8_t *)BENCH_SECRET,
						.secret_len = strlen(BENCH_SECRET), .poll_wait_ms = 500 };
		struct mgmtd_client *mc = NULL;
		unsigned last = o->replicas - 1;
		int st;
		if (mgmtd_client_new(&mo, &mc, err, sizeof(err)))
			goto out;
		kill(pids[last], SIGKILL);
		waitpid(pids[last], &st, 0);
		pids[last] = 0;
		for (int i = 0; i < 300 && chain_serving(mc) != last; i++)
			clock_sleep_ms(100);
		/* New chunks (inode 2): the returning replica has none of them. */
		double w = run_load(c, NULL, 1000001, 2, 0, o->qd_seq, 1, o->size_mb, o->seconds);
		if (w < 0) {
			mgmtd_client_free(mc);
			goto out;
		}
		uint64_t t0 = clock_mono_ms();
		pids[last] = start_svc(o, last);
		int i = 0;
		for (; i < 1200 && chain_serving(mc) != o->replicas; i++)
			clock_sleep_ms(50);
		double secs = (double)(clock_mono_ms() - t0) / 1e3;
		mgmtd_client_free(mc);
		if (i == 1200) {
			fprintf(stderr, "bench storage: the restarted target did not recover in 60 s\n");
			goto out;
		}
		printf("resync: %u MiB written while one replica was down; restart to SERVING %.2f s "
		       "(%.0f MiB/s, includes startup fencing and mgmtd detection)\n",
		       o->size_mb, secs, o->size_mb / secs);
	}
	printf("note: shared machine, one disk holds all R copies; re-run for noise.\n");
	status = 0;
out:
	storage_client_free(c);
	for (unsigned i = 0; i <= o->replicas; i++)
		if (pids[i] > 0) {
			int st;
			kill(pids[i], SIGTERM);
			waitpid(pids[i], &st, 0);
		}
	unlink(fiofile);
	return status;
}

int cli_bench_storage(int argc, char **argv)
{
	struct bench_fio_opts o;
	int parsed = bench_fio_opts_parse(argc, argv, MAX_REPLICAS, usage, &o);
	if (parsed >= 0)
		return parsed;
	/* Absolute from here on: the mgmtd's kv is the URL lmdb://DIR/kv,
	 * which needs an absolute DIR (a relative one reads as a host), and
	 * the children get no working directory to resolve it against. */
	static char absdir[PATH_MAX];
	if ((mkdir(o.dir, 0755) && errno != EEXIST) || !realpath(o.dir, absdir)) {
		fprintf(stderr, "bench storage: --dir %s: %s\n", o.dir, strerror(errno));
		return 1;
	}
	o.dir = absdir;
	signal(SIGPIPE, SIG_IGN);
	if (o.replicas)
		return bench_chain(&o);
	uint16_t port;
	pid_t srv = start_server(&o, &port);
	if (srv < 0) {
		fprintf(stderr, "bench storage: cannot start the server\n");
		return 1;
	}
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	struct storage_client_opts co = { .cluster_id = BENCH_CLUSTER,
					  .secret = (const uint8_t *)BENCH_SECRET,
					  .secret_len = strlen(BENCH_SECRET), .threads = 2,
					  .conns_per_peer = 4, .retry_budget_ms = 10000 };
	struct storage_client *c = NULL;
	char err[256];
	int status = 1;
	if (storage_client_new(&co, &c, err, sizeof(err))) {
		fprintf(stderr, "bench storage: %s\n", err);
		goto out;
	}
	struct sto_stat_resp st;
	int up = -1;
	for (int i = 0; i < 100 && up; i++) {
		up = storage_client_stat(c, addr, 1, &st);
		if (up)
			clock_sleep_ms(100);
	}
	if (up) {
		fprintf(stderr, "bench storage: server did not come up: %s\n", cfs_strerror(up));
		goto out;
	}
	static const char *names[] = { "seq write 1MiB", "seq read 1MiB", "rand read 4KiB",
				       "rand read batched", "rand read async" };
	/* 1 MiB operations per second are MiB/s. */
	static const char *units[] = { "MiB/s", "MiB/s", "IOPS ", "IOPS ", "IOPS " };
	double ratio[5][MAX_ROUNDS], dratio[MAX_ROUNDS], sratio[MAX_ROUNDS], bratio[MAX_ROUNDS];
	unsigned batch = o.qd_rand >= 8 && o.qd_rand % 8 == 0 ? 8 : 1;
	printf("storage server (loopback RPC) vs fio: dir=%s size=%u MiB qd-seq=%u qd-rand=%u "
	       "seconds=%u sync=%d\n",
	       o.dir, o.size_mb, o.qd_seq, o.qd_rand, o.seconds, o.sync);
	printf("round  workload          server           fio              ratio\n");
	char fiofile[4200];
	snprintf(fiofile, sizeof(fiofile), "%s/fio.dat", o.dir);
	for (unsigned round = 0; round < o.rounds; round++) {
		struct storage_loc loc = { .addr = addr, .target = 1 };
		storage_client_remove(c, &loc, 1, 0, o.size_mb, NULL);
		unlink(fiofile);
		double fio_rand = 0;
		for (int w = 0; w < 5; w++) {
			unsigned qd = w >= 2 ? o.qd_rand : o.qd_seq;
			/* Batched: qd_rand / batch threads, each with batch reads in
			 * one request, so qd_rand reads are in flight as well. */
			struct cpu_mark m0, m1;
			cpu_mark(&m0, &srv, 1);
			double srv_ops = w == 4 ? run_async_rand(addr, qd, o.size_mb, o.seconds)
						: run_load(c, addr, 0, 1, w, w == 3 ? qd / batch : qd,
							   batch, o.size_mb, o.seconds);
			cpu_mark(&m1, &srv, 1);
			const char *rw = w == 0 ? "write" : w == 1 ? "read" : "randread";
			double fio = w >= 3 ? fio_rand : run_fio(&o, rw, w >= 2 ? "4k" : "1m", qd, NULL);
			if (w == 2)
				fio_rand = fio;
			if (srv_ops < 0 || fio <= 0)
				goto out;
			ratio[w][round] = srv_ops / fio;
			printf("%-6u %-17s %9.0f %s  %9.0f %s  %6.1f%%\n", round + 1, names[w],
			       srv_ops, units[w], fio, units[w], 100 * srv_ops / fio);
			if (w < 2)
				cpu_print(names[w], &m0, &m1, o.size_mb);
			else
				cpu_print_ops(names[w], &m0, &m1, srv_ops, o.seconds);
			if (w == 3 && batch > 1) {
				double fb = run_fio_batched(&o, qd / batch, batch);
				if (fb <= 0)
					goto out;
				bratio[round] = srv_ops / fb;
				print_vs(round, "  vs fio batched", units[3], srv_ops, fb);
			}
			if (w == 0 && o.sync) {
				char fds[32];
				snprintf(fds, sizeof(fds), "--fdatasync=%u", qd);
				unlink(fiofile);
				double dfio = run_fio(&o, "write", "1m", qd, fds);
				if (dfio <= 0)
					goto out;
				dratio[round] = srv_ops / dfio;
				print_vs(round, "  vs fio fdatasync", units[0], srv_ops, dfio);
				unlink(fiofile);
				double sfio = run_fio(&o, "write", "1m", qd, "--sync=dsync");
				if (sfio <= 0)
					goto out;
				sratio[round] = srv_ops / sfio;
				print_vs(round, "  vs fio dsync", units[0], srv_ops, sfio);
				unlink(fiofile);
				if (run_fio(&o, "write", "1m", qd, NULL) <= 0) /* the read phases' file */
					goto out;
			}
		}
	}
	printf("median ratio server/fio:");
	for (int w = 0; w < 5; w++)
		printf("  %s %.1f%%", names[w], 100 * bench_median(ratio[w], o.rounds));
	if (o.sync)
		printf("  (seq write vs fio fdatasync %.1f%%, vs fio dsync %.1f%%)",
		       100 * bench_median(dratio, o.rounds), 100 * bench_median(sratio, o.rounds));
	if (batch > 1)
		printf("  (rand read batched vs fio batched %.1f%%)",
		       100 * bench_median(bratio, o.rounds));
	printf("\nfio job: --ioengine=io_uring --direct=1 --size=%um on %s/fio.dat, one job;\n"
	       "  seq: --rw=write|read --bs=1m --iodepth=%u (write also with --fdatasync=%u,\n"
	       "  and with --sync=dsync: each write durable when it completes, as ours\n"
	       "  when acknowledged); rand: --rw=randread --bs=4k\n"
	       "  --iodepth=%u --time_based --runtime=%u; fio batched: the same with\n"
	       "  --numjobs=%u --iodepth=%u --iodepth_batch_submit=%u\n"
	       "  --iodepth_batch_complete_min=%u --group_reporting. server reads: %s\n",
	       o.size_mb, o.dir, o.qd_seq, o.qd_seq, o.qd_rand, o.seconds, o.qd_rand / batch, batch,
	       batch,
	       batch,
	       o.page_cache ? "small ones through the page cache (--page-cache)"
			    : "all O_DIRECT (--cached-read-max=0)");
	printf("note: shared machine; re-run for noise. Same disk, same block size and depth;\n"
	       "rand read batched = %u threads x %u reads per request (same %u in flight),\n"
	       "compared with the same fio run as rand read, and with fio batched, whose\n"
	       "jobs wait for all %u reads of a batch as each request of ours does;\n"
	       "rand read async = %u requests\n"
	       "kept in flight by completion callbacks on the RPC client (one loop thread),\n"
	       "like fio's io_uring loop, no thread per request.\n",
	       o.qd_rand / batch, batch, o.qd_rand, batch, o.qd_rand);
	status = 0;
out:
	storage_client_free(c);
	kill(srv, SIGTERM);
	int wst;
	waitpid(srv, &wst, 0);
	unlink(fiofile);
	return status;
}
