/* SQLite store: users, tokens, authentication, projects, members and jobs.
 * Every change runs through sq_tx, which appends its audit event in the
 * same transaction. Projects and jobs keep their indexed columns apart and
 * the rest of their fields as canonical JSON text. */
#include "store/sqlite_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/json.h"
#include "util/time.h"

/* Statuses that keep a project or job from being archived. */
#define IN_FLIGHT "('pending_approval', 'queued', 'running')"

static json_t *take_or(json_t *data, const char *key, json_t *dflt)
{
	json_t *v = json_object_get(data, key);
	if (v && !json_is_null(v)) {
		json_decref(dflt);
		return json_incref(v);
	}
	return dflt;
}

/* The fields kept as JSON: the object without the keys held in columns. */
static char *fields_text(const json_t *fields, const char *const *column_keys)
{
	uh_autojson json_t *c = json_deep_copy(fields);
	if (!c)
		return NULL;
	for (const char *const *k = column_keys; *k; k++)
		json_object_del(c, *k);
	return sq_json_text(c);
}

static int need_name(const json_t *fields, const char **name, struct uh_error *err)
{
	if (!json_is_object(fields))
		return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "a JSON object was expected");
	*name = json_string_value(json_object_get(fields, "name"));
	if (!*name || !(*name)[0])
		return uh_error_set(err, UH_E_INVALID_REQUEST, "name", "'name' is required");
	return 0;
}

/* ---- users ---- */

#define USER_COLS "n, id, name, role, disabled, created_at"

static json_t *user_row(sqlite3_stmt *st)
{
	return json_pack("{s:s, s:s, s:s, s:b, s:o}", "id", sq_col_text(st, 1), "name", sq_col_text(st, 2), "role",
	                 sq_col_text(st, 3), "disabled", sqlite3_column_int(st, 4) != 0, "created_at",
	                 uh_json_time(sqlite3_column_int64(st, 5)));
}

static int user_fetch(struct uh_store *s, const char *id, json_t **out, struct uh_error *err)
{
	sq_autoreset sqlite3_stmt *st = sq_prep(s, "SELECT " USER_COLS " FROM users WHERE id = ?", err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return uh_error_set(err, UH_E_NOT_FOUND, NULL, "user '%s' not found", id);
	if (rc != SQLITE_ROW)
		return sq_fail(s, err, "read a user");
	*out = user_row(st);
	return 0;
}

int uh_store_user_count(struct uh_store *s, int64_t *n, struct uh_error *err)
{
	*n = 0;
	sq_lock(s);
	int rc = 0;
	sqlite3_stmt *st = sq_prep(s, "SELECT count(*) FROM users", err);
	if (!st)
		rc = UH_E_INTERNAL;
	else if (sqlite3_step(st) == SQLITE_ROW)
		*n = sqlite3_column_int64(st, 0);
	else
		rc = sq_fail(s, err, "count users");
	sq_resetp(&st);
	sq_unlock(s);
	return rc;
}

struct user_create_ctx {
	const char *name, *role;
	char id[UH_ID_MAX];
	int64_t now;
};

/* A create's audit event names the new object when the caller could not. */
static struct uh_audit_in target_or(const struct uh_audit_in *a, const char *id)
{
	struct uh_audit_in t = a ? *a : (struct uh_audit_in){0};
	if (!t.target || !t.target[0])
		t.target = id;
	return t;
}

static int user_create_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct user_create_ctx *c = p;
	sq_autoreset sqlite3_stmt *st =
	    sq_prep(s, "INSERT INTO users(id, name, role, disabled, created_at) VALUES (?, ?, ?, 0, ?)", err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, c->id);
	sq_bind_text(st, 2, c->name);
	sq_bind_text(st, 3, c->role);
	sqlite3_bind_int64(st, 4, c->now);
	if (sqlite3_step(st) != SQLITE_DONE) {
		if (sq_is_unique(s))
			return uh_error_set(err, UH_E_CONFLICT, "name", "a user named '%s' already exists", c->name);
		return sq_fail(s, err, "create a user");
	}
	return 0;
}

int uh_store_user_create(struct uh_store *s, const char *name, const char *role, const struct uh_audit_in *a,
                         json_t **out, struct uh_error *err)
{
	*out = NULL;
	if (!name || !name[0])
		return uh_error_set(err, UH_E_INVALID_REQUEST, "name", "'name' is required");
	if (!role || !role[0])
		return uh_error_set(err, UH_E_INVALID_REQUEST, "role", "'role' is required");
	struct user_create_ctx c = {.name = name, .role = role, .now = uh_now_us()};
	uh_id_new("u_", c.id);
	struct uh_audit_in at = target_or(a, c.id);
	int rc = sq_tx(s, user_create_tx, &c, &at, err);
	if (rc)
		return rc;
	*out = json_pack("{s:s, s:s, s:s, s:b, s:o}", "id", c.id, "name", name, "role", role, "disabled", 0,
	                 "created_at", uh_json_time(c.now));
	return 0;
}

int uh_store_user_get(struct uh_store *s, const char *id, json_t **out, struct uh_error *err)
{
	*out = NULL;
	sq_lock(s);
	int rc = user_fetch(s, id, out, err);
	sq_unlock(s);
	return rc;
}

