/* Jobs (SPEC §5) and the trigger (SPEC §2): a trigger checks parameters,
 * the effective config and the guardrails, records the run and wakes the
 * supervisor; it never waits on a backend. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "backend/backend.h"
#include "core/jobspec.h"
#include "util/crypto.h"
#include "util/json.h"
#include "util/log.h"
#include "util/time.h"

static const char *const job_readonly[] = {"id", "project_id", "created_at", "updated_at", "updated_by", NULL};

/* The job (as stored or as about to be) with its project: the merged config
 * validated by the chosen backend. Out-params may be NULL. */
static int check_effective(const struct uh_config *cfg, const json_t *project, const json_t *job, char **backend_out,
                           json_t **config_out, struct uh_error *err)
{
	char *backend = NULL;
	json_t *config = NULL;
	int rc = uh_effective_config(project, job, &backend, &config, err);
	if (rc)
		return rc;
	json_t *names = uh_job_env_names(job);
	json_t *cmd = json_object_get(job, "command");
	rc = uh_backend_validate(cfg, backend, config, json_is_array(cmd) ? cmd : NULL, names, err);
	json_decref(names);
	if (!rc)
		rc = uh_api_check_config_secret_refs(config, project, err);
	if (rc || !backend_out)
		free(backend);
	else
		*backend_out = backend;
	if (rc || !config_out)
		json_decref(config);
	else
		*config_out = config;
	return rc;
}

int uh_h_job_create(struct uh_api_req *r, struct uh_error *err)
{
	const char *pid = r->params[0];
	json_t *fields = NULL;
	int rc = uh_api_validate_job(r->json, r->project, &fields, err);
	if (rc)
		return rc;
	if ((!r->admin && (rc = uh_api_job_loosening(r->project, NULL, fields, err))) ||
	    (rc = check_effective(r->deps->cfg, r->project, fields, NULL, NULL, err))) {
		json_decref(fields);
		return rc;
	}
	struct uh_audit_in a = uh_api_audit(r, "job.create", NULL, fields);
	json_t *job = NULL;
	rc = uh_store_job_create(r->deps->store, pid, fields, &a, &job, err);
	json_decref(fields);
	if (rc)
		return uh_api_not_found(rc, err, "project", pid);
	return uh_api_answer(r, 201, job);
}

int uh_h_job_list(struct uh_api_req *r, struct uh_error *err)
{
	int limit;
	const char *before;
	const char *name = uh_api_filter(r, "name");
	int rc;
	if ((rc = uh_api_page(r, &limit, &before, err)))
		return rc;
	if (name && !uh_api_name_ok(name))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "name", "'name' is not a valid job name");
	json_t *items = NULL;
	char next[UH_CURSOR_MAX] = "";
	if ((rc = uh_store_job_list(r->deps->store, r->params[0], name, limit, before, &items, next, err)))
		return uh_api_not_found(rc, err, "project", r->params[0]);
	return uh_api_answer_list(r, items, next);
}

int uh_h_job_get(struct uh_api_req *r, struct uh_error *err)
{
	(void)err;
	json_t *j = r->job;
	r->job = NULL;
	return uh_api_answer(r, 200, j);
}

/* The job's project; an archived project hides its jobs. */
static int job_project(struct uh_api_req *r, json_t **project, struct uh_error *err)
{
	const char *pid = json_string_value(json_object_get(r->job, "project_id"));
	int rc = uh_store_project_get(r->deps->store, pid ? pid : "", project, err);
	const char *jid = json_string_value(json_object_get(r->job, "id"));
	return rc ? uh_api_not_found(rc, err, "job", jid ? jid : r->params[0]) : 0;
}

