/* The webhook backend's pure parts: the SSRF address guard over a corpus of
 * the forms attackers use, template escaping (JSON and URL), config
 * refusals, secret references and the callback signature. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend/webhook.h"
#include "core/config.h"
#include "tap.h"
#include "util/crypto.h"

/* The class of a literal, or -1 when it is not a literal. */
static int cls(const char *host)
{
	struct sockaddr_storage ss;
	if (uh_webhook_parse_ip(host, &ss))
		return -1;
	return (int)uh_webhook_addr_class((struct sockaddr *)&ss);
}

static void test_literals(void)
{
	static const char *const priv[] = {"127.0.0.1",
	                                   "127.1",
	                                   "0x7f.1",
	                                   "0x7f000001",
	                                   "2130706433",
	                                   "017700000001",
	                                   "0177.0.0.1",
	                                   "127.0.0.255",
	                                   "0.0.0.0",
	                                   "0",
	                                   "10.1.2.3",
	                                   "172.16.0.1",
	                                   "172.31.255.255",
	                                   "192.168.1.1",
	                                   "100.64.0.1",
	                                   "100.127.255.254",
	                                   "169.254.1.1",
	                                   "224.0.0.1",
	                                   "239.255.255.250",
	                                   "255.255.255.255",
	                                   "240.0.0.1",
	                                   "198.18.0.1",
	                                   "192.0.2.1",
	                                   "[::1]",
	                                   "[::]",
	                                   "::1",
	                                   "[::ffff:127.0.0.1]",
	                                   "[::ffff:7f00:1]",
	                                   "[::ffff:10.0.0.1]",
	                                   "[::127.0.0.1]",
	                                   "[::7f00:1]",
	                                   "[64:ff9b::127.0.0.1]",
	                                   "[64:ff9b::a00:1]",
	                                   "[64:ff9b:1::1]",
	                                   "[2002:7f00:1::]",
	                                   "[fc00::1]",
	                                   "[fd12:3456::1]",
	                                   "[fe80::1]",
	                                   "[fe80::1%25eth0]",
	                                   "[ff02::1]",
	                                   "[febf::1]",
	                                   "[fec0::1]",
	                                   "[100::1]",
	                                   "[2001:db8::1]",
	                                   "[2001::1]",
	                                   "[::ffff:0:127.0.0.1]",
	                                   "[::ffff:100.64.0.1]",
	                                   NULL};
	for (int i = 0; priv[i]; i++) {
		int c = cls(priv[i]);
		if (c != UH_WH_ADDR_PRIVATE)
			fprintf(stderr, "%s: class %d, want private\n", priv[i], c);
		CHECK(c == UH_WH_ADDR_PRIVATE);
	}
	static const char *const meta[] = {"169.254.169.254",
	                                   "0xa9fea9fe",
	                                   "2852039166",
	                                   "0251.0376.0251.0376",
	                                   "169.254.43518",
	                                   "[::ffff:169.254.169.254]",
	                                   "[::ffff:a9fe:a9fe]",
	                                   "[fd00:ec2::254]",
	                                   "[64:ff9b::169.254.169.254]",
	                                   "[2002:a9fe:a9fe::1]",
	                                   NULL};
	for (int i = 0; meta[i]; i++) {
		int c = cls(meta[i]);
		if (c != UH_WH_ADDR_METADATA)
			fprintf(stderr, "%s: class %d, want metadata\n", meta[i], c);
		CHECK(c == UH_WH_ADDR_METADATA);
	}
	static const char *const pub[] = {
	    "8.8.8.8",     "1.1.1.1",    "93.184.216.34",    "[2606:4700::1111]",  "[2a00:1450::1]",
	    "100.128.0.1", "172.32.0.1", "[::ffff:8.8.8.8]", "[64:ff9b::8.8.8.8]", NULL};
	for (int i = 0; pub[i]; i++) {
		int c = cls(pub[i]);
		if (c != UH_WH_ADDR_PUBLIC)
			fprintf(stderr, "%s: class %d, want public\n", pub[i], c);
		CHECK(c == UH_WH_ADDR_PUBLIC);
	}
	/* names are names */
	CHECK(cls("localhost") == -1);
	CHECK(cls("localhost.") == -1);
	CHECK(cls("example.com") == -1);
	CHECK(cls("127.0.0.1 x") == -1);
	CHECK(cls("[127.0.0.1]") == -1);

	/* policy */
	struct sockaddr_storage ss;
	uh_webhook_parse_ip("127.0.0.1", &ss);
	CHECK(!uh_webhook_addr_allowed((struct sockaddr *)&ss, false));
	CHECK(uh_webhook_addr_allowed((struct sockaddr *)&ss, true));
	uh_webhook_parse_ip("169.254.169.254", &ss);
	CHECK(!uh_webhook_addr_allowed((struct sockaddr *)&ss, true));
	uh_webhook_parse_ip("[fd00:ec2::254]", &ss);
	CHECK(!uh_webhook_addr_allowed((struct sockaddr *)&ss, true));
	uh_webhook_parse_ip("8.8.8.8", &ss);
	CHECK(uh_webhook_addr_allowed((struct sockaddr *)&ss, false));
}

