/* Resolving a run's secrets at run start (see secrets.h). */
#include "daemon/secrets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/jobspec.h"
#include "secret/vault.h"

bool uh_run_needs_secrets(const json_t *secrets, const json_t *config)
{
	if (json_object_size(secrets) > 0)
		return true;
	json_t *refs = json_object();
	struct uh_error e = {0};
	bool need = refs && (uh_config_secret_refs(config, refs, &e) != 0 || json_object_size(refs) > 0);
	json_decref(refs);
	return need;
}

static int unavailable(struct uh_error *err, const char *what, const char *ref, const char *why)
{
	return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "secret reference '%s' (%s) cannot be resolved: %s", ref, what,
	                    why);
}

/* One reference to a value in locked memory. `what` names the env var or
 * field for messages. */
static int resolve_one(struct uh_store *st, struct uh_vault *vault, const char *project_id, const json_t *project,
                       const char *what, const char *ref, struct uh_secret_value **out, struct uh_error *err)
{
	struct uh_error e = {0};
	unsigned char *blob = NULL;
	size_t blen = 0;
	/* The rules of save and trigger, against the project as it is now (an
	 * admin may have narrowed its vault_prefix since). */
	json_t *jref = json_string(ref);
	int rc = jref ? uh_api_check_secret_ref(what, jref, project, &e) : UH_E_INTERNAL;
	json_decref(jref);
	if (rc)
		return unavailable(err, what, ref, e.message[0] ? e.message : "out of memory");
	if (strncmp(ref, "vault:", 6) == 0) {
		const char *path = ref + 6, *hash = strchr(path, '#');
		if (!vault)
			return unavailable(err, what, ref, "Vault is not configured (secrets.vault.addr)");
		char *p = strndup(path, (size_t)(hash - path));
		if (!p)
			return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
		rc = uh_vault_read(vault, p, hash + 1, out, &e);
		free(p);
		if (rc)
			return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "%s (%s)", e.message, what);
		return 0;
	}
	const char *scope = project_id, *name = ref;
	if (strncmp(ref, "shared:", 7) == 0) {
		bool granted = false;
		name = ref + 7;
		scope = UH_SECRET_SCOPE_SHARED;
		if ((rc = uh_store_secret_granted(st, name, project_id, &granted, &e)))
			return unavailable(err, what, ref, e.message);
		if (!granted)
			return unavailable(err, what, ref, "no such shared secret is granted to the project");
	}
	rc = uh_store_secret_get(st, scope, name, &blob, &blen, &e);
	if (rc == UH_E_NOT_FOUND)
		return unavailable(err, what, ref, "no such secret");
	if (rc)
		return unavailable(err, what, ref, e.message);
	rc = uh_secret_open(scope, name, blob, blen, out, &e);
	free(blob);
	if (rc)
		return unavailable(err, what, ref, e.message);
	return 0;
}

static char *keep_name(struct uh_run_secrets *rs, const char *s)
{
	char *d = strdup(s);
	if (d)
		rs->names[rs->n_names++] = d;
	return d;
}

static void add_mask(struct uh_run_secrets *rs, const struct uh_secret_value *v)
{
	for (size_t i = 0; i < rs->n_mask; i++)
		if (rs->mask[i].len == v->len && memcmp(rs->mask[i].data, v->data, v->len) == 0)
			return;
	rs->mask[rs->n_mask++] = (struct uh_mask_value){v->data, v->len};
}

int uh_run_secrets_resolve(struct uh_store *st, struct uh_vault *vault, const char *project_id, const json_t *secrets,
                           const json_t *config, struct uh_run_secrets **out, struct uh_error *err)
{
	*out = NULL;
	json_t *refs = json_object(), *project = NULL;
	struct uh_run_secrets *rs = calloc(1, sizeof(*rs));
	int rc = 0;
	if (!refs || !rs) {
		rc = uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
		goto out;
	}
	if ((rc = uh_config_secret_refs(config, refs, err))) {
		rc = UH_E_UNAVAILABLE;
		goto out;
	}
	size_t n_env = json_object_size(secrets), n_cfg = json_object_size(refs), total = n_env + n_cfg;
	rs->env = calloc(n_env + 1, sizeof(*rs->env));
	rs->cfg = calloc(n_cfg + 1, sizeof(*rs->cfg));
	rs->mask = calloc(total + 1, sizeof(*rs->mask));
	rs->vals = calloc(total + 1, sizeof(*rs->vals));
	rs->names = calloc(total + 1, sizeof(*rs->names));
	if (!rs->env || !rs->cfg || !rs->mask || !rs->vals || !rs->names) {
		rc = uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
		goto out;
	}
	struct uh_error pe = {0};
	if (uh_store_project_get(st, project_id, &project, &pe)) {
		rc = uh_error_set(err, UH_E_UNAVAILABLE, NULL, "the run's project cannot be read: %s", pe.message);
		goto out;
	}
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)secrets, k, v)
	{
		char what[160];
		snprintf(what, sizeof(what), "secrets.%s", k);
		struct uh_secret_value *val = NULL;
		if (!json_is_string(v)) {
			rc = uh_error_set(err, UH_E_UNAVAILABLE, NULL, "secret reference of env %s is not a string", k);
			goto out;
		}
		if ((rc = resolve_one(st, vault, project_id, project, what, json_string_value(v), &val, err)))
			goto out;
		rs->vals[rs->n_vals++] = val;
		const char *name = keep_name(rs, k);
		if (!name) {
			rc = uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
			goto out;
		}
		rs->env[rs->n_env++] = (struct uh_secret_env){name, val->data, val->len};
		add_mask(rs, val);
	}
	json_object_foreach(refs, k, v)
	{
		const char *ref = json_string_value(v);
		bool seen = false;
		for (size_t i = 0; i < rs->n_cfg; i++)
			seen = seen || strcmp(rs->cfg[i].name, ref) == 0;
		if (seen)
			continue;
		struct uh_secret_value *val = NULL;
		if ((rc = resolve_one(st, vault, project_id, project, k, ref, &val, err)))
			goto out;
		rs->vals[rs->n_vals++] = val;
		const char *name = keep_name(rs, ref);
		if (!name) {
			rc = uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
			goto out;
		}
		rs->cfg[rs->n_cfg++] = (struct uh_secret_env){name, val->data, val->len};
		add_mask(rs, val);
	}
out:
	json_decref(refs);
	json_decref(project);
	if (rc) {
		uh_run_secrets_free(rs);
		return rc;
	}
	*out = rs;
	return 0;
}

void uh_run_secrets_free(struct uh_run_secrets *rs)
{
	if (!rs)
		return;
	for (size_t i = 0; i < rs->n_vals; i++)
		uh_secret_value_free(rs->vals[i]);
	for (size_t i = 0; i < rs->n_names; i++)
		free(rs->names[i]);
	free(rs->vals);
	free(rs->names);
	free(rs->env);
	free(rs->cfg);
	free(rs->mask);
	free(rs);
}
