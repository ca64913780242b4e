/* chain_table.c - the chain table generator (method in chain_table.h).
 *
 * Internals: nodes are indexed 0..N-1 in parameter order; mem[c*R + j] is
 * the node index at position j of chain c; lam[u*N + v] (symmetric) counts
 * the chains holding both u and v. The local search keeps lam exact by
 * applying a move edge by edge (so a node that sits in both swapped chains
 * nets out correctly) and undoing it when the score would rise.
 *
 * Invariants: every chain holds R distinct nodes; node u is in exactly
 * deg[u] chains (swaps exchange one node for another between two chains,
 * so they preserve both); targets are assigned only after the search.
 */
#include "mgmtd/chain_table.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "mgmtd/chain_state.h"
#include "mgmtd/routing.h"

struct ctab {
	uint32_t n_nodes, replicas, n_chains, table_id;
	uint32_t *node_ids;  /* [n_nodes] */
	uint32_t *deg;       /* [n_nodes] targets (= chains) per node */
	uint32_t *mem;       /* [n_chains * R] node index, head first */
	uint32_t *targets;   /* [n_chains * R] target id, same layout */
	uint32_t *nodes_out; /* [n_chains * R] node id, same layout */
	uint32_t *lam;       /* [n_nodes^2] chains shared per node pair */
};

struct rng {
	uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, n) for n > 0; the modulo bias is irrelevant here. */
