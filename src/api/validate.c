/* The API's input checks, kept pure (no store, no network, no clock but
 * the one passed in) so the unit tests and the fuzz target can drive them
 * directly. Every refusal names the offending key by its dotted path. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"
#include "core/jobspec.h"
#include "backend/backend.h"
#include "util/json.h"
#include "util/time.h"

#define MAX_COMMAND_ARGS 1024
#define MAX_ARG_BYTES    65536
#define MAX_ENV          256
#define MAX_PARAMS       64
#define MAX_VALUE_BYTES  65536
#define MAX_VAULT_PATH   512
#define MAX_CONCURRENT   10000
#define MAX_RETRIES      10

int uh_api_role_rank(const char *role)
{
	static const char *const ranks[] = {"viewer", "operator", "projets", "admin"};
	for (int i = 0; role && i < 4; i++)
		if (strcmp(role, ranks[i]) == 0)
			return i + 1;
	return 0;
}

bool uh_api_name_ok(const char *s)
{
	if (!s || !isalnum((unsigned char)s[0]) || (unsigned char)s[0] > 0x7f)
		return false;
	size_t i = 1;
	for (; s[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		if (i > 62 || c > 0x7f || !(isalnum(c) || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

bool uh_api_param_name_ok(const char *s)
{
	if (!s || !(s[0] >= 'A' && s[0] <= 'Z'))
		return false;
	for (size_t i = 1; s[i]; i++) {
		char c = s[i];
		if (i > 63 || !((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return true;
}

bool uh_api_env_name_ok(const char *s)
{
	if (!s || !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return false;
	for (size_t i = 1; s[i]; i++) {
		char c = s[i];
		if (i > 127 ||
		    !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return true;
}

bool uh_api_id_ok(const char *s, size_t len)
{
	if (!s || len == 0 || len >= UH_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
		      c == '-'))
			return false;
	}
	return true;
}

int uh_api_parse_limit(const char *s, int *limit, struct uh_error *err)
{
	if (!s) {
		*limit = UH_API_LIMIT_DEFAULT;
		return 0;
	}
	int v = 0;
	size_t n = strlen(s);
	if (n == 0 || n > 3)
		goto bad;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			goto bad;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > UH_API_LIMIT_MAX)
		goto bad;
	*limit = v;
	return 0;
bad:
	return uh_error_set(err, UH_E_INVALID_REQUEST, "limit", "'limit' must be an integer between 1 and %d",
	                    UH_API_LIMIT_MAX);
}

int uh_api_parse_cursor(const char *s, const char **before, struct uh_error *err)
{
	*before = NULL;
	if (!s || !*s)
		return 0;
	size_t n = strlen(s);
	if (n >= UH_CURSOR_MAX)
		return uh_error_set(err, UH_E_INVALID_REQUEST, "before",
		                    "'before' is not a cursor this server handed out");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return uh_error_set(err, UH_E_INVALID_REQUEST, "before",
			                    "'before' is not a cursor this server handed out");
	*before = s;
	return 0;
}

int uh_api_parse_id_filter(const char *s, const char *field, struct uh_error *err)
{
	if (!s)
		return 0;
	if (!uh_api_id_ok(s, strlen(s)))
		return uh_error_set(err, UH_E_INVALID_REQUEST, field, "'%s' must be an id", field);
	return 0;
}

int uh_api_parse_bool(const char *s, const char *field, bool *out, struct uh_error *err)
{
	if (!s)
		return 0;
	if (!strcmp(s, "1") || !strcasecmp(s, "true") || !strcasecmp(s, "yes") || !*s) {
		/* "?follow" alone means yes */
		*out = true;
		return 0;
	}
	if (!strcmp(s, "0") || !strcasecmp(s, "false") || !strcasecmp(s, "no")) {
		*out = false;
		return 0;
	}
	return uh_error_set(err, UH_E_INVALID_REQUEST, field, "'%s' must be 1 or 0", field);
}

/* The media type of a Content-Type, without parameters, compared
 * case-insensitively. */
