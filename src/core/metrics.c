/* See metrics.h. Fixed arrays of atomic counters. */
#include "core/metrics.h"

#include <stdatomic.h>
#include <string.h>

static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "OTHER"};
#define NMETHODS 6
static const int classes[] = {200, 201, 202, 204, 400, 401, 403, 404, 405, 409, 413, 415, 429, 500, 503, 0};
#define NCLASSES 16
static atomic_ullong http[NMETHODS][NCLASSES];

static const double bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define NBOUNDS 14
static atomic_ullong buckets[NBOUNDS + 1];
static atomic_ullong dispatch_count;
static _Atomic double dispatch_sum;

void uh_metrics_http(const char *method, int status)
{
	int m = NMETHODS - 1;
	for (int i = 0; i < NMETHODS - 1; i++)
		if (method && strcmp(method, methods[i]) == 0)
			m = i;
	int c = NCLASSES - 1;
	for (int i = 0; i < NCLASSES - 1; i++)
		if (classes[i] == status)
			c = i;
	atomic_fetch_add(&http[m][c], 1);
}

void uh_metrics_dispatch(double s)
{
	int b = NBOUNDS;
	for (int i = 0; i < NBOUNDS; i++)
		if (s <= bounds[i]) {
			b = i;
			break;
		}
	atomic_fetch_add(&buckets[b], 1);
	atomic_fetch_add(&dispatch_count, 1);
	double old = atomic_load(&dispatch_sum);
	while (!atomic_compare_exchange_weak(&dispatch_sum, &old, old + s))
		;
}

void uh_metrics_render(struct uh_buf *out)
{
	uh_buf_appends(out, "# HELP uhub_http_requests_total HTTP requests answered.\n"
	                    "# TYPE uhub_http_requests_total counter\n");
	for (int m = 0; m < NMETHODS; m++)
		for (int c = 0; c < NCLASSES; c++) {
			unsigned long long v = atomic_load(&http[m][c]);
			if (!v)
				continue;
			if (classes[c])
				uh_buf_printf(out, "uhub_http_requests_total{method=\"%s\",code=\"%d\"} %llu\n",
				              methods[m], classes[c], v);
			else
				uh_buf_printf(out, "uhub_http_requests_total{method=\"%s\",code=\"other\"} %llu\n",
				              methods[m], v);
		}
	uh_buf_appends(out, "# HELP uhub_dispatch_latency_seconds Time from trigger to the backend start.\n"
	                    "# TYPE uhub_dispatch_latency_seconds histogram\n");
	unsigned long long cum = 0;
	for (int i = 0; i < NBOUNDS; i++) {
		cum += atomic_load(&buckets[i]);
		uh_buf_printf(out, "uhub_dispatch_latency_seconds_bucket{le=\"%g\"} %llu\n", bounds[i], cum);
	}
	cum += atomic_load(&buckets[NBOUNDS]);
	uh_buf_printf(out, "uhub_dispatch_latency_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
	uh_buf_printf(out, "uhub_dispatch_latency_seconds_sum %.6f\n", atomic_load(&dispatch_sum));
	uh_buf_printf(out, "uhub_dispatch_latency_seconds_count %llu\n", atomic_load(&dispatch_count));
}
