/* The webhook execution backend (SPEC §3 "webhook"): a run is an HTTPS
 * request to an external system, then (mode poll) status requests until the
 * remote job ends, or (mode callback) a signed callback, or (mode
 * fire_and_forget) nothing more.
 *
 * Non-blocking: every request is a libcurl easy handle on one curl multi
 * driven by the supervisor's libuv loop (curl_uv.h). No
 * thread per request, no lock, and cancel is just removing the easy handle.
 * Names are resolved with uv_getaddrinfo (libuv's thread pool), every
 * address is checked (webhook_ssrf.c), and the request is pinned to the
 * checked address with CURLOPT_RESOLVE and verified again in
 * CURLOPT_OPENSOCKETFUNCTION, so a second DNS answer (rebinding) is never
 * used. Redirects are not followed, proxies from the environment are not
 * used, only https is spoken and TLS is always verified.
 *
 * Credentials (the token, header secrets) are copied at start() into
 * memory wiped on release, sent only to the configured URL's origin (scheme
 * + host + port), and scrubbed from anything logged as the run's output. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "backend/curl_uv.h"
#include "backend/webhook.h"
#include "util/buf.h"
#include "util/crypto.h"
#include "util/json.h"

#define CONNECT_TIMEOUT_MS 5000
#define TOTAL_TIMEOUT_MS   30000
#define CANCEL_TIMEOUT_MS  10000
#define ANSWER_MAX         (1u << 20)
#define LOG_ANSWER_MAX     (64u * 1024)
#define POLL_BACKOFF_MAX_S 300
#define POLL_ERRORS_MAX    10

/* ---- the curl multi on the loop (supervisor thread) ---- */

static struct {
	struct uh_curl_uv cu; /* the multi on the loop */
	bool ready;
	char *sys_ca; /* the system CA bundle, read once at init ("" if none) */
	size_t sys_ca_len;
} G;

enum req_kind { REQ_TRIGGER = 1, REQ_POLL, REQ_CANCEL };
enum req_fail { FAIL_NONE = 0, FAIL_UNAVAILABLE, FAIL_REFUSED };

struct wh_handle;
struct dns_req;

struct wh_req {
	struct wh_handle *h;
	enum req_kind kind;
	CURL *easy;
	struct curl_slist *hdrs, *resolve;
	char *method, *url, *body; /* body may hold the token: wiped */
	size_t body_len;
	struct uh_wh_url u;
	struct sockaddr_storage pinned;
	bool same_origin;
	struct dns_req *dns;
	bool in_multi;
	/* the outcome */
	enum req_fail fail;
	char msg[256];
	long status;
	struct uh_buf answer;
	bool too_large;
	char *location;
	char errbuf[CURL_ERROR_SIZE];
};

struct dns_req {
	uv_getaddrinfo_t gai;
	struct wh_req *req; /* NULL once the request was abandoned */
};

enum phase { PH_TRIGGER = 0, PH_WAIT, PH_QUEUE, PH_BUILD, PH_CANCEL, PH_DONE };

struct cfg_secret {
	char *ref;
	char *value;
	size_t len;
};

struct wh_handle {
	struct uh_run_handle base;
	struct uh_wh_conf conf;
	struct uh_wh_url origin;
	json_t *vars; /* template variables: "run.id" -> "..." */
	char *token;
	size_t token_len;
	struct cfg_secret *secrets;
	size_t n_secrets;
	uv_timer_t timer;
	struct wh_req *req;
	enum phase phase;
	char *status_url; /* the status URL in use (expanded or handed back) */
	char *cancel_url; /* expanded, or handed back */
	char *jenkins_queue_id;
	char *jenkins_base; /* the configured url, for /queue/cancelItem */
	char *ca_blob;      /* system bundle + ca_cert, when ca_cert is set */
	size_t ca_blob_len;
	char last_status[128];
	int errors;
	bool finished, stopping;
};

static const struct uh_backend_ops *self_ops(void);

static struct wh_handle *H(struct uh_run_handle *h)
{
	return UH_HANDLE_CAST(struct wh_handle, h, self_ops());
}

static void on_done(CURL *easy, CURLcode rc);

/* ---- secrets in memory ---- */

static void wipe_free(char *s, size_t n)
{
	if (s) {
		uh_memzero(s, n);
		free(s);
	}
}

static void wipe_slist(struct curl_slist *l)
{
	for (struct curl_slist *p = l; p; p = p->next)
		if (p->data)
			uh_memzero(p->data, strlen(p->data));
	curl_slist_free_all(l);
}

/* Replace every secret of the run in `b` with [MASKED] (before it is
 * logged; the supervisor's masker runs too). */
static void scrub(struct wh_handle *h, struct uh_buf *b)
{
	const char *cbt = json_string_value(json_object_get(h->vars, "callback.token"));
	for (size_t i = 0; i <= h->n_secrets + 1; i++) {
		const char *v = i < h->n_secrets ? h->secrets[i].value : i == h->n_secrets ? h->token : cbt;
		size_t n = i < h->n_secrets    ? h->secrets[i].len
		           : i == h->n_secrets ? h->token_len
		           : cbt               ? strlen(cbt)
		                               : 0;
		if (!v || n < 4 || !b->data)
			continue;
		char *p;
		size_t off = 0;
		while ((p = memmem(b->data + off, b->len - off, v, n))) {
			static const char m[] = "[MASKED]";
			size_t at = (size_t)(p - b->data);
			if (n >= sizeof(m) - 1) {
				memcpy(p, m, sizeof(m) - 1);
				memmove(p + sizeof(m) - 1, p + n, b->len - at - n);
				b->len -= n - (sizeof(m) - 1);
				b->data[b->len] = '\0';
				off = at + sizeof(m) - 1;
			} else {
				memset(p, '*', n);
				off = at + n;
			}
		}
	}
}

