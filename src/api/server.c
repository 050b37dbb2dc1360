/* The HTTP server: libmicrohttpd in epoll mode with its own threads, the
 * request pipeline and the answers.
 *
 * A request goes: route (404/405) -> query names -> body size and media
 * type (413/415) -> bearer token (401) -> rate limit (429), all on the
 * first call, before a byte of body is read; then the body is read up to
 * api.max_body_bytes; then the route's policy is enforced, loading the
 * object the path names (404 for what the caller may not see, 403 for a
 * role too low); then the body is parsed (uh_json_parse) and the handler
 * runs. Every answer is JSON {"error":{...}} on failure, and is counted in
 * /metrics. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/internal.h"
#include "core/metrics.h"
#include "util/crypto.h"
#include "util/json.h"
#include "util/log.h"
#include "util/time.h"

#define THREADS              4
#define CONNECTION_LIMIT     1024
#define CONNECTION_TIMEOUT_S 60
#define DEFAULT_MAX_BODY     (1u << 20)
#define MAX_PEM              (1u << 20)

/* Per-request state, from the first call to the completion callback. */
struct conn_ctx {
	const struct uh_api_route *route;
	char params[UH_API_MAX_PARAMS][UH_API_PARAM_MAX];
	bool authed;
	struct uh_principal who;
	struct uh_buf body;
	bool too_large, oom, answered;
	uint64_t discarded;
	int64_t t0;
	int status;
};

/* ---- answers ---- */

/* A JSON string from text that may hold anything (a name from the URL, a
 * message cut mid-character): invalid UTF-8 becomes U+FFFD. */
static json_t *safe_string(const char *s)
{
	json_t *j = json_string(s);
	if (j)
		return j;
	struct uh_buf b = UH_BUF_INIT(8192);
	struct uh_utf8 d = {0};
	uh_utf8_feed(&d, s, strlen(s), &b);
	uh_utf8_flush(&d, &b);
	j = json_string(b.data ? b.data : "");
	uh_buf_free(&b);
	return j ? j : json_string("");
}

static enum MHD_Result queue(struct MHD_Connection *conn, struct conn_ctx *cx, const char *method, int status,
                             struct MHD_Response *resp)
{
	enum MHD_Result ret = MHD_queue_response(conn, (unsigned int)status, resp);
	MHD_destroy_response(resp);
	uh_metrics_http(method, status);
	if (cx) {
		cx->answered = true;
		cx->status = status;
	}
	return ret;
}

static void common_headers(struct MHD_Response *resp)
{
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
}

static enum MHD_Result answer_text(struct MHD_Connection *conn, struct conn_ctx *cx, const char *method, int status,
                                   char *data, size_t len, const char *ctype, const char *h1, const char *v1)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(data);
		return MHD_NO;
	}
	if (ctype)
		MHD_add_response_header(resp, "Content-Type", ctype);
	common_headers(resp);
	if (h1 && v1)
		MHD_add_response_header(resp, h1, v1);
	return queue(conn, cx, method, status, resp);
}

static enum MHD_Result answer_json(struct MHD_Connection *conn, struct conn_ctx *cx, const char *method, int status,
                                   json_t *j, const char *h1, const char *v1)
{
	if (status == 204 || !j) {
		json_decref(j);
		struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
		if (!resp)
			return MHD_NO;
		common_headers(resp);
		return queue(conn, cx, method, status, resp);
	}
	char *s = uh_json_dump(j);
	json_decref(j);
	if (!s)
		return MHD_NO;
	return answer_text(conn, cx, method, status, s, strlen(s), "application/json", h1, v1);
}

static const char *default_message(int code)
{
	switch (code) {
	case UH_E_NOT_FOUND:
		return "not found";
	case UH_E_UNAUTHORIZED:
		return "missing or invalid bearer token";
	case UH_E_FORBIDDEN:
		return "not allowed";
	default:
		return uh_errno_name(code);
	}
}

