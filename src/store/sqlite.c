/* The SQLite store: opening (file modes, WAL, migrations), the statement
 * cache, transactions, and the chained audit log with its verifier.
 * Users, tokens, projects, members and jobs are in sqlite_objects.c; runs
 * and logs in sqlite_runs.c. One connection, guarded by one mutex: every
 * operation is short. */
#include "store/sqlite_internal.h"
#include "store/sqlite_schema.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/cleanup.h"
#include "util/json.h"
#include "util/time.h"

#define BUSY_TIMEOUT_MS 5000
#define VERIFY_BATCH    2000 /* events checked per hold of the mutex */

/* ---- helpers shared by sqlite*.c ---- */

static uint32_t fnv1a(const char *p)
{
	uint32_t h = 2166136261u;
	while (*p) {
		h ^= (unsigned char)*p++;
		h *= 16777619u;
	}
	return h;
}

sqlite3_stmt *sq_prep(struct uh_store *s, const char *sql, struct uh_error *err)
{
	uint32_t h = fnv1a(sql);
	for (unsigned i = 0; i < SQ_CACHE_SLOTS; i++) {
		struct sq_cached *c = &s->cache[(h + i) % SQ_CACHE_SLOTS];
		if (c->sql && strcmp(c->sql, sql) == 0) {
			sqlite3_reset(c->st);
			sqlite3_clear_bindings(c->st);
			return c->st;
		}
		if (c->sql)
			continue;
		sqlite3_stmt *st = NULL;
		if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
			sq_fail(s, err, "prepare a statement");
			return NULL;
		}
		c->sql = strdup(sql);
		if (!c->sql) {
			sqlite3_finalize(st);
			uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
			return NULL;
		}
		c->st = st;
		return st;
	}
	uh_error_set(err, UH_E_INTERNAL, NULL, "the store's statement cache is full");
	return NULL;
}

void sq_resetp(sqlite3_stmt **st)
{
	if (*st) {
		sqlite3_reset(*st);
		sqlite3_clear_bindings(*st);
	}
}

int sq_fail(struct uh_store *s, struct uh_error *err, const char *what)
{
	return uh_error_set(err, UH_E_INTERNAL, NULL, "store: cannot %s: %s", what, sqlite3_errmsg(s->db));
}

void sq_lock(struct uh_store *s)
{
	pthread_mutex_lock(&s->mu);
}

void sq_unlock(struct uh_store *s)
{
	pthread_mutex_unlock(&s->mu);
}

