/* Runs: `uhub run`, `rerun`, `runs`, `show`, `logs`, `cancel`, `approve`,
 * `reject`. `--follow` copies the live log to stdout as it arrives, `--wait`
 * polls; both end with the run's exit status (SPEC §6). */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/internal.h"
#include "util/time.h"

/* How long a follow or wait keeps trying while the server cannot be reached
 * (a daemon restart takes a few seconds). */
#define UNREACHABLE_BUDGET_US (30 * 1000000LL)
#define POLL_MIN_MS           100
#define POLL_MAX_MS           2000

enum { R_PARAM = OPT__COMMON, R_FOLLOW, R_WAIT, R_IDEM };

static const struct cli_opt run_opts[] = {
    CLI_COMMON_OPTS,
    {"param", 'p', true, true, "NAME=VALUE: a parameter the job declares"},
    {"follow", 'f', false, false, "print the log as it comes, then exit with the run's status"},
    {"wait", 'w', false, false, "wait for the end without the log, then exit with the run's status"},
    {"idempotency-key", 0, true, false, "KEY: the same key and parameters within 24 h answer the first run"},
    {NULL},
};
enum { RR_FOLLOW = OPT__COMMON, RR_WAIT };
static const struct cli_opt rerun_opts[] = {
    CLI_COMMON_OPTS,
    {"follow", 'f', false, false, "print the log as it comes, then exit with the run's status"},
    {"wait", 'w', false, false, "wait for the end without the log, then exit with the run's status"},
    {NULL},
};

enum { L_LIST_PENDING = OPT__COMMON, L_JOB, L_PROJECT, L_STATUS, L_LIMIT, L_BEFORE };
static const struct cli_opt runs_opts[] = {
    CLI_COMMON_OPTS,
    {"pending", 0, false, false, "only runs waiting for an approval (--status pending_approval)"},
    {"job", 0, true, false, "JOB: only this job's runs (id or PROJECT/JOB)"},
    {"project", 0, true, false, "PROJECT: only this project's runs (name or id)"},
    {"status", 0, true, false, "STATUS: only runs in this status"},
    {"limit", 'n', true, false, "N: at most N runs, newest first (default 50; 0: all)"},
    {"before", 0, true, false, "CURSOR: start after this cursor (the `next` of --json)"},
    {NULL},
};

enum { G_FOLLOW = OPT__COMMON };
static const struct cli_opt logs_opts[] = {
    CLI_COMMON_OPTS,
    {"follow", 'f', false, false, "keep printing new output until the run ends"},
    {NULL},
};

enum { M_COMMENT = OPT__COMMON };
static const struct cli_opt decide_opts[] = {
    CLI_COMMON_OPTS,
    {"message", 'm', true, false, "COMMENT: recorded with the decision"},
    {NULL},
};
static const struct cli_opt common_opts[] = {CLI_COMMON_OPTS, {NULL}};

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

static int run_path(struct uh_buf *p, const char *id, const char *suffix)
{
	uh_buf_init(p, 8192);
	return cli_pathf(p, "/runs/%s", id) || uh_buf_appends(p, suffix);
}

/* One GET /runs/{id}, retried while the server cannot be reached within
 * the budget that *since started (0: start it now). */
static int get_run(struct cli *c, const char *id, int64_t *since, struct cli_resp *r)
{
	struct uh_buf p;
	if (run_path(&p, id, "")) {
		uh_buf_free(&p);
		return cli_usage(c->cmd, "argument too long");
	}
	int rc;
	for (;;) {
		c->quiet = true;
		rc = cli_http_do(c, "GET", p.data, NULL, 0, NULL, r);
		c->quiet = false;
		if (rc != UH_EXIT_UNREACHABLE)
			break;
		cli_resp_free(r);
		if (!*since)
			*since = uh_mono_us();
		if (uh_mono_us() - *since > UNREACHABLE_BUDGET_US) {
			cli_errorf("%s", c->unreachable);
			break;
		}
		sleep_ms(1000);
	}
	uh_buf_free(&p);
	if (!rc) {
		*since = 0;
		rc = cli_check(r);
	}
	if (!rc && !json_is_object(r->json)) {
		cli_errorf("the server's answer for run '%s' is not a run", id);
		rc = UH_EXIT_FAIL;
	}
	return rc;
}

