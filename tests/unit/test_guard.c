/* Guardrails below the API: the store's exceptions and approvals (SQLite),
 * the approval hash and the self-approval rules (core/approval.c), and the
 * trigger/dispatch decisions with and without a live exception. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/approval.h"
#include "core/jobspec.h"
#include "store/store.h"
#include "tap.h"
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

static const char *sget(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* A run of job in project as the trigger snapshots it. */
static struct uh_run *snapshot(const json_t *project, const json_t *job, int status)
{
	struct uh_run *r = uh_run_new();
	uh_id_new("r_", r->id);
	snprintf(r->job_id, sizeof(r->job_id), "%s", sget(job, "id"));
	snprintf(r->project_id, sizeof(r->project_id), "%s", sget(project, "id"));
	r->status = status;
	r->parameters = json_object();
	snprintf(r->requested_by, sizeof(r->requested_by), "u_req");
	r->created_at = uh_now_us();
	json_t *cfg = NULL;
	OK(uh_effective_config(project, job, &r->backend, &cfg, &E));
	r->effective_config = cfg;
	r->comments = json_array();
	r->spec = json_pack("{s:O,s:o,s:O,s:s}", "command", json_object_get(job, "command"), "env",
	                    uh_run_env(r->id, project, job, r->parameters), "secrets", json_object_get(job, "secrets"),
	                    "project_environment", sget(project, "environment"));
	return r;
}

