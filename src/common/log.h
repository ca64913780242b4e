/* log.h - leveled logging: "time level module: event: key=value".
 *
 * Lines go to stderr by default, to a file after log_open_file(), or to a
 * sink installed by tests or the client library (which stays silent until
 * one is installed: call log_set_sink(NULL, NULL) there to mute).
 * All functions are thread-safe; the LOG macro checks the level before its
 * arguments are evaluated.
 */
#ifndef CFS_COMMON_LOG_H
#define CFS_COMMON_LOG_H

#include <stdarg.h>

enum log_level { LOG_LVL_ERR = 3, LOG_LVL_WARN = 4, LOG_LVL_NOTICE = 5,
		 LOG_LVL_INFO = 6, LOG_LVL_DEBUG = 7 };

typedef void (*log_sink_fn)(void *arg, enum log_level lvl, const char *module,
			    const char *line);

extern int log_threshold; /* lines above this level are dropped */

void log_set_level(enum log_level lvl);
/* Parses "err|warn|notice|info|debug"; returns 0 or -EINVAL. */
int log_parse_level(const char *name, enum log_level *out);
/* Appends to PATH (created 0644). Returns 0 or -errno. */
int log_open_file(const char *path);
/* Replaces the output; fn NULL mutes. Borrowed arg must outlive the sink. */
void log_set_sink(log_sink_fn fn, void *arg);
void log_write(enum log_level lvl, const char *module, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_vwrite(enum log_level lvl, const char *module, const char *fmt, va_list ap);

#define LOG(lvl, module, ...) \
	do { if ((int)(lvl) <= log_threshold) log_write((lvl), (module), __VA_ARGS__); } while (0)
#define LOG_ERR(m, ...)    LOG(LOG_LVL_ERR, m, __VA_ARGS__)
#define LOG_WARN(m, ...)   LOG(LOG_LVL_WARN, m, __VA_ARGS__)
#define LOG_NOTICE(m, ...) LOG(LOG_LVL_NOTICE, m, __VA_ARGS__)
#define LOG_INFO(m, ...)   LOG(LOG_LVL_INFO, m, __VA_ARGS__)
#define LOG_DEBUG(m, ...)  LOG(LOG_LVL_DEBUG, m, __VA_ARGS__)

#endif
