/* The OpenAPI 3 document, generated from the route table so that it cannot
 * drift from what the server does: paths, methods, policies (as
 * x-uhub-policy and the security requirement), path, query and header
 * parameters, bodies and answers. The object schemas are written once here,
 * in the shapes of SPEC §5. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "util/json.h"

/* clang-format off */
static const char schemas_json[] =
"{"
"\"Error\":{\"type\":\"object\",\"required\":[\"error\"],\"properties\":{\"error\":{\"type\":\"object\","
"  \"required\":[\"code\",\"message\"],\"properties\":{"
"  \"code\":{\"type\":\"string\",\"enum\":[\"invalid_request\",\"invalid_config\",\"unsupported_backend\","
"    \"unauthorized\",\"forbidden\",\"guardrail\",\"not_found\",\"conflict\",\"payload_too_large\","
"    \"rate_limited\",\"unavailable\",\"internal\"]},"
"  \"message\":{\"type\":\"string\"},"
"  \"field\":{\"type\":\"string\",\"description\":\"dotted path of the offending key\"}}}}},"
"\"Health\":{\"type\":\"object\",\"properties\":{\"status\":{\"type\":\"string\",\"enum\":[\"ok\"]}}},"
"\"Role\":{\"type\":\"string\",\"enum\":[\"admin\",\"projets\",\"operator\",\"viewer\"]},"
"\"Backend\":{\"type\":\"string\",\"enum\":[\"local\",\"docker\",\"webhook\",\"ssh\",\"kubernetes\",\"serverless\"]},"
"\"Environment\":{\"type\":\"string\",\"enum\":[\"dev\",\"staging\",\"prod\"]},"
"\"Name\":{\"type\":\"string\",\"pattern\":\"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$\"},"
"\"User\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\"},\"name\":{\"$ref\":\"#/components/schemas/Name\"},"
"  \"role\":{\"$ref\":\"#/components/schemas/Role\"},\"disabled\":{\"type\":\"boolean\"},"
"  \"created_at\":{\"type\":\"string\",\"format\":\"date-time\"}}},"
"\"Me\":{\"allOf\":[{\"$ref\":\"#/components/schemas/User\"},{\"type\":\"object\",\"properties\":{"
"  \"token_id\":{\"type\":\"string\"}}}]},"
"\"UserCreate\":{\"type\":\"object\",\"additionalProperties\":false,\"required\":[\"name\",\"role\"],\"properties\":{"
"  \"name\":{\"$ref\":\"#/components/schemas/Name\"},\"role\":{\"$ref\":\"#/components/schemas/Role\"}}},"
"\"UserPatch\":{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{"
"  \"role\":{\"$ref\":\"#/components/schemas/Role\"},\"disabled\":{\"type\":\"boolean\"}}},"
"\"TokenCreate\":{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{"
"  \"expires_at\":{\"type\":\"string\",\"format\":\"date-time\",\"nullable\":true}}},"
"\"TokenCreated\":{\"type\":\"object\",\"required\":[\"id\",\"token\"],\"properties\":{\"id\":{\"type\":\"string\"},"
"  \"token\":{\"type\":\"string\",\"description\":\"the bearer token, shown this once\"},"
"  \"user_id\":{\"type\":\"string\"},\"expires_at\":{\"type\":\"string\",\"format\":\"date-time\",\"nullable\":true}}},"
"\"ProjectFields\":{\"type\":\"object\",\"properties\":{"
"  \"name\":{\"$ref\":\"#/components/schemas/Name\"},\"environment\":{\"$ref\":\"#/components/schemas/Environment\"},"
"  \"execution_backend\":{\"$ref\":\"#/components/schemas/Backend\"},"
"  \"execution_backend_config\":{\"type\":\"object\",\"additionalProperties\":true},"
"  \"vault_prefix\":{\"type\":\"string\",\"nullable\":true,\"description\":\"admin only\"},"
"  \"max_concurrent\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":10000,\"nullable\":true}}},"
"\"ProjectInput\":{\"allOf\":[{\"$ref\":\"#/components/schemas/ProjectFields\"},"
"  {\"type\":\"object\",\"required\":[\"name\",\"environment\",\"execution_backend\"]}]},"
"\"ProjectPatch\":{\"$ref\":\"#/components/schemas/ProjectFields\"},"
"\"Project\":{\"allOf\":[{\"$ref\":\"#/components/schemas/ProjectFields\"},{\"type\":\"object\",\"properties\":{"
"  \"id\":{\"type\":\"string\"},\"created_at\":{\"type\":\"string\",\"format\":\"date-time\"},"
"  \"updated_at\":{\"type\":\"string\",\"format\":\"date-time\"}}}]},"
"\"MemberAdd\":{\"type\":\"object\",\"additionalProperties\":false,\"required\":[\"user_id\"],\"properties\":{"
"  \"user_id\":{\"type\":\"string\"}}},"
"\"Member\":{\"type\":\"object\",\"properties\":{\"project_id\":{\"type\":\"string\"},\"user_id\":{\"type\":\"string\"},"
"  \"name\":{\"type\":\"string\"},\"role\":{\"$ref\":\"#/components/schemas/Role\"},"
"  \"added_at\":{\"type\":\"string\",\"format\":\"date-time\"}}},"
"\"JobFields\":{\"type\":\"object\",\"properties\":{"
"  \"name\":{\"$ref\":\"#/components/schemas/Name\"},"
"  \"command\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"minItems\":1,\"nullable\":true,"
"    \"description\":\"argv; absent for webhook and serverless\"},"
"  \"execution_backend\":{\"allOf\":[{\"$ref\":\"#/components/schemas/Backend\"}],\"nullable\":true},"
"  \"execution_backend_config\":{\"type\":\"object\",\"additionalProperties\":true,\"nullable\":true},"
"  \"critical\":{\"type\":\"boolean\"},"
"  \"env\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"},\"description\":\"readable by every reader: no secrets\"},"
"  \"secrets\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"},"
"    \"description\":\"ENV name to NAME, shared:NAME or vault:PATH#KEY\"},"
"  \"parameters\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"pattern\":\"^[A-Z][A-Z0-9_]*$\"}},"
"  \"max_concurrent\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":10000,\"nullable\":true},"
"  \"retries\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":10}}},"
"\"JobInput\":{\"allOf\":[{\"$ref\":\"#/components/schemas/JobFields\"},{\"type\":\"object\",\"required\":[\"name\"]}]},"
"\"JobPatch\":{\"$ref\":\"#/components/schemas/JobFields\"},"
"\"Job\":{\"allOf\":[{\"$ref\":\"#/components/schemas/JobFields\"},{\"type\":\"object\",\"properties\":{"
"  \"id\":{\"type\":\"string\"},\"project_id\":{\"type\":\"string\"},"
"  \"created_at\":{\"type\":\"string\",\"format\":\"date-time\"},\"updated_at\":{\"type\":\"string\",\"format\":\"date-time\"},"
"  \"updated_by\":{\"type\":\"string\"}}}]},"
"\"RunTrigger\":{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{"
"  \"parameters\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}}}},"
"\"RunStatus\":{\"type\":\"string\",\"enum\":[\"pending_approval\",\"queued\",\"running\",\"succeeded\",\"failed\","
"  \"timed_out\",\"canceled\",\"rejected\",\"error\",\"lost\"]},"
"\"Run\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\"},\"job_id\":{\"type\":\"string\"},"
"  \"project_id\":{\"type\":\"string\"},\"status\":{\"$ref\":\"#/components/schemas/RunStatus\"},"
"  \"reason\":{\"type\":\"string\",\"nullable\":true},\"message\":{\"type\":\"string\",\"nullable\":true},"
"  \"backend\":{\"type\":\"string\",\"nullable\":true},"
"  \"parameters\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}},"
"  \"requested_by\":{\"type\":\"string\",\"nullable\":true},\"approved_by\":{\"type\":\"string\",\"nullable\":true},"
"  \"rejected_by\":{\"type\":\"string\",\"nullable\":true},\"canceled_by\":{\"type\":\"string\",\"nullable\":true},"
"  \"comments\":{\"type\":\"array\",\"items\":{\"type\":\"object\"}},"
"  \"created_at\":{\"type\":\"string\",\"format\":\"date-time\",\"nullable\":true},"
"  \"started_at\":{\"type\":\"string\",\"format\":\"date-time\",\"nullable\":true},"
"  \"finished_at\":{\"type\":\"string\",\"format\":\"date-time\",\"nullable\":true},"
"  \"exit_code\":{\"type\":\"integer\",\"nullable\":true},\"external_id\":{\"type\":\"string\",\"nullable\":true},"
"  \"log_truncated\":{\"type\":\"boolean\"},\"retry_of\":{\"type\":\"string\",\"nullable\":true},"
"  \"effective_config\":{\"type\":\"object\",\"nullable\":true}}},"
"\"RunDecision\":{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{"
"  \"comment\":{\"type\":\"string\",\"maxLength\":4000,\"nullable\":true}}},"
"\"ExceptionInput\":{\"type\":\"object\",\"additionalProperties\":false,"
"  \"required\":[\"project_id\",\"reason\",\"expires_at\"],\"properties\":{"
"  \"project_id\":{\"type\":\"string\"},\"job_id\":{\"type\":\"string\",\"nullable\":true},"
"  \"reason\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":1000},"
"  \"expires_at\":{\"type\":\"string\",\"format\":\"date-time\",\"description\":\"in the future\"}}},"
"\"Exception\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\"},"
"  \"project_id\":{\"type\":\"string\"},\"job_id\":{\"type\":\"string\",\"nullable\":true},"
"  \"reason\":{\"type\":\"string\"},\"expires_at\":{\"type\":\"string\",\"format\":\"date-time\"},"
"  \"created_by\":{\"type\":\"string\"},\"created_at\":{\"type\":\"string\",\"format\":\"date-time\"},"
"  \"live\":{\"type\":\"boolean\",\"description\":\"not expired yet\"}}},"
"\"SecretInput\":{\"type\":\"object\",\"additionalProperties\":false,\"required\":[\"value\"],\"properties\":{"
"  \"value\":{\"type\":\"string\",\"minLength\":8,\"maxLength\":65536,\"writeOnly\":true,"
"    \"description\":\"8 to 65536 bytes, no NUL (a shorter value cannot be masked in logs); never returned\"}}},"
"\"SharedSecretInput\":{\"type\":\"object\",\"additionalProperties\":false,\"required\":[\"value\"],\"properties\":{"
"  \"value\":{\"type\":\"string\",\"minLength\":8,\"maxLength\":65536,\"writeOnly\":true,"
"    \"description\":\"8 to 65536 bytes, no NUL (a shorter value cannot be masked in logs); never returned\"},"
"  \"projects\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},"
"    \"description\":\"ids of the projects granted the secret; replaces the grants, absent keeps them\"}}},"
"\"Secret\":{\"type\":\"object\",\"properties\":{\"name\":{\"$ref\":\"#/components/schemas/Name\"},"
"  \"scope\":{\"type\":\"string\",\"description\":\"the owning project's id, or shared\"},"
"  \"projects\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},"
"    \"description\":\"shared secrets only: the projects granted it (archived ones left out)\"},"
"  \"created_at\":{\"type\":\"string\",\"format\":\"date-time\"},"
"  \"updated_at\":{\"type\":\"string\",\"format\":\"date-time\"},\"updated_by\":{\"type\":\"string\"}}},"
"\"RotateKey\":{\"type\":\"object\",\"required\":[\"resealed\"],\"properties\":{"
"  \"resealed\":{\"type\":\"integer\",\"description\":\"secrets re-sealed under the new key\"},"
"  \"unreadable\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
"    \"scope\":{\"type\":\"string\"},\"name\":{\"type\":\"string\"}}},"
"    \"description\":\"rows that open under no key (altered or moved in the database), left as they are\"}}},"
"\"AuditEvent\":{\"type\":\"object\",\"properties\":{\"seq\":{\"type\":\"integer\"},"
"  \"at\":{\"type\":\"string\",\"format\":\"date-time\"},\"actor\":{\"type\":\"string\"},\"action\":{\"type\":\"string\"},"
"  \"target\":{\"type\":\"string\",\"nullable\":true},\"details\":{\"type\":\"object\"},\"prev\":{\"type\":\"string\"},"
"  \"hash\":{\"type\":\"string\"}}},"
"\"AuditVerify\":{\"type\":\"object\",\"required\":[\"ok\"],\"properties\":{\"ok\":{\"type\":\"boolean\"},"
"  \"events\":{\"type\":\"integer\"},\"broken_at\":{\"type\":\"integer\"},\"problem\":{\"type\":\"string\"}}}"
"}";
/* clang-format on */