static enum MHD_Result answer_error(struct MHD_Connection *conn, struct conn_ctx *cx, const char *method,
                                    const char *path, int code, const struct uh_error *err, const char *h1,
                                    const char *v1)
{
	if (code >= 0 || code <= UH__E_FIRST || code >= UH__E_LAST)
		code = UH_E_INTERNAL;
	int status = uh_errno_status(code);
	const char *msg = err && err->message[0] ? err->message : default_message(code);
	if (code == UH_E_INTERNAL) {
		/* The detail goes to the daemon's log, not to the client. */
		uh_errorf("api: %s %s: %s", method, path, msg);
		msg = "internal error";
	}
	json_t *e = json_object();
	json_object_set_new(e, "code", json_string(uh_errno_name(code)));
	json_object_set_new(e, "message", safe_string(msg));
	if (err && err->field[0] && code != UH_E_INTERNAL)
		json_object_set_new(e, "field", safe_string(err->field));
	json_t *j = json_object();
	json_object_set_new(j, "error", e);
	if (code == UH_E_UNAUTHORIZED && !h1) {
		h1 = "WWW-Authenticate";
		v1 = "Bearer realm=\"uhub\"";
	}
	return answer_json(conn, cx, method, status, j, h1, v1);
}

static enum MHD_Result fail(struct MHD_Connection *conn, struct conn_ctx *cx, const char *method, const char *path,
                            int code, const char *field, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static enum MHD_Result fail(struct MHD_Connection *conn, struct conn_ctx *cx, const char *method, const char *path,
                            int code, const char *field, const char *fmt, ...)
{
	struct uh_error err = {0};
	err.code = code;
	snprintf(err.field, sizeof(err.field), "%s", field ? field : "");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err.message, sizeof(err.message), fmt, ap);
	va_end(ap);
	return answer_error(conn, cx, method, path, code, &err, NULL, NULL);
}

/* ---- helpers for handlers ---- */

const char *uh_api_query(struct uh_api_req *r, const char *name)
{
	const char *v = NULL;
	size_t n = 0;
	if (MHD_lookup_connection_value_n(r->conn, MHD_GET_ARGUMENT_KIND, name, strlen(name), &v, &n) != MHD_YES)
		return NULL;
	return v ? v : ""; /* "?follow" without a value */
}

int uh_api_page(struct uh_api_req *r, int *limit, const char **before, struct uh_error *err)
{
	int rc = uh_api_parse_limit(uh_api_query(r, "limit"), limit, err);
	return rc ? rc : uh_api_parse_cursor(uh_api_query(r, "before"), before, err);
}

const char *uh_api_filter(struct uh_api_req *r, const char *name)
{
	const char *v = uh_api_query(r, name);
	return v && *v ? v : NULL;
}