static int exec_cached(struct uh_store *s, const char *sql, const char *what, struct uh_error *err)
{
	sq_autoreset sqlite3_stmt *st = sq_prep(s, sql, err);
	if (!st)
		return UH_E_INTERNAL;
	int rc = sqlite3_step(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return sq_fail(s, err, what);
	return 0;
}

int sq_begin(struct uh_store *s, struct uh_error *err)
{
	if (exec_cached(s, "BEGIN IMMEDIATE", "begin a transaction", err))
		return UH_E_INTERNAL;
	s->pend_seq = s->audit_seq;
	memcpy(s->pend_hash, s->audit_hash, sizeof(s->pend_hash));
	return 0;
}

int sq_commit(struct uh_store *s, struct uh_error *err)
{
	if (exec_cached(s, "COMMIT", "commit", err)) {
		sq_rollback(s);
		return UH_E_INTERNAL;
	}
	if (s->pend_seq != s->audit_seq) {
		s->audit_seq = s->pend_seq;
		memcpy(s->audit_hash, s->pend_hash, sizeof(s->audit_hash));
		/* After COMMIT: the head never names an event the store may not
		 * have. A failed write leaves the head behind, which verify
		 * accepts (it cannot confirm the newest events, nothing more). */
		if (!s->head_frozen)
			(void)uh_audit_head_write(&s->head, s->audit_seq, s->audit_hash);
	}
	return 0;
}

void sq_rollback(struct uh_store *s)
{
	/* After some errors SQLite has already rolled back; ignore "no
	 * transaction is active". */
	(void)exec_cached(s, "ROLLBACK", "roll back", NULL);
}

char *sq_json_text(const json_t *j)
{
	return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

int sq_bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (!v)
		return sqlite3_bind_null(st, i);
	return sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
}

int sq_bind_id(sqlite3_stmt *st, int i, const char *id)
{
	return sq_bind_text(st, i, id && id[0] ? id : NULL);
}

int sq_bind_json(sqlite3_stmt *st, int i, const json_t *j)
{
	if (!j)
		return sqlite3_bind_null(st, i);
	char *t = sq_json_text(j);
	if (!t)
		return SQLITE_NOMEM;
	return sqlite3_bind_text(st, i, t, -1, free);
}

const char *sq_col_text(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return t ? (const char *)t : "";
}

json_t *sq_col_json(sqlite3_stmt *st, int i)
{
	const char *t = (const char *)sqlite3_column_text(st, i);
	if (!t)
		return NULL;
	return json_loads(t, JSON_DECODE_ANY, NULL);
}

int sq_cursor_parse(const char *before, int64_t *n, struct uh_error *err)
{
	*n = 0;
	if (!before || !before[0])
		return 0;
	int64_t v = 0;
	const char *p = before;
	for (; *p; p++) {
		if (*p < '0' || *p > '9' || v > (INT64_MAX - 9) / 10)
			goto bad;
		v = v * 10 + (*p - '0');
	}
	if (v <= 0 || p - before > 19)
		goto bad;
	*n = v;
	return 0;
bad:
	return uh_error_set(err, UH_E_INVALID_REQUEST, "before", "'before' is not a cursor this list returned");
}

void sq_cursor_format(int64_t n, char next[UH_CURSOR_MAX])
{
	snprintf(next, UH_CURSOR_MAX, "%" PRId64, n);
}

int sq_clamp_limit(int limit)
{
	return limit < 1 ? 1 : limit > 1000 ? 1000 : limit;
}

bool sq_is_unique(struct uh_store *s)
{
	int x = sqlite3_extended_errcode(s->db);
	return x == SQLITE_CONSTRAINT_UNIQUE || x == SQLITE_CONSTRAINT_PRIMARYKEY;
}

bool sq_is_fk(struct uh_store *s)
{
	return sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_FOREIGNKEY;
}

int sq_check_audit(const struct uh_audit_in *a, struct uh_error *err)
{
	if (!a || !a->action || !a->action[0])
		return uh_error_set(err, UH_E_INTERNAL, NULL, "store: a change needs its audit event");
	return 0;
}

int sq_tx(struct uh_store *s, sq_tx_fn fn, void *ctx, const struct uh_audit_in *a, struct uh_error *err)
{
	if (sq_check_audit(a, err))
		return UH_E_INTERNAL;
	sq_lock(s);
	int rc = sq_begin(s, err);
	if (!rc) {
		rc = fn ? fn(s, ctx, err) : 0;
		if (!rc)
			rc = sq_audit_add(s, a, err);
		if (rc) {
			sq_rollback(s);
			if (rc == SQ_TX_NOTHING)
				rc = 0;
		} else {
			rc = sq_commit(s, err);
		}
	}
	sq_unlock(s);
	return rc;
}

int sq_list_collect(struct uh_store *s, sqlite3_stmt *st, int limit, sq_row_fn row, json_t **items,
                    char next[UH_CURSOR_MAX], const char *what, struct uh_error *err)
{
	uh_autojson json_t *arr = json_array();
	int n = 0, r;
	int64_t last = 0;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == limit) {
			sq_cursor_format(last, next);
			break;
		}
		last = sqlite3_column_int64(st, 0);
		json_array_append_new(arr, row(st));
		n++;
	}
	if (r != SQLITE_ROW && r != SQLITE_DONE) {
		next[0] = '\0';
		return sq_fail(s, err, what);
	}
	*items = uh_take_ptr(arr);
	return 0;
}

int sq_step_done(struct uh_store *s, sqlite3_stmt *st, const char *what, struct uh_error *err)
{
	if (sqlite3_step(st) != SQLITE_DONE)
		return sq_fail(s, err, what);
	return 0;
}

/* ---- audit ---- */

/* The last event in the table, inside the open transaction. */
static int reload_tail(struct uh_store *s, struct uh_error *err)
{
	sq_autoreset sqlite3_stmt *st = sq_prep(s, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", err);
	if (!st)
		return UH_E_INTERNAL;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		s->pend_seq = sqlite3_column_int64(st, 0);
		snprintf(s->pend_hash, sizeof(s->pend_hash), "%s", sq_col_text(st, 1));
	} else if (rc != SQLITE_DONE) {
		return sq_fail(s, err, "read the audit log");
	}
	return 0;
}

