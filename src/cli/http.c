/* The client's HTTP side: one libcurl handle per process, every request
 * under $UHUB_URL/api/v1 with the bearer token of UHUB_TOKEN (or
 * UHUB_TOKEN_FILE), a connect timeout, a total timeout except for log
 * streams, no redirects, http and https only. The token never reaches
 * stdout, stderr or an error message; its copies are wiped. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/internal.h"
#include "util/error.h"
#include "util/json.h"

#define DEFAULT_URL        "http://127.0.0.1:8080"
#define CONNECT_TIMEOUT_MS 10000L
#define REQUEST_TIMEOUT_MS 60000L
#define MAX_ANSWER         (64u << 20) /* a JSON answer larger than this is refused */
#define MAX_TOKEN_FILE     (16u << 10)

struct cli_http {
	CURL *curl;
	char *base;         /* "$UHUB_URL/api/v1" */
	char *shown;        /* $UHUB_URL without user:password@, for messages */
	struct uh_buf auth; /* "Authorization: Bearer ...", secret */
	const char *cacert;
	char errbuf[CURL_ERROR_SIZE];
};

static bool token_chars_ok(const char *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (t[i] < 0x21 || t[i] > 0x7e)
			return false;
	return n > 0;
}

/* The token, from UHUB_TOKEN or else the first line of UHUB_TOKEN_FILE, into
 * the Authorization header (a secret buffer). */
static int load_token(struct cli_http *h)
{
	struct uh_buf tok = UH_BUF_INIT(MAX_TOKEN_FILE);
	tok.secret = true;
	const char *env = getenv("UHUB_TOKEN"), *file = getenv("UHUB_TOKEN_FILE");
	int rc = 0;
	if (env && *env) {
		if (uh_buf_appends(&tok, env)) {
			cli_errorf("UHUB_TOKEN is too long");
			rc = UH_EXIT_USAGE;
			goto out;
		}
	} else if (file && *file) {
		int fd = open(file, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			cli_errorf("cannot open UHUB_TOKEN_FILE '%s': %s", file, strerror(errno));
			rc = UH_EXIT_USAGE;
			goto out;
		}
		char chunk[1024];
		ssize_t n;
		while ((n = read(fd, chunk, sizeof(chunk))) > 0 || (n < 0 && errno == EINTR))
			if (n > 0 && uh_buf_append(&tok, chunk, (size_t)n)) {
				n = -2;
				break;
			}
		uh_memzero(chunk, sizeof(chunk));
		close(fd);
		if (n < 0) {
			cli_errorf("cannot read UHUB_TOKEN_FILE '%s': %s", file,
			           n == -2 ? "file too large" : strerror(errno));
			rc = UH_EXIT_USAGE;
			goto out;
		}
		/* The token is the file's text up to trailing white space. */
		while (tok.len && (tok.data[tok.len - 1] == '\n' || tok.data[tok.len - 1] == '\r' ||
		                   tok.data[tok.len - 1] == ' ' || tok.data[tok.len - 1] == '\t'))
			tok.data[--tok.len] = '\0';
	} else {
		cli_errorf("no token: set UHUB_TOKEN or UHUB_TOKEN_FILE");
		rc = UH_EXIT_NOPERM;
		goto out;
	}
	if (!token_chars_ok(tok.data, tok.len)) {
		cli_errorf("the token of %s is empty or holds spaces or control characters",
		           env && *env ? "UHUB_TOKEN" : "UHUB_TOKEN_FILE");
		rc = UH_EXIT_USAGE;
		goto out;
	}
	h->auth.secret = true;
	h->auth.max = MAX_TOKEN_FILE + 64;
	if (uh_buf_appends(&h->auth, "Authorization: Bearer ") || uh_buf_append(&h->auth, tok.data, tok.len)) {
		cli_errorf("out of memory");
		rc = UH_EXIT_FAIL;
	}
out:
	uh_buf_free(&tok);
	return rc;
}

static char *without_userinfo(const char *url)
{
	const char *p = strstr(url, "://");
	const char *host = p ? p + 3 : url;
	const char *at = strchr(host, '@'), *slash = strchr(host, '/');
	if (!at || (slash && slash < at))
		return strdup(url);
	char *s = NULL;
	if (asprintf(&s, "%.*s%s", (int)(host - url), url, at + 1) < 0)
		return NULL;
	return s;
}

