/* The Vault KV v2 client (see vault.h).
 *
 * One curl easy handle per request, so worker threads share nothing but the
 * token. The token state sits behind a mutex and logins and renewals happen
 * while holding it: eight readers that find the token stale cause one login,
 * not eight. Readers take a copy of the token (locked memory) and do their
 * read outside the lock.
 *
 * What is wiped: the token, AppRole ids and values (struct uh_secret_value),
 * request bodies, answer buffers and header lines that held the token
 * (uh_memzero before free). What is not: libcurl's and OpenSSL's own
 * internal send/receive buffers, which libcurl frees without wiping. */
#include "secret/vault.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/cleanup.h"
#include "util/time.h"

#define FILE_MAX          8192 /* token, role id and secret id files */
#define CA_FILE_MAX       (1024 * 1024)
#define TOKEN_MAX         4096
#define PATH_MAX_LEN      4096
#define TTL_MAX_S         (10LL * 366 * 24 * 3600)
#define CONNECT_TIMEOUT_S 5L
#define TOTAL_TIMEOUT_S   10L
#define RENEW_BACKOFF_US  1000000LL /* after a failed renewal with a still valid token */

struct uh_vault {
	char *addr; /* scheme://host[:port], no trailing slash */
	char *mount;
	char *ca_cert;
	char *token_file, *role_id_file, *secret_id_file;
	bool plain_http; /* loopback only; no proxy then */

	pthread_mutex_t mu; /* everything below */
	struct uh_secret_value *token;
	uint64_t gen;       /* bumped at each login */
	int64_t expires_us; /* monotonic; 0: never */
	int64_t renew_us;   /* monotonic time from which to renew; 0: never */
	bool renewable;
	struct uh_vault_stats stats;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- parsing Vault's answers ---- */

static json_t *parse_json(const char *body, size_t len)
{
	json_error_t je;
	if (!body || len == 0)
		return NULL;
	json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
	/* je.text may quote a piece of the answer: a token or a value */
	uh_memzero(&je, sizeof(je));
	if (j && !json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

int uh_vault_parse_kv(long status, const char *body, size_t len, const char *key, struct uh_secret_value **out,
                      struct uh_error *err)
{
	*out = NULL;
	if (status == 403)
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "permission denied (403)");
	if (status >= 500 && status <= 599)
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "vault answered status %ld", status);
	if (status != 200 && status != 404)
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "unexpected status %ld from vault", status);

	uh_autojson json_t *j = parse_json(body, len);
	if (!j) {
		if (status == 404)
			return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "not found (404)");
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "vault's answer is not a JSON object");
	}
	json_t *data = json_object_get(j, "data");
	json_t *meta = json_is_object(data) ? json_object_get(data, "metadata") : NULL;
	/* A deleted or destroyed latest version answers 404 (200 in older
	 * Vaults) with its metadata: say which. */
	if (json_is_object(meta)) {
		json_t *dt = json_object_get(meta, "deletion_time");
		if (json_is_true(json_object_get(meta, "destroyed")))
			return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "latest version destroyed");
		if (json_is_string(dt) && json_string_length(dt) > 0)
			return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "latest version deleted");
	}
	if (status == 404)
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "not found (404)");
	json_t *kv = json_is_object(data) ? json_object_get(data, "data") : NULL;
	if (!json_is_object(kv))
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "vault's answer holds no secret data");
	json_t *val = json_object_get(kv, key);
	if (!val)
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "key '%s' missing", key);
	if (!json_is_string(val))
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "value of key '%s' is not a string", key);
	const char *s = json_string_value(val);
	size_t n = json_string_length(val);
	if (memchr(s, '\0', n))
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "value of key '%s' holds a NUL byte", key);
	*out = uh_secret_value_new(s, n);
	if (!*out)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	return 0;
}