static int user_list_locked(struct uh_store *s, int limit, int64_t cursor, json_t **items, char next[UH_CURSOR_MAX],
                            struct uh_error *err)
{
	sq_autoreset sqlite3_stmt *st =
	    sq_prep(s, "SELECT " USER_COLS " FROM users WHERE n < ?1 ORDER BY n DESC LIMIT ?2", err);
	if (!st)
		return UH_E_INTERNAL;
	sqlite3_bind_int64(st, 1, cursor ? cursor : INT64_MAX);
	sqlite3_bind_int(st, 2, limit + 1);
	return sq_list_collect(s, st, limit, user_row, items, next, "list users", err);
}

int uh_store_user_list(struct uh_store *s, int limit, const char *before, json_t **items, char next[UH_CURSOR_MAX],
                       struct uh_error *err)
{
	*items = NULL;
	next[0] = '\0';
	int64_t cursor;
	if (sq_cursor_parse(before, &cursor, err))
		return UH_E_INVALID_REQUEST;
	sq_lock(s);
	int rc = user_list_locked(s, sq_clamp_limit(limit), cursor, items, next, err);
	sq_unlock(s);
	return rc;
}

struct user_update_ctx {
	const char *id, *role;
	int disabled;
	json_t *out;
};

static int user_update_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct user_update_ctx *c = p;
	{
		sq_autoreset sqlite3_stmt *st =
		    sq_prep(s,
		            "UPDATE users SET role = coalesce(?1, role),"
		            " disabled = CASE WHEN ?2 >= 0 THEN ?2 ELSE disabled END WHERE id = ?3",
		            err);
		if (!st)
			return UH_E_INTERNAL;
		sq_bind_text(st, 1, c->role);
		sqlite3_bind_int(st, 2, c->disabled < 0 ? -1 : c->disabled ? 1 : 0);
		sq_bind_text(st, 3, c->id);
		if (sq_step_done(s, st, "update a user", err))
			return UH_E_INTERNAL;
		if (sqlite3_changes(s->db) == 0)
			return uh_error_set(err, UH_E_NOT_FOUND, NULL, "user '%s' not found", c->id);
	}
	return user_fetch(s, c->id, &c->out, err);
}

int uh_store_user_update(struct uh_store *s, const char *id, const char *role, int disabled,
                         const struct uh_audit_in *a, json_t **out, struct uh_error *err)
{
	*out = NULL;
	struct user_update_ctx c = {.id = id, .role = role, .disabled = disabled};
	int rc = sq_tx(s, user_update_tx, &c, a, err);
	if (rc) {
		json_decref(c.out);
		return rc;
	}
	*out = c.out;
	return 0;
}

/* ---- tokens ---- */

static bool is_hex64(const char *h)
{
	if (!h)
		return false;
	for (int i = 0; i < 64; i++)
		if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
			return false;
	return h[64] == '\0';
}

static json_t *time_or_null(sqlite3_stmt *st, int i)
{
	return sqlite3_column_type(st, i) == SQLITE_NULL ? json_null() : uh_json_time(sqlite3_column_int64(st, i));
}

struct token_create_ctx {
	const char *user_id, *hash;
	int64_t expires_at, now;
	char id[UH_ID_MAX];
};

static int token_create_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct token_create_ctx *c = p;
	{
		sq_autoreset sqlite3_stmt *st = sq_prep(s, "SELECT 1 FROM users WHERE id = ?", err);
		if (!st)
			return UH_E_INTERNAL;
		sq_bind_text(st, 1, c->user_id);
		int rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			return uh_error_set(err, UH_E_NOT_FOUND, NULL, "user '%s' not found", c->user_id);
		if (rc != SQLITE_ROW)
			return sq_fail(s, err, "read a user");
	}
	sq_autoreset sqlite3_stmt *st = sq_prep(
	    s, "INSERT INTO tokens(id, user_id, hash, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, NULL)",
	    err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, c->id);
	sq_bind_text(st, 2, c->user_id);
	sq_bind_text(st, 3, c->hash);
	sqlite3_bind_int64(st, 4, c->now);
	if (c->expires_at)
		sqlite3_bind_int64(st, 5, c->expires_at);
	else
		sqlite3_bind_null(st, 5);
	if (sqlite3_step(st) != SQLITE_DONE) {
		if (sq_is_unique(s))
			return uh_error_set(err, UH_E_CONFLICT, NULL, "this token is already registered");
		return sq_fail(s, err, "create a token");
	}
	return 0;
}

int uh_store_token_create(struct uh_store *s, const char *user_id, const char hash_hex[65], int64_t expires_at,
                          const struct uh_audit_in *a, char id_out[UH_ID_MAX], struct uh_error *err)
{
	id_out[0] = '\0';
	if (!is_hex64(hash_hex))
		return uh_error_set(err, UH_E_INTERNAL, NULL, "store: a token hash must be 64 lower-case hex digits");
	struct token_create_ctx c = {
	    .user_id = user_id, .hash = hash_hex, .expires_at = expires_at, .now = uh_now_us()};
	uh_id_new("t_", c.id);
	int rc = sq_tx(s, token_create_tx, &c, a, err);
	if (!rc)
		memcpy(id_out, c.id, UH_ID_MAX);
	return rc;
}

