/* cmd_admin_layout.c - chainfs admin layout get|set: a directory's default
 * file layout.
 *
 *   chainfs admin layout get PATH --mgmtd ADDR --cluster-id ID --secret-file F
 *   chainfs admin layout set DIR  --mgmtd ADDR --cluster-id ID --secret-file F
 *                               [--chunk-size N] [--stripe N] [--table ID]
 *
 * PATH is a path inside the file system ("/" is the root), resolved from
 * the root with one meta lookup per component. The meta instances are the
 * ACTIVE meta nodes of mgmtd's routing info (one GET_ROUTING through
 * mgmtd_conn, as the other admin commands), unless --meta names them.
 *
 * set changes only the fields given; the others keep the directory's
 * current values. The command does not check the values itself: the meta
 * service validates the layout against the chain tables it knows and its
 * refusal (EINVAL with the reason: chunk size not a power of two or out of
 * range, stripe 0 or wider than the table, unknown table) is printed as is,
 * with exit status 1. The change applies to files created in DIR
 * afterwards (and to subdirectories made afterwards, which copy it);
 * existing files keep their layout.
 *
 * Requests go with root credentials: holding the cluster secret is what
 * makes an administrator here.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/admin.h"
#include "client/meta_client.h"
#include "common/buf.h"
#include "common/cfg.h"
#include "common/log.h"
#include "common/status.h"
#include "meta/meta.h"
#include "mgmtd/mgmtd_conn.h"
#include "mgmtd/mgmtd_proto.h"
#include "mgmtd/routing.h"
#include "net/auth.h"
#include "net/rpc_proto.h"

#define LAYOUT_MAX_META 16

struct layout_conf {
	char *mgmtd;
	char *meta;
	char *cluster_id;
	char *secret_file;
	char *chunk_size; /* "": keep */
	char *stripe;     /* "": keep */
	char *table;      /* "": keep */
	int64_t timeout_ms;
};

static const struct cfg_opt opts[] = {
    {"mgmtd", CFG_STR, "", 0, 0, offsetof(struct layout_conf, mgmtd),
     "mgmtd address(es), comma-separated ip:port; required"},
    {"meta", CFG_STR, "", 0, 0, offsetof(struct layout_conf, meta),
     "meta instances ip:port[,...] (default: the active meta nodes in routing info)"},
    {"cluster-id", CFG_STR, "", 0, 0, offsetof(struct layout_conf, cluster_id),
     "cluster id; required"},
    {"secret-file", CFG_STR, "", 0, 0, offsetof(struct layout_conf, secret_file),
     "file holding the cluster secret; required"},
    {"chunk-size", CFG_STR, "", 0, 0, offsetof(struct layout_conf, chunk_size),
     "set: bytes per chunk, power of two in 64K..64M (K/M suffixes)"},
    {"stripe", CFG_STR, "", 0, 0, offsetof(struct layout_conf, stripe),
     "set: chains each new file spreads over"},
    {"table", CFG_STR, "", 0, 0, offsetof(struct layout_conf, table),
     "set: chain table new files take their chains from"},
    {"timeout-ms", CFG_INT, "3000", 100, 600000, offsetof(struct layout_conf, timeout_ms),
     "per-attempt request deadline"},
    CFG_END,
};

static const struct meta_cred ROOT = {0, 0, 0, NULL};

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: chainfs admin layout get PATH --mgmtd ADDR --cluster-id ID --secret-file F\n"
	        "       chainfs admin layout set DIR --mgmtd ADDR --cluster-id ID --secret-file F\n"
	        "                                [--chunk-size N] [--stripe N] [--table ID]\n"
	        "PATH is a path inside the file system (\"/\" is the root). set changes the\n"
	        "fields given; files created in DIR afterwards take the new layout.\n\n");
	cfg_print_help(opts, out);
}

/* Parses a u32 flag value (SIZE: K/M/G suffixes allowed). 0 or -EINVAL. */
static int parse_u32(const char *flag, const char *s, int size, uint32_t *out)
{
	int64_t v = -1;
	char *end = NULL;
	if (size) {
		if (cfg_parse_size(s, &v))
			v = -1;
	} else {
		errno = 0;
		long long x = strtoll(s, &end, 0);
		if (!errno && end != s && !*end)
			v = x;
	}
	if (v < 0 || v > UINT32_MAX) {
		fprintf(stderr, "chainfs admin layout: --%s: '%s' is not a number in 0..%u\n", flag,
		        s, UINT32_MAX);
		return -EINVAL;
	}
	*out = (uint32_t)v;
	return 0;
}

/* The ACTIVE meta nodes of the routing info, as a comma list in BUF.
 * Returns the count, or -1 (message printed). */
