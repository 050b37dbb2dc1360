/* Clocks and RFC 3339 times. Wall-clock times are microseconds since the
 * epoch (int64); durations use the monotonic clock. */
#ifndef UH_UTIL_TIME_H
#define UH_UTIL_TIME_H

#include <stdint.h>

int64_t uh_now_us(void);  /* CLOCK_REALTIME, microseconds */
int64_t uh_mono_us(void); /* CLOCK_MONOTONIC, microseconds */
/* "2026-12-04T20:40:10.123456Z" into out (at least 32 bytes). */
void uh_time_format(int64_t us, char out[32]);
/* Parse RFC 3339 ("Z" or "+hh:mm"; fraction optional). 0 or UH_E_INVALID_REQUEST. */
int uh_time_parse(const char *s, int64_t *us);

#endif
