/* The webhook backend's config: key checks, preset expansion (GitLab
 * pipeline triggers, Jenkins builds, Azure Durable Functions), templates,
 * JSON pointers and status mapping. All pure: validate() runs on any
 * thread, the fuzz targets call these directly. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend/webhook.h"
#include "util/buf.h"

#define P             "execution_backend_config"
#define MAX_TPL_BYTES (256 * 1024)
#define MAX_VALUES    32

/* ---- templates ---- */

static int append_escaped(struct uh_buf *b, const char *v, enum uh_wh_escape esc)
{
	int rc = 0;
	for (const unsigned char *p = (const unsigned char *)v; *p && !rc; p++) {
		unsigned char c = *p;
		if (esc == UH_WH_ESC_URL) {
			if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
				rc = uh_buf_append(b, p, 1);
			else
				rc = uh_buf_printf(b, "%%%02X", c);
		} else if (esc == UH_WH_ESC_JSON) {
			if (c == '"' || c == '\\')
				rc = uh_buf_printf(b, "\\%c", c);
			else if (c == '\n')
				rc = uh_buf_appends(b, "\\n");
			else if (c == '\r')
				rc = uh_buf_appends(b, "\\r");
			else if (c == '\t')
				rc = uh_buf_appends(b, "\\t");
			else if (c < 0x20 || c == 0x7f)
				rc = uh_buf_printf(b, "\\u%04x", c);
			else
				rc = uh_buf_append(b, p, 1);
		} else {
			rc = uh_buf_append(b, p, 1);
		}
	}
	return rc;
}

int uh_webhook_expand(const char *tpl, enum uh_wh_escape esc, uh_wh_lookup_fn fn, void *arg, char **out,
                      struct uh_error *err)
{
	struct uh_buf b;
	uh_buf_init(&b, MAX_TPL_BYTES);
	*out = NULL;
	const char *p = tpl;
	int rc = uh_buf_append(&b, "", 0);
	while (!rc && *p) {
		const char *o = strstr(p, "{{");
		if (!o) {
			rc = uh_buf_appends(&b, p);
			break;
		}
		rc = uh_buf_append(&b, p, (size_t)(o - p));
		const char *c = strstr(o + 2, "}}");
		if (rc)
			break;
		if (!c || c - (o + 2) > 200) {
			uh_buf_free(&b);
			return uh_error_set(err, UH_E_INVALID_CONFIG, NULL, "unclosed '{{' in template");
		}
		char name[256];
		size_t n = (size_t)(c - (o + 2));
		memcpy(name, o + 2, n);
		name[n] = '\0';
		const char *v = fn ? fn(arg, name) : NULL;
		if (!v) {
			uh_buf_free(&b);
			return uh_error_set(err, UH_E_INVALID_CONFIG, NULL, "unknown template variable '{{%s}}'", name);
		}
		rc = append_escaped(&b, v, esc);
		p = c + 2;
	}
	if (rc) {
		uh_buf_free(&b);
		return uh_error_set(err, UH_E_INVALID_CONFIG, NULL, "template expands past %d bytes", MAX_TPL_BYTES);
	}
	*out = uh_buf_take(&b);
	return 0;
}

/* ---- JSON pointers, status mapping ---- */

bool uh_webhook_pointer_ok(const char *ptr)
{
	if (!ptr)
		return false;
	if (!*ptr)
		return true;
	if (*ptr != '/' || strlen(ptr) > 512)
		return false;
	for (const char *p = ptr; *p; p++)
		if (*p == '~' && p[1] != '0' && p[1] != '1')
			return false;
	return true;
}

const json_t *uh_webhook_pointer_get(const json_t *doc, const char *ptr)
{
	if (!uh_webhook_pointer_ok(ptr))
		return NULL;
	const json_t *cur = doc;
	const char *p = ptr;
	while (cur && *p == '/') {
		p++;
		size_t n = strcspn(p, "/");
		char tok[513];
		size_t k = 0;
		for (size_t i = 0; i < n; i++) {
			if (p[i] == '~') {
				tok[k++] = p[i + 1] == '1' ? '/' : '~';
				i++;
			} else {
				tok[k++] = p[i];
			}
		}
		tok[k] = '\0';
		p += n;
		if (json_is_object(cur)) {
			cur = json_object_get(cur, tok);
		} else if (json_is_array(cur)) {
			if (k == 0 || k > 9 || (tok[0] == '0' && k > 1))
				return NULL;
			size_t idx = 0;
			for (size_t i = 0; i < k; i++) {
				if (!isdigit((unsigned char)tok[i]))
					return NULL;
				idx = idx * 10 + (size_t)(tok[i] - '0');
			}
			cur = json_array_get(cur, idx);
		} else {
			return NULL;
		}
	}
	return cur;
}

