/* SQLite store: the built-in secret store's rows (SPEC §1, §5). Only sealed
 * blobs reach this file (secret/secret.h); no value ever does. A change and
 * its audit event land in one transaction; the event names the scope, the
 * name and, for a shared secret, the projects it is granted to, never a
 * blob. Key rotation re-seals every row in one transaction: all or none. */
#include "store/sqlite_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/json.h"
#include "util/time.h"

#define SCOPE_SHARED "shared"

/* The granted projects of a shared secret, as a JSON array text, those of
 * archived projects left out. NULL for a project's secret. */
#define GRANTS_OF(alias)                                                                      \
	"CASE WHEN " alias ".scope = 'shared' THEN (SELECT json_group_array(project_id) FROM" \
	" (SELECT g.project_id FROM secret_grants g JOIN projects p ON p.id = g.project_id"   \
	" AND p.archived = 0 WHERE g.name = " alias ".name ORDER BY g.project_id)) END"
#define SECRET_COLS "s.n, s.scope, s.name, s.created_at, s.updated_at, s.updated_by, " GRANTS_OF("s")

static bool is_shared(const char *scope)
{
	return strcmp(scope, SCOPE_SHARED) == 0;
}

static json_t *secret_row(sqlite3_stmt *st)
{
	json_t *o = json_object();
	json_object_set_new(o, "name", json_string(sq_col_text(st, 2)));
	json_object_set_new(o, "scope", json_string(sq_col_text(st, 1)));
	json_object_set_new(o, "created_at", uh_json_time(sqlite3_column_int64(st, 3)));
	json_object_set_new(o, "updated_at", uh_json_time(sqlite3_column_int64(st, 4)));
	json_object_set_new(o, "updated_by", json_string(sq_col_text(st, 5)));
	if (sqlite3_column_type(st, 6) != SQLITE_NULL) {
		json_t *p = sq_col_json(st, 6);
		json_object_set_new(o, "projects", json_is_array(p) ? p : json_array());
		if (p && !json_is_array(p))
			json_decref(p);
	}
	return o;
}

static int check_scope_name(const char *scope, const char *name, struct uh_error *err)
{
	if (!scope || !scope[0] || !name || !name[0])
		return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "a secret needs a scope and a name");
	return 0;
}

/* ---- put ---- */

struct put_ctx {
	const char *scope, *name, *user_id;
	const unsigned char *blob;
	size_t blob_len;
	const json_t *projects;
	int64_t now;
	bool created;
	json_t *grants; /* the grants after the change (shared), for the audit event */
	const struct uh_audit_in *a;
	struct uh_audit_in at; /* the event sq_tx appends, with details put_audited_tx builds */
};

static json_t *details_of(const struct uh_audit_in *a, const char *scope, const char *name, const json_t *grants);
static int put_tx(struct uh_store *s, void *p, struct uh_error *err);

/* sq_tx appends the event after fn: its details are built here, inside the
 * transaction, from the grants put_tx leaves. */
static int put_audited_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct put_ctx *c = p;
	int rc = put_tx(s, c, err);
	if (!rc)
		c->at.details = details_of(c->a, c->scope, c->name, c->grants);
	return rc;
}

static int project_live(struct uh_store *s, const char *id, bool *live, struct uh_error *err)
{
	sq_autoreset sqlite3_stmt *st = sq_prep(s, "SELECT 1 FROM projects WHERE id = ? AND archived = 0", err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, id);
	int r = sqlite3_step(st);
	if (r != SQLITE_ROW && r != SQLITE_DONE)
		return sq_fail(s, err, "look a project up");
	*live = r == SQLITE_ROW;
	return 0;
}

static int replace_grants(struct uh_store *s, const char *name, const json_t *projects, struct uh_error *err)
{
	{
		sq_autoreset sqlite3_stmt *st = sq_prep(s, "DELETE FROM secret_grants WHERE name = ?", err);
		if (!st)
			return UH_E_INTERNAL;
		sq_bind_text(st, 1, name);
		if (sq_step_done(s, st, "replace a secret's grants", err))
			return UH_E_INTERNAL;
	}
	size_t i;
	json_t *v;
	json_array_foreach(projects, i, v)
	{
		sq_autoreset sqlite3_stmt *st =
		    sq_prep(s, "INSERT OR IGNORE INTO secret_grants (name, project_id) VALUES (?, ?)", err);
		if (!st)
			return UH_E_INTERNAL;
		sq_bind_text(st, 1, name);
		sq_bind_text(st, 2, json_string_value(v));
		if (sq_step_done(s, st, "grant a secret", err))
			return UH_E_INTERNAL;
	}
	return 0;
}

