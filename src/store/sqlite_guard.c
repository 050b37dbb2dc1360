/* SQLite store: guardrails (SPEC §4). Exceptions an admin writes to let the
 * Local backend run in prod, and the hash each approval covers. Deleting an
 * exception only marks it, so the record of what was allowed stays. */
#include "store/sqlite_internal.h"

#include <stdio.h>
#include <string.h>

#include "util/json.h"
#include "util/time.h"

#define EXC_COLS "n, id, project_id, job_id, reason, expires_at, created_by, created_at"

static json_t *exception_row_at(sqlite3_stmt *st, int64_t now)
{
	int64_t exp = sqlite3_column_int64(st, 5);
	json_t *o = json_object();
	json_object_set_new(o, "id", json_string(sq_col_text(st, 1)));
	json_object_set_new(o, "project_id", json_string(sq_col_text(st, 2)));
	json_object_set_new(o, "job_id",
	                    sqlite3_column_type(st, 3) == SQLITE_NULL ? json_null() : json_string(sq_col_text(st, 3)));
	json_object_set_new(o, "reason", json_string(sq_col_text(st, 4)));
	json_object_set_new(o, "expires_at", uh_json_time(exp));
	json_object_set_new(o, "created_by", json_string(sq_col_text(st, 6)));
	json_object_set_new(o, "created_at", uh_json_time(sqlite3_column_int64(st, 7)));
	json_object_set_new(o, "live", json_boolean(exp > now));
	return o;
}

static json_t *exception_row(sqlite3_stmt *st)
{
	return exception_row_at(st, uh_now_us());
}

/* 0 when the row exists, unarchived; UH_E_NOT_FOUND otherwise. */
static int row_exists(struct uh_store *s, const char *sql, const char *a, const char *b, bool *found,
                      struct uh_error *err)
{
	sq_autoreset sqlite3_stmt *st = sq_prep(s, sql, err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, a);
	if (b)
		sq_bind_text(st, 2, b);
	int r = sqlite3_step(st);
	if (r != SQLITE_ROW && r != SQLITE_DONE)
		return sq_fail(s, err, "look an object up");
	*found = r == SQLITE_ROW;
	return 0;
}

struct exc_create_ctx {
	char id[UH_ID_MAX];
	const char *project_id, *job_id, *reason, *created_by;
	int64_t expires_at, now;
};

static int exc_create_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct exc_create_ctx *c = p;
	bool found = false;
	if (row_exists(s, "SELECT 1 FROM projects WHERE id = ? AND archived = 0", c->project_id, NULL, &found, err))
		return UH_E_INTERNAL;
	if (!found)
		return uh_error_set(err, UH_E_NOT_FOUND, "project_id", "project '%s' not found", c->project_id);
	if (c->job_id) {
		if (row_exists(s, "SELECT 1 FROM jobs WHERE id = ? AND project_id = ? AND archived = 0", c->job_id,
		               c->project_id, &found, err))
			return UH_E_INTERNAL;
		if (!found)
			return uh_error_set(err, UH_E_NOT_FOUND, "job_id", "job '%s' not found in project '%s'",
			                    c->job_id, c->project_id);
	}
	sq_autoreset sqlite3_stmt *st = sq_prep(s,
	                                        "INSERT INTO exceptions (id, project_id, job_id, reason, expires_at,"
	                                        " created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
	                                        err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, c->id);
	sq_bind_text(st, 2, c->project_id);
	sq_bind_text(st, 3, c->job_id);
	sq_bind_text(st, 4, c->reason);
	sqlite3_bind_int64(st, 5, c->expires_at);
	sq_bind_text(st, 6, c->created_by);
	sqlite3_bind_int64(st, 7, c->now);
	return sq_step_done(s, st, "create an exception", err) ? UH_E_INTERNAL : 0;
}

int uh_store_exception_create(struct uh_store *s, const char *project_id, const char *job_id, const char *reason,
                              int64_t expires_at, const char *created_by, const struct uh_audit_in *a, json_t **out,
                              struct uh_error *err)
{
	*out = NULL;
	if (!project_id || !reason || !reason[0] || !created_by)
		return uh_error_set(err, UH_E_INVALID_REQUEST, NULL,
		                    "an exception needs a project, a reason and an author");
	struct exc_create_ctx c = {.project_id = project_id,
	                           .job_id = job_id,
	                           .reason = reason,
	                           .created_by = created_by,
	                           .expires_at = expires_at,
	                           .now = uh_now_us()};
	uh_id_new("x_", c.id);
	struct uh_audit_in at = *a;
	if (!at.target || !at.target[0])
		at.target = c.id;
	int rc = sq_tx(s, exc_create_tx, &c, &at, err);
	if (rc)
		return rc;
	*out = json_pack("{s:s,s:s,s:s?,s:s,s:o,s:s,s:o,s:b}", "id", c.id, "project_id", project_id, "job_id", job_id,
	                 "reason", reason, "expires_at", uh_json_time(expires_at), "created_by", created_by,
	                 "created_at", uh_json_time(c.now), "live", expires_at > c.now);
	if (!json_object_get(*out, "job_id"))
		json_object_set_new(*out, "job_id", json_null());
	return 0;
}

