/* bench_meta.c - chainfs bench meta: metadata operations per second over RPC.
 *
 *   chainfs bench meta [--meta ADDR[,ADDR] --cluster-id X --secret-file F]
 *                      [--kv URL | --dir D --lmdb-sync full|window|nometa|none
 *                       --lmdb-writemap true|false]
 *                      [--seconds S] [--clients 1,8] [--instances 1,2] [--dirs 64]
 *
 * Without --meta it starts two `chainfs meta` processes of its own (this
 * binary, --threads 16) over one KV store: --kv, else a fresh LMDB
 * environment under --dir with --lmdb-sync, and stops them at the end.
 *
 * For each instance count (the first 1 or 2 addresses), client count C
 * (threads sharing one meta_client, as a FUSE mount's workers do) and
 * directory mode (all threads in one directory, or each file in one of
 * --dirs directories), it runs for --seconds each, in order:
 *   ping     ECHO round trips through the same client (the transport
 *            baseline: no worker hand-off, no KV)
 *   create   exclusive creates of fresh names
 *   stat     lookups of created names (name -> attributes, what stat does)
 *   readdir  full listings of the directories, 1024 entries per call
 *            (entries per second)
 *   unlink   removal of the created files (each thread its own)
 * and prints each rate and create/stat as a fraction of ping. Rates are
 * best-effort on a shared machine: run it twice and compare ratios.
 *
 * Under each row a "cpu" line gives, per phase, the CPU time (user +
 * system) per operation of the meta instances the row used (their pids:
 * its own instances, or --meta-pid) and of this process (the client),
 * and their context switches per operation (meta's threads counted
 * over /proc/PID/task, the client's by getrusage). Other load on the
 * machine moves these much less than the rates, so they are what an A/B
 * of the request path should compare (bench/README.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/bench_fio.h"
#include "cli/cli.h"
#include "client/meta_client.h"
#include "common/cfg.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "net/auth.h"
#include "net/transport.h"

#define MAX_CLIENTS 64
#define MAX_DIRS 1024

struct bm_conf {
	char *meta;
	char *cluster_id;
	char *secret_file;
	char *kv;
	char *dir;
	char *lmdb_sync;
	int lmdb_writemap;
	int64_t seconds;
	int64_t rounds;
	char *clients;
	char *instances;
	int64_t dirs;
	int64_t server_threads;
	int64_t server_loops;
	char *server_inline;
	int64_t client_loops;
	int64_t conns;
	int idle_conn_first;
	char *meta_pid;
	char *log_level;
};

static const struct cfg_opt opts[] = {
	{ "meta", CFG_STR, "", 0, 0, offsetof(struct bm_conf, meta),
	  "ADDR[,ADDR]: running meta instances (default: start two)" },
	{ "cluster-id", CFG_STR, "bench", 0, 0, offsetof(struct bm_conf, cluster_id),
	  "cluster id (with --meta)" },
	{ "secret-file", CFG_STR, "", 0, 0, offsetof(struct bm_conf, secret_file),
	  "cluster secret file (required with --meta)" },
	{ "kv", CFG_STR, "", 0, 0, offsetof(struct bm_conf, kv),
	  "KV URL for the instances it starts (default: fresh LMDB under --dir)" },
	{ "dir", CFG_STR, "/var/tmp", 0, 0, offsetof(struct bm_conf, dir),
	  "where the fresh LMDB environment goes" },
	{ "lmdb-writemap", CFG_BOOL, "true", 0, 0, offsetof(struct bm_conf, lmdb_writemap),
	  "the fresh LMDB environment with writemap=1 (as chainfs up's meta; kv.h)" },
	{ "lmdb-sync", CFG_STR, "full", 0, 0, offsetof(struct bm_conf, lmdb_sync),
	  "durability of the fresh LMDB environment: full, window (sync every 100 ms and at fsync), nometa or none" },
	{ "seconds", CFG_INT, "2", 1, 600, offsetof(struct bm_conf, seconds),
	  "seconds per phase" },
	{ "rounds", CFG_INT, "1", 1, 20, offsetof(struct bm_conf, rounds),
	  "rounds per row (fresh directories each); the best rate of each phase is shown" },
	{ "clients", CFG_STR, "1,8", 0, 0, offsetof(struct bm_conf, clients),
	  "client thread counts to run" },
	{ "instances", CFG_STR, "1,2", 0, 0, offsetof(struct bm_conf, instances),
	  "instance counts to run (each <= the addresses available)" },
	{ "dirs", CFG_INT, "64", 2, MAX_DIRS, offsetof(struct bm_conf, dirs),
	  "directories of the spread mode" },
	{ "server-threads", CFG_INT, "16", 1, 256, offsetof(struct bm_conf, server_threads),
	  "worker threads of each instance it starts" },
	{ "server-loops", CFG_INT, "1", 1, 16, offsetof(struct bm_conf, server_loops),
	  "RPC loop threads of each instance it starts" },
	{ "server-inline-reads", CFG_STR, "auto", 0, 0, offsetof(struct bm_conf, server_inline),
	  "--inline-reads of each instance it starts: auto (lmdb reads on the loop thread) "
	  "or off" },
	{ "client-loops", CFG_INT, "1", 1, 16, offsetof(struct bm_conf, client_loops),
	  "RPC loop threads of the bench client" },
	{ "conns", CFG_INT, "1", 1, 16, offsetof(struct bm_conf, conns),
	  "connections per instance of the bench client" },
	{ "idle-conn-first", CFG_BOOL, "false", 0, 0, offsetof(struct bm_conf, idle_conn_first),
	  "a call goes on the first of --conns connections with nothing in flight (rpc.h "
	  "idle_conn_first; the mount's CFS_MOUNT_META_CONNS), so with --conns >= --clients "
	  "each thread sends and reads its own reply" },
	{ "meta-pid", CFG_STR, "", 0, 0, offsetof(struct bm_conf, meta_pid),
	  "PID[,PID]: with --meta, the pids of those instances (on this host, in --meta's "
	  "order) for the CPU per op line; its own instances are measured anyway" },
	{ "log-level", CFG_STR, "warn", 0, 0, offsetof(struct bm_conf, log_level),
	  "err|warn|notice|info|debug" },
	CFG_END
};

/* ---- own instances ---- */

