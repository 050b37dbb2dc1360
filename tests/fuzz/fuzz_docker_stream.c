/* Fuzz target for the attach-stream demultiplexer (src/backend/docker_stream.c).
 * The input is fed twice: whole, and cut at points taken from its own
 * bytes. Properties: no crash; both feeds give the same bytes per stream,
 * the same verdict and the same clean-end state; a malformed stream
 * delivers nothing after the bad header. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/docker_impl.h"
#include "util/buf.h"

struct sink {
	struct uh_buf s[3];
};

static void collect(void *arg, int stream, const char *d, size_t n)
{
	struct sink *k = arg;
	if (stream < 1 || stream > 2 || n == 0)
		abort();
	if (uh_buf_append(&k->s[stream], d, n))
		abort();
}

static int feed(const uint8_t *data, size_t size, const uint8_t *cuts, size_t ncuts, struct sink *k, struct dk_demux *d)
{
	size_t at = 0, i = 0;
	int rc = 0;
	while (at < size) {
		size_t l = ncuts ? (size_t)1 + cuts[i++ % ncuts] % 13 : size;
		if (l > size - at)
			l = size - at;
		if (dk_demux_feed(d, (const char *)data + at, l, collect, k))
			rc = -1;
		at += l;
	}
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sink a, b;
	for (int i = 0; i < 3; i++) {
		uh_buf_init(&a.s[i], 1 << 24);
		uh_buf_init(&b.s[i], 1 << 24);
	}
	struct dk_demux da = {0}, db = {0};
	int ra = feed(data, size, NULL, 0, &a, &da);
	int rb = feed(data, size, data, size < 16 ? size : 16, &b, &db);
	if (ra != rb || dk_demux_clean_end(&da) != dk_demux_clean_end(&db))
		abort();
	for (int i = 1; i < 3; i++) {
		if (a.s[i].len != b.s[i].len || (a.s[i].len && memcmp(a.s[i].data, b.s[i].data, a.s[i].len)))
			abort();
		if (a.s[i].len > size)
			abort();
	}
	for (int i = 0; i < 3; i++) {
		uh_buf_free(&a.s[i]);
		uh_buf_free(&b.s[i]);
	}
	return 0;
}
