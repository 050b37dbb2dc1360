/* SQLite store: runs (create with idempotency, get, lists, transitions,
 * cancel requests, counts) and their logs. A transition is one UPDATE
 * guarded by the status it expects, so a lost race writes nothing. */
#include "store/sqlite_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/json.h"
#include "util/time.h"

#define IDEMPOTENCY_TTL_US (24LL * 3600 * 1000000)
#define IN_FLIGHT          "('pending_approval', 'queued', 'running')"

#define RUN_COLS                                                                                              \
	"n, id, job_id, project_id, status, reason, message, backend, parameters, requested_by, approved_by," \
	" rejected_by, canceled_by, comments, created_at, started_at, finished_at, exit_code, external_id,"   \
	" log_truncated, retry_of, effective_config, spec, cancel_requested"

/* The queue position of a queued run (SPEC §5 run shape): 1 + the queued
 * runs before it (trigger order) of the same job, or of the same project
 * when only the project has a max_concurrent. Delayed retries count like
 * the others. Column 24 of the run selects that read it. */
#define RUN_COLS_QP                                                                                              \
	RUN_COLS ", CASE WHEN status = 'queued' THEN 1 + (SELECT count(*) FROM runs q WHERE q.status = 'queued'" \
	         " AND q.n < runs.n AND CASE WHEN json_extract(runs.spec, '$.max_concurrent') IS NULL"           \
	         " AND json_extract(runs.spec, '$.project_max_concurrent') IS NOT NULL"                          \
	         " THEN q.project_id = runs.project_id ELSE q.job_id = runs.job_id END) END"

static char *col_strdup(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return t ? strdup((const char *)t) : NULL;
}

static void col_id(sqlite3_stmt *st, int i, char out[UH_ID_MAX])
{
	snprintf(out, UH_ID_MAX, "%s", sq_col_text(st, i));
}

/* A run's row without its JSON columns (parameters, comments,
 * effective_config, spec), left NULL. */
static struct uh_run *run_row_bare(sqlite3_stmt *st)
{
	struct uh_run *r = uh_run_new();
	if (!r)
		return NULL;
	col_id(st, 1, r->id);
	col_id(st, 2, r->job_id);
	col_id(st, 3, r->project_id);
	r->status = uh_run_status_parse(sq_col_text(st, 4));
	r->reason = col_strdup(st, 5);
	r->message = col_strdup(st, 6);
	r->backend = col_strdup(st, 7);
	col_id(st, 9, r->requested_by);
	col_id(st, 10, r->approved_by);
	col_id(st, 11, r->rejected_by);
	col_id(st, 12, r->canceled_by);
	r->created_at = sqlite3_column_int64(st, 14);
	r->started_at = sqlite3_column_int64(st, 15);
	r->finished_at = sqlite3_column_int64(st, 16);
	r->has_exit_code = sqlite3_column_type(st, 17) != SQLITE_NULL;
	r->exit_code = sqlite3_column_int(st, 17);
	r->external_id = col_strdup(st, 18);
	r->log_truncated = sqlite3_column_int(st, 19) != 0;
	col_id(st, 20, r->retry_of);
	r->cancel_requested = sqlite3_column_int(st, 23) != 0;
	if (sqlite3_column_count(st) > 24)
		r->queue_position = sqlite3_column_int64(st, 24);
	return r;
}

/* The JSON columns run_row_bare leaves out, and where each goes. */
enum { RUN_NTEXT = 4 };
static const int run_text_col[RUN_NTEXT] = {8, 13, 21, 22};

static json_t **run_text_slot(struct uh_run *r, int i)
{
	json_t **slot[RUN_NTEXT] = {&r->parameters, &r->comments, &r->effective_config, &r->spec};
	return slot[i];
}

static struct uh_run *run_row(sqlite3_stmt *st)
{
	struct uh_run *r = run_row_bare(st);
	for (int i = 0; r && i < RUN_NTEXT; i++)
		*run_text_slot(r, i) = sq_col_json(st, run_text_col[i]);
	return r;
}

