/* See approval.h. */
#include "core/approval.h"

#include <stdlib.h>
#include <string.h>

#include "core/jobspec.h"
#include "util/crypto.h"

static json_t *or_null(const json_t *v)
{
	return v ? json_deep_copy(v) : json_null();
}

void uh_approval_hash(const char *backend, const json_t *command, const json_t *env, const json_t *secrets,
                      const json_t *config, const json_t *params, char out[65])
{
	json_t *o = json_object();
	json_object_set_new(o, "backend", backend ? json_string(backend) : json_null());
	json_object_set_new(o, "command", or_null(command));
	json_object_set_new(o, "env", or_null(env));
	json_object_set_new(o, "secrets", or_null(secrets));
	json_object_set_new(o, "effective_config", or_null(config));
	json_object_set_new(o, "parameters", or_null(params));
	char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	uh_sha256_hex(text ? text : "", text ? strlen(text) : 0, out);
	free(text);
	json_decref(o);
}

void uh_approval_hash_snapshot(const struct uh_run *run, char out[65])
{
	uh_approval_hash(run->backend, json_object_get(run->spec, "command"), json_object_get(run->spec, "env"),
	                 json_object_get(run->spec, "secrets"), run->effective_config, run->parameters, out);
}

int uh_approval_hash_current(const struct uh_config *cfg, uh_config_check_fn check, const struct uh_run *run,
                             const json_t *project, const json_t *job, char out[65], struct uh_error *err)
{
	char *backend = NULL;
	json_t *config = NULL;
	int rc = uh_effective_config(project, job, &backend, &config, err);
	if (rc)
		return rc;
	if (check) {
		json_t *names = uh_job_env_names(job);
		json_t *c = json_object_get(job, "command");
		rc = check(cfg, backend, config, json_is_array(c) ? c : NULL, names, err);
		json_decref(names);
		if (rc) {
			json_decref(config);
			free(backend);
			return rc;
		}
	}
	json_t *params = run->parameters ? json_incref(run->parameters) : json_object();
	json_t *env = uh_run_env(run->id, project, job, params);
	json_t *cmd = json_object_get(job, "command");
	json_t *secrets = json_object_get(job, "secrets");
	json_t *sec = json_is_object(secrets) ? json_incref(secrets) : json_object();
	uh_approval_hash(backend, json_is_array(cmd) ? cmd : json_null(), env, sec, config, run->parameters, out);
	json_decref(sec);
	json_decref(env);
	json_decref(params);
	json_decref(config);
	free(backend);
	return 0;
}

int uh_approval_may_decide(const struct uh_config *cfg, const char *user_id, const struct uh_run *run,
                           const json_t *job, struct uh_error *err)
{
	if (cfg->guardrails.allow_self_approval)
		return 0;
	if (run->requested_by[0] && strcmp(run->requested_by, user_id) == 0)
		return uh_error_set(err, UH_E_FORBIDDEN, NULL, "the requester of run '%s' may not decide on it",
		                    run->id);
	const char *editor = json_string_value(json_object_get(job, "updated_by"));
	if (editor && strcmp(editor, user_id) == 0)
		return uh_error_set(err, UH_E_FORBIDDEN, NULL,
		                    "the last editor of job '%s' may not decide on its run '%s'", run->job_id, run->id);
	return 0;
}
