/* Run control (issue 9): rerun. A rerun is a new run of the run's job with
 * the run's parameters, made by the trigger path (uh_api_run_create), so it
 * meets the job and project as they stand now and every trigger guardrail
 * again. */
#include "api/internal.h"
#include "util/json.h"

int uh_h_run_rerun(struct uh_api_req *r, struct uh_error *err)
{
	const char *id = r->params[0];
	int rc = uh_api_validate_empty(r->json, err);
	if (rc)
		return rc;
	json_t *job = NULL;
	if ((rc = uh_store_job_get(r->deps->store, r->run->job_id, &job, err)))
		return uh_api_not_found(rc, err, "job", r->run->job_id);
	json_decref(r->job);
	r->job = job;
	json_t *params = r->run->parameters ? json_incref(r->run->parameters) : json_object();
	rc = uh_api_run_create(r, params, id, NULL, err);
	json_decref(params);
	return rc;
}
