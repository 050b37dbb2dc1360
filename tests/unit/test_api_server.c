/* The HTTP API in-process: a real SQLite store in a temporary directory,
 * uh_api_start on 127.0.0.1:0, libcurl and raw sockets as clients. Covers
 * the framing (404/405/413/415, query and id checks, malformed requests),
 * authentication, the policy (404 for non-members, 403 for a low role),
 * the trigger (kick, Idempotency-Key, draining), cancel, log rendering and
 * live follow through suspend/resume (no busy loop while idle), SSE resume,
 * the rate limit, and a stop while followers are suspended. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "core/notify.h"
#include "core/run.h"
#include "store/store.h"
#include "tap.h"
#include "util/buf.h"
#include "util/crypto.h"
#include "util/json.h"
#include "util/time.h"

static const unsigned char KEY[UH_AUDIT_KEY_LEN] = "0123456789abcdef0123456789abcdef";
static struct uh_store *S;
static struct uh_config CFG;
static struct uh_api *API;
static int PORT;
static atomic_int kicks, cancels;
static volatile int draining;
static char ADMIN[64], ADMIN_ID[UH_ID_MAX];

#define AUD(act, tgt) (&(struct uh_audit_in){.actor = "system", .action = (act), .target = (tgt)})

static void kick(void *arg)
{
	(void)arg;
	atomic_fetch_add(&kicks, 1);
}

static void cancel(void *arg, const char *run_id)
{
	(void)arg;
	(void)run_id;
	atomic_fetch_add(&cancels, 1);
}

/* ---- a small HTTP client ---- */

struct resp {
	long status;
	struct uh_buf body, head;
	json_t *json;
};

static size_t on_body(char *p, size_t s, size_t n, void *u)
{
	uh_buf_append(u, p, s * n);
	return s * n;
}

static void resp_free(struct resp *r)
{
	uh_buf_free(&r->body);
	uh_buf_free(&r->head);
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}

/* extra: "Name: value" lines separated by '\n', or NULL. */
static long http(const char *method, const char *path, const char *token, const char *body, const char *ctype,
                 const char *extra, struct resp *r)
{
	memset(r, 0, sizeof(*r));
	uh_buf_init(&r->body, 16 << 20);
	uh_buf_init(&r->head, 1 << 20);
	CURL *c = curl_easy_init();
	char url[512], line[512];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", PORT, path);
	struct curl_slist *h = NULL;
	if (token) {
		snprintf(line, sizeof(line), "Authorization: Bearer %s", token);
		h = curl_slist_append(h, line);
	}
	if (body) {
		snprintf(line, sizeof(line), "Content-Type: %s", ctype ? ctype : "application/json");
		h = curl_slist_append(h, line);
	}
	h = curl_slist_append(h, "Expect:");
	for (const char *e = extra; e && *e;) {
		size_t n = strcspn(e, "\n");
		snprintf(line, sizeof(line), "%.*s", (int)n, e);
		h = curl_slist_append(h, line);
		e += n + (e[n] == '\n');
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->head);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	CURLcode cc = curl_easy_perform(c);
	if (cc)
		fprintf(stderr, "%s %s: %s\n", method, path, curl_easy_strerror(cc));
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	if (r->body.len)
		r->json = json_loadb(r->body.data, r->body.len, 0, NULL);
	return r->status;
}

static const char *err_code(const struct resp *r)
{
	return json_string_value(json_object_get(json_object_get(r->json, "error"), "code"));
}

static const char *err_field(const struct resp *r)
{
	const char *f = json_string_value(json_object_get(json_object_get(r->json, "error"), "field"));
	return f ? f : "";
}

static const char *str(const json_t *j, const char *k)
{
	const char *s = json_string_value(json_object_get(j, k));
	return s ? s : "";
}

/* An error as SPEC §5 shapes it: status, JSON, code, message. */
#define IS_ERROR(r, st, code)                                                                                    \
	do {                                                                                                     \
		const char *_c = err_code(r);                                                                    \
		bool _ok = (r)->status == (st) && _c && !strcmp(_c, (code)) &&                                   \
		           json_string_value(json_object_get(json_object_get((r)->json, "error"), "message"));   \
		if (!_ok)                                                                                        \
			fprintf(stderr, "%s:%d: expected %d %s, got %ld %s\n", __FILE__, __LINE__, (st), (code), \
			        (r)->status, (r)->body.data ? (r)->body.data : "");                              \
		CHECK(_ok);                                                                                      \
	} while (0)

/* A raw request on a socket; the answer until the server closes. */
static int raw(const char *req, size_t len, struct uh_buf *out)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)PORT)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct timeval tv = {10, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		return -1;
	}
	size_t off = 0;
	while (off < len) {
		ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	char buf[4096];
	ssize_t n;
	while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
		uh_buf_append(out, buf, (size_t)n);
	close(fd);
	return 0;
}

static int raw_status(const struct uh_buf *b)
{
	if (!b->data || strncmp(b->data, "HTTP/1.", 7) != 0)
		return -1;
	return atoi(b->data + 9);
}

/* ---- fixtures ---- */

