/* Fuzz target for dk_engine_time (src/backend/docker_api.c), which reads
 * the engine's State.StartedAt/FinishedAt. Properties: no crash; an
 * accepted time prints as SECONDS.NANOSECONDS (digits, one dot, nine
 * digits after it) and adding a second adds exactly one to the seconds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/docker_impl.h"

static void well_formed(const char *o)
{
	const char *dot = strchr(o, '.');
	if (!dot || dot == o || strlen(dot + 1) != 9)
		abort();
	for (const char *p = o; *p; p++)
		if (p != dot && (*p < '0' || *p > '9'))
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 64)
		return 0;
	char in[65];
	memcpy(in, data, size);
	in[size] = 0;
	char a[32], b[32];
	bool ok = dk_engine_time(in, 0, a, sizeof(a));
	bool ok1 = dk_engine_time(in, 1000, b, sizeof(b));
	if (ok != ok1)
		abort();
	if (!ok)
		return 0;
	well_formed(a);
	well_formed(b);
	if (strcmp(strchr(a, '.'), strchr(b, '.')) != 0 || strtoll(b, NULL, 10) != strtoll(a, NULL, 10) + 1)
		abort();
	return 0;
}
