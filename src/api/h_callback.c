/* POST /api/v1/runs/{id}/callback (SPEC §3 "webhook", §5): the external
 * system ends a webhook run in `callback` mode. No bearer token: the body is
 * signed with the run's callback token (X-Uhub-Signature). Every refusal
 * answers the same 401 with the same words, and the signature is checked
 * before the store is asked anything, so neither the answer nor its timing
 * tells whether a run id exists. */
#include <string.h>
#include <time.h>

#include "api/internal.h"
#include "util/json.h"
#include "backend/webhook.h"
#include "core/run.h"

static int refuse(struct uh_error *err)
{
	return uh_error_set(err, UH_E_UNAUTHORIZED, NULL, "callback refused");
}

int uh_h_run_callback(struct uh_api_req *r, struct uh_error *err)
{
	const char *id = r->params[0];
	const char *sig = uh_api_header(r, "X-Uhub-Signature");
	if (!sig || !r->body || r->body_len == 0 || r->body_len > UH_WH_CALLBACK_MAX_BODY)
		return refuse(err);
	if (uh_webhook_callback_verify(r->deps->cfg, id, sig, (int64_t)time(NULL), r->body, r->body_len))
		return refuse(err);
	/* The raw bytes were signed; parsed only now (duplicate keys refused),
	 * so a malformed body gets the same 401 as everything else. */
	struct uh_error pe = {0};
	if (!(r->json = uh_json_parse(r->body, r->body_len, true, &pe)) || !uh_webhook_callback_body_ok(r->json))
		return refuse(err);
	struct uh_run *run = NULL;
	if (uh_store_run_get(r->deps->store, id, &run, NULL))
		return refuse(err);
	bool live = run->status == UH_RUN_RUNNING && run->backend && strcmp(run->backend, "webhook") == 0;
	uh_run_free(run);
	if (!live || !r->deps->callback || r->deps->callback(r->deps->arg, id, r->json) != 0)
		return refuse(err);
	return uh_api_answer(r, 200, json_pack("{s:b}", "accepted", 1));
}
