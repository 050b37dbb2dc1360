/* The SQLite store against its contract (store/store.h): every operation,
 * the file modes, migrations, uniqueness, pagination, idempotency, guarded
 * transitions, logs with gaps, the audit chain and its tampering cases,
 * and concurrent use. Prints (does not assert) the batched log throughput. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/audit.h"
#include "core/run.h"
#include "store/sqlite_schema.h"
#include "store/store.h"
#include "tap.h"
#include "util/buf.h"
#include "util/crypto.h"
#include "util/time.h"

static struct uh_error E;
static const unsigned char KEY[UH_AUDIT_KEY_LEN] = "0123456789abcdef0123456789abcdef";

#define OK(call)                                                                                                 \
	do {                                                                                                     \
		memset(&E, 0, sizeof(E));                                                                        \
		int _rc = (call);                                                                                \
		if (_rc)                                                                                         \
			fprintf(stderr, "%s:%d: %s failed: %d %s\n", __FILE__, __LINE__, #call, _rc, E.message); \
		CHECK(_rc == 0);                                                                                 \
	} while (0)

#define FAILS(call, code)                                                                                    \
	do {                                                                                                 \
		memset(&E, 0, sizeof(E));                                                                    \
		int _rc = (call);                                                                            \
		if (_rc != (code))                                                                           \
			fprintf(stderr, "%s:%d: %s: %d (%s), expected %d\n", __FILE__, __LINE__, #call, _rc, \
			        E.message, (code));                                                          \
		CHECK(_rc == (code));                                                                        \
	} while (0)

#define AUD(act, tgt) (&(struct uh_audit_in){.actor = "u_admin", .action = (act), .target = (tgt)})

static char tmproot[64];
static int dirs;

static void new_dir(char out[256])
{
	snprintf(out, 256, "%s/%d", tmproot, ++dirs);
	mkdir(out, 0700);
}

static struct uh_store *open_in(const char *dir)
{
	char url[300], head[300];
	snprintf(url, sizeof(url), "sqlite:%s/uhub.db", dir);
	snprintf(head, sizeof(head), "%s/audit.head", dir);
	struct uh_store_options o = {.audit_key = KEY, .audit_head_path = head};
	struct uh_store *s = NULL;
	OK(uh_store_open(url, &o, &s, &E));
	return s;
}

static sqlite3 *raw_open(const char *dir)
{
	char p[300];
	snprintf(p, sizeof(p), "%s/uhub.db", dir);
	sqlite3 *db = NULL;
	CHECK(sqlite3_open(p, &db) == SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	return db;
}

static void raw_exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fprintf(stderr, "raw sql failed: %s: %s\n", sql, msg);
	CHECK(msg == NULL);
	sqlite3_free(msg);
}

static int64_t raw_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -1;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static int mode_of(const char *dir, const char *name)
{
	char p[300];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	struct stat st;
	if (stat(p, &st))
		return -1;
	return (int)(st.st_mode & 0777);
}

static const char *sget(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static int64_t audit_events(struct uh_store *s)
{
	json_t *v = NULL;
	OK(uh_store_audit_verify(s, &v, &E));
	int64_t n = json_integer_value(json_object_get(v, "events"));
	json_decref(v);
	return n;
}

/* ---- opening, modes, migrations ---- */

static void test_open(void)
{
	char dir[256];
	new_dir(dir);
	struct uh_store_options o = {.audit_key = KEY};
	struct uh_store *s = NULL;

	FAILS(uh_store_open("mysql://x", &o, &s, &E), UH_E_INVALID_CONFIG);
	CHECK_STR(E.field, "db");
	FAILS(uh_store_open("sqlite:", &o, &s, &E), UH_E_INVALID_CONFIG);
	CHECK_STR(E.field, "db");
	FAILS(uh_store_open("postgres://u:p@h/db", &o, &s, &E), UH_E_UNAVAILABLE);
	CHECK_STR(E.message, "store 'postgres' is not built yet");
	CHECK(s == NULL);

	s = open_in(dir);
	CHECK(s != NULL);
	CHECK(uh_store_schema_version(s) == sq_migrations[SQ_MIGRATIONS_N - 1].version);
	/* A write so the WAL exists, then the three files are 0600 (umask 022). */
	json_t *u = NULL;
	OK(uh_store_user_create(s, "alice", "admin", AUD("user.create", NULL), &u, &E));
	json_decref(u);
	CHECK(mode_of(dir, "uhub.db") == 0600);
	CHECK(mode_of(dir, "uhub.db-wal") == 0600);
	CHECK(mode_of(dir, "uhub.db-shm") == 0600);
	CHECK(mode_of(dir, "audit.head") == 0600);

	sqlite3 *db = raw_open(dir);
	CHECK(raw_int(db, "SELECT count(*) FROM schema_migrations") == SQ_MIGRATIONS_N);
	sqlite3_close(db);
	uh_store_close(s);

	/* Reopen: nothing applied twice, data kept. */
	s = open_in(dir);
	CHECK(uh_store_schema_version(s) == sq_migrations[SQ_MIGRATIONS_N - 1].version);
	int64_t n = 0;
	OK(uh_store_user_count(s, &n, &E));
	CHECK(n == 1);
	uh_store_close(s);
	db = raw_open(dir);
	CHECK(raw_int(db, "SELECT count(*) FROM schema_migrations") == SQ_MIGRATIONS_N);
	CHECK(raw_int(db, "SELECT count(*) FROM users") == 1);
	char mode[32];
	sqlite3_stmt *st = NULL;
	sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL);
	sqlite3_step(st);
	snprintf(mode, sizeof(mode), "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	CHECK_STR(mode, "wal");
	sqlite3_close(db);

	/* A store left group-readable is tightened. */
	char p[300];
	snprintf(p, sizeof(p), "%s/uhub.db", dir);
	chmod(p, 0644);
	s = open_in(dir);
	CHECK(mode_of(dir, "uhub.db") == 0600);
	uh_store_close(s);

	/* A schema newer than this binary is refused. */
	db = raw_open(dir);
	raw_exec(db, "INSERT INTO schema_migrations VALUES (999, 'future', 0)");
	sqlite3_close(db);
	char url[300];
	snprintf(url, sizeof(url), "sqlite:%s/uhub.db", dir);
	s = NULL;
	FAILS(uh_store_open(url, &o, &s, &E), UH_E_INTERNAL);
	CHECK(strstr(E.message, "newer") != NULL);
	CHECK(s == NULL);
}

/* ---- users and tokens ---- */