static void say(struct wh_handle *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct wh_handle *h, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	struct uh_buf b;
	uh_buf_init(&b, sizeof(line) + 2);
	uh_buf_append(&b, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
	uh_buf_appends(&b, "\n");
	scrub(h, &b);
	h->base.host->output(&h->base, UH_STREAM_SYSTEM, b.data, b.len);
	uh_buf_free(&b);
}

static void log_answer(struct wh_handle *h, const struct uh_buf *a)
{
	if (!a->len)
		return;
	struct uh_buf b;
	uh_buf_init(&b, LOG_ANSWER_MAX + 64);
	size_t n = a->len > LOG_ANSWER_MAX ? LOG_ANSWER_MAX : a->len;
	uh_buf_append(&b, a->data, n);
	if (n < a->len)
		uh_buf_printf(&b, "\n[uhub: answer cut at %zu of %zu bytes]", n, a->len);
	if (b.data[b.len - 1] != '\n')
		uh_buf_appends(&b, "\n");
	scrub(h, &b);
	h->base.host->output(&h->base, UH_STREAM_STDOUT, b.data, b.len);
	uh_buf_free(&b);
}

/* "https://host/path" without query (status URLs may carry keys). */
static void url_for_log(const struct uh_wh_url *u, char *out, size_t len)
{
	size_t q = strcspn(u->rest, "?");
	bool v6 = strchr(u->host, ':') != NULL;
	snprintf(out, len, "https://%s%s%s:%d%.*s%s", v6 ? "[" : "", u->host, v6 ? "]" : "", u->port,
	         (int)(q > 300 ? 300 : q), u->rest, u->rest[q] ? "?..." : "");
}

/* ---- templates at run time ---- */

struct lookup {
	struct wh_handle *h;
	bool secrets;
};

static const char *rt_lookup(void *arg, const char *name)
{
	struct lookup *l = arg;
	if (strncmp(name, "secrets.", 8) == 0) {
		if (!l->secrets)
			return NULL;
		for (size_t i = 0; i < l->h->n_secrets; i++)
			if (strcmp(l->h->secrets[i].ref, name + 8) == 0)
				return l->h->secrets[i].value;
		return NULL;
	}
	json_t *v = json_object_get(l->h->vars, name);
	if (json_is_string(v))
		return json_string_value(v);
	if (strncmp(name, "parameters.", 11) == 0)
		return ""; /* declared but not given */
	return NULL;
}

static int expand(struct wh_handle *h, const char *tpl, enum uh_wh_escape esc, bool secrets, char **out,
                  struct uh_error *err)
{
	struct lookup l = {.h = h, .secrets = secrets};
	return uh_webhook_expand(tpl, esc, rt_lookup, &l, out, err);
}

static json_t *expand_json(struct wh_handle *h, const json_t *v, struct uh_error *err)
{
	if (json_is_string(v)) {
		char *s = NULL;
		if (expand(h, json_string_value(v), UH_WH_ESC_NONE, false, &s, err))
			return NULL;
		json_t *r = json_string(s);
		free(s);
		return r;
	}
	if (json_is_object(v)) {
		json_t *o = json_object();
		const char *k;
		json_t *x;
		json_object_foreach((json_t *)v, k, x)
		{
			json_t *e = expand_json(h, x, err);
			if (!e) {
				json_decref(o);
				return NULL;
			}
			json_object_set_new(o, k, e);
		}
		return o;
	}
	if (json_is_array(v)) {
		json_t *a = json_array();
		size_t i;
		json_t *x;
		json_array_foreach(v, i, x)
		{
			json_t *e = expand_json(h, x, err);
			if (!e) {
				json_decref(a);
				return NULL;
			}
			json_array_append_new(a, e);
		}
		return a;
	}
	return json_deep_copy(v);
}

/* ---- finishing ---- */

static void req_abandon(struct wh_req *r);

static void finish(struct wh_handle *h, enum uh_result_kind kind, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The run's end: nothing more is sent or awaited, the result is logged
 * and reported. */
static void finish_with(struct wh_handle *h, const struct uh_run_result *res)
{
	if (h->finished)
		return;
	h->finished = true;
	h->phase = PH_DONE;
	uv_timer_stop(&h->timer);
	if (h->req) {
		req_abandon(h->req);
		h->req = NULL;
	}
	say(h, "uhub: %s", res->message);
	h->base.host->finished(&h->base, res); /* may release h: touch nothing after */
}

static void finish(struct wh_handle *h, enum uh_result_kind kind, const char *reason, const char *fmt, ...)
{
	struct uh_run_result res = {.kind = kind, .reason = reason};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(res.message, sizeof(res.message), fmt, ap);
	va_end(ap);
	finish_with(h, &res);
}

/* ---- requests ---- */

static void req_free(struct wh_req *r)
{
	if (!r)
		return;
	if (r->easy) {
		if (r->in_multi)
			curl_multi_remove_handle(G.cu.multi, r->easy);
		curl_easy_cleanup(r->easy);
	}
	wipe_slist(r->hdrs);
	curl_slist_free_all(r->resolve);
	wipe_free(r->body, r->body_len);
	free(r->method);
	free(r->url);
	free(r->location);
	uh_buf_free(&r->answer);
	free(r);
}

static void req_abandon(struct wh_req *r)
{
	if (r->dns) {
		r->dns->req = NULL; /* its callback frees it */
		uv_cancel((uv_req_t *)&r->dns->gai);
		r->dns = NULL;
	}
	req_free(r);
}

static size_t on_write(char *p, size_t sz, size_t n, void *arg)
{
	struct wh_req *r = arg;
	size_t len = sz * n;
	if (r->answer.len + len > ANSWER_MAX) {
		r->too_large = true;
		return 0;
	}
	if (uh_buf_append(&r->answer, p, len))
		return 0;
	return len;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
	struct wh_req *r = arg;
	size_t len = sz * n;
	if (len > 9 && strncasecmp(p, "Location:", 9) == 0 && !r->location) {
		const char *v = p + 9;
		size_t vl = len - 9;
		while (vl && (*v == ' ' || *v == '\t'))
			v++, vl--;
		while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
			vl--;
		if (vl < 4096)
			r->location = strndup(v, vl);
	}
	return len;
}

static bool same_addr(const struct sockaddr *a, const struct sockaddr_storage *b)
{
	if (a->sa_family != b->ss_family)
		return false;
	if (a->sa_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)a)->sin_addr, &((const struct sockaddr_in *)b)->sin_addr,
		              4) == 0;
	if (a->sa_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		              &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
	return false;
}

/* The last word on where a socket goes: the pinned, checked address. */
static curl_socket_t on_opensocket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct wh_req *r = arg;
	if (purpose != CURLSOCKTYPE_IPCXN || !same_addr(&a->addr, &r->pinned) ||
	    !uh_webhook_addr_allowed(&a->addr, r->h->base.cfg->webhook.allow_private_networks))
		return CURL_SOCKET_BAD;
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static void req_done(struct wh_req *r);

/* Complete a request that never reached curl (refused, unresolvable). */
static void req_fail_now(struct wh_req *r, enum req_fail f, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void deferred_done(uv_timer_t *t)
{
	struct wh_handle *h = t->data;
	if (h->req && h->req->fail)
		req_done(h->req);
}

/* Never complete inside the caller (start(), stop(), another request's
 * completion): the host must not see finished() re-entrantly. The handle's
 * timer is free while a request is pending. */
static void req_fail_now(struct wh_req *r, enum req_fail f, const char *fmt, ...)
{
	r->fail = f;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
	if (r->dns) /* from on_resolved: already on the loop, not re-entrant */
		r->dns = NULL;
	uv_timer_start(&r->h->timer, deferred_done, 0, 0);
}

static void add_header(struct wh_req *r, const char *name, const char *value)
{
	size_t n = strlen(name) + strlen(value) + 3;
	char *line = malloc(n);
	if (!line)
		return;
	snprintf(line, n, "%s: %s", name, value);
	struct curl_slist *l = curl_slist_append(r->hdrs, line);
	if (l)
		r->hdrs = l;
	uh_memzero(line, n);
	free(line);
}

static bool has_user_header(struct wh_handle *h, const char *name)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)h->conf.headers, k, v)
	{
		if (strcasecmp(k, name) == 0)
			return true;
	}
	return false;
}

