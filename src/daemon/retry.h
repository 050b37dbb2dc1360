/* Automatic retries (SPEC §2, job `retries`): a run that ended `error` or
 * `lost` is followed by a new run linked by `retry_of`, after an exponential
 * backoff, at most `retries` times along the chain. Pure: the supervisor
 * stores what these build. */
#ifndef UH_DAEMON_RETRY_H
#define UH_DAEMON_RETRY_H

#include <stdint.h>

#include "core/run.h"

#define UH_RETRY_BACKOFF_MAX_S 300

/* The retry due after `ended` (status error or lost, spec as snapshot at
 * trigger), or NULL when none is: another status, retries exhausted along
 * the chain (spec "attempt" counts them), or out of memory. The new run is
 * queued, a copy of what `ended` was to run, with spec "attempt" one more
 * and spec "not_before" now + 2^(attempt - 1) s (capped at
 * UH_RETRY_BACKOFF_MAX_S). */
struct uh_run *uh_retry_next(const struct uh_run *ended, int64_t now_us);
/* The time (µs) before which a queued run must not start; 0: none. */
int64_t uh_retry_not_before(const struct uh_run *run);
/* The run's place in its retry chain: 0 for a triggered run. */
int64_t uh_retry_attempt(const struct uh_run *run);

#endif
