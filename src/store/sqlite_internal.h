/* Private to the SQLite store (sqlite*.c): the store object, the statement
 * cache, transactions with their chained audit event, small bind/read
 * helpers. Nothing here is seen outside src/store. */
#ifndef UH_STORE_SQLITE_INTERNAL_H
#define UH_STORE_SQLITE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

#define SQ_CACHE_SLOTS 256 /* statements; the distinct SQL texts are bounded by the code */

struct sq_cached {
	char *sql;
	sqlite3_stmt *st;
};

struct uh_store {
	pthread_mutex_t mu;
	sqlite3 *db;
	char *path;
	int schema_version;
	struct sq_cached cache[SQ_CACHE_SLOTS];

	unsigned char audit_key[UH_AUDIT_KEY_LEN];
	char *head_path;           /* NULL: no head file */
	struct uh_audit_head head; /* fd -1 when none */
	bool head_frozen;          /* the head disagreed with the store at open: keep it as evidence */
	/* Last committed audit event, and the one the open transaction built. */
	int64_t audit_seq;
	char audit_hash[65];
	int64_t pend_seq;
	char pend_hash[65];
};

/* A cached, reset statement for `sql` (any text; cached by content). NULL
 * with err filled when it does not prepare. */
sqlite3_stmt *sq_prep(struct uh_store *s, const char *sql, struct uh_error *err);
/* Reset + clear bindings; for __attribute__((cleanup)). Cached statements
 * are shared: use them only with the mutex held, and let the cleanup run
 * before unlocking (hence the *_locked helpers). */
void sq_resetp(sqlite3_stmt **st);
#define sq_autoreset __attribute__((cleanup(sq_resetp)))

/* UH_E_INTERNAL "cannot WHAT: sqlite's message". */
int sq_fail(struct uh_store *s, struct uh_error *err, const char *what);

void sq_lock(struct uh_store *s);
void sq_unlock(struct uh_store *s);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK. Commit publishes the audit events
 * the transaction appended (cache + head file). */
int sq_begin(struct uh_store *s, struct uh_error *err);
int sq_commit(struct uh_store *s, struct uh_error *err);
void sq_rollback(struct uh_store *s);
/* Append one chained event inside the open transaction. */
int sq_audit_add(struct uh_store *s, const struct uh_audit_in *a, struct uh_error *err);

/* Lock, BEGIN, fn, append the audit event, COMMIT, unlock. Anything fn
 * or the append fails on rolls the whole change back. fn returns
 * SQ_TX_NOTHING when it found nothing to change (rolled back, no event,
 * sq_tx answers 0). The event `a` is read after fn: fn may fill in its
 * details when they depend on the change (sqlite_secrets.c). */
#define SQ_TX_NOTHING 1
typedef int (*sq_tx_fn)(struct uh_store *s, void *ctx, struct uh_error *err);
int sq_tx(struct uh_store *s, sq_tx_fn fn, void *ctx, const struct uh_audit_in *a, struct uh_error *err);

/* Step a list statement whose column 0 is the row's cursor (rowid) and
 * which was bound with LIMIT limit + 1: items of row(st), newest first, and
 * next = the last item's cursor when one more row exists. */
typedef json_t *(*sq_row_fn)(sqlite3_stmt *st);
int sq_list_collect(struct uh_store *s, sqlite3_stmt *st, int limit, sq_row_fn row, json_t **items,
                    char next[UH_CURSOR_MAX], const char *what, struct uh_error *err);

/* Step a statement that must finish (DONE); UH_E_INTERNAL otherwise. */
int sq_step_done(struct uh_store *s, sqlite3_stmt *st, const char *what, struct uh_error *err);

/* Bind text (NULL -> NULL). */
int sq_bind_text(sqlite3_stmt *st, int i, const char *v);
int sq_bind_id(sqlite3_stmt *st, int i, const char *id);    /* "" -> NULL */
int sq_bind_json(sqlite3_stmt *st, int i, const json_t *j); /* NULL -> NULL; compact, sorted keys */
/* Column text, never NULL ("" for NULL). */
const char *sq_col_text(sqlite3_stmt *st, int i);
/* Column as a parsed JSON value, or NULL when NULL/unparsable. New reference. */
json_t *sq_col_json(sqlite3_stmt *st, int i);

/* Cursors: "" / NULL -> 0 (no cursor); else a positive decimal rowid, or
 * UH_E_INVALID_REQUEST naming "before". */
int sq_cursor_parse(const char *before, int64_t *n, struct uh_error *err);
void sq_cursor_format(int64_t n, char next[UH_CURSOR_MAX]);
int sq_clamp_limit(int limit);

/* Canonical JSON text (compact, sorted keys); caller frees. */
char *sq_json_text(const json_t *j);

/* Whether the last error was a UNIQUE / FOREIGN KEY constraint. */
bool sq_is_unique(struct uh_store *s);
bool sq_is_fk(struct uh_store *s);

/* A change without its audit event is a programming error: UH_E_INTERNAL. */
int sq_check_audit(const struct uh_audit_in *a, struct uh_error *err);

#endif