static void make_user(const char *name, const char *role, char tok[64], char id[UH_ID_MAX])
{
	struct uh_error e = {0};
	json_t *u = NULL;
	CHECK(uh_store_user_create(S, name, role, AUD("user.create", NULL), &u, &e) == 0);
	snprintf(id, UH_ID_MAX, "%s", str(u, "id"));
	json_decref(u);
	char hash[65], tid[UH_ID_MAX];
	uh_token_new(tok);
	uh_sha256_hex(tok, strlen(tok), hash);
	CHECK(uh_store_token_create(S, id, hash, 0, AUD("token.create", id), tid, &e) == 0);
}

static void setup(const char *dir)
{
	char url[300], head[300];
	snprintf(url, sizeof(url), "sqlite:%s/uhub.db", dir);
	snprintf(head, sizeof(head), "%s/audit.head", dir);
	struct uh_store_options o = {.audit_key = KEY, .audit_head_path = head};
	struct uh_error e = {0};
	if (uh_store_open(url, &o, &S, &e)) {
		fprintf(stderr, "store: %s\n", e.message);
		exit(1);
	}
	uh_config_defaults(&CFG, &e);
	free(CFG.listen);
	CFG.listen = strdup("127.0.0.1:0");
	CFG.max_body_bytes = 4096;
	CFG.rate_limit_per_minute = 0;
	for (size_t i = 0; i < CFG.local.allowed_executables.n; i++)
		free(CFG.local.allowed_executables.v[i]);
	free(CFG.local.allowed_executables.v);
	CFG.local.allowed_executables.v = calloc(2, sizeof(char *));
	CFG.local.allowed_executables.v[0] = strdup("/usr/bin/echo");
	CFG.local.allowed_executables.n = 1;
	free(CFG.local.work_root);
	CFG.local.work_root = strdup(dir);
	make_user("admin", "admin", ADMIN, ADMIN_ID);
	struct uh_api_deps d = {.store = S, .cfg = &CFG, .kick = kick, .cancel = cancel, .draining = &draining};
	if (uh_api_start(&d, &API, &e)) {
		fprintf(stderr, "api: %s\n", e.message);
		exit(1);
	}
	PORT = uh_api_port(API);
	CHECK(PORT > 0);
}

/* ---- tests ---- */

static void test_public_and_auth(void)
{
	struct resp r;
	CHECK(http("GET", "/healthz", NULL, NULL, NULL, NULL, &r) == 200);
	CHECK_STR(str(r.json, "status"), "ok");
	CHECK(strstr(r.head.data, "application/json") != NULL);
	resp_free(&r);
	CHECK(http("GET", "/metrics", NULL, NULL, NULL, NULL, &r) == 200);
	CHECK(strstr(r.body.data, "uhub_http_requests_total") && strstr(r.body.data, "# TYPE uhub_runs gauge"));
	CHECK(strstr(r.head.data, "text/plain") != NULL);
	resp_free(&r);
	CHECK(http("GET", "/api/v1/openapi.json", NULL, NULL, NULL, NULL, &r) == 200);
	CHECK(json_object_get(r.json, "paths") != NULL);
	resp_free(&r);

	http("GET", "/api/v1/me", NULL, NULL, NULL, NULL, &r);
	IS_ERROR(&r, 401, "unauthorized");
	CHECK(strstr(r.head.data, "WWW-Authenticate: Bearer") != NULL);
	resp_free(&r);
	http("GET", "/api/v1/me", "uht_not_a_token", NULL, NULL, NULL, &r);
	IS_ERROR(&r, 401, "unauthorized");
	resp_free(&r);
	http("GET", "/api/v1/me", NULL, NULL, NULL, "Authorization: Basic YTpi", &r);
	IS_ERROR(&r, 401, "unauthorized");
	resp_free(&r);
	CHECK(http("GET", "/api/v1/me", ADMIN, NULL, NULL, NULL, &r) == 200);
	CHECK_STR(str(r.json, "id"), ADMIN_ID);
	CHECK_STR(str(r.json, "role"), "admin");
	CHECK(str(r.json, "token_id")[0] != '\0');
	resp_free(&r);
}

