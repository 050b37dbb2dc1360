/* The error table and helpers declared in error.h. */
#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
	int code;
	const char *name;
	int status;
} table[] = {
#define UH_X_ROW(e, n, s) {UH_E_##e, n, s},
    UH_ERRNO_MAP(UH_X_ROW)
#undef UH_X_ROW
};

const char *uh_errno_name(int code)
{
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (table[i].code == code)
			return table[i].name;
	return "internal";
}

int uh_errno_status(int code)
{
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (table[i].code == code)
			return table[i].status;
	return 500;
}

int uh_error_set(struct uh_error *err, int code, const char *field, const char *fmt, ...)
{
	if (!err)
		return code;
	err->code = code;
	snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return code;
}

int uh_error_prefix(struct uh_error *err, const char *fmt, ...)
{
	if (!err)
		return 0;
	char pre[256], old[sizeof(err->message)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	memcpy(old, err->message, sizeof(old));
	snprintf(err->message, sizeof(err->message), "%s%s", pre, old);
	return err->code;
}

void uh_error_field_prefix(struct uh_error *err, const char *prefix)
{
	if (!err)
		return;
	char old[sizeof(err->field)];
	memcpy(old, err->field, sizeof(old));
	if (old[0])
		snprintf(err->field, sizeof(err->field), "%s.%s", prefix, old);
	else
		snprintf(err->field, sizeof(err->field), "%s", prefix);
}

void uh_error_clear(struct uh_error *err)
{
	if (err)
		memset(err, 0, sizeof(*err));
}
