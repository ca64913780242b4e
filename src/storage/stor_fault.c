/* stor_fault.c - test fault points as files in a target's directory
 * (stor_fault.h). */
#include <stdio.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "storage/stor_fault.h"
#include "storage/storage_int.h"

void stor_fault_pause(struct storage_service *s, struct stor_target *t, const char *name)
{
	if (!s->faultinj)
		return;
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s", t->dir, name);
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	unsigned ms = 0;
	if (fscanf(f, "%u", &ms) != 1)
		ms = 0;
	fclose(f);
	if (unlink(path) == 0 && ms)
		clock_sleep_ms(ms);
}

void stor_fault_hold(struct storage_service *s, struct stor_target *t, const char *name)
{
	if (!s->faultinj)
		return;
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s", t->dir, name);
	if (access(path, F_OK))
		return;
	LOG_NOTICE("storage", "fault injection: target %u held at %s", stor_target_id(s, t), name);
	while (access(path, F_OK) == 0 && !atomic_load(&s->stopping))
		clock_sleep_ms(10);
}

bool stor_fault_take(struct storage_service *s, struct stor_target *t, const char *name)
{
	if (!s->faultinj)
		return false;
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s", t->dir, name);
	return unlink(path) == 0;
}