static int http_open(struct cli *c)
{
	if (c->http)
		return 0;
	struct cli_http *h = calloc(1, sizeof(*h));
	if (!h) {
		cli_errorf("out of memory");
		return UH_EXIT_FAIL;
	}
	c->http = h;
	const char *url = getenv("UHUB_URL");
	if (!url || !*url)
		url = DEFAULT_URL;
	if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
		cli_errorf("UHUB_URL must start with http:// or https://");
		return UH_EXIT_USAGE;
	}
	size_t n = strlen(url);
	while (n > 8 && url[n - 1] == '/')
		n--;
	h->shown = without_userinfo(url);
	if (asprintf(&h->base, "%.*s/api/v1", (int)n, url) < 0 || !h->shown) {
		h->base = NULL;
		cli_errorf("out of memory");
		return UH_EXIT_FAIL;
	}
	h->cacert = getenv("UHUB_CACERT");
	int rc = load_token(h);
	if (rc)
		return rc;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(h->curl = curl_easy_init())) {
		cli_errorf("cannot start libcurl");
		return UH_EXIT_FAIL;
	}
	return 0;
}

void cli_http_close(struct cli *c)
{
	struct cli_http *h = c->http;
	if (!h)
		return;
	if (h->curl) {
		curl_easy_cleanup(h->curl);
		curl_global_cleanup();
	}
	uh_buf_free(&h->auth);
	free(h->base);
	free(h->shown);
	free(h);
	c->http = NULL;
}

void cli_resp_free(struct cli_resp *r)
{
	uh_buf_free(&r->body);
	json_decref(r->json);
	r->json = NULL;
	r->status = 0;
}

struct sink {
	struct cli_resp *r;
	CURL *curl;
	int fd; /* -1: keep everything in r->body */
	size_t skip, received;
	int write_errno;
	bool too_large;
};

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct sink *s = userdata;
	size_t len = size * nmemb;
	long status = 0;
	if (s->fd >= 0)
		curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
	if (s->fd >= 0 && status >= 200 && status < 300) {
		const char *d = ptr;
		size_t n = len;
		s->received += len;
		cli_skip(&s->skip, &d, &n);
		if (n && (s->write_errno = write_all(s->fd, d, n)) != 0)
			return 0;
		return len;
	}
	if (uh_buf_append(&s->r->body, ptr, len)) {
		s->too_large = true;
		return 0;
	}
	return len;
}

static int perform(struct cli *c, const char *method, const char *path, const char *body, size_t len,
                   const char *idem_key, struct sink *s)
{
	struct cli_resp *r = s->r;
	memset(r, 0, sizeof(*r));
	uh_buf_init(&r->body, MAX_ANSWER);
	int rc = http_open(c);
	if (rc)
		return rc;
	struct cli_http *h = c->http;
	CURL *curl = h->curl;
	s->curl = curl;

	char *url = NULL;
	if (asprintf(&url, "%s%s", h->base, path) < 0) {
		cli_errorf("out of memory");
		return UH_EXIT_FAIL;
	}
	struct curl_slist *hdr = NULL, *t;
	bool streaming = s->fd >= 0;
	const char *lines[] = {
	    h->auth.data,
	    streaming ? "Accept: text/plain" : "Accept: application/json",
	    /* No body, no Content-Type: not even the form type curl puts on an
	     * empty POST. */
	    body ? "Content-Type: application/json" : "Content-Type:",
	    "Expect:",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		if (!lines[i])
			continue;
		if (!(t = curl_slist_append(hdr, lines[i])))
			goto oom;
		hdr = t;
	}
	if (idem_key) {
		char *line = NULL;
		if (asprintf(&line, "Idempotency-Key: %s", idem_key) < 0)
			goto oom;
		t = curl_slist_append(hdr, line);
		free(line);
		if (!t)
			goto oom;
		hdr = t;
	}

	curl_easy_reset(curl);
	h->errbuf[0] = '\0';
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, streaming ? 0L : REQUEST_TIMEOUT_MS);
	curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(curl, CURLOPT_TCP_KEEPIDLE, 30L);
	curl_easy_setopt(curl, CURLOPT_TCP_KEEPINTVL, 15L);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "uhub-cli");
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, h->errbuf);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, s);
	if (h->cacert && *h->cacert)
		curl_easy_setopt(curl, CURLOPT_CAINFO, h->cacert);
	if (strcmp(method, "GET") != 0)
		curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
	if (body) {
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	} else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
	}

	CURLcode cc = curl_easy_perform(curl);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r->status);
	/* Nothing of the request (the token among it) stays in curl's hands. */
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
	for (t = hdr; t; t = t->next)
		uh_memzero(t->data, strlen(t->data));
	curl_slist_free_all(hdr);
	free(url);

	if (s->write_errno) {
		if (s->write_errno != EPIPE)
			cli_errorf("writing the output: %s", strerror(s->write_errno));
		return UH_EXIT_FAIL;
	}
	if (s->too_large) {
		cli_errorf("the server's answer is larger than %u bytes", MAX_ANSWER);
		return UH_EXIT_FAIL;
	}
	if (cc != CURLE_OK) {
		/* A stream cut after its answer began is an ended stream, not an
		 * unreachable server: the caller looks at the run again. */
		if (streaming && r->status >= 200 && r->status < 300 &&
		    (cc == CURLE_PARTIAL_FILE || cc == CURLE_RECV_ERROR || cc == CURLE_GOT_NOTHING)) {
			r->cut = true;
			goto answered;
		}
		if (cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL) {
			cli_errorf("bad UHUB_URL '%s': %s", h->shown, curl_easy_strerror(cc));
			return UH_EXIT_USAGE;
		}
		if (cc == CURLE_OUT_OF_MEMORY) {
			cli_errorf("out of memory");
			return UH_EXIT_FAIL;
		}
		snprintf(c->unreachable, sizeof(c->unreachable), "cannot reach the server at %s: %s", h->shown,
		         h->errbuf[0] ? h->errbuf : curl_easy_strerror(cc));
		if (!c->quiet)
			cli_errorf("%s", c->unreachable);
		return UH_EXIT_UNREACHABLE;
	}
