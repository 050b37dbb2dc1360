/* Fuzz target for the log masker (src/secret/mask.c). The input is split on
 * 0xFF 0xFE: the first pieces (up to four) are secret values, the last is a
 * stream that is fed twice, once whole and once in pieces whose sizes come
 * from the secrets' bytes. Properties: no crash; the output does not depend
 * on where the stream was cut; no secret survives in the output (checked for
 * secrets without '[' or ']', which could be re-formed around a marker). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "secret/mask.h"

#define MAXV 4

static void feed(struct uh_masker *m, int stream, const uint8_t *d, size_t n, const uint8_t *cuts, size_t ncuts,
                 struct uh_buf *out)
{
	size_t at = 0, k = 0;
	while (at < n) {
		size_t l = ncuts ? (size_t)1 + cuts[k++ % ncuts] % 17 : n;
		if (l > n - at)
			l = n - at;
		if (uh_masker_feed(m, stream, (const char *)d + at, l, out))
			abort();
		at += l;
	}
	if (uh_masker_flush(m, stream, out))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct uh_mask_value v[MAXV];
	size_t nv = 0, at = 0;
	while (nv < MAXV) {
		const uint8_t *sep = NULL;
		for (size_t i = at; i + 1 < size; i++)
			if (data[i] == 0xFF && data[i + 1] == 0xFE) {
				sep = data + i;
				break;
			}
		if (!sep)
			break;
		size_t l = (size_t)(sep - (data + at));
		if (l >= UH_MASK_MIN_LEN && l <= 256)
			v[nv++] = (struct uh_mask_value){(const char *)data + at, l};
		at = (size_t)(sep - data) + 2;
	}
	const uint8_t *s = data + at;
	size_t sn = size - at;

	struct uh_masker *m = NULL;
	struct uh_error err;
	if (uh_masker_new(v, nv, &m, &err))
		abort();
	struct uh_buf whole = UH_BUF_INIT(0), cut = UH_BUF_INIT(0);
	feed(m, UH_MASK_STDOUT, s, sn, NULL, 0, &whole);
	feed(m, UH_MASK_STDERR, s, sn, at ? data : (const uint8_t *)"\x03\x01\x07", at ? at : 3, &cut);
	if (whole.len != cut.len || (whole.len && memcmp(whole.data, cut.data, whole.len)))
		abort();
	for (size_t i = 0; i < nv; i++) {
		if (memchr(v[i].data, '[', v[i].len) || memchr(v[i].data, ']', v[i].len))
			continue;
		if (whole.len && memmem(whole.data, whole.len, v[i].data, v[i].len))
			abort();
	}
	uh_buf_free(&whole);
	uh_buf_free(&cut);
	uh_masker_free(m);
	return 0;
}
