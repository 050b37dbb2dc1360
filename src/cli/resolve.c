/* Projects and jobs named on the command line: a project by name or id, a
 * job by id or as PROJECT/JOB, looked up through the lists' ?name= filter
 * (matched exactly here too, in case a server ignores the filter). */
#include <stdlib.h>
#include <string.h>

#include "cli/internal.h"
#include "util/buf.h"

int cli_find_by_name(struct cli *c, const char *path, const char *name, char **id)
{
	json_t *items, *next;
	*id = NULL;
	int rc = cli_list(c, path, 0, &items, &next);
	if (rc)
		return rc;
	size_t i;
	json_t *it;
	json_array_foreach(items, i, it)
	{
		const char *n = json_string_value(json_object_get(it, "name"));
		const char *v = json_string_value(json_object_get(it, "id"));
		if (n && v && strcmp(n, name) == 0) {
			*id = strdup(v);
			break;
		}
	}
	json_decref(items);
	json_decref(next);
	return 0;
}

int cli_project_id(struct cli *c, const char *arg, char **id)
{
	struct uh_buf p = UH_BUF_INIT(8192);
	*id = NULL;
	if (!*arg)
		return cli_usage(c->cmd, "a project name or id cannot be empty");
	if (cli_pathf(&p, "/projects?name=%s", arg)) {
		uh_buf_free(&p);
		return cli_usage(c->cmd, "project name too long");
	}
	int rc = cli_find_by_name(c, p.data, arg, id);
	uh_buf_free(&p);
	if (rc || *id)
		return rc;

	/* Not a name: maybe an id. */
	struct cli_resp r;
	uh_buf_init(&p, 8192);
	if (cli_pathf(&p, "/projects/%s", arg)) {
		uh_buf_free(&p);
		return cli_usage(c->cmd, "project id too long");
	}
	rc = cli_http_do(c, "GET", p.data, NULL, 0, NULL, &r);
	uh_buf_free(&p);
	if (!rc && r.status == 404) {
		cli_errorf("project '%s' not found", arg);
		rc = UH_EXIT_FAIL;
	} else if (!rc) {
		rc = cli_check(&r);
	}
	if (!rc) {
		const char *v = json_string_value(json_object_get(r.json, "id"));
		*id = strdup(v ? v : arg);
	}
	cli_resp_free(&r);
	return rc;
}

int cli_job_id(struct cli *c, const char *arg, char **id)
{
	char *proj, *job, *pid = NULL;
	*id = NULL;
	int k = cli_split_job_ref(arg, &proj, &job);
	if (k < 0)
		return cli_usage(c->cmd, "bad job '%s': give a job id or PROJECT/JOB", arg);
	if (k == 0) {
		*id = strdup(arg);
		return 0;
	}
	int rc = cli_project_id(c, proj, &pid);
	if (!rc) {
		struct uh_buf p = UH_BUF_INIT(8192);
		if (cli_pathf(&p, "/projects/%s/jobs?name=%s", pid, job))
			rc = cli_usage(c->cmd, "job name too long");
		else
			rc = cli_find_by_name(c, p.data, job, id);
		uh_buf_free(&p);
		if (!rc && !*id) {
			cli_errorf("job '%s' not found in project '%s'", job, proj);
			rc = UH_EXIT_FAIL;
		}
	}
	free(pid);
	free(proj);
	free(job);
	return rc;
}
