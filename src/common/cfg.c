/* cfg.c - the configuration table (cfg.h): defaults, then an INI file
 * (libinih), then flags. Each source overwrites the field, so later ones
 * win; string fields are freed on overwrite so CONF owns exactly one copy.
 * A key seen in the file but absent from the table is an error with
 * file:line, because a misspelt option that is silently ignored is how
 * clusters end up running with defaults nobody chose. */
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cfg.h"

int cfg_parse_size(const char *s, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || v < 0)
		return -EINVAL;
	int64_t mult = 1;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': mult = 1LL << 10; end++; break;
	case 'm': case 'M': mult = 1LL << 20; end++; break;
	case 'g': case 'G': mult = 1LL << 30; end++; break;
	case 't': case 'T': mult = 1LL << 40; end++; break;
	default: return -EINVAL;
	}
	if (*end == 'i' || *end == 'I')
		end++;
	if (*end == 'b' || *end == 'B')
		end++;
	if (*end != '\0' || v > INT64_MAX / mult)
		return -EINVAL;
	*out = v * mult;
	return 0;
}

static const struct cfg_opt *find_opt(const struct cfg_opt *opts, const char *name, size_t n)
{
	for (; opts->name; opts++)
		if (strlen(opts->name) == n && !strncmp(opts->name, name, n))
			return opts;
	return NULL;
}

static int set_value(const struct cfg_opt *o, void *conf, const char *val, char *err, size_t errlen)
{
	char *field = (char *)conf + o->offset;
	int64_t v = 0;
	char *end;
	switch (o->type) {
	case CFG_STR: {
		char *copy = strdup(val ? val : "");
		if (!copy) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		char **slot = (char **)(void *)field;
		free(*slot);
		*slot = copy;
		return 0;
	}
	case CFG_BOOL: {
		int b;
		if (!val || !strcasecmp(val, "1") || !strcasecmp(val, "true") ||
		    !strcasecmp(val, "yes") || !strcasecmp(val, "on"))
			b = 1;
		else if (!strcasecmp(val, "0") || !strcasecmp(val, "false") ||
			 !strcasecmp(val, "no") || !strcasecmp(val, "off"))
			b = 0;
		else {
			snprintf(err, errlen, "%s: '%s' is not a boolean", o->name, val);
			return -EINVAL;
		}
		memcpy(field, &b, sizeof(b));
		return 0;
	}
	case CFG_INT:
		if (!val || !*val)
			goto bad_number;
		errno = 0;
		v = strtoll(val, &end, 0);
		if (errno || *end)
			goto bad_number;
		break;
	case CFG_SIZE:
		if (!val || cfg_parse_size(val, &v) < 0)
			goto bad_number;
		break;
	}
	if ((o->min || o->max) && (v < o->min || v > o->max)) {
		snprintf(err, errlen, "%s: %" PRId64 " is outside [%" PRId64 ", %" PRId64 "]",
			 o->name, v, o->min, o->max);
		return -EINVAL;
	}
	memcpy(field, &v, sizeof(v));
	return 0;
bad_number:
	snprintf(err, errlen, "%s: '%s' is not a valid %s", o->name, val ? val : "",
		 o->type == CFG_SIZE ? "size" : "integer");
	return -EINVAL;
}

struct file_ctx {
	const struct cfg_opt *opts;
	void *conf;
	char *err;
	size_t errlen;
	const char *path;
	int rc;
};

/* Debian's libinih is built without INI_HANDLER_LINENO, so the handler
 * does not learn the line: find it again for the message. */
static int line_of_key(const char *path, const char *name)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	char line[1024];
	int no = 0, found = 0;
	size_t n = strlen(name);
	while (!found && fgets(line, sizeof(line), f)) {
		no++;
		const char *p = line + strspn(line, " \t");
		if (!strncmp(p, name, n)) {
			p += n;
			p += strspn(p, " \t");
			found = *p == '=' || *p == ':';
		}
	}
	fclose(f);
	return found ? no : 0;
}

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
	struct file_ctx *fc = user;
	int lineno = line_of_key(fc->path, name);
	(void)section;
	if (fc->rc)
		return 0;
	const struct cfg_opt *o = find_opt(fc->opts, name, strlen(name));
	if (!o || !strcmp(name, "config")) {
		snprintf(fc->err, fc->errlen, "%s:%d: unknown key '%s'", fc->path, lineno, name);
		fc->rc = -EINVAL;
		return 0;
	}
	char sub[256];
	int rc = set_value(o, fc->conf, value, sub, sizeof(sub));
	if (rc) {
		snprintf(fc->err, fc->errlen, "%s:%d: %s", fc->path, lineno, sub);
		fc->rc = rc;
		return 0;
	}
	return 1;
}

