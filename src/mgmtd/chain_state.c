/* chain_state.c - the chain state machine (table in chain_state.h).
 *
 * How it works: three passes over the old chain. Pass 1 decides the new
 * SERVING set S (rows 1, 4, 7), because every other row depends on whether
 * S is empty. Pass 2 settles the rows that need only S (2, 3, 5, 10 and the
 * non-syncing ones). Pass 3 hands out the single SYNCING slot, old SYNCING
 * targets first so a running resync is not restarted, then everyone else in
 * old order. Finally a stable sort by (new state, old state, old position).
 *
 * Invariants of the output, for any valid input (checked by the property
 * tests in tests/mgmtd/test_chain_state.c):
 *  - at most one SYNCING, and only while some target is SERVING;
 *  - SERVING and LASTSRV never coexist;
 *  - if the input had a SERVING or LASTSRV target, the output has one;
 *  - a target becomes SERVING only from SERVING, LASTSRV or SYNCING;
 *  - states appear in the order SERVING, LASTSRV, SYNCING, WAITING, OFFLINE;
 *  - transition(transition(x)) == transition(x) for the same reports.
 */
#include "mgmtd/chain_state.h"

#include <errno.h>
#include <stdint.h>
#include <sys/types.h>

bool chain_local_state_valid(unsigned v)
{
	return v == CHAIN_LS_UPTODATE || v == CHAIN_LS_ONLINE || v == CHAIN_LS_OFFLINE;
}

bool chain_pub_state_valid(unsigned v)
{
	return v == CHAIN_PS_SERVING || v == CHAIN_PS_LASTSRV || v == CHAIN_PS_SYNCING ||
	       v == CHAIN_PS_WAITING || v == CHAIN_PS_OFFLINE;
}

const char *chain_pub_state_name(unsigned v)
{
	switch (v) {
	case CHAIN_PS_SERVING:
		return "serving";
	case CHAIN_PS_LASTSRV:
		return "lastsrv";
	case CHAIN_PS_SYNCING:
		return "syncing";
	case CHAIN_PS_WAITING:
		return "waiting";
	case CHAIN_PS_OFFLINE:
		return "offline";
	}
	return "?";
}

const char *chain_local_state_name(unsigned v)
{
	switch (v) {
	case CHAIN_LS_UPTODATE:
		return "uptodate";
	case CHAIN_LS_ONLINE:
		return "online";
	case CHAIN_LS_OFFLINE:
		return "offline";
	}
	return "?";
}

/* Position of a public state in the chain order: 0 (SERVING) .. 4. The enum
 * values are single bits in that order. */
static unsigned rank_of(enum chain_pub_state ps)
{
	return (unsigned)__builtin_ctz((unsigned)ps);
}

/* The local state mgmtd acts on: a lapsed node lease overrides any report. */
static enum chain_local_state effective_ls(const struct chain_member *m)
{
	return m->node_alive ? m->ls : CHAIN_LS_OFFLINE;
}

static bool is_up(const struct chain_member *m)
{
	return effective_ls(m) != CHAIN_LS_OFFLINE;
}

static int check_input(const struct chain_member *in, size_t n)
{
	if (n == 0 || n > CHAIN_MAX_TARGETS)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (in[i].target_id == 0 || !chain_pub_state_valid(in[i].ps) ||
		    !chain_local_state_valid(in[i].ls))
			return -EINVAL;
		for (size_t j = 0; j < i; j++)
			if (in[j].target_id == in[i].target_id)
				return -EINVAL;
	}
	return 0;
}

int chain_transition(const struct chain_member *in, size_t n, uint32_t version,
                     struct chain_member *out, uint32_t *out_version)
{
	int rc = check_input(in, n);
	if (rc < 0)
		return rc;

	enum chain_pub_state ns[CHAIN_MAX_TARGETS];
	bool decided[CHAIN_MAX_TARGETS] = {false};
	bool any_serving = false;

