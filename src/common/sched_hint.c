/* sched_hint.c - short scheduler slices for latency-bound threads
 * (sched_hint.h). */
#include "common/sched_hint.h"

#include <sched.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <unistd.h>

/* The kernel's struct sched_attr, first version (48 bytes); glibc before
 * 2.41 has no wrapper. */
struct cfs_sched_attr {
	uint32_t size;
	uint32_t sched_policy;
	uint64_t sched_flags;
	int32_t sched_nice;
	uint32_t sched_priority;
	uint64_t sched_runtime;
	uint64_t sched_deadline;
	uint64_t sched_period;
};

#define DEFAULT_SLICE_US 100

void sched_hint_latency(void)
{
#if defined(SYS_sched_getattr) && defined(SYS_sched_setattr)
	long us = DEFAULT_SLICE_US;
	const char *e = getenv("CFS_SLICE_US");
	if (e && *e)
		us = strtol(e, NULL, 10);
	if (us <= 0)
		return;
	struct cfs_sched_attr a;
	memset(&a, 0, sizeof(a));
	/* keep the policy and nice value; only SCHED_OTHER/BATCH take a slice */
	if (syscall(SYS_sched_getattr, 0, &a, sizeof(a), 0) != 0)
		return;
	if (a.sched_policy != SCHED_OTHER && a.sched_policy != SCHED_BATCH)
		return;
	a.size = sizeof(a);
	a.sched_flags = 0;
	a.sched_runtime = (uint64_t)us * 1000u;
	(void)syscall(SYS_sched_setattr, 0, &a, 0);
#endif
}

long long sched_hint_slice_ns(void)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/self/task/%ld/sched", (long)syscall(SYS_gettid));
	FILE *f = fopen(path, "r");
	long long v = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "se.slice", 8) == 0 && strchr(line, ':'))
			v = atoll(strchr(line, ':') + 1);
	fclose(f);
	return v;
}

int sched_hint_parse_pressure(const char *text)
{
	const char *p = strstr(text, "some avg10=");
	if (!p || (p != text && p[-1] != '\n'))
		return -1;
	p += strlen("some avg10=");
	long whole = 0, frac = 0;
	int digits = 0;
	for (; *p >= '0' && *p <= '9' && whole <= 100; p++, digits++)
		whole = whole * 10 + (*p - '0');
	if (!digits || whole > 100)
		return -1;
	if (*p == '.') {
		p++;
		if (*p >= '0' && *p <= '9')
			frac = (*p++ - '0') * 10;
		if (*p >= '0' && *p <= '9')
			frac += *p - '0';
	}
	long v = whole * 100 + frac;
	return v > 10000 ? 10000 : (int)v;
}

int sched_hint_cpu_pressure(void)
{
	char text[256];
	int fd = open("/proc/pressure/cpu", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	text[n] = 0;
	return sched_hint_parse_pressure(text);
}