static void test_store(struct uh_store *s)
{
	json_t *pf = json_pack("{s:s,s:s,s:s,s:{}}", "name", "prod1", "environment", "prod", "execution_backend",
	                       "local", "execution_backend_config");
	json_t *p = NULL, *j = NULL, *j2 = NULL, *x = NULL, *y = NULL, *items = NULL;
	OK(uh_store_project_create(s, pf, AUD("project.create", NULL), &p, &E));
	json_t *jf = json_pack("{s:s,s:[s],s:b,s:{},s:{},s:[]}", "name", "deploy", "command", "/bin/true", "critical",
	                       1, "env", "secrets", "parameters");
	OK(uh_store_job_create(s, sget(p, "id"), jf, AUD("job.create", NULL), &j, &E));
	json_object_set_new(jf, "name", json_string("other"));
	OK(uh_store_job_create(s, sget(p, "id"), jf, AUD("job.create", NULL), &j2, &E));
	const char *pid = sget(p, "id"), *jid = sget(j, "id"), *jid2 = sget(j2, "id");
	int64_t now = uh_now_us();
	char live[UH_ID_MAX], next[UH_CURSOR_MAX];

	/* Nothing covers anything yet; a missing project or foreign job is 404. */
	OK(uh_store_exception_live(s, pid, jid, now, live, &E));
	CHECK(live[0] == '\0');
	FAILS(uh_store_exception_create(s, "p_nope", NULL, "r", now + 1000000, "u_admin", AUD("exception.create", NULL),
	                                &x, &E),
	      UH_E_NOT_FOUND);
	CHECK_STR(E.field, "project_id");
	FAILS(uh_store_exception_create(s, pid, "j_nope", "r", now + 1000000, "u_admin", AUD("exception.create", NULL),
	                                &x, &E),
	      UH_E_NOT_FOUND);
	CHECK_STR(E.field, "job_id");

	/* A job exception covers that job only; a project one covers all. */
	OK(uh_store_exception_create(s, pid, jid, "job only", now + 3600000000LL, "u_admin",
	                             AUD("exception.create", NULL), &x, &E));
	CHECK_STR(sget(x, "created_by"), "u_admin");
	CHECK_STR(sget(x, "job_id"), jid);
	CHECK(json_is_true(json_object_get(x, "live")));
	OK(uh_store_exception_live(s, pid, jid, now, live, &E));
	CHECK_STR(live, sget(x, "id"));
	OK(uh_store_exception_live(s, pid, jid2, now, live, &E));
	CHECK(live[0] == '\0');
	/* expired: at its expiry it no longer counts */
	OK(uh_store_exception_live(s, pid, jid, now + 3600000000LL, live, &E));
	CHECK(live[0] == '\0');
	OK(uh_store_exception_create(s, pid, NULL, "whole project", now + 60000000LL, "u_admin",
	                             AUD("exception.create", NULL), &y, &E));
	CHECK(json_is_null(json_object_get(y, "job_id")));
	OK(uh_store_exception_live(s, pid, jid2, now, live, &E));
	CHECK_STR(live, sget(y, "id"));
	OK(uh_store_exception_list(s, 10, NULL, &items, next, &E));
	CHECK(json_array_size(items) == 2);
	CHECK_STR(sget(json_array_get(items, 0), "id"), sget(y, "id")); /* newest first */
	CHECK_STR(sget(json_array_get(items, 0), "reason"), "whole project");
	json_decref(items);

	/* Deleted: not listed, not counted, not deleted twice. */
	OK(uh_store_exception_delete(s, sget(y, "id"), "u_admin", AUD("exception.delete", sget(y, "id")), &E));
	FAILS(uh_store_exception_delete(s, sget(y, "id"), "u_admin", AUD("exception.delete", sget(y, "id")), &E),
	      UH_E_NOT_FOUND);
	OK(uh_store_exception_live(s, pid, jid2, now, live, &E));
	CHECK(live[0] == '\0');
	OK(uh_store_exception_list(s, 10, NULL, &items, next, &E));
	CHECK(json_array_size(items) == 1);
	json_decref(items);

	/* Approve records the hash; void puts it back and forgets it. */
	struct uh_run *r = snapshot(p, j, UH_RUN_PENDING_APPROVAL), *got = NULL, *ex = NULL;
	OK(uh_store_run_create(s, r, NULL, NULL, NULL, AUD("run.create", r->id), &ex, &E));
	char h[65], stored[65];
	uh_approval_hash_snapshot(r, h);
	json_t *c = json_pack("{s:s,s:s,s:s}", "by", "u_ok", "action", "approve", "comment", "fine");
	OK(uh_store_run_approve(s, r->id, "u_ok", c, h, NULL, AUD("run.approve", r->id), &E));
	FAILS(uh_store_run_approve(s, r->id, "u_ok", c, h, NULL, AUD("run.approve", r->id), &E), UH_E_CONFLICT);
	OK(uh_store_run_approval_hash(s, r->id, stored, &E));
	CHECK_STR(stored, h);
	OK(uh_store_run_get(s, r->id, &got, &E));
	CHECK(got && got->status == UH_RUN_QUEUED);
	CHECK(got && strcmp(got->approved_by, "u_ok") == 0);
	CHECK(got && json_array_size(got->comments) == 1);
	uh_run_free(got);
	OK(uh_store_run_approval_void(s, r->id, AUD("run.approval_void", r->id), &E));
	FAILS(uh_store_run_approval_void(s, r->id, AUD("run.approval_void", r->id), &E), UH_E_CONFLICT);
	OK(uh_store_run_approval_hash(s, r->id, stored, &E));
	CHECK(stored[0] == '\0');
	OK(uh_store_run_get(s, r->id, &got, &E));
	CHECK(got && got->status == UH_RUN_PENDING_APPROVAL && got->approved_by[0] == '\0');
	uh_run_free(got);

	/* An approval with a new snapshot replaces what runs. */
	struct uh_run *r2 = snapshot(p, j, UH_RUN_PENDING_APPROVAL), *fresh = snapshot(p, j2, UH_RUN_QUEUED);
	OK(uh_store_run_create(s, r2, NULL, NULL, NULL, AUD("run.create", r2->id), &ex, &E));
	json_object_set_new(fresh->effective_config, "timeout_seconds", json_integer(42));
	json_object_set_new(fresh->spec, "command", json_pack("[s,s]", "/bin/echo", "new"));
	uh_approval_hash_snapshot(fresh, h);
	OK(uh_store_run_approve(s, r2->id, "u_ok", NULL, h, fresh, AUD("run.approve", r2->id), &E));
	OK(uh_store_run_get(s, r2->id, &got, &E));
	CHECK(got && json_integer_value(json_object_get(got->effective_config, "timeout_seconds")) == 42);
	CHECK(got && json_array_size(json_object_get(got->spec, "command")) == 2);
	CHECK(got && json_array_size(got->comments) == 0);
	if (got) {
		uh_approval_hash_snapshot(got, stored);
		CHECK_STR(stored, h);
	}
	uh_run_free(got);
	uh_run_free(r2);
	uh_run_free(fresh);

	json_t *v = NULL;
	OK(uh_store_audit_verify(s, &v, &E));
	CHECK(json_is_true(json_object_get(v, "ok")));
	json_decref(v);
	json_decref(c);
	uh_run_free(r);
	json_decref(pf);
	json_decref(jf);
	json_decref(p);
	json_decref(j);
	json_decref(j2);
	json_decref(x);
	json_decref(y);
}

