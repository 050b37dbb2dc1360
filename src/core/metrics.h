/* Process-wide counters for /metrics (Prometheus text). Labels never carry
 * project or job names (SPEC §5). Thread-safe, lock-free on the hot path. */
#ifndef UH_CORE_METRICS_H
#define UH_CORE_METRICS_H

#include "util/buf.h"

/* One HTTP request answered: method (GET, POST, ...), status code. */
void uh_metrics_http(const char *method, int status);
/* Trigger-to-start latency of one run, in seconds. */
void uh_metrics_dispatch(double seconds);
/* Append uhub_http_requests_total and uhub_dispatch_latency_seconds. */
void uh_metrics_render(struct uh_buf *out);

#endif
