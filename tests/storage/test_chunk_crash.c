/* test_chunk_crash.c - crash consistency of the chunk engine.
 *
 * Each round forks a child that opens the target and keeps up to 8 writes
 * in flight on distinct chunks (full and partial overwrites, appends in
 * place, growth into larger classes). Before submitting it appends an
 * INTENT record to a journal file; its completion callback appends an ACK.
 * The parent kills the child with SIGKILL after a random delay, reopens the
 * target and checks every chunk: it must read back, with valid checksums,
 * as its last acknowledged contents, or - only for a chunk whose last write
 * was not acknowledged - as those contents with that write applied. Then
 * the allocator must agree with the metadata: no leaked block, no block
 * claimed twice. Bounded by round count and wall time.
 *
 * test_kill9_small does the same with a stream of small overwrites (1 byte
 * to 8 KiB inside the chunk) and small appends (up to 12 KiB, at or a
 * little before the end), with an occasional full rewrite: the writes
 * the engine journals in the metadata and applies in place afterwards.
 * Besides the data, the whole-chunk CRC must match it.
 *
 * test_kill9_wal and test_kill9_wal_small repeat both with sync on, where
 * batches commit through the metadata write-ahead log (chunk_store.c) and
 * the reopen replays it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/crc32c.h"
#include "common/log.h"
#include "common/status.h"
#include "storage/chunk_engine.h"
#include "../lib/case_workers.h"
#include "../lib/testenv.h"

#define NCHUNK 24
#define MAXLEN (3u << 20)
#define INFLIGHT 8
#define ROUNDS 30
#define TIME_BUDGET_MS 45000

enum { REC_INTENT = 1, REC_ACK = 2 };

struct rec {
	uint32_t type, k, off, len, seed, result;
};

struct model {
	int exists;
	uint32_t len;
	uint8_t *data; /* MAXLEN bytes */
};

static struct model models[NCHUNK];
static int small_mode; /* test_kill9_small: mostly small overwrites */
static int sync_mode;  /* the _wal variants: synced, batches through the metadata log */

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 7;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)(x >> 3);
	}
}

static void apply(struct model *m, uint32_t off, uint32_t len, uint32_t seed)
{
	if (off > m->len)
		memset(m->data + m->len, 0, off - m->len);
	fill(m->data + off, len, seed);
	if (off + len > m->len)
		m->len = off + len;
	m->exists = 1;
}

static struct chunk_engine *open_target(const char *dir)
{
	struct chunk_engine_cfg cfg;
	chunk_engine_cfg_default(&cfg);
	cfg.dir = dir;
	/* A process crash loses nothing either way; sync off keeps rounds
	 * short. Synced, metadata goes through the write-ahead log
	 * (chunk_store.c) and open replays it: the _wal variants. */
	cfg.sync = sync_mode;
	cfg.compact_interval_ms = 0;
	cfg.meta_map_bytes = 256u << 20;
	cfg.buf_cache_bytes = 16u << 20;
	struct chunk_engine *e = NULL;
	int rc = chunk_engine_open(&cfg, &e);
	if (rc)
		fprintf(stderr, "chunk_engine_open %s: %s\n", dir, cfs_strerror(rc));
	return rc ? NULL : e;
}

/* ---- child ------------------------------------------------------------- */

struct slot {
	struct chunk_op op;
	uint8_t *data;
	int busy;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int jfd;
	int inflight;
	struct slot slots[NCHUNK];
	uint32_t len[NCHUNK]; /* length if every submitted write lands */
} child;

static void jwrite(const struct rec *r)
{
	if (write(child.jfd, r, sizeof(*r)) != (ssize_t)sizeof(*r)) {
		fprintf(stderr, "child: journal write: %s\n", strerror(errno));
		_exit(3);
	}
}

static void child_done(struct chunk_op *op)
{
	struct slot *s = op->arg;
	struct rec r = { REC_ACK, (uint32_t)(s - child.slots), op->off, op->len, 0,
			 (uint32_t)op->result };
	if (op->result == 0)
		jwrite(&r);
	pthread_mutex_lock(&child.mu);
	s->busy = 0;
	child.inflight--;
	pthread_cond_signal(&child.cv);
	pthread_mutex_unlock(&child.mu);
}

