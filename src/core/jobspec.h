/* What a job runs, worked out from its project: the effective backend and
 * config (SPEC §3 merge), the run's environment, parameter checks, and the
 * guardrail decisions (SPEC §4) at trigger and before dispatch. */
#ifndef UH_CORE_JOBSPEC_H
#define UH_CORE_JOBSPEC_H

#include <jansson.h>
#include <stdbool.h>

#include "core/config.h"
#include "core/run.h"
#include "util/error.h"

/* Backend = the job's execution_backend, else the project's. Config = the
 * project's config, with the job's merged over it key by key when both name
 * the same backend, else the job's alone. New references. */
int uh_effective_config(const json_t *project, const json_t *job, char **backend, json_t **config,
                        struct uh_error *err);

/* Check a trigger's parameters (object NAME -> string) against the job's
 * declared names. Error field "parameters.NAME". */
int uh_check_parameters(const json_t *job, const json_t *params, struct uh_error *err);

/* UHUB_RUN_ID, UHUB_JOB, UHUB_JOB_ID, UHUB_PROJECT, UHUB_PROJECT_ID,
 * UHUB_PARAM_<NAME>, then the job's env. New reference. */
json_t *uh_run_env(const char *run_id, const json_t *project, const json_t *job, const json_t *params);

/* The env names a job sets (keys of env and secrets), for backend checks. */
json_t *uh_job_env_names(const json_t *job);

/* The secret references an effective config uses, into `out` (an object:
 * field path -> reference): the string value of every top-level key ending
 * in "_secret" (`token_secret`, `key_secret`, `credentials_secret`), and each
 * `{{secrets.REF}}` inside a `headers` value (field
 * "execution_backend_config.headers.NAME"). 0, or UH_E_INVALID_REQUEST for
 * an unterminated `{{secrets.` template or a non-string *_secret value. */
int uh_config_secret_refs(const json_t *config, json_t *out, struct uh_error *err);

/* Guardrails at trigger: UH_E_GUARDRAIL when refused (message says why),
 * else *initial_status is queued or pending_approval. exception_live: a live
 * admin exception covers the project or the job (the caller asked the
 * store). */
int uh_guardrail_trigger(const struct uh_config *cfg, const json_t *project, const json_t *job, const char *backend,
                         bool exception_live, int *initial_status, struct uh_error *err);
/* Guardrails again just before the backend is instantiated, with whether a
 * live exception covers the run now. On refusal err->field holds the run
 * reason ("exception_revoked"). */
int uh_guardrail_dispatch(const struct uh_config *cfg, const struct uh_run *run, bool exception_live,
                          struct uh_error *err);
/* Whether the Local-in-prod rule applies to a run (prod project, local
 * backend): only then does the caller need to look an exception up. */
bool uh_guardrail_needs_exception(const char *environment, const char *backend);

#endif
