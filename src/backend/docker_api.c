/* The Docker Engine API client: libcurl's multi interface driven by the
 * supervisor's libuv loop (curl_uv.h), so every run's requests share the
 * loop and nothing blocks it. The engine is a unix
 * socket (CURLOPT_UNIX_SOCKET_PATH) or tcp://HOST:PORT, with TLS client
 * certificates when docker.tls is set. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "backend/curl_uv.h"
#include "backend/docker_impl.h"
#include "util/time.h"

#define CONNECT_TIMEOUT_MS  5000L
#define REQ_PING_TIMEOUT_MS 5000L

static struct uh_curl_uv A;

/* A request ended: its dk_req is the handle's private pointer. */
static void on_done(CURL *easy, CURLcode cc)
{
	struct dk_req *q = NULL;
	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&q);
	if (!q)
		return;
	q->in_multi = false;
	q->cc = cc;
	curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &q->status);
	q->done(q);
}

int dk_api_init(uv_loop_t *loop, struct uh_error *err)
{
	return uh_curl_uv_init(&A, loop, on_done, err);
}

void dk_api_shutdown(void)
{
	uh_curl_uv_shutdown(&A);
}

int dk_host_parse(const struct uh_config *cfg, struct dk_host *out, struct uh_error *err)
{
	memset(out, 0, sizeof(*out));
	const char *h = cfg->docker.host ? cfg->docker.host : "unix:///var/run/docker.sock";
	if (strncmp(h, "unix://", 7) == 0) {
		const char *p = h + 7;
		if (p[0] != '/' || strlen(p) >= sizeof(out->path))
			return uh_error_set(err, UH_E_INVALID_CONFIG, "docker.host", "'docker.host' '%s' is not usable",
			                    h);
		out->unix_sock = true;
		snprintf(out->path, sizeof(out->path), "%s", p);
		snprintf(out->base, sizeof(out->base), "http://localhost");
		return 0;
	}
	if (strncmp(h, "tcp://", 6) == 0) {
		const char *p = h + 6;
		size_t n = strcspn(p, "/");
		if (n == 0 || n >= sizeof(out->hostport))
			return uh_error_set(err, UH_E_INVALID_CONFIG, "docker.host", "'docker.host' '%s' is not usable",
			                    h);
		memcpy(out->hostport, p, n);
		bool tls = json_is_object(cfg->docker.tls);
		snprintf(out->base, sizeof(out->base), "%s://%s", tls ? "https" : "http", out->hostport);
		return 0;
	}
	return uh_error_set(err, UH_E_INVALID_CONFIG, "docker.host", "'docker.host' '%s' is not usable", h);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
	struct dk_req *q = userp;
	size_t n = size * nmemb;
	if (uh_buf_append(&q->resp, data, n)) {
		/* Past the cap: keep the head, drop the rest (a pull's progress
		 * stream can be long; its last line is kept apart below). */
		return n;
	}
	return q->stop_at_line && memchr(data, '\n', n) ? 0 : n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
	struct dk_req *q = userp;
	size_t n = size * nmemb;
	if (n >= 5 && memcmp(data, "HTTP/", 5) == 0)
		q->headers_seen = false; /* a new response (after 100 Continue) */
	else if ((n == 2 && data[0] == '\r' && data[1] == '\n') || (n == 1 && data[0] == '\n')) {
		long code = 0;
		curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &code);
		if (code >= 200 && !q->headers_seen) {
			q->headers_seen = true;
			q->status = code;
			if (q->on_headers)
				q->on_headers(q);
		}
	}
	return n;
}

