/* The API's route table: matching (ids, 404 versus 405 and its Allow list),
 * the policy table's completeness (every route has a policy and a scope that
 * fits it, no two routes answer the same request), and the OpenAPI document
 * generated from it (every route present with its policy, every $ref
 * resolves, docs/openapi.json is the served document).
 *
 * UH_WRITE_OPENAPI=1 rewrites docs/openapi.json from the table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"
#include "tap.h"

static const struct uh_api_route *match(const char *method, const char *path, int *rc, char params[2][UH_API_PARAM_MAX],
                                        char *allow)
{
	const struct uh_api_route *rt = NULL;
	*rc = uh_api_route_match(method, path, &rt, params, allow, 64);
	return rt;
}

static void test_matching(void)
{
	char p[2][UH_API_PARAM_MAX], allow[64];
	int rc;
	const struct uh_api_route *rt = match("GET", "/api/v1/projects/p_abc/members", &rc, p, allow);
	CHECK(rc == 0 && rt && rt->handler == uh_h_member_list);
	CHECK_STR(p[0], "p_abc");
	rt = match("DELETE", "/api/v1/projects/p_1/members/u-2", &rc, p, allow);
	CHECK(rc == 0 && rt && rt->handler == uh_h_member_delete);
	CHECK_STR(p[0], "p_1");
	CHECK_STR(p[1], "u-2");
	rt = match("GET", "/api/v1/runs/r_x/logs", &rc, p, allow);
	CHECK(rc == 0 && rt->handler == uh_h_run_logs);
	rt = match("GET", "/api/v1/audit/verify", &rc, p, allow);
	CHECK(rc == 0 && rt->handler == uh_h_audit_verify);
	rt = match("GET", "/healthz", &rc, p, allow);
	CHECK(rc == 0 && rt->policy == UH_POL_PUBLIC);

	/* 405 with the methods the path has */
	rt = match("PUT", "/api/v1/projects", &rc, p, allow);
	CHECK(rc == UH_E_METHOD_NOT_ALLOWED && !rt);
	CHECK(strstr(allow, "GET") && strstr(allow, "POST") && !strstr(allow, "PUT"));
	rt = match("POST", "/api/v1/runs/r_1", &rc, p, allow);
	CHECK(rc == UH_E_METHOD_NOT_ALLOWED);
	CHECK_STR(allow, "GET");
	rt = match("GET", "/api/v1/jobs/j_1/runs", &rc, p, allow);
	CHECK(rc == UH_E_METHOD_NOT_ALLOWED);
	CHECK_STR(allow, "POST");

	/* 404: unknown paths, odd or long ids, empty segments, trailing slash */
	const char *bad[] = {
	    "/api/v1/nothing",
	    "/api/v1/projects/",
	    "/api/v1/projects//jobs",
	    "/api/v1/projects/a.b",
	    "/api/v1/projects/a b",
	    "/api/v1/projects/a%2Fb",
	    "/api/v1/projects/..",
	    "/api/v1/projects/é",
	    "/api/v1/runs/r_1/logs/",
	    "/api/v1/runs/r_1/logs/x",
	    "/api/v2/projects",
	    "/api/v1",
	    "",
	    "/",
	    "/healthz/",
	    "/api/v1/projects/0123456789012345678901234567890123456789",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rt = match("GET", bad[i], &rc, p, allow);
		if (rc != UH_E_NOT_FOUND)
			fprintf(stderr, "path %s: %d\n", bad[i], rc);
		CHECK(rc == UH_E_NOT_FOUND && !rt);
	}
	/* the longest id that fits is accepted */
	char path[128], id[UH_ID_MAX];
	memset(id, 'a', UH_ID_MAX - 1);
	id[UH_ID_MAX - 1] = '\0';
	snprintf(path, sizeof(path), "/api/v1/jobs/%s", id);
	rt = match("GET", path, &rc, p, allow);
	CHECK(rc == 0 && rt && strcmp(p[0], id) == 0);
	CHECK(uh_api_route_match("GET", NULL, &rt, p, allow, sizeof(allow)) == UH_E_NOT_FOUND);

	/* {name} is a secret name: dots allowed, up to 63 characters */
	rt = match("PUT", "/api/v1/projects/p_1/secrets/db.password-2_x", &rc, p, allow);
	CHECK(rc == 0 && rt && rt->handler == uh_h_secret_put && rt->secret_body);
	CHECK_STR(p[0], "p_1");
	CHECK_STR(p[1], "db.password-2_x");
	rt = match("POST", "/api/v1/secrets/rotate-key", &rc, p, allow);
	CHECK(rc == 0 && rt && rt->handler == uh_h_secret_rotate && !rt->secret_body);
	rt = match("PUT", "/api/v1/secrets/rotate-key", &rc, p, allow);
	CHECK(rc == 0 && rt && rt->handler == uh_h_shared_secret_put);
	rt = match("GET", "/api/v1/secrets/X_1", &rc, p, allow);
	CHECK(rc == UH_E_METHOD_NOT_ALLOWED && strstr(allow, "PUT") && strstr(allow, "DELETE"));
	char longname[80];
	memset(longname, 'n', 63);
	longname[63] = '\0';
	snprintf(path, sizeof(path), "/api/v1/secrets/%s", longname);
	rt = match("DELETE", path, &rc, p, allow);
	CHECK(rc == 0 && rt && strcmp(p[0], longname) == 0);
	const char *bad_names[] = {"/api/v1/secrets/.hidden", "/api/v1/secrets/..", "/api/v1/secrets/a%2Fb",
	                           "/api/v1/secrets/a b",     "/api/v1/secrets/é",  "/api/v1/projects/p.1/secrets/X",
	                           "/api/v1/secrets/"};
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		rt = match("DELETE", bad_names[i], &rc, p, allow);
		if (rc != UH_E_NOT_FOUND)
			fprintf(stderr, "path %s: %d\n", bad_names[i], rc);
		CHECK(rc == UH_E_NOT_FOUND && !rt);
	}
	memset(longname, 'n', 64);
	longname[64] = '\0';
	snprintf(path, sizeof(path), "/api/v1/secrets/%s", longname);
	CHECK(match("DELETE", path, &rc, p, allow) == NULL && rc == UH_E_NOT_FOUND);
	/* only these routes' bodies carry secret values */
	for (size_t i = 0; i < uh_api_nroutes; i++)
		CHECK(uh_api_routes[i].secret_body == (uh_api_routes[i].handler == uh_h_secret_put ||
		                                       uh_api_routes[i].handler == uh_h_shared_secret_put));

	CHECK(uh_api_route_query_allowed(match("GET", "/api/v1/runs", &rc, p, allow), "status"));
	CHECK(!uh_api_route_query_allowed(match("GET", "/api/v1/runs", &rc, p, allow), "stat"));
	CHECK(!uh_api_route_query_allowed(match("GET", "/api/v1/runs", &rc, p, allow), "statuses"));
	CHECK(!uh_api_route_query_allowed(match("GET", "/api/v1/me", &rc, p, allow), "limit"));
}

