/* The built-in secret store's routes (SPEC §5): a project's secrets
 * (projets members, admins) and shared secrets granted to listed projects
 * (admin), plus the key rotation. Values are write-only: they are sealed
 * here (secret/secret.h) and only the sealed blob reaches the store. No
 * answer, error message, audit event or log line carries a value; the
 * request body of these routes sits in a buffer wiped on release
 * (route.secret_body), and the parsed copy is wiped once sealed. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "secret/secret.h"
#include "util/buf.h"
#include "util/json.h"
#include "util/log.h"

/* Puts seal and store under the read side, a rotation runs under the write
 * side: a value sealed under the old key cannot land after the re-seal
 * transaction, when that key is gone. */
static pthread_rwlock_t rotation_lock = PTHREAD_RWLOCK_INITIALIZER;

/* Wipe the value's bytes inside the parsed body: jansson frees without
 * wiping. The string is the body's own heap copy. */
static void wipe_json_string(json_t *v)
{
	if (json_is_string(v))
		uh_memzero((char *)json_string_value(v), json_string_length(v));
}

static int check_value(const json_t *in, const char **value, size_t *len, struct uh_error *err)
{
	json_t *v = json_object_get(in, "value");
	if (!v)
		return uh_error_set(err, UH_E_INVALID_REQUEST, "value", "'value' is required");
	if (!json_is_string(v))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "value", "'value' must be a string");
	*value = json_string_value(v);
	*len = json_string_length(v);
	if (memchr(*value, '\0', *len))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "value", "'value' may not hold a NUL byte");
	if (*len < UH_SECRET_MIN_LEN)
		return uh_error_set(err, UH_E_INVALID_REQUEST, "value",
		                    "'value' must be at least %d bytes: a shorter value cannot be masked in logs",
		                    UH_SECRET_MIN_LEN);
	if (*len > UH_SECRET_MAX_LEN)
		return uh_error_set(err, UH_E_INVALID_REQUEST, "value", "'value' must be at most %d bytes",
		                    UH_SECRET_MAX_LEN);
	return 0;
}

static int check_projects(const json_t *projects, struct uh_error *err)
{
	if (!projects)
		return 0;
	if (!json_is_array(projects))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "projects",
		                    "'projects' must be an array of project ids");
	if (json_array_size(projects) > 1000)
		return uh_error_set(err, UH_E_INVALID_REQUEST, "projects", "'projects' lists more than 1000 projects");
	size_t i;
	json_t *v;
	json_array_foreach(projects, i, v)
	{
		if (!json_is_string(v) || !uh_api_id_ok(json_string_value(v), json_string_length(v)))
			return uh_error_set(err, UH_E_INVALID_REQUEST, "projects",
			                    "'projects' must be an array of project ids");
	}
	return 0;
}

static int check_name(const char *name, struct uh_error *err)
{
	if (!uh_api_name_ok(name))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "name",
		                    "a secret name is 1 to 63 characters of [A-Za-z0-9._-], starting with a letter or "
		                    "digit");
	return 0;
}

/* Seal the body's value for (scope, name) and store it; answers 201 when
 * the name was new, 200 when replaced, with the secret's metadata. */
static int put(struct uh_api_req *r, const char *scope, const char *name, const char *const *keys, bool shared,
               struct uh_error *err)
{
	const char *value = NULL;
	size_t len = 0;
	const json_t *projects = shared ? json_object_get(r->json, "projects") : NULL;
	int rc;
	if ((rc = check_name(name, err)) || (rc = uh_json_only_keys(r->json, keys, NULL, err)) ||
	    (rc = check_value(r->json, &value, &len, err)) || (rc = check_projects(projects, err))) {
		wipe_json_string(json_object_get(r->json, "value"));
		return rc;
	}
	unsigned char *blob = NULL;
	size_t blob_len = 0;
	bool created = false;
	pthread_rwlock_rdlock(&rotation_lock);
	rc = uh_secret_seal(scope, name, value, len, &blob, &blob_len, err);
	wipe_json_string(json_object_get(r->json, "value"));
	if (!rc) {
		struct uh_audit_in a = uh_api_audit(r, "secret.put", shared ? UH_SECRET_SCOPE_SHARED : scope, NULL);
		rc = uh_store_secret_put(r->deps->store, scope, name, blob, blob_len, projects, r->who.user_id, &a,
		                         &created, err);
	}
	pthread_rwlock_unlock(&rotation_lock);
	free(blob);
	if (rc)
		return shared ? rc : uh_api_not_found(rc, err, "project", scope);
	json_t *meta = NULL;
	if ((rc = uh_store_secret_meta(r->deps->store, scope, name, &meta, err)))
		return rc;
	return uh_api_answer(r, created ? 201 : 200, meta);
}

