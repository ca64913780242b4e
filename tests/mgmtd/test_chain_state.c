/* test_chain_state.c - the chain state machine: one case per row of the
 * transition table in chain_state.h, bad input, and two property tests over
 * random event sequences: one with arbitrary (adversarial) local reports
 * checking the structural invariants, one with a model of the storage
 * service and of acknowledged writes checking that a SERVING (or, with none,
 * LASTSRV) target always holds every acknowledged write and that a healed
 * chain always comes back to all-SERVING. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "mgmtd/chain_state.h"

/* Chain spec: members "<id><pub>:<local>" separated by spaces, pub one of
 * S L Y W O (serving lastsrv sYncing waiting offline), local one of
 * U N F (uptodate oNline oFfline) or D (reports uptodate, node dead). */
static size_t parse_in(const char *spec, struct chain_member *m)
{
	size_t n = 0;
	const char *p = spec;
	while (*p) {
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		char *end;
		m[n].target_id = (uint32_t)strtoul(p, &end, 10);
		p = end;
		switch (*p++) {
		case 'S':
			m[n].ps = CHAIN_PS_SERVING;
			break;
		case 'L':
			m[n].ps = CHAIN_PS_LASTSRV;
			break;
		case 'Y':
			m[n].ps = CHAIN_PS_SYNCING;
			break;
		case 'W':
			m[n].ps = CHAIN_PS_WAITING;
			break;
		case 'O':
			m[n].ps = CHAIN_PS_OFFLINE;
			break;
		default:
			fail_msg("bad spec %s", spec);
		}
		assert_int_equal(*p++, ':');
		m[n].node_alive = true;
		switch (*p++) {
		case 'U':
			m[n].ls = CHAIN_LS_UPTODATE;
			break;
		case 'N':
			m[n].ls = CHAIN_LS_ONLINE;
			break;
		case 'F':
			m[n].ls = CHAIN_LS_OFFLINE;
			break;
		case 'D':
			m[n].ls = CHAIN_LS_UPTODATE;
			m[n].node_alive = false;
			break;
		default:
			fail_msg("bad spec %s", spec);
		}
		n++;
	}
	return n;
}

static void format_out(const struct chain_member *m, size_t n, char *s, size_t cap)
{
	size_t len = 0;
	s[0] = 0;
	for (size_t i = 0; i < n; i++) {
		char c = "SLYWO"[__builtin_ctz(m[i].ps)];
		len +=
		    (size_t)snprintf(s + len, cap - len, "%s%u%c", i ? " " : "", m[i].target_id, c);
	}
}

struct row_case {
	int row;          /* row of the table in chain_state.h */
	const char *in;   /* old chain + reports */
	const char *want; /* new chain, "<id><pub>" */
};

