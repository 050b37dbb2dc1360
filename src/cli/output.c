/* What the client prints: errors as "uhub: MESSAGE" on stderr, tables and
 * "key: value" fields for people, the server's JSON for --json, and the
 * mapping of HTTP answers and finished runs to exit statuses (SPEC §6). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli/internal.h"
#include "util/buf.h"

void cli_errorf(const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "uhub: %s\n", msg);
}

void cli_print_usage(FILE *f, const struct cli_cmd *cmd, bool full)
{
	fprintf(f, "usage: uhub %s%s%s\n", cmd->name, cmd->args && *cmd->args ? " " : "", cmd->args ? cmd->args : "");
	if (!full)
		return;
	fprintf(f, "\n%s\n", cmd->summary);
	if (!cmd->opts || !cmd->opts[0].name)
		return;
	fprintf(f, "\noptions:\n");
	for (const struct cli_opt *o = cmd->opts; o->name; o++) {
		/* A value option's help reads "METAVAR: text". */
		const char *help = o->help ? o->help : "", *colon = strstr(help, ": ");
		char left[96], meta[32] = "";
		if (o->has_value && colon && (size_t)(colon - help) < sizeof(meta) - 1) {
			snprintf(meta, sizeof(meta), " %.*s", (int)(colon - help), help);
			help = colon + 2;
		} else if (o->has_value) {
			snprintf(meta, sizeof(meta), " VALUE");
		}
		if (o->short_name)
			snprintf(left, sizeof(left), "-%c, --%s%s", o->short_name, o->name, meta);
		else
			snprintf(left, sizeof(left), "    --%s%s", o->name, meta);
		fprintf(f, "  %-30s %s%s\n", left, help, o->repeat ? " (repeatable)" : "");
	}
}

int cli_usage(const struct cli_cmd *cmd, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cli_errorf("%s", msg);
	if (cmd)
		cli_print_usage(stderr, cmd, false);
	else
		fprintf(stderr, "run 'uhub help' for the list of commands\n");
	return UH_EXIT_USAGE;
}

int cli_exit_for_http(long status)
{
	if (status == 401 || status == 403)
		return UH_EXIT_NOPERM;
	/* What a proxy answers when uhub behind it is down. */
	if (status == 502 || status == 503 || status == 504)
		return UH_EXIT_UNREACHABLE;
	return UH_EXIT_FAIL;
}

/* Copy s into out, control characters replaced (see cli_text). */
static void clean_copy(char *out, size_t n, const char *s);

void cli_error_text(const json_t *body, long status, char *out, size_t n)
{
	const json_t *e = json_object_get(body, "error");
	const char *msg = json_string_value(json_object_get(e, "message"));
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *field = json_string_value(json_object_get(e, "field"));
	char m[768], f[200];
	if (!msg || !*msg) {
		if (code)
			snprintf(m, sizeof(m), "server answered HTTP %ld (%s)", status, code);
		else
			snprintf(m, sizeof(m), "server answered HTTP %ld", status);
	} else {
		clean_copy(m, sizeof(m), msg);
	}
	if (field && *field) {
		clean_copy(f, sizeof(f), field);
		snprintf(out, n, "%s (field: %s)", m, f);
	} else {
		snprintf(out, n, "%s", m);
	}
}

bool cli_run_terminal(const char *status)
{
	static const char *const terminal[] = {"succeeded", "failed", "timed_out", "canceled",
	                                       "rejected",  "error",  "lost"};
	if (!status)
		return false;
	for (size_t i = 0; i < sizeof(terminal) / sizeof(terminal[0]); i++)
		if (strcmp(status, terminal[i]) == 0)
			return true;
	return false;
}

int cli_exit_for_run(const json_t *run)
{
	const char *st = json_string_value(json_object_get(run, "status"));
	if (!st)
		return UH_EXIT_FAIL;
	if (strcmp(st, "succeeded") == 0)
		return UH_EXIT_OK;
	if (strcmp(st, "failed") == 0) {
		json_t *ec = json_object_get(run, "exit_code");
		json_int_t v = json_is_integer(ec) ? json_integer_value(ec) : 0;
		/* An exit status is 1..255; anything else (none, 0 on a remote
		 * failure, out of range) says "failed" with 1. */
		return v >= 1 && v <= 255 ? (int)v : UH_EXIT_FAIL;
	}
	if (strcmp(st, "timed_out") == 0)
		return UH_EXIT_TIMED_OUT;
	if (strcmp(st, "canceled") == 0)
		return UH_EXIT_CANCELED;
	if (strcmp(st, "rejected") == 0)
		return UH_EXIT_NOPERM;
	if (strcmp(st, "error") == 0)
		return UH_EXIT_RUN_ERROR;
	if (strcmp(st, "lost") == 0)
		return UH_EXIT_RUN_LOST;
	return UH_EXIT_FAIL;
}