struct own {
	char tmp[PATH_MAX];
	char secret_path[PATH_MAX + 16];
	pid_t pid[2];
	int n;
};


static int port_open(uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	return remove(p);
}

static void own_stop(struct own *o)
{
	for (int i = 0; i < o->n; i++) {
		if (o->pid[i] <= 0)
			continue;
		kill(o->pid[i], SIGTERM);
		waitpid(o->pid[i], NULL, 0);
	}
	if (*o->tmp)
		nftw(o->tmp, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Starts two instances; fills ADDRS ("a,b") and SECRET. 0 or -1. */
static int own_start(struct own *o, const struct bm_conf *bc, char *addrs, size_t alen,
		     uint8_t *secret, size_t *slen)
{
	char kv[PATH_MAX + 64], tmpl[PATH_MAX];
	extern char **environ;

	snprintf(tmpl, sizeof(tmpl), "%s/chainfs-bench-meta-XXXXXX", bc->dir);
	if (!mkdtemp(tmpl) || !realpath(tmpl, o->tmp)) {
		fprintf(stderr, "chainfs bench meta: cannot make a directory under %s: %s\n",
			bc->dir, strerror(errno));
		return -1;
	}
	if (getrandom(secret, 32, 0) != 32)
		return -1;
	for (int i = 0; i < 32; i++)
		secret[i] = (uint8_t)('a' + secret[i] % 26);
	*slen = 32;
	snprintf(o->secret_path, sizeof(o->secret_path), "%s/secret", o->tmp);
	int fd = open(o->secret_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, secret, 32) != 32) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	if (*bc->kv)
		snprintf(kv, sizeof(kv), "%s", bc->kv);
	else
		snprintf(kv, sizeof(kv), "lmdb://%s/kv?sync=%s%s", o->tmp, bc->lmdb_sync,
			 bc->lmdb_writemap ? "&writemap=1" : "");
	addrs[0] = 0;
	for (int i = 0; i < 2; i++) {
		char listen[64], threads[16], loops[16], log[PATH_MAX + 32];
		uint16_t port = 0;
		(void)xport_free_ports(&port, 1);
		snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
		snprintf(threads, sizeof(threads), "%" PRId64, bc->server_threads);
		snprintf(loops, sizeof(loops), "%" PRId64, bc->server_loops);
		snprintf(log, sizeof(log), "%s/meta%d.log", o->tmp, i);
		char *argv[] = { "chainfs", "meta", "--kv", kv, "--listen", listen, "--cluster-id",
				 "bench", "--secret-file", o->secret_path, "--threads", threads,
				 "--loop-threads", loops, "--inline-reads", bc->server_inline,
				 "--log-level", "warn", NULL };
		posix_spawn_file_actions_t fa;
		posix_spawn_file_actions_init(&fa);
		posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		posix_spawn_file_actions_adddup2(&fa, 1, 2);
		int rc = posix_spawn(&o->pid[i], "/proc/self/exe", &fa, NULL, argv, environ);
		posix_spawn_file_actions_destroy(&fa);
		if (rc) {
			fprintf(stderr, "chainfs bench meta: spawn: %s\n", strerror(rc));
			return -1;
		}
		o->n = i + 1;
		uint64_t until = clock_mono_ms() + 20000;
		while (!port_open(port) && clock_mono_ms() < until)
			clock_sleep_ms(20);
		if (!port_open(port)) {
			fprintf(stderr, "chainfs bench meta: instance %d did not start (log %s)\n", i,
				log);
			return -1;
		}
		snprintf(addrs + strlen(addrs), alen - strlen(addrs), "%s%s", i ? "," : "", listen);
	}
	printf("started 2 meta instances over %s (%s)\n", kv, addrs);
	return 0;
}

/* ---- load ---- */

enum phase { PH_PING, PH_CREATE, PH_STAT, PH_READDIR, PH_UNLINK, PH_N };
static const char *const phase_names[PH_N] = { "ping", "create", "stat", "readdir", "unlink" };

struct row;

struct worker {
	pthread_t th;
	struct row *row;
	int id;
	uint64_t created;     /* files this thread created (names c<id>-<i>) */
	uint64_t ops, errors;
	int first_error;
};

struct row {
	meta_client *mc;
	int nclients;
	int ndirs;                 /* 1: one directory */
	uint64_t dirs[MAX_DIRS];
	enum phase ph;
	uint64_t until;
	struct worker w[MAX_CLIENTS];
};

static const struct meta_cred ROOT = { 0, 0, 0, NULL };

/* ---- CPU per operation ---- */

/* CPU time and context switches so far. */
struct cpu_mark {
	double meta_s, cli_s;
	uint64_t meta_cs, cli_cs;
};

static int meta_pids[META_CLIENT_MAX_ADDRS]; /* in address order; 0: unknown */

/* utime + stime of PID in seconds (0 when unknown). */
static double proc_cpu_s(int pid)
{
	double v = pid > 0 ? bench_proc_cpu(pid) : -1;
	return v < 0 ? 0 : v;
}

/* Voluntary + involuntary context switches of PID's live threads. */
static uint64_t proc_cs(int pid)
{
	char path[320], line[128];
	uint64_t sum = 0;
	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	DIR *d = opendir(path);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/status", pid, e->d_name);
		FILE *f = fopen(path, "r");
		while (f && fgets(line, sizeof(line), f)) {
			unsigned long long v;
			if (sscanf(line, "voluntary_ctxt_switches: %llu", &v) == 1 ||
			    sscanf(line, "nonvoluntary_ctxt_switches: %llu", &v) == 1)
				sum += v;
		}
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	return sum;
}

/* Marks the CPU of the first NINST meta instances and of this process. */
static void cpu_mark(struct cpu_mark *m, int ninst)
{
	struct rusage ru;
	memset(m, 0, sizeof(*m));
	for (int i = 0; i < ninst; i++)
		if (meta_pids[i] > 0) {
			m->meta_s += proc_cpu_s(meta_pids[i]);
			m->meta_cs += proc_cs(meta_pids[i]);
		}
	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		m->cli_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
			   ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
		m->cli_cs = (uint64_t)ru.ru_nvcsw + (uint64_t)ru.ru_nivcsw;
	}
}