/* One case per line reads as the table. */
/* clang-format off */
static const struct row_case cases[] = {
	{ 1, "1S:U 2S:N 3S:U", "1S 2S 3S" },
	{ 2, "1S:U 2S:F 3S:U", "1S 3S 2O" },
	{ 2, "1S:F 2S:U", "2S 1O" },
	{ 2, "1S:U 2S:D", "1S 2O" },
	{ 3, "1S:F 2S:F 3O:F", "1L 2L 3O" },
	{ 3, "1S:D 2O:N", "1L 2W" },
	{ 3, "1S:F 2S:D 3W:N", "1L 2L 3W" },
	{ 4, "1L:N 2O:N 3O:F", "1S 2Y 3O" },
	{ 4, "1L:F 2L:N 3L:U", "2S 3W 1O" },
	{ 4, "1L:D 2L:U", "2S 1O" },
	{ 5, "1L:F 2W:N", "1L 2W" },
	{ 5, "1L:D 2L:F 3O:U", "1L 2L 3W" },
	{ 6, "1S:U 2L:F", "1S 2O" },
	{ 6, "1S:U 2L:N", "1S 2Y" },
	{ 6, "1S:U 2L:U", "1S 2W" },
	{ 6, "1L:U 2L:N", "1S 2Y" },
	{ 7, "1S:U 2Y:U", "1S 2S" },
	{ 7, "1S:F 2Y:U", "2S 1O" },
	{ 7, "1S:U 2W:N 3Y:U", "1S 3S 2Y" },
	{ 8, "1S:U 2Y:N 3W:N", "1S 2Y 3W" },
	{ 8, "1S:U 2W:N 3Y:N", "1S 3Y 2W" },
	{ 9, "1S:U 2Y:N 3Y:N", "1S 2Y 3W" },
	{ 9, "1S:F 2Y:N", "1L 2W" },
	{ 10, "1S:U 2Y:F", "1S 2O" },
	{ 10, "1S:U 2Y:D 3W:N", "1S 3Y 2O" },
	{ 11, "1S:U 2W:N", "1S 2Y" },
	{ 11, "1S:U 2O:N 3W:N", "1S 2Y 3W" },
	{ 11, "1S:U 2W:F 3O:N", "1S 3Y 2O" },
	{ 12, "1L:F 2W:N", "1L 2W" },
	{ 12, "1S:U 2Y:N 3O:N", "1S 2Y 3W" },
	{ 13, "1S:U 2W:U", "1S 2W" },
	{ 13, "1S:U 2O:U", "1S 2W" },
	{ 13, "1S:U 2O:D", "1S 2O" },
	{ 14, "1S:U 2W:F", "1S 2O" },
	{ 14, "1S:U 2O:F 3W:D", "1S 3O 2O" },
};
/* clang-format on */

static void test_every_row(void **state)
{
	(void)state;
	bool seen[15] = {false};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct chain_member in[CHAIN_MAX_TARGETS], out[CHAIN_MAX_TARGETS];
		size_t n = parse_in(cases[c].in, in);
		uint32_t ver = 0;
		int rc = chain_transition(in, n, 7, out, &ver);
		char got[256], old[256];
		format_out(out, n, got, sizeof(got));
		format_out(in, n, old, sizeof(old));
		if (strcmp(got, cases[c].want))
			fail_msg("row %d: %s -> %s, want %s", cases[c].row, cases[c].in, got,
			         cases[c].want);
		bool changed = strcmp(old, got) != 0;
		assert_int_equal(rc, changed ? 1 : 0);
		assert_int_equal(ver, changed ? 8 : 7);
		for (size_t i = 0; i < n; i++) /* local reports are copied through */
			for (size_t j = 0; j < n; j++)
				if (in[i].target_id == out[j].target_id) {
					assert_int_equal(in[i].ls, out[j].ls);
					assert_int_equal(in[i].node_alive, out[j].node_alive);
				}
		seen[cases[c].row] = true;
	}
	for (int r = 1; r <= 14; r++)
		if (!seen[r])
			fail_msg("row %d has no case", r);
}