static void test_users_tokens(struct uh_store *s)
{
	json_t *u = NULL, *v = NULL;
	OK(uh_store_user_create(s, "bob", "operator", AUD("user.create", NULL), &u, &E));
	const char *bob = sget(u, "id");
	CHECK(bob && strncmp(bob, "u_", 2) == 0);
	CHECK_STR(sget(u, "role"), "operator");
	CHECK(json_is_false(json_object_get(u, "disabled")));
	CHECK(json_is_string(json_object_get(u, "created_at")));

	FAILS(uh_store_user_create(s, "bob", "viewer", AUD("user.create", NULL), &v, &E), UH_E_CONFLICT);
	CHECK_STR(E.field, "name");
	CHECK_STR(E.message, "a user named 'bob' already exists");
	CHECK(v == NULL);

	OK(uh_store_user_get(s, bob, &v, &E));
	CHECK(json_equal(u, v));
	json_decref(v);
	FAILS(uh_store_user_get(s, "u_nope", &v, &E), UH_E_NOT_FOUND);
	CHECK_STR(E.message, "user 'u_nope' not found");

	OK(uh_store_user_update(s, bob, "projets", -1, AUD("user.update", bob), &v, &E));
	CHECK_STR(sget(v, "role"), "projets");
	CHECK(json_is_false(json_object_get(v, "disabled")));
	json_decref(v);
	FAILS(uh_store_user_update(s, "u_nope", NULL, 1, AUD("user.update", NULL), &v, &E), UH_E_NOT_FOUND);

	/* tokens */
	char h1[65], h2[65], h3[65], tid[UH_ID_MAX], tid2[UH_ID_MAX], tid3[UH_ID_MAX];
	uh_sha256_hex("token-one", 9, h1);
	uh_sha256_hex("token-two", 9, h2);
	uh_sha256_hex("token-three", 11, h3);
	OK(uh_store_token_create(s, bob, h1, 0, AUD("token.create", bob), tid, &E));
	CHECK(strncmp(tid, "t_", 2) == 0);
	OK(uh_store_token_create(s, bob, h2, uh_now_us() - 1, AUD("token.create", bob), tid2, &E));
	OK(uh_store_token_create(s, bob, h3, uh_now_us() + 3600000000LL, AUD("token.create", bob), tid3, &E));
	FAILS(uh_store_token_create(s, "u_nope", h1, 0, AUD("token.create", NULL), tid2, &E), UH_E_NOT_FOUND);
	FAILS(uh_store_token_create(s, bob, h1, 0, AUD("token.create", NULL), tid2, &E), UH_E_CONFLICT);

	OK(uh_store_token_get(s, tid, &v, &E));
	CHECK_STR(sget(v, "user_id"), bob);
	CHECK(json_is_null(json_object_get(v, "expires_at")));
	CHECK(json_is_null(json_object_get(v, "revoked_at")));
	json_decref(v);
	OK(uh_store_token_get(s, tid3, &v, &E));
	CHECK(json_is_string(json_object_get(v, "expires_at")));
	json_decref(v);

	struct uh_principal p;
	OK(uh_store_auth(s, h1, uh_now_us(), &p, &E));
	CHECK_STR(p.user_id, bob);
	CHECK_STR(p.name, "bob");
	CHECK_STR(p.role, "projets");
	CHECK_STR(p.token_id, tid);
	OK(uh_store_auth(s, h3, uh_now_us(), &p, &E));
	FAILS(uh_store_auth(s, h2, uh_now_us(), &p, &E), UH_E_UNAUTHORIZED); /* expired */
	CHECK(p.user_id[0] == '\0');
	char unknown[65];
	uh_sha256_hex("nope", 4, unknown);
	FAILS(uh_store_auth(s, unknown, uh_now_us(), &p, &E), UH_E_UNAUTHORIZED);
	char shorty[65] = "short";
	FAILS(uh_store_auth(s, shorty, uh_now_us(), &p, &E), UH_E_UNAUTHORIZED);

	OK(uh_store_token_revoke(s, tid3, AUD("token.revoke", tid3), &E));
	OK(uh_store_token_revoke(s, tid3, AUD("token.revoke", tid3), &E)); /* twice is fine */
	FAILS(uh_store_auth(s, h3, uh_now_us(), &p, &E), UH_E_UNAUTHORIZED);
	OK(uh_store_token_get(s, tid3, &v, &E));
	CHECK(json_is_string(json_object_get(v, "revoked_at")));
	json_decref(v);
	FAILS(uh_store_token_revoke(s, "t_nope", AUD("token.revoke", NULL), &E), UH_E_NOT_FOUND);

	/* A disabled user's tokens stop working; enabling restores them. */
	OK(uh_store_user_update(s, bob, NULL, 1, AUD("user.update", bob), &v, &E));
	CHECK(json_is_true(json_object_get(v, "disabled")));
	CHECK_STR(sget(v, "role"), "projets");
	json_decref(v);
	FAILS(uh_store_auth(s, h1, uh_now_us(), &p, &E), UH_E_UNAUTHORIZED);
	OK(uh_store_user_update(s, bob, NULL, 0, AUD("user.update", bob), &v, &E));
	json_decref(v);
	OK(uh_store_auth(s, h1, uh_now_us(), &p, &E));

	/* The token is stored only as its hash. */
	json_decref(u);
}

static void test_user_pages(struct uh_store *s)
{
	int64_t before_n = 0;
	OK(uh_store_user_count(s, &before_n, &E));
	for (int i = 0; i < 5; i++) {
		char name[32];
		snprintf(name, sizeof(name), "page%d", i);
		json_t *u = NULL;
		OK(uh_store_user_create(s, name, "viewer", AUD("user.create", NULL), &u, &E));
		json_decref(u);
	}
	int64_t n = 0;
	OK(uh_store_user_count(s, &n, &E));
	CHECK(n == before_n + 5);
	/* Pages of 2: newest first, every user once, next "" at the end. */
	char next[UH_CURSOR_MAX] = "", cur[UH_CURSOR_MAX] = "";
	int seen = 0, pages = 0;
	char first[64] = "";
	do {
		json_t *items = NULL;
		OK(uh_store_user_list(s, 2, cur, &items, next, &E));
		if (!items)
			break;
		CHECK(json_array_size(items) <= 2);
		if (pages == 0)
			snprintf(first, sizeof(first), "%s", sget(json_array_get(items, 0), "name"));
		seen += (int)json_array_size(items);
		pages++;
		json_decref(items);
		memcpy(cur, next, sizeof(cur));
	} while (next[0] && pages < 100);
	CHECK(seen == n);
	CHECK(pages == (int)((n + 1) / 2));
	CHECK_STR(first, "page4");

	json_t *items = NULL;
	FAILS(uh_store_user_list(s, 2, "abc", &items, next, &E), UH_E_INVALID_REQUEST);
	CHECK_STR(E.field, "before");
	FAILS(uh_store_user_list(s, 2, "-5", &items, next, &E), UH_E_INVALID_REQUEST);
	FAILS(uh_store_user_list(s, 2, "99999999999999999999999", &items, next, &E), UH_E_INVALID_REQUEST);
	CHECK(items == NULL);
}

/* ---- projects, members, jobs ---- */

static json_t *project_fields(const char *name)
{
	return json_pack("{s:s, s:s, s:s, s:{s:i}}", "name", name, "environment", "dev", "execution_backend", "local",
	                 "execution_backend_config", "timeout_seconds", 60);
}