int uh_store_exception_list(struct uh_store *s, int limit, const char *before, json_t **items, char next[UH_CURSOR_MAX],
                            struct uh_error *err)
{
	*items = NULL;
	next[0] = '\0';
	int64_t cursor;
	if (sq_cursor_parse(before, &cursor, err))
		return UH_E_INVALID_REQUEST;
	limit = sq_clamp_limit(limit);
	sq_lock(s);
	int rc;
	{
		sq_autoreset sqlite3_stmt *st = sq_prep(s,
		                                        "SELECT " EXC_COLS " FROM exceptions WHERE deleted_at IS NULL"
		                                        " AND n < ?1 ORDER BY n DESC LIMIT ?2",
		                                        err);
		if (!st) {
			rc = UH_E_INTERNAL;
		} else {
			sqlite3_bind_int64(st, 1, cursor ? cursor : INT64_MAX);
			sqlite3_bind_int(st, 2, limit + 1);
			rc = sq_list_collect(s, st, limit, exception_row, items, next, "list exceptions", err);
		}
	}
	sq_unlock(s);
	return rc;
}

struct exc_delete_ctx {
	const char *id, *by;
	int64_t now;
};

static int exc_delete_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct exc_delete_ctx *c = p;
	sq_autoreset sqlite3_stmt *st = sq_prep(s,
	                                        "UPDATE exceptions SET deleted_at = ?, deleted_by = ?"
	                                        " WHERE id = ? AND deleted_at IS NULL",
	                                        err);
	if (!st)
		return UH_E_INTERNAL;
	sqlite3_bind_int64(st, 1, c->now);
	sq_bind_text(st, 2, c->by);
	sq_bind_text(st, 3, c->id);
	if (sq_step_done(s, st, "delete an exception", err))
		return UH_E_INTERNAL;
	if (sqlite3_changes(s->db) == 0)
		return uh_error_set(err, UH_E_NOT_FOUND, NULL, "exception '%s' not found", c->id);
	return 0;
}

int uh_store_exception_delete(struct uh_store *s, const char *id, const char *deleted_by, const struct uh_audit_in *a,
                              struct uh_error *err)
{
	struct exc_delete_ctx c = {.id = id, .by = deleted_by, .now = uh_now_us()};
	return sq_tx(s, exc_delete_tx, &c, a, err);
}

int uh_store_exception_live(struct uh_store *s, const char *project_id, const char *job_id, int64_t now_us,
                            char id_out[UH_ID_MAX], struct uh_error *err)
{
	id_out[0] = '\0';
	sq_lock(s);
	int rc = 0;
	{
		sq_autoreset sqlite3_stmt *st =
		    sq_prep(s,
		            "SELECT id FROM exceptions WHERE project_id = ?1 AND deleted_at IS NULL"
		            " AND expires_at > ?2 AND (job_id IS NULL OR job_id = ?3) ORDER BY expires_at DESC LIMIT 1",
		            err);
		if (!st) {
			rc = UH_E_INTERNAL;
		} else {
			sq_bind_text(st, 1, project_id);
			sqlite3_bind_int64(st, 2, now_us);
			sq_bind_text(st, 3, job_id ? job_id : "");
			int r = sqlite3_step(st);
			if (r == SQLITE_ROW)
				snprintf(id_out, UH_ID_MAX, "%s", sq_col_text(st, 0));
			else if (r != SQLITE_DONE)
				rc = sq_fail(s, err, "look an exception up");
		}
	}
	sq_unlock(s);
	return rc;
}

/* ---- approvals ---- */

static int status_conflict(struct uh_store *s, const char *id, const char *want, struct uh_error *err)
{
	sq_autoreset sqlite3_stmt *st = sq_prep(s, "SELECT status FROM runs WHERE id = ?", err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, id);
	int r = sqlite3_step(st);
	if (r == SQLITE_DONE)
		return uh_error_set(err, UH_E_NOT_FOUND, NULL, "run '%s' not found", id);
	if (r != SQLITE_ROW)
		return sq_fail(s, err, "read a run's status");
	return uh_error_set(err, UH_E_CONFLICT, NULL, "run '%s' is '%s', not '%s'", id, sq_col_text(st, 0), want);
}