int sq_audit_add(struct uh_store *s, const struct uh_audit_in *a, struct uh_error *err)
{
	uh_autofree char *details = a->details ? sq_json_text(a->details) : strdup("{}");
	if (!details)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "store: cannot encode the audit details");
	sq_autoreset sqlite3_stmt *st = sq_prep(
	    s, "INSERT INTO audit(seq, at, actor, action, target, details, prev, hash) VALUES (?,?,?,?,?,?,?,?)", err);
	if (!st)
		return UH_E_INTERNAL;
	for (int attempt = 0;; attempt++) {
		struct uh_audit_event ev = {
		    .seq = s->pend_seq + 1,
		    .at = uh_now_us(),
		    .actor = a->actor && a->actor[0] ? a->actor : "system",
		    .action = a->action,
		    .target = a->target ? a->target : "",
		    .details = details,
		};
		memcpy(ev.prev, s->pend_hash, sizeof(ev.prev));
		char hash[65];
		uh_audit_hash(s->audit_key, UH_AUDIT_KEY_LEN, &ev, hash);
		sqlite3_bind_int64(st, 1, ev.seq);
		sqlite3_bind_int64(st, 2, ev.at);
		sq_bind_text(st, 3, ev.actor);
		sq_bind_text(st, 4, ev.action);
		sq_bind_text(st, 5, ev.target);
		sq_bind_text(st, 6, ev.details);
		sq_bind_text(st, 7, ev.prev);
		sq_bind_text(st, 8, hash);
		if (sqlite3_step(st) == SQLITE_DONE) {
			s->pend_seq = ev.seq;
			memcpy(s->pend_hash, hash, sizeof(hash));
			return 0;
		}
		/* Another process appended since our cache was loaded (a second
		 * daemon by mistake, a maintenance tool): chain onto the real
		 * tail once, inside this transaction. */
		if (attempt > 0 || !sq_is_unique(s))
			return sq_fail(s, err, "append the audit event");
		sqlite3_reset(st);
		if (reload_tail(s, err))
			return UH_E_INTERNAL;
	}
}

int uh_store_audit_append(struct uh_store *s, const struct uh_audit_in *a, struct uh_error *err)
{
	return sq_tx(s, NULL, NULL, a, err);
}

static json_t *audit_event_json(sqlite3_stmt *st)
{
	json_t *e = json_object();
	json_object_set_new(e, "seq", json_integer(sqlite3_column_int64(st, 0)));
	json_object_set_new(e, "at", uh_json_time(sqlite3_column_int64(st, 1)));
	json_object_set_new(e, "actor", json_string(sq_col_text(st, 2)));
	json_object_set_new(e, "action", json_string(sq_col_text(st, 3)));
	const char *target = sq_col_text(st, 4);
	json_object_set_new(e, "target", target[0] ? json_string(target) : json_null());
	json_t *d = sq_col_json(st, 5);
	json_object_set_new(e, "details", d ? d : json_string(sq_col_text(st, 5)));
	json_object_set_new(e, "prev", json_string(sq_col_text(st, 6)));
	json_object_set_new(e, "hash", json_string(sq_col_text(st, 7)));
	return e;
}

static int audit_list_locked(struct uh_store *s, int64_t since_us, const char *actor, const char *target, int limit,
                             int64_t cursor, json_t **items, char next[UH_CURSOR_MAX], struct uh_error *err)
{
	char sql[512];
	snprintf(sql, sizeof(sql),
	         "SELECT seq, at, actor, action, target, details, prev, hash FROM audit WHERE 1%s%s%s%s"
	         " ORDER BY seq DESC LIMIT ?5",
	         since_us ? " AND at >= ?1" : "", actor ? " AND actor = ?2" : "", target ? " AND target = ?3" : "",
	         cursor ? " AND seq < ?4" : "");
	sq_autoreset sqlite3_stmt *st = sq_prep(s, sql, err);
	if (!st)
		return UH_E_INTERNAL;
	sqlite3_bind_int64(st, 1, since_us);
	sq_bind_text(st, 2, actor);
	sq_bind_text(st, 3, target);
	sqlite3_bind_int64(st, 4, cursor);
	sqlite3_bind_int(st, 5, limit + 1);
	return sq_list_collect(s, st, limit, audit_event_json, items, next, "list audit events", err);
}

