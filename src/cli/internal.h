/* What the files of the command-line client share: exit statuses, the
 * option parser, the HTTP client, name resolution and output helpers.
 * Not a public interface: only src/cli and its unit test include it.
 *
 * Convention: the functions of this folder that talk to the server or to the
 * user return an exit status (0, or one of UH_EXIT_*) after printing the
 * message for it on stderr, once; pure helpers return 0 or a negative code. */
#ifndef UH_CLI_INTERNAL_H
#define UH_CLI_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/buf.h"

/* Exit statuses of SPEC §6 (the values of sysexits.h where one fits). */
enum uh_cli_exit {
	UH_EXIT_OK = 0,
	UH_EXIT_FAIL = 1,         /* an HTTP error other than 401/403, a failed run without exit code */
	UH_EXIT_USAGE = 64,       /* bad command line, flag or environment */
	UH_EXIT_UNREACHABLE = 69, /* no answer from the server (refused, timeout, TLS, 502/503/504) */
	UH_EXIT_RUN_ERROR = 70,   /* run ended `error` */
	UH_EXIT_RUN_LOST = 75,    /* run ended `lost` */
	UH_EXIT_NOPERM = 77,      /* HTTP 401/403, no token; also a `rejected` run */
	UH_EXIT_TIMED_OUT = 124,  /* run ended `timed_out` (as timeout(1)) */
	UH_EXIT_CANCELED = 130,   /* run ended `canceled` (as after SIGINT) */
};

/* ---- Options (args.c) ---------------------------------------------------- */

struct cli_opt {
	const char *name; /* long name without "--"; NULL ends a table */
	char short_name;  /* 0 when none */
	bool has_value;
	bool repeat; /* may be given more than once */
	const char *help;
};

/* Every command accepts these two first, so OPT_JSON and OPT_HELP index
 * every table; a command's own options start at OPT__COMMON. */
enum { OPT_JSON, OPT_HELP, OPT__COMMON };
#define CLI_COMMON_OPTS                                              \
	{"json", 0, false, false, "print the server's JSON answer"}, \
	{                                                            \
		"help", 'h', false, false, "show this help"          \
	}

struct cli_optval {
	int opt; /* index into the table */
	const char *value;
};

struct cli_args {
	struct cli_optval *set; /* options in command-line order */
	int nset;
	char **pos; /* positional arguments */
	int npos;
	char **rest; /* words after "--" */
	int nrest;
	bool dashdash; /* "--" was given */
	char error[256];
};

/* Parse argv (the words after the command name). Options may come before,
 * between or after positional words; "--name=value", "--name value", "-x
 * value", "-xvalue"; "--" ends options and the rest goes to a->rest. 0, or
 * UH_EXIT_USAGE with a message in a->error. Free with cli_args_free. */
int cli_args_parse(struct cli_args *a, const struct cli_opt *opts, int argc, char **argv);
void cli_args_free(struct cli_args *a);
bool cli_has(const struct cli_args *a, int opt);
/* The last value of an option, or NULL when not given. */
const char *cli_get(const struct cli_args *a, int opt);

/* ---- Pure helpers (args.c) ----------------------------------------------- */

/* Split "KEY=VALUE" (KEY non-empty, VALUE may be empty) into two new strings.
 * 0 or UH_E_INVALID_REQUEST. */
int cli_split_kv(const char *s, char **key, char **value);
/* A parameter name as SPEC §1 wants it: [A-Z][A-Z0-9_]*. */
bool cli_param_name_ok(const char *s);
/* An environment variable name: [A-Za-z_][A-Za-z0-9_]*. */
bool cli_env_name_ok(const char *s);
/* An expiry given as RFC 3339 or as a duration from now ("90m", "12h", "7d",
 * "2w", "3600s"), written as RFC 3339 UTC into out. 0 or UH_E_INVALID_REQUEST. */
int cli_expiry(const char *s, int64_t now_us, char out[32]);
/* "PROJECT/JOB" gives 1 with both parts (new strings); anything without a
 * slash is a job id and gives 0; an empty part gives UH_E_INVALID_REQUEST. */
int cli_split_job_ref(const char *s, char **project, char **job);
/* Append s (len bytes) as a JSON string literal, quotes included. Control
 * characters are escaped; other bytes pass through. */
int cli_json_escape(struct uh_buf *b, const char *s, size_t len);
/* Append a path built from fmt, where each %s is percent-encoded (RFC 3986
 * unreserved characters kept) and %% is a percent sign. */
int cli_pathf(struct uh_buf *b, const char *fmt, ...);
/* Drop from the front of (*data, *len) what is left of *to_skip bytes. */
void cli_skip(size_t *to_skip, const char **data, size_t *len);

/* ---- Commands (cli.c) ---------------------------------------------------- */

struct cli;
struct cli_cmd {
	const char *name; /* "project member add" */
	const char *args; /* "PROJECT USER_ID" */
	const char *summary;
	const struct cli_opt *opts;
	int min_pos, max_pos; /* positional words; max -1: any number */
	bool rest;            /* takes "-- ARGV..." */
	int (*run)(struct cli *c, const struct cli_args *a);
};

struct cli_http;
struct cli {
	const struct cli_cmd *cmd;
	bool json;
	bool quiet;            /* keep "cannot reach" to c->unreachable (retry loops) */
	char unreachable[512]; /* the last "cannot reach the server" message */
	struct cli_http *http; /* opened at the first request */
};

