/* The client's entry point: find the command named by the first words,
 * parse its options, run it, return its exit status (SPEC §6). Each family
 * of commands lives in its own file and exports a table of struct cli_cmd. */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/internal.h"
#include "util/json.h"

#define MAX_JSON_FILE (1u << 20)

static const struct cli_cmd *const families[] = {
    uh_cli_project_cmds, uh_cli_job_cmds,       uh_cli_user_cmds,  uh_cli_secret_cmds,
    uh_cli_run_cmds,     uh_cli_exception_cmds, uh_cli_audit_cmds,
};
#define NFAMILIES (sizeof(families) / sizeof(families[0]))

/* How many words of argv spell name ("project member add": 3), or 0. */
static int words_match(const char *name, int argc, char **argv)
{
	int n = 0;
	const char *p = name;
	while (*p) {
		const char *sp = strchr(p, ' ');
		size_t len = sp ? (size_t)(sp - p) : strlen(p);
		if (n >= argc || strlen(argv[n]) != len || strncmp(argv[n], p, len) != 0)
			return 0;
		n++;
		p += len;
		if (*p == ' ')
			p++;
	}
	return n;
}

const struct cli_cmd *cli_find_cmd(int argc, char **argv, int *used)
{
	const struct cli_cmd *best = NULL;
	int best_n = 0;
	for (size_t f = 0; f < NFAMILIES; f++)
		for (const struct cli_cmd *cmd = families[f]; cmd->name; cmd++) {
			int n = words_match(cmd->name, argc, argv);
			if (n > best_n) {
				best = cmd;
				best_n = n;
			}
		}
	*used = best_n;
	return best;
}

static bool starts_with_words(const char *name, int argc, char **argv)
{
	const char *p = name;
	for (int i = 0; i < argc; i++) {
		size_t len = strlen(argv[i]);
		if (strncmp(p, argv[i], len) != 0 || (p[len] != ' ' && p[len] != '\0'))
			return false;
		p += len;
		if (*p == ' ')
			p++;
	}
	return true;
}

static void print_help(FILE *f, int argc, char **argv)
{
	if (!argc)
		fprintf(f, "usage: uhub COMMAND [ARGS...]\n\n"
		           "The uhub client: talks to the server at $UHUB_URL with the token of $UHUB_TOKEN.\n"
		           "Read commands take --json to print the server's JSON; every command takes -h.\n\n"
		           "commands:\n");
	for (size_t fam = 0; fam < NFAMILIES; fam++)
		for (const struct cli_cmd *cmd = families[fam]; cmd->name; cmd++) {
			if (!starts_with_words(cmd->name, argc, argv))
				continue;
			fprintf(f, "  uhub %s%s%s\n      %s\n", cmd->name, *cmd->args ? " " : "", cmd->args,
			        cmd->summary);
		}
	if (argc)
		return;
	fprintf(f, "  uhub serve [--config FILE] [--listen ADDR] [--db URL]\n      start the daemon\n"
	           "  uhub help [COMMAND]\n      this help, or a command's\n\n"
	           "environment:\n"
	           "  UHUB_URL         the server (default http://127.0.0.1:8080); requests go under /api/v1\n"
	           "  UHUB_TOKEN       the bearer token (or UHUB_TOKEN_FILE, a file holding it)\n"
	           "  UHUB_CACERT      a CA bundle for an https:// server with a private CA\n\n"
	           "exit status:\n"
	           "  0 success; 1 the server refused the request (its message on stderr, 404 too);\n"
	           "  64 usage; 69 server unreachable; 77 not permitted (HTTP 401/403, no token).\n"
	           "  run/rerun --follow/--wait end with the run's: 0 succeeded, the job's exit code when\n"
	           "  failed (1 if none), 124 timed_out, 130 canceled, 77 rejected, 70 error, 75 lost.\n");
}

static int help(int argc, char **argv)
{
	int used;
	const struct cli_cmd *cmd = cli_find_cmd(argc, argv, &used);
	if (cmd && used == argc) {
		cli_print_usage(stdout, cmd, true);
		return UH_EXIT_OK;
	}
	for (size_t f = 0; f < NFAMILIES; f++)
		for (const struct cli_cmd *k = families[f]; k->name; k++)
			if (starts_with_words(k->name, argc, argv)) {
				print_help(stdout, argc, argv);
				return UH_EXIT_OK;
			}
	return cli_usage(NULL, "no command '%s'", argv[0]);
}

