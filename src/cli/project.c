/* `uhub project ...`: projects and their members. */
#include <stdlib.h>

#include "cli/internal.h"

enum { P_ENV = OPT__COMMON, P_BACKEND, P_CONFIG, P_VAULT };

static const struct cli_opt create_opts[] = {
    CLI_COMMON_OPTS,
    {"env", 0, true, false, "ENV: dev, staging or prod (the server's default when absent)"},
    {"backend", 0, true, false, "B: local, docker, webhook, ssh, kubernetes, serverless"},
    {"config", 0, true, false, "JSON: execution_backend_config, a JSON object or @FILE"},
    {"vault-prefix", 0, true, false, "P: the project's vault_prefix (admin)"},
    {NULL},
};
static const struct cli_opt common_opts[] = {CLI_COMMON_OPTS, {NULL}};

static int project_create(struct cli *c, const struct cli_args *a)
{
	json_t *body = json_pack("{s:s}", "name", a->pos[0]), *cfg = NULL;
	const char *v;
	int rc = 0;
	if ((v = cli_get(a, P_ENV)))
		json_object_set_new(body, "environment", json_string(v));
	if ((v = cli_get(a, P_BACKEND)))
		json_object_set_new(body, "execution_backend", json_string(v));
	if ((v = cli_get(a, P_VAULT)))
		json_object_set_new(body, "vault_prefix", json_string(v));
	if ((v = cli_get(a, P_CONFIG))) {
		if ((rc = cli_json_arg(c, "config", v, &cfg)))
			goto out;
		json_object_set_new(body, "execution_backend_config", cfg);
	}
	struct cli_resp r;
	rc = cli_call(c, "POST", "/projects", body, &r);
	if (!rc)
		cli_print_result(c, r.json, "id");
	cli_resp_free(&r);
out:
	json_decref(body);
	return rc;
}

static const struct cli_col project_cols[] = {
    {"ID", "id"}, {"NAME", "name"}, {"ENV", "environment"}, {"BACKEND", "execution_backend"}, {NULL, NULL},
};

static int project_list(struct cli *c, const struct cli_args *a)
{
	return cli_show_list(c, "/projects", project_cols);
}

static int project_show(struct cli *c, const struct cli_args *a)
{
	char *id;
	int rc = cli_project_id(c, a->pos[0], &id);
	if (rc)
		return rc;
	struct uh_buf p = UH_BUF_INIT(8192);
	rc = cli_pathf(&p, "/projects/%s", id) ? cli_usage(c->cmd, "argument too long") : cli_show(c, p.data);
	uh_buf_free(&p);
	free(id);
	return rc;
}

/* The path "/projects/{id}" + suffix for the project named by arg. */
static int project_path(struct cli *c, const char *arg, const char *suffix, struct uh_buf *p)
{
	char *id;
	uh_buf_init(p, 8192);
	int rc = cli_project_id(c, arg, &id);
	if (rc)
		return rc;
	if (cli_pathf(p, "/projects/%s", id) || uh_buf_appends(p, suffix))
		rc = cli_usage(c->cmd, "argument too long");
	free(id);
	return rc;
}

static int member_add(struct cli *c, const struct cli_args *a)
{
	struct uh_buf p;
	int rc = project_path(c, a->pos[0], "/members", &p);
	if (!rc) {
		json_t *body = json_pack("{s:s}", "user_id", a->pos[1]);
		struct cli_resp r;
		rc = cli_call(c, "POST", p.data, body, &r);
		if (!rc && c->json)
			cli_print_result(c, r.json, NULL);
		cli_resp_free(&r);
		json_decref(body);
	}
	uh_buf_free(&p);
	return rc;
}

static const struct cli_col member_cols[] = {
    {"USER_ID", "user_id"},
    {"NAME", "name"},
    {"ROLE", "role"},
    {NULL, NULL},
};

static int member_list(struct cli *c, const struct cli_args *a)
{
	struct uh_buf p;
	int rc = project_path(c, a->pos[0], "/members", &p);
	if (!rc)
		rc = cli_show_list(c, p.data, member_cols);
	uh_buf_free(&p);
	return rc;
}

static int member_remove(struct cli *c, const struct cli_args *a)
{
	struct uh_buf p;
	int rc = project_path(c, a->pos[0], "/members/", &p);
	if (!rc && cli_pathf(&p, "%s", a->pos[1]))
		rc = cli_usage(c->cmd, "argument too long");
	if (!rc) {
		struct cli_resp r;
		rc = cli_call(c, "DELETE", p.data, NULL, &r);
		if (!rc && c->json)
			cli_print_result(c, r.json, NULL);
		cli_resp_free(&r);
	}
	uh_buf_free(&p);
	return rc;
}

const struct cli_cmd uh_cli_project_cmds[] = {
    {"project create", "NAME [--env dev|staging|prod] [--backend B] [--config JSON|@FILE] [--vault-prefix P]",
     "create a project (admin); prints its id", create_opts, 1, 1, false, project_create},
    {"project list", "", "list the projects you can see", common_opts, 0, 0, false, project_list},
    {"project show", "PROJECT", "show a project, given by name or id", common_opts, 1, 1, false, project_show},
    {"project member add", "PROJECT USER_ID", "add a user to a project's members", common_opts, 2, 2, false,
     member_add},
    {"project member list", "PROJECT", "list a project's members", common_opts, 1, 1, false, member_list},
    {"project member remove", "PROJECT USER_ID", "remove a user from a project's members", common_opts, 2, 2, false,
     member_remove},
    {NULL},
};
