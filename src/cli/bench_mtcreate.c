/* bench_mtcreate.c - metadata phases from several threads in several
 * directories (bench_mtcreate.h). The same access pattern as
 * ../shared/peers/meta-bench.c `meta DIR N NDIRS THREADS`, so figures from
 * the two compare. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/bench_mtcreate.h"
#include "common/clock.h"

#define MT_MAX_THREADS 256
#define MT_MAX_DIRS 10000

struct mt_run {
	const char *dir;
	long long files;
	int threads, dirs;
	enum bench_mt_phase phase;
	pthread_mutex_t mu;
	pthread_cond_t go_cv; /* all threads start a phase together */
	int go;               /* under mu */
	int err;              /* first -errno of any thread; under mu */
};

struct mt_worker {
	struct mt_run *run;
	int k; /* files k, k + threads, ... */
};

static const char *const phase_names[BENCH_MT_NPHASES] = {"create", "stat", "unlink"};

const char *bench_mtcreate_phase_name(enum bench_mt_phase ph)
{
	return ph < BENCH_MT_NPHASES ? phase_names[ph] : "?";
}

static void mt_path(const struct mt_run *r, long long i, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/mt.d%04lld/f%08lld", r->dir, i % r->dirs, i);
}

static void *mt_worker_main(void *arg)
{
	struct mt_worker *w = arg;
	struct mt_run *r = w->run;
	char path[4300];
	pthread_mutex_lock(&r->mu);
	while (!r->go)
		pthread_cond_wait(&r->go_cv, &r->mu);
	pthread_mutex_unlock(&r->mu);
	for (long long i = w->k; i < r->files; i += r->threads) {
		mt_path(r, i, path, sizeof(path));
		int rc;
		struct stat st;
		if (r->phase == BENCH_MT_CREATE) {
			rc = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
			if (rc >= 0)
				rc = close(rc);
		} else if (r->phase == BENCH_MT_STAT) {
			rc = stat(path, &st);
		} else {
			rc = unlink(path);
		}
		if (rc < 0) {
			int e = errno;
			pthread_mutex_lock(&r->mu);
			if (!r->err) {
				__atomic_store_n(&r->err, -e, __ATOMIC_RELAXED);
				fprintf(stderr, "chainfs bench fuse: mtcreate %s %s: %s\n",
				        phase_names[r->phase], path, strerror(e));
			}
			pthread_mutex_unlock(&r->mu);
			break;
		}
		/* Another thread failed: stop early, the phase is lost anyway. */
		if (__atomic_load_n(&r->err, __ATOMIC_RELAXED))
			break;
	}
	return NULL;
}

/* Runs one phase on R->threads threads; seconds taken, or -1 when a thread
 * could not start (R->err set; the started ones run and are joined). */
static double mt_phase(struct mt_run *r, enum bench_mt_phase ph)
{
	pthread_t tids[MT_MAX_THREADS];
	struct mt_worker ws[MT_MAX_THREADS];
	int started = 0;
	r->phase = ph;
	r->go = 0;
	for (; started < r->threads; started++) {
		ws[started] = (struct mt_worker){r, started};
		if (pthread_create(&tids[started], NULL, mt_worker_main, &ws[started]))
			break;
	}
	if (started < r->threads) {
		fprintf(stderr, "chainfs bench fuse: mtcreate: cannot start thread %d\n", started);
		r->err = -EAGAIN;
	}
	uint64_t t0 = clock_mono_ns();
	pthread_mutex_lock(&r->mu);
	r->go = 1;
	pthread_cond_broadcast(&r->go_cv);
	pthread_mutex_unlock(&r->mu);
	for (int k = 0; k < started; k++)
		pthread_join(tids[k], NULL);
	double s = (double)(clock_mono_ns() - t0) / 1e9;
	return started < r->threads ? -1 : s;
}

static void mt_dir(const struct mt_run *r, int d, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/mt.d%04d", r->dir, d);
}

int bench_mtcreate_run(const char *dir, long long files, int threads, int dirs,
                       struct bench_mt_rates *out)
{
	struct mt_run r = {.dir = dir, .files = files, .threads = threads, .dirs = dirs};
	char path[4300];
	int made = 0;
	for (int ph = 0; ph < BENCH_MT_NPHASES; ph++)
		out->ops[ph] = -1;
	if (files < 1 || threads < 1 || threads > MT_MAX_THREADS || dirs < 1 || dirs > MT_MAX_DIRS)
		return -EINVAL;
	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.go_cv, NULL);
	for (; made < dirs; made++) {
		mt_dir(&r, made, path, sizeof(path));
		if (mkdir(path, 0755) < 0) {
			r.err = -errno;
			fprintf(stderr, "chainfs bench fuse: mkdir %s: %s\n", path, strerror(errno));
			break;
		}
	}
	for (int ph = 0; ph < BENCH_MT_NPHASES && !r.err; ph++) {
		double s = mt_phase(&r, (enum bench_mt_phase)ph);
		if (s > 0 && !r.err)
			out->ops[ph] = (double)files / s;
	}
	/* After a failure part of the files are left: remove what is there. */
	for (long long i = 0; r.err && made == dirs && i < files; i++) {
		mt_path(&r, i, path, sizeof(path));
		unlink(path);
	}
	while (made > 0) {
		mt_dir(&r, --made, path, sizeof(path));
		rmdir(path);
	}
	pthread_cond_destroy(&r.go_cv);
	pthread_mutex_destroy(&r.mu);
	return r.err;
}
