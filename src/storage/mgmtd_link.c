/* mgmtd_link.c - the storage service's link to mgmtd: registration (node
 * id persisted in every target directory), target local states, startup
 * fencing, and the thread that reacts to routing changes.
 *
 * Local state of each target, as this file drives it:
 *
 *   start ──> OFFLINE ──(routing shows it not SERVING/SYNCING)──> ONLINE
 *                                  (startup fencing passed: "started")
 *   ONLINE ──(public SERVING)──> UPTODATE     (e.g. a new chain, LASTSRV back)
 *   ONLINE ──(SYNC_DONE from the predecessor, craq_resync.c)──> UPTODATE
 *   UPTODATE ──(public OFFLINE or WAITING: we missed writes)──> ONLINE
 *
 * So a restarted service never serves from a state mgmtd still thinks is
 * current: it waits until mgmtd took its targets out, then comes back
 * through SYNCING. The link thread wakes on every routing change (and
 * every 200 ms), updates states, reports changes, then hands the routing
 * to each target's resync worker (craq_resync.c), which syncs a SYNCING
 * successor of that target. It never waits on an engine: neither for a
 * report (read_sizes) nor for a pass, so one hung disk holds back none of
 * the other targets' state changes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "storage/stor_fault.h"
#include "storage/storage_int.h"

#define LINK_TICK_MS 200

static uint32_t read_node_id(const struct storage_service *s)
{
	for (size_t i = 0; i < s->nt; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/node_id", s->t[i].dir);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		unsigned long v = 0;
		int ok = fscanf(f, "%lu", &v) == 1 && v > 0 && v <= ROUTE_NODE_ID_MAX;
		fclose(f);
		if (ok)
			return (uint32_t)v;
	}
	return 0;
}

/* Writes the node id into every target directory (tmp + rename). */
static void persist_node_id(const struct storage_service *s, uint32_t id)
{
	for (size_t i = 0; i < s->nt; i++) {
		char path[4096], tmp[4200];
		snprintf(path, sizeof(path), "%s/node_id", s->t[i].dir);
		snprintf(tmp, sizeof(tmp), "%s.tmp", path);
		FILE *f = fopen(tmp, "w");
		if (!f) {
			LOG_ERR("storage", "cannot persist node id: path=%s", tmp);
			continue;
		}
		fprintf(f, "%u\n", id);
		fflush(f);
		fsync(fileno(f));
		fclose(f);
		if (rename(tmp, path))
			LOG_ERR("storage", "cannot persist node id: path=%s", path);
	}
}

/* Fault injection: while DIR/faultinj_engine_stat_hold exists, T's
 * engine mutex counts as held, as by an engine thread in a fallocate that
 * hangs under it (a disk that hangs). */
static bool stat_held(struct storage_service *s, struct stor_target *t)
{
	if (!s->faultinj)
		return false;
	char path[4200];
	snprintf(path, sizeof(path), "%s/faultinj_engine_stat_hold", t->dir);
	return access(path, F_OK) == 0;
}

/* The sizes of every target whose engine answers at once, into CAP and
 * USED with OK[i] set; a target whose engine mutex is held (maybe by a
 * hung disk call) keeps its last sizes (OK[i] false). Never waits: the
 * link thread reports for every target of the node, and one hung disk
 * must not stop the others' state changes reaching mgmtd. */
static void read_sizes(struct storage_service *s, uint64_t *cap, uint64_t *used, bool *ok)
{
	for (size_t i = 0; i < s->nt; i++)
		ok[i] = !stat_held(s, &s->t[i]) &&
			!chunk_engine_sizes_nowait(s->t[i].eng, &cap[i], &used[i]);
}

/* The report of every target: its local state now, the sizes last read. */
static size_t build_reports(struct storage_service *s, struct mgmtd_target_report *r)
{
	for (size_t i = 0; i < s->nt; i++)
		r[i] = (struct mgmtd_target_report){ .slot = s->t[i].slot,
						     .local_state = atomic_load(&s->t[i].local_state),
						     .capacity = s->t[i].rep_capacity,
						     .used = s->t[i].rep_used };
	return s->nt;
}

/* Sets the report; sizes CAP and USED (read before) refresh those with
 * OK[i] set; OK NULL keeps them all. */
static void report(struct storage_service *s, const uint64_t *cap, const uint64_t *used,
		   const bool *ok)
{
	struct mgmtd_target_report r[MGMTD_MAX_NODE_TARGETS];
	/* Built and set as one: a report built before a fence but set after
	 * the fence's own would put back the state the fence took away. */
	pthread_mutex_lock(&s->report_mu);
	for (size_t i = 0; ok && i < s->nt; i++) {
		if (!ok[i])
			continue;
		s->t[i].rep_capacity = cap[i];
		s->t[i].rep_used = used[i];
	}
	size_t n = build_reports(s, r);
	if (s->mc)
		mgmtd_client_set_targets(s->mc, r, n);
	pthread_mutex_unlock(&s->report_mu);
}

