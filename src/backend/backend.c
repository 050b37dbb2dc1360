/* The backend registry and the only callers of backend methods.
 *
 * Wrappers supply defaults and are the one place for logging hooks and fault
 * injection (SQLite's sqlite3OsRead pattern). */
#include "backend/backend.h"

#include <stdlib.h>
#include <string.h>

#include "util/log.h"

static const struct uh_backend_ops *const registry[] = {
    &uh_backend_local,
    &uh_backend_docker,
    &uh_backend_webhook,
};

static const char *const known[] = {"local", "docker", "webhook", "ssh", "kubernetes", "serverless"};

const struct uh_backend_ops *uh_backend_find(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < sizeof(registry) / sizeof(registry[0]); i++)
		if (strcmp(registry[i]->name, name) == 0)
			return registry[i];
	return NULL;
}

const struct uh_secret_env *uh_run_spec_config_secret(const struct uh_run_spec *spec, const char *ref)
{
	for (size_t i = 0; ref && i < spec->n_config_secrets; i++)
		if (strcmp(spec->config_secrets[i].name, ref) == 0)
			return &spec->config_secrets[i];
	return NULL;
}

bool uh_backend_known(const char *name)
{
	if (!name)
		return false;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(known[i], name) == 0)
			return true;
	return false;
}

int uh_backend_init_all(const struct uh_config *cfg, uv_loop_t *loop, struct uh_error *err)
{
	for (size_t i = 0; i < sizeof(registry) / sizeof(registry[0]); i++) {
		if (!registry[i]->init)
			continue;
		int r = registry[i]->init(cfg, loop, err);
		if (r) {
			uh_error_prefix(err, "backend '%s': ", registry[i]->name);
			return r;
		}
	}
	return 0;
}

void uh_backend_shutdown_all(void)
{
	for (size_t i = 0; i < sizeof(registry) / sizeof(registry[0]); i++)
		if (registry[i]->shutdown)
			registry[i]->shutdown();
}

bool uh_backend_common_key(const char *key)
{
	return strcmp(key, "timeout_seconds") == 0 || strcmp(key, "cpu_limit") == 0 || strcmp(key, "mem_limit") == 0;
}

int uh_backend_limits(const json_t *config, int64_t *cpu_milli, int64_t *mem_bytes, struct uh_error *err)
{
	const char *P = "execution_backend_config";
	*cpu_milli = *mem_bytes = 0;
	json_t *c = json_object_get(config, "cpu_limit");
	if (c && (!json_is_string(c) || uh_parse_cpu(json_string_value(c), cpu_milli) || *cpu_milli <= 0))
		return uh_error_set(err, UH_E_INVALID_CONFIG, "execution_backend_config.cpu_limit",
		                    "'%s.cpu_limit' must be a CPU quantity such as \"500m\" or \"2\"", P);
	json_t *m = json_object_get(config, "mem_limit");
	if (m && (!json_is_string(m) || uh_parse_mem(json_string_value(m), mem_bytes) || *mem_bytes <= 0))
		return uh_error_set(err, UH_E_INVALID_CONFIG, "execution_backend_config.mem_limit",
		                    "'%s.mem_limit' must be a memory quantity such as \"512Mi\" or \"1Gi\"", P);
	return 0;
}

static int check_common(const struct uh_config *cfg, json_t *config, struct uh_error *err)
{
	const char *P = "execution_backend_config";
	json_t *t = json_object_get(config, "timeout_seconds");
	if (t) {
		if (!json_is_integer(t) || json_integer_value(t) < 1)
			return uh_error_set(err, UH_E_INVALID_CONFIG, "execution_backend_config.timeout_seconds",
			                    "'%s.timeout_seconds' must be a positive integer", P);
		if (json_integer_value(t) > cfg->guardrails.max_timeout_s)
			return uh_error_set(err, UH_E_INVALID_CONFIG, "execution_backend_config.timeout_seconds",
			                    "'%s.timeout_seconds' is %lld, above the server cap "
			                    "guardrails.max_timeout_seconds=%lld",
			                    P, (long long)json_integer_value(t),
			                    (long long)cfg->guardrails.max_timeout_s);
	} else {
		json_object_set_new(config, "timeout_seconds", json_integer(cfg->guardrails.default_timeout_s));
	}
	int64_t milli, bytes;
	int r = uh_backend_limits(config, &milli, &bytes, err);
	if (r)
		return r;
	if (milli > cfg->guardrails.max_cpu_milli)
		return uh_error_set(err, UH_E_INVALID_CONFIG, "execution_backend_config.cpu_limit",
		                    "'%s.cpu_limit' is %s, above the server cap guardrails.max_cpu_limit=%lldm", P,
		                    json_string_value(json_object_get(config, "cpu_limit")),
		                    (long long)cfg->guardrails.max_cpu_milli);
	if (bytes > cfg->guardrails.max_mem_bytes)
		return uh_error_set(err, UH_E_INVALID_CONFIG, "execution_backend_config.mem_limit",
		                    "'%s.mem_limit' is %s, above the server cap guardrails.max_mem_limit (%lld bytes)",
		                    P, json_string_value(json_object_get(config, "mem_limit")),
		                    (long long)cfg->guardrails.max_mem_bytes);
	return 0;
}