/* A token goes into an HTTP header line: visible ASCII only. */
static bool token_ok(const char *s, size_t n)
{
	if (n == 0 || n > TOKEN_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

static int get_ttl(json_t *obj, const char *name, int64_t *out)
{
	json_t *t = json_object_get(obj, name);
	if (!json_is_integer(t) || json_integer_value(t) < 0)
		return -1;
	json_int_t v = json_integer_value(t);
	*out = v > TTL_MAX_S ? TTL_MAX_S : (int64_t)v;
	return 0;
}

int uh_vault_parse_auth(const char *body, size_t len, bool lookup, struct uh_vault_auth *out, struct uh_error *err)
{
	memset(out, 0, sizeof(*out));
	uh_autojson json_t *j = parse_json(body, len);
	if (!j)
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "vault's answer is not a JSON object");
	if (lookup) {
		json_t *d = json_object_get(j, "data");
		if (!json_is_object(d))
			return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "token lookup answer has no 'data'");
		if (get_ttl(d, "ttl", &out->ttl_s))
			return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "token lookup answer has no valid 'ttl'");
		out->renewable = json_is_true(json_object_get(d, "renewable"));
		return 0;
	}
	json_t *a = json_object_get(j, "auth");
	if (!json_is_object(a))
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "vault's answer has no 'auth'");
	json_t *t = json_object_get(a, "client_token");
	if (!json_is_string(t) || !token_ok(json_string_value(t), json_string_length(t)))
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "vault's answer has no valid 'auth.client_token'");
	if (get_ttl(a, "lease_duration", &out->ttl_s))
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "vault's answer has no valid 'auth.lease_duration'");
	out->renewable = json_is_true(json_object_get(a, "renewable"));
	out->token = uh_secret_value_new(json_string_value(t), json_string_length(t));
	if (!out->token)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	return 0;
}

/* ---- URLs ---- */

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
	       c == '_' || c == '~';
}

/* Append "/seg/seg..." with each segment percent-encoded. */
static int append_segments(struct uh_buf *b, const char *s, const char *what, struct uh_error *err)
{
	if (!s || !*s)
		return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "%s is empty", what);
	if (strlen(s) > PATH_MAX_LEN)
		return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "%s is longer than %d bytes", what, PATH_MAX_LEN);
	for (const char *p = s;;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 0)
			return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "%s has an empty segment", what);
		if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "%s has a '.' or '..' segment", what);
		int r = uh_buf_append(b, "/", 1);
		for (size_t i = 0; i < n && !r; i++) {
			unsigned char c = (unsigned char)p[i];
			r = unreserved(c) ? uh_buf_append(b, &p[i], 1) : uh_buf_printf(b, "%%%02X", c);
		}
		if (r)
			return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
		if (!e)
			return 0;
		p = e + 1;
	}
}

int uh_vault_kv_url_path(const char *mount, const char *path, char **out, struct uh_error *err)
{
	struct uh_buf b = UH_BUF_INIT(0);
	int r = uh_buf_appends(&b, "/v1");
	if (r)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	if ((r = append_segments(&b, mount, "the kv mount", err)) || (r = uh_buf_appends(&b, "/data")) ||
	    (r = append_segments(&b, path, "the path", err))) {
		uh_buf_free(&b);
		return r == UH_E_INVALID_REQUEST ? r : uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	}
	*out = uh_buf_take(&b);
	return 0;
}

/* ---- files ---- */

/* Read a small file (token, role id, secret id) into locked memory, without
 * its trailing white space. Errors name `key` and the path. */
static int read_small_file(const char *path, const char *key, struct uh_secret_value **out, struct uh_error *err)
{
	*out = NULL;
	uh_autoclose int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return uh_error_set(err, UH_E_UNAVAILABLE, key, "cannot read '%s' ('%s': %s)", key, path,
		                    strerror(errno));
	struct uh_buf b = UH_BUF_INIT(FILE_MAX + 1);
	b.secret = true;
	char chunk[512];
	int r = 0;
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = uh_error_set(err, UH_E_UNAVAILABLE, key, "cannot read '%s' ('%s': %s)", key, path,
			                 strerror(errno));
			break;
		}
		if (n == 0)
			break;
		if (uh_buf_append(&b, chunk, (size_t)n)) {
			r = uh_error_set(err, UH_E_UNAVAILABLE, key, "'%s' ('%s') is larger than %d bytes", key, path,
			                 FILE_MAX);
			break;
		}
	}
	uh_memzero(chunk, sizeof(chunk));
	while (!r && b.len && strchr(" \t\r\n", b.data[b.len - 1]))
		b.len--;
	if (!r && b.len == 0)
		r = uh_error_set(err, UH_E_UNAVAILABLE, key, "'%s' ('%s') is empty", key, path);
	if (!r && !(*out = uh_secret_value_new(b.data, b.len))) {
		uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
		r = UH_E_INTERNAL;
	}
	uh_buf_free(&b);
	return r;
}