static void test_projects(struct uh_store *s)
{
	json_t *f = project_fields("web"), *p = NULL, *v = NULL;
	OK(uh_store_project_create(s, f, AUD("project.create", NULL), &p, &E));
	const char *pid = sget(p, "id");
	CHECK(pid && strncmp(pid, "p_", 2) == 0);
	CHECK_STR(sget(p, "name"), "web");
	CHECK_STR(sget(p, "environment"), "dev");
	CHECK_STR(sget(p, "execution_backend"), "local");
	CHECK(json_integer_value(json_object_get(json_object_get(p, "execution_backend_config"), "timeout_seconds")) ==
	      60);
	CHECK(json_is_null(json_object_get(p, "vault_prefix")));
	CHECK(json_is_null(json_object_get(p, "max_concurrent")));
	CHECK(json_is_string(json_object_get(p, "created_at")));
	CHECK(json_object_size(p) == 9);

	FAILS(uh_store_project_create(s, f, AUD("project.create", NULL), &v, &E), UH_E_CONFLICT);
	CHECK_STR(E.field, "name");
	CHECK_STR(E.message, "a project named 'web' already exists");

	OK(uh_store_project_get(s, pid, &v, &E));
	CHECK(json_equal(v, p));
	json_decref(v);
	OK(uh_store_project_find(s, "web", &v, &E));
	CHECK_STR(sget(v, "id"), pid);
	json_decref(v);
	FAILS(uh_store_project_get(s, "p_x", &v, &E), UH_E_NOT_FOUND);
	CHECK_STR(E.message, "project 'p_x' not found");
	FAILS(uh_store_project_find(s, "nope", &v, &E), UH_E_NOT_FOUND);

	/* update: replace the fields; rename onto a taken name is a conflict */
	json_t *q = NULL, *g = project_fields("api");
	OK(uh_store_project_create(s, g, AUD("project.create", NULL), &q, &E));
	json_object_set_new(f, "vault_prefix", json_string("teams/web/"));
	json_object_set_new(f, "max_concurrent", json_integer(3));
	OK(uh_store_project_update(s, pid, f, AUD("project.update", pid), &v, &E));
	CHECK_STR(sget(v, "vault_prefix"), "teams/web/");
	CHECK(json_integer_value(json_object_get(v, "max_concurrent")) == 3);
	CHECK_STR(sget(v, "created_at"), sget(p, "created_at"));
	json_decref(v);
	OK(uh_store_project_get(s, pid, &v, &E));
	CHECK_STR(sget(v, "vault_prefix"), "teams/web/");
	json_decref(v);
	json_object_set_new(f, "name", json_string("api"));
	FAILS(uh_store_project_update(s, pid, f, AUD("project.update", pid), &v, &E), UH_E_CONFLICT);
	CHECK_STR(E.field, "name");
	json_object_set_new(f, "name", json_string("web"));
	FAILS(uh_store_project_update(s, "p_x", f, AUD("project.update", NULL), &v, &E), UH_E_NOT_FOUND);

	/* members */
	json_t *u = NULL, *m = NULL;
	OK(uh_store_user_create(s, "carol", "operator", AUD("user.create", NULL), &u, &E));
	const char *carol = sget(u, "id");
	OK(uh_store_member_add(s, pid, carol, AUD("member.add", pid), &m, &E));
	CHECK_STR(sget(m, "project_id"), pid);
	CHECK_STR(sget(m, "user_id"), carol);
	CHECK_STR(sget(m, "name"), "carol");
	CHECK_STR(sget(m, "role"), "operator");
	CHECK(json_is_string(json_object_get(m, "added_at")));
	json_decref(m);
	FAILS(uh_store_member_add(s, pid, carol, AUD("member.add", pid), &m, &E), UH_E_CONFLICT);
	FAILS(uh_store_member_add(s, pid, "u_nope", AUD("member.add", pid), &m, &E), UH_E_NOT_FOUND);
	CHECK_STR(E.field, "user_id");
	FAILS(uh_store_member_add(s, "p_x", carol, AUD("member.add", NULL), &m, &E), UH_E_NOT_FOUND);
	bool is = false;
	OK(uh_store_is_member(s, pid, carol, &is, &E));
	CHECK(is);
	OK(uh_store_is_member(s, sget(q, "id"), carol, &is, &E));
	CHECK(!is);
	json_t *items = NULL;
	char next[UH_CURSOR_MAX];
	OK(uh_store_member_list(s, pid, 10, NULL, &items, next, &E));
	CHECK(json_array_size(items) == 1);
	CHECK_STR(next, "");
	json_decref(items);

	/* project lists: all, by member, by name */
	OK(uh_store_project_list(s, NULL, NULL, 10, NULL, &items, next, &E));
	CHECK(json_array_size(items) == 2);
	CHECK_STR(sget(json_array_get(items, 0), "name"), "api"); /* newest first */
	json_decref(items);
	OK(uh_store_project_list(s, carol, NULL, 10, NULL, &items, next, &E));
	CHECK(json_array_size(items) == 1);
	CHECK_STR(sget(json_array_get(items, 0), "id"), pid);
	json_decref(items);
	OK(uh_store_project_list(s, NULL, "api", 10, NULL, &items, next, &E));
	CHECK(json_array_size(items) == 1);
	json_decref(items);
	OK(uh_store_project_list(s, NULL, NULL, 1, NULL, &items, next, &E));
	CHECK(json_array_size(items) == 1 && next[0]);
	json_decref(items);
	char cur[UH_CURSOR_MAX];
	memcpy(cur, next, sizeof(cur));
	OK(uh_store_project_list(s, NULL, NULL, 1, cur, &items, next, &E));
	CHECK(json_array_size(items) == 1);
	CHECK_STR(sget(json_array_get(items, 0), "name"), "web");
	CHECK_STR(next, "");
	json_decref(items);

	OK(uh_store_member_remove(s, pid, carol, AUD("member.remove", pid), &E));
	FAILS(uh_store_member_remove(s, pid, carol, AUD("member.remove", pid), &E), UH_E_NOT_FOUND);
	OK(uh_store_is_member(s, pid, carol, &is, &E));
	CHECK(!is);

	json_decref(u);
	json_decref(q);
	json_decref(g);
	json_decref(f);
	json_decref(p);
}

static json_t *job_fields(const char *name)
{
	return json_pack("{s:s, s:[s, s]}", "name", name, "command", "/usr/bin/true", "-v");
}

static struct uh_run *mk_run(const char *job_id, const char *project_id, int status)
{
	struct uh_run *r = uh_run_new();
	uh_id_new("r_", r->id);
	snprintf(r->job_id, sizeof(r->job_id), "%s", job_id);
	snprintf(r->project_id, sizeof(r->project_id), "%s", project_id);
	r->status = status;
	r->backend = strdup("local");
	r->parameters = json_pack("{s:s}", "TARGET", "eu");
	snprintf(r->requested_by, sizeof(r->requested_by), "u_req");
	r->effective_config = json_pack("{s:i}", "timeout_seconds", 60);
	r->spec = json_pack("{s:[s], s:{}, s:{}, s:s}", "command", "/usr/bin/true", "env", "secrets", "job_name", "j");
	return r;
}

struct counts {
	int64_t canceled, rejected, total;
};

static void count_cb(void *arg, const char *backend, const char *status, int64_t k)
{
	struct counts *c = arg;
	CHECK_STR(backend, "local");
	if (strcmp(status, "canceled") == 0)
		c->canceled += k;
	if (strcmp(status, "rejected") == 0)
		c->rejected += k;
	c->total += k;
}