static void req_launch(struct wh_req *r)
{
	struct wh_handle *h = r->h;
	char addr[INET6_ADDRSTRLEN + 2] = "";
	if (r->pinned.ss_family == AF_INET6) {
		addr[0] = '[';
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&r->pinned)->sin6_addr, addr + 1, INET6_ADDRSTRLEN);
		strcat(addr, "]");
	} else {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&r->pinned)->sin_addr, addr, sizeof(addr));
	}
	char pin[600];
	snprintf(pin, sizeof(pin), "%s:%d:%s", r->u.host, r->u.port, addr);
	r->resolve = curl_slist_append(NULL, pin);
	CURL *e = r->easy = curl_easy_init();
	if (!e || !r->resolve) {
		req_fail_now(r, FAIL_UNAVAILABLE, "out of memory");
		return;
	}
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_URL, r->url);
	curl_easy_setopt(e, CURLOPT_RESOLVE, r->resolve);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_opensocket);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, r);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(r->kind == REQ_CANCEL ? CANCEL_TIMEOUT_MS : TOTAL_TIMEOUT_MS));
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)ANSWER_MAX);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "uhub-webhook/1");
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, NULL);
	if (h->ca_blob) {
		/* A blob is never put in libcurl's shared CA cache, so one run's
		 * CA is never trusted for another run's request. */
		struct curl_blob blob = {.data = h->ca_blob, .len = h->ca_blob_len, .flags = CURL_BLOB_NOCOPY};
		curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
	}
	add_header(r, "Accept", "application/json");
	add_header(r, "Expect", "");
	if (r->kind == REQ_TRIGGER)
		add_header(r, "Idempotency-Key", h->base.run_id);
	if (r->body && !has_user_header(h, "Content-Type"))
		add_header(r, "Content-Type", "application/json");
	if (r->same_origin) {
		/* Credentials go to the configured origin only. */
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)h->conf.headers, k, v)
		{
			char *val = NULL;
			if (expand(h, json_string_value(v), UH_WH_ESC_NONE, true, &val, NULL) == 0) {
				if (!strpbrk(val, "\r\n"))
					add_header(r, k, val);
				wipe_free(val, strlen(val));
			}
		}
		if (h->token && h->conf.auth == UH_WH_AUTH_BEARER) {
			size_t n = h->token_len + 8;
			char *bv = malloc(n);
			if (bv) {
				snprintf(bv, n, "Bearer %s", h->token);
				add_header(r, h->conf.auth_header, bv);
				wipe_free(bv, n);
			}
		} else if (h->token && h->conf.auth == UH_WH_AUTH_RAW) {
			add_header(r, h->conf.auth_header, h->token);
		} else if (h->token && h->conf.auth == UH_WH_AUTH_BASIC) {
			curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
			curl_easy_setopt(e, CURLOPT_USERNAME, h->conf.basic_user);
			curl_easy_setopt(e, CURLOPT_PASSWORD, h->token);
		}
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	if (strcmp(r->method, "GET") == 0) {
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	} else {
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(r->body ? r->body_len : 0));
		if (strcmp(r->method, "POST") != 0)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
	}
	if (curl_multi_add_handle(G.cu.multi, e) != CURLM_OK) {
		req_fail_now(r, FAIL_UNAVAILABLE, "cannot start the request");
		return;
	}
	r->in_multi = true;
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *ai)
{
	struct dns_req *d = g->data;
	struct wh_req *r = d->req;
	free(d);
	if (!r) {
		uv_freeaddrinfo(ai);
		return;
	}
	r->dns = NULL;
	if (status || !ai) {
		uv_freeaddrinfo(ai);
		req_fail_now(r, FAIL_UNAVAILABLE, "cannot resolve '%s'", r->u.host);
		return;
	}
	bool allow = r->h->base.cfg->webhook.allow_private_networks;
	for (struct addrinfo *p = ai; p; p = p->ai_next) {
		if (p->ai_family != AF_INET && p->ai_family != AF_INET6)
			continue;
		if (!uh_webhook_addr_allowed(p->ai_addr, allow)) {
			uv_freeaddrinfo(ai);
			req_fail_now(r, FAIL_REFUSED,
			             "'%s' resolves to a private, loopback, link-local or metadata address: refused",
			             r->u.host);
			return;
		}
	}
	memset(&r->pinned, 0, sizeof(r->pinned));
	memcpy(&r->pinned, ai->ai_addr, ai->ai_addrlen);
	uv_freeaddrinfo(ai);
	req_launch(r);
}

/* Start a request. The URL is checked (https, allowed host, address);
 * every outcome comes back through req_done, possibly before this returns. */
static void req_start(struct wh_handle *h, enum req_kind kind, const char *method, const char *url, char *body,
                      size_t body_len)
{
	struct wh_req *r = calloc(1, sizeof(*r));
	if (!r) {
		wipe_free(body, body_len);
		finish(h, UH_RESULT_ERROR, "backend_error", "out of memory");
		return;
	}
	r->h = h;
	r->kind = kind;
	r->method = strdup(method);
	r->url = strdup(url);
	r->body = body;
	r->body_len = body_len;
	uh_buf_init(&r->answer, ANSWER_MAX);
	h->req = r;
	if (!r->method || !r->url) {
		req_fail_now(r, FAIL_UNAVAILABLE, "out of memory");
		return;
	}
	if (uh_webhook_url_parse(url, &r->u)) {
		/* without its query: URLs handed back may carry keys (Azure's code=) */
		req_fail_now(r, FAIL_REFUSED, "URL '%.*s' is not an https:// URL uhub will call",
		             (int)(strcspn(url, "?") > 200 ? 200 : strcspn(url, "?")), url);
		return;
	}
	if (!uh_webhook_host_allowed(h->base.cfg, r->u.host)) {
		req_fail_now(r, FAIL_REFUSED, "host '%s' is not in webhook.allowed_hosts", r->u.host);
		return;
	}
	r->same_origin = strcasecmp(r->u.host, h->origin.host) == 0 && r->u.port == h->origin.port;
	if (uh_webhook_parse_ip(r->u.host, &r->pinned) == 0) {
		if (!uh_webhook_addr_allowed((struct sockaddr *)&r->pinned,
		                             h->base.cfg->webhook.allow_private_networks)) {
			req_fail_now(r, FAIL_REFUSED,
			             "address '%s' is private, loopback, link-local or metadata: refused", r->u.host);
			return;
		}
		req_launch(r);
		return;
	}
	struct dns_req *d = calloc(1, sizeof(*d));
	if (!d) {
		req_fail_now(r, FAIL_UNAVAILABLE, "out of memory");
		return;
	}
	d->req = r;
	d->gai.data = d;
	r->dns = d;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	if (uv_getaddrinfo(G.cu.loop, &d->gai, on_resolved, r->u.host, NULL, &hints)) {
		r->dns = NULL;
		free(d);
		req_fail_now(r, FAIL_UNAVAILABLE, "cannot resolve '%s'", r->u.host);
	}
}

