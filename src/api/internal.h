/* What the files of src/api share: the route table and its policies, the
 * request a handler sees, the pure validators (validate.c), the log
 * renderers (logfmt.c) and the rate limiter. Not a public interface: only
 * src/api, its unit tests and its fuzz target include it. */
#ifndef UH_API_INTERNAL_H
#define UH_API_INTERNAL_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/api.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/error.h"

/* ---- Routes and policies (routes.c) --------------------------------------
 *
 * Every route names who may call it. The dispatcher enforces the policy
 * before the handler runs, loading the object the path names (its scope) to
 * learn its project: a handler never decides who may call it, only what a
 * caller may change (guardrail-loosening fields). */
enum uh_api_policy {
	UH_POL_UNSET = 0,       /* never valid: a route without a policy is refused by the test */
	UH_POL_PUBLIC,          /* no token */
	UH_POL_USER,            /* any valid token */
	UH_POL_USER_SCOPED,     /* any valid token; answers limited to the caller's projects (admin: all) */
	UH_POL_ADMIN,           /* admin only (403 otherwise) */
	UH_POL_ADMIN_OR_OWNER,  /* admin, or the user the object belongs to (others: 404) */
	UH_POL_PROJECT_READ,    /* member with role viewer and up, or admin; non-members: 404 */
	UH_POL_PROJECT_OPERATE, /* member with role operator and up, or admin */
	UH_POL_PROJECT_MANAGE,  /* member with role projets, or admin */
	UH_POL__COUNT
};

/* What the first path parameter names; the dispatcher loads it. */
enum uh_api_scope {
	UH_SCOPE_NONE = 0,
	UH_SCOPE_PROJECT, /* {id} is a project id */
	UH_SCOPE_JOB,     /* {id} is a job id */
	UH_SCOPE_RUN,     /* {id} is a run id */
	UH_SCOPE_USER,    /* {id} is a user id */
	UH_SCOPE_TOKEN,   /* {id} is a token id */
};

enum uh_api_body { UH_BODY_NONE = 0, UH_BODY_OPTIONAL, UH_BODY_REQUIRED };

struct uh_api_req;
/* 0 with r->status and r->out (or r->resp) set, or a negative UH_E_* with
 * err filled. */
typedef int (*uh_api_handler)(struct uh_api_req *r, struct uh_error *err);

#define UH_API_MAX_PARAMS 2
/* A path parameter: an id ({id}, {user_id}: [A-Za-z0-9_-], under UH_ID_MAX)
 * or a secret name ({name}: uh_api_name_ok, at most 63 characters). */
#define UH_API_PARAM_MAX 64

struct uh_api_route {
	const char *method;  /* GET, POST, PATCH, DELETE */
	const char *pattern; /* "/api/v1/projects/{id}/members/{user_id}" */
	uh_api_handler handler;
	enum uh_api_policy policy;
	enum uh_api_scope scope;
	enum uh_api_body body;
	const char *query;           /* allowed query parameters, comma-separated; NULL: none */
	int status;                  /* the success status */
	const char *request_schema;  /* components/schemas name of the body, or NULL */
	const char *response_schema; /* components/schemas name of the answer, or NULL */
	const char *response_type;   /* NULL: application/json */
	const char *summary;
	const char *headers; /* request headers the route reads, comma-separated (OpenAPI) */
	bool raw_body;       /* not parsed by the dispatcher: the handler reads r->body */
	bool secret_body;    /* the body carries a secret value: its buffer is wiped on release and
	                        a malformed body's error quotes none of it */
};

extern const struct uh_api_route uh_api_routes[];
extern const size_t uh_api_nroutes;

/* Match method + path. 0 with *route and params filled; UH_E_NOT_FOUND when
 * no pattern matches the path (ids longer than UH_ID_MAX - 1 or with
 * characters outside [A-Za-z0-9_-] never match, nor {name} segments that
 * fail uh_api_name_ok); UH_E_METHOD_NOT_ALLOWED when
 * the path matches under other methods, listed in allow ("GET, POST"). */
