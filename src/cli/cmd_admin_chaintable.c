/* cmd_admin_chaintable.c - chainfs admin gen-chain-table: generate a chain
 * table for a cluster shape (nodes x targets per node, R replicas) and
 * print its chains and balance figures. Works offline: nodes are numbered
 * 1..N and targets follow the id scheme of mgmtd/routing.h. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/admin.h"
#include "common/xalloc.h"
#include "mgmtd/chain_table.h"
#include "mgmtd/routing.h"

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: chainfs admin gen-chain-table --nodes N --targets-per-node T --replicas R\n"
	        "                                     [--seed S] [--table-id ID]\n"
	        "                                     [--per-node] [--per-target]\n"
	        "Prints one line per chain (chain id, target ids head first; target id =\n"
	        "node id * %u + slot) and the balance figures. --per-node and --per-target\n"
	        "add where each node's or each target's read load would go if it failed.\n"
	        "The same arguments always give the same table.\n",
	        ROUTE_TARGET_SLOTS);
}

static int parse_u64(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *end || s[0] == '-' || v > max) {
		fprintf(stderr,
		        "chainfs admin gen-chain-table: %s: '%s' is not a number in "
		        "0..%" PRIu64 "\n",
		        opt, s, max);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

int cli_admin_gen_chain_table(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"nodes", required_argument, NULL, 'n'},
	    {"targets-per-node", required_argument, NULL, 't'},
	    {"replicas", required_argument, NULL, 'r'},
	    {"seed", required_argument, NULL, 's'},
	    {"table-id", required_argument, NULL, 'i'},
	    {"per-node", no_argument, NULL, 'p'},
	    {"per-target", no_argument, NULL, 'T'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	uint64_t nodes = 0, tpn = 0, replicas = 0, seed = 1, table_id = 1;
	unsigned flags = 0;
	int have = 0, c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "n:t:r:s:i:pTh", opts, NULL)) != -1) {
		int rc = 0;
		switch (c) {
		case 'n':
			rc = parse_u64("--nodes", optarg, CTAB_MAX_NODES, &nodes);
			have |= 1;
			break;
		case 't':
			rc = parse_u64("--targets-per-node", optarg, ROUTE_SLOT_MAX, &tpn);
			have |= 2;
			break;
		case 'r':
			rc = parse_u64("--replicas", optarg, 1000, &replicas);
			have |= 4;
			break;
		case 's':
			rc = parse_u64("--seed", optarg, UINT64_MAX, &seed);
			break;
		case 'i':
			rc = parse_u64("--table-id", optarg, ROUTE_TABLE_ID_MAX, &table_id);
			break;
		case 'p':
			flags |= CTAB_PRINT_NODES;
			break;
		case 'T':
			flags |= CTAB_PRINT_TARGETS;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
		if (rc < 0)
			return 2;
	}
	if (optind < argc || have != 7) {
		if (optind < argc)
			fprintf(stderr, "chainfs admin gen-chain-table: unexpected '%s'\n",
			        argv[optind]);
		else
			fprintf(stderr,
			        "chainfs admin gen-chain-table: --nodes, --targets-per-node "
			        "and --replicas are required\n");
		usage(stderr);
		return 2;
	}

	struct ctab_node *nv = xcalloc(nodes ? nodes : 1, sizeof(*nv));
	size_t n_ids = (size_t)(nodes * tpn);
	uint32_t *ids = xcalloc(n_ids ? n_ids : 1, sizeof(*ids));
	for (uint32_t u = 0; u < nodes; u++) {
		nv[u].node_id = u + 1;
		nv[u].n_targets = (uint32_t)tpn;
		nv[u].target_ids = &ids[(size_t)u * tpn];
		for (uint32_t s = 0; s < tpn; s++)
			ids[(size_t)u * tpn + s] = route_target_id(u + 1, s + 1);
	}
	struct ctab_params p = {
	    .table_id = (uint32_t)table_id,
	    .replicas = (uint32_t)replicas,
	    .seed = seed,
	    .n_nodes = nodes,
	    .nodes = nv,
	};
	char err[256];
	ctab *t = NULL;
	int rc = ctab_generate(&p, &t, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "chainfs admin gen-chain-table: %s\n", err);
	} else {
		fprintf(stdout, "# seed %" PRIu64 "\n", seed);
		ctab_print(t, stdout, flags);
	}
	ctab_free(t);
	free(ids);
	free(nv);
	return rc < 0 ? 1 : 0;
}
