/* Unit tests of the command-line client's pure parts: option parsing,
 * command lookup, exit statuses for HTTP answers and finished runs, error
 * text, request helpers (key=value, expiry, job references, escaping,
 * paths), output formatting, and usage errors that never reach a server. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/internal.h"
#include "tap.h"
#include "util/time.h"

enum { T_FLAG = OPT__COMMON, T_VAL, T_REP, T_SHORT };
static const struct cli_opt topts[] = {
    CLI_COMMON_OPTS,
    {"flag", 'f', false, false, "a flag"},
    {"val", 0, true, false, "V: a value"},
    {"rep", 'r', true, true, "R: repeatable"},
    {"short", 's', true, false, "S: short"},
    {NULL},
};

static int parse(struct cli_args *a, const char *line)
{
	static char buf[1024];
	static char *argv[64];
	int argc = 0;
	snprintf(buf, sizeof(buf), "%s", line);
	for (char *t = strtok(buf, " "); t && argc < 63; t = strtok(NULL, " "))
		argv[argc++] = t;
	return cli_args_parse(a, topts, argc, argv);
}

static void test_args(void)
{
	struct cli_args a;

	CHECK(parse(&a, "one --flag two --val=x -r a --rep b -sS three") == 0);
	CHECK(a.npos == 3);
	CHECK_STR(a.pos[0], "one");
	CHECK_STR(a.pos[2], "three");
	CHECK(cli_has(&a, T_FLAG));
	CHECK(!cli_has(&a, OPT_JSON));
	CHECK_STR(cli_get(&a, T_VAL), "x");
	CHECK_STR(cli_get(&a, T_REP), "b");
	CHECK_STR(cli_get(&a, T_SHORT), "S");
	int reps = 0;
	for (int i = 0; i < a.nset; i++)
		if (a.set[i].opt == T_REP)
			reps++;
	CHECK(reps == 2);
	cli_args_free(&a);

	CHECK(parse(&a, "--json x -- /bin/echo --flag -r") == 0);
	CHECK(cli_has(&a, OPT_JSON));
	CHECK(a.dashdash && a.nrest == 3);
	CHECK_STR(a.rest[0], "/bin/echo");
	CHECK_STR(a.rest[1], "--flag");
	CHECK(!cli_has(&a, T_FLAG));
	cli_args_free(&a);

	CHECK(parse(&a, "--val") == UH_EXIT_USAGE);
	CHECK(strstr(a.error, "needs a value") != NULL);
	cli_args_free(&a);
	CHECK(parse(&a, "--nope") == UH_EXIT_USAGE);
	CHECK(strstr(a.error, "unknown option '--nope'") != NULL);
	cli_args_free(&a);
	CHECK(parse(&a, "-x") == UH_EXIT_USAGE);
	cli_args_free(&a);
	CHECK(parse(&a, "--flag=1") == UH_EXIT_USAGE);
	CHECK(strstr(a.error, "takes no value") != NULL);
	cli_args_free(&a);
	CHECK(parse(&a, "--val a --val b") == UH_EXIT_USAGE);
	CHECK(strstr(a.error, "more than once") != NULL);
	cli_args_free(&a);
	CHECK(parse(&a, "-fx") == UH_EXIT_USAGE);
	cli_args_free(&a);
	/* A lone "-" is a word; "--vals" is not "--val". */
	CHECK(parse(&a, "-") == 0 && a.npos == 1);
	cli_args_free(&a);
	CHECK(parse(&a, "--vals=1") == UH_EXIT_USAGE);
	cli_args_free(&a);
	/* A value may start with '-'. */
	CHECK(parse(&a, "--val -1 -s --x") == 0);
	CHECK_STR(cli_get(&a, T_VAL), "-1");
	CHECK_STR(cli_get(&a, T_SHORT), "--x");
	cli_args_free(&a);
}