static int check_readable(const char *path, const char *key, struct uh_error *err)
{
	uh_autoclose int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	struct stat st;
	if (fd < 0)
		return uh_error_set(err, UH_E_INVALID_CONFIG, key, "cannot read '%s' ('%s': %s)", key, path,
		                    strerror(errno));
	if (fstat(fd, &st) || !S_ISREG(st.st_mode))
		return uh_error_set(err, UH_E_INVALID_CONFIG, key, "'%s' ('%s') is not a regular file", key, path);
	return 0;
}

static int check_ca(const char *path, struct uh_error *err)
{
	const char *key = "secrets.vault.ca_cert";
	int r = check_readable(path, key, err);
	if (r)
		return r;
	FILE *f = fopen(path, "re");
	if (!f)
		return uh_error_set(err, UH_E_INVALID_CONFIG, key, "cannot read '%s' ('%s': %s)", key, path,
		                    strerror(errno));
	char *buf = malloc(CA_FILE_MAX + 1);
	size_t n = buf ? fread(buf, 1, CA_FILE_MAX, f) : 0;
	fclose(f);
	if (!buf)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	buf[n] = '\0';
	bool pem = strstr(buf, "-----BEGIN CERTIFICATE-----") != NULL;
	free(buf);
	if (!pem)
		return uh_error_set(err, UH_E_INVALID_CONFIG, key, "'%s' ('%s') holds no PEM certificate", key, path);
	return 0;
}

/* ---- the address ---- */

static bool loopback_host(const char *host)
{
	char h[64];
	size_t n = strlen(host);
	if (strcasecmp(host, "localhost") == 0)
		return true;
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(h)) {
		struct in6_addr a6;
		memcpy(h, host + 1, n - 2);
		h[n - 2] = '\0';
		if (inet_pton(AF_INET6, h, &a6) != 1)
			return false;
		if (IN6_IS_ADDR_LOOPBACK(&a6))
			return true;
		return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
	}
	struct in_addr a4;
	return inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

static int check_addr(const char *addr, char **norm, bool *plain, struct uh_error *err)
{
	const char *key = "secrets.vault.addr";
	int r = 0;
	char *scheme = NULL, *host = NULL, *port = NULL, *user = NULL, *pass = NULL, *query = NULL, *frag = NULL,
	     *path = NULL;
	CURLU *u = curl_url();
	if (!u)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	if (curl_url_set(u, CURLUPART_URL, addr, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		r = uh_error_set(err, UH_E_INVALID_CONFIG, key, "'%s' must be a URL such as https://vault:8200", key);
		goto out;
	}
	curl_url_get(u, CURLUPART_PORT, &port, 0);
	curl_url_get(u, CURLUPART_USER, &user, 0);
	curl_url_get(u, CURLUPART_PASSWORD, &pass, 0);
	curl_url_get(u, CURLUPART_QUERY, &query, 0);
	curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0);
	curl_url_get(u, CURLUPART_PATH, &path, 0);
	if (user || pass || query || frag || (path && strcmp(path, "/") != 0 && *path)) {
		r = uh_error_set(err, UH_E_INVALID_CONFIG, key,
		                 "'%s' must be scheme://host[:port] only (no user, path, query or fragment)", key);
		goto out;
	}
	if (strcasecmp(scheme, "https") == 0) {
		*plain = false;
	} else if (strcasecmp(scheme, "http") == 0 && loopback_host(host)) {
		*plain = true;
	} else {
		r = uh_error_set(err, UH_E_INVALID_CONFIG, key,
		                 "'%s' must be https:// (http:// is allowed only to a loopback address)", key);
		goto out;
	}
	struct uh_buf b = UH_BUF_INIT(0);
	if (uh_buf_printf(&b, "%s://%s", *plain ? "http" : "https", host) || (port && uh_buf_printf(&b, ":%s", port))) {
		uh_buf_free(&b);
		r = uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
		goto out;
	}
	*norm = uh_buf_take(&b);
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(user);
	curl_free(pass);
	curl_free(query);
	curl_free(frag);
	curl_free(path);
	curl_url_cleanup(u);
	return r;
}

