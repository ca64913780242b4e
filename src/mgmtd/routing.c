/* routing.c - routing info model and codec (layout in routing.h).
 *
 * How it works: each record type has one validator used by both the add_*
 * functions and the decoder, so nothing the model accepts fails to decode
 * and nothing decoded could not have been added. The whole-info encoder
 * writes records with a length placeholder and patches it afterwards
 * (offsets, not pointers: the buffer may move while growing).
 *
 * Invariants: arrays sorted by strictly increasing id ((id, version) for
 * tables); every stored record passes its validator. The decoder enforces
 * both (canonical form: a duplicate or out-of-order id is malformed), so
 * decode(encode(x)) == x and encode(decode(b)) is a fixed point.
 */
#include "mgmtd/routing.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/status.h"
#include "common/wire.h"
#include "common/xalloc.h"

/* Smallest encoded size of each record, length prefix included: bounds a
 * count by the bytes present before anything is allocated. */
#define MIN_NODE_REC   (4 + 4 + 1 + 1 + 4)
#define MIN_TARGET_REC (4 + 4 + 4 + 4 + 1 + 1 + 8 + 8)
#define MIN_CHAIN_REC  (4 + 4 + 4 + 1 + 5)
#define MIN_TABLE_REC  (4 + 4 + 4 + 4)

const char *route_node_type_name(unsigned v)
{
	switch (v) {
	case ROUTE_NODE_MGMTD:
		return "mgmtd";
	case ROUTE_NODE_META:
		return "meta";
	case ROUTE_NODE_STORAGE:
		return "storage";
	case ROUTE_NODE_CLIENT:
		return "client";
	}
	return "?";
}

const char *route_node_state_name(unsigned v)
{
	switch (v) {
	case ROUTE_NODE_ACTIVE:
		return "active";
	case ROUTE_NODE_FAILED:
		return "failed";
	case ROUTE_NODE_DISABLED:
		return "disabled";
	}
	return "?";
}

static bool valid_node(const struct route_node *n)
{
	size_t len = strnlen(n->addr, sizeof(n->addr));
	return n->id >= 1 && n->id <= ROUTE_NODE_ID_MAX && n->type >= ROUTE_NODE_MGMTD &&
	       n->type <= ROUTE_NODE_CLIENT && n->state >= ROUTE_NODE_ACTIVE &&
	       n->state <= ROUTE_NODE_DISABLED && len <= ROUTE_ADDR_MAX;
}

static bool valid_target(const struct route_target *t)
{
	return t->id != 0 && t->node_id >= 1 && t->node_id <= ROUTE_NODE_ID_MAX &&
	       chain_local_state_valid(t->local_state) && chain_pub_state_valid(t->pub_state);
}

static bool valid_chain(const struct route_chain *c)
{
	if (c->id == 0 || c->n < 1 || c->n > CHAIN_MAX_TARGETS)
		return false;
	for (uint32_t i = 0; i < c->n; i++) {
		if (c->m[i].target_id == 0 || !chain_pub_state_valid(c->m[i].state))
			return false;
		for (uint32_t j = 0; j < i; j++)
			if (c->m[j].target_id == c->m[i].target_id)
				return false;
	}
	return true;
}

static bool valid_table(uint32_t id, const uint32_t *chains, uint32_t n)
{
	if (id < 1 || id > ROUTE_TABLE_ID_MAX || n > ROUTE_CHAIN_INDEX_MAX)
		return false;
	for (uint32_t i = 0; i < n; i++)
		if (chains[i] == 0)
			return false;
	return true;
}

void route_info_init(struct route_info *ri)
{
	memset(ri, 0, sizeof(*ri));
}

void route_table_fini(struct route_table *t)
{
	if (!t)
		return;
	free(t->chains);
	t->chains = NULL;
	t->n = 0;
}

void route_info_fini(struct route_info *ri)
{
	if (!ri)
		return;
	for (size_t i = 0; i < ri->n_tables; i++)
		route_table_fini(&ri->tables[i]);
	free(ri->nodes);
	free(ri->targets);
	free(ri->chains);
	free(ri->tables);
	route_info_init(ri);
}

/* Index of the first element whose key is >= KEY in a sorted array of
 * records whose first member is the u32 id. */
