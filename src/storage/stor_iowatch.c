/* stor_iowatch.c - the I/O watchdog: a target whose disk hangs leaves its
 * chains instead of its healthy predecessor.
 *
 * The hazard: a member whose engine stops finishing ops (a hung disk)
 * while its process still heartbeats stays SERVING in mgmtd's eyes. Its
 * predecessor's forward then waits on it, retries until the forward
 * deadline (30 s from the chunk lock, craq_write.c) and gives up after its
 * own apply, which fences the PREDECESSOR: the healthy member leaves, the
 * hung one moves up the chain.
 *
 * The rule: every chain op's local engine work (its apply, the query or
 * whole-chunk read that goes with it) is listed in its target while in
 * flight (stor_io_begin/end). Once the oldest of them has been in flight
 * for STOR_IO_STALL_MS (10 s, a third of the forward deadline), the
 * target fences itself like a member whose apply failed (craq_fence_target:
 * stops serving, reports OFFLINE; the failed-op rejoin backoff). mgmtd
 * moves it out, and the predecessor's retry, once its in-flight forward
 * timed out (5 s), goes to the new successor well before its deadline:
 * 10 s + a heartbeat + 5 s. The hung member rejoins through resync only
 * once nothing of it is stuck any more (stor_iowatch_stalled: the link
 * thread's startup fencing waits) and the backoff passed.
 *
 * The fence's report to mgmtd reads no engine counters
 * (mgmtd_link_report_state): a hung disk call can hold the engine's mutex
 * (a fallocate under it), and a look at its counters would wait there
 * with the target fenced but still SERVING in mgmtd's eyes (test_craq.c
 * disk_stall_stat, fault point faultinj_engine_stat_hold in mgmtd_link.c).
 *
 * Chunk locks are not the measure: a healthy member holds its lock while
 * it waits on a hung successor, so that would fence the wrong one first.
 * Reads and a resync sender's own engine calls are not listed (neither is
 * waited on by a forward). The listing a SYNCING target answers a DUMP
 * with is (craq_resync.c): a returning target whose disk hangs there
 * would otherwise keep its chain's one SYNCING place with no write to
 * reveal the hang (test_craq.c dump_hung_sibling). So is a head's
 * listing of a range remove (craq_write.c): a head whose disk hangs there
 * would otherwise stay head, and every retry of the remove would wait
 * behind the hang (test_craq.c rm_hung_sibling).
 * One thread, started with the mgmtd link; it looks every quarter of the
 * bound (at most 500 ms).
 */
#include <errno.h>
#include <stdio.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "storage/stor_fault.h"
#include "storage/storage_int.h"

static uint32_t period_ms(const struct storage_service *s)
{
	uint32_t p = s->io_stall_ms / 4;
	return p < 50 ? 50 : p > 500 ? 500 : p;
}

bool stor_iowatch_stalled(struct storage_service *s, struct stor_target *t)
{
	return stor_io_oldest_age(t, clock_mono_ms()) >= s->io_stall_ms;
}

static void check(struct storage_service *s)
{
	uint64_t now = clock_mono_ms();
	for (size_t i = 0; i < s->nt; i++) {
		struct stor_target *t = &s->t[i];
		uint64_t age = stor_io_oldest_age(t, now);
		char why[96];
		/* Fault injection: a fence as this one, at a moment a test
		 * picks (test_craq.c link_state_fence). */
		if (stor_fault_take(s, t, "faultinj_fence_now"))
			snprintf(why, sizeof(why), "fault injection (faultinj_fence_now)");
		else if (age < s->io_stall_ms || !atomic_load(&t->started))
			continue;
		else
			snprintf(why, sizeof(why),
			         "a local engine op in flight for %llu ms (disk stalled?)",
			         (unsigned long long)age);
		atomic_store(&t->fence_failed, 1);
		stor_nospace_fenced(t, now);
		craq_fence_target(s, t, why);
	}
}

static void *iowatch_main(void *arg)
{
	struct storage_service *s = arg;
	pthread_mutex_lock(&s->iowatch_mu);
	while (!atomic_load(&s->stopping)) {
		pthread_mutex_unlock(&s->iowatch_mu);
		check(s);
		pthread_mutex_lock(&s->iowatch_mu);
		if (!atomic_load(&s->stopping)) {
			struct timespec ts = clock_after_ms(CLOCK_REALTIME, period_ms(s));
			pthread_cond_timedwait(&s->iowatch_cv, &s->iowatch_mu, &ts);
		}
	}
	pthread_mutex_unlock(&s->iowatch_mu);
	return NULL;
}

int stor_iowatch_start(struct storage_service *s)
{
	pthread_mutex_init(&s->iowatch_mu, NULL);
	pthread_cond_init(&s->iowatch_cv, NULL);
	s->iowatch_inited = true;
	if (pthread_create(&s->iowatch_thr, NULL, iowatch_main, s))
		return -EAGAIN;
	s->iowatch_started = true;
	return 0;
}

void stor_iowatch_stop(struct storage_service *s)
{
	if (!s->iowatch_inited)
		return;
	if (s->iowatch_started) {
		pthread_mutex_lock(&s->iowatch_mu);
		pthread_cond_signal(&s->iowatch_cv);
		pthread_mutex_unlock(&s->iowatch_mu);
		pthread_join(s->iowatch_thr, NULL);
		s->iowatch_started = false;
	}
	pthread_mutex_destroy(&s->iowatch_mu);
	pthread_cond_destroy(&s->iowatch_cv);
	s->iowatch_inited = false;
}