static void name_of(char *buf, size_t n, int id, uint64_t i)
{
	snprintf(buf, n, "c%d-%" PRIu64, id, i);
}

static uint64_t dir_of(const struct row *r, int id, uint64_t i)
{
	return r->dirs[(i * (uint64_t)MAX_CLIENTS + (uint64_t)id) % (uint64_t)r->ndirs];
}

static void note(struct worker *w, int rc)
{
	if (rc < 0 && !w->errors++)
		w->first_error = rc;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct row *r = w->row;
	char name[64];
	uint64_t i = 0, seed = (uint64_t)w->id * 0x9E3779B97F4A7C15ULL + 1;
	struct meta_inode in;
	struct meta_dirent *ents = NULL;
	int rc;

	if (r->ph == PH_READDIR && !(ents = malloc(1024 * sizeof(*ents))))
		return NULL;
	while (clock_mono_ns() < r->until) {
		switch (r->ph) {
		case PH_PING:
			rc = meta_client_ping(r->mc);
			break;
		case PH_CREATE:
			name_of(name, sizeof(name), w->id, w->created);
			rc = meta_client_create(r->mc, &ROOT, dir_of(r, w->id, w->created),
						meta_name_c(name), 0644, META_O_EXCL, NULL, NULL);
			if (rc == 0)
				w->created++;
			break;
		case PH_STAT: {
			if (!w->created)
				goto out;
			seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
			uint64_t k = seed % w->created;
			name_of(name, sizeof(name), w->id, k);
			rc = meta_client_lookup(r->mc, &ROOT, dir_of(r, w->id, k), meta_name_c(name),
						&in);
			break;
		}
		case PH_READDIR: {
			char cursor[META_NAME_MAX + 1] = "";
			int n = 0, eof = 0;
			uint64_t d = r->dirs[(i + (uint64_t)w->id) % (uint64_t)r->ndirs];
			rc = 0;
			while (!eof && rc == 0 && clock_mono_ns() < r->until) {
				rc = meta_client_readdir(r->mc, &ROOT, d, meta_name_c(cursor), ents, 1024,
							 &n, &eof);
				if (rc == 0) {
					w->ops += (uint64_t)n;
					if (n)
						snprintf(cursor, sizeof(cursor), "%s", ents[n - 1].name);
				}
			}
			note(w, rc);
			i++;
			continue;
		}
		case PH_UNLINK:
			if (i >= w->created)
				goto out;
			name_of(name, sizeof(name), w->id, i);
			rc = meta_client_unlink(r->mc, &ROOT, dir_of(r, w->id, i), meta_name_c(name));
			break;
		default:
			rc = -EINVAL;
		}
		i++;
		if (rc == 0)
			w->ops++;
		note(w, rc);
	}
out:
	free(ents);
	return NULL;
}