static void test_framing(void)
{
	struct resp r;
	http("GET", "/api/v1/nothing", ADMIN, NULL, NULL, NULL, &r);
	IS_ERROR(&r, 404, "not_found");
	resp_free(&r);
	http("PUT", "/api/v1/projects", ADMIN, NULL, NULL, NULL, &r);
	IS_ERROR(&r, 405, "invalid_request");
	CHECK(strstr(r.head.data, "Allow: ") && strstr(r.head.data, "GET") && strstr(r.head.data, "POST"));
	resp_free(&r);
	/* odd and overlong ids never reach the store */
	http("GET", "/api/v1/runs/a.b", ADMIN, NULL, NULL, NULL, &r);
	IS_ERROR(&r, 404, "not_found");
	resp_free(&r);
	char longid[200] = "/api/v1/jobs/";
	memset(longid + 13, 'j', 100);
	longid[113] = '\0';
	http("GET", longid, ADMIN, NULL, NULL, NULL, &r);
	IS_ERROR(&r, 404, "not_found");
	resp_free(&r);
	http("GET", "/api/v1/runs/r_%00x", ADMIN, NULL, NULL, NULL, &r);
	CHECK(r.status == 404 || r.status == 400);
	resp_free(&r);
	/* query parameters: unknown, repeated, bad values */
	http("GET", "/api/v1/runs?stauts=running", ADMIN, NULL, NULL, NULL, &r);
	IS_ERROR(&r, 400, "invalid_request");
	CHECK_STR(err_field(&r), "stauts");
	resp_free(&r);
	http("GET", "/api/v1/runs?limit=1&limit=1000", ADMIN, NULL, NULL, NULL, &r);
	IS_ERROR(&r, 400, "invalid_request");
	CHECK_STR(err_field(&r), "limit");
	resp_free(&r);
	http("GET", "/api/v1/runs?limit=101", ADMIN, NULL, NULL, NULL, &r);
	IS_ERROR(&r, 400, "invalid_request");
	CHECK_STR(err_field(&r), "limit");
	resp_free(&r);
	http("GET", "/api/v1/runs?status=bogus", ADMIN, NULL, NULL, NULL, &r);
	CHECK_STR(err_field(&r), "status");
	resp_free(&r);
	http("GET", "/api/v1/runs?job=a%27b", ADMIN, NULL, NULL, NULL, &r);
	CHECK_STR(err_field(&r), "job");
	resp_free(&r);
	http("GET", "/api/v1/audit?since=yesterday", ADMIN, NULL, NULL, NULL, &r);
	CHECK_STR(err_field(&r), "since");
	resp_free(&r);
	CHECK(http("GET", "/api/v1/runs?limit=2", ADMIN, NULL, NULL, NULL, &r) == 200);
	CHECK(json_is_array(json_object_get(r.json, "items")) && json_object_get(r.json, "next"));
	resp_free(&r);
	/* bodies: where none is taken, media type, size, JSON */
	http("GET", "/api/v1/me", ADMIN, "{}", NULL, NULL, &r);
	IS_ERROR(&r, 400, "invalid_request");
	resp_free(&r);
	http("POST", "/api/v1/projects", ADMIN, "{}", "text/plain", NULL, &r);
	IS_ERROR(&r, 415, "invalid_request");
	resp_free(&r);
	http("POST", "/api/v1/projects", ADMIN, "{}", "application/merge-patch+json", NULL, &r);
	IS_ERROR(&r, 415, "invalid_request");
	resp_free(&r);
	http("POST", "/api/v1/projects", ADMIN, "{\"a\":1,\"a\":2}", NULL, NULL, &r);
	IS_ERROR(&r, 400, "invalid_request");
	resp_free(&r);
	http("POST", "/api/v1/projects", ADMIN, "", NULL, NULL, &r);
	IS_ERROR(&r, 400, "invalid_request");
	resp_free(&r);
	char deep[2100];
	memset(deep, '[', 2000);
	deep[2000] = '\0';
	http("POST", "/api/v1/projects", ADMIN, deep, NULL, NULL, &r);
	IS_ERROR(&r, 400, "invalid_request");
	resp_free(&r);
	char *big = malloc(8192);
	memset(big, ' ', 8191);
	big[0] = '{';
	big[8190] = '}';
	big[8191] = '\0';
	http("POST", "/api/v1/projects", ADMIN, big, NULL, NULL, &r);
	IS_ERROR(&r, 413, "payload_too_large");
	resp_free(&r);
	http("PATCH", "/api/v1/projects/p_x", ADMIN, big, NULL, NULL, &r);
	IS_ERROR(&r, 413, "payload_too_large");
	resp_free(&r);
	free(big);

	/* chunked, over the limit: read, dropped, then 413 */
	struct uh_buf b = UH_BUF_INIT(1 << 20);
	struct uh_buf req = UH_BUF_INIT(1 << 20);
	uh_buf_printf(&req,
	              "POST /api/v1/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
	              "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
	              ADMIN);
	for (int i = 0; i < 20; i++) {
		uh_buf_appends(&req, "200\r\n");
		for (int k = 0; k < 512; k++)
			uh_buf_append(&req, " ", 1);
		uh_buf_appends(&req, "\r\n");
	}
	uh_buf_appends(&req, "0\r\n\r\n");
	raw(req.data, req.len, &b);
	CHECK(raw_status(&b) == 413);
	CHECK(b.data && strstr(b.data, "payload_too_large"));
	uh_buf_free(&b);
	uh_buf_free(&req);

	/* malformed requests: libmicrohttpd's own 4xx, or ours; never a crash */
	const char *junk[] = {
	    "GARBAGE\r\n\r\n",
	    "GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \x01\x02\r\nConnection: close\r\n\r\n",
	    "GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\nConnection: close\r\n\r\n",
	    "POST /api/v1/projects HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\nConnection: close\r\n\r\n",
	    "POST /api/v1/projects HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n"
	    "Connection: close\r\n\r\n",
	    "GET /healthz?%zz=%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	    "GET /api/v1/projects/%ff%fe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		uh_buf_init(&b, 1 << 20);
		raw(junk[i], strlen(junk[i]), &b);
		int st = raw_status(&b);
		if (st != -1 && (st < 400 || st > 499) && st != 200)
			fprintf(stderr, "junk %zu: %d\n", i, st);
		CHECK(st == -1 || st == 200 || (st >= 400 && st <= 499));
		uh_buf_free(&b);
	}
	CHECK(http("GET", "/healthz", NULL, NULL, NULL, NULL, &r) == 200);
	resp_free(&r);
}