static bool media_is(const char *ct, const char *want)
{
	while (*ct == ' ' || *ct == '\t')
		ct++;
	size_t n = strcspn(ct, ";");
	while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	return n == strlen(want) && strncasecmp(ct, want, n) == 0;
}

bool uh_api_media_ok(const char *ct, bool merge_patch)
{
	if (!ct)
		return false;
	return media_is(ct, "application/json") || (merge_patch && media_is(ct, "application/merge-patch+json"));
}

const char *uh_api_bearer(const char *h, size_t *len)
{
	if (!h || strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
		return NULL;
	const char *t = h + 6;
	while (*t == ' ' || *t == '\t')
		t++;
	size_t n = strlen(t);
	while (n && (t[n - 1] == ' ' || t[n - 1] == '\t'))
		n--;
	if (n == 0 || n > 512)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)t[i] < 0x21 || (unsigned char)t[i] > 0x7e)
			return NULL;
	*len = n;
	return t;
}

bool uh_api_idem_key_ok(const char *s)
{
	if (!s)
		return false;
	size_t n = strlen(s);
	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

/* ---- shared pieces ---- */

static int missing(struct uh_error *err, const char *key)
{
	return uh_error_set(err, UH_E_INVALID_REQUEST, key, "missing required key '%s'", key);
}

/* A string value of key (required or not); NULL when absent or null. */
static int get_str(const json_t *in, const char *key, bool required, const char **out, struct uh_error *err)
{
	*out = NULL;
	json_t *v = json_object_get(in, key);
	if (!v || json_is_null(v))
		return required ? missing(err, key) : 0;
	if (!json_is_string(v))
		return uh_error_set(err, UH_E_INVALID_REQUEST, key, "'%s' must be a string", key);
	*out = json_string_value(v);
	return 0;
}

/* An optional integer in [min, max] or null: sets *out to a new value
 * (json_null when absent). */
static int get_opt_int(const json_t *in, const char *key, int64_t min, int64_t max, json_t **out, struct uh_error *err)
{
	json_t *v = json_object_get(in, key);
	if (!v || json_is_null(v)) {
		*out = json_null();
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return uh_error_set(err, UH_E_INVALID_REQUEST, key, "'%s' must be an integer between %lld and %lld",
		                    key, (long long)min, (long long)max);
	*out = json_integer(json_integer_value(v));
	return 0;
}

static int check_backend_name(const char *b, struct uh_error *err)
{
	if (!uh_backend_known(b))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "execution_backend",
		                    "unknown execution backend '%.64s' (one of local, docker, webhook, ssh, "
		                    "kubernetes, serverless)",
		                    b);
	return 0;
}

/* A path inside a Vault KV mount: segments of [A-Za-z0-9_.-], no empty,
 * "." or ".." segment, no leading or trailing slash. */
static bool vault_path_ok(const char *s, size_t n)
{
	if (n == 0 || n > MAX_VAULT_PATH || s[0] == '/' || s[n - 1] == '/')
		return false;
	size_t seg = 0;
	for (size_t i = 0; i <= n; i++) {
		char c = i < n ? s[i] : '/';
		if (c == '/') {
			if (seg == 0)
				return false;
			if ((seg == 1 && s[i - 1] == '.') || (seg == 2 && s[i - 1] == '.' && s[i - 2] == '.'))
				return false;
			seg = 0;
			continue;
		}
		if (!(isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-') || (unsigned char)c > 0x7f)
			return false;
		seg++;
	}
	return true;
}

/* ---- projects ---- */

int uh_api_validate_project(const json_t *in, json_t **fields, struct uh_error *err)
{
	static const char *const keys[] = {
	    "name",           "environment", "execution_backend", "execution_backend_config", "vault_prefix",
	    "max_concurrent", NULL};
	*fields = NULL;
	if (!json_is_object(in))
		return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "a JSON object was expected");
	int rc = uh_json_only_keys(in, keys, NULL, err);
	if (rc)
		return rc;
	const char *name, *env, *backend, *vault;
	if ((rc = get_str(in, "name", true, &name, err)))
		return rc;
	if (!uh_api_name_ok(name))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "name",
		                    "'name' must be 1 to 63 characters of [A-Za-z0-9._-], starting with a letter or "
		                    "digit");
	if ((rc = get_str(in, "environment", true, &env, err)))
		return rc;
	if (strcmp(env, "dev") && strcmp(env, "staging") && strcmp(env, "prod"))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "environment",
		                    "'environment' must be one of dev, staging, prod");
	if ((rc = get_str(in, "execution_backend", true, &backend, err)))
		return rc;
	if ((rc = check_backend_name(backend, err)))
		return rc;
	json_t *cfg = json_object_get(in, "execution_backend_config");
	if (cfg && !json_is_null(cfg) && !json_is_object(cfg))
		return uh_error_set(err, UH_E_INVALID_CONFIG, "execution_backend_config",
		                    "'execution_backend_config' must be a JSON object");
	if ((rc = get_str(in, "vault_prefix", false, &vault, err)))
		return rc;
	if (vault && !vault_path_ok(vault, strlen(vault) - (strlen(vault) > 1 && vault[strlen(vault) - 1] == '/')))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "vault_prefix",
		                    "'vault_prefix' must be a Vault path: segments of [A-Za-z0-9._-] separated by '/', "
		                    "no leading '/', no '.' or '..'");
	json_t *maxc;
	if ((rc = get_opt_int(in, "max_concurrent", 1, MAX_CONCURRENT, &maxc, err)))
		return rc;
	json_t *f = json_object();
	json_object_set_new(f, "name", json_string(name));
	json_object_set_new(f, "environment", json_string(env));
	json_object_set_new(f, "execution_backend", json_string(backend));
	json_object_set_new(f, "execution_backend_config", json_is_object(cfg) ? json_deep_copy(cfg) : json_object());
	json_object_set_new(f, "vault_prefix", uh_json_str_or_null(vault));
	json_object_set_new(f, "max_concurrent", maxc);
	*fields = f;
	return 0;
}