static json_t *run_row_json(sqlite3_stmt *st)
{
	struct uh_run *r = run_row(st);
	if (!r)
		return json_null();
	json_t *j = uh_run_to_json(r);
	uh_run_free(r);
	return j;
}

/* The run `id`. With `text`, its JSON columns are not parsed but copied
 * there, for run_parse() once the mutex is released. */
static int run_fetch(struct uh_store *s, const char *id, struct uh_run **out, char *text[RUN_NTEXT],
                     struct uh_error *err)
{
	sq_autoreset sqlite3_stmt *st = sq_prep(s, "SELECT " RUN_COLS_QP " FROM runs WHERE id = ?", err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return uh_error_set(err, UH_E_NOT_FOUND, NULL, "run '%s' not found", id);
	if (rc != SQLITE_ROW)
		return sq_fail(s, err, "read a run");
	*out = text ? run_row_bare(st) : run_row(st);
	if (!*out)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	for (int i = 0; text && i < RUN_NTEXT; i++) {
		const unsigned char *t = sqlite3_column_text(st, run_text_col[i]);
		if (t && !(text[i] = strdup((const char *)t)))
			return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	}
	return 0;
}

/* Parse what run_fetch copied into r (NULL: just free it). */
static void run_parse(struct uh_run *r, char *text[RUN_NTEXT])
{
	for (int i = 0; i < RUN_NTEXT; i++) {
		if (r && text[i])
			*run_text_slot(r, i) = json_loads(text[i], JSON_DECODE_ANY, NULL);
		free(text[i]);
	}
}

/* The status a run is in now (-1 when there is no such run). */
static int run_status_now(struct uh_store *s, const char *id, int *status, struct uh_error *err)
{
	*status = -1;
	sq_autoreset sqlite3_stmt *st = sq_prep(s, "SELECT status FROM runs WHERE id = ?", err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*status = uh_run_status_parse(sq_col_text(st, 0));
	else if (rc != SQLITE_DONE)
		return sq_fail(s, err, "read a run");
	return 0;
}

/* ---- create ---- */

struct run_create_ctx {
	const struct uh_run *r;
	const char *idem_user, *idem_key, *idem_hash;
	int64_t now;
	struct uh_run *existing;
};

/* 0: the key is free (or its entry expired); SQ_TX_NOTHING: same body, the
 * first run is in c->existing; UH_E_CONFLICT: another body. */
static int idem_check(struct uh_store *s, struct run_create_ctx *c, struct uh_error *err)
{
	char run_id[UH_ID_MAX];
	{
		sq_autoreset sqlite3_stmt *st = sq_prep(
		    s, "SELECT body_hash, run_id, created_at FROM idempotency WHERE user_id = ? AND key = ?", err);
		if (!st)
			return UH_E_INTERNAL;
		sq_bind_text(st, 1, c->idem_user);
		sq_bind_text(st, 2, c->idem_key);
		int rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			return 0;
		if (rc != SQLITE_ROW)
			return sq_fail(s, err, "read an idempotency key");
		if (sqlite3_column_int64(st, 2) <= c->now - IDEMPOTENCY_TTL_US)
			return 0; /* expired: replaced below */
		if (strcmp(sq_col_text(st, 0), c->idem_hash) != 0)
			return uh_error_set(err, UH_E_CONFLICT, NULL,
			                    "idempotency key '%s' was already used with a different body", c->idem_key);
		col_id(st, 1, run_id);
	}
	int rc = run_fetch(s, run_id, &c->existing, NULL, err);
	return rc ? rc : SQ_TX_NOTHING;
}

static int run_insert(struct uh_store *s, const struct uh_run *r, int64_t created, struct uh_error *err)
{
	sq_autoreset sqlite3_stmt *st = sq_prep(
	    s,
	    "INSERT INTO runs(id, job_id, project_id, status, reason, message, backend, parameters, requested_by,"
	    " approved_by, rejected_by, canceled_by, comments, created_at, started_at, finished_at, exit_code,"
	    " external_id, log_truncated, retry_of, effective_config, spec, cancel_requested)"
	    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21,"
	    " ?22, ?23)",
	    err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, r->id);
	sq_bind_text(st, 2, r->job_id);
	sq_bind_text(st, 3, r->project_id);
	sq_bind_text(st, 4, uh_run_status_name(r->status));
	sq_bind_text(st, 5, r->reason);
	sq_bind_text(st, 6, r->message);
	sq_bind_text(st, 7, r->backend);
	if (r->parameters)
		sq_bind_json(st, 8, r->parameters);
	else
		sqlite3_bind_text(st, 8, "{}", -1, SQLITE_STATIC);
	sq_bind_id(st, 9, r->requested_by);
	sq_bind_id(st, 10, r->approved_by);
	sq_bind_id(st, 11, r->rejected_by);
	sq_bind_id(st, 12, r->canceled_by);
	if (r->comments)
		sq_bind_json(st, 13, r->comments);
	else
		sqlite3_bind_text(st, 13, "[]", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 14, created);
	if (r->started_at)
		sqlite3_bind_int64(st, 15, r->started_at);
	if (r->finished_at)
		sqlite3_bind_int64(st, 16, r->finished_at);
	if (r->has_exit_code)
		sqlite3_bind_int(st, 17, r->exit_code);
	sq_bind_text(st, 18, r->external_id);
	sqlite3_bind_int(st, 19, r->log_truncated ? 1 : 0);
	sq_bind_id(st, 20, r->retry_of);
	sq_bind_json(st, 21, r->effective_config);
	sq_bind_json(st, 22, r->spec);
	sqlite3_bind_int(st, 23, r->cancel_requested ? 1 : 0);
	if (sqlite3_step(st) == SQLITE_DONE)
		return 0;
	if (sq_is_unique(s))
		return uh_error_set(err, UH_E_CONFLICT, NULL, "run '%s' already exists", r->id);
	if (sq_is_fk(s))
		return uh_error_set(err, UH_E_NOT_FOUND, NULL, "job '%s' of project '%s' not found", r->job_id,
		                    r->project_id);
	return sq_fail(s, err, "create a run");
}

static int run_create_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct run_create_ctx *c = p;
	bool idem = c->idem_user && c->idem_key;
	if (idem) {
		int rc = idem_check(s, c, err);
		if (rc)
			return rc;
	}
	int rc = run_insert(s, c->r, c->r->created_at ? c->r->created_at : c->now, err);
	if (rc || !idem)
		return rc;
	{
		/* Keys live 24 h; the created_at index makes the sweep cheap. */
		sq_autoreset sqlite3_stmt *st = sq_prep(s, "DELETE FROM idempotency WHERE created_at <= ?", err);
		if (!st)
			return UH_E_INTERNAL;
		sqlite3_bind_int64(st, 1, c->now - IDEMPOTENCY_TTL_US);
		if (sq_step_done(s, st, "expire idempotency keys", err))
			return UH_E_INTERNAL;
	}
	sq_autoreset sqlite3_stmt *st = sq_prep(s,
	                                        "INSERT OR REPLACE INTO idempotency(user_id, key, body_hash, run_id,"
	                                        " created_at) VALUES (?, ?, ?, ?, ?)",
	                                        err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, c->idem_user);
	sq_bind_text(st, 2, c->idem_key);
	sq_bind_text(st, 3, c->idem_hash);
	sq_bind_text(st, 4, c->r->id);
	sqlite3_bind_int64(st, 5, c->now);
	return sq_step_done(s, st, "record an idempotency key", err);
}

int uh_store_run_create(struct uh_store *s, const struct uh_run *r, const char *idem_user, const char *idem_key,
                        const char *idem_body_hash, const struct uh_audit_in *a, struct uh_run **existing,
                        struct uh_error *err)
{
	*existing = NULL;
	if (!r || !r->id[0] || !r->job_id[0] || !r->project_id[0])
		return uh_error_set(err, UH_E_INTERNAL, NULL, "store: a new run needs its id, job and project");
	if (r->status != UH_RUN_PENDING_APPROVAL && r->status != UH_RUN_QUEUED)
		return uh_error_set(err, UH_E_INTERNAL, NULL,
		                    "store: a new run starts pending_approval or queued, not '%s'",
		                    uh_run_status_name(r->status));
	struct run_create_ctx c = {
	    .r = r,
	    .idem_user = idem_user && idem_user[0] ? idem_user : NULL,
	    .idem_key = idem_key && idem_key[0] ? idem_key : NULL,
	    .idem_hash = idem_body_hash ? idem_body_hash : "",
	    .now = uh_now_us(),
	};
	int rc = sq_tx(s, run_create_tx, &c, a, err);
	if (rc) {
		uh_run_free(c.existing);
		return rc;
	}
	*existing = c.existing;
	return 0;
}

/* The hot read of the API (every request on a run): the row's JSON texts are
 * copied under the mutex and parsed after it, so two workers reading runs
 * hold the store for the copy only. */
int uh_store_run_get(struct uh_store *s, const char *id, struct uh_run **out, struct uh_error *err)
{
	char *text[RUN_NTEXT] = {0};
	*out = NULL;
	sq_lock(s);
	int rc = run_fetch(s, id, out, text, err);
	sq_unlock(s);
	if (rc) {
		uh_run_free(*out);
		*out = NULL;
	}
	run_parse(*out, text);
	return rc;
}

/* ---- lists ---- */

static int run_list_locked(struct uh_store *s, const struct uh_run_filter *f, int limit, int64_t cursor, json_t **items,
                           char next[UH_CURSOR_MAX], struct uh_error *err)
{
	char sql[2048];
	snprintf(sql, sizeof(sql), "SELECT " RUN_COLS_QP " FROM runs WHERE 1%s%s%s%s%s ORDER BY n DESC LIMIT ?6",
	         f && f->job_id ? " AND job_id = ?1" : "", f && f->project_id ? " AND project_id = ?2" : "",
	         f && f->status >= 0 ? " AND status = ?3" : "",
	         f && f->member_user_id ? " AND project_id IN (SELECT project_id FROM members WHERE user_id = ?4)" : "",
	         cursor ? " AND n < ?5" : "");
	sq_autoreset sqlite3_stmt *st = sq_prep(s, sql, err);
	if (!st)
		return UH_E_INTERNAL;
	if (f) {
		sq_bind_text(st, 1, f->job_id);
		sq_bind_text(st, 2, f->project_id);
		if (f->status >= 0)
			sq_bind_text(st, 3, uh_run_status_name(f->status));
		sq_bind_text(st, 4, f->member_user_id);
	}
	sqlite3_bind_int64(st, 5, cursor);
	sqlite3_bind_int(st, 6, limit + 1);
	return sq_list_collect(s, st, limit, run_row_json, items, next, "list runs", err);
}

int uh_store_run_list(struct uh_store *s, const struct uh_run_filter *f, int limit, const char *before, json_t **items,
                      char next[UH_CURSOR_MAX], struct uh_error *err)
{
	*items = NULL;
	next[0] = '\0';
	if (f && f->status >= UH_RUN__COUNT)
		return uh_error_set(err, UH_E_INVALID_REQUEST, "status", "unknown run status");
	int64_t cursor;
	if (sq_cursor_parse(before, &cursor, err))
		return UH_E_INVALID_REQUEST;
	sq_lock(s);
	int rc = run_list_locked(s, f, sq_clamp_limit(limit), cursor, items, next, err);
	sq_unlock(s);
	return rc;
}

static int runs_in_status_locked(struct uh_store *s, int status, int limit, struct uh_run ***out, size_t *n,
                                 struct uh_error *err)
{
	sq_autoreset sqlite3_stmt *st =
	    sq_prep(s, "SELECT " RUN_COLS " FROM runs WHERE status = ? ORDER BY n LIMIT ?", err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, uh_run_status_name(status));
	sqlite3_bind_int(st, 2, limit > 0 ? limit : -1);
	struct uh_run **v = NULL;
	size_t len = 0, cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct uh_run **nv = realloc(v, ncap * sizeof(*nv));
			if (!nv)
				goto oom;
			v = nv;
			cap = ncap;
		}
		if (!(v[len] = run_row(st)))
			goto oom;
		len++;
	}
	if (rc != SQLITE_DONE) {
		uh_store_runs_free(v, len);
		return sq_fail(s, err, "list runs");
	}
	*out = v;
	*n = len;
	return 0;
