/* buf.c - growable byte buffer (buf.h). Doubling growth; failures leave
 * the buffer untouched. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

void buf_fini(struct buf *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

int buf_reserve(struct buf *b, size_t n)
{
	if (n <= b->cap - b->len)
		return 0;
	if (n > SIZE_MAX / 2 - b->len)
		return -ENOMEM;
	size_t need = b->len + n;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	uint8_t *p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

uint8_t *buf_extend(struct buf *b, size_t n)
{
	if (buf_reserve(b, n) < 0)
		return NULL;
	uint8_t *p = b->data + b->len;
	b->len += n;
	return p;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	uint8_t *dst = buf_extend(b, n);
	if (!dst)
		return -ENOMEM;
	memcpy(dst, p, n);
	return 0;
}