/* ---- jobs ---- */

int uh_api_check_secret_ref(const char *f, const json_t *v, const json_t *project, struct uh_error *err)
{
	if (!json_is_string(v))
		return uh_error_set(err, UH_E_INVALID_REQUEST, f, "'%s' must be a secret reference string", f);
	const char *ref = json_string_value(v);
	if (strncmp(ref, "shared:", 7) == 0) {
		if (!uh_api_name_ok(ref + 7))
			return uh_error_set(err, UH_E_INVALID_REQUEST, f,
			                    "'%s': 'shared:NAME' needs a secret name of [A-Za-z0-9._-]", f);
	} else if (strncmp(ref, "vault:", 6) == 0) {
		const char *path = ref + 6, *hash = strchr(path, '#');
		if (!hash || !vault_path_ok(path, (size_t)(hash - path)) || !hash[1] || strlen(hash + 1) > 128)
			return uh_error_set(err, UH_E_INVALID_REQUEST, f, "'%s' must look like vault:PATH#KEY", f);
		for (const char *c = hash + 1; *c; c++)
			if (!(isalnum((unsigned char)*c) || *c == '_' || *c == '.' || *c == '-') ||
			    (unsigned char)*c > 0x7f)
				return uh_error_set(err, UH_E_INVALID_REQUEST, f,
				                    "'%s': the KEY of vault:PATH#KEY must be [A-Za-z0-9._-]", f);
		const char *prefix = json_string_value(json_object_get(project, "vault_prefix"));
		if (!prefix)
			return uh_error_set(err, UH_E_INVALID_REQUEST, f,
			                    "'%s' is a Vault reference but the project has no vault_prefix", f);
		size_t pn = strlen(prefix), n = (size_t)(hash - path);
		if (pn && prefix[pn - 1] == '/')
			pn--; /* "team/app/" and "team/app" name the same subtree */
		if (!(n >= pn && strncmp(path, prefix, pn) == 0 && (n == pn || path[pn] == '/')))
			return uh_error_set(err, UH_E_INVALID_REQUEST, f,
			                    "'%s' must name a path under the project's vault_prefix '%s'", f, prefix);
	} else if (!uh_api_name_ok(ref)) {
		return uh_error_set(err, UH_E_INVALID_REQUEST, f, "'%s' must be NAME, shared:NAME or vault:PATH#KEY",
		                    f);
	}
	return 0;
}