/* "uhub: run ID STATUS: reason (message)" on stderr for a run that did not succeed. */
static void say_end(const json_t *run)
{
	const char *st = json_string_value(json_object_get(run, "status"));
	if (st && strcmp(st, "succeeded") == 0)
		return;
	char *id = cli_text(json_object_get(run, "id")), *status = cli_text(json_object_get(run, "status"));
	char *reason = cli_text(json_object_get(run, "reason")), *msg = cli_text(json_object_get(run, "message"));
	char *ec = cli_text(json_object_get(run, "exit_code"));
	fprintf(stderr, "uhub: run %s %s (reason %s, exit code %s)%s%s\n", id, status, reason, ec,
	        json_is_string(json_object_get(run, "message")) ? ": " : "",
	        json_is_string(json_object_get(run, "message")) ? msg : "");
	free(id);
	free(status);
	free(reason);
	free(msg);
	free(ec);
}

/* Stream the log of run id to stdout until the run is terminal. The plain
 * follow stream ends when the run does; if it ends early (a proxy cut, a
 * daemon restart) it is opened again and what was already printed is skipped.
 * *final gets the terminal run (or NULL). */
static int follow(struct cli *c, const char *id, bool ndjson, json_t **final)
{
	struct uh_buf p;
	*final = NULL;
	if (run_path(&p, id, ndjson ? "/logs?follow=1&format=ndjson" : "/logs?follow=1")) {
		uh_buf_free(&p);
		return cli_usage(c->cmd, "argument too long");
	}
	size_t printed = 0;
	int64_t since = 0;
	long delay = POLL_MIN_MS;
	/* Once a stream has ended before the run did, the run may also have
	 * ended after our last read of its log: read it once more at the end. */
	bool catch_up = false, last = false;
	int rc;
	for (;;) {
		struct cli_resp r;
		size_t got = 0;
		c->quiet = true;
		rc = cli_http_stream(c, p.data, STDOUT_FILENO, printed, &got, &r);
		c->quiet = false;
		catch_up = catch_up || r.cut;
		if (rc == UH_EXIT_UNREACHABLE) {
			cli_resp_free(&r);
			if (!since)
				since = uh_mono_us();
			if (uh_mono_us() - since > UNREACHABLE_BUDGET_US) {
				cli_errorf("%s", c->unreachable);
				break;
			}
			sleep_ms(1000);
			continue;
		}
		since = 0;
		if (!rc)
			rc = cli_check(&r);
		cli_resp_free(&r);
		if (rc)
			break;
		bool news = got > printed;
		if (news)
			printed = got;
		if (last)
			break;

		struct cli_resp run;
		rc = get_run(c, id, &since, &run);
		if (!rc && cli_run_terminal(json_string_value(json_object_get(run.json, "status")))) {
			*final = json_incref(run.json);
			cli_resp_free(&run);
			if (!catch_up)
				break;
			last = true; /* one more stream: it ends at once, the run being over */
			continue;
		}
		cli_resp_free(&run);
		if (rc)
			break;
		catch_up = true;
		/* Not over yet: a server that does not hold the stream open is
		 * polled, gently. */
		delay = news ? POLL_MIN_MS : (delay * 2 > POLL_MAX_MS ? POLL_MAX_MS : delay * 2);
		sleep_ms(delay);
	}
	uh_buf_free(&p);
	return rc;
}

/* Poll run id until it is terminal; *final gets it. */
static int wait_run(struct cli *c, const char *id, json_t **final)
{
	int64_t since = 0;
	long delay = POLL_MIN_MS;
	bool said_pending = false;
	*final = NULL;
	for (;;) {
		struct cli_resp r;
		int rc = get_run(c, id, &since, &r);
		if (rc) {
			cli_resp_free(&r);
			return rc;
		}
		const char *st = json_string_value(json_object_get(r.json, "status"));
		if (cli_run_terminal(st)) {
			*final = json_incref(r.json);
			cli_resp_free(&r);
			return 0;
		}
		if (st && strcmp(st, "pending_approval") == 0 && !said_pending) {
			fprintf(stderr, "uhub: run %s waits for an approval\n", id);
			said_pending = true;
		}
		cli_resp_free(&r);
		sleep_ms(delay);
		delay = delay * 3 / 2 > POLL_MAX_MS ? POLL_MAX_MS : delay * 3 / 2;
	}
}

/* After a trigger: print the id, or follow/wait and map the end to an exit. */
static int after_trigger(struct cli *c, const json_t *run, bool fol, bool wt)
{
	const char *id = json_string_value(json_object_get(run, "id"));
	if (!id) {
		cli_errorf("the server's answer holds no run id");
		return UH_EXIT_FAIL;
	}
	if (!fol && !wt) {
		cli_print_result(c, run, "id");
		return 0;
	}
	const char *st = json_string_value(json_object_get(run, "status"));
	fprintf(stderr, "uhub: run %s %s\n", id, st ? st : "");
	json_t *final = NULL;
	int rc = fol ? follow(c, id, false, &final) : wait_run(c, id, &final);
	if (!rc) {
		if (c->json)
			cli_print_json(final);
		say_end(final);
		rc = cli_exit_for_run(final);
	}
	json_decref(final);
	return rc;
}