static void set_common(CURL *e, const struct uh_config *cfg, const struct dk_host *hst, long timeout_ms)
{
	if (hst->unix_sock)
		curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, hst->path);
	if (json_is_object(cfg->docker.tls)) {
		const char *ca = json_string_value(json_object_get(cfg->docker.tls, "ca"));
		const char *cert = json_string_value(json_object_get(cfg->docker.tls, "cert"));
		const char *key = json_string_value(json_object_get(cfg->docker.tls, "key"));
		if (ca)
			curl_easy_setopt(e, CURLOPT_CAINFO, ca);
		if (cert)
			curl_easy_setopt(e, CURLOPT_SSLCERT, cert);
		if (key)
			curl_easy_setopt(e, CURLOPT_SSLKEY, key);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	}
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
}

static int build_url(const struct dk_host *hst, const char *api_version, const char *path, char *url, size_t size)
{
	int n = snprintf(url, size, "%s%s%s%s", hst->base, api_version[0] ? "/v" : "", api_version, path);
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

struct dk_req *dk_req_start(const struct uh_config *cfg, const char *api_version, const char *method, const char *path,
                            const char *body, long timeout_ms, size_t max_resp, dk_req_fn done, dk_req_fn on_headers,
                            void *arg)
{
	return dk_req_start_raw(cfg, api_version, method, path, body, body ? strlen(body) : 0,
	                        "Content-Type: application/json", timeout_ms, max_resp, done, on_headers, arg);
}

struct dk_req *dk_req_start_raw(const struct uh_config *cfg, const char *api_version, const char *method,
                                const char *path, const void *body, size_t body_len, const char *ctype_header,
                                long timeout_ms, size_t max_resp, dk_req_fn done, dk_req_fn on_headers, void *arg)
{
	struct dk_host hst;
	char url[1024];
	if (!A.ready || dk_host_parse(cfg, &hst, NULL) || build_url(&hst, api_version, path, url, sizeof(url)))
		return NULL;
	struct dk_req *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	uh_buf_init(&q->resp, max_resp);
	q->done = done;
	q->on_headers = on_headers;
	q->arg = arg;
	if (!(q->easy = curl_easy_init()))
		goto fail;
	CURL *e = q->easy;
	set_common(e, cfg, &hst, timeout_ms);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, q);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, q->errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, q);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, q);
	q->hdrs = curl_slist_append(NULL, "Expect:");
	if (body) {
		if (!(q->body = malloc(body_len + 1)))
			goto fail;
		memcpy(q->body, body, body_len);
		q->body[body_len] = 0;
		q->hdrs = curl_slist_append(q->hdrs, ctype_header);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
	} else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, q->hdrs);
	if (curl_multi_add_handle(A.multi, e) != CURLM_OK)
		goto fail;
	q->in_multi = true;
	return q;
fail:
	dk_req_free(q);
	return NULL;
}

struct dk_req *dk_req_ping(const struct uh_config *cfg, dk_req_fn done, void *arg)
{
	struct dk_req *q =
	    dk_req_start_raw(cfg, "", "GET", "/_ping", NULL, 0, NULL, REQ_PING_TIMEOUT_MS, 4096, done, NULL, arg);
	if (!q)
		return NULL;
	/* A new connection: an engine shutting down has closed its listener
	 * but still answers on the connections it has. */
	curl_multi_remove_handle(A.multi, q->easy);
	curl_easy_setopt(q->easy, CURLOPT_FRESH_CONNECT, 1L);
	curl_easy_setopt(q->easy, CURLOPT_FORBID_REUSE, 1L);
	if (curl_multi_add_handle(A.multi, q->easy) != CURLM_OK) {
		q->in_multi = false;
		dk_req_free(q);
		return NULL;
	}
	return q;
}

void dk_req_free(struct dk_req *q)
{
	if (!q)
		return;
	if (q->easy) {
		if (q->in_multi && A.multi)
			curl_multi_remove_handle(A.multi, q->easy);
		curl_easy_cleanup(q->easy);
	}
	curl_slist_free_all(q->hdrs);
	free(q->body);
	uh_buf_free(&q->resp);
	free(q);
}

void dk_req_cancel(struct dk_req *q)
{
	dk_req_free(q);
}

