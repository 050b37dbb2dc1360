/* The route table: every route of SPEC §5 with its policy, scope, body,
 * query parameters and OpenAPI description, in one static array. The
 * dispatcher (server.c) enforces policies from it and openapi.c describes
 * it, so the document cannot drift from the code. Default deny: a path not
 * here is 404, a method not here 405. */
#include <stdio.h>
#include <string.h>

#include "api/internal.h"

#define V1 "/api/v1"

/* R(method, pattern, handler, policy, scope, body, query, status,
 *   request schema, response schema, response type, summary[, headers]) */
#define R_(m, p, h, pol, sc, b, q, st, req, resp, rt, sum, hdr, ...)                                               \
	{                                                                                                          \
		.method = m, .pattern = p, .handler = h, .policy = pol, .scope = sc, .body = b, .query = q,        \
		.status = st, .request_schema = req, .response_schema = resp, .response_type = rt, .summary = sum, \
		.headers = hdr                                                                                     \
	}
#define R(...) R_(__VA_ARGS__, NULL, NULL)
/* RS: the same, for a route whose body carries a secret value. */
#define RS_(m, p, h, pol, sc, b, q, st, req, resp, rt, sum, hdr, ...)                                              \
	{                                                                                                          \
		.method = m, .pattern = p, .handler = h, .policy = pol, .scope = sc, .body = b, .query = q,        \
		.status = st, .request_schema = req, .response_schema = resp, .response_type = rt, .summary = sum, \
		.headers = hdr, .secret_body = true                                                                \
	}
#define RS(...) RS_(__VA_ARGS__, NULL, NULL)
/* RR: a route whose handler reads the raw body itself (a signature covers
 * its exact bytes, and every refusal must look the same). */
#define RR_(m, p, h, pol, sc, b, q, st, req, resp, rt, sum, hdr, ...)                                              \
	{                                                                                                          \
		.method = m, .pattern = p, .handler = h, .policy = pol, .scope = sc, .body = b, .query = q,        \
		.status = st, .request_schema = req, .response_schema = resp, .response_type = rt, .summary = sum, \
		.headers = hdr, .raw_body = true                                                                   \
	}
#define RR(...) RR_(__VA_ARGS__, NULL, NULL)

