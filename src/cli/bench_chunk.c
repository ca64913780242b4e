/* bench_chunk.c - chainfs bench chunk: the chunk engine against fio on the
 * same directory.
 *
 * Three workloads, each run through the engine (1 MiB chunks of one inode,
 * aligned buffers, a fixed number of operations in flight kept full from
 * the completion callbacks) and through fio (ioengine=io_uring, direct=1,
 * same block size and queue depth, one file of the same total size):
 *   seq write  1 MiB writes, new chunks / sequential file
 *   seq read   1 MiB reads of everything written
 *   rand read  4 KiB reads at random pages for a fixed time
 * Rounds alternate engine and fio phase by phase so that both see the same
 * background load (the machine is shared); every round is printed, then the
 * median ratio engine/fio per workload. The engine acknowledges a write
 * only when it is durable (RWF_DSYNC data, synced metadata commit) unless
 * --nosync; plain fio syncs nothing, so in sync mode the write phase is
 * also compared with fio --fdatasync=QD, the durable equivalent. The
 * engine reads O_DIRECT like fio (cached_read_max 0) unless --page-cache:
 * its default sends reads of at most 64 KiB through the page cache, which
 * holds a 1 GiB data set here after a round, while fio reads the disk.
 */
#include <errno.h>
#include <pthread.h>
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
#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "storage/chunk_engine.h"

#define MAX_ROUNDS BENCH_FIO_MAX_ROUNDS
#define MAX_QD BENCH_FIO_MAX_QD


/* ---- engine driver ------------------------------------------------------ */

enum phase { PH_WRITE, PH_READ, PH_RAND };

struct driver {
	struct chunk_engine *e;
	enum phase ph;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t next;           /* next chunk index to issue (seq phases) */
	uint64_t total;          /* chunks in the data set */
	uint64_t done;           /* completed operations */
	uint64_t deadline_ns;    /* rand phase end */
	int inflight;
	int errors;
	uint32_t rng;
	uint8_t *wbuf;           /* shared 1 MiB write payload */
	struct slot {
		struct driver *d;
		struct chunk_op op;
		struct chunk_read_range rr;
		uint8_t *buf;
	} slots[MAX_QD];
};

/* Fills S with the next operation; 0 when the phase has nothing left. */
static int next_op(struct driver *d, struct slot *s)
{
	if (d->ph == PH_RAND) {
		if (clock_mono_ns() >= d->deadline_ns)
			return 0;
		d->rng = d->rng * 1103515245u + 12345u;
		uint32_t r1 = d->rng;
		d->rng = d->rng * 1103515245u + 12345u;
		s->rr = (struct chunk_read_range){ .id = { 1, (uint32_t)((r1 >> 4) % d->total) },
						   .off = ((d->rng >> 4) % 256) * 4096u, .len = 4096,
						   .dst = s->buf };
		s->op = (struct chunk_op){ .type = CHUNK_OP_READ, .ranges = &s->rr, .nranges = 1 };
		return 1;
	}
	if (d->next >= d->total)
		return 0;
	uint32_t idx = (uint32_t)d->next++;
	if (d->ph == PH_WRITE) {
		s->op = (struct chunk_op){ .type = CHUNK_OP_WRITE, .id = { 1, idx }, .off = 0,
					   .len = 1u << 20, .data = d->wbuf, .chain_ver = 1 };
	} else {
		s->rr = (struct chunk_read_range){ .id = { 1, idx }, .off = 0, .len = 1u << 20,
						   .dst = s->buf };
		s->op = (struct chunk_op){ .type = CHUNK_OP_READ, .ranges = &s->rr, .nranges = 1 };
	}
	return 1;
}