static void test_resolve(void)
{
	struct sockaddr_storage ss;
	struct uh_error err = {0};
	/* names that resolve to loopback (from /etc/hosts) */
	CHECK(uh_webhook_resolve_check("localhost", false, &ss, &err) != 0);
	CHECK(uh_webhook_resolve_check("localhost.", false, &ss, &err) != 0);
	CHECK(uh_webhook_resolve_check("127.1", false, &ss, &err) != 0);
	CHECK(uh_webhook_resolve_check("0x7f.1", false, &ss, &err) != 0);
	CHECK(uh_webhook_resolve_check("localhost", true, &ss, &err) == 0);
	CHECK(uh_webhook_resolve_check("169.254.169.254", true, &ss, &err) != 0);
	CHECK(uh_webhook_resolve_check("8.8.8.8", false, &ss, &err) == 0);
}

static void test_urls(void)
{
	struct uh_wh_url u;
	CHECK(uh_webhook_url_parse("https://example.com/a?b=c", &u) == 0);
	CHECK_STR(u.host, "example.com");
	CHECK(u.port == 443);
	CHECK_STR(u.rest, "/a?b=c");
	CHECK(uh_webhook_url_parse("https://[::1]:8443", &u) == 0);
	CHECK_STR(u.host, "::1");
	CHECK(u.port == 8443);
	CHECK_STR(u.rest, "/");
	CHECK(uh_webhook_url_parse("http://example.com/", &u) != 0);
	CHECK(uh_webhook_url_parse("https://user:pw@example.com/", &u) != 0);
	CHECK(uh_webhook_url_parse("https://example.com@169.254.169.254/", &u) != 0);
	CHECK(uh_webhook_url_parse("https://example.com/#frag", &u) != 0);
	CHECK(uh_webhook_url_parse("https://example.com:0/", &u) != 0);
	CHECK(uh_webhook_url_parse("https://example.com:99999/", &u) != 0);
	CHECK(uh_webhook_url_parse("https://exa mple.com/", &u) != 0);
	CHECK(uh_webhook_url_parse("https://example.com\\@evil/", &u) != 0);
	CHECK(uh_webhook_url_parse("https://%31%32%37.0.0.1/", &u) != 0);
	CHECK(uh_webhook_url_parse("https:///x", &u) != 0);

	struct uh_config cfg;
	uh_config_defaults(&cfg, NULL);
	CHECK(uh_webhook_host_allowed(&cfg, "anything.example"));
	char *globs[] = {"*.gitlab.example.com", "jenkins.internal"};
	struct uh_strlist saved = cfg.webhook.allowed_hosts;
	cfg.webhook.allowed_hosts.v = globs;
	cfg.webhook.allowed_hosts.n = 2;
	CHECK(uh_webhook_host_allowed(&cfg, "ci.gitlab.example.com"));
	CHECK(uh_webhook_host_allowed(&cfg, "CI.GitLab.Example.com."));
	CHECK(uh_webhook_host_allowed(&cfg, "jenkins.internal"));
	CHECK(!uh_webhook_host_allowed(&cfg, "gitlab.example.com.evil.net"));
	CHECK(!uh_webhook_host_allowed(&cfg, "evil.net"));
	cfg.webhook.allowed_hosts = saved;
	uh_config_free(&cfg);
}

