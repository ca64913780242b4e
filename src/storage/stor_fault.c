/* stor_fault.c - test fault points as files in a target's directory
 * (stor_fault.h). */
#include <stdio.h>
#include <unistd.h>

#include "common/clock.h"
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

bool stor_fault_take(struct storage_service *s, struct stor_target *t, const char *name)
{
	if (!s->faultinj)
		return false;
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s", t->dir, name);
	return unlink(path) == 0;
}
