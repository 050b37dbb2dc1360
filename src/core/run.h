/* Runs and their state machine (SPEC §2), in one place.
 *
 *  trigger -> pending_approval -> queued -> running -> succeeded | failed |
 *  timed_out | canceled | error | lost; pending_approval -> rejected;
 *  queued -> pending_approval (approval void). A terminal run never changes. */
#ifndef UH_CORE_RUN_H
#define UH_CORE_RUN_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/crypto.h"

enum uh_run_status {
	UH_RUN_PENDING_APPROVAL = 0,
	UH_RUN_QUEUED,
	UH_RUN_RUNNING,
	UH_RUN_SUCCEEDED,
	UH_RUN_FAILED,
	UH_RUN_TIMED_OUT,
	UH_RUN_CANCELED,
	UH_RUN_REJECTED,
	UH_RUN_ERROR,
	UH_RUN_LOST,
	UH_RUN__COUNT
};

const char *uh_run_status_name(int status);
/* -1 when unknown. */
int uh_run_status_parse(const char *name);
bool uh_run_status_terminal(int status);
/* Whether SPEC §2 allows from -> to. */
bool uh_run_transition_allowed(int from, int to);
/* Whether `reason` is one of SPEC §2's reasons. */
bool uh_run_reason_known(const char *reason);

/* A run row. Strings are owned (free with uh_run_free); "" ids mean null. */
struct uh_run {
	char id[UH_ID_MAX];
	char job_id[UH_ID_MAX];
	char project_id[UH_ID_MAX];
	int status;
	char *reason;  /* NULL when none */
	char *message; /* NULL when none */
	char *backend;
	json_t *parameters; /* object NAME -> string */
	char requested_by[UH_ID_MAX];
	char approved_by[UH_ID_MAX];
	char rejected_by[UH_ID_MAX];
	char canceled_by[UH_ID_MAX];
	json_t *comments;                            /* array of {"by","at","action","comment"} */
	int64_t created_at, started_at, finished_at; /* microseconds, 0 = null */
	bool has_exit_code;
	int exit_code;
	char *external_id; /* NULL when none */
	bool log_truncated;
	char retry_of[UH_ID_MAX];
	json_t *effective_config; /* object, secret-free */
	/* Internal, never in the API shape: what runs, snapshot at trigger:
	 * {"command":[...]|null, "env":{...}, "secrets":{ENV: ref},
	 *  "job_name":..., "project_name":..., "project_environment":...} */
	json_t *spec;
	bool cancel_requested;
	/* Queued runs: place in the queue, 1 = next (computed by the store on
	 * get and list, see store.h); 0 otherwise, shown as null. */
	int64_t queue_position;
};

struct uh_run *uh_run_new(void);
void uh_run_free(struct uh_run *r);
/* The API shape of SPEC §5 (new reference). */
json_t *uh_run_to_json(const struct uh_run *r);

/* The exit status `uhub run --follow` uses for a terminal run (SPEC §6). */
int uh_run_cli_exit_status(const json_t *run);

#endif
