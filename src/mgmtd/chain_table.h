/* chain_table.h - generate a chain table: chains of R targets over nodes.
 *
 * Every target goes into exactly one chain, and a chain's R targets sit on
 * R distinct nodes. What the layout decides is which NODES share chains:
 * when one target fails its reads move to the R-1 other targets of its
 * chain whatever the layout, but when a node (a host, or the disk behind
 * its targets) fails, its read load and the later resync traffic go to
 * every node that shares a chain with it. The generator makes the number
 * of chains shared by each pair of nodes (lambda) as even as possible, so
 * that load spreads over as many nodes as possible, equally: 3FS's
 * balanced incomplete block design, found here by a heuristic instead of
 * an ILP:
 *   1. greedy: chain after chain, take the nodes with the most unplaced
 *      targets (this always completes), breaking ties by the fewest chains
 *      already shared with the nodes picked so far;
 *   2. local search: swap two nodes between two chains when that does not
 *      raise sum(lambda^2) over node pairs (sideways moves let it cross
 *      plateaus), until the sum reaches its lower bound or a fixed move
 *      budget runs out;
 *   3. order each chain so every node is head (and each other position)
 *      about equally often; the head coordinates writes.
 * Output is a pure function of the parameters (the seed drives a splitmix64
 * generator), so the same command gives the same table everywhere.
 * Chain ids follow routing.h: route_chain_id(table_id, 1..chains).
 */
#ifndef CFS_MGMTD_CHAIN_TABLE_H
#define CFS_MGMTD_CHAIN_TABLE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CTAB_MAX_NODES   1024
#define CTAB_MAX_TARGETS 65536 /* over all nodes */

typedef struct ctab ctab;

/* One node's targets, in the order they should be used. Borrowed. */
struct ctab_node {
	uint32_t node_id; /* nonzero, unique */
	uint32_t n_targets;
	const uint32_t *target_ids; /* nonzero, unique over all nodes */
};

struct ctab_params {
	uint32_t table_id; /* for chain ids; 1..ROUTE_TABLE_ID_MAX */
	uint32_t replicas; /* R: 1..CHAIN_MAX_TARGETS */
	uint64_t seed;
	size_t n_nodes;
	const struct ctab_node *nodes; /* borrowed for the call */
};

/* Figures of merit; "share" is the fraction of a failed node's reads that
 * one surviving node takes over. */
struct ctab_balance {
	uint32_t nodes, targets, chains, replicas;
	uint32_t chains_per_target_min, chains_per_target_max; /* 1 by construction */
	uint32_t chains_per_node_min, chains_per_node_max;
	uint32_t heads_per_node_min, heads_per_node_max;
	double heads_ideal;            /* chains / nodes */
	uint32_t pair_min, pair_max;   /* lambda over pairs of distinct nodes */
	double pair_ideal;             /* mean lambda */
	uint32_t peers_min, peers_max; /* nodes sharing a chain with one node */
	uint32_t peers_ideal; /* min(nodes - 1, targets_of_node * (R - 1)), smallest over nodes */
	double share_min, share_max; /* over every failed node and each of its peers */
	double share_ideal;          /* 1 / peers_ideal; 0 when R == 1 */
};

/* Generates a table. Returns 0 and *out (free with ctab_free), or -EINVAL
 * with a one-line reason in ERR (always NUL-terminated when errlen > 0):
 * R out of range or above the number of nodes, no targets, a target count
 * not divisible by R, a node holding more targets than there are chains,
 * duplicate or zero ids, or limits above exceeded. Any thread. */
int ctab_generate(const struct ctab_params *p, ctab **out, char *err, size_t errlen);
void ctab_free(ctab *t);

uint32_t ctab_chains(const ctab *t);
uint32_t ctab_replicas(const ctab *t);
uint32_t ctab_chain_id(const ctab *t, uint32_t i);
/* The R target ids of chain I (0-based), head first; valid until ctab_free. */
const uint32_t *ctab_chain_targets(const ctab *t, uint32_t i);
/* The node each target of chain I sits on, same order as the targets. */
const uint32_t *ctab_chain_nodes(const ctab *t, uint32_t i);
void ctab_get_balance(const ctab *t, struct ctab_balance *b);
/* What ctab_print adds to the chains and the summary figures. */
enum ctab_print_flags {
	CTAB_PRINT_NODES = 1,   /* one line per node failure: peers and shares */
	CTAB_PRINT_TARGETS = 2, /* one line per target failure: who takes its reads */
};
/* Writes the chains (one line each: chain id, target ids) and the balance
 * figures, as '#' comment lines; FLAGS from enum ctab_print_flags. */
void ctab_print(const ctab *t, FILE *out, unsigned flags);

#endif