static bool project_policy(enum uh_api_policy p)
{
	return p == UH_POL_PROJECT_READ || p == UH_POL_PROJECT_OPERATE || p == UH_POL_PROJECT_MANAGE;
}

/* Two patterns could match one concrete path: same segment count, and
 * every literal segment either equal or facing a parameter. */
static bool overlap(const char *a, const char *b)
{
	for (;;) {
		size_t na = strcspn(a, "/"), nb = strcspn(b, "/");
		bool pa = a[0] == '{', pb = b[0] == '{';
		if (!pa && !pb && (na != nb || strncmp(a, b, na) != 0))
			return false;
		a += na;
		b += nb;
		if (!*a || !*b)
			return !*a && !*b;
		a++;
		b++;
	}
}

static void test_policy_table(void)
{
	CHECK(uh_api_nroutes >= 29);
	for (size_t i = 0; i < uh_api_nroutes; i++) {
		const struct uh_api_route *r = &uh_api_routes[i];
		bool ok = r->method && r->pattern && r->handler && r->summary && *r->summary;
		ok = ok && r->policy > UH_POL_UNSET && r->policy < UH_POL__COUNT && uh_api_policy_name(r->policy);
		/* a project policy needs an object to find the project from */
		if (project_policy(r->policy))
			ok = ok &&
			     (r->scope == UH_SCOPE_PROJECT || r->scope == UH_SCOPE_JOB || r->scope == UH_SCOPE_RUN);
		if (r->policy == UH_POL_ADMIN_OR_OWNER)
			ok = ok && r->scope == UH_SCOPE_TOKEN;
		if (r->scope == UH_SCOPE_USER || r->scope == UH_SCOPE_TOKEN)
			ok = ok && (r->policy == UH_POL_ADMIN || r->policy == UH_POL_ADMIN_OR_OWNER);
		/* only liveness, metrics, the document and the signed webhook
		 * callback (SPEC §5) are open */
		if (r->policy == UH_POL_PUBLIC)
			ok = ok &&
			     ((strcmp(r->method, "GET") == 0 &&
			       (!strcmp(r->pattern, "/healthz") || !strcmp(r->pattern, "/metrics") ||
			        !strcmp(r->pattern, "/api/v1/openapi.json"))) ||
			      (strcmp(r->method, "POST") == 0 && !strcmp(r->pattern, "/api/v1/runs/{id}/callback")));
		else
			ok = ok && strncmp(r->pattern, "/api/v1/", 8) == 0;
		/* the scope's parameter is the first one */
		if (r->scope != UH_SCOPE_NONE)
			ok = ok && strstr(r->pattern, "{id}") != NULL;
		ok = ok && (r->body == UH_BODY_NONE) == (!strcmp(r->method, "GET") || !strcmp(r->method, "DELETE"));
		ok = ok && (r->status == 200 || r->status == 201 || r->status == 202 || r->status == 204);
		ok = ok && (r->status != 204 || !r->response_schema);
		if (!ok)
			fprintf(stderr, "route %s %s is incomplete or inconsistent\n", r->method, r->pattern);
		CHECK(ok);
		for (size_t j = 0; j < i; j++) {
			const struct uh_api_route *o = &uh_api_routes[j];
			if (strcmp(o->method, r->method) == 0 && overlap(o->pattern, r->pattern)) {
				fprintf(stderr, "routes %s %s and %s overlap\n", r->method, r->pattern, o->pattern);
				CHECK(0);
			}
		}
	}
	/* what SPEC §5 asks, route by route */
	struct {
		const char *method, *path;
		enum uh_api_policy policy;
	} want[] = {
	    {"POST", "/api/v1/projects", UH_POL_ADMIN},
	    {"PATCH", "/api/v1/projects/{id}", UH_POL_PROJECT_MANAGE},
	    {"GET", "/api/v1/projects/{id}", UH_POL_PROJECT_READ},
	    {"POST", "/api/v1/projects/{id}/jobs", UH_POL_PROJECT_MANAGE},
	    {"GET", "/api/v1/jobs/{id}", UH_POL_PROJECT_READ},
	    {"POST", "/api/v1/jobs/{id}/runs", UH_POL_PROJECT_OPERATE},
	    {"POST", "/api/v1/runs/{id}/cancel", UH_POL_PROJECT_OPERATE},
	    {"GET", "/api/v1/runs/{id}/logs", UH_POL_PROJECT_READ},
	    {"POST", "/api/v1/projects/{id}/members", UH_POL_PROJECT_MANAGE},
	    {"DELETE", "/api/v1/tokens/{id}", UH_POL_ADMIN_OR_OWNER},
	    {"POST", "/api/v1/users/{id}/tokens", UH_POL_ADMIN},
	    {"GET", "/api/v1/audit", UH_POL_ADMIN},
	    {"GET", "/api/v1/audit/verify", UH_POL_ADMIN},
	    {"GET", "/api/v1/runs", UH_POL_USER_SCOPED},
	    {"GET", "/api/v1/me", UH_POL_USER},
	    {"PUT", "/api/v1/projects/{id}/secrets/{name}", UH_POL_PROJECT_MANAGE},
	    {"DELETE", "/api/v1/projects/{id}/secrets/{name}", UH_POL_PROJECT_MANAGE},
	    {"GET", "/api/v1/projects/{id}/secrets", UH_POL_PROJECT_MANAGE},
	    {"PUT", "/api/v1/secrets/{name}", UH_POL_ADMIN},
	    {"DELETE", "/api/v1/secrets/{name}", UH_POL_ADMIN},
	    {"GET", "/api/v1/secrets", UH_POL_ADMIN},
	    {"POST", "/api/v1/secrets/rotate-key", UH_POL_ADMIN},
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct uh_api_route *found = NULL;
		for (size_t j = 0; j < uh_api_nroutes; j++)
			if (!strcmp(uh_api_routes[j].method, want[i].method) &&
			    !strcmp(uh_api_routes[j].pattern, want[i].path))
				found = &uh_api_routes[j];
		if (!found || found->policy != want[i].policy)
			fprintf(stderr, "%s %s: policy not as SPEC §5 says\n", want[i].method, want[i].path);
		CHECK(found && found->policy == want[i].policy);
	}
}

