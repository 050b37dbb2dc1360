/* `uhub secret ...`: project and shared secrets. A value comes from standard
 * input only (never argv, which every local user can read in /proc), is held
 * in wiped buffers, and is never printed. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli/internal.h"

#define MAX_SECRET (64u << 10)

enum { S_PROJECT = OPT__COMMON, S_GRANT, S_KEEP_NL };

static const struct cli_opt set_opts[] = {
    CLI_COMMON_OPTS,
    {"project", 0, true, false, "PROJECT: the owner (name or id); without it, a shared secret"},
    {"grant", 0, true, true, "PROJECT: grant a shared secret to this project"},
    {"keep-newline", 0, false, false, "keep the value's final newline"},
    {NULL},
};
static const struct cli_opt scope_opts[] = {
    CLI_COMMON_OPTS,
    {"project", 0, true, false, "PROJECT: the owner (name or id); without it, shared secrets"},
    {NULL},
};

/* Read the value: a line typed without echo on a terminal, else all of stdin. */
static int read_value(struct cli *c, const char *name, struct uh_buf *v)
{
	struct termios old, quiet;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
	if (tty) {
		fprintf(stderr, "value of secret '%s': ", name);
		fflush(stderr);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		quiet.c_lflag |= ECHONL;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	char chunk[4096];
	ssize_t n;
	int rc = 0;
	while ((n = read(STDIN_FILENO, chunk, sizeof(chunk))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			cli_errorf("reading the secret's value from standard input: %s", strerror(errno));
			rc = UH_EXIT_FAIL;
			break;
		}
		if (uh_buf_append(v, chunk, (size_t)n)) {
			rc = cli_usage(c->cmd, "the secret's value is larger than %u bytes", MAX_SECRET);
			break;
		}
		if (tty && memchr(chunk, '\n', (size_t)n))
			break;
	}
	uh_memzero(chunk, sizeof(chunk));
	if (tty)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	return rc;
}

static int secret_path(struct cli *c, const struct cli_args *a, const char *name, struct uh_buf *p)
{
	const char *proj = cli_get(a, S_PROJECT);
	uh_buf_init(p, 8192);
	if (!proj)
		return cli_pathf(p, name ? "/secrets/%s" : "/secrets", name) ? cli_usage(c->cmd, "argument too long")
		                                                             : 0;
	char *pid;
	int rc = cli_project_id(c, proj, &pid);
	if (rc)
		return rc;
	if (name ? cli_pathf(p, "/projects/%s/secrets/%s", pid, name) : cli_pathf(p, "/projects/%s/secrets", pid))
		rc = cli_usage(c->cmd, "argument too long");
	free(pid);
	return rc;
}

static int secret_set(struct cli *c, const struct cli_args *a)
{
	const char *name = a->pos[0];
	struct uh_buf value = UH_BUF_INIT(MAX_SECRET), body = UH_BUF_INIT(8 * MAX_SECRET), p = UH_BUF_INIT(0);
	value.secret = body.secret = true;
	int rc = 0;
	if (cli_has(a, S_PROJECT) && cli_has(a, S_GRANT))
		return cli_usage(c->cmd, "--grant is for shared secrets: drop --project");
	if ((rc = read_value(c, name, &value)))
		goto out;
	if (!cli_has(a, S_KEEP_NL) && value.len && value.data[value.len - 1] == '\n') {
		value.data[--value.len] = '\0';
		if (value.len && value.data[value.len - 1] == '\r')
			value.data[--value.len] = '\0';
	}
	if (!value.len) {
		rc = cli_usage(c->cmd, "the secret's value (read from standard input) is empty");
		goto out;
	}
	/* Built by hand, not with jansson, so every copy of the value is wiped. */
	if (uh_buf_appends(&body, "{\"value\":") || cli_json_escape(&body, value.data, value.len)) {
		rc = cli_usage(c->cmd, "the secret's value is too large");
		goto out;
	}
	if (cli_has(a, S_GRANT)) {
		int first = 1;
		uh_buf_appends(&body, ",\"projects\":[");
		for (int i = 0; i < a->nset; i++) {
			if (a->set[i].opt != S_GRANT)
				continue;
			char *pid;
			if ((rc = cli_project_id(c, a->set[i].value, &pid)))
				goto out;
			if (!first)
				uh_buf_appends(&body, ",");
			first = 0;
			cli_json_escape(&body, pid, strlen(pid));
			free(pid);
		}
		uh_buf_appends(&body, "]");
	}
	if (uh_buf_appends(&body, "}")) {
		rc = cli_usage(c->cmd, "the secret's value is too large");
		goto out;
	}
	if ((rc = secret_path(c, a, name, &p)))
		goto out;
	struct cli_resp r;
	rc = cli_http_do(c, "PUT", p.data, body.data, body.len, NULL, &r);
	if (!rc)
		rc = cli_check(&r);
	if (!rc && c->json && r.json)
		cli_print_json(r.json);
	cli_resp_free(&r);
out:
	uh_buf_free(&p);
	uh_buf_free(&body);
	uh_buf_free(&value);
	return rc;
}

static const struct cli_col secret_cols[] = {
    {"NAME", "name"},
    {"PROJECTS", "projects"},
    {"UPDATED", "updated_at"},
    {NULL, NULL},
};

static int secret_list(struct cli *c, const struct cli_args *a)
{
	struct uh_buf p;
	int rc = secret_path(c, a, NULL, &p);
	if (!rc)
		rc = cli_show_list(c, p.data, secret_cols);
	uh_buf_free(&p);
	return rc;
}

static int secret_delete(struct cli *c, const struct cli_args *a)
{
	struct uh_buf p;
	int rc = secret_path(c, a, a->pos[0], &p);
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

static const struct cli_opt common_opts[] = {
    CLI_COMMON_OPTS,
    {NULL},
};

/* Every secret re-sealed under a new key (admin): prints how many. */
static int secret_rotate_key(struct cli *c, const struct cli_args *a)
{
	(void)a;
	struct cli_resp r;
	json_t *body = json_object();
	int rc = cli_call(c, "POST", "/secrets/rotate-key", body, &r);
	json_decref(body);
	if (!rc) {
		if (c->json)
			cli_print_json(r.json);
		else
			printf("%lld secrets re-sealed under a new key\n",
			       (long long)json_integer_value(json_object_get(r.json, "resealed")));
		size_t i;
		json_t *u;
		json_array_foreach(json_object_get(r.json, "unreadable"), i, u)
		{
			cli_errorf("secret '%s' of scope '%s' opens under no key (altered or moved): left as it is",
			           json_string_value(json_object_get(u, "name")),
			           json_string_value(json_object_get(u, "scope")));
		}
	}
	cli_resp_free(&r);
	return rc;
}

const struct cli_cmd uh_cli_secret_cmds[] = {
    {"secret set", "[--project PROJECT | --grant PROJECT...] NAME",
     "set a secret from standard input (one final newline dropped); shared (admin) without --project", set_opts, 1, 1,
     false, secret_set},
    {"secret list", "[--project PROJECT]", "list secret names (values are never shown)", scope_opts, 0, 0, false,
     secret_list},
    {"secret delete", "[--project PROJECT] NAME", "delete a secret", scope_opts, 1, 1, false, secret_delete},
    {"secret rotate-key", "", "re-seal every secret under a new key (admin)", common_opts, 0, 0, false,
     secret_rotate_key},
    {NULL},
};
