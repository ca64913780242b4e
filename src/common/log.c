/* log.c - leveled log lines: "2026-11-21T17:50:01.123Z INFO net: event: k=v".
 *
 * A line is formatted into a stack buffer and written with one write(2) so
 * lines from many threads never interleave (O_APPEND for files). The sink
 * pointer is swapped under a mutex; writers take it too, which is cheap next
 * to the write itself and keeps a sink from being replaced mid-call. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

int log_threshold = LOG_LVL_INFO;

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = STDERR_FILENO;
static log_sink_fn log_sink;
static void *log_sink_arg;
static int log_sink_set;

static const char *const level_names[] = {
	[LOG_LVL_ERR] = "ERROR", [LOG_LVL_WARN] = "WARN", [LOG_LVL_NOTICE] = "NOTICE",
	[LOG_LVL_INFO] = "INFO", [LOG_LVL_DEBUG] = "DEBUG",
};

void log_set_level(enum log_level lvl) { log_threshold = (int)lvl; }

int log_parse_level(const char *name, enum log_level *out)
{
	static const struct { const char *n; enum log_level l; } map[] = {
		{ "err", LOG_LVL_ERR }, { "error", LOG_LVL_ERR }, { "warn", LOG_LVL_WARN },
		{ "notice", LOG_LVL_NOTICE }, { "info", LOG_LVL_INFO }, { "debug", LOG_LVL_DEBUG },
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (!strcasecmp(name, map[i].n)) {
			*out = map[i].l;
			return 0;
		}
	}
	return -EINVAL;
}

int log_open_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	pthread_mutex_lock(&log_lock);
	int old = log_fd;
	log_fd = fd;
	log_sink_set = 0;
	pthread_mutex_unlock(&log_lock);
	if (old != STDERR_FILENO)
		close(old);
	return 0;
}

void log_set_sink(log_sink_fn fn, void *arg)
{
	pthread_mutex_lock(&log_lock);
	log_sink = fn;
	log_sink_arg = arg;
	log_sink_set = 1;
	pthread_mutex_unlock(&log_lock);
}

void log_vwrite(enum log_level lvl, const char *module, const char *fmt, va_list ap)
{
	if ((int)lvl > log_threshold)
		return;
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int lv = (int)lvl;
	const char *lname = lv >= LOG_LVL_ERR && lv <= LOG_LVL_DEBUG ? level_names[lv] : "?";
	int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000000, lname, module);
	size_t head = (size_t)n;
	int m = vsnprintf(line + head, sizeof(line) - head, fmt, ap);
	size_t len = head + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	line[len] = '\0';

	pthread_mutex_lock(&log_lock);
	if (log_sink_set) {
		if (log_sink) {
			line[len - 1] = '\0';
			log_sink(log_sink_arg, lvl, module, line);
		}
	} else {
		ssize_t w = write(log_fd, line, len);
		(void)w; /* nowhere to report a failed log write */
	}
	pthread_mutex_unlock(&log_lock);
}

void log_write(enum log_level lvl, const char *module, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vwrite(lvl, module, fmt, ap);
	va_end(ap);
}