/* A request ended (curl_uv.h): classify a failure, then carry on. */
static void on_done(CURL *easy, CURLcode rc)
{
	struct wh_req *r = NULL;
	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
	r->in_multi = false;
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
	if (rc != CURLE_OK) {
		if (r->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
			r->fail = FAIL_REFUSED;
			snprintf(r->msg, sizeof(r->msg), "the answer is larger than %u bytes", ANSWER_MAX);
		} else if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
		           rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_SSL_CERTPROBLEM) {
			r->fail = FAIL_REFUSED;
			snprintf(r->msg, sizeof(r->msg), "TLS with '%s' failed (certificate not verified?): %s",
			         r->u.host, r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
		} else {
			r->fail = FAIL_UNAVAILABLE;
			snprintf(r->msg, sizeof(r->msg), "request to '%s' failed: %s", r->u.host,
			         r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
		}
	}
	req_done(r);
}

/* ---- the run's flow ---- */

static void schedule_poll(struct wh_handle *h, bool after_error);

static json_t *answer_json(const struct wh_req *r)
{
	if (!r->answer.len)
		return NULL;
	return uh_json_parse(r->answer.data, r->answer.len, false, NULL);
}

static void set_external_id(struct wh_handle *h, const char *id)
{
	snprintf(h->base.external_id, sizeof(h->base.external_id), "%s", id);
	json_object_set_new(h->vars, "external_id", json_string(id));
	h->base.host->persist(&h->base);
}

static void set_str(char **slot, const char *v)
{
	free(*slot);
	*slot = v ? strdup(v) : NULL;
}

/* Resolve a URL handed back by the remote side against the request's. */
static char *absolute(const struct wh_req *r, const char *loc)
{
	if (strncasecmp(loc, "https://", 8) == 0 || strncasecmp(loc, "http://", 7) == 0)
		return strdup(loc);
	if (loc[0] != '/' || loc[1] == '/')
		return NULL;
	size_t n = strlen(loc) + strlen(r->u.host) + 32;
	char *s = malloc(n);
	if (s)
		snprintf(s, n, "https://%s%s%s:%d%s", strchr(r->u.host, ':') ? "[" : "", r->u.host,
		         strchr(r->u.host, ':') ? "]" : "", r->u.port, loc);
	return s;
}

static char *with_suffix(const char *base, const char *suffix)
{
	size_t n = strlen(base) + strlen(suffix) + 2;
	char *s = malloc(n);
	if (s)
		snprintf(s, n, "%s%s%s", base, base[strlen(base) - 1] == '/' ? "" : "/", suffix);
	return s;
}

/* Follow a Jenkins queue item (queued) or build from its URL, which is the
 * run's external id. False when out of memory. */
static bool jenkins_follow(struct wh_handle *h, const char *url, bool queued)
{
	const char *q = queued ? strstr(url, "/queue/item/") : NULL;
	if (q) {
		char id[32] = "";
		sscanf(q + 12, "%31[0-9]", id);
		set_str(&h->jenkins_queue_id, id);
	}
	free(h->status_url);
	free(h->cancel_url);
	h->status_url = with_suffix(url, "api/json");
	h->cancel_url = queued ? NULL : with_suffix(url, "stop");
	h->phase = queued ? PH_QUEUE : PH_BUILD;
	return h->status_url && (queued || h->cancel_url);
}

static void on_trigger(struct wh_handle *h, struct wh_req *r)
{
	char ubuf[512];
	url_for_log(&r->u, ubuf, sizeof(ubuf));
	say(h, "uhub: %s %s -> %ld", r->method, ubuf, r->status);
	log_answer(h, &r->answer);
	if (r->status >= 300 && r->status < 400) {
		finish(h, UH_RESULT_ERROR, "backend_error", "the target answered %ld (a redirect, not followed)",
		       r->status);
		return;
	}
	if (r->status >= 500) {
		finish(h, UH_RESULT_ERROR, "backend_unavailable", "the target answered %ld", r->status);
		return;
	}
	if (r->status < 200 || r->status >= 300) {
		finish(h, UH_RESULT_ERROR, "backend_error", "the target refused the request: %ld", r->status);
		return;
	}
	if (h->conf.mode == UH_WH_FIRE) {
		finish(h, UH_RESULT_REMOTE_OK, NULL, "the target accepted the request (%ld)", r->status);
		return;
	}
	json_t *doc = answer_json(r);
	char buf[64];
	if (h->conf.flow == UH_WH_FLOW_JENKINS) {
		char *q = r->location ? absolute(r, r->location) : NULL;
		if (!q) {
			json_decref(doc);
			finish(h, UH_RESULT_ERROR, "backend_error", "Jenkins gave no queue item 'Location'");
			return;
		}
		set_external_id(h, q);
		jenkins_follow(h, q, true);
		free(q);
	} else if (h->conf.flow == UH_WH_FLOW_AZURE) {
		const char *sq = json_string_value(json_object_get(doc, "statusQueryGetUri"));
		const char *tp = json_string_value(json_object_get(doc, "terminatePostUri"));
		const char *id = uh_webhook_scalar(json_object_get(doc, "id"), buf, sizeof(buf));
		if (!sq) {
			json_decref(doc);
			finish(h, UH_RESULT_ERROR, "backend_error", "the function's answer has no 'statusQueryGetUri'");
			return;
		}
		if (id)
			set_external_id(h, id);
		set_str(&h->status_url, sq);
		if (tp) {
			/* "...terminate?reason={text}&..." */
			struct uh_buf b;
			uh_buf_init(&b, 8192);
			const char *t = strstr(tp, "{text}");
			if (t) {
				uh_buf_append(&b, tp, (size_t)(t - tp));
				uh_buf_appends(&b, "canceled%20by%20uhub");
				uh_buf_appends(&b, t + 6);
			} else {
				uh_buf_appends(&b, tp);
			}
			free(h->cancel_url);
			h->cancel_url = uh_buf_take(&b);
		}
		h->phase = PH_WAIT;
	} else {
		if (h->conf.external_id_path) {
			const char *id =
			    uh_webhook_scalar(uh_webhook_pointer_get(doc, h->conf.external_id_path), buf, sizeof(buf));
			if (!id || !*id) {
				json_decref(doc);
				finish(h, UH_RESULT_ERROR, "backend_error", "the answer has no external id at '%s'",
				       h->conf.external_id_path);
				return;
			}
			set_external_id(h, id);
		}
		struct uh_error err = {0};
		char *s = NULL;
		if (h->conf.status_url && expand(h, h->conf.status_url, UH_WH_ESC_URL, false, &s, &err)) {
			json_decref(doc);
			finish(h, UH_RESULT_ERROR, "backend_error", "status_url: %s", err.message);
			return;
		}
		free(h->status_url);
		h->status_url = s;
		s = NULL;
		if (h->conf.cancel_url && expand(h, h->conf.cancel_url, UH_WH_ESC_URL, false, &s, &err) == 0) {
			free(h->cancel_url);
			h->cancel_url = s;
		}
		h->phase = PH_WAIT;
	}
	json_decref(doc);
	if (h->status_url)
		schedule_poll(h, false);
	else if (h->conf.mode == UH_WH_CALLBACK)
		say(h, "uhub: waiting for the callback");
}

static void poll_verdict(struct wh_handle *h, struct wh_req *r, json_t *doc)
{
	char buf[64];
	const char *st = NULL;
	enum uh_wh_verdict v;
	if (h->phase == PH_QUEUE) {
		/* Jenkins queue item: cancelled, or executable.url once it runs. */
		if (json_is_true(json_object_get(doc, "cancelled"))) {
			log_answer(h, &r->answer);
			finish(h, UH_RESULT_REMOTE_FAIL, NULL, "the Jenkins queue item was cancelled");
			return;
		}
		const char *bu = json_string_value(json_object_get(json_object_get(doc, "executable"), "url"));
		if (bu) {
			say(h, "uhub: Jenkins build started");
			set_external_id(h, bu);
			jenkins_follow(h, bu, false);
			h->errors = 0;
			schedule_poll(h, false);
			return;
		}
		schedule_poll(h, false);
		return;
	}
	if (h->phase == PH_BUILD) {
		json_t *res = json_object_get(doc, "result");
		st = json_is_string(res) ? json_string_value(res) : NULL;
		v = !st ? UH_WH_PENDING : strcmp(st, "SUCCESS") == 0 ? UH_WH_SUCCEEDED : UH_WH_FAILED;
	} else {
		v = uh_webhook_map_status(doc, h->conf.status_path, h->conf.success_values, h->conf.failure_values);
		st = uh_webhook_scalar(uh_webhook_pointer_get(doc, h->conf.status_path), buf, sizeof(buf));
	}
	if (st && strncmp(st, h->last_status, sizeof(h->last_status) - 1) != 0) {
		snprintf(h->last_status, sizeof(h->last_status), "%s", st);
		say(h, "uhub: remote status %.100s", st);
	}
	if (v == UH_WH_PENDING) {
		h->errors = 0;
		schedule_poll(h, false);
		return;
	}
	log_answer(h, &r->answer);
	if (v == UH_WH_SUCCEEDED)
		finish(h, UH_RESULT_REMOTE_OK, NULL, "the remote job succeeded (%.100s)", st ? st : "");
	else
		finish(h, UH_RESULT_REMOTE_FAIL, NULL, "the remote job failed (%.100s)", st ? st : "");
}

static void on_poll(struct wh_handle *h, struct wh_req *r)
{
	if (r->fail || r->status < 200 || r->status >= 300) {
		json_t *doc = r->fail ? NULL : answer_json(r);
		/* Azure answers non-2xx for failed instances, with the status. */
		if (doc && h->conf.flow == UH_WH_FLOW_AZURE && json_object_get(doc, "runtimeStatus")) {
			poll_verdict(h, r, doc);
			json_decref(doc);
			return;
		}
		json_decref(doc);
		if (r->fail == FAIL_REFUSED) {
			finish(h, UH_RESULT_ERROR, "backend_error", "status request refused: %s", r->msg);
			return;
		}
		if (r->status >= 300 && r->status < 400) {
			finish(h, UH_RESULT_ERROR, "backend_error",
			       "the status URL answered %ld (a redirect, not followed)", r->status);
			return;
		}
		h->errors++;
		say(h, "uhub: status request failed (%d in a row): %s", h->errors,
		    r->fail ? r->msg : (snprintf(r->msg, sizeof(r->msg), "answer %ld", r->status), r->msg));
		if (h->errors >= POLL_ERRORS_MAX) {
			finish(h, UH_RESULT_ERROR, "backend_unavailable", "%d status requests in a row failed",
			       h->errors);
			return;
		}
		schedule_poll(h, true);
		return;
	}
	json_t *doc = answer_json(r);
	if (!doc) {
		h->errors++;
		say(h, "uhub: the status answer is not JSON");
		if (h->errors >= POLL_ERRORS_MAX) {
			finish(h, UH_RESULT_ERROR, "backend_error", "the status answers are not JSON");
			return;
		}
		schedule_poll(h, true);
		return;
	}
	poll_verdict(h, r, doc);
	json_decref(doc);
}

static void req_done(struct wh_req *r)
{
	struct wh_handle *h = r->h;
	if (h->req == r)
		h->req = NULL;
	if (h->finished) {
		req_free(r);
		return;
	}
	switch (r->kind) {
	case REQ_TRIGGER:
		if (r->fail) {
			say(h, "uhub: %s %.200s failed", r->method, r->u.host[0] ? r->u.host : "(bad url)");
			finish(h, UH_RESULT_ERROR, r->fail == FAIL_REFUSED ? "backend_error" : "backend_unavailable",
			       "%s", r->msg);
		} else {
			on_trigger(h, r);
		}
		break;
	case REQ_POLL:
		on_poll(h, r);
		break;
	case REQ_CANCEL:
		if (r->fail)
			say(h, "uhub: cancel request failed: %s", r->msg);
		else
			say(h, "uhub: cancel request answered %ld", r->status);
		finish(h, UH_RESULT_REMOTE_FAIL, NULL, "canceled");
		break;
	}
	/* h may be gone here: finish() hands it back to the host. */
	req_free(r);
}

static void poll_now(uv_timer_t *t)
{
	struct wh_handle *h = t->data;
	if (h->finished || h->req || !h->status_url)
		return;
	req_start(h, REQ_POLL, "GET", h->status_url, NULL, 0);
}

static void schedule_poll(struct wh_handle *h, bool after_error)
{
	if (h->finished || h->stopping)
		return;
	int64_t s = h->conf.poll_interval_s;
	if (after_error)
		for (int i = 0; i < h->errors && s < POLL_BACKOFF_MAX_S; i++)
			s *= 2;
	if (s > POLL_BACKOFF_MAX_S)
		s = POLL_BACKOFF_MAX_S;
	uv_timer_start(&h->timer, poll_now, (uint64_t)s * 1000, 0);
}

/* ---- callback key and signatures ---- */

static pthread_mutex_t key_mu = PTHREAD_MUTEX_INITIALIZER;
static char key_path[PATH_MAX];
static unsigned char key_bytes[32];
static bool key_loaded;

static int load_key(const struct uh_config *cfg, unsigned char out[32], struct uh_error *err)
{
	if (!cfg->secrets.key_file)
		return uh_error_set(err, UH_E_INTERNAL, "secrets.key_file", "no secrets.key_file configured");
	char dir[PATH_MAX], path[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", cfg->secrets.key_file);
	snprintf(path, sizeof(path), "%s/callback.key", dirname(dir));
	pthread_mutex_lock(&key_mu);
	if (key_loaded && strcmp(path, key_path) == 0) {
		memcpy(out, key_bytes, 32);
		pthread_mutex_unlock(&key_mu);
		return 0;
	}
	int rc = 0;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0) {
			unsigned char k[32];
			if (uh_random(k, sizeof(k)) || write(fd, k, sizeof(k)) != (ssize_t)sizeof(k) || fsync(fd)) {
				close(fd);
				unlink(path);
				uh_memzero(k, sizeof(k));
				pthread_mutex_unlock(&key_mu);
				return uh_error_set(err, UH_E_INTERNAL, NULL, "cannot write '%s'", path);
			}
			close(fd);
			memcpy(key_bytes, k, 32);
			uh_memzero(k, sizeof(k));
			goto loaded;
		}
		if (errno == EEXIST)
			fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	}
	if (fd < 0) {
		pthread_mutex_unlock(&key_mu);
		return uh_error_set(err, UH_E_INTERNAL, NULL, "cannot open '%s': %s", path, strerror(errno));
	}
	struct stat st;
	ssize_t n = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && !(st.st_mode & 077) ? read(fd, key_bytes, 32) : -1;
	close(fd);
	if (n != 32) {
		rc = uh_error_set(err, UH_E_INTERNAL, NULL, "'%s' must be a 32-byte file of mode 0600", path);
		pthread_mutex_unlock(&key_mu);
		return rc;
	}
loaded:
	snprintf(key_path, sizeof(key_path), "%s", path);
	key_loaded = true;
	memcpy(out, key_bytes, 32);
	pthread_mutex_unlock(&key_mu);
	return 0;
}