static uint32_t rng_below(struct rng *r, uint32_t n)
{
	return (uint32_t)(rng_next(r) % n);
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static int check_params(const struct ctab_params *p, uint64_t *total, char *err, size_t errlen)
{
	if (p->replicas < 1 || p->replicas > CHAIN_MAX_TARGETS)
		return fail(err, errlen, "replicas must be 1..%d, not %u", CHAIN_MAX_TARGETS,
		            p->replicas);
	if (p->n_nodes == 0)
		return fail(err, errlen, "no nodes");
	if (p->n_nodes > CTAB_MAX_NODES)
		return fail(err, errlen, "%zu nodes: at most %d", p->n_nodes, CTAB_MAX_NODES);
	if (p->replicas > p->n_nodes)
		return fail(err, errlen,
		            "replicas (%u) exceed the number of nodes (%zu): a chain's targets "
		            "must sit on distinct nodes",
		            p->replicas, p->n_nodes);
	if (p->table_id < 1 || p->table_id > ROUTE_TABLE_ID_MAX)
		return fail(err, errlen, "table id must be 1..%u", ROUTE_TABLE_ID_MAX);
	uint64_t sum = 0;
	for (size_t i = 0; i < p->n_nodes; i++) {
		if (p->nodes[i].node_id == 0)
			return fail(err, errlen, "node id 0 is reserved");
		if (p->nodes[i].n_targets && !p->nodes[i].target_ids)
			return fail(err, errlen, "node %u: no target ids given",
			            p->nodes[i].node_id);
		sum += p->nodes[i].n_targets;
		if (sum > CTAB_MAX_TARGETS)
			return fail(err, errlen, "more than %d targets", CTAB_MAX_TARGETS);
	}
	if (sum == 0)
		return fail(err, errlen, "no targets: every node has zero targets");
	if (sum % p->replicas)
		return fail(err, errlen,
		            "%llu targets do not split into chains of %u: the number of targets "
		            "must be a multiple of the replica count",
		            (unsigned long long)sum, p->replicas);
	uint64_t chains = sum / p->replicas;
	if (chains > ROUTE_CHAIN_INDEX_MAX)
		return fail(err, errlen, "%llu chains: at most %u per table",
		            (unsigned long long)chains, ROUTE_CHAIN_INDEX_MAX);
	for (size_t i = 0; i < p->n_nodes; i++)
		if (p->nodes[i].n_targets > chains)
			return fail(err, errlen,
			            "node %u has %u targets but there are only %llu chains: two "
			            "of its targets would share a chain",
			            p->nodes[i].node_id, p->nodes[i].n_targets,
			            (unsigned long long)chains);

	/* Duplicate ids, by sorting copies. */
	uint32_t *ids = xmalloc((size_t)(sum > p->n_nodes ? sum : p->n_nodes) * sizeof(*ids));
	int rc = 0;
	for (size_t i = 0; i < p->n_nodes; i++)
		ids[i] = p->nodes[i].node_id;
	qsort(ids, p->n_nodes, sizeof(*ids), cmp_u32);
	for (size_t i = 1; i < p->n_nodes && !rc; i++)
		if (ids[i] == ids[i - 1])
			rc = fail(err, errlen, "node id %u appears twice", ids[i]);
	size_t k = 0;
	for (size_t i = 0; i < p->n_nodes && !rc; i++)
		for (uint32_t j = 0; j < p->nodes[i].n_targets && !rc; j++) {
			ids[k++] = p->nodes[i].target_ids[j];
			if (p->nodes[i].target_ids[j] == 0)
				rc = fail(err, errlen, "target id 0 is reserved");
		}
	if (!rc) {
		qsort(ids, k, sizeof(*ids), cmp_u32);
		for (size_t i = 1; i < k && !rc; i++)
			if (ids[i] == ids[i - 1])
				rc = fail(err, errlen, "target id %u appears twice", ids[i]);
	}
	free(ids);
	*total = sum;
	return rc;
}

static inline uint32_t *lam_at(ctab *t, uint32_t u, uint32_t v)
{
	return &t->lam[(size_t)u * t->n_nodes + v];
}

/* Adds S (+1/-1) to lambda(u, v) and returns the change of sum(lambda^2)
 * over unordered pairs. */
static int64_t lam_add(ctab *t, uint32_t u, uint32_t v, int s)
{
	uint32_t *a = lam_at(t, u, v);
	int64_t d = 2 * (int64_t)s * *a + 1;
	*a = (uint32_t)((int64_t)*a + s);
	*lam_at(t, v, u) = *a;
	return d;
}

/* Moves node A out of chain C1 into C2's slot J2 and B the other way
 * (A sits at J1 of C1). Returns the score change. */
static int64_t swap_nodes(ctab *t, uint32_t c1, uint32_t j1, uint32_t c2, uint32_t j2)
{
	uint32_t R = t->replicas;
	uint32_t *m1 = &t->mem[(size_t)c1 * R], *m2 = &t->mem[(size_t)c2 * R];
	uint32_t a = m1[j1], b = m2[j2];
	int64_t d = 0;
	for (uint32_t j = 0; j < R; j++)
		if (j != j1) {
			d += lam_add(t, a, m1[j], -1);
			d += lam_add(t, b, m1[j], +1);
		}
	for (uint32_t j = 0; j < R; j++)
		if (j != j2) {
			d += lam_add(t, b, m2[j], -1);
			d += lam_add(t, a, m2[j], +1);
		}
	m1[j1] = b;
	m2[j2] = a;
	return d;
}

static bool in_chain(const ctab *t, uint32_t c, uint32_t u)
{
	const uint32_t *m = &t->mem[(size_t)c * t->replicas];
	for (uint32_t j = 0; j < t->replicas; j++)
		if (m[j] == u)
			return true;
	return false;
}

/* Step 1. Taking the R nodes with the most unplaced targets keeps the rest
 * placeable (no node ever needs more chains than remain); only nodes tied
 * at the R-th largest count are a free choice. */
static void build_greedy(ctab *t, struct rng *rng)
{
	uint32_t N = t->n_nodes, R = t->replicas, maxdeg = 0;
	uint32_t *rem = xmalloc(N * sizeof(*rem));
	for (uint32_t u = 0; u < N; u++) {
		rem[u] = t->deg[u];
		if (rem[u] > maxdeg)
			maxdeg = rem[u];
	}
	uint32_t *hist = xcalloc(maxdeg + 1, sizeof(*hist));
	for (uint32_t u = 0; u < N; u++)
		hist[rem[u]]++;
	bool *picked = xcalloc(N, sizeof(*picked));

	for (uint32_t c = 0; c < t->n_chains; c++) {
		uint32_t *m = &t->mem[(size_t)c * R];
		uint32_t above = 0, th = maxdeg;
		while (above + hist[th] < R) /* th = the R-th largest count */
			above += hist[th--];
		uint32_t k = 0;
		for (uint32_t u = 0; u < N; u++)
			if (rem[u] > th)
				m[k++] = u;
		while (k < R) {
			uint64_t best_score = UINT64_MAX;
			uint32_t best = 0, ties = 0;
			for (uint32_t u = 0; u < N; u++) {
				if (rem[u] != th || picked[u])
					continue;
				uint64_t s = 0;
				for (uint32_t j = 0; j < k; j++)
					s += *lam_at(t, u, m[j]);
				/* Reservoir choice among equals keeps it seed-driven. */
				if (s < best_score) {
					best_score = s;
					best = u;
					ties = 1;
				} else if (s == best_score && rng_below(rng, ++ties) == 0) {
					best = u;
				}
			}
			picked[best] = true;
			m[k++] = best;
		}
		for (uint32_t j = 0; j < R; j++) {
			picked[m[j]] = false;
			hist[rem[m[j]]]--;
			hist[--rem[m[j]]]++;
			for (uint32_t i = 0; i < j; i++)
				lam_add(t, m[i], m[j], +1);
		}
	}
	free(picked);
	free(hist);
	free(rem);
}

/* Smallest possible sum(lambda^2): the pair total spread as evenly as it
 * can be over all pairs. */
static uint64_t score_bound(const ctab *t)
{
	uint64_t pairs = (uint64_t)t->n_nodes * (t->n_nodes - 1) / 2;
	uint64_t total = (uint64_t)t->n_chains * t->replicas * (t->replicas - 1) / 2;
	if (pairs == 0)
		return 0;
	uint64_t q = total / pairs, r = total % pairs;
	return r * (q + 1) * (q + 1) + (pairs - r) * q * q;
}

static uint64_t score_of(const ctab *t)
{
	uint64_t s = 0;
	for (uint32_t u = 0; u < t->n_nodes; u++)
		for (uint32_t v = u + 1; v < t->n_nodes; v++)
			s += (uint64_t)t->lam[(size_t)u * t->n_nodes + v] *
			     t->lam[(size_t)u * t->n_nodes + v];
	return s;
}

/* How many random swaps a search over C chains of R replicas tries at
 * most: 50 per chain and replica pair, kept within 200k..4M, so small
 * tables still get a thorough search and large ones end in seconds. */
static uint64_t search_budget(uint32_t C, uint32_t R)
{
	uint64_t budget = (uint64_t)C * R * R * 50;
	if (budget < 200000)
		budget = 200000;
	if (budget > 4000000)
		budget = 4000000;
	return budget;
}

/* Step 2. */
static void local_search(ctab *t, struct rng *rng)
{
	uint32_t R = t->replicas, C = t->n_chains;
	if (R < 2 || C < 2 || R == t->n_nodes)
		return; /* nothing to choose: every chain holds every node or no pairs */
	uint64_t bound = score_bound(t), score = score_of(t);
	uint64_t budget = search_budget(C, R);
	for (uint64_t it = 0; it < budget && score > bound; it++) {
		uint32_t c1 = rng_below(rng, C), c2 = rng_below(rng, C);
		uint32_t j1 = rng_below(rng, R), j2 = rng_below(rng, R);
		if (c1 == c2)
			continue;
		uint32_t a = t->mem[(size_t)c1 * R + j1], b = t->mem[(size_t)c2 * R + j2];
		if (a == b || in_chain(t, c2, a) || in_chain(t, c1, b))
			continue;
		int64_t d = swap_nodes(t, c1, j1, c2, j2);
		if (d > 0)
			swap_nodes(t, c1, j1, c2, j2); /* the same swap undoes it */
		else
			score = (uint64_t)((int64_t)score + d);
	}
}

/* Smallest possible sum(cnt^2) over (node, position): each node's chains
 * spread evenly over the R positions. */
static uint64_t position_bound(const ctab *t)
{
	uint64_t s = 0;
	for (uint32_t u = 0; u < t->n_nodes; u++) {
		uint64_t q = t->deg[u] / t->replicas, r = t->deg[u] % t->replicas;
		s += r * (q + 1) * (q + 1) + (t->replicas - r) * q * q;
	}
	return s;
}

/* Step 3: greedy per chain, then random trades of two members' positions
 * inside one chain while they do not raise sum(cnt^2) over (node,
 * position); the sideways trades let a surplus travel along a path of
 * chains to a node with a deficit. */
static void balance_positions(ctab *t, struct rng *rng)
{
	uint32_t N = t->n_nodes, R = t->replicas, C = t->n_chains;
	uint32_t *cnt = xcalloc((size_t)N * R, sizeof(*cnt));
	uint32_t tmp[CHAIN_MAX_TARGETS];
	for (uint32_t c = 0; c < C; c++) {
		uint32_t *m = &t->mem[(size_t)c * R];
		bool used[CHAIN_MAX_TARGETS] = {false};
		for (uint32_t p = 0; p < R; p++) {
			uint32_t best = R;
			for (uint32_t j = 0; j < R; j++)
				if (!used[j] && (best == R || cnt[(size_t)m[j] * R + p] <
				                                  cnt[(size_t)m[best] * R + p]))
					best = j;
			used[best] = true;
			tmp[p] = m[best];
			cnt[(size_t)m[best] * R + p]++;
		}
		memcpy(m, tmp, R * sizeof(*m));
	}
	if (R < 2) {
		free(cnt);
		return;
	}
	uint64_t score = 0, bound = position_bound(t);
	for (size_t i = 0; i < (size_t)N * R; i++)
		score += (uint64_t)cnt[i] * cnt[i];
	uint64_t budget = search_budget(C, R);
	for (uint64_t it = 0; it < budget && score > bound; it++) {
		uint32_t c = rng_below(rng, C), p = rng_below(rng, R), q = rng_below(rng, R);
		if (p == q)
			continue;
		uint32_t *m = &t->mem[(size_t)c * R];
		uint32_t *ap = &cnt[(size_t)m[p] * R + p], *aq = &cnt[(size_t)m[p] * R + q];
		uint32_t *bp = &cnt[(size_t)m[q] * R + p], *bq = &cnt[(size_t)m[q] * R + q];
		/* Change of sum(cnt^2) if m[p] and m[q] trade places. */
		int64_t d = 2 * ((int64_t)*aq + *bp - *ap - *bq) + 4;
		if (d > 0)
			continue;
		(*ap)--, (*bq)--, (*aq)++, (*bp)++;
		uint32_t x = m[p];
		m[p] = m[q];
		m[q] = x;
		score = (uint64_t)((int64_t)score + d);
	}
	free(cnt);
}

static void assign_targets(ctab *t, const struct ctab_params *p)
{
	uint32_t *next = xcalloc(t->n_nodes, sizeof(*next));
	for (size_t i = 0; i < (size_t)t->n_chains * t->replicas; i++) {
		uint32_t u = t->mem[i];
		t->targets[i] = p->nodes[u].target_ids[next[u]++];
		t->nodes_out[i] = t->node_ids[u];
	}
	free(next);
}

int ctab_generate(const struct ctab_params *p, ctab **out, char *err, size_t errlen)
{
	uint64_t total = 0;
	if (errlen)
		err[0] = 0;
	*out = NULL;
	int rc = check_params(p, &total, err, errlen);
	if (rc < 0)
		return rc;
	ctab *t = xcalloc(1, sizeof(*t));
	t->n_nodes = (uint32_t)p->n_nodes;
	t->replicas = p->replicas;
	t->n_chains = (uint32_t)(total / p->replicas);
	t->table_id = p->table_id;
	t->node_ids = xmalloc(t->n_nodes * sizeof(*t->node_ids));
	t->deg = xmalloc(t->n_nodes * sizeof(*t->deg));
	for (uint32_t u = 0; u < t->n_nodes; u++) {
		t->node_ids[u] = p->nodes[u].node_id;
		t->deg[u] = p->nodes[u].n_targets;
	}
	t->mem = xmalloc(total * sizeof(*t->mem));
	t->targets = xmalloc(total * sizeof(*t->targets));
	t->nodes_out = xmalloc(total * sizeof(*t->nodes_out));
	t->lam = xcalloc((size_t)t->n_nodes * t->n_nodes, sizeof(*t->lam));

	struct rng rng = {p->seed};
	build_greedy(t, &rng);
	local_search(t, &rng);
	balance_positions(t, &rng);
	assign_targets(t, p);
	*out = t;
	return 0;
}

void ctab_free(ctab *t)
{
	if (!t)
		return;
	free(t->node_ids);
	free(t->deg);
	free(t->mem);
	free(t->targets);
	free(t->nodes_out);
	free(t->lam);
	free(t);
}

uint32_t ctab_chains(const ctab *t)
{
	return t->n_chains;
}
uint32_t ctab_replicas(const ctab *t)
{
	return t->replicas;
}
uint32_t ctab_chain_id(const ctab *t, uint32_t i)
{
	return route_chain_id(t->table_id, i + 1);
}

const uint32_t *ctab_chain_targets(const ctab *t, uint32_t i)
{
	return &t->targets[(size_t)i * t->replicas];
}

const uint32_t *ctab_chain_nodes(const ctab *t, uint32_t i)
{
	return &t->nodes_out[(size_t)i * t->replicas];
}

static void minmax(uint32_t v, uint32_t *lo, uint32_t *hi)
{
	if (v < *lo)
		*lo = v;
	if (v > *hi)
		*hi = v;
}

void ctab_get_balance(const ctab *t, struct ctab_balance *b)
{
	uint32_t N = t->n_nodes, R = t->replicas;
	memset(b, 0, sizeof(*b));
	b->nodes = N;
	b->chains = t->n_chains;
	b->replicas = R;
	b->targets = t->n_chains * R;
	b->chains_per_target_min = b->chains_per_target_max = 1; /* assign_targets */
	b->chains_per_node_min = b->heads_per_node_min = b->pair_min = b->peers_min = UINT32_MAX;
	b->peers_ideal = UINT32_MAX;
	b->heads_ideal = (double)t->n_chains / N;
	uint32_t *heads = xcalloc(N, sizeof(*heads));
	for (uint32_t c = 0; c < t->n_chains; c++)
		heads[t->mem[(size_t)c * R]]++;
	uint64_t pair_sum = 0;
	b->share_min = N > 1 && R > 1 ? 1.0 : 0.0;
	for (uint32_t u = 0; u < N; u++) {
		minmax(t->deg[u], &b->chains_per_node_min, &b->chains_per_node_max);
		minmax(heads[u], &b->heads_per_node_min, &b->heads_per_node_max);
		uint32_t peers = 0;
		uint64_t load = (uint64_t)t->deg[u] * (R - 1);
		for (uint32_t v = 0; v < N; v++) {
			if (v == u)
				continue;
			uint32_t l = t->lam[(size_t)u * N + v];
			if (v > u) {
				minmax(l, &b->pair_min, &b->pair_max);
				pair_sum += l;
			}
			if (!l)
				continue;
			peers++;
			double share = (double)l / (double)load;
			if (share > b->share_max)
				b->share_max = share;
			if (share < b->share_min)
				b->share_min = share;
		}
		minmax(peers, &b->peers_min, &b->peers_max);
		uint64_t ideal = load < N - 1 ? load : N - 1;
		if (ideal < b->peers_ideal)
			b->peers_ideal = (uint32_t)ideal;
	}
	if (N < 2)
		b->pair_min = 0;
	b->pair_ideal = N > 1 ? (double)pair_sum / ((double)N * (N - 1) / 2) : 0;
	b->share_ideal = b->peers_ideal ? 1.0 / b->peers_ideal : 0;
	free(heads);
}

void ctab_print(const ctab *t, FILE *out, unsigned flags)
{
	struct ctab_balance b;
	uint32_t R = t->replicas;
	ctab_get_balance(t, &b);
	fprintf(out, "# chain table %u: %u nodes, %u targets, %u chains of %u\n", t->table_id,
	        b.nodes, b.targets, b.chains, R);
	fprintf(out, "# chain_id targets (head first; node id = target id / %u)\n",
	        ROUTE_TARGET_SLOTS);
	for (uint32_t c = 0; c < t->n_chains; c++) {
		fprintf(out, "%u", ctab_chain_id(t, c));
		for (uint32_t j = 0; j < R; j++)
			fprintf(out, " %u", t->targets[(size_t)c * R + j]);
		fputc('\n', out);
	}
	fprintf(out, "# balance\n");
	fprintf(out, "#   chains per target: %u..%u\n", b.chains_per_target_min,
	        b.chains_per_target_max);
	fprintf(out, "#   chains per node: %u..%u\n", b.chains_per_node_min, b.chains_per_node_max);
	fprintf(out, "#   heads per node: %u..%u (ideal %.2f)\n", b.heads_per_node_min,
	        b.heads_per_node_max, b.heads_ideal);
	if (R == 1) {
		fprintf(
		    out,
		    "#   no replicas: a failed target's chain is unavailable until it returns\n");
		return;
	}
	fprintf(out, "#   chains shared by two nodes: %u..%u (ideal %.2f)\n", b.pair_min,
	        b.pair_max, b.pair_ideal);
	if (R == 2)
		fprintf(out,
		        "#   one target fails: its reads move to the other target of its chain\n");
	else
		fprintf(out,
		        "#   one target fails: its reads move to the %u other targets of its "
		        "chain, 1/%u each\n",
		        R - 1, R - 1);
	fprintf(out,
	        "#   one node fails: its reads move to %u..%u nodes (ideal %u), each taking "
	        "%.4f..%.4f of them (ideal %.4f)\n",
	        b.peers_min, b.peers_max, b.peers_ideal, b.share_min, b.share_max, b.share_ideal);
	if (flags & CTAB_PRINT_TARGETS)
		for (uint32_t c = 0; c < t->n_chains; c++)
			for (uint32_t j = 0; j < R; j++) {
				fprintf(out, "#   target %u fails: reads move to",
				        t->targets[(size_t)c * R + j]);
				for (uint32_t i = 0; i < R; i++)
					if (i != j)
						fprintf(out, " %u", t->targets[(size_t)c * R + i]);
				fprintf(out, ", 1/%u each\n", R - 1);
			}
	if (!(flags & CTAB_PRINT_NODES))
		return;
	uint32_t N = t->n_nodes;
	for (uint32_t u = 0; u < N; u++) {
		uint32_t peers = 0, lo = UINT32_MAX, hi = 0;
		for (uint32_t v = 0; v < N; v++) {
			uint32_t l = t->lam[(size_t)u * N + v];
			if (v == u || !l)
				continue;
			peers++;
			minmax(l, &lo, &hi);
		}
		double load = (double)t->deg[u] * (R - 1);
		fprintf(out, "#   node %u fails: %u peer nodes, share %.4f..%.4f\n", t->node_ids[u],
		        peers, peers ? lo / load : 0.0, hi / load);
	}
}