int uh_store_audit_list(struct uh_store *s, const char *since, const char *actor, const char *target, int limit,
                        const char *before, json_t **items, char next[UH_CURSOR_MAX], struct uh_error *err)
{
	*items = NULL;
	next[0] = '\0';
	int64_t since_us = 0, cursor;
	if (since && since[0] && uh_time_parse(since, &since_us))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "since", "'since' must be an RFC 3339 time");
	if (sq_cursor_parse(before, &cursor, err))
		return UH_E_INVALID_REQUEST;
	sq_lock(s);
	int rc = audit_list_locked(s, since_us, actor, target, sq_clamp_limit(limit), cursor, items, next, err);
	sq_unlock(s);
	return rc;
}

struct verify_state {
	int64_t expect; /* next seq the chain should hold */
	int64_t last;   /* last seq seen */
	int64_t events;
	int64_t broken; /* 0: none yet */
	char prev[65];
	char problem[256];
};

static void verify_break(struct verify_state *v, int64_t seq, const char *problem)
{
	if (v->broken && v->broken <= seq)
		return;
	v->broken = seq;
	snprintf(v->problem, sizeof(v->problem), "%s", problem);
}

static void verify_row(struct uh_store *s, struct verify_state *v, sqlite3_stmt *st)
{
	int64_t seq = sqlite3_column_int64(st, 0);
	v->events++;
	v->last = seq;
	if (v->broken)
		return;
	char msg[256];
	if (seq != v->expect) {
		snprintf(msg, sizeof(msg), "event %" PRId64 " is missing", v->expect);
		verify_break(v, v->expect, msg);
		return;
	}
	const char *prev = sq_col_text(st, 6), *hash = sq_col_text(st, 7);
	if (strcmp(prev, v->prev) != 0) {
		snprintf(msg, sizeof(msg), "event %" PRId64 " does not link to the event before it", seq);
		verify_break(v, seq, msg);
		return;
	}
	struct uh_audit_event ev = {
	    .seq = seq,
	    .at = sqlite3_column_int64(st, 1),
	    .actor = sq_col_text(st, 2),
	    .action = sq_col_text(st, 3),
	    .target = sq_col_text(st, 4),
	    .details = sq_col_text(st, 5),
	};
	snprintf(ev.prev, sizeof(ev.prev), "%s", prev);
	char want[65];
	uh_audit_hash(s->audit_key, UH_AUDIT_KEY_LEN, &ev, want);
	if (strlen(hash) != 64 || !uh_ct_equal(want, hash, 64)) {
		snprintf(msg, sizeof(msg), "event %" PRId64 " does not match its hash (edited or forged)", seq);
		verify_break(v, seq, msg);
		return;
	}
	memcpy(v->prev, hash, 65);
	v->expect = seq + 1;
}

/* The end of the chain against what was recorded outside it: the head file
 * and the last event this process committed. Called with the mutex held,
 * after the last batch, so no append slips in between. */
static int verify_head(struct uh_store *s, struct verify_state *v, struct uh_error *err)
{
	char msg[256];
	if (s->audit_seq > v->last) {
		snprintf(msg, sizeof(msg),
		         "the chain was cut off: it ends at event %" PRId64 " but event %" PRId64 " was written",
		         v->last, s->audit_seq);
		verify_break(v, v->last + 1, msg);
	}
	if (!s->head_path)
		return 0;
	int64_t hseq;
	char hhash[65];
	struct uh_error herr = {0};
	if (uh_audit_head_read(s->head_path, &hseq, hhash, &herr)) {
		snprintf(msg, sizeof(msg), "the end of the chain cannot be confirmed: %s", herr.message);
		verify_break(v, v->last + 1, msg);
		return 0;
	}
	if (hseq == 0) {
		if (v->events > 0)
			verify_break(
			    v, v->last + 1,
			    "the audit head file is missing or empty: the end of the chain cannot be confirmed");
		return 0;
	}
	if (hseq > v->last) {
		snprintf(msg, sizeof(msg),
		         "the chain was cut off: the head file records event %" PRId64 ", the store ends at %" PRId64,
		         hseq, v->last);
		verify_break(v, v->last + 1, msg);
		return 0;
	}
	sq_autoreset sqlite3_stmt *st = sq_prep(s, "SELECT hash FROM audit WHERE seq = ?", err);
	if (!st)
		return UH_E_INTERNAL;
	sqlite3_bind_int64(st, 1, hseq);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *h = sq_col_text(st, 0);
		if (strlen(h) != 64 || !uh_ct_equal(h, hhash, 64)) {
			snprintf(msg, sizeof(msg), "event %" PRId64 " does not match the head file (chain rewritten)",
			         hseq);
			verify_break(v, hseq, msg);
		}
	} else if (rc == SQLITE_DONE) {
		snprintf(msg, sizeof(msg), "event %" PRId64 " named by the head file is missing", hseq);
		verify_break(v, hseq, msg);
	} else {
		return sq_fail(s, err, "read the audit log");
	}
	return 0;
}

