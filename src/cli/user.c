/* `uhub user ...`, `uhub token ...` and `uhub me`: identities. */
#include <stdbool.h>
#include <stdlib.h>

#include "cli/internal.h"
#include "util/time.h"

enum { T_EXPIRES = OPT__COMMON };

static const struct cli_opt common_opts[] = {CLI_COMMON_OPTS, {NULL}};
static const struct cli_opt token_opts[] = {
    CLI_COMMON_OPTS,
    {"expires", 0, true, false, "WHEN: RFC 3339 time or a duration from now (30m, 12h, 90d, 2w)"},
    {NULL},
};

static int user_create(struct cli *c, const struct cli_args *a)
{
	json_t *body = json_pack("{s:s,s:s}", "name", a->pos[0], "role", a->pos[1]);
	struct cli_resp r;
	int rc = cli_call(c, "POST", "/users", body, &r);
	if (!rc)
		cli_print_result(c, r.json, "id");
	cli_resp_free(&r);
	json_decref(body);
	return rc;
}

static const struct cli_col user_cols[] = {
    {"ID", "id"}, {"NAME", "name"}, {"ROLE", "role"}, {"DISABLED", "disabled"}, {NULL, NULL},
};

static int user_list(struct cli *c, const struct cli_args *a)
{
	return cli_show_list(c, "/users", user_cols);
}

static int user_patch(struct cli *c, const char *id, json_t *patch)
{
	struct uh_buf p = UH_BUF_INIT(8192);
	int rc;
	if (cli_pathf(&p, "/users/%s", id)) {
		rc = cli_usage(c->cmd, "argument too long");
	} else {
		struct cli_resp r;
		rc = cli_call(c, "PATCH", p.data, patch, &r);
		if (!rc && c->json)
			cli_print_result(c, r.json, NULL);
		cli_resp_free(&r);
	}
	uh_buf_free(&p);
	json_decref(patch);
	return rc;
}

static int user_disable(struct cli *c, const struct cli_args *a)
{
	return user_patch(c, a->pos[0], json_pack("{s:b}", "disabled", true));
}

static int user_enable(struct cli *c, const struct cli_args *a)
{
	return user_patch(c, a->pos[0], json_pack("{s:b}", "disabled", false));
}

static int user_role(struct cli *c, const struct cli_args *a)
{
	return user_patch(c, a->pos[0], json_pack("{s:s}", "role", a->pos[1]));
}

static int token_create(struct cli *c, const struct cli_args *a)
{
	json_t *body = json_object();
	const char *v = cli_get(a, T_EXPIRES);
	int rc = 0;
	if (v) {
		char t[32];
		if (cli_expiry(v, uh_now_us(), t)) {
			rc = cli_usage(c->cmd, "--expires wants an RFC 3339 time or a duration such as 12h or 90d");
			goto out;
		}
		json_object_set_new(body, "expires_at", json_string(t));
	}
	struct uh_buf p = UH_BUF_INIT(8192);
	if (cli_pathf(&p, "/users/%s/tokens", a->pos[0])) {
		rc = cli_usage(c->cmd, "argument too long");
	} else {
		struct cli_resp r;
		rc = cli_call(c, "POST", p.data, body, &r);
		if (!rc && c->json) {
			cli_print_json(r.json);
		} else if (!rc) {
			/* The token alone on stdout, so TOKEN=$(uhub token create U) works;
			 * its id (to revoke it) on stderr. */
			const char *tok = json_string_value(json_object_get(r.json, "token"));
			char *id = cli_text(json_object_get(r.json, "id"));
			if (tok) {
				printf("%s\n", tok);
				fprintf(stderr, "token id: %s (shown once; revoke with: uhub token revoke %s)\n", id,
				        id);
			} else {
				cli_errorf("the server's answer holds no token");
				rc = UH_EXIT_FAIL;
			}
			free(id);
		}
		cli_resp_free(&r);
	}
	uh_buf_free(&p);
out:
	json_decref(body);
	return rc;
}

static int token_revoke(struct cli *c, const struct cli_args *a)
{
	struct uh_buf p = UH_BUF_INIT(8192);
	int rc;
	if (cli_pathf(&p, "/tokens/%s", a->pos[0])) {
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

static int me(struct cli *c, const struct cli_args *a)
{
	return cli_show(c, "/me");
}

const struct cli_cmd uh_cli_user_cmds[] = {
    {"user create", "NAME ROLE", "create a user (admin); ROLE is admin, projets, operator or viewer; prints its id",
     common_opts, 2, 2, false, user_create},
    {"user list", "", "list the users (admin)", common_opts, 0, 0, false, user_list},
    {"user disable", "USER_ID", "disable a user: its tokens stop working (admin)", common_opts, 1, 1, false,
     user_disable},
    {"user enable", "USER_ID", "enable a disabled user again (admin)", common_opts, 1, 1, false, user_enable},
    {"user role", "USER_ID ROLE", "change a user's role (admin)", common_opts, 2, 2, false, user_role},
    {"token create", "USER_ID [--expires WHEN]",
     "create a token for a user (admin); prints the token, shown only this once", token_opts, 1, 1, false,
     token_create},
    {"token revoke", "TOKEN_ID", "revoke a token (admin, or the token's own user)", common_opts, 1, 1, false,
     token_revoke},
    {"me", "", "show who the token belongs to", common_opts, 0, 0, false, me},
    {NULL},
};