int uh_api_check_secret_refs(const json_t *secrets, const json_t *project, struct uh_error *err)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)secrets, k, v)
	{
		char f[160];
		snprintf(f, sizeof(f), "secrets.%s", k);
		int rc = uh_api_check_secret_ref(f, v, project, err);
		if (rc)
			return rc;
	}
	return 0;
}

int uh_api_check_config_secret_refs(const json_t *config, const json_t *project, struct uh_error *err)
{
	json_t *refs = json_object();
	int rc =
	    refs ? uh_config_secret_refs(config, refs, err) : uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	const char *k;
	json_t *v;
	json_object_foreach(refs, k, v)
	{
		if (rc)
			break;
		rc = uh_api_check_secret_ref(k, v, project, err);
	}
	json_decref(refs);
	return rc;
}

static int check_env_key(const char *k, const char *f, struct uh_error *err)
{
	if (!uh_api_env_name_ok(k))
		return uh_error_set(err, UH_E_INVALID_REQUEST, f,
		                    "'%s': an environment variable name is [A-Za-z_][A-Za-z0-9_]*", f);
	if (strncmp(k, "UHUB_", 5) == 0)
		return uh_error_set(err, UH_E_INVALID_REQUEST, f, "'%s': names starting with UHUB_ are uhub's own", f);
	return 0;
}