static void test_find_cmd(void)
{
	int used;
	char *w1[] = {"project", "member", "add", "p", "u"};
	const struct cli_cmd *c = cli_find_cmd(5, w1, &used);
	CHECK(c && strcmp(c->name, "project member add") == 0 && used == 3);
	char *w2[] = {"runs", "--pending"};
	c = cli_find_cmd(2, w2, &used);
	CHECK(c && strcmp(c->name, "runs") == 0 && used == 1);
	char *w3[] = {"run", "p/j"};
	c = cli_find_cmd(2, w3, &used);
	CHECK(c && strcmp(c->name, "run") == 0);
	char *w4[] = {"project"};
	CHECK(cli_find_cmd(1, w4, &used) == NULL);
	char *w5[] = {"audit", "verify"};
	c = cli_find_cmd(2, w5, &used);
	CHECK(c && strcmp(c->name, "audit verify") == 0);
	char *w6[] = {"exception", "delete", "x"};
	c = cli_find_cmd(3, w6, &used);
	CHECK(c && strcmp(c->name, "exception delete") == 0 && used == 2);
}

static json_t *run_obj(const char *status, json_t *exit_code)
{
	return json_pack("{s:s,s:s,s:o}", "id", "r_1", "status", status, "exit_code", exit_code);
}

