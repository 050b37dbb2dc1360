/* The log masker (secret/mask.h): plain values, values split at every byte
 * boundary, many secrets, base64 at each alignment, URL and JSON forms,
 * multi-line values, overlaps, pass-through, refusal of short values, flush,
 * and a random differential check against a naive reference masker. Prints
 * (does not assert) the masking throughput against memcpy. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "secret/mask.h"
#include "tap.h"
#include "util/buf.h"

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static struct uh_masker *mk(const char *const *vals, size_t n)
{
	struct uh_mask_value v[128];
	for (size_t i = 0; i < n; i++)
		v[i] = (struct uh_mask_value){vals[i], strlen(vals[i])};
	struct uh_masker *m = NULL;
	struct uh_error err = {0};
	int r = uh_masker_new(v, n, &m, &err);
	CHECK(r == 0);
	if (r)
		fprintf(stderr, "masker: %s\n", err.message);
	return m;
}

/* Feed `in` in pieces of the given sizes (cycled; 0 = all at once), flush. */
static char *run(struct uh_masker *m, int stream, const char *in, size_t n, const size_t *cuts, size_t ncuts)
{
	struct uh_buf out = UH_BUF_INIT(0);
	size_t at = 0, k = 0;
	while (at < n) {
		size_t l = ncuts ? cuts[k++ % ncuts] : n;
		if (l > n - at)
			l = n - at;
		CHECK(uh_masker_feed(m, stream, in + at, l, &out) == 0);
		at += l;
	}
	CHECK(uh_masker_flush(m, stream, &out) == 0);
	return uh_buf_take(&out);
}

static char *mask1(struct uh_masker *m, const char *in)
{
	return run(m, UH_MASK_STDOUT, in, strlen(in), NULL, 0);
}

/* ---- the test's own encoders ---- */

static void b64(const unsigned char *in, size_t n, char *out)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = t[v >> 18];
		out[o++] = t[(v >> 12) & 63];
		out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? t[v & 63] : '=';
	}
	out[o] = '\0';
}

/* The stable base64 of `v` after k filler bytes (see mask.h). */
static void b64_stable(const char *v, size_t n, unsigned k, char *out)
{
	unsigned char tmp[600];
	char enc[900];
	memset(tmp, 'Q', k);
	memcpy(tmp + k, v, n);
	b64(tmp, n + k, enc);
	size_t first = (8 * k + 5) / 6, end = 8 * (k + n) / 6;
	memcpy(out, enc + first, end - first);
	out[end - first] = '\0';
}

static void url(const char *v, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("-._~", c))
			out[o++] = (char)c;
		else
			o += (size_t)sprintf(out + o, "%%%02X", c);
	}
	out[o] = '\0';
}

/* JSON body via jansson itself (without the quotes). */
static void json(const char *v, size_t n, char *out)
{
	json_t *s = json_stringn(v, n);
	char *d = json_dumps(s, JSON_ENCODE_ANY);
	size_t l = strlen(d);
	memcpy(out, d + 1, l - 2);
	out[l - 2] = '\0';
	free(d);
	json_decref(s);
}

/* ---- tests ---- */

static void test_plain(void)
{
	const char *v[] = {"hunter2-secret"};
	struct uh_masker *m = mk(v, 1);
	char *o = mask1(m, "login hunter2-secret ok\nagain:hunter2-secrethunter2-secret.\n");
	CHECK_STR(o, "login [MASKED] ok\nagain:[MASKED].\n");
	free(o);
	uh_masker_free(m);
}

