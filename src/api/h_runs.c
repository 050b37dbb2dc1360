/* Runs (SPEC §5): list, get, cancel. The logs route is logs.c. */
#include <string.h>

#include "api/internal.h"
#include "core/run.h"
#include "util/json.h"

int uh_h_run_list(struct uh_api_req *r, struct uh_error *err)
{
	int limit;
	const char *before;
	const char *job = uh_api_filter(r, "job"), *project = uh_api_filter(r, "project");
	const char *status = uh_api_filter(r, "status");
	int rc;
	if ((rc = uh_api_page(r, &limit, &before, err)) || (rc = uh_api_parse_id_filter(job, "job", err)) ||
	    (rc = uh_api_parse_id_filter(project, "project", err)))
		return rc;
	struct uh_run_filter f = {
	    .job_id = job,
	    .project_id = project,
	    .status = -1,
	    .member_user_id = r->admin ? NULL : r->who.user_id,
	};
	if (status && (f.status = uh_run_status_parse(status)) < 0)
		return uh_error_set(err, UH_E_INVALID_REQUEST, "status",
		                    "'status' must be one of pending_approval, queued, running, succeeded, failed, "
		                    "timed_out, canceled, rejected, error, lost");
	json_t *items = NULL;
	char next[UH_CURSOR_MAX] = "";
	if ((rc = uh_store_run_list(r->deps->store, &f, limit, before, &items, next, err)))
		return rc;
	return uh_api_answer_list(r, items, next);
}

int uh_h_run_get(struct uh_api_req *r, struct uh_error *err)
{
	(void)err;
	return uh_api_answer(r, 200, uh_run_to_json(r->run));
}

int uh_h_run_cancel(struct uh_api_req *r, struct uh_error *err)
{
	const char *id = r->params[0];
	int rc = uh_api_validate_empty(r->json, err);
	if (rc)
		return rc;
	if (uh_run_status_terminal(r->run->status))
		return uh_error_set(err, UH_E_CONFLICT, NULL, "run '%s' has already ended (%s)", id,
		                    uh_run_status_name(r->run->status));
	json_t *details = json_pack("{s:s}", "status", uh_run_status_name(r->run->status));
	struct uh_audit_in a = uh_api_audit(r, "run.cancel", id, details);
	rc = uh_store_run_request_cancel(r->deps->store, id, r->who.user_id, &a, err);
	json_decref(details);
	if (rc)
		return uh_api_not_found(rc, err, "run", id);
	if (r->deps->cancel)
		r->deps->cancel(r->deps->arg, id);
	struct uh_run *now = NULL;
	if ((rc = uh_store_run_get(r->deps->store, id, &now, err)))
		return uh_api_not_found(rc, err, "run", id);
	rc = uh_api_answer(r, 202, uh_run_to_json(now));
	uh_run_free(now);
	return rc;
}