const char *uh_api_header(struct uh_api_req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

int uh_api_answer(struct uh_api_req *r, int status, json_t *out)
{
	r->status = status;
	json_decref(r->out);
	r->out = out;
	if (!out && status != 204)
		return UH_E_INTERNAL;
	return 0;
}

int uh_api_answer_list(struct uh_api_req *r, json_t *items, const char *next)
{
	json_t *j = json_object();
	json_object_set_new(j, "items", items ? items : json_array());
	json_object_set_new(j, "next", next && *next ? json_string(next) : json_null());
	return uh_api_answer(r, 200, j);
}

struct uh_audit_in uh_api_audit(const struct uh_api_req *r, const char *action, const char *target,
                                const json_t *details)
{
	struct uh_audit_in a = {
	    .actor = r->who.user_id[0] ? r->who.user_id : "system",
	    .action = action,
	    .target = target,
	    .details = details,
	};
	return a;
}

int uh_api_not_found(int rc, struct uh_error *err, const char *what, const char *id)
{
	if (rc == UH_E_NOT_FOUND)
		return uh_error_set(err, UH_E_NOT_FOUND, NULL, "%s '%s' not found", what, id);
	return rc;
}

/* ---- the policy ---- */

static int need_rank(enum uh_api_policy p)
{
	switch (p) {
	case UH_POL_PROJECT_READ:
		return 1;
	case UH_POL_PROJECT_OPERATE:
		return 2;
	case UH_POL_PROJECT_MANAGE:
		return 3;
	default:
		return 99;
	}
}

static const char *rank_role(int rank)
{
	static const char *const r[] = {"?", "viewer", "operator", "projets", "admin"};
	return rank >= 1 && rank <= 4 ? r[rank] : "admin";
}

static bool project_policy(enum uh_api_policy p)
{
	return p == UH_POL_PROJECT_READ || p == UH_POL_PROJECT_OPERATE || p == UH_POL_PROJECT_MANAGE;
}

/* Enforce the route's policy, loading the object its path names. */
static int enforce(struct uh_api_req *r, struct uh_error *err)
{
	const struct uh_api_route *rt = r->route;
	struct uh_store *s = r->deps->store;
	const char *id = r->params[0];
	const char *project_id = NULL, *what = NULL;
	int rc;

	switch (rt->policy) {
	case UH_POL_PUBLIC:
		return 0;
	case UH_POL_USER:
	case UH_POL_USER_SCOPED:
		return r->authed ? 0 : uh_error_set(err, UH_E_UNAUTHORIZED, NULL, "missing or invalid bearer token");
	case UH_POL_ADMIN:
		if (!r->admin)
			return uh_error_set(err, UH_E_FORBIDDEN, NULL, "only an admin may %s %s", rt->method,
			                    rt->pattern);
		break;
	case UH_POL_ADMIN_OR_OWNER:
	case UH_POL_PROJECT_READ:
	case UH_POL_PROJECT_OPERATE:
	case UH_POL_PROJECT_MANAGE:
		break;
	default:
		/* Default deny: a route without a policy answers nothing. */
		return uh_error_set(err, UH_E_INTERNAL, NULL, "route %s %s has no policy", rt->method, rt->pattern);
	}
	if (!r->authed)
		return uh_error_set(err, UH_E_UNAUTHORIZED, NULL, "missing or invalid bearer token");

	switch (rt->scope) {
	case UH_SCOPE_NONE:
		if (project_policy(rt->policy) || rt->policy == UH_POL_ADMIN_OR_OWNER)
			return uh_error_set(err, UH_E_INTERNAL, NULL, "route %s %s has a scoped policy but no scope",
			                    rt->method, rt->pattern);
		return 0;
	case UH_SCOPE_PROJECT:
		if ((rc = uh_store_project_get(s, id, &r->project, err)))
			return uh_api_not_found(rc, err, "project", id);
		project_id = id;
		what = "project";
		break;
	case UH_SCOPE_JOB:
		if ((rc = uh_store_job_get(s, id, &r->job, err)))
			return uh_api_not_found(rc, err, "job", id);
		project_id = json_string_value(json_object_get(r->job, "project_id"));
		what = "job";
		break;
	case UH_SCOPE_RUN:
		if ((rc = uh_store_run_get(s, id, &r->run, err)))
			return uh_api_not_found(rc, err, "run", id);
		project_id = r->run->project_id;
		what = "run";
		break;
	case UH_SCOPE_USER:
		if ((rc = uh_store_user_get(s, id, &r->object, err)))
			return uh_api_not_found(rc, err, "user", id);
		break;
	case UH_SCOPE_TOKEN:
		if ((rc = uh_store_token_get(s, id, &r->object, err)))
			return uh_api_not_found(rc, err, "token", id);
		if (rt->policy == UH_POL_ADMIN_OR_OWNER && !r->admin) {
			const char *owner = json_string_value(json_object_get(r->object, "user_id"));
			if (!owner || strcmp(owner, r->who.user_id) != 0)
				return uh_error_set(err, UH_E_NOT_FOUND, NULL, "token '%s' not found", id);
		}
		return 0;
	}
	if (rt->policy == UH_POL_ADMIN_OR_OWNER)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "route %s %s: owner policy on a non-token scope",
		                    rt->method, rt->pattern);
	if (!project_policy(rt->policy) || r->admin)
		return 0;
	if (!project_id || !*project_id)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "%s '%s' has no project", what, id);
	bool member = false;
	if ((rc = uh_store_is_member(s, project_id, r->who.user_id, &member, err)))
		return rc == UH_E_NOT_FOUND ? uh_error_set(err, UH_E_NOT_FOUND, NULL, "%s '%s' not found", what, id)
		                            : rc;
	if (!member)
		return uh_error_set(err, UH_E_NOT_FOUND, NULL, "%s '%s' not found", what, id);
	int need = need_rank(rt->policy);
	if (uh_api_role_rank(r->who.role) < need)
		return uh_error_set(err, UH_E_FORBIDDEN, NULL,
		                    "the role '%s' may not %s %s in this project (it takes %s or admin)", r->who.role,
		                    rt->method, rt->pattern, rank_role(need));
	return 0;
}

