/* bench_usrbio.c - chainfs bench usrbio: shared-memory ring I/O through a
 * ChainFS mount, beside fio on a local directory and fio through the same
 * mount's FUSE path, in one run.
 *
 *   chainfs bench usrbio --mount M --raw-dir D [--size-mb N] [--seconds S]
 *                        [--replicas R] [--only LIST] [--mount-pid P]
 *
 * Workloads (rings: include/chainfs.h, one thread per ring, one iov):
 *   seqwr1   1 MiB sequential write, 1 ring, depth 16 (durable on all R
 *            replicas at each completion)
 *   seqwr4   the same, 4 rings x depth 16 over disjoint quarters
 *   seqrd1   1 MiB sequential read, 1 ring, depth 16
 *   seqrd4   4 rings x depth 16
 *   rand4k   4 KiB random reads, 4 rings x depth 32, S seconds
 *   rand64k  64 KiB random reads, 4 rings x depth 32, S seconds
 *   rand4k1  4 KiB random reads, 1 ring x depth 128, S seconds
 * Baselines with identical sizes and total depth: fio (io_uring,
 * O_DIRECT) on D (bench_fio.c), and the same fio through M (the FUSE
 * path). Daemon CPU per GiB moved comes from /proc/PID/stat of the mount
 * (utime+stime), for the ring phase and the FUSE phase. Goals (issue 11):
 * seqrd1 >= 0.90x raw; rand4k >= 0.70x raw and >= 2x FUSE; seqwr1 >=
 * 0.80x raw/R. Everything written is removed at the end.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chainfs.h"
#include "cli/bench_fio.h"
#include "cli/cli.h"
#include "common/cfg.h"
#include "common/clock.h"

#define BU_SUBDIR "cfs-bench-usrbio"
#define MiB (1ull << 20)

struct bu_conf {
	char *mount;
	char *raw_dir;
	int64_t size_mb;
	int64_t seconds;
	int64_t replicas;
	char *only;
	int64_t mount_pid;
};

static const struct cfg_opt opts[] = {
    {"mount", CFG_STR, "", 0, 0, offsetof(struct bu_conf, mount),
     "a ChainFS mount point (chainfs up --mount M); required"},
    {"raw-dir", CFG_STR, "", 0, 0, offsetof(struct bu_conf, raw_dir),
     "a directory on the local disk: the baseline; required"},
    {"size-mb", CFG_INT, "512", 16, 1 << 20, offsetof(struct bu_conf, size_mb),
     "MiB of the sequential file (random reads use it too)"},
    {"seconds", CFG_INT, "8", 1, 3600, offsetof(struct bu_conf, seconds),
     "length of each random-read phase"},
    {"replicas", CFG_INT, "3", 1, 16, offsetof(struct bu_conf, replicas),
     "replication factor of the mount's chains (the write goal is raw/R)"},
    {"only", CFG_STR, "", 0, 0, offsetof(struct bu_conf, only),
     "run only these: seqwr1,seqwr4,seqrd1,seqrd4,rand4k,rand64k,rand4k1"},
    {"mount-pid", CFG_INT, "0", 0, INT_MAX, offsetof(struct bu_conf, mount_pid),
     "pid of the chainfs mount process (default: found in /proc)"},
    CFG_END};

struct bu_work {
	const char *key, *what;
	int write, random;
	uint32_t bs;
	int rings, depth;
	enum { BG_NONE, BG_SEQRD, BG_SEQWR, BG_RAND } goal;
};

static const struct bu_work works[] = {
    {"seqwr1", "seq write 1M, 1 ring x16", 1, 0, 1 << 20, 1, 16, BG_SEQWR},
    {"seqwr4", "seq write 1M, 4 rings x16", 1, 0, 1 << 20, 4, 16, BG_NONE},
    {"seqrd1", "seq read 1M, 1 ring x16", 0, 0, 1 << 20, 1, 16, BG_SEQRD},
    {"seqrd4", "seq read 1M, 4 rings x16", 0, 0, 1 << 20, 4, 16, BG_NONE},
    {"rand4k", "rand read 4K, 4 rings x32", 0, 1, 4096, 4, 32, BG_RAND},
    {"rand64k", "rand read 64K, 4 rings x32", 0, 1, 65536, 4, 32, BG_NONE},
    {"rand4k1", "rand read 4K, 1 ring x128", 0, 1, 4096, 1, 128, BG_NONE},
};

static int want(const struct bu_conf *c, const char *key)
{
	if (!*c->only)
		return 1;
	size_t kl = strlen(key);
	for (const char *p = c->only; (p = strstr(p, key)); p += kl)
		if ((p == c->only || p[-1] == ',') && (p[kl] == 0 || p[kl] == ','))
			return 1;
	return 0;
}

/* The pid of `chainfs mount ... MOUNT`, or 0. */
static int find_mount_pid(const char *mount)
{
	char want_mp[PATH_MAX];
	if (!realpath(mount, want_mp))
		return 0;
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	int found = 0;
	struct dirent *de;
	while (!found && (de = readdir(d))) {
		int pid = atoi(de->d_name);
		if (pid <= 0)
			continue;
		char p[64], cl[4096];
		snprintf(p, sizeof(p), "/proc/%d/cmdline", pid);
		FILE *f = fopen(p, "r");
		if (!f)
			continue;
		size_t n = fread(cl, 1, sizeof(cl) - 1, f);
		fclose(f);
		cl[n] = 0;
		const char *args[64];
		int na = 0;
		for (size_t i = 0; i < n && na < 64; i += strlen(cl + i) + 1)
			args[na++] = cl + i;
		if (na < 3 || strcmp(args[1], "mount") != 0 || !strstr(args[0], "chainfs"))
			continue;
		char mp[PATH_MAX];
		if (realpath(args[na - 1], mp) && !strcmp(mp, want_mp))
			found = pid;
	}
	closedir(d);
	return found;
}