/* Runs phase PH for SECONDS; returns ops (entries for readdir) per second
 * and, in *OPS, the operations done (readdir: calls are not counted, so
 * entries), with the CPU used meanwhile in *USED (struct cpu_mark
 * differences). */
static double run_phase(struct row *r, enum phase ph, int64_t seconds, uint64_t *errors,
			int *first_error, int ninst, uint64_t *ops, struct cpu_mark *used)
{
	struct cpu_mark m0, m1;
	cpu_mark(&m0, ninst);
	uint64_t t0 = clock_mono_ns(), total = 0, last_end = t0;
	r->ph = ph;
	r->until = t0 + (uint64_t)seconds * 1000000000u;
	for (int i = 0; i < r->nclients; i++) {
		r->w[i].ops = 0;
		r->w[i].errors = 0;
		r->w[i].first_error = 0;
		r->w[i].row = r;
		r->w[i].id = i;
		pthread_create(&r->w[i].th, NULL, worker_main, &r->w[i]);
	}
	for (int i = 0; i < r->nclients; i++) {
		pthread_join(r->w[i].th, NULL);
		total += r->w[i].ops;
		*errors += r->w[i].errors;
		if (r->w[i].errors && !*first_error)
			*first_error = r->w[i].first_error;
	}
	last_end = clock_mono_ns();
	cpu_mark(&m1, ninst);
	used->meta_s = m1.meta_s - m0.meta_s;
	used->cli_s = m1.cli_s - m0.cli_s;
	used->meta_cs = m1.meta_cs - m0.meta_cs;
	used->cli_cs = m1.cli_cs - m0.cli_cs;
	*ops = total;
	return (double)total / ((double)(last_end - t0) / 1e9);
}

static int parse_list(const char *s, int *out, int max, int lo, int hi)
{
	int n = 0;
	while (*s && n < max) {
		char *end;
		long v = strtol(s, &end, 10);
		if (end == s || v < lo || v > hi)
			return -1;
		out[n++] = (int)v;
		s = *end == ',' ? end + 1 : end;
		if (*end && *end != ',')
			return -1;
	}
	return n;
}

