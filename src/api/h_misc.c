/* The routes that are not about one kind of object: liveness, metrics, the
 * OpenAPI document and "who am I". */
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "core/metrics.h"
#include "util/json.h"
#include "util/log.h"

#define METRICS_MAX (4u << 20)

int uh_h_healthz(struct uh_api_req *r, struct uh_error *err)
{
	(void)err;
	return uh_api_answer(r, 200, json_pack("{s:s}", "status", "ok"));
}

/* A Prometheus label value: backslash, quote and newline escaped. */
static void label(struct uh_buf *b, const char *v)
{
	for (; v && *v; v++) {
		if (*v == '\\' || *v == '"')
			uh_buf_printf(b, "\\%c", *v);
		else if (*v == '\n')
			uh_buf_appends(b, "\\n");
		else
			uh_buf_append(b, v, 1);
	}
}

static void run_count(void *arg, const char *backend, const char *status, int64_t n)
{
	struct uh_buf *b = arg;
	uh_buf_appends(b, "uhub_runs{backend=\"");
	label(b, backend);
	uh_buf_appends(b, "\",status=\"");
	label(b, status);
	uh_buf_printf(b, "\"} %lld\n", (long long)n);
}

int uh_h_metrics(struct uh_api_req *r, struct uh_error *err)
{
	struct uh_buf b = UH_BUF_INIT(METRICS_MAX);
	uh_metrics_render(&b);
	uh_buf_appends(&b, "# HELP uhub_runs Runs by backend and status.\n# TYPE uhub_runs gauge\n");
	struct uh_error e = {0};
	if (uh_store_run_counts(r->deps->store, run_count, &b, &e))
		uh_warn("api: /metrics: run counts: %s", e.message);
	size_t len = b.len;
	char *data = uh_buf_take(&b);
	if (!data)
		data = strdup("");
	if (!data)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	r->resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
	if (!r->resp) {
		free(data);
		return uh_error_set(err, UH_E_INTERNAL, NULL, "cannot create the response");
	}
	MHD_add_response_header(r->resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	MHD_add_response_header(r->resp, "Cache-Control", "no-store");
	r->status = 200;
	return 0;
}

int uh_h_openapi(struct uh_api_req *r, struct uh_error *err)
{
	const char *doc = r->api->openapi_text;
	r->resp = MHD_create_response_from_buffer(strlen(doc), (void *)doc, MHD_RESPMEM_PERSISTENT);
	if (!r->resp)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "cannot create the response");
	MHD_add_response_header(r->resp, "Content-Type", "application/json");
	MHD_add_response_header(r->resp, "X-Content-Type-Options", "nosniff");
	r->status = 200;
	return 0;
}

int uh_h_me(struct uh_api_req *r, struct uh_error *err)
{
	json_t *u = NULL;
	int rc = uh_store_user_get(r->deps->store, r->who.user_id, &u, err);
	if (rc)
		return uh_api_not_found(rc, err, "user", r->who.user_id);
	json_object_set_new(u, "token_id", json_string(r->who.token_id));
	return uh_api_answer(r, 200, u);
}
