/* How a run's output is shown (SPEC §8): a streaming UTF-8 sanitizer that
 * survives sequences cut across chunks, the "[uhub: N bytes omitted]" gap
 * line, Server-Sent Events framing and NDJSON lines. Pure functions over
 * uh_buf, so the framing is unit-tested apart from the HTTP server. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "util/json.h"
#include "util/time.h"

static const char fffd[] = "\xef\xbf\xbd";

/* Start a sequence with lead byte c: how many continuation bytes follow and
 * the allowed range of the first of them (Unicode table 3-7). 0: invalid lead. */
static int lead(unsigned char c, unsigned char *lo, unsigned char *hi)
{
	*lo = 0x80;
	*hi = 0xbf;
	if (c >= 0xc2 && c <= 0xdf)
		return 1;
	if (c == 0xe0) {
		*lo = 0xa0;
		return 2;
	}
	if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef)
		return 2;
	if (c == 0xed) {
		*hi = 0x9f;
		return 2;
	}
	if (c == 0xf0) {
		*lo = 0x90;
		return 3;
	}
	if (c >= 0xf1 && c <= 0xf3)
		return 3;
	if (c == 0xf4) {
		*hi = 0x8f;
		return 3;
	}
	return 0;
}

int uh_utf8_feed(struct uh_utf8 *d, const char *data, size_t len, struct uh_buf *out)
{
	const unsigned char *p = (const unsigned char *)data;
	size_t run = 0; /* start of a stretch of ASCII/complete bytes copied at once */
	int rc = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = p[i];
		if (d->npend == 0) {
			if (c < 0x80)
				continue; /* part of the stretch */
			if (i > run && (rc = uh_buf_append(out, p + run, i - run)))
				return rc;
			run = i + 1;
			int n = lead(c, &d->lo, &d->hi);
			if (!n) {
				if ((rc = uh_buf_append(out, fffd, 3)))
					return rc;
				continue;
			}
			d->pend[0] = c;
			d->npend = 1;
			d->need = n;
			continue;
		}
		run = i + 1;
		if (c >= d->lo && c <= d->hi) {
			d->pend[d->npend++] = c;
			d->lo = 0x80;
			d->hi = 0xbf;
			if (--d->need == 0) {
				if ((rc = uh_buf_append(out, d->pend, (size_t)d->npend)))
					return rc;
				d->npend = 0;
			}
			continue;
		}
		/* The maximal subpart so far is invalid: one U+FFFD, then this
		 * byte starts afresh. */
		d->npend = 0;
		if ((rc = uh_buf_append(out, fffd, 3)))
			return rc;
		if (c < 0x80) {
			run = i; /* ASCII joins the next stretch */
			continue;
		}
		int n = lead(c, &d->lo, &d->hi);
		if (!n) {
			if ((rc = uh_buf_append(out, fffd, 3)))
				return rc;
			continue;
		}
		d->pend[0] = c;
		d->npend = 1;
		d->need = n;
	}
	if (d->npend == 0 && len > run)
		return uh_buf_append(out, p + run, len - run);
	return 0;
}

int uh_utf8_flush(struct uh_utf8 *d, struct uh_buf *out)
{
	if (d->npend == 0)
		return 0;
	d->npend = 0;
	return uh_buf_append(out, fffd, 3);
}

int uh_logfmt_gap_text(struct uh_buf *out, int64_t n)
{
	return uh_buf_printf(out, "[uhub: %lld bytes omitted]\n", (long long)n);
}

int uh_logfmt_sse(struct uh_buf *out, const char *event, int64_t id, const char *text, size_t len)
{
	int rc = uh_buf_printf(out, "event: %s\n", event);
	if (!rc && id >= 0)
		rc = uh_buf_printf(out, "id: %lld\n", (long long)id);
	/* SSE ends a line at \r\n, \r or \n: each becomes a new data line, so
	 * no byte of the output can end the event or start a field. */
	size_t i = 0, start = 0;
	while (!rc && i <= len) {
		if (i == len || text[i] == '\n' || text[i] == '\r') {
			if (!(rc = uh_buf_append(out, "data: ", 6)) &&
			    !(rc = uh_buf_append(out, text + start, i - start)))
				rc = uh_buf_append(out, "\n", 1);
			if (i < len && text[i] == '\r' && i + 1 < len && text[i + 1] == '\n')
				i++;
			start = i + 1;
			/* Text ending with a line break: the empty tail is the
			 * line after it, which keeps the break when the client
			 * joins data lines with \n. */
		}
		i++;
	}
	if (!rc)
		rc = uh_buf_append(out, "\n", 1);
	return rc;
}

const char *uh_logfmt_stream_name(int stream)
{
	switch (stream) {
	case 1:
		return "stdout";
	case 2:
		return "stderr";
	default:
		return "uhub";
	}
}

int uh_logfmt_ndjson(struct uh_buf *out, int64_t t, int stream, const char *text, size_t len)
{
	json_t *j = json_object();
	json_object_set_new(j, "t", uh_json_time(t));
	json_object_set_new(j, "stream", json_string(uh_logfmt_stream_name(stream)));
	json_object_set_new(j, "text", json_stringn(text, len));
	char *s = uh_json_dump(j);
	json_decref(j);
	if (!s)
		return UH_E_INTERNAL;
	int rc = uh_buf_appends(out, s);
	free(s);
	if (!rc)
		rc = uh_buf_append(out, "\n", 1);
	return rc;
}