int uh_store_audit_verify(struct uh_store *s, json_t **out, struct uh_error *err)
{
	*out = NULL;
	struct verify_state v = {.expect = 1};
	memcpy(v.prev, UH_AUDIT_GENESIS, sizeof(v.prev));
	/* Batches keyed by seq, so a long chain never holds the mutex for long;
	 * the log is append-only, so batches see one consistent history. */
	for (;;) {
		sq_lock(s);
		sqlite3_stmt *st = sq_prep(s,
		                           "SELECT seq, at, actor, action, target, details, prev, hash FROM audit"
		                           " WHERE seq > ? ORDER BY seq LIMIT ?",
		                           err);
		if (!st) {
			sq_unlock(s);
			return UH_E_INTERNAL;
		}
		sqlite3_bind_int64(st, 1, v.last);
		sqlite3_bind_int(st, 2, VERIFY_BATCH);
		int got = 0, rc;
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			verify_row(s, &v, st);
			got++;
		}
		sq_resetp(&st);
		if (rc != SQLITE_DONE) {
			int e = sq_fail(s, err, "read the audit log");
			sq_unlock(s);
			return e;
		}
		if (got == VERIFY_BATCH) {
			sq_unlock(s);
			continue;
		}
		int e = verify_head(s, &v, err);
		sq_unlock(s);
		if (e)
			return e;
		break;
	}
	json_t *o = json_object();
	json_object_set_new(o, "ok", json_boolean(!v.broken));
	if (v.broken)
		json_object_set_new(o, "broken_at", json_integer(v.broken));
	json_object_set_new(o, "events", json_integer(v.events));
	if (v.broken)
		json_object_set_new(o, "problem", json_string(v.problem));
	*out = o;
	return 0;
}

/* ---- opening ---- */

/* Create the file 0600 ourselves before SQLite opens it: SQLite gives the
 * -wal and -shm files the mode of the database file, so all three end 0600
 * without touching the process-wide umask (other threads may be creating
 * files). An existing file that is group/other accessible is tightened. */
static int prepare_file(const char *path, struct uh_error *err)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return uh_error_set(err, UH_E_INTERNAL, "db", "cannot open store '%s': %s", path, strerror(errno));
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st))
		rc = uh_error_set(err, UH_E_INTERNAL, "db", "cannot stat store '%s': %s", path, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		rc = uh_error_set(err, UH_E_INVALID_CONFIG, "db", "store '%s' is not a regular file", path);
	else if ((st.st_mode & 0777) != 0600 && fchmod(fd, 0600))
		rc = uh_error_set(err, UH_E_INTERNAL, "db", "cannot make store '%s' 0600: %s", path, strerror(errno));
	close(fd);
	return rc;
}

static void tighten(const char *path, const char *suffix)
{
	char p[4096];
	if (snprintf(p, sizeof(p), "%s%s", path, suffix) >= (int)sizeof(p))
		return;
	int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	struct stat st;
	if (!fstat(fd, &st) && S_ISREG(st.st_mode) && (st.st_mode & 0777) != 0600)
		(void)fchmod(fd, 0600);
	close(fd);
}

static int exec_sql(struct uh_store *s, const char *sql, const char *what, struct uh_error *err)
{
	char *msg = NULL;
	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		uh_error_set(err, UH_E_INTERNAL, NULL, "store: cannot %s: %s", what, msg ? msg : "unknown error");
		sqlite3_free(msg);
		return UH_E_INTERNAL;
	}
	return 0;
}

static int query_int(struct uh_store *s, const char *sql, int64_t *out, struct uh_error *err)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return sq_fail(s, err, "read the schema version");
	int rc = sqlite3_step(st);
	*out = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sq_fail(s, err, "read the schema version");
	return 0;
}