static void test_bad_input(void **state)
{
	(void)state;
	struct chain_member in[CHAIN_MAX_TARGETS + 1], out[CHAIN_MAX_TARGETS + 1];
	uint32_t ver = 99;
	memset(in, 0, sizeof(in));
	assert_int_equal(chain_transition(in, 0, 1, out, &ver), -EINVAL);
	for (uint32_t i = 0; i <= CHAIN_MAX_TARGETS; i++)
		in[i] = (struct chain_member){i + 1, CHAIN_PS_SERVING, CHAIN_LS_UPTODATE, true};
	assert_int_equal(chain_transition(in, CHAIN_MAX_TARGETS + 1, 1, out, &ver), -EINVAL);
	assert_int_equal(chain_transition(in, CHAIN_MAX_TARGETS, 1, out, &ver), 0);
	assert_int_equal(ver, 1);
	in[2].target_id = 1;
	assert_int_equal(chain_transition(in, 3, 1, out, &ver), -EINVAL);
	in[2].target_id = 0;
	assert_int_equal(chain_transition(in, 3, 1, out, &ver), -EINVAL);
	in[2].target_id = 3;
	in[1].ps = (enum chain_pub_state)3;
	assert_int_equal(chain_transition(in, 3, 1, out, &ver), -EINVAL);
	in[1].ps = CHAIN_PS_SERVING;
	in[1].ls = (enum chain_local_state)0;
	assert_int_equal(chain_transition(in, 3, 1, out, &ver), -EINVAL);
	in[1].ls = CHAIN_LS_OFFLINE;
	ver = 5;
	assert_int_equal(chain_transition(in, 3, UINT32_MAX, out, &ver), -EOVERFLOW);
	assert_int_equal(ver, 5);
	assert_int_equal(chain_transition(in, 3, UINT32_MAX - 1, out, &ver), 1);
	assert_true(ver == UINT32_MAX);
	assert_string_equal(chain_pub_state_name(CHAIN_PS_LASTSRV), "lastsrv");
	assert_string_equal(chain_pub_state_name(0), "?");
	assert_string_equal(chain_local_state_name(CHAIN_LS_ONLINE), "online");
}

static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return (uint32_t)(z % n);
}

static bool chance(uint32_t per_mille)
{
	return rnd(1000) < per_mille;
}

static bool up(const struct chain_member *m)
{
	return m->node_alive && m->ls != CHAIN_LS_OFFLINE;
}

static int rank(enum chain_pub_state s)
{
	return __builtin_ctz(s);
}

static size_t count(const struct chain_member *m, size_t n, enum chain_pub_state s)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		k += m[i].ps == s;
	return k;
}

static const struct chain_member *find(const struct chain_member *m, size_t n, uint32_t id)
{
	for (size_t i = 0; i < n; i++)
		if (m[i].target_id == id)
			return &m[i];
	return NULL;
}

/* Structural invariants of one step IN -> OUT (see chain_state.c). */
static void check_step(const struct chain_member *in, const struct chain_member *out, size_t n,
                       int rc, uint32_t v0, uint32_t v1)
{
	assert_true(rc == 0 || rc == 1);
	bool changed = false;
	for (size_t i = 0; i < n; i++)
		changed |= in[i].target_id != out[i].target_id || in[i].ps != out[i].ps;
	assert_int_equal(rc, changed);
	assert_int_equal(v1, v0 + (changed ? 1 : 0));
	for (size_t i = 0; i < n; i++) {
		const struct chain_member *o = find(in, n, out[i].target_id);
		assert_non_null(o);
		if (i)
			assert_true(rank(out[i - 1].ps) <= rank(out[i].ps));
		switch (out[i].ps) {
		case CHAIN_PS_SERVING:
			assert_true(up(&out[i]));
			assert_true(o->ps == CHAIN_PS_SERVING || o->ps == CHAIN_PS_LASTSRV ||
			            o->ps == CHAIN_PS_SYNCING);
			break;
		case CHAIN_PS_LASTSRV:
			assert_false(up(&out[i]));
			assert_true(o->ps == CHAIN_PS_SERVING || o->ps == CHAIN_PS_LASTSRV);
			break;
		case CHAIN_PS_SYNCING:
			assert_true(out[i].node_alive && out[i].ls == CHAIN_LS_ONLINE);
			break;
		case CHAIN_PS_WAITING:
			assert_true(up(&out[i]));
			break;
		case CHAIN_PS_OFFLINE:
			assert_false(up(&out[i]));
			break;
		}
	}
	size_t srv = count(out, n, CHAIN_PS_SERVING), last = count(out, n, CHAIN_PS_LASTSRV);
	assert_true(count(out, n, CHAIN_PS_SYNCING) <= (srv ? 1u : 0u));
	assert_false(srv && last);
	if (count(in, n, CHAIN_PS_SERVING) + count(in, n, CHAIN_PS_LASTSRV))
		assert_true(srv + last > 0);
	/* Idempotent: the same reports change nothing more. */
	struct chain_member again[CHAIN_MAX_TARGETS];
	uint32_t v2;
	assert_int_equal(chain_transition(out, n, v1, again, &v2), 0);
	assert_int_equal(v2, v1);
	assert_memory_equal(again, out, n * sizeof(*out));
}