static int token_get_locked(struct uh_store *s, const char *id, json_t **out, struct uh_error *err)
{
	sq_autoreset sqlite3_stmt *st =
	    sq_prep(s, "SELECT id, user_id, created_at, expires_at, revoked_at FROM tokens WHERE id = ?", err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return uh_error_set(err, UH_E_NOT_FOUND, NULL, "token '%s' not found", id);
	if (rc != SQLITE_ROW)
		return sq_fail(s, err, "read a token");
	*out = json_pack("{s:s, s:s, s:o, s:o, s:o}", "id", sq_col_text(st, 0), "user_id", sq_col_text(st, 1),
	                 "created_at", uh_json_time(sqlite3_column_int64(st, 2)), "expires_at", time_or_null(st, 3),
	                 "revoked_at", time_or_null(st, 4));
	return 0;
}

int uh_store_token_get(struct uh_store *s, const char *token_id, json_t **out, struct uh_error *err)
{
	*out = NULL;
	sq_lock(s);
	int rc = token_get_locked(s, token_id, out, err);
	sq_unlock(s);
	return rc;
}

struct token_revoke_ctx {
	const char *id;
};

static int token_revoke_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct token_revoke_ctx *c = p;
	sq_autoreset sqlite3_stmt *st =
	    sq_prep(s, "UPDATE tokens SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?", err);
	if (!st)
		return UH_E_INTERNAL;
	sqlite3_bind_int64(st, 1, uh_now_us());
	sq_bind_text(st, 2, c->id);
	if (sq_step_done(s, st, "revoke a token", err))
		return UH_E_INTERNAL;
	if (sqlite3_changes(s->db) == 0)
		return uh_error_set(err, UH_E_NOT_FOUND, NULL, "token '%s' not found", c->id);
	return 0;
}

int uh_store_token_revoke(struct uh_store *s, const char *token_id, const struct uh_audit_in *a, struct uh_error *err)
{
	struct token_revoke_ctx c = {.id = token_id};
	return sq_tx(s, token_revoke_tx, &c, a, err);
}

static int auth_locked(struct uh_store *s, const char *hash, int64_t now, struct uh_principal *p, struct uh_error *err)
{
	/* The hot path of every request: one query, two unique-index lookups. */
	sq_autoreset sqlite3_stmt *st =
	    sq_prep(s,
	            "SELECT t.id, t.expires_at, t.revoked_at, u.id, u.name, u.role, u.disabled"
	            " FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?",
	            err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, hash);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return uh_error_set(err, UH_E_UNAUTHORIZED, NULL, "unknown token");
	if (rc != SQLITE_ROW)
		return sq_fail(s, err, "check a token");
	if (sqlite3_column_type(st, 2) != SQLITE_NULL)
		return uh_error_set(err, UH_E_UNAUTHORIZED, NULL, "token '%s' is revoked", sq_col_text(st, 0));
	if (sqlite3_column_type(st, 1) != SQLITE_NULL && sqlite3_column_int64(st, 1) <= now)
		return uh_error_set(err, UH_E_UNAUTHORIZED, NULL, "token '%s' has expired", sq_col_text(st, 0));
	if (sqlite3_column_int(st, 6))
		return uh_error_set(err, UH_E_UNAUTHORIZED, NULL, "user '%s' is disabled", sq_col_text(st, 4));
	snprintf(p->token_id, sizeof(p->token_id), "%s", sq_col_text(st, 0));
	snprintf(p->user_id, sizeof(p->user_id), "%s", sq_col_text(st, 3));
	snprintf(p->name, sizeof(p->name), "%s", sq_col_text(st, 4));
	snprintf(p->role, sizeof(p->role), "%s", sq_col_text(st, 5));
	return 0;
}

int uh_store_auth(struct uh_store *s, const char hash_hex[65], int64_t now_us, struct uh_principal *out,
                  struct uh_error *err)
{
	memset(out, 0, sizeof(*out));
	if (!is_hex64(hash_hex))
		return uh_error_set(err, UH_E_UNAUTHORIZED, NULL, "unknown token");
	sq_lock(s);
	int rc = auth_locked(s, hash_hex, now_us, out, err);
	sq_unlock(s);
	if (rc)
		memset(out, 0, sizeof(*out));
	return rc;
}

/* ---- projects ---- */

static const char *const project_column_keys[] = {"id", "name", "created_at", "updated_at", NULL};

#define PROJECT_COLS "p.n, p.id, p.name, p.data, p.created_at, p.updated_at"

static json_t *project_json(const char *id, const char *name, const char *data, int64_t created, int64_t updated)
{
	uh_autojson json_t *d = json_loads(data, 0, NULL);
	json_t *o = json_object();
	json_object_set_new(o, "id", json_string(id));
	json_object_set_new(o, "name", json_string(name));
	json_object_set_new(o, "environment", take_or(d, "environment", json_null()));
	json_object_set_new(o, "execution_backend", take_or(d, "execution_backend", json_null()));
	json_object_set_new(o, "execution_backend_config", take_or(d, "execution_backend_config", json_object()));
	json_object_set_new(o, "vault_prefix", take_or(d, "vault_prefix", json_null()));
	json_object_set_new(o, "max_concurrent", take_or(d, "max_concurrent", json_null()));
	json_object_set_new(o, "created_at", uh_json_time(created));
	json_object_set_new(o, "updated_at", uh_json_time(updated));
	return o;
}