static void test_jobs_runs(struct uh_store *s)
{
	json_t *pf = project_fields("ops"), *p = NULL, *p2 = NULL, *pf2 = project_fields("ops2");
	OK(uh_store_project_create(s, pf, AUD("project.create", NULL), &p, &E));
	OK(uh_store_project_create(s, pf2, AUD("project.create", NULL), &p2, &E));
	const char *pid = sget(p, "id"), *pid2 = sget(p2, "id");

	json_t *jf = job_fields("deploy"), *j = NULL, *v = NULL;
	struct uh_audit_in ja = {.actor = "u_alice", .action = "job.create"};
	OK(uh_store_job_create(s, pid, jf, &ja, &j, &E));
	const char *jid = sget(j, "id");
	CHECK(jid && strncmp(jid, "j_", 2) == 0);
	CHECK_STR(sget(j, "project_id"), pid);
	CHECK(json_array_size(json_object_get(j, "command")) == 2);
	CHECK(json_is_null(json_object_get(j, "execution_backend")));
	CHECK(json_is_null(json_object_get(j, "execution_backend_config")));
	CHECK(json_is_false(json_object_get(j, "critical")));
	CHECK(json_is_object(json_object_get(j, "env")) && json_object_size(json_object_get(j, "env")) == 0);
	CHECK(json_is_object(json_object_get(j, "secrets")));
	CHECK(json_is_array(json_object_get(j, "parameters")));
	CHECK(json_is_null(json_object_get(j, "max_concurrent")));
	CHECK(json_integer_value(json_object_get(j, "retries")) == 0);
	CHECK_STR(sget(j, "updated_by"), "u_alice");
	CHECK(json_object_size(j) == 15);
	OK(uh_store_job_get(s, jid, &v, &E));
	CHECK(json_equal(v, j));
	json_decref(v);

	FAILS(uh_store_job_create(s, pid, jf, &ja, &v, &E), UH_E_CONFLICT);
	CHECK_STR(E.field, "name");
	json_t *j2 = NULL;
	OK(uh_store_job_create(s, pid2, jf, &ja, &j2, &E)); /* same name, other project */
	FAILS(uh_store_job_create(s, "p_x", jf, &ja, &v, &E), UH_E_NOT_FOUND);
	CHECK_STR(E.message, "project 'p_x' not found");
	OK(uh_store_job_find(s, pid, "deploy", &v, &E));
	CHECK_STR(sget(v, "id"), jid);
	json_decref(v);
	FAILS(uh_store_job_find(s, pid, "nope", &v, &E), UH_E_NOT_FOUND);

	json_t *items = NULL;
	char next[UH_CURSOR_MAX];
	OK(uh_store_job_list(s, pid, NULL, 10, NULL, &items, next, &E));
	CHECK(json_array_size(items) == 1);
	json_decref(items);
	OK(uh_store_job_list(s, NULL, "deploy", 10, NULL, &items, next, &E));
	CHECK(json_array_size(items) == 2);
	json_decref(items);

	/* update: fields replaced, updated_by follows the audit actor */
	json_object_set_new(jf, "critical", json_true());
	json_object_set_new(jf, "env", json_pack("{s:s}", "A", "1"));
	json_object_set_new(jf, "retries", json_integer(2));
	json_object_set_new(jf, "parameters", json_pack("[s]", "TARGET"));
	struct uh_audit_in jb = {.actor = "u_bob", .action = "job.update", .target = jid};
	OK(uh_store_job_update(s, jid, jf, &jb, &v, &E));
	CHECK(json_is_true(json_object_get(v, "critical")));
	CHECK_STR(sget(v, "updated_by"), "u_bob");
	CHECK_STR(sget(v, "project_id"), pid);
	CHECK(json_integer_value(json_object_get(v, "retries")) == 2);
	json_decref(v);
	OK(uh_store_job_get(s, jid, &v, &E));
	CHECK_STR(sget(v, "updated_by"), "u_bob");
	CHECK_STR(sget(json_object_get(v, "env"), "A"), "1");
	json_decref(v);

	/* runs */
	struct uh_run *r = mk_run(jid, pid, UH_RUN_QUEUED), *got = NULL, *ex = NULL;
	OK(uh_store_run_create(s, r, NULL, NULL, NULL, AUD("run.create", r->id), &ex, &E));
	CHECK(ex == NULL);
	OK(uh_store_run_get(s, r->id, &got, &E));
	CHECK(got && got->status == UH_RUN_QUEUED);
	CHECK_STR(got->backend, "local");
	CHECK_STR(got->requested_by, "u_req");
	CHECK(got->approved_by[0] == '\0');
	CHECK(got->created_at > 0 && got->started_at == 0 && !got->has_exit_code);
	CHECK_STR(json_string_value(json_object_get(got->parameters, "TARGET")), "eu");
	CHECK(json_is_array(got->comments) && json_array_size(got->comments) == 0);
	CHECK(json_integer_value(json_object_get(got->effective_config, "timeout_seconds")) == 60);
	CHECK_STR(json_string_value(json_object_get(got->spec, "job_name")), "j");
	uh_run_free(got);
	FAILS(uh_store_run_get(s, "r_nope", &got, &E), UH_E_NOT_FOUND);
	CHECK_STR(E.message, "run 'r_nope' not found");
	FAILS(uh_store_run_create(s, r, NULL, NULL, NULL, AUD("run.create", r->id), &ex, &E), UH_E_CONFLICT);
	struct uh_run *bad = mk_run("j_nope", pid, UH_RUN_QUEUED);
	FAILS(uh_store_run_create(s, bad, NULL, NULL, NULL, AUD("run.create", bad->id), &ex, &E), UH_E_NOT_FOUND);
	bad->status = UH_RUN_RUNNING;
	FAILS(uh_store_run_create(s, bad, NULL, NULL, NULL, AUD("run.create", bad->id), &ex, &E), UH_E_INTERNAL);
	uh_run_free(bad);

	/* archive refused while a run is queued */
	FAILS(uh_store_job_archive(s, jid, AUD("job.archive", jid), &E), UH_E_CONFLICT);
	FAILS(uh_store_project_archive(s, pid, AUD("project.archive", pid), &E), UH_E_CONFLICT);
	OK(uh_store_job_get(s, jid, &v, &E)); /* nothing written */
	json_decref(v);

	/* idempotency */
	struct uh_run *i1 = mk_run(jid, pid, UH_RUN_PENDING_APPROVAL), *i2 = mk_run(jid, pid, UH_RUN_QUEUED);
	OK(uh_store_run_create(s, i1, "u_req", "key-1", "hash-a", AUD("run.create", i1->id), &ex, &E));
	CHECK(ex == NULL);
	int64_t ev_before = audit_events(s);
	OK(uh_store_run_create(s, i2, "u_req", "key-1", "hash-a", AUD("run.create", i2->id), &ex, &E));
	CHECK(ex != NULL);
	if (ex) {
		CHECK_STR(ex->id, i1->id);
		CHECK(ex->status == UH_RUN_PENDING_APPROVAL);
	}
	uh_run_free(ex);
	FAILS(uh_store_run_get(s, i2->id, &got, &E), UH_E_NOT_FOUND);
	CHECK(audit_events(s) == ev_before);
	FAILS(uh_store_run_create(s, i2, "u_req", "key-1", "hash-b", AUD("run.create", i2->id), &ex, &E),
	      UH_E_CONFLICT);
	CHECK(ex == NULL);
	/* another user's key is another key */
	OK(uh_store_run_create(s, i2, "u_other", "key-1", "hash-b", AUD("run.create", i2->id), &ex, &E));
	CHECK(ex == NULL);
	uh_run_free(i2);

	/* transitions */
	struct uh_run_update up = {.from = UH_RUN_PENDING_APPROVAL, .to = UH_RUN_RUNNING};
	FAILS(uh_store_run_transition(s, r->id, &up, AUD("run.transition", r->id), &E),
	      UH_E_CONFLICT); /* not allowed */
	ev_before = audit_events(s);
	up = (struct uh_run_update){.from = UH_RUN_RUNNING, .to = UH_RUN_SUCCEEDED, .reason = "exit_code"};
	FAILS(uh_store_run_transition(s, r->id, &up, AUD("run.transition", r->id), &E),
	      UH_E_CONFLICT); /* it is queued */
	CHECK(strstr(E.message, "'queued'") != NULL);
	FAILS(uh_store_run_transition(s, "r_nope", &up, AUD("run.transition", NULL), &E), UH_E_NOT_FOUND);
	CHECK(audit_events(s) == ev_before);
	OK(uh_store_run_get(s, r->id, &got, &E));
	CHECK(got->status == UH_RUN_QUEUED && got->reason == NULL);
	uh_run_free(got);

	int64_t t0 = uh_now_us();
	up = (struct uh_run_update){.from = UH_RUN_QUEUED, .to = UH_RUN_RUNNING, .started_at = t0};
	OK(uh_store_run_transition(s, r->id, &up, AUD("run.transition", r->id), &E));
	CHECK(audit_events(s) == ev_before + 1);
	OK(uh_store_run_set_external_id(s, r->id, "pid:1234", &E));
	FAILS(uh_store_run_set_external_id(s, "r_nope", "x", &E), UH_E_NOT_FOUND);
	OK(uh_store_run_request_cancel(s, r->id, "u_canceler", AUD("run.cancel", r->id), &E));
	json_t *c1 = json_pack("{s:s, s:s}", "by", "u_a", "comment", "first");
	up = (struct uh_run_update){.from = UH_RUN_RUNNING,
	                            .to = UH_RUN_CANCELED,
	                            .reason = "canceled",
	                            .message = "canceled by u_canceler",
	                            .finished_at = t0 + 5,
	                            .set_exit_code = true,
	                            .exit_code = 143,
	                            .comment = c1,
	                            .log_truncated = true};
	OK(uh_store_run_transition(s, r->id, &up, AUD("run.transition", r->id), &E));
	json_decref(c1);
	OK(uh_store_run_get(s, r->id, &got, &E));
	CHECK(got->status == UH_RUN_CANCELED);
	CHECK_STR(got->reason, "canceled");
	CHECK_STR(got->message, "canceled by u_canceler");
	CHECK(got->started_at == t0 && got->finished_at == t0 + 5);
	CHECK(got->has_exit_code && got->exit_code == 143);
	CHECK_STR(got->external_id, "pid:1234");
	CHECK_STR(got->canceled_by, "u_canceler");
	CHECK(got->cancel_requested && got->log_truncated);
	CHECK(json_array_size(got->comments) == 1);
	CHECK_STR(json_string_value(json_object_get(json_array_get(got->comments, 0), "comment")), "first");
	json_t *rj = uh_run_to_json(got);
	CHECK_STR(sget(rj, "status"), "canceled");
	CHECK_STR(sget(rj, "external_id"), "pid:1234");
	json_decref(rj);
	uh_run_free(got);
	FAILS(uh_store_run_request_cancel(s, r->id, "u_x", AUD("run.cancel", r->id), &E), UH_E_CONFLICT);
	FAILS(uh_store_run_request_cancel(s, "r_nope", "u_x", AUD("run.cancel", NULL), &E), UH_E_NOT_FOUND);

	/* approval with comments appended in order */
	json_t *c2 = json_pack("{s:s, s:s}", "by", "u_appr", "comment", "ok");
	up = (struct uh_run_update){
	    .from = UH_RUN_PENDING_APPROVAL, .to = UH_RUN_QUEUED, .approved_by = "u_appr", .comment = c2};
	OK(uh_store_run_transition(s, i1->id, &up, AUD("run.approve", i1->id), &E));
	up.from = UH_RUN_QUEUED;
	up.to = UH_RUN_PENDING_APPROVAL;
	up.approved_by = NULL;
	OK(uh_store_run_transition(s, i1->id, &up, AUD("run.approval_void", i1->id), &E));
	json_decref(c2);
	OK(uh_store_run_get(s, i1->id, &got, &E));
	CHECK(got->status == UH_RUN_PENDING_APPROVAL);
	CHECK_STR(got->approved_by, "u_appr");
	CHECK(json_array_size(got->comments) == 2);
	uh_run_free(got);

	/* lists and filters */
	OK(uh_store_run_list(s, NULL, 10, NULL, &items, next, &E));
	CHECK(json_array_size(items) == 3);
	json_decref(items);
	struct uh_run_filter flt = {.job_id = jid, .status = -1};
	OK(uh_store_run_list(s, &flt, 10, NULL, &items, next, &E));
	CHECK(json_array_size(items) == 3);
	CHECK_STR(sget(json_array_get(items, 2), "id"), r->id); /* oldest last */
	json_decref(items);
	flt = (struct uh_run_filter){.project_id = pid2, .status = -1};
	OK(uh_store_run_list(s, &flt, 10, NULL, &items, next, &E));
	CHECK(json_array_size(items) == 0);
	json_decref(items);
	flt = (struct uh_run_filter){.status = UH_RUN_CANCELED};
	OK(uh_store_run_list(s, &flt, 10, NULL, &items, next, &E));
	CHECK(json_array_size(items) == 1);
	json_decref(items);
	json_t *mu = NULL, *mm = NULL;
	OK(uh_store_user_create(s, "dave", "viewer", AUD("user.create", NULL), &mu, &E));
	flt = (struct uh_run_filter){.status = -1, .member_user_id = sget(mu, "id")};
	OK(uh_store_run_list(s, &flt, 10, NULL, &items, next, &E));
	CHECK(json_array_size(items) == 0);
	json_decref(items);
	OK(uh_store_member_add(s, pid, sget(mu, "id"), AUD("member.add", pid), &mm, &E));
	json_decref(mm);
	OK(uh_store_run_list(s, &flt, 2, NULL, &items, next, &E));
	CHECK(json_array_size(items) == 2 && next[0]);
	json_decref(items);
	char cur[UH_CURSOR_MAX];
	memcpy(cur, next, sizeof(cur));
	OK(uh_store_run_list(s, &flt, 2, cur, &items, next, &E));
	CHECK(json_array_size(items) == 1);
	CHECK_STR(next, "");
	json_decref(items);
	json_decref(mu);

	struct uh_run **rs = NULL;
	size_t n = 0;
	struct uh_run *q1 = mk_run(jid, pid, UH_RUN_QUEUED), *q2 = mk_run(jid, pid, UH_RUN_QUEUED);
	OK(uh_store_run_create(s, q1, NULL, NULL, NULL, AUD("run.create", q1->id), &ex, &E));
	OK(uh_store_run_create(s, q2, NULL, NULL, NULL, AUD("run.create", q2->id), &ex, &E));
	OK(uh_store_runs_in_status(s, UH_RUN_QUEUED, 10, &rs, &n, &E));
	CHECK(n == 3); /* i2 (other user's key), q1, q2: oldest first */
	if (n == 3) {
		CHECK_STR(rs[1]->id, q1->id);
		CHECK_STR(rs[2]->id, q2->id);
	}
	uh_store_runs_free(rs, n);
	OK(uh_store_runs_in_status(s, UH_RUN_QUEUED, 1, &rs, &n, &E));
	CHECK(n == 1);
	uh_store_runs_free(rs, n);

	/* cancel a queued run, then everything of the job can end */
	up = (struct uh_run_update){.from = UH_RUN_QUEUED, .to = UH_RUN_CANCELED, .reason = "canceled"};
	OK(uh_store_run_transition(s, q1->id, &up, AUD("run.transition", q1->id), &E));
	OK(uh_store_run_transition(s, q2->id, &up, AUD("run.transition", q2->id), &E));
	OK(uh_store_runs_in_status(s, UH_RUN_QUEUED, 10, &rs, &n, &E));
	for (size_t i = 0; i < n; i++)
		OK(uh_store_run_transition(s, rs[i]->id, &up, AUD("run.transition", rs[i]->id), &E));
	uh_store_runs_free(rs, n);
	up = (struct uh_run_update){.from = UH_RUN_PENDING_APPROVAL, .to = UH_RUN_REJECTED, .rejected_by = "u_appr"};
	OK(uh_store_run_transition(s, i1->id, &up, AUD("run.reject", i1->id), &E));

	/* archive: job first, name freed */
	OK(uh_store_job_archive(s, jid, AUD("job.archive", jid), &E));
	FAILS(uh_store_job_get(s, jid, &v, &E), UH_E_NOT_FOUND);
	FAILS(uh_store_job_archive(s, jid, AUD("job.archive", jid), &E), UH_E_NOT_FOUND);
	OK(uh_store_run_get(s, r->id, &got, &E)); /* its runs stay */
	uh_run_free(got);
	json_t *j3 = NULL;
	OK(uh_store_job_create(s, pid, jf, &ja, &j3, &E));
	CHECK(strcmp(sget(j3, "id"), jid) != 0);

	/* project archive: hidden, name freed, its jobs go with it */
	OK(uh_store_project_archive(s, pid, AUD("project.archive", pid), &E));
	FAILS(uh_store_project_get(s, pid, &v, &E), UH_E_NOT_FOUND);
	FAILS(uh_store_project_find(s, "ops", &v, &E), UH_E_NOT_FOUND);
	FAILS(uh_store_job_get(s, sget(j3, "id"), &v, &E), UH_E_NOT_FOUND);
	FAILS(uh_store_project_archive(s, pid, AUD("project.archive", pid), &E), UH_E_NOT_FOUND);
	json_t *p3 = NULL;
	OK(uh_store_project_create(s, pf, AUD("project.create", NULL), &p3, &E));
	CHECK(strcmp(sget(p3, "id"), pid) != 0);

	/* counts for /metrics */
	struct counts cn = {0};
	OK(uh_store_run_counts(s, count_cb, &cn, &E));
	CHECK(cn.canceled == 4);
	CHECK(cn.rejected == 1);
	CHECK(cn.total == 5);

	json_decref(p3);
	json_decref(j3);
	uh_run_free(q1);
	uh_run_free(q2);
	uh_run_free(i1);
	uh_run_free(r);
	json_decref(j2);
	json_decref(j);
	json_decref(jf);
	json_decref(p);
	json_decref(p2);
	json_decref(pf);
	json_decref(pf2);
}