static int unknown(int argc, char **argv)
{
	/* "uhub project frob": say which project commands there are. */
	bool family = false;
	for (size_t f = 0; f < NFAMILIES && !family; f++)
		for (const struct cli_cmd *k = families[f]; k->name; k++)
			if (starts_with_words(k->name, 1, argv)) {
				family = true;
				break;
			}
	if (family && argc > 1 && argv[1][0] != '-')
		cli_errorf("unknown command '%s %s'", argv[0], argv[1]);
	else if (family)
		cli_errorf("'%s' needs a subcommand", argv[0]);
	else
		cli_errorf("unknown command '%s'", argv[0]);
	if (family)
		print_help(stderr, 1, argv);
	else
		fprintf(stderr, "run 'uhub help' for the list of commands\n");
	return UH_EXIT_USAGE;
}

int uh_cli_main(int argc, char **argv)
{
	if (argc < 2) {
		print_help(stderr, 0, NULL);
		return UH_EXIT_USAGE;
	}
	if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		if (argc == 2) {
			print_help(stdout, 0, NULL);
			return UH_EXIT_OK;
		}
		return help(argc - 2, argv + 2);
	}
	/* Every word ends up in JSON or a URL: refuse what JSON cannot carry
	 * here, once, rather than have jansson drop it silently later. */
	for (int i = 1; i < argc; i++) {
		json_t *t = json_string(argv[i]);
		if (!t)
			return cli_usage(NULL, "argument %d is not valid UTF-8", i);
		json_decref(t);
	}
	int used;
	const struct cli_cmd *cmd = cli_find_cmd(argc - 1, argv + 1, &used);
	if (!cmd)
		return unknown(argc - 1, argv + 1);

	struct cli c = {.cmd = cmd};
	struct cli_args a;
	int rc = cli_args_parse(&a, cmd->opts, argc - 1 - used, argv + 1 + used);
	if (rc) {
		rc = cli_usage(cmd, "%s", a.error);
		goto out;
	}
	if (cli_has(&a, OPT_HELP)) {
		cli_print_usage(stdout, cmd, true);
		goto out;
	}
	/* Without "-- ARGV", "--" only lets a word that starts with '-' through. */
	if (a.dashdash && !cmd->rest) {
		for (int i = 0; i < a.nrest; i++)
			a.pos[a.npos++] = a.rest[i];
		a.nrest = 0;
	}
	if (a.npos < cmd->min_pos) {
		rc = cli_usage(cmd, "missing argument");
		goto out;
	}
	if (cmd->max_pos >= 0 && a.npos > cmd->max_pos) {
		rc = cli_usage(cmd, "unexpected argument '%s'", a.pos[cmd->max_pos]);
		goto out;
	}
	c.json = cli_has(&a, OPT_JSON);
	rc = cmd->run(&c, &a);
	cli_http_close(&c);
out:
	cli_args_free(&a);
	if (fflush(stdout) != 0 && errno != EPIPE && rc == 0) {
		cli_errorf("writing the output: %s", strerror(errno));
		rc = UH_EXIT_FAIL;
	}
	return rc;
}

static char *read_file(const char *path, size_t max, size_t *len, char *why, size_t whylen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, whylen, "%s", strerror(errno));
		return NULL;
	}
	struct uh_buf b = UH_BUF_INIT(max);
	char chunk[8192];
	ssize_t n;
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(why, whylen, "%s", strerror(errno));
			break;
		}
		if (uh_buf_append(&b, chunk, (size_t)n)) {
			snprintf(why, whylen, "larger than %zu bytes", max);
			n = -1;
			break;
		}
	}
	close(fd);
	if (n < 0) {
		uh_buf_free(&b);
		return NULL;
	}
	*len = b.len;
	return uh_buf_take(&b);
}

int cli_json_arg(struct cli *c, const char *opt, const char *value, json_t **out)
{
	struct uh_error err = {0};
	*out = NULL;
	if (value[0] == '@') {
		char why[128];
		size_t len;
		char *text = read_file(value + 1, MAX_JSON_FILE, &len, why, sizeof(why));
		if (!text)
			return cli_usage(c->cmd, "--%s: cannot read '%s': %s", opt, value + 1, why);
		*out = uh_json_parse(text, len, true, &err);
		free(text);
	} else {
		*out = uh_json_parse(value, strlen(value), true, &err);
	}
	if (!*out)
		return cli_usage(c->cmd, "--%s: %s", opt, err.message);
	return 0;
}

int cli_int_arg(struct cli *c, const char *opt, const char *value, long long min, long long max, long long *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(value, &end, 10);
	if (errno || end == value || *end || v < min || v > max)
		return cli_usage(c->cmd, "--%s must be a whole number from %lld to %lld", opt, min, max);
	*out = v;
	return 0;
}

void cli_print_result(const struct cli *c, const json_t *obj, const char *key)
{
	if (!obj)
		return;
	if (c->json) {
		cli_print_json(obj);
	} else if (key) {
		char *t = cli_text(json_object_get(obj, key));
		printf("%s\n", t ? t : "?");
		free(t);
	} else {
		cli_print_fields(stdout, obj);
	}
}
