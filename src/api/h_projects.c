/* Projects and their members (SPEC §5). A projets member edits its own
 * project except the guardrail-loosening fields (SPEC §1), which only an
 * admin changes. */
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "backend/backend.h"
#include "util/json.h"

static const char *const project_readonly[] = {"id", "created_at", "updated_at", NULL};

int uh_api_patch_readonly(const json_t *patch, const char *const *readonly, struct uh_error *err)
{
	for (const char *const *k = readonly; *k; k++)
		if (json_object_get(patch, *k))
			return uh_error_set(err, UH_E_INVALID_REQUEST, *k, "'%s' cannot be changed", *k);
	return 0;
}

/* The project's own config checked by its backend, as far as a project
 * alone can be: an unknown or unbuilt backend, and any error about a key
 * the project sets (type, range, server cap). What a job completes (its
 * command, keys the job adds) is checked at job create and at trigger. */
static int check_project_backend(const struct uh_config *cfg, const json_t *fields, struct uh_error *err)
{
	const char *backend = json_string_value(json_object_get(fields, "execution_backend"));
	json_t *pc = json_object_get(fields, "execution_backend_config");
	json_t *copy = json_is_object(pc) ? json_deep_copy(pc) : json_object();
	json_t *names = json_object();
	struct uh_error e = {0};
	int rc = uh_backend_validate(cfg, backend, copy, NULL, names, &e);
	json_decref(copy);
	json_decref(names);
	if (!rc)
		return json_is_object(pc) ? uh_api_check_config_secret_refs(pc, fields, err) : 0;
	const char *pfx = "execution_backend_config.";
	bool own_key = false;
	if (strncmp(e.field, pfx, strlen(pfx)) == 0) {
		char key[128];
		snprintf(key, sizeof(key), "%s", e.field + strlen(pfx));
		key[strcspn(key, ".")] = '\0';
		own_key = json_object_get(pc, key) != NULL;
	}
	if (rc == UH_E_UNSUPPORTED_BACKEND || strcmp(e.field, "execution_backend") == 0 ||
	    strcmp(e.field, "execution_backend_config") == 0 || own_key) {
		if (err)
			*err = e;
		return rc;
	}
	return 0;
}

int uh_h_project_create(struct uh_api_req *r, struct uh_error *err)
{
	json_t *fields = NULL;
	int rc = uh_api_validate_project(r->json, &fields, err);
	if (rc)
		return rc;
	if ((rc = check_project_backend(r->deps->cfg, fields, err))) {
		json_decref(fields);
		return rc;
	}
	struct uh_audit_in a = uh_api_audit(r, "project.create", NULL, fields);
	json_t *p = NULL;
	rc = uh_store_project_create(r->deps->store, fields, &a, &p, err);
	json_decref(fields);
	if (rc)
		return rc;
	return uh_api_answer(r, 201, p);
}

int uh_h_project_list(struct uh_api_req *r, struct uh_error *err)
{
	int limit;
	const char *before;
	const char *name = uh_api_filter(r, "name");
	int rc;
	if ((rc = uh_api_page(r, &limit, &before, err)))
		return rc;
	if (name && !uh_api_name_ok(name))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "name", "'name' is not a valid project name");
	json_t *items = NULL;
	char next[UH_CURSOR_MAX] = "";
	if ((rc = uh_store_project_list(r->deps->store, r->admin ? NULL : r->who.user_id, name, limit, before, &items,
	                                next, err)))
		return rc;
	return uh_api_answer_list(r, items, next);
}

int uh_h_project_get(struct uh_api_req *r, struct uh_error *err)
{
	(void)err;
	json_t *p = r->project;
	r->project = NULL;
	return uh_api_answer(r, 200, p);
}

