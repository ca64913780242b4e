/* cfg.h - one configuration table per daemon; flags and an optional file.
 *
 * Each subcommand declares a table of struct cfg_opt (name, type, default,
 * bounds, help, target field). cfg_parse() applies defaults, then the file
 * named by --config (INI via libinih; keys may sit in any section or none),
 * then command-line flags (--name=value or --name value), so flags win.
 * Unknown keys fail with file:line; unknown flags fail by name.
 * Leftover positional arguments are returned to the caller.
 */
#ifndef CFS_COMMON_CFG_H
#define CFS_COMMON_CFG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum cfg_type { CFG_STR, CFG_INT, CFG_BOOL, CFG_SIZE /* accepts K/M/G suffixes */ };

struct cfg_opt {
	const char *name;   /* flag and file key, e.g. "listen" */
	enum cfg_type type;
	const char *def;    /* default as text; NULL means empty string / 0 */
	int64_t min, max;   /* bounds for INT and SIZE (ignored when min == max == 0) */
	size_t offset;      /* where the value goes in the caller's struct */
	const char *help;   /* one line for --help */
};

#define CFG_END { NULL, CFG_STR, NULL, 0, 0, 0, NULL }

/* Parses defaults, --config FILE and ARGV[1..] into CONF (a struct whose
 * fields the table's offsets name: char * for STR (owned by CONF, freed by
 * cfg_free), int64_t for INT and SIZE, int for BOOL). Positional arguments
 * are moved to the front of ARGV and their count stored in *NPOS.
 * Returns 0, 1 when --help was given (help already printed to stdout), or
 * -EINVAL with a message in ERR; on 1 or an error CONF keeps no strings
 * (cfg_free is then a no-op, so calling it anyway is harmless). */
int cfg_parse(const struct cfg_opt *opts, void *conf, int argc, char **argv,
	      int *npos, char *err, size_t errlen);
/* Frees the strings cfg_parse stored in CONF. */
void cfg_free(const struct cfg_opt *opts, void *conf);
/* Prints "--name (type, default X): help" lines. */
void cfg_print_help(const struct cfg_opt *opts, FILE *out);
/* Parses "64K", "1M", "2G", "123" into bytes. 0 or -EINVAL. */
int cfg_parse_size(const char *s, int64_t *out);

#endif