static int no_check(const struct uh_config *cfg, const char *backend, json_t *config, const json_t *command,
                    const json_t *env_names, struct uh_error *err)
{
	(void)cfg, (void)backend, (void)command, (void)env_names, (void)err;
	if (!json_object_get(config, "timeout_seconds"))
		json_object_set_new(config, "timeout_seconds", json_integer(3600));
	return 0;
}

static void test_core(void)
{
	struct uh_config cfg;
	uh_config_defaults(&cfg, NULL);
	json_t *p = json_pack("{s:s,s:s,s:s,s:s,s:{s:i}}", "id", "p_1", "name", "prod1", "environment", "prod",
	                      "execution_backend", "local", "execution_backend_config", "timeout_seconds", 60);
	json_t *j = json_pack("{s:s,s:s,s:s,s:[s],s:{s:s},s:{},s:s}", "id", "j_1", "project_id", "p_1", "name",
	                      "deploy", "command", "/bin/true", "env", "A", "1", "secrets", "updated_by", "u_editor");
	struct uh_run *r = snapshot(p, j, UH_RUN_PENDING_APPROVAL);
	char snap[65], now[65];
	uh_approval_hash_snapshot(r, snap);
	OK(uh_approval_hash_current(&cfg, no_check, r, p, j, now, &E));
	CHECK_STR(now, snap);
	CHECK(strlen(snap) == 64);
	/* each covered part changes it */
	const char *parts[] = {"command", "env", "secrets", "execution_backend_config"};
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		json_t *j2 = json_deep_copy(j);
		if (i == 0)
			json_object_set_new(j2, "command", json_pack("[s,s]", "/bin/echo", "x"));
		else if (i == 1)
			json_object_set_new(json_object_get(j2, "env"), "A", json_string("2"));
		else if (i == 2)
			json_object_set_new(json_object_get(j2, "secrets"), "T", json_string("TOKEN"));
		else
			json_object_set_new(j2, "execution_backend_config", json_pack("{s:i}", "timeout_seconds", 61));
		OK(uh_approval_hash_current(&cfg, no_check, r, p, j2, now, &E));
		if (strcmp(now, snap) == 0)
			fprintf(stderr, "a change of %s keeps the hash\n", parts[i]);
		CHECK(strcmp(now, snap) != 0);
		json_decref(j2);
	}
	json_object_set_new(r->parameters, "X", json_string("1"));
	uh_approval_hash_snapshot(r, now);
	CHECK(strcmp(now, snap) != 0);

	/* self rules */
	OK(uh_approval_may_decide(&cfg, "u_other", r, j, &E));
	FAILS(uh_approval_may_decide(&cfg, "u_req", r, j, &E), UH_E_FORBIDDEN);
	FAILS(uh_approval_may_decide(&cfg, "u_editor", r, j, &E), UH_E_FORBIDDEN);
	cfg.guardrails.allow_self_approval = true;
	OK(uh_approval_may_decide(&cfg, "u_req", r, j, &E));
	cfg.guardrails.allow_self_approval = false;

	/* dispatch: local in prod needs a live exception */
	FAILS(uh_guardrail_dispatch(&cfg, r, false, &E), UH_E_GUARDRAIL);
	CHECK_STR(E.field, "exception_revoked");
	OK(uh_guardrail_dispatch(&cfg, r, true, &E));
	CHECK(uh_guardrail_needs_exception("prod", "local"));
	CHECK(!uh_guardrail_needs_exception("staging", "local"));
	CHECK(!uh_guardrail_needs_exception("prod", "docker"));

	uh_run_free(r);
	json_decref(p);
	json_decref(j);
	uh_config_free(&cfg);
}

int main(void)
{
	char dir[] = "/tmp/uh-test-guard-XXXXXX";
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	char url[128], head[128];
	snprintf(url, sizeof(url), "sqlite:%s/uhub.db", dir);
	snprintf(head, sizeof(head), "%s/audit.head", dir);
	struct uh_store_options o = {.audit_key = KEY, .audit_head_path = head};
	struct uh_store *s = NULL;
	OK(uh_store_open(url, &o, &s, &E));
	if (s) {
		test_store(s);
		uh_store_close(s);
	}
	test_core();
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	return uh_tap_done();
}
