/* Server configuration: defaults, parsing, validation (SPEC §7).
 * Every key is checked by name; the first bad one stops the start-up with a
 * message naming it, as Docker does with daemon.json. */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"

static void strlist_free(struct uh_strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static int strlist_set(struct uh_strlist *l, const char *const *items, size_t n)
{
	strlist_free(l);
	l->v = calloc(n ? n : 1, sizeof(char *));
	if (!l->v)
		return UH_E_INTERNAL;
	for (size_t i = 0; i < n; i++)
		l->v[i] = strdup(items[i]);
	l->n = n;
	return 0;
}

int uh_parse_cpu(const char *s, int64_t *milli)
{
	if (!s || !*s || strlen(s) > 32)
		return UH_E_INVALID_CONFIG;
	size_t n = strlen(s);
	char *end;
	if (s[n - 1] == 'm') {
		errno = 0;
		long long v = strtoll(s, &end, 10);
		if (errno || end != s + n - 1 || v < 0 || !isdigit((unsigned char)s[0]))
			return UH_E_INVALID_CONFIG;
		*milli = v;
		return 0;
	}
	for (const char *p = s; *p; p++)
		if (!isdigit((unsigned char)*p) && *p != '.')
			return UH_E_INVALID_CONFIG;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || v < 0 || v > 1e6 || !isdigit((unsigned char)s[0]))
		return UH_E_INVALID_CONFIG;
	*milli = (int64_t)llround(v * 1000.0);
	return 0;
}

int uh_parse_mem(const char *s, int64_t *bytes)
{
	static const struct {
		const char *suf;
		int64_t mul;
	} sufs[] = {{"Ki", 1LL << 10}, {"Mi", 1LL << 20},   {"Gi", 1LL << 30},      {"Ti", 1LL << 40}, {"K", 1000LL},
	            {"M", 1000000LL},  {"G", 1000000000LL}, {"T", 1000000000000LL}, {"k", 1000LL},     {"", 1}};
	if (!s || !*s || strlen(s) > 32 || !isdigit((unsigned char)s[0]))
		return UH_E_INVALID_CONFIG;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || v < 0)
		return UH_E_INVALID_CONFIG;
	for (size_t i = 0; i < sizeof(sufs) / sizeof(sufs[0]); i++) {
		if (strcmp(end, sufs[i].suf) == 0) {
			if (v > INT64_MAX / sufs[i].mul)
				return UH_E_INVALID_CONFIG;
			*bytes = v * sufs[i].mul;
			return 0;
		}
	}
	return UH_E_INVALID_CONFIG;
}

int uh_config_defaults(struct uh_config *cfg, struct uh_error *err)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->listen = strdup("127.0.0.1:8080");
	cfg->public_url = strdup("http://127.0.0.1:8080");
	cfg->db = strdup("sqlite:./uhub.db");
	cfg->max_body_bytes = 1048576;
	cfg->rate_limit_per_minute = 600;
	cfg->log_max_bytes = 16777216;
	cfg->retention_days = 90;
	cfg->guardrails.default_timeout_s = 3600;
	cfg->guardrails.max_timeout_s = 86400;
	cfg->guardrails.max_cpu_milli = 4000;
	cfg->guardrails.max_mem_bytes = 8LL << 30;
	cfg->guardrails.prod_local_allowed = false;
	cfg->guardrails.approval_ttl_s = 86400;
	cfg->guardrails.allow_self_approval = false;
	cfg->local.uid_min = 61184;
	cfg->local.uid_max = 65519;
	const char *exe[] = {"/usr/bin/ansible-playbook"};
	strlist_set(&cfg->local.allowed_executables, exe, 1);
	strlist_set(&cfg->local.allowed_workdirs, NULL, 0);
	cfg->local.grace_s = 10;
	cfg->local.work_root = strdup("/var/lib/uhub/work");
	cfg->local.pids_limit = 256;
	cfg->docker.host = strdup("unix:///var/run/docker.sock");
	cfg->docker.tls = json_null();
	const char *star[] = {"*"};
	strlist_set(&cfg->docker.allowed_images, star, 1);
	strlist_set(&cfg->docker.allowed_networks, NULL, 0);
	cfg->docker.pull_policy = strdup("if_not_present");
	cfg->docker.pids_limit = 256;
	cfg->webhook.allow_private_networks = false;
	strlist_set(&cfg->webhook.allowed_hosts, star, 1);
	cfg->cluster.lease_s = 15;
	cfg->secrets.key_file = strdup("/var/lib/uhub/secrets.key");
	cfg->secrets.vault_kv_mount = strdup("secret");
	cfg->shutdown_grace_s = 30;
	if (!cfg->listen || !cfg->local.work_root || !cfg->secrets.key_file)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	return 0;
}