static void test_random_reports(void **state)
{
	(void)state;
	rng_state = 0x5eed;
	uint64_t deadline = clock_mono_ms() + 15000;
	struct chain_member cur[4], out[4];
	size_t n = 0;
	uint32_t ver = 0;
	long steps;
	for (steps = 0; steps < 100000 && clock_mono_ms() < deadline; steps++) {
		if (steps % 500 == 0) { /* a fresh chain: all SERVING and up */
			n = 1 + rnd(4);
			ver = 1;
			for (size_t i = 0; i < n; i++)
				cur[i] = (struct chain_member){(uint32_t)(10 + i), CHAIN_PS_SERVING,
				                               CHAIN_LS_UPTODATE, true};
		}
		for (size_t i = 0; i < n; i++) {
			if (chance(200))
				cur[i].ls = (enum chain_local_state)(1u << rnd(3));
			if (chance(50))
				cur[i].node_alive = !cur[i].node_alive;
		}
		uint32_t nv;
		int rc = chain_transition(cur, n, ver, out, &nv);
		check_step(cur, out, n, rc, ver, nv);
		memcpy(cur, out, n * sizeof(*out));
		ver = nv;
	}
	assert_int_equal(steps, 100000);
}

/* The storage-side model: a target is a process that may crash, restart
 * (startup fencing: report OFFLINE until routing no longer shows it
 * SERVING/SYNCING/WAITING), be partitioned from mgmtd (its heartbeats stop
 * but it keeps its local state and misses routing changes), and follows
 * the local-state rules of 3fs-notes §3.4. FRESH says the target holds
 * every acknowledged write. */
struct sim {
	bool proc_up, partitioned, fencing, fresh;
	int sync_progress, sync_need;
	enum chain_local_state ls;
};

static bool reachable(const struct sim *s)
{
	return s->proc_up && !s->partitioned;
}

static void storage_react(struct sim *s, enum chain_pub_state ps)
{
	if (!reachable(s))
		return;
	if (s->fencing) {
		if (ps != CHAIN_PS_SERVING && ps != CHAIN_PS_SYNCING && ps != CHAIN_PS_WAITING) {
			s->fencing = false;
			s->ls = CHAIN_LS_ONLINE;
		}
		return;
	}
	if (s->ls == CHAIN_LS_ONLINE && ps == CHAIN_PS_SERVING)
		s->ls = CHAIN_LS_UPTODATE;
	if (s->ls == CHAIN_LS_UPTODATE &&
	    (ps == CHAIN_PS_OFFLINE || ps == CHAIN_PS_LASTSRV || ps == CHAIN_PS_WAITING)) {
		s->ls = CHAIN_LS_OFFLINE; /* detached; re-attaches through fencing */
		s->fencing = true;
	}
}