void cfg_print_help(const struct cfg_opt *opts, FILE *out)
{
	static const char *const tnames[] = { "string", "int", "bool", "size" };
	fprintf(out, "  --%-22s %s\n", "config FILE", "read options from an INI file (flags win)");
	for (; opts->name; opts++) {
		char flag[64];
		snprintf(flag, sizeof(flag), "%s", opts->name);
		fprintf(out, "  --%-22s %s (%s, default %s)\n", flag, opts->help ? opts->help : "",
			tnames[opts->type], opts->def && *opts->def ? opts->def : "none");
	}
}

void cfg_free(const struct cfg_opt *opts, void *conf)
{
	for (; opts->name; opts++) {
		if (opts->type != CFG_STR)
			continue;
		char **slot = (char **)(void *)((char *)conf + opts->offset);
		free(*slot);
		*slot = NULL;
	}
}

static int parse_into(const struct cfg_opt *opts, void *conf, int argc, char **argv,
		      int *npos, char *err, size_t errlen)
{
	int rc;
	*npos = 0;
	for (const struct cfg_opt *o = opts; o->name; o++) {
		if (o->type == CFG_STR) {
			char **slot = (char **)(void *)((char *)conf + o->offset);
			*slot = NULL;
		}
		if ((rc = set_value(o, conf, o->def ? o->def : (o->type == CFG_STR ? "" : "0"),
				    err, errlen)))
			return rc;
	}

	/* The file first, wherever --config stands, so flags override it. */
	for (int i = 1; i < argc; i++) {
		const char *path = NULL;
		if (!strncmp(argv[i], "--config=", 9))
			path = argv[i] + 9;
		else if (!strcmp(argv[i], "--config") && i + 1 < argc)
			path = argv[i + 1];
		if (!path)
			continue;
		struct file_ctx fc = { opts, conf, err, errlen, path, 0 };
		int r = ini_parse(path, on_ini, &fc);
		if (r < 0) {
			snprintf(err, errlen, "%s: cannot open config file", path);
			return -EINVAL;
		}
		if (fc.rc)
			return fc.rc;
		if (r > 0) {
			snprintf(err, errlen, "%s:%d: syntax error", path, r);
			return -EINVAL;
		}
	}

	int pos = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--")) {
			while (++i < argc)
				argv[pos++] = argv[i];
			break;
		}
		if (strncmp(a, "--", 2) || a[2] == '\0') {
			argv[pos++] = argv[i];
			continue;
		}
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			cfg_print_help(opts, stdout);
			return 1;
		}
		const char *name = a + 2;
		const char *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		if (nlen == 6 && !strncmp(name, "config", 6)) {
			if (!eq)
				i++;
			continue;
		}
		const struct cfg_opt *o = find_opt(opts, name, nlen);
		const char *val = eq ? eq + 1 : NULL;
		int negated = 0;
		if (!o && nlen > 3 && !strncmp(name, "no-", 3)) {
			o = find_opt(opts, name + 3, nlen - 3);
			negated = o && o->type == CFG_BOOL && !eq;
			if (!negated)
				o = NULL;
		}
		if (!o) {
			snprintf(err, errlen, "unknown option --%.*s", (int)nlen, name);
			return -EINVAL;
		}
		if (negated)
			val = "false";
		else if (!val && o->type != CFG_BOOL) {
			if (i + 1 >= argc) {
				snprintf(err, errlen, "option --%s needs a value", o->name);
				return -EINVAL;
			}
			val = argv[++i];
		}
		if ((rc = set_value(o, conf, val, err, errlen)))
			return rc;
	}
	*npos = pos;
	return 0;
}

int cfg_parse(const struct cfg_opt *opts, void *conf, int argc, char **argv,
	      int *npos, char *err, size_t errlen)
{
	int rc = parse_into(opts, conf, argc, argv, npos, err, errlen);
	/* a caller that stops at --help or an error need not free */
	if (rc)
		cfg_free(opts, conf);
	return rc;
}