struct world {
	char pid[UH_ID_MAX], jid[UH_ID_MAX];
	char viewer[64], viewer_id[UH_ID_MAX], oper[64], oper_id[UH_ID_MAX], outsider[64], outsider_id[UH_ID_MAX];
	char projets[64], projets_id[UH_ID_MAX];
};
static struct world W;

static void post_ok(const char *path, const char *body, int want, json_t **out)
{
	struct resp r;
	http("POST", path, ADMIN, body, NULL, NULL, &r);
	if (r.status != want)
		fprintf(stderr, "POST %s: %ld %s\n", path, r.status, r.body.data);
	CHECK(r.status == want);
	if (out)
		*out = json_incref(r.json);
	resp_free(&r);
}

static void test_policy(void)
{
	json_t *p = NULL, *j = NULL;
	post_ok("/api/v1/projects",
	        "{\"name\":\"web\",\"environment\":\"dev\",\"execution_backend\":\"local\","
	        "\"execution_backend_config\":{}}",
	        201, &p);
	snprintf(W.pid, sizeof(W.pid), "%s", str(p, "id"));
	char path[256], body[512];
	snprintf(path, sizeof(path), "/api/v1/projects/%s/jobs", W.pid);
	post_ok(path, "{\"name\":\"hello\",\"command\":[\"/bin/echo\",\"hi\"],\"parameters\":[\"WHO\"]}", 201, &j);
	snprintf(W.jid, sizeof(W.jid), "%s", str(j, "id"));
	json_decref(p);
	json_decref(j);
	make_user("viewer", "viewer", W.viewer, W.viewer_id);
	make_user("oper", "operator", W.oper, W.oper_id);
	make_user("outsider", "operator", W.outsider, W.outsider_id);
	make_user("manager", "projets", W.projets, W.projets_id);
	snprintf(path, sizeof(path), "/api/v1/projects/%s/members", W.pid);
	const char *ids[] = {W.viewer_id, W.oper_id, W.projets_id};
	for (int i = 0; i < 3; i++) {
		snprintf(body, sizeof(body), "{\"user_id\":\"%s\"}", ids[i]);
		post_ok(path, body, 201, NULL);
	}
	snprintf(body, sizeof(body), "{\"user_id\":\"u_nobody\"}");
	struct resp r;
	http("POST", path, ADMIN, body, NULL, NULL, &r);
	IS_ERROR(&r, 404, "not_found");
	CHECK_STR(err_field(&r), "user_id");
	resp_free(&r);

	/* non-member: 404, worded as for a missing object */
	char p1[128], p2[128];
	snprintf(p1, sizeof(p1), "/api/v1/jobs/%s", W.jid);
	snprintf(p2, sizeof(p2), "/api/v1/jobs/%s", "j_doesnotexist000000");
	struct resp a, b;
	http("GET", p1, W.outsider, NULL, NULL, NULL, &a);
	http("GET", p2, W.outsider, NULL, NULL, NULL, &b);
	IS_ERROR(&a, 404, "not_found");
	IS_ERROR(&b, 404, "not_found");
	char ma[600], mb[600];
	snprintf(ma, sizeof(ma), "%s", json_string_value(json_object_get(json_object_get(a.json, "error"), "message")));
	snprintf(mb, sizeof(mb), "%s", json_string_value(json_object_get(json_object_get(b.json, "error"), "message")));
	char *x = strstr(ma, W.jid), *y = strstr(mb, "j_doesnotexist000000");
	CHECK(x && y && (x - ma) == (y - mb) && strcmp(x + strlen(W.jid), y + 20) == 0);
	resp_free(&a);
	resp_free(&b);
	/* the outsider sees no project in lists */
	http("GET", "/api/v1/projects", W.outsider, NULL, NULL, NULL, &r);
	CHECK(r.status == 200 && json_array_size(json_object_get(r.json, "items")) == 0);
	resp_free(&r);
	snprintf(path, sizeof(path), "/api/v1/runs?project=%s", W.pid);
	http("GET", path, W.outsider, NULL, NULL, NULL, &r);
	CHECK(r.status == 200 && json_array_size(json_object_get(r.json, "items")) == 0);
	resp_free(&r);

	/* a member with a low role: 403 */
	CHECK(http("GET", p1, W.viewer, NULL, NULL, NULL, &r) == 200);
	resp_free(&r);
	snprintf(path, sizeof(path), "/api/v1/jobs/%s/runs", W.jid);
	http("POST", path, W.viewer, "{}", NULL, NULL, &r);
	IS_ERROR(&r, 403, "forbidden");
	resp_free(&r);
	http("PATCH", p1, W.oper, "{\"retries\":1}", NULL, NULL, &r);
	IS_ERROR(&r, 403, "forbidden");
	resp_free(&r);
	CHECK(http("PATCH", p1, W.projets, "{\"retries\":1}", "application/merge-patch+json", NULL, &r) == 200);
	CHECK(json_integer_value(json_object_get(r.json, "retries")) == 1);
	resp_free(&r);
	http("PATCH", p1, W.projets, "{\"id\":\"j_other\"}", NULL, NULL, &r);
	IS_ERROR(&r, 400, "invalid_request");
	CHECK_STR(err_field(&r), "id");
	resp_free(&r);
	/* admin-only routes: 403 for everyone else */
	http("GET", "/api/v1/audit", W.projets, NULL, NULL, NULL, &r);
	IS_ERROR(&r, 403, "forbidden");
	resp_free(&r);
	http("POST", "/api/v1/users", W.projets, "{\"name\":\"x\",\"role\":\"admin\"}", NULL, NULL, &r);
	IS_ERROR(&r, 403, "forbidden");
	resp_free(&r);
	/* an admin cannot lock itself out */
	snprintf(path, sizeof(path), "/api/v1/users/%s", ADMIN_ID);
	http("PATCH", path, ADMIN, "{\"disabled\":true}", NULL, NULL, &r);
	IS_ERROR(&r, 409, "conflict");
	resp_free(&r);
	/* tokens: shown once, stored hashed, revocable by their user */
	snprintf(path, sizeof(path), "/api/v1/users/%s/tokens", W.viewer_id);
	json_t *t = NULL;
	post_ok(path, "{\"expires_at\":null}", 201, &t);
	const char *tok = str(t, "token");
	CHECK(strlen(tok) >= 32);
	CHECK(http("GET", "/api/v1/me", tok, NULL, NULL, NULL, &r) == 200);
	resp_free(&r);
	char tpath[128];
	snprintf(tpath, sizeof(tpath), "/api/v1/tokens/%s", str(t, "id"));
	http("DELETE", tpath, W.oper, NULL, NULL, NULL, &r);
	IS_ERROR(&r, 404, "not_found"); /* someone else's token */
	resp_free(&r);
	CHECK(http("DELETE", tpath, tok, NULL, NULL, NULL, &r) == 204);
	CHECK(r.body.len == 0);
	resp_free(&r);
	http("GET", "/api/v1/me", tok, NULL, NULL, NULL, &r);
	IS_ERROR(&r, 401, "unauthorized");
	resp_free(&r);
	json_decref(t);
}