/* clang-format off */
const struct uh_api_route uh_api_routes[] = {
	R("GET", "/healthz", uh_h_healthz, UH_POL_PUBLIC, UH_SCOPE_NONE, UH_BODY_NONE, NULL,
	 200, NULL, "Health", NULL, "Liveness: answers while the daemon serves"),
	R("GET", "/metrics", uh_h_metrics, UH_POL_PUBLIC, UH_SCOPE_NONE, UH_BODY_NONE, NULL,
	 200, NULL, NULL, "text/plain; version=0.0.4", "Prometheus metrics (no project or job names in labels)"),
	R("GET", V1 "/openapi.json", uh_h_openapi, UH_POL_PUBLIC, UH_SCOPE_NONE, UH_BODY_NONE, NULL,
	 200, NULL, NULL, NULL, "This OpenAPI 3 document"),
	R("GET", V1 "/me", uh_h_me, UH_POL_USER, UH_SCOPE_NONE, UH_BODY_NONE, NULL,
	 200, NULL, "Me", NULL, "Who the token belongs to"),

	R("POST", V1 "/users", uh_h_user_create, UH_POL_ADMIN, UH_SCOPE_NONE, UH_BODY_REQUIRED, NULL,
	 201, "UserCreate", "User", NULL, "Create a user"),
	R("GET", V1 "/users", uh_h_user_list, UH_POL_ADMIN, UH_SCOPE_NONE, UH_BODY_NONE, "limit,before",
	 200, NULL, "UserList", NULL, "List users"),
	R("PATCH", V1 "/users/{id}", uh_h_user_patch, UH_POL_ADMIN, UH_SCOPE_USER, UH_BODY_REQUIRED, NULL,
	 200, "UserPatch", "User", NULL, "Change a user's role or disable it"),
	R("POST", V1 "/users/{id}/tokens", uh_h_token_create, UH_POL_ADMIN, UH_SCOPE_USER, UH_BODY_OPTIONAL, NULL,
	 201, "TokenCreate", "TokenCreated", NULL, "Create a token (shown once)"),
	R("DELETE", V1 "/tokens/{id}", uh_h_token_delete, UH_POL_ADMIN_OR_OWNER, UH_SCOPE_TOKEN, UH_BODY_NONE, NULL,
	 204, NULL, NULL, NULL, "Revoke a token (admin, or the token's own user)"),

	R("POST", V1 "/projects", uh_h_project_create, UH_POL_ADMIN, UH_SCOPE_NONE, UH_BODY_REQUIRED, NULL,
	 201, "ProjectInput", "Project", NULL, "Create a project"),
	R("GET", V1 "/projects", uh_h_project_list, UH_POL_USER_SCOPED, UH_SCOPE_NONE, UH_BODY_NONE, "name,limit,before",
	 200, NULL, "ProjectList", NULL, "List the projects the caller may see; ?name= finds one by name"),
	R("GET", V1 "/projects/{id}", uh_h_project_get, UH_POL_PROJECT_READ, UH_SCOPE_PROJECT, UH_BODY_NONE, NULL,
	 200, NULL, "Project", NULL, "Get a project"),
	R("PATCH", V1 "/projects/{id}", uh_h_project_patch, UH_POL_PROJECT_MANAGE, UH_SCOPE_PROJECT, UH_BODY_REQUIRED, NULL,
	 200, "ProjectPatch", "Project", NULL,
	 "Change a project (JSON merge patch); guardrail-loosening fields are admin-only"),
	R("DELETE", V1 "/projects/{id}", uh_h_project_delete, UH_POL_ADMIN, UH_SCOPE_PROJECT, UH_BODY_NONE, NULL,
	 204, NULL, NULL, NULL, "Archive a project (409 while runs are in flight)"),

	R("POST", V1 "/projects/{id}/members", uh_h_member_add, UH_POL_PROJECT_MANAGE, UH_SCOPE_PROJECT, UH_BODY_REQUIRED, NULL,
	 201, "MemberAdd", "Member", NULL, "Add a member"),
	R("GET", V1 "/projects/{id}/members", uh_h_member_list, UH_POL_PROJECT_MANAGE, UH_SCOPE_PROJECT, UH_BODY_NONE, "limit,before",
	 200, NULL, "MemberList", NULL, "List members"),
	R("DELETE", V1 "/projects/{id}/members/{user_id}", uh_h_member_delete, UH_POL_PROJECT_MANAGE, UH_SCOPE_PROJECT, UH_BODY_NONE, NULL,
	 204, NULL, NULL, NULL, "Remove a member"),

	R("POST", V1 "/projects/{id}/jobs", uh_h_job_create, UH_POL_PROJECT_MANAGE, UH_SCOPE_PROJECT, UH_BODY_REQUIRED, NULL,
	 201, "JobInput", "Job", NULL, "Create a job"),
	R("GET", V1 "/projects/{id}/jobs", uh_h_job_list, UH_POL_PROJECT_READ, UH_SCOPE_PROJECT, UH_BODY_NONE, "name,limit,before",
	 200, NULL, "JobList", NULL, "List a project's jobs; ?name= finds one by name"),
	R("GET", V1 "/jobs/{id}", uh_h_job_get, UH_POL_PROJECT_READ, UH_SCOPE_JOB, UH_BODY_NONE, NULL,
	 200, NULL, "Job", NULL, "Get a job"),
	R("PATCH", V1 "/jobs/{id}", uh_h_job_patch, UH_POL_PROJECT_MANAGE, UH_SCOPE_JOB, UH_BODY_REQUIRED, NULL,
	 200, "JobPatch", "Job", NULL, "Change a job (JSON merge patch); guardrail-loosening fields are admin-only"),
	R("DELETE", V1 "/jobs/{id}", uh_h_job_delete, UH_POL_PROJECT_MANAGE, UH_SCOPE_JOB, UH_BODY_NONE, NULL,
	 204, NULL, NULL, NULL, "Archive a job (409 while runs are in flight)"),
	RS("PUT", V1 "/projects/{id}/secrets/{name}", uh_h_secret_put, UH_POL_PROJECT_MANAGE, UH_SCOPE_PROJECT, UH_BODY_REQUIRED, NULL,
	 201, "SecretInput", "Secret", NULL,
	 "Create (201) or replace (200) a project's secret; the value is never returned"),
	R("DELETE", V1 "/projects/{id}/secrets/{name}", uh_h_secret_delete, UH_POL_PROJECT_MANAGE, UH_SCOPE_PROJECT, UH_BODY_NONE, NULL,
	 204, NULL, NULL, NULL, "Delete a project's secret"),
	R("GET", V1 "/projects/{id}/secrets", uh_h_secret_list, UH_POL_PROJECT_MANAGE, UH_SCOPE_PROJECT, UH_BODY_NONE, "limit,before",
	 200, NULL, "SecretList", NULL, "List a project's secrets (names and times, never values)"),
	RS("PUT", V1 "/secrets/{name}", uh_h_shared_secret_put, UH_POL_ADMIN, UH_SCOPE_NONE, UH_BODY_REQUIRED, NULL,
	 201, "SharedSecretInput", "Secret", NULL,
	 "Create (201) or replace (200) a shared secret granted to the listed projects (projects absent: grants kept)"),
	R("DELETE", V1 "/secrets/{name}", uh_h_shared_secret_delete, UH_POL_ADMIN, UH_SCOPE_NONE, UH_BODY_NONE, NULL,
	 204, NULL, NULL, NULL, "Delete a shared secret and its grants"),
	R("GET", V1 "/secrets", uh_h_shared_secret_list, UH_POL_ADMIN, UH_SCOPE_NONE, UH_BODY_NONE, "limit,before",
	 200, NULL, "SecretList", NULL, "List the shared secrets with the projects they are granted to"),
	R("POST", V1 "/secrets/rotate-key", uh_h_secret_rotate, UH_POL_ADMIN, UH_SCOPE_NONE, UH_BODY_OPTIONAL, NULL,
	 200, NULL, "RotateKey", NULL,
	 "Rotate the secret store's key: every secret is re-sealed under a new key in one transaction"),

	R("POST", V1 "/jobs/{id}/runs", uh_h_run_trigger, UH_POL_PROJECT_OPERATE, UH_SCOPE_JOB, UH_BODY_OPTIONAL, NULL,
	 201, "RunTrigger", "Run", NULL,
	 "Trigger a run; Idempotency-Key honoured (the same key and body answer the first run with 200)",
	 "Idempotency-Key"),

	R("GET", V1 "/runs", uh_h_run_list, UH_POL_USER_SCOPED, UH_SCOPE_NONE, UH_BODY_NONE, "job,project,status,limit,before",
	 200, NULL, "RunList", NULL, "List runs of the caller's projects, newest first"),
	R("GET", V1 "/runs/{id}", uh_h_run_get, UH_POL_PROJECT_READ, UH_SCOPE_RUN, UH_BODY_NONE, NULL,
	 200, NULL, "Run", NULL, "Get a run"),
	R("GET", V1 "/runs/{id}/logs", uh_h_run_logs, UH_POL_PROJECT_READ, UH_SCOPE_RUN, UH_BODY_NONE, "follow,format",
	 200, NULL, NULL, "text/plain; charset=utf-8",
	 "A run's output: text, ?format=ndjson, or Server-Sent Events with Accept: text/event-stream; ?follow=1 streams",
	 "Accept,Last-Event-ID"),
	R("POST", V1 "/runs/{id}/cancel", uh_h_run_cancel, UH_POL_PROJECT_OPERATE, UH_SCOPE_RUN, UH_BODY_OPTIONAL, NULL,
	 202, NULL, "Run", NULL, "Cancel a run; it stays running until the kill lands"),
	R("POST", V1 "/runs/{id}/rerun", uh_h_run_rerun, UH_POL_PROJECT_OPERATE, UH_SCOPE_RUN, UH_BODY_OPTIONAL, NULL,
	 201, NULL, "Run", NULL,
	 "Start a new run of the same job with the same parameters, through every guardrail again"),

	RR("POST", V1 "/runs/{id}/callback", uh_h_run_callback, UH_POL_PUBLIC, UH_SCOPE_NONE, UH_BODY_REQUIRED, NULL,
	 200, NULL, NULL, NULL,
	 "End a webhook run in callback mode: signed with X-Uhub-Signature (t=UNIX,v1=HEX, HMAC-SHA256 keyed "
	 "with the run's callback token over t.body); body {status, exit_code?, message?, log?}; every refusal "
	 "is the same 401",
	 "X-Uhub-Signature"),

	R("POST", V1 "/runs/{id}/approve", uh_h_run_approve, UH_POL_PROJECT_MANAGE, UH_SCOPE_RUN, UH_BODY_OPTIONAL, NULL,
	 200, "RunDecision", "Run", NULL,
	 "Approve a run waiting in pending_approval (projets member or admin; never its requester nor the job's last editor)"),
	R("POST", V1 "/runs/{id}/reject", uh_h_run_reject, UH_POL_PROJECT_MANAGE, UH_SCOPE_RUN, UH_BODY_OPTIONAL, NULL,
	 200, "RunDecision", "Run", NULL,
	 "Reject a run waiting in pending_approval (projets member or admin; never its requester nor the job's last editor)"),

	R("POST", V1 "/exceptions", uh_h_exception_create, UH_POL_ADMIN, UH_SCOPE_NONE, UH_BODY_REQUIRED, NULL,
	 201, "ExceptionInput", "Exception", NULL, "Create an exception letting the local backend run in prod for a project or job"),
	R("GET", V1 "/exceptions", uh_h_exception_list, UH_POL_ADMIN, UH_SCOPE_NONE, UH_BODY_NONE, "limit,before",
	 200, NULL, "ExceptionList", NULL, "List the exceptions not deleted, newest first"),
	R("DELETE", V1 "/exceptions/{id}", uh_h_exception_delete, UH_POL_ADMIN, UH_SCOPE_NONE, UH_BODY_NONE, NULL,
	 204, NULL, NULL, NULL, "Delete an exception; queued runs it covered end rejected (exception_revoked)"),

	R("GET", V1 "/audit", uh_h_audit_list, UH_POL_ADMIN, UH_SCOPE_NONE, UH_BODY_NONE, "since,actor,target,limit,before",
	 200, NULL, "AuditList", NULL, "Audit events, newest first"),
	R("GET", V1 "/audit/verify", uh_h_audit_verify, UH_POL_ADMIN, UH_SCOPE_NONE, UH_BODY_NONE, NULL,
	 200, NULL, "AuditVerify", NULL, "Check the audit chain"),
};
/* clang-format on */