static int read_grants(struct uh_store *s, const char *name, json_t **out, struct uh_error *err)
{
	*out = NULL;
	sq_autoreset sqlite3_stmt *st =
	    sq_prep(s,
	            "SELECT g.project_id FROM secret_grants g JOIN projects p ON p.id = g.project_id"
	            " AND p.archived = 0 WHERE g.name = ? ORDER BY g.project_id",
	            err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, name);
	json_t *arr = json_array();
	int r;
	while ((r = sqlite3_step(st)) == SQLITE_ROW)
		json_array_append_new(arr, json_string(sq_col_text(st, 0)));
	if (r != SQLITE_DONE) {
		json_decref(arr);
		return sq_fail(s, err, "read a secret's grants");
	}
	*out = arr;
	return 0;
}

static int put_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct put_ctx *c = p;
	bool live = false;
	if (!is_shared(c->scope)) {
		if (project_live(s, c->scope, &live, err))
			return UH_E_INTERNAL;
		if (!live)
			return uh_error_set(err, UH_E_NOT_FOUND, NULL, "project '%s' not found", c->scope);
	}
	if (c->projects) {
		size_t i;
		json_t *v;
		json_array_foreach(c->projects, i, v)
		{
			if (project_live(s, json_string_value(v), &live, err))
				return UH_E_INTERNAL;
			if (!live)
				return uh_error_set(err, UH_E_INVALID_REQUEST, "projects", "project '%s' not found",
				                    json_string_value(v));
		}
	}
	{
		sq_autoreset sqlite3_stmt *st = sq_prep(s,
		                                        "UPDATE secrets SET blob = ?1, updated_at = ?2, updated_by = ?3"
		                                        " WHERE scope = ?4 AND name = ?5",
		                                        err);
		if (!st)
			return UH_E_INTERNAL;
		sqlite3_bind_blob(st, 1, c->blob, (int)c->blob_len, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, c->now);
		sq_bind_text(st, 3, c->user_id);
		sq_bind_text(st, 4, c->scope);
		sq_bind_text(st, 5, c->name);
		if (sq_step_done(s, st, "replace a secret", err))
			return UH_E_INTERNAL;
		c->created = sqlite3_changes(s->db) == 0;
	}
	if (c->created) {
		sq_autoreset sqlite3_stmt *st =
		    sq_prep(s,
		            "INSERT INTO secrets (scope, name, blob, created_at, updated_at,"
		            " updated_by) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
		            err);
		if (!st)
			return UH_E_INTERNAL;
		sq_bind_text(st, 1, c->scope);
		sq_bind_text(st, 2, c->name);
		sqlite3_bind_blob(st, 3, c->blob, (int)c->blob_len, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, c->now);
		sq_bind_text(st, 5, c->user_id);
		if (sq_step_done(s, st, "create a secret", err))
			return sq_is_unique(s) ? uh_error_set(err, UH_E_CONFLICT, NULL,
			                                      "secret '%s' was created meanwhile", c->name)
			                       : UH_E_INTERNAL;
	}
	if (!is_shared(c->scope))
		return 0;
	/* A new shared secret starts with no grants, whatever an old one of
	 * the same name left behind. */
	if (c->projects || c->created) {
		json_t *none = json_array();
		int rc = replace_grants(s, c->name, c->projects ? c->projects : none, err);
		json_decref(none);
		if (rc)
			return rc;
	}
	return read_grants(s, c->name, &c->grants, err);
}

/* The audit event of a change: the caller's, with details naming what
 * changed when the caller gave none. */
static json_t *details_of(const struct uh_audit_in *a, const char *scope, const char *name, const json_t *grants)
{
	if (a && a->details)
		return json_incref((json_t *)a->details);
	json_t *d = json_pack("{s:s,s:s}", "scope", scope, "name", name);
	if (grants)
		json_object_set(d, "projects", (json_t *)grants);
	return d;
}

