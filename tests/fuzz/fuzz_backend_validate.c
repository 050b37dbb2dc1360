/* Fuzz target for the Local backend's validate (outside input: a project's
 * and job's execution_backend_config, command and env names, as the API
 * passes them). The input is a JSON object {"config":..., "command":...,
 * "env":...} or any other JSON, taken whole as the config. validate must
 * only look (stat/open O_PATH), never run anything; a refusal must name a
 * code and a message. */
#include <stdint.h>
#include <stdlib.h>

#include "backend/backend.h"
#include "core/config.h"
#include "util/error.h"
#include "util/json.h"

static struct uh_config cfg;
static int ready;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ready) {
		uh_config_defaults(&cfg, NULL);
		ready = 1;
	}
	if (size > (1u << 16))
		return 0;
	json_error_t je;
	json_t *in = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
	if (!in)
		return 0;
	json_t *config, *command, *env;
	if (json_is_object(in) && json_object_get(in, "config")) {
		config = json_deep_copy(json_object_get(in, "config"));
		command = json_object_get(in, "command");
		env = json_object_get(in, "env");
	} else {
		config = json_deep_copy(in);
		command = NULL;
		env = NULL;
	}
	struct uh_error e = {0};
	int rc = uh_backend_validate(&cfg, "local", config, command, env, &e);
	if (rc && (rc != e.code || !e.message[0] || uh_errno_status(rc) < 400))
		abort();
	if (!rc && !json_is_object(config))
		abort(); /* only an object can be a valid config */
	json_decref(config);
	json_decref(in);
	return 0;
}
