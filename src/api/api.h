/* The HTTP API (SPEC §5) on libmicrohttpd. */
#ifndef UH_API_API_H
#define UH_API_API_H

#include <stdbool.h>

#include "core/config.h"
#include "store/store.h"
#include "util/error.h"

/* What the API needs from the daemon, so the API never includes the
 * supervisor (the arrow runs daemon -> api). */
struct uh_api_deps {
	struct uh_store *store;
	const struct uh_config *cfg;
	/* A run became queued: wake the supervisor. Any thread. */
	void (*kick)(void *arg);
	/* A cancel was recorded for a queued or running run: ask the supervisor
	 * to stop it. Any thread. */
	void (*cancel)(void *arg, const char *run_id);
	/* A verified callback for a running webhook run: hand it to the
	 * supervisor and wait for its answer (0: taken). Any thread. */
	int (*callback)(void *arg, const char *run_id, json_t *body);
	void *arg;
	/* Non-zero while shutting down: triggers answer 503 unavailable. */
	const volatile int *draining;
};

struct uh_api;

/* Listen on cfg->listen ("HOST:PORT", port 0 = any free port), TLS when
 * cfg->tls_cert is set. Serves from libmicrohttpd's own threads. */
int uh_api_start(const struct uh_api_deps *deps, struct uh_api **out, struct uh_error *err);
/* The port actually bound. */
int uh_api_port(const struct uh_api *api);
/* Use a reloaded configuration (SIGHUP) for the requests that start from now
 * on: caps, whitelists, api.max_body_bytes, api.rate_limit_per_minute.
 * `listen` and `tls` keep their start-up values. The previous configuration
 * must stay valid until uh_api_stop returns (requests in flight may still
 * read it). Any thread. */
void uh_api_set_config(struct uh_api *api, const struct uh_config *cfg);
/* Stop accepting, end follow streams, free. */
void uh_api_stop(struct uh_api *api);

/* One secret reference (NAME, shared:NAME, vault:PATH#KEY) checked against
 * its project: the syntax, and a Vault PATH under the project's
 * vault_prefix. Errors name `field`. Used at save and trigger, and again by
 * the supervisor when the run starts. */
int uh_api_check_secret_ref(const char *field, const json_t *ref, const json_t *project, struct uh_error *err);

#endif
