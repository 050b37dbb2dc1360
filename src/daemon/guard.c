/* See guard.h. */
#include "daemon/guard.h"

#include <string.h>

#include "backend/backend.h"
#include "core/approval.h"
#include "core/jobspec.h"
#include "core/notify.h"
#include "util/log.h"
#include "util/time.h"

/* Whether the approval of a queued run still covers what it will run. */
static bool approval_holds(struct uh_store *s, const struct uh_config *cfg, const struct uh_run *run,
                           const char *approved, char now_hash[65])
{
	json_t *job = NULL, *project = NULL;
	struct uh_error e = {0};
	bool ok = false;
	now_hash[0] = '\0';
	if (!uh_store_job_get(s, run->job_id, &job, &e) && !uh_store_project_get(s, run->project_id, &project, &e) &&
	    !uh_approval_hash_current(cfg, uh_backend_validate, run, project, job, now_hash, &e))
		ok = strcmp(now_hash, approved) == 0;
	else
		uh_warn("run=%s job=%s backend=%s approval cannot be checked: %s", run->id, run->job_id, run->backend,
		        e.message);
	json_decref(job);
	json_decref(project);
	return ok;
}

enum uh_guard_verdict uh_guard_dispatch_check(struct uh_store *s, const struct uh_config *cfg, const struct uh_run *run,
                                              struct uh_error *err)
{
	bool live = false;
	const char *env = json_string_value(json_object_get(run->spec, "project_environment"));
	if (uh_guardrail_needs_exception(env, run->backend) && !cfg->guardrails.prod_local_allowed) {
		char xid[UH_ID_MAX];
		struct uh_error e = {0};
		if (uh_store_exception_live(s, run->project_id, run->job_id, uh_now_us(), xid, &e))
			uh_errorf("run=%s job=%s backend=%s cannot look an exception up: %s", run->id, run->job_id,
			          run->backend, e.message);
		live = xid[0] != '\0';
	}
	if (uh_guardrail_dispatch(cfg, run, live, err))
		return UH_GUARD_REJECT;

	char approved[65];
	struct uh_error e = {0};
	if (uh_store_run_approval_hash(s, run->id, approved, &e)) {
		uh_errorf("run=%s job=%s backend=%s cannot read its approval: %s", run->id, run->job_id, run->backend,
		          e.message);
		return UH_GUARD_SKIP; /* the next dispatch tries again */
	}
	/* A retry carries its first run's approval: that approval's hash must
	 * still match, or the retry waits for an approval of its own. */
	char up[UH_ID_MAX];
	snprintf(up, sizeof(up), "%s", run->retry_of);
	for (int depth = 0; !approved[0] && up[0] && depth < 64; depth++) {
		struct uh_run *prev = NULL;
		if (uh_store_run_approval_hash(s, up, approved, &e) || uh_store_run_get(s, up, &prev, &e)) {
			uh_run_free(prev);
			uh_errorf("run=%s job=%s backend=%s cannot read the approval of run '%s': %s", run->id,
			          run->job_id, run->backend, up, e.message);
			return UH_GUARD_SKIP;
		}
		snprintf(up, sizeof(up), "%s", prev->retry_of);
		uh_run_free(prev);
	}
	char now_hash[65] = "";
	if (!approved[0] || approval_holds(s, cfg, run, approved, now_hash))
		return UH_GUARD_GO;
	json_t *details = json_pack("{s:s,s:s,s:s,s:s,s:s}", "from", "queued", "to", "pending_approval", "approved_by",
	                            run->approved_by, "approved_hash", approved, "hash", now_hash);
	struct uh_audit_in a = {"system", "run.approval_void", run->id, details};
	int rc = uh_store_run_approval_void(s, run->id, &a, &e);
	json_decref(details);
	if (rc) {
		uh_debug("run=%s approval not voided: %s", run->id, e.message);
		return UH_GUARD_SKIP;
	}
	uh_info("run=%s job=%s backend=%s approval void: the job changed since it was approved", run->id, run->job_id,
	        run->backend);
	uh_notify_run(run->id);
	return UH_GUARD_VOIDED;
}

size_t uh_guard_sweep_expired(struct uh_store *s, const struct uh_config *cfg)
{
	struct uh_run **runs = NULL;
	size_t n = 0, left = 0;
	struct uh_error err = {0};
	if (uh_store_runs_in_status(s, UH_RUN_PENDING_APPROVAL, 1000, &runs, &n, &err)) {
		uh_errorf("cannot list runs waiting for an approval: %s", err.message);
		return 0;
	}
	int64_t now = uh_now_us(), ttl = cfg->guardrails.approval_ttl_s * 1000000;
	for (size_t i = 0; i < n; i++) {
		struct uh_run *run = runs[i];
		if (now - run->created_at < ttl) {
			left++;
			continue;
		}
		struct uh_run_update u = {.from = UH_RUN_PENDING_APPROVAL,
		                          .to = UH_RUN_REJECTED,
		                          .reason = "approval_expired",
		                          .message = "nobody approved the run in time",
		                          .finished_at = now};
		json_t *details =
		    json_pack("{s:s,s:s,s:s,s:I}", "from", "pending_approval", "to", "rejected", "reason",
		              "approval_expired", "ttl_seconds", (json_int_t)cfg->guardrails.approval_ttl_s);
		struct uh_audit_in a = {"system", "run.approval_expired", run->id, details};
		struct uh_error e = {0};
		if (uh_store_run_transition(s, run->id, &u, &a, &e)) {
			uh_debug("run=%s not expired: %s", run->id, e.message);
		} else {
			uh_info("run=%s job=%s backend=%s rejected: approval_expired", run->id, run->job_id,
			        run->backend);
			uh_notify_run(run->id);
		}
		json_decref(details);
	}
	uh_store_runs_free(runs, n);
	return left;
}