static void test_exit_status(void)
{
	struct {
		const char *status;
		json_t *ec;
		int want;
	} cases[] = {
	    {"succeeded", json_integer(0), 0},
	    {"failed", json_integer(3), 3},
	    {"failed", json_integer(255), 255},
	    {"failed", json_null(), 1},
	    {"failed", json_integer(0), 1},
	    {"failed", json_integer(300), 1},
	    {"failed", json_integer(-1), 1},
	    {"failed", json_integer(137), 137},
	    {"timed_out", json_integer(143), 124},
	    {"canceled", json_integer(143), 130},
	    {"rejected", json_null(), 77},
	    {"error", json_null(), 70},
	    {"lost", json_null(), 75},
	    {"running", json_null(), 1},
	    {"bogus", json_null(), 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *r = run_obj(cases[i].status, cases[i].ec);
		int got = cli_exit_for_run(r);
		if (got != cases[i].want)
			fprintf(stderr, "status %s: got %d want %d\n", cases[i].status, got, cases[i].want);
		CHECK(got == cases[i].want);
		json_decref(r);
	}
	CHECK(cli_exit_for_run(NULL) == 1);
	json_t *nostatus = json_object();
	CHECK(cli_exit_for_run(nostatus) == 1);
	json_decref(nostatus);

	CHECK(cli_run_terminal("succeeded") && cli_run_terminal("lost") && cli_run_terminal("rejected"));
	CHECK(!cli_run_terminal("running") && !cli_run_terminal("queued") && !cli_run_terminal("pending_approval"));
	CHECK(!cli_run_terminal(NULL));

	CHECK(cli_exit_for_http(401) == 77);
	CHECK(cli_exit_for_http(403) == 77);
	CHECK(cli_exit_for_http(404) == 1);
	CHECK(cli_exit_for_http(400) == 1);
	CHECK(cli_exit_for_http(409) == 1);
	CHECK(cli_exit_for_http(500) == 1);
	CHECK(cli_exit_for_http(503) == 69);
	CHECK(cli_exit_for_http(502) == 69);
}

static void test_error_text(void)
{
	char out[256];
	json_t *b = json_pack("{s:{s:s,s:s,s:s}}", "error", "code", "invalid_config", "message", "unknown key 'foo'",
	                      "field", "execution_backend_config.foo");
	cli_error_text(b, 400, out, sizeof(out));
	CHECK_STR(out, "unknown key 'foo' (field: execution_backend_config.foo)");
	json_decref(b);

	b = json_pack("{s:{s:s,s:s}}", "error", "code", "not_found", "message", "run 'x' not found");
	cli_error_text(b, 404, out, sizeof(out));
	CHECK_STR(out, "run 'x' not found");
	json_decref(b);

	cli_error_text(NULL, 502, out, sizeof(out));
	CHECK_STR(out, "server answered HTTP 502");

	b = json_pack("{s:{s:s}}", "error", "code", "internal");
	cli_error_text(b, 500, out, sizeof(out));
	CHECK_STR(out, "server answered HTTP 500 (internal)");
	json_decref(b);

	/* The server's words cannot drive the terminal. */
	b = json_pack("{s:{s:s}}", "error", "message", "bad\x1b[31mred\nline");
	cli_error_text(b, 400, out, sizeof(out));
	CHECK_STR(out, "bad?[31mred?line");
	json_decref(b);
}

static void test_helpers(void)
{
	char *k, *v;
	CHECK(cli_split_kv("A=b=c", &k, &v) == 0);
	CHECK_STR(k, "A");
	CHECK_STR(v, "b=c");
	free(k);
	free(v);
	CHECK(cli_split_kv("A=", &k, &v) == 0 && strcmp(v, "") == 0);
	free(k);
	free(v);
	CHECK(cli_split_kv("=x", &k, &v) < 0 && !k && !v);
	CHECK(cli_split_kv("novalue", &k, &v) < 0);

	CHECK(cli_param_name_ok("VERSION"));
	CHECK(cli_param_name_ok("A_1"));
	CHECK(!cli_param_name_ok("a"));
	CHECK(!cli_param_name_ok("1A"));
	CHECK(!cli_param_name_ok("_A"));
	CHECK(!cli_param_name_ok(""));
	CHECK(!cli_param_name_ok("A-B"));
	CHECK(cli_env_name_ok("http_proxy") && cli_env_name_ok("_X1"));
	CHECK(!cli_env_name_ok("1X") && !cli_env_name_ok("A B") && !cli_env_name_ok(""));

	char t[32];
	int64_t now;
	CHECK(uh_time_parse("2026-01-01T00:00:00Z", &now) == 0);
	CHECK(cli_expiry("12h", now, t) == 0);
	CHECK_STR(t, "2026-01-01T12:00:00.000000Z");
	CHECK(cli_expiry("+7d", now, t) == 0);
	CHECK_STR(t, "2026-01-08T00:00:00.000000Z");
	CHECK(cli_expiry("2w", now, t) == 0);
	CHECK_STR(t, "2026-01-15T00:00:00.000000Z");
	CHECK(cli_expiry("90m", now + 500000, t) == 0);
	CHECK_STR(t, "2026-01-01T01:30:00.000000Z");
	CHECK(cli_expiry("2027-03-04T05:06:07+01:00", now, t) == 0);
	CHECK_STR(t, "2027-03-04T04:06:07.000000Z");
	CHECK(cli_expiry("0d", now, t) < 0);
	CHECK(cli_expiry("7", now, t) < 0);
	CHECK(cli_expiry("7y", now, t) < 0);
	CHECK(cli_expiry("", now, t) < 0);
	CHECK(cli_expiry("-1d", now, t) < 0);
	CHECK(cli_expiry("99999999999999999999d", now, t) < 0);
	CHECK(cli_expiry("tomorrow", now, t) < 0);

	char *p, *j;
	CHECK(cli_split_job_ref("j_123", &p, &j) == 0 && !p && !j);
	CHECK(cli_split_job_ref("ops/deploy", &p, &j) == 1);
	CHECK_STR(p, "ops");
	CHECK_STR(j, "deploy");
	free(p);
	free(j);
	CHECK(cli_split_job_ref("ops/deploy/x", &p, &j) == 1);
	CHECK_STR(j, "deploy/x");
	free(p);
	free(j);
	CHECK(cli_split_job_ref("/deploy", &p, &j) < 0);
	CHECK(cli_split_job_ref("ops/", &p, &j) < 0);
	CHECK(cli_split_job_ref("", &p, &j) < 0);

	struct uh_buf b = UH_BUF_INIT(1024);
	CHECK(cli_json_escape(&b, "a\"b\\c\n\t\x01\x7f\xc3\xa9", 11) == 0);
	CHECK_STR(b.data, "\"a\\\"b\\\\c\\n\\t\\u0001\\u007f\xc3\xa9\"");
	uh_buf_reset(&b);
	CHECK(cli_json_escape(&b, "x\0y", 3) == 0);
	CHECK_STR(b.data, "\"x\\u0000y\"");
	uh_buf_free(&b);
	/* What the helper writes, jansson reads back. */
	struct uh_buf s = UH_BUF_INIT(4096);
	const char tricky[] = "p@ss\"w\\rd\r\n\x1f end";
	uh_buf_appends(&s, "{\"value\":");
	cli_json_escape(&s, tricky, sizeof(tricky) - 1);
	uh_buf_appends(&s, "}");
	json_t *o = json_loads(s.data, 0, NULL);
	CHECK(o && strcmp(json_string_value(json_object_get(o, "value")), tricky) == 0);
	json_decref(o);
	uh_buf_free(&s);

	struct uh_buf path = UH_BUF_INIT(1024);
	CHECK(cli_pathf(&path, "/projects/%s/jobs?name=%s&x=100%%", "a/b c", "dé~ploy._-") == 0);
	CHECK_STR(path.data, "/projects/a%2Fb%20c/jobs?name=d%C3%A9~ploy._-&x=100%");
	uh_buf_free(&path);
	struct uh_buf small = UH_BUF_INIT(4);
	CHECK(cli_pathf(&small, "/%s", "toolong") < 0);
	uh_buf_free(&small);

	const char *d = "abcdef";
	size_t len = 6, skip = 4;
	cli_skip(&skip, &d, &len);
	CHECK(skip == 0 && len == 2 && *d == 'e');
	d = "abc";
	len = 3;
	skip = 10;
	cli_skip(&skip, &d, &len);
	CHECK(skip == 7 && len == 0);
}

static char *capture(void (*fn)(FILE *, void *), void *arg)
{
	char *text = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&text, &n);
	fn(f, arg);
	fclose(f);
	return text;
}

