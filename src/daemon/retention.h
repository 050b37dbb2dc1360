/* Retention (logs.retention_days): runs finished longer ago are pruned with
 * their logs in the background, one small batch per loop turn, so API
 * clients never wait on a long transaction. Audit events are kept. */
#ifndef UH_DAEMON_RETENTION_H
#define UH_DAEMON_RETENTION_H

#include <uv.h>

#include "core/config.h"
#include "store/store.h"

#define UH_RETENTION_BATCH       500
#define UH_RETENTION_INTERVAL_MS (10 * 60 * 1000)
#define UH_RETENTION_FIRST_MS    500 /* soon after start-up */

struct uh_retention;

/* A timer on `loop` pruning `store` by (*cfg)->retention_days, read at each
 * pass so a SIGHUP reload applies. The handle is closed by the loop's owner
 * (uv_walk); free the struct after the loop closed. NULL when out of memory. */
struct uh_retention *uh_retention_start(uv_loop_t *loop, struct uh_store *store, const struct uh_config *const *cfg);
/* No more passes (shutdown). */
void uh_retention_stop(struct uh_retention *r);
void uh_retention_free(struct uh_retention *r);

#endif
