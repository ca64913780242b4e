/* status.h - ChainFS error codes and their messages.
 *
 * One convention everywhere: an int that is 0 on success, >0 a count where
 * that means something, <0 either -errno or -CFS_E*. CFS_E* codes live in
 * 1000..1999: above every errno, and negated still inside -4095 so they can
 * travel in pointer-error returns. cfs_strerror() covers both kinds.
 */
#ifndef CFS_COMMON_STATUS_H
#define CFS_COMMON_STATUS_H

enum cfs_status {
	CFS_EBASE = 1000,
	CFS_EPROTO = 1000,        /* malformed frame or message */
	CFS_EVERSION = 1001,      /* unsupported protocol version */
	CFS_EAUTH = 1002,         /* handshake refused: wrong secret or cluster id */
	CFS_ECHECKSUM = 1003,     /* checksum mismatch (frame header or data) */
	CFS_ECORRUPT = 1004,      /* on-disk data failed verification */
	CFS_ETIMEDOUT = 1005,     /* request deadline passed */
	CFS_ECLOSED = 1006,       /* connection closed before the reply */
	CFS_ECONFLICT = 1007,     /* KV transaction conflict: retry */
	CFS_EMAYBE = 1008,        /* KV commit outcome unknown */
	CFS_ETOOOLD = 1009,       /* KV read version too old: retry */
	CFS_ETOOLARGE = 1010,     /* KV transaction or value over its limits */
	CFS_EUNAVAIL = 1011,      /* service unavailable: retry with backoff */
	CFS_ESTALE_ROUTING = 1012,/* caller's routing version is stale */
	CFS_ECHAIN_VERSION = 1013,/* chain version mismatch */
	CFS_ENOT_HEAD = 1014,     /* write sent to a target that is not the chain head */
	CFS_ENOT_COMMITTED = 1015,/* chunk has a pending version; retry the read */
	CFS_ENOT_PRIMARY = 1016,  /* this mgmtd is not the primary */
	CFS_EFENCED = 1017,       /* service lost mgmtd for too long and stopped serving */
	CFS_EBADMSG_TYPE = 1018,  /* message type unknown to the receiver */
	CFS_ELAYOUT = 1019,       /* invalid file layout */
	CFS_ENOTINLINE = 1020,    /* the file's data is not (or cannot stay) inline in meta */
	CFS_ESUPERSEDED = 1021,   /* a late copy of a request its sender has moved past */
	CFS_ELAST
};

/* Message for a status code: positive or negative errno, or a CFS_E* code
 * either sign. Returns a static string; never NULL; thread-safe. */
const char *cfs_strerror(int code);

/* Short upper-case name for a code ("ENOENT", "CFS_EAUTH"), for logs and the
 * wire status dumps. Static string; never NULL. */
const char *cfs_errname(int code);

#endif