static int check_modes(struct cli *c, bool fol, bool wt)
{
	if (fol && wt)
		return cli_usage(c->cmd, "--follow and --wait do not go together");
	if (fol && c->json)
		return cli_usage(c->cmd, "--json does not go with --follow (the log is on stdout): use --wait --json");
	return 0;
}

static int run_trigger(struct cli *c, const struct cli_args *a)
{
	bool fol = cli_has(a, R_FOLLOW), wt = cli_has(a, R_WAIT);
	int rc = check_modes(c, fol, wt);
	if (rc)
		return rc;
	json_t *params = json_object();
	char *jid = NULL, *body = NULL;
	struct uh_buf p = UH_BUF_INIT(8192);
	for (int i = 0; i < a->nset; i++) {
		if (a->set[i].opt != R_PARAM)
			continue;
		char *k, *v;
		if (cli_split_kv(a->set[i].value, &k, &v)) {
			rc = cli_usage(c->cmd, "-p wants NAME=VALUE, not '%s'", a->set[i].value);
			goto out;
		}
		if (!cli_param_name_ok(k))
			rc = cli_usage(c->cmd, "-p: '%s' is not a parameter name ([A-Z][A-Z0-9_]*)", k);
		else if (json_object_get(params, k))
			rc = cli_usage(c->cmd, "-p: '%s' given twice", k);
		else
			json_object_set_new(params, k, json_string(v));
		free(k);
		free(v);
		if (rc)
			goto out;
	}
	if ((rc = cli_job_id(c, a->pos[0], &jid)))
		goto out;
	if (cli_pathf(&p, "/jobs/%s/runs", jid)) {
		rc = cli_usage(c->cmd, "argument too long");
		goto out;
	}
	json_t *obj = json_pack("{s:O}", "parameters", params);
	body = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	struct cli_resp r;
	rc = cli_http_do(c, "POST", p.data, body, strlen(body), cli_get(a, R_IDEM), &r);
	if (!rc)
		rc = cli_check(&r);
	if (!rc)
		rc = after_trigger(c, r.json, fol, wt);
	cli_resp_free(&r);
out:
	uh_buf_free(&p);
	free(body);
	free(jid);
	json_decref(params);
	return rc;
}

/* POST /runs/{id}/ACTION with body; *r holds the answer. */
static int run_action(struct cli *c, const char *id, const char *action, const json_t *body, struct cli_resp *r)
{
	struct uh_buf p;
	int rc =
	    run_path(&p, id, action) ? cli_usage(c->cmd, "argument too long") : cli_call(c, "POST", p.data, body, r);
	uh_buf_free(&p);
	return rc;
}

static int rerun(struct cli *c, const struct cli_args *a)
{
	bool fol = cli_has(a, RR_FOLLOW), wt = cli_has(a, RR_WAIT);
	int rc = check_modes(c, fol, wt);
	if (rc)
		return rc;
	struct cli_resp r = {0};
	json_t *body = json_object();
	rc = run_action(c, a->pos[0], "/rerun", body, &r);
	if (!rc)
		rc = after_trigger(c, r.json, fol, wt);
	cli_resp_free(&r);
	json_decref(body);
	return rc;
}

/* cancel, approve, reject: print "ID STATUS" (or the JSON). */
static int decide(struct cli *c, const struct cli_args *a, const char *action, const char *m)
{
	json_t *body = json_object();
	if (m)
		json_object_set_new(body, "comment", json_string(m));
	struct cli_resp r = {0};
	int rc = run_action(c, a->pos[0], action, body, &r);
	if (!rc && c->json) {
		cli_print_json(r.json);
	} else if (!rc) {
		char *id = cli_text(json_object_get(r.json, "id")), *st = cli_text(json_object_get(r.json, "status"));
		printf("%s %s\n", id, st);
		free(id);
		free(st);
	}
	cli_resp_free(&r);
	json_decref(body);
	return rc;
}

static int cancel(struct cli *c, const struct cli_args *a)
{
	return decide(c, a, "/cancel", NULL);
}

static int approve(struct cli *c, const struct cli_args *a)
{
	return decide(c, a, "/approve", cli_get(a, M_COMMENT));
}

static int reject(struct cli *c, const struct cli_args *a)
{
	return decide(c, a, "/reject", cli_get(a, M_COMMENT));
}