answered:
	if (r->body.len)
		r->json = uh_json_parse(r->body.data, r->body.len, false, NULL);
	return 0;
oom:
	for (t = hdr; t; t = t->next)
		uh_memzero(t->data, strlen(t->data));
	curl_slist_free_all(hdr);
	free(url);
	cli_errorf("out of memory");
	return UH_EXIT_FAIL;
}

int cli_http_do(struct cli *c, const char *method, const char *path, const char *body, size_t len, const char *idem_key,
                struct cli_resp *r)
{
	struct sink s = {.r = r, .fd = -1};
	return perform(c, method, path, body, len, idem_key, &s);
}

int cli_http_stream(struct cli *c, const char *path, int fd, size_t skip, size_t *received, struct cli_resp *r)
{
	struct sink s = {.r = r, .fd = fd, .skip = skip};
	int rc = perform(c, "GET", path, NULL, 0, NULL, &s);
	if (received)
		*received = s.received;
	return rc;
}

int cli_check(const struct cli_resp *r)
{
	if (r->status >= 200 && r->status < 300)
		return 0;
	char msg[1024];
	cli_error_text(r->json, r->status, msg, sizeof(msg));
	cli_errorf("%s", msg);
	return cli_exit_for_http(r->status);
}

int cli_call(struct cli *c, const char *method, const char *path, const json_t *body, struct cli_resp *r)
{
	char *text = NULL;
	if (body && !(text = uh_json_dump(body))) {
		cli_errorf("out of memory");
		return UH_EXIT_FAIL;
	}
	int rc = cli_http_do(c, method, path, text, text ? strlen(text) : 0, NULL, r);
	free(text);
	if (!rc)
		rc = cli_check(r);
	if (!rc && r->status != 204 && r->body.len && !r->json) {
		cli_errorf("the server's answer to %s %s is not JSON", method, path);
		rc = UH_EXIT_FAIL;
	}
	return rc;
}

int cli_list(struct cli *c, const char *path, size_t max, json_t **items, json_t **next)
{
	json_t *all = json_array(), *cursor = json_null();
	int rc = 0;
	for (int page = 0; page < 10000; page++) {
		struct uh_buf p = UH_BUF_INIT(8192);
		if (uh_buf_appends(&p, path) ||
		    (json_is_string(cursor) &&
		     cli_pathf(&p, strchr(path, '?') ? "&before=%s" : "?before=%s", json_string_value(cursor)))) {
			uh_buf_free(&p);
			cli_errorf("out of memory");
			rc = UH_EXIT_FAIL;
			break;
		}
		struct cli_resp r;
		rc = cli_call(c, "GET", p.data, NULL, &r);
		uh_buf_free(&p);
		if (rc) {
			cli_resp_free(&r);
			break;
		}
		json_t *got = json_object_get(r.json, "items"), *nx = json_object_get(r.json, "next");
		if (!json_is_array(got)) {
			cli_errorf("the server's answer to GET %s has no \"items\" list", path);
			cli_resp_free(&r);
			rc = UH_EXIT_FAIL;
			break;
		}
		json_array_extend(all, got);
		bool same = json_is_string(nx) && json_equal(nx, cursor);
		json_decref(cursor);
		cursor = json_is_string(nx) ? json_incref(nx) : json_null();
		cli_resp_free(&r);
		if (max && json_array_size(all) >= max) {
			while (json_array_size(all) > max)
				json_array_remove(all, json_array_size(all) - 1);
			break;
		}
		if (!json_is_string(cursor) || same)
			break;
	}
	if (rc) {
		json_decref(all);
		json_decref(cursor);
		*items = *next = NULL;
		return rc;
	}
	*items = all;
	*next = cursor;
	return 0;
}
