/* procstat.c - /proc/PID/stat (procstat.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/procstat.h"

int procstat_read(int pid, struct procstat *out)
{
	char path[64], buf[2048];
	memset(out, 0, sizeof(*out));
	if (pid <= 0)
		return -ENOENT;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -ENOENT;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	/* "pid (comm) state ...": comm may hold spaces and parentheses, so
	 * the fields start after the last ')'. Then field 3 is the state,
	 * 14 and 15 utime and stime, 22 the start time. */
	const char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ' || !p[2])
		return -EIO;
	if (sscanf(p + 2,
		   "%c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu "
		   "%*d %*d %*d %*d %*d %*d %llu",
		   &out->state, &out->utime, &out->stime, &out->start) != 4)
		return -EIO;
	return 0;
}

static int running(const struct procstat *ps) { return ps->state != 'Z' && ps->state != 'X'; }

int procstat_running(int pid)
{
	struct procstat ps;
	return procstat_read(pid, &ps) == 0 && running(&ps);
}

int procstat_running_since(int pid, unsigned long long start)
{
	struct procstat ps;
	return procstat_read(pid, &ps) == 0 && ps.start == start && running(&ps);
}