int uh_api_route_match(const char *method, const char *path, const struct uh_api_route **route,
                       char params[UH_API_MAX_PARAMS][UH_API_PARAM_MAX], char *allow, size_t allow_len);
/* Whether `name` is one of the route's query parameters. */
bool uh_api_route_query_allowed(const struct uh_api_route *route, const char *name);
const char *uh_api_policy_name(enum uh_api_policy p);

/* The OpenAPI 3 document generated from the route table (openapi.c). New
 * reference. */
json_t *uh_api_openapi(void);

/* ---- The request a handler sees (server.c) ------------------------------ */

struct uh_api {
	struct uh_api_deps deps;               /* deps.cfg is the start-up config; see cfg */
	_Atomic(const struct uh_config *) cfg; /* the current one (uh_api_set_config) */
	struct MHD_Daemon *mhd;
	int port;
	bool tls;
	char *tls_cert_pem, *tls_key_pem; /* kept for MHD until stop; key wiped */
	struct uh_ratelimit *rl;
	char *openapi_text;   /* the document, serialized once at start */
	_Atomic int stopping; /* set once by uh_api_stop */
	/* Log followers (logs.c). Lock order: reg_mu, then a stream's mu,
	 * then q_mu; libmicrohttpd is never called holding reg_mu or q_mu. */
	pthread_t resumer;
	bool resumer_started, sync_ready;
	pthread_mutex_t reg_mu;
	struct uh_api_stream *streams; /* every live follower; guarded by reg_mu */
	pthread_mutex_t q_mu;
	pthread_cond_t q_cv;
	struct uh_api_stream *resume_head; /* connections to resume; guarded by q_mu */
	bool resumer_exit;                 /* guarded by q_mu */
};

struct uh_api_req {
	struct uh_api *api;
	const struct uh_api_deps *deps; /* deps->cfg: the config this request started with */
	struct MHD_Connection *conn;
	const char *method;
	const char *path;
	const struct uh_api_route *route;
	char params[UH_API_MAX_PARAMS][UH_API_PARAM_MAX];
	bool authed;
	struct uh_principal who;
	bool admin;
	const char *body; /* raw body (NUL-terminated), NULL when none */
	size_t body_len;
	json_t *json; /* the parsed body when one was sent */
	/* Loaded by the dispatcher for the route's scope. */
	json_t *project;    /* SCOPE_PROJECT */
	json_t *job;        /* SCOPE_JOB */
	struct uh_run *run; /* SCOPE_RUN */
	json_t *object;     /* SCOPE_USER, SCOPE_TOKEN */
	/* The answer. */
	int status;
	json_t *out;               /* JSON answer (NULL with 204) */
	struct MHD_Response *resp; /* or a response the handler built */
};

/* A query parameter, or NULL; "" when given without a value ("?follow"). */
const char *uh_api_query(struct uh_api_req *r, const char *name);
/* A list's page: `limit` (default 50, at most 100) and `before` from the query. */
int uh_api_page(struct uh_api_req *r, int *limit, const char **before, struct uh_error *err);
/* A filter: NULL when absent or empty ("?name=" filters nothing). */
const char *uh_api_filter(struct uh_api_req *r, const char *name);
/* A request header, or NULL. */
const char *uh_api_header(struct uh_api_req *r, const char *name);
/* Set a JSON answer (steals out). */
int uh_api_answer(struct uh_api_req *r, int status, json_t *out);
/* An answer to a list route: {"items","next"} (steals items). */
int uh_api_answer_list(struct uh_api_req *r, json_t *items, const char *next);
/* The audit event of a change made by the caller. */
struct uh_audit_in uh_api_audit(const struct uh_api_req *r, const char *action, const char *target,
                                const json_t *details);
/* A merge patch may not touch what the server owns (id, created_at...):
 * UH_E_INVALID_REQUEST naming the key. */