static void child_main(const char *dir, const char *journal, uint32_t seed_base)
{
	log_set_level(LOG_LVL_WARN);
	/* The parent made the journal empty before the fork. */
	child.jfd = open(journal, O_WRONLY | O_APPEND);
	if (child.jfd < 0) {
		fprintf(stderr, "child: open %s: %s\n", journal, strerror(errno));
		_exit(2);
	}
	struct chunk_engine *e = open_target(dir);
	if (!e)
		_exit(2); /* open_target said why */
	pthread_mutex_init(&child.mu, NULL);
	pthread_cond_init(&child.cv, NULL);
	for (int k = 0; k < NCHUNK; k++) {
		child.len[k] = models[k].exists ? models[k].len : 0;
		child.slots[k].data = malloc(MAXLEN);
	}
	uint32_t rng = seed_base | 1;
	for (uint32_t n = 0; n < 100000; n++) {
		pthread_mutex_lock(&child.mu);
		while (child.inflight >= INFLIGHT)
			pthread_cond_wait(&child.cv, &child.mu);
		int k;
		do {
			rng = rng * 1103515245u + 12345u;
			k = (int)((rng >> 8) % NCHUNK);
		} while (child.slots[k].busy);
		child.slots[k].busy = 1;
		child.inflight++;
		pthread_mutex_unlock(&child.mu);
		rng = rng * 1103515245u + 12345u;
		uint32_t cur = child.len[k], kind = (rng >> 8) % 4, off, len;
		uint32_t r2 = rng * 2654435761u;
		if (small_mode)
			kind = cur < 4096 || (rng >> 12) % 32 == 0 ? 4 : (rng >> 17) % 3 == 0 ? 6 : 5;
		switch (kind) {
		case 4: /* (small mode) full rewrite, 64 KiB - 1 MiB */
			off = 0;
			len = (64u << 10) + r2 % (960u << 10);
			break;
		case 5: /* (small mode) small overwrite inside the chunk */
			off = r2 % cur;
			len = 1 + (r2 >> 9) % 8192;
			if ((r2 >> 5) % 2)
				off &= ~4095u, len = 4096;
			if (off + len > cur)
				len = cur - off;
			break;
		case 6: /* (small mode) small append, at or a little before the end:
			 * journaled, consecutive ones in one journal */
			off = cur - r2 % (cur < 100 ? cur : 100);
			len = 1 + (r2 >> 9) % 12000;
			break;
		case 0: /* full overwrite, new size */
			off = 0;
			len = 1 + r2 % (300u << 10);
			break;
		case 1: /* partial overwrite */
			off = cur ? r2 % cur : 0;
			len = 1 + (r2 >> 7) % 20000;
			break;
		case 2: /* append, often in place */
			off = cur;
			len = 1 + r2 % 9000;
			break;
		default: /* grow into a larger class */
			off = cur;
			len = 1 + r2 % (1u << 20);
			break;
		}
		if (off + len > MAXLEN) {
			off = 0;
			len = 1 + r2 % 65536;
		}
		uint32_t seed = seed_base + n;
		struct slot *s = &child.slots[k];
		fill(s->data, len, seed);
		struct rec r = { REC_INTENT, (uint32_t)k, off, len, seed, 0 };
		jwrite(&r);
		if (off + len > child.len[k])
			child.len[k] = off + len;
		s->op = (struct chunk_op){ .type = CHUNK_OP_WRITE, .done = child_done, .arg = s,
					   .id = { 77, (uint32_t)k }, .off = off, .len = len,
					   .data = s->data, .chain_ver = 1 };
		chunk_engine_submit(e, &s->op);
	}
	chunk_engine_close(e);
	_exit(0);
}

/* ---- parent ------------------------------------------------------------ */

static void check_round(const char *dir, const char *journal, int *pending_new, int *pending_old)
{
	struct rec pend[NCHUNK];
	int has_pend[NCHUNK] = { 0 };
	FILE *f = fopen(journal, "rb");
	assert_non_null(f);
	struct rec r;
	while (fread(&r, sizeof(r), 1, f) == 1) {
		assert_true(r.k < NCHUNK);
		if (r.type == REC_INTENT) {
			assert_false(has_pend[r.k]); /* one write per chunk at a time */
			pend[r.k] = r;
			has_pend[r.k] = 1;
		} else {
			assert_true(has_pend[r.k]);
			apply(&models[r.k], pend[r.k].off, pend[r.k].len, pend[r.k].seed);
			has_pend[r.k] = 0;
		}
	}
	fclose(f);
	struct chunk_engine *e = open_target(dir);
	assert_non_null(e);
	uint8_t *buf = malloc(MAXLEN);
	static struct model alt;
	if (!alt.data)
		alt.data = malloc(MAXLEN);
	uint64_t existing = 0;
	for (int k = 0; k < NCHUNK; k++) {
		struct model *m = &models[k];
		struct chunk_read_range rr = { .id = { 77, (uint32_t)k }, .off = 0, .len = MAXLEN, .dst = buf };
		assert_int_equal(chunk_engine_read(e, &rr, 1), 0);
		int old_ok = m->exists ? rr.result == (int)m->len && !memcmp(buf, m->data, m->len)
				       : rr.result == -ENOENT;
		int new_ok = 0;
		if (has_pend[k]) {
			alt.exists = m->exists;
			alt.len = m->exists ? m->len : 0;
			memcpy(alt.data, m->data, alt.len);
			apply(&alt, pend[k].off, pend[k].len, pend[k].seed);
			new_ok = rr.result == (int)alt.len && !memcmp(buf, alt.data, alt.len);
		}
		if ((old_ok || new_ok) && rr.result > 0)
			assert_int_equal(rr.info.crc, crc32c(0, buf, (size_t)rr.result));
		if (!old_ok && !new_ok)
			fail_msg("chunk %d: result %d matches neither old (len %u exists %d) nor new%s", k,
				 rr.result, m->len, m->exists, has_pend[k] ? "" : " (none pending)");
		if (new_ok && !old_ok) {
			m->exists = 1;
			m->len = alt.len;
			memcpy(m->data, alt.data, alt.len);
			(*pending_new)++;
		} else if (has_pend[k]) {
			(*pending_old)++;
		}
		existing += m->exists;
	}
	uint64_t chunks, leaked, doubled;
	assert_int_equal(chunk_engine_check(e, &chunks, &leaked, &doubled), 0);
	assert_int_equal(chunks, existing);
	assert_int_equal(leaked, 0);
	assert_int_equal(doubled, 0);
	chunk_engine_close(e);
	free(buf);
}