struct approve_ctx {
	const char *id, *by, *hash;
	const json_t *comment;
	const struct uh_run *refresh;
	int64_t now;
};

static int refresh_snapshot(struct uh_store *s, const char *id, const struct uh_run *r, struct uh_error *err)
{
	sq_autoreset sqlite3_stmt *st =
	    sq_prep(s, "UPDATE runs SET backend = ?, effective_config = ?, spec = ? WHERE id = ?", err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, r->backend);
	sq_bind_json(st, 2, r->effective_config);
	sq_bind_json(st, 3, r->spec);
	sq_bind_text(st, 4, id);
	return sq_step_done(s, st, "refresh a run's snapshot", err) ? UH_E_INTERNAL : 0;
}

static int approve_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct approve_ctx *c = p;
	{
		sq_autoreset sqlite3_stmt *st = sq_prep(s,
		                                        "UPDATE runs SET status = 'queued', approved_by = ?1,"
		                                        " comments = CASE WHEN ?2 IS NULL THEN comments"
		                                        "  ELSE json_insert(comments, '$[#]', json(?2)) END"
		                                        " WHERE id = ?3 AND status = 'pending_approval'",
		                                        err);
		if (!st)
			return UH_E_INTERNAL;
		sq_bind_text(st, 1, c->by);
		sq_bind_json(st, 2, c->comment);
		sq_bind_text(st, 3, c->id);
		if (sq_step_done(s, st, "approve a run", err))
			return UH_E_INTERNAL;
		if (sqlite3_changes(s->db) != 1)
			return status_conflict(s, c->id, "pending_approval", err);
	}
	if (c->refresh && refresh_snapshot(s, c->id, c->refresh, err))
		return UH_E_INTERNAL;
	sq_autoreset sqlite3_stmt *st = sq_prep(s,
	                                        "INSERT OR REPLACE INTO approvals (run_id, hash, approved_by, at)"
	                                        " VALUES (?, ?, ?, ?)",
	                                        err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, c->id);
	sq_bind_text(st, 2, c->hash);
	sq_bind_text(st, 3, c->by);
	sqlite3_bind_int64(st, 4, c->now);
	return sq_step_done(s, st, "record an approval", err) ? UH_E_INTERNAL : 0;
}

int uh_store_run_approve(struct uh_store *s, const char *id, const char *approved_by, const json_t *comment,
                         const char hash_hex[65], const struct uh_run *refresh, const struct uh_audit_in *a,
                         struct uh_error *err)
{
	struct approve_ctx c = {
	    .id = id, .by = approved_by, .hash = hash_hex, .comment = comment, .refresh = refresh, .now = uh_now_us()};
	return sq_tx(s, approve_tx, &c, a, err);
}

int uh_store_run_approval_hash(struct uh_store *s, const char *id, char hash_out[65], struct uh_error *err)
{
	hash_out[0] = '\0';
	sq_lock(s);
	int rc = 0;
	{
		sq_autoreset sqlite3_stmt *st = sq_prep(s, "SELECT hash FROM approvals WHERE run_id = ?", err);
		if (!st) {
			rc = UH_E_INTERNAL;
		} else {
			sq_bind_text(st, 1, id);
			int r = sqlite3_step(st);
			if (r == SQLITE_ROW)
				snprintf(hash_out, 65, "%s", sq_col_text(st, 0));
			else if (r != SQLITE_DONE)
				rc = sq_fail(s, err, "read an approval");
		}
	}
	sq_unlock(s);
	return rc;
}

static int void_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	const char *id = p;
	{
		sq_autoreset sqlite3_stmt *st =
		    sq_prep(s,
		            "UPDATE runs SET status = 'pending_approval', approved_by = NULL"
		            " WHERE id = ? AND status = 'queued'",
		            err);
		if (!st)
			return UH_E_INTERNAL;
		sq_bind_text(st, 1, id);
		if (sq_step_done(s, st, "void an approval", err))
			return UH_E_INTERNAL;
		if (sqlite3_changes(s->db) != 1)
			return status_conflict(s, id, "queued", err);
	}
	sq_autoreset sqlite3_stmt *st = sq_prep(s, "DELETE FROM approvals WHERE run_id = ?", err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, id);
	return sq_step_done(s, st, "forget an approval", err) ? UH_E_INTERNAL : 0;
}

int uh_store_run_approval_void(struct uh_store *s, const char *id, const struct uh_audit_in *a, struct uh_error *err)
{
	if (!uh_run_transition_allowed(UH_RUN_QUEUED, UH_RUN_PENDING_APPROVAL))
		return uh_error_set(err, UH_E_CONFLICT, NULL, "a run cannot go from 'queued' to 'pending_approval'");
	return sq_tx(s, void_tx, (void *)id, a, err);
}
