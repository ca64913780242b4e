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

int wire_get_short_(struct wire_reader *r) { return wire_fail(r, -CFS_EPROTO); }

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

void wire_put_slow_(struct wire_writer *w, const void *p, size_t n)
{
	uint8_t *d = grow(w, n);
	if (d)
		memcpy(d, p, n);
}

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
