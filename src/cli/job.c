/* `uhub job ...`: the jobs of a project. */
#include <stdlib.h>
#include <string.h>

#include "cli/internal.h"

enum { J_BACKEND = OPT__COMMON, J_CONFIG, J_ENV, J_SECRET, J_PARAM, J_CRITICAL, J_MAXC, J_RETRIES };

static const struct cli_opt create_opts[] = {
    CLI_COMMON_OPTS,
    {"backend", 0, true, false, "B: execution backend overriding the project's"},
    {"config", 0, true, false, "JSON: execution_backend_config, a JSON object or @FILE"},
    {"env", 0, true, true, "K=V: an environment variable (readable by every reader: no secrets)"},
    {"secret", 0, true, true, "ENV=REF: env var ENV from secret REF (NAME, shared:NAME, vault:PATH#KEY)"},
    {"param", 0, true, true, "NAME: a parameter runs may set ([A-Z][A-Z0-9_]*)"},
    {"critical", 0, false, false, "runs in prod wait for an approval"},
    {"max-concurrent", 0, true, false, "N: runs of this job at once (default unlimited)"},
    {"retries", 0, true, false, "N: new runs after `error` or `lost` (default 0)"},
    {NULL},
};
static const struct cli_opt common_opts[] = {CLI_COMMON_OPTS, {NULL}};

/* Collect repeated K=V options into an object; usage error on a bad one. */
static int kv_object(struct cli *c, const struct cli_args *a, int opt, const char *name, json_t *obj)
{
	for (int i = 0; i < a->nset; i++) {
		if (a->set[i].opt != opt)
			continue;
		char *k, *v;
		if (cli_split_kv(a->set[i].value, &k, &v))
			return cli_usage(c->cmd, "--%s wants NAME=VALUE, not '%s'", name, a->set[i].value);
		int rc = 0;
		if (!cli_env_name_ok(k))
			rc = cli_usage(c->cmd, "--%s: '%s' is not a variable name", name, k);
		else if (json_object_get(obj, k))
			rc = cli_usage(c->cmd, "--%s: '%s' given twice", name, k);
		else
			json_object_set_new(obj, k, json_string(v));
		free(k);
		free(v);
		if (rc)
			return rc;
	}
	return 0;
}

static int job_create(struct cli *c, const struct cli_args *a)
{
	json_t *body = json_pack("{s:s}", "name", a->pos[1]);
	json_t *env = json_object(), *secrets = json_object(), *params = json_array(), *cfg;
	char *pid = NULL;
	const char *v;
	long long n;
	int rc;

	if ((rc = kv_object(c, a, J_ENV, "env", env)) || (rc = kv_object(c, a, J_SECRET, "secret", secrets)))
		goto out;
	for (int i = 0; i < a->nset; i++) {
		if (a->set[i].opt != J_PARAM)
			continue;
		if (!cli_param_name_ok(a->set[i].value)) {
			rc = cli_usage(c->cmd, "--param: '%s' is not a parameter name ([A-Z][A-Z0-9_]*)",
			               a->set[i].value);
			goto out;
		}
		json_array_append_new(params, json_string(a->set[i].value));
	}
	if (a->dashdash) {
		if (a->nrest == 0) {
			rc = cli_usage(c->cmd, "nothing after '--': give the command to run");
			goto out;
		}
		if (a->rest[0][0] != '/') {
			rc = cli_usage(c->cmd, "the command's argv[0] must be an absolute path, not '%s'", a->rest[0]);
			goto out;
		}
		json_t *argv = json_array();
		for (int i = 0; i < a->nrest; i++)
			json_array_append_new(argv, json_string(a->rest[i]));
		json_object_set_new(body, "command", argv);
	}
	if ((v = cli_get(a, J_BACKEND)))
		json_object_set_new(body, "execution_backend", json_string(v));
	if ((v = cli_get(a, J_CONFIG))) {
		if ((rc = cli_json_arg(c, "config", v, &cfg)))
			goto out;
		json_object_set_new(body, "execution_backend_config", cfg);
	}
	if (json_object_size(env))
		json_object_set(body, "env", env);
	if (json_object_size(secrets))
		json_object_set(body, "secrets", secrets);
	if (json_array_size(params))
		json_object_set(body, "parameters", params);
	if (cli_has(a, J_CRITICAL))
		json_object_set_new(body, "critical", json_true());
	if ((v = cli_get(a, J_MAXC))) {
		if ((rc = cli_int_arg(c, "max-concurrent", v, 1, 1000000, &n)))
			goto out;
		json_object_set_new(body, "max_concurrent", json_integer(n));
	}
	if ((v = cli_get(a, J_RETRIES))) {
		if ((rc = cli_int_arg(c, "retries", v, 0, 100, &n)))
			goto out;
		json_object_set_new(body, "retries", json_integer(n));
	}
	if ((rc = cli_project_id(c, a->pos[0], &pid)))
		goto out;
	struct uh_buf p = UH_BUF_INIT(8192);
	if (cli_pathf(&p, "/projects/%s/jobs", pid)) {
		rc = cli_usage(c->cmd, "argument too long");
	} else {
		struct cli_resp r;
		rc = cli_call(c, "POST", p.data, body, &r);
		if (!rc)
			cli_print_result(c, r.json, "id");
		cli_resp_free(&r);
	}
	uh_buf_free(&p);
out:
	free(pid);
	json_decref(env);
	json_decref(secrets);
	json_decref(params);
	json_decref(body);
	return rc;
}

static const struct cli_col job_cols[] = {
    {"ID", "id"}, {"NAME", "name"}, {"BACKEND", "execution_backend"}, {"CRITICAL", "critical"}, {NULL, NULL},
};

static int job_list(struct cli *c, const struct cli_args *a)
{
	char *pid;
	int rc = cli_project_id(c, a->pos[0], &pid);
	if (rc)
		return rc;
	struct uh_buf p = UH_BUF_INIT(8192);
	rc = cli_pathf(&p, "/projects/%s/jobs", pid) ? cli_usage(c->cmd, "argument too long")
	                                             : cli_show_list(c, p.data, job_cols);
	uh_buf_free(&p);
	free(pid);
	return rc;
}

static int job_show(struct cli *c, const struct cli_args *a)
{
	char *id;
	int rc = cli_job_id(c, a->pos[0], &id);
	if (rc)
		return rc;
	struct uh_buf p = UH_BUF_INIT(8192);
	rc = cli_pathf(&p, "/jobs/%s", id) ? cli_usage(c->cmd, "argument too long") : cli_show(c, p.data);
	uh_buf_free(&p);
	free(id);
	return rc;
}

const struct cli_cmd uh_cli_job_cmds[] = {
    {"job create",
     "PROJECT NAME [--backend B] [--config JSON|@FILE] [--env K=V]... [--secret ENV=REF]... [--param NAME]... "
     "[--critical] [--max-concurrent N] [--retries N] [-- ARGV...]",
     "create a job in a project; ARGV is its command (argv[0] absolute; none for webhook and serverless)", create_opts,
     2, 2, true, job_create},
    {"job list", "PROJECT", "list a project's jobs", common_opts, 1, 1, false, job_list},
    {"job show", "JOB", "show a job, given by id or as PROJECT/JOB", common_opts, 1, 1, false, job_show},
    {NULL},
};