static int migrate(struct uh_store *s, struct uh_error *err)
{
	if (exec_sql(s,
	             "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
	             " name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
	             "create schema_migrations", err))
		return UH_E_INTERNAL;
	int latest = sq_migrations[SQ_MIGRATIONS_N - 1].version;
	int64_t cur;
	if (query_int(s, "SELECT coalesce(max(version), 0) FROM schema_migrations", &cur, err))
		return UH_E_INTERNAL;
	if (cur > latest)
		return uh_error_set(err, UH_E_INTERNAL, "db",
		                    "store schema version %" PRId64 " is newer than this uhub knows (%d)", cur, latest);
	for (int i = 0; i < SQ_MIGRATIONS_N; i++) {
		const struct sq_migration *m = &sq_migrations[i];
		if (m->version <= cur)
			continue;
		if (exec_sql(s, "BEGIN IMMEDIATE", "begin a migration", err))
			return UH_E_INTERNAL;
		/* Another process may have applied it while we waited. */
		int64_t now_v;
		if (query_int(s, "SELECT coalesce(max(version), 0) FROM schema_migrations", &now_v, err))
			goto rollback;
		if (now_v >= m->version) {
			cur = now_v;
			exec_sql(s, "COMMIT", "commit", NULL);
			continue;
		}
		char what[128];
		snprintf(what, sizeof(what), "apply migration %d (%s)", m->version, m->name);
		if (exec_sql(s, m->sql, what, err))
			goto rollback;
		sqlite3_stmt *st = NULL;
		if (sqlite3_prepare_v2(s->db, "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?,?,?)",
		                       -1, &st, NULL) != SQLITE_OK) {
			sq_fail(s, err, "record a migration");
			goto rollback;
		}
		sqlite3_bind_int(st, 1, m->version);
		sqlite3_bind_text(st, 2, m->name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, uh_now_us());
		int rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE) {
			sq_fail(s, err, "record a migration");
			goto rollback;
		}
		if (exec_sql(s, "COMMIT", what, err))
			goto rollback;
		cur = m->version;
	}
	s->schema_version = (int)cur;
	return 0;
rollback:
	exec_sql(s, "ROLLBACK", "roll back", NULL);
	return UH_E_INTERNAL;
}