static void table_fn(FILE *f, void *arg)
{
	static const struct cli_col cols[] = {{"ID", "id"}, {"NAME", "name"}, {"N", "n"}, {NULL, NULL}};
	cli_print_table(f, arg, cols);
}

static void fields_fn(FILE *f, void *arg)
{
	cli_print_fields(f, arg);
}

static void test_output(void)
{
	json_t *items = json_pack("[{s:s,s:s,s:i},{s:s,s:n},{s:s,s:s,s:b}]", "id", "p_1", "name", "web", "n", 3, "id",
	                          "p_22", "name", "id", "p_3", "name", "t\x1b]0;x\x07", "n", 1);
	char *t = capture(table_fn, items);
	CHECK_STR(t, "ID    NAME     N\n"
	             "p_1   web      3\n"
	             "p_22  -        -\n"
	             "p_3   t?]0;x?  true\n");
	free(t);
	json_decref(items);

	json_t *empty = json_array();
	t = capture(table_fn, empty);
	CHECK_STR(t, "ID  NAME  N\n");
	free(t);
	json_decref(empty);

	json_t *obj = json_pack("{s:s,s:n,s:{s:i},s:[s,s],s:f}", "id", "r_1", "exit_code", "effective_config",
	                        "timeout_seconds", 60, "argv", "/bin/echo", "hi", "ratio", 0.5);
	t = capture(fields_fn, obj);
	CHECK_STR(t, "id:               r_1\n"
	             "exit_code:        -\n"
	             "effective_config: {\"timeout_seconds\":60}\n"
	             "argv:             [\"/bin/echo\",\"hi\"]\n"
	             "ratio:            0.5\n");
	free(t);
	json_decref(obj);

	/* UTF-8 takes one column per character. */
	json_t *u = json_pack("[{s:s,s:s}]", "id", "\xc3\xa9t\xc3\xa9", "name", "x");
	t = capture(table_fn, u);
	CHECK_STR(t, "ID   NAME  N\n"
	             "\xc3\xa9t\xc3\xa9  x     -\n");
	free(t);
	json_decref(u);

	json_t *csi = json_string("a\xc2\x9b"
	                          "31mb");
	char *c1 = cli_text(csi);
	CHECK_STR(c1, "a?31mb");
	free(c1);
	json_decref(csi);
}