static void run_kill9(int small, int max_rounds, int min_rounds)
{
	small_mode = small;
	print_message("mode: small=%d sync=%d\n", small, sync_mode);
	for (int k = 0; k < NCHUNK; k++)
		models[k].exists = models[k].len = 0;
	char *dir = testenv_tmpdir("chunk_crash");
	char target[512], journal[512];
	snprintf(target, sizeof(target), "%s/target", dir);
	snprintf(journal, sizeof(journal), "%s/journal", dir);
	for (int k = 0; k < NCHUNK; k++)
		models[k].data = malloc(MAXLEN);
	uint64_t t0 = clock_mono_ms();
	uint32_t rng = (uint32_t)getpid();
	int rounds = 0, pending_new = 0, pending_old = 0;
	while (rounds < max_rounds && clock_mono_ms() - t0 < TIME_BUDGET_MS) {
		/* An empty journal, made here and not by the child: on a loaded
		 * machine our kill can come before the child ran at all (the
		 * parent then found no journal, or read the last round's
		 * again). */
		int jfd = open(journal, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		assert_true(jfd >= 0);
		assert_int_equal(close(jfd), 0);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			child_main(target, journal, (uint32_t)(rounds + 1) * 1000003u);
		rng = rng * 1103515245u + 12345u;
		clock_sleep_ms(40 + (rng >> 8) % 200);
		kill(pid, SIGKILL);
		int st;
		assert_int_equal(waitpid(pid, &st, 0), pid);
		/* Died by our signal, not by its own failure. */
		if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
			fail_msg("round %d: the child %s %d, not by our SIGKILL (exit 2: no "
				 "target, 3: journal write)",
				 rounds, WIFSIGNALED(st) ? "died by signal" : "exited with",
				 WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
		check_round(target, journal, &pending_new, &pending_old);
		rounds++;
	}
	print_message("crash rounds=%d unacked-landed=%d unacked-lost=%d\n", rounds, pending_new,
		      pending_old);
	assert_true(rounds >= min_rounds);
	for (int k = 0; k < NCHUNK; k++)
		free(models[k].data);
	free(dir);
}

static void test_kill9(void **state)
{
	(void)state;
	run_kill9(0, ROUNDS, 10);
}

static void test_kill9_small(void **state)
{
	(void)state;
	run_kill9(1, 20, 10);
}

/* The same with sync on: every acknowledged write must come back after
 * kill -9 from the metadata log's replay (records not yet checkpointed into
 * LMDB), journaled small writes included. */
static void test_kill9_wal(void **state)
{
	(void)state;
	sync_mode = 1;
	/* Synced rounds pay real flushes: on a loaded disk fewer fit the
	 * time budget. */
	run_kill9(0, 10, 4);
	sync_mode = 0;
}

static void test_kill9_wal_small(void **state)
{
	(void)state;
	sync_mode = 1;
	run_kill9(1, 10, 4);
	sync_mode = 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kill9),
		cmocka_unit_test(test_kill9_small),
		cmocka_unit_test(test_kill9_wal),
		cmocka_unit_test(test_kill9_wal_small),
	};
	/* Each case has its own target and model; a round mostly waits on
	 * its child (a random delay before the kill, the child's start):
	 * two cases at a time. The time budget (45 s) is far above a
	 * case's 13 s, so as many rounds run. */
	int rc =
	    case_workers_run("test_chunk_crash", tests, sizeof(tests) / sizeof(tests[0]), 2, 0);
	testenv_cleanup();
	return rc;
}
