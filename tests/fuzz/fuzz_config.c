/* Fuzz target: the server config parser (outside input: the operator's file). */
#include <stdint.h>
#include <stddef.h>

#include "core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct uh_config cfg;
	struct uh_error err;
	uh_config_defaults(&cfg, NULL);
	uh_config_parse((const char *)data, size, &cfg, &err);
	uh_config_free(&cfg);
	return 0;
}
