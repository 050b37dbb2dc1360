/* The store: domain operations, not a SQL wrapper (git's ref backends).
 *
 * Callers never see SQL. Every operation that changes something takes the
 * audit event describing it and appends it, chained (core/audit.h), in the
 * same transaction: a change and its audit event land together or not at
 * all. The SQLite implementation is sqlite.c; PostgreSQL follows behind the
 * same functions. All functions are thread-safe.
 *
 * Objects other than runs travel as jansson objects in their API shape
 * (SPEC §5); lists answer `items` (a new array) and `next` (the cursor of
 * the next page, "" when none). Lists are newest first. Errors: UH_E_NOT_FOUND
 * for a missing or archived object, UH_E_CONFLICT for a uniqueness clash or a
 * lost race, UH_E_INTERNAL for a storage fault (message says what failed). */
#ifndef UH_STORE_STORE_H
#define UH_STORE_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/audit.h"
#include "core/run.h"
#include "util/crypto.h"
#include "util/error.h"

struct uh_store;

struct uh_store_options {
	const unsigned char *audit_key; /* UH_AUDIT_KEY_LEN bytes */
	const char *audit_head_path;    /* the head file, outside the store */
};

/* "sqlite:PATH": opens (creating 0600), sets WAL, runs pending migrations.
 * "postgres://...": UH_E_UNAVAILABLE "store 'postgres' is not built yet". */
int uh_store_open(const char *url, const struct uh_store_options *opt, struct uh_store **out, struct uh_error *err);
void uh_store_close(struct uh_store *s);
/* The schema version after migrations. */
int uh_store_schema_version(struct uh_store *s);

/* The audit event a change appends. details may be NULL ("{}"). */
struct uh_audit_in {
	const char *actor;  /* user id or "system" */
	const char *action; /* "user.create", "run.transition", ... */
	const char *target; /* id of the object, or NULL */
	const json_t *details;
};

#define UH_CURSOR_MAX 32

/* ---- users and tokens ----
 * user:  {"id","name","role","disabled","created_at"}
 * token: {"id","user_id","created_at","expires_at"|null,"revoked_at"|null} */
int uh_store_user_count(struct uh_store *s, int64_t *n, struct uh_error *err);
/* UH_E_CONFLICT when the name is taken. */
int uh_store_user_create(struct uh_store *s, const char *name, const char *role, const struct uh_audit_in *a,
                         json_t **out, struct uh_error *err);
int uh_store_user_get(struct uh_store *s, const char *id, json_t **out, struct uh_error *err);
int uh_store_user_list(struct uh_store *s, int limit, const char *before, json_t **items, char next[UH_CURSOR_MAX],
                       struct uh_error *err);
/* role and/or disabled (role NULL / disabled < 0: unchanged). */
int uh_store_user_update(struct uh_store *s, const char *id, const char *role, int disabled,
                         const struct uh_audit_in *a, json_t **out, struct uh_error *err);

/* hash_hex: SHA-256 of the token. expires_at 0: never. */
int uh_store_token_create(struct uh_store *s, const char *user_id, const char hash_hex[65], int64_t expires_at,
                          const struct uh_audit_in *a, char id_out[UH_ID_MAX], struct uh_error *err);
int uh_store_token_get(struct uh_store *s, const char *token_id, json_t **out, struct uh_error *err);
/* Sets revoked_at; revoking twice is fine. */
int uh_store_token_revoke(struct uh_store *s, const char *token_id, const struct uh_audit_in *a, struct uh_error *err);

struct uh_principal {
	char user_id[UH_ID_MAX];
	char name[128];
	char role[16]; /* admin, projets, operator, viewer */
	char token_id[UH_ID_MAX];
};
/* Who a token hash belongs to. UH_E_UNAUTHORIZED when unknown, expired
 * (expires_at <= now), revoked, or the user is disabled. */
int uh_store_auth(struct uh_store *s, const char hash_hex[65], int64_t now_us, struct uh_principal *out,
                  struct uh_error *err);

/* ---- projects ----
 * project: {"id","name","environment","execution_backend",
 *           "execution_backend_config","vault_prefix"|null,"max_concurrent"|null,
 *           "created_at","updated_at"}
 * `fields` is the validated object without id/created_at/updated_at. */
int uh_store_project_create(struct uh_store *s, const json_t *fields, const struct uh_audit_in *a, json_t **out,
                            struct uh_error *err);
