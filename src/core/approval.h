/* Approvals (SPEC §4.2): who may decide on a pending run, and the hash an
 * approval covers, so that a job changed after its approval runs only after
 * a new one. */
#ifndef UH_CORE_APPROVAL_H
#define UH_CORE_APPROVAL_H

#include <jansson.h>
#include <stdbool.h>

#include "core/config.h"
#include "core/run.h"
#include "util/error.h"

/* SHA-256 hex over the canonical JSON (compact, sorted keys) of
 * {"backend","command","effective_config","env","parameters","secrets"}:
 * what will run. NULL members count as null. */
void uh_approval_hash(const char *backend, const json_t *command, const json_t *env, const json_t *secrets,
                      const json_t *config, const json_t *params, char out[65]);
/* The hash of the run's snapshot (taken at trigger). */
void uh_approval_hash_snapshot(const struct uh_run *run, char out[65]);
/* What the trigger does to the merged config (the backend's validation,
 * which fills defaults), supplied by a layer that knows the backends. */
typedef int (*uh_config_check_fn)(const struct uh_config *cfg, const char *backend, json_t *config,
                                  const json_t *command, const json_t *env_names, struct uh_error *err);
/* The hash of what the run would be if triggered now from the current job
 * and project: the same merge, check and environment as the trigger. */
int uh_approval_hash_current(const struct uh_config *cfg, uh_config_check_fn check, const struct uh_run *run,
                             const json_t *project, const json_t *job, char out[65], struct uh_error *err);

/* The self-approval rules, after the route's policy (admin or a projets
 * member) let the caller in: UH_E_FORBIDDEN when user_id requested the run
 * or last edited the job (updated_by), unless allow_self_approval. Applies
 * to admins too. */
int uh_approval_may_decide(const struct uh_config *cfg, const char *user_id, const struct uh_run *run,
                           const json_t *job, struct uh_error *err);

#endif