void uh_config_free(struct uh_config *cfg)
{
	free(cfg->listen);
	free(cfg->public_url);
	free(cfg->tls_cert);
	free(cfg->tls_key);
	free(cfg->db);
	free(cfg->local.user);
	strlist_free(&cfg->local.allowed_executables);
	strlist_free(&cfg->local.allowed_workdirs);
	free(cfg->local.work_root);
	free(cfg->docker.host);
	json_decref(cfg->docker.tls);
	strlist_free(&cfg->docker.allowed_images);
	strlist_free(&cfg->docker.allowed_networks);
	free(cfg->docker.pull_policy);
	strlist_free(&cfg->webhook.allowed_hosts);
	free(cfg->cluster.node_name);
	free(cfg->audit.key_file);
	free(cfg->audit.head_file);
	free(cfg->secrets.key_file);
	free(cfg->secrets.vault_addr);
	free(cfg->secrets.vault_ca_cert);
	free(cfg->secrets.vault_kv_mount);
	free(cfg->secrets.vault_token_file);
	free(cfg->secrets.vault_role_id_file);
	free(cfg->secrets.vault_secret_id_file);
	memset(cfg, 0, sizeof(*cfg));
}

/* ---- typed key readers; `path` is the dotted name of the key ---- */

static int bad(struct uh_error *err, const char *path, const char *what)
{
	return uh_error_set(err, UH_E_INVALID_CONFIG, path, "'%s' %s", path, what);
}

static int get_string(json_t *obj, const char *key, const char *path, bool nullable, char **out, struct uh_error *err)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return 0;
	if (json_is_null(v) && nullable) {
		free(*out);
		*out = NULL;
		return 0;
	}
	if (!json_is_string(v) || json_string_length(v) == 0)
		return bad(err, path, nullable ? "must be a non-empty string or null" : "must be a non-empty string");
	if (strlen(json_string_value(v)) != json_string_length(v))
		return bad(err, path, "must not contain NUL bytes");
	free(*out);
	*out = strdup(json_string_value(v));
	return 0;
}

static int get_int(json_t *obj, const char *key, const char *path, int64_t min, int64_t max, int64_t *out,
                   struct uh_error *err)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
		char what[128];
		snprintf(what, sizeof(what), "must be an integer from %lld to %lld", (long long)min, (long long)max);
		return bad(err, path, what);
	}
	*out = json_integer_value(v);
	return 0;
}

static int get_bool(json_t *obj, const char *key, const char *path, bool *out, struct uh_error *err)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return bad(err, path, "must be true or false");
	*out = json_is_true(v);
	return 0;
}

static int get_list(json_t *obj, const char *key, const char *path, struct uh_strlist *out, struct uh_error *err)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return 0;
	if (!json_is_array(v))
		return bad(err, path, "must be an array of strings");
	size_t n = json_array_size(v);
	const char **items = calloc(n ? n : 1, sizeof(char *));
	if (!items)
		return uh_error_set(err, UH_E_INTERNAL, path, "out of memory");
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_array_get(v, i);
		if (!json_is_string(s) || json_string_length(s) == 0 ||
		    strlen(json_string_value(s)) != json_string_length(s)) {
			free(items);
			char p[160];
			snprintf(p, sizeof(p), "%s[%zu]", path, i);
			return bad(err, p, "must be a non-empty string");
		}
		items[i] = json_string_value(s);
	}
	int r = strlist_set(out, items, n);
	free(items);
	return r ? uh_error_set(err, r, path, "out of memory") : 0;
}

