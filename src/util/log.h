/* Daemon logging: one line per event on stderr, level-checked before any
 * formatting. Only the daemon, API and CLI log; library code returns errors.
 * Run-related lines carry run=, job=, backend= (see uh_log_run). */
#ifndef UH_UTIL_LOG_H
#define UH_UTIL_LOG_H

enum uh_log_level { UH_LOG_DEBUG = 0, UH_LOG_INFO, UH_LOG_WARN, UH_LOG_ERROR };

extern int uh_log_level;

void uh_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define uh_log(level, ...)                                  \
	do {                                                \
		if ((level) >= uh_log_level)                \
			uh_log_write((level), __VA_ARGS__); \
	} while (0)
#define uh_debug(...)  uh_log(UH_LOG_DEBUG, __VA_ARGS__)
#define uh_info(...)   uh_log(UH_LOG_INFO, __VA_ARGS__)
#define uh_warn(...)   uh_log(UH_LOG_WARN, __VA_ARGS__)
#define uh_errorf(...) uh_log(UH_LOG_ERROR, __VA_ARGS__)

#endif