static void test_splits(void)
{
	const char *v[] = {"s3cr3t-Value-42"};
	struct uh_masker *m = mk(v, 1);
	const char *in = "before s3cr3t-Value-42 after";
	size_t n = strlen(in);
	for (size_t cut = 0; cut <= n; cut++) {
		size_t cuts[2] = {cut, n};
		char *o = run(m, UH_MASK_STDOUT, in, n, cuts, 2);
		CHECK_STR(o, "before [MASKED] after");
		free(o);
	}
	size_t one = 1;
	char *o = run(m, UH_MASK_STDERR, in, n, &one, 1);
	CHECK_STR(o, "before [MASKED] after");
	free(o);
	/* interleaved streams do not mix: each half on its own stream stays */
	struct uh_buf out = UH_BUF_INIT(0);
	CHECK(uh_masker_feed(m, UH_MASK_STDOUT, "s3cr3t-", 7, &out) == 0);
	CHECK(uh_masker_feed(m, UH_MASK_STDERR, "Value-42", 8, &out) == 0);
	CHECK(uh_masker_feed(m, UH_MASK_STDOUT, "Value-42", 8, &out) == 0);
	CHECK(uh_masker_flush(m, UH_MASK_STDERR, &out) == 0);
	CHECK(uh_masker_flush(m, UH_MASK_STDOUT, &out) == 0);
	CHECK_STR(out.data, "Value-42[MASKED]");
	CHECK(uh_masker_feed(m, 0, "x", 1, &out) != 0);
	CHECK(uh_masker_feed(m, 4, "x", 1, &out) != 0);
	CHECK(uh_masker_feed(m, UH_MASK_SYSTEM, "x", 1, &out) == 0); /* system messages have their own stream */
	uh_buf_free(&out);
	uh_masker_free(m);
}

static void test_held_back(void)
{
	const char *v[] = {"abcdefgh12"};
	struct uh_masker *m = mk(v, 1);
	struct uh_buf out = UH_BUF_INIT(0);
	CHECK(uh_masker_feed(m, UH_MASK_STDOUT, "xyz abcdefgh1", 13, &out) == 0);
	CHECK_STR(out.data, "xyz ");
	CHECK(uh_masker_feed(m, UH_MASK_STDOUT, "", 0, &out) == 0);
	CHECK_STR(out.data, "xyz ");
	CHECK(uh_masker_flush(m, UH_MASK_STDOUT, &out) == 0);
	CHECK_STR(out.data, "xyz abcdefgh1");
	/* a byte that ends the possible match releases at once */
	uh_buf_reset(&out);
	CHECK(uh_masker_feed(m, UH_MASK_STDOUT, "abcdefgh", 8, &out) == 0);
	CHECK(out.len == 0);
	CHECK(uh_masker_feed(m, UH_MASK_STDOUT, "!", 1, &out) == 0);
	CHECK_STR(out.data, "abcdefgh!");
	CHECK(uh_masker_flush(m, UH_MASK_STDOUT, &out) == 0);
	uh_buf_free(&out);
	uh_masker_free(m);
}

static void test_many(void)
{
	static char vals[100][40];
	const char *v[100];
	for (int i = 0; i < 100; i++) {
		snprintf(vals[i], sizeof(vals[i]), "tok_%03d_%016llx", i, (unsigned long long)rnd());
		v[i] = vals[i];
	}
	struct uh_masker *m = mk(v, 100);
	struct uh_buf in = UH_BUF_INIT(0), want = UH_BUF_INIT(0);
	for (int i = 99; i >= 0; i--) {
		uh_buf_printf(&in, "line %d: %s;\n", i, vals[i]);
		uh_buf_printf(&want, "line %d: [MASKED];\n", i);
	}
	size_t cuts[] = {7, 1, 13, 64};
	char *o = run(m, UH_MASK_STDOUT, in.data, in.len, cuts, 4);
	CHECK_STR(o, want.data);
	free(o);
	uh_buf_free(&in);
	uh_buf_free(&want);
	uh_masker_free(m);
}