oom:
	uh_store_runs_free(v, len);
	return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
}

int uh_store_runs_in_status(struct uh_store *s, int status, int limit, struct uh_run ***out, size_t *n,
                            struct uh_error *err)
{
	*out = NULL;
	*n = 0;
	if (status < 0 || status >= UH_RUN__COUNT)
		return uh_error_set(err, UH_E_INVALID_REQUEST, "status", "unknown run status");
	sq_lock(s);
	int rc = runs_in_status_locked(s, status, limit, out, n, err);
	sq_unlock(s);
	return rc;
}

void uh_store_runs_free(struct uh_run **runs, size_t n)
{
	for (size_t i = 0; runs && i < n; i++)
		uh_run_free(runs[i]);
	free(runs);
}

/* ---- changes ---- */

struct transition_ctx {
	const char *id;
	const struct uh_run_update *u;
};

static int transition_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct transition_ctx *c = p;
	const struct uh_run_update *u = c->u;
	{
		sq_autoreset sqlite3_stmt *st =
		    sq_prep(s,
		            "UPDATE runs SET status = ?1, reason = coalesce(?2, reason),"
		            " message = coalesce(?3, message), started_at = coalesce(?4, started_at),"
		            " finished_at = coalesce(?5, finished_at),"
		            " exit_code = CASE WHEN ?6 THEN ?7 ELSE exit_code END,"
		            " approved_by = coalesce(?8, approved_by), rejected_by = coalesce(?9, rejected_by),"
		            " comments = CASE WHEN ?10 IS NULL THEN comments"
		            "  ELSE json_insert(comments, '$[#]', json(?10)) END,"
		            " log_truncated = log_truncated OR ?11"
		            " WHERE id = ?12 AND status = ?13",
		            err);
		if (!st)
			return UH_E_INTERNAL;
		sq_bind_text(st, 1, uh_run_status_name(u->to));
		sq_bind_text(st, 2, u->reason);
		sq_bind_text(st, 3, u->message);
		if (u->started_at)
			sqlite3_bind_int64(st, 4, u->started_at);
		if (u->finished_at)
			sqlite3_bind_int64(st, 5, u->finished_at);
		sqlite3_bind_int(st, 6, u->set_exit_code ? 1 : 0);
		sqlite3_bind_int(st, 7, u->exit_code);
		sq_bind_id(st, 8, u->approved_by);
		sq_bind_id(st, 9, u->rejected_by);
		sq_bind_json(st, 10, u->comment);
		sqlite3_bind_int(st, 11, u->log_truncated ? 1 : 0);
		sq_bind_text(st, 12, c->id);
		sq_bind_text(st, 13, uh_run_status_name(u->from));
		if (sq_step_done(s, st, "update a run", err))
			return UH_E_INTERNAL;
		if (sqlite3_changes(s->db) == 1)
			return 0;
	}
	int now;
	if (run_status_now(s, c->id, &now, err))
		return UH_E_INTERNAL;
	if (now < 0)
		return uh_error_set(err, UH_E_NOT_FOUND, NULL, "run '%s' not found", c->id);
	return uh_error_set(err, UH_E_CONFLICT, NULL, "run '%s' is '%s', not '%s': it changed meanwhile", c->id,
	                    uh_run_status_name(now), uh_run_status_name(u->from));
}

