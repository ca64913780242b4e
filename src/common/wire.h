/* wire.h - bounds-checked little-endian encoding over a cursor.
 *
 * A wire_reader walks [p, end). Every get checks the remaining length; the
 * first failure latches r->err = -CFS_EPROTO and every later get returns the
 * same error without reading, so a decoder can read a whole message and check
 * once. Structs are never memcpy'd to or from the wire.
 *
 * A wire_writer appends into a struct buf (buf.h); out-of-memory latches
 * -ENOMEM the same way.
 */
#ifndef CFS_COMMON_WIRE_H
#define CFS_COMMON_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/buf.h"

/* Fixed-position helpers for headers and keys: no bounds check, the
 * caller guarantees room. One unaligned load or store each (memcpy of the
 * integer, byte-swapped on a big-endian host for the little-endian ones
 * and on a little-endian host for the big-endian ones): as byte loops they
 * compiled to a loop of eight shifts and stores per u64 at -O2. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define WIRE_LE16_(v) __builtin_bswap16(v)
#define WIRE_LE32_(v) __builtin_bswap32(v)
#define WIRE_LE64_(v) __builtin_bswap64(v)
#define WIRE_BE32_(v) (v)
#define WIRE_BE64_(v) (v)
#else
#define WIRE_LE16_(v) (v)
#define WIRE_LE32_(v) (v)
#define WIRE_LE64_(v) (v)
#define WIRE_BE32_(v) __builtin_bswap32(v)
#define WIRE_BE64_(v) __builtin_bswap64(v)
#endif
static inline void wire_store_u16(uint8_t *p, uint16_t v) { v = WIRE_LE16_(v); memcpy(p, &v, 2); }
static inline void wire_store_u32(uint8_t *p, uint32_t v) { v = WIRE_LE32_(v); memcpy(p, &v, 4); }
static inline void wire_store_u64(uint8_t *p, uint64_t v) { v = WIRE_LE64_(v); memcpy(p, &v, 8); }
static inline uint16_t wire_load_u16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return WIRE_LE16_(v);
}
static inline uint32_t wire_load_u32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return WIRE_LE32_(v);
}
static inline uint64_t wire_load_u64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return WIRE_LE64_(v);
}
/* Big-endian, for keys whose byte order must follow numeric order. */
static inline void wire_store_be64(uint8_t *p, uint64_t v) { v = WIRE_BE64_(v); memcpy(p, &v, 8); }
static inline uint64_t wire_load_be64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return WIRE_BE64_(v);
}
static inline void wire_store_be32(uint8_t *p, uint32_t v) { v = WIRE_BE32_(v); memcpy(p, &v, 4); }
static inline uint32_t wire_load_be32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return WIRE_BE32_(v);
}

struct wire_reader {
	const uint8_t *p;   /* next byte to read */
	const uint8_t *end; /* one past the last readable byte */
	int err;            /* 0, or the first error (negative) */
};

static inline void wire_reader_init(struct wire_reader *r, const void *p, size_t n)
{
	r->p = (const uint8_t *)p;
	r->end = r->p + n;
	r->err = 0;
}

static inline size_t wire_left(const struct wire_reader *r) { return (size_t)(r->end - r->p); }

/* Each returns 0 or the latched negative error; *out is 0 on error. The
 * scalar getters and putters below are inline: a message codec calls them
 * per field, and out of line (a call, then a byte loop) they were 15 % of
 * the instructions of an in-process create (bench/history.md "The
 * in-process call's codec"). The rare paths (short input, a full buffer,
 * a latched error) stay in wire.c. */
int wire_get_short_(struct wire_reader *r); /* latches -CFS_EPROTO; returns r->err */
#define WIRE_GET_(r, n, out, load)                       \
	do {                                             \
		if ((r)->err || wire_left(r) < (n)) {    \
			*(out) = 0;                      \
			return wire_get_short_(r);       \
		}                                        \
		*(out) = load((r)->p);                   \
		(r)->p += (n);                           \
		return 0;                                \
	} while (0)
