/* frame.h - the fixed 48-byte frame header of every RPC message.
 *
 * Layout (little-endian, DESIGN.md §3; docs/rpc.md has the picture):
 *
 *   OFFSET SIZE FIELD
 *        0    4 magic        FRAME_MAGIC ("CFS\x01" read as bytes 'C','F','S',1)
 *        4    2 version      FRAME_VERSION (header layout version, not the protocol minor)
 *        6    2 flags        FRAME_F_*
 *        8    2 type         message type (rpc_proto.h)
 *       10    2 reserved     sent 0, ignored
 *       12    8 request id   0 for one-way messages
 *       20    4 status       int32: 0 or -errno / -CFS_E* (responses only)
 *       24    4 payload len  bytes of encoded message after the header
 *       28    8 bulk len     bytes of bulk data after the payload
 *       36    4 bulk crc     CRC32C of the bulk when FRAME_F_BULK_CRC, else 0
 *       40    4 reserved     sent 0, ignored
 *       44    4 header crc   CRC32C of bytes 0..43
 *
 * Encoding and decoding are explicit byte stores and loads; no struct is
 * ever cast onto the wire. All functions are pure and thread-safe.
 */
#ifndef CFS_NET_FRAME_H
#define CFS_NET_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HDR_LEN 48
#define FRAME_MAGIC 0x01534643u /* bytes 'C' 'F' 'S' 0x01 */
#define FRAME_VERSION 1

enum frame_flags {
	FRAME_F_RESPONSE = 1 << 0, /* a reply to the request with the same id */
	FRAME_F_ONEWAY = 1 << 1,   /* a notification: no reply is sent */
	FRAME_F_BULK_CRC = 1 << 2, /* bulk crc field holds CRC32C of the bulk */
	FRAME_F_KNOWN = (1 << 3) - 1,
};

struct frame_hdr {
	uint16_t flags;       /* FRAME_F_* */
	uint16_t type;        /* message type, rpc_proto.h */
	uint64_t req_id;      /* request id; 0 for one-way */
	int32_t status;       /* reply status; 0 in requests */
	uint32_t payload_len; /* encoded message bytes */
	uint64_t bulk_len;    /* bulk bytes after the payload */
	uint32_t bulk_crc;    /* valid when FRAME_F_BULK_CRC */
};

/* Limits a decoder enforces; a header over them is refused before any
 * memory is reserved for it. */
struct frame_limits {
	uint32_t max_payload;
	uint64_t max_bulk;
};

/* Writes H into OUT (FRAME_HDR_LEN bytes), with magic, version and header crc. */
void frame_encode(const struct frame_hdr *h, uint8_t out[FRAME_HDR_LEN]);

/* Decodes FRAME_HDR_LEN bytes at IN into *H and checks them against LIM.
 * Returns 0, -CFS_EPROTO (bad magic or unknown flags), -CFS_EVERSION (other
 * header version), -CFS_ECHECKSUM (header crc), -EMSGSIZE (payload or bulk
 * over LIM). Checks run in that order; *H is filled only on success.
 * Fewer than FRAME_HDR_LEN bytes: pass LEN and get -CFS_EPROTO. */
int frame_decode(const uint8_t *in, size_t len, const struct frame_limits *lim,
		 struct frame_hdr *h);

#endif