int uh_h_project_patch(struct uh_api_req *r, struct uh_error *err)
{
	const char *id = r->params[0];
	int rc = uh_api_patch_readonly(r->json, project_readonly, err);
	if (rc)
		return rc;
	json_t *doc = json_deep_copy(r->project);
	for (const char *const *k = project_readonly; *k; k++)
		json_object_del(doc, *k);
	uh_json_merge_patch(doc, r->json);
	/* Who may change a field is decided before whether the value is
	 * good: a projets member learns nothing from a loosening attempt. */
	if (!r->admin && (rc = uh_api_project_loosening(r->project, doc, err))) {
		json_decref(doc);
		return rc;
	}
	json_t *fields = NULL;
	rc = uh_api_validate_project(doc, &fields, err);
	json_decref(doc);
	if (rc)
		return rc;
	if ((rc = check_project_backend(r->deps->cfg, fields, err)))
		goto out;
	json_t *old = json_deep_copy(r->project);
	for (const char *const *k = project_readonly; *k; k++)
		json_object_del(old, *k);
	json_t *changed = uh_api_changed(old, fields);
	json_decref(old);
	if (json_object_size(changed) == 0) {
		json_decref(changed);
		json_decref(fields);
		json_t *p = r->project;
		r->project = NULL;
		return uh_api_answer(r, 200, p);
	}
	struct uh_audit_in a = uh_api_audit(r, "project.update", id, changed);
	json_t *p = NULL;
	rc = uh_store_project_update(r->deps->store, id, fields, &a, &p, err);
	json_decref(changed);
	if (!rc) {
		json_decref(fields);
		return uh_api_answer(r, 200, p);
	}
	rc = uh_api_not_found(rc, err, "project", id);
out:
	json_decref(fields);
	return rc;
}

int uh_h_project_delete(struct uh_api_req *r, struct uh_error *err)
{
	const char *id = r->params[0];
	json_t *details = json_pack("{s:s?}", "name", json_string_value(json_object_get(r->project, "name")));
	struct uh_audit_in a = uh_api_audit(r, "project.archive", id, details);
	int rc = uh_store_project_archive(r->deps->store, id, &a, err);
	json_decref(details);
	if (rc)
		return uh_api_not_found(rc, err, "project", id);
	return uh_api_answer(r, 204, NULL);
}

int uh_h_member_add(struct uh_api_req *r, struct uh_error *err)
{
	const char *pid = r->params[0], *user_id;
	int rc = uh_api_validate_member(r->json, &user_id, err);
	if (rc)
		return rc;
	json_t *u = NULL;
	if ((rc = uh_store_user_get(r->deps->store, user_id, &u, err))) {
		if (rc == UH_E_NOT_FOUND)
			return uh_error_set(err, UH_E_NOT_FOUND, "user_id", "user '%s' not found", user_id);
		return rc;
	}
	json_decref(u);
	json_t *details = json_pack("{s:s}", "user_id", user_id);
	struct uh_audit_in a = uh_api_audit(r, "member.add", pid, details);
	json_t *m = NULL;
	rc = uh_store_member_add(r->deps->store, pid, user_id, &a, &m, err);
	json_decref(details);
	if (rc)
		return uh_api_not_found(rc, err, "project", pid);
	return uh_api_answer(r, 201, m);
}

int uh_h_member_list(struct uh_api_req *r, struct uh_error *err)
{
	int limit;
	const char *before;
	int rc;
	if ((rc = uh_api_page(r, &limit, &before, err)))
		return rc;
	json_t *items = NULL;
	char next[UH_CURSOR_MAX] = "";
	if ((rc = uh_store_member_list(r->deps->store, r->params[0], limit, before, &items, next, err)))
		return uh_api_not_found(rc, err, "project", r->params[0]);
	return uh_api_answer_list(r, items, next);
}

int uh_h_member_delete(struct uh_api_req *r, struct uh_error *err)
{
	const char *pid = r->params[0], *user_id = r->params[1];
	json_t *details = json_pack("{s:s}", "user_id", user_id);
	struct uh_audit_in a = uh_api_audit(r, "member.remove", pid, details);
	int rc = uh_store_member_remove(r->deps->store, pid, user_id, &a, err);
	json_decref(details);
	if (rc)
		return uh_api_not_found(rc, err, "member", user_id);
	return uh_api_answer(r, 204, NULL);
}