static int check_projects(const char *scope, const json_t *projects, struct uh_error *err)
{
	if (!projects)
		return 0;
	if (!is_shared(scope))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "projects",
		                    "'projects' is for shared secrets: a project's secret belongs to it alone");
	if (!json_is_array(projects))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "projects",
		                    "'projects' must be an array of project ids");
	size_t i;
	json_t *v;
	json_array_foreach(projects, i, v) if (!json_is_string(v) || !json_string_length(v)) return uh_error_set(
	    err, UH_E_INVALID_REQUEST, "projects", "'projects' must be an array of project ids");
	return 0;
}

int uh_store_secret_put(struct uh_store *s, const char *scope, const char *name, const unsigned char *blob,
                        size_t blob_len, const json_t *projects, const char *user_id, const struct uh_audit_in *a,
                        bool *created, struct uh_error *err)
{
	if (created)
		*created = false;
	int rc;
	if ((rc = check_scope_name(scope, name, err)) || (rc = check_projects(scope, projects, err)))
		return rc;
	if (!blob || !blob_len || blob_len > (size_t)INT32_MAX)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "secret '%s' has no sealed blob to store", name);
	if ((rc = sq_check_audit(a, err)))
		return rc;
	struct put_ctx c = {.scope = scope,
	                    .name = name,
	                    .user_id = user_id ? user_id : "system",
	                    .blob = blob,
	                    .blob_len = blob_len,
	                    .projects = projects,
	                    .now = uh_now_us()};
	c.a = a;
	c.at = *a;
	c.at.details = NULL; /* put_audited_tx's, released below */
	if (!c.at.target || !c.at.target[0])
		c.at.target = is_shared(scope) ? SCOPE_SHARED : scope;
	rc = sq_tx(s, put_audited_tx, &c, &c.at, err);
	json_decref((json_t *)c.at.details);
	json_decref(c.grants);
	if (!rc && created)
		*created = c.created;
	return rc;
}

/* ---- delete ---- */

struct delete_ctx {
	const char *scope, *name;
};

static int delete_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct delete_ctx *c = p;
	{
		sq_autoreset sqlite3_stmt *st = sq_prep(s, "DELETE FROM secrets WHERE scope = ? AND name = ?", err);
		if (!st)
			return UH_E_INTERNAL;
		sq_bind_text(st, 1, c->scope);
		sq_bind_text(st, 2, c->name);
		if (sq_step_done(s, st, "delete a secret", err))
			return UH_E_INTERNAL;
		if (sqlite3_changes(s->db) == 0)
			return uh_error_set(err, UH_E_NOT_FOUND, NULL, "secret '%s' not found", c->name);
	}
	if (!is_shared(c->scope))
		return 0;
	sq_autoreset sqlite3_stmt *st = sq_prep(s, "DELETE FROM secret_grants WHERE name = ?", err);
	if (!st)
		return UH_E_INTERNAL;
	sq_bind_text(st, 1, c->name);
	return sq_step_done(s, st, "forget a secret's grants", err) ? UH_E_INTERNAL : 0;
}

int uh_store_secret_delete(struct uh_store *s, const char *scope, const char *name, const struct uh_audit_in *a,
                           struct uh_error *err)
{
	int rc;
	if ((rc = check_scope_name(scope, name, err)) || (rc = sq_check_audit(a, err)))
		return rc;
	struct delete_ctx c = {.scope = scope, .name = name};
	uh_autojson json_t *d = details_of(a, scope, name, NULL);
	struct uh_audit_in at = *a;
	at.details = d;
	if (!at.target || !at.target[0])
		at.target = is_shared(scope) ? SCOPE_SHARED : scope;
	return sq_tx(s, delete_tx, &c, &at, err);
}

/* ---- reading ---- */

int uh_store_secret_list(struct uh_store *s, const char *scope, int limit, const char *before, json_t **items,
                         char next[UH_CURSOR_MAX], struct uh_error *err)
{
	*items = NULL;
	next[0] = '\0';
	int64_t cursor;
	int rc;
	if (!scope || !scope[0])
		return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "a secret list needs a scope");
	if (sq_cursor_parse(before, &cursor, err))
		return UH_E_INVALID_REQUEST;
	limit = sq_clamp_limit(limit);
	sq_lock(s);
	{
		sq_autoreset sqlite3_stmt *st = sq_prep(s,
		                                        "SELECT " SECRET_COLS " FROM secrets s WHERE s.scope = ?1"
		                                        " AND s.n < ?2 ORDER BY s.n DESC LIMIT ?3",
		                                        err);
		if (!st) {
			rc = UH_E_INTERNAL;
		} else {
			sq_bind_text(st, 1, scope);
			sqlite3_bind_int64(st, 2, cursor ? cursor : INT64_MAX);
			sqlite3_bind_int(st, 3, limit + 1);
			rc = sq_list_collect(s, st, limit, secret_row, items, next, "list secrets", err);
		}
	}
	sq_unlock(s);
	return rc;
}