#define LOWER_BOUND(arr, n, key, idx)                                                              \
	do {                                                                                       \
		size_t lo_ = 0, hi_ = (n);                                                         \
		while (lo_ < hi_) {                                                                \
			size_t mid_ = lo_ + (hi_ - lo_) / 2;                                       \
			if ((arr)[mid_].id < (key))                                                \
				lo_ = mid_ + 1;                                                    \
			else                                                                       \
				hi_ = mid_;                                                        \
		}                                                                                  \
		(idx) = lo_;                                                                       \
	} while (0)

/* Makes room at index AT of an array of N elements of SIZE bytes. */
static void *insert_at(void *arr, size_t *n, size_t size, size_t at)
{
	arr = xrealloc(arr, (*n + 1) * size);
	memmove((char *)arr + (at + 1) * size, (char *)arr + at * size, (*n - at) * size);
	(*n)++;
	return arr;
}

int route_info_add_node(struct route_info *ri, const struct route_node *n)
{
	if (!valid_node(n))
		return -EINVAL;
	size_t at;
	LOWER_BOUND(ri->nodes, ri->n_nodes, n->id, at);
	if (at < ri->n_nodes && ri->nodes[at].id == n->id)
		return -EEXIST;
	ri->nodes = insert_at(ri->nodes, &ri->n_nodes, sizeof(*n), at);
	ri->nodes[at] = *n;
	return 0;
}

int route_info_add_target(struct route_info *ri, const struct route_target *t)
{
	if (!valid_target(t))
		return -EINVAL;
	size_t at;
	LOWER_BOUND(ri->targets, ri->n_targets, t->id, at);
	if (at < ri->n_targets && ri->targets[at].id == t->id)
		return -EEXIST;
	ri->targets = insert_at(ri->targets, &ri->n_targets, sizeof(*t), at);
	ri->targets[at] = *t;
	return 0;
}

int route_info_add_chain(struct route_info *ri, const struct route_chain *c)
{
	if (!valid_chain(c))
		return -EINVAL;
	size_t at;
	LOWER_BOUND(ri->chains, ri->n_chains, c->id, at);
	if (at < ri->n_chains && ri->chains[at].id == c->id)
		return -EEXIST;
	ri->chains = insert_at(ri->chains, &ri->n_chains, sizeof(*c), at);
	ri->chains[at] = *c;
	return 0;
}

static int table_cmp(const struct route_table *t, uint32_t id, uint32_t version)
{
	if (t->id != id)
		return t->id < id ? -1 : 1;
	if (t->version != version)
		return t->version < version ? -1 : 1;
	return 0;
}

int route_info_add_table(struct route_info *ri, uint32_t id, uint32_t version,
                         const uint32_t *chains, uint32_t n)
{
	if (!valid_table(id, chains, n))
		return -EINVAL;
	size_t at = 0;
	while (at < ri->n_tables && table_cmp(&ri->tables[at], id, version) < 0)
		at++;
	if (at < ri->n_tables && table_cmp(&ri->tables[at], id, version) == 0)
		return -EEXIST;
	ri->tables = insert_at(ri->tables, &ri->n_tables, sizeof(*ri->tables), at);
	struct route_table *t = &ri->tables[at];
	t->id = id;
	t->version = version;
	t->n = n;
	t->chains = xmalloc((n ? n : 1) * sizeof(*t->chains));
	if (n)
		memcpy(t->chains, chains, n * sizeof(*chains));
	return 0;
}

const struct route_node *route_find_node(const struct route_info *ri, uint32_t id)
{
	size_t at;
	LOWER_BOUND(ri->nodes, ri->n_nodes, id, at);
	return at < ri->n_nodes && ri->nodes[at].id == id ? &ri->nodes[at] : NULL;
}

const struct route_target *route_find_target(const struct route_info *ri, uint32_t id)
{
	size_t at;
	LOWER_BOUND(ri->targets, ri->n_targets, id, at);
	return at < ri->n_targets && ri->targets[at].id == id ? &ri->targets[at] : NULL;
}

const struct route_chain *route_find_chain(const struct route_info *ri, uint32_t id)
{
	size_t at;
	LOWER_BOUND(ri->chains, ri->n_chains, id, at);
	return at < ri->n_chains && ri->chains[at].id == id ? &ri->chains[at] : NULL;
}

const struct route_table *route_find_table(const struct route_info *ri, uint32_t id)
{
	const struct route_table *best = NULL;
	size_t at;
	LOWER_BOUND(ri->tables, ri->n_tables, id, at);
	for (; at < ri->n_tables && ri->tables[at].id == id; at++)
		best = &ri->tables[at]; /* versions ascend within an id */
	return best;
}