	/* Pass 1: the new SERVING set. */
	bool old_serving_up = false;
	for (size_t i = 0; i < n; i++)
		if (in[i].ps == CHAIN_PS_SERVING && is_up(&in[i])) {
			ns[i] = CHAIN_PS_SERVING; /* row 1 */
			decided[i] = true;
			old_serving_up = true;
		}
	if (!old_serving_up)
		for (size_t i = 0; i < n; i++)
			if (in[i].ps == CHAIN_PS_LASTSRV && is_up(&in[i])) {
				ns[i] = CHAIN_PS_SERVING; /* row 4 */
				decided[i] = true;
				break;
			}
	for (size_t i = 0; i < n; i++)
		if (in[i].ps == CHAIN_PS_SYNCING && effective_ls(&in[i]) == CHAIN_LS_UPTODATE) {
			ns[i] = CHAIN_PS_SERVING; /* row 7 */
			decided[i] = true;
		}
	for (size_t i = 0; i < n; i++)
		any_serving |= decided[i];

	/* Pass 2: rows that depend only on S. Candidates for the SYNCING slot
	 * stay undecided. */
	for (size_t i = 0; i < n; i++) {
		if (decided[i])
			continue;
		enum chain_local_state ls = effective_ls(&in[i]);
		switch (in[i].ps) {
		case CHAIN_PS_SERVING: /* rows 2, 3 */
		case CHAIN_PS_LASTSRV: /* rows 5, 6 */
			if (!any_serving) {
				ns[i] = CHAIN_PS_LASTSRV;
				decided[i] = true;
				continue;
			}
			if (in[i].ps == CHAIN_PS_SERVING) {
				ns[i] = CHAIN_PS_OFFLINE;
				decided[i] = true;
				continue;
			}
			break; /* row 6: a demoted LASTSRV goes on as OFFLINE */
		default:
			break;
		}
		if (ls == CHAIN_LS_OFFLINE) {
			ns[i] = CHAIN_PS_OFFLINE; /* rows 10, 14 */
			decided[i] = true;
		} else if (ls == CHAIN_LS_UPTODATE || !any_serving) {
			ns[i] = CHAIN_PS_WAITING; /* rows 9, 12, 13 */
			decided[i] = true;
		}
	}

	/* Pass 3: every undecided target is ONLINE with S non-empty; the first
	 * old SYNCING one, else the first in old order, gets the slot. */
	ssize_t slot = -1;
	for (size_t i = 0; i < n && slot < 0; i++)
		if (!decided[i] && in[i].ps == CHAIN_PS_SYNCING)
			slot = (ssize_t)i;
	for (size_t i = 0; i < n && slot < 0; i++)
		if (!decided[i])
			slot = (ssize_t)i;
	for (size_t i = 0; i < n; i++)
		if (!decided[i])
			ns[i] = (ssize_t)i == slot ? CHAIN_PS_SYNCING
			                           : CHAIN_PS_WAITING; /* 8, 9, 11, 12 */

	/* Stable order by (new state, old state, old position): insertion sort
	 * on at most CHAIN_MAX_TARGETS entries. */
	size_t idx[CHAIN_MAX_TARGETS];
	for (size_t i = 0; i < n; i++) {
		unsigned key = rank_of(ns[i]) * 8 + rank_of(in[i].ps);
		size_t j = i;
		while (j > 0) {
			size_t p = idx[j - 1];
			if (rank_of(ns[p]) * 8 + rank_of(in[p].ps) <= key)
				break;
			idx[j] = p;
			j--;
		}
		idx[j] = i;
	}

	bool changed = false;
	for (size_t k = 0; k < n; k++) {
		size_t i = idx[k];
		out[k] = in[i];
		out[k].ps = ns[i];
		if (in[k].target_id != out[k].target_id || in[k].ps != out[k].ps)
			changed = true;
	}
	if (changed && version == UINT32_MAX)
		return -EOVERFLOW;
	*out_version = changed ? version + 1 : version;
	return changed ? 1 : 0;
}