void mgmtd_link_report(struct storage_service *s)
{
	uint64_t cap[MGMTD_MAX_NODE_TARGETS], used[MGMTD_MAX_NODE_TARGETS];
	bool ok[MGMTD_MAX_NODE_TARGETS];
	read_sizes(s, cap, used, ok);
	report(s, cap, used, ok);
}

void mgmtd_link_report_state(struct storage_service *s)
{
	report(s, NULL, NULL, NULL);
}

void mgmtd_link_kick(struct storage_service *s)
{
	pthread_mutex_lock(&s->link_mu);
	s->link_kick++;
	pthread_cond_signal(&s->link_cv);
	pthread_mutex_unlock(&s->link_mu);
}

static void on_routing(void *arg, struct mgmtd_routing *snap)
{
	(void)snap;
	mgmtd_link_kick(arg);
}

static void on_fence(void *arg, bool fenced)
{
	struct storage_service *s = arg;
	LOG_NOTICE("storage", "%s", fenced ? "mgmtd unreachable for T/2: serving only while "
						     "the chain peers lost it too"
					   : "mgmtd reachable: serving");
	mgmtd_link_kick(s);
}

/* T's pair (local_state, started) goes from (LS, WAS_STARTED) to (NLS,
 * START), decided from routing version RVER, unless a fence (or SYNC_DONE)
 * changed it since it was read, or SYNC_DONE made it UPTODATE on a routing
 * newer than RVER (the target SYNCING there; OFFLINE or WAITING in RVER's
 * is then stale): that change stands and the next tick decides again. A
 * target that starts reports ONLINE before it is started, so a fence that
 * finds it started always leaves OFFLINE behind. True if the pair was
 * still as read (and is now NLS, START). */
static bool apply_state(struct storage_service *s, struct stor_target *t, uint64_t rver, int ls,
                        int was_started, int nls, int start)
{
	/* Fault injection: the link thread held between its decision and
	 * the change (test_craq.c link_state_fence). */
	stor_fault_pause(s, t, "faultinj_link_state_hold");
	pthread_mutex_lock(&t->state_mu);
	bool same = atomic_load(&t->local_state) == ls && atomic_load(&t->started) == was_started &&
	            !(ls == CHAIN_LS_UPTODATE && rver < t->uptodate_rver);
	if (same) {
		atomic_store(&t->local_state, nls);
		if (start)
			atomic_store(&t->started, 1);
	}
	pthread_mutex_unlock(&t->state_mu);
	if (!same)
		LOG_NOTICE("storage",
		           "target %u: its state changed while the link thread decided "
		           "(a fence, or SYNC_DONE on newer routing): decided again at the "
		           "next tick",
		           stor_target_id(s, t));
	return same;
}

/* Applies the state rules above; true if a report must go out. *REJOINED
 * is set if a target passed startup fencing. */
static bool update_states(struct storage_service *s, const struct route_info *ri, bool *rejoined)
{
	bool changed = false;
	for (size_t i = 0; i < s->nt; i++) {
		struct stor_target *t = &s->t[i];
		const struct route_target *rt = route_find_target(ri, stor_target_id(s, t));
		int ps = rt ? (int)rt->pub_state : CHAIN_PS_OFFLINE;
		int ls = atomic_load(&t->local_state), nls = ls;
		int was_started = atomic_load(&t->started);
		if (stor_nospace_served(t, was_started && ps == CHAIN_PS_SERVING, clock_mono_ms()))
			LOG_NOTICE("storage",
			           "target %u: served %d s since its full-disk fence: "
			           "rejoin backoff back to %d s",
			           stor_target_id(s, t), STOR_NOSPACE_RESET_MS / 1000,
			           STOR_NOSPACE_BACKOFF_MIN_MS / 1000);
		if (!was_started) {
			/* rt == NULL: mgmtd has not seen the target yet; wait for it. */
			if (!rt || ps == CHAIN_PS_SERVING || ps == CHAIN_PS_SYNCING)
				continue;
			/* Fenced over a chain op: not back before the backoff,
			 * for a full disk unless space came back (craq_write.c). */
			if (clock_mono_ms() < atomic_load(&t->nospace_until) &&
			    (atomic_load(&t->fence_failed) || !chunk_engine_has_room(t->eng)))
				continue;
			/* Fenced by the I/O watchdog: not back while its disk
			 * still holds an op (stor_iowatch.c). */
			if (stor_iowatch_stalled(s, t))
				continue;
			if (!apply_state(s, t, ri->version, ls, 0, CHAIN_LS_ONLINE, 1))
				continue;
			changed |= ls != CHAIN_LS_ONLINE;
			*rejoined = true;
			LOG_NOTICE("storage", "target %u: startup fencing passed (public %s)",
			           stor_target_id(s, t), chain_pub_state_name((unsigned)ps));
			continue;
		}
		if (ps == CHAIN_PS_SERVING)
			nls = CHAIN_LS_UPTODATE;
		else if (ps == CHAIN_PS_OFFLINE || ps == CHAIN_PS_WAITING)
			nls = CHAIN_LS_ONLINE;
		if (nls != ls && apply_state(s, t, ri->version, ls, 1, nls, 0))
			changed = true;
	}
	return changed;
}