static int check_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int check_fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

int route_info_check(const struct route_info *ri, char *err, size_t errlen)
{
	for (size_t i = 0; i < ri->n_targets; i++) {
		const struct route_target *t = &ri->targets[i];
		if (!route_find_node(ri, t->node_id))
			return check_fail(err, errlen, "target %u: node %u unknown", t->id,
			                  t->node_id);
		if (!t->chain_id)
			continue;
		const struct route_chain *c = route_find_chain(ri, t->chain_id);
		bool found = false;
		for (uint32_t j = 0; c && j < c->n; j++)
			found |= c->m[j].target_id == t->id;
		if (!found)
			return check_fail(err, errlen, "target %u: not in its chain %u", t->id,
			                  t->chain_id);
	}
	for (size_t i = 0; i < ri->n_chains; i++) {
		const struct route_chain *c = &ri->chains[i];
		for (uint32_t j = 0; j < c->n; j++) {
			const struct route_target *t = route_find_target(ri, c->m[j].target_id);
			if (!t)
				return check_fail(err, errlen, "chain %u: target %u unknown", c->id,
				                  c->m[j].target_id);
			if (t->chain_id != c->id)
				return check_fail(err, errlen,
				                  "chain %u: target %u belongs to chain %u", c->id,
				                  t->id, t->chain_id);
			if (t->pub_state != c->m[j].state)
				return check_fail(err, errlen,
				                  "chain %u: target %u is %s here, %s in "
				                  "its own record",
				                  c->id, t->id, chain_pub_state_name(c->m[j].state),
				                  chain_pub_state_name(t->pub_state));
		}
	}
	for (size_t i = 0; i < ri->n_tables; i++) {
		const struct route_table *t = &ri->tables[i];
		for (uint32_t j = 0; j < t->n; j++)
			if (!route_find_chain(ri, t->chains[j]))
				return check_fail(err, errlen, "table %u v%u: chain %u unknown",
				                  t->id, t->version, t->chains[j]);
	}
	return 0;
}

/* Builds the transition input of chain C from the targets and nodes. */
static int chain_input(const struct route_info *ri, const struct route_chain *c,
                       struct chain_member *in)
{
	for (uint32_t j = 0; j < c->n; j++) {
		const struct route_target *t = route_find_target(ri, c->m[j].target_id);
		const struct route_node *nd = t ? route_find_node(ri, t->node_id) : NULL;
		if (!nd)
			return -EINVAL;
		in[j] = (struct chain_member){.target_id = t->id,
		                              .ps = c->m[j].state,
		                              .ls = t->local_state,
		                              .node_alive = nd->state == ROUTE_NODE_ACTIVE};
	}
	return 0;
}

int route_info_update_chains(struct route_info *ri)
{
	struct chain_member in[CHAIN_MAX_TARGETS], out[CHAIN_MAX_TARGETS];
	uint32_t ver;
	int changed = 0, rc;
	/* Dry run first, so an error leaves ri untouched. */
	for (size_t i = 0; i < ri->n_chains; i++) {
		if ((rc = chain_input(ri, &ri->chains[i], in)) < 0)
			return rc;
		if ((rc = chain_transition(in, ri->chains[i].n, ri->chains[i].version, out, &ver)) <
		    0)
			return rc;
		changed += rc;
	}
	if (changed && ri->version == UINT64_MAX)
		return -EOVERFLOW;
	for (size_t i = 0; changed && i < ri->n_chains; i++) {
		struct route_chain *c = &ri->chains[i];
		chain_input(ri, c, in);
		if (chain_transition(in, c->n, c->version, out, &c->version) <= 0)
			continue;
		for (uint32_t j = 0; j < c->n; j++) {
			c->m[j].target_id = out[j].target_id;
			c->m[j].state = out[j].ps;
			size_t at;
			LOWER_BOUND(ri->targets, ri->n_targets, out[j].target_id, at);
			ri->targets[at].pub_state = out[j].ps; /* exists: chain_input found it */
		}
	}
	if (changed)
		ri->version++;
	return changed;
}

/* ---- record codecs ---- */

static int finish_write(struct wire_writer *w, struct buf *out, size_t old_len)
{
	if (w->err) {
		out->len = old_len;
		return w->err;
	}
	return 0;
}