int uh_api_patch_readonly(const json_t *patch, const char *const *readonly, struct uh_error *err);
/* Rewrite a store's "not found" so that a missing object and a hidden one
 * answer the same words. Other codes pass through. */
int uh_api_not_found(int rc, struct uh_error *err, const char *what, const char *id);

/* ---- Handlers (h_*.c, logs.c) ------------------------------------------- */

int uh_h_healthz(struct uh_api_req *r, struct uh_error *err);
int uh_h_metrics(struct uh_api_req *r, struct uh_error *err);
int uh_h_openapi(struct uh_api_req *r, struct uh_error *err);
int uh_h_me(struct uh_api_req *r, struct uh_error *err);
int uh_h_user_create(struct uh_api_req *r, struct uh_error *err);
int uh_h_user_list(struct uh_api_req *r, struct uh_error *err);
int uh_h_user_patch(struct uh_api_req *r, struct uh_error *err);
int uh_h_token_create(struct uh_api_req *r, struct uh_error *err);
int uh_h_token_delete(struct uh_api_req *r, struct uh_error *err);
int uh_h_project_create(struct uh_api_req *r, struct uh_error *err);
int uh_h_project_list(struct uh_api_req *r, struct uh_error *err);
int uh_h_project_get(struct uh_api_req *r, struct uh_error *err);
int uh_h_project_patch(struct uh_api_req *r, struct uh_error *err);
int uh_h_project_delete(struct uh_api_req *r, struct uh_error *err);
int uh_h_member_add(struct uh_api_req *r, struct uh_error *err);
int uh_h_member_list(struct uh_api_req *r, struct uh_error *err);
int uh_h_member_delete(struct uh_api_req *r, struct uh_error *err);
int uh_h_job_create(struct uh_api_req *r, struct uh_error *err);
int uh_h_job_list(struct uh_api_req *r, struct uh_error *err);
int uh_h_job_get(struct uh_api_req *r, struct uh_error *err);
int uh_h_job_patch(struct uh_api_req *r, struct uh_error *err);
int uh_h_job_delete(struct uh_api_req *r, struct uh_error *err);
int uh_h_run_trigger(struct uh_api_req *r, struct uh_error *err);
int uh_h_run_list(struct uh_api_req *r, struct uh_error *err);
int uh_h_run_get(struct uh_api_req *r, struct uh_error *err);
int uh_h_run_cancel(struct uh_api_req *r, struct uh_error *err);
int uh_h_run_callback(struct uh_api_req *r, struct uh_error *err); /* h_callback.c */
int uh_h_run_rerun(struct uh_api_req *r, struct uh_error *err);
int uh_h_run_logs(struct uh_api_req *r, struct uh_error *err);
int uh_h_audit_list(struct uh_api_req *r, struct uh_error *err);
int uh_h_audit_verify(struct uh_api_req *r, struct uh_error *err);
/* Guardrails (h_guard.c). */
int uh_h_exception_create(struct uh_api_req *r, struct uh_error *err);
int uh_h_exception_list(struct uh_api_req *r, struct uh_error *err);
int uh_h_exception_delete(struct uh_api_req *r, struct uh_error *err);
int uh_h_run_approve(struct uh_api_req *r, struct uh_error *err);
int uh_h_run_reject(struct uh_api_req *r, struct uh_error *err);
/* The built-in secret store (h_secrets.c). */
int uh_h_secret_put(struct uh_api_req *r, struct uh_error *err);
int uh_h_secret_delete(struct uh_api_req *r, struct uh_error *err);
int uh_h_secret_list(struct uh_api_req *r, struct uh_error *err);
int uh_h_shared_secret_put(struct uh_api_req *r, struct uh_error *err);
int uh_h_shared_secret_delete(struct uh_api_req *r, struct uh_error *err);
int uh_h_shared_secret_list(struct uh_api_req *r, struct uh_error *err);
int uh_h_secret_rotate(struct uh_api_req *r, struct uh_error *err);
/* Whether a live exception lets `backend` run the job in its project now
 * (only asked for local in prod; false otherwise or when the store fails:
 * fail closed). A use is audited ("guardrail.exception_used"). */
