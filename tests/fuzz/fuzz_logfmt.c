/* Fuzz target for the log renderers (src/api/logfmt.c): a run's raw output
 * (anything the job wrote) is cut into chunks at points the input chooses,
 * fed through the streaming UTF-8 sanitizer, then framed as SSE and NDJSON.
 * Properties: the sanitized text is valid UTF-8 and does not depend on where
 * the chunks were cut; an SSE event holds only field lines and no bare \r;
 * an NDJSON line is one JSON object whose text is the sanitized input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "util/json.h"

static void sanitize(const char *d, size_t n, const uint8_t *cuts, size_t ncuts, struct uh_buf *out)
{
	struct uh_utf8 dec = {0};
	size_t at = 0;
	for (size_t i = 0; i < ncuts && at < n; i++) {
		size_t len = cuts[i] % (n - at + 1);
		if (uh_utf8_feed(&dec, d + at, len, out))
			abort();
		at += len;
	}
	if (uh_utf8_feed(&dec, d + at, n - at, out) || uh_utf8_flush(&dec, out))
		abort();
}

static void check_sse(const struct uh_buf *f)
{
	if (f->len < 2 || memcmp(f->data + f->len - 2, "\n\n", 2) || memchr(f->data, '\r', f->len))
		abort();
	size_t i = 0, end = f->len - 1; /* the last \n ends the event */
	while (i < end) {
		const char *nl = memchr(f->data + i, '\n', end - i);
		size_t ll = (size_t)(nl - (f->data + i));
		const char *l = f->data + i;
		if (!(ll >= 7 && !memcmp(l, "event: ", 7)) && !(ll >= 4 && !memcmp(l, "id: ", 4)) &&
		    !(ll >= 6 && !memcmp(l, "data: ", 6)))
			abort();
		i += ll + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > (1u << 16))
		return 0;
	size_t ncuts = data[0] % 8;
	if (size < 1 + ncuts)
		return 0;
	const uint8_t *cuts = data + 1;
	const char *d = (const char *)data + 1 + ncuts;
	size_t n = size - 1 - ncuts;

	struct uh_buf a = UH_BUF_INIT(1 << 20), b = UH_BUF_INIT(1 << 20), f = UH_BUF_INIT(1 << 21);
	sanitize(d, n, cuts, ncuts, &a);
	sanitize(d, n, NULL, 0, &b);
	if (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len)))
		abort(); /* chunk boundaries must not change the text */
	const char *t = a.data ? a.data : "";
	json_t *j = json_stringn(t, a.len);
	if (!j)
		abort(); /* jansson refuses invalid UTF-8 */
	json_decref(j);

	if (uh_logfmt_sse(&f, "log", (int64_t)n, t, a.len))
		abort();
	check_sse(&f);

	uh_buf_reset(&f);
	if (uh_logfmt_ndjson(&f, 1700000000000000LL, data[0] & 1, t, a.len))
		abort();
	if (!f.len || f.data[f.len - 1] != '\n' || memchr(f.data, '\n', f.len - 1))
		abort(); /* exactly one line */
	json_error_t je;
	json_t *o = json_loadb(f.data, f.len - 1, JSON_ALLOW_NUL, &je);
	json_t *text = o ? json_object_get(o, "text") : NULL;
	if (!text || json_string_length(text) != a.len || memcmp(json_string_value(text), t, a.len))
		abort();
	json_decref(o);

	uh_buf_free(&a);
	uh_buf_free(&b);
	uh_buf_free(&f);
	return 0;
}