static inline uint8_t wire_load_u8_(const uint8_t *p) { return p[0]; }
static inline int wire_get_u8(struct wire_reader *r, uint8_t *out) { WIRE_GET_(r, 1, out, wire_load_u8_); }
static inline int wire_get_u16(struct wire_reader *r, uint16_t *out) { WIRE_GET_(r, 2, out, wire_load_u16); }
static inline int wire_get_u32(struct wire_reader *r, uint32_t *out) { WIRE_GET_(r, 4, out, wire_load_u32); }
static inline int wire_get_u64(struct wire_reader *r, uint64_t *out) { WIRE_GET_(r, 8, out, wire_load_u64); }
static inline int wire_get_i32(struct wire_reader *r, int32_t *out)
{
	uint32_t v;
	int rc = wire_get_u32(r, &v);
	*out = (int32_t)v;
	return rc;
}
static inline int wire_get_i64(struct wire_reader *r, int64_t *out)
{
	uint64_t v;
	int rc = wire_get_u64(r, &v);
	*out = (int64_t)v;
	return rc;
}
/* Copies N raw bytes into OUT. */
int wire_get_bytes(struct wire_reader *r, void *out, size_t n);
/* Borrows N raw bytes: *out points into the reader's buffer. */
int wire_get_ref(struct wire_reader *r, size_t n, const uint8_t **out);
/* Length-prefixed (u32) byte string, borrowed; fails if longer than MAX. */
int wire_get_blob(struct wire_reader *r, size_t max, const uint8_t **out, uint32_t *len);
/* Fails the reader with ERR (negative) unless it already failed; returns r->err. */
int wire_fail(struct wire_reader *r, int err);

struct wire_writer {
	struct buf *b; /* borrowed destination */
	int err;       /* 0 or -ENOMEM */
};

static inline void wire_writer_init(struct wire_writer *w, struct buf *b) { w->b = b; w->err = 0; }
/* Appends N bytes at P through the buffer's growth (or latches -ENOMEM). */
void wire_put_slow_(struct wire_writer *w, const void *p, size_t n);
#define WIRE_PUT_(w, n, store, v)                                     \
	do {                                                          \
		uint8_t tmp_[n];                                      \
		if (!(w)->err && (w)->b->cap - (w)->b->len >= (n)) {  \
			store((w)->b->data + (w)->b->len, v);         \
			(w)->b->len += (n);                           \
			return;                                       \
		}                                                     \
		store(tmp_, v);                                       \
		wire_put_slow_(w, tmp_, n);                           \
	} while (0)
static inline void wire_store_u8_(uint8_t *p, uint8_t v) { p[0] = v; }
static inline void wire_put_u8(struct wire_writer *w, uint8_t v) { WIRE_PUT_(w, 1, wire_store_u8_, v); }
static inline void wire_put_u16(struct wire_writer *w, uint16_t v) { WIRE_PUT_(w, 2, wire_store_u16, v); }
static inline void wire_put_u32(struct wire_writer *w, uint32_t v) { WIRE_PUT_(w, 4, wire_store_u32, v); }
static inline void wire_put_u64(struct wire_writer *w, uint64_t v) { WIRE_PUT_(w, 8, wire_store_u64, v); }
static inline void wire_put_i32(struct wire_writer *w, int32_t v) { wire_put_u32(w, (uint32_t)v); }
static inline void wire_put_i64(struct wire_writer *w, int64_t v) { wire_put_u64(w, (uint64_t)v); }
void wire_put_bytes(struct wire_writer *w, const void *p, size_t n);
/* u32 length then the bytes. */
void wire_put_blob(struct wire_writer *w, const void *p, uint32_t n);

/* Messages declared once.
 *
 * A message whose fields are fixed-width integers is written as one field
 * list, F(type, name) per field in wire order, type one of u8 u16 u32 u64
 * i32 i64. WIRE_STRUCT declares the struct from that list and
 * WIRE_FIELDS_CODEC defines NAME_put(w, m) / NAME_get(r, m), which append
 * or read the fields in the same order, so the struct, the encoder and the
 * decoder cannot drift apart. Comments may sit inside the list. Fields
 * appended at the end of a list are what the protocol's minor-version rule
 * allows (decoders skip unknown trailing bytes). Messages with counts,
 * arrays or blobs use these helpers for their fixed parts and code the rest
 * by hand. */
typedef uint8_t wire_u8_t;
typedef uint16_t wire_u16_t;
typedef uint32_t wire_u32_t;
typedef uint64_t wire_u64_t;
typedef int32_t wire_i32_t;
typedef int64_t wire_i64_t;

#define WIRE_DECL_FIELD_(t, f) wire_##t##_t f;
#define WIRE_PUT_FIELD_(t, f) wire_put_##t(w, m->f);
#define WIRE_GET_FIELD_(t, f) wire_get_##t(r, &m->f);

#define WIRE_STRUCT(name, FIELDS) \
	struct name {             \
		FIELDS(WIRE_DECL_FIELD_) \
	}

#define WIRE_FIELDS_CODEC(name, FIELDS)                                                    \
	static inline void name##_put(struct wire_writer *w, const struct name *m) { FIELDS(WIRE_PUT_FIELD_) } \
	static inline void name##_get(struct wire_reader *r, struct name *m) { FIELDS(WIRE_GET_FIELD_) }

#endif