static json_t *project_row(sqlite3_stmt *st)
{
	return project_json(sq_col_text(st, 1), sq_col_text(st, 2), sq_col_text(st, 3), sqlite3_column_int64(st, 4),
	                    sqlite3_column_int64(st, 5));
}

/* An existing, non-archived project (NOT_FOUND otherwise). */
static int project_exists(struct uh_store *s, const char *id, struct uh_error *err)
{
	sq_autoreset sqlite3_stmt *st = sq_prep(s, "SELECT 1 FROM projects WHERE id = ? AND archived = 0", err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return uh_error_set(err, UH_E_NOT_FOUND, NULL, "project '%s' not found", id);
	return rc == SQLITE_ROW ? 0 : sq_fail(s, err, "read a project");
}

static int project_fetch(struct uh_store *s, const char *sql, const char *key, json_t **out, struct uh_error *err)
{
	sq_autoreset sqlite3_stmt *st = sq_prep(s, sql, err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, key);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return UH_E_NOT_FOUND;
	if (rc != SQLITE_ROW)
		return sq_fail(s, err, "read a project");
	*out = project_row(st);
	return 0;
}

struct project_write_ctx {
	const char *id, *name;
	char *data;
	int64_t now, created;
};

static int project_create_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct project_write_ctx *c = p;
	sq_autoreset sqlite3_stmt *st = sq_prep(
	    s, "INSERT INTO projects(id, name, archived, created_at, updated_at, data) VALUES (?, ?, 0, ?, ?, ?)", err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, c->id);
	sq_bind_text(st, 2, c->name);
	sqlite3_bind_int64(st, 3, c->now);
	sqlite3_bind_int64(st, 4, c->now);
	sq_bind_text(st, 5, c->data);
	if (sqlite3_step(st) != SQLITE_DONE) {
		if (sq_is_unique(s))
			return uh_error_set(err, UH_E_CONFLICT, "name", "a project named '%s' already exists", c->name);
		return sq_fail(s, err, "create a project");
	}
	return 0;
}

int uh_store_project_create(struct uh_store *s, const json_t *fields, const struct uh_audit_in *a, json_t **out,
                            struct uh_error *err)
{
	*out = NULL;
	const char *name;
	if (need_name(fields, &name, err))
		return UH_E_INVALID_REQUEST;
	char id[UH_ID_MAX];
	uh_id_new("p_", id);
	uh_autofree char *data = fields_text(fields, project_column_keys);
	if (!data)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	struct project_write_ctx c = {.id = id, .name = name, .data = data, .now = uh_now_us()};
	struct uh_audit_in at = target_or(a, id);
	int rc = sq_tx(s, project_create_tx, &c, &at, err);
	if (rc)
		return rc;
	*out = project_json(id, name, data, c.now, c.now);
	return 0;
}

int uh_store_project_get(struct uh_store *s, const char *id, json_t **out, struct uh_error *err)
{
	*out = NULL;
	sq_lock(s);
	int rc =
	    project_fetch(s, "SELECT " PROJECT_COLS " FROM projects p WHERE p.id = ? AND p.archived = 0", id, out, err);
	sq_unlock(s);
	if (rc == UH_E_NOT_FOUND)
		return uh_error_set(err, UH_E_NOT_FOUND, NULL, "project '%s' not found", id);
	return rc;
}

int uh_store_project_find(struct uh_store *s, const char *name, json_t **out, struct uh_error *err)
{
	*out = NULL;
	sq_lock(s);
	int rc = project_fetch(s, "SELECT " PROJECT_COLS " FROM projects p WHERE p.name = ? AND p.archived = 0", name,
	                       out, err);
	sq_unlock(s);
	if (rc == UH_E_NOT_FOUND)
		return uh_error_set(err, UH_E_NOT_FOUND, NULL, "project named '%s' not found", name);
	return rc;
}

static int project_list_locked(struct uh_store *s, const char *member, const char *name, int limit, int64_t cursor,
                               json_t **items, char next[UH_CURSOR_MAX], struct uh_error *err)
{
	char sql[512];
	snprintf(sql, sizeof(sql),
	         "SELECT " PROJECT_COLS " FROM projects p%s WHERE p.archived = 0%s%s ORDER BY p.n DESC LIMIT ?4",
	         member ? " JOIN members m ON m.project_id = p.id AND m.user_id = ?1" : "",
	         name ? " AND p.name = ?2" : "", cursor ? " AND p.n < ?3" : "");
	sq_autoreset sqlite3_stmt *st = sq_prep(s, sql, err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, member);
	sq_bind_text(st, 2, name);
	sqlite3_bind_int64(st, 3, cursor);
	sqlite3_bind_int(st, 4, limit + 1);
	return sq_list_collect(s, st, limit, project_row, items, next, "list projects", err);
}

