/* SQLite store: run control (issue 9). Retention prunes finished runs and
 * their logs in small transactions, each with its own `run.prune` event;
 * audit events are never pruned. Freed pages go back to the file system
 * with incremental_vacuum on stores created with auto_vacuum=INCREMENTAL. */
#include "store/sqlite_internal.h"

#include <stdio.h>
#include <string.h>

#define PRUNABLE \
	"finished_at IS NOT NULL AND finished_at < ?1 AND status NOT IN ('pending_approval', 'queued', 'running')"

struct prune_ctx {
	int64_t before;
	int max;
	int64_t count;
	json_t *details; /* the event's details, filled here */
};

static int prune_tx(struct uh_store *s, void *p, struct uh_error *err)
{
	struct prune_ctx *c = p;
	int64_t last_n = 0;
	{
		sq_autoreset sqlite3_stmt *st =
		    sq_prep(s, "SELECT n, id FROM runs WHERE " PRUNABLE " ORDER BY n LIMIT ?2", err);
		if (!st)
			return UH_E_INTERNAL;
		sqlite3_bind_int64(st, 1, c->before);
		sqlite3_bind_int(st, 2, c->max);
		int rc;
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			if (c->count == 0)
				json_object_set_new(c->details, "oldest", json_string(sq_col_text(st, 1)));
			json_object_set_new(c->details, "newest", json_string(sq_col_text(st, 1)));
			last_n = sqlite3_column_int64(st, 0);
			c->count++;
		}
		if (rc != SQLITE_DONE)
			return sq_fail(s, err, "list runs to prune");
	}
	if (c->count == 0)
		return SQ_TX_NOTHING;
	json_object_set_new(c->details, "count", json_integer(c->count));
	static const char *const sql[] = {
	    "DELETE FROM logs WHERE run_id IN (SELECT id FROM runs WHERE " PRUNABLE " AND n <= ?2)",
	    "DELETE FROM idempotency WHERE run_id IN (SELECT id FROM runs WHERE " PRUNABLE " AND n <= ?2)",
	    "DELETE FROM runs WHERE " PRUNABLE " AND n <= ?2",
	};
	for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
		sq_autoreset sqlite3_stmt *st = sq_prep(s, sql[i], err);
		if (!st)
			return UH_E_INTERNAL;
		sqlite3_bind_int64(st, 1, c->before);
		sqlite3_bind_int64(st, 2, last_n);
		if (sq_step_done(s, st, "prune runs", err))
			return UH_E_INTERNAL;
	}
	return 0;
}

int uh_store_runs_prune(struct uh_store *s, int64_t finished_before_us, int max_runs, int64_t *pruned,
                        struct uh_error *err)
{
	*pruned = 0;
	struct prune_ctx c = {.before = finished_before_us, .max = max_runs > 0 ? max_runs : 500};
	if (!(c.details = json_object()))
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	json_object_set_new(c.details, "finished_before", json_integer(finished_before_us));
	struct uh_audit_in a = {"system", "run.prune", NULL, c.details};
	int rc = sq_tx(s, prune_tx, &c, &a, err);
	json_decref(c.details);
	if (!rc)
		*pruned = c.count;
	return rc;
}

int uh_store_incremental_vacuum(struct uh_store *s, int pages, struct uh_error *err)
{
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA incremental_vacuum(%d)", pages > 0 ? pages : 0);
	sq_lock(s);
	sqlite3_stmt *st = NULL;
	int rc = 0;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		rc = sq_fail(s, err, "prepare incremental_vacuum");
	} else {
		int r;
		while ((r = sqlite3_step(st)) == SQLITE_ROW)
			;
		if (r != SQLITE_DONE)
			rc = sq_fail(s, err, "run incremental_vacuum");
	}
	sqlite3_finalize(st);
	sq_unlock(s);
	return rc;
}