/* Makes a fresh directory tree for one round: a top directory holding
 * r->ndirs directories. 0 or an error. */
static int make_dirs(struct row *r, int rowno, int round)
{
	char name[64];
	struct meta_inode top, d;
	snprintf(name, sizeof(name), "bench-%d-%d-%d", getpid(), rowno, round);
	int rc = meta_client_mkdir(r->mc, &ROOT, META_ROOT_INO, meta_name_c(name), 0755, &top);
	for (int i = 0; rc == 0 && i < r->ndirs; i++) {
		char dn[32];
		snprintf(dn, sizeof(dn), "d%d", i);
		rc = meta_client_mkdir(r->mc, &ROOT, top.ino, meta_name_c(dn), 0755, &d);
		r->dirs[i] = d.ino;
	}
	if (rc)
		fprintf(stderr, "chainfs bench meta: setting up directories: %s (%s)\n",
			cfs_strerror(rc), meta_client_last_error());
	return rc;
}

/* One row: ROUNDS rounds of every phase on fresh directories; the best
 * rate of each phase is printed (other tenants only ever slow a round). */
static int run_row(const char *const *addrs, int ninst, int nclients, int ndirs,
		   const struct bm_conf *bc, const uint8_t *secret, size_t slen, int rowno)
{
	static struct row r;
	char err[256];
	double rate[PH_N] = { 0 };
	struct cpu_mark best[PH_N];
	uint64_t best_ops[PH_N] = { 0 };
	uint64_t errors[PH_N] = { 0 }, files = 0, err_total = 0;
	int first_error[PH_N] = { 0 };
	struct meta_client_opts mo = { .addrs = addrs, .naddrs = (size_t)ninst,
				       .cluster_id = bc->cluster_id, .secret = secret,
				       .secret_len = slen, .timeout_ms = 10000,
				       .loop_threads = (int)bc->client_loops,
				       .conns_per_peer = (int)bc->conns,
				       .idle_conn_first = bc->idle_conn_first };
	memset(&r, 0, sizeof(r));
	if (meta_client_new(&mo, &r.mc, err, sizeof(err))) {
		fprintf(stderr, "chainfs bench meta: %s\n", err);
		return -1;
	}
	r.nclients = nclients;
	r.ndirs = ndirs;
	for (int round = 0; round < bc->rounds; round++) {
		if (make_dirs(&r, rowno, round)) {
			meta_client_free(r.mc);
			return -1;
		}
		for (int i = 0; i < nclients; i++)
			r.w[i].created = 0;
		for (int ph = 0; ph < PH_N; ph++) {
			struct cpu_mark used;
			uint64_t ops = 0;
			double x = run_phase(&r, (enum phase)ph, bc->seconds, &errors[ph],
					     &first_error[ph], ninst, &ops, &used);
			if (x > rate[ph] || !round) {
				rate[ph] = x;
				best[ph] = used;
				best_ops[ph] = ops;
			}
		}
		for (int i = 0; i < nclients; i++)
			files += r.w[i].created;
	}
	for (int ph = 0; ph < PH_N; ph++)
		err_total += errors[ph];
	printf("%4d %7d %5d %9.0f %9.0f %9.0f %11.0f %9.0f   %5.2f  %5.2f %8" PRIu64 " %6" PRIu64 "\n",
	       ninst, nclients, ndirs, rate[PH_PING], rate[PH_CREATE], rate[PH_STAT],
	       rate[PH_READDIR], rate[PH_UNLINK], rate[PH_CREATE] / rate[PH_PING],
	       rate[PH_STAT] / rate[PH_PING], files, err_total);
	int have_meta = 1;
	for (int i = 0; i < ninst; i++)
		have_meta &= meta_pids[i] > 0;
	printf("     cpu us/op %s, cs/op %s:", have_meta ? "meta+client" : "client",
	       have_meta ? "meta+client" : "client");
	for (int ph = 0; ph < PH_N; ph++) {
		double n = best_ops[ph] ? (double)best_ops[ph] : 1.0;
		if (ph == PH_READDIR)
			continue; /* per entry, not per call: not comparable */
		if (have_meta)
			printf(" %s %.1f+%.1f (%.2f+%.2f)", phase_names[ph], best[ph].meta_s * 1e6 / n,
			       best[ph].cli_s * 1e6 / n, (double)best[ph].meta_cs / n,
			       (double)best[ph].cli_cs / n);
		else
			printf(" %s %.1f (%.2f)", phase_names[ph], best[ph].cli_s * 1e6 / n,
			       (double)best[ph].cli_cs / n);
	}
	printf("\n");
	fflush(stdout);
	for (int ph = 0; ph < PH_N; ph++)
		if (errors[ph])
			fprintf(stderr, "  %s: %" PRIu64 " errors, first %s\n", phase_names[ph],
				errors[ph], cfs_errname(first_error[ph]));
	meta_client_free(r.mc);
	return 0;
}