/* Every "$ref" of the document points at something in it. */
static void check_refs(const json_t *doc, const json_t *node, int *bad)
{
	if (json_is_object(node)) {
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)node, k, v)
		{
			if (!strcmp(k, "$ref") && json_is_string(v)) {
				const char *ref = json_string_value(v);
				const json_t *at = doc;
				char part[128];
				if (strncmp(ref, "#/", 2) != 0) {
					(*bad)++;
					continue;
				}
				for (const char *p = ref + 2; *p && at;) {
					size_t n = strcspn(p, "/");
					snprintf(part, sizeof(part), "%.*s", (int)n, p);
					at = json_object_get(at, part);
					p += n + (p[n] == '/');
				}
				if (!at) {
					fprintf(stderr, "dangling $ref %s\n", ref);
					(*bad)++;
				}
			} else {
				check_refs(doc, v, bad);
			}
		}
	} else if (json_is_array(node)) {
		size_t i;
		json_t *v;
		json_array_foreach(node, i, v) check_refs(doc, v, bad);
	}
}

static void test_openapi(void)
{
	json_t *doc = uh_api_openapi();
	CHECK(doc != NULL);
	if (!doc)
		return;
	CHECK_STR(json_string_value(json_object_get(doc, "openapi")), "3.0.3");
	CHECK(json_string_value(json_object_get(json_object_get(doc, "info"), "title")) != NULL);
	CHECK(json_string_value(json_object_get(json_object_get(doc, "info"), "version")) != NULL);
	json_t *paths = json_object_get(doc, "paths");
	for (size_t i = 0; i < uh_api_nroutes; i++) {
		const struct uh_api_route *r = &uh_api_routes[i];
		char m[16];
		size_t k;
		for (k = 0; r->method[k] && k < sizeof(m) - 1; k++)
			m[k] = (char)(r->method[k] - 'A' + 'a');
		m[k] = '\0';
		json_t *op = json_object_get(json_object_get(paths, r->pattern), m);
		if (!op)
			fprintf(stderr, "OpenAPI lacks %s %s\n", r->method, r->pattern);
		CHECK(op != NULL);
		const char *pol = json_string_value(json_object_get(op, "x-uhub-policy"));
		CHECK(pol && strcmp(pol, "unset") != 0);
		/* public routes say so; the others need the bearer scheme */
		json_t *sec = json_object_get(op, "security");
		CHECK((r->policy == UH_POL_PUBLIC) == (json_is_array(sec) && json_array_size(sec) == 0));
		char st[8];
		snprintf(st, sizeof(st), "%d", r->status);
		CHECK(json_object_get(json_object_get(op, "responses"), st) != NULL);
		if (r->request_schema)
			CHECK(json_object_get(op, "requestBody") != NULL);
		/* every {param} of the path is declared */
		size_t nparams = 0;
		for (const char *p = strchr(r->pattern, '{'); p; p = strchr(p + 1, '{'))
			nparams++;
		size_t declared = 0, j;
		json_t *prm;
		json_array_foreach(json_object_get(op, "parameters"), j,
		                   prm) if (!strcmp(json_string_value(json_object_get(prm, "in")), "path")) declared++;
		CHECK(declared == nparams);
	}
	/* and nothing in the document that the table does not serve */
	const char *path;
	json_t *item;
	json_object_foreach(paths, path, item)
	{
		const char *m;
		json_t *op;
		json_object_foreach(item, m, op)
		{
			bool found = false;
			for (size_t i = 0; i < uh_api_nroutes; i++)
				if (!strcmp(uh_api_routes[i].pattern, path) && !strcasecmp(uh_api_routes[i].method, m))
					found = true;
			CHECK(found);
		}
	}
	int bad = 0;
	check_refs(doc, doc, &bad);
	CHECK(bad == 0);

	/* docs/openapi.json is the document the server serves */
	const char *src = getenv("UH_SOURCE_DIR");
	char *text = json_dumps(doc, JSON_INDENT(1) | JSON_SORT_KEYS);
	if (src && text) {
		char file[1024];
		snprintf(file, sizeof(file), "%s/docs/openapi.json", src);
		if (getenv("UH_WRITE_OPENAPI")) {
			FILE *f = fopen(file, "w");
			CHECK(f != NULL);
			if (f) {
				fputs(text, f);
				fputc('\n', f);
				fclose(f);
			}
		}
		json_error_t je;
		json_t *disk = json_load_file(file, 0, &je);
		if (!disk || !json_equal(disk, doc))
			fprintf(stderr, "%s is out of date: regenerate it with UH_WRITE_OPENAPI=1 %s\n", file,
			        "test_api_routes");
		CHECK(disk && json_equal(disk, doc));
		json_decref(disk);
	}
	free(text);
	json_decref(doc);
}

int main(void)
{
	test_matching();
	test_policy_table();
	test_openapi();
	return uh_tap_done();
}