int uh_store_run_transition(struct uh_store *s, const char *id, const struct uh_run_update *u,
                            const struct uh_audit_in *a, struct uh_error *err)
{
	if (!u || !uh_run_transition_allowed(u->from, u->to))
		return uh_error_set(err, UH_E_CONFLICT, NULL, "a run cannot go from '%s' to '%s'",
		                    u ? uh_run_status_name(u->from) : "?", u ? uh_run_status_name(u->to) : "?");
	struct transition_ctx c = {.id = id, .u = u};
	return sq_tx(s, transition_tx, &c, a, err);
}

static int set_external_id_locked(struct uh_store *s, const char *id, const char *external_id, struct uh_error *err)
{
	sq_autoreset sqlite3_stmt *st = sq_prep(s, "UPDATE runs SET external_id = ? WHERE id = ?", err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, external_id);
	sq_bind_text(st, 2, id);
	if (sq_step_done(s, st, "record a run's external id", err))
		return UH_E_INTERNAL;
	if (sqlite3_changes(s->db) == 0)
		return uh_error_set(err, UH_E_NOT_FOUND, NULL, "run '%s' not found", id);
	return 0;
}

int uh_store_run_set_external_id(struct uh_store *s, const char *id, const char *external_id, struct uh_error *err)
{
	sq_lock(s);
	int rc = set_external_id_locked(s, id, external_id, err);
	sq_unlock(s);
	return rc;
}