int cli_bench_meta(int argc, char **argv)
{
	struct bm_conf bc;
	struct own own;
	char err[512], addrbuf[1024];
	uint8_t secret[AUTH_SECRET_MAX];
	size_t slen = 0;
	int npos = 0, ret = 1, clients[8], insts[4], ncl, nin;
	const char *addrs[META_CLIENT_MAX_ADDRS];
	int naddrs = 0;
	enum log_level lvl;

	memset(&bc, 0, sizeof(bc));
	memset(&own, 0, sizeof(own));
	int rc = cfg_parse(opts, &bc, argc, argv, &npos, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "chainfs bench meta: %s\n", err);
		return 2;
	}
	ncl = parse_list(bc.clients, clients, 8, 1, MAX_CLIENTS);
	nin = parse_list(bc.instances, insts, 4, 1, META_CLIENT_MAX_ADDRS);
	if (npos || ncl <= 0 || nin <= 0 || log_parse_level(bc.log_level, &lvl) ||
	    (strcmp(bc.lmdb_sync, "full") && strcmp(bc.lmdb_sync, "nometa") &&
	     strcmp(bc.lmdb_sync, "none") && strcmp(bc.lmdb_sync, "window"))) {
		fprintf(stderr, "chainfs bench meta: bad --clients, --instances, --log-level or "
			"--lmdb-sync (see --help)\n");
		ret = 2;
		goto out;
	}
	log_set_level(lvl);
	signal(SIGPIPE, SIG_IGN);
	if (*bc.meta) {
		if (!*bc.secret_file) {
			fprintf(stderr, "chainfs bench meta: --secret-file is required with --meta\n");
			ret = 2;
			goto out;
		}
		rc = auth_load_secret(bc.secret_file, secret, err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "chainfs bench meta: %s\n", err);
			goto out;
		}
		slen = (size_t)rc;
		snprintf(addrbuf, sizeof(addrbuf), "%s", bc.meta);
	} else {
		free(bc.cluster_id);
		bc.cluster_id = strdup("bench");
		if (!bc.cluster_id || own_start(&own, &bc, addrbuf, sizeof(addrbuf), secret, &slen))
			goto out;
	}
	for (char *save, *t = strtok_r(addrbuf, ",", &save); t && naddrs < META_CLIENT_MAX_ADDRS;
	     t = strtok_r(NULL, ",", &save))
		addrs[naddrs++] = t;
	for (int i = 0; i < own.n && i < META_CLIENT_MAX_ADDRS; i++)
		meta_pids[i] = own.pid[i];
	if (*bc.meta_pid && parse_list(bc.meta_pid, meta_pids, META_CLIENT_MAX_ADDRS, 1,
				       INT_MAX) <= 0) {
		fprintf(stderr, "chainfs bench meta: bad --meta-pid\n");
		ret = 2;
		goto out;
	}

	printf("chainfs bench meta: %" PRId64 " s per phase, best of %" PRId64 " rounds; rates are "
	       "ops/s (readdir: entries/s); cr/pg and st/pg are create and stat as fractions of "
	       "the RPC round-trip (ping) rate; files = created over all rounds\n",
	       bc.seconds, bc.rounds);
	printf("inst clients  dirs      ping    create      stat     readdir    unlink  "
	       "cr/pg  st/pg    files errors\n");
	int rowno = 0;
	for (int a = 0; a < nin; a++) {
		if (insts[a] > naddrs) {
			printf("(skipping %d instances: only %d addresses)\n", insts[a], naddrs);
			continue;
		}
		for (int b = 0; b < ncl; b++)
			for (int mode = 0; mode < 2; mode++)
				if (run_row(addrs, insts[a], clients[b], mode ? (int)bc.dirs : 1, &bc,
					    secret, slen, rowno++))
					goto out;
	}
	ret = 0;
out:
	own_stop(&own);
	cfg_free(opts, &bc);
	return ret;
}