bool uh_api_exception_live(struct uh_api_req *r, const json_t *project, const char *job_id, const char *backend);

/* The trigger path (h_jobs.c), shared by POST /jobs/{id}/runs and rerun:
 * a new run of r->job (loaded) with params (checked against the job again),
 * through the effective config and the trigger guardrails; audited
 * "run.create", or "run.rerun" naming rerun_of when set; idem (or NULL) is
 * the Idempotency-Key. Answers 201 with the run (200 with the first run for
 * a replayed key). */
int uh_api_run_create(struct uh_api_req *r, const json_t *params, const char *rerun_of, const char *idem,
                      struct uh_error *err);

/* ---- Pure validators (validate.c): no store, no network ----------------- */

#define UH_API_LIMIT_DEFAULT 50
#define UH_API_LIMIT_MAX     100

/* Role ranks: viewer 1, operator 2, projets 3, admin 4; 0 when unknown. */
int uh_api_role_rank(const char *role);
/* [A-Za-z0-9][A-Za-z0-9._-]{0,62} */
bool uh_api_name_ok(const char *s);
/* [A-Z][A-Z0-9_]{0,63} */
bool uh_api_param_name_ok(const char *s);
/* [A-Za-z_][A-Za-z0-9_]{0,127} */
bool uh_api_env_name_ok(const char *s);
/* A path id: 1..UH_ID_MAX-1 characters of [A-Za-z0-9_-]. */
bool uh_api_id_ok(const char *s, size_t len);

/* Query values. NULL s means absent (defaults apply). Errors name the field. */
int uh_api_parse_limit(const char *s, int *limit, struct uh_error *err);
int uh_api_parse_cursor(const char *s, const char **before, struct uh_error *err);
int uh_api_parse_id_filter(const char *s, const char *field, struct uh_error *err);
int uh_api_parse_bool(const char *s, const char *field, bool *out, struct uh_error *err);

/* "application/json" (any parameters, any case); with merge_patch also
 * "application/merge-patch+json". */
bool uh_api_media_ok(const char *content_type, bool merge_patch);
/* The token of "Bearer TOKEN" (scheme case-insensitive, one space or more),
 * or NULL; *len its length. Refuses control characters and tokens over 512. */
const char *uh_api_bearer(const char *header, size_t *len);
/* An Idempotency-Key: 1..255 visible ASCII characters. */
bool uh_api_idem_key_ok(const char *s);

/* Project body (create, or the whole object after a merge patch) into the
 * fields the store takes: name, environment, execution_backend,
 * execution_backend_config ({} when absent), vault_prefix (null), max_concurrent
 * (null). *fields is a new object. */
int uh_api_validate_project(const json_t *in, json_t **fields, struct uh_error *err);
/* Job body against its project (vault_prefix for vault references) into the
 * store's fields: name, command|null, execution_backend|null,
 * execution_backend_config|null, critical, env, secrets, parameters,
 * max_concurrent|null, retries. */
int uh_api_validate_job(const json_t *in, const json_t *project, json_t **fields, struct uh_error *err);
/* A job's secret references against its project: NAME, shared:NAME, or
 * vault:PATH#KEY with PATH under the project's vault_prefix. Field
 * "secrets.ENV". */
int uh_api_check_secret_refs(const json_t *secrets, const json_t *project, struct uh_error *err);
/* The references an effective config uses (uh_config_secret_refs), checked
 * the same way; errors name the config field. */
