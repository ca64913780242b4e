/* stor_fault.h - the storage service's test fault points (CFS_FAULTINJ).
 *
 * A fault point is a file named after it in a target's directory, which a
 * test creates and the service consumes. Without CFS_FAULTINJ set when
 * the service started (s->faultinj), every call here is a no-op that
 * touches no file. Any thread.
 */
#ifndef CFS_STORAGE_STOR_FAULT_H
#define CFS_STORAGE_STOR_FAULT_H

#include <stdbool.h>

struct storage_service;
struct stor_target;

/* If T's directory holds NAME: removes it and, if it held a number of
 * milliseconds, sleeps that long (once per file). */
void stor_fault_pause(struct storage_service *s, struct stor_target *t, const char *name);

/* Waits while T's directory holds NAME (the test removes it), or until
 * the service stops: a call that hangs, as on a hung disk. */
void stor_fault_hold(struct storage_service *s, struct stor_target *t, const char *name);

/* Whether T's directory held NAME (removed by this call: once per file). */
bool stor_fault_take(struct storage_service *s, struct stor_target *t, const char *name);

#endif