const size_t uh_api_nroutes = sizeof(uh_api_routes) / sizeof(uh_api_routes[0]);

const char *uh_api_policy_name(enum uh_api_policy p)
{
	switch (p) {
	case UH_POL_PUBLIC:
		return "anyone, no token";
	case UH_POL_USER:
		return "any user";
	case UH_POL_USER_SCOPED:
		return "any user; only the caller's projects (admin: all)";
	case UH_POL_ADMIN:
		return "admin";
	case UH_POL_ADMIN_OR_OWNER:
		return "admin, or the token's own user";
	case UH_POL_PROJECT_READ:
		return "members of the project (viewer and up), admin";
	case UH_POL_PROJECT_OPERATE:
		return "members of the project with role operator and up, admin";
	case UH_POL_PROJECT_MANAGE:
		return "members of the project with role projets, admin";
	default:
		return NULL;
	}
}

/* Match one pattern against a path; params filled from {name} segments. */
/* A {name} segment is a secret name; every other parameter is an id. */
static bool param_ok(const char *pname, size_t pname_len, const char *s, size_t n)
{
	if (pname_len == 4 && strncmp(pname, "name", 4) == 0) {
		char v[UH_API_PARAM_MAX];
		if (n == 0 || n >= sizeof(v))
			return false;
		memcpy(v, s, n);
		v[n] = '\0';
		return uh_api_name_ok(v);
	}
	return uh_api_id_ok(s, n);
}