int uh_webhook_callback_token(const struct uh_config *cfg, const char *run_id, char out[65], struct uh_error *err)
{
	unsigned char k[32], mac[32];
	int rc = load_key(cfg, k, err);
	if (rc)
		return rc;
	char msg[128];
	int n = snprintf(msg, sizeof(msg), "uhub-callback-v1:%s", run_id);
	uh_hmac_sha256(k, sizeof(k), msg, (size_t)n, mac);
	uh_hex(mac, sizeof(mac), out);
	uh_memzero(k, sizeof(k));
	uh_memzero(mac, sizeof(mac));
	return 0;
}

static int unhex(const char *s, size_t n, unsigned char *out)
{
	for (size_t i = 0; i < n; i++) {
		int v = 0;
		for (int j = 0; j < 2; j++) {
			char c = s[2 * i + j];
			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= c - '0';
			else if (c >= 'a' && c <= 'f')
				v |= c - 'a' + 10;
			else
				return -1;
		}
		out[i] = (unsigned char)v;
	}
	return 0;
}

int uh_webhook_sig_check(const char *token_hex, const char *sig_header, int64_t t_now, const char *raw_body, size_t len)
{
	if (!token_hex || !sig_header || strlen(sig_header) > 1024 || (!raw_body && len))
		return -1;
	int64_t t = -1;
	int n_t = 0;
	unsigned char sigs[8][32];
	int n_sig = 0;
	const char *p = sig_header;
	while (*p) {
		while (*p == ' ')
			p++;
		size_t n = strcspn(p, ",");
		const char *e = p + n;
		while (e > p && e[-1] == ' ')
			e--;
		size_t m = (size_t)(e - p);
		if (m > 2 && p[0] == 't' && p[1] == '=') {
			if (m - 2 > 12)
				return -1;
			int64_t v = 0;
			for (size_t i = 2; i < m; i++) {
				if (p[i] < '0' || p[i] > '9')
					return -1;
				v = v * 10 + (p[i] - '0');
			}
			t = v;
			n_t++;
		} else if (m > 3 && strncmp(p, "v1=", 3) == 0) {
			if (m - 3 != 64 || n_sig >= 8 || unhex(p + 3, 32, sigs[n_sig]))
				return -1;
			n_sig++;
		}
		/* other schemes (v0=...) are ignored */
		p += n;
		if (*p == ',')
			p++;
	}
	if (n_t != 1 || n_sig == 0 || t < 0)
		return -1;
	if (t > t_now + UH_WH_CALLBACK_TOLERANCE_S || t < t_now - UH_WH_CALLBACK_TOLERANCE_S)
		return -1;
	char ts[32];
	int tn = snprintf(ts, sizeof(ts), "%" PRId64 ".", t);
	/* HMAC over t "." body without copying the body: HMAC(k, m) with
	 * the key's pads, done through two calls is not offered by
	 * uh_hmac_sha256, so build the message once. */
	char *msg = malloc((size_t)tn + len + 1);
	if (!msg)
		return -1;
	memcpy(msg, ts, (size_t)tn);
	if (len)
		memcpy(msg + tn, raw_body, len);
	unsigned char mac[32];
	uh_hmac_sha256(token_hex, strlen(token_hex), msg, (size_t)tn + len, mac);
	free(msg);
	int ok = 0;
	for (int i = 0; i < n_sig; i++)
		ok |= uh_ct_equal(mac, sigs[i], 32);
	uh_memzero(mac, sizeof(mac));
	return ok ? 0 : -1;
}

