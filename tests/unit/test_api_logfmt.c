/* How the API shows a run's output (src/api/logfmt.c): the UTF-8
 * sanitizer (invalid bytes, overlongs, surrogates, sequences cut across
 * feeds at every split point), the gap line, SSE framing (line breaks of
 * every kind, ids, an empty text) and NDJSON lines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "tap.h"
#include "util/json.h"

static char *clean(const char *in, size_t len)
{
	struct uh_buf b = UH_BUF_INIT(1 << 20);
	struct uh_utf8 d = {0};
	uh_utf8_feed(&d, in, len, &b);
	uh_utf8_flush(&d, &b);
	char *s = uh_buf_take(&b);
	return s ? s : strdup("");
}

/* The same bytes fed in two pieces, split at every position. */
static void check_splits(const char *in, size_t len, const char *want)
{
	for (size_t cut = 0; cut <= len; cut++) {
		struct uh_buf b = UH_BUF_INIT(1 << 20);
		struct uh_utf8 d = {0};
		uh_utf8_feed(&d, in, cut, &b);
		uh_utf8_feed(&d, in + cut, len - cut, &b);
		uh_utf8_flush(&d, &b);
		const char *got = b.data ? b.data : "";
		if (strcmp(got, want) != 0)
			fprintf(stderr, "split at %zu: got '%s'\n", cut, got);
		CHECK(strcmp(got, want) == 0);
		uh_buf_free(&b);
	}
}

#define FFFD "\xef\xbf\xbd"

static void test_utf8(void)
{
	struct {
		const char *in;
		size_t len;
		const char *want;
	} cases[] = {
	    {"plain ascii\n", 12, "plain ascii\n"},
	    {"a\xff"
	     "b\n",
	     4, "a" FFFD "b\n"},
	    {"\xc3\xa9t\xc3\xa9", 6, "\xc3\xa9t\xc3\xa9"},
	    {"\xe2\x82\xac", 3, "\xe2\x82\xac"},
	    {"\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80"},
	    {"\xc3(", 2, FFFD "("},
	    {"\xc3", 1, FFFD},
	    {"\xe2\x82", 2, FFFD},                        /* one maximal subpart: one U+FFFD */
	    {"\xc0\xaf", 2, FFFD FFFD},                   /* overlong '/' */
	    {"\xe0\x80\xaf", 3, FFFD FFFD FFFD},          /* overlong, second byte out of range */
	    {"\xed\xa0\x80", 3, FFFD FFFD FFFD},          /* surrogate D800 */
	    {"\xf4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD}, /* above U+10FFFF */
	    {"\xf5", 1, FFFD},
	    {"\x80", 1, FFFD},
	    {"\xe2\x82\xe2\x82\xac", 5, FFFD "\xe2\x82\xac"},
	    {"a\0b", 3, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (!cases[i].want)
			continue;
		char *got = clean(cases[i].in, cases[i].len);
		if (strcmp(got, cases[i].want) != 0)
			fprintf(stderr, "case %zu: got '%s'\n", i, got);
		CHECK(strcmp(got, cases[i].want) == 0);
		free(got);
		check_splits(cases[i].in, cases[i].len, cases[i].want);
	}
	/* NUL is valid UTF-8 and passes */
	struct uh_buf b = UH_BUF_INIT(64);
	struct uh_utf8 d = {0};
	uh_utf8_feed(&d, "a\0b", 3, &b);
	CHECK(b.len == 3 && b.data[1] == '\0');
	uh_buf_free(&b);
	/* a sequence cut over three feeds */
	uh_buf_init(&b, 64);
	memset(&d, 0, sizeof(d));
	uh_utf8_feed(&d, "x\xf0\x9f", 3, &b);
	uh_utf8_feed(&d, "\x98", 1, &b);
	uh_utf8_feed(&d, "\x80y", 2, &b);
	CHECK(b.len == 6 && memcmp(b.data, "x\xf0\x9f\x98\x80y", 6) == 0);
	uh_buf_free(&b);
	/* every byte value, alone: the output is always valid UTF-8 */
	for (int c = 0; c < 256; c++) {
		char in = (char)c;
		char *got = clean(&in, 1);
		json_t *j = json_string(got);
		CHECK(j != NULL || c == 0);
		json_decref(j);
		free(got);
	}
}

static void test_gap_and_sse(void)
{
	struct uh_buf b = UH_BUF_INIT(4096);
	uh_logfmt_gap_text(&b, 1234);
	CHECK_STR(b.data, "[uhub: 1234 bytes omitted]\n");
	uh_buf_reset(&b);

	uh_logfmt_sse(&b, "log", 6, "alpha\n", 6);
	CHECK_STR(b.data, "event: log\nid: 6\ndata: alpha\ndata: \n\n");
	uh_buf_reset(&b);
	uh_logfmt_sse(&b, "log", 10, "a\r\nb\rc\nd", 8);
	CHECK_STR(b.data, "event: log\nid: 10\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
	uh_buf_reset(&b);
	uh_logfmt_sse(&b, "log", 3, "", 0);
	CHECK_STR(b.data, "event: log\nid: 3\ndata: \n\n");
	uh_buf_reset(&b);
	/* output that looks like SSE fields stays data */
	uh_logfmt_sse(&b, "log", 20, "x\n\nevent: end\nid: 99\n", 21);
	CHECK_STR(b.data, "event: log\nid: 20\ndata: x\ndata: \ndata: event: end\ndata: id: 99\ndata: \n\n");
	uh_buf_reset(&b);
	uh_logfmt_sse(&b, "end", -1, "{\"id\":\"r_1\"}", 12);
	CHECK_STR(b.data, "event: end\ndata: {\"id\":\"r_1\"}\n\n");
	uh_buf_free(&b);
}

static void test_ndjson(void)
{
	struct uh_buf b = UH_BUF_INIT(4096);
	uh_logfmt_ndjson(&b, 1700000000123456LL, 2, "err \"q\"\n", 8);
	CHECK(b.len > 0 && b.data[b.len - 1] == '\n');
	json_t *j = json_loadb(b.data, b.len - 1, 0, NULL);
	CHECK(j != NULL);
	CHECK_STR(json_string_value(json_object_get(j, "stream")), "stderr");
	CHECK_STR(json_string_value(json_object_get(j, "text")), "err \"q\"\n");
	CHECK_STR(json_string_value(json_object_get(j, "t")), "2023-11-14T22:13:20.123456Z");
	CHECK(strchr(b.data, '\n') == b.data + b.len - 1); /* one line */
	json_decref(j);
	CHECK_STR(uh_logfmt_stream_name(1), "stdout");
	CHECK_STR(uh_logfmt_stream_name(3), "uhub");
	CHECK_STR(uh_logfmt_stream_name(42), "uhub");
	uh_buf_free(&b);
}

int main(void)
{
	test_utf8();
	test_gap_and_sse();
	test_ndjson();
	return uh_tap_done();
}
