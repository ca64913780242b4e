/* etcd_cluster.c - real etcd clusters for tests (etcd_cluster.h).
 *
 * Each member gets a client and a peer port from testenv_free_port(), a
 * data dir D/mI and a log D/mI.log, and runs with the same flags a
 * production member would need here: explicit --quota-backend-bytes,
 * --auto-compaction-mode revision, and the heartbeat/election pair scaled
 * for a loaded 2-core machine. The leader is found by asking every running
 * member for /v3/maintenance/status through etcd_client and requiring that
 * they all name the same leader. Members are tracked by pid through
 * testenv, so a failing test still kills them (testenv_cleanup).
 */
#include "etcd_cluster.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/status.h"
#include "kv/etcd_client.h"
#include "testenv.h"

#define MAX_MEMBERS 7
#define MAX_ARGS 40

struct member {
	uint16_t client_port, peer_port;
	char client_ep[32];  /* "127.0.0.1:port" */
	char datadir[512];
	char log[512];
	pid_t pid;           /* 0 when down */
	uint64_t id;         /* etcd member id once seen, else 0 */
};

struct etcd_cluster {
	struct etcd_cluster_opts opts;
	int n;
	char *dir;                      /* private temp dir */
	struct member m[MAX_MEMBERS];
	char endpoints[MAX_MEMBERS * 32];
	char initial[MAX_MEMBERS * 64]; /* --initial-cluster */
	char token[64];
	struct etcdc *cli;              /* status queries */
};

static const char *etcd_bin(void)
{
	const char *p = getenv("CFS_ETCD_BIN");
	return p && *p ? p : "/usr/bin/etcd";
}

int etcd_cluster_available(void)
{
	return access(etcd_bin(), X_OK) == 0;
}

void etcd_cluster_require(void)
{
	if (etcd_cluster_available())
		return;
	fprintf(stderr, "etcd binary %s not found: skipped\n", etcd_bin());
	exit(77);
}

int etcd_cluster_group_start(struct etcd_cluster **cl)
{
	etcd_cluster_require();
	return etcd_cluster_start(NULL, cl) ? -1 : 0;
}

int etcd_cluster_group_stop(struct etcd_cluster **cl)
{
	etcd_cluster_stop(*cl);
	*cl = NULL;
	return 0;
}

static pid_t spawn_member(struct etcd_cluster *c, int i)
{
	struct member *m = &c->m[i];
	char name[16], lc[64], pc[64], quota[32], retain[32], hb[16], el[16];
	snprintf(name, sizeof(name), "m%d", i);
	snprintf(lc, sizeof(lc), "http://127.0.0.1:%u", m->client_port);
	snprintf(pc, sizeof(pc), "http://127.0.0.1:%u", m->peer_port);
	snprintf(quota, sizeof(quota), "%lld", (long long)c->opts.quota_bytes);
	snprintf(retain, sizeof(retain), "%d", c->opts.compaction_retain);
	snprintf(hb, sizeof(hb), "%d", c->opts.election_ms / 10);
	snprintf(el, sizeof(el), "%d", c->opts.election_ms);
	char *argv[MAX_ARGS] = {
		(char *)etcd_bin(), "--name", name, "--data-dir", m->datadir,
		"--listen-client-urls", lc, "--advertise-client-urls", lc,
		"--listen-peer-urls", pc, "--initial-advertise-peer-urls", pc,
		"--initial-cluster", c->initial, "--initial-cluster-state", "new",
		"--initial-cluster-token", c->token,
		"--quota-backend-bytes", quota,
		"--auto-compaction-mode", "revision", "--auto-compaction-retention", retain,
		"--heartbeat-interval", hb, "--election-timeout", el,
		"--logger", "zap", "--log-outputs", "stderr", "--enable-pprof=false",
		NULL,
	};
	return testenv_spawn(argv, m->log);
}

static void stop_members(struct etcd_cluster *c)
{
	for (int i = 0; i < c->n; i++)
		etcd_cluster_kill(c, i);
}

static int setup(struct etcd_cluster *c, int attempt)
{
	static int seq;
	int off = 0, off2 = 0;
	snprintf(c->token, sizeof(c->token), "cfs-%d-%d-%d", (int)getpid(), ++seq, attempt);
	for (int i = 0; i < c->n; i++) {
		struct member *m = &c->m[i];
		m->client_port = testenv_free_port();
		do
			m->peer_port = testenv_free_port();
		while (m->peer_port == m->client_port);
		snprintf(m->client_ep, sizeof(m->client_ep), "127.0.0.1:%u", m->client_port);
		snprintf(m->datadir, sizeof(m->datadir), "%s/a%d-m%d", c->dir, attempt, i);
		snprintf(m->log, sizeof(m->log), "%s/a%d-m%d.log", c->dir, attempt, i);
		m->pid = 0;
		m->id = 0;
		off += snprintf(c->endpoints + off, sizeof(c->endpoints) - (size_t)off, "%s%s",
				i ? "," : "", m->client_ep);
		off2 += snprintf(c->initial + off2, sizeof(c->initial) - (size_t)off2,
				 "%sm%d=http://127.0.0.1:%u", i ? "," : "", i, m->peer_port);
	}
	etcdc_close(c->cli);
	c->cli = NULL;
	struct etcdc_opts o = { .attempt_timeout_ms = 1000, .op_timeout_ms = 1000,
				.connect_timeout_ms = 500 };
	return etcdc_open(c->endpoints, &o, &c->cli, NULL, 0);
}

