/* The guardrails the supervisor applies (SPEC §4): just before a queued run
 * is dispatched (the exception that let Local run in prod is still live,
 * the approval still covers what will run), and the expiry of runs left
 * waiting for an approval. Loop thread. */
#ifndef UH_DAEMON_GUARD_H
#define UH_DAEMON_GUARD_H

#include "core/config.h"
#include "core/run.h"
#include "store/store.h"
#include "util/error.h"

enum uh_guard_verdict {
	UH_GUARD_GO,     /* dispatch it */
	UH_GUARD_REJECT, /* end it rejected: err->field is the reason, err->message the words */
	UH_GUARD_VOIDED, /* its approval was void: it went back to pending_approval (audited) */
	UH_GUARD_SKIP,   /* it changed meanwhile: leave it */
};

enum uh_guard_verdict uh_guard_dispatch_check(struct uh_store *s, const struct uh_config *cfg, const struct uh_run *run,
                                              struct uh_error *err);

/* End every run pending longer than guardrails.approval_ttl_seconds:
 * rejected, approval_expired (audited). Answers how many are still pending. */
size_t uh_guard_sweep_expired(struct uh_store *s, const struct uh_config *cfg);

#endif