int uh_backend_validate(const struct uh_config *cfg, const char *backend, json_t *config, const json_t *command,
                        const json_t *env_names, struct uh_error *err)
{
	if (!backend || !uh_backend_known(backend))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "execution_backend",
		                    "unknown execution backend '%s' (one of local, docker, webhook, ssh, "
		                    "kubernetes, serverless)",
		                    backend ? backend : "");
	const struct uh_backend_ops *ops = uh_backend_find(backend);
	if (!ops)
		return uh_error_set(err, UH_E_UNSUPPORTED_BACKEND, "execution_backend",
		                    "execution backend '%s' is not built in this uhub", backend);
	if (!json_is_object(config))
		return uh_error_set(err, UH_E_INVALID_CONFIG, "execution_backend_config",
		                    "'execution_backend_config' must be a JSON object");
	int r = check_common(cfg, config, err);
	if (r)
		return r;
	return ops->validate ? ops->validate(cfg, config, command, env_names, err) : 0;
}

static int start_or_reattach(const struct uh_backend_ops *ops, const struct uh_backend_host *host, void *host_data,
                             uv_loop_t *loop, const struct uh_config *cfg, const struct uh_run_spec *spec,
                             const char *external_id, struct uh_run_handle **out, struct uh_error *err)
{
	if (external_id && !ops->reattach)
		return uh_error_set(err, UH_E_UNSUPPORTED_BACKEND, NULL, "backend '%s' cannot re-attach", ops->name);
	size_t sz = ops->state_size < sizeof(struct uh_run_handle) ? sizeof(struct uh_run_handle) : ops->state_size;
	struct uh_run_handle *h = calloc(1, sz);
	if (!h)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory starting run '%s'", spec->run_id);
	h->ops = ops;
	h->host = host;
	h->host_data = host_data;
	h->loop = loop;
	h->cfg = cfg;
	snprintf(h->run_id, sizeof(h->run_id), "%s", spec->run_id);
	if (external_id)
		snprintf(h->external_id, sizeof(h->external_id), "%s", external_id);
	int r = external_id ? ops->reattach(h, spec, external_id, err) : ops->start(h, spec, err);
	if (r) {
		free(h);
		return r;
	}
	*out = h;
	return 0;
}

int uh_backend_start(const struct uh_backend_ops *ops, const struct uh_backend_host *host, void *host_data,
                     uv_loop_t *loop, const struct uh_config *cfg, const struct uh_run_spec *spec,
                     struct uh_run_handle **out, struct uh_error *err)
{
	return start_or_reattach(ops, host, host_data, loop, cfg, spec, NULL, out, err);
}

int uh_backend_reattach(const struct uh_backend_ops *ops, const struct uh_backend_host *host, void *host_data,
                        uv_loop_t *loop, const struct uh_config *cfg, const struct uh_run_spec *spec,
                        const char *external_id, struct uh_run_handle **out, struct uh_error *err)
{
	return start_or_reattach(ops, host, host_data, loop, cfg, spec, external_id ? external_id : "", out, err);
}

void uh_backend_stop(struct uh_run_handle *h, int64_t grace_ms)
{
	if (h && h->ops->stop)
		h->ops->stop(h, grace_ms < 0 ? 0 : grace_ms);
}

int uh_backend_callback(struct uh_run_handle *h, const json_t *body)
{
	if (!h || !h->ops->callback)
		return UH_E_NOT_FOUND;
	return h->ops->callback(h, body) ? UH_E_CONFLICT : 0;
}

void uh_backend_release(struct uh_run_handle *h)
{
	if (!h)
		return;
	if (h->ops->release)
		h->ops->release(h); /* frees h, possibly after its uv handles close */
	else
		free(h);
}

int uh_backend_settle(const struct uh_config *cfg, const char *backend, const char *run_id, const char *external_id,
                      struct uh_error *err)
{
	const struct uh_backend_ops *ops = uh_backend_find(backend);
	if (!ops || !ops->settle)
		return 0;
	return ops->settle(cfg, run_id, external_id, err);
}

void *uh_backend_handle_check(struct uh_run_handle *h, const struct uh_backend_ops *ops)
{
	if (!h || h->ops != ops) {
		uh_errorf("handle of backend '%s' used as '%s'", h ? h->ops->name : "(null)", ops->name);
		abort();
	}
	return h;
}