/* ---- logs ---- */

struct collected {
	int n;
	int64_t off[16];
	size_t len[16];
	int stream[16];
	char text[256];
	int stop_after;
};

static int collect(void *arg, const struct uh_log_chunk *c)
{
	struct collected *k = arg;
	if (k->n < 16) {
		k->off[k->n] = c->offset;
		k->len[k->n] = c->len;
		k->stream[k->n] = c->stream;
	}
	k->n++;
	strncat(k->text, c->data,
	        c->len < sizeof(k->text) - strlen(k->text) - 1 ? c->len : sizeof(k->text) - strlen(k->text) - 1);
	return k->stop_after && k->n >= k->stop_after;
}

static void test_logs(struct uh_store *s)
{
	const char *run = "r_logs";
	int64_t t = uh_now_us();
	struct uh_log_chunk ch[] = {
	    {run, 0, t, 1, "0123456789", 10},
	    {run, 10, t + 1, 2, "abcdefghij", 10},
	    /* 20..50 dropped by the cap */
	    {run, 50, t + 2, 1, "KLMNOPQRST", 10},
	    {run, 60, t + 3, 3, "uvwxy", 5},
	    {"r_other", 0, t, 1, "zzz", 3},
	};
	OK(uh_store_log_write(s, ch, 5, NULL, 0, &E));
	int64_t end = -1;
	OK(uh_store_log_end(s, run, &end, &E));
	CHECK(end == 65);
	OK(uh_store_log_end(s, "r_none", &end, &E));
	CHECK(end == 0);

	struct collected k = {0};
	OK(uh_store_log_read(s, run, 0, 1 << 20, collect, &k, &E));
	CHECK(k.n == 4);
	CHECK(k.off[0] == 0 && k.off[1] == 10 && k.off[2] == 50 && k.off[3] == 60);
	CHECK(k.stream[1] == 2 && k.stream[3] == 3);
	CHECK_STR(k.text, "0123456789abcdefghijKLMNOPQRSTuvwxy");

	/* mid-chunk resume: the chunk holding 15 comes first */
	memset(&k, 0, sizeof(k));
	OK(uh_store_log_read(s, run, 15, 1 << 20, collect, &k, &E));
	CHECK(k.n == 3 && k.off[0] == 10);
	/* exactly at a chunk start */
	memset(&k, 0, sizeof(k));
	OK(uh_store_log_read(s, run, 10, 1 << 20, collect, &k, &E));
	CHECK(k.n == 3 && k.off[0] == 10);
	/* inside the gap: the next chunk after it */
	memset(&k, 0, sizeof(k));
	OK(uh_store_log_read(s, run, 20, 1 << 20, collect, &k, &E));
	CHECK(k.n == 2 && k.off[0] == 50);
	memset(&k, 0, sizeof(k));
	OK(uh_store_log_read(s, run, 55, 1 << 20, collect, &k, &E));
	CHECK(k.n == 2 && k.off[0] == 50);
	/* past the end */
	memset(&k, 0, sizeof(k));
	OK(uh_store_log_read(s, run, 65, 1 << 20, collect, &k, &E));
	CHECK(k.n == 0);
	/* max_bytes bounds the answer, at least one chunk */
	memset(&k, 0, sizeof(k));
	OK(uh_store_log_read(s, run, 0, 15, collect, &k, &E));
	CHECK(k.n == 1);
	memset(&k, 0, sizeof(k));
	OK(uh_store_log_read(s, run, 0, 20, collect, &k, &E));
	CHECK(k.n == 2);
	memset(&k, 0, sizeof(k));
	OK(uh_store_log_read(s, run, 0, 0, collect, &k, &E));
	CHECK(k.n == 1);
	/* the callback stops early */
	memset(&k, 0, sizeof(k));
	k.stop_after = 2;
	OK(uh_store_log_read(s, run, 0, 1 << 20, collect, &k, &E));
	CHECK(k.n == 2);

	/* drops and a re-write of the same offset in one batch */
	struct uh_log_drop d[] = {{run, 10, 50}};
	struct uh_log_chunk again[] = {{run, 60, t + 4, 1, "VWXYZ", 5}, {run, 65, t + 5, 1, "", 0}};
	OK(uh_store_log_write(s, again, 2, d, 1, &E));
	memset(&k, 0, sizeof(k));
	OK(uh_store_log_read(s, run, 0, 1 << 20, collect, &k, &E));
	CHECK(k.n == 4);
	CHECK(k.off[1] == 50 && k.off[3] == 65 && k.len[3] == 0);
	CHECK_STR(k.text, "0123456789KLMNOPQRSTVWXYZ");
	OK(uh_store_log_end(s, run, &end, &E));
	CHECK(end == 65);
	/* other runs untouched */
	memset(&k, 0, sizeof(k));
	OK(uh_store_log_read(s, "r_other", 0, 100, collect, &k, &E));
	CHECK(k.n == 1);
	/* binary data survives */
	struct uh_log_chunk bin[] = {{"r_bin", 0, t, 1, "a\0b\xff", 4}};
	OK(uh_store_log_write(s, bin, 1, NULL, 0, &E));
	memset(&k, 0, sizeof(k));
	OK(uh_store_log_read(s, "r_bin", 0, 100, collect, &k, &E));
	CHECK(k.n == 1 && k.len[0] == 4);
}