int etcd_cluster_start(const struct etcd_cluster_opts *opts, struct etcd_cluster **out)
{
	struct etcd_cluster *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	if (opts)
		c->opts = *opts;
	if (c->opts.members <= 0)
		c->opts.members = 3;
	if (c->opts.members > MAX_MEMBERS) {
		free(c);
		return -EINVAL;
	}
	if (c->opts.quota_bytes <= 0)
		c->opts.quota_bytes = 256ll << 20;
	if (c->opts.compaction_retain <= 0)
		c->opts.compaction_retain = 100000;
	if (c->opts.election_ms <= 0)
		c->opts.election_ms = 1000;
	c->n = c->opts.members;
	c->dir = testenv_tmpdir("etcd");
	int rc = -CFS_EUNAVAIL;
	for (int attempt = 0; attempt < 3; attempt++) {
		rc = setup(c, attempt);
		if (rc)
			break;
		for (int i = 0; i < c->n; i++)
			c->m[i].pid = spawn_member(c, i);
		rc = etcd_cluster_leader(c, 30000);
		if (rc >= 0) {
			*out = c;
			return 0;
		}
		fprintf(stderr, "etcd_cluster: no leader on attempt %d (logs in %s)\n", attempt,
			c->dir);
		stop_members(c);
	}
	etcd_cluster_stop(c);
	return rc;
}

const char *etcd_cluster_endpoints(const struct etcd_cluster *c)
{
	return c->endpoints;
}

const char *etcd_cluster_endpoint(const struct etcd_cluster *c, int i)
{
	return i >= 0 && i < c->n ? c->m[i].client_ep : NULL;
}

int etcd_cluster_size(const struct etcd_cluster *c)
{
	return c->n;
}

void etcd_cluster_url(const struct etcd_cluster *c, const char *prefix, const char *query,
		      char *buf, int len)
{
	snprintf(buf, (size_t)len, "etcd://%s/%s%s%s", c->endpoints, prefix,
		 query ? "?" : "", query ? query : "");
}

int etcd_cluster_running(struct etcd_cluster *c, int i)
{
	if (i < 0 || i >= c->n || !c->m[i].pid)
		return 0;
	if (!testenv_alive(c->m[i].pid)) {
		c->m[i].pid = 0;
		return 0;
	}
	return 1;
}

/* One poll: the agreed leader's index, or -1. */
static int leader_once(struct etcd_cluster *c)
{
	uint64_t leader = 0;
	int running = 0;
	for (int i = 0; i < c->n; i++) {
		if (!etcd_cluster_running(c, i))
			continue;
		running++;
		struct etcdc_status st;
		if (etcdc_status(c->cli, i, &st) || !st.leader)
			return -1;
		c->m[i].id = st.member_id;
		if (leader && st.leader != leader)
			return -1;
		leader = st.leader;
	}
	if (!running)
		return -1;
	for (int i = 0; i < c->n; i++)
		if (c->m[i].pid && c->m[i].id == leader)
			return i;
	return -1;
}

int etcd_cluster_leader(struct etcd_cluster *c, int timeout_ms)
{
	uint64_t deadline = clock_mono_ms() + (uint64_t)timeout_ms;
	for (;;) {
		int l = leader_once(c);
		if (l >= 0)
			return l;
		if (clock_mono_ms() >= deadline)
			return -CFS_EUNAVAIL;
		clock_sleep_ms(50);
	}
}

int etcd_cluster_kill(struct etcd_cluster *c, int i)
{
	if (i < 0 || i >= c->n)
		return -EINVAL;
	if (c->m[i].pid)
		testenv_kill(c->m[i].pid, SIGKILL);
	c->m[i].pid = 0;
	return 0;
}

int etcd_cluster_pause(struct etcd_cluster *c, int i, int paused)
{
	if (i < 0 || i >= c->n || !c->m[i].pid)
		return -EINVAL;
	return testenv_kill(c->m[i].pid, paused ? SIGSTOP : SIGCONT) ? -EINVAL : 0;
}

static int port_up(void *arg)
{
	const struct member *m = arg;
	return testenv_port_open(m->client_port);
}

int etcd_cluster_restart(struct etcd_cluster *c, int i)
{
	if (i < 0 || i >= c->n)
		return -EINVAL;
	etcd_cluster_kill(c, i);
	c->m[i].pid = spawn_member(c, i);
	if (!testenv_wait(port_up, &c->m[i], 15000))
		return etcd_cluster_running(c, i) ? -ETIMEDOUT : -ECHILD;
	return 0;
}

void etcd_cluster_stop(struct etcd_cluster *c)
{
	if (!c)
		return;
	stop_members(c);
	etcdc_close(c->cli);
	free(c->dir);
	free(c);
}