const char *uh_webhook_scalar(const json_t *v, char *buf, size_t len)
{
	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_integer(v)) {
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return buf;
	}
	if (json_is_real(v)) {
		snprintf(buf, len, "%.17g", json_real_value(v));
		return buf;
	}
	if (json_is_boolean(v)) {
		snprintf(buf, len, "%s", json_is_true(v) ? "true" : "false");
		return buf;
	}
	return NULL;
}

static bool in_values(const json_t *arr, const char *s)
{
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v)
	{
		if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
			return true;
	}
	return false;
}

enum uh_wh_verdict uh_webhook_map_status(const json_t *doc, const char *status_path, const json_t *success_values,
                                         const json_t *failure_values)
{
	char buf[64];
	const char *s = uh_webhook_scalar(uh_webhook_pointer_get(doc, status_path), buf, sizeof(buf));
	if (!s)
		return UH_WH_PENDING;
	if (in_values(success_values, s))
		return UH_WH_SUCCEEDED;
	if (in_values(failure_values, s))
		return UH_WH_FAILED;
	return UH_WH_PENDING;
}

/* ---- headers ---- */

bool uh_wh_header_sensitive(const char *name)
{
	static const char *const exact[] = {
	    "authorization", "proxy-authorization", "cookie",  "set-cookie", "x-api-key", "private-token",
	    "job-token",     "x-functions-key",     "api-key", "apikey",     "x-auth",    NULL};
	static const char *const parts[] = {"token",   "secret",    "key",        "auth",   "password", "passwd",
	                                    "session", "signature", "credential", "cookie", NULL};
	for (int i = 0; exact[i]; i++)
		if (strcasecmp(name, exact[i]) == 0)
			return true;
	for (int i = 0; parts[i]; i++)
		if (strcasestr(name, parts[i]))
			return true;
	return false;
}

