/* A tiny test harness: CHECK records failures and goes on; the process
 * exits non-zero if anything failed. */
#ifndef UH_TESTS_TAP_H
#define UH_TESTS_TAP_H

#include <stdio.h>

extern int uh_tap_failures, uh_tap_checks;

#define CHECK(cond)                                                                              \
	do {                                                                                     \
		uh_tap_checks++;                                                                 \
		if (!(cond)) {                                                                   \
			uh_tap_failures++;                                                       \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
		}                                                                                \
	} while (0)

#define CHECK_STR(a, b)                                                                                  \
	do {                                                                                             \
		const char *_a = (a), *_b = (b);                                                         \
		uh_tap_checks++;                                                                         \
		if (!_a || !_b || strcmp(_a, _b) != 0) {                                                 \
			uh_tap_failures++;                                                               \
			fprintf(stderr, "%s:%d: '%s' != '%s'\n", __FILE__, __LINE__, _a ? _a : "(null)", \
			        _b ? _b : "(null)");                                                     \
		}                                                                                        \
	} while (0)

int uh_tap_done(void);

#endif