static void test_trigger(void)
{
	char path[256];
	struct resp r, r2;
	snprintf(path, sizeof(path), "/api/v1/jobs/%s/runs", W.jid);
	int k0 = atomic_load(&kicks);
	CHECK(http("POST", path, W.oper, NULL, NULL, NULL, &r) == 201); /* no body at all */
	CHECK(atomic_load(&kicks) == k0 + 1);
	CHECK_STR(str(r.json, "status"), "queued");
	CHECK_STR(str(r.json, "requested_by"), W.oper_id);
	CHECK(json_integer_value(json_object_get(json_object_get(r.json, "effective_config"), "timeout_seconds")) ==
	      CFG.guardrails.default_timeout_s);
	struct uh_run *run = NULL;
	struct uh_error e = {0};
	CHECK(uh_store_run_get(S, str(r.json, "id"), &run, &e) == 0);
	if (run) {
		CHECK_STR(json_string_value(json_object_get(json_object_get(run->spec, "env"), "UHUB_RUN_ID")),
		          run->id);
		CHECK_STR(json_string_value(json_object_get(run->spec, "job_name")), "hello");
		CHECK(json_is_array(json_object_get(run->spec, "command")));
	}
	uh_run_free(run);
	resp_free(&r);

	http("POST", path, W.oper, "{\"parameters\":{\"OTHER\":\"x\"}}", NULL, NULL, &r);
	IS_ERROR(&r, 400, "invalid_request");
	CHECK_STR(err_field(&r), "parameters.OTHER");
	resp_free(&r);

	/* Idempotency-Key: same body, the first run (200); another body, 409 */
	const char *body = "{\"parameters\":{\"WHO\":\"a\"}}";
	CHECK(http("POST", path, W.oper, body, NULL, "Idempotency-Key: k-1", &r) == 201);
	CHECK(http("POST", path, W.oper, body, NULL, "Idempotency-Key: k-1", &r2) == 200);
	CHECK_STR(str(r.json, "id"), str(r2.json, "id"));
	CHECK_STR(str(json_object_get(r.json, "parameters"), "WHO"), "a");
	resp_free(&r2);
	http("POST", path, W.oper, "{\"parameters\":{\"WHO\":\"b\"}}", NULL, "Idempotency-Key: k-1", &r2);
	IS_ERROR(&r2, 409, "conflict");
	resp_free(&r2);
	http("POST", path, W.oper, body, NULL, "Idempotency-Key: a b", &r2);
	IS_ERROR(&r2, 400, "invalid_request");
	resp_free(&r2);

	/* cancel: 202 and the supervisor told; a terminal run: 409 */
	char cpath[128];
	snprintf(cpath, sizeof(cpath), "/api/v1/runs/%s/cancel", str(r.json, "id"));
	int c0 = atomic_load(&cancels);
	http("POST", cpath, W.viewer, "{}", NULL, NULL, &r2);
	IS_ERROR(&r2, 403, "forbidden");
	resp_free(&r2);
	CHECK(http("POST", cpath, W.oper, "{}", NULL, NULL, &r2) == 202);
	CHECK_STR(str(r2.json, "canceled_by"), W.oper_id);
	CHECK(atomic_load(&cancels) == c0 + 1);
	resp_free(&r2);
	struct uh_run_update up = {
	    .from = UH_RUN_QUEUED, .to = UH_RUN_CANCELED, .reason = "canceled", .finished_at = uh_now_us()};
	CHECK(uh_store_run_transition(S, str(r.json, "id"), &up, AUD("run.transition", NULL), &e) == 0);
	http("POST", cpath, W.oper, NULL, NULL, NULL, &r2);
	IS_ERROR(&r2, 409, "conflict");
	resp_free(&r2);
	resp_free(&r);

	/* draining: 503, and nothing recorded */
	draining = 1;
	http("POST", path, W.oper, "{}", NULL, NULL, &r);
	IS_ERROR(&r, 503, "unavailable");
	resp_free(&r);
	draining = 0;
}

