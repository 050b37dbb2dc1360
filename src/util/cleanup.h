/* __attribute__((cleanup)) helpers for locals, with an explicit take to hand
 * ownership on (systemd, crun). */
#ifndef UH_UTIL_CLEANUP_H
#define UH_UTIL_CLEANUP_H

#include <jansson.h>
#include <stdlib.h>
#include <unistd.h>

static inline void uh_freep(void *p)
{
	free(*(void **)p);
}
static inline void uh_closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
static inline void uh_json_decrefp(json_t **j)
{
	json_decref(*j);
}

#define uh_autofree  __attribute__((cleanup(uh_freep)))
#define uh_autoclose __attribute__((cleanup(uh_closep)))
#define uh_autojson  __attribute__((cleanup(uh_json_decrefp)))

/* Return *p and leave NULL (or -1) behind, so the cleanup does nothing. */
#define uh_take_ptr(p)                  \
	({                              \
		__typeof__(p) _t = (p); \
		(p) = NULL;             \
		_t;                     \
	})
#define uh_take_fd(fd)         \
	({                     \
		int _t = (fd); \
		(fd) = -1;     \
		_t;            \
	})

#endif