static const char *vars(void *arg, const char *name)
{
	(void)arg;
	if (!strcmp(name, "run.id"))
		return "r_1";
	if (!strcmp(name, "parameters.X"))
		return "a \"b\"\\ c\n&d=e/f?\x01";
	return NULL;
}

static void test_templates(void)
{
	char *out = NULL;
	struct uh_error err = {0};
	CHECK(uh_webhook_expand("{\"x\":\"{{parameters.X}}\",\"r\":\"{{run.id}}\"}", UH_WH_ESC_JSON, vars, NULL, &out,
	                        &err) == 0);
	CHECK_STR(out, "{\"x\":\"a \\\"b\\\"\\\\ c\\n&d=e/f?\\u0001\",\"r\":\"r_1\"}");
	json_error_t je;
	json_t *j = json_loads(out, 0, &je);
	CHECK(j && !strcmp(json_string_value(json_object_get(j, "x")), "a \"b\"\\ c\n&d=e/f?\x01"));
	json_decref(j);
	free(out);
	CHECK(uh_webhook_expand("https://h/p?x={{parameters.X}}", UH_WH_ESC_URL, vars, NULL, &out, &err) == 0);
	CHECK_STR(out, "https://h/p?x=a%20%22b%22%5C%20c%0A%26d%3De%2Ff%3F%01");
	free(out);
	CHECK(uh_webhook_expand("no templates", UH_WH_ESC_URL, vars, NULL, &out, &err) == 0);
	CHECK_STR(out, "no templates");
	free(out);
	CHECK(uh_webhook_expand("{{nope}}", UH_WH_ESC_NONE, vars, NULL, &out, &err) != 0);
	CHECK(out == NULL);
	CHECK(strstr(err.message, "nope") != NULL);
	CHECK(uh_webhook_expand("x {{run.id", UH_WH_ESC_NONE, vars, NULL, &out, &err) != 0);
}

static json_t *J(const char *s)
{
	json_error_t e;
	json_t *j = json_loads(s, 0, &e);
	if (!j)
		fprintf(stderr, "bad test json: %s\n", e.text);
	return j;
}

static int load(struct uh_config *cfg, const char *s, char *field, size_t flen)
{
	json_t *j = J(s);
	struct uh_wh_conf c;
	struct uh_error err = {0};
	int rc = uh_wh_conf_load(cfg, j, &c, &err);
	if (!rc)
		uh_wh_conf_free(&c);
	snprintf(field, flen, "%s", err.field);
	json_decref(j);
	return rc;
}

