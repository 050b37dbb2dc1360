/* Unit tests of util/ and core/: error table, config parsing, quantities,
 * the run state machine, the audit hash, the job/project merge. */
#include <stdlib.h>
#include <string.h>

#include "core/audit.h"
#include "core/config.h"
#include "core/jobspec.h"
#include "core/run.h"
#include "tap.h"
#include "util/buf.h"
#include "util/json.h"
#include "util/time.h"

static int parse(const char *json, struct uh_config *cfg, struct uh_error *err)
{
	uh_config_defaults(cfg, NULL);
	return uh_config_parse(json, strlen(json), cfg, err);
}

static void test_errors(void)
{
	CHECK_STR(uh_errno_name(UH_E_PAYLOAD_TOO_LARGE), "payload_too_large");
	CHECK(uh_errno_status(UH_E_PAYLOAD_TOO_LARGE) == 413);
	CHECK(uh_errno_status(UH_E_GUARDRAIL) == 403);
	CHECK_STR(uh_errno_name(UH_E_GUARDRAIL), "guardrail");
	CHECK(uh_errno_status(UH_E_NOT_FOUND) == 404);
	CHECK(uh_errno_status(12345) == 500);
	struct uh_error e = {0};
	uh_error_set(&e, UH_E_INVALID_CONFIG, "timeout_seconds", "bad");
	uh_error_field_prefix(&e, "execution_backend_config");
	CHECK_STR(e.field, "execution_backend_config.timeout_seconds");
}

static void test_config(void)
{
	struct uh_config cfg;
	struct uh_error err = {0};
	CHECK(parse("{}", &cfg, &err) == 0);
	CHECK(cfg.guardrails.max_timeout_s == 86400);
	CHECK(cfg.local.uid_min == 61184 && cfg.local.uid_max == 65519);
	CHECK(cfg.local.allowed_executables.n == 1);
	CHECK(cfg.log_max_bytes == 16777216);
	CHECK(cfg.guardrails.max_mem_bytes == 8LL << 30);
	uh_config_free(&cfg);

	CHECK(parse("{\"lsten\": \"x\"}", &cfg, &err) == UH_E_INVALID_CONFIG);
	CHECK_STR(err.field, "lsten");
	uh_config_free(&cfg);
	CHECK(parse("{\"local\": {\"grace_seconds\": -1}}", &cfg, &err) == UH_E_INVALID_CONFIG);
	CHECK_STR(err.field, "local.grace_seconds");
	uh_config_free(&cfg);
	CHECK(parse("{\"local\": {\"uid_range\": [0, 10]}}", &cfg, &err) == UH_E_INVALID_CONFIG);
	CHECK_STR(err.field, "local.uid_range");
	uh_config_free(&cfg);
	CHECK(parse("{\"local\": {\"allowed_executables\": [\"bin/sh\"]}}", &cfg, &err) == UH_E_INVALID_CONFIG);
	CHECK_STR(err.field, "local.allowed_executables[0]");
	uh_config_free(&cfg);
	CHECK(parse("{\"docker\": {\"allowed_networks\": [\"host\"]}}", &cfg, &err) == UH_E_INVALID_CONFIG);
	uh_config_free(&cfg);
	CHECK(parse("{\"guardrails\": {\"max_cpu_limit\": \"lots\"}}", &cfg, &err) == UH_E_INVALID_CONFIG);
	CHECK_STR(err.field, "guardrails.max_cpu_limit");
	uh_config_free(&cfg);
	CHECK(parse("{\"secrets\": {\"vault\": {\"adr\": null}}}", &cfg, &err) == UH_E_INVALID_CONFIG);
	CHECK_STR(err.field, "secrets.vault.adr");
	uh_config_free(&cfg);
	CHECK(parse("{\"listen\": \"a\", \"listen\": \"b\"}", &cfg, &err) == UH_E_INVALID_CONFIG);
	uh_config_free(&cfg);
	CHECK(parse("[1]", &cfg, &err) == UH_E_INVALID_CONFIG);
	uh_config_free(&cfg);
	/* The SPEC §7 example config parses as it stands. */
	char path[4096];
	snprintf(path, sizeof(path), "%s/docs/uhub.json.example",
	         getenv("UH_SOURCE_DIR") ? getenv("UH_SOURCE_DIR") : ".");
	uh_config_defaults(&cfg, NULL);
	int r = uh_config_load(path, &cfg, &err);
	if (r)
		fprintf(stderr, "%s\n", err.message);
	CHECK(r == 0);
	uh_config_free(&cfg);
}

