/* Retention (see retention.h). One batch of at most UH_RETENTION_BATCH runs
 * per timer callback: while batches come back full the timer fires again at
 * once (the loop serves other events in between), then waits
 * UH_RETENTION_INTERVAL_MS. Each batch is its own transaction with its
 * `run.prune` event, followed by an incremental vacuum. */
#include "daemon/retention.h"

#include <inttypes.h>
#include <stdlib.h>

#include "util/log.h"
#include "util/time.h"

#define VACUUM_PAGES 4096

struct uh_retention {
	uv_timer_t timer;
	struct uh_store *store;
	const struct uh_config *const *cfg;
};

static void prune_cb(uv_timer_t *t)
{
	struct uh_retention *r = t->data;
	int64_t days = (*r->cfg)->retention_days;
	int64_t before = uh_now_us() - days * 86400LL * 1000000LL;
	int64_t n = 0;
	struct uh_error err = {0};
	if (uh_store_runs_prune(r->store, before, UH_RETENTION_BATCH, &n, &err)) {
		uh_errorf("retention: pruning runs finished over %" PRId64 " days ago failed: %s", days, err.message);
		n = 0;
	} else if (n > 0) {
		uh_info("retention: pruned %" PRId64 " runs finished over %" PRId64 " days ago", n, days);
		if (uh_store_incremental_vacuum(r->store, VACUUM_PAGES, &err))
			uh_warn("retention: incremental vacuum failed: %s", err.message);
	}
	uv_timer_start(&r->timer, prune_cb, n >= UH_RETENTION_BATCH ? 0 : UH_RETENTION_INTERVAL_MS, 0);
}

struct uh_retention *uh_retention_start(uv_loop_t *loop, struct uh_store *store, const struct uh_config *const *cfg)
{
	struct uh_retention *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->store = store;
	r->cfg = cfg;
	uv_timer_init(loop, &r->timer);
	r->timer.data = r;
	uv_timer_start(&r->timer, prune_cb, UH_RETENTION_FIRST_MS, 0);
	return r;
}

void uh_retention_stop(struct uh_retention *r)
{
	if (r)
		uv_timer_stop(&r->timer);
}

void uh_retention_free(struct uh_retention *r)
{
	free(r);
}