static bool header_name_ok(const char *n)
{
	if (!*n || strlen(n) > 64)
		return false;
	for (const char *p = n; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
			return false;
	static const char *const reserved[] = {"host",
	                                       "content-length",
	                                       "transfer-encoding",
	                                       "connection",
	                                       "idempotency-key",
	                                       "expect",
	                                       "upgrade",
	                                       "te",
	                                       "keep-alive",
	                                       NULL};
	for (int i = 0; reserved[i]; i++)
		if (strcasecmp(n, reserved[i]) == 0)
			return false;
	return true;
}

static bool secret_ref_ok(const char *r)
{
	size_t n = strlen(r);
	if (n == 0 || n > 200)
		return false;
	for (const char *p = r; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("_.:/#-", *p))
			return false;
	return true;
}

/* The REF of a value that is exactly "{{secrets.REF}}", or NULL. */
static const char *whole_secret_ref(const char *v, char *buf, size_t len)
{
	size_t n = strlen(v);
	if (n < 13 || strncmp(v, "{{secrets.", 10) != 0 || strcmp(v + n - 2, "}}") != 0 || n - 12 >= len)
		return NULL;
	memcpy(buf, v + 10, n - 12);
	buf[n - 12] = '\0';
	if (strstr(buf, "{{") || strstr(buf, "}}") || !secret_ref_ok(buf))
		return NULL;
	return buf;
}

/* Template names a config may use. secrets.* only where allow_secrets. */
struct check_ctx {
	bool allow_secrets;
	bool allow_external_id;
	bool bad_secret;
};

static bool param_name_ok(const char *s)
{
	if (!isupper((unsigned char)*s))
		return false;
	for (; *s; s++)
		if (!isupper((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '_')
			return false;
	return true;
}

static const char *check_lookup(void *arg, const char *name)
{
	struct check_ctx *c = arg;
	static const char *const fixed[] = {"run.id",     "job.name",     "job.id",         "project.name",
	                                    "project.id", "callback.url", "callback.token", NULL};
	for (int i = 0; fixed[i]; i++)
		if (strcmp(name, fixed[i]) == 0)
			return "x";
	if (strcmp(name, "external_id") == 0)
		return c->allow_external_id ? "x" : NULL;
	if (strncmp(name, "parameters.", 11) == 0 && param_name_ok(name + 11))
		return "x";
	if (strncmp(name, "secrets.", 8) == 0) {
		if (!c->allow_secrets || !secret_ref_ok(name + 8)) {
			c->bad_secret = true;
			return NULL;
		}
		return "x";
	}
	return NULL;
}

static int check_tpl(const char *tpl, bool allow_secrets, bool allow_external_id, const char *field,
                     struct uh_error *err)
{
	struct check_ctx c = {.allow_secrets = allow_secrets, .allow_external_id = allow_external_id};
	char *out = NULL;
	char f[160];
	snprintf(f, sizeof(f), P ".%s", field);
	int rc = uh_webhook_expand(tpl, UH_WH_ESC_NONE, check_lookup, &c, &out, err);
	free(out);
	if (rc && c.bad_secret)
		return uh_error_set(err, UH_E_INVALID_CONFIG, f,
		                    "'%s' may not use {{secrets.*}}: secrets go in header values only", f);
	if (rc) {
		char m[sizeof(err->message)];
		snprintf(m, sizeof(m), "%s", err->message);
		return uh_error_set(err, UH_E_INVALID_CONFIG, f, "'%s': %s", f, m);
	}
	return 0;
}

static int check_json_tpl(const json_t *v, bool allow_external_id, const char *field, int depth, struct uh_error *err)
{
	if (depth > 16)
		return uh_error_set(err, UH_E_INVALID_CONFIG, P ".body", "'" P ".body' is nested too deeply");
	if (json_is_string(v))
		return check_tpl(json_string_value(v), false, allow_external_id, field, err);
	if (json_is_object(v)) {
		const char *k;
		json_t *x;
		json_object_foreach((json_t *)v, k, x)
		{
			if (strstr(k, "{{"))
				return uh_error_set(err, UH_E_INVALID_CONFIG, P ".body",
				                    "'" P ".body': templates go in values, not keys");
			int rc = check_json_tpl(x, allow_external_id, field, depth + 1, err);
			if (rc)
				return rc;
		}
	} else if (json_is_array(v)) {
		size_t i;
		json_t *x;
		json_array_foreach(v, i, x)
		{
			int rc = check_json_tpl(x, allow_external_id, field, depth + 1, err);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* ---- config loading and preset expansion ---- */

static const char *const generic_keys[] = {"url",
                                           "method",
                                           "headers",
                                           "body",
                                           "token_secret",
                                           "auth_header",
                                           "ca_cert",
                                           "mode",
                                           "external_id_path",
                                           "status_url",
                                           "status_path",
                                           "success_values",
                                           "failure_values",
                                           "poll_interval_seconds",
                                           "preset",
                                           "cancel_url",
                                           "timeout_seconds",
                                           "cpu_limit",
                                           "mem_limit",
                                           NULL};
static const char *const gitlab_keys[] = {"preset",          "url",       "project",   "ref",  "variables",
                                          "token_secret",    "headers",   "ca_cert",   "mode", "poll_interval_seconds",
                                          "timeout_seconds", "cpu_limit", "mem_limit", NULL};
static const char *const jenkins_keys[] = {"preset",          "url",       "job",       "user", "parameters",
                                           "token_secret",    "headers",   "ca_cert",   "mode", "poll_interval_seconds",
                                           "timeout_seconds", "cpu_limit", "mem_limit", NULL};
static const char *const azure_keys[] = {"preset",          "url",       "body",      "token_secret",
                                         "headers",         "ca_cert",   "mode",      "poll_interval_seconds",
                                         "timeout_seconds", "cpu_limit", "mem_limit", NULL};

static int only_keys(const json_t *o, const char *const *allowed, const char *what, struct uh_error *err)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)o, k, v)
	{
		bool ok = false;
		for (int i = 0; allowed[i] && !ok; i++)
			ok = strcmp(k, allowed[i]) == 0;
		if (!ok) {
			char f[160];
			snprintf(f, sizeof(f), P ".%s", k);
			return uh_error_set(err, UH_E_INVALID_CONFIG, f, "unknown key '%s'%s%s", f,
			                    what ? " with preset " : "", what ? what : "");
		}
	}
	return 0;
}

static int get_s(const json_t *o, const char *k, bool required, size_t max, const char **out, struct uh_error *err)
{
	json_t *v = json_object_get(o, k);
	*out = NULL;
	if (!v || json_is_null(v)) {
		if (required) {
			char f[160];
			snprintf(f, sizeof(f), P ".%s", k);
			return uh_error_set(err, UH_E_INVALID_CONFIG, f, "'%s' is required", f);
		}
		return 0;
	}
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		char f[160];
		snprintf(f, sizeof(f), P ".%s", k);
		return uh_error_set(err, UH_E_INVALID_CONFIG, f, "'%s' must be a non-empty string of at most %zu bytes",
		                    f, max);
	}
	*out = json_string_value(v);
	return 0;
}

static int values_ok(const json_t *o, const char *k, struct uh_error *err)
{
	json_t *v = json_object_get(o, k);
	if (!v)
		return 0;
	char f[160];
	snprintf(f, sizeof(f), P ".%s", k);
	if (!json_is_array(v) || json_array_size(v) > MAX_VALUES)
		return uh_error_set(err, UH_E_INVALID_CONFIG, f, "'%s' must be an array of at most %d strings", f,
		                    MAX_VALUES);
	size_t i;
	json_t *x;
	json_array_foreach(v, i, x)
	{
		if (!json_is_string(x) || json_string_length(x) == 0 || json_string_length(x) > 128)
			return uh_error_set(err, UH_E_INVALID_CONFIG, f,
			                    "'%s' element %zu must be a string of 1 to 128 bytes", f, i);
	}
	return 0;
}

static int pointer_key(const json_t *o, const char *k, struct uh_error *err)
{
	const char *s;
	int rc = get_s(o, k, false, 512, &s, err);
	if (rc)
		return rc;
	if (s && (s[0] != '/' || !uh_webhook_pointer_ok(s))) {
		char f[160];
		snprintf(f, sizeof(f), P ".%s", k);
		return uh_error_set(err, UH_E_INVALID_CONFIG, f, "'%s' must be a JSON pointer such as \"/id\"", f);
	}
	return 0;
}

/* The URL's scheme and host part must be literal: check the prefix up to
 * the first template parses as an https URL under the server's policy. */
static int url_ok(const struct uh_config *cfg, const char *url, const char *key, bool allow_external_id,
                  struct uh_error *err)
{
	char f[160];
	snprintf(f, sizeof(f), P ".%s", key);
	int rc = check_tpl(url, false, allow_external_id, key, err);
	if (rc)
		return rc;
	const char *t = strstr(url, "{{");
	size_t n = t ? (size_t)(t - url) : strlen(url);
	char pre[2300];
	if (n >= sizeof(pre))
		return uh_error_set(err, UH_E_INVALID_CONFIG, f, "'%s' is too long", f);
	memcpy(pre, url, n);
	pre[n] = '\0';
	struct uh_wh_url u;
	size_t alen = strncasecmp(pre, "https://", 8) == 0 ? strcspn(pre + 8, "/?#") : 0;
	if (uh_webhook_url_parse(pre, &u) || (t && pre[8 + alen] == '\0'))
		return uh_error_set(err, UH_E_INVALID_CONFIG, f,
		                    "'%s' must be an https:// URL with a literal host (no user info, no fragment)", f);
	if (!uh_webhook_host_allowed(cfg, u.host))
		return uh_error_set(err, UH_E_INVALID_CONFIG, f, "'%s' host '%s' is not in webhook.allowed_hosts", f,
		                    u.host);
	struct sockaddr_storage ss;
	if (uh_webhook_parse_ip(u.host, &ss) == 0 &&
	    !uh_webhook_addr_allowed((struct sockaddr *)&ss, cfg->webhook.allow_private_networks))
		return uh_error_set(err, UH_E_INVALID_CONFIG, f,
		                    "'%s' points to a private, loopback, link-local or metadata address "
		                    "(webhook.allow_private_networks)",
		                    f);
	return 0;
}

static int headers_ok(const json_t *h, struct uh_error *err)
{
	if (!h)
		return 0;
	if (!json_is_object(h) || json_object_size(h) > 32)
		return uh_error_set(err, UH_E_INVALID_CONFIG, P ".headers",
		                    "'" P ".headers' must be an object of at most 32 string values");
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)h, k, v)
	{
		char f[200];
		snprintf(f, sizeof(f), "headers.%s", k);
		char ff[240];
		snprintf(ff, sizeof(ff), P ".%s", f);
		if (!header_name_ok(k))
			return uh_error_set(err, UH_E_INVALID_CONFIG, ff, "'%s': header name not allowed", ff);
		if (!json_is_string(v) || json_string_length(v) > 4096 ||
		    strlen(json_string_value(v)) != json_string_length(v) || strpbrk(json_string_value(v), "\r\n"))
			return uh_error_set(err, UH_E_INVALID_CONFIG, ff, "'%s' must be a one-line string", ff);
		const char *s = json_string_value(v);
		char ref[256];
		if (uh_wh_header_sensitive(k) && !whole_secret_ref(s, ref, sizeof(ref)))
			return uh_error_set(err, UH_E_INVALID_CONFIG, ff,
			                    "'%s' looks like a credential: its value must be exactly "
			                    "\"{{secrets.NAME}}\"",
			                    ff);
		int rc = check_tpl(s, true, true, f, err);
		if (rc)
			return rc;
	}
	return 0;
}