static int meta_from_mgmtd(const struct layout_conf *lc, const uint8_t *secret, size_t slen,
                           char *buf, size_t cap)
{
	const char *addrs[MGMTD_CONN_MAX_ADDRS];
	char list[1024], err[512];
	size_t n = 0;
	struct mgmtd_conn *conn = NULL;
	struct buf req = BUF_INIT, resp = BUF_INIT;
	struct route_info ri;
	int count = -1;

	snprintf(list, sizeof(list), "%s", lc->mgmtd);
	for (char *s = list, *tok; (tok = strsep(&s, ","));)
		if (*tok && n < MGMTD_CONN_MAX_ADDRS)
			addrs[n++] = tok;
	struct mgmtd_conn_opts co = {addrs, n, lc->cluster_id, secret, slen,
	                             (uint32_t)lc->timeout_ms, 0};
	if (mgmtd_conn_new(&co, &conn, err, sizeof(err))) {
		fprintf(stderr, "chainfs admin layout: %s\n", err);
		return -1;
	}
	struct mgmtd_routing_req q = {0, 0};
	struct mgmtd_routing_resp r;
	int rc = mgmtd_routing_req_encode(&req, &q);
	if (rc == 0)
		rc = mgmtd_conn_call(conn, RPC_MSG_MGMTD_GET_ROUTING, req.data, (uint32_t)req.len, 0,
		                     &resp, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "chainfs admin layout: mgmtd: %s (%s)\n", err, cfs_errname(rc));
		goto out;
	}
	if (mgmtd_routing_resp_decode(resp.data, resp.len, &r) || !r.changed ||
	    route_info_decode(r.info, r.info_len, &ri)) {
		fprintf(stderr, "chainfs admin layout: malformed routing info from mgmtd\n");
		goto out;
	}
	size_t used = 0;
	buf[0] = 0;
	count = 0;
	for (size_t i = 0; i < ri.n_nodes && count < LAYOUT_MAX_META; i++) {
		const struct route_node *nd = &ri.nodes[i];
		if (nd->type != ROUTE_NODE_META || nd->state != ROUTE_NODE_ACTIVE)
			continue;
		int w = snprintf(buf + used, cap - used, "%s%s", count ? "," : "", nd->addr);
		if (w < 0 || (size_t)w >= cap - used)
			break;
		used += (size_t)w;
		count++;
	}
	route_info_fini(&ri);
	if (!count)
		fprintf(stderr, "chainfs admin layout: no active meta instance in routing info "
		                "(start `chainfs meta --mgmtd ...` or pass --meta)\n");
out:
	buf_fini(&req);
	buf_fini(&resp);
	mgmtd_conn_free(conn);
	return count ? count : -1;
}

/* Resolves PATH from the root into *out. 0, or the lookup error (printed). */
static int resolve(meta_client *mc, const char *path, struct meta_inode *out)
{
	char *copy = strdup(path);
	int rc;
	if (!copy)
		return -ENOMEM;
	if (path[0] != '/') {
		fprintf(stderr, "chainfs admin layout: '%s': give a path from the file system root "
		                "(starting with '/')\n", path);
		free(copy);
		return -EINVAL;
	}
	const char *at = "/";
	rc = meta_client_getattr(mc, &ROOT, META_ROOT_INO, out);
	for (char *s = copy, *tok; rc == 0 && (tok = strsep(&s, "/"));) {
		if (!*tok || !strcmp(tok, "."))
			continue;
		at = tok;
		rc = meta_client_lookup(mc, &ROOT, out->ino, meta_name_c(tok), out);
	}
	if (rc)
		fprintf(stderr, "chainfs admin layout: '%s': at '%s': %s (%s)\n", path, at,
		        *meta_client_last_error() ? meta_client_last_error() : cfs_strerror(rc),
		        cfs_errname(rc));
	free(copy);
	return rc;
}

static void print_layout(const char *path, const struct meta_inode *in)
{
	const struct meta_layout *l = &in->layout;
	printf("path:       %s\n", path);
	printf("inode:      %" PRIu64 " (%s)\n", in->ino,
	       in->type == META_T_DIR ? "directory" : in->type == META_T_FILE ? "file" : "symlink");
	if (!in->has_layout) {
		printf("layout:     none\n");
		return;
	}
	printf("chunk-size: %" PRIu32 "\n", l->chunk_size);
	printf("stripe:     %" PRIu32 "\n", l->stripe);
	printf("table:      %" PRIu32 "\n", l->table_id);
	if (l->nchains) {
		printf("seed:       0x%016" PRIx64 "\n", l->seed);
		printf("chains:    ");
		for (uint32_t i = 0; i < l->nchains && i < META_MAX_STRIPE; i++)
			printf(" %" PRIu32, l->chains[i]);
		printf("\n");
	}
}