static void test_base64(void)
{
	const char *v[] = {"password"};
	struct uh_masker *m = mk(v, 1);
	/* hand-computed: base64("password") = cGFzc3dvcmQ=, ("x"+..) = eHBhc3N3b3Jk,
	 * ("xy"+..) = eHlwYXNzd29yZA==; the stable parts are cGFzc3dvcm, Bhc3N3b3Jk
	 * and wYXNzd29yZ */
	char *o = mask1(m, "a=cGFzc3dvcmQ= b=eHBhc3N3b3Jk c=eHlwYXNzd29yZA==");
	CHECK_STR(o, "a=[MASKED]Q= b=eH[MASKED] c=eHl[MASKED]A==");
	free(o);
	char st[64];
	b64_stable("password", 8, 1, st);
	CHECK_STR(st, "Bhc3N3b3Jk");
	uh_masker_free(m);

	const char *v2[] = {"correct horse battery staple\x01\xff"};
	m = mk(v2, 1);
	size_t n = strlen(v2[0]);
	for (unsigned k = 0; k < 3; k++) {
		for (unsigned pre = 0; pre < 6; pre++) {
			unsigned char buf[200];
			char enc[300], text[400];
			memcpy(buf, "PREFIX", pre);
			memcpy(buf + pre, v2[0], n);
			memcpy(buf + pre + n, "tail", 4);
			b64(buf, pre + n + 4, enc);
			snprintf(text, sizeof(text), "data: %s end", enc);
			o = mask1(m, text);
			CHECK(strstr(o, "[MASKED]") != NULL);
			b64_stable(v2[0], n, pre % 3, st);
			CHECK(strstr(o, st) == NULL);
			free(o);
		}
	}
	uh_masker_free(m);
}

static void test_url_json(void)
{
	const char *v[] = {"p@ss w/rd\"q\\\n\t\x01z"};
	size_t n = strlen(v[0]);
	struct uh_masker *m = mk(v, 1);
	char u[200], j[200], text[500];
	url(v[0], n, u);
	CHECK_STR(u, "p%40ss%20w%2Frd%22q%5C%0A%09%01z");
	json(v[0], n, j);
	CHECK_STR(j, "p@ss w/rd\\\"q\\\\\\n\\t\\u0001z");
	snprintf(text, sizeof(text), "GET /?k=%s HTTP\n{\"k\":\"%s\"}\n", u, j);
	char *o = mask1(m, text);
	CHECK_STR(o, "GET /?k=[MASKED] HTTP\n{\"k\":\"[MASKED]\"}\n");
	free(o);
	o = mask1(m, "lower: p@ss w/rd\\\"q\\\\\\n\\t\\u0001z.");
	CHECK_STR(o, "lower: [MASKED].");
	free(o);
	uh_masker_free(m);
}

static void test_pem(void)
{
	const char *pem = "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX\n"
	                  "6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\r\nKUpRKfFLfRYC9AIKjbJTWit+Cq\nab\n-----END KEY-----";
	const char *v[] = {pem};
	struct uh_masker *m = mk(v, 1);
	char text[600];
	snprintf(text, sizeof(text), "key:\n%s\n", pem);
	char *o = mask1(m, text);
	CHECK_STR(o, "key:\n[MASKED]\n");
	free(o);
	o = mask1(m, "cat: 6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nKUpRKfFLfRYC9AIKjbJTWit+Cq and ab\n");
	CHECK_STR(o, "cat: [MASKED]\n[MASKED] and ab\n");
	free(o);
	o = mask1(m, "-----END KEY-----");
	CHECK_STR(o, "[MASKED]");
	free(o);
	uh_masker_free(m);
}

static void test_overlap(void)
{
	const char *v[] = {"abcdefgh", "abcdefghijkl", "ghijklmnop"};
	struct uh_masker *m = mk(v, 3);
	char *o = mask1(m, "1abcdefgh2 3abcdefghij4 5abcdefghijklmnop6 7xxghijklmnop8 abcdefghabcdefgh!");
	CHECK_STR(o, "1[MASKED]2 3[MASKED]ij4 5[MASKED]6 7xx[MASKED]8 [MASKED]!");
	free(o);
	uh_masker_free(m);
}

