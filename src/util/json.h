/* JSON helpers over jansson. Every parse of outside input goes through
 * uh_json_parse: duplicate keys refused, depth bounded, errors precise. */
#ifndef UH_UTIL_JSON_H
#define UH_UTIL_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

#define UH_JSON_MAX_DEPTH 32

/* Parse `len` bytes; refuses duplicate keys, NUL bytes, nesting deeper than
 * UH_JSON_MAX_DEPTH, and (when want_object) anything but an object. On error
 * fills err with UH_E_INVALID_REQUEST and returns NULL. */
json_t *uh_json_parse(const char *data, size_t len, bool want_object, struct uh_error *err);

/* Serialize compactly; caller frees. Never NULL for a valid value. */
char *uh_json_dump(const json_t *j);

/* Typed getters that fill err naming `field` (prefixed by `path` if not
 * NULL) on a wrong type. A missing key leaves *out untouched and returns 0. */
int uh_json_get_str(const json_t *obj, const char *key, const char **out, const char *path, struct uh_error *err);
int uh_json_get_bool(const json_t *obj, const char *key, bool *out, const char *path, struct uh_error *err);
int uh_json_get_int(const json_t *obj, const char *key, int64_t min, int64_t max, int64_t *out, const char *path,
                    struct uh_error *err);

/* Reject any key of obj not in the NULL-terminated list `allowed`; field
 * named "path.key" (or "key"). */
int uh_json_only_keys(const json_t *obj, const char *const *allowed, const char *path, struct uh_error *err);

/* json_string or json_null when s is NULL. */
json_t *uh_json_str_or_null(const char *s);
/* RFC 3339 string for a microsecond time, or null when us == 0. */
json_t *uh_json_time(int64_t us);

/* RFC 7396 merge patch: apply patch onto target (in place). */
void uh_json_merge_patch(json_t *target, const json_t *patch);

#endif
