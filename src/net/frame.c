/* frame.c - encode and validate the fixed frame header (frame.h).
 *
 * The header crc covers bytes 0..43 so a corrupted length can never make a
 * receiver reserve or wait for the wrong amount of data: the crc is checked
 * before the lengths are trusted. Magic is checked first so a non-ChainFS
 * peer (an HTTP probe, a port scanner) gets the clearest reason in the log.
 */
#include <errno.h>

#include "common/crc32c.h"
#include "common/status.h"
#include "common/wire.h"
#include "net/frame.h"

void frame_encode(const struct frame_hdr *h, uint8_t out[FRAME_HDR_LEN])
{
	wire_store_u32(out + 0, FRAME_MAGIC);
	wire_store_u16(out + 4, FRAME_VERSION);
	wire_store_u16(out + 6, h->flags);
	wire_store_u16(out + 8, h->type);
	wire_store_u16(out + 10, 0);
	wire_store_u64(out + 12, h->req_id);
	wire_store_u32(out + 20, (uint32_t)h->status);
	wire_store_u32(out + 24, h->payload_len);
	wire_store_u64(out + 28, h->bulk_len);
	wire_store_u32(out + 36, h->bulk_crc);
	wire_store_u32(out + 40, 0);
	wire_store_u32(out + 44, crc32c(0, out, 44));
}

int frame_decode(const uint8_t *in, size_t len, const struct frame_limits *lim,
		 struct frame_hdr *h)
{
	if (len < FRAME_HDR_LEN)
		return -CFS_EPROTO;
	if (wire_load_u32(in) != FRAME_MAGIC)
		return -CFS_EPROTO;
	if (wire_load_u16(in + 4) != FRAME_VERSION)
		return -CFS_EVERSION;
	if (wire_load_u32(in + 44) != crc32c(0, in, 44))
		return -CFS_ECHECKSUM;
	uint16_t flags = wire_load_u16(in + 6);
	if (flags & ~FRAME_F_KNOWN)
		return -CFS_EPROTO;
	if ((flags & FRAME_F_RESPONSE) && (flags & FRAME_F_ONEWAY))
		return -CFS_EPROTO;
	uint32_t plen = wire_load_u32(in + 24);
	uint64_t blen = wire_load_u64(in + 28);
	if (plen > lim->max_payload || blen > lim->max_bulk)
		return -EMSGSIZE;
	h->flags = flags;
	h->type = wire_load_u16(in + 8);
	h->req_id = wire_load_u64(in + 12);
	h->status = (int32_t)wire_load_u32(in + 20);
	h->payload_len = plen;
	h->bulk_len = blen;
	h->bulk_crc = wire_load_u32(in + 36);
	return 0;
}
