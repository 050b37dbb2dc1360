/* Automatic retries (see retry.h). The backoff time lives in the run's
 * stored spec, so a delayed retry survives a daemon restart. */
#include "daemon/retry.h"

#include <stdio.h>
#include <string.h>

#include "util/crypto.h"
#include "util/json.h"

int64_t uh_retry_not_before(const struct uh_run *run)
{
	json_t *v = json_object_get(run->spec, "not_before");
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

int64_t uh_retry_attempt(const struct uh_run *run)
{
	json_t *v = json_object_get(run->spec, "attempt");
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

struct uh_run *uh_retry_next(const struct uh_run *ended, int64_t now_us)
{
	if (ended->status != UH_RUN_ERROR && ended->status != UH_RUN_LOST)
		return NULL;
	json_t *rv = json_object_get(ended->spec, "retries");
	int64_t retries = json_is_integer(rv) ? (int64_t)json_integer_value(rv) : 0;
	int64_t attempt = uh_retry_attempt(ended) + 1;
	if (attempt > retries)
		return NULL;
	struct uh_run *r = uh_run_new();
	if (!r)
		return NULL;
	uh_id_new("r_", r->id);
	memcpy(r->job_id, ended->job_id, sizeof(r->job_id));
	memcpy(r->project_id, ended->project_id, sizeof(r->project_id));
	memcpy(r->requested_by, ended->requested_by, sizeof(r->requested_by));
	/* An approval covered the request; its automatic retries need no other. */
	memcpy(r->approved_by, ended->approved_by, sizeof(r->approved_by));
	memcpy(r->retry_of, ended->id, sizeof(r->retry_of));
	r->status = UH_RUN_QUEUED;
	r->backend = ended->backend ? strdup(ended->backend) : NULL;
	r->parameters = ended->parameters ? json_deep_copy(ended->parameters) : json_object();
	r->comments = json_array();
	r->effective_config = ended->effective_config ? json_deep_copy(ended->effective_config) : json_object();
	r->spec = ended->spec ? json_deep_copy(ended->spec) : json_object();
	r->created_at = now_us;
	if ((ended->backend && !r->backend) || !r->parameters || !r->comments || !r->effective_config || !r->spec) {
		uh_run_free(r);
		return NULL;
	}
	json_t *env = json_object_get(r->spec, "env");
	if (json_is_object(env))
		json_object_set_new(env, "UHUB_RUN_ID", json_string(r->id));
	int64_t backoff_s = UH_RETRY_BACKOFF_MAX_S;
	if (attempt - 1 < 9)
		backoff_s = (int64_t)1 << (attempt - 1);
	if (backoff_s > UH_RETRY_BACKOFF_MAX_S)
		backoff_s = UH_RETRY_BACKOFF_MAX_S;
	json_object_set_new(r->spec, "attempt", json_integer(attempt));
	json_object_set_new(r->spec, "not_before", json_integer(now_us + backoff_s * 1000000));
	return r;
}