struct bu_thread {
	const struct bu_work *w;
	const char *mount;
	cfs_iov *iov;
	char *buf;         /* this thread's part of the iov: depth * bs */
	int fd;
	uint64_t begin, end; /* sequential: file range; random: the file size */
	uint64_t deadline_ns; /* random: stop time */
	uint64_t seed;
	uint64_t bytes;
	int err;
};

static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void *ring_thread(void *arg)
{
	struct bu_thread *t = arg;
	const struct bu_work *w = t->w;
	struct cfs_ior_opts o = {.entries = w->depth, .for_read = !w->write};
	cfs_ior *r;
	int rc = cfs_ior_create(t->mount, &o, &r);
	if (rc < 0) {
		t->err = rc;
		return NULL;
	}
	uint64_t next = t->begin, nblocks = t->end / w->bs;
	int inflight = 0, nfree = w->depth, freeb[128];
	for (int i = 0; i < w->depth; i++)
		freeb[i] = i; /* each I/O gets a buffer of its own */
	struct cfs_cqe c[128];
	for (;;) {
		/* Fill every free slot. */
		while (inflight < w->depth) {
			uint64_t off;
			if (w->random) {
				if (clock_mono_ns() >= t->deadline_ns)
					break;
				off = rnd(&t->seed) % nblocks * w->bs;
			} else {
				if (next >= t->end)
					break;
				off = next;
				next += w->bs;
			}
			int b = freeb[--nfree];
			rc = cfs_prep_iov(r, t->iov, !w->write, t->buf + (size_t)b * w->bs, t->fd, off,
			                  w->bs, (void *)(uintptr_t)b);
			if (rc < 0) {
				t->err = rc;
				goto out;
			}
			inflight++;
		}
		if (!inflight)
			break;
		cfs_submit_ios(r);
		int n = cfs_wait_for_ios(r, c, 128, 1, NULL);
		if (n < 0) {
			t->err = n;
			break;
		}
		for (int i = 0; i < n; i++) {
			if (c[i].result != (int64_t)w->bs && !t->err)
				t->err = c[i].result < 0 ? (int)c[i].result : -EIO;
			if (c[i].result > 0)
				t->bytes += (uint64_t)c[i].result;
			freeb[nfree++] = (int)(uintptr_t)c[i].userdata;
		}
		inflight -= n;
	}
out:
	while (inflight > 0) {
		int n = cfs_wait_for_ios(r, c, 128, 1, NULL);
		if (n <= 0)
			break;
		inflight -= n;
	}
	cfs_ior_destroy(r);
	return NULL;
}

