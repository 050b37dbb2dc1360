/* Guardrail routes (SPEC §4): admin exceptions that let Local run in prod,
 * and the approval or rejection of runs waiting in pending_approval. The
 * route policy (admin; projets member or admin) lets the caller in; the
 * approver rules that depend on the run (not the requester, not the job's
 * last editor) are applied here, in core/approval.c. Every decision is
 * audited, refusals included. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "backend/backend.h"
#include "core/approval.h"
#include "core/jobspec.h"
#include "core/notify.h"
#include "util/json.h"
#include "util/log.h"
#include "util/time.h"

#define REASON_MAX  1000
#define COMMENT_MAX 4000

static void audit_decision(struct uh_api_req *r, const char *action, const char *target, json_t *details)
{
	struct uh_audit_in a = uh_api_audit(r, action, target, details);
	struct uh_error e = {0};
	if (uh_store_audit_append(r->deps->store, &a, &e))
		uh_errorf("api: cannot audit %s of %s: %s", action, target ? target : "-", e.message);
	json_decref(details);
}

bool uh_api_exception_live(struct uh_api_req *r, const json_t *project, const char *job_id, const char *backend)
{
	const char *env = json_string_value(json_object_get(project, "environment"));
	const char *pid = json_string_value(json_object_get(project, "id"));
	if (!uh_guardrail_needs_exception(env, backend) || !pid || r->deps->cfg->guardrails.prod_local_allowed)
		return false;
	char xid[UH_ID_MAX];
	struct uh_error e = {0};
	if (uh_store_exception_live(r->deps->store, pid, job_id, uh_now_us(), xid, &e)) {
		uh_errorf("api: cannot look an exception up for job=%s: %s", job_id ? job_id : "-", e.message);
		return false;
	}
	if (!xid[0])
		return false;
	audit_decision(r, "guardrail.exception_used", job_id,
	               json_pack("{s:s,s:s,s:s}", "exception_id", xid, "project_id", pid, "backend", backend));
	return true;
}

/* ---- exceptions ---- */

static int validate_exception(const json_t *in, int64_t now, const char **project_id, const char **job_id,
                              const char **reason, int64_t *expires_at, struct uh_error *err)
{
	static const char *const keys[] = {"project_id", "job_id", "reason", "expires_at", NULL};
	if (!json_is_object(in))
		return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "a JSON object was expected");
	int rc = uh_json_only_keys(in, keys, NULL, err);
	if (rc)
		return rc;
	json_t *p = json_object_get(in, "project_id"), *j = json_object_get(in, "job_id");
	json_t *why = json_object_get(in, "reason"), *e = json_object_get(in, "expires_at");
	if (!json_is_string(p) || !uh_api_id_ok(json_string_value(p), strlen(json_string_value(p))))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "project_id", "'project_id' must be a project id");
	if (j && !json_is_null(j) &&
	    (!json_is_string(j) || !uh_api_id_ok(json_string_value(j), strlen(json_string_value(j)))))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "job_id", "'job_id' must be a job id or null");
	if (!json_is_string(why) || json_string_length(why) == 0 ||
	    strlen(json_string_value(why)) != json_string_length(why))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "reason", "'reason' must be a non-empty string");
	if (json_string_length(why) > REASON_MAX)
		return uh_error_set(err, UH_E_INVALID_REQUEST, "reason", "'reason' is longer than %d bytes",
		                    REASON_MAX);
	int64_t t;
	if (!json_is_string(e) || uh_time_parse(json_string_value(e), &t))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "expires_at",
		                    "'expires_at' must be an RFC 3339 time such as 2030-01-31T12:00:00Z");
	if (t <= now)
		return uh_error_set(err, UH_E_INVALID_REQUEST, "expires_at", "'expires_at' is in the past");
	*project_id = json_string_value(p);
	*job_id = json_is_string(j) ? json_string_value(j) : NULL;
	*reason = json_string_value(why);
	*expires_at = t;
	return 0;
}

int uh_h_exception_create(struct uh_api_req *r, struct uh_error *err)
{
	const char *pid = NULL, *jid = NULL, *reason = NULL;
	int64_t exp = 0;
	int rc = validate_exception(r->json, uh_now_us(), &pid, &jid, &reason, &exp, err);
	if (rc)
		return rc;
	json_t *details = json_pack("{s:s,s:s?,s:s,s:o}", "project_id", pid, "job_id", jid, "reason", reason,
	                            "expires_at", uh_json_time(exp));
	struct uh_audit_in a = uh_api_audit(r, "exception.create", NULL, details);
	json_t *out = NULL;
	rc = uh_store_exception_create(r->deps->store, pid, jid, reason, exp, r->who.user_id, &a, &out, err);
	json_decref(details);
	if (rc)
		return rc;
	return uh_api_answer(r, 201, out);
}

int uh_h_exception_list(struct uh_api_req *r, struct uh_error *err)
{
	int limit;
	const char *before;
	int rc;
	if ((rc = uh_api_page(r, &limit, &before, err)))
		return rc;
	json_t *items = NULL;
	char next[UH_CURSOR_MAX] = "";
	if ((rc = uh_store_exception_list(r->deps->store, limit, before, &items, next, err)))
		return rc;
	return uh_api_answer_list(r, items, next);
}

