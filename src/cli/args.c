/* The client's option parser and the pure helpers that turn command-line
 * words into request parts (key=value pairs, expiries, job references,
 * escaped paths). Nothing here talks to the server. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/internal.h"
#include "util/error.h"
#include "util/time.h"

static int fail(struct cli_args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct cli_args *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(a->error, sizeof(a->error), fmt, ap);
	va_end(ap);
	return UH_EXIT_USAGE;
}

static int add_opt(struct cli_args *a, const struct cli_opt *opts, int i, const char *value, const char *word)
{
	if (!opts[i].repeat && cli_has(a, i))
		return fail(a, "option '%s' given more than once", word);
	a->set[a->nset].opt = i;
	a->set[a->nset].value = value;
	a->nset++;
	return 0;
}

static int parse_long(struct cli_args *a, const struct cli_opt *opts, int argc, char **argv, int *k)
{
	const char *word = argv[*k], *name = word + 2, *eq = strchr(name, '=');
	size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
	for (int i = 0; opts[i].name; i++) {
		if (strlen(opts[i].name) != nlen || strncmp(opts[i].name, name, nlen) != 0)
			continue;
		if (!opts[i].has_value) {
			if (eq)
				return fail(a, "option '--%s' takes no value", opts[i].name);
			return add_opt(a, opts, i, NULL, word);
		}
		if (eq)
			return add_opt(a, opts, i, eq + 1, word);
		if (*k + 1 >= argc)
			return fail(a, "option '--%s' needs a value", opts[i].name);
		(*k)++;
		return add_opt(a, opts, i, argv[*k], word);
	}
	return fail(a, "unknown option '%s'", word);
}

static int parse_short(struct cli_args *a, const struct cli_opt *opts, int argc, char **argv, int *k)
{
	const char *word = argv[*k];
	for (int i = 0; opts[i].name; i++) {
		if (!opts[i].short_name || opts[i].short_name != word[1])
			continue;
		if (!opts[i].has_value) {
			if (word[2])
				return fail(a, "option '%s' takes no value (give short options one by one)", word);
			return add_opt(a, opts, i, NULL, word);
		}
		if (word[2])
			return add_opt(a, opts, i, word + 2, word);
		if (*k + 1 >= argc)
			return fail(a, "option '%s' needs a value", word);
		(*k)++;
		return add_opt(a, opts, i, argv[*k], word);
	}
	return fail(a, "unknown option '%s'", word);
}

int cli_args_parse(struct cli_args *a, const struct cli_opt *opts, int argc, char **argv)
{
	memset(a, 0, sizeof(*a));
	size_t n = (size_t)(argc > 0 ? argc : 0) + 1;
	a->set = calloc(n, sizeof(*a->set));
	a->pos = calloc(n, sizeof(*a->pos));
	if (!a->set || !a->pos)
		return fail(a, "%s", "out of memory");
	for (int k = 0; k < argc; k++) {
		char *w = argv[k];
		int r = 0;
		if (strcmp(w, "--") == 0) {
			a->dashdash = true;
			a->rest = argv + k + 1;
			a->nrest = argc - k - 1;
			break;
		}
		if (w[0] == '-' && w[1] == '-')
			r = parse_long(a, opts, argc, argv, &k);
		else if (w[0] == '-' && w[1])
			r = parse_short(a, opts, argc, argv, &k);
		else
			a->pos[a->npos++] = w;
		if (r)
			return r;
	}
	return 0;
}

void cli_args_free(struct cli_args *a)
{
	free(a->set);
	free(a->pos);
	a->set = NULL;
	a->pos = NULL;
	a->nset = a->npos = 0;
}

bool cli_has(const struct cli_args *a, int opt)
{
	for (int i = 0; i < a->nset; i++)
		if (a->set[i].opt == opt)
			return true;
	return false;
}

const char *cli_get(const struct cli_args *a, int opt)
{
	const char *v = NULL;
	for (int i = 0; i < a->nset; i++)
		if (a->set[i].opt == opt)
			v = a->set[i].value;
	return v;
}

int cli_split_kv(const char *s, char **key, char **value)
{
	const char *eq = strchr(s, '=');
	*key = *value = NULL;
	if (!eq || eq == s)
		return UH_E_INVALID_REQUEST;
	*key = strndup(s, (size_t)(eq - s));
	*value = strdup(eq + 1);
	if (!*key || !*value) {
		free(*key);
		free(*value);
		*key = *value = NULL;
		return UH_E_INTERNAL;
	}
	return 0;
}

bool cli_param_name_ok(const char *s)
{
	if (!s || !(*s >= 'A' && *s <= 'Z'))
		return false;
	for (s++; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

bool cli_env_name_ok(const char *s)
{
	if (!s || !(isalpha((unsigned char)*s) || *s == '_'))
		return false;
	for (s++; *s; s++)
		if (!(isalnum((unsigned char)*s) || *s == '_'))
			return false;
	return true;
}

int cli_expiry(const char *s, int64_t now_us, char out[32])
{
	int64_t us;
	if (!s || !*s)
		return UH_E_INVALID_REQUEST;
	if (uh_time_parse(s, &us) == 0) {
		uh_time_format(us, out);
		return 0;
	}
	/* A duration: digits and one unit. */
	const char *p = s;
	if (*p == '+')
		p++;
	if (!isdigit((unsigned char)*p))
		return UH_E_INVALID_REQUEST;
	errno = 0;
	char *end;
	unsigned long long n = strtoull(p, &end, 10);
	if (errno || end == p)
		return UH_E_INVALID_REQUEST;
	int64_t unit;
	if (strcmp(end, "s") == 0)
		unit = 1;
	else if (strcmp(end, "m") == 0)
		unit = 60;
	else if (strcmp(end, "h") == 0)
		unit = 3600;
	else if (strcmp(end, "d") == 0)
		unit = 86400;
	else if (strcmp(end, "w") == 0)
		unit = 7 * 86400;
	else
		return UH_E_INVALID_REQUEST;
	/* At most about 100 years ahead: anything past is a typing slip. */
	if (n == 0 || n > (unsigned long long)(100LL * 366 * 86400 / unit))
		return UH_E_INVALID_REQUEST;
	us = now_us + (int64_t)n * unit * 1000000;
	us -= us % 1000000;
	uh_time_format(us, out);
	return 0;
}

