/* Growing byte buffers with a hard maximum (curl's dynbuf). A buffer marked
 * secret is wiped before its memory is released or moved. */
#ifndef UH_UTIL_BUF_H
#define UH_UTIL_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct uh_buf {
	char *data; /* always NUL-terminated when non-NULL */
	size_t len;
	size_t cap;
	size_t max; /* appends past this fail with UH_E_PAYLOAD_TOO_LARGE */
	bool secret;
};

#define UH_BUF_INIT(maxbytes)                 \
	{                                     \
		NULL, 0, 0, (maxbytes), false \
	}

void uh_buf_init(struct uh_buf *b, size_t max);
/* 0, or UH_E_PAYLOAD_TOO_LARGE past max, or UH_E_INTERNAL on ENOMEM. */
int uh_buf_append(struct uh_buf *b, const void *data, size_t len);
int uh_buf_appends(struct uh_buf *b, const char *s);
int uh_buf_printf(struct uh_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void uh_buf_reset(struct uh_buf *b);
/* Hand the data to the caller (free() it); the buffer is left empty. */
char *uh_buf_take(struct uh_buf *b);
void uh_buf_free(struct uh_buf *b);

/* Wipe memory in a way the compiler cannot drop. */
void uh_memzero(void *p, size_t n);

#endif