int uh_h_job_patch(struct uh_api_req *r, struct uh_error *err)
{
	const char *id = r->params[0];
	int rc = uh_api_patch_readonly(r->json, job_readonly, err);
	if (rc)
		return rc;
	json_t *project = NULL, *fields = NULL, *old = NULL, *changed = NULL;
	if ((rc = job_project(r, &project, err)))
		return rc;
	old = json_deep_copy(r->job);
	for (const char *const *k = job_readonly; *k; k++)
		json_object_del(old, *k);
	json_t *doc = json_deep_copy(old);
	uh_json_merge_patch(doc, r->json);
	if (!r->admin && (rc = uh_api_job_loosening(project, old, doc, err))) {
		json_decref(doc);
		goto out;
	}
	rc = uh_api_validate_job(doc, project, &fields, err);
	json_decref(doc);
	if (rc || (rc = check_effective(r->deps->cfg, project, fields, NULL, NULL, err)))
		goto out;
	changed = uh_api_changed(old, fields);
	if (json_object_size(changed) == 0) {
		json_t *j = r->job;
		r->job = NULL;
		rc = uh_api_answer(r, 200, j);
		goto out;
	}
	struct uh_audit_in a = uh_api_audit(r, "job.update", id, changed);
	json_t *job = NULL;
	if ((rc = uh_store_job_update(r->deps->store, id, fields, &a, &job, err))) {
		rc = uh_api_not_found(rc, err, "job", id);
		goto out;
	}
	rc = uh_api_answer(r, 200, job);
out:
	json_decref(changed);
	json_decref(fields);
	json_decref(old);
	json_decref(project);
	return rc;
}

int uh_h_job_delete(struct uh_api_req *r, struct uh_error *err)
{
	const char *id = r->params[0];
	json_t *details = json_pack("{s:s?,s:s?}", "name", json_string_value(json_object_get(r->job, "name")),
	                            "project_id", json_string_value(json_object_get(r->job, "project_id")));
	struct uh_audit_in a = uh_api_audit(r, "job.archive", id, details);
	int rc = uh_store_job_archive(r->deps->store, id, &a, err);
	json_decref(details);
	if (rc)
		return uh_api_not_found(rc, err, "job", id);
	return uh_api_answer(r, 204, NULL);
}

/* A refused trigger is audited too (SPEC §1 "every guardrail decision"). */
static void audit_refusal(struct uh_api_req *r, const char *job_id, const char *backend, const struct uh_error *why)
{
	json_t *details = json_pack("{s:s?,s:s?,s:s?,s:s}", "job_id", job_id, "project_id",
	                            json_string_value(json_object_get(r->job, "project_id")), "backend", backend,
	                            "reason", why->message);
	struct uh_audit_in a = uh_api_audit(r, "run.refused", job_id, details);
	struct uh_error e = {0};
	if (uh_store_audit_append(r->deps->store, &a, &e))
		uh_errorf("api: cannot audit a refused trigger of job=%s: %s", job_id, e.message);
	json_decref(details);
}