int route_node_encode(const struct route_node *n, struct buf *out)
{
	struct wire_writer w;
	size_t old = out->len;
	wire_writer_init(&w, out);
	wire_put_u32(&w, n->id);
	wire_put_u8(&w, (uint8_t)n->type);
	wire_put_u8(&w, (uint8_t)n->state);
	wire_put_blob(&w, n->addr, (uint32_t)strnlen(n->addr, sizeof(n->addr)));
	return finish_write(&w, out, old);
}

int route_node_decode(const uint8_t *p, size_t n, struct route_node *out)
{
	struct wire_reader r;
	uint8_t type, state;
	const uint8_t *addr;
	uint32_t alen;
	memset(out, 0, sizeof(*out));
	wire_reader_init(&r, p, n);
	wire_get_u32(&r, &out->id);
	wire_get_u8(&r, &type);
	wire_get_u8(&r, &state);
	wire_get_blob(&r, ROUTE_ADDR_MAX, &addr, &alen);
	if (r.err)
		return r.err;
	if (memchr(addr, 0, alen))
		return -CFS_EPROTO;
	memcpy(out->addr, addr, alen);
	out->addr[alen] = 0;
	out->type = (enum route_node_type)type;
	out->state = (enum route_node_state)state;
	return valid_node(out) ? 0 : -CFS_EPROTO;
}

int route_target_encode(const struct route_target *t, struct buf *out)
{
	struct wire_writer w;
	size_t old = out->len;
	wire_writer_init(&w, out);
	wire_put_u32(&w, t->id);
	wire_put_u32(&w, t->node_id);
	wire_put_u32(&w, t->chain_id);
	wire_put_u8(&w, (uint8_t)t->local_state);
	wire_put_u8(&w, (uint8_t)t->pub_state);
	wire_put_u64(&w, t->capacity);
	wire_put_u64(&w, t->used);
	return finish_write(&w, out, old);
}

int route_target_decode(const uint8_t *p, size_t n, struct route_target *out)
{
	struct wire_reader r;
	uint8_t ls, ps;
	memset(out, 0, sizeof(*out));
	wire_reader_init(&r, p, n);
	wire_get_u32(&r, &out->id);
	wire_get_u32(&r, &out->node_id);
	wire_get_u32(&r, &out->chain_id);
	wire_get_u8(&r, &ls);
	wire_get_u8(&r, &ps);
	wire_get_u64(&r, &out->capacity);
	wire_get_u64(&r, &out->used);
	if (r.err)
		return r.err;
	out->local_state = (enum chain_local_state)ls;
	out->pub_state = (enum chain_pub_state)ps;
	return valid_target(out) ? 0 : -CFS_EPROTO;
}

int route_chain_encode(const struct route_chain *c, struct buf *out)
{
	struct wire_writer w;
	size_t old = out->len;
	wire_writer_init(&w, out);
	wire_put_u32(&w, c->id);
	wire_put_u32(&w, c->version);
	wire_put_u8(&w, (uint8_t)c->n);
	for (uint32_t i = 0; i < c->n && i < CHAIN_MAX_TARGETS; i++) {
		wire_put_u32(&w, c->m[i].target_id);
		wire_put_u8(&w, (uint8_t)c->m[i].state);
	}
	return finish_write(&w, out, old);
}

int route_chain_decode(const uint8_t *p, size_t n, struct route_chain *out)
{
	struct wire_reader r;
	uint8_t cnt;
	memset(out, 0, sizeof(*out));
	wire_reader_init(&r, p, n);
	wire_get_u32(&r, &out->id);
	wire_get_u32(&r, &out->version);
	wire_get_u8(&r, &cnt);
	if (r.err)
		return r.err;
	if (cnt < 1 || cnt > CHAIN_MAX_TARGETS)
		return -CFS_EPROTO;
	out->n = cnt;
	for (uint32_t i = 0; i < cnt; i++) {
		uint8_t st;
		wire_get_u32(&r, &out->m[i].target_id);
		wire_get_u8(&r, &st);
		out->m[i].state = (enum chain_pub_state)st;
	}
	if (r.err)
		return r.err;
	return valid_chain(out) ? 0 : -CFS_EPROTO;
}

int route_table_encode(const struct route_table *t, struct buf *out)
{
	struct wire_writer w;
	size_t old = out->len;
	wire_writer_init(&w, out);
	wire_put_u32(&w, t->id);
	wire_put_u32(&w, t->version);
	wire_put_u32(&w, t->n);
	for (uint32_t i = 0; i < t->n; i++)
		wire_put_u32(&w, t->chains[i]);
	return finish_write(&w, out, old);
}