/* Fault injection: while faultinj_link_old_routing is in the first
 * target's directory (consumed), one tick decides from *OLD, the routing
 * of the last tick at which a target passed startup fencing (it showed
 * that target out of its chain), instead of SNAP: a decision from routing
 * that SYNC_DONE has overtaken, as a link thread preempted between taking
 * its snapshot and reading a state would make (test_craq.c
 * link_old_routing). */
static struct mgmtd_routing *stale_routing(struct storage_service *s, struct mgmtd_routing *snap,
					   struct mgmtd_routing **old)
{
	if (!*old || !s->nt || !stor_fault_take(s, &s->t[0], "faultinj_link_old_routing"))
		return snap;
	LOG_NOTICE("storage", "fault injection: deciding from routing version %llu",
		   (unsigned long long)mgmtd_routing_info(*old)->version);
	return *old;
}

static void *link_main(void *arg)
{
	struct storage_service *s = arg;
	bool persisted = read_node_id(s) != 0;
	uint32_t persisted_id = read_node_id(s);
	struct mgmtd_routing *rejoin_snap = NULL; /* fault injection: stale_routing */
	pthread_mutex_lock(&s->link_mu);
	while (!atomic_load(&s->stopping)) {
		uint64_t kick = s->link_kick;
		pthread_mutex_unlock(&s->link_mu);
		uint32_t id = mgmtd_client_node_id(s->mc);
		if (id && (!persisted || id != persisted_id)) {
			persist_node_id(s, id);
			persisted = true;
			persisted_id = id;
		}
		struct mgmtd_routing *snap = id ? mgmtd_client_routing(s->mc) : NULL;
		if (snap && !mgmtd_client_fenced(s->mc)) {
			bool rejoined = false;
			if (update_states(s, mgmtd_routing_info(stale_routing(s, snap, &rejoin_snap)),
					  &rejoined))
				mgmtd_link_report(s);
			if (rejoined && s->faultinj) {
				mgmtd_routing_put(rejoin_snap);
				rejoin_snap = mgmtd_routing_get(snap);
			}
			craq_resync_offer(s, snap);
		} else {
			/* fenced or no routing: not serving, for the backoff reset too */
			for (size_t i = 0; i < s->nt; i++)
				stor_nospace_served(&s->t[i], 0, clock_mono_ms());
		}
		mgmtd_routing_put(snap);
		pthread_mutex_lock(&s->link_mu);
		if (kick == s->link_kick && !atomic_load(&s->stopping)) {
			struct timespec ts = clock_after_ms(CLOCK_REALTIME, LINK_TICK_MS);
			pthread_cond_timedwait(&s->link_cv, &s->link_mu, &ts);
		}
	}
	pthread_mutex_unlock(&s->link_mu);
	mgmtd_routing_put(rejoin_snap);
	return NULL;
}

int mgmtd_link_start(struct storage_service *s, const struct storage_service_opts *o, char *err,
		     size_t errlen)
{
	struct mgmtd_target_report r[MGMTD_MAX_NODE_TARGETS];
	if (s->nt > MGMTD_MAX_NODE_TARGETS) {
		snprintf(err, errlen, "at most %d targets per node with mgmtd",
			 MGMTD_MAX_NODE_TARGETS);
		return -EINVAL;
	}
	/* Before any thread runs: every engine is idle, so this waits for
	 * none (the first sizes mgmtd sees are real). */
	for (size_t i = 0; i < s->nt; i++) {
		struct chunk_engine_stat st;
		chunk_engine_get_stat(s->t[i].eng, &st);
		s->t[i].rep_capacity = st.capacity;
		s->t[i].rep_used = st.used;
	}
	size_t n = build_reports(s, r);
	struct mgmtd_client_opts mo = {
		.mgmtd_addrs = o->mgmtd_addrs, .n_mgmtd = o->n_mgmtd, .cluster_id = o->cluster_id,
		.secret = o->secret, .secret_len = o->secret_len, .type = ROUTE_NODE_STORAGE,
		.node_id = read_node_id(s), .addr = s->advertise,
		.heartbeat_ms = o->heartbeat_ms, .fence_ms = o->fence_ms,
		.poll_wait_ms = 2000, .targets = r, .n_targets = n,
		.on_routing = on_routing, .on_fence = on_fence, .cb_arg = s,
	};
	int rc = mgmtd_client_new(&mo, &s->mc, err, errlen);
	if (rc)
		return rc;
	if ((rc = craq_resync_start(s))) {
		snprintf(err, errlen, "cannot start the resync workers");
		return rc;
	}
	if (pthread_create(&s->link_thr, NULL, link_main, s)) {
		snprintf(err, errlen, "cannot start the mgmtd link thread");
		return -EAGAIN;
	}
	s->link_started = true;
	return 0;
}

void mgmtd_link_stop(struct storage_service *s)
{
	if (s->link_started) {
		mgmtd_link_kick(s);
		pthread_join(s->link_thr, NULL);
		s->link_started = false;
	}
	/* No offer comes any more. */
	craq_resync_stop(s);
}
