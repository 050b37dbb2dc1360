/* The execution backend interface (SPEC §3).
 *
 * One `const struct uh_backend_ops` per backend, filled with designated
 * initializers. Only backend.c calls the methods, through the uh_backend_*
 * wrappers below. A backend's per-run state embeds `struct uh_run_handle`
 * first and downcasts with UH_HANDLE_CAST.
 *
 * Threading: every method except `validate` runs on the supervisor's thread,
 * inside its libuv loop (`h->loop`); backends register their fds and timers
 * there and never block. `validate` may run on any thread and must be pure. */
#ifndef UH_BACKEND_BACKEND_H
#define UH_BACKEND_BACKEND_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/config.h"
#include "util/crypto.h"
#include "util/error.h"

enum uh_backend_cap {
	UH_CAP_CANCEL = 1u << 0,       /* stop() ends the run */
	UH_CAP_STREAMS_LOGS = 1u << 1, /* output arrives while running */
	UH_CAP_EXIT_CODE = 1u << 2,    /* reports a process exit code */
	UH_CAP_REATTACH = 1u << 3,     /* can re-attach after a daemon restart */
};

enum uh_stream { UH_STREAM_STDOUT = 1, UH_STREAM_STDERR = 2, UH_STREAM_SYSTEM = 3 };

/* One secret handed to a run: NAME=value, in locked memory owned by the
 * caller and wiped after the run has started (issue "secrets"). */
struct uh_secret_env {
	const char *name;
	const char *value;
	size_t value_len;
};

/* What to run. All pointers stay valid until start() returns; a backend
 * copies what it keeps. */
struct uh_run_spec {
	const char *run_id, *job_id, *job_name, *project_id, *project_name;
	const char *backend;
	const json_t *config;  /* effective config: merged, validated, capped; secret-free */
	const json_t *command; /* argv: array of strings, or NULL */
	const json_t *env;     /* object of strings: UHUB_* + UHUB_PARAM_* + the job's env */
	/* The job's `secrets`: env vars of the job's process (NAME = env name). */
	const struct uh_secret_env *secrets;
	size_t n_secrets;
	/* Secrets the backend itself uses, named by their reference as written in
	 * the effective config: `token_secret`, `key_secret`,
	 * `credentials_secret` values and `{{secrets.REF}}` in webhook headers.
	 * NAME = the reference ("gl_token", "shared:ci", "vault:team/x#tok").
	 * Look one up with uh_run_spec_config_secret(). */
	const struct uh_secret_env *config_secrets;
	size_t n_config_secrets;
	int64_t timeout_s; /* forced; the supervisor enforces it by calling stop() */
};

/* How the run ended, as the backend saw it. */
enum uh_result_kind {
	UH_RESULT_EXITED = 1, /* exit_code valid */
	UH_RESULT_SIGNALED,   /* signal valid; exit_code = 128 + signal */
	UH_RESULT_ERROR,      /* nothing (or not all) ran: infrastructure or refusal */
	UH_RESULT_REMOTE_OK,  /* remote system said succeeded (webhook...) */
	UH_RESULT_REMOTE_FAIL /* remote system said failed */
};

struct uh_run_result {
	enum uh_result_kind kind;
	int exit_code;
	int signal;
	bool oom;           /* killed by the memory limit */
	const char *reason; /* for UH_RESULT_ERROR: "backend_error", "backend_unavailable", "not_whitelisted", ... */
	char message[256];  /* words for the run's `message`; never a secret */
};

struct uh_run_handle;

/* Services the supervisor gives backends (implemented in daemon/). */
struct uh_backend_host {
	/* Output of the run, in arrival order. Any thread-safe-free context: call
	 * only from the supervisor thread. */
	void (*output)(struct uh_run_handle *h, enum uh_stream stream, const char *data, size_t len);
	/* The backend has a handle worth persisting (h->external_id is set). The
	 * host writes it to the store before returning. */
	void (*persist)(struct uh_run_handle *h);
	/* The run is over. Called exactly once per successful start(), after all
	 * output has been delivered. The host calls release() afterwards. */
	void (*finished)(struct uh_run_handle *h, const struct uh_run_result *res);
};

struct uh_run_handle {
	const struct uh_backend_ops *ops;
	const struct uh_backend_host *host;
	void *host_data; /* the supervisor's per-run record */
	uv_loop_t *loop;
	const struct uh_config *cfg; /* valid for the handle's whole life */
	char run_id[UH_ID_MAX];
	char external_id[256]; /* pid, container id, pipeline id... ("" until known) */
};

/* Downcast a handle to a backend's state, checking it belongs to `ops`. */
#define UH_HANDLE_CAST(type, h, ops) ((type *)uh_backend_handle_check((h), (ops)))

#define UH_BACKEND_FDS_DEFAULT 6

struct uh_backend_ops {
	const char *name;
	unsigned caps;
	size_t state_size; /* >= sizeof(struct uh_run_handle) */
	/* Descriptors a run holds while in flight, for the supervisor's budget
	 * (RLIMIT_NOFILE); 0 means UH_BACKEND_FDS_DEFAULT, a generous guess. */
	unsigned fds_per_run;

	/* Once at daemon start-up, on the supervisor thread. May be NULL. */
	int (*init)(const struct uh_config *cfg, uv_loop_t *loop, struct uh_error *err);
	void (*shutdown)(void);