static void test_config(void)
{
	struct uh_config cfg;
	uh_config_defaults(&cfg, NULL);
	char f[160];
	CHECK(load(&cfg, "{\"url\":\"https://x.example/h\",\"mode\":\"fire_and_forget\"}", f, sizeof f) == 0);
	CHECK(load(&cfg, "{\"url\":\"https://127.0.0.1/h\",\"mode\":\"fire_and_forget\"}", f, sizeof f) != 0);
	CHECK_STR(f, "execution_backend_config.url");
	cfg.webhook.allow_private_networks = true;
	CHECK(load(&cfg, "{\"url\":\"https://127.0.0.1/h\",\"mode\":\"fire_and_forget\"}", f, sizeof f) == 0);
	CHECK(load(&cfg, "{\"url\":\"https://169.254.169.254/h\",\"mode\":\"fire_and_forget\"}", f, sizeof f) != 0);
	CHECK(load(&cfg,
	           "{\"url\":\"https://x.example/h\",\"mode\":\"fire_and_forget\",\"headers\":{\"Authorization\":"
	           "\"Bearer x\"}}",
	           f, sizeof f) != 0);
	CHECK_STR(f, "execution_backend_config.headers.Authorization");
	CHECK(load(&cfg,
	           "{\"url\":\"https://x.example/h\",\"mode\":\"fire_and_forget\",\"headers\":{\"X-Gitlab-Token\":"
	           "\"{{secrets.t}}\"}}",
	           f, sizeof f) == 0);
	CHECK(load(&cfg,
	           "{\"url\":\"https://x.example/h\",\"mode\":\"fire_and_forget\",\"headers\":{\"X-Gitlab-Token\":"
	           "\"x{{secrets.t}}\"}}",
	           f, sizeof f) != 0);
	CHECK(load(&cfg,
	           "{\"url\":\"https://x.example/h\",\"mode\":\"fire_and_forget\",\"body\":{\"a\":\"{{secrets.t}}\"}}",
	           f, sizeof f) != 0);
	CHECK_STR(f, "execution_backend_config.body");
	CHECK(load(&cfg, "{\"url\":\"https://{{parameters.H}}/\",\"mode\":\"fire_and_forget\"}", f, sizeof f) != 0);
	CHECK(load(&cfg,
	           "{\"url\":\"https://x.example/h\",\"mode\":\"poll\",\"status_url\":\"https://x.example/"
	           "{{external_id}}\",\"status_path\":\"/s\",\"success_values\":[\"ok\"]}",
	           f, sizeof f) != 0); /* external_id without external_id_path */
	CHECK(load(&cfg,
	           "{\"url\":\"https://x.example/h\",\"mode\":\"poll\",\"external_id_path\":\"/"
	           "id\",\"status_url\":\"https://x.example/{{external_id}}\",\"status_path\":\"/"
	           "s\",\"success_values\":[\"ok\"]}",
	           f, sizeof f) == 0);
	CHECK(load(&cfg,
	           "{\"preset\":\"gitlab\",\"url\":\"https://gl.example\",\"project\":\"g/"
	           "p\",\"ref\":\"main\",\"token_secret\":\"t\"}",
	           f, sizeof f) == 0);
	CHECK(load(&cfg,
	           "{\"preset\":\"gitlab\",\"url\":\"https://gl.example\",\"project\":\"g/"
	           "p\",\"ref\":\"main\",\"token_secret\":\"t\",\"status_url\":\"https://x\"}",
	           f, sizeof f) != 0);
	CHECK_STR(f, "execution_backend_config.status_url");
	CHECK(load(&cfg,
	           "{\"preset\":\"jenkins\",\"url\":\"https://j.example\",\"job\":\"a/"
	           "b\",\"user\":\"u\",\"token_secret\":\"t\"}",
	           f, sizeof f) == 0);
	CHECK(load(&cfg,
	           "{\"preset\":\"jenkins\",\"url\":\"https://j.example\",\"job\":\"../"
	           "b\",\"user\":\"u\",\"token_secret\":\"t\"}",
	           f, sizeof f) != 0);
	CHECK(load(&cfg, "{\"preset\":\"azure_function\",\"url\":\"https://f.example/api/x\"}", f, sizeof f) == 0);
	uh_config_free(&cfg);

	json_t *refs = json_array();
	json_t *c = J("{\"token_secret\":\"shared:ci\",\"headers\":{\"PRIVATE-TOKEN\":\"{{secrets.vault:team/x#tok}}\","
	              "\"X-A\":\"{{secrets.shared:ci}} and {{secrets.b}}\"}}");
	CHECK(uh_webhook_secret_refs(c, refs) == 0);
	CHECK(json_array_size(refs) == 3);
	CHECK_STR(json_string_value(json_array_get(refs, 0)), "shared:ci");
	json_decref(c);
	json_decref(refs);
}