int cli_split_job_ref(const char *s, char **project, char **job)
{
	const char *slash = strchr(s, '/');
	*project = *job = NULL;
	if (!*s)
		return UH_E_INVALID_REQUEST;
	if (!slash)
		return 0;
	if (slash == s || !slash[1])
		return UH_E_INVALID_REQUEST;
	*project = strndup(s, (size_t)(slash - s));
	*job = strdup(slash + 1);
	if (!*project || !*job) {
		free(*project);
		free(*job);
		*project = *job = NULL;
		return UH_E_INTERNAL;
	}
	return 1;
}

int cli_json_escape(struct uh_buf *b, const char *s, size_t len)
{
	int r = uh_buf_append(b, "\"", 1);
	for (size_t i = 0; i < len && !r; i++) {
		unsigned char ch = (unsigned char)s[i];
		char esc[8];
		if (ch == '"' || ch == '\\') {
			esc[0] = '\\';
			esc[1] = (char)ch;
			r = uh_buf_append(b, esc, 2);
		} else if (ch == '\n') {
			r = uh_buf_append(b, "\\n", 2);
		} else if (ch == '\r') {
			r = uh_buf_append(b, "\\r", 2);
		} else if (ch == '\t') {
			r = uh_buf_append(b, "\\t", 2);
		} else if (ch < 0x20 || ch == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", ch);
			r = uh_buf_append(b, esc, 6);
		} else {
			r = uh_buf_append(b, &s[i], 1);
		}
	}
	if (!r)
		r = uh_buf_append(b, "\"", 1);
	return r;
}

static int pct_encode(struct uh_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	int r = 0;
	for (; *s && !r; s++) {
		unsigned char ch = (unsigned char)*s;
		if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			r = uh_buf_append(b, s, 1);
		} else {
			char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
			r = uh_buf_append(b, e, 3);
		}
	}
	return r;
}

int cli_pathf(struct uh_buf *b, const char *fmt, ...)
{
	va_list ap;
	int r = 0;
	va_start(ap, fmt);
	for (const char *p = fmt; *p && !r; p++) {
		if (*p != '%') {
			r = uh_buf_append(b, p, 1);
		} else if (p[1] == 's') {
			r = pct_encode(b, va_arg(ap, const char *));
			p++;
		} else if (p[1] == '%') {
			r = uh_buf_append(b, "%", 1);
			p++;
		} else {
			r = UH_E_INTERNAL; /* a format this helper does not know */
		}
	}
	va_end(ap);
	return r;
}

void cli_skip(size_t *to_skip, const char **data, size_t *len)
{
	size_t n = *to_skip < *len ? *to_skip : *len;
	*data += n;
	*len -= n;
	*to_skip -= n;
}