static void test_quantities(void)
{
	int64_t v;
	CHECK(uh_parse_cpu("500m", &v) == 0 && v == 500);
	CHECK(uh_parse_cpu("2", &v) == 0 && v == 2000);
	CHECK(uh_parse_cpu("0.5", &v) == 0 && v == 500);
	CHECK(uh_parse_cpu("-1", &v) != 0);
	CHECK(uh_parse_cpu("1x", &v) != 0);
	CHECK(uh_parse_cpu("", &v) != 0);
	CHECK(uh_parse_mem("512Mi", &v) == 0 && v == 512LL << 20);
	CHECK(uh_parse_mem("1Gi", &v) == 0 && v == 1LL << 30);
	CHECK(uh_parse_mem("100M", &v) == 0 && v == 100000000);
	CHECK(uh_parse_mem("1048576", &v) == 0 && v == 1048576);
	CHECK(uh_parse_mem("1Zi", &v) != 0);
	CHECK(uh_parse_mem("99999999999999Ti", &v) != 0);
}

static void test_state_machine(void)
{
	CHECK(uh_run_transition_allowed(UH_RUN_QUEUED, UH_RUN_RUNNING));
	CHECK(uh_run_transition_allowed(UH_RUN_PENDING_APPROVAL, UH_RUN_QUEUED));
	CHECK(uh_run_transition_allowed(UH_RUN_QUEUED, UH_RUN_PENDING_APPROVAL));
	CHECK(uh_run_transition_allowed(UH_RUN_RUNNING, UH_RUN_LOST));
	CHECK(!uh_run_transition_allowed(UH_RUN_PENDING_APPROVAL, UH_RUN_RUNNING));
	for (int t = UH_RUN_SUCCEEDED; t < UH_RUN__COUNT; t++)
		for (int to = 0; to < UH_RUN__COUNT; to++)
			CHECK(!uh_run_transition_allowed(t, to)); /* terminal never changes */
	CHECK(uh_run_status_parse("timed_out") == UH_RUN_TIMED_OUT);
	CHECK(uh_run_status_parse("nope") == -1);
	json_t *run = json_pack("{s:s,s:i}", "status", "failed", "exit_code", 3);
	CHECK(uh_run_cli_exit_status(run) == 3);
	json_object_set_new(run, "status", json_string("timed_out"));
	CHECK(uh_run_cli_exit_status(run) == 124);
	json_object_set_new(run, "status", json_string("canceled"));
	CHECK(uh_run_cli_exit_status(run) == 130);
	json_object_set_new(run, "status", json_string("lost"));
	CHECK(uh_run_cli_exit_status(run) == 75);
	json_decref(run);

	struct uh_run *r = uh_run_new();
	snprintf(r->id, sizeof(r->id), "r_x");
	json_t *j = uh_run_to_json(r);
	static const char *keys[] = {"id",
	                             "job_id",
	                             "project_id",
	                             "status",
	                             "reason",
	                             "message",
	                             "backend",
	                             "parameters",
	                             "requested_by",
	                             "approved_by",
	                             "rejected_by",
	                             "canceled_by",
	                             "comments",
	                             "created_at",
	                             "started_at",
	                             "finished_at",
	                             "exit_code",
	                             "external_id",
	                             "log_truncated",
	                             "retry_of",
	                             "effective_config",
	                             "queue_position"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		CHECK(json_object_get(j, keys[i]) != NULL);
	CHECK(json_object_size(j) == sizeof(keys) / sizeof(keys[0]));
	json_decref(j);
	uh_run_free(r);
}

static void test_audit_hash(void)
{
	unsigned char key[32] = {1, 2, 3};
	struct uh_audit_event ev = {1, 1700000000000000, "u_1", "run.create", "r_1", "{}", UH_AUDIT_GENESIS};
	char h1[65], h2[65], h3[65];
	uh_audit_hash(key, 32, &ev, h1);
	uh_audit_hash(key, 32, &ev, h2);
	CHECK_STR(h1, h2);
	ev.details = "{\"a\":1}";
	uh_audit_hash(key, 32, &ev, h3);
	CHECK(strcmp(h1, h3) != 0);
	key[0] = 9;
	ev.details = "{}";
	uh_audit_hash(key, 32, &ev, h3);
	CHECK(strcmp(h1, h3) != 0); /* another key gives another chain */
	/* Field boundaries are unambiguous: moving a char between fields changes it. */
	struct uh_audit_event a = {1, 1, "ab", "c", "", "{}", UH_AUDIT_GENESIS};
	struct uh_audit_event b = {1, 1, "a", "bc", "", "{}", UH_AUDIT_GENESIS};
	uh_audit_hash(key, 32, &a, h1);
	uh_audit_hash(key, 32, &b, h2);
	CHECK(strcmp(h1, h2) != 0);
}

static void test_merge(void)
{
	json_t *p = json_pack("{s:s,s:s,s:{s:i,s:s}}", "name", "web", "execution_backend", "local",
	                      "execution_backend_config", "timeout_seconds", 30, "network", "none");
	json_t *j = json_pack("{s:s,s:{s:i}}", "name", "deploy", "execution_backend_config", "timeout_seconds", 5);
	char *backend = NULL;
	json_t *cfg = NULL;
	CHECK(uh_effective_config(p, j, &backend, &cfg, NULL) == 0);
	CHECK_STR(backend, "local");
	CHECK(json_integer_value(json_object_get(cfg, "timeout_seconds")) == 5);
	CHECK_STR(json_string_value(json_object_get(cfg, "network")), "none");
	free(backend);
	json_decref(cfg);
	/* Another backend on the job: the job's config alone. */
	json_object_set_new(j, "execution_backend", json_string("docker"));
	CHECK(uh_effective_config(p, j, &backend, &cfg, NULL) == 0);
	CHECK_STR(backend, "docker");
	CHECK(json_object_get(cfg, "network") == NULL);
	free(backend);
	json_decref(cfg);

	json_t *params = json_pack("{s:s}", "TARGET", "web1");
	json_object_set_new(j, "parameters", json_pack("[s]", "TARGET"));
	json_object_set_new(j, "env", json_pack("{s:s}", "FOO", "bar"));
	CHECK(uh_check_parameters(j, params, NULL) == 0);
	json_t *env = uh_run_env("r_1", p, j, params);
	CHECK_STR(json_string_value(json_object_get(env, "UHUB_PARAM_TARGET")), "web1");
	CHECK_STR(json_string_value(json_object_get(env, "UHUB_RUN_ID")), "r_1");
	CHECK_STR(json_string_value(json_object_get(env, "UHUB_PROJECT")), "web");
	CHECK_STR(json_string_value(json_object_get(env, "FOO")), "bar");
	json_decref(env);
	json_t *bad = json_pack("{s:s}", "OTHER", "x");
	struct uh_error err = {0};
	CHECK(uh_check_parameters(j, bad, &err) == UH_E_INVALID_REQUEST);
	CHECK_STR(err.field, "parameters.OTHER");
	json_decref(bad);
	json_decref(params);

	struct uh_config c;
	uh_config_defaults(&c, NULL);
	int st = -1;
	json_object_set_new(p, "environment", json_string("prod"));
	CHECK(uh_guardrail_trigger(&c, p, j, "local", false, &st, &err) == UH_E_GUARDRAIL);
	CHECK(uh_guardrail_trigger(&c, p, j, "local", true, &st, &err) == 0 && st == UH_RUN_QUEUED);
	CHECK(uh_guardrail_trigger(&c, p, j, "docker", false, &st, &err) == 0 && st == UH_RUN_QUEUED);
	json_object_set_new(j, "critical", json_true());
	CHECK(uh_guardrail_trigger(&c, p, j, "docker", false, &st, &err) == 0 && st == UH_RUN_PENDING_APPROVAL);
	json_object_set_new(p, "environment", json_string("dev"));
	CHECK(uh_guardrail_trigger(&c, p, j, "local", false, &st, &err) == 0 && st == UH_RUN_QUEUED);
	uh_config_free(&c);
	json_decref(p);
	json_decref(j);
}

static void test_util(void)
{
	struct uh_buf b = UH_BUF_INIT(8);
	CHECK(uh_buf_appends(&b, "12345678") == 0);
	CHECK(uh_buf_appends(&b, "9") == UH_E_PAYLOAD_TOO_LARGE);
	CHECK(b.len == 8);
	uh_buf_free(&b);
	int64_t us;
	CHECK(uh_time_parse("2026-12-04T20:40:10Z", &us) == 0);
	char t[32];
	uh_time_format(us, t);
	CHECK_STR(t, "2026-12-04T20:40:10.000000Z");
	CHECK(uh_time_parse("2026-12-04T21:40:10+01:00", &us) == 0);
	uh_time_format(us, t);
	CHECK_STR(t, "2026-12-04T20:40:10.000000Z");
	CHECK(uh_time_parse("2026-13-04T20:40:10Z", &us) != 0);
	CHECK(uh_time_parse("yesterday", &us) != 0);
	struct uh_error err;
	json_t *deep = NULL;
	char nest[200];
	memset(nest, '[', 100);
	memset(nest + 100, ']', 100);
	deep = uh_json_parse(nest, 200, false, &err);
	CHECK(deep == NULL);
	CHECK(uh_json_parse("{\"a\":1,\"a\":2}", 13, true, &err) == NULL);
	CHECK(uh_json_parse("{\"a\":1}\0", 8, true, &err) == NULL);
}

int main(void)
{
	test_errors();
	test_config();
	test_quantities();
	test_state_machine();
	test_audit_hash();
	test_merge();
	test_util();
	return uh_tap_done();
}
