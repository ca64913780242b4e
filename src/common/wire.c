/* wire.c - bounds-checked little-endian cursor codecs (wire.h).
 *
 * Invariant: a reader never moves past r->end, and once r->err is set the
 * cursor stops; every getter zeroes its output on failure so a decoder that
 * forgets to check never sees stale stack bytes. */
#include <errno.h>

#include "common/status.h"
#include "common/wire.h"

int wire_fail(struct wire_reader *r, int err)
{
	if (!r->err)
		r->err = err;
	return r->err;
}

static inline int take(struct wire_reader *r, size_t n, const uint8_t **out)
{
	if (r->err)
		return r->err;
	if (wire_left(r) < n)
		return wire_fail(r, -CFS_EPROTO);
	*out = r->p;
	r->p += n;
	return 0;
}

int wire_get_u8(struct wire_reader *r, uint8_t *out)
{
	const uint8_t *p = NULL; /* set by take(); NULL keeps -fPIC builds free of a false warning */
	*out = 0;
	if (take(r, 1, &p))
		return r->err;
	*out = p[0];
	return 0;
}

int wire_get_u16(struct wire_reader *r, uint16_t *out)
{
	const uint8_t *p = NULL; /* set by take(); NULL keeps -fPIC builds free of a false warning */
	*out = 0;
	if (take(r, 2, &p))
		return r->err;
	*out = wire_load_u16(p);
	return 0;
}

int wire_get_u32(struct wire_reader *r, uint32_t *out)
{
	const uint8_t *p = NULL; /* set by take(); NULL keeps -fPIC builds free of a false warning */
	*out = 0;
	if (take(r, 4, &p))
		return r->err;
	*out = wire_load_u32(p);
	return 0;
}

int wire_get_u64(struct wire_reader *r, uint64_t *out)
{
	const uint8_t *p = NULL; /* set by take(); NULL keeps -fPIC builds free of a false warning */
	*out = 0;
	if (take(r, 8, &p))
		return r->err;
	*out = wire_load_u64(p);
	return 0;
}

int wire_get_i32(struct wire_reader *r, int32_t *out)
{
	uint32_t v;
	int rc = wire_get_u32(r, &v);
	*out = (int32_t)v;
	return rc;
}

int wire_get_i64(struct wire_reader *r, int64_t *out)
{
	uint64_t v;
	int rc = wire_get_u64(r, &v);
	*out = (int64_t)v;
	return rc;
}

int wire_get_bytes(struct wire_reader *r, void *out, size_t n)
{
	const uint8_t *p = NULL; /* set by take(); NULL keeps -fPIC builds free of a false warning */
	if (take(r, n, &p)) {
		memset(out, 0, n);
		return r->err;
	}
	memcpy(out, p, n);
	return 0;
}

int wire_get_ref(struct wire_reader *r, size_t n, const uint8_t **out)
{
	*out = NULL;
	return take(r, n, out);
}

int wire_get_blob(struct wire_reader *r, size_t max, const uint8_t **out, uint32_t *len)
{
	uint32_t n;
	*out = NULL;
	*len = 0;
	if (wire_get_u32(r, &n))
		return r->err;
	if (n > max)
		return wire_fail(r, -CFS_EPROTO);
	if (take(r, n, out))
		return r->err;
	*len = n;
	return 0;
}

static inline uint8_t *grow(struct wire_writer *w, size_t n)
{
	if (w->err)
		return NULL;
	uint8_t *p = buf_extend(w->b, n);
	if (!p)
		w->err = -ENOMEM;
	return p;
}

void wire_put_u8(struct wire_writer *w, uint8_t v)
{
	uint8_t *p = grow(w, 1);
	if (p)
		p[0] = v;
}

void wire_put_u16(struct wire_writer *w, uint16_t v)
{
	uint8_t *p = grow(w, 2);
	if (p)
		wire_store_u16(p, v);
}

void wire_put_u32(struct wire_writer *w, uint32_t v)
{
	uint8_t *p = grow(w, 4);
	if (p)
		wire_store_u32(p, v);
}

void wire_put_u64(struct wire_writer *w, uint64_t v)
{
	uint8_t *p = grow(w, 8);
	if (p)
		wire_store_u64(p, v);
}

void wire_put_i32(struct wire_writer *w, int32_t v) { wire_put_u32(w, (uint32_t)v); }
void wire_put_i64(struct wire_writer *w, int64_t v) { wire_put_u64(w, (uint64_t)v); }

void wire_put_bytes(struct wire_writer *w, const void *p, size_t n)
{
	if (n == 0)
		return;
	uint8_t *d = grow(w, n);
	if (d)
		memcpy(d, p, n);
}

void wire_put_blob(struct wire_writer *w, const void *p, uint32_t n)
{
	wire_put_u32(w, n);
	wire_put_bytes(w, p, n);
}
