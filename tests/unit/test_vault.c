/* The Vault client (secret/vault.h) against tests/integration/fake_vault.py,
 * a fake of Vault's HTTP API (Vault cannot be installed here), over plain
 * HTTP on loopback and over TLS with a CA made here with the openssl CLI:
 * configuration checks, URL building, answer parsing, token-file and AppRole
 * logins, renewal, re-login after expiry, revocation and failed renewal,
 * every error (naming the reference, never the token or the value), TLS with
 * the wrong CA, an answer over 1 MiB, and reads from 8 threads at once. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "secret/vault.h"
#include "tap.h"

static char dir[256];

/* ---- helpers ---- */

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void write_file(const char *name, const char *content)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	if (!f) {
		perror(p);
		exit(1);
	}
	fputs(content, f);
	fclose(f);
}

static char *path_of(const char *name)
{
	static char buf[8][512];
	static int k;
	char *p = buf[k++ % 8];
	snprintf(p, 512, "%s/%s", dir, name);
	return p;
}

static int sh(const char *cmd)
{
	int r = system(cmd);
	if (r != 0)
		fprintf(stderr, "command failed (%d): %s\n", r, cmd);
	return r;
}

struct fake {
	pid_t pid;
	int in_fd; /* the fake exits when this closes */
	char url[256];
	char ca[512]; /* for admin calls over TLS, or "" */
};

static size_t sink_cb(char *p, size_t s, size_t n, void *ud)
{
	return s * n; /* the control interface's answers are not needed */
}

/* POST (or GET when body is NULL) to the fake's control interface; status. */
static long admin(const struct fake *f, const char *name, json_t *body)
{
	char url[256], *data = NULL;
	snprintf(url, sizeof(url), "%s/__fake__/%s", f->url, name);
	CURL *c = curl_easy_init();
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_cb);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	if (f->ca[0])
		curl_easy_setopt(c, CURLOPT_CAINFO, f->ca);
	if (body) {
		data = json_dumps(body, JSON_COMPACT);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, data);
		json_decref(body);
	}
	long st = 0;
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	free(data);
	return st;
}

struct counts_ctx {
	char buf[65536];
	size_t n;
};

static size_t counts_cb(char *p, size_t s, size_t n, void *ud)
{
	struct counts_ctx *c = ud;
	size_t l = s * n;
	if (c->n + l >= sizeof(c->buf))
		return 0;
	memcpy(c->buf + c->n, p, l);
	c->n += l;
	c->buf[c->n] = '\0';
	return l;
}

/* How many requests the fake saw for a path. */
static long count(const struct fake *f, const char *path)
{
	char url[256];
	struct counts_ctx ctx = {.n = 0};
	snprintf(url, sizeof(url), "%s/__fake__/counts", f->url);
	CURL *c = curl_easy_init();
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, counts_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &ctx);
	if (f->ca[0])
		curl_easy_setopt(c, CURLOPT_CAINFO, f->ca);
	CURLcode cr = curl_easy_perform(c);
	curl_easy_cleanup(c);
	if (cr != CURLE_OK)
		return -1;
	json_t *j = json_loads(ctx.buf, 0, NULL);
	long n = (long)json_integer_value(json_object_get(j, path));
	json_decref(j);
	return n;
}