/* ---- audit ---- */

static void test_audit_list(struct uh_store *s)
{
	json_t *d = json_pack("{s:s, s:i}", "z", "last", "a", 1);
	struct uh_audit_in a = {.actor = "u_aud", .action = "audit.test", .target = "x_1", .details = d};
	OK(uh_store_audit_append(s, &a, &E));
	a.target = "x_2";
	a.details = NULL;
	OK(uh_store_audit_append(s, &a, &E));
	a.target = NULL;
	OK(uh_store_audit_append(s, &a, &E));
	json_decref(d);

	json_t *items = NULL;
	char next[UH_CURSOR_MAX];
	OK(uh_store_audit_list(s, NULL, "u_aud", NULL, 10, NULL, &items, next, &E));
	CHECK(json_array_size(items) == 3);
	json_t *e0 = json_array_get(items, 0), *e2 = json_array_get(items, 2);
	CHECK(json_is_null(json_object_get(e0, "target")));
	CHECK(json_is_object(json_object_get(e0, "details")) && json_object_size(json_object_get(e0, "details")) == 0);
	CHECK_STR(sget(e2, "target"), "x_1");
	CHECK_STR(json_string_value(json_object_get(json_object_get(e2, "details"), "z")), "last");
	CHECK(json_integer_value(json_object_get(e0, "seq")) == json_integer_value(json_object_get(e2, "seq")) + 2);
	CHECK_STR(sget(json_array_get(items, 1), "prev"), sget(e2, "hash"));
	CHECK(strlen(sget(e0, "hash")) == 64);
	CHECK(json_is_string(json_object_get(e0, "at")));
	CHECK(json_object_size(e0) == 8);
	json_decref(items);

	OK(uh_store_audit_list(s, NULL, NULL, "x_2", 10, NULL, &items, next, &E));
	CHECK(json_array_size(items) == 1);
	json_decref(items);
	OK(uh_store_audit_list(s, "2000-01-01T00:00:00Z", "u_aud", NULL, 2, NULL, &items, next, &E));
	CHECK(json_array_size(items) == 2 && next[0]);
	json_decref(items);
	char cur[UH_CURSOR_MAX];
	memcpy(cur, next, sizeof(cur));
	OK(uh_store_audit_list(s, NULL, "u_aud", NULL, 2, cur, &items, next, &E));
	CHECK(json_array_size(items) == 1 && !next[0]);
	json_decref(items);
	OK(uh_store_audit_list(s, "2999-01-01T00:00:00Z", NULL, NULL, 10, NULL, &items, next, &E));
	CHECK(json_array_size(items) == 0);
	json_decref(items);
	FAILS(uh_store_audit_list(s, "yesterday", NULL, NULL, 10, NULL, &items, next, &E), UH_E_INVALID_REQUEST);
	CHECK_STR(E.field, "since");

	/* Details are stored canonically: compact, sorted keys. */
	json_t *v = NULL;
	OK(uh_store_audit_verify(s, &v, &E));
	CHECK(json_is_true(json_object_get(v, "ok")));
	json_decref(v);
}

/* A fresh store in its own directory holding `n` events (plus users). */
static void make_chain(char dir[256], int n)
{
	new_dir(dir);
	struct uh_store *s = open_in(dir);
	for (int i = 0; i < n; i++) {
		json_t *d = json_pack("{s:i, s:s}", "i", i, "note", "event");
		struct uh_audit_in a = {.actor = "u_admin", .action = "test.event", .target = "x", .details = d};
		OK(uh_store_audit_append(s, &a, &E));
		json_decref(d);
	}
	uh_store_close(s);
}