int uh_store_secret_meta(struct uh_store *s, const char *scope, const char *name, json_t **out, struct uh_error *err)
{
	*out = NULL;
	int rc;
	if ((rc = check_scope_name(scope, name, err)))
		return rc;
	sq_lock(s);
	{
		sq_autoreset sqlite3_stmt *st =
		    sq_prep(s, "SELECT " SECRET_COLS " FROM secrets s WHERE s.scope = ? AND s.name = ?", err);
		if (!st) {
			rc = UH_E_INTERNAL;
		} else {
			sq_bind_text(st, 1, scope);
			sq_bind_text(st, 2, name);
			int r = sqlite3_step(st);
			if (r == SQLITE_ROW)
				*out = secret_row(st);
			else if (r == SQLITE_DONE)
				rc = uh_error_set(err, UH_E_NOT_FOUND, NULL, "secret '%s' not found", name);
			else
				rc = sq_fail(s, err, "read a secret");
		}
	}
	sq_unlock(s);
	return rc;
}

int uh_store_secret_get(struct uh_store *s, const char *scope, const char *name, unsigned char **blob, size_t *blob_len,
                        struct uh_error *err)
{
	*blob = NULL;
	*blob_len = 0;
	int rc;
	if ((rc = check_scope_name(scope, name, err)))
		return rc;
	sq_lock(s);
	{
		sq_autoreset sqlite3_stmt *st =
		    sq_prep(s, "SELECT blob FROM secrets WHERE scope = ? AND name = ?", err);
		if (!st) {
			rc = UH_E_INTERNAL;
		} else {
			sq_bind_text(st, 1, scope);
			sq_bind_text(st, 2, name);
			int r = sqlite3_step(st);
			if (r == SQLITE_ROW) {
				int n = sqlite3_column_bytes(st, 0);
				const void *b = sqlite3_column_blob(st, 0);
				*blob = malloc(n > 0 ? (size_t)n : 1);
				if (!*blob) {
					rc = uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory reading a secret");
				} else {
					if (n > 0)
						memcpy(*blob, b, (size_t)n);
					*blob_len = (size_t)n;
				}
			} else if (r == SQLITE_DONE) {
				rc = uh_error_set(err, UH_E_NOT_FOUND, NULL, "secret '%s' not found", name);
			} else {
				rc = sq_fail(s, err, "read a secret");
			}
		}
	}
	sq_unlock(s);
	return rc;
}

int uh_store_secret_granted(struct uh_store *s, const char *name, const char *project_id, bool *out,
                            struct uh_error *err)
{
	*out = false;
	if (!name || !project_id)
		return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "a grant needs a secret name and a project");
	int rc = 0;
	sq_lock(s);
	{
		sq_autoreset sqlite3_stmt *st =
		    sq_prep(s,
		            "SELECT 1 FROM secrets s JOIN secret_grants g ON g.name = s.name"
		            " JOIN projects p ON p.id = g.project_id"
		            " WHERE s.scope = 'shared' AND s.name = ?1 AND g.project_id = ?2 AND p.archived = 0",
		            err);
		if (!st) {
			rc = UH_E_INTERNAL;
		} else {
			sq_bind_text(st, 1, name);
			sq_bind_text(st, 2, project_id);
			int r = sqlite3_step(st);
			if (r == SQLITE_ROW)
				*out = true;
			else if (r != SQLITE_DONE)
				rc = sq_fail(s, err, "look a secret's grant up");
		}
	}
	sq_unlock(s);
	return rc;
}

/* ---- key rotation ---- */

struct reseal_row {
	int64_t n;
	char *scope, *name;
	unsigned char *blob;
	size_t blob_len;
};

struct reseal_ctx {
	uh_store_reseal_fn fn;
	void *arg;
	int64_t count;
	const struct uh_audit_in *a;
	struct uh_audit_in at; /* the event sq_tx appends, with the count as details */
};