int cli_admin_layout(int argc, char **argv)
{
	struct layout_conf lc;
	uint8_t secret[AUTH_SECRET_MAX];
	char err[512], metabuf[LAYOUT_MAX_META * (ROUTE_ADDR_MAX + 1)];
	const char *metas[LAYOUT_MAX_META];
	meta_client *mc = NULL;
	int npos = 0, status = 2, rc;

	memset(&lc, 0, sizeof(lc));
	log_set_level(LOG_LVL_ERR);
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		}
	rc = cfg_parse(opts, &lc, argc, argv, &npos, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "chainfs admin layout: %s\n", err);
		goto out;
	}
	int set = npos == 2 && !strcmp(argv[0], "set");
	if (npos != 2 || (!set && strcmp(argv[0], "get"))) {
		usage(stderr);
		goto out;
	}
	const char *path = argv[1];
	if (!*lc.mgmtd || !*lc.cluster_id || !*lc.secret_file) {
		fprintf(stderr, "chainfs admin layout: --mgmtd, --cluster-id and --secret-file are "
		                "required\n");
		goto out;
	}
	uint32_t chunk = 0, stripe = 0, table = 0;
	if ((*lc.chunk_size && parse_u32("chunk-size", lc.chunk_size, 1, &chunk)) ||
	    (*lc.stripe && parse_u32("stripe", lc.stripe, 0, &stripe)) ||
	    (*lc.table && parse_u32("table", lc.table, 0, &table)))
		goto out;
	if (!set && (*lc.chunk_size || *lc.stripe || *lc.table)) {
		fprintf(stderr, "chainfs admin layout get: --chunk-size, --stripe and --table are "
		                "for set\n");
		goto out;
	}
	if (set && !*lc.chunk_size && !*lc.stripe && !*lc.table) {
		fprintf(stderr, "chainfs admin layout set: give at least one of --chunk-size, "
		                "--stripe, --table\n");
		goto out;
	}
	status = 1;
	rc = auth_load_secret(lc.secret_file, secret, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "chainfs admin layout: %s\n", err);
		goto out;
	}
	size_t slen = (size_t)rc;
	if (*lc.meta)
		snprintf(metabuf, sizeof(metabuf), "%s", lc.meta);
	else if (meta_from_mgmtd(&lc, secret, slen, metabuf, sizeof(metabuf)) < 0)
		goto out;
	int nmeta = 0;
	for (char *s = metabuf, *tok; (tok = strsep(&s, ","));) {
		if (!*tok)
			continue;
		if (nmeta == LAYOUT_MAX_META) {
			fprintf(stderr, "chainfs admin layout: at most %d meta addresses\n",
			        LAYOUT_MAX_META);
			goto out;
		}
		metas[nmeta++] = tok;
	}
	struct meta_client_opts co = {
	    .addrs = metas,
	    .naddrs = (size_t)nmeta,
	    .cluster_id = lc.cluster_id,
	    .secret = secret,
	    .secret_len = slen,
	    .timeout_ms = (uint32_t)lc.timeout_ms,
	    .retry_ms = (uint32_t)lc.timeout_ms * 2,
	};
	if (meta_client_new(&co, &mc, err, sizeof(err))) {
		fprintf(stderr, "chainfs admin layout: %s\n", err);
		goto out;
	}
	struct meta_inode *in = malloc(sizeof(*in));
	if (!in) {
		fprintf(stderr, "chainfs admin layout: out of memory\n");
		goto out;
	}
	rc = resolve(mc, path, in);
	if (rc == 0 && set) {
		if (in->type != META_T_DIR) {
			fprintf(stderr, "chainfs admin layout set: '%s' is not a directory (ENOTDIR)\n",
			        path);
			rc = -ENOTDIR;
		} else {
			/* Fields not given keep the directory's current values (every
			 * directory holds a default: mkdir copies its parent's). */
			const struct meta_layout *cur = &in->layout;
			rc = meta_client_layout_set(mc, &ROOT, in->ino,
			                            *lc.chunk_size ? chunk : cur->chunk_size,
			                            *lc.stripe ? stripe : cur->stripe,
			                            *lc.table ? table : cur->table_id);
			if (rc)
				fprintf(stderr, "chainfs admin layout set: %s (%s)\n",
				        *meta_client_last_error() ? meta_client_last_error()
				                                  : cfs_strerror(rc),
				        cfs_errname(rc));
			else
				rc = meta_client_getattr(mc, &ROOT, in->ino, in);
		}
	}
	if (rc == 0)
		print_layout(path, in);
	free(in);
	status = rc ? 1 : 0;
out:
	meta_client_free(mc);
	cfg_free(opts, &lc);
	return status;
}