/* List answers: {"items": [X], "next": cursor|null}. */
static const struct {
	const char *list, *item;
} lists[] = {
    {"UserList", "User"}, {"ProjectList", "Project"},  {"MemberList", "Member"},       {"JobList", "Job"},
    {"RunList", "Run"},   {"AuditList", "AuditEvent"}, {"ExceptionList", "Exception"}, {"SecretList", "Secret"},
};

static const struct {
	const char *name, *schema, *description;
} query_params[] = {
    {"limit", "{\"type\":\"integer\",\"minimum\":1,\"maximum\":100,\"default\":50}", "page size"},
    {"before", "{\"type\":\"string\"}", "the previous page's next cursor"},
    {"name", "{\"type\":\"string\"}", "exact name"},
    {"job", "{\"type\":\"string\"}", "job id"},
    {"project", "{\"type\":\"string\"}", "project id"},
    {"status", "{\"$ref\":\"#/components/schemas/RunStatus\"}", "run status"},
    {"follow", "{\"type\":\"string\",\"enum\":[\"1\",\"0\",\"true\",\"false\"]}",
     "keep the answer open and stream new output until the run has ended"},
    {"format", "{\"type\":\"string\",\"enum\":[\"text\",\"ndjson\"]}",
     "ndjson: one {\"t\",\"stream\",\"text\"} object per line"},
    {"since", "{\"type\":\"string\",\"format\":\"date-time\"}", "events at or after this time"},
    {"actor", "{\"type\":\"string\"}", "user id, or system"},
    {"target", "{\"type\":\"string\"}", "object id"},
};