int uh_api_check_config_secret_refs(const json_t *config, const json_t *project, struct uh_error *err);
/* {"name","role"} */
int uh_api_validate_user_create(const json_t *in, const char **name, const char **role, struct uh_error *err);
/* {"role"?, "disabled"?}: *role NULL / *disabled -1 when absent. */
int uh_api_validate_user_patch(const json_t *in, const char **role, int *disabled, struct uh_error *err);
/* {"expires_at"?: RFC 3339 in the future | null}; in may be NULL. *expires_at 0: never. */
int uh_api_validate_token_create(const json_t *in, int64_t now_us, int64_t *expires_at, struct uh_error *err);
/* {"user_id"} */
int uh_api_validate_member(const json_t *in, const char **user_id, struct uh_error *err);
/* {"parameters"?: {NAME: string}}; in may be NULL. *params a new object. */
int uh_api_validate_trigger(const json_t *in, json_t **params, struct uh_error *err);
/* {} or absent: the cancel body. */
int uh_api_validate_empty(const json_t *in, struct uh_error *err);

/* Guardrail-loosening changes (SPEC §1), admin only: 0, or UH_E_FORBIDDEN
 * naming the field. old is NULL on create. Project: environment away from
 * prod, any change of vault_prefix, backend to local in prod. Job (in a prod
 * project): critical from true to false, the effective backend becoming
 * local (a new job is compared with the project's backend it would
 * inherit). Works on unvalidated documents too (a merge-patch result). */
int uh_api_project_loosening(const json_t *old, const json_t *new_fields, struct uh_error *err);
int uh_api_job_loosening(const json_t *project, const json_t *old, const json_t *new_fields, struct uh_error *err);
/* {"KEY": new value} for every key whose value differs (removed: null). */
json_t *uh_api_changed(const json_t *old, const json_t *new_fields);

/* ---- Log rendering (logfmt.c): pure, for the logs route and its tests --- */

/* A streaming UTF-8 sanitizer: valid sequences pass, every maximal invalid
 * subpart becomes U+FFFD, a sequence cut at the end of one feed is completed
 * by the next. */
struct uh_utf8 {
	unsigned char pend[4];
	int npend;
	int need;
	unsigned char lo, hi;
};
int uh_utf8_feed(struct uh_utf8 *d, const char *data, size_t len, struct uh_buf *out);
/* An unfinished sequence at the end becomes U+FFFD. */
int uh_utf8_flush(struct uh_utf8 *d, struct uh_buf *out);

/* "[uhub: N bytes omitted]\n" */
int uh_logfmt_gap_text(struct uh_buf *out, int64_t n);
/* An SSE event: "event: EV\n" ["id: ID\n"] then one "data: " line per line
 * of text (split on \r\n, \r and \n), then a blank line. id < 0: none. */
int uh_logfmt_sse(struct uh_buf *out, const char *event, int64_t id, const char *text, size_t len);
/* {"t","stream","text"} + "\n"; t in microseconds. */
int uh_logfmt_ndjson(struct uh_buf *out, int64_t t, int stream, const char *text, size_t len);
const char *uh_logfmt_stream_name(int stream);

/* ---- Rate limit (ratelimit.c): a token bucket per key ------------------- */

struct uh_ratelimit;
struct uh_ratelimit *uh_ratelimit_new(void);
void uh_ratelimit_free(struct uh_ratelimit *rl);
/* Take one token of key's bucket (capacity per_minute, refilled at
 * per_minute a minute). false when empty, with *retry_after_s the wait. */
bool uh_ratelimit_take(struct uh_ratelimit *rl, const char *key, int64_t per_minute, int64_t now_us,
                       int64_t *retry_after_s);

/* ---- Log followers (logs.c) --------------------------------------------- */

struct uh_api_stream;
/* Start the resumer thread (resumes woken followers, ticks heartbeats). */
int uh_api_logs_start(struct uh_api *api, struct uh_error *err);
/* With api->stopping set: wake every follower so it ends, resume all,
 * join the thread. After it no connection is suspended. */
void uh_api_logs_stop(struct uh_api *api);
void uh_api_logs_free(struct uh_api *api);

#endif