static void test_pointer_and_status(void)
{
	json_t *d = J("{\"a\":{\"b/c\":[10,{\"s\":\"done\"}],\"m~n\":true},\"id\":7}");
	char buf[64];
	CHECK(uh_webhook_pointer_ok("/a/b~1c/1/s"));
	CHECK(!uh_webhook_pointer_ok("a"));
	CHECK(!uh_webhook_pointer_ok("/a~2"));
	CHECK_STR(uh_webhook_scalar(uh_webhook_pointer_get(d, "/a/b~1c/1/s"), buf, sizeof buf), "done");
	CHECK_STR(uh_webhook_scalar(uh_webhook_pointer_get(d, "/a/m~0n"), buf, sizeof buf), "true");
	CHECK_STR(uh_webhook_scalar(uh_webhook_pointer_get(d, "/id"), buf, sizeof buf), "7");
	CHECK(uh_webhook_pointer_get(d, "/a/b~1c/01") == NULL);
	CHECK(uh_webhook_pointer_get(d, "/a/b~1c/9") == NULL);
	json_t *ok = J("[\"done\"]"), *ko = J("[\"7\"]");
	CHECK(uh_webhook_map_status(d, "/a/b~1c/1/s", ok, ko) == UH_WH_SUCCEEDED);
	CHECK(uh_webhook_map_status(d, "/id", ok, ko) == UH_WH_FAILED);
	CHECK(uh_webhook_map_status(d, "/missing", ok, ko) == UH_WH_PENDING);
	json_decref(ok);
	json_decref(ko);
	json_decref(d);
}

static void sig(const char *tok, int64_t t, const char *body, char out[200])
{
	char msg[512];
	int n = snprintf(msg, sizeof msg, "%" PRId64 ".%s", t, body);
	unsigned char mac[32];
	uh_hmac_sha256(tok, strlen(tok), msg, (size_t)n, mac);
	char hex[65];
	uh_hex(mac, 32, hex);
	snprintf(out, 200, "t=%" PRId64 ",v1=%s", t, hex);
}