static void run_model(size_t n, long steps, bool heal_at_end)
{
	struct chain_member cur[CHAIN_MAX_TARGETS], out[CHAIN_MAX_TARGETS];
	struct sim sim[CHAIN_MAX_TARGETS + 1]; /* indexed by target id */
	uint32_t ver = 1;
	for (size_t i = 0; i < n; i++) {
		cur[i] = (struct chain_member){(uint32_t)(i + 1), CHAIN_PS_SERVING,
		                               CHAIN_LS_UPTODATE, true};
		sim[i + 1] = (struct sim){.proc_up = true, .fresh = true, .ls = CHAIN_LS_UPTODATE};
	}
	for (long step = 0; step < steps; step++) {
		bool healing = heal_at_end && step >= steps - 60;
		for (size_t i = 1; i <= n; i++) {
			struct sim *s = &sim[i];
			if (healing) {
				s->partitioned = false;
				if (!s->proc_up) {
					s->proc_up = true;
					s->fencing = true;
					s->ls = CHAIN_LS_OFFLINE;
				}
				continue;
			}
			if (s->proc_up && chance(30)) {
				s->proc_up = false;
				s->ls = CHAIN_LS_OFFLINE;
			} else if (!s->proc_up && chance(150)) {
				s->proc_up = true;
				s->fencing = true;
				s->ls = CHAIN_LS_OFFLINE;
			}
			if (chance(s->partitioned ? 200 : 20))
				s->partitioned = !s->partitioned;
		}
		/* mgmtd: reports of reachable targets; others' leases lapse. */
		for (size_t i = 0; i < n; i++) {
			struct sim *s = &sim[cur[i].target_id];
			cur[i].ls = s->ls;
			cur[i].node_alive = reachable(s);
		}
		uint32_t nv;
		int rc = chain_transition(cur, n, ver, out, &nv);
		check_step(cur, out, n, rc, ver, nv);
		memcpy(cur, out, n * sizeof(*out));
		ver = nv;

		/* Safety: serving copies, or else the last-serving ones, are current. */
		size_t srv = count(cur, n, CHAIN_PS_SERVING);
		for (size_t i = 0; i < n; i++) {
			const struct sim *s = &sim[cur[i].target_id];
			if (cur[i].ps == CHAIN_PS_SERVING ||
			    (!srv && cur[i].ps == CHAIN_PS_LASTSRV))
				if (!s->fresh)
					fail_msg("n=%zu step %ld: target %u is %s but stale", n,
					         step, cur[i].target_id,
					         chain_pub_state_name(cur[i].ps));
		}
		assert_true(srv + count(cur, n, CHAIN_PS_LASTSRV) > 0);

		/* Storage reacts to the new routing; resync runs while every
		 * SERVING target is reachable. */
		bool chain_ok = srv > 0;
		for (size_t i = 0; i < n; i++)
			if ((cur[i].ps == CHAIN_PS_SERVING || cur[i].ps == CHAIN_PS_SYNCING) &&
			    !reachable(&sim[cur[i].target_id]))
				chain_ok = false;
		for (size_t i = 0; i < n; i++) {
			struct sim *s = &sim[cur[i].target_id];
			storage_react(s, cur[i].ps);
			if (cur[i].ps != CHAIN_PS_SYNCING || !reachable(s) || s->fencing) {
				s->sync_progress = 0;
				s->sync_need = 1 + rnd(3);
			} else if (s->ls == CHAIN_LS_ONLINE && chain_ok &&
			           ++s->sync_progress >= s->sync_need) {
				s->ls = CHAIN_LS_UPTODATE; /* syncDone */
				s->fresh = true;
			}
		}
		/* A client write is acknowledged only when every SERVING and
		 * SYNCING target took it; everyone else falls behind. */
		if (chain_ok && chance(500))
			for (size_t i = 0; i < n; i++)
				if (cur[i].ps != CHAIN_PS_SERVING && cur[i].ps != CHAIN_PS_SYNCING)
					sim[cur[i].target_id].fresh = false;
	}
	if (heal_at_end)
		for (size_t i = 0; i < n; i++)
			if (cur[i].ps != CHAIN_PS_SERVING)
				fail_msg("n=%zu: healed chain did not recover: target %u is %s", n,
				         cur[i].target_id, chain_pub_state_name(cur[i].ps));
}

static void test_storage_model(void **state)
{
	(void)state;
	rng_state = 0xc0ffee;
	uint64_t deadline = clock_mono_ms() + 15000;
	long rounds = 0;
	for (; rounds < 2000 && clock_mono_ms() < deadline; rounds++)
		run_model(1 + (size_t)(rounds % 4), 300, true);
	assert_int_equal(rounds, 2000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_row),
	    cmocka_unit_test(test_bad_input),
	    cmocka_unit_test(test_random_reports),
	    cmocka_unit_test(test_storage_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