static int del(struct uh_api_req *r, const char *scope, const char *name, struct uh_error *err)
{
	int rc;
	if ((rc = check_name(name, err)))
		return rc;
	bool shared = strcmp(scope, UH_SECRET_SCOPE_SHARED) == 0;
	struct uh_audit_in a = uh_api_audit(r, "secret.delete", shared ? UH_SECRET_SCOPE_SHARED : scope, NULL);
	if ((rc = uh_store_secret_delete(r->deps->store, scope, name, &a, err)))
		return uh_api_not_found(rc, err, "secret", name);
	return uh_api_answer(r, 204, NULL);
}

static int list(struct uh_api_req *r, const char *scope, struct uh_error *err)
{
	int limit;
	const char *before;
	int rc;
	if ((rc = uh_api_page(r, &limit, &before, err)))
		return rc;
	json_t *items = NULL;
	char next[UH_CURSOR_MAX] = "";
	if ((rc = uh_store_secret_list(r->deps->store, scope, limit, before, &items, next, err)))
		return rc;
	return uh_api_answer_list(r, items, next);
}

int uh_h_secret_put(struct uh_api_req *r, struct uh_error *err)
{
	static const char *const keys[] = {"value", NULL};
	return put(r, r->params[0], r->params[1], keys, false, err);
}

int uh_h_secret_delete(struct uh_api_req *r, struct uh_error *err)
{
	return del(r, r->params[0], r->params[1], err);
}

int uh_h_secret_list(struct uh_api_req *r, struct uh_error *err)
{
	return list(r, r->params[0], err);
}

int uh_h_shared_secret_put(struct uh_api_req *r, struct uh_error *err)
{
	static const char *const keys[] = {"value", "projects", NULL};
	return put(r, UH_SECRET_SCOPE_SHARED, r->params[0], keys, true, err);
}

int uh_h_shared_secret_delete(struct uh_api_req *r, struct uh_error *err)
{
	return del(r, UH_SECRET_SCOPE_SHARED, r->params[0], err);
}

int uh_h_shared_secret_list(struct uh_api_req *r, struct uh_error *err)
{
	return list(r, UH_SECRET_SCOPE_SHARED, err);
}

/* The re-seal of one row. A row that opens under neither key (altered in
 * the database, or copied to another scope or name) is useless to anyone
 * already: it is kept as it is and reported, so that one bad row cannot
 * block a rotation, which may be the answer to a stolen key. */
struct rotation {
	json_t *details; /* the audit event's: {"count", "unreadable": [{"scope","name"}]} */
	int64_t resealed;
};

static int reseal_row(void *arg, const char *scope, const char *name, const unsigned char *blob, size_t blob_len,
                      unsigned char **out, size_t *out_len, struct uh_error *err)
{
	struct rotation *rot = arg;
	bool unreadable = false;
	int rc = uh_secret_rotate_reseal(scope, name, blob, blob_len, out, out_len, &unreadable, err);
	if (!rc && unreadable) {
		uh_warn("api: key rotation: secret '%s' of scope '%s' does not open under any key; left as it is", name,
		        scope);
		json_array_append_new(json_object_get(rot->details, "unreadable"),
		                      json_pack("{s:s,s:s}", "scope", scope, "name", name));
	} else if (!rc) {
		rot->resealed++;
		json_object_set_new(rot->details, "count", json_integer((json_int_t)rot->resealed));
	}
	return rc;
}

int uh_h_secret_rotate(struct uh_api_req *r, struct uh_error *err)
{
	int rc;
	if ((rc = uh_api_validate_empty(r->json, err)))
		return rc;
	int64_t rows = 0;
	/* Filled row by row inside the store's transaction, which appends the
	 * event after the last row. */
	struct rotation rot = {.details = json_pack("{s:I,s:[]}", "count", (json_int_t)0, "unreadable")};
	if (!rot.details)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	pthread_rwlock_wrlock(&rotation_lock);
	rc = uh_secret_rotate_begin(err);
	if (!rc) {
		struct uh_audit_in a = uh_api_audit(r, "secret.rotate_key", NULL, rot.details);
		rc = uh_store_secret_reseal(r->deps->store, reseal_row, &rot, &a, &rows, err);
		struct uh_error end_err = {0};
		int end = uh_secret_rotate_end(rc == 0, &end_err);
		if (!rc && end) {
			rc = end;
			if (err)
				*err = end_err;
		}
	}
	pthread_rwlock_unlock(&rotation_lock);
	if (rc) {
		json_decref(rot.details);
		return rc;
	}
	json_t *out = json_pack("{s:I,s:O}", "resealed", (json_int_t)rot.resealed, "unreadable",
	                        json_object_get(rot.details, "unreadable"));
	json_decref(rot.details);
	return uh_api_answer(r, 200, out);
}