int uh_h_exception_delete(struct uh_api_req *r, struct uh_error *err)
{
	const char *id = r->params[0];
	struct uh_audit_in a = uh_api_audit(r, "exception.delete", id, NULL);
	int rc = uh_store_exception_delete(r->deps->store, id, r->who.user_id, &a, err);
	if (rc)
		return uh_api_not_found(rc, err, "exception", id);
	return uh_api_answer(r, 204, NULL);
}

/* ---- approvals ---- */

/* {"comment"?: string}; in may be NULL. */
static int validate_decision(const json_t *in, const char **comment, struct uh_error *err)
{
	static const char *const keys[] = {"comment", NULL};
	*comment = NULL;
	if (!in)
		return 0;
	if (!json_is_object(in))
		return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "a JSON object was expected");
	int rc = uh_json_only_keys(in, keys, NULL, err);
	if (rc)
		return rc;
	json_t *c = json_object_get(in, "comment");
	if (!c || json_is_null(c))
		return 0;
	if (!json_is_string(c) || strlen(json_string_value(c)) != json_string_length(c))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "comment", "'comment' must be a string");
	if (json_string_length(c) > COMMENT_MAX)
		return uh_error_set(err, UH_E_INVALID_REQUEST, "comment", "'comment' is longer than %d bytes",
		                    COMMENT_MAX);
	*comment = json_string_value(c);
	return 0;
}

/* What approve and reject share: the body, the run still pending, the job
 * and project loaded, the self rules (a refusal audited). */
static int decision_prepare(struct uh_api_req *r, const char *action, const char **comment, json_t **job,
                            json_t **project, struct uh_error *err)
{
	const char *id = r->params[0];
	*job = *project = NULL;
	int rc = validate_decision(r->json, comment, err);
	if (rc)
		return rc;
	if (r->run->status != UH_RUN_PENDING_APPROVAL)
		return uh_error_set(err, UH_E_CONFLICT, NULL, "run '%s' is '%s', not waiting for an approval", id,
		                    uh_run_status_name(r->run->status));
	if ((rc = uh_store_job_get(r->deps->store, r->run->job_id, job, err)) ||
	    (rc = uh_store_project_get(r->deps->store, r->run->project_id, project, err)))
		return uh_api_not_found(rc, err, "run", id);
	if ((rc = uh_approval_may_decide(r->deps->cfg, r->who.user_id, r->run, *job, err))) {
		char act[48];
		snprintf(act, sizeof(act), "run.%s_refused", action);
		audit_decision(r, act, id, json_pack("{s:s}", "why", err->message));
	}
	return rc;
}

static json_t *comment_entry(struct uh_api_req *r, const char *action, const char *comment)
{
	return json_pack("{s:s,s:o,s:s,s:s?}", "by", r->who.user_id, "at", uh_json_time(uh_now_us()), "action", action,
	                 "comment", comment);
}

static int answer_run(struct uh_api_req *r, int status, struct uh_error *err)
{
	struct uh_run *now = NULL;
	int rc = uh_store_run_get(r->deps->store, r->params[0], &now, err);
	if (rc)
		return uh_api_not_found(rc, err, "run", r->params[0]);
	rc = uh_api_answer(r, status, uh_run_to_json(now));
	uh_run_free(now);
	return rc;
}

/* What the run would be if triggered now: the current job and project
 * through the trigger's checks (secret references, merge, the backend's
 * validation, the trigger guardrails). A new run with id, parameters,
 * backend, effective_config and spec (the spec's other keys kept). */
static int current_snapshot(struct uh_api_req *r, const json_t *project, const json_t *job, struct uh_run **out,
                            struct uh_error *err)
{
	const struct uh_run *old = r->run;
	*out = NULL;
	char *backend = NULL;
	json_t *config = NULL, *cmd = json_object_get(job, "command"), *secrets = json_object_get(job, "secrets");
	int rc, status;
	if ((rc = uh_api_check_secret_refs(secrets, project, err)) ||
	    (rc = uh_effective_config(project, job, &backend, &config, err)))
		return rc;
	json_t *names = uh_job_env_names(job);
	rc = uh_backend_validate(r->deps->cfg, backend, config, json_is_array(cmd) ? cmd : NULL, names, err);
	json_decref(names);
	if (!rc)
		rc = uh_api_check_config_secret_refs(config, project, err);
	if (!rc)
		rc = uh_guardrail_trigger(r->deps->cfg, project, job, backend,
		                          uh_api_exception_live(r, project, old->job_id, backend), &status, err);
	struct uh_run *n = rc ? NULL : uh_run_new();
	if (!n) {
		if (!rc)
			rc = uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
		free(backend);
		json_decref(config);
		return rc;
	}
	snprintf(n->id, sizeof(n->id), "%s", old->id);
	n->parameters = old->parameters ? json_incref(old->parameters) : NULL;
	n->backend = backend;
	n->effective_config = config;
	n->spec = json_is_object(old->spec) ? json_deep_copy(old->spec) : json_object();
	json_object_set_new(n->spec, "command", json_is_array(cmd) ? json_deep_copy(cmd) : json_null());
	json_object_set_new(n->spec, "env", uh_run_env(old->id, project, job, old->parameters));
	json_object_set_new(n->spec, "secrets", json_is_object(secrets) ? json_deep_copy(secrets) : json_object());
	json_object_set_new(n->spec, "job_name", json_string(json_string_value(json_object_get(job, "name"))));
	json_object_set_new(n->spec, "project_name", json_string(json_string_value(json_object_get(project, "name"))));
	json_object_set_new(n->spec, "project_environment",
	                    json_string(json_string_value(json_object_get(project, "environment"))));
	json_t *jmax = json_object_get(job, "max_concurrent"), *pmax = json_object_get(project, "max_concurrent");
	json_object_set_new(n->spec, "max_concurrent", json_is_integer(jmax) ? json_incref(jmax) : json_null());
	json_object_set_new(n->spec, "project_max_concurrent", json_is_integer(pmax) ? json_incref(pmax) : json_null());
	*out = n;
	return 0;
}