int uh_store_project_list(struct uh_store *s, const char *member_user_id, const char *name, int limit,
                          const char *before, json_t **items, char next[UH_CURSOR_MAX], struct uh_error *err)
{
	*items = NULL;
	next[0] = '\0';
	int64_t cursor;
	if (sq_cursor_parse(before, &cursor, err))
		return UH_E_INVALID_REQUEST;
	sq_lock(s);
	int rc = project_list_locked(s, member_user_id, name, sq_clamp_limit(limit), cursor, items, next, err);
	sq_unlock(s);
	return rc;
}

static int project_update_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct project_write_ctx *c = p;
	sq_autoreset sqlite3_stmt *st = sq_prep(s,
	                                        "UPDATE projects SET name = ?, data = ?, updated_at = ?"
	                                        " WHERE id = ? AND archived = 0 RETURNING created_at",
	                                        err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, c->name);
	sq_bind_text(st, 2, c->data);
	sqlite3_bind_int64(st, 3, c->now);
	sq_bind_text(st, 4, c->id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return uh_error_set(err, UH_E_NOT_FOUND, NULL, "project '%s' not found", c->id);
	if (rc != SQLITE_ROW) {
		if (sq_is_unique(s))
			return uh_error_set(err, UH_E_CONFLICT, "name", "a project named '%s' already exists", c->name);
		return sq_fail(s, err, "update a project");
	}
	c->created = sqlite3_column_int64(st, 0);
	return sq_step_done(s, st, "update a project", err);
}

int uh_store_project_update(struct uh_store *s, const char *id, const json_t *fields, const struct uh_audit_in *a,
                            json_t **out, struct uh_error *err)
{
	*out = NULL;
	const char *name;
	if (need_name(fields, &name, err))
		return UH_E_INVALID_REQUEST;
	uh_autofree char *data = fields_text(fields, project_column_keys);
	if (!data)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	struct project_write_ctx c = {.id = id, .name = name, .data = data, .now = uh_now_us()};
	int rc = sq_tx(s, project_update_tx, &c, a, err);
	if (rc)
		return rc;
	*out = project_json(id, name, data, c.created, c.now);
	return 0;
}

/* UH_E_CONFLICT when `sql` finds a run of the project or job in flight. */
static int no_runs_in_flight(struct uh_store *s, const char *sql, const char *kind, const char *id,
                             struct uh_error *err)
{
	sq_autoreset sqlite3_stmt *st = sq_prep(s, sql, err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		return uh_error_set(err, UH_E_CONFLICT, NULL,
		                    "%s '%s' has runs pending approval, queued or running: wait for them or cancel "
		                    "them first",
		                    kind, id);
	return rc == SQLITE_DONE ? 0 : sq_fail(s, err, "read runs");
}

struct archive_ctx {
	const char *id;
	int64_t now;
};

static int project_archive_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct archive_ctx *c = p;
	{
		sq_autoreset sqlite3_stmt *st =
		    sq_prep(s, "UPDATE projects SET archived = 1, updated_at = ? WHERE id = ? AND archived = 0", err);
		if (!st)
			return UH_E_INTERNAL;
		sqlite3_bind_int64(st, 1, c->now);
		sq_bind_text(st, 2, c->id);
		if (sq_step_done(s, st, "archive a project", err))
			return UH_E_INTERNAL;
		if (sqlite3_changes(s->db) == 0)
			return uh_error_set(err, UH_E_NOT_FOUND, NULL, "project '%s' not found", c->id);
	}
	/* The status index finds the few runs in flight; "+project_id" keeps
	 * the planner off the project index, which would walk all its runs. */
	if (no_runs_in_flight(s, "SELECT 1 FROM runs WHERE status IN " IN_FLIGHT " AND +project_id = ? LIMIT 1",
	                      "project", c->id, err))
		return UH_E_CONFLICT;
	/* Its jobs go with it: hidden, names freed, runs and audit kept. */
	sq_autoreset sqlite3_stmt *st =
	    sq_prep(s, "UPDATE jobs SET archived = 1, updated_at = ? WHERE project_id = ? AND archived = 0", err);
	if (!st)
		return UH_E_INTERNAL;
	sqlite3_bind_int64(st, 1, c->now);
	sq_bind_text(st, 2, c->id);
	return sq_step_done(s, st, "archive the project's jobs", err);
}

int uh_store_project_archive(struct uh_store *s, const char *id, const struct uh_audit_in *a, struct uh_error *err)
{
	struct archive_ctx c = {.id = id, .now = uh_now_us()};
	return sq_tx(s, project_archive_tx, &c, a, err);
}

/* ---- members ---- */

#define MEMBER_COLS "m.n, m.project_id, m.user_id, u.name, u.role, m.added_at"

static json_t *member_row(sqlite3_stmt *st)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:o}", "project_id", sq_col_text(st, 1), "user_id", sq_col_text(st, 2),
	                 "name", sq_col_text(st, 3), "role", sq_col_text(st, 4), "added_at",
	                 uh_json_time(sqlite3_column_int64(st, 5)));
}