static void clean_copy(char *out, size_t n, const char *s)
{
	size_t o = 0;
	if (!n)
		return;
	for (const unsigned char *p = (const unsigned char *)s; *p && o + 1 < n; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			out[o++] = '?';
		} else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			/* C1 controls (U+0080..U+009F), CSI among them. */
			out[o++] = '?';
			p++;
		} else {
			out[o++] = (char)*p;
		}
	}
	out[o] = '\0';
}

char *cli_text(const json_t *v)
{
	char num[64];
	const char *s;
	char *dumped = NULL;
	if (!v)
		return strdup("-");
	switch (json_typeof(v)) {
	case JSON_STRING:
		s = json_string_value(v);
		break;
	case JSON_INTEGER:
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		s = num;
		break;
	case JSON_REAL:
		snprintf(num, sizeof(num), "%g", json_real_value(v));
		s = num;
		break;
	case JSON_TRUE:
		s = "true";
		break;
	case JSON_FALSE:
		s = "false";
		break;
	case JSON_OBJECT:
	case JSON_ARRAY:
		dumped = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		s = dumped ? dumped : "?";
		break;
	default:
		s = "-";
	}
	size_t n = strlen(s) + 1;
	char *out = malloc(n);
	if (out)
		clean_copy(out, n, s);
	free(dumped);
	return out;
}

/* Columns on a terminal: UTF-8 continuation bytes take none. */
static size_t width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

void cli_print_table(FILE *f, const json_t *items, const struct cli_col *cols)
{
	size_t ncol = 0, nrow = json_array_size(items);
	while (cols[ncol].header)
		ncol++;
	char **cell = calloc((nrow + 1) * ncol + 1, sizeof(*cell));
	size_t *w = calloc(ncol + 1, sizeof(*w));
	if (!cell || !w)
		goto out;
	for (size_t j = 0; j < ncol; j++) {
		cell[j] = strdup(cols[j].header);
		for (size_t i = 0; i < nrow; i++) {
			json_t *it = json_array_get(items, i);
			json_t *v = json_is_object(it) ? json_object_get(it, cols[j].key) : (j == 0 ? it : NULL);
			cell[(i + 1) * ncol + j] = cli_text(v);
		}
	}
	for (size_t k = 0; k < (nrow + 1) * ncol; k++)
		if (cell[k] && width(cell[k]) > w[k % ncol])
			w[k % ncol] = width(cell[k]);
	for (size_t i = 0; i <= nrow; i++) {
		for (size_t j = 0; j < ncol; j++) {
			const char *s = cell[i * ncol + j] ? cell[i * ncol + j] : "?";
			if (j + 1 < ncol)
				fprintf(f, "%s%*s  ", s, (int)(w[j] - width(s)), "");
			else
				fprintf(f, "%s\n", s);
		}
	}
out:
	if (cell)
		for (size_t k = 0; k < (nrow + 1) * ncol; k++)
			free(cell[k]);
	free(cell);
	free(w);
}

void cli_print_fields(FILE *f, const json_t *obj)
{
	const char *k;
	json_t *v;
	size_t kw = 0;
	json_object_foreach((json_t *)obj, k, v)
	{
		if (strlen(k) > kw)
			kw = strlen(k);
	}
	json_object_foreach((json_t *)obj, k, v)
	{
		char key[256], *text = cli_text(v);
		clean_copy(key, sizeof(key), k);
		fprintf(f, "%s:%*s %s\n", key, (int)(kw - strlen(key)), "", text ? text : "?");
		free(text);
	}
}

void cli_print_json(const json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY);
	if (s) {
		fputs(s, stdout);
		fputc('\n', stdout);
	}
	free(s);
}

void cli_print_object(const struct cli *c, const json_t *obj)
{
	if (c->json)
		cli_print_json(obj);
	else
		cli_print_fields(stdout, obj);
}

int cli_show(struct cli *c, const char *path)
{
	struct cli_resp r;
	int rc = cli_call(c, "GET", path, NULL, &r);
	if (!rc)
		cli_print_object(c, r.json);
	cli_resp_free(&r);
	return rc;
}

int cli_show_list(struct cli *c, const char *path, const struct cli_col *cols)
{
	json_t *items, *next;
	int rc = cli_list(c, path, 0, &items, &next);
	if (rc)
		return rc;
	if (c->json) {
		json_t *o = json_pack("{s:O,s:O}", "items", items, "next", next);
		cli_print_json(o);
		json_decref(o);
	} else {
		cli_print_table(stdout, items, cols);
	}
	json_decref(items);
	json_decref(next);
	return 0;
}