/* ---- the request pipeline ---- */

struct query_check {
	const struct uh_api_route *route;
	char bad[128];
	bool twice;
};

static enum MHD_Result check_query_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct query_check *q = cls;
	(void)kind;
	(void)value;
	if (!key)
		return MHD_YES;
	if (!uh_api_route_query_allowed(q->route, key)) {
		snprintf(q->bad, sizeof(q->bad), "%s", key);
		return MHD_NO;
	}
	return MHD_YES;
}

struct query_count {
	const char *key;
	int count;
};

static enum MHD_Result count_query_arg(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                       const char *value, size_t value_size)
{
	struct query_count *c = cls;
	(void)kind;
	(void)value;
	(void)value_size;
	if (key && key_size == strlen(c->key) && memcmp(key, c->key, key_size) == 0)
		c->count++;
	return MHD_YES;
}

/* A query parameter given twice is refused: which one counts would be a
 * guess. */
static bool query_twice(struct MHD_Connection *conn, const struct uh_api_route *rt, char *name, size_t n)
{
	for (const char *q = rt->query; q && *q;) {
		size_t m = strcspn(q, ",");
		char key[64];
		snprintf(key, sizeof(key), "%.*s", (int)m, q);
		struct query_count c = {key, 0};
		MHD_get_connection_values_n(conn, MHD_GET_ARGUMENT_KIND, count_query_arg, &c);
		if (c.count > 1) {
			snprintf(name, n, "%s", key);
			return true;
		}
		q += m + (q[m] == ',');
	}
	return false;
}

static bool has_body(struct MHD_Connection *conn, uint64_t *cl, bool *cl_given)
{
	const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
	const char *s = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
	*cl = 0;
	*cl_given = false;
	if (s) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(s, &end, 10);
		if (!errno && end != s && *end == '\0') {
			*cl = v;
			*cl_given = true;
		}
	}
	return (*cl_given && *cl > 0) || te;
}

static const struct uh_config *current_cfg(struct uh_api *api)
{
	return atomic_load(&api->cfg);
}

static size_t max_body(struct uh_api *api)
{
	const struct uh_config *cfg = current_cfg(api);
	int64_t m = cfg ? cfg->max_body_bytes : 0;
	return m > 0 ? (size_t)m : DEFAULT_MAX_BODY;
}