static const struct cli_col run_cols[] = {
    {"ID", "id"},           {"JOB", "job_id"}, {"STATUS", "status"}, {"EXIT", "exit_code"}, {"CREATED", "created_at"},
    {"BY", "requested_by"}, {NULL, NULL},
};

static int runs(struct cli *c, const struct cli_args *a)
{
	const char *status = cli_get(a, L_STATUS), *v;
	char *jid = NULL, *pid = NULL;
	long long limit = 50;
	int rc = 0;
	struct uh_buf p = UH_BUF_INIT(8192);
	if (cli_has(a, L_LIST_PENDING)) {
		if (status && strcmp(status, "pending_approval") != 0)
			return cli_usage(c->cmd, "--pending and --status %s do not go together", status);
		status = "pending_approval";
	}
	if ((v = cli_get(a, L_LIMIT)) && (rc = cli_int_arg(c, "limit", v, 0, 1000000, &limit)))
		return rc;
	if ((v = cli_get(a, L_JOB)) && (rc = cli_job_id(c, v, &jid)))
		goto out;
	if ((v = cli_get(a, L_PROJECT)) && (rc = cli_project_id(c, v, &pid)))
		goto out;
	char lim[32];
	snprintf(lim, sizeof(lim), "%lld", limit == 0 || limit > 100 ? 100 : limit);
	int e = cli_pathf(&p, "/runs?limit=%s", lim);
	if (jid)
		e = e || cli_pathf(&p, "&job=%s", jid);
	if (pid)
		e = e || cli_pathf(&p, "&project=%s", pid);
	if (status)
		e = e || cli_pathf(&p, "&status=%s", status);
	if ((v = cli_get(a, L_BEFORE)))
		e = e || cli_pathf(&p, "&before=%s", v);
	if (e) {
		rc = cli_usage(c->cmd, "arguments too long");
		goto out;
	}
	json_t *items, *next;
	if ((rc = cli_list(c, p.data, (size_t)limit, &items, &next)))
		goto out;
	if (c->json) {
		json_t *o = json_pack("{s:O,s:O}", "items", items, "next", next);
		cli_print_json(o);
		json_decref(o);
	} else {
		cli_print_table(stdout, items, run_cols);
	}
	json_decref(items);
	json_decref(next);
out:
	uh_buf_free(&p);
	free(jid);
	free(pid);
	return rc;
}

static int show(struct cli *c, const struct cli_args *a)
{
	struct uh_buf p;
	int rc = run_path(&p, a->pos[0], "") ? cli_usage(c->cmd, "argument too long") : cli_show(c, p.data);
	uh_buf_free(&p);
	return rc;
}

static int logs(struct cli *c, const struct cli_args *a)
{
	if (cli_has(a, G_FOLLOW)) {
		json_t *final = NULL;
		int rc = follow(c, a->pos[0], c->json, &final);
		json_decref(final);
		return rc;
	}
	struct uh_buf p;
	int rc;
	if (run_path(&p, a->pos[0], c->json ? "/logs?format=ndjson" : "/logs")) {
		rc = cli_usage(c->cmd, "argument too long");
	} else {
		struct cli_resp r;
		rc = cli_http_stream(c, p.data, STDOUT_FILENO, 0, NULL, &r);
		if (!rc)
			rc = cli_check(&r);
		cli_resp_free(&r);
	}
	uh_buf_free(&p);
	return rc;
}

const struct cli_cmd uh_cli_run_cmds[] = {
    {"run", "JOB [-p NAME=VALUE]... [--follow | --wait] [--idempotency-key KEY]",
     "start a run of JOB (a job id or PROJECT/JOB); prints the run id, or with --follow/--wait exits with the "
     "run's status",
     run_opts, 1, 1, false, run_trigger},
    {"rerun", "RUN [--follow | --wait]", "start a new run of the same job with the same parameters", rerun_opts, 1, 1,
     false, rerun},
    {"runs", "[--pending] [--job JOB] [--project PROJECT] [--status STATUS] [--limit N]", "list runs, newest first",
     runs_opts, 0, 0, false, runs},
    {"show", "RUN", "show a run", common_opts, 1, 1, false, show},
    {"logs", "RUN [-f]", "print a run's log (--json: one JSON object per chunk)", logs_opts, 1, 1, false, logs},
    {"cancel", "RUN", "cancel a run; it ends `canceled` once its process is gone", common_opts, 1, 1, false, cancel},
    {"approve", "RUN [-m COMMENT]", "approve a run waiting for approval", decide_opts, 1, 1, false, approve},
    {"reject", "RUN [-m COMMENT]", "reject a run waiting for approval", decide_opts, 1, 1, false, reject},
    {NULL},
};