int route_table_decode(const uint8_t *p, size_t n, struct route_table *out)
{
	struct wire_reader r;
	memset(out, 0, sizeof(*out));
	wire_reader_init(&r, p, n);
	wire_get_u32(&r, &out->id);
	wire_get_u32(&r, &out->version);
	wire_get_u32(&r, &out->n);
	if (r.err)
		return r.err;
	if (out->n > ROUTE_CHAIN_INDEX_MAX || out->n > wire_left(&r) / 4) {
		out->n = 0;
		return -CFS_EPROTO;
	}
	out->chains = malloc((out->n ? out->n : 1) * sizeof(*out->chains));
	if (!out->chains) {
		out->n = 0;
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < out->n; i++)
		wire_get_u32(&r, &out->chains[i]);
	if (r.err || !valid_table(out->id, out->chains, out->n)) {
		route_table_fini(out);
		return -CFS_EPROTO;
	}
	return 0;
}

#define ROUTE_SEAL_MAGIC 0x52524643u /* "CFRR" little-endian */

int route_seal(enum route_rec kind, const uint8_t *rec, size_t n, struct buf *out)
{
	uint8_t *h = buf_extend(out, ROUTE_SEAL_LEN + n);
	if (!h)
		return -ENOMEM;
	wire_store_u32(h, ROUTE_SEAL_MAGIC);
	h[4] = (uint8_t)kind;
	h[5] = ROUTE_FORMAT_MAJOR;
	wire_store_u16(h + 6, ROUTE_FORMAT_MINOR);
	wire_store_u32(h + 8, crc32c(0, rec, n));
	if (n)
		memcpy(h + ROUTE_SEAL_LEN, rec, n);
	return 0;
}

int route_unseal(const uint8_t *p, size_t n, enum route_rec kind, const uint8_t **rec,
                 size_t *rec_len)
{
	*rec = NULL;
	*rec_len = 0;
	if (n < ROUTE_SEAL_LEN || wire_load_u32(p) != ROUTE_SEAL_MAGIC || p[4] != kind ||
	    p[5] != ROUTE_FORMAT_MAJOR ||
	    crc32c(0, p + ROUTE_SEAL_LEN, n - ROUTE_SEAL_LEN) != wire_load_u32(p + 8))
		return -CFS_EPROTO;
	*rec = p + ROUTE_SEAL_LEN;
	*rec_len = n - ROUTE_SEAL_LEN;
	return 0;
}

/* ---- whole routing info ---- */

/* Writes a u32 length placeholder, the record, then patches the length. */
#define PUT_RECORD(out, enc, rec)                                                                  \
	do {                                                                                       \
		size_t at_ = (out)->len;                                                           \
		if (!buf_extend((out), 4))                                                         \
			goto nomem;                                                                \
		if (enc((rec), (out)) < 0)                                                         \
			goto nomem;                                                                \
		wire_store_u32((out)->data + at_, (uint32_t)((out)->len - at_ - 4));               \
	} while (0)

int route_info_encode(const struct route_info *ri, struct buf *out)
{
	size_t old = out->len;
	if (!buf_extend(out, ROUTE_HEADER_LEN))
		return -ENOMEM;
	size_t body = out->len;
	struct wire_writer w;
	wire_writer_init(&w, out);
	wire_put_u64(&w, ri->version);
	wire_put_u32(&w, (uint32_t)ri->n_nodes);
	if (w.err)
		goto nomem;
	for (size_t i = 0; i < ri->n_nodes; i++)
		PUT_RECORD(out, route_node_encode, &ri->nodes[i]);
	wire_put_u32(&w, (uint32_t)ri->n_targets);
	if (w.err)
		goto nomem;
	for (size_t i = 0; i < ri->n_targets; i++)
		PUT_RECORD(out, route_target_encode, &ri->targets[i]);
	wire_put_u32(&w, (uint32_t)ri->n_chains);
	if (w.err)
		goto nomem;
	for (size_t i = 0; i < ri->n_chains; i++)
		PUT_RECORD(out, route_chain_encode, &ri->chains[i]);
	wire_put_u32(&w, (uint32_t)ri->n_tables);
	if (w.err)
		goto nomem;
	for (size_t i = 0; i < ri->n_tables; i++)
		PUT_RECORD(out, route_table_encode, &ri->tables[i]);

	uint8_t *h = out->data + old;
	size_t blen = out->len - body;
	wire_store_u32(h, ROUTE_MAGIC);
	wire_store_u16(h + 4, ROUTE_FORMAT_MAJOR);
	wire_store_u16(h + 6, ROUTE_FORMAT_MINOR);
	wire_store_u32(h + 8, (uint32_t)blen);
	wire_store_u32(h + 12, crc32c(0, out->data + body, blen));
	return 0;
nomem:
	out->len = old;
	return -ENOMEM;
}

