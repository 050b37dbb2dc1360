/* See run.h: the one table of allowed transitions. */
#include "core/run.h"

#include <stdlib.h>
#include <string.h>

#include "util/json.h"

static const char *const names[UH_RUN__COUNT] = {
    [UH_RUN_PENDING_APPROVAL] = "pending_approval",
    [UH_RUN_QUEUED] = "queued",
    [UH_RUN_RUNNING] = "running",
    [UH_RUN_SUCCEEDED] = "succeeded",
    [UH_RUN_FAILED] = "failed",
    [UH_RUN_TIMED_OUT] = "timed_out",
    [UH_RUN_CANCELED] = "canceled",
    [UH_RUN_REJECTED] = "rejected",
    [UH_RUN_ERROR] = "error",
    [UH_RUN_LOST] = "lost",
};

const char *uh_run_status_name(int s)
{
	return s >= 0 && s < UH_RUN__COUNT ? names[s] : "unknown";
}

int uh_run_status_parse(const char *name)
{
	for (int i = 0; name && i < UH_RUN__COUNT; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}

bool uh_run_status_terminal(int s)
{
	return s >= UH_RUN_SUCCEEDED && s < UH_RUN__COUNT;
}

#define B(x) (1u << (x))
static const unsigned allowed[UH_RUN__COUNT] = {
    /* rejected: reject, approval_expired, exception_revoked; canceled: a
     * requester may withdraw a pending run. */
    [UH_RUN_PENDING_APPROVAL] = B(UH_RUN_QUEUED) | B(UH_RUN_REJECTED) | B(UH_RUN_CANCELED),
    /* pending_approval: approval void; rejected: exception revoked before
     * dispatch; error: secrets or backend refused before anything ran;
     * canceled: cancel before dispatch; lost: a node died holding it. */
    [UH_RUN_QUEUED] = B(UH_RUN_RUNNING) | B(UH_RUN_PENDING_APPROVAL) | B(UH_RUN_REJECTED) | B(UH_RUN_ERROR) |
                      B(UH_RUN_CANCELED) | B(UH_RUN_LOST),
    [UH_RUN_RUNNING] = B(UH_RUN_SUCCEEDED) | B(UH_RUN_FAILED) | B(UH_RUN_TIMED_OUT) | B(UH_RUN_CANCELED) |
                       B(UH_RUN_ERROR) | B(UH_RUN_LOST),
};
#undef B

bool uh_run_transition_allowed(int from, int to)
{
	if (from < 0 || from >= UH_RUN__COUNT || to < 0 || to >= UH_RUN__COUNT)
		return false;
	return (allowed[from] >> to) & 1u;
}

bool uh_run_reason_known(const char *reason)
{
	static const char *const reasons[] = {
	    "exit_code",
	    "signal",
	    "timeout",
	    "canceled",
	    "oom",
	    "not_whitelisted",
	    "approval_rejected",
	    "approval_expired",
	    "exception_revoked",
	    "secret_unavailable",
	    "backend_unavailable",
	    "backend_error",
	    "daemon_restart",
	    "lease_expired",
	    "shutdown",
	    "approval_void",
	};
	for (size_t i = 0; reason && i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (strcmp(reasons[i], reason) == 0)
			return true;
	return false;
}

struct uh_run *uh_run_new(void)
{
	struct uh_run *r = calloc(1, sizeof(*r));
	if (r)
		r->status = UH_RUN_QUEUED;
	return r;
}

void uh_run_free(struct uh_run *r)
{
	if (!r)
		return;
	free(r->reason);
	free(r->message);
	free(r->backend);
	json_decref(r->parameters);
	json_decref(r->comments);
	free(r->external_id);
	json_decref(r->effective_config);
	json_decref(r->spec);
	free(r);
}

static json_t *id_or_null(const char *id)
{
	return id && id[0] ? json_string(id) : json_null();
}

json_t *uh_run_to_json(const struct uh_run *r)
{
	json_t *j = json_object();
	json_object_set_new(j, "id", json_string(r->id));
	json_object_set_new(j, "job_id", json_string(r->job_id));
	json_object_set_new(j, "project_id", json_string(r->project_id));
	json_object_set_new(j, "status", json_string(uh_run_status_name(r->status)));
	json_object_set_new(j, "reason", uh_json_str_or_null(r->reason));
	json_object_set_new(j, "message", uh_json_str_or_null(r->message));
	json_object_set_new(j, "backend", uh_json_str_or_null(r->backend));
	json_object_set_new(j, "parameters", r->parameters ? json_incref(r->parameters) : json_object());
	json_object_set_new(j, "requested_by", id_or_null(r->requested_by));
	json_object_set_new(j, "approved_by", id_or_null(r->approved_by));
	json_object_set_new(j, "rejected_by", id_or_null(r->rejected_by));
	json_object_set_new(j, "canceled_by", id_or_null(r->canceled_by));
	json_object_set_new(j, "comments", r->comments ? json_incref(r->comments) : json_array());
	json_object_set_new(j, "created_at", uh_json_time(r->created_at));
	json_object_set_new(j, "started_at", uh_json_time(r->started_at));
	json_object_set_new(j, "finished_at", uh_json_time(r->finished_at));
	json_object_set_new(j, "exit_code", r->has_exit_code ? json_integer(r->exit_code) : json_null());
	json_object_set_new(j, "external_id", uh_json_str_or_null(r->external_id));
	json_object_set_new(j, "log_truncated", json_boolean(r->log_truncated));
	json_object_set_new(j, "retry_of", id_or_null(r->retry_of));
	json_object_set_new(j, "queue_position",
	                    r->status == UH_RUN_QUEUED && r->queue_position > 0 ? json_integer(r->queue_position)
	                                                                        : json_null());
	json_object_set_new(j, "effective_config",
	                    r->effective_config ? json_incref(r->effective_config) : json_null());
	return j;
}

int uh_run_cli_exit_status(const json_t *run)
{
	const char *s = json_string_value(json_object_get(run, "status"));
	int st = uh_run_status_parse(s);
	switch (st) {
	case UH_RUN_SUCCEEDED:
		return 0;
	case UH_RUN_FAILED: {
		json_t *e = json_object_get(run, "exit_code");
		int c = json_is_integer(e) ? (int)json_integer_value(e) : 1;
		return c > 0 && c < 256 ? c : 1;
	}
	case UH_RUN_TIMED_OUT:
		return 124;
	case UH_RUN_CANCELED:
		return 130;
	case UH_RUN_REJECTED:
		return 77;
	case UH_RUN_ERROR:
		return 70;
	case UH_RUN_LOST:
		return 75;
	default:
		return 70;
	}
}