/* ---- construction ---- */

static int dup_opt(const char *s, char **out)
{
	*out = NULL;
	if (s && !(*out = strdup(s)))
		return UH_E_INTERNAL;
	return 0;
}

int uh_vault_new(const struct uh_config *cfg, struct uh_vault **out, struct uh_error *err)
{
	*out = NULL;
	const char *addr = cfg->secrets.vault_addr;
	if (!addr)
		return 0;
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "cannot initialise libcurl");

	const char *tf = cfg->secrets.vault_token_file, *rf = cfg->secrets.vault_role_id_file,
	           *sf = cfg->secrets.vault_secret_id_file, *ca = cfg->secrets.vault_ca_cert;
	int r;
	if (tf && (rf || sf))
		return uh_error_set(err, UH_E_INVALID_CONFIG, "secrets.vault.approle",
		                    "'secrets.vault.token_file' and 'secrets.vault.approle' cannot both be set");
	if (!tf && !rf && !sf)
		return uh_error_set(err, UH_E_INVALID_CONFIG, "secrets.vault.token_file",
		                    "'secrets.vault.token_file' or 'secrets.vault.approle' must be set with "
		                    "'secrets.vault.addr'");
	if (!tf && !sf)
		return uh_error_set(err, UH_E_INVALID_CONFIG, "secrets.vault.approle.secret_id_file",
		                    "'secrets.vault.approle.secret_id_file' must be set with "
		                    "'secrets.vault.approle.role_id_file'");
	if (!tf && !rf)
		return uh_error_set(err, UH_E_INVALID_CONFIG, "secrets.vault.approle.role_id_file",
		                    "'secrets.vault.approle.role_id_file' must be set with "
		                    "'secrets.vault.approle.secret_id_file'");
	if ((tf && (r = check_readable(tf, "secrets.vault.token_file", err))) ||
	    (rf && (r = check_readable(rf, "secrets.vault.approle.role_id_file", err))) ||
	    (sf && (r = check_readable(sf, "secrets.vault.approle.secret_id_file", err))) ||
	    (ca && (r = check_ca(ca, err))))
		return r;

	uh_autofree char *mpath = NULL;
	const char *mount = cfg->secrets.vault_kv_mount ? cfg->secrets.vault_kv_mount : "secret";
	if (uh_vault_kv_url_path(mount, "x", &mpath, err))
		return uh_error_set(err, UH_E_INVALID_CONFIG, "secrets.vault.kv_mount",
		                    "'secrets.vault.kv_mount' must be a path without empty, '.' or '..' segments");

	struct uh_vault *v = calloc(1, sizeof(*v));
	if (!v)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	if ((r = check_addr(addr, &v->addr, &v->plain_http, err))) {
		free(v);
		return r;
	}
	if (dup_opt(mount, &v->mount) || dup_opt(ca, &v->ca_cert) || dup_opt(tf, &v->token_file) ||
	    dup_opt(rf, &v->role_id_file) || dup_opt(sf, &v->secret_id_file)) {
		uh_vault_free(v);
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	}
	pthread_mutex_init(&v->mu, NULL);
	*out = v;
	return 0;
}

void uh_vault_free(struct uh_vault *v)
{
	if (!v)
		return;
	uh_secret_value_free(v->token);
	pthread_mutex_destroy(&v->mu);
	free(v->addr);
	free(v->mount);
	free(v->ca_cert);
	free(v->token_file);
	free(v->role_id_file);
	free(v->secret_id_file);
	free(v);
}

