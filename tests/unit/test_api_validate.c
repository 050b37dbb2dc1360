/* The API's input checks (src/api/validate.c): names, ids, query values,
 * media types, bearer headers, and every body shape of SPEC §5 (project,
 * job, user, token, member, trigger), with the field each refusal names;
 * the guardrail-loosening rules; the rate limiter. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "tap.h"
#include "util/json.h"

static struct uh_error E;

static json_t *J(const char *text)
{
	json_error_t je;
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		fprintf(stderr, "bad test JSON %s: %s\n", text, je.text);
	return j;
}

/* Expect a refusal with code and field. */
#define REFUSED(call, code, fld)                                                                                    \
	do {                                                                                                        \
		memset(&E, 0, sizeof(E));                                                                           \
		int _rc = (call);                                                                                   \
		if (_rc != (code) || strcmp(E.field, (fld)) != 0)                                                   \
			fprintf(stderr, "%s:%d: %s: rc %d field '%s' (%s), expected %d '%s'\n", __FILE__, __LINE__, \
			        #call, _rc, E.field, E.message, (code), (fld));                                     \
		CHECK(_rc == (code) && strcmp(E.field, (fld)) == 0 && E.message[0]);                                \
	} while (0)

#define OK(call)                                                                                                     \
	do {                                                                                                         \
		memset(&E, 0, sizeof(E));                                                                            \
		int _rc = (call);                                                                                    \
		if (_rc)                                                                                             \
			fprintf(stderr, "%s:%d: %s failed: %d %s (%s)\n", __FILE__, __LINE__, #call, _rc, E.message, \
			        E.field);                                                                            \
		CHECK(_rc == 0);                                                                                     \
	} while (0)

static void test_names(void)
{
	CHECK(uh_api_name_ok("a"));
	CHECK(uh_api_name_ok("web-01.prod_x"));
	CHECK(!uh_api_name_ok(""));
	CHECK(!uh_api_name_ok("-a"));
	CHECK(!uh_api_name_ok(".a"));
	CHECK(!uh_api_name_ok("a b"));
	CHECK(!uh_api_name_ok("a/b"));
	CHECK(!uh_api_name_ok("é"));
	char n[80];
	memset(n, 'a', 63);
	n[63] = '\0';
	CHECK(uh_api_name_ok(n));
	n[63] = 'a';
	n[64] = '\0';
	CHECK(!uh_api_name_ok(n));
	CHECK(uh_api_param_name_ok("TARGET_2"));
	CHECK(!uh_api_param_name_ok("target"));
	CHECK(!uh_api_param_name_ok("2X"));
	CHECK(!uh_api_param_name_ok("_X"));
	CHECK(!uh_api_param_name_ok(""));
	CHECK(uh_api_env_name_ok("_x1"));
	CHECK(!uh_api_env_name_ok("1x"));
	CHECK(!uh_api_env_name_ok("A-B"));
	CHECK(uh_api_id_ok("p_abc-1", 7));
	CHECK(!uh_api_id_ok("p.abc", 5));
	CHECK(!uh_api_id_ok("", 0));
	CHECK(uh_api_role_rank("viewer") == 1 && uh_api_role_rank("operator") == 2 &&
	      uh_api_role_rank("projets") == 3 && uh_api_role_rank("admin") == 4);
	CHECK(uh_api_role_rank("root") == 0 && uh_api_role_rank(NULL) == 0 && uh_api_role_rank("Admin") == 0);
}

static void test_query(void)
{
	int limit = 0;
	const char *before = "x";
	bool b = false;
	OK(uh_api_parse_limit(NULL, &limit, &E));
	CHECK(limit == 50);
	OK(uh_api_parse_limit("100", &limit, &E));
	CHECK(limit == 100);
	OK(uh_api_parse_limit("1", &limit, &E));
	const char *bad[] = {"0", "101", "-1", "", "1e2", "abc", "1000000000000", " 5", "5 "};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		REFUSED(uh_api_parse_limit(bad[i], &limit, &E), UH_E_INVALID_REQUEST, "limit");
	OK(uh_api_parse_cursor(NULL, &before, &E));
	CHECK(before == NULL);
	OK(uh_api_parse_cursor("", &before, &E));
	CHECK(before == NULL);
	OK(uh_api_parse_cursor("12345", &before, &E));
	CHECK_STR(before, "12345");
	REFUSED(uh_api_parse_cursor("a b", &before, &E), UH_E_INVALID_REQUEST, "before");
	REFUSED(uh_api_parse_cursor("0123456789012345678901234567890123456789", &before, &E), UH_E_INVALID_REQUEST,
	        "before");
	OK(uh_api_parse_id_filter(NULL, "job", &E));
	OK(uh_api_parse_id_filter("j_1", "job", &E));
	REFUSED(uh_api_parse_id_filter("j'1", "job", &E), UH_E_INVALID_REQUEST, "job");
	OK(uh_api_parse_bool("1", "follow", &b, &E));
	CHECK(b);
	OK(uh_api_parse_bool("false", "follow", &b, &E));
	CHECK(!b);
	OK(uh_api_parse_bool("", "follow", &b, &E));
	CHECK(b);
	REFUSED(uh_api_parse_bool("2", "follow", &b, &E), UH_E_INVALID_REQUEST, "follow");
}

static void test_headers(void)
{
	CHECK(uh_api_media_ok("application/json", false));
	CHECK(uh_api_media_ok("Application/JSON; charset=utf-8", false));
	CHECK(uh_api_media_ok("  application/json ;charset=utf-8", false));
	CHECK(!uh_api_media_ok("application/merge-patch+json", false));
	CHECK(uh_api_media_ok("application/merge-patch+json", true));
	CHECK(!uh_api_media_ok("application/jsonx", true));
	CHECK(!uh_api_media_ok("text/plain", true));
	CHECK(!uh_api_media_ok("", true));
	CHECK(!uh_api_media_ok(NULL, true));
	size_t n = 0;
	const char *t = uh_api_bearer("Bearer abc.DEF-1", &n);
	CHECK(t && n == 9 && strncmp(t, "abc.DEF-1", n) == 0);
	t = uh_api_bearer("bearer   tok  ", &n);
	CHECK(t && n == 3 && strncmp(t, "tok", 3) == 0);
	CHECK(!uh_api_bearer("Bearer", &n));
	CHECK(!uh_api_bearer("Bearer ", &n));
	CHECK(!uh_api_bearer("Bearerabc", &n));
	CHECK(!uh_api_bearer("Basic YWRtaW46YWRtaW4=", &n));
	CHECK(!uh_api_bearer("Bearer a b", &n));
	CHECK(!uh_api_bearer("Bearer a\x01", &n));
	CHECK(!uh_api_bearer(NULL, &n));
	char big[600] = "Bearer ";
	memset(big + 7, 'x', 513);
	big[520] = '\0';
	CHECK(!uh_api_bearer(big, &n));
	CHECK(uh_api_idem_key_ok("k-1"));
	CHECK(!uh_api_idem_key_ok(""));
	CHECK(!uh_api_idem_key_ok("a b"));
}

static void test_project(void)
{
	json_t *f = NULL, *in;
	in = J("{\"name\":\"web\",\"environment\":\"prod\",\"execution_backend\":\"local\"}");
	OK(uh_api_validate_project(in, &f, &E));
	CHECK(json_is_object(json_object_get(f, "execution_backend_config")));
	CHECK(json_is_null(json_object_get(f, "vault_prefix")) && json_is_null(json_object_get(f, "max_concurrent")));
	CHECK(json_object_size(f) == 6);
	json_decref(f);
	json_decref(in);

	struct {
		const char *body, *field;
		int code;
	} bad[] = {
	    {"{\"environment\":\"dev\",\"execution_backend\":\"local\"}", "name", UH_E_INVALID_REQUEST},
	    {"{\"name\":\"a b\",\"environment\":\"dev\",\"execution_backend\":\"local\"}", "name",
	     UH_E_INVALID_REQUEST},
	    {"{\"name\":1,\"environment\":\"dev\",\"execution_backend\":\"local\"}", "name", UH_E_INVALID_REQUEST},
	    {"{\"name\":\"a\",\"environment\":\"production\",\"execution_backend\":\"local\"}", "environment",
	     UH_E_INVALID_REQUEST},
	    {"{\"name\":\"a\",\"environment\":null,\"execution_backend\":\"local\"}", "environment",
	     UH_E_INVALID_REQUEST},
	    {"{\"name\":\"a\",\"environment\":\"dev\",\"execution_backend\":\"mainframe\"}", "execution_backend",
	     UH_E_INVALID_REQUEST},
	    {"{\"name\":\"a\",\"environment\":\"dev\"}", "execution_backend", UH_E_INVALID_REQUEST},
	    {"{\"name\":\"a\",\"environment\":\"dev\",\"execution_backend\":\"local\",\"execution_backend_config\":[]}",
	     "execution_backend_config", UH_E_INVALID_CONFIG},
	    {"{\"name\":\"a\",\"environment\":\"dev\",\"execution_backend\":\"local\",\"colour\":1}", "colour",
	     UH_E_INVALID_REQUEST},
	    {"{\"name\":\"a\",\"environment\":\"dev\",\"execution_backend\":\"local\",\"max_concurrent\":0}",
	     "max_concurrent", UH_E_INVALID_REQUEST},
	    {"{\"name\":\"a\",\"environment\":\"dev\",\"execution_backend\":\"local\",\"max_concurrent\":1.5}",
	     "max_concurrent", UH_E_INVALID_REQUEST},
	    {"{\"name\":\"a\",\"environment\":\"dev\",\"execution_backend\":\"local\",\"vault_prefix\":\"/abs\"}",
	     "vault_prefix", UH_E_INVALID_REQUEST},
	    {"{\"name\":\"a\",\"environment\":\"dev\",\"execution_backend\":\"local\",\"vault_prefix\":\"a/../b\"}",
	     "vault_prefix", UH_E_INVALID_REQUEST},
	    {"{\"name\":\"a\",\"environment\":\"dev\",\"execution_backend\":\"local\",\"vault_prefix\":\"a//b\"}",
	     "vault_prefix", UH_E_INVALID_REQUEST},
	    {"{\"name\":\"a\",\"environment\":\"dev\",\"execution_backend\":\"local\",\"id\":\"p_1\"}", "id",
	     UH_E_INVALID_REQUEST},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		in = J(bad[i].body);
		REFUSED(uh_api_validate_project(in, &f, &E), bad[i].code, bad[i].field);
		CHECK(f == NULL);
		json_decref(in);
	}
	in = J("[]");
	CHECK(uh_api_validate_project(in, &f, &E) == UH_E_INVALID_REQUEST);
	json_decref(in);
	in =
	    J("{\"name\":\"a\",\"environment\":\"dev\",\"execution_backend\":\"docker\",\"vault_prefix\":\"team/app/\","
	      "\"max_concurrent\":null,\"execution_backend_config\":null}");
	OK(uh_api_validate_project(in, &f, &E));
	CHECK_STR(json_string_value(json_object_get(f, "vault_prefix")), "team/app/");
	json_decref(f);
	json_decref(in);
}

static void test_job(void)
{
	json_t *proj = J("{\"name\":\"p\",\"environment\":\"dev\",\"execution_backend\":\"local\","
	                 "\"vault_prefix\":\"team/app\"}");
	json_t *noprefix = J("{\"name\":\"p\",\"environment\":\"dev\",\"execution_backend\":\"local\"}");
	json_t *f = NULL, *in;
	in = J("{\"name\":\"deploy\",\"command\":[\"/bin/echo\",\"hi\"],\"env\":{\"A\":\"1\"},"
	       "\"secrets\":{\"TOKEN\":\"api-token\",\"S\":\"shared:common\",\"V\":\"vault:team/app/db#password\","
	       "\"W\":\"vault:team/app#k\"},\"parameters\":[\"TARGET\",\"N\"],\"critical\":true,\"retries\":2}");
	OK(uh_api_validate_job(in, proj, &f, &E));
	CHECK(json_object_size(f) == 10);
	CHECK(json_is_true(json_object_get(f, "critical")));
	CHECK(json_integer_value(json_object_get(f, "retries")) == 2);
	CHECK(json_is_null(json_object_get(f, "execution_backend")));
	CHECK(json_is_null(json_object_get(f, "max_concurrent")));
	json_decref(f);
	json_decref(in);
	in = J("{\"name\":\"hook\"}");
	OK(uh_api_validate_job(in, proj, &f, &E));
	CHECK(json_is_null(json_object_get(f, "command")) && json_is_false(json_object_get(f, "critical")));
	CHECK(json_integer_value(json_object_get(f, "retries")) == 0);
	CHECK(json_array_size(json_object_get(f, "parameters")) == 0);
	json_decref(f);
	json_decref(in);

	struct {
		const char *body, *field;
		const json_t *project;
		int code;
	} bad[] = {
	    {"{\"command\":[\"/bin/true\"]}", "name", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"command\":[]}", "command", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"command\":\"/bin/true\"}", "command", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"command\":[1]}", "command", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"command\":[null]}", "command", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"command\":[\"\"]}", "command", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"timeout\":5}", "timeout", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"critical\":\"yes\"}", "critical", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"execution_backend\":\"vm\"}", "execution_backend", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"execution_backend_config\":\"x\"}", "execution_backend_config", proj,
	     UH_E_INVALID_CONFIG},
	    {"{\"name\":\"j\",\"env\":{\"1A\":\"x\"}}", "env.1A", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"env\":{\"A\":1}}", "env.A", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"env\":{\"UHUB_RUN_ID\":\"x\"}}", "env.UHUB_RUN_ID", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"env\":[]}", "env", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"secrets\":{\"A\":\"bad name\"}}", "secrets.A", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"secrets\":{\"A\":\"shared:\"}}", "secrets.A", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"secrets\":{\"A\":\"vault:other/x#k\"}}", "secrets.A", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"secrets\":{\"A\":\"vault:team/application#k\"}}", "secrets.A", proj,
	     UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"secrets\":{\"A\":\"vault:team/app/x\"}}", "secrets.A", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"secrets\":{\"A\":\"vault:team/app/../x#k\"}}", "secrets.A", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"secrets\":{\"A\":\"vault:team/app/x#k\"}}", "secrets.A", noprefix,
	     UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"secrets\":{\"A\":1}}", "secrets.A", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"env\":{\"A\":\"x\"},\"secrets\":{\"A\":\"s1\"}}", "secrets.A", proj,
	     UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"parameters\":[\"lower\"]}", "parameters", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"parameters\":[\"A\",\"A\"]}", "parameters", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"parameters\":\"A\"}", "parameters", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"retries\":11}", "retries", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"retries\":-1}", "retries", proj, UH_E_INVALID_REQUEST},
	    {"{\"name\":\"j\",\"max_concurrent\":0}", "max_concurrent", proj, UH_E_INVALID_REQUEST},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		in = J(bad[i].body);
		REFUSED(uh_api_validate_job(in, bad[i].project, &f, &E), bad[i].code, bad[i].field);
		CHECK(f == NULL);
		json_decref(in);
	}
	json_decref(proj);
	json_decref(noprefix);
}

static void test_small_bodies(void)
{
	const char *name, *role, *uid;
	int disabled;
	int64_t exp;
	json_t *in, *params;
	in = J("{\"name\":\"alice\",\"role\":\"operator\"}");
	OK(uh_api_validate_user_create(in, &name, &role, &E));
	CHECK_STR(name, "alice");
	json_decref(in);
	in = J("{\"name\":\"alice\",\"role\":\"root\"}");
	REFUSED(uh_api_validate_user_create(in, &name, &role, &E), UH_E_INVALID_REQUEST, "role");
	json_decref(in);
	in = J("{\"name\":\"alice\"}");
	REFUSED(uh_api_validate_user_create(in, &name, &role, &E), UH_E_INVALID_REQUEST, "role");
	json_decref(in);
	in = J("{\"role\":\"admin\",\"disabled\":true}");
	OK(uh_api_validate_user_patch(in, &role, &disabled, &E));
	CHECK(disabled == 1 && role && !strcmp(role, "admin"));
	json_decref(in);
	in = J("{}");
	OK(uh_api_validate_user_patch(in, &role, &disabled, &E));
	CHECK(disabled == -1 && role == NULL);
	json_decref(in);
	in = J("{\"disabled\":1}");
	REFUSED(uh_api_validate_user_patch(in, &role, &disabled, &E), UH_E_INVALID_REQUEST, "disabled");
	json_decref(in);
	in = J("{\"name\":\"x\"}");
	REFUSED(uh_api_validate_user_patch(in, &role, &disabled, &E), UH_E_INVALID_REQUEST, "name");
	json_decref(in);

	int64_t now = 1800000000LL * 1000000;
	OK(uh_api_validate_token_create(NULL, now, &exp, &E));
	CHECK(exp == 0);
	in = J("{\"expires_at\":\"2030-01-01T00:00:00Z\"}");
	OK(uh_api_validate_token_create(in, 1700000000LL * 1000000, &exp, &E));
	CHECK(exp == 1893456000LL * 1000000);
	REFUSED(uh_api_validate_token_create(in, 1900000000LL * 1000000, &exp, &E), UH_E_INVALID_REQUEST, "expires_at");
	json_decref(in);
	in = J("{\"expires_at\":\"tomorrow\"}");
	REFUSED(uh_api_validate_token_create(in, now, &exp, &E), UH_E_INVALID_REQUEST, "expires_at");
	json_decref(in);
	in = J("{\"expires_at\":null}");
	OK(uh_api_validate_token_create(in, now, &exp, &E));
	json_decref(in);

	in = J("{\"user_id\":\"u_1\"}");
	OK(uh_api_validate_member(in, &uid, &E));
	json_decref(in);
	in = J("{\"user_id\":\"u 1\"}");
	REFUSED(uh_api_validate_member(in, &uid, &E), UH_E_INVALID_REQUEST, "user_id");
	json_decref(in);
	in = J("{}");
	REFUSED(uh_api_validate_member(in, &uid, &E), UH_E_INVALID_REQUEST, "user_id");
	json_decref(in);

	OK(uh_api_validate_trigger(NULL, &params, &E));
	CHECK(json_is_object(params) && json_object_size(params) == 0);
	json_decref(params);
	in = J("{\"parameters\":{\"TARGET\":\"web\"}}");
	OK(uh_api_validate_trigger(in, &params, &E));
	CHECK_STR(json_string_value(json_object_get(params, "TARGET")), "web");
	json_decref(params);
	json_decref(in);
	in = J("{\"parameters\":{\"TARGET\":1}}");
	REFUSED(uh_api_validate_trigger(in, &params, &E), UH_E_INVALID_REQUEST, "parameters.TARGET");
	json_decref(in);
	in = J("{\"parameters\":{\"t\":\"x\"}}");
	REFUSED(uh_api_validate_trigger(in, &params, &E), UH_E_INVALID_REQUEST, "parameters.t");
	json_decref(in);
	in = J("{\"params\":{}}");
	REFUSED(uh_api_validate_trigger(in, &params, &E), UH_E_INVALID_REQUEST, "params");
	json_decref(in);
	in = J("{}");
	OK(uh_api_validate_empty(in, &E));
	json_decref(in);
	in = J("{\"force\":true}");
	REFUSED(uh_api_validate_empty(in, &E), UH_E_INVALID_REQUEST, "force");
	json_decref(in);
}

static void test_loosening(void)
{
	json_t *prod = J("{\"environment\":\"prod\",\"execution_backend\":\"docker\",\"vault_prefix\":null}");
	json_t *dev = J("{\"environment\":\"dev\",\"execution_backend\":\"docker\",\"vault_prefix\":null}");
	json_t *prod_local = J("{\"environment\":\"prod\",\"execution_backend\":\"local\",\"vault_prefix\":null}");
	json_t *prod_vault = J("{\"environment\":\"prod\",\"execution_backend\":\"docker\",\"vault_prefix\":\"a\"}");
	json_t *staging = J("{\"environment\":\"staging\",\"execution_backend\":\"docker\"}");
	OK(uh_api_project_loosening(NULL, dev, &E));
	OK(uh_api_project_loosening(dev, prod, &E));              /* tightening */
	OK(uh_api_project_loosening(prod, prod, &E));             /* nothing */
	OK(uh_api_project_loosening(prod_local, prod_local, &E)); /* already local */
	REFUSED(uh_api_project_loosening(prod, dev, &E), UH_E_FORBIDDEN, "environment");
	REFUSED(uh_api_project_loosening(prod, staging, &E), UH_E_FORBIDDEN, "environment");
	REFUSED(uh_api_project_loosening(prod, prod_local, &E), UH_E_FORBIDDEN, "execution_backend");
	REFUSED(uh_api_project_loosening(prod, prod_vault, &E), UH_E_FORBIDDEN, "vault_prefix");
	REFUSED(uh_api_project_loosening(prod_vault, prod, &E), UH_E_FORBIDDEN, "vault_prefix");
	OK(uh_api_project_loosening(prod_vault, prod_vault, &E));

	json_t *crit = J("{\"critical\":true,\"execution_backend\":null}");
	json_t *notcrit = J("{\"critical\":false,\"execution_backend\":null}");
	json_t *local = J("{\"critical\":true,\"execution_backend\":\"local\"}");
	REFUSED(uh_api_job_loosening(prod, crit, notcrit, &E), UH_E_FORBIDDEN, "critical");
	OK(uh_api_job_loosening(dev, crit, notcrit, &E));
	OK(uh_api_job_loosening(prod, notcrit, crit, &E));
	OK(uh_api_job_loosening(prod, NULL, notcrit, &E)); /* a new job has no previous value */
	REFUSED(uh_api_job_loosening(prod, crit, local, &E), UH_E_FORBIDDEN, "execution_backend");
	REFUSED(uh_api_job_loosening(prod, NULL, local, &E), UH_E_FORBIDDEN, "execution_backend");
	OK(uh_api_job_loosening(prod_local, NULL, crit, &E)); /* inherits the project's, chosen by an admin */
	OK(uh_api_job_loosening(prod_local, crit, local, &E));
	OK(uh_api_job_loosening(dev, crit, local, &E));

	json_t *changed = uh_api_changed(prod, prod_vault);
	CHECK(json_object_size(changed) == 1 && json_object_get(changed, "vault_prefix"));
	json_decref(changed);
	changed = uh_api_changed(prod, staging);
	CHECK(json_object_size(changed) == 1 && json_object_get(changed, "environment"));
	json_decref(changed);
	changed = uh_api_changed(prod_vault, staging);
	CHECK(json_is_null(json_object_get(changed, "vault_prefix")));
	json_decref(changed);

	json_decref(prod);
	json_decref(dev);
	json_decref(prod_local);
	json_decref(prod_vault);
	json_decref(staging);
	json_decref(crit);
	json_decref(notcrit);
	json_decref(local);
}

static void test_ratelimit(void)
{
	struct uh_ratelimit *rl = uh_ratelimit_new();
	int64_t t = 1000000000, retry = 0;
	for (int i = 0; i < 3; i++)
		CHECK(uh_ratelimit_take(rl, "u_1", 3, t, &retry));
	CHECK(!uh_ratelimit_take(rl, "u_1", 3, t, &retry));
	CHECK(retry >= 1 && retry <= 21);
	CHECK(uh_ratelimit_take(rl, "u_2", 3, t, &retry));                /* per user */
	CHECK(uh_ratelimit_take(rl, "u_1", 3, t + 20 * 1000000, &retry)); /* refilled: 3 a minute */
	CHECK(!uh_ratelimit_take(rl, "u_1", 3, t + 20 * 1000000, &retry));
	CHECK(uh_ratelimit_take(rl, "u_1", 0, t, &retry)); /* 0: off */
	/* idle buckets are forgotten and come back full */
	CHECK(uh_ratelimit_take(rl, "u_3", 3, t + 500 * 1000000LL, &retry));
	for (int i = 0; i < 3; i++)
		CHECK(uh_ratelimit_take(rl, "u_1", 3, t + 500 * 1000000LL, &retry));
	uh_ratelimit_free(rl);
}

int main(void)
{
	test_names();
	test_query();
	test_headers();
	test_project();
	test_job();
	test_small_bodies();
	test_loosening();
	test_ratelimit();
	return uh_tap_done();
}