static int mode_of(const char *s, enum uh_wh_mode *m)
{
	if (!s)
		return 0;
	if (strcmp(s, "fire_and_forget") == 0)
		*m = UH_WH_FIRE;
	else if (strcmp(s, "poll") == 0)
		*m = UH_WH_POLL;
	else if (strcmp(s, "callback") == 0)
		*m = UH_WH_CALLBACK;
	else
		return -1;
	return 0;
}

static char *strip_slash(const char *u)
{
	char *s = strdup(u);
	size_t n = s ? strlen(s) : 0;
	while (n > 8 && s[n - 1] == '/')
		s[--n] = '\0';
	return s;
}

static void pct(struct uh_buf *b, const char *s)
{
	append_escaped(b, s, UH_WH_ESC_URL);
}

static void set_str(json_t *j, const char *k, const char *v)
{
	json_object_set_new(j, k, json_string(v));
}

static json_t *str_array(const char *const *v)
{
	json_t *a = json_array();
	for (int i = 0; v[i]; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

static int expand_gitlab(const json_t *in, json_t *j, struct uh_wh_conf *c, struct uh_error *err)
{
	const char *url, *ref;
	json_t *proj = json_object_get(in, "project");
	int rc;
	if ((rc = get_s(in, "url", true, 2048, &url, err)) || (rc = get_s(in, "ref", true, 255, &ref, err)))
		return rc;
	char pbuf[64];
	const char *p = json_is_integer(proj) && json_integer_value(proj) > 0
	                    ? (snprintf(pbuf, sizeof(pbuf), "%" JSON_INTEGER_FORMAT, json_integer_value(proj)), pbuf)
	                : json_is_string(proj) && json_string_length(proj) > 0 && json_string_length(proj) < 256
	                    ? json_string_value(proj)
	                    : NULL;
	if (!p || strstr(p, "{{"))
		return uh_error_set(err, UH_E_INVALID_CONFIG, P ".project",
		                    "'" P ".project' must be the project's id or its full path (\"group/name\")");
	json_t *vars = json_object_get(in, "variables");
	if (vars && (!json_is_object(vars) || json_object_size(vars) > 64))
		return uh_error_set(err, UH_E_INVALID_CONFIG, P ".variables",
		                    "'" P ".variables' must be an object of at most 64 string values");
	const char *k;
	json_t *v;
	json_object_foreach(vars, k, v)
	{
		if (!json_is_string(v) || !*k || strlen(k) > 255)
			return uh_error_set(err, UH_E_INVALID_CONFIG, P ".variables",
			                    "'" P ".variables.%s' must be a string", k);
	}
	char *base = strip_slash(url);
	struct uh_buf b;
	uh_buf_init(&b, 8192);
	uh_buf_printf(&b, "%s/api/v4/projects/", base);
	pct(&b, p);
	char *proj_url = uh_buf_take(&b);
	uh_buf_printf(&b, "%s/trigger/pipeline", proj_url);
	json_object_set_new(j, "url", json_string(b.data));
	uh_buf_reset(&b);
	uh_buf_printf(&b, "%s/pipelines/{{external_id}}", proj_url);
	set_str(j, "status_url", b.data);
	uh_buf_appends(&b, "/cancel");
	set_str(j, "cancel_url", b.data);
	uh_buf_free(&b);
	free(proj_url);
	free(base);
	json_t *body = json_object();
	set_str(body, "ref", ref);
	json_t *bv = vars ? json_deep_copy(vars) : json_object();
	if (!json_object_get(bv, "UHUB_RUN_ID"))
		set_str(bv, "UHUB_RUN_ID", "{{run.id}}");
	json_object_set_new(body, "variables", bv);
	json_object_set_new(j, "body", body);
	set_str(j, "method", "POST");
	set_str(j, "external_id_path", "/id");
	set_str(j, "status_path", "/status");
	static const char *const ok[] = {"success", NULL};
	static const char *const ko[] = {"failed", "canceled", "skipped", NULL};
	json_object_set_new(j, "success_values", str_array(ok));
	json_object_set_new(j, "failure_values", str_array(ko));
	c->auth = UH_WH_AUTH_BODY;
	c->body_token_field = "token";
	if (!json_object_get(in, "token_secret"))
		return uh_error_set(err, UH_E_INVALID_CONFIG, P ".token_secret",
		                    "'" P ".token_secret' is required with preset gitlab (the pipeline trigger token)");
	return 0;
}

static int expand_jenkins(const json_t *in, json_t *j, struct uh_wh_conf *c, struct uh_error *err)
{
	const char *url, *job, *user;
	int rc;
	if ((rc = get_s(in, "url", true, 2048, &url, err)) || (rc = get_s(in, "job", true, 512, &job, err)) ||
	    (rc = get_s(in, "user", true, 255, &user, err)))
		return rc;
	if (strstr(job, "{{") || strstr(job, "//") || job[0] == '/' || job[strlen(job) - 1] == '/' || strstr(job, ".."))
		return uh_error_set(err, UH_E_INVALID_CONFIG, P ".job",
		                    "'" P ".job' must be a job name, folders separated by '/'");
	if (strchr(user, ':') || strstr(user, "{{"))
		return uh_error_set(err, UH_E_INVALID_CONFIG, P ".user", "'" P ".user' may not contain ':' or '{{'");
	json_t *params = json_object_get(in, "parameters");
	if (params && (!json_is_object(params) || json_object_size(params) > 64))
		return uh_error_set(err, UH_E_INVALID_CONFIG, P ".parameters",
		                    "'" P ".parameters' must be an object of at most 64 string values");
	char *base = strip_slash(url);
	struct uh_buf b;
	uh_buf_init(&b, 65536);
	uh_buf_appends(&b, base);
	char *dup = strdup(job), *save = NULL;
	for (char *seg = strtok_r(dup, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
		uh_buf_appends(&b, "/job/");
		pct(&b, seg);
	}
	free(dup);
	uh_buf_appends(&b, json_object_size(params) ? "/buildWithParameters" : "/build");
	const char *k;
	json_t *v;
	char sep = '?';
	json_object_foreach(params, k, v)
	{
		if (!json_is_string(v) || !*k || strstr(k, "{{")) {
			uh_buf_free(&b);
			free(base);
			return uh_error_set(err, UH_E_INVALID_CONFIG, P ".parameters",
			                    "'" P ".parameters.%s' must be a string", k);
		}
		uh_buf_printf(&b, "%c", sep);
		pct(&b, k);
		uh_buf_appends(&b, "=");
		uh_buf_appends(&b, json_string_value(v)); /* a template: percent-encoded when expanded */
		sep = '&';
	}
	set_str(j, "url", b.data);
	uh_buf_free(&b);
	free(base);
	set_str(j, "method", "POST");
	c->flow = UH_WH_FLOW_JENKINS;
	c->auth = UH_WH_AUTH_BASIC;
	c->basic_user = json_string_value(json_object_get(j, "user")); /* j's: `in` is the caller's */
	if (!json_object_get(in, "token_secret"))
		return uh_error_set(err, UH_E_INVALID_CONFIG, P ".token_secret",
		                    "'" P ".token_secret' is required with preset jenkins (the user's API token)");
	return 0;
}

static int expand_azure(const json_t *in, json_t *j, struct uh_wh_conf *c, struct uh_error *err)
{
	const char *url;
	int rc = get_s(in, "url", true, 2048, &url, err);
	if (rc)
		return rc;
	set_str(j, "method", "POST");
	set_str(j, "external_id_path", "/id");
	set_str(j, "status_path", "/runtimeStatus");
	static const char *const ok[] = {"Completed", NULL};
	static const char *const ko[] = {"Failed", "Terminated", "Canceled", NULL};
	json_object_set_new(j, "success_values", str_array(ok));
	json_object_set_new(j, "failure_values", str_array(ko));
	c->flow = UH_WH_FLOW_AZURE;
	c->auth = UH_WH_AUTH_RAW;
	c->auth_header = "x-functions-key";
	return 0;
}

void uh_wh_conf_free(struct uh_wh_conf *c)
{
	if (c && c->j) {
		json_decref(c->j);
		c->j = NULL;
	}
}

int uh_wh_conf_load(const struct uh_config *cfg, const json_t *config, struct uh_wh_conf *c, struct uh_error *err)
{
	memset(c, 0, sizeof(*c));
	if (!json_is_object(config))
		return uh_error_set(err, UH_E_INVALID_CONFIG, P, "'" P "' must be a JSON object");
	const char *preset = NULL;
	int rc = get_s(config, "preset", false, 32, &preset, err);
	if (rc)
		return rc;
	c->j = json_deep_copy(config);
	if (!c->j)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	c->auth_header = "Authorization";
	c->auth = UH_WH_AUTH_BEARER;
	if (!preset) {
		rc = only_keys(config, generic_keys, NULL, err);
	} else if (strcmp(preset, "gitlab") == 0) {
		if (!(rc = only_keys(config, gitlab_keys, preset, err)))
			rc = expand_gitlab(config, c->j, c, err);
		if (!json_object_get(config, "mode"))
			set_str(c->j, "mode", "poll");
	} else if (strcmp(preset, "jenkins") == 0) {
		if (!(rc = only_keys(config, jenkins_keys, preset, err)))
			rc = expand_jenkins(config, c->j, c, err);
		if (!json_object_get(config, "mode"))
			set_str(c->j, "mode", "poll");
	} else if (strcmp(preset, "azure_function") == 0) {
		if (!(rc = only_keys(config, azure_keys, preset, err)))
			rc = expand_azure(config, c->j, c, err);
		if (!json_object_get(config, "mode"))
			set_str(c->j, "mode", "poll");
	} else {
		rc = uh_error_set(err, UH_E_INVALID_CONFIG, P ".preset",
		                  "'" P ".preset' must be one of gitlab, jenkins, azure_function");
	}
	if (rc)
		goto fail;
	json_t *j = c->j;
	c->preset = json_string_value(json_object_get(j, "preset")); /* j's: `config` is the caller's */
	const char *mode = NULL, *tok = NULL, *ah = NULL;
	if ((rc = get_s(j, "url", true, 2048, &c->url, err)) || (rc = get_s(j, "method", false, 8, &c->method, err)) ||
	    (rc = get_s(j, "mode", true, 32, &mode, err)) || (rc = get_s(j, "token_secret", false, 200, &tok, err)) ||
	    (rc = get_s(j, "auth_header", false, 64, &ah, err)) ||
	    (rc = get_s(j, "ca_cert", false, 65536, &c->ca_cert, err)) ||
	    (rc = get_s(j, "status_url", false, 2048, &c->status_url, err)) ||
	    (rc = get_s(j, "cancel_url", false, 2048, &c->cancel_url, err)) ||
	    (rc = pointer_key(j, "external_id_path", err)) || (rc = pointer_key(j, "status_path", err)) ||
	    (rc = values_ok(j, "success_values", err)) || (rc = values_ok(j, "failure_values", err)))
		goto fail;
	c->external_id_path = json_string_value(json_object_get(j, "external_id_path"));
	c->status_path = json_string_value(json_object_get(j, "status_path"));
	c->success_values = json_object_get(j, "success_values");
	c->failure_values = json_object_get(j, "failure_values");
	if (mode_of(mode, &c->mode)) {
		rc = uh_error_set(err, UH_E_INVALID_CONFIG, P ".mode",
		                  "'" P ".mode' must be one of callback, poll, fire_and_forget");
		goto fail;
	}
	if (!c->method)
		c->method = "POST";
	if (strcmp(c->method, "POST") && strcmp(c->method, "PUT") && strcmp(c->method, "PATCH")) {
		rc = uh_error_set(err, UH_E_INVALID_CONFIG, P ".method", "'" P ".method' must be POST, PUT or PATCH");
		goto fail;
	}
	if (tok) {
		if (!secret_ref_ok(tok)) {
			rc = uh_error_set(err, UH_E_INVALID_CONFIG, P ".token_secret",
			                  "'" P ".token_secret' must be a secret reference (NAME, shared:NAME or "
			                  "vault:PATH#KEY)");
			goto fail;
		}
		c->token_secret = tok;
	}
	if (ah) {
		if (!header_name_ok(ah)) {
			rc = uh_error_set(err, UH_E_INVALID_CONFIG, P ".auth_header",
			                  "'" P ".auth_header' must be a header name");
			goto fail;
		}
		c->auth_header = ah;
		c->auth = strcasecmp(ah, "Authorization") == 0 ? UH_WH_AUTH_BEARER : UH_WH_AUTH_RAW;
	}
	if (c->ca_cert && !strstr(c->ca_cert, "-----BEGIN CERTIFICATE-----")) {
		rc = uh_error_set(err, UH_E_INVALID_CONFIG, P ".ca_cert",
		                  "'" P ".ca_cert' must be PEM certificate text");
		goto fail;
	}
	json_t *pi = json_object_get(j, "poll_interval_seconds");
	c->poll_interval_s = 10;
	if (pi) {
		if (!json_is_integer(pi) || json_integer_value(pi) < 1 || json_integer_value(pi) > 3600) {
			rc = uh_error_set(err, UH_E_INVALID_CONFIG, P ".poll_interval_seconds",
			                  "'" P ".poll_interval_seconds' must be an integer from 1 to 3600");
			goto fail;
		}
		c->poll_interval_s = json_integer_value(pi);
	}
	c->headers = json_object_get(j, "headers");
	if ((rc = headers_ok(c->headers, err)))
		goto fail;
	c->body = json_object_get(j, "body");
	if (c->body) {
		if (!json_is_object(c->body) && !json_is_array(c->body) && !json_is_string(c->body)) {
			rc = uh_error_set(err, UH_E_INVALID_CONFIG, P ".body",
			                  "'" P ".body' must be a JSON object, array or string template");
			goto fail;
		}
		if ((rc = check_json_tpl(c->body, false, "body", 0, err)))
			goto fail;
	}
	bool has_ext = c->external_id_path != NULL;
	if ((rc = url_ok(cfg, c->url, "url", false, err)))
		goto fail;
	if (c->status_url && (rc = url_ok(cfg, c->status_url, "status_url", has_ext, err)))
		goto fail;
	if (c->cancel_url && (rc = url_ok(cfg, c->cancel_url, "cancel_url", has_ext, err)))
		goto fail;
	if (c->mode == UH_WH_POLL && c->flow == UH_WH_FLOW_GENERIC &&
	    (!c->status_url || !c->status_path || !c->success_values)) {
		rc = uh_error_set(err, UH_E_INVALID_CONFIG, P ".status_url",
		                  "mode poll needs '" P ".status_url', '" P ".status_path' and '" P ".success_values'");
		goto fail;
	}
	if (c->status_url && (!c->status_path || !c->success_values)) {
		rc = uh_error_set(err, UH_E_INVALID_CONFIG, P ".status_path",
		                  "'" P ".status_url' needs '" P ".status_path' and '" P ".success_values'");
		goto fail;
	}
	return 0;
fail:
	uh_wh_conf_free(c);
	return rc;
}

/* ---- secret references ---- */

static void add_ref(json_t *arr, const char *ref)
{
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v)
	{
		if (strcmp(json_string_value(v), ref) == 0)
			return;
	}
	json_array_append_new(arr, json_string(ref));
}

int uh_webhook_secret_refs(const json_t *config, json_t *refs_array_out)
{
	if (!json_is_object(config) || !json_is_array(refs_array_out))
		return UH_E_INVALID_CONFIG;
	json_t *tok = json_object_get(config, "token_secret");
	if (json_is_string(tok) && json_string_length(tok))
		add_ref(refs_array_out, json_string_value(tok));
	/* Presets add no header of their own: the headers are the user's. */
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(config, "headers"), k, v)
	{
		if (!json_is_string(v))
			continue;
		const char *s = json_string_value(v);
		while ((s = strstr(s, "{{secrets."))) {
			const char *e = strstr(s, "}}");
			if (!e)
				break;
			size_t n = (size_t)(e - (s + 10));
			char ref[256];
			if (n > 0 && n < sizeof(ref)) {
				memcpy(ref, s + 10, n);
				ref[n] = '\0';
				if (secret_ref_ok(ref))
					add_ref(refs_array_out, ref);
			}
			s = e + 2;
		}
	}
	return 0;
}