static void rows_free(struct reseal_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(rows[i].scope);
		free(rows[i].name);
		free(rows[i].blob);
	}
	free(rows);
}

/* Every row, read before any is rewritten (no statement walks the table
 * while it changes). */
static int rows_read(struct uh_store *s, struct reseal_row **out, size_t *nout, struct uh_error *err)
{
	*out = NULL;
	*nout = 0;
	sq_autoreset sqlite3_stmt *st = sq_prep(s, "SELECT n, scope, name, blob FROM secrets ORDER BY n", err);
	if (!st)
		return UH_E_INTERNAL;
	struct reseal_row *rows = NULL;
	size_t n = 0, cap = 0;
	int r;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			size_t ncap = cap ? 2 * cap : 64;
			struct reseal_row *nr = realloc(rows, ncap * sizeof(*rows));
			if (!nr) {
				rows_free(rows, n);
				return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory reading the secrets");
			}
			rows = nr;
			cap = ncap;
		}
		struct reseal_row *w = &rows[n];
		int bl = sqlite3_column_bytes(st, 3);
		w->n = sqlite3_column_int64(st, 0);
		w->scope = strdup(sq_col_text(st, 1));
		w->name = strdup(sq_col_text(st, 2));
		w->blob = malloc(bl > 0 ? (size_t)bl : 1);
		w->blob_len = bl > 0 ? (size_t)bl : 0;
		n++;
		if (!w->scope || !w->name || !w->blob) {
			rows_free(rows, n);
			return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory reading the secrets");
		}
		if (bl > 0)
			memcpy(w->blob, sqlite3_column_blob(st, 3), (size_t)bl);
	}
	if (r != SQLITE_DONE) {
		rows_free(rows, n);
		return sq_fail(s, err, "read the secrets");
	}
	*out = rows;
	*nout = n;
	return 0;
}

static int reseal_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct reseal_ctx *c = p;
	struct reseal_row *rows;
	size_t n;
	int rc = rows_read(s, &rows, &n, err);
	if (rc)
		return rc;
	for (size_t i = 0; i < n && !rc; i++) {
		unsigned char *nb = NULL;
		size_t nl = 0;
		rc = c->fn(c->arg, rows[i].scope, rows[i].name, rows[i].blob, rows[i].blob_len, &nb, &nl, err);
		if (!rc && (!nb || !nl || nl > (size_t)INT32_MAX))
			rc =
			    uh_error_set(err, UH_E_INTERNAL, NULL, "re-sealing secret '%s' gave no blob", rows[i].name);
		if (!rc) {
			sq_autoreset sqlite3_stmt *st = sq_prep(s, "UPDATE secrets SET blob = ? WHERE n = ?", err);
			if (!st) {
				rc = UH_E_INTERNAL;
			} else {
				sqlite3_bind_blob(st, 1, nb, (int)nl, SQLITE_STATIC);
				sqlite3_bind_int64(st, 2, rows[i].n);
				if (sq_step_done(s, st, "re-seal a secret", err))
					rc = UH_E_INTERNAL;
			}
		}
		free(nb);
		if (rc > 0)
			rc = UH_E_INTERNAL; /* a positive code would read as "nothing to do" */
	}
	if (!rc)
		c->count = (int64_t)n;
	rows_free(rows, n);
	return rc;
}

/* sq_tx appends the event after fn: the count is known only here. */
static int reseal_audited_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct reseal_ctx *c = p;
	int rc = reseal_tx(s, c, err);
	if (!rc)
		c->at.details = c->a->details ? json_incref((json_t *)c->a->details)
		                              : json_pack("{s:I}", "count", (json_int_t)c->count);
	return rc;
}

int uh_store_secret_reseal(struct uh_store *s, uh_store_reseal_fn fn, void *arg, const struct uh_audit_in *a,
                           int64_t *count, struct uh_error *err)
{
	if (count)
		*count = 0;
	int rc;
	if (!fn)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "re-sealing the secrets needs a function");
	if ((rc = sq_check_audit(a, err)))
		return rc;
	struct reseal_ctx c = {.fn = fn, .arg = arg, .a = a, .at = *a};
	c.at.details = NULL; /* reseal_audited_tx's, released below */
	rc = sq_tx(s, reseal_audited_tx, &c, &c.at, err);
	json_decref((json_t *)c.at.details);
	if (!rc && count)
		*count = c.count;
	return rc;
}