static void test_passthrough(void)
{
	const char *v[] = {"never-appears-here"};
	struct uh_masker *m = mk(v, 1);
	static char in[5000];
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (char)(rnd() & 0xff);
	size_t cuts[] = {1, 17, 300};
	struct uh_buf out = UH_BUF_INIT(0);
	size_t at = 0, k = 0;
	while (at < sizeof(in)) {
		size_t l = cuts[k++ % 3];
		l = l > sizeof(in) - at ? sizeof(in) - at : l;
		CHECK(uh_masker_feed(m, UH_MASK_STDOUT, in + at, l, &out) == 0);
		at += l;
	}
	CHECK(uh_masker_flush(m, UH_MASK_STDOUT, &out) == 0);
	CHECK(out.len == sizeof(in) && memcmp(out.data, in, sizeof(in)) == 0);
	uh_buf_free(&out);
	uh_masker_free(m);

	/* no values: no holding back */
	m = mk(NULL, 0);
	CHECK(uh_masker_feed(m, UH_MASK_STDOUT, in, 100, &out) == 0);
	CHECK(out.len == 100 && memcmp(out.data, in, 100) == 0);
	uh_buf_free(&out);
	uh_masker_free(m);
}

static void test_refused(void)
{
	struct uh_mask_value v[2] = {{"longenough", 10}, {"short12", 7}};
	struct uh_masker *m = (struct uh_masker *)1;
	struct uh_error err = {0};
	CHECK(uh_masker_new(v, 2, &m, &err) == UH_E_INVALID_CONFIG);
	CHECK(m == NULL);
	CHECK(strstr(err.message, "shorter") != NULL);
	struct uh_buf out = UH_BUF_INIT(4);
	CHECK(uh_masker_new(v, 1, &m, &err) == 0);
	CHECK(uh_masker_feed(m, UH_MASK_STDOUT, "0123456789", 10, &out) == UH_E_PAYLOAD_TOO_LARGE);
	uh_buf_free(&out);
	uh_masker_free(m);
}

/* ---- random differential check against a naive masker ---- */

struct pats {
	char *p[64];
	size_t l[64], n;
};

static void addp(struct pats *ps, const char *s, size_t l)
{
	if (l < 8)
		return;
	ps->p[ps->n] = malloc(l);
	memcpy(ps->p[ps->n], s, l);
	ps->l[ps->n++] = l;
}

static void naive(const struct pats *ps, const char *in, size_t n, struct uh_buf *out)
{
	unsigned char *cov = calloc(n + 1, 1);
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < ps->n; k++)
			if (ps->l[k] <= n - i && !memcmp(in + i, ps->p[k], ps->l[k]))
				memset(cov + i, 1, ps->l[k]);
	/* ranges that touch are one; ranges that touch only because one ends
	 * where another starts also merge: mark boundaries between matches */
	uh_buf_reset(out);
	size_t i = 0;
	while (i < n) {
		if (!cov[i]) {
			uh_buf_append(out, in + i, 1);
			i++;
			continue;
		}
		while (i < n && cov[i])
			i++;
		uh_buf_appends(out, "[MASKED]");
	}
	free(cov);
}

