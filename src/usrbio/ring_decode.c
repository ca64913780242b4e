/* ring_decode.c - see ring_decode.h. The SQE is read field by field with
 * memcpy from the shared page into locals (one read per field: the
 * application may change the bytes concurrently, so nothing is read
 * twice), then validated on the copy. */
#include "usrbio/ring_decode.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <string.h>

#include "common/hex.h"
#include "usrbio/ring_abi.h"

int usrbio_decode_sqe(const void *raw, uint32_t entries, int for_read, struct usrbio_sqe *out)
{
	struct cfs_ring_sqe s;
	memcpy(&s, raw, sizeof(s));
	memcpy(out->buf_id, s.buf_id, 16);
	out->buf_off = s.buf_off;
	out->file_off = s.file_off;
	out->len = s.len;
	out->userdata = s.userdata;
	out->reg = s.reg;
	out->index = s.index;
	out->has_crc = (s.op & CFS_OP_F_CRC) != 0;
	out->op = s.op & ~CFS_OP_F_CRC;
	out->crc = out->has_crc ? s.reserved : 0;
	if (s.index >= entries || (s.reserved != 0 && !out->has_crc))
		return -EINVAL;
	if (out->op != CFS_OP_READ && out->op != CFS_OP_WRITE)
		return -EINVAL;
	if (out->has_crc && out->op != CFS_OP_WRITE)
		return -EINVAL;
	if ((out->op == CFS_OP_READ) != (for_read != 0))
		return -EINVAL;
	if (s.len == 0 || s.len > CFS_IO_MAX_LEN)
		return -EINVAL;
	if (s.file_off > (uint64_t)INT64_MAX - s.len)
		return -EFBIG;
	return 0;
}

int usrbio_check_range(uint64_t iov_size, uint64_t buf_off, uint64_t len)
{
	if (buf_off > iov_size || len > iov_size - buf_off)
		return -EFAULT;
	return 0;
}

/* Parses a decimal (optionally negative when NEG_OK) up to the next '.'
 * or the end. */
static int parse_num(const char **p, int neg_ok, int64_t lo, int64_t hi, int64_t *out)
{
	const char *s = *p;
	int neg = 0;
	if (*s == '-' && neg_ok) {
		neg = 1;
		s++;
	}
	if (*s < '0' || *s > '9')
		return -EINVAL;
	int64_t v = 0;
	while (*s >= '0' && *s <= '9') {
		if (v > (INT64_MAX - 9) / 10)
			return -EINVAL;
		v = v * 10 + (*s - '0');
		s++;
	}
	if (neg)
		v = -v;
	if (v < lo || v > hi || (*s && *s != '.'))
		return -EINVAL;
	*p = s;
	*out = v;
	return 0;
}

int usrbio_parse_name(const char *name, struct usrbio_name *out)
{
	memset(out, 0, sizeof(*out));
	/* The id is 32 hex digits, or the same in the dashed UUID form
	 * (8-4-4-4-12: 3FS's Python package names its links str(uuid4())). */
	int dashed = name[0] && strlen(name) >= 36 && name[8] == '-';
	const char *p = name;
	for (int i = 0; i < 16; i++) {
		if (dashed && (i == 4 || i == 6 || i == 8 || i == 10)) {
			if (*p != '-')
				return -EINVAL;
			p++;
		}
		int hi = hex_digit(p[0]), lo = hi < 0 ? -1 : hex_digit(p[1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out->id[i] = (uint8_t)(hi << 4 | lo);
		p += 2;
	}
	unsigned seen = 0;
	while (*p) {
		if (*p != '.')
			return -EINVAL;
		char k = p[1];
		p += 2;
		int64_t v;
		unsigned bit;
		switch (k) {
		case 'b':
			bit = 1;
			if (parse_num(&p, 0, 1, INT64_MAX, &v))
				return -EINVAL;
			out->block_size = (uint64_t)v;
			break;
		case 'r':
		case 'w':
			bit = 2;
			if (parse_num(&p, 1, -CFS_RING_MAX_ENTRIES, CFS_RING_MAX_ENTRIES, &v))
				return -EINVAL;
			out->is_ring = 1;
			out->for_read = k == 'r';
			out->io_depth = (int)v;
			break;
		case 'p':
			bit = 4;
			if ((*p != 'h' && *p != 'l') || (p[1] && p[1] != '.'))
				return -EINVAL;
			out->priority = *p == 'h' ? -1 : 1;
			p++;
			break;
		case 't':
			bit = 8;
			if (parse_num(&p, 0, 0, INT32_MAX, &v))
				return -EINVAL;
			out->timeout_ms = (uint32_t)v;
			break;
		case 'f': {
			bit = 16;
			int n = 0;
			uint64_t f = 0;
			while (*p == '0' || *p == '1') {
				if (++n > 64)
					return -EINVAL;
				f = f << 1 | (uint64_t)(*p - '0');
				p++;
			}
			if (!n || (*p && *p != '.'))
				return -EINVAL;
			out->flags = f;
			break;
		}
		default:
			return -EINVAL;
		}
		if (seen & bit)
			return -EINVAL;
		seen |= bit;
	}
	if (!out->is_ring && (seen & (4 | 8 | 16)))
		return -EINVAL;
	return 0;
}
