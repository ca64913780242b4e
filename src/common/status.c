/* status.c - messages for -errno and -CFS_E* codes (status.h).
 *
 * errno messages come from strerrordesc_np (static, thread-safe, glibc),
 * so this never formats into shared buffers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"

static const struct {
	const char *name;
	const char *msg;
} cfs_codes[CFS_ELAST - CFS_EBASE] = {
	[CFS_EPROTO - CFS_EBASE] = { "CFS_EPROTO", "malformed frame or message" },
	[CFS_EVERSION - CFS_EBASE] = { "CFS_EVERSION", "unsupported protocol version" },
	[CFS_EAUTH - CFS_EBASE] = { "CFS_EAUTH", "authentication refused (cluster id or secret)" },
	[CFS_ECHECKSUM - CFS_EBASE] = { "CFS_ECHECKSUM", "checksum mismatch" },
	[CFS_ECORRUPT - CFS_EBASE] = { "CFS_ECORRUPT", "stored data is corrupt" },
	[CFS_ETIMEDOUT - CFS_EBASE] = { "CFS_ETIMEDOUT", "request deadline expired" },
	[CFS_ECLOSED - CFS_EBASE] = { "CFS_ECLOSED", "connection closed before the reply" },
	[CFS_ECONFLICT - CFS_EBASE] = { "CFS_ECONFLICT", "transaction conflict" },
	[CFS_EMAYBE - CFS_EBASE] = { "CFS_EMAYBE", "commit outcome unknown (maybe committed)" },
	[CFS_ETOOOLD - CFS_EBASE] = { "CFS_ETOOOLD", "transaction read version too old" },
	[CFS_ETOOLARGE - CFS_EBASE] = { "CFS_ETOOLARGE", "transaction or value exceeds limits" },
	[CFS_EUNAVAIL - CFS_EBASE] = { "CFS_EUNAVAIL", "service unavailable" },
	[CFS_ESTALE_ROUTING - CFS_EBASE] = { "CFS_ESTALE_ROUTING", "routing information is stale" },
	[CFS_ECHAIN_VERSION - CFS_EBASE] = { "CFS_ECHAIN_VERSION", "chain version mismatch" },
	[CFS_ENOT_HEAD - CFS_EBASE] = { "CFS_ENOT_HEAD", "target is not the chain head" },
	[CFS_ENOT_COMMITTED - CFS_EBASE] = { "CFS_ENOT_COMMITTED", "chunk has an uncommitted version" },
	[CFS_ENOT_PRIMARY - CFS_EBASE] = { "CFS_ENOT_PRIMARY", "not the primary cluster manager" },
	[CFS_EFENCED - CFS_EBASE] = { "CFS_EFENCED", "service fenced: lost contact with the cluster manager" },
	[CFS_EBADMSG_TYPE - CFS_EBASE] = { "CFS_EBADMSG_TYPE", "unknown message type" },
	[CFS_ELAYOUT - CFS_EBASE] = { "CFS_ELAYOUT", "invalid file layout" },
	[CFS_ENOTINLINE - CFS_EBASE] = { "CFS_ENOTINLINE", "file data not inline in metadata" },
	[CFS_ESUPERSEDED - CFS_EBASE] = { "CFS_ESUPERSEDED",
					  "request superseded by a later one of its sender" },
};

const char *cfs_strerror(int code)
{
	int c = abs(code);
	if (c == 0)
		return "success";
	if (c >= CFS_EBASE && c < CFS_ELAST && cfs_codes[c - CFS_EBASE].msg)
		return cfs_codes[c - CFS_EBASE].msg;
	if (c < CFS_EBASE) {
		const char *s = strerrordesc_np(c);
		if (s)
			return s;
	}
	return "unknown error";
}

const char *cfs_errname(int code)
{
	int c = abs(code);
	if (c == 0)
		return "OK";
	if (c >= CFS_EBASE && c < CFS_ELAST && cfs_codes[c - CFS_EBASE].name)
		return cfs_codes[c - CFS_EBASE].name;
	if (c < CFS_EBASE) {
		const char *s = strerrorname_np(c);
		if (s)
			return s;
	}
	return "EUNKNOWN";
}
