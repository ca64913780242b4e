/* cache_probe.c - see cache_probe.h. */
#include "common/cache_probe.h"

bool cache_probe_wanted(struct cache_probe *cp)
{
	if (!atomic_load_explicit(&cp->cold, memory_order_relaxed))
		return true;
	if (atomic_fetch_add_explicit(&cp->tick, 1, memory_order_relaxed) % CACHE_PROBE_SAMPLE == 0)
		return true;
	atomic_fetch_add_explicit(&cp->direct, 1, memory_order_relaxed);
	return false;
}

void cache_probe_report(struct cache_probe *cp, bool hit)
{
	if (hit)
		atomic_fetch_add_explicit(&cp->hits, 1, memory_order_relaxed);
	uint32_t p = atomic_fetch_add_explicit(&cp->probes, 1, memory_order_relaxed) + 1;
	if (p % cp->window)
		return;
	uint32_t h = atomic_exchange_explicit(&cp->hits, 0, memory_order_relaxed);
	uint32_t last = atomic_exchange_explicit(&cp->last_hits, h, memory_order_relaxed);
	bool low = h * 100u < CACHE_PROBE_HIT_PCT * cp->window;
	bool rising = cp->rise && h * 100u >= last * 100u + CACHE_PROBE_RISE_PCT * cp->window;
	atomic_store_explicit(&cp->cold, low && !rising, memory_order_relaxed);
}