static bool match(const char *pattern, const char *path, char params[UH_API_MAX_PARAMS][UH_API_PARAM_MAX])
{
	const char *p = pattern, *s = path;
	int np = 0;
	while (*p && *s) {
		if (*p == '{') {
			const char *pe = strchr(p, '}');
			size_t n = strcspn(s, "/");
			if (!pe || np >= UH_API_MAX_PARAMS || !param_ok(p + 1, (size_t)(pe - p - 1), s, n))
				return false;
			memcpy(params[np], s, n);
			params[np][n] = '\0';
			np++;
			p = pe + 1;
			s += n;
			continue;
		}
		if (*p != *s)
			return false;
		p++;
		s++;
	}
	return *p == '\0' && *s == '\0';
}

int uh_api_route_match(const char *method, const char *path, const struct uh_api_route **route,
                       char params[UH_API_MAX_PARAMS][UH_API_PARAM_MAX], char *allow, size_t allow_len)
{
	char tmp[UH_API_MAX_PARAMS][UH_API_PARAM_MAX];
	bool path_known = false;
	if (allow && allow_len)
		allow[0] = '\0';
	*route = NULL;
	if (!path || strlen(path) > 1024)
		return UH_E_NOT_FOUND;
	for (size_t i = 0; i < uh_api_nroutes; i++) {
		const struct uh_api_route *rt = &uh_api_routes[i];
		memset(tmp, 0, sizeof(tmp));
		if (!match(rt->pattern, path, tmp))
			continue;
		if (method && strcmp(rt->method, method) == 0) {
			*route = rt;
			memcpy(params, tmp, sizeof(tmp));
			return 0;
		}
		if (allow && allow_len && !strstr(allow, rt->method)) {
			size_t n = strlen(allow);
			snprintf(allow + n, allow_len - n, "%s%s", n ? ", " : "", rt->method);
		}
		path_known = true;
	}
	return path_known ? UH_E_METHOD_NOT_ALLOWED : UH_E_NOT_FOUND;
}

bool uh_api_route_query_allowed(const struct uh_api_route *route, const char *name)
{
	if (!route->query || !name)
		return false;
	size_t n = strlen(name);
	for (const char *q = route->query; *q;) {
		size_t m = strcspn(q, ",");
		if (m == n && strncmp(q, name, n) == 0)
			return true;
		q += m;
		if (*q == ',')
			q++;
	}
	return false;
}