int uh_store_project_get(struct uh_store *s, const char *id, json_t **out, struct uh_error *err);
int uh_store_project_find(struct uh_store *s, const char *name, json_t **out, struct uh_error *err);
/* member_user_id NULL: all projects; else only those the user is a member of.
 * name NULL: no filter. */
int uh_store_project_list(struct uh_store *s, const char *member_user_id, const char *name, int limit,
                          const char *before, json_t **items, char next[UH_CURSOR_MAX], struct uh_error *err);
/* Replace the fields (the caller applied the merge patch and validated). */
int uh_store_project_update(struct uh_store *s, const char *id, const json_t *fields, const struct uh_audit_in *a,
                            json_t **out, struct uh_error *err);
/* Archive: hidden from get/find/list, name freed; its runs and audit stay.
 * UH_E_CONFLICT while any of its runs is pending_approval, queued or running. */
int uh_store_project_archive(struct uh_store *s, const char *id, const struct uh_audit_in *a, struct uh_error *err);

/* ---- members ----
 * member: {"project_id","user_id","name","role","added_at"} */
int uh_store_member_add(struct uh_store *s, const char *project_id, const char *user_id, const struct uh_audit_in *a,
                        json_t **out, struct uh_error *err);
int uh_store_member_remove(struct uh_store *s, const char *project_id, const char *user_id, const struct uh_audit_in *a,
                           struct uh_error *err);
int uh_store_member_list(struct uh_store *s, const char *project_id, int limit, const char *before, json_t **items,
                         char next[UH_CURSOR_MAX], struct uh_error *err);
int uh_store_is_member(struct uh_store *s, const char *project_id, const char *user_id, bool *out,
                       struct uh_error *err);

/* ---- jobs ----
 * job: {"id","project_id","name","command"|null,"execution_backend"|null,
 *       "execution_backend_config"|null,"critical","env","secrets","parameters",
 *       "max_concurrent"|null,"retries","created_at","updated_at","updated_by"} */
int uh_store_job_create(struct uh_store *s, const char *project_id, const json_t *fields, const struct uh_audit_in *a,
                        json_t **out, struct uh_error *err);
int uh_store_job_get(struct uh_store *s, const char *id, json_t **out, struct uh_error *err);
int uh_store_job_find(struct uh_store *s, const char *project_id, const char *name, json_t **out, struct uh_error *err);
int uh_store_job_list(struct uh_store *s, const char *project_id, const char *name, int limit, const char *before,
                      json_t **items, char next[UH_CURSOR_MAX], struct uh_error *err);
int uh_store_job_update(struct uh_store *s, const char *id, const json_t *fields, const struct uh_audit_in *a,
                        json_t **out, struct uh_error *err);
/* UH_E_CONFLICT while any of its runs is pending_approval, queued or running. */
int uh_store_job_archive(struct uh_store *s, const char *id, const struct uh_audit_in *a, struct uh_error *err);

/* ---- runs ---- */

/* Insert a new run (r->id set by the caller, status pending_approval or
 * queued). With an idempotency key (user + key, kept 24 h): the same key and
 * body hash again answers the first run in *existing (and inserts nothing);
 * another body hash: UH_E_CONFLICT. *existing is NULL when r was inserted. */
int uh_store_run_create(struct uh_store *s, const struct uh_run *r, const char *idem_user, const char *idem_key,
                        const char *idem_body_hash, const struct uh_audit_in *a, struct uh_run **existing,
                        struct uh_error *err);
int uh_store_run_get(struct uh_store *s, const char *id, struct uh_run **out, struct uh_error *err);

struct uh_run_filter {
	const char *job_id, *project_id; /* NULL: any */
	int status;                      /* -1: any */
	const char *member_user_id;      /* NULL: any project; else projects the user is a member of */
};
/* items: array of run objects (API shape). */
int uh_store_run_list(struct uh_store *s, const struct uh_run_filter *f, int limit, const char *before, json_t **items,
                      char next[UH_CURSOR_MAX], struct uh_error *err);

/* Runs in a status, oldest first (dispatch, recovery). */
int uh_store_runs_in_status(struct uh_store *s, int status, int limit, struct uh_run ***out, size_t *n,
                            struct uh_error *err);
void uh_store_runs_free(struct uh_run **runs, size_t n);

/* A change of status, applied only if the run is still in `from`
 * (UH_E_CONFLICT otherwise, nothing written). Fields not set keep their
 * value. The audit event is appended in the same transaction. */