static enum MHD_Result first_call(struct uh_api *api, struct MHD_Connection *conn, struct conn_ctx *cx, const char *url,
                                  const char *method)
{
	char allow[64];
	int rc = uh_api_route_match(method, url, &cx->route, cx->params, allow, sizeof(allow));
	if (rc == UH_E_METHOD_NOT_ALLOWED) {
		struct uh_error err = {0};
		uh_error_set(&err, UH_E_METHOD_NOT_ALLOWED, NULL, "method %s is not allowed here (allowed: %s)", method,
		             allow);
		return answer_error(conn, cx, method, url, rc, &err, "Allow", allow);
	}
	if (rc)
		return fail(conn, cx, method, url, UH_E_NOT_FOUND, NULL, "no such route");
	const struct uh_api_route *rt = cx->route;
	/* Before a byte of it is read: every copy the buffer makes is wiped. */
	cx->body.secret = rt->secret_body;

	struct query_check q = {.route = rt};
	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, check_query_arg, &q);
	if (q.bad[0])
		return fail(conn, cx, method, url, UH_E_INVALID_REQUEST, q.bad, "unknown query parameter '%s'", q.bad);
	char twice[64];
	if (query_twice(conn, rt, twice, sizeof(twice)))
		return fail(conn, cx, method, url, UH_E_INVALID_REQUEST, twice, "query parameter '%s' is given twice",
		            twice);

	uint64_t cl;
	bool cl_given;
	if (has_body(conn, &cl, &cl_given)) {
		if (rt->body == UH_BODY_NONE)
			return fail(conn, cx, method, url, UH_E_INVALID_REQUEST, NULL, "%s %s takes no request body",
			            method, rt->pattern);
		if (cl_given && cl > max_body(api))
			return fail(conn, cx, method, url, UH_E_PAYLOAD_TOO_LARGE, NULL,
			            "request body is larger than %zu bytes (api.max_body_bytes)", max_body(api));
		bool patch = strcmp(method, "PATCH") == 0;
		if (!uh_api_media_ok(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type"), patch))
			return fail(conn, cx, method, url, UH_E_UNSUPPORTED_MEDIA, NULL,
			            "request body must be application/json%s",
			            patch ? " or application/merge-patch+json" : "");
	}

	if (rt->policy != UH_POL_PUBLIC) {
		const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
		size_t tlen = 0;
		const char *tok = uh_api_bearer(h, &tlen);
		if (!tok)
			return fail(conn, cx, method, url, UH_E_UNAUTHORIZED, NULL,
			            "an 'Authorization: Bearer TOKEN' header is required");
		char hash[65];
		uh_sha256_hex(tok, tlen, hash);
		struct uh_error err = {0};
		rc = uh_store_auth(api->deps.store, hash, uh_now_us(), &cx->who, &err);
		if (rc == UH_E_UNAUTHORIZED || rc == UH_E_NOT_FOUND)
			return fail(conn, cx, method, url, UH_E_UNAUTHORIZED, NULL,
			            "the bearer token is unknown, expired or revoked, or its user is disabled");
		if (rc)
			return answer_error(conn, cx, method, url, rc, &err, NULL, NULL);
		cx->authed = true;
		int64_t retry = 0;
		const struct uh_config *cfg = current_cfg(api);
		if (!uh_ratelimit_take(api->rl, cx->who.user_id, cfg->rate_limit_per_minute, uh_mono_us(), &retry)) {
			char ra[32];
			snprintf(ra, sizeof(ra), "%lld", (long long)retry);
			struct uh_error e = {0};
			uh_error_set(&e, UH_E_RATE_LIMITED, NULL,
			             "more than %lld requests a minute (api.rate_limit_per_minute); retry in %lld s",
			             (long long)cfg->rate_limit_per_minute, (long long)retry);
			return answer_error(conn, cx, method, url, UH_E_RATE_LIMITED, &e, "Retry-After", ra);
		}
	}
	return MHD_YES;
}

static void req_release(struct uh_api_req *r)
{
	json_decref(r->json);
	json_decref(r->project);
	json_decref(r->job);
	json_decref(r->object);
	json_decref(r->out);
	uh_run_free(r->run);
	if (r->resp)
		MHD_destroy_response(r->resp);
}

/* A parser's message quotes the text near the fault, which may be part of
 * a secret value: keep where, drop what. */
static void secret_parse_error(struct uh_error *err)
{
	if (strstr(err->message, "\\u0000")) {
		uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "a JSON string of this body holds \\u0000 (NUL)");
		return;
	}
	if (strncmp(err->message, "malformed JSON", 14) == 0) {
		char *colon = strchr(err->message, ':');
		if (colon)
			*colon = '\0';
	}
}