struct member_ctx {
	const char *project_id, *user_id;
	json_t *out;
};

static int member_add_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct member_ctx *c = p;
	int prc = project_exists(s, c->project_id, err);
	if (prc)
		return prc;
	int64_t now = uh_now_us();
	{
		sq_autoreset sqlite3_stmt *st =
		    sq_prep(s, "INSERT INTO members(project_id, user_id, added_at) VALUES (?, ?, ?)", err);
		if (!st)
			return UH_E_INTERNAL;
		sq_bind_text(st, 1, c->project_id);
		sq_bind_text(st, 2, c->user_id);
		sqlite3_bind_int64(st, 3, now);
		if (sqlite3_step(st) != SQLITE_DONE) {
			if (sq_is_unique(s))
				return uh_error_set(err, UH_E_CONFLICT, "user_id",
				                    "user '%s' is already a member of project '%s'", c->user_id,
				                    c->project_id);
			if (sq_is_fk(s))
				return uh_error_set(err, UH_E_NOT_FOUND, "user_id", "user '%s' not found", c->user_id);
			return sq_fail(s, err, "add a member");
		}
	}
	sq_autoreset sqlite3_stmt *st =
	    sq_prep(s, "SELECT " MEMBER_COLS " FROM members m JOIN users u ON u.id = m.user_id WHERE m.n = ?", err);
	if (!st)
		return UH_E_INTERNAL;
	sqlite3_bind_int64(st, 1, sqlite3_last_insert_rowid(s->db));
	if (sqlite3_step(st) != SQLITE_ROW)
		return sq_fail(s, err, "read a member");
	c->out = member_row(st);
	return 0;
}

int uh_store_member_add(struct uh_store *s, const char *project_id, const char *user_id, const struct uh_audit_in *a,
                        json_t **out, struct uh_error *err)
{
	*out = NULL;
	struct member_ctx c = {.project_id = project_id, .user_id = user_id};
	int rc = sq_tx(s, member_add_tx, &c, a, err);
	if (rc) {
		json_decref(c.out);
		return rc;
	}
	*out = c.out;
	return 0;
}

static int member_remove_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct member_ctx *c = p;
	int prc = project_exists(s, c->project_id, err);
	if (prc)
		return prc;
	sq_autoreset sqlite3_stmt *st = sq_prep(s, "DELETE FROM members WHERE project_id = ? AND user_id = ?", err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, c->project_id);
	sq_bind_text(st, 2, c->user_id);
	if (sq_step_done(s, st, "remove a member", err))
		return UH_E_INTERNAL;
	if (sqlite3_changes(s->db) == 0)
		return uh_error_set(err, UH_E_NOT_FOUND, NULL, "user '%s' is not a member of project '%s'", c->user_id,
		                    c->project_id);
	return 0;
}

int uh_store_member_remove(struct uh_store *s, const char *project_id, const char *user_id, const struct uh_audit_in *a,
                           struct uh_error *err)
{
	struct member_ctx c = {.project_id = project_id, .user_id = user_id};
	return sq_tx(s, member_remove_tx, &c, a, err);
}

static int member_list_locked(struct uh_store *s, const char *project_id, int limit, int64_t cursor, json_t **items,
                              char next[UH_CURSOR_MAX], struct uh_error *err)
{
	int prc = project_exists(s, project_id, err);
	if (prc)
		return prc;
	sq_autoreset sqlite3_stmt *st = sq_prep(s,
	                                        "SELECT " MEMBER_COLS " FROM members m JOIN users u ON u.id = m.user_id"
	                                        " WHERE m.project_id = ?1 AND m.n < ?2 ORDER BY m.n DESC LIMIT ?3",
	                                        err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, project_id);
	sqlite3_bind_int64(st, 2, cursor ? cursor : INT64_MAX);
	sqlite3_bind_int(st, 3, limit + 1);
	return sq_list_collect(s, st, limit, member_row, items, next, "list members", err);
}

int uh_store_member_list(struct uh_store *s, const char *project_id, int limit, const char *before, json_t **items,
                         char next[UH_CURSOR_MAX], struct uh_error *err)
{
	*items = NULL;
	next[0] = '\0';
	int64_t cursor;
	if (sq_cursor_parse(before, &cursor, err))
		return UH_E_INVALID_REQUEST;
	sq_lock(s);
	int rc = member_list_locked(s, project_id, sq_clamp_limit(limit), cursor, items, next, err);
	sq_unlock(s);
	return rc;
}

int uh_store_is_member(struct uh_store *s, const char *project_id, const char *user_id, bool *out, struct uh_error *err)
{
	*out = false;
	sq_lock(s);
	int rc = 0;
	sqlite3_stmt *st = sq_prep(s, "SELECT 1 FROM members WHERE project_id = ? AND user_id = ?", err);
	if (!st) {
		rc = UH_E_INTERNAL;
	} else {
		sq_bind_text(st, 1, project_id);
		sq_bind_text(st, 2, user_id);
		int r = sqlite3_step(st);
		if (r == SQLITE_ROW)
			*out = true;
		else if (r != SQLITE_DONE)
			rc = sq_fail(s, err, "read members");
		sq_resetp(&st);
	}
	sq_unlock(s);
	return rc;
}