	/* Check the backend's keys of an effective config (common keys already
	 * checked and allowed through), and the job's command and env names.
	 * Errors name the key as "execution_backend_config.KEY", "command" or
	 * "env.NAME". Pure, any thread. */
	int (*validate)(const struct uh_config *cfg, const json_t *config, const json_t *command,
	                const json_t *env_names, struct uh_error *err);

	/* Start the run. Returns fast. On success the backend later calls
	 * host->finished exactly once. On failure nothing of the run exists and
	 * err says why (err->code UH_E_*; a reason string for the run may be put
	 * in err->field, e.g. "not_whitelisted"). */
	int (*start)(struct uh_run_handle *h, const struct uh_run_spec *spec, struct uh_error *err);

	/* Ask the run to end: polite stop now, forced kill after grace_ms.
	 * Idempotent; a later call may shorten the grace. */
	void (*stop)(struct uh_run_handle *h, int64_t grace_ms);

	/* Free everything of the handle, the handle itself included (calloc'd by
	 * backend.c; free() it, possibly later, once its uv handles are closed).
	 * Called once, after finished(), or never when start() failed. */
	void (*release)(struct uh_run_handle *h);

	/* After a daemon restart, for a run the store says was running on this
	 * node: make sure nothing of it remains (kill, remove, clean up). Returns
	 * 0 once nothing remains. */
	int (*settle)(const struct uh_config *cfg, const char *run_id, const char *external_id, struct uh_error *err);

	/* After a daemon restart, for a run the store says was running here
	 * with this external_id: take it over again (output from now on, the
	 * end as it happens) instead of settling it. Same contract as start()
	 * on success; on failure the caller settles the run. May be NULL. */
	int (*reattach)(struct uh_run_handle *h, const struct uh_run_spec *spec, const char *external_id,
	                struct uh_error *err);

	/* A verified callback for a running run (webhook `callback` mode): `body`
	 * is the parsed JSON body. Supervisor thread. May be NULL. Returns 0 if
	 * taken (the backend then calls host->finished), else non-zero. */
	int (*callback)(struct uh_run_handle *h, const json_t *body);
};

/* The value of the backend secret named by `ref` (see config_secrets), or
 * NULL. */
const struct uh_secret_env *uh_run_spec_config_secret(const struct uh_run_spec *spec, const char *ref);

/* ---- Registry and wrappers (backend.c) ---- */

/* The ops of a backend by name, or NULL if not built. */
const struct uh_backend_ops *uh_backend_find(const char *name);
/* Names of all backends SPEC §3 knows, built or not. */
bool uh_backend_known(const char *name);

int uh_backend_init_all(const struct uh_config *cfg, uv_loop_t *loop, struct uh_error *err);
void uh_backend_shutdown_all(void);

/* Validate an effective config for `backend`: common keys (timeout_seconds,
 * cpu_limit, mem_limit) against the server caps, then the backend's own.
 * Fills defaults into `config` (timeout_seconds). Unknown backend name:
 * UH_E_INVALID_REQUEST naming "execution_backend"; known but not built:
 * UH_E_UNSUPPORTED_BACKEND. */
/* The keys every backend's config shares (timeout_seconds, cpu_limit,
 * mem_limit): a backend's own parser skips them, and takes the limits from
 * uh_backend_limits (each 0 when not given; a malformed one is an error). */
bool uh_backend_common_key(const char *key);
int uh_backend_limits(const json_t *config, int64_t *cpu_milli, int64_t *mem_bytes, struct uh_error *err);

int uh_backend_validate(const struct uh_config *cfg, const char *backend, json_t *config, const json_t *command,
                        const json_t *env_names, struct uh_error *err);

/* Allocate a handle of the backend's state size, start the run. On success
 * *out is the handle (release with uh_backend_release). */
int uh_backend_start(const struct uh_backend_ops *ops, const struct uh_backend_host *host, void *host_data,
                     uv_loop_t *loop, const struct uh_config *cfg, const struct uh_run_spec *spec,
                     struct uh_run_handle **out, struct uh_error *err);
/* The same for a run taken over after a restart (ops->reattach). */
int uh_backend_reattach(const struct uh_backend_ops *ops, const struct uh_backend_host *host, void *host_data,
                        uv_loop_t *loop, const struct uh_config *cfg, const struct uh_run_spec *spec,
                        const char *external_id, struct uh_run_handle **out, struct uh_error *err);
void uh_backend_stop(struct uh_run_handle *h, int64_t grace_ms);
void uh_backend_release(struct uh_run_handle *h);
/* Hand a verified callback body to the run's backend (supervisor thread).
 * 0 when taken (the backend then finishes the run); UH_E_NOT_FOUND when the
 * backend takes no callbacks, UH_E_CONFLICT when it refused this one. */
int uh_backend_callback(struct uh_run_handle *h, const json_t *body);
int uh_backend_settle(const struct uh_config *cfg, const char *backend, const char *run_id, const char *external_id,
                      struct uh_error *err);

/* Used by UH_HANDLE_CAST: aborts if h is not of ops. */
void *uh_backend_handle_check(struct uh_run_handle *h, const struct uh_backend_ops *ops);

/* Each backend's ops (defined in its file). */
extern const struct uh_backend_ops uh_backend_local;
extern const struct uh_backend_ops uh_backend_docker;
extern const struct uh_backend_ops uh_backend_webhook;

#endif