/* ---- logs ---- */

struct follower {
	char path[256];
	char accept[64];
	char last_id[32];
	pthread_t th;
	pthread_mutex_t mu;
	struct uh_buf body;
	long status;
	atomic_int done;
	CURLcode cc;
};

static size_t on_follow(char *p, size_t s, size_t n, void *u)
{
	struct follower *f = u;
	pthread_mutex_lock(&f->mu);
	uh_buf_append(&f->body, p, s * n);
	pthread_mutex_unlock(&f->mu);
	return s * n;
}

static void *follow_main(void *arg)
{
	struct follower *f = arg;
	CURL *c = curl_easy_init();
	char url[400], a[128], l[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", PORT, f->path);
	snprintf(a, sizeof(a), "Authorization: Bearer %s", W.viewer);
	struct curl_slist *h = curl_slist_append(NULL, a);
	if (f->accept[0]) {
		snprintf(l, sizeof(l), "Accept: %s", f->accept);
		h = curl_slist_append(h, l);
	}
	if (f->last_id[0]) {
		snprintf(l, sizeof(l), "Last-Event-ID: %s", f->last_id);
		h = curl_slist_append(h, l);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_follow);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
	f->cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &f->status);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	atomic_store(&f->done, 1);
	return NULL;
}

static struct follower *follow(const char *path, const char *accept, const char *last_id)
{
	struct follower *f = calloc(1, sizeof(*f));
	snprintf(f->path, sizeof(f->path), "%s", path);
	snprintf(f->accept, sizeof(f->accept), "%s", accept ? accept : "");
	snprintf(f->last_id, sizeof(f->last_id), "%s", last_id ? last_id : "");
	pthread_mutex_init(&f->mu, NULL);
	uh_buf_init(&f->body, 1 << 20);
	pthread_create(&f->th, NULL, follow_main, f);
	return f;
}

/* Wait until the follower's body ends with `want` (or equals it). */
static bool wait_body(struct follower *f, const char *want, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		pthread_mutex_lock(&f->mu);
		bool ok = f->body.len >= strlen(want) &&
		          memcmp(f->body.data + f->body.len - strlen(want), want, strlen(want)) == 0;
		pthread_mutex_unlock(&f->mu);
		if (ok)
			return true;
		usleep(10000);
	}
	fprintf(stderr, "follower %s: waited for '%s', has '%s'\n", f->path, want, f->body.data ? f->body.data : "");
	return false;
}

static void follow_end(struct follower *f)
{
	pthread_join(f->th, NULL);
	uh_buf_free(&f->body);
	pthread_mutex_destroy(&f->mu);
	free(f);
}

static void write_chunk(const char *run_id, int64_t off, int stream, const char *data, size_t len)
{
	struct uh_log_chunk c = {
	    .run_id = run_id, .offset = off, .t = uh_now_us(), .stream = stream, .data = data, .len = len};
	struct uh_error e = {0};
	CHECK(uh_store_log_write(S, &c, 1, NULL, 0, &e) == 0);
	uh_notify_run(run_id);
}