/* ---- jobs ---- */

static const char *const job_column_keys[] = {"id",         "project_id", "name",     "created_at",
                                              "updated_at", "updated_by", "archived", NULL};

#define JOB_COLS "n, id, project_id, name, data, created_at, updated_at, updated_by"

static json_t *job_json(const char *id, const char *project_id, const char *name, const char *data, int64_t created,
                        int64_t updated, const char *updated_by)
{
	uh_autojson json_t *d = json_loads(data, 0, NULL);
	json_t *o = json_object();
	json_object_set_new(o, "id", json_string(id));
	json_object_set_new(o, "project_id", json_string(project_id));
	json_object_set_new(o, "name", json_string(name));
	json_object_set_new(o, "command", take_or(d, "command", json_null()));
	json_object_set_new(o, "execution_backend", take_or(d, "execution_backend", json_null()));
	json_object_set_new(o, "execution_backend_config", take_or(d, "execution_backend_config", json_null()));
	json_object_set_new(o, "critical", take_or(d, "critical", json_false()));
	json_object_set_new(o, "env", take_or(d, "env", json_object()));
	json_object_set_new(o, "secrets", take_or(d, "secrets", json_object()));
	json_object_set_new(o, "parameters", take_or(d, "parameters", json_array()));
	json_object_set_new(o, "max_concurrent", take_or(d, "max_concurrent", json_null()));
	json_object_set_new(o, "retries", take_or(d, "retries", json_integer(0)));
	json_object_set_new(o, "created_at", uh_json_time(created));
	json_object_set_new(o, "updated_at", uh_json_time(updated));
	json_object_set_new(o, "updated_by", json_string(updated_by));
	return o;
}

static json_t *job_row(sqlite3_stmt *st)
{
	return job_json(sq_col_text(st, 1), sq_col_text(st, 2), sq_col_text(st, 3), sq_col_text(st, 4),
	                sqlite3_column_int64(st, 5), sqlite3_column_int64(st, 6), sq_col_text(st, 7));
}

static int job_fetch(struct uh_store *s, const char *sql, const char *k1, const char *k2, json_t **out,
                     struct uh_error *err)
{
	sq_autoreset sqlite3_stmt *st = sq_prep(s, sql, err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, k1);
	if (k2)
		sq_bind_text(st, 2, k2);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return UH_E_NOT_FOUND;
	if (rc != SQLITE_ROW)
		return sq_fail(s, err, "read a job");
	*out = job_row(st);
	return 0;
}

struct job_write_ctx {
	const char *id, *project_id, *name, *actor;
	char *data;
	int64_t now, created;
	char project_of[UH_ID_MAX];
};

static int job_create_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct job_write_ctx *c = p;
	int prc = project_exists(s, c->project_id, err);
	if (prc)
		return prc;
	sq_autoreset sqlite3_stmt *st =
	    sq_prep(s,
	            "INSERT INTO jobs(id, project_id, name, archived, created_at, updated_at, updated_by, data)"
	            " VALUES (?, ?, ?, 0, ?, ?, ?, ?)",
	            err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, c->id);
	sq_bind_text(st, 2, c->project_id);
	sq_bind_text(st, 3, c->name);
	sqlite3_bind_int64(st, 4, c->now);
	sqlite3_bind_int64(st, 5, c->now);
	sq_bind_text(st, 6, c->actor);
	sq_bind_text(st, 7, c->data);
	if (sqlite3_step(st) != SQLITE_DONE) {
		if (sq_is_unique(s))
			return uh_error_set(err, UH_E_CONFLICT, "name",
			                    "a job named '%s' already exists in project '%s'", c->name, c->project_id);
		return sq_fail(s, err, "create a job");
	}
	return 0;
}

static const char *actor_of(const struct uh_audit_in *a)
{
	return a && a->actor && a->actor[0] ? a->actor : "system";
}

int uh_store_job_create(struct uh_store *s, const char *project_id, const json_t *fields, const struct uh_audit_in *a,
                        json_t **out, struct uh_error *err)
{
	*out = NULL;
	const char *name;
	if (need_name(fields, &name, err))
		return UH_E_INVALID_REQUEST;
	char id[UH_ID_MAX];
	uh_id_new("j_", id);
	uh_autofree char *data = fields_text(fields, job_column_keys);
	if (!data)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	struct job_write_ctx c = {
	    .id = id, .project_id = project_id, .name = name, .actor = actor_of(a), .data = data, .now = uh_now_us()};
	struct uh_audit_in at = target_or(a, id);
	int rc = sq_tx(s, job_create_tx, &c, &at, err);
	if (rc)
		return rc;
	*out = job_json(id, project_id, name, data, c.now, c.now, c.actor);
	return 0;
}

int uh_store_job_get(struct uh_store *s, const char *id, json_t **out, struct uh_error *err)
{
	*out = NULL;
	sq_lock(s);
	int rc = job_fetch(s, "SELECT " JOB_COLS " FROM jobs WHERE id = ? AND archived = 0", id, NULL, out, err);
	sq_unlock(s);
	if (rc == UH_E_NOT_FOUND)
		return uh_error_set(err, UH_E_NOT_FOUND, NULL, "job '%s' not found", id);
	return rc;
}

