/* The SQLite schema as versioned migrations, embedded in the binary. Each
 * entry runs once, in its own transaction, and is recorded in
 * schema_migrations. Never edit a released entry: add a new one. */
#ifndef UH_STORE_SQLITE_SCHEMA_H
#define UH_STORE_SQLITE_SCHEMA_H

struct sq_migration {
	int version;
	const char *name;
	const char *sql;
};

/* Rows carry an INTEGER PRIMARY KEY `n` (the rowid): the keyset cursor of
 * every list, newest first. Times are integer microseconds. Projects and
 * jobs keep their indexed columns apart and the rest of their fields as a
 * canonical JSON text. */
static const struct sq_migration sq_migrations[] = {
    {1, "initial schema",
     "CREATE TABLE users ("
     " n INTEGER PRIMARY KEY,"
     " id TEXT NOT NULL UNIQUE,"
     " name TEXT NOT NULL UNIQUE,"
     " role TEXT NOT NULL,"
     " disabled INTEGER NOT NULL DEFAULT 0,"
     " created_at INTEGER NOT NULL);"

     /* Tokens only as SHA-256 hex: the bearer value is never stored. */
     "CREATE TABLE tokens ("
     " n INTEGER PRIMARY KEY,"
     " id TEXT NOT NULL UNIQUE,"
     " user_id TEXT NOT NULL REFERENCES users(id),"
     " hash TEXT NOT NULL UNIQUE,"
     " created_at INTEGER NOT NULL,"
     " expires_at INTEGER,"
     " revoked_at INTEGER);"

     "CREATE TABLE projects ("
     " n INTEGER PRIMARY KEY,"
     " id TEXT NOT NULL UNIQUE,"
     " name TEXT NOT NULL,"
     " archived INTEGER NOT NULL DEFAULT 0,"
     " created_at INTEGER NOT NULL,"
     " updated_at INTEGER NOT NULL,"
     " data TEXT NOT NULL);"
     /* Archiving frees the name. */
     "CREATE UNIQUE INDEX projects_name ON projects(name) WHERE archived = 0;"

     "CREATE TABLE members ("
     " n INTEGER PRIMARY KEY,"
     " project_id TEXT NOT NULL REFERENCES projects(id),"
     " user_id TEXT NOT NULL REFERENCES users(id),"
     " added_at INTEGER NOT NULL,"
     " UNIQUE (project_id, user_id));"
     "CREATE INDEX members_user ON members(user_id, project_id);"

     "CREATE TABLE jobs ("
     " n INTEGER PRIMARY KEY,"
     " id TEXT NOT NULL UNIQUE,"
     " project_id TEXT NOT NULL REFERENCES projects(id),"
     " name TEXT NOT NULL,"
     " archived INTEGER NOT NULL DEFAULT 0,"
     " created_at INTEGER NOT NULL,"
     " updated_at INTEGER NOT NULL,"
     " updated_by TEXT NOT NULL,"
     " data TEXT NOT NULL);"
     "CREATE UNIQUE INDEX jobs_name ON jobs(project_id, name) WHERE archived = 0;"

     /* One column per field of struct uh_run; status by name. Indexes on
      * one column also hold the rowid, so "WHERE job_id = ? ORDER BY n"
      * walks the index in order. */
     "CREATE TABLE runs ("
     " n INTEGER PRIMARY KEY,"
     " id TEXT NOT NULL UNIQUE,"
     " job_id TEXT NOT NULL REFERENCES jobs(id),"
     " project_id TEXT NOT NULL REFERENCES projects(id),"
     " status TEXT NOT NULL,"
     " reason TEXT,"
     " message TEXT,"
     " backend TEXT,"
     " parameters TEXT NOT NULL DEFAULT '{}',"
     " requested_by TEXT,"
     " approved_by TEXT,"
     " rejected_by TEXT,"
     " canceled_by TEXT,"
     " comments TEXT NOT NULL DEFAULT '[]',"
     " created_at INTEGER NOT NULL,"
     " started_at INTEGER,"
     " finished_at INTEGER,"
     " exit_code INTEGER,"
     " external_id TEXT,"
     " log_truncated INTEGER NOT NULL DEFAULT 0,"
     " retry_of TEXT,"
     " effective_config TEXT,"
     " spec TEXT,"
     " cancel_requested INTEGER NOT NULL DEFAULT 0);"
     "CREATE INDEX runs_job ON runs(job_id);"
     "CREATE INDEX runs_project ON runs(project_id);"
     "CREATE INDEX runs_status ON runs(status);"

     "CREATE TABLE idempotency ("
     " user_id TEXT NOT NULL,"
     " key TEXT NOT NULL,"
     " body_hash TEXT NOT NULL,"
     " run_id TEXT NOT NULL,"
     " created_at INTEGER NOT NULL,"
     " PRIMARY KEY (user_id, key)) WITHOUT ROWID;"
     "CREATE INDEX idempotency_created ON idempotency(created_at);"

     /* A run's output: each chunk at its byte offset in the whole stream.
      * No foreign key: the writer checks nothing per line (throughput). */
     "CREATE TABLE logs ("
     " run_id TEXT NOT NULL,"
     " off INTEGER NOT NULL,"
     " t INTEGER NOT NULL,"
     " stream INTEGER NOT NULL,"
     " data BLOB NOT NULL,"
     " PRIMARY KEY (run_id, off));"

     /* Append-only, chained (core/audit.h). seq is the rowid. */
     "CREATE TABLE audit ("
     " seq INTEGER PRIMARY KEY,"
     " at INTEGER NOT NULL,"
     " actor TEXT NOT NULL,"
     " action TEXT NOT NULL,"
     " target TEXT NOT NULL DEFAULT '',"
     " details TEXT NOT NULL,"
     " prev TEXT NOT NULL,"
     " hash TEXT NOT NULL);"
     "CREATE INDEX audit_actor ON audit(actor);"
     "CREATE INDEX audit_target ON audit(target);"
     "CREATE INDEX audit_at ON audit(at);"},

    /* Guardrails (SPEC §4): an admin's exceptions (deleted ones stay, for
     * the record) and the hash each approval covers. */
    {2, "exceptions and approvals",
     "CREATE TABLE exceptions ("
     " n INTEGER PRIMARY KEY,"
     " id TEXT NOT NULL UNIQUE,"
     " project_id TEXT NOT NULL REFERENCES projects(id),"
     " job_id TEXT REFERENCES jobs(id),"
     " reason TEXT NOT NULL,"
     " expires_at INTEGER NOT NULL,"
     " created_by TEXT NOT NULL,"
     " created_at INTEGER NOT NULL,"
     " deleted_at INTEGER,"
     " deleted_by TEXT);"
     "CREATE INDEX exceptions_project ON exceptions(project_id);"
     "CREATE TABLE approvals ("
     " run_id TEXT PRIMARY KEY,"
     " hash TEXT NOT NULL,"
     " approved_by TEXT NOT NULL,"
     " at INTEGER NOT NULL) WITHOUT ROWID;"},

    /* The built-in secret store (SPEC §1, §5): sealed blobs only, never a
     * value (secret/secret.h). scope is the owning project's id or
     * "shared"; a shared secret's grants name the projects that may use
     * it (those of archived projects do not count). */
    {3, "secrets",
     "CREATE TABLE secrets ("
     " n INTEGER PRIMARY KEY,"
     " scope TEXT NOT NULL,"
     " name TEXT NOT NULL,"
     " blob BLOB NOT NULL,"
     " created_at INTEGER NOT NULL,"
     " updated_at INTEGER NOT NULL,"
     " updated_by TEXT NOT NULL,"
     " UNIQUE (scope, name));"
     "CREATE TABLE secret_grants ("
     " name TEXT NOT NULL,"
     " project_id TEXT NOT NULL REFERENCES projects(id),"
     " PRIMARY KEY (name, project_id)) WITHOUT ROWID;"
     "CREATE INDEX secret_grants_project ON secret_grants(project_id);"},
};

#define SQ_MIGRATIONS_N ((int)(sizeof(sq_migrations) / sizeof(sq_migrations[0])))

#endif
