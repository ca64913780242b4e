/* etcd_cluster.h - start and stop a real etcd cluster for tests.
 *
 * Runs N members of /usr/bin/etcd (Debian etcd-server; $CFS_ETCD_BIN
 * overrides) on free 127.0.0.1 ports with data under a private temp dir,
 * explicit --quota-backend-bytes and revision auto-compaction, and waits
 * until they agree on a leader. Members are started, killed (-9) and
 * restarted by pid through testenv, so nothing outlives the test. Never
 * touches a system etcd on 2379. Main test thread only.
 */
#ifndef CFS_TESTS_KV_ETCD_CLUSTER_H
#define CFS_TESTS_KV_ETCD_CLUSTER_H

#include <stdint.h>

struct etcd_cluster;

struct etcd_cluster_opts {
	int members;            /* 1..7; 0 = 3 */
	int64_t quota_bytes;    /* --quota-backend-bytes; 0 = 256 MiB */
	int compaction_retain;  /* revisions kept by auto-compaction; 0 = 100000 */
	int election_ms;        /* --election-timeout; 0 = 1000 (heartbeat = /10) */
};

/* 1 when the etcd binary exists and runs (else tests exit 77). */
int etcd_cluster_available(void);

/* Exits 77 after a message when the etcd binary is missing: the one
 * reason an etcd test skips. */
void etcd_cluster_require(void);
/* The group setup and teardown of a cmocka group whose tests share one
 * cluster of default options: etcd_cluster_group_start runs
 * etcd_cluster_require, then starts the cluster into *CL and returns 0,
 * or -1 (a failed cmocka setup) when it does not start;
 * etcd_cluster_group_stop stops *CL, sets it NULL and returns 0. */
int etcd_cluster_group_start(struct etcd_cluster **cl);
int etcd_cluster_group_stop(struct etcd_cluster **cl);

/* Starts the cluster and waits (up to 30 s) for a leader. OPTS may be NULL.
 * Retries with new ports when a member dies at startup (port race).
 * 0 and *out, or -errno / -CFS_EUNAVAIL with the member logs kept. */
int etcd_cluster_start(const struct etcd_cluster_opts *opts, struct etcd_cluster **out);

/* "127.0.0.1:p1,127.0.0.1:p2,..." of every member (borrowed). */
const char *etcd_cluster_endpoints(const struct etcd_cluster *c);
/* Client endpoint "127.0.0.1:p" of member I (borrowed). */
const char *etcd_cluster_endpoint(const struct etcd_cluster *c, int i);
/* Writes "etcd://<endpoints>/<prefix>[?<query>]" into BUF (LEN bytes);
 * QUERY may be NULL. */
void etcd_cluster_url(const struct etcd_cluster *c, const char *prefix, const char *query,
		      char *buf, int len);
int etcd_cluster_size(const struct etcd_cluster *c);

/* Index of the member every running member agrees leads, waiting up to
 * TIMEOUT_MS; -CFS_EUNAVAIL when none emerges. */
int etcd_cluster_leader(struct etcd_cluster *c, int timeout_ms);

/* kill -9 of member I (no-op if it is down). 0 or -EINVAL. */
int etcd_cluster_kill(struct etcd_cluster *c, int i);
/* Restarts member I on its data dir and ports (it rejoins). 0 or -errno. */
int etcd_cluster_restart(struct etcd_cluster *c, int i);
/* Freezes (SIGSTOP, PAUSED != 0) or resumes (SIGCONT) member I: it keeps
 * its sockets but answers nothing, like a hung machine; a freeze returns
 * once every thread of it is stopped. 0 or -EINVAL (not a member, or it
 * did not stop within 10 s). */
int etcd_cluster_pause(struct etcd_cluster *c, int i, int paused);
/* 1 while member I's process runs. */
int etcd_cluster_running(struct etcd_cluster *c, int i);

/* Kills every member by pid and frees C. NULL-safe. */
void etcd_cluster_stop(struct etcd_cluster *c);

#endif
