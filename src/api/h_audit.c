/* The audit trail (SPEC §5): events, newest first, and the chain check. */
#include <string.h>

#include "api/internal.h"
#include "util/json.h"
#include "util/log.h"
#include "util/time.h"

static int text_filter(const char *s, const char *field, struct uh_error *err)
{
	if (!s)
		return 0;
	size_t n = strlen(s);
	if (n == 0 || n > 128)
		return uh_error_set(err, UH_E_INVALID_REQUEST, field, "'%s' must be 1 to 128 characters", field);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return uh_error_set(err, UH_E_INVALID_REQUEST, field, "'%s' must be an id", field);
	return 0;
}

int uh_h_audit_list(struct uh_api_req *r, struct uh_error *err)
{
	int limit;
	const char *before;
	const char *since = uh_api_filter(r, "since"), *actor = uh_api_filter(r, "actor");
	const char *target = uh_api_filter(r, "target");
	int64_t t;
	int rc;
	if ((rc = uh_api_page(r, &limit, &before, err)) || (rc = text_filter(actor, "actor", err)) ||
	    (rc = text_filter(target, "target", err)))
		return rc;
	if (since && uh_time_parse(since, &t))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "since",
		                    "'since' must be an RFC 3339 time such as 2030-01-31T12:00:00Z");
	json_t *items = NULL;
	char next[UH_CURSOR_MAX] = "";
	if ((rc = uh_store_audit_list(r->deps->store, since, actor, target, limit, before, &items, next, err)))
		return rc;
	return uh_api_answer_list(r, items, next);
}

int uh_h_audit_verify(struct uh_api_req *r, struct uh_error *err)
{
	json_t *out = NULL;
	int rc = uh_store_audit_verify(r->deps->store, &out, err);
	if (rc)
		return rc;
	/* Who checked, and what they saw, is itself on the record. */
	json_t *details =
	    json_pack("{s:O?,s:O?}", "ok", json_object_get(out, "ok"), "events", json_object_get(out, "events"));
	struct uh_audit_in a = uh_api_audit(r, "audit.verify", NULL, details);
	struct uh_error e = {0};
	if (uh_store_audit_append(r->deps->store, &a, &e))
		uh_warn("api: cannot audit an audit check: %s", e.message);
	json_decref(details);
	return uh_api_answer(r, 200, out);
}