static const struct {
	const char *name, *description;
} header_params[] = {
    {"Idempotency-Key", "per user for 24 h: the same key with the same body answers the first run (200), with "
                        "another body 409"},
    {"Accept", "text/event-stream for Server-Sent Events (log events, heartbeats, a final end event)"},
    {"Last-Event-ID", "resume an event stream after this byte offset"},
};

static json_t *ref(const char *name)
{
	char r[128];
	snprintf(r, sizeof(r), "#/components/schemas/%s", name);
	return json_pack("{s:s}", "$ref", r);
}

static json_t *schema_of_query(const char *name)
{
	for (size_t i = 0; i < sizeof(query_params) / sizeof(query_params[0]); i++)
		if (strcmp(query_params[i].name, name) == 0)
			return json_pack("{s:s,s:s,s:s,s:b,s:o}", "name", name, "in", "query", "description",
			                 query_params[i].description, "required", 0, "schema",
			                 json_loads(query_params[i].schema, 0, NULL));
	return json_pack("{s:s,s:s,s:b,s:{s:s}}", "name", name, "in", "query", "required", 0, "schema", "type",
	                 "string");
}

static json_t *header_param(const char *name)
{
	const char *d = "";
	for (size_t i = 0; i < sizeof(header_params) / sizeof(header_params[0]); i++)
		if (strcmp(header_params[i].name, name) == 0)
			d = header_params[i].description;
	return json_pack("{s:s,s:s,s:s,s:b,s:{s:s}}", "name", name, "in", "header", "description", d, "required", 0,
	                 "schema", "type", "string");
}

