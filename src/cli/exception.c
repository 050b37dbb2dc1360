/* `uhub exception ...`: an admin's written derogations that let the Local
 * backend run in prod for one project or job (SPEC §4). */
#include <stdlib.h>
#include <string.h>

#include "cli/internal.h"
#include "util/time.h"

enum { E_JOB = OPT__COMMON, E_REASON, E_EXPIRES };

static const struct cli_opt create_opts[] = {
    CLI_COMMON_OPTS,
    {"job", 0, true, false, "JOB: only this job (its name in PROJECT, its id, or PROJECT/JOB)"},
    {"reason", 0, true, false, "TEXT: why (required)"},
    {"expires", 0, true, false, "WHEN: RFC 3339 time or a duration from now (12h, 7d, 2w) (required)"},
    {NULL},
};
static const struct cli_opt common_opts[] = {CLI_COMMON_OPTS, {NULL}};

/* A job of project pid: a name in it first, else a reference cli_job_id takes. */
static int job_in_project(struct cli *c, const char *pid, const char *arg, char **id)
{
	*id = NULL;
	if (!strchr(arg, '/')) {
		struct uh_buf p = UH_BUF_INIT(8192);
		int rc = cli_pathf(&p, "/projects/%s/jobs?name=%s", pid, arg) ? cli_usage(c->cmd, "argument too long")
		                                                              : cli_find_by_name(c, p.data, arg, id);
		uh_buf_free(&p);
		if (rc || *id)
			return rc;
	}
	return cli_job_id(c, arg, id);
}

static int exception_create(struct cli *c, const struct cli_args *a)
{
	const char *reason = cli_get(a, E_REASON), *exp = cli_get(a, E_EXPIRES), *job = cli_get(a, E_JOB);
	char when[32], *pid = NULL, *jid = NULL;
	if (!reason || !*reason)
		return cli_usage(c->cmd, "--reason is required");
	if (!exp)
		return cli_usage(c->cmd, "--expires is required");
	if (cli_expiry(exp, uh_now_us(), when))
		return cli_usage(c->cmd, "--expires wants an RFC 3339 time or a duration such as 12h or 7d");
	int rc = cli_project_id(c, a->pos[0], &pid);
	if (!rc && job)
		rc = job_in_project(c, pid, job, &jid);
	if (!rc) {
		json_t *body = json_pack("{s:s,s:s,s:s}", "project_id", pid, "reason", reason, "expires_at", when);
		if (jid)
			json_object_set_new(body, "job_id", json_string(jid));
		struct cli_resp r;
		rc = cli_call(c, "POST", "/exceptions", body, &r);
		if (!rc)
			cli_print_result(c, r.json, "id");
		cli_resp_free(&r);
		json_decref(body);
	}
	free(pid);
	free(jid);
	return rc;
}

static const struct cli_col exception_cols[] = {
    {"ID", "id"}, {"PROJECT", "project_id"}, {"JOB", "job_id"}, {"EXPIRES", "expires_at"}, {"REASON", "reason"},
    {NULL, NULL},
};

static int exception_list(struct cli *c, const struct cli_args *a)
{
	return cli_show_list(c, "/exceptions", exception_cols);
}

static int exception_delete(struct cli *c, const struct cli_args *a)
{
	struct uh_buf p = UH_BUF_INIT(8192);
	int rc;
	if (cli_pathf(&p, "/exceptions/%s", a->pos[0])) {
		rc = cli_usage(c->cmd, "argument too long");
	} else {
		struct cli_resp r;
		rc = cli_call(c, "DELETE", p.data, NULL, &r);
		if (!rc && c->json)
			cli_print_result(c, r.json, NULL);
		cli_resp_free(&r);
	}
	uh_buf_free(&p);
	return rc;
}

const struct cli_cmd uh_cli_exception_cmds[] = {
    {"exception create", "PROJECT [--job JOB] --reason TEXT --expires WHEN",
     "let the Local backend run in prod for a project or one of its jobs (admin); prints its id", create_opts, 1, 1,
     false, exception_create},
    {"exception list", "", "list the exceptions (admin)", common_opts, 0, 0, false, exception_list},
    {"exception delete", "EXCEPTION_ID", "delete an exception (admin)", common_opts, 1, 1, false, exception_delete},
    {NULL},
};
