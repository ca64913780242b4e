/* fuzz_usrbio_ring.c - the daemon's decoders of bytes an application
 * controls (src/usrbio/ring_decode.h): a ring submission entry and a
 * registration symlink name. The first byte picks one. An SQE that decodes
 * must satisfy every promise the server relies on; a name that parses
 * must give a ring depth within the entry limit. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "usrbio/ring_abi.h"
#include "usrbio/ring_decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] % 2 == 0) {
		if (size < 6 + sizeof(struct cfs_ring_sqe))
			return 0;
		uint32_t entries;
		memcpy(&entries, data + 1, 4);
		int for_read = data[5] & 1;
		struct usrbio_sqe s;
		int rc = usrbio_decode_sqe(data + 6, entries, for_read, &s);
		if (rc == 0) {
			check(s.index < entries);
			check(s.len >= 1 && s.len <= CFS_IO_MAX_LEN);
			check(s.op == (for_read ? CFS_OP_READ : CFS_OP_WRITE));
			check(!s.has_crc || s.op == CFS_OP_WRITE);
			check(s.file_off + s.len >= s.file_off);
			uint64_t iov_size = s.userdata;
			if (usrbio_check_range(iov_size, s.buf_off, s.len) == 0)
				check(s.buf_off <= iov_size && s.len <= iov_size - s.buf_off);
		} else {
			check(rc == -EINVAL || rc == -EFBIG);
		}
		return 0;
	}
	char name[300];
	size_t n = size - 1 < sizeof(name) - 1 ? size - 1 : sizeof(name) - 1;
	memcpy(name, data + 1, n);
	name[n] = 0;
	struct usrbio_name nm;
	if (usrbio_parse_name(name, &nm) == 0) {
		check(nm.io_depth >= -CFS_RING_MAX_ENTRIES && nm.io_depth <= CFS_RING_MAX_ENTRIES);
		check(nm.is_ring || (!nm.priority && !nm.timeout_ms && !nm.flags));
	}
	return 0;
}
