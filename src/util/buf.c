/* See buf.h. */
#include "util/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

void uh_memzero(void *p, size_t n)
{
	if (p && n)
		explicit_bzero(p, n);
}

void uh_buf_init(struct uh_buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

static int grow(struct uh_buf *b, size_t need)
{
	if (need + 1 <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need + 1)
		cap *= 2;
	if (b->max && cap > b->max + 1)
		cap = b->max + 1;
	char *n;
	if (b->secret) {
		n = malloc(cap);
		if (!n)
			return UH_E_INTERNAL;
		if (b->data) {
			memcpy(n, b->data, b->len + 1);
			uh_memzero(b->data, b->cap);
			free(b->data);
		}
	} else {
		n = realloc(b->data, cap);
		if (!n)
			return UH_E_INTERNAL;
	}
	b->data = n;
	b->cap = cap;
	return 0;
}

int uh_buf_append(struct uh_buf *b, const void *data, size_t len)
{
	if (b->max && (len > b->max || b->len > b->max - len))
		return UH_E_PAYLOAD_TOO_LARGE;
	int r = grow(b, b->len + len);
	if (r)
		return r;
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

int uh_buf_appends(struct uh_buf *b, const char *s)
{
	return uh_buf_append(b, s, strlen(s));
}

int uh_buf_printf(struct uh_buf *b, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return UH_E_INTERNAL;
	if ((size_t)n < sizeof(small))
		return uh_buf_append(b, small, (size_t)n);
	char *big = malloc((size_t)n + 1);
	if (!big)
		return UH_E_INTERNAL;
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	int r = uh_buf_append(b, big, (size_t)n);
	free(big);
	return r;
}

void uh_buf_reset(struct uh_buf *b)
{
	if (b->data) {
		if (b->secret)
			uh_memzero(b->data, b->len);
		b->data[0] = '\0';
	}
	b->len = 0;
}

char *uh_buf_take(struct uh_buf *b)
{
	char *d = b->data;
	if (!d)
		d = calloc(1, 1);
	b->data = NULL;
	b->len = b->cap = 0;
	return d;
}

void uh_buf_free(struct uh_buf *b)
{
	if (b->data && b->secret)
		uh_memzero(b->data, b->cap);
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}