/* "get_projects_id_members" from GET /api/v1/projects/{id}/members */
static void operation_id(const struct uh_api_route *rt, char *out, size_t n)
{
	size_t o = 0;
	for (const char *m = rt->method; *m && o + 1 < n; m++)
		out[o++] = (char)tolower((unsigned char)*m);
	const char *p = rt->pattern;
	if (strncmp(p, "/api/v1", 7) == 0)
		p += 7;
	for (; *p && o + 1 < n; p++) {
		if (*p == '/' || *p == '.')
			out[o++] = '_';
		else if (*p != '{' && *p != '}')
			out[o++] = *p;
	}
	out[o] = '\0';
}

static const char *policy_key(enum uh_api_policy p)
{
	static const char *const k[UH_POL__COUNT] = {
	    [UH_POL_PUBLIC] = "public",
	    [UH_POL_USER] = "user",
	    [UH_POL_USER_SCOPED] = "user_scoped",
	    [UH_POL_ADMIN] = "admin",
	    [UH_POL_ADMIN_OR_OWNER] = "admin_or_owner",
	    [UH_POL_PROJECT_READ] = "project_read",
	    [UH_POL_PROJECT_OPERATE] = "project_operate",
	    [UH_POL_PROJECT_MANAGE] = "project_manage",
	};
	return p > UH_POL_UNSET && p < UH_POL__COUNT ? k[p] : "unset";
}