static void transition(const char *id, int from, int to)
{
	struct uh_run_update up = {.from = from, .to = to};
	if (to == UH_RUN_RUNNING)
		up.started_at = uh_now_us();
	else {
		up.finished_at = uh_now_us();
		up.reason = to == UH_RUN_SUCCEEDED ? NULL : "exit_code";
		up.set_exit_code = true;
	}
	struct uh_error e = {0};
	CHECK(uh_store_run_transition(S, id, &up, AUD("run.transition", id), &e) == 0);
	uh_notify_run(id);
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	       ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static void new_run(char id[UH_ID_MAX])
{
	char path[128];
	struct resp r;
	snprintf(path, sizeof(path), "/api/v1/jobs/%s/runs", W.jid);
	CHECK(http("POST", path, W.oper, "{}", NULL, NULL, &r) == 201);
	snprintf(id, UH_ID_MAX, "%s", str(r.json, "id"));
	resp_free(&r);
}

static void test_logs(void)
{
	char id[UH_ID_MAX], path[256];
	new_run(id);
	snprintf(path, sizeof(path), "/api/v1/runs/%s/logs?follow=1", id);
	/* a queued run is waited for */
	struct follower *f = follow(path, NULL, NULL);
	usleep(200000);
	CHECK(!atomic_load(&f->done));
	transition(id, UH_RUN_QUEUED, UH_RUN_RUNNING);
	write_chunk(id, 0, 1, "hello\n", 6);
	CHECK(wait_body(f, "hello\n", 5000));
	/* idle follower: suspended, not spinning */
	double c0 = cpu_seconds();
	usleep(1000000);
	double spent = cpu_seconds() - c0;
	if (spent > 0.3)
		fprintf(stderr, "an idle follower used %.2f s of CPU in 1 s\n", spent);
	CHECK(spent < 0.3);
	/* a UTF-8 sequence cut across two chunks, and stderr */
	write_chunk(id, 6, 1, "w\xc3", 2);
	write_chunk(id, 8, 1, "\xa9rld\n", 5);
	CHECK(wait_body(f, "w\xc3\xa9rld\n", 5000));
	write_chunk(id, 13, 2, "oops\n", 5);
	CHECK(wait_body(f, "oops\n", 5000));
	/* a gap (dropped by the cap), mid-line */
	write_chunk(id, 18, 1, "partial", 7);
	write_chunk(id, 125, 1, "tail\xff\n", 6);
	CHECK(wait_body(f, "partial\n[uhub: 100 bytes omitted]\ntail\xef\xbf\xbd\n", 5000));
	CHECK(!atomic_load(&f->done));
	transition(id, UH_RUN_RUNNING, UH_RUN_SUCCEEDED);
	for (int i = 0; i < 500 && !atomic_load(&f->done); i++)
		usleep(10000);
	CHECK(atomic_load(&f->done));
	const char *full = "hello\nw\xc3\xa9rld\noops\npartial\n[uhub: 100 bytes omitted]\ntail\xef\xbf\xbd\n";
	CHECK(f->status == 200 && f->cc == CURLE_OK);
	CHECK(f->body.data && strcmp(f->body.data, full) == 0);
	follow_end(f);

	/* the same, not following; then NDJSON */
	struct resp r;
	snprintf(path, sizeof(path), "/api/v1/runs/%s/logs", id);
	CHECK(http("GET", path, W.viewer, NULL, NULL, NULL, &r) == 200);
	CHECK(r.body.data && strcmp(r.body.data, full) == 0);
	CHECK(strstr(r.head.data, "text/plain; charset=utf-8") != NULL);
	resp_free(&r);
	snprintf(path, sizeof(path), "/api/v1/runs/%s/logs?format=ndjson", id);
	CHECK(http("GET", path, W.viewer, NULL, NULL, NULL, &r) == 200);
	int lines = 0, err_lines = 0;
	for (char *l = r.body.data, *nl; l && *l; l = nl + 1) {
		nl = strchr(l, '\n');
		CHECK(nl != NULL);
		if (!nl)
			break;
		json_t *j = json_loadb(l, (size_t)(nl - l), 0, NULL);
		CHECK(j && json_object_get(j, "t") && json_object_get(j, "text"));
		if (!strcmp(str(j, "stream"), "stderr"))
			err_lines++;
		json_decref(j);
		lines++;
	}
	CHECK(lines == 7 && err_lines == 1); /* 6 chunks + the gap */
	resp_free(&r);
	snprintf(path, sizeof(path), "/api/v1/runs/%s/logs?format=xml", id);
	http("GET", path, W.viewer, NULL, NULL, NULL, &r);
	IS_ERROR(&r, 400, "invalid_request");
	CHECK_STR(err_field(&r), "format");
	resp_free(&r);

	/* SSE: ids are byte offsets after each chunk; resume; the end event */
	snprintf(path, sizeof(path), "/api/v1/runs/%s/logs", id);
	CHECK(http("GET", path, W.viewer, NULL, NULL, "Accept: text/event-stream", &r) == 200);
	CHECK(strstr(r.head.data, "text/event-stream") != NULL);
	CHECK(strstr(r.body.data, "event: log\nid: 6\ndata: hello\ndata: \n\n") == r.body.data);
	CHECK(strstr(r.body.data, "id: 18\ndata: oops\n") != NULL);
	CHECK(strstr(r.body.data, "id: 125\ndata: [uhub: 100 bytes omitted]\n") != NULL);
	CHECK(strstr(r.body.data, "event: end\ndata: {") != NULL);
	CHECK(strstr(r.body.data, "\"status\":\"succeeded\"") != NULL);
	resp_free(&r);
	CHECK(http("GET", path, W.viewer, NULL, NULL, "Accept: text/event-stream\nLast-Event-ID: 18", &r) == 200);
	CHECK(strncmp(r.body.data, "event: log\nid: 25\ndata: partial\n", 32) == 0);
	resp_free(&r);
	CHECK(http("GET", path, W.viewer, NULL, NULL, "Accept: text/event-stream\nLast-Event-ID: 131", &r) == 200);
	CHECK(strncmp(r.body.data, "event: end\n", 11) == 0);
	resp_free(&r);
	http("GET", path, W.viewer, NULL, NULL, "Accept: text/event-stream\nLast-Event-ID: x1", &r);
	IS_ERROR(&r, 400, "invalid_request");
	resp_free(&r);
}

/* Followers that are suspended when the API stops: the stop ends them
 * and returns. */
static void test_stop_with_followers(void)
{
	char id[UH_ID_MAX], path[256];
	new_run(id);
	transition(id, UH_RUN_QUEUED, UH_RUN_RUNNING);
	snprintf(path, sizeof(path), "/api/v1/runs/%s/logs?follow=1", id);
	struct follower *f[3];
	f[0] = follow(path, NULL, NULL);
	f[1] = follow(path, "text/event-stream", NULL);
	snprintf(path, sizeof(path), "/api/v1/runs/%s/logs?follow=1&format=ndjson", id);
	f[2] = follow(path, NULL, NULL);
	write_chunk(id, 0, 1, "x\n", 2);
	CHECK(wait_body(f[0], "x\n", 5000));
	CHECK(wait_body(f[1], "data: \n\n", 5000));
	usleep(300000);
	int64_t t0 = uh_mono_us();
	uh_api_stop(API);
	API = NULL;
	CHECK(uh_mono_us() - t0 < 3000000);
	for (int i = 0; i < 3; i++) {
		for (int k = 0; k < 500 && !atomic_load(&f[i]->done); k++)
			usleep(10000);
		CHECK(atomic_load(&f[i]->done));
		follow_end(f[i]);
	}
}

static void test_rate_limit(void)
{
	struct uh_config cfg = CFG;
	cfg.rate_limit_per_minute = 3;
	struct uh_api_deps d = {.store = S, .cfg = &cfg, .kick = kick, .cancel = cancel, .draining = &draining};
	struct uh_api *api = NULL;
	struct uh_error e = {0};
	CHECK(uh_api_start(&d, &api, &e) == 0);
	if (!api)
		return;
	int saved = PORT;
	PORT = uh_api_port(api);
	struct resp r;
	for (int i = 0; i < 3; i++) {
		CHECK(http("GET", "/api/v1/me", W.oper, NULL, NULL, NULL, &r) == 200);
		resp_free(&r);
	}
	http("GET", "/api/v1/me", W.oper, NULL, NULL, NULL, &r);
	IS_ERROR(&r, 429, "rate_limited");
	CHECK(strstr(r.head.data, "Retry-After: ") != NULL);
	resp_free(&r);
	CHECK(http("GET", "/api/v1/me", W.viewer, NULL, NULL, NULL, &r) == 200); /* per user */
	resp_free(&r);
	CHECK(http("GET", "/healthz", NULL, NULL, NULL, NULL, &r) == 200); /* no token, no limit */
	resp_free(&r);
	/* a reloaded configuration applies to the next request */
	struct uh_config reloaded = cfg;
	reloaded.rate_limit_per_minute = 0;
	uh_api_set_config(api, &reloaded);
	CHECK(http("GET", "/api/v1/me", W.oper, NULL, NULL, NULL, &r) == 200);
	resp_free(&r);
	uh_api_stop(api);
	PORT = saved;
}

static void test_bad_listen(void)
{
	const char *bad[] = {"nonsense", "127.0.0.1:", "127.0.0.1:99999", "[::1:80", "127.0.0.1:8x", ":80"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct uh_config cfg = CFG;
		cfg.listen = (char *)bad[i];
		struct uh_api_deps d = {.store = S, .cfg = &cfg};
		struct uh_api *api = NULL;
		struct uh_error e = {0};
		int rc = uh_api_start(&d, &api, &e);
		if (!rc)
			fprintf(stderr, "listen '%s' was taken\n", bad[i]);
		CHECK(rc != 0 && api == NULL && !strcmp(e.field, "listen"));
		uh_api_stop(api);
	}
	/* IPv6 loopback, when the host has it */
	struct uh_config cfg = CFG;
	cfg.listen = "[::1]:0";
	struct uh_api_deps d = {.store = S, .cfg = &cfg};
	struct uh_api *api = NULL;
	struct uh_error e = {0};
	if (uh_api_start(&d, &api, &e) == 0) {
		CHECK(uh_api_port(api) > 0);
		uh_api_stop(api);
	}
}

int main(void)
{
	char dir[] = "/tmp/uh-api-test-XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	setup(dir);
	test_public_and_auth();
	test_framing();
	test_policy();
	test_trigger();
	test_logs();
	test_rate_limit();
	test_bad_listen();
	test_stop_with_followers();
	uh_store_close(S);
	uh_config_free(&CFG);
	curl_global_cleanup();
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	return uh_tap_done();
}