struct uh_run_update {
	int from, to;
	const char *reason, *message;    /* NULL: unchanged */
	int64_t started_at, finished_at; /* 0: unchanged */
	bool set_exit_code;
	int exit_code;
	const char *approved_by, *rejected_by; /* NULL: unchanged */
	const json_t *comment;                 /* appended to comments when not NULL */
	bool log_truncated;                    /* set when true */
};
int uh_store_run_transition(struct uh_store *s, const char *id, const struct uh_run_update *u,
                            const struct uh_audit_in *a, struct uh_error *err);
/* Record the backend's handle (container id, pid, ...) of a run. */
int uh_store_run_set_external_id(struct uh_store *s, const char *id, const char *external_id, struct uh_error *err);
/* Record a cancel request (canceled_by, cancel_requested) unless the run is
 * terminal (UH_E_CONFLICT). */
int uh_store_run_request_cancel(struct uh_store *s, const char *id, const char *user_id, const struct uh_audit_in *a,
                                struct uh_error *err);
/* Retention (sqlite_control.c): delete up to max_runs terminal runs finished
 * before finished_before_us, oldest first, with their logs and idempotency
 * keys, in one transaction with a "run.prune" event (count, oldest, newest
 * ids); *pruned 0 (and no event) when none. Audit events are never pruned. */
int uh_store_runs_prune(struct uh_store *s, int64_t finished_before_us, int max_runs, int64_t *pruned,
                        struct uh_error *err);
/* Give up to `pages` free pages back to the file system (stores created
 * with auto_vacuum=INCREMENTAL; a no-op otherwise). Never a full VACUUM. */
int uh_store_incremental_vacuum(struct uh_store *s, int pages, struct uh_error *err);
/* Counts by (backend, status) for /metrics: cb once per pair. */
int uh_store_run_counts(struct uh_store *s, void (*cb)(void *arg, const char *backend, const char *status, int64_t n),
                        void *arg, struct uh_error *err);

/* ---- logs ----
 * A run's output is a byte stream; each chunk sits at its byte offset in it.
 * Chunks dropped by the cap leave gaps that readers show as
 * "[uhub: N bytes omitted]". */
struct uh_log_chunk {
	const char *run_id;
	int64_t offset; /* byte offset of data[0] in the run's whole output */
	int64_t t;      /* microseconds */
	int stream;     /* 1 stdout, 2 stderr, 3 uhub itself */
	const char *data;
	size_t len;
};
struct uh_log_drop {
	const char *run_id;
	int64_t from, to; /* delete chunks whose offset is in [from, to) */
};
/* One transaction: insert chunks, delete dropped ranges. */
int uh_store_log_write(struct uh_store *s, const struct uh_log_chunk *chunks, size_t n, const struct uh_log_drop *drops,
                       size_t ndrops, struct uh_error *err);
/* Chunks with offset >= from, in order, up to about max_bytes (at least one
 * chunk if any). cb returns non-zero to stop early. */
int uh_store_log_read(struct uh_store *s, const char *run_id, int64_t from, size_t max_bytes,
                      int (*cb)(void *arg, const struct uh_log_chunk *c), void *arg, struct uh_error *err);
/* End offset of the stored output (offset + len of the last chunk), 0 if none. */
int uh_store_log_end(struct uh_store *s, const char *run_id, int64_t *end, struct uh_error *err);

/* ---- audit ---- */
/* Append an event on its own (a refusal, a verify request...). */
int uh_store_audit_append(struct uh_store *s, const struct uh_audit_in *a, struct uh_error *err);
/* since: RFC 3339 time or NULL; actor/target NULL: any.
 * event: {"seq","at","actor","action","target","details","prev","hash"} */
int uh_store_audit_list(struct uh_store *s, const char *since, const char *actor, const char *target, int limit,
                        const char *before, json_t **items, char next[UH_CURSOR_MAX], struct uh_error *err);
/* Walk the whole chain, check every HMAC, seq continuity, prev links and the
 * head file. {"ok":true,"events":N} or {"ok":false,"broken_at":SEQ,"events":N,
 * "problem":"..."}. */
int uh_store_audit_verify(struct uh_store *s, json_t **out, struct uh_error *err);

/* ---- guardrails: exceptions and approvals (SPEC §4) ----
 * exception: {"id","project_id","job_id"|null,"reason","expires_at",
 *             "created_by","created_at","live"}
 * `live`: not expired at the time of the read. Deleted exceptions are kept
 * for the record but no longer listed or counted. */
/* UH_E_NOT_FOUND (field project_id / job_id) when the project or the job
 * (in that project) does not exist. */