static void expect_broken(const char *dir, int64_t at, const char *what)
{
	struct uh_store *s = open_in(dir);
	json_t *v = NULL;
	OK(uh_store_audit_verify(s, &v, &E));
	bool ok = json_is_true(json_object_get(v, "ok"));
	int64_t b = json_integer_value(json_object_get(v, "broken_at"));
	if (ok || b != at)
		fprintf(stderr, "tamper '%s': ok=%d broken_at=%" PRId64 " (expected %" PRId64 "): %s\n", what, ok, b,
		        at, sget(v, "problem") ? sget(v, "problem") : "");
	CHECK(!ok);
	CHECK(b == at);
	CHECK(json_is_string(json_object_get(v, "problem")));
	json_decref(v);
	uh_store_close(s);
}

/* The canonical text of core/audit.c, hashed with plain SHA-256: what a
 * forger without the key would write. */
static void forge_plain(sqlite3 *db, int64_t from)
{
	sqlite3_stmt *st = NULL;
	sqlite3_prepare_v2(db, "SELECT seq, at, actor, action, target, details FROM audit WHERE seq >= ? ORDER BY seq",
	                   -1, &st, NULL);
	sqlite3_bind_int64(st, 1, from);
	char prev[65];
	{
		sqlite3_stmt *p = NULL;
		sqlite3_prepare_v2(db, "SELECT hash FROM audit WHERE seq = ?", -1, &p, NULL);
		sqlite3_bind_int64(p, 1, from - 1);
		if (sqlite3_step(p) == SQLITE_ROW)
			snprintf(prev, sizeof(prev), "%s", (const char *)sqlite3_column_text(p, 0));
		else
			snprintf(prev, sizeof(prev), "%s", UH_AUDIT_GENESIS);
		sqlite3_finalize(p);
	}
	struct upd {
		int64_t seq;
		char prev[65], hash[65];
	} u[64];
	int n = 0;
	while (sqlite3_step(st) == SQLITE_ROW && n < 64) {
		struct uh_buf b = UH_BUF_INIT(0);
		uh_buf_printf(&b, "uhub-audit-v1\n%" PRId64 "\n%" PRId64 "\n", (int64_t)sqlite3_column_int64(st, 0),
		              (int64_t)sqlite3_column_int64(st, 1));
		for (int c = 2; c <= 5; c++) {
			const char *f = (const char *)sqlite3_column_text(st, c);
			uh_buf_printf(&b, "%zu:%s\n", strlen(f), f);
		}
		uh_buf_printf(&b, "%zu:%s\n", strlen(prev), prev);
		u[n].seq = sqlite3_column_int64(st, 0);
		memcpy(u[n].prev, prev, 65);
		uh_sha256_hex(b.data, b.len, u[n].hash);
		memcpy(prev, u[n].hash, 65);
		uh_buf_free(&b);
		n++;
	}
	sqlite3_finalize(st);
	for (int i = 0; i < n; i++) {
		char sql[300];
		snprintf(sql, sizeof(sql), "UPDATE audit SET prev = '%s', hash = '%s' WHERE seq = %" PRId64, u[i].prev,
		         u[i].hash, u[i].seq);
		raw_exec(db, sql);
	}
}