static int fake_start(struct fake *f, const char *cert, const char *key, const char *ca)
{
	char script[512];
	const char *src = getenv("UH_SOURCE_DIR");
	snprintf(script, sizeof(script), "%s/tests/integration/fake_vault.py", src ? src : ".");
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC))
		return -1;
	memset(f, 0, sizeof(*f));
	snprintf(f->ca, sizeof(f->ca), "%s", ca ? ca : "");
	f->pid = fork();
	if (f->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		if (cert)
			execlp("python3", "python3", script, "--port", "0", "--exit-on-stdin-eof", "--tls", cert, key,
			       (char *)NULL);
		else
			execlp("python3", "python3", script, "--port", "0", "--exit-on-stdin-eof", (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	f->in_fd = in[1];
	/* wait for "listening URL\n": the socket is bound and listening */
	char line[256];
	size_t n = 0;
	while (n < sizeof(line) - 1 && !memchr(line, '\n', n)) {
		struct pollfd p = {out[0], POLLIN, 0};
		if (poll(&p, 1, 15000) <= 0)
			break;
		ssize_t r = read(out[0], line + n, sizeof(line) - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(out[0]);
	line[n] = '\0';
	char *nl = strchr(line, '\n');
	if (!nl || strncmp(line, "listening ", 10) != 0) {
		fprintf(stderr, "fake vault did not start: '%s'\n", line);
		return -1;
	}
	*nl = '\0';
	snprintf(f->url, sizeof(f->url), "%s", line + 10);
	/* and it answers */
	for (int i = 0; i < 200; i++) {
		if (admin(f, "health", NULL) == 200)
			return 0;
		sleep_ms(25);
	}
	fprintf(stderr, "fake vault at %s does not answer\n", f->url);
	return -1;
}

static void fake_stop(struct fake *f)
{
	if (f->pid <= 0)
		return;
	close(f->in_fd);
	for (int i = 0; i < 200; i++) {
		if (waitpid(f->pid, NULL, WNOHANG) == f->pid) {
			f->pid = 0;
			return;
		}
		sleep_ms(10);
	}
	kill(f->pid, SIGKILL);
	waitpid(f->pid, NULL, 0);
	f->pid = 0;
}

static void cfg_set(struct uh_config *c, const char *addr, const char *ca, const char *tf, const char *rf,
                    const char *sf)
{
	struct uh_error e;
	CHECK(uh_config_defaults(c, &e) == 0);
	c->secrets.vault_addr = addr ? strdup(addr) : NULL;
	c->secrets.vault_ca_cert = ca ? strdup(ca) : NULL;
	c->secrets.vault_token_file = tf ? strdup(tf) : NULL;
	c->secrets.vault_role_id_file = rf ? strdup(rf) : NULL;
	c->secrets.vault_secret_id_file = sf ? strdup(sf) : NULL;
}

static struct uh_vault *vault_new(const char *addr, const char *ca, const char *tf, const char *rf, const char *sf)
{
	struct uh_config c;
	struct uh_error e = {0};
	struct uh_vault *v = NULL;
	cfg_set(&c, addr, ca, tf, rf, sf);
	int r = uh_vault_new(&c, &v, &e);
	CHECK(r == 0 && v);
	if (r)
		fprintf(stderr, "uh_vault_new: %s\n", e.message);
	uh_config_free(&c);
	return v;
}

/* uh_vault_new must refuse, naming `field`. */
static void new_refused(const char *addr, const char *ca, const char *tf, const char *rf, const char *sf,
                        const char *field)
{
	struct uh_config c;
	struct uh_error e = {0};
	struct uh_vault *v = (struct uh_vault *)1;
	cfg_set(&c, addr, ca, tf, rf, sf);
	int r = uh_vault_new(&c, &v, &e);
	CHECK(r == UH_E_INVALID_CONFIG);
	CHECK(v == NULL);
	CHECK_STR(e.field, field);
	CHECK(strstr(e.message, field) != NULL);
	if (r != UH_E_INVALID_CONFIG || strcmp(e.field, field))
		fprintf(stderr, "  for addr=%s: r=%d field=%s message=%s\n", addr, r, e.field, e.message);
	uh_vault_free(r ? NULL : v);
	uh_config_free(&c);
}

static void read_ok(struct uh_vault *v, const char *path, const char *key, const char *want)
{
	struct uh_secret_value *s = NULL;
	struct uh_error e = {0};
	int r = uh_vault_read(v, path, key, &s, &e);
	CHECK(r == 0);
	if (r)
		fprintf(stderr, "  read %s#%s: %s\n", path, key, e.message);
	CHECK(s && s->len == strlen(want) && memcmp(s->data, want, s->len) == 0 && s->data[s->len] == '\0');
	uh_secret_value_free(s);
}

/* The read must fail with UH_E_UNAVAILABLE, naming the reference and
 * `what`, and holding none of the `never` strings. */
static void read_fails(struct uh_vault *v, const char *path, const char *key, const char *what,
                       const char *const *never)
{
	struct uh_secret_value *s = (struct uh_secret_value *)1;
	struct uh_error e = {0};
	char ref[512];
	snprintf(ref, sizeof(ref), "'vault:%s#%s'", path, key);
	int r = uh_vault_read(v, path, key, &s, &e);
	CHECK(r == UH_E_UNAVAILABLE);
	CHECK(s == NULL);
	CHECK(strstr(e.message, ref) != NULL);
	CHECK(strstr(e.message, what) != NULL);
	for (; never && *never; never++)
		CHECK(strstr(e.message, *never) == NULL && strstr(e.field, *never) == NULL);
	if (r != UH_E_UNAVAILABLE || !strstr(e.message, ref) || !strstr(e.message, what))
		fprintf(stderr, "  want '%s' for %s, got r=%d '%s'\n", what, ref, r, e.message);
	else if (getenv("UH_TEST_VERBOSE"))
		fprintf(stderr, "  ok: %s\n", e.message);
}

/* ---- tests without a server ---- */

static void test_new_checks(void)
{
	struct uh_config c;
	struct uh_error e = {0};
	struct uh_vault *v = (struct uh_vault *)1;
	cfg_set(&c, NULL, NULL, NULL, NULL, NULL);
	CHECK(uh_vault_new(&c, &v, &e) == 0 && v == NULL);
	uh_config_free(&c);

	write_file("tok", "tok-unused-1\n");
	write_file("notpem", "hello\n");
	const char *tf = path_of("tok");
	new_refused("http://10.0.0.1:8200", NULL, tf, NULL, NULL, "secrets.vault.addr");
	new_refused("http://vault.example:8200", NULL, tf, NULL, NULL, "secrets.vault.addr");
	new_refused("http://127.0.0.1.nip.io:8200", NULL, tf, NULL, NULL, "secrets.vault.addr");
	new_refused("http://[::2]:8200", NULL, tf, NULL, NULL, "secrets.vault.addr");
	new_refused("ftp://127.0.0.1", NULL, tf, NULL, NULL, "secrets.vault.addr");
	new_refused("vault:8200", NULL, tf, NULL, NULL, "secrets.vault.addr");
	new_refused("https://vault:8200/v1?x=1", NULL, tf, NULL, NULL, "secrets.vault.addr");
	new_refused("https://user:pw@vault:8200", NULL, tf, NULL, NULL, "secrets.vault.addr");
	new_refused("https://vault:8200", path_of("nope.pem"), tf, NULL, NULL, "secrets.vault.ca_cert");
	new_refused("https://vault:8200", path_of("notpem"), tf, NULL, NULL, "secrets.vault.ca_cert");
	new_refused("https://vault:8200", NULL, NULL, NULL, NULL, "secrets.vault.token_file");
	new_refused("https://vault:8200", NULL, path_of("missing"), NULL, NULL, "secrets.vault.token_file");
	new_refused("https://vault:8200", NULL, tf, tf, tf, "secrets.vault.approle");
	new_refused("https://vault:8200", NULL, NULL, tf, NULL, "secrets.vault.approle.secret_id_file");
	new_refused("https://vault:8200", NULL, NULL, NULL, tf, "secrets.vault.approle.role_id_file");

	cfg_set(&c, "https://vault:8200", NULL, tf, NULL, NULL);
	free(c.secrets.vault_kv_mount);
	c.secrets.vault_kv_mount = strdup("kv//x");
	CHECK(uh_vault_new(&c, &v, &e) == UH_E_INVALID_CONFIG);
	CHECK_STR(e.field, "secrets.vault.kv_mount");
	uh_config_free(&c);

	const char *ok[] = {"https://vault.example:8200", "https://vault.example:8200/", "http://127.0.0.1:8200",
	                    "http://127.9.8.7:8200",      "http://localhost:8200",       "http://[::1]:8200",
	                    "HTTPS://Vault.Example"};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		v = vault_new(ok[i], NULL, tf, NULL, NULL);
		uh_vault_free(v);
	}
	v = vault_new("https://vault:8200", NULL, NULL, tf, tf);
	uh_vault_free(v);
}

static void test_url_path(void)
{
	struct uh_error e = {0};
	char *p = NULL;
	CHECK(uh_vault_kv_url_path("secret", "app/db", &p, &e) == 0);
	CHECK_STR(p, "/v1/secret/data/app/db");
	free(p);
	CHECK(uh_vault_kv_url_path("kv/team", "app/my db/x%y?z#w/é", &p, &e) == 0);
	CHECK_STR(p, "/v1/kv/team/data/app/my%20db/x%25y%3Fz%23w/%C3%A9");
	free(p);
	CHECK(uh_vault_kv_url_path("secret", "a.b/..c/~d-e_f", &p, &e) == 0);
	CHECK_STR(p, "/v1/secret/data/a.b/..c/~d-e_f");
	free(p);
	const char *bad[] = {"", "/a", "a/", "a//b", "a/../b", "..", "a/./b", ".", "a/.."};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p = NULL;
		CHECK(uh_vault_kv_url_path("secret", bad[i], &p, &e) == UH_E_INVALID_REQUEST);
		CHECK(p == NULL);
	}
	CHECK(uh_vault_kv_url_path("", "a", &p, &e) == UH_E_INVALID_REQUEST);
	CHECK(uh_vault_kv_url_path("..", "a", &p, &e) == UH_E_INVALID_REQUEST);
}

static void test_parse(void)
{
	struct uh_error e = {0};
	struct uh_secret_value *s = NULL;
	const char *ok =
	    "{\"request_id\":\"x\",\"data\":{\"data\":{\"pw\":\"v4lue-\\u00e9\",\"n\":3,\"z\":\"a\\u0000b\"},"
	    "\"metadata\":{\"created_time\":\"2024-01-01T00:00:00Z\",\"deletion_time\":\"\","
	    "\"destroyed\":false,\"version\":2}}}";
	CHECK(uh_vault_parse_kv(200, ok, strlen(ok), "pw", &s, &e) == 0);
	CHECK(s && s->len == 8 && memcmp(s->data, "v4lue-\xc3\xa9", 8) == 0);
	uh_secret_value_free(s);
	CHECK(uh_vault_parse_kv(200, ok, strlen(ok), "n", &s, &e) == UH_E_UNAVAILABLE && !s);
	CHECK(strstr(e.message, "not a string") != NULL);
	CHECK(uh_vault_parse_kv(200, ok, strlen(ok), "z", &s, &e) == UH_E_UNAVAILABLE && !s);
	CHECK(uh_vault_parse_kv(200, ok, strlen(ok), "q", &s, &e) == UH_E_UNAVAILABLE && !s);
	CHECK(strstr(e.message, "missing") != NULL);
	CHECK(uh_vault_parse_kv(403, "{\"errors\":[\"permission denied\"]}", 32, "pw", &s, &e) == UH_E_UNAVAILABLE);
	CHECK(strstr(e.message, "permission denied") != NULL);
	CHECK(uh_vault_parse_kv(404, "{\"errors\":[]}", 13, "pw", &s, &e) == UH_E_UNAVAILABLE);
	CHECK(strstr(e.message, "not found") != NULL);
	CHECK(uh_vault_parse_kv(404, "", 0, "pw", &s, &e) == UH_E_UNAVAILABLE);
	CHECK(uh_vault_parse_kv(503, "", 0, "pw", &s, &e) == UH_E_UNAVAILABLE);
	CHECK(strstr(e.message, "503") != NULL);
	CHECK(uh_vault_parse_kv(302, "", 0, "pw", &s, &e) == UH_E_UNAVAILABLE);
	/* a malformed answer: no piece of it in the message */
	const char *bad = "{\"data\":{\"data\":{\"pw\":\"leaked-value\" oops";
	CHECK(uh_vault_parse_kv(200, bad, strlen(bad), "pw", &s, &e) == UH_E_UNAVAILABLE && !s);
	CHECK(strstr(e.message, "leaked") == NULL);
	const char *dup = "{\"data\":{\"data\":{\"pw\":\"a\",\"pw\":\"b\"}}}";
	CHECK(uh_vault_parse_kv(200, dup, strlen(dup), "pw", &s, &e) == UH_E_UNAVAILABLE && !s);
	const char *old_deleted = "{\"data\":{\"data\":null,\"metadata\":{\"deletion_time\":\"2024-01-01T00:00:00Z\","
	                          "\"destroyed\":false}}}";
	CHECK(uh_vault_parse_kv(200, old_deleted, strlen(old_deleted), "pw", &s, &e) == UH_E_UNAVAILABLE);
	CHECK(strstr(e.message, "deleted") != NULL);

	struct uh_vault_auth a;
	const char *login = "{\"auth\":{\"client_token\":\"hvs.abc\",\"lease_duration\":60,\"renewable\":true}}";
	CHECK(uh_vault_parse_auth(login, strlen(login), false, &a, &e) == 0);
	CHECK(a.token && a.token->len == 7 && a.ttl_s == 60 && a.renewable);
	uh_secret_value_free(a.token);
	const char *crlf = "{\"auth\":{\"client_token\":\"a\\r\\nX: y\",\"lease_duration\":60,\"renewable\":true}}";
	CHECK(uh_vault_parse_auth(crlf, strlen(crlf), false, &a, &e) == UH_E_UNAVAILABLE && !a.token);
	CHECK(strstr(e.message, "X: y") == NULL);
	const char *neg = "{\"auth\":{\"client_token\":\"t\",\"lease_duration\":-1}}";
	CHECK(uh_vault_parse_auth(neg, strlen(neg), false, &a, &e) == UH_E_UNAVAILABLE && !a.token);
	const char *look = "{\"data\":{\"id\":\"hvs.secret-token\",\"ttl\":0,\"renewable\":false}}";
	CHECK(uh_vault_parse_auth(look, strlen(look), true, &a, &e) == 0);
	CHECK(!a.token && a.ttl_s == 0 && !a.renewable);
	CHECK(uh_vault_parse_auth("[]", 2, true, &a, &e) == UH_E_UNAVAILABLE);
}

/* ---- against the fake ---- */

static const char *const NEVER_PLAIN[] = {"s3cret-value-1", "tok-plain-abcdef", "rid-0001", "sid-secret-0002", NULL};

struct thr {
	struct uh_vault *v;
	int ok;
};

static void *reader(void *ud)
{
	struct thr *t = ud;
	for (int i = 0; i < 25; i++) {
		struct uh_secret_value *s = NULL;
		struct uh_error e = {0};
		if (uh_vault_read(t->v, i % 2 ? "app/db" : "app/other", i % 2 ? "password" : "user", &s, &e) == 0 &&
		    s->len == (i % 2 ? 14u : 9u))
			t->ok++;
		uh_secret_value_free(s);
	}
	return NULL;
}

static void test_plain_http(void)
{
	struct fake f;
	if (fake_start(&f, NULL, NULL, NULL)) {
		CHECK(!"fake vault started");
		fake_stop(&f);
		return;
	}
	CHECK(admin(&f, "token",
	            json_pack("{s:s, s:[s], s:i}", "token", "tok-plain-abcdef", "policies", "app/", "ttl", 0)) == 200);
	CHECK(admin(&f, "secret",
	            json_pack("{s:s, s:{s:s, s:i}}", "path", "app/db", "data", "password", "s3cret-value-1", "n", 5)) ==
	      200);
	CHECK(admin(&f, "secret", json_pack("{s:s, s:{s:s}}", "path", "app/other", "data", "user", "app-user1")) ==
	      200);
	CHECK(admin(&f, "secret", json_pack("{s:s, s:{s:s}}", "path", "app/del", "data", "k", "s3cret-value-1")) ==
	      200);
	CHECK(admin(&f, "delete", json_pack("{s:s}", "path", "app/del")) == 200);
	CHECK(admin(&f, "secret", json_pack("{s:s, s:{s:s}}", "path", "app/gone", "data", "k", "s3cret-value-1")) ==
	      200);
	CHECK(admin(&f, "destroy", json_pack("{s:s}", "path", "app/gone")) == 200);
	CHECK(admin(&f, "secret", json_pack("{s:s, s:{s:s}}", "path", "other/x", "data", "k", "s3cret-value-1")) ==
	      200);
	CHECK(admin(&f, "secret", json_pack("{s:s, s:{s:s}}", "path", "app/with space", "data", "k", "spaced-1")) ==
	      200);

	/* token file: one lookup-self, then reads */
	write_file("tok-plain", "tok-plain-abcdef\n");
	struct uh_vault *v = vault_new(f.url, NULL, path_of("tok-plain"), NULL, NULL);
	if (!v) {
		fake_stop(&f);
		return;
	}
	read_ok(v, "app/db", "password", "s3cret-value-1");
	read_ok(v, "app/db", "password", "s3cret-value-1");
	read_ok(v, "app/with space", "k", "spaced-1");
	CHECK(count(&f, "/v1/secret/data/app/db") == 2);
	CHECK(count(&f, "/v1/secret/data/app/with%20space") == 1);
	CHECK(count(&f, "/v1/auth/token/lookup-self") == 1);
	struct uh_vault_stats st;
	uh_vault_get_stats(v, &st);
	CHECK(st.logins == 1 && st.renewals == 0);

	/* every failure names the reference, never the token or a value */
	read_fails(v, "other/x", "k", "permission denied", NEVER_PLAIN);
	CHECK(count(&f, "/v1/secret/data/other/x") == 2); /* re-login once, retry once */
	uh_vault_get_stats(v, &st);
	CHECK(st.logins == 2);
	read_fails(v, "app/none", "k", "not found", NEVER_PLAIN);
	read_fails(v, "app/del", "k", "deleted", NEVER_PLAIN);
	read_fails(v, "app/gone", "k", "destroyed", NEVER_PLAIN);
	read_fails(v, "app/db", "nokey", "missing", NEVER_PLAIN);
	read_fails(v, "app/db", "n", "not a string", NEVER_PLAIN);
	CHECK(admin(&f, "fail",
	            json_pack("{s:i, s:i, s:s}", "n", 1, "status", 503, "prefix", "/v1/secret/data/app/db")) == 200);
	read_fails(v, "app/db", "password", "503", NEVER_PLAIN);
	read_ok(v, "app/db", "password", "s3cret-value-1");
	CHECK(admin(&f, "fail",
	            json_pack("{s:i, s:i, s:s}", "n", 1, "status", 500, "prefix", "/v1/secret/data/app/db")) == 200);
	read_fails(v, "app/db", "password", "500", NEVER_PLAIN);

	struct uh_secret_value *s = NULL;
	struct uh_error e = {0};
	CHECK(uh_vault_read(v, "app/../other/x", "k", &s, &e) == UH_E_INVALID_REQUEST && !s);
	CHECK(strstr(e.message, "vault:app/../other/x#k") != NULL);
	CHECK(uh_vault_read(v, "app//db", "password", &s, &e) == UH_E_INVALID_REQUEST && !s);
	CHECK(uh_vault_read(v, "app/db", "", &s, &e) == UH_E_INVALID_REQUEST && !s);
	CHECK(uh_vault_read(v, "app/db", "password", &s, NULL) == 0 && s);
	uh_secret_value_free(s);
	s = NULL;
	CHECK(uh_vault_read(v, "app/none", "k", &s, NULL) == UH_E_UNAVAILABLE && !s);

	/* a revoked token, the file rotated by an agent: re-login reads it again */
	CHECK(admin(&f, "revoke", json_pack("{s:s}", "token", "tok-plain-abcdef")) == 200);
	CHECK(admin(&f, "token",
	            json_pack("{s:s, s:[s], s:i}", "token", "tok-plain-rotated", "policies", "app/", "ttl", 0)) == 200);
	write_file("tok-plain", "tok-plain-rotated");
	read_ok(v, "app/db", "password", "s3cret-value-1");
	/* revoked and not replaced: permission denied, token not shown */
	CHECK(admin(&f, "revoke", json_pack("{s:s}", "token", "tok-plain-rotated")) == 200);
	const char *never2[] = {"tok-plain-rotated", "s3cret-value-1", NULL};
	read_fails(v, "app/db", "password", "permission denied", never2);

	/* an answer over 1 MiB */
	char *big = malloc(1100 * 1024);
	memset(big, 'B', 1100 * 1024 - 1);
	big[1100 * 1024 - 1] = '\0';
	CHECK(admin(&f, "token",
	            json_pack("{s:s, s:[s], s:i}", "token", "tok-plain-rotated", "policies", "app/", "ttl", 0)) == 200);
	CHECK(admin(&f, "secret", json_pack("{s:s, s:{s:s}}", "path", "app/big", "data", "k", big)) == 200);
	free(big);
	read_fails(v, "app/big", "k", "larger than", NEVER_PLAIN);

	/* eight threads at once */
	pthread_t th[8];
	struct thr t[8];
	for (int i = 0; i < 8; i++) {
		t[i] = (struct thr){v, 0};
		pthread_create(&th[i], NULL, reader, &t[i]);
	}
	int total = 0;
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		total += t[i].ok;
	}
	CHECK(total == 8 * 25);
	/* the token revoked (and rotated) under eight readers: one login */
	uh_vault_get_stats(v, &st);
	uint64_t logins0 = st.logins;
	CHECK(admin(&f, "token",
	            json_pack("{s:s, s:[s], s:i}", "token", "tok-plain-third", "policies", "app/", "ttl", 0)) == 200);
	write_file("tok-plain", "tok-plain-third\n");
	CHECK(admin(&f, "revoke", json_pack("{s:s}", "token", "tok-plain-rotated")) == 200);
	for (int i = 0; i < 8; i++) {
		t[i] = (struct thr){v, 0};
		pthread_create(&th[i], NULL, reader, &t[i]);
	}
	total = 0;
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		total += t[i].ok;
	}
	CHECK(total == 8 * 25);
	uh_vault_get_stats(v, &st);
	CHECK(st.logins == logins0 + 1);
	uh_vault_free(v);

	/* renewal: a renewable 3 s token is renewed once 2/3 of it has passed */
	CHECK(admin(&f, "token",
	            json_pack("{s:s, s:[s], s:i, s:b}", "token", "tok-plain-short", "policies", "app/", "ttl", 3,
	                      "renewable", 1)) == 200);
	write_file("tok-short", "tok-plain-short\n");
	v = vault_new(f.url, NULL, path_of("tok-short"), NULL, NULL);
	long renew0 = count(&f, "/v1/auth/token/renew-self");
	read_ok(v, "app/db", "password", "s3cret-value-1");
	read_ok(v, "app/db", "password", "s3cret-value-1");
	CHECK(count(&f, "/v1/auth/token/renew-self") == renew0);
	sleep_ms(2200);
	read_ok(v, "app/db", "password", "s3cret-value-1");
	CHECK(count(&f, "/v1/auth/token/renew-self") == renew0 + 1);
	uh_vault_get_stats(v, &st);
	CHECK(st.logins == 1 && st.renewals == 1);
	sleep_ms(1500); /* past the first 3 s: alive thanks to the renewal */
	read_ok(v, "app/db", "password", "s3cret-value-1");
	uh_vault_free(v);

	/* AppRole: login, re-login after expiry of a non-renewable token */
	CHECK(admin(&f, "approle",
	            json_pack("{s:s, s:s, s:[s], s:i, s:b}", "role_id", "rid-0001", "secret_id", "sid-secret-0002",
	                      "policies", "app/", "token_ttl", 2, "renewable", 0)) == 200);
	write_file("role", "rid-0001\n");
	write_file("sid", "sid-secret-0002\n");
	v = vault_new(f.url, NULL, NULL, path_of("role"), path_of("sid"));
	long login0 = count(&f, "/v1/auth/approle/login");
	renew0 = count(&f, "/v1/auth/token/renew-self");
	read_ok(v, "app/db", "password", "s3cret-value-1");
	read_ok(v, "app/other", "user", "app-user1");
	CHECK(count(&f, "/v1/auth/approle/login") == login0 + 1);
	sleep_ms(2300);
	read_ok(v, "app/db", "password", "s3cret-value-1");
	CHECK(count(&f, "/v1/auth/approle/login") == login0 + 2);
	CHECK(count(&f, "/v1/auth/token/renew-self") == renew0);
	uh_vault_free(v);

	/* AppRole renewable: renewal; a failed renewal leads to a new login */
	CHECK(admin(&f, "approle",
	            json_pack("{s:s, s:s, s:[s], s:i, s:b}", "role_id", "rid-0001", "secret_id", "sid-secret-0002",
	                      "policies", "app/", "token_ttl", 3, "renewable", 1)) == 200);
	v = vault_new(f.url, NULL, NULL, path_of("role"), path_of("sid"));
	read_ok(v, "app/db", "password", "s3cret-value-1");
	sleep_ms(2200);
	read_ok(v, "app/db", "password", "s3cret-value-1");
	uh_vault_get_stats(v, &st);
	CHECK(st.logins == 1 && st.renewals == 1);
	CHECK(admin(&f, "fail",
	            json_pack("{s:i, s:i, s:s}", "n", 1, "status", 500, "prefix", "/v1/auth/token/renew-self")) == 200);
	sleep_ms(2200);
	read_ok(v, "app/db", "password", "s3cret-value-1");
	uh_vault_get_stats(v, &st);
	CHECK(st.logins == 2 && st.renewals == 1);
	uh_vault_free(v);

	/* a wrong secret id: login fails, and says so without the ids */
	write_file("sid-bad", "sid-secret-0002-wrong\n");
	v = vault_new(f.url, NULL, NULL, path_of("role"), path_of("sid-bad"));
	const char *never3[] = {"sid-secret-0002", "rid-0001", "s3cret-value-1", NULL};
	read_fails(v, "app/db", "password", "role id or secret id refused", never3);
	uh_vault_free(v);

	/* Vault unreachable: the fake is gone */
	v = vault_new(f.url, NULL, path_of("tok-plain"), NULL, NULL);
	fake_stop(&f);
	read_fails(v, "app/db", "password", "unreachable", NEVER_PLAIN);
	uh_vault_free(v);
}