static int load_audit_tail(struct uh_store *s, struct uh_error *err)
{
	s->audit_seq = 0;
	memcpy(s->audit_hash, UH_AUDIT_GENESIS, sizeof(s->audit_hash));
	sqlite3_stmt *st = sq_prep(s, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", err);
	if (!st)
		return UH_E_INTERNAL;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		s->audit_seq = sqlite3_column_int64(st, 0);
		snprintf(s->audit_hash, sizeof(s->audit_hash), "%s", sq_col_text(st, 1));
	}
	sq_resetp(&st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sq_fail(s, err, "read the audit log");
	return 0;
}

/* Bring the head file in line with the store, unless they disagree: a head
 * ahead of the store (cut off) or naming another hash (rewritten) is left
 * untouched as evidence for verify. A head one step behind is normal after
 * a kill between COMMIT and the head write. */
static int sync_head(struct uh_store *s, struct uh_error *err)
{
	if (uh_audit_head_open(&s->head, s->head_path, err))
		return UH_E_INTERNAL;
	int64_t hseq;
	char hhash[65];
	struct uh_error herr = {0};
	if (uh_audit_head_read(s->head_path, &hseq, hhash, &herr)) {
		s->head_frozen = true; /* malformed: keep it for the operator */
		return 0;
	}
	if (hseq == 0) {
		if (s->audit_seq > 0)
			(void)uh_audit_head_write(&s->head, s->audit_seq, s->audit_hash);
		return 0;
	}
	if (hseq > s->audit_seq) {
		s->head_frozen = true;
		return 0;
	}
	sqlite3_stmt *st = sq_prep(s, "SELECT hash FROM audit WHERE seq = ?", err);
	if (!st)
		return UH_E_INTERNAL;
	sqlite3_bind_int64(st, 1, hseq);
	bool match = sqlite3_step(st) == SQLITE_ROW && strcmp(sq_col_text(st, 0), hhash) == 0;
	sq_resetp(&st);
	if (!match)
		s->head_frozen = true;
	else if (hseq < s->audit_seq)
		(void)uh_audit_head_write(&s->head, s->audit_seq, s->audit_hash);
	return 0;
}

int uh_store_open(const char *url, const struct uh_store_options *opt, struct uh_store **out, struct uh_error *err)
{
	*out = NULL;
	if (url && (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0))
		return uh_error_set(err, UH_E_UNAVAILABLE, "db", "store 'postgres' is not built yet");
	if (!url || strncmp(url, "sqlite:", 7) != 0 || !url[7])
		return uh_error_set(err, UH_E_INVALID_CONFIG, "db", "'db' must be 'sqlite:PATH' or 'postgres://...'");
	if (!opt || !opt->audit_key)
		return uh_error_set(err, UH_E_INVALID_CONFIG, "audit.key_file", "the store needs the audit key");
	const char *path = url + 7;
	/* SQLite reads "file:..." as a URI and ":memory:" as no file at all:
	 * "./" keeps PATH a plain file name. */
	char pathbuf[4096];
	if (strncmp(path, "file:", 5) == 0 || path[0] == ':') {
		if (snprintf(pathbuf, sizeof(pathbuf), "./%s", path) >= (int)sizeof(pathbuf))
			return uh_error_set(err, UH_E_INVALID_CONFIG, "db", "the store's path is too long");
		path = pathbuf;
	}

	struct uh_store *s = calloc(1, sizeof(*s));
	if (!s)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	pthread_mutex_init(&s->mu, NULL);
	s->head.fd = -1;
	memcpy(s->audit_key, opt->audit_key, UH_AUDIT_KEY_LEN);
	s->path = strdup(path);
	s->head_path = opt->audit_head_path ? strdup(opt->audit_head_path) : NULL;
	if (!s->path || (opt->audit_head_path && !s->head_path)) {
		uh_store_close(s);
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	}
	if (prepare_file(path, err))
		goto fail;
	if (sqlite3_open_v2(path, &s->db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW,
	                    NULL) != SQLITE_OK) {
		uh_error_set(err, UH_E_INTERNAL, "db", "cannot open store '%s': %s", path,
		             s->db ? sqlite3_errmsg(s->db) : "out of memory");
		goto fail;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
	/* NORMAL in WAL: a commit is durable once written to the WAL, which
	 * survives a killed process; only a power cut can lose the last
	 * commits (FULL fsyncs each one, ten times slower here). */
	if (exec_sql(s,
	             "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA trusted_schema = OFF;"
	             " PRAGMA secure_delete = FAST",
	             "set up the connection", err))
		goto fail;
	{
		/* Retention frees pages with incremental_vacuum; auto_vacuum can
		 * only be chosen before the first table is created. */
		int64_t tables = 0;
		if (query_int(s, "SELECT count(*) FROM sqlite_master", &tables, err) ||
		    (tables == 0 && exec_sql(s, "PRAGMA auto_vacuum = INCREMENTAL", "set auto_vacuum", err)))
			goto fail;
	}
	{
		sqlite3_stmt *st = NULL;
		bool wal = false;
		if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL) == SQLITE_OK &&
		    sqlite3_step(st) == SQLITE_ROW)
			wal = strcmp(sq_col_text(st, 0), "wal") == 0;
		sqlite3_finalize(st);
		if (!wal) {
			uh_error_set(err, UH_E_INTERNAL, "db", "store '%s' cannot use WAL mode: %s", path,
			             sqlite3_errmsg(s->db));
			goto fail;
		}
	}
	if (migrate(s, err))
		goto fail;
	tighten(path, "-wal");
	tighten(path, "-shm");
	if (load_audit_tail(s, err))
		goto fail;
	if (s->head_path && sync_head(s, err))
		goto fail;
	*out = s;
	return 0;
fail:
	uh_store_close(s);
	return err && err->code ? err->code : UH_E_INTERNAL;
}

void uh_store_close(struct uh_store *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < SQ_CACHE_SLOTS; i++) {
		if (s->cache[i].st)
			sqlite3_finalize(s->cache[i].st);
		free(s->cache[i].sql);
	}
	if (s->db)
		sqlite3_close(s->db);
	uh_audit_head_close(&s->head);
	uh_memzero(s->audit_key, sizeof(s->audit_key));
	free(s->path);
	free(s->head_path);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

int uh_store_schema_version(struct uh_store *s)
{
	return s->schema_version;
}