struct cancel_ctx {
	const char *id, *user_id;
};

static int cancel_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct cancel_ctx *c = p;
	{
		sq_autoreset sqlite3_stmt *st = sq_prep(s,
		                                        "UPDATE runs SET canceled_by = coalesce(?, canceled_by),"
		                                        " cancel_requested = 1 WHERE id = ? AND status IN " IN_FLIGHT,
		                                        err);
		if (!st)
			return UH_E_INTERNAL;
		sq_bind_id(st, 1, c->user_id);
		sq_bind_text(st, 2, c->id);
		if (sq_step_done(s, st, "record a cancel request", err))
			return UH_E_INTERNAL;
		if (sqlite3_changes(s->db) == 1)
			return 0;
	}
	int now;
	if (run_status_now(s, c->id, &now, err))
		return UH_E_INTERNAL;
	if (now < 0)
		return uh_error_set(err, UH_E_NOT_FOUND, NULL, "run '%s' not found", c->id);
	return uh_error_set(err, UH_E_CONFLICT, NULL, "run '%s' has already ended ('%s')", c->id,
	                    uh_run_status_name(now));
}

int uh_store_run_request_cancel(struct uh_store *s, const char *id, const char *user_id, const struct uh_audit_in *a,
                                struct uh_error *err)
{
	struct cancel_ctx c = {.id = id, .user_id = user_id};
	return sq_tx(s, cancel_tx, &c, a, err);
}