static void test_signature(void)
{
	const char *tok = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	const char *body = "{\"status\":\"succeeded\"}";
	int64_t now = 1700000000;
	char h[200], h2[400];
	sig(tok, now, body, h);
	CHECK(uh_webhook_sig_check(tok, h, now, body, strlen(body)) == 0);
	CHECK(uh_webhook_sig_check(tok, h, now + 300, body, strlen(body)) == 0);
	CHECK(uh_webhook_sig_check(tok, h, now + 301, body, strlen(body)) != 0); /* stale */
	CHECK(uh_webhook_sig_check(tok, h, now - 301, body, strlen(body)) != 0); /* future */
	CHECK(uh_webhook_sig_check(tok, h, now, "{\"status\":\"failed\"}", 19) != 0);
	CHECK(uh_webhook_sig_check("ffff", h, now, body, strlen(body)) != 0);
	/* several v1, one good, in any position */
	snprintf(h2, sizeof h2, "t=%" PRId64 ",v1=%064d,%s", now, 0, strchr(h, ',') + 1);
	CHECK(uh_webhook_sig_check(tok, h2, now, body, strlen(body)) == 0);
	snprintf(h2, sizeof h2, "%s, v1=%064d", h, 0);
	CHECK(uh_webhook_sig_check(tok, h2, now, body, strlen(body)) == 0);
	snprintf(h2, sizeof h2, "t=%" PRId64 ",v1=%064d", now, 0);
	CHECK(uh_webhook_sig_check(tok, h2, now, body, strlen(body)) != 0);
	/* bad hex: upper case, short, non-hex */
	snprintf(h2, sizeof h2, "%s", h);
	for (char *p = strstr(h2, "v1=") + 3; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 32);
	CHECK(strcmp(h2, h) == 0 || uh_webhook_sig_check(tok, h2, now, body, strlen(body)) != 0);
	snprintf(h2, sizeof h2, "%.*s", (int)strlen(h) - 1, h);
	CHECK(uh_webhook_sig_check(tok, h2, now, body, strlen(body)) != 0);
	snprintf(h2, sizeof h2, "%.*sz", (int)strlen(h) - 1, h);
	CHECK(uh_webhook_sig_check(tok, h2, now, body, strlen(body)) != 0);
	/* missing parts */
	CHECK(uh_webhook_sig_check(tok, strchr(h, ',') + 1, now, body, strlen(body)) != 0);
	snprintf(h2, sizeof h2, "t=%" PRId64, now);
	CHECK(uh_webhook_sig_check(tok, h2, now, body, strlen(body)) != 0);
	CHECK(uh_webhook_sig_check(tok, "", now, body, strlen(body)) != 0);
	CHECK(uh_webhook_sig_check(tok, NULL, now, body, strlen(body)) != 0);
	CHECK(uh_webhook_sig_check(tok, "t=,v1=", now, body, strlen(body)) != 0);
	/* two t */
	snprintf(h2, sizeof h2, "t=1,%s", h);
	CHECK(uh_webhook_sig_check(tok, h2, now, body, strlen(body)) != 0);
	/* t with a sign or junk */
	snprintf(h2, sizeof h2, "t=+%s", h + 2);
	CHECK(uh_webhook_sig_check(tok, h2, now, body, strlen(body)) != 0);

	/* callback bodies */
	json_t *b;
	CHECK(uh_webhook_callback_body_ok(b = J("{\"status\":\"succeeded\"}")));
	json_decref(b);
	CHECK(uh_webhook_callback_body_ok(
	    b = J("{\"status\":\"failed\",\"exit_code\":2,\"message\":\"m\",\"log\":\"l\"}")));
	json_decref(b);
	CHECK(!uh_webhook_callback_body_ok(b = J("{\"status\":\"running\"}")));
	json_decref(b);
	CHECK(!uh_webhook_callback_body_ok(b = J("{\"status\":\"failed\",\"x\":1}")));
	json_decref(b);
	CHECK(!uh_webhook_callback_body_ok(b = J("{\"exit_code\":0}")));
	json_decref(b);
}

static void test_callback_token(void)
{
	char dir[] = "/tmp/uh-wh-XXXXXX";
	if (!mkdtemp(dir)) {
		CHECK(0);
		return;
	}
	struct uh_config cfg;
	uh_config_defaults(&cfg, NULL);
	char kf[256];
	snprintf(kf, sizeof kf, "%s/secrets.key", dir);
	free(cfg.secrets.key_file);
	cfg.secrets.key_file = strdup(kf);
	char t1[65], t2[65], t3[65];
	CHECK(uh_webhook_callback_token(&cfg, "r_a", t1, NULL) == 0);
	CHECK(uh_webhook_callback_token(&cfg, "r_a", t2, NULL) == 0);
	CHECK(uh_webhook_callback_token(&cfg, "r_b", t3, NULL) == 0);
	CHECK(strcmp(t1, t2) == 0 && strcmp(t1, t3) != 0 && strlen(t1) == 64);
	char cf[300];
	snprintf(cf, sizeof cf, "%s/callback.key", dir);
	struct stat st;
	CHECK(stat(cf, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_size == 32);
	const char *body = "{\"status\":\"succeeded\"}";
	char h[200];
	sig(t1, (int64_t)time(NULL), body, h);
	CHECK(uh_webhook_callback_verify(&cfg, "r_a", h, (int64_t)time(NULL), body, strlen(body)) == 0);
	CHECK(uh_webhook_callback_verify(&cfg, "r_b", h, (int64_t)time(NULL), body, strlen(body)) != 0);
	unlink(cf);
	rmdir(dir);
	uh_config_free(&cfg);
}

int main(void)
{
	test_literals();
	test_resolve();
	test_urls();
	test_templates();
	test_config();
	test_pointer_and_status();
	test_signature();
	test_callback_token();
	return uh_tap_done();
}
