/* `uhub audit ...`: the audit trail and the check of its chain (admin). */
#include <stdlib.h>

#include "cli/internal.h"

enum { A_SINCE = OPT__COMMON, A_ACTOR, A_TARGET, A_LIMIT };

static const struct cli_opt list_opts[] = {
    CLI_COMMON_OPTS,
    {"since", 0, true, false, "VALUE: passed as the server's since= filter"},
    {"actor", 0, true, false, "USER_ID: only this actor's events"},
    {"target", 0, true, false, "ID: only events about this object"},
    {"limit", 'n', true, false, "N: at most N events (default 50; 0: all)"},
    {NULL},
};
static const struct cli_opt common_opts[] = {CLI_COMMON_OPTS, {NULL}};

static const struct cli_col audit_cols[] = {
    {"SEQ", "seq"}, {"AT", "at"}, {"ACTOR", "actor"}, {"ACTION", "action"}, {"TARGET", "target"}, {NULL, NULL},
};

static int audit_list(struct cli *c, const struct cli_args *a)
{
	long long limit = 50;
	const char *v;
	int rc;
	if ((v = cli_get(a, A_LIMIT)) && (rc = cli_int_arg(c, "limit", v, 0, 100000000, &limit)))
		return rc;
	struct uh_buf p = UH_BUF_INIT(8192);
	char lim[32];
	snprintf(lim, sizeof(lim), "%lld", limit == 0 || limit > 100 ? 100 : limit);
	int e = cli_pathf(&p, "/audit?limit=%s", lim);
	if ((v = cli_get(a, A_SINCE)))
		e = e || cli_pathf(&p, "&since=%s", v);
	if ((v = cli_get(a, A_ACTOR)))
		e = e || cli_pathf(&p, "&actor=%s", v);
	if ((v = cli_get(a, A_TARGET)))
		e = e || cli_pathf(&p, "&target=%s", v);
	json_t *items = NULL, *next = NULL;
	rc = e ? cli_usage(c->cmd, "arguments too long") : cli_list(c, p.data, (size_t)limit, &items, &next);
	uh_buf_free(&p);
	if (rc)
		return rc;
	if (c->json) {
		json_t *o = json_pack("{s:O,s:O}", "items", items, "next", next);
		cli_print_json(o);
		json_decref(o);
	} else {
		cli_print_table(stdout, items, audit_cols);
	}
	json_decref(items);
	json_decref(next);
	return 0;
}

static int audit_verify(struct cli *c, const struct cli_args *a)
{
	struct cli_resp r;
	int rc = cli_call(c, "GET", "/audit/verify", NULL, &r);
	if (rc) {
		cli_resp_free(&r);
		return rc;
	}
	json_t *ok = json_object_get(r.json, "ok");
	char *events = cli_text(json_object_get(r.json, "events"));
	char *at = cli_text(json_object_get(r.json, "broken_at"));
	if (!json_is_boolean(ok)) {
		cli_errorf("the server's answer to GET /audit/verify has no \"ok\"");
		rc = UH_EXIT_FAIL;
	} else {
		if (c->json)
			cli_print_json(r.json);
		else if (json_is_true(ok))
			printf("audit chain ok: %s events\n", events);
		else
			printf("audit chain broken at event %s\n", at);
		if (!json_is_true(ok)) {
			cli_errorf("the audit chain is broken at event %s", at);
			rc = UH_EXIT_FAIL;
		}
	}
	free(events);
	free(at);
	cli_resp_free(&r);
	return rc;
}

const struct cli_cmd uh_cli_audit_cmds[] = {
    {"audit list", "[--since VALUE] [--actor USER_ID] [--target ID] [--limit N]", "list audit events (admin)",
     list_opts, 0, 0, false, audit_list},
    {"audit verify", "", "check the audit chain (admin); exit status 1 when it is broken", common_opts, 0, 0, false,
     audit_verify},
    {NULL},
};