struct count_row {
	char backend[64];
	char status[32];
	int64_t n;
};

static int run_counts_locked(struct uh_store *s, struct count_row **rows, size_t *n, struct uh_error *err)
{
	sq_autoreset sqlite3_stmt *st =
	    sq_prep(s, "SELECT coalesce(backend, ''), status, count(*) FROM runs GROUP BY 1, 2 ORDER BY 1, 2", err);
	if (!st)
		return UH_E_INTERNAL;
	size_t cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n == cap) {
			size_t ncap = cap ? cap * 2 : 32;
			struct count_row *nr = realloc(*rows, ncap * sizeof(*nr));
			if (!nr)
				return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
			*rows = nr;
			cap = ncap;
		}
		struct count_row *r = &(*rows)[(*n)++];
		snprintf(r->backend, sizeof(r->backend), "%s", sq_col_text(st, 0));
		snprintf(r->status, sizeof(r->status), "%s", sq_col_text(st, 1));
		r->n = sqlite3_column_int64(st, 2);
	}
	return rc == SQLITE_DONE ? 0 : sq_fail(s, err, "count runs");
}

int uh_store_run_counts(struct uh_store *s, void (*cb)(void *arg, const char *backend, const char *status, int64_t n),
                        void *arg, struct uh_error *err)
{
	uh_autofree struct count_row *rows = NULL;
	size_t n = 0;
	sq_lock(s);
	int rc = run_counts_locked(s, &rows, &n, err);
	sq_unlock(s);
	/* The callback runs outside the mutex: it may take its time. */
	for (size_t i = 0; !rc && i < n; i++)
		cb(arg, rows[i].backend, rows[i].status, rows[i].n);
	return rc;
}