bool dk_req_transport_failed(const struct dk_req *q)
{
	/* A cut connection after a complete answer is not a transport failure;
	 * no answer at all, or a cut mid-answer, is. */
	return q->cc != CURLE_OK && q->cc != CURLE_WRITE_ERROR;
}

json_t *dk_req_json(const struct dk_req *q)
{
	if (!q->resp.data)
		return NULL;
	return json_loadb(q->resp.data, q->resp.len, 0, NULL);
}

void dk_req_describe(const struct dk_req *q, char *out, size_t size)
{
	if (q->cc != CURLE_OK) {
		snprintf(out, size, "%s", q->errbuf[0] ? q->errbuf : curl_easy_strerror(q->cc));
		return;
	}
	json_t *j = dk_req_json(q);
	const char *m = json_string_value(json_object_get(j, "message"));
	if (m)
		snprintf(out, size, "engine answered %ld: %s", q->status, m);
	else
		snprintf(out, size, "engine answered %ld", q->status);
	json_decref(j);
}

long dk_sync_request(const struct uh_config *cfg, const char *api_version, const char *method, const char *path,
                     long timeout_ms, struct uh_buf *resp)
{
	struct dk_host hst;
	char url[1024];
	if (dk_host_parse(cfg, &hst, NULL) || build_url(&hst, api_version, path, url, sizeof(url)))
		return -1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	CURL *e = curl_easy_init();
	if (!e)
		return -1;
	struct dk_req q = {0};
	uh_buf_init(&q.resp, 1 << 20);
	q.easy = e;
	set_common(e, cfg, &hst, timeout_ms);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &q);
	if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
	} else if (strcmp(method, "GET") != 0) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	}
	CURLcode cc = curl_easy_perform(e);
	long code = -1;
	if (cc == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(e);
	if (resp)
		*resp = q.resp;
	else
		uh_buf_free(&q.resp);
	return code;
}

bool dk_urlencode(const char *s, char *out, size_t size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		             *p == '-' || *p == '_' || *p == '.' || *p == '~';
		if (o + (plain ? 1 : 3) >= size)
			return false;
		if (plain) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	if (o >= size)
		return false;
	out[o] = 0;
	return true;
}

/* tcp://IPV4:PORT as an address; a name would need a blocking resolver on
 * the loop. */
static int tcp_addr(const struct dk_host *hst, struct sockaddr_in *out)
{
	char host[256];
	snprintf(host, sizeof(host), "%s", hst->hostport);
	char *colon = strrchr(host, ':');
	if (!colon)
		return -EINVAL;
	*colon = 0;
	int port = atoi(colon + 1);
	*out = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	return port > 0 && port <= 65535 && inet_pton(AF_INET, host, &out->sin_addr) == 1 ? 0 : -EINVAL;
}

int dk_raw_check(const struct dk_host *hst)
{
	struct sockaddr_in a4;
	return hst->unix_sock ? 0 : tcp_addr(hst, &a4);
}

int dk_raw_connect(const struct dk_host *hst)
{
	int fd;
	if (hst->unix_sock) {
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		snprintf(a.sun_path, sizeof(a.sun_path), "%s", hst->path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) && errno != EINPROGRESS) {
			int e = errno;
			close(fd);
			return -e;
		}
		return fd;
	}
	struct sockaddr_in a4;
	if (tcp_addr(hst, &a4))
		return -EINVAL;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&a4, sizeof(a4)) && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

bool dk_engine_time(const char *s, int64_t add_ms, char *out, size_t size)
{
	int64_t us;
	if (uh_time_parse(s, &us) || us <= 0 || (us += add_ms * 1000) < 0)
		return false;
	/* the engine reads the fraction as nanoseconds when it has 9 digits */
	int w = snprintf(out, size, "%lld.%06lld000", (long long)(us / 1000000), (long long)(us % 1000000));
	return w > 0 && (size_t)w < size;
}