static void op_done(struct chunk_op *op)
{
	struct slot *s = op->arg;
	struct driver *d = s->d;
	int failed = op->result < 0 || (op->type == CHUNK_OP_READ && s->rr.result != (int)s->rr.len);
	pthread_mutex_lock(&d->mu);
	d->done++;
	d->errors += failed;
	int more = !failed && next_op(d, s);
	if (!more && --d->inflight == 0)
		pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
	if (more) {
		s->op.done = op_done;
		s->op.arg = s;
		chunk_engine_submit(d->e, &s->op);
	}
}

/* Runs one phase at depth QD; returns operations per second, or -1. */
static double run_engine_phase(struct driver *d, enum phase ph, unsigned qd, unsigned seconds)
{
	d->ph = ph;
	d->next = 0;
	d->done = 0;
	d->errors = 0;
	uint64_t t0 = clock_mono_ns();
	d->deadline_ns = t0 + (uint64_t)seconds * 1000000000ull;
	pthread_mutex_lock(&d->mu);
	unsigned started = 0;
	for (unsigned i = 0; i < qd; i++) {
		if (!next_op(d, &d->slots[i]))
			break;
		d->inflight++;
		started++;
	}
	pthread_mutex_unlock(&d->mu);
	for (unsigned i = 0; i < started; i++) {
		d->slots[i].op.done = op_done;
		d->slots[i].op.arg = &d->slots[i];
		chunk_engine_submit(d->e, &d->slots[i].op);
	}
	pthread_mutex_lock(&d->mu);
	while (d->inflight)
		pthread_cond_wait(&d->cv, &d->mu);
	pthread_mutex_unlock(&d->mu);
	double secs = (double)(clock_mono_ns() - t0) / 1e9;
	if (d->errors) {
		fprintf(stderr, "bench chunk: %d operations failed\n", d->errors);
		return -1;
	}
	return (double)d->done / secs;
}

/* ---- fio ---------------------------------------------------------------- */

/* EXTRA: one more fio argument or NULL. */
static double run_fio(const struct bench_fio_opts *o, const char *rw, const char *bs, unsigned qd,
		      const char *extra)
{
	return bench_fio_iops("bench chunk", o->dir, o->size_mb, o->seconds, rw, bs, qd, extra);
}

/* ---- main --------------------------------------------------------------- */

static int rm_rf(const char *path)
{
	char *argv[] = { "rm", "-rf", (char *)path, NULL };
	char *out = bench_run_capture(argv);
	free(out);
	return out ? 0 : -1;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: chainfs bench chunk --dir DIR [--size-mb N] [--qd-seq N] [--qd-rand N]\n"
		   "                          [--seconds N] [--rounds N] [--nosync] [--page-cache]\n"
		   "  Chunk engine vs fio on DIR (both use DIR/...; removed afterwards).\n"
		   "  Both read O_DIRECT; --page-cache: the engine's small reads may use the\n"
		   "  page cache (its default).\n"
		   "  defaults: --size-mb 1024 --qd-seq 8 --qd-rand 32 --seconds 10 --rounds 3\n");
}