int uh_h_run_approve(struct uh_api_req *r, struct uh_error *err)
{
	const char *id = r->params[0];
	const char *comment;
	json_t *job = NULL, *project = NULL, *entry = NULL, *details = NULL;
	struct uh_run *cur = NULL;
	int rc = decision_prepare(r, "approve", &comment, &job, &project, err);
	if (rc)
		goto out;
	/* The approval covers what will run: the job and project as they stand
	 * now. When they changed since the trigger (or since an approval that
	 * was then voided), the run's snapshot is refreshed with the approval. */
	if ((rc = current_snapshot(r, project, job, &cur, err))) {
		char why[sizeof(err->message)];
		snprintf(why, sizeof(why), "%s", err->message);
		audit_decision(r, "run.approve_refused", id, json_pack("{s:s}", "why", why));
		if (rc != UH_E_GUARDRAIL && rc != UH_E_INTERNAL)
			rc = uh_error_set(err, UH_E_CONFLICT, NULL,
			                  "run '%s' cannot be approved: the job as it stands now fails: %s", id, why);
		goto out;
	}
	char now_hash[65], snap_hash[65];
	uh_approval_hash_snapshot(cur, now_hash);
	uh_approval_hash_snapshot(r->run, snap_hash);
	bool refreshed = strcmp(now_hash, snap_hash) != 0;
	if (!(entry = comment_entry(r, "approve", comment))) {
		rc = uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
		goto out;
	}
	details = json_pack("{s:s,s:s,s:s?,s:s,s:b}", "from", "pending_approval", "to", "queued", "comment", comment,
	                    "hash", now_hash, "refreshed", refreshed);
	struct uh_audit_in a = uh_api_audit(r, "run.approve", id, details);
	if ((rc = uh_store_run_approve(r->deps->store, id, r->who.user_id, entry, now_hash, refreshed ? cur : NULL, &a,
	                               err))) {
		rc = uh_api_not_found(rc, err, "run", id);
		goto out;
	}
	uh_notify_run(id);
	if (r->deps->kick)
		r->deps->kick(r->deps->arg);
	rc = answer_run(r, 200, err);
out:
	uh_run_free(cur);
	json_decref(details);
	json_decref(entry);
	json_decref(job);
	json_decref(project);
	return rc;
}

int uh_h_run_reject(struct uh_api_req *r, struct uh_error *err)
{
	const char *id = r->params[0];
	const char *comment;
	json_t *job = NULL, *project = NULL, *entry = NULL, *details = NULL;
	int rc = decision_prepare(r, "reject", &comment, &job, &project, err);
	if (rc)
		goto out;
	if (!(entry = comment_entry(r, "reject", comment))) {
		rc = uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
		goto out;
	}
	char msg[256];
	snprintf(msg, sizeof(msg), "rejected by %s", r->who.name[0] ? r->who.name : r->who.user_id);
	struct uh_run_update u = {.from = UH_RUN_PENDING_APPROVAL,
	                          .to = UH_RUN_REJECTED,
	                          .reason = "approval_rejected",
	                          .message = msg,
	                          .finished_at = uh_now_us(),
	                          .rejected_by = r->who.user_id,
	                          .comment = entry};
	details = json_pack("{s:s,s:s,s:s,s:s?}", "from", "pending_approval", "to", "rejected", "reason",
	                    "approval_rejected", "comment", comment);
	struct uh_audit_in a = uh_api_audit(r, "run.reject", id, details);
	if ((rc = uh_store_run_transition(r->deps->store, id, &u, &a, err))) {
		rc = uh_api_not_found(rc, err, "run", id);
		goto out;
	}
	uh_notify_run(id);
	rc = answer_run(r, 200, err);
out:
	json_decref(details);
	json_decref(entry);
	json_decref(job);
	json_decref(project);
	return rc;
}