static void test_audit_tamper(void)
{
	char dir[256];

	/* intact */
	make_chain(dir, 8);
	struct uh_store *s = open_in(dir);
	json_t *v = NULL;
	OK(uh_store_audit_verify(s, &v, &E));
	CHECK(json_is_true(json_object_get(v, "ok")));
	CHECK(json_integer_value(json_object_get(v, "events")) == 8);
	CHECK(json_object_get(v, "broken_at") == NULL);
	json_decref(v);
	uh_store_close(s);

	/* an edited details field */
	make_chain(dir, 8);
	sqlite3 *db = raw_open(dir);
	raw_exec(db, "UPDATE audit SET details = '{\"i\":3,\"note\":\"edited\"}' WHERE seq = 4");
	sqlite3_close(db);
	expect_broken(dir, 4, "edit details");

	/* an edited actor, the hash recomputed with plain SHA-256 (no key) */
	make_chain(dir, 8);
	db = raw_open(dir);
	raw_exec(db, "UPDATE audit SET actor = 'u_someone_else' WHERE seq = 5");
	forge_plain(db, 5);
	sqlite3_close(db);
	expect_broken(dir, 5, "plain sha256");

	/* a deleted row */
	make_chain(dir, 8);
	db = raw_open(dir);
	raw_exec(db, "DELETE FROM audit WHERE seq = 3");
	sqlite3_close(db);
	expect_broken(dir, 3, "delete row");

	/* two rows' contents swapped */
	make_chain(dir, 8);
	db = raw_open(dir);
	raw_exec(db, "CREATE TEMP TABLE t AS SELECT * FROM audit WHERE seq IN (3, 6);"
	             "UPDATE audit SET (at, actor, action, target, details, prev, hash) = "
	             "(SELECT at, actor, action, target, details, prev, hash FROM t WHERE t.seq = 6) WHERE seq = 3;"
	             "UPDATE audit SET (at, actor, action, target, details, prev, hash) = "
	             "(SELECT at, actor, action, target, details, prev, hash FROM t WHERE t.seq = 3) WHERE seq = 6;");
	sqlite3_close(db);
	expect_broken(dir, 3, "swap rows");

	/* the last rows deleted: cut off, caught by the head file */
	make_chain(dir, 8);
	db = raw_open(dir);
	raw_exec(db, "DELETE FROM audit WHERE seq > 6");
	sqlite3_close(db);
	expect_broken(dir, 7, "cut off");
	/* ... and stays caught after new events are appended */
	s = open_in(dir);
	OK(uh_store_audit_append(s, AUD("after.cut", NULL), &E));
	OK(uh_store_audit_append(s, AUD("after.cut", NULL), &E));
	OK(uh_store_audit_verify(s, &v, &E));
	CHECK(json_is_false(json_object_get(v, "ok")));
	CHECK(json_integer_value(json_object_get(v, "broken_at")) == 8);
	json_decref(v);
	uh_store_close(s);

	/* cut off while the store is open: the process remembers its last event */
	make_chain(dir, 8);
	s = open_in(dir);
	db = raw_open(dir);
	raw_exec(db, "DELETE FROM audit WHERE seq = 8");
	sqlite3_close(db);
	OK(uh_store_audit_verify(s, &v, &E));
	CHECK(json_is_false(json_object_get(v, "ok")));
	CHECK(json_integer_value(json_object_get(v, "broken_at")) == 8);
	json_decref(v);
	uh_store_close(s);

	/* the whole chain rewritten with plain SHA-256 from the start */
	make_chain(dir, 8);
	db = raw_open(dir);
	forge_plain(db, 1);
	sqlite3_close(db);
	expect_broken(dir, 1, "rewrite all");

	/* a head file overwritten with garbage */
	make_chain(dir, 8);
	{
		char hp[300];
		snprintf(hp, sizeof(hp), "%s/audit.head", dir);
		FILE *f = fopen(hp, "w");
		fputs("garbage\n", f);
		fclose(f);
	}
	expect_broken(dir, 9, "head garbage");

	/* A head one event behind (a kill between COMMIT and the head write)
	 * is not a break. */
	make_chain(dir, 8);
	db = raw_open(dir);
	char head[300], h7[65];
	{
		sqlite3_stmt *st = NULL;
		sqlite3_prepare_v2(db, "SELECT hash FROM audit WHERE seq = 7", -1, &st, NULL);
		sqlite3_step(st);
		snprintf(h7, sizeof(h7), "%s", (const char *)sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	snprintf(head, sizeof(head), "%s/audit.head", dir);
	struct uh_audit_head hd;
	OK(uh_audit_head_open(&hd, head, &E));
	OK(uh_audit_head_write(&hd, 7, h7));
	uh_audit_head_close(&hd);
	s = open_in(dir);
	OK(uh_store_audit_verify(s, &v, &E));
	CHECK(json_is_true(json_object_get(v, "ok")));
	json_decref(v);
	uh_store_close(s);
	int64_t hseq = 0;
	char hh[65];
	OK(uh_audit_head_read(head, &hseq, hh, &E));
	CHECK(hseq == 8); /* brought up to date at open */
}

/* Two handles on one file (a second process by mistake): appends chain
 * onto the real tail, the chain stays whole. */
static void test_two_handles(void)
{
	char dir[256];
	new_dir(dir);
	struct uh_store *a = open_in(dir), *b = open_in(dir);
	OK(uh_store_audit_append(a, AUD("one", NULL), &E));
	OK(uh_store_audit_append(b, AUD("two", NULL), &E));
	OK(uh_store_audit_append(a, AUD("three", NULL), &E));
	json_t *v = NULL;
	OK(uh_store_audit_verify(a, &v, &E));
	CHECK(json_is_true(json_object_get(v, "ok")));
	CHECK(json_integer_value(json_object_get(v, "events")) == 3);
	json_decref(v);
	uh_store_close(b);
	uh_store_close(a);
}

/* ---- concurrency and throughput ---- */

struct worker {
	struct uh_store *s;
	const char *job_id, *project_id;
	int id, errors;
};

static void *work(void *p)
{
	struct worker *w = p;
	struct uh_error err;
	for (int i = 0; i < 40; i++) {
		struct uh_run *r = mk_run(w->job_id, w->project_id, UH_RUN_QUEUED), *ex = NULL;
		struct uh_audit_in a = {.actor = "system", .action = "run.create", .target = r->id};
		if (uh_store_run_create(w->s, r, NULL, NULL, NULL, &a, &ex, &err))
			w->errors++;
		struct uh_run_update u = {.from = UH_RUN_QUEUED, .to = UH_RUN_RUNNING, .started_at = uh_now_us()};
		a.action = "run.transition";
		if (uh_store_run_transition(w->s, r->id, &u, &a, &err))
			w->errors++;
		struct uh_log_chunk ch[50];
		char line[64];
		int len = snprintf(line, sizeof(line), "worker %d run %d line\n", w->id, i);
		for (int b = 0; b < 4; b++) {
			for (int k = 0; k < 50; k++)
				ch[k] = (struct uh_log_chunk){
				    r->id, (int64_t)(b * 50 + k) * len, uh_now_us(), 1, line, (size_t)len};
			if (uh_store_log_write(w->s, ch, 50, NULL, 0, &err))
				w->errors++;
		}
		struct uh_run *g = NULL;
		if (uh_store_run_get(w->s, r->id, &g, &err) || g->status != UH_RUN_RUNNING)
			w->errors++;
		uh_run_free(g);
		u = (struct uh_run_update){
		    .from = UH_RUN_RUNNING, .to = UH_RUN_SUCCEEDED, .finished_at = uh_now_us(), .set_exit_code = true};
		if (uh_store_run_transition(w->s, r->id, &u, &a, &err))
			w->errors++;
		/* the same transition again loses: nothing written */
		if (uh_store_run_transition(w->s, r->id, &u, &a, &err) != UH_E_CONFLICT)
			w->errors++;
		int64_t end = 0;
		if (uh_store_log_end(w->s, r->id, &end, &err) || end != 200 * len)
			w->errors++;
		uh_run_free(r);
	}
	return NULL;
}

static void test_concurrency(void)
{
	char dir[256];
	new_dir(dir);
	struct uh_store *s = open_in(dir);
	json_t *pf = project_fields("conc"), *p = NULL, *jf = job_fields("j"), *j = NULL;
	OK(uh_store_project_create(s, pf, AUD("project.create", NULL), &p, &E));
	OK(uh_store_job_create(s, sget(p, "id"), jf, AUD("job.create", NULL), &j, &E));
	struct worker w[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){.s = s, .job_id = sget(j, "id"), .project_id = sget(p, "id"), .id = i};
		pthread_create(&th[i], NULL, work, &w[i]);
	}
	int errors = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		errors += w[i].errors;
	}
	CHECK(errors == 0);
	struct uh_run **rs = NULL;
	size_t n = 0;
	OK(uh_store_runs_in_status(s, UH_RUN_SUCCEEDED, 0, &rs, &n, &E));
	CHECK(n == 160);
	uh_store_runs_free(rs, n);
	json_t *v = NULL;
	OK(uh_store_audit_verify(s, &v, &E));
	CHECK(json_is_true(json_object_get(v, "ok")));
	CHECK(json_integer_value(json_object_get(v, "events")) == 2 + 160 * 3);
	json_decref(v);
	json_decref(pf);
	json_decref(jf);
	json_decref(p);
	json_decref(j);
	uh_store_close(s);
}

static void throughput(void)
{
	char dir[256];
	new_dir(dir);
	struct uh_store *s = open_in(dir);
	enum { BATCH = 1000, BATCHES = 200 };
	static struct uh_log_chunk ch[BATCH];
	const char *line = "2026-01-01T00:00:00Z INFO something happened in the job, step 42 of 100, ok\n";
	size_t len = strlen(line);
	int64_t t0 = uh_mono_us(), off = 0;
	for (int b = 0; b < BATCHES; b++) {
		for (int i = 0; i < BATCH; i++, off += (int64_t)len)
			ch[i] = (struct uh_log_chunk){"r_bench", off, uh_now_us(), 1, line, len};
		OK(uh_store_log_write(s, ch, BATCH, NULL, 0, &E));
	}
	double secs = (double)(uh_mono_us() - t0) / 1e6;
	fprintf(stderr, "# log write: %d chunks of %zu bytes, %d per write: %.0f chunks/s\n", BATCH * BATCHES, len,
	        BATCH, BATCH * BATCHES / secs);
	/* and the hot reads */
	struct uh_run *r = NULL;
	json_t *pf = project_fields("bench"), *p = NULL, *jf = job_fields("j"), *j = NULL;
	OK(uh_store_project_create(s, pf, AUD("project.create", NULL), &p, &E));
	OK(uh_store_job_create(s, sget(p, "id"), jf, AUD("job.create", NULL), &j, &E));
	struct uh_run *one = mk_run(sget(j, "id"), sget(p, "id"), UH_RUN_QUEUED), *ex = NULL;
	OK(uh_store_run_create(s, one, NULL, NULL, NULL, AUD("run.create", one->id), &ex, &E));
	t0 = uh_mono_us();
	for (int i = 0; i < 20000; i++) {
		uh_store_run_get(s, one->id, &r, &E);
		uh_run_free(r);
	}
	secs = (double)(uh_mono_us() - t0) / 1e6;
	fprintf(stderr, "# run get: %.1f us each\n", secs * 1e6 / 20000);
	uh_run_free(one);
	json_decref(pf);
	json_decref(jf);
	json_decref(p);
	json_decref(j);
	uh_store_close(s);
}

static void rm_rf(const char *root)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", root);
}

int main(void)
{
	umask(022);
	snprintf(tmproot, sizeof(tmproot), "/tmp/uh-test-store-XXXXXX");
	if (!mkdtemp(tmproot)) {
		perror("mkdtemp");
		return 1;
	}
	test_open();

	char dir[256];
	new_dir(dir);
	struct uh_store *s = open_in(dir);
	if (s) {
		test_users_tokens(s);
		test_user_pages(s);
		test_projects(s);
		test_jobs_runs(s);
		test_logs(s);
		test_audit_list(s);
		json_t *v = NULL;
		OK(uh_store_audit_verify(s, &v, &E));
		CHECK(json_is_true(json_object_get(v, "ok")));
		json_decref(v);
		/* No token value anywhere in the file: only hashes. */
		uh_store_close(s);
		char p[300];
		snprintf(p, sizeof(p), "grep -qa 'token-one' %s/uhub.db", dir);
		CHECK(system(p) != 0);
	}
	test_audit_tamper();
	test_two_handles();
	test_concurrency();
	throughput();
	rm_rf(tmproot);
	return uh_tap_done();
}