/* The JSON object of an option value: inline JSON, or @FILE to read it from a
 * file. *out is a new reference; usage error naming the option otherwise. */
int cli_json_arg(struct cli *c, const char *opt, const char *value, json_t **out);
/* A whole number between min and max from an option value, or usage error. */
int cli_int_arg(struct cli *c, const char *opt, const char *value, long long min, long long max, long long *out);
/* Print a created, changed or fetched object: its JSON with --json, else the
 * value of `key` alone (an id) when key is not NULL, else its fields. */
void cli_print_result(const struct cli *c, const json_t *obj, const char *key);

/* The command named by the longest prefix of words; *used says how many. */
const struct cli_cmd *cli_find_cmd(int argc, char **argv, int *used);

/* Command families, each in its own file. */
extern const struct cli_cmd uh_cli_project_cmds[], uh_cli_job_cmds[], uh_cli_user_cmds[], uh_cli_secret_cmds[],
    uh_cli_run_cmds[], uh_cli_exception_cmds[], uh_cli_audit_cmds[];

/* ---- HTTP (http.c) ------------------------------------------------------- */

struct cli_resp {
	long status;        /* HTTP status, 0 before an answer */
	struct uh_buf body; /* the answer as received */
	json_t *json;       /* the body parsed, when it is JSON */
	bool cut;           /* a 2xx stream ended by a broken connection */
};

void cli_resp_free(struct cli_resp *r);
void cli_http_close(struct cli *c);

/* Send a request to $UHUB_URL/api/v1 + path (already escaped). body is a
 * JSON text or NULL; idem_key adds an Idempotency-Key header when not NULL.
 * Returns 0 once an answer came, whatever its status (r filled), or prints
 * why none came and returns UH_EXIT_UNREACHABLE / UH_EXIT_USAGE /
 * UH_EXIT_NOPERM (no token). */
int cli_http_do(struct cli *c, const char *method, const char *path, const char *body, size_t len, const char *idem_key,
                struct cli_resp *r);
/* GET path and copy a 2xx body to fd as it arrives, with no total timeout,
 * dropping its first `skip` bytes; *received counts the body bytes read (skipped
 * ones included). A non-2xx body is kept in r instead. Returns as cli_http_do. */
int cli_http_stream(struct cli *c, const char *path, int fd, size_t skip, size_t *received, struct cli_resp *r);

/* 0 for a 2xx answer; otherwise prints the server's error and returns the
 * exit status for the HTTP status. */
int cli_check(const struct cli_resp *r);
/* cli_http_do + cli_check, with body a JSON value (or NULL). */
int cli_call(struct cli *c, const char *method, const char *path, const json_t *body, struct cli_resp *r);
/* GET path and every following page (path's own query kept, before= added),
 * up to max items (0: no bound). *items is a new array; *next the last page's
 * cursor (a new reference, json null when none). */
int cli_list(struct cli *c, const char *path, size_t max, json_t **items, json_t **next);

/* ---- Names (resolve.c) --------------------------------------------------- */

/* The id of the item of list path whose "name" is name (a new string), or
 * *id NULL when none is. */
int cli_find_by_name(struct cli *c, const char *path, const char *name, char **id);
/* A project given by name or id: the name wins; *id is a new string. */
int cli_project_id(struct cli *c, const char *arg, char **id);
/* A job given by id or as PROJECT/JOB: *id is a new string. */
int cli_job_id(struct cli *c, const char *arg, char **id);

/* ---- Output (output.c) --------------------------------------------------- */

void cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print "uhub: MESSAGE" and the command's usage line; return UH_EXIT_USAGE. */
int cli_usage(const struct cli_cmd *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_print_usage(FILE *f, const struct cli_cmd *cmd, bool full);

/* The exit status for an HTTP status that is not 2xx. */
int cli_exit_for_http(long status);
/* "MESSAGE (field: F)" from a {"error": {...}} body, or "server answered HTTP N". */
void cli_error_text(const json_t *body, long status, char *out, size_t n);
/* Whether a run status is terminal (SPEC §2). */
bool cli_run_terminal(const char *status);
/* The exit status SPEC §6 gives a finished run. */
int cli_exit_for_run(const json_t *run);

/* Text of a value for a table cell or a field: strings as they are, null as
 * "-", objects and arrays as compact JSON; control characters become '?' so
 * server data cannot drive the terminal. New string. */
char *cli_text(const json_t *v);
struct cli_col {
	const char *header;
	const char *key;
};
/* Aligned columns, one row per object of items; cols ends with {NULL}. */
void cli_print_table(FILE *f, const json_t *items, const struct cli_col *cols);
/* "key: value" lines for every key of obj, in the server's order. */
void cli_print_fields(FILE *f, const json_t *obj);
/* Indented JSON and a newline on stdout. */
void cli_print_json(const json_t *j);
/* A command's output for one object: the JSON with --json, else fields. */
void cli_print_object(const struct cli *c, const json_t *obj);
/* GET path and print the object. */
int cli_show(struct cli *c, const char *path);
/* GET a list (all pages) and print it as a table, or as one
 * {"items": [...], "next": null} with --json. */
int cli_show_list(struct cli *c, const char *path, const struct cli_col *cols);

#endif
