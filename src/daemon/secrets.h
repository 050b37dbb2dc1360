/* A run's secrets, resolved at run start (issue "secrets"): the job's
 * `secrets` (env vars of the job) and the references its effective config
 * uses (token_secret, {{secrets.REF}} in headers...), each checked again
 * against the run's project — a reference must still be the project's own,
 * granted to it, or under its vault_prefix — then read from the built-in
 * store (opened with the key file) or from Vault.
 *
 * Runs on a worker thread (uv_queue_work): Vault is a network call. Values
 * live in locked memory (struct uh_secret_value) until uh_run_secrets_free
 * wipes them. Error messages name the reference and the env var or field,
 * never a value. */
#ifndef UH_DAEMON_SECRETS_H
#define UH_DAEMON_SECRETS_H

#include <jansson.h>
#include <stdbool.h>

#include "backend/backend.h"
#include "secret/mask.h"
#include "secret/secret.h"
#include "store/store.h"
#include "util/error.h"

struct uh_vault;

struct uh_run_secrets {
	struct uh_secret_env *env; /* the job's secrets: NAME = env var */
	size_t n_env;
	struct uh_secret_env *cfg; /* the config's: NAME = the reference */
	size_t n_cfg;
	struct uh_mask_value *mask; /* every distinct value, for the masker */
	size_t n_mask;
	struct uh_secret_value **vals; /* owned */
	size_t n_vals;
	char **names; /* owned copies of env names and references */
	size_t n_names;
};

/* Whether a run with this spec `secrets` map and effective config needs
 * any secret. */
bool uh_run_needs_secrets(const json_t *secrets, const json_t *config);

/* Resolve. UH_E_UNAVAILABLE (the run ends error/secret_unavailable) with a
 * message naming what could not be had. */
int uh_run_secrets_resolve(struct uh_store *st, struct uh_vault *vault, const char *project_id, const json_t *secrets,
                           const json_t *config, struct uh_run_secrets **out, struct uh_error *err);
void uh_run_secrets_free(struct uh_run_secrets *rs);

#endif