int uh_api_validate_job(const json_t *in, const json_t *project, json_t **fields, struct uh_error *err)
{
	static const char *const keys[] = {
	    "name", "command", "execution_backend", "execution_backend_config", "critical",
	    "env",  "secrets", "parameters",        "max_concurrent",           "retries",
	    NULL};
	*fields = NULL;
	if (!json_is_object(in))
		return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "a JSON object was expected");
	int rc = uh_json_only_keys(in, keys, NULL, err);
	if (rc)
		return rc;
	const char *name, *backend;
	if ((rc = get_str(in, "name", true, &name, err)))
		return rc;
	if (!uh_api_name_ok(name))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "name",
		                    "'name' must be 1 to 63 characters of [A-Za-z0-9._-], starting with a letter or "
		                    "digit");

	json_t *cmd = json_object_get(in, "command");
	if (cmd && !json_is_null(cmd)) {
		if (!json_is_array(cmd) || json_array_size(cmd) == 0 || json_array_size(cmd) > MAX_COMMAND_ARGS)
			return uh_error_set(err, UH_E_INVALID_REQUEST, "command",
			                    "'command' must be an array of 1 to %d strings (argv)", MAX_COMMAND_ARGS);
		size_t i;
		json_t *a;
		json_array_foreach(cmd, i, a)
		{
			if (!json_is_string(a) || json_string_length(a) > MAX_ARG_BYTES)
				return uh_error_set(err, UH_E_INVALID_REQUEST, "command",
				                    "'command' element %zu must be a string of at most %d bytes", i,
				                    MAX_ARG_BYTES);
		}
		if (json_string_length(json_array_get(cmd, 0)) == 0)
			return uh_error_set(err, UH_E_INVALID_REQUEST, "command", "'command' argv[0] is empty");
	} else {
		cmd = NULL;
	}

	if ((rc = get_str(in, "execution_backend", false, &backend, err)))
		return rc;
	if (backend && (rc = check_backend_name(backend, err)))
		return rc;
	json_t *cfg = json_object_get(in, "execution_backend_config");
	if (cfg && !json_is_null(cfg) && !json_is_object(cfg))
		return uh_error_set(err, UH_E_INVALID_CONFIG, "execution_backend_config",
		                    "'execution_backend_config' must be a JSON object");

	json_t *crit = json_object_get(in, "critical");
	if (crit && !json_is_null(crit) && !json_is_boolean(crit))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "critical", "'critical' must be true or false");

	const char *k;
	json_t *v;
	json_t *env = json_object_get(in, "env");
	if (env && !json_is_null(env)) {
		if (!json_is_object(env) || json_object_size(env) > MAX_ENV)
			return uh_error_set(err, UH_E_INVALID_REQUEST, "env",
			                    "'env' must be an object of at most %d NAME: string pairs", MAX_ENV);
		json_object_foreach(env, k, v)
		{
			char f[160];
			snprintf(f, sizeof(f), "env.%s", k);
			if ((rc = check_env_key(k, f, err)))
				return rc;
			if (!json_is_string(v) || json_string_length(v) > MAX_VALUE_BYTES)
				return uh_error_set(err, UH_E_INVALID_REQUEST, f,
				                    "'%s' must be a string of at most %d bytes", f, MAX_VALUE_BYTES);
		}
	} else {
		env = NULL;
	}

	json_t *sec = json_object_get(in, "secrets");
	if (sec && !json_is_null(sec)) {
		if (!json_is_object(sec) || json_object_size(sec) > MAX_ENV)
			return uh_error_set(err, UH_E_INVALID_REQUEST, "secrets",
			                    "'secrets' must be an object of at most %d ENV_NAME: reference pairs",
			                    MAX_ENV);
		json_object_foreach(sec, k, v)
		{
			char f[160];
			snprintf(f, sizeof(f), "secrets.%s", k);
			if ((rc = check_env_key(k, f, err)))
				return rc;
			if (env && json_object_get(env, k))
				return uh_error_set(err, UH_E_INVALID_REQUEST, f,
				                    "'%s' is set both in env and in secrets", k);
		}
		if ((rc = uh_api_check_secret_refs(sec, project, err)))
			return rc;
	} else {
		sec = NULL;
	}

	json_t *params = json_object_get(in, "parameters");
	if (params && !json_is_null(params)) {
		if (!json_is_array(params) || json_array_size(params) > MAX_PARAMS)
			return uh_error_set(err, UH_E_INVALID_REQUEST, "parameters",
			                    "'parameters' must be an array of at most %d names", MAX_PARAMS);
		size_t i, j;
		json_t *p;
		json_array_foreach(params, i, p)
		{
			if (!json_is_string(p) || !uh_api_param_name_ok(json_string_value(p)))
				return uh_error_set(err, UH_E_INVALID_REQUEST, "parameters",
				                    "'parameters' element %zu must be a name matching [A-Z][A-Z0-9_]*",
				                    i);
			for (j = 0; j < i; j++)
				if (json_equal(p, json_array_get(params, j)))
					return uh_error_set(err, UH_E_INVALID_REQUEST, "parameters",
					                    "'parameters' names '%s' twice", json_string_value(p));
		}
	} else {
		params = NULL;
	}

	json_t *maxc, *retries;
	if ((rc = get_opt_int(in, "max_concurrent", 1, MAX_CONCURRENT, &maxc, err)))
		return rc;
	if ((rc = get_opt_int(in, "retries", 0, MAX_RETRIES, &retries, err))) {
		json_decref(maxc);
		return rc;
	}
	if (json_is_null(retries)) {
		json_decref(retries);
		retries = json_integer(0);
	}

	json_t *f = json_object();
	json_object_set_new(f, "name", json_string(name));
	json_object_set_new(f, "command", cmd ? json_deep_copy(cmd) : json_null());
	json_object_set_new(f, "execution_backend", uh_json_str_or_null(backend));
	json_object_set_new(f, "execution_backend_config", json_is_object(cfg) ? json_deep_copy(cfg) : json_null());
	json_object_set_new(f, "critical", json_boolean(json_is_true(crit)));
	json_object_set_new(f, "env", env ? json_deep_copy(env) : json_object());
	json_object_set_new(f, "secrets", sec ? json_deep_copy(sec) : json_object());
	json_object_set_new(f, "parameters", params ? json_deep_copy(params) : json_array());
	json_object_set_new(f, "max_concurrent", maxc);
	json_object_set_new(f, "retries", retries);
	*fields = f;
	return 0;
}