static void test_tls(void)
{
	char cmd[2048];
	write_file("ext.cnf", "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
	snprintf(cmd, sizeof(cmd),
	         "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key "
	         "-out ca.pem -subj /CN=uh-test-ca -days 2 2>/dev/null && "
	         "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key -out srv.csr "
	         "-subj /CN=localhost 2>/dev/null && "
	         "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 "
	         "-extfile ext.cnf 2>/dev/null && "
	         "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key "
	         "-out other.pem -subj /CN=uh-other-ca -days 2 2>/dev/null",
	         dir);
	if (sh(cmd)) {
		CHECK(!"openssl made the test CA");
		return;
	}
	struct fake f;
	if (fake_start(&f, path_of("srv.pem"), path_of("srv.key"), path_of("ca.pem"))) {
		CHECK(!"fake vault started over TLS");
		fake_stop(&f);
		return;
	}
	CHECK(strncmp(f.url, "https://", 8) == 0);
	CHECK(admin(&f, "token",
	            json_pack("{s:s, s:[s], s:i}", "token", "tok-tls-abcdef", "policies", "*", "ttl", 0)) == 200);
	CHECK(admin(&f, "secret", json_pack("{s:s, s:{s:s}}", "path", "tls/db", "data", "pw", "tls-value-99")) == 200);
	write_file("tok-tls", "tok-tls-abcdef\n");
	struct uh_vault *v = vault_new(f.url, path_of("ca.pem"), path_of("tok-tls"), NULL, NULL);
	if (v)
		read_ok(v, "tls/db", "pw", "tls-value-99");
	uh_vault_free(v);
	char url[160];
	snprintf(url, sizeof(url), "https://localhost:%s", strrchr(f.url, ':') + 1);
	v = vault_new(url, path_of("ca.pem"), path_of("tok-tls"), NULL, NULL);
	if (v)
		read_ok(v, "tls/db", "pw", "tls-value-99");
	uh_vault_free(v);

	/* the wrong CA: refused before any token is sent */
	long lookups = count(&f, "/v1/auth/token/lookup-self");
	const char *never[] = {"tok-tls-abcdef", "tls-value-99", NULL};
	v = vault_new(f.url, path_of("other.pem"), path_of("tok-tls"), NULL, NULL);
	if (v)
		read_fails(v, "tls/db", "pw", "tls failure", never);
	uh_vault_free(v);
	/* no CA given: the system's store does not know this CA either */
	v = vault_new(f.url, NULL, path_of("tok-tls"), NULL, NULL);
	if (v)
		read_fails(v, "tls/db", "pw", "tls failure", never);
	uh_vault_free(v);
	long lookups2 = count(&f, "/v1/auth/token/lookup-self");
	CHECK(lookups2 == lookups);
	if (lookups2 != lookups)
		fprintf(stderr, "  lookup-self: %ld before, %ld after\n", lookups, lookups2);
	fake_stop(&f);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	snprintf(dir, sizeof(dir), "/tmp/uh-vault-XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_new_checks();
	test_url_path();
	test_parse();
	test_plain_http();
	test_tls();
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	sh(cmd);
	curl_global_cleanup();
	return uh_tap_done();
}