int uh_api_run_create(struct uh_api_req *r, const json_t *params, const char *rerun_of, const char *idem,
                      struct uh_error *err)
{
	const char *job_id = json_string_value(json_object_get(r->job, "id"));
	if (!job_id)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "the job has no id");
	if (r->deps->draining && *r->deps->draining)
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "the daemon is shutting down and takes no new runs");

	json_t *project = NULL, *config = NULL, *spec = NULL, *details = NULL;
	char *backend = NULL;
	struct uh_run *run = NULL, *existing = NULL;
	int rc;
	if ((rc = job_project(r, &project, err)) || (rc = uh_check_parameters(r->job, params, err)) ||
	    (rc = uh_api_check_secret_refs(json_object_get(r->job, "secrets"), project, err)) ||
	    (rc = check_effective(r->deps->cfg, project, r->job, &backend, &config, err)))
		goto out;
	int status = UH_RUN_QUEUED;
	if ((rc = uh_guardrail_trigger(r->deps->cfg, project, r->job, backend,
	                               uh_api_exception_live(r, project, job_id, backend), &status, err))) {
		if (rc == UH_E_GUARDRAIL)
			audit_refusal(r, job_id, backend, err);
		goto out;
	}

	if (!(run = uh_run_new())) {
		rc = uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
		goto out;
	}
	uh_id_new("r_", run->id);
	snprintf(run->job_id, sizeof(run->job_id), "%s", job_id);
	snprintf(run->project_id, sizeof(run->project_id), "%s",
	         json_string_value(json_object_get(r->job, "project_id")));
	run->status = status;
	run->backend = backend;
	backend = NULL;
	run->parameters = json_deep_copy(params);
	snprintf(run->requested_by, sizeof(run->requested_by), "%s", r->who.user_id);
	run->created_at = uh_now_us();
	run->effective_config = json_incref(config);
	run->comments = json_array();
	json_t *cmd = json_object_get(r->job, "command");
	json_t *secrets = json_object_get(r->job, "secrets");
	spec = json_object();
	json_object_set_new(spec, "command", json_is_array(cmd) ? json_deep_copy(cmd) : json_null());
	json_object_set_new(spec, "env", uh_run_env(run->id, project, r->job, params));
	json_object_set_new(spec, "secrets", json_is_object(secrets) ? json_deep_copy(secrets) : json_object());
	json_object_set_new(spec, "job_name", json_string(json_string_value(json_object_get(r->job, "name"))));
	json_object_set_new(spec, "project_name", json_string(json_string_value(json_object_get(project, "name"))));
	json_object_set_new(spec, "project_environment",
	                    json_string(json_string_value(json_object_get(project, "environment"))));
	/* Concurrency limits and retries as they stand at trigger time. */
	json_t *jmax = json_object_get(r->job, "max_concurrent"), *pmax = json_object_get(project, "max_concurrent");
	json_object_set_new(spec, "max_concurrent", json_is_integer(jmax) ? json_incref(jmax) : json_null());
	json_object_set_new(spec, "project_max_concurrent", json_is_integer(pmax) ? json_incref(pmax) : json_null());
	json_t *retries = json_object_get(r->job, "retries");
	json_object_set_new(spec, "retries", json_integer(json_is_integer(retries) ? json_integer_value(retries) : 0));
	run->spec = json_incref(spec);

	char body_hash[65];
	uh_sha256_hex(r->body ? r->body : "", r->body_len, body_hash);
	details = json_pack("{s:s,s:s,s:s,s:s,s:O}", "job_id", job_id, "project_id", run->project_id, "status",
	                    uh_run_status_name(status), "backend", run->backend, "parameters", params);
	if (rerun_of)
		json_object_set_new(details, "rerun_of", json_string(rerun_of));
	struct uh_audit_in a = uh_api_audit(r, rerun_of ? "run.rerun" : "run.create", run->id, details);
	if ((rc = uh_store_run_create(r->deps->store, run, idem ? r->who.user_id : NULL, idem, idem ? body_hash : NULL,
	                              &a, &existing, err))) {
		if (rc == UH_E_CONFLICT && idem && err) {
			if (!err->message[0])
				snprintf(err->message, sizeof(err->message),
				         "this Idempotency-Key was used with another body");
			snprintf(err->field, sizeof(err->field), "Idempotency-Key");
		}
		goto out;
	}
	if (existing) {
		rc = uh_api_answer(r, 200, uh_run_to_json(existing));
		goto out;
	}
	if (r->deps->kick)
		r->deps->kick(r->deps->arg);
	rc = uh_api_answer(r, 201, uh_run_to_json(run));
out:
	uh_run_free(existing);
	uh_run_free(run);
	free(backend);
	json_decref(details);
	json_decref(spec);
	json_decref(config);
	json_decref(project);
	return rc;
}

int uh_h_run_trigger(struct uh_api_req *r, struct uh_error *err)
{
	if (r->deps->draining && *r->deps->draining)
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "the daemon is shutting down and takes no new runs");
	const char *idem = uh_api_header(r, "Idempotency-Key");
	if (idem && !uh_api_idem_key_ok(idem))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "Idempotency-Key",
		                    "'Idempotency-Key' must be 1 to 255 visible ASCII characters");
	json_t *params = NULL;
	int rc = uh_api_validate_trigger(r->json, &params, err);
	if (rc)
		return rc;
	rc = uh_api_run_create(r, params, NULL, idem, err);
	json_decref(params);
	return rc;
}