/* ---- users, tokens, members, runs ---- */

int uh_api_validate_user_create(const json_t *in, const char **name, const char **role, struct uh_error *err)
{
	static const char *const keys[] = {"name", "role", NULL};
	if (!json_is_object(in))
		return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "a JSON object was expected");
	int rc = uh_json_only_keys(in, keys, NULL, err);
	if (rc || (rc = get_str(in, "name", true, name, err)) || (rc = get_str(in, "role", true, role, err)))
		return rc;
	if (!uh_api_name_ok(*name))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "name",
		                    "'name' must be 1 to 63 characters of [A-Za-z0-9._-], starting with a letter or "
		                    "digit");
	if (!uh_api_role_rank(*role))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "role",
		                    "'role' must be one of admin, projets, operator, viewer");
	return 0;
}

int uh_api_validate_user_patch(const json_t *in, const char **role, int *disabled, struct uh_error *err)
{
	static const char *const keys[] = {"role", "disabled", NULL};
	*role = NULL;
	*disabled = -1;
	if (!json_is_object(in))
		return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "a JSON object was expected");
	int rc = uh_json_only_keys(in, keys, NULL, err);
	if (rc)
		return rc;
	json_t *r = json_object_get(in, "role");
	if (r) {
		if (!json_is_string(r) || !uh_api_role_rank(json_string_value(r)))
			return uh_error_set(err, UH_E_INVALID_REQUEST, "role",
			                    "'role' must be one of admin, projets, operator, viewer");
		*role = json_string_value(r);
	}
	json_t *d = json_object_get(in, "disabled");
	if (d) {
		if (!json_is_boolean(d))
			return uh_error_set(err, UH_E_INVALID_REQUEST, "disabled", "'disabled' must be true or false");
		*disabled = json_is_true(d) ? 1 : 0;
	}
	return 0;
}

int uh_api_validate_token_create(const json_t *in, int64_t now_us, int64_t *expires_at, struct uh_error *err)
{
	static const char *const keys[] = {"expires_at", NULL};
	*expires_at = 0;
	if (!in)
		return 0;
	if (!json_is_object(in))
		return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "a JSON object was expected");
	int rc = uh_json_only_keys(in, keys, NULL, err);
	if (rc)
		return rc;
	json_t *e = json_object_get(in, "expires_at");
	if (!e || json_is_null(e))
		return 0;
	int64_t t;
	if (!json_is_string(e) || uh_time_parse(json_string_value(e), &t))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "expires_at",
		                    "'expires_at' must be an RFC 3339 time such as 2030-01-31T12:00:00Z");
	if (t <= now_us)
		return uh_error_set(err, UH_E_INVALID_REQUEST, "expires_at", "'expires_at' is in the past");
	*expires_at = t;
	return 0;
}

int uh_api_validate_member(const json_t *in, const char **user_id, struct uh_error *err)
{
	static const char *const keys[] = {"user_id", NULL};
	if (!json_is_object(in))
		return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "a JSON object was expected");
	int rc = uh_json_only_keys(in, keys, NULL, err);
	if (rc || (rc = get_str(in, "user_id", true, user_id, err)))
		return rc;
	if (!uh_api_id_ok(*user_id, strlen(*user_id)))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "user_id", "'user_id' must be a user id");
	return 0;
}