static enum MHD_Result dispatch(struct uh_api *api, struct MHD_Connection *conn, struct conn_ctx *cx, const char *url,
                                const char *method)
{
	/* One config for the whole request, even if a reload lands meanwhile. */
	struct uh_api_deps deps = api->deps;
	deps.cfg = current_cfg(api);
	struct uh_api_req r = {
	    .api = api,
	    .deps = &deps,
	    .conn = conn,
	    .method = method,
	    .path = url,
	    .route = cx->route,
	    .authed = cx->authed,
	    .who = cx->who,
	    .admin = cx->authed && strcmp(cx->who.role, "admin") == 0,
	    .body = cx->body.data,
	    .body_len = cx->body.len,
	};
	memcpy(r.params, cx->params, sizeof(r.params));
	struct uh_error err = {0};
	int rc = 0;
	if (cx->route->body == UH_BODY_NONE && r.body_len)
		rc = uh_error_set(&err, UH_E_INVALID_REQUEST, NULL, "%s %s takes no request body", method,
		                  cx->route->pattern);
	if (!rc)
		rc = enforce(&r, &err);
	if (cx->route->raw_body) {
		/* the handler reads and checks r.body itself */
	} else if (!rc && r.body_len) {
		r.json = uh_json_parse(r.body, r.body_len, true, &err);
		if (!r.json)
			rc = err.code ? err.code : UH_E_INVALID_REQUEST;
		if (!r.json && cx->route->secret_body)
			secret_parse_error(&err);
	} else if (!rc && cx->route->body == UH_BODY_REQUIRED) {
		rc =
		    uh_error_set(&err, UH_E_INVALID_REQUEST, NULL, "request body is empty, a JSON object was expected");
	}
	if (!rc) {
		rc = cx->route->handler(&r, &err);
		if (!rc && !r.resp && !r.out && r.status != 204)
			rc = uh_error_set(&err, UH_E_INTERNAL, NULL, "handler of %s %s answered nothing", method,
			                  cx->route->pattern);
	}
	enum MHD_Result ret;
	if (rc) {
		ret = answer_error(conn, cx, method, url, rc, &err, NULL, NULL);
	} else if (r.resp) {
		struct MHD_Response *resp = r.resp;
		r.resp = NULL;
		ret = queue(conn, cx, method, r.status, resp);
	} else {
		json_t *out = r.out;
		r.out = NULL;
		ret = answer_json(conn, cx, method, r.status, out, NULL, NULL);
	}
	req_release(&r);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
	struct uh_api *api = cls;
	struct conn_ctx *cx = *con_cls;
	(void)version;
	if (!cx) {
		cx = calloc(1, sizeof(*cx));
		if (!cx)
			return MHD_NO;
		cx->t0 = uh_mono_us();
		uh_buf_init(&cx->body, max_body(api));
		*con_cls = cx;
		return first_call(api, conn, cx, url, method);
	}
	if (cx->answered) {
		/* Answered early: whatever body follows is dropped. */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size) {
		if (!cx->too_large && !cx->oom) {
			int rc = uh_buf_append(&cx->body, upload_data, *upload_data_size);
			if (rc == UH_E_PAYLOAD_TOO_LARGE)
				cx->too_large = true;
			else if (rc)
				cx->oom = true;
			if (rc)
				uh_buf_free(&cx->body);
		}
		if (cx->too_large || cx->oom) {
			cx->discarded += *upload_data_size;
			if (cx->discarded > 4 * (uint64_t)max_body(api) + (1u << 20))
				return MHD_NO; /* stop reading an endless body: close */
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (cx->too_large)
		return fail(conn, cx, method, url, UH_E_PAYLOAD_TOO_LARGE, NULL,
		            "request body is larger than %zu bytes (api.max_body_bytes)", max_body(api));
	if (cx->oom)
		return fail(conn, cx, method, url, UH_E_INTERNAL, NULL, "out of memory reading the request body");
	return dispatch(api, conn, cx, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct conn_ctx *cx = *con_cls;
	(void)cls;
	(void)conn;
	if (!cx)
		return;
	if (cx->route)
		uh_debug("api: %s status=%d ms=%lld%s", cx->route->pattern, cx->status,
		         (long long)((uh_mono_us() - cx->t0) / 1000),
		         toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection ended early)");
	uh_buf_free(&cx->body);
	free(cx);
	*con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	size_t n = strlen(line);
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	/* A follower ending because its client left, or the daemon stops, is
	 * reported by libmicrohttpd as an application error: not news. */
	if (strstr(line, "application error generating response"))
		uh_debug("api: libmicrohttpd: %s", line);
	else
		uh_warn("api: libmicrohttpd: %s", line);
}

/* ---- start and stop ---- */

/* "HOST:PORT", "[V6]:PORT"; port 0 lets the kernel choose. */
static int resolve_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *sslen, struct uh_error *err)
{
	if (!listen || !*listen)
		return uh_error_set(err, UH_E_INVALID_CONFIG, "listen", "'listen' is empty");
	const char *colon = strrchr(listen, ':');
	if (!colon || !colon[1])
		return uh_error_set(err, UH_E_INVALID_CONFIG, "listen", "'listen' must be HOST:PORT, got '%s'", listen);
	char host[256], port[8];
	const char *h = listen;
	size_t hl = (size_t)(colon - listen);
	if (hl && h[0] == '[') {
		if (h[hl - 1] != ']' || hl < 3)
			return uh_error_set(err, UH_E_INVALID_CONFIG, "listen",
			                    "'listen' must be [IPV6]:PORT, got '%s'", listen);
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(host) || strlen(colon + 1) >= sizeof(port))
		return uh_error_set(err, UH_E_INVALID_CONFIG, "listen", "'listen' must be HOST:PORT, got '%s'", listen);
	memcpy(host, h, hl);
	host[hl] = '\0';
	snprintf(port, sizeof(port), "%s", colon + 1);
	for (const char *p = port; *p; p++)
		if (*p < '0' || *p > '9')
			return uh_error_set(err, UH_E_INVALID_CONFIG, "listen", "'listen' port '%s' is not a number",
			                    port);
	if (atoi(port) > 65535)
		return uh_error_set(err, UH_E_INVALID_CONFIG, "listen", "'listen' port %s is above 65535", port);
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	int g = getaddrinfo(host, port, &hints, &res);
	if (g || !res)
		return uh_error_set(err, UH_E_INVALID_CONFIG, "listen", "cannot resolve 'listen' host '%s': %s", host,
		                    gai_strerror(g));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*sslen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static int read_pem(const char *path, const char *what, char **out, struct uh_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return uh_error_set(err, UH_E_INVALID_CONFIG, what, "cannot open '%s': %s", path, strerror(errno));
	struct uh_buf b = UH_BUF_INIT(MAX_PEM);
	b.secret = true;
	char chunk[4096];
	ssize_t n;
	int rc = 0;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0 || (n < 0 && errno == EINTR))
		if (n > 0 && (rc = uh_buf_append(&b, chunk, (size_t)n)))
			break;
	uh_memzero(chunk, sizeof(chunk));
	close(fd);
	if (n < 0 || rc || !b.len) {
		uh_buf_free(&b);
		return uh_error_set(err, UH_E_INVALID_CONFIG, what, "cannot read '%s'%s", path,
		                    rc ? ": file too large" : "");
	}
	*out = uh_buf_take(&b);
	return 0;
}

static void api_free(struct uh_api *api)
{
	if (!api)
		return;
	uh_api_logs_free(api);
	uh_ratelimit_free(api->rl);
	free(api->openapi_text);
	if (api->tls_key_pem) {
		uh_memzero(api->tls_key_pem, strlen(api->tls_key_pem));
		free(api->tls_key_pem);
	}
	free(api->tls_cert_pem);
	free(api);
}

int uh_api_start(const struct uh_api_deps *deps, struct uh_api **out, struct uh_error *err)
{
	*out = NULL;
	if (!deps || !deps->store || !deps->cfg)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "the API needs a store and a configuration");
	struct uh_api *api = calloc(1, sizeof(*api));
	if (!api)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	api->deps = *deps;
	atomic_init(&api->cfg, deps->cfg);
	api->rl = uh_ratelimit_new();
	json_t *doc = uh_api_openapi();
	api->openapi_text = doc ? json_dumps(doc, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
	json_decref(doc);
	if (!api->rl || !api->openapi_text) {
		api_free(api);
		return uh_error_set(err, UH_E_INTERNAL, NULL, "cannot build the API's tables");
	}
	struct sockaddr_storage ss;
	socklen_t sslen = 0;
	int rc = resolve_listen(deps->cfg->listen, &ss, &sslen, err);
	if (rc) {
		api_free(api);
		return rc;
	}
	/* MHD_USE_AUTO_INTERNAL_THREAD cannot be combined with an explicit
	 * MHD_USE_EPOLL in 0.9.75 (the start fails silently): name both. */
	unsigned int flags =
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	struct MHD_OptionItem opts[16];
	int n = 0;
	opts[n++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)on_mhd_log, api}; /* first */
	opts[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &ss};
	opts[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, THREADS, NULL};
	opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, CONNECTION_LIMIT, NULL};
	opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, CONNECTION_TIMEOUT_S, NULL};
	opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, api};
	if (deps->cfg->tls_cert) {
		if (!deps->cfg->tls_key) {
			api_free(api);
			return uh_error_set(err, UH_E_INVALID_CONFIG, "tls.key",
			                    "'tls.cert' is set but 'tls.key' is not");
		}
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
			api_free(api);
			return uh_error_set(err, UH_E_INVALID_CONFIG, "tls.cert",
			                    "this libmicrohttpd was built without TLS");
		}
		if ((rc = read_pem(deps->cfg->tls_cert, "tls.cert", &api->tls_cert_pem, err)) ||
		    (rc = read_pem(deps->cfg->tls_key, "tls.key", &api->tls_key_pem, err))) {
			api_free(api);
			return rc;
		}
		flags |= MHD_USE_TLS;
		api->tls = true;
		opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, api->tls_cert_pem};
		opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, api->tls_key_pem};
	}
	opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

	if ((rc = uh_api_logs_start(api, err))) {
		api_free(api);
		return rc;
	}
	api->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, api, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
	if (!api->mhd) {
		atomic_store(&api->stopping, 1);
		uh_api_logs_stop(api);
		api_free(api);
		return uh_error_set(err, UH_E_UNAVAILABLE, "listen", "cannot listen on '%s'%s (in use, or not allowed)",
		                    deps->cfg->listen, deps->cfg->tls_cert ? " with TLS" : "");
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(api->mhd, MHD_DAEMON_INFO_BIND_PORT);
	api->port = di ? di->port : 0;
	uh_info("api: listening on %s (port %d%s)", deps->cfg->listen, api->port, api->tls ? ", TLS" : "");
	*out = api;
	return 0;
}

int uh_api_port(const struct uh_api *api)
{
	return api ? api->port : 0;
}

void uh_api_set_config(struct uh_api *api, const struct uh_config *cfg)
{
	if (api && cfg)
		atomic_store(&api->cfg, cfg);
}

void uh_api_stop(struct uh_api *api)
{
	if (!api)
		return;
	atomic_store(&api->stopping, 1);
	/* Followers end and every suspended connection is resumed before
	 * libmicrohttpd stops (stopping with one suspended is undefined). */
	uh_api_logs_stop(api);
	if (api->mhd)
		MHD_stop_daemon(api->mhd);
	api_free(api);
}