/* ---- logs ---- */

static int log_write_locked(struct uh_store *s, const struct uh_log_chunk *chunks, size_t n,
                            const struct uh_log_drop *drops, size_t ndrops, struct uh_error *err)
{
	if (n) {
		sq_autoreset sqlite3_stmt *st =
		    sq_prep(s, "INSERT OR REPLACE INTO logs(run_id, off, t, stream, data) VALUES (?, ?, ?, ?, ?)", err);
		if (!st)
			return UH_E_INTERNAL;
		for (size_t i = 0; i < n; i++) {
			const struct uh_log_chunk *c = &chunks[i];
			sqlite3_bind_text(st, 1, c->run_id, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 2, c->offset);
			sqlite3_bind_int64(st, 3, c->t);
			sqlite3_bind_int(st, 4, c->stream);
			/* A zero-length blob, not NULL, for an empty chunk. */
			sqlite3_bind_blob64(st, 5, c->data && c->len ? c->data : "", c->len, SQLITE_STATIC);
			if (sqlite3_step(st) != SQLITE_DONE)
				return sq_fail(s, err, "write log chunks");
			sqlite3_reset(st);
		}
	}
	if (ndrops) {
		sq_autoreset sqlite3_stmt *st =
		    sq_prep(s, "DELETE FROM logs WHERE run_id = ? AND off >= ? AND off < ?", err);
		if (!st)
			return UH_E_INTERNAL;
		for (size_t i = 0; i < ndrops; i++) {
			sqlite3_bind_text(st, 1, drops[i].run_id, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 2, drops[i].from);
			sqlite3_bind_int64(st, 3, drops[i].to);
			if (sqlite3_step(st) != SQLITE_DONE)
				return sq_fail(s, err, "drop log chunks");
			sqlite3_reset(st);
		}
	}
	return 0;
}

int uh_store_log_write(struct uh_store *s, const struct uh_log_chunk *chunks, size_t n, const struct uh_log_drop *drops,
                       size_t ndrops, struct uh_error *err)
{
	if (!n && !ndrops)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!chunks[i].run_id || chunks[i].offset < 0)
			return uh_error_set(err, UH_E_INTERNAL, NULL, "store: a log chunk needs its run and offset");
	for (size_t i = 0; i < ndrops; i++)
		if (!drops[i].run_id)
			return uh_error_set(err, UH_E_INTERNAL, NULL, "store: a log drop needs its run");
	sq_lock(s);
	/* One transaction for the whole batch: one WAL append, not one per line. */
	int rc = sq_begin(s, err);
	if (!rc) {
		rc = log_write_locked(s, chunks, n, drops, ndrops, err);
		if (rc)
			sq_rollback(s);
		else
			rc = sq_commit(s, err);
	}
	sq_unlock(s);
	return rc;
}