static void add_error(json_t *responses, int status, const char *desc)
{
	char s[8];
	snprintf(s, sizeof(s), "%d", status);
	if (!json_object_get(responses, s))
		json_object_set_new(responses, s,
		                    json_pack("{s:s,s:{s:{s:o}}}", "description", desc, "content", "application/json",
		                              "schema", ref("Error")));
}

static json_t *operation(const struct uh_api_route *rt)
{
	char opid[128];
	operation_id(rt, opid, sizeof(opid));
	json_t *op = json_object();
	json_object_set_new(op, "operationId", json_string(opid));
	json_object_set_new(op, "summary", json_string(rt->summary ? rt->summary : ""));
	char desc[256];
	snprintf(desc, sizeof(desc), "Who: %s.", uh_api_policy_name(rt->policy) ? uh_api_policy_name(rt->policy) : "?");
	json_object_set_new(op, "description", json_string(desc));
	json_object_set_new(op, "x-uhub-policy", json_string(policy_key(rt->policy)));
	if (rt->policy == UH_POL_PUBLIC)
		json_object_set_new(op, "security", json_array());

	json_t *params = json_array();
	for (const char *p = strchr(rt->pattern, '{'); p; p = strchr(p + 1, '{')) {
		const char *e = strchr(p, '}');
		if (!e)
			break;
		if (e - p - 1 == 4 && strncmp(p + 1, "name", 4) == 0) /* a secret's name */
			json_array_append_new(params, json_pack("{s:s,s:s,s:b,s:o}", "name", "name", "in", "path",
			                                        "required", 1, "schema", ref("Name")));
		else
			json_array_append_new(params, json_pack("{s:s#,s:s,s:b,s:{s:s,s:i}}", "name", p + 1,
			                                        (int)(e - p - 1), "in", "path", "required", 1, "schema",
			                                        "type", "string", "maxLength", UH_ID_MAX - 1));
	}
	for (const char *q = rt->query; q && *q;) {
		size_t m = strcspn(q, ",");
		char name[64];
		snprintf(name, sizeof(name), "%.*s", (int)m, q);
		json_array_append_new(params, schema_of_query(name));
		q += m + (q[m] == ',');
	}
	for (const char *h = rt->headers; h && *h;) {
		size_t m = strcspn(h, ",");
		char name[64];
		snprintf(name, sizeof(name), "%.*s", (int)m, h);
		json_array_append_new(params, header_param(name));
		h += m + (h[m] == ',');
	}
	if (json_array_size(params))
		json_object_set_new(op, "parameters", params);
	else
		json_decref(params);

	if (rt->request_schema) {
		json_t *content = json_object();
		json_object_set_new(content, "application/json", json_pack("{s:o}", "schema", ref(rt->request_schema)));
		if (strcmp(rt->method, "PATCH") == 0)
			json_object_set_new(content, "application/merge-patch+json",
			                    json_pack("{s:o}", "schema", ref(rt->request_schema)));
		json_object_set_new(
		    op, "requestBody",
		    json_pack("{s:b,s:o}", "required", rt->body == UH_BODY_REQUIRED, "content", content));
	}

	json_t *responses = json_object();
	char st[8];
	snprintf(st, sizeof(st), "%d", rt->status);
	json_t *ok = json_pack("{s:s}", "description", rt->status == 204 ? "done, no content" : "success");
	if (rt->response_schema) {
		json_object_set_new(ok, "content",
		                    json_pack("{s:{s:o}}", "application/json", "schema", ref(rt->response_schema)));
	} else if (rt->response_type) {
		json_t *content = json_object();
		json_object_set_new(content, rt->response_type, json_pack("{s:{s:s}}", "schema", "type", "string"));
		if (rt->handler == uh_h_run_logs) {
			json_object_set_new(content, "application/x-ndjson",
			                    json_pack("{s:{s:s}}", "schema", "type", "string"));
			json_object_set_new(content, "text/event-stream",
			                    json_pack("{s:{s:s}}", "schema", "type", "string"));
		}
		json_object_set_new(ok, "content", content);
	} else if (rt->status != 204) {
		json_object_set_new(ok, "content",
		                    json_pack("{s:{s:{s:s}}}", "application/json", "schema", "type", "object"));
	}
	json_object_set_new(responses, st, ok);
	if (rt->handler == uh_h_run_trigger)
		json_object_set_new(responses, "200",
		                    json_pack("{s:s,s:{s:{s:o}}}", "description",
		                              "the run a previous request with the same Idempotency-Key created",
		                              "content", "application/json", "schema", ref("Run")));
	if (rt->handler == uh_h_secret_put || rt->handler == uh_h_shared_secret_put)
		json_object_set_new(responses, "200",
		                    json_pack("{s:s,s:{s:{s:o}}}", "description", "replaced an existing secret",
		                              "content", "application/json", "schema", ref("Secret")));
	if (rt->query || rt->body != UH_BODY_NONE || rt->scope != UH_SCOPE_NONE || strstr(rt->pattern, "{name}"))
		add_error(responses, 400, "invalid request, naming the field");
	if (rt->policy != UH_POL_PUBLIC) {
		add_error(responses, 401, "missing, unknown, expired or revoked token");
		add_error(responses, 429, "rate limited");
	}
	if (rt->policy == UH_POL_ADMIN || rt->policy == UH_POL_PROJECT_READ || rt->policy == UH_POL_PROJECT_OPERATE ||
	    rt->policy == UH_POL_PROJECT_MANAGE)
		add_error(responses, 403, "the caller's role does not allow this");
	if (rt->scope != UH_SCOPE_NONE || strstr(rt->pattern, "{name}"))
		add_error(responses, 404, "no such object, or one the caller may not see");
	if (rt->body != UH_BODY_NONE) {
		add_error(responses, 413, "body larger than api.max_body_bytes");
		add_error(responses, 415, "body is not application/json");
	}
	if (rt->handler == uh_h_run_trigger) {
		add_error(responses, 403, "refused by a guardrail (code guardrail)");
		add_error(responses, 409, "Idempotency-Key reused with another body");
		add_error(responses, 503, "the daemon is shutting down");
	}
	if (strcmp(rt->method, "DELETE") == 0 || strcmp(rt->method, "PATCH") == 0 || rt->status == 201 ||
	    rt->handler == uh_h_run_cancel)
		add_error(responses, 409, "conflict");
	json_object_set_new(op, "responses", responses);
	return op;
}