/* Runs W through rings on FILE; returns MiB/s (sequential) or IOPS. */
static double run_rings(const struct bu_conf *bc, const struct bu_work *w, const char *file,
                        uint64_t size, double *cpu, int mpid)
{
	int fd = open(file, w->write ? (O_RDWR | O_CREAT) : O_RDONLY, 0644);
	if (fd < 0) {
		fprintf(stderr, "bench usrbio: %s: %s\n", file, strerror(errno));
		return -1;
	}
	int rc = cfs_reg_fd(fd, 0);
	cfs_iov *iov = NULL;
	if (rc < 0 || (rc = cfs_iov_create(bc->mount, (size_t)w->rings * w->depth * w->bs, 0, -1,
	                                   &iov)) < 0) {
		fprintf(stderr, "bench usrbio: rings: %s\n", strerror(-rc));
		close(fd);
		return -1;
	}
	/* One shared buffer per ring is enough: the bench checks results,
	 * not data, and the bytes still travel to and from the iov. */
	struct bu_thread th[4];
	pthread_t tid[4];
	double c0 = bench_proc_cpu(mpid);
	uint64_t t0 = clock_mono_ns();
	for (int i = 0; i < w->rings; i++) {
		th[i] = (struct bu_thread){
		    .w = w,
		    .mount = bc->mount,
		    .iov = iov,
		    .buf = (char *)cfs_iov_base(iov) + (size_t)i * w->depth * w->bs,
		    .fd = fd,
		    .begin = w->random ? 0 : size / (uint64_t)w->rings * (uint64_t)i,
		    .end = w->random ? size : size / (uint64_t)w->rings * (uint64_t)(i + 1),
		    .deadline_ns = t0 + (uint64_t)bc->seconds * 1000000000ull,
		    .seed = 0x1234 + (uint64_t)i,
		};
		pthread_create(&tid[i], NULL, ring_thread, &th[i]);
	}
	uint64_t bytes = 0;
	int err = 0;
	for (int i = 0; i < w->rings; i++) {
		pthread_join(tid[i], NULL);
		bytes += th[i].bytes;
		if (th[i].err && !err)
			err = th[i].err;
	}
	double secs = (double)(clock_mono_ns() - t0) / 1e9;
	double c1 = bench_proc_cpu(mpid);
	*cpu = c0 >= 0 && c1 >= 0 && bytes ? (c1 - c0) / ((double)bytes / (1ull << 30)) : -1;
	cfs_dereg_fd(fd);
	if (w->write)
		fsync(fd); /* the length to meta (every byte is durable already) */
	close(fd);
	cfs_iov_destroy(iov);
	if (err) {
		fprintf(stderr, "bench usrbio: %s: %s\n", w->key, strerror(-err));
		return -1;
	}
	return w->random ? (double)bytes / w->bs / secs : (double)bytes / MiB / secs;
}

/* fio on DIR with the workload's total depth; MiB/s or IOPS. CPU of the
 * mount (when MPID) per GiB in *CPU. */
static double run_fio(const struct bu_conf *bc, const struct bu_work *w, const char *dir,
                      int mpid, double *cpu)
{
	const char *rw = w->write ? "write" : (w->random ? "randread" : "read");
	char bs[16];
	snprintf(bs, sizeof(bs), "%uk", w->bs / 1024);
	double c0 = mpid ? bench_proc_cpu(mpid) : -1;
	uint64_t t0 = clock_mono_ns();
	double iops = bench_fio_iops("bench usrbio", dir, (unsigned)bc->size_mb,
	                             (unsigned)bc->seconds, rw, bs,
	                             (unsigned)(w->rings * w->depth), NULL);
	double secs = (double)(clock_mono_ns() - t0) / 1e9;
	(void)secs;
	if (cpu) {
		double c1 = mpid ? bench_proc_cpu(mpid) : -1;
		double gib = iops > 0 ? iops * w->bs *
		                            (w->random ? (double)bc->seconds
		                                       : (double)bc->size_mb * MiB / (iops * w->bs)) /
		                            (1ull << 30)
		                      : 0;
		*cpu = c0 >= 0 && c1 >= 0 && gib > 0 ? (c1 - c0) / gib : -1;
	}
	if (iops < 0)
		return -1;
	return w->random ? iops : iops * w->bs / MiB;
}