void uh_vault_get_stats(struct uh_vault *v, struct uh_vault_stats *out)
{
	pthread_mutex_lock(&v->mu);
	*out = v->stats;
	pthread_mutex_unlock(&v->mu);
}

/* ---- HTTP ---- */

struct sink {
	struct uh_buf *b;
	bool too_large;
};

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud)
{
	struct sink *s = ud;
	size_t n = size * nmemb;
	if (uh_buf_append(s->b, p, n)) {
		s->too_large = true;
		return 0; /* stops the transfer */
	}
	return n;
}

static int add_header(struct curl_slist **l, const char *h)
{
	struct curl_slist *n = curl_slist_append(*l, h);
	if (!n)
		return -1;
	*l = n;
	return 0;
}

static void free_headers(struct curl_slist *l)
{
	for (struct curl_slist *s = l; s; s = s->next)
		uh_memzero(s->data, strlen(s->data));
	curl_slist_free_all(l);
}

static bool tls_error(CURLcode c)
{
	switch (c) {
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_USE_SSL_FAILED:
		return true;
	default:
		return false;
	}
}

/* One request. 0 when Vault answered (any status: *status, `resp` holds the
 * body, marked secret); UH_E_UNAVAILABLE when it could not be asked. */
static int http(struct uh_vault *v, const char *method, const char *upath, const struct uh_secret_value *token,
                const char *body, long *status, struct uh_buf *resp, struct uh_error *err)
{
	uh_buf_init(resp, UH_VAULT_MAX_ANSWER);
	resp->secret = true;
	*status = 0;
	CURL *c = curl_easy_init();
	if (!c)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	struct uh_buf url = UH_BUF_INIT(0), hdr = UH_BUF_INIT(0);
	hdr.secret = true;
	struct curl_slist *hl = NULL;
	struct sink sink = {resp, false};
	char ebuf[CURL_ERROR_SIZE] = "";
	int r = 0;

	if (uh_buf_printf(&url, "%s%s", v->addr, upath) || add_header(&hl, "X-Vault-Request: true") ||
	    (body && (add_header(&hl, "Content-Type: application/json") || add_header(&hl, "Expect:"))) ||
	    (token && (uh_buf_appends(&hdr, "X-Vault-Token: ") || uh_buf_append(&hdr, token->data, token->len) ||
	               add_header(&hl, hdr.data)))) {
		r = uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
		goto out;
	}
	curl_easy_setopt(c, CURLOPT_URL, url.data);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, v->plain_http ? "http" : "https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, v->plain_http ? "http" : "https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, TOTAL_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (v->ca_cert) {
		/* only this CA: no fallback to the system's store */
		curl_easy_setopt(c, CURLOPT_CAINFO, v->ca_cert);
		curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
	}
	if (v->plain_http) /* never hand a token in clear to a proxy */
		curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)UH_VAULT_MAX_ANSWER);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "uhub");
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
	if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
	} else {
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	}

	CURLcode cr = curl_easy_perform(c);
	const char *what = ebuf[0] ? ebuf : curl_easy_strerror(cr);
	if (cr == CURLE_OK) {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	} else if (sink.too_large || cr == CURLE_FILESIZE_EXCEEDED) {
		r = uh_error_set(err, UH_E_UNAVAILABLE, NULL, "vault's answer is larger than %d bytes",
		                 UH_VAULT_MAX_ANSWER);
	} else if (tls_error(cr)) {
		r = uh_error_set(err, UH_E_UNAVAILABLE, NULL, "tls failure talking to vault (%s)", what);
	} else {
		r = uh_error_set(err, UH_E_UNAVAILABLE, NULL, "vault unreachable (%s)", what);
	}
	if (r)
		uh_buf_free(resp);
out:
	curl_easy_cleanup(c);
	free_headers(hl);
	uh_buf_free(&hdr);
	uh_buf_free(&url);
	return r;
}

/* ---- the token ---- */

