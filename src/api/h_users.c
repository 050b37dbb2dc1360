/* Identities (SPEC §5): users and their tokens. A token is shown once, at
 * creation; the store keeps only its SHA-256. */
#include <string.h>

#include "api/internal.h"
#include "util/buf.h"
#include "util/crypto.h"
#include "util/json.h"
#include "util/time.h"

int uh_h_user_create(struct uh_api_req *r, struct uh_error *err)
{
	const char *name, *role;
	int rc = uh_api_validate_user_create(r->json, &name, &role, err);
	if (rc)
		return rc;
	json_t *details = json_pack("{s:s,s:s}", "name", name, "role", role);
	struct uh_audit_in a = uh_api_audit(r, "user.create", NULL, details);
	json_t *u = NULL;
	rc = uh_store_user_create(r->deps->store, name, role, &a, &u, err);
	json_decref(details);
	if (rc)
		return rc;
	return uh_api_answer(r, 201, u);
}

int uh_h_user_list(struct uh_api_req *r, struct uh_error *err)
{
	int limit;
	const char *before;
	int rc;
	if ((rc = uh_api_page(r, &limit, &before, err)))
		return rc;
	json_t *items = NULL;
	char next[UH_CURSOR_MAX] = "";
	if ((rc = uh_store_user_list(r->deps->store, limit, before, &items, next, err)))
		return rc;
	return uh_api_answer_list(r, items, next);
}

int uh_h_user_patch(struct uh_api_req *r, struct uh_error *err)
{
	const char *role;
	int disabled;
	int rc = uh_api_validate_user_patch(r->json, &role, &disabled, err);
	if (rc)
		return rc;
	const char *id = r->params[0];
	/* An admin cannot lock itself out: another admin has to do it. */
	if (strcmp(id, r->who.user_id) == 0) {
		if (role && strcmp(role, "admin") != 0)
			return uh_error_set(err, UH_E_CONFLICT, "role", "an admin cannot take its own admin role away");
		if (disabled == 1)
			return uh_error_set(err, UH_E_CONFLICT, "disabled", "an admin cannot disable itself");
	}
	json_t *details = json_object();
	if (role)
		json_object_set_new(details, "role", json_string(role));
	if (disabled >= 0)
		json_object_set_new(details, "disabled", json_boolean(disabled));
	struct uh_audit_in a = uh_api_audit(r, "user.update", id, details);
	json_t *u = NULL;
	rc = uh_store_user_update(r->deps->store, id, role, disabled, &a, &u, err);
	json_decref(details);
	if (rc)
		return uh_api_not_found(rc, err, "user", id);
	return uh_api_answer(r, 200, u);
}

int uh_h_token_create(struct uh_api_req *r, struct uh_error *err)
{
	int64_t expires_at = 0;
	int rc = uh_api_validate_token_create(r->json, uh_now_us(), &expires_at, err);
	if (rc)
		return rc;
	const char *user_id = r->params[0];
	char tok[64], hash[65], id[UH_ID_MAX] = "";
	uh_token_new(tok);
	uh_sha256_hex(tok, strlen(tok), hash);
	json_t *details = json_pack("{s:s,s:o}", "user_id", user_id, "expires_at", uh_json_time(expires_at));
	struct uh_audit_in a = uh_api_audit(r, "token.create", user_id, details);
	rc = uh_store_token_create(r->deps->store, user_id, hash, expires_at, &a, id, err);
	json_decref(details);
	if (rc) {
		uh_memzero(tok, sizeof(tok));
		return uh_api_not_found(rc, err, "user", user_id);
	}
	json_t *out = json_pack("{s:s,s:s,s:s,s:o}", "id", id, "token", tok, "user_id", user_id, "expires_at",
	                        uh_json_time(expires_at));
	uh_memzero(tok, sizeof(tok));
	return uh_api_answer(r, 201, out);
}

int uh_h_token_delete(struct uh_api_req *r, struct uh_error *err)
{
	const char *id = r->params[0];
	json_t *details = json_pack("{s:s?}", "user_id", json_string_value(json_object_get(r->object, "user_id")));
	struct uh_audit_in a = uh_api_audit(r, "token.revoke", id, details);
	int rc = uh_store_token_revoke(r->deps->store, id, &a, err);
	json_decref(details);
	if (rc)
		return uh_api_not_found(rc, err, "token", id);
	return uh_api_answer(r, 204, NULL);
}