int cli_bench_chunk(int argc, char **argv)
{
	struct bench_fio_opts o;
	int parsed = bench_fio_opts_parse(argc, argv, 0, usage, &o);
	if (parsed >= 0)
		return parsed;
	char target[4200], fiofile[4200];
	snprintf(target, sizeof(target), "%s/cfsbench-target", o.dir);
	snprintf(fiofile, sizeof(fiofile), "%s/fio.dat", o.dir);
	struct driver *d = calloc(1, sizeof(*d));
	if (!d)
		return 1;
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	d->total = o.size_mb;
	d->rng = (uint32_t)clock_mono_ns() | 1;
	int rc = 1;
	if (posix_memalign((void **)&d->wbuf, 4096, 1u << 20))
		goto out;
	for (size_t i = 0; i < (1u << 20); i++)
		d->wbuf[i] = (uint8_t)(i * 131 + 7);
	for (unsigned i = 0; i < MAX_QD; i++) {
		d->slots[i].d = d;
		if (posix_memalign((void **)&d->slots[i].buf, 4096, 1u << 20))
			goto out;
	}
	double r[4][MAX_ROUNDS];
	printf("chunk engine vs fio: dir=%s size=%u MiB qd-seq=%u qd-rand=%u rand-seconds=%u sync=%d\n",
	       o.dir, o.size_mb, o.qd_seq, o.qd_rand, o.seconds, o.sync);
	printf("round  workload               engine         fio            ratio\n");
	for (unsigned round = 0; round < o.rounds; round++) {
		rm_rf(target);
		unlink(fiofile);
		struct chunk_engine_cfg cfg;
		chunk_engine_cfg_default(&cfg);
		cfg.dir = target;
		cfg.sync = o.sync;
		cfg.compact_interval_ms = 0;
		if (!o.page_cache)
			cfg.cached_read_max = 0; /* O_DIRECT, as fio's reads */
		int err = chunk_engine_open(&cfg, &d->e);
		if (err) {
			fprintf(stderr, "bench chunk: open %s: %s\n", target, cfs_strerror(err));
			goto out;
		}
		static const char *names[3] = { "seq write 1M", "seq read 1M", "rand read 4K" };
		for (int w = 0; w < 3; w++) {
			unsigned qd = w == 2 ? o.qd_rand : o.qd_seq;
			const char *rw = w == 0 ? "write" : w == 1 ? "read" : "randread";
			const char *bs = w == 2 ? "4k" : "1m";
			double eng, fio;
			/* Alternate who goes first: the disk's cache favours the
			 * data written last. */
			if (round % 2) {
				fio = run_fio(&o, rw, bs, qd, NULL);
				eng = run_engine_phase(d, (enum phase)w, qd, o.seconds);
			} else {
				eng = run_engine_phase(d, (enum phase)w, qd, o.seconds);
				fio = run_fio(&o, rw, bs, qd, NULL);
			}
			if (eng < 0 || fio <= 0) {
				chunk_engine_close(d->e);
				goto out;
			}
			r[w][round] = eng / fio;
			const char *unit = w < 2 ? "MiB/s" : "IOPS ";
			printf("%-6u %-22s %8.0f %s %8.0f %s %6.1f%%\n", round + 1, names[w], eng, unit, fio,
			       unit, 100 * eng / fio);
			if (w == 0 && o.sync) {
				/* The durable baseline: fio syncing as often as the
				 * engine's group commit can at this depth. */
				char fsync_arg[32];
				snprintf(fsync_arg, sizeof(fsync_arg), "--fdatasync=%u", qd);
				unlink(fiofile);
				double fio_sync = run_fio(&o, rw, bs, qd, fsync_arg);
				if (fio_sync <= 0) {
					chunk_engine_close(d->e);
					goto out;
				}
				r[3][round] = eng / fio_sync;
				printf("%-6u %-22s %8.0f %s %8.0f %s %6.1f%%\n", round + 1, "seq write 1M (fio sync)",
				       eng, unit, fio_sync, unit, 100 * eng / fio_sync);
			}
			fflush(stdout);
		}
		chunk_engine_close(d->e);
		d->e = NULL;
	}
	printf("median ratio engine/fio over %u rounds: seq write %.1f%%  seq read %.1f%%  rand read %.1f%%\n",
	       o.rounds, 100 * bench_median(r[0], o.rounds), 100 * bench_median(r[1], o.rounds),
	       100 * bench_median(r[2], o.rounds));
	if (o.sync)
		printf("median ratio engine/fio --fdatasync=%u (durable baseline): seq write %.1f%%\n", o.qd_seq,
		       100 * bench_median(r[3], o.rounds));
	rc = 0;
out:
	rm_rf(target);
	unlink(fiofile);
	for (unsigned i = 0; i < MAX_QD; i++)
		free(d->slots[i].buf);
	free(d->wbuf);
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	free(d);
	return rc;
}