int uh_webhook_callback_verify(const struct uh_config *cfg, const char *run_id, const char *sig_header, int64_t t_now,
                               const char *raw_body, size_t len)
{
	char tok[65];
	if (!run_id || uh_webhook_callback_token(cfg, run_id, tok, NULL))
		return -1;
	int rc = uh_webhook_sig_check(tok, sig_header, t_now, raw_body, len);
	uh_memzero(tok, sizeof(tok));
	return rc;
}

bool uh_webhook_callback_body_ok(const json_t *body)
{
	if (!json_is_object(body))
		return false;
	const char *k;
	json_t *v;
	bool status = false;
	json_object_foreach((json_t *)body, k, v)
	{
		if (strcmp(k, "status") == 0) {
			const char *s = json_string_value(v);
			if (!s || (strcmp(s, "succeeded") && strcmp(s, "failed")))
				return false;
			status = true;
		} else if (strcmp(k, "exit_code") == 0) {
			if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 255)
				return false;
		} else if (strcmp(k, "message") == 0) {
			if (!json_is_string(v) || json_string_length(v) > 1024)
				return false;
		} else if (strcmp(k, "log") == 0) {
			if (!json_is_string(v))
				return false;
		} else {
			return false;
		}
	}
	return status;
}

/* ---- the ops ---- */

static int wh_init(const struct uh_config *cfg, uv_loop_t *loop, struct uh_error *err)
{
	(void)cfg;
	int rc = uh_curl_uv_init(&G.cu, loop, on_done, err);
	if (rc)
		return rc;
	/* ca_cert adds to the system's CAs: keep the default bundle's text to
	 * prepend to it (read once here, not on the loop per request). */
	CURL *e = curl_easy_init();
	char *path = NULL;
	if (e && curl_easy_getinfo(e, CURLINFO_CAINFO, &path) == CURLE_OK && path) {
		FILE *f = fopen(path, "re");
		if (f) {
			struct uh_buf b;
			uh_buf_init(&b, 16u << 20);
			char chunk[65536];
			size_t n;
			while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && uh_buf_append(&b, chunk, n) == 0)
				;
			fclose(f);
			G.sys_ca_len = b.len;
			G.sys_ca = uh_buf_take(&b);
		}
	}
	if (e)
		curl_easy_cleanup(e);
	G.ready = true;
	return 0;
}

static void wh_shutdown(void)
{
	if (!G.ready)
		return;
	uh_curl_uv_shutdown(&G.cu);
	free(G.sys_ca);
	G.sys_ca = NULL;
	G.sys_ca_len = 0;
	G.ready = false;
}

static int wh_validate(const struct uh_config *cfg, const json_t *config, const json_t *command,
                       const json_t *env_names, struct uh_error *err)
{
	(void)env_names;
	if (command && !json_is_null(command))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "command",
		                    "'command' must be absent with the webhook backend (the request is the run)");
	struct uh_wh_conf c;
	int rc = uh_wh_conf_load(cfg, config, &c, err);
	uh_wh_conf_free(&c);
	return rc;
}

static void vars_set(json_t *vars, const char *k, const char *v)
{
	json_object_set_new(vars, k, json_string(v ? v : ""));
}

/* Free what a handle holds (not its timer, not the handle). */
static void free_state(struct wh_handle *h)
{
	wipe_free(h->token, h->token_len);
	h->token = NULL;
	for (size_t i = 0; i < h->n_secrets; i++) {
		free(h->secrets[i].ref);
		wipe_free(h->secrets[i].value, h->secrets[i].len);
	}
	free(h->secrets);
	h->secrets = NULL;
	h->n_secrets = 0;
	json_decref(h->vars);
	h->vars = NULL;
	uh_wh_conf_free(&h->conf);
	free(h->status_url);
	free(h->cancel_url);
	free(h->jenkins_queue_id);
	free(h->jenkins_base);
	free(h->ca_blob);
	h->ca_blob = NULL;
	h->status_url = h->cancel_url = h->jenkins_queue_id = h->jenkins_base = NULL;
}

/* The body as JSON text with the token spliced in at `field`, built so
 * that every buffer holding the token is wiped. */