static int section(json_t *root, const char *key, const char *const *allowed, json_t **out, struct uh_error *err)
{
	*out = NULL;
	json_t *v = json_object_get(root, key);
	if (!v)
		return 0;
	if (!json_is_object(v))
		return bad(err, key, "must be a JSON object");
	const char *k;
	json_t *x;
	json_object_foreach(v, k, x)
	{
		bool ok = false;
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(*a, k) == 0)
				ok = true;
		if (!ok) {
			char p[160];
			snprintf(p, sizeof(p), "%s.%s", key, k);
			return uh_error_set(err, UH_E_INVALID_CONFIG, p, "unknown key '%s'", p);
		}
	}
	*out = v;
	return 0;
}

static int check_abs_path(const char *path, const char *p, struct uh_error *err)
{
	if (p && p[0] != '/')
		return bad(err, path, "must be an absolute path");
	return 0;
}

#define TRY(x)                     \
	do {                       \
		int _r = (x);      \
		if (_r)            \
			return _r; \
	} while (0)

static int parse_root(json_t *root, struct uh_config *cfg, struct uh_error *err)
{
	static const char *const top[] = {
	    "listen", "public_url", "tls",     "db",      "api",   "logs",    "guardrails",
	    "local",  "docker",     "webhook", "cluster", "audit", "secrets", "shutdown_grace_seconds",
	    NULL};
	const char *k;
	json_t *x;
	json_object_foreach(root, k, x)
	{
		bool ok = false;
		for (const char *const *a = top; *a; a++)
			if (strcmp(*a, k) == 0)
				ok = true;
		if (!ok)
			return uh_error_set(err, UH_E_INVALID_CONFIG, k, "unknown key '%s'", k);
	}
	TRY(get_string(root, "listen", "listen", false, &cfg->listen, err));
	TRY(get_string(root, "public_url", "public_url", false, &cfg->public_url, err));
	if (strncmp(cfg->public_url, "http://", 7) != 0 && strncmp(cfg->public_url, "https://", 8) != 0)
		return bad(err, "public_url", "must start with http:// or https://");
	TRY(get_string(root, "db", "db", false, &cfg->db, err));
	if (strncmp(cfg->db, "sqlite:", 7) != 0 && strncmp(cfg->db, "postgres://", 11) != 0 &&
	    strncmp(cfg->db, "postgresql://", 13) != 0)
		return bad(err, "db", "must be sqlite:PATH or postgres://...");
	TRY(get_int(root, "shutdown_grace_seconds", "shutdown_grace_seconds", 0, 86400, &cfg->shutdown_grace_s, err));

	json_t *s;
	static const char *const tls_keys[] = {"cert", "key", NULL};
	TRY(section(root, "tls", tls_keys, &s, err));
	if (s) {
		TRY(get_string(s, "cert", "tls.cert", true, &cfg->tls_cert, err));
		TRY(get_string(s, "key", "tls.key", true, &cfg->tls_key, err));
		if (!cfg->tls_cert != !cfg->tls_key)
			return bad(err, cfg->tls_cert ? "tls.key" : "tls.cert", "must be set together with the other");
	}
	static const char *const api_keys[] = {"max_body_bytes", "rate_limit_per_minute", NULL};
	TRY(section(root, "api", api_keys, &s, err));
	if (s) {
		TRY(get_int(s, "max_body_bytes", "api.max_body_bytes", 1024, 1LL << 30, &cfg->max_body_bytes, err));
		TRY(get_int(s, "rate_limit_per_minute", "api.rate_limit_per_minute", 0, 100000000,
		            &cfg->rate_limit_per_minute, err));
	}
	static const char *const log_keys[] = {"max_bytes_per_run", "retention_days", NULL};
	TRY(section(root, "logs", log_keys, &s, err));
	if (s) {
		TRY(get_int(s, "max_bytes_per_run", "logs.max_bytes_per_run", 4096, 1LL << 40, &cfg->log_max_bytes,
		            err));
		TRY(get_int(s, "retention_days", "logs.retention_days", 1, 36500, &cfg->retention_days, err));
	}
	static const char *const gr_keys[] = {
	    "default_timeout_seconds", "max_timeout_seconds",  "max_cpu_limit",       "max_mem_limit",
	    "prod_local_allowed",      "approval_ttl_seconds", "allow_self_approval", NULL};
	TRY(section(root, "guardrails", gr_keys, &s, err));
	if (s) {
		TRY(get_int(s, "default_timeout_seconds", "guardrails.default_timeout_seconds", 1, 31536000,
		            &cfg->guardrails.default_timeout_s, err));
		TRY(get_int(s, "max_timeout_seconds", "guardrails.max_timeout_seconds", 1, 31536000,
		            &cfg->guardrails.max_timeout_s, err));
		json_t *v = json_object_get(s, "max_cpu_limit");
		if (v && (!json_is_string(v) || uh_parse_cpu(json_string_value(v), &cfg->guardrails.max_cpu_milli) ||
		          cfg->guardrails.max_cpu_milli <= 0))
			return bad(err, "guardrails.max_cpu_limit", "must be a CPU quantity such as \"4\" or \"500m\"");
		v = json_object_get(s, "max_mem_limit");
		if (v && (!json_is_string(v) || uh_parse_mem(json_string_value(v), &cfg->guardrails.max_mem_bytes) ||
		          cfg->guardrails.max_mem_bytes <= 0))
			return bad(err, "guardrails.max_mem_limit", "must be a memory quantity such as \"8Gi\"");
		TRY(get_bool(s, "prod_local_allowed", "guardrails.prod_local_allowed",
		             &cfg->guardrails.prod_local_allowed, err));
		TRY(get_int(s, "approval_ttl_seconds", "guardrails.approval_ttl_seconds", 1, 31536000,
		            &cfg->guardrails.approval_ttl_s, err));
		TRY(get_bool(s, "allow_self_approval", "guardrails.allow_self_approval",
		             &cfg->guardrails.allow_self_approval, err));
	}
	if (cfg->guardrails.default_timeout_s > cfg->guardrails.max_timeout_s)
		return bad(err, "guardrails.default_timeout_seconds", "must not exceed guardrails.max_timeout_seconds");

	static const char *const local_keys[] = {
	    "uid_range",     "user",      "allowed_executables", "allowed_workdirs",
	    "grace_seconds", "work_root", "pids_limit",          NULL};
	TRY(section(root, "local", local_keys, &s, err));
	if (s) {
		json_t *r = json_object_get(s, "uid_range");
		if (r) {
			if (!json_is_array(r) || json_array_size(r) != 2 || !json_is_integer(json_array_get(r, 0)) ||
			    !json_is_integer(json_array_get(r, 1)))
				return bad(err, "local.uid_range", "must be [first, last], two integers");
			json_int_t a = json_integer_value(json_array_get(r, 0)),
			           b = json_integer_value(json_array_get(r, 1));
			if (a < 1000 || b < a || b > 4294967294LL)
				return bad(err, "local.uid_range",
				           "must be [first, last] with 1000 <= first <= last (root and system "
				           "accounts are never used)");
			cfg->local.uid_min = (uint32_t)a;
			cfg->local.uid_max = (uint32_t)b;
		}
		TRY(get_string(s, "user", "local.user", true, &cfg->local.user, err));
		if (cfg->local.user && strcmp(cfg->local.user, "root") == 0)
			return bad(err, "local.user", "must not be root");
		TRY(get_list(s, "allowed_executables", "local.allowed_executables", &cfg->local.allowed_executables,
		             err));
		for (size_t i = 0; i < cfg->local.allowed_executables.n; i++)
			if (cfg->local.allowed_executables.v[i][0] != '/') {
				char p[160];
				snprintf(p, sizeof(p), "local.allowed_executables[%zu]", i);
				return bad(err, p, "must be an absolute path");
			}
		TRY(get_list(s, "allowed_workdirs", "local.allowed_workdirs", &cfg->local.allowed_workdirs, err));
		for (size_t i = 0; i < cfg->local.allowed_workdirs.n; i++)
			if (cfg->local.allowed_workdirs.v[i][0] != '/') {
				char p[160];
				snprintf(p, sizeof(p), "local.allowed_workdirs[%zu]", i);
				return bad(err, p, "must be an absolute path");
			}
		TRY(get_int(s, "grace_seconds", "local.grace_seconds", 0, 3600, &cfg->local.grace_s, err));
		TRY(get_string(s, "work_root", "local.work_root", false, &cfg->local.work_root, err));
		TRY(check_abs_path("local.work_root", cfg->local.work_root, err));
		TRY(get_int(s, "pids_limit", "local.pids_limit", 8, 1000000, &cfg->local.pids_limit, err));
	}

	static const char *const docker_keys[] = {
	    "host", "tls", "allowed_images", "allowed_networks", "pull_policy", "pids_limit", NULL};
	TRY(section(root, "docker", docker_keys, &s, err));
	if (s) {
		TRY(get_string(s, "host", "docker.host", false, &cfg->docker.host, err));
		if (strncmp(cfg->docker.host, "unix://", 7) != 0 && strncmp(cfg->docker.host, "tcp://", 6) != 0)
			return bad(err, "docker.host", "must be unix:///PATH or tcp://HOST:PORT");
		json_t *t = json_object_get(s, "tls");
		if (t) {
			static const char *const tk[] = {"ca", "cert", "key", NULL};
			if (!json_is_null(t)) {
				if (!json_is_object(t))
					return bad(err, "docker.tls", "must be null or {\"ca\",\"cert\",\"key\"}");
				struct uh_error e2;
				if (uh_json_only_keys(t, tk, "docker.tls", &e2))
					return uh_error_set(err, UH_E_INVALID_CONFIG, e2.field, "%s", e2.message);
			}
			json_decref(cfg->docker.tls);
			cfg->docker.tls = json_incref(t);
		}
		TRY(get_list(s, "allowed_images", "docker.allowed_images", &cfg->docker.allowed_images, err));
		TRY(get_list(s, "allowed_networks", "docker.allowed_networks", &cfg->docker.allowed_networks, err));
		for (size_t i = 0; i < cfg->docker.allowed_networks.n; i++)
			if (strcmp(cfg->docker.allowed_networks.v[i], "host") == 0)
				return bad(err, "docker.allowed_networks", "must not contain \"host\"");
		TRY(get_string(s, "pull_policy", "docker.pull_policy", false, &cfg->docker.pull_policy, err));
		if (strcmp(cfg->docker.pull_policy, "never") && strcmp(cfg->docker.pull_policy, "if_not_present") &&
		    strcmp(cfg->docker.pull_policy, "always"))
			return bad(err, "docker.pull_policy", "must be \"never\", \"if_not_present\" or \"always\"");
		TRY(get_int(s, "pids_limit", "docker.pids_limit", 8, 1000000, &cfg->docker.pids_limit, err));
	}
	static const char *const wh_keys[] = {"allow_private_networks", "allowed_hosts", NULL};
	TRY(section(root, "webhook", wh_keys, &s, err));
	if (s) {
		TRY(get_bool(s, "allow_private_networks", "webhook.allow_private_networks",
		             &cfg->webhook.allow_private_networks, err));
		TRY(get_list(s, "allowed_hosts", "webhook.allowed_hosts", &cfg->webhook.allowed_hosts, err));
	}
	static const char *const cl_keys[] = {"node_name", "lease_seconds", NULL};
	TRY(section(root, "cluster", cl_keys, &s, err));
	if (s) {
		TRY(get_string(s, "node_name", "cluster.node_name", true, &cfg->cluster.node_name, err));
		TRY(get_int(s, "lease_seconds", "cluster.lease_seconds", 2, 3600, &cfg->cluster.lease_s, err));
	}
	static const char *const au_keys[] = {"key_file", "head_file", NULL};
	TRY(section(root, "audit", au_keys, &s, err));
	if (s) {
		TRY(get_string(s, "key_file", "audit.key_file", true, &cfg->audit.key_file, err));
		TRY(get_string(s, "head_file", "audit.head_file", true, &cfg->audit.head_file, err));
	}
	static const char *const se_keys[] = {"key_file", "vault", NULL};
	TRY(section(root, "secrets", se_keys, &s, err));
	if (s) {
		TRY(get_string(s, "key_file", "secrets.key_file", false, &cfg->secrets.key_file, err));
		static const char *const v_keys[] = {"addr", "ca_cert", "kv_mount", "token_file", "approle", NULL};
		json_t *v = json_object_get(s, "vault");
		if (v) {
			if (!json_is_object(v))
				return bad(err, "secrets.vault", "must be a JSON object");
			struct uh_error e2;
			if (uh_json_only_keys(v, v_keys, "secrets.vault", &e2))
				return uh_error_set(err, UH_E_INVALID_CONFIG, e2.field, "%s", e2.message);
			TRY(get_string(v, "addr", "secrets.vault.addr", true, &cfg->secrets.vault_addr, err));
			TRY(get_string(v, "ca_cert", "secrets.vault.ca_cert", true, &cfg->secrets.vault_ca_cert, err));
			TRY(get_string(v, "kv_mount", "secrets.vault.kv_mount", false, &cfg->secrets.vault_kv_mount,
			               err));
			TRY(get_string(v, "token_file", "secrets.vault.token_file", true,
			               &cfg->secrets.vault_token_file, err));
			json_t *ar = json_object_get(v, "approle");
			if (ar) {
				static const char *const a_keys[] = {"role_id_file", "secret_id_file", NULL};
				if (!json_is_object(ar))
					return bad(err, "secrets.vault.approle", "must be a JSON object");
				if (uh_json_only_keys(ar, a_keys, "secrets.vault.approle", &e2))
					return uh_error_set(err, UH_E_INVALID_CONFIG, e2.field, "%s", e2.message);
				TRY(get_string(ar, "role_id_file", "secrets.vault.approle.role_id_file", true,
				               &cfg->secrets.vault_role_id_file, err));
				TRY(get_string(ar, "secret_id_file", "secrets.vault.approle.secret_id_file", true,
				               &cfg->secrets.vault_secret_id_file, err));
			}
		}
	}
	return 0;
}