json_t *uh_api_openapi(void)
{
	json_t *schemas = json_loads(schemas_json, JSON_REJECT_DUPLICATES, NULL);
	if (!schemas)
		return NULL;
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
		json_object_set_new(schemas, lists[i].list,
		                    json_pack("{s:s,s:[s,s],s:{s:{s:s,s:o},s:{s:s,s:b}}}", "type", "object", "required",
		                              "items", "next", "properties", "items", "type", "array", "items",
		                              ref(lists[i].item), "next", "type", "string", "nullable", 1));

	json_t *paths = json_object();
	for (size_t i = 0; i < uh_api_nroutes; i++) {
		const struct uh_api_route *rt = &uh_api_routes[i];
		json_t *item = json_object_get(paths, rt->pattern);
		if (!item) {
			item = json_object();
			json_object_set_new(paths, rt->pattern, item);
		}
		char m[16];
		size_t k = 0;
		for (; rt->method[k] && k + 1 < sizeof(m); k++)
			m[k] = (char)tolower((unsigned char)rt->method[k]);
		m[k] = '\0';
		json_object_set_new(item, m, operation(rt));
	}

	json_t *doc = json_pack("{s:s,s:{s:s,s:s,s:s},s:o,s:{s:o,s:{s:{s:s,s:s}}},s:[{s:[]}]}", "openapi", "3.0.3",
	                        "info", "title", "uhub", "version", "1", "description",
	                        "uhub launches technical jobs through execution backends, securely and traceably. "
	                        "Errors are {\"error\":{\"code\",\"message\",\"field\"?}}; lists are "
	                        "{\"items\",\"next\"}; times are RFC 3339 UTC.",
	                        "paths", paths, "components", "schemas", schemas, "securitySchemes", "bearer", "type",
	                        "http", "scheme", "bearer", "security", "bearer");
	return doc;
}