static void install(struct uh_vault *v, struct uh_vault_auth *a)
{
	int64_t now = uh_mono_us();
	uh_secret_value_free(v->token);
	v->token = a->token;
	a->token = NULL;
	v->renewable = a->renewable;
	if (a->ttl_s > 0) {
		v->expires_us = now + a->ttl_s * 1000000LL;
		/* renew when less than a third of the TTL is left */
		v->renew_us = a->renewable ? now + a->ttl_s * 1000000LL * 2 / 3 : 0;
	} else {
		v->expires_us = v->renew_us = 0;
	}
}

static int status_error(const char *what, long status, struct uh_error *err)
{
	if (status == 400 && strcmp(what, "approle login") == 0)
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "%s: role id or secret id refused (400)", what);
	if (status == 403)
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "%s: permission denied (403)", what);
	return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "%s: vault answered status %ld", what, status);
}

/* JSON string body of (escaped) bytes. */
static int json_str(struct uh_buf *b, const struct uh_secret_value *s)
{
	int r = uh_buf_append(b, "\"", 1);
	for (size_t i = 0; i < s->len && !r; i++) {
		unsigned char c = (unsigned char)s->data[i];
		if (c == '"' || c == '\\')
			r = uh_buf_append(b, "\\", 1) || uh_buf_append(b, &s->data[i], 1);
		else if (c < 0x20)
			r = uh_buf_printf(b, "\\u%04x", c);
		else
			r = uh_buf_append(b, &s->data[i], 1);
	}
	return r || uh_buf_append(b, "\"", 1);
}

static int login_token_file(struct uh_vault *v, struct uh_vault_auth *a, struct uh_error *err)
{
	struct uh_secret_value *tok = NULL;
	struct uh_buf resp;
	long status;
	int r = read_small_file(v->token_file, "secrets.vault.token_file", &tok, err);
	if (r || !tok)
		return r ? r : UH_E_INTERNAL;
	if (!token_ok(tok->data, tok->len)) {
		uh_secret_value_free(tok);
		return uh_error_set(err, UH_E_UNAVAILABLE, "secrets.vault.token_file",
		                    "'secrets.vault.token_file' does not hold a token");
	}
	r = http(v, "GET", "/v1/auth/token/lookup-self", tok, NULL, &status, &resp, err);
	if (!r && status != 200)
		r = status_error("token lookup", status, err);
	if (!r)
		r = uh_vault_parse_auth(resp.data, resp.len, true, a, err);
	uh_buf_free(&resp);
	if (r) {
		uh_secret_value_free(tok);
		return r;
	}
	a->token = tok;
	return 0;
}

static int login_approle(struct uh_vault *v, struct uh_vault_auth *a, struct uh_error *err)
{
	struct uh_secret_value *role = NULL, *sid = NULL;
	struct uh_buf body = UH_BUF_INIT(0), resp = UH_BUF_INIT(0);
	body.secret = true;
	long status;
	int r = read_small_file(v->role_id_file, "secrets.vault.approle.role_id_file", &role, err);
	if (!r)
		r = read_small_file(v->secret_id_file, "secrets.vault.approle.secret_id_file", &sid, err);
	if (!r && (!role || !sid)) {
		uh_error_set(err, UH_E_INTERNAL, NULL, "cannot read the approle files");
		r = UH_E_INTERNAL;
	}
	if (!r && (uh_buf_appends(&body, "{\"role_id\":") || json_str(&body, role) ||
	           uh_buf_appends(&body, ",\"secret_id\":") || json_str(&body, sid) || uh_buf_appends(&body, "}")))
		r = uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	uh_secret_value_free(role);
	uh_secret_value_free(sid);
	if (!r)
		r = http(v, "POST", "/v1/auth/approle/login", NULL, body.data, &status, &resp, err);
	uh_buf_free(&body);
	if (!r && status != 200)
		r = status_error("approle login", status, err);
	if (!r)
		r = uh_vault_parse_auth(resp.data, resp.len, false, a, err);
	uh_buf_free(&resp);
	return r;
}

/* With v->mu held. On failure the current token (if any) is kept. */
static int login(struct uh_vault *v, struct uh_error *err)
{
	struct uh_vault_auth a = {0};
	int r = v->token_file ? login_token_file(v, &a, err) : login_approle(v, &a, err);
	if (r || !a.token)
		return r ? r : uh_error_set(err, UH_E_INTERNAL, NULL, "login gave no token");
	install(v, &a);
	v->gen++;
	v->stats.logins++;
	return 0;
}