int uh_config_parse(const char *json, size_t len, struct uh_config *cfg, struct uh_error *err)
{
	struct uh_error e;
	json_t *root = uh_json_parse(json, len, true, &e);
	if (!root)
		return uh_error_set(err, UH_E_INVALID_CONFIG, NULL, "%s", e.message);
	int r = parse_root(root, cfg, err);
	json_decref(root);
	return r;
}

int uh_config_load(const char *path, struct uh_config *cfg, struct uh_error *err)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return uh_error_set(err, UH_E_INVALID_CONFIG, NULL, "cannot open config file '%s': %s", path,
		                    strerror(errno));
	char *data = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (len + 4096 > cap) {
			if (cap > (8u << 20)) {
				free(data);
				fclose(f);
				return uh_error_set(err, UH_E_INVALID_CONFIG, NULL, "config file '%s' is too large",
				                    path);
			}
			cap = cap ? cap * 2 : 8192;
			char *n = realloc(data, cap);
			if (!n) {
				free(data);
				fclose(f);
				return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
			}
			data = n;
		}
		size_t got = fread(data + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	int ferr = ferror(f);
	fclose(f);
	if (ferr) {
		free(data);
		return uh_error_set(err, UH_E_INVALID_CONFIG, NULL, "cannot read config file '%s'", path);
	}
	int r = uh_config_parse(data, len, cfg, err);
	free(data);
	if (r)
		uh_error_prefix(err, "config file '%s': ", path);
	return r;
}