static void test_main_usage(void)
{
	/* None of these reach a server: each is decided from argv alone. */
	unsetenv("UHUB_TOKEN");
	unsetenv("UHUB_TOKEN_FILE");
	setenv("UHUB_URL", "http://127.0.0.1:1", 1);
	struct {
		const char *line;
		int want;
	} cases[] = {
	    {"uhub", 64},
	    {"uhub bogus", 64},
	    {"uhub project", 64},
	    {"uhub project frob", 64},
	    {"uhub run", 64},
	    {"uhub run a b", 64},
	    {"uhub run j --follow --wait", 64},
	    {"uhub run j --follow --json", 64},
	    {"uhub run j -p lower=1", 64},
	    {"uhub run j -p NOEQUALS", 64},
	    {"uhub run j -p A=1 -p A=2", 64},
	    {"uhub runs --limit x", 64},
	    {"uhub runs --pending --status running", 64},
	    {"uhub job create p n -- relative/path", 64},
	    {"uhub job create p n --", 64},
	    {"uhub job create p n --env NOEQ", 64},
	    {"uhub job create p n --param bad", 64},
	    {"uhub job create p n --config [1]", 64},
	    {"uhub job create p n --config {bad", 64},
	    {"uhub job create p n --retries -1", 64},
	    {"uhub project create x --config @/nonexistent/file", 64},
	    {"uhub token create u --expires soon", 64},
	    {"uhub exception create p --reason r", 64},
	    {"uhub exception create p --expires 1d", 64},
	    {"uhub show", 64},
	    {"uhub logs r --bogus", 64},
	    {"uhub help", 0},
	    {"uhub help run", 0},
	    {"uhub help project member", 0},
	    {"uhub help nothing", 64},
	    {"uhub runs --help", 0},
	    /* Past the argument checks: no token, so not permitted. */
	    {"uhub me", 77},
	    {"uhub runs", 77},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[256], *argv[16];
		int argc = 0;
		snprintf(buf, sizeof(buf), "%s", cases[i].line);
		for (char *tok = strtok(buf, " "); tok && argc < 15; tok = strtok(NULL, " "))
			argv[argc++] = tok;
		argv[argc] = NULL;
		fflush(stdout);
		int got = uh_cli_main(argc, argv);
		if (got != cases[i].want)
			fprintf(stderr, "'%s': got %d want %d\n", cases[i].line, got, cases[i].want);
		CHECK(got == cases[i].want);
	}

	/* An unreachable server is 69, a bad token 64, a bad URL 64. */
	char *me[] = {"uhub", "me", NULL};
	setenv("UHUB_TOKEN", "uht_test", 1);
	CHECK(uh_cli_main(2, me) == 69);
	setenv("UHUB_TOKEN", "two words", 1);
	CHECK(uh_cli_main(2, me) == 64);
	setenv("UHUB_TOKEN", "uht_test", 1);
	setenv("UHUB_URL", "ftp://127.0.0.1:1", 1);
	CHECK(uh_cli_main(2, me) == 64);
	unsetenv("UHUB_TOKEN");
	setenv("UHUB_URL", "http://127.0.0.1:1", 1);
	setenv("UHUB_TOKEN_FILE", "/nonexistent/token", 1);
	CHECK(uh_cli_main(2, me) == 64);
	char tf[] = "/tmp/uhub-test-token-XXXXXX";
	int fd = mkstemp(tf);
	CHECK(fd >= 0);
	CHECK(write(fd, "uht_fromfile\n", 13) == 13);
	close(fd);
	setenv("UHUB_TOKEN_FILE", tf, 1);
	CHECK(uh_cli_main(2, me) == 69);
	unlink(tf);
	unsetenv("UHUB_TOKEN_FILE");
	/* Invalid UTF-8 in an argument. */
	char bad[] = "p\xff";
	char *pr[] = {"uhub", "project", "show", bad, NULL};
	CHECK(uh_cli_main(4, pr) == 64);
}

int main(void)
{
	test_args();
	test_find_cmd();
	test_exit_status();
	test_error_text();
	test_helpers();
	test_output();
	test_main_usage();
	return uh_tap_done();
}
