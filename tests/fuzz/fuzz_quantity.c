/* Fuzz target for the small parsers of outside text: RFC 3339 times
 * (uh_time_parse: the audit list's `since`, token expiry) and the CPU and
 * memory quantities of execution_backend_config and the server config
 * (uh_parse_cpu, uh_parse_mem). Properties: no crash or UB; a parsed time
 * formats back to a string that, when it is itself parseable, means the same
 * instant (a parsed 9999-12-31T23:59:60Z is year 10000, which has no 4-digit
 * form); a parsed quantity is not negative. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "util/time.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 256)
		return 0;
	char s[257];
	memcpy(s, data, size);
	s[size] = '\0';

	int64_t us;
	if (uh_time_parse(s, &us) == 0) {
		char out[32];
		int64_t back;
		uh_time_format(us, out);
		if (uh_time_parse(out, &back) == 0 && back != us)
			abort();
	}
	int64_t v;
	if (uh_parse_cpu(s, &v) == 0 && v < 0)
		abort();
	if (uh_parse_mem(s, &v) == 0 && v < 0)
		abort();
	return 0;
}