int uh_store_exception_create(struct uh_store *s, const char *project_id, const char *job_id, const char *reason,
                              int64_t expires_at, const char *created_by, const struct uh_audit_in *a, json_t **out,
                              struct uh_error *err);
/* Undeleted exceptions, newest first. */
int uh_store_exception_list(struct uh_store *s, int limit, const char *before, json_t **items, char next[UH_CURSOR_MAX],
                            struct uh_error *err);
/* UH_E_NOT_FOUND when missing or already deleted. */
int uh_store_exception_delete(struct uh_store *s, const char *id, const char *deleted_by, const struct uh_audit_in *a,
                              struct uh_error *err);
/* The id of a live exception (undeleted, expires_at > now_us) covering the
 * project or the job (job_id may be NULL); id_out "" when none. */
int uh_store_exception_live(struct uh_store *s, const char *project_id, const char *job_id, int64_t now_us,
                            char id_out[UH_ID_MAX], struct uh_error *err);

/* Approve: pending_approval -> queued with approved_by, the comment appended,
 * and the approval's hash recorded, in one transaction with its event.
 * refresh (or NULL): a new snapshot of what runs (its backend,
 * effective_config and spec replace the run's) when the job changed since
 * the trigger. UH_E_CONFLICT when the run is no longer pending_approval. */
int uh_store_run_approve(struct uh_store *s, const char *id, const char *approved_by, const json_t *comment,
                         const char hash_hex[65], const struct uh_run *refresh, const struct uh_audit_in *a,
                         struct uh_error *err);
/* The hash the run's approval covers; hash_out "" when none. */
int uh_store_run_approval_hash(struct uh_store *s, const char *id, char hash_out[65], struct uh_error *err);
/* Void an approval: queued -> pending_approval, approved_by cleared, the
 * hash forgotten. UH_E_CONFLICT when the run is no longer queued. */
int uh_store_run_approval_void(struct uh_store *s, const char *id, const struct uh_audit_in *a, struct uh_error *err);

/* ---- Secrets (built-in store) ----
 * scope: the owning project's id, or "shared" (UH_SECRET_SCOPE_SHARED). The
 * store only ever holds sealed blobs (secret/secret.h); it never sees a
 * value. Lists answer objects {"name","scope","created_at","updated_at",
 * "updated_by"} plus "projects" (granted project ids) for shared ones. */
/* Create or replace. projects: for shared secrets, the array of project ids
 * granted (replaces the grants; NULL keeps them; unknown or archived
 * project: UH_E_INVALID_REQUEST naming "projects"); must be NULL for a
 * project scope. *created says whether the name was new. */
int uh_store_secret_put(struct uh_store *s, const char *scope, const char *name, const unsigned char *blob,
                        size_t blob_len, const json_t *projects, const char *user_id, const struct uh_audit_in *a,
                        bool *created, struct uh_error *err);
/* UH_E_NOT_FOUND when missing. */
int uh_store_secret_delete(struct uh_store *s, const char *scope, const char *name, const struct uh_audit_in *a,
                           struct uh_error *err);
int uh_store_secret_list(struct uh_store *s, const char *scope, int limit, const char *before, json_t **items,
                         char next[UH_CURSOR_MAX], struct uh_error *err);
/* One secret's list object (no blob). UH_E_NOT_FOUND when missing. */
int uh_store_secret_meta(struct uh_store *s, const char *scope, const char *name, json_t **out, struct uh_error *err);
/* The sealed blob (malloc'd; free()). UH_E_NOT_FOUND when missing. */
int uh_store_secret_get(struct uh_store *s, const char *scope, const char *name, unsigned char **blob, size_t *blob_len,
                        struct uh_error *err);
/* Whether the shared secret `name` exists and is granted to project_id. */
int uh_store_secret_granted(struct uh_store *s, const char *name, const char *project_id, bool *out,
                            struct uh_error *err);
/* Re-seal every secret row in one transaction: fn gets each row and gives
 * its new blob (malloc'd, taken by the store). fn's error aborts all. The
 * event's details: a->details, read after fn has seen every row (fn may
 * fill it), or {"count": rows} when NULL. */
typedef int (*uh_store_reseal_fn)(void *arg, const char *scope, const char *name, const unsigned char *blob,
                                  size_t blob_len, unsigned char **out, size_t *out_len, struct uh_error *err);
int uh_store_secret_reseal(struct uh_store *s, uh_store_reseal_fn fn, void *arg, const struct uh_audit_in *a,
                           int64_t *count, struct uh_error *err);

#endif