struct chunk_copy {
	int64_t off, t;
	int stream;
	size_t len;
	char *data;
};

static void chunks_free(struct chunk_copy *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i].data);
	free(v);
}

static int log_read_locked(struct uh_store *s, const char *run_id, int64_t from, size_t max_bytes,
                           struct chunk_copy **out, size_t *nout, struct uh_error *err)
{
	/* From the chunk holding `from` when `from` falls inside one (a reader
	 * resuming mid-chunk slices it), else from the first chunk at or after
	 * it. The inner query looks at one row: the last chunk starting at or
	 * before `from`. */
	sq_autoreset sqlite3_stmt *st =
	    sq_prep(s,
	            "SELECT off, t, stream, data FROM logs WHERE run_id = ?1 AND off >= coalesce("
	            "(SELECT CASE WHEN off + length(data) > ?2 THEN off ELSE ?2 END FROM logs"
	            " WHERE run_id = ?1 AND off <= ?2 ORDER BY off DESC LIMIT 1), ?2) ORDER BY off",
	            err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, run_id);
	sqlite3_bind_int64(st, 2, from);
	struct chunk_copy *v = NULL;
	size_t n = 0, cap = 0, total = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		size_t len = (size_t)sqlite3_column_bytes(st, 3);
		if (n > 0 && total + len > max_bytes)
			break;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			struct chunk_copy *nv = realloc(v, ncap * sizeof(*nv));
			if (!nv)
				goto oom;
			v = nv;
			cap = ncap;
		}
		struct chunk_copy *c = &v[n];
		c->off = sqlite3_column_int64(st, 0);
		c->t = sqlite3_column_int64(st, 1);
		c->stream = sqlite3_column_int(st, 2);
		c->len = len;
		c->data = malloc(len + 1);
		if (!c->data)
			goto oom;
		if (len)
			memcpy(c->data, sqlite3_column_blob(st, 3), len);
		c->data[len] = '\0';
		n++;
		total += len;
		if (total >= max_bytes)
			break;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		chunks_free(v, n);
		return sq_fail(s, err, "read log chunks");
	}
	*out = v;
	*nout = n;
	return 0;
oom:
	chunks_free(v, n);
	return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
}

int uh_store_log_read(struct uh_store *s, const char *run_id, int64_t from, size_t max_bytes,
                      int (*cb)(void *arg, const struct uh_log_chunk *c), void *arg, struct uh_error *err)
{
	struct chunk_copy *v = NULL;
	size_t n = 0;
	sq_lock(s);
	int rc = log_read_locked(s, run_id, from < 0 ? 0 : from, max_bytes, &v, &n, err);
	sq_unlock(s);
	if (rc)
		return rc;
	/* Copies, handed over outside the mutex: a slow reader (a follower on
	 * a slow network) never holds up writers. */
	for (size_t i = 0; i < n; i++) {
		struct uh_log_chunk c = {
		    .run_id = run_id,
		    .offset = v[i].off,
		    .t = v[i].t,
		    .stream = v[i].stream,
		    .data = v[i].data,
		    .len = v[i].len,
		};
		if (cb(arg, &c))
			break;
	}
	chunks_free(v, n);
	return 0;
}

static int log_end_locked(struct uh_store *s, const char *run_id, int64_t *end, struct uh_error *err)
{
	sq_autoreset sqlite3_stmt *st =
	    sq_prep(s, "SELECT off + length(data) FROM logs WHERE run_id = ? ORDER BY off DESC LIMIT 1", err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, run_id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*end = sqlite3_column_int64(st, 0);
	else if (rc != SQLITE_DONE)
		return sq_fail(s, err, "read the end of a log");
	return 0;
}

int uh_store_log_end(struct uh_store *s, const char *run_id, int64_t *end, struct uh_error *err)
{
	*end = 0;
	sq_lock(s);
	int rc = log_end_locked(s, run_id, end, err);
	sq_unlock(s);
	return rc;
}