static char *body_with_token(const json_t *b, const char *field, const char *tok, size_t tlen, size_t *len)
{
	char *rest = json_dumps(b, JSON_COMPACT); /* no secret in it */
	if (!rest)
		return NULL;
	size_t cap = strlen(rest) + strlen(field) + 6 * tlen + 16;
	char *out = malloc(cap);
	if (!out) {
		free(rest);
		return NULL;
	}
	size_t n = (size_t)snprintf(out, cap, "{\"%s\":\"", field);
	for (size_t i = 0; i < tlen; i++) {
		unsigned char c = (unsigned char)tok[i];
		if (c == '"' || c == '\\')
			n += (size_t)snprintf(out + n, cap - n, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
		else
			out[n++] = (char)c;
	}
	if (strcmp(rest, "{}") == 0)
		n += (size_t)snprintf(out + n, cap - n, "\"}");
	else
		n += (size_t)snprintf(out + n, cap - n, "\",%s", rest + 1);
	free(rest);
	*len = n;
	return out;
}

/* What start and re-attach share: the config, the template variables, the
 * callback token, the secrets (copied: the spec's are wiped once start()
 * returns) and the CA. On failure nothing of it is left. */
static int setup(struct wh_handle *h, const struct uh_run_spec *spec, struct uh_error *err)
{
	struct uh_run_handle *base = &h->base;
	json_t *refs = NULL;
	if (!G.ready)
		return uh_error_set(err, UH_E_UNAVAILABLE, "backend_unavailable", "the webhook backend is not ready");
	int rc = uh_wh_conf_load(base->cfg, spec->config, &h->conf, err);
	if (rc) {
		snprintf(err->field, sizeof(err->field), "backend_error");
		return rc;
	}
	uh_webhook_url_parse(h->conf.url, &h->origin); /* literal scheme and host: validated */
	if (h->conf.flow == UH_WH_FLOW_JENKINS) {
		const char *bu = json_string_value(json_object_get(spec->config, "url"));
		size_t bl = bu ? strlen(bu) : 0;
		while (bl && bu[bl - 1] == '/')
			bl--;
		h->jenkins_base = bu ? strndup(bu, bl) : NULL;
	}
	h->vars = json_object();
	vars_set(h->vars, "run.id", spec->run_id);
	vars_set(h->vars, "job.name", spec->job_name);
	vars_set(h->vars, "job.id", spec->job_id);
	vars_set(h->vars, "project.name", spec->project_name);
	vars_set(h->vars, "project.id", spec->project_id);
	vars_set(h->vars, "external_id", "");
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)spec->env, k, v)
	{
		if (strncmp(k, "UHUB_PARAM_", 11) == 0 && json_is_string(v)) {
			char name[160];
			snprintf(name, sizeof(name), "parameters.%s", k + 11);
			vars_set(h->vars, name, json_string_value(v));
		}
	}
	const char *pub = base->cfg->public_url ? base->cfg->public_url : "";
	size_t pl = strlen(pub);
	while (pl && pub[pl - 1] == '/')
		pl--;
	char cb[1024];
	snprintf(cb, sizeof(cb), "%.*s/api/v1/runs/%s/callback", (int)pl, pub, spec->run_id);
	vars_set(h->vars, "callback.url", cb);
	char tok[65] = "";
	char *dump = json_dumps(h->conf.j, JSON_COMPACT);
	bool wants_token = h->conf.mode == UH_WH_CALLBACK || (dump && strstr(dump, "{{callback.token}}"));
	free(dump);
	if (wants_token && (rc = uh_webhook_callback_token(base->cfg, spec->run_id, tok, err))) {
		snprintf(err->field, sizeof(err->field), "backend_error");
		goto fail;
	}
	vars_set(h->vars, "callback.token", tok);
	uh_memzero(tok, sizeof(tok));

	/* Secrets: copied now, the spec's are wiped once start() returns. */
	if (h->conf.token_secret) {
		const struct uh_secret_env *s = uh_run_spec_config_secret(spec, h->conf.token_secret);
		if (!s || !(h->token = strndup(s->value, s->value_len))) {
			rc = uh_error_set(err, UH_E_UNAVAILABLE, "secret_unavailable", "secret '%s' is not available",
			                  h->conf.token_secret);
			goto fail;
		}
		h->token_len = s->value_len;
	}
	refs = json_array();
	uh_webhook_secret_refs(h->conf.j, refs);
	h->secrets = calloc(json_array_size(refs) + 1, sizeof(*h->secrets));
	size_t i;
	json_array_foreach(refs, i, v)
	{
		const char *ref = json_string_value(v);
		const struct uh_secret_env *s = uh_run_spec_config_secret(spec, ref);
		if (!s || !h->secrets) {
			rc = uh_error_set(err, UH_E_UNAVAILABLE, "secret_unavailable", "secret '%s' is not available",
			                  ref);
			goto fail;
		}
		h->secrets[h->n_secrets].ref = strdup(ref);
		h->secrets[h->n_secrets].value = strndup(s->value, s->value_len);
		h->secrets[h->n_secrets].len = s->value_len;
		h->n_secrets++;
	}
	json_decref(refs);
	refs = NULL;
	if (h->conf.ca_cert) {
		size_t cl = strlen(h->conf.ca_cert);
		h->ca_blob = malloc(G.sys_ca_len + cl + 2);
		if (!h->ca_blob) {
			rc = uh_error_set(err, UH_E_INTERNAL, "backend_error", "out of memory");
			goto fail;
		}
		if (G.sys_ca_len)
			memcpy(h->ca_blob, G.sys_ca, G.sys_ca_len);
		h->ca_blob[G.sys_ca_len] = '\n';
		memcpy(h->ca_blob + G.sys_ca_len + 1, h->conf.ca_cert, cl + 1);
		h->ca_blob_len = G.sys_ca_len + 1 + cl;
	}
	return 0;
fail:
	json_decref(refs);
	free_state(h);
	return rc ? rc : UH_E_INTERNAL;
}

static int wh_start(struct uh_run_handle *base, const struct uh_run_spec *spec, struct uh_error *err)
{
	struct wh_handle *h = H(base);
	char *body = NULL, *url = NULL;
	size_t blen = 0;
	int rc = setup(h, spec, err);
	if (rc)
		return rc;

	/* The trigger's body and URL. */
	if (h->conf.body && json_is_string(h->conf.body)) {
		/* A text template: values JSON-escaped inside it. */
		if ((rc = expand(h, json_string_value(h->conf.body), UH_WH_ESC_JSON, false, &body, err)))
			goto fail_cfg;
		blen = strlen(body);
	} else if (h->conf.body || h->conf.body_token_field) {
		json_t *b = h->conf.body ? expand_json(h, h->conf.body, err) : json_object();
		if (!b) {
			rc = UH_E_INVALID_CONFIG;
			goto fail_cfg;
		}
		if (h->conf.body_token_field && json_is_object(b) && h->token)
			body = body_with_token(b, h->conf.body_token_field, h->token, h->token_len, &blen);
		else if ((body = json_dumps(b, JSON_COMPACT)))
			blen = strlen(body);
		json_decref(b);
		if (!body) {
			rc = uh_error_set(err, UH_E_INTERNAL, "backend_error", "out of memory");
			goto fail;
		}
	}
	if ((rc = expand(h, h->conf.url, UH_WH_ESC_URL, false, &url, err)))
		goto fail_cfg;
	/* From here on nothing fails synchronously. */
	uv_timer_init(base->loop, &h->timer);
	h->timer.data = h;
	req_start(h, REQ_TRIGGER, h->conf.method, url, body, blen);
	free(url);
	return 0;
fail_cfg:
	snprintf(err->field, sizeof(err->field), "backend_error");
fail:
	/* Nothing of the run exists; backend.c frees the handle itself. */
	wipe_free(body, blen);
	free_state(h);
	return rc ? rc : UH_E_INTERNAL;
}