int cli_bench_usrbio(int argc, char **argv)
{
	struct bu_conf bc;
	char err[512];
	int npos = 0, ret = 1;
	memset(&bc, 0, sizeof(bc));
	int rc = cfg_parse(opts, &bc, argc, argv, &npos, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc < 0 || !*bc.mount || !*bc.raw_dir) {
		fprintf(stderr, "chainfs bench usrbio: %s\n",
		        rc < 0 ? err : "--mount and --raw-dir are required");
		cfg_free(opts, &bc);
		return 2;
	}
	int mpid = bc.mount_pid ? (int)bc.mount_pid : find_mount_pid(bc.mount);
	if (!mpid)
		fprintf(stderr, "bench usrbio: mount process not found: no CPU figures\n");
	char dir[PATH_MAX], file[PATH_MAX + 64], fusedir[PATH_MAX + 32], rawdir[PATH_MAX + 32];
	snprintf(dir, sizeof(dir), "%s/" BU_SUBDIR, bc.mount);
	snprintf(file, sizeof(file), "%s/seq.dat", dir);
	snprintf(fusedir, sizeof(fusedir), "%s/fuse", dir);
	snprintf(rawdir, sizeof(rawdir), "%s/" BU_SUBDIR, bc.raw_dir);
	mkdir(dir, 0755);
	mkdir(fusedir, 0755);
	mkdir(rawdir, 0755);
	uint64_t size = (uint64_t)bc.size_mb * MiB;
	printf("chainfs bench usrbio: mount %s (pid %d), raw %s, %lld MiB, %llds random phases\n",
	       bc.mount, mpid, bc.raw_dir, (long long)bc.size_mb, (long long)bc.seconds);
	printf("%-28s %12s %12s %7s %12s %7s %10s %10s  %s\n", "workload", "ring", "raw fio",
	       "x raw", "FUSE fio", "x FUSE", "cpu ring", "cpu FUSE", "goal");
	/* The ring file must exist for the read phases even with --only. */
	int have_file = 0;
	struct stat st;
	if (stat(file, &st) == 0 && (uint64_t)st.st_size >= size)
		have_file = 1;
	for (size_t i = 0; i < sizeof(works) / sizeof(works[0]); i++) {
		const struct bu_work *w = &works[i];
		if (!want(&bc, w->key))
			continue;
		if (!w->write && !have_file) {
			const struct bu_work *mk = &works[0];
			double dummy;
			if (run_rings(&bc, mk, file, size, &dummy, mpid) < 0)
				goto out;
			have_file = 1;
		}
		double cpu_r = -1, cpu_f = -1;
		double ring = run_rings(&bc, w, file, size, &cpu_r, mpid);
		if (w->write)
			have_file = ring > 0;
		double raw = run_fio(&bc, w, rawdir, 0, NULL);
		double fuse = run_fio(&bc, w, fusedir, mpid, &cpu_f);
		const char *unit = w->random ? "IOPS" : "MiB/s";
		char goal[96] = "";
		double xr = raw > 0 ? ring / raw : 0, xf = fuse > 0 ? ring / fuse : 0;
		switch (w->goal) {
		case BG_SEQRD:
			snprintf(goal, sizeof(goal), ">= 0.90x raw: %s", xr >= 0.9 ? "met" : "missed");
			break;
		case BG_SEQWR:
			snprintf(goal, sizeof(goal), ">= 0.80x raw/%lld (%.2fx): %s",
			         (long long)bc.replicas, xr * (double)bc.replicas,
			         xr * (double)bc.replicas >= 0.8 ? "met" : "missed");
			break;
		case BG_RAND:
			snprintf(goal, sizeof(goal), ">= 0.70x raw, >= 2x FUSE: %s",
			         xr >= 0.7 && xf >= 2 ? "met" : "missed");
			break;
		default:
			break;
		}
		printf("%-28s %8.0f %-5s %8.0f %-3s %6.2fx %8.0f %-3s %6.2fx %7.2f s/G %7.2f s/G  %s\n",
		       w->what, ring, unit, raw, "", xr, fuse, "", xf, cpu_r, cpu_f, goal);
		fflush(stdout);
	}
	ret = 0;
out:
	unlink(file);
	snprintf(file, sizeof(file), "%s/fio.dat", fusedir);
	unlink(file);
	rmdir(fusedir);
	rmdir(dir);
	snprintf(file, sizeof(file), "%s/fio.dat", rawdir);
	unlink(file);
	rmdir(rawdir);
	cfg_free(opts, &bc);
	return ret;
}
