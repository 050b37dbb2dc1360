/* See jobspec.h. */
#include "core/jobspec.h"

#include <stdio.h>
#include <string.h>

static const char *str(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

int uh_effective_config(const json_t *project, const json_t *job, char **backend, json_t **config, struct uh_error *err)
{
	const char *pb = str(project, "execution_backend");
	const char *jb = str(job, "execution_backend");
	const char *b = jb ? jb : pb;
	if (!b)
		return uh_error_set(err, UH_E_INVALID_REQUEST, "execution_backend",
		                    "neither the job nor its project names an execution backend");
	json_t *pc = json_object_get(project, "execution_backend_config");
	json_t *jc = json_object_get(job, "execution_backend_config");
	json_t *out;
	if (!jb || (pb && strcmp(jb, pb) == 0)) {
		out = json_is_object(pc) ? json_deep_copy(pc) : json_object();
		if (json_is_object(jc))
			json_object_update(out, jc);
	} else {
		out = json_is_object(jc) ? json_deep_copy(jc) : json_object();
	}
	*backend = strdup(b);
	*config = out;
	return 0;
}

int uh_check_parameters(const json_t *job, const json_t *params, struct uh_error *err)
{
	if (!params)
		return 0;
	if (!json_is_object(params))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "parameters", "'parameters' must be an object");
	json_t *decl = json_object_get(job, "parameters");
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)params, k, v)
	{
		char f[160];
		snprintf(f, sizeof(f), "parameters.%s", k);
		int found = 0;
		size_t i;
		json_t *d;
		json_array_foreach(decl, i, d) if (json_is_string(d) && strcmp(json_string_value(d), k) == 0) found = 1;
		if (!found)
			return uh_error_set(err, UH_E_INVALID_REQUEST, f, "parameter '%s' is not declared by the job",
			                    k);
		if (!json_is_string(v))
			return uh_error_set(err, UH_E_INVALID_REQUEST, f, "parameter '%s' must be a string", k);
		if (strlen(json_string_value(v)) != json_string_length(v))
			return uh_error_set(err, UH_E_INVALID_REQUEST, f, "parameter '%s' holds a NUL byte", k);
		if (json_string_length(v) > 65536)
			return uh_error_set(err, UH_E_INVALID_REQUEST, f, "parameter '%s' is longer than 65536 bytes",
			                    k);
	}
	return 0;
}

json_t *uh_run_env(const char *run_id, const json_t *project, const json_t *job, const json_t *params)
{
	json_t *env = json_object();
	json_object_set_new(env, "UHUB_RUN_ID", json_string(run_id));
	json_object_set_new(env, "UHUB_JOB", json_string(str(job, "name") ? str(job, "name") : ""));
	json_object_set_new(env, "UHUB_JOB_ID", json_string(str(job, "id") ? str(job, "id") : ""));
	json_object_set_new(env, "UHUB_PROJECT", json_string(str(project, "name") ? str(project, "name") : ""));
	json_object_set_new(env, "UHUB_PROJECT_ID", json_string(str(project, "id") ? str(project, "id") : ""));
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)params, k, v)
	{
		char name[256];
		snprintf(name, sizeof(name), "UHUB_PARAM_%s", k);
		json_object_set(env, name, v);
	}
	json_t *jenv = json_object_get(job, "env");
	json_object_foreach(jenv, k, v) if (json_is_string(v)) json_object_set(env, k, v);
	return env;
}

json_t *uh_job_env_names(const json_t *job)
{
	json_t *names = json_object();
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(job, "env"), k, v) json_object_set_new(names, k, json_true());
	json_object_foreach(json_object_get(job, "secrets"), k, v) json_object_set_new(names, k, json_true());
	return names;
}

int uh_config_secret_refs(const json_t *config, json_t *out, struct uh_error *err)
{
	static const char P[] = "execution_backend_config.";
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)config, k, v)
	{
		size_t n = strlen(k);
		if (n < 7 || strcmp(k + n - 7, "_secret") != 0 || json_is_null(v))
			continue;
		char f[192];
		snprintf(f, sizeof(f), "%s%s", P, k);
		if (!json_is_string(v))
			return uh_error_set(err, UH_E_INVALID_REQUEST, f, "'%s' must be a secret reference string", f);
		json_object_set(out, f, v);
	}
	json_object_foreach(json_object_get(config, "headers"), k, v)
	{
		const char *s = json_string_value(v);
		int i = 0;
		while (s && (s = strstr(s, "{{secrets.")) != NULL) {
			const char *ref = s + 10, *end = strstr(ref, "}}");
			char f[256];
			snprintf(f, sizeof(f), "%sheaders.%s", P, k);
			if (!end || end == ref)
				return uh_error_set(err, UH_E_INVALID_REQUEST, f,
				                    "'%s': '{{secrets.' must be followed by a reference and '}}'", f);
			if (i++)
				snprintf(f + strlen(f), sizeof(f) - strlen(f), "#%d", i);
			json_object_set_new(out, f, json_stringn(ref, (size_t)(end - ref)));
			s = end + 2;
		}
	}
	return 0;
}

bool uh_guardrail_needs_exception(const char *environment, const char *backend)
{
	return environment && strcmp(environment, "prod") == 0 && backend && strcmp(backend, "local") == 0;
}

int uh_guardrail_trigger(const struct uh_config *cfg, const json_t *project, const json_t *job, const char *backend,
                         bool exception_live, int *initial_status, struct uh_error *err)
{
	const char *env = str(project, "environment");
	int prod = env && strcmp(env, "prod") == 0;
	if (uh_guardrail_needs_exception(env, backend) && !cfg->guardrails.prod_local_allowed && !exception_live)
		return uh_error_set(err, UH_E_GUARDRAIL, "execution_backend",
		                    "the local backend is refused in the prod project '%s' without an admin exception",
		                    str(project, "name") ? str(project, "name") : "");
	*initial_status = UH_RUN_QUEUED;
	if (prod && json_is_true(json_object_get(job, "critical")))
		*initial_status = UH_RUN_PENDING_APPROVAL;
	return 0;
}

int uh_guardrail_dispatch(const struct uh_config *cfg, const struct uh_run *run, bool exception_live,
                          struct uh_error *err)
{
	const char *env = str(run->spec, "project_environment");
	if (uh_guardrail_needs_exception(env, run->backend) && !cfg->guardrails.prod_local_allowed && !exception_live)
		return uh_error_set(err, UH_E_GUARDRAIL, "exception_revoked",
		                    "the local backend is refused in prod and no exception covers this run");
	return 0;
}