/* A run a previous daemon left waiting on the remote job: follow it again
 * from its external id (stored once the trigger was answered). Polling
 * resumes, a callback is taken again (its token derives from the run id), a
 * stop cancels the remote job as for any run. Not for fire-and-forget
 * requests (nothing to wait for) nor Azure Durable Functions (the status URL
 * the function hands back carries its key and is not stored). */
static int wh_reattach(struct uh_run_handle *base, const struct uh_run_spec *spec, const char *external_id,
                       struct uh_error *err)
{
	struct wh_handle *h = H(base);
	int rc = setup(h, spec, err);
	if (rc)
		return rc;
	if (h->conf.mode == UH_WH_FIRE) {
		rc = uh_error_set(err, UH_E_UNAVAILABLE, "backend_error",
		                  "a fire-and-forget request has nothing to wait for");
		goto fail;
	}
	snprintf(base->external_id, sizeof(base->external_id), "%s", external_id);
	vars_set(h->vars, "external_id", external_id);
	if (h->conf.flow == UH_WH_FLOW_JENKINS) {
		/* A queue item's URL until the build starts, then the build's. */
		if (!jenkins_follow(h, external_id, strstr(external_id, "/queue/item/") != NULL)) {
			rc = uh_error_set(err, UH_E_INTERNAL, "backend_error", "out of memory");
			goto fail;
		}
	} else if (h->conf.flow == UH_WH_FLOW_AZURE) {
		rc = uh_error_set(err, UH_E_UNAVAILABLE, "backend_error",
		                  "an Azure Durable Functions run cannot be followed again: its status URL (which "
		                  "carries the function's key) is not stored");
		goto fail;
	} else {
		if (h->conf.status_url &&
		    (rc = expand(h, h->conf.status_url, UH_WH_ESC_URL, false, &h->status_url, err)))
			goto fail;
		struct uh_error ce = {0};
		char *c = NULL;
		if (h->conf.cancel_url && expand(h, h->conf.cancel_url, UH_WH_ESC_URL, false, &c, &ce) == 0)
			h->cancel_url = c;
		if (!h->status_url && h->conf.mode != UH_WH_CALLBACK) {
			rc = uh_error_set(err, UH_E_UNAVAILABLE, "backend_error",
			                  "no status URL to follow the remote job");
			goto fail;
		}
		h->phase = PH_WAIT;
	}
	uv_timer_init(base->loop, &h->timer);
	h->timer.data = h;
	if (h->status_url)
		schedule_poll(h, false);
	else
		say(h, "uhub: waiting for the callback");
	return 0;
fail:
	free_state(h);
	return rc;
}

static void finish_stopped(uv_timer_t *t)
{
	finish(t->data, UH_RESULT_REMOTE_FAIL, NULL, "stopped");
}

static void wh_stop(struct uh_run_handle *base, int64_t grace_ms)
{
	struct wh_handle *h = H(base);
	(void)grace_ms;
	if (h->finished || h->stopping)
		return;
	h->stopping = true;
	uv_timer_stop(&h->timer);
	if (h->req) {
		struct wh_req *r = h->req;
		h->req = NULL;
		req_abandon(r);
	}
	if (h->cancel_url && h->phase != PH_TRIGGER) {
		say(h, "uhub: asking the target to cancel");
		h->phase = PH_CANCEL;
		req_start(h, REQ_CANCEL, "POST", h->cancel_url, NULL, 0);
		return;
	}
	if (h->phase == PH_QUEUE && h->jenkins_queue_id && h->conf.flow == UH_WH_FLOW_JENKINS) {
		char u[2600];
		snprintf(u, sizeof(u), "%s/queue/cancelItem?id=%s", h->jenkins_base ? h->jenkins_base : "",
		         h->jenkins_queue_id);
		h->phase = PH_CANCEL;
		req_start(h, REQ_CANCEL, "POST", u, NULL, 0);
		return;
	}
	uv_timer_start(&h->timer, finish_stopped, 0, 0);
}

static void handle_closed(uv_handle_t *t)
{
	free(t->data);
}

static void wh_release(struct uh_run_handle *base)
{
	struct wh_handle *h = H(base);
	if (h->req) {
		req_abandon(h->req);
		h->req = NULL;
	}
	free_state(h);
	uv_timer_stop(&h->timer);
	uv_close((uv_handle_t *)&h->timer, handle_closed);
}

static int wh_callback(struct uh_run_handle *base, const json_t *body)
{
	struct wh_handle *h = H(base);
	if (h->finished || h->stopping || h->conf.mode != UH_WH_CALLBACK)
		return -1;
	if (!uh_webhook_callback_body_ok(body))
		return -1;
	const char *status = json_string_value(json_object_get(body, "status"));
	const char *msg = json_string_value(json_object_get(body, "message"));
	const char *log = json_string_value(json_object_get(body, "log"));
	json_t *ec = json_object_get(body, "exit_code");
	say(h, "uhub: callback received: %s", status);
	json_t *shown = json_deep_copy(body);
	json_object_del(shown, "log");
	char *text = json_dumps(shown, JSON_COMPACT);
	json_decref(shown);
	if (text) {
		struct uh_buf b = {.data = text, .len = strlen(text)};
		log_answer(h, &b);
		free(text);
	}
	if (log) {
		struct uh_buf b = {.data = (char *)log, .len = strlen(log)};
		log_answer(h, &b);
	}
	bool ok = strcmp(status, "succeeded") == 0;
	char m[200];
	snprintf(m, sizeof(m), "%s%s%.150s", ok ? "the remote job succeeded" : "the remote job failed", msg ? ": " : "",
	         msg ? msg : "");
	if (json_is_integer(ec))
		snprintf(m + strlen(m), sizeof(m) - strlen(m), " (exit code %d)", (int)json_integer_value(ec));
	int64_t code = json_is_integer(ec) ? json_integer_value(ec) : -1;
	if (code >= 0 && (code == 0) == ok) {
		/* A consistent exit code is the run's exit_code. */
		struct uh_run_result res = {.kind = UH_RESULT_EXITED, .exit_code = (int)code};
		snprintf(res.message, sizeof(res.message), "%s", m);
		finish_with(h, &res);
		return 0;
	}
	finish(h, ok ? UH_RESULT_REMOTE_OK : UH_RESULT_REMOTE_FAIL, NULL, "%s", m);
	return 0;
}

const struct uh_backend_ops uh_backend_webhook = {
    .name = "webhook",
    .caps = UH_CAP_CANCEL | UH_CAP_REATTACH,
    .state_size = sizeof(struct wh_handle),
    .init = wh_init,
    .shutdown = wh_shutdown,
    .validate = wh_validate,
    .start = wh_start,
    .reattach = wh_reattach,
    .stop = wh_stop,
    .release = wh_release,
    .settle = NULL,
    .callback = wh_callback,
};

static const struct uh_backend_ops *self_ops(void)
{
	return &uh_backend_webhook;
}
