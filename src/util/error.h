/* Error codes and the error detail that travels up the stack.
 *
 * One X-macro table gives each code its API name and HTTP status, so the
 * three cannot drift apart (SPEC §5 "Errors"). Functions return 0 or a
 * negative UH_E_* code; detail goes in an optional `struct uh_error *err`,
 * always the last parameter. */
#ifndef UH_UTIL_ERROR_H
#define UH_UTIL_ERROR_H

#include <stddef.h>

/*  X(ENUM, api name, HTTP status) */
#define UH_ERRNO_MAP(X)                                    \
	X(INVALID_REQUEST, "invalid_request", 400)         \
	X(INVALID_CONFIG, "invalid_config", 400)           \
	X(UNSUPPORTED_BACKEND, "unsupported_backend", 400) \
	X(UNAUTHORIZED, "unauthorized", 401)               \
	X(FORBIDDEN, "forbidden", 403)                     \
	X(GUARDRAIL, "guardrail", 403)                     \
	X(NOT_FOUND, "not_found", 404)                     \
	X(METHOD_NOT_ALLOWED, "invalid_request", 405)      \
	X(CONFLICT, "conflict", 409)                       \
	X(PAYLOAD_TOO_LARGE, "payload_too_large", 413)     \
	X(UNSUPPORTED_MEDIA, "invalid_request", 415)       \
	X(RATE_LIMITED, "rate_limited", 429)               \
	X(UNAVAILABLE, "unavailable", 503)                 \
	X(INTERNAL, "internal", 500)

enum uh_errno {
	UH_OK = 0,
#define UH_X_ENUM(e, name, status) UH_E_##e,
	UH__E_FIRST = -1000,
	UH_ERRNO_MAP(UH_X_ENUM)
#undef UH_X_ENUM
	    UH__E_LAST
};
/* Codes run from -999 upwards: UH_E_INVALID_REQUEST == -999, and so on. All
 * are negative and distinct from 0. */

struct uh_error {
	int code;          /* UH_E_* or 0 */
	char field[128];   /* dotted path of the offending key, or "" */
	char message[512]; /* lower case, no full stop, subject quoted */
};

/* The API name ("invalid_request", ...) of a code; "internal" if unknown. */
const char *uh_errno_name(int code);
/* The HTTP status of a code; 500 if unknown. */
int uh_errno_status(int code);

/* Fill `err` (may be NULL) and return `code`. `field` may be NULL. */
int uh_error_set(struct uh_error *err, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Prefix the existing message with context ("loading 'x': " + old). */
int uh_error_prefix(struct uh_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the field path: field "timeout_seconds" becomes "execution_backend_config.timeout_seconds". */
void uh_error_field_prefix(struct uh_error *err, const char *prefix);
void uh_error_clear(struct uh_error *err);

#endif