static void test_random(void)
{
	const char alpha[] = "abcdefghABCDEFGH0123+/=%\\\"\n\t";
	for (int iter = 0; iter < 1000; iter++) {
		char vals[4][40];
		const char *v[4];
		size_t nv = 1 + rnd() % 4;
		struct pats ps = {.n = 0};
		for (size_t i = 0; i < nv; i++) {
			size_t l = 8 + rnd() % 20;
			for (size_t j = 0; j < l; j++)
				vals[i][j] = alpha[rnd() % (sizeof(alpha) - 1)];
			vals[i][l] = '\0';
			v[i] = vals[i];
			char e[200];
			addp(&ps, vals[i], l);
			for (unsigned k = 0; k < 3; k++) {
				b64_stable(vals[i], l, k, e);
				addp(&ps, e, strlen(e));
			}
			url(vals[i], l, e);
			addp(&ps, e, strlen(e));
			json(vals[i], l, e);
			addp(&ps, e, strlen(e));
			for (const char *s = vals[i]; strchr(vals[i], '\n');) {
				const char *nl = strchr(s, '\n');
				size_t ll = nl ? (size_t)(nl - s) : strlen(s);
				addp(&ps, s, ll);
				if (!nl)
					break;
				s = nl + 1;
			}
		}
		struct uh_masker *m = mk(v, nv);
		struct uh_buf in = UH_BUF_INIT(0), want = UH_BUF_INIT(0);
		size_t parts = rnd() % 30;
		for (size_t i = 0; i < parts; i++) {
			if (rnd() % 3 == 0) {
				size_t k = rnd() % ps.n;
				uh_buf_append(&in, ps.p[k], ps.l[k]);
			} else {
				size_t l = rnd() % 10;
				for (size_t j = 0; j < l; j++)
					uh_buf_append(&in, &alpha[rnd() % (sizeof(alpha) - 1)], 1);
			}
		}
		naive(&ps, in.data ? in.data : "", in.len, &want);
		size_t cuts[3] = {1 + rnd() % 5, 1 + rnd() % 40, 1};
		char *o = run(m, UH_MASK_STDOUT, in.data ? in.data : "", in.len, cuts, 3);
		CHECK_STR(o, want.data ? want.data : "");
		char *whole = run(m, UH_MASK_STDERR, in.data ? in.data : "", in.len, NULL, 0);
		CHECK_STR(whole, o);
		free(whole);
		for (size_t k = 0; k < ps.n; k++)
			CHECK(memmem(o, strlen(o), ps.p[k], ps.l[k]) == NULL);
		free(o);
		for (size_t k = 0; k < ps.n; k++)
			free(ps.p[k]);
		uh_buf_free(&in);
		uh_buf_free(&want);
		uh_masker_free(m);
	}
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bench(void)
{
	size_t n = (size_t)64 << 20, chunk = 64 << 10;
	char *in = malloc(n), *dst = malloc(n);
	for (size_t i = 0; i < n; i++)
		in[i] = (char)(' ' + rnd() % 95);
	static char vals[100][40];
	const char *v[100];
	for (int i = 0; i < 100; i++) {
		snprintf(vals[i], sizeof(vals[i]), "sk_%03d_%016llx", i, (unsigned long long)rnd());
		v[i] = vals[i];
	}
	struct uh_masker *m = mk(v, 100);
	struct uh_buf out = UH_BUF_INIT(0);
	double t0 = now();
	for (size_t at = 0; at < n; at += chunk)
		memcpy(dst + at, in + at, chunk);
	double t1 = now();
	for (size_t at = 0; at < n; at += chunk) {
		uh_masker_feed(m, UH_MASK_STDOUT, in + at, chunk, &out);
		uh_buf_reset(&out);
	}
	uh_masker_flush(m, UH_MASK_STDOUT, &out);
	double t2 = now();
	CHECK(dst[n - 1] == in[n - 1]);
	printf("# mask throughput, 64 MiB in 64 KiB writes: memcpy %.0f MiB/s, masker (100 secrets) %.0f MiB/s\n",
	       64 / (t1 - t0), 64 / (t2 - t1));
	uh_buf_free(&out);
	uh_masker_free(m);
	free(in);
	free(dst);
}

int main(void)
{
	test_plain();
	test_splits();
	test_held_back();
	test_many();
	test_base64();
	test_url_json();
	test_pem();
	test_overlap();
	test_passthrough();
	test_refused();
	test_random();
	bench();
	return uh_tap_done();
}