int uh_store_job_find(struct uh_store *s, const char *project_id, const char *name, json_t **out, struct uh_error *err)
{
	*out = NULL;
	sq_lock(s);
	int rc = job_fetch(s, "SELECT " JOB_COLS " FROM jobs WHERE project_id = ? AND name = ? AND archived = 0",
	                   project_id, name ? name : "", out, err);
	sq_unlock(s);
	if (rc == UH_E_NOT_FOUND)
		return uh_error_set(err, UH_E_NOT_FOUND, NULL, "job named '%s' not found in project '%s'", name,
		                    project_id);
	return rc;
}

static int job_list_locked(struct uh_store *s, const char *project_id, const char *name, int limit, int64_t cursor,
                           json_t **items, char next[UH_CURSOR_MAX], struct uh_error *err)
{
	char sql[512];
	snprintf(sql, sizeof(sql), "SELECT " JOB_COLS " FROM jobs WHERE archived = 0%s%s%s ORDER BY n DESC LIMIT ?4",
	         project_id ? " AND project_id = ?1" : "", name ? " AND name = ?2" : "", cursor ? " AND n < ?3" : "");
	sq_autoreset sqlite3_stmt *st = sq_prep(s, sql, err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, project_id);
	sq_bind_text(st, 2, name);
	sqlite3_bind_int64(st, 3, cursor);
	sqlite3_bind_int(st, 4, limit + 1);
	return sq_list_collect(s, st, limit, job_row, items, next, "list jobs", err);
}

int uh_store_job_list(struct uh_store *s, const char *project_id, const char *name, int limit, const char *before,
                      json_t **items, char next[UH_CURSOR_MAX], struct uh_error *err)
{
	*items = NULL;
	next[0] = '\0';
	int64_t cursor;
	if (sq_cursor_parse(before, &cursor, err))
		return UH_E_INVALID_REQUEST;
	sq_lock(s);
	int rc = job_list_locked(s, project_id, name, sq_clamp_limit(limit), cursor, items, next, err);
	sq_unlock(s);
	return rc;
}

static int job_update_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct job_write_ctx *c = p;
	sq_autoreset sqlite3_stmt *st = sq_prep(s,
	                                        "UPDATE jobs SET name = ?, data = ?, updated_at = ?, updated_by = ?"
	                                        " WHERE id = ? AND archived = 0 RETURNING project_id, created_at",
	                                        err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, c->name);
	sq_bind_text(st, 2, c->data);
	sqlite3_bind_int64(st, 3, c->now);
	sq_bind_text(st, 4, c->actor);
	sq_bind_text(st, 5, c->id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return uh_error_set(err, UH_E_NOT_FOUND, NULL, "job '%s' not found", c->id);
	if (rc != SQLITE_ROW) {
		if (sq_is_unique(s))
			return uh_error_set(err, UH_E_CONFLICT, "name",
			                    "a job named '%s' already exists in its project", c->name);
		return sq_fail(s, err, "update a job");
	}
	snprintf(c->project_of, sizeof(c->project_of), "%s", sq_col_text(st, 0));
	c->created = sqlite3_column_int64(st, 1);
	return sq_step_done(s, st, "update a job", err);
}

int uh_store_job_update(struct uh_store *s, const char *id, const json_t *fields, const struct uh_audit_in *a,
                        json_t **out, struct uh_error *err)
{
	*out = NULL;
	const char *name;
	if (need_name(fields, &name, err))
		return UH_E_INVALID_REQUEST;
	uh_autofree char *data = fields_text(fields, job_column_keys);
	if (!data)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	struct job_write_ctx c = {.id = id, .name = name, .actor = actor_of(a), .data = data, .now = uh_now_us()};
	int rc = sq_tx(s, job_update_tx, &c, a, err);
	if (rc)
		return rc;
	*out = job_json(id, c.project_of, name, data, c.created, c.now, c.actor);
	return 0;
}

static int job_archive_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct archive_ctx *c = p;
	{
		sq_autoreset sqlite3_stmt *st =
		    sq_prep(s, "UPDATE jobs SET archived = 1, updated_at = ? WHERE id = ? AND archived = 0", err);
		if (!st)
			return UH_E_INTERNAL;
		sqlite3_bind_int64(st, 1, c->now);
		sq_bind_text(st, 2, c->id);
		if (sq_step_done(s, st, "archive a job", err))
			return UH_E_INTERNAL;
		if (sqlite3_changes(s->db) == 0)
			return uh_error_set(err, UH_E_NOT_FOUND, NULL, "job '%s' not found", c->id);
	}
	return no_runs_in_flight(s, "SELECT 1 FROM runs WHERE status IN " IN_FLIGHT " AND +job_id = ? LIMIT 1", "job",
	                         c->id, err);
}

int uh_store_job_archive(struct uh_store *s, const char *id, const struct uh_audit_in *a, struct uh_error *err)
{
	struct archive_ctx c = {.id = id, .now = uh_now_us()};
	return sq_tx(s, job_archive_tx, &c, a, err);
}