/* Reads a count bounded by MAX and by how many records of at least MINREC
 * bytes the rest of the body can hold. */
static int get_count(struct wire_reader *r, uint32_t max, size_t minrec, uint32_t *n)
{
	if (wire_get_u32(r, n))
		return r->err;
	if (*n > max || *n > wire_left(r) / minrec)
		return wire_fail(r, -CFS_EPROTO);
	return 0;
}

/* The next record: u32 length + that many bytes, borrowed. */
static int get_record(struct wire_reader *r, const uint8_t **p, uint32_t *len)
{
	return wire_get_blob(r, wire_left(r), p, len);
}

static int decode_body(struct wire_reader *r, struct route_info *ri)
{
	uint32_t n;
	const uint8_t *p;
	uint32_t len;
	int rc;

	wire_get_u64(r, &ri->version);
	if (get_count(r, ROUTE_MAX_NODES, MIN_NODE_REC, &n))
		return r->err;
	if (n && !(ri->nodes = malloc(n * sizeof(*ri->nodes))))
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		if (get_record(r, &p, &len))
			return r->err;
		if ((rc = route_node_decode(p, len, &ri->nodes[i])) < 0)
			return rc;
		ri->n_nodes++;
		if (i && ri->nodes[i].id <= ri->nodes[i - 1].id)
			return -CFS_EPROTO;
	}

	if (get_count(r, ROUTE_MAX_TARGETS, MIN_TARGET_REC, &n))
		return r->err;
	if (n && !(ri->targets = malloc(n * sizeof(*ri->targets))))
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		if (get_record(r, &p, &len))
			return r->err;
		if ((rc = route_target_decode(p, len, &ri->targets[i])) < 0)
			return rc;
		ri->n_targets++;
		if (i && ri->targets[i].id <= ri->targets[i - 1].id)
			return -CFS_EPROTO;
	}

	if (get_count(r, ROUTE_MAX_CHAINS, MIN_CHAIN_REC, &n))
		return r->err;
	if (n && !(ri->chains = malloc(n * sizeof(*ri->chains))))
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		if (get_record(r, &p, &len))
			return r->err;
		if ((rc = route_chain_decode(p, len, &ri->chains[i])) < 0)
			return rc;
		ri->n_chains++;
		if (i && ri->chains[i].id <= ri->chains[i - 1].id)
			return -CFS_EPROTO;
	}

	if (get_count(r, ROUTE_MAX_TABLES, MIN_TABLE_REC, &n))
		return r->err;
	if (n && !(ri->tables = calloc(n, sizeof(*ri->tables))))
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		if (get_record(r, &p, &len))
			return r->err;
		if ((rc = route_table_decode(p, len, &ri->tables[i])) < 0)
			return rc;
		ri->n_tables++;
		if (i &&
		    table_cmp(&ri->tables[i - 1], ri->tables[i].id, ri->tables[i].version) >= 0)
			return -CFS_EPROTO;
	}
	/* Anything left was appended by a later minor: skipped. */
	return route_info_check(ri, NULL, 0) < 0 ? -CFS_EPROTO : 0;
}

int route_info_decode(const uint8_t *p, size_t n, struct route_info *out)
{
	route_info_init(out);
	if (n < ROUTE_HEADER_LEN || wire_load_u32(p) != ROUTE_MAGIC ||
	    wire_load_u16(p + 4) != ROUTE_FORMAT_MAJOR)
		return -CFS_EPROTO;
	uint32_t blen = wire_load_u32(p + 8);
	if (blen != n - ROUTE_HEADER_LEN ||
	    crc32c(0, p + ROUTE_HEADER_LEN, blen) != wire_load_u32(p + 12))
		return -CFS_EPROTO;
	struct wire_reader r;
	wire_reader_init(&r, p + ROUTE_HEADER_LEN, blen);
	int rc = decode_body(&r, out);
	if (rc < 0)
		route_info_fini(out);
	return rc;
}
