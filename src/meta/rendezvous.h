/* rendezvous.h - which meta instance owns the length updates of an inode.
 *
 * Length updates (sync, close) of one inode go to one instance so they do
 * not conflict across instances; clients pick it, the service does not
 * forward. Lives in cfs_meta_proto with the codecs and layouts: what the
 * client library and the service share, below both.
 */
#ifndef CFS_META_RENDEZVOUS_H
#define CFS_META_RENDEZVOUS_H

#include <stddef.h>
#include <stdint.h>

/* Rendezvous hashing: which of N live meta instances (ids) owns length
 * updates of INO. Weight of instance x: splitmix64 step (layout.h) from
 * state x ^ (ino * 0x9E3779B97F4A7C15); the highest weight wins, ties to
 * the lower id. 0 when n == 0. Pure; any thread. */
uint64_t meta_rendezvous(uint64_t ino, const uint64_t *instances, size_t n);

#endif
