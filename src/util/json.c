/* See json.h. */
#include "util/json.h"

#include <stdio.h>
#include <string.h>

#include "util/time.h"

static int depth_ok(const json_t *j, int depth)
{
	if (depth > UH_JSON_MAX_DEPTH)
		return 0;
	if (json_is_object(j)) {
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)j, k, v) if (!depth_ok(v, depth + 1)) return 0;
	} else if (json_is_array(j)) {
		size_t i;
		json_t *v;
		json_array_foreach(j, i, v) if (!depth_ok(v, depth + 1)) return 0;
	}
	return 1;
}

/* Cheap pre-scan so a deeply nested document never reaches jansson's
 * recursive parser (its own limit is 2048 levels). */
static int nesting_ok(const char *d, size_t len)
{
	int depth = 0, in_str = 0, esc = 0;
	for (size_t i = 0; i < len; i++) {
		char c = d[i];
		if (in_str) {
			if (esc)
				esc = 0;
			else if (c == '\\')
				esc = 1;
			else if (c == '"')
				in_str = 0;
			continue;
		}
		if (c == '"')
			in_str = 1;
		else if (c == '{' || c == '[') {
			if (++depth > UH_JSON_MAX_DEPTH + 1)
				return 0;
		} else if (c == '}' || c == ']')
			depth--;
	}
	return 1;
}

json_t *uh_json_parse(const char *data, size_t len, bool want_object, struct uh_error *err)
{
	if (len == 0) {
		uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "request body is empty, a JSON %s was expected",
		             want_object ? "object" : "value");
		return NULL;
	}
	if (memchr(data, '\0', len)) {
		uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "request body holds a NUL byte");
		return NULL;
	}
	if (!nesting_ok(data, len)) {
		uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "JSON nested deeper than %d levels", UH_JSON_MAX_DEPTH);
		return NULL;
	}
	json_error_t je;
	json_t *j = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
	if (!j) {
		uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "malformed JSON at line %d column %d: %s", je.line,
		             je.column, je.text);
		return NULL;
	}
	if (!depth_ok(j, 0)) {
		json_decref(j);
		uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "JSON nested deeper than %d levels", UH_JSON_MAX_DEPTH);
		return NULL;
	}
	if (want_object && !json_is_object(j)) {
		json_decref(j);
		uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "a JSON object was expected");
		return NULL;
	}
	return j;
}

char *uh_json_dump(const json_t *j)
{
	return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
}

static void fieldname(char *out, size_t n, const char *path, const char *key)
{
	if (path && *path)
		snprintf(out, n, "%s.%s", path, key);
	else
		snprintf(out, n, "%s", key);
}

int uh_json_get_str(const json_t *obj, const char *key, const char **out, const char *path, struct uh_error *err)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return 0;
	if (!json_is_string(v)) {
		char f[128];
		fieldname(f, sizeof(f), path, key);
		return uh_error_set(err, UH_E_INVALID_REQUEST, f, "'%s' must be a string", f);
	}
	*out = json_string_value(v);
	return 0;
}

int uh_json_get_bool(const json_t *obj, const char *key, bool *out, const char *path, struct uh_error *err)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return 0;
	if (!json_is_boolean(v)) {
		char f[128];
		fieldname(f, sizeof(f), path, key);
		return uh_error_set(err, UH_E_INVALID_REQUEST, f, "'%s' must be true or false", f);
	}
	*out = json_is_true(v);
	return 0;
}

int uh_json_get_int(const json_t *obj, const char *key, int64_t min, int64_t max, int64_t *out, const char *path,
                    struct uh_error *err)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return 0;
	char f[128];
	fieldname(f, sizeof(f), path, key);
	if (!json_is_integer(v))
		return uh_error_set(err, UH_E_INVALID_REQUEST, f, "'%s' must be an integer", f);
	json_int_t x = json_integer_value(v);
	if (x < min || x > max)
		return uh_error_set(err, UH_E_INVALID_REQUEST, f, "'%s' must be between %lld and %lld", f,
		                    (long long)min, (long long)max);
	*out = x;
	return 0;
}

int uh_json_only_keys(const json_t *obj, const char *const *allowed, const char *path, struct uh_error *err)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)obj, k, v)
	{
		int ok = 0;
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(*a, k) == 0) {
				ok = 1;
				break;
			}
		if (!ok) {
			char f[128];
			fieldname(f, sizeof(f), path, k);
			return uh_error_set(err, UH_E_INVALID_REQUEST, f, "unknown key '%s'", f);
		}
	}
	return 0;
}

json_t *uh_json_str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

json_t *uh_json_time(int64_t us)
{
	if (!us)
		return json_null();
	char t[32];
	uh_time_format(us, t);
	return json_string(t);
}

void uh_json_merge_patch(json_t *target, const json_t *patch)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)patch, k, v)
	{
		if (json_is_null(v)) {
			json_object_del(target, k);
		} else if (json_is_object(v)) {
			json_t *t = json_object_get(target, k);
			if (!json_is_object(t)) {
				t = json_object();
				json_object_set_new(target, k, t);
			}
			uh_json_merge_patch(t, v);
		} else {
			json_object_set(target, k, v);
		}
	}
}