/* With v->mu held. */
static int renew(struct uh_vault *v, struct uh_error *err)
{
	struct uh_vault_auth a = {0};
	struct uh_buf resp;
	long status;
	int r = http(v, "POST", "/v1/auth/token/renew-self", v->token, "{}", &status, &resp, err);
	if (!r && status != 200)
		r = status_error("token renewal", status, err);
	if (!r)
		r = uh_vault_parse_auth(resp.data, resp.len, false, &a, err);
	uh_buf_free(&resp);
	if (r)
		return r;
	/* renew-self answers the same token; keep ours (same generation) */
	uh_secret_value_free(a.token);
	a.token = uh_secret_value_new(v->token->data, v->token->len);
	if (!a.token)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	install(v, &a);
	v->stats.renewals++;
	return 0;
}

/* A copy of a usable token and its generation. When `refused`, the token of
 * generation `refused_gen` got a 403: log in again, unless another thread
 * already did. */
static int get_token(struct uh_vault *v, bool refused, uint64_t refused_gen, struct uh_secret_value **tok,
                     uint64_t *gen, struct uh_error *err)
{
	int r = 0;
	*tok = NULL;
	pthread_mutex_lock(&v->mu);
	int64_t now = uh_mono_us();
	bool expired = v->expires_us && now >= v->expires_us;
	if (!v->token || expired || (refused && v->gen == refused_gen)) {
		r = login(v, err);
		if (r) {
			/* a refused or expired token is of no use: drop it */
			uh_secret_value_free(v->token);
			v->token = NULL;
		}
	} else if (v->renew_us && now >= v->renew_us) {
		struct uh_error e2 = {0};
		if (renew(v, &e2) && login(v, &e2))
			v->renew_us = now + RENEW_BACKOFF_US; /* still valid: go on with it, try again later */
	}
	if (!r && !v->token) {
		uh_error_set(err, UH_E_INTERNAL, NULL, "no vault token");
		r = UH_E_INTERNAL;
	}
	if (!r) {
		*tok = uh_secret_value_new(v->token->data, v->token->len);
		*gen = v->gen;
		if (!*tok)
			r = uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	}
	pthread_mutex_unlock(&v->mu);
	return r;
}

/* ---- reading ---- */

int uh_vault_read(struct uh_vault *v, const char *path, const char *key, struct uh_secret_value **out,
                  struct uh_error *err)
{
	*out = NULL;
	uh_autofree char *upath = NULL;
	if (!key || !*key)
		return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "secret 'vault:%s#' has no key", path ? path : "");
	int r = uh_vault_kv_url_path(v->mount, path, &upath, err);
	if (r) {
		uh_error_prefix(err, "secret 'vault:%s#%s': ", path ? path : "", key);
		return r;
	}

	uint64_t gen = 0;
	for (int attempt = 0;; attempt++) {
		struct uh_secret_value *tok = NULL;
		struct uh_buf resp;
		long status;
		if ((r = get_token(v, attempt > 0, gen, &tok, &gen, err))) {
			/* uh_error_prefix answers 0 without err: return r */
			uh_error_prefix(err, "secret 'vault:%s#%s' unavailable: vault login failed: ", path, key);
			return r;
		}
		r = http(v, "GET", upath, tok, NULL, &status, &resp, err);
		uh_secret_value_free(tok);
		if (r) {
			uh_error_prefix(err, "secret 'vault:%s#%s' unavailable: ", path, key);
			return r;
		}
		if (status == 403 && attempt == 0) {
			/* a revoked or expired token: log in again once, read once more */
			uh_buf_free(&resp);
			continue;
		}
		r = uh_vault_parse_kv(status, resp.data, resp.len, key, out, err);
		uh_buf_free(&resp);
		if (r)
			uh_error_prefix(err, "secret 'vault:%s#%s' unavailable: ", path, key);
		return r;
	}
}
