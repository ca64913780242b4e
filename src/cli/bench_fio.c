/* bench_fio.c - fio as the baseline of the disk-facing benches (bench_fio.h).
 *
 * fio prints JSON; we pick the "iops" of the read or write section with a
 * string search rather than a JSON parser, because fio's layout of those
 * two keys has been stable for years and the bench only needs one number.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/bench_fio.h"
#include "common/procstat.h"

char *bench_run_capture(char *const argv[])
{
	int pfd[2];
	if (pipe(pfd))
		return NULL;
	pid_t pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return NULL;
	}
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		close(pfd[1]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	size_t len = 0, cap = 65536;
	char *out = malloc(cap);
	ssize_t n;
	while (out && (n = read(pfd[0], out + len, cap - len - 1)) > 0) {
		len += (size_t)n;
		if (cap - len < 4096) {
			char *bigger = realloc(out, cap * 2);
			if (!bigger) {
				free(out);
				out = NULL;
				break;
			}
			out = bigger;
			cap *= 2;
		}
	}
	close(pfd[0]);
	int st;
	waitpid(pid, &st, 0);
	if (!out || !WIFEXITED(st) || WEXITSTATUS(st)) {
		free(out);
		return NULL;
	}
	out[len] = 0;
	return out;
}

/* IOPS of the "read" or "write" section of fio's JSON. */
static double fio_iops(const char *json, const char *section)
{
	char key[32];
	snprintf(key, sizeof(key), "\"%s\" : {", section);
	const char *p = strstr(json, key);
	if (!p || !(p = strstr(p, "\"iops\" : ")))
		return -1;
	return strtod(p + 9, NULL);
}

double bench_fio_iops(const char *who, const char *dir, unsigned size_mb, unsigned seconds,
		      const char *rw, const char *bs, unsigned qd, const char *extra)
{
	const char *more[] = { extra, NULL };
	return bench_fio_iops_argv(who, dir, size_mb, seconds, rw, bs, qd, more);
}

double bench_fio_iops_argv(const char *who, const char *dir, unsigned size_mb, unsigned seconds,
			   const char *rw, const char *bs, unsigned qd, const char *const *extra)
{
	char filename[4200], size[32], depth[16], runtime[32], rwarg[32], bsarg[32];
	snprintf(filename, sizeof(filename), "--filename=%s/fio.dat", dir);
	snprintf(size, sizeof(size), "--size=%um", size_mb);
	snprintf(depth, sizeof(depth), "--iodepth=%u", qd);
	snprintf(runtime, sizeof(runtime), "--runtime=%u", seconds);
	snprintf(rwarg, sizeof(rwarg), "--rw=%s", rw);
	snprintf(bsarg, sizeof(bsarg), "--bs=%s", bs);
	int timed = !strcmp(rw, "randread");
#define FIO_MAX_EXTRA 8
	char *argv[13 + FIO_MAX_EXTRA] = { "fio", "--name=cfsbench", filename, size, rwarg, bsarg,
					   depth, "--ioengine=io_uring", "--direct=1",
					   "--output-format=json",
					   timed ? "--time_based" : "--randrepeat=0",
					   timed ? runtime : "--randrepeat=0" };
	for (int i = 0; extra && extra[i] && i < FIO_MAX_EXTRA; i++)
		argv[12 + i] = (char *)extra[i];
	char *json = bench_run_capture(argv);
	if (!json) {
		fprintf(stderr, "%s: fio failed (is it installed?)\n", who);
		return -1;
	}
	double iops = fio_iops(json, strstr(rw, "write") ? "write" : "read");
	free(json);
	return iops;
}

double bench_proc_cpu(int pid)
{
	struct procstat ps;
	if (procstat_read(pid, &ps) < 0)
		return -1;
	return (double)(ps.utime + ps.stime) / (double)sysconf(_SC_CLK_TCK);
}

int bench_fio_opts_parse(int argc, char **argv, unsigned max_replicas, void (*usage)(FILE *),
			 struct bench_fio_opts *o)
{
	static const struct option lopts[] = {
		{ "dir", required_argument, NULL, 'd' },     { "size-mb", required_argument, NULL, 's' },
		{ "qd-seq", required_argument, NULL, 'q' },  { "qd-rand", required_argument, NULL, 'Q' },
		{ "seconds", required_argument, NULL, 't' }, { "rounds", required_argument, NULL, 'r' },
		{ "nosync", no_argument, NULL, 'n' },        { "help", no_argument, NULL, 'h' },
		{ "replicas", required_argument, NULL, 'R' }, { "page-cache", no_argument, NULL, 'P' },
		{ NULL, 0, NULL, 0 },
	};
	*o = (struct bench_fio_opts){ NULL, 1024, 8, 32, 10, 3, 1, 0, 0 };
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (ch) {
		case 'd': o->dir = optarg; break;
		case 's': o->size_mb = (unsigned)atoi(optarg); break;
		case 'q': o->qd_seq = (unsigned)atoi(optarg); break;
		case 'Q': o->qd_rand = (unsigned)atoi(optarg); break;
		case 't': o->seconds = (unsigned)atoi(optarg); break;
		case 'r': o->rounds = (unsigned)atoi(optarg); break;
		case 'n': o->sync = 0; break;
		case 'P': o->page_cache = 1; break;
		case 'R':
			if (!max_replicas)
				goto bad;
			o->replicas = (unsigned)atoi(optarg);
			break;
		case 'h': usage(stdout); return 0;
		default: goto bad;
		}
	}
	if (o->dir && o->size_mb && o->qd_seq && o->qd_seq <= BENCH_FIO_MAX_QD && o->qd_rand &&
	    o->qd_rand <= BENCH_FIO_MAX_QD && o->seconds && o->rounds &&
	    o->rounds <= BENCH_FIO_MAX_ROUNDS && o->replicas <= max_replicas)
		return -1;
bad:
	usage(stderr);
	return 2;
}