int uh_api_validate_trigger(const json_t *in, json_t **params, struct uh_error *err)
{
	static const char *const keys[] = {"parameters", NULL};
	*params = NULL;
	if (in) {
		if (!json_is_object(in))
			return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "a JSON object was expected");
		int rc = uh_json_only_keys(in, keys, NULL, err);
		if (rc)
			return rc;
		json_t *p = json_object_get(in, "parameters");
		if (p && !json_is_null(p)) {
			if (!json_is_object(p))
				return uh_error_set(err, UH_E_INVALID_REQUEST, "parameters",
				                    "'parameters' must be an object of NAME: string");
			const char *k;
			json_t *v;
			json_object_foreach(p, k, v)
			{
				char f[160];
				snprintf(f, sizeof(f), "parameters.%s", k);
				if (!uh_api_param_name_ok(k))
					return uh_error_set(err, UH_E_INVALID_REQUEST, f,
					                    "'%s': a parameter name matches [A-Z][A-Z0-9_]*", f);
				if (!json_is_string(v))
					return uh_error_set(err, UH_E_INVALID_REQUEST, f, "'%s' must be a string", f);
			}
			*params = json_deep_copy(p);
		}
	}
	if (!*params)
		*params = json_object();
	return 0;
}

int uh_api_validate_empty(const json_t *in, struct uh_error *err)
{
	static const char *const keys[] = {NULL};
	if (!in)
		return 0;
	if (!json_is_object(in))
		return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "a JSON object was expected");
	return uh_json_only_keys(in, keys, NULL, err);
}

/* ---- guardrail-loosening changes ---- */

static const char *s_of(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

int uh_api_project_loosening(const json_t *old, const json_t *nf, struct uh_error *err)
{
	if (!old)
		return 0;
	bool was_prod = !strcmp(s_of(old, "environment"), "prod");
	bool is_prod = !strcmp(s_of(nf, "environment"), "prod");
	if (was_prod && !is_prod)
		return uh_error_set(err, UH_E_FORBIDDEN, "environment",
		                    "only an admin may move a project's 'environment' away from prod");
	json_t *ov = json_object_get(old, "vault_prefix"), *nv = json_object_get(nf, "vault_prefix");
	bool o_null = !ov || json_is_null(ov), n_null = !nv || json_is_null(nv);
	if (o_null != n_null || (!o_null && !json_equal(ov, nv)))
		return uh_error_set(err, UH_E_FORBIDDEN, "vault_prefix", "only an admin may change 'vault_prefix'");
	if (is_prod && !strcmp(s_of(nf, "execution_backend"), "local") &&
	    strcmp(s_of(old, "execution_backend"), "local") != 0)
		return uh_error_set(err, UH_E_FORBIDDEN, "execution_backend",
		                    "only an admin may switch a prod project's 'execution_backend' to local");
	return 0;
}

static const char *job_backend(const json_t *project, const json_t *job)
{
	const char *b = json_string_value(json_object_get(job, "execution_backend"));
	return b ? b : s_of(project, "execution_backend");
}

int uh_api_job_loosening(const json_t *project, const json_t *old, const json_t *nf, struct uh_error *err)
{
	if (strcmp(s_of(project, "environment"), "prod") != 0)
		return 0;
	if (old && json_is_true(json_object_get(old, "critical")) && !json_is_true(json_object_get(nf, "critical")))
		return uh_error_set(err, UH_E_FORBIDDEN, "critical",
		                    "only an admin may set 'critical' to false on a job of a prod project");
	/* A new job is compared with what it would inherit: a job that only
	 * follows its project's backend loosens nothing. */
	const char *was = old ? job_backend(project, old) : s_of(project, "execution_backend");
	if (!strcmp(job_backend(project, nf), "local") && strcmp(was, "local") != 0)
		return uh_error_set(err, UH_E_FORBIDDEN, "execution_backend",
		                    "only an admin may give a job of a prod project the local backend");
	return 0;
}

json_t *uh_api_changed(const json_t *old, const json_t *nf)
{
	json_t *d = json_object();
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)nf, k, v)
	{
		json_t *o = json_object_get(old, k);
		bool o_null = !o || json_is_null(o);
		if (o_null && json_is_null(v))
			continue;
		if (!o || !json_equal(o, v))
			json_object_set(d, k, v);
	}
	json_object_foreach((json_t *)old, k, v)
	{
		if (!json_object_get(nf, k) && !json_is_null(v))
			json_object_set_new(d, k, json_null());
	}
	return d;
}
