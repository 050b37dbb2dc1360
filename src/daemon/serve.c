/* `uhub serve`: start-up, first admin, recovery, serving, shutdown.
 *
 * Order matters: config, then the store (with the audit key and head kept
 * outside it), then the backends (which sweep what a dead daemon left), then
 * recovery of runs left running, and only then the HTTP API. */
#include "daemon/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "api/api.h"
#include "backend/backend.h"
#include "core/audit.h"
#include "daemon/supervisor.h"
#include "secret/secret.h"
#include "secret/vault.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/crypto.h"
#include "util/log.h"

extern char **environ;

static volatile int draining;

#define MAX_RELOADS 1024

struct daemon {
	uv_loop_t loop;
	uv_signal_t sigterm, sigint, sighup;
	struct uh_config cfg; /* the start-up config */
	const char *config_path;
	/* Configs loaded by SIGHUP, kept until exit: runs started under one keep
	 * a pointer to it. */
	struct uh_config *reloaded[MAX_RELOADS];
	size_t n_reloaded;
	const struct uh_config *current;
	struct uh_store *store;
	struct uh_supervisor *sup;
	struct uh_api *api;
	struct uh_vault *vault;
	int signals;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: uhub serve [--config FILE] [--listen HOST:PORT] [--db URL] [--log-level LEVEL]\n"
	           "  --config FILE      JSON server config (also UHUB_CONFIG)\n"
	           "  --listen HOST:PORT address to serve on (also UHUB_LISTEN)\n"
	           "  --db URL           sqlite:PATH or postgres://... (also UHUB_DB)\n"
	           "  --log-level LEVEL  debug, info, warn or error\n");
}

/* Overwrite an environment variable's value in place, so it is gone from
 * /proc/self/environ too (unsetenv alone leaves the original block). */
static void scrub_env(const char *name)
{
	size_t n = strlen(name);
	for (char **e = environ; e && *e; e++)
		if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
			uh_memzero(*e + n + 1, strlen(*e + n + 1));
	unsetenv(name);
}

static int read_token_file(const char *path, char *out, size_t outlen, struct uh_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return uh_error_set(err, UH_E_INVALID_CONFIG, "UHUB_BOOTSTRAP_TOKEN_FILE", "cannot read '%s': %s", path,
		                    strerror(errno));
	ssize_t got = read(fd, out, outlen - 1);
	close(fd);
	if (got < 0)
		return uh_error_set(err, UH_E_INVALID_CONFIG, "UHUB_BOOTSTRAP_TOKEN_FILE", "cannot read '%s'", path);
	out[got] = '\0';
	while (got > 0 && (out[got - 1] == '\n' || out[got - 1] == '\r' || out[got - 1] == ' '))
		out[--got] = '\0';
	return 0;
}

/* jansson frees without wiping; a secret value parsed from a request body or
 * a Vault answer passes through its strings. Wipe every block it frees. */
static void json_free_wiped(void *p)
{
	if (p) {
		uh_memzero(p, malloc_usable_size(p));
		free(p);
	}
}

static int reseal_row(void *arg, const char *scope, const char *name, const unsigned char *blob, size_t blob_len,
                      unsigned char **out, size_t *out_len, struct uh_error *err)
{
	(void)arg;
	bool unreadable = false;
	int rc = uh_secret_rotate_reseal(scope, name, blob, blob_len, out, out_len, &unreadable, err);
	if (!rc && unreadable)
		uh_warn("key rotation: secret '%s' of scope '%s' does not open under any key; left as it is", name,
		        scope);
	return rc;
}

/* A key rotation a crash (or a failed re-seal) left pending is finished
 * before anything reads a secret. */
static int finish_rotation(struct uh_store *st, struct uh_error *err)
{
	if (!uh_secret_rotation_pending())
		return 0;
	json_t *details = json_pack("{s:s}", "finished", "at start-up");
	struct uh_audit_in a = {"system", "secret.rotate_key", NULL, details};
	int64_t n = 0;
	int rc = uh_store_secret_reseal(st, reseal_row, NULL, &a, &n, err);
	json_decref(details);
	if (rc)
		return rc;
	uh_info("finished the secrets key rotation a previous run left pending (%lld secrets)", (long long)n);
	return uh_secret_rotate_end(true, err);
}

static int bootstrap(struct daemon *d, const char *db_path, struct uh_error *err)
{
	int64_t users = 0;
	int r = uh_store_user_count(d->store, &users, err);
	if (r)
		return r;
	char token[256] = "";
	const char *env_token = getenv("UHUB_BOOTSTRAP_TOKEN");
	const char *env_file = getenv("UHUB_BOOTSTRAP_TOKEN_FILE");
	if (users > 0) {
		if (env_token)
			scrub_env("UHUB_BOOTSTRAP_TOKEN");
		return 0;
	}
	bool generated = false;
	if (env_token) {
		snprintf(token, sizeof(token), "%s", env_token);
		scrub_env("UHUB_BOOTSTRAP_TOKEN");
	} else if (env_file) {
		r = read_token_file(env_file, token, sizeof(token), err);
		if (r)
			return r;
	} else {
		uh_token_new(token);
		generated = true;
	}
	if (strlen(token) < 32) {
		uh_memzero(token, sizeof(token));
		return uh_error_set(err, UH_E_INVALID_CONFIG, "UHUB_BOOTSTRAP_TOKEN",
		                    "the bootstrap token must be at least 32 characters");
	}
	char hash[65];
	uh_sha256_hex(token, strlen(token), hash);
	json_t *user = NULL;
	struct uh_audit_in a = {"system", "user.create", NULL, NULL};
	r = uh_store_user_create(d->store, "admin", "admin", &a, &user, err);
	if (r) {
		uh_memzero(token, sizeof(token));
		return r;
	}
	const char *uid = json_string_value(json_object_get(user, "id"));
	char tid[UH_ID_MAX];
	struct uh_audit_in ta = {"system", "token.create", uid, NULL};
	r = uh_store_token_create(d->store, uid, hash, 0, &ta, tid, err);
	json_decref(user);
	if (r) {
		uh_memzero(token, sizeof(token));
		return r;
	}
	if (generated) {
		struct uh_buf path = UH_BUF_INIT(4096);
		uh_buf_printf(&path, "%s.admin-token", db_path);
		int fd = open(path.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd >= 0) {
			fchmod(fd, 0600);
			ssize_t w = write(fd, token, strlen(token));
			w += write(fd, "\n", 1);
			close(fd);
			(void)w;
		}
		printf("uhub: first admin created; its token (shown once, also in %s):\n%s\n", path.data, token);
		fflush(stdout);
		uh_buf_free(&path);
	} else {
		uh_info("first admin created from the bootstrap token");
	}
	uh_memzero(token, sizeof(token));
	return 0;
}

static void drained(void *arg)
{
	struct daemon *d = arg;
	uh_info("all runs ended; stopping");
	uv_stop(&d->loop);
}

/* SIGHUP: re-read the config file. Caps, whitelists and allowed lists apply
 * to runs dispatched afterwards; listen, tls and db keep their start-up
 * values. A bad file is refused and the running config stays. */
static void reload(struct daemon *d)
{
	if (!d->config_path) {
		uh_warn("SIGHUP: no config file to reload (started without --config)");
		return;
	}
	if (d->n_reloaded == MAX_RELOADS) {
		uh_warn("SIGHUP: too many reloads in this process; restart uhub to apply the config");
		return;
	}
	struct uh_config *n = calloc(1, sizeof(*n));
	struct uh_error err = {0};
	if (!n || uh_config_defaults(n, &err) || uh_config_load(d->config_path, n, &err)) {
		uh_errorf("SIGHUP: config not reloaded, keeping the running one: %s", err.message);
		if (n)
			uh_config_free(n);
		free(n);
		return;
	}
	/* What is bound at start-up stays. */
	const struct uh_config *cur = d->current;
	if (strcmp(n->db, cur->db) != 0 || strcmp(n->listen, cur->listen) != 0)
		uh_warn("SIGHUP: 'db' and 'listen' changes need a restart; keeping %s on %s", cur->db, cur->listen);
	free(n->db);
	n->db = strdup(cur->db);
	free(n->listen);
	n->listen = strdup(cur->listen);
	d->reloaded[d->n_reloaded++] = n;
	d->current = n;
	uh_supervisor_set_config(d->sup, n);
	uh_api_set_config(d->api, n);
	uh_info("SIGHUP: configuration reloaded from %s", d->config_path);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct daemon *d = h->data;
	if (signum == SIGHUP) {
		reload(d);
		return;
	}
	d->signals++;
	draining = 1;
	if (d->signals == 1) {
		uh_info("%s: no new runs; running runs get shutdown_grace_seconds=%lld", strsignal(signum),
		        (long long)d->cfg.shutdown_grace_s);
		uh_supervisor_drain(d->sup, d->cfg.shutdown_grace_s, drained, d);
	} else {
		uh_info("%s again: canceling running runs now", strsignal(signum));
		uh_supervisor_drain(d->sup, 0, drained, d);
	}
}

static void close_walk(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

int uh_daemon_main(int argc, char **argv)
{
	const char *config_path = getenv("UHUB_CONFIG");
	const char *listen = getenv("UHUB_LISTEN");
	const char *db = getenv("UHUB_DB");
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'}, {"listen", required_argument, NULL, 'l'},
	    {"db", required_argument, NULL, 'd'},     {"log-level", required_argument, NULL, 'L'},
	    {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:l:d:L:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 'l':
			listen = optarg;
			break;
		case 'd':
			db = optarg;
			break;
		case 'L':
			if (!strcmp(optarg, "debug"))
				uh_log_level = UH_LOG_DEBUG;
			else if (!strcmp(optarg, "info"))
				uh_log_level = UH_LOG_INFO;
			else if (!strcmp(optarg, "warn"))
				uh_log_level = UH_LOG_WARN;
			else if (!strcmp(optarg, "error"))
				uh_log_level = UH_LOG_ERROR;
			else {
				usage(stderr);
				return 64;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 64;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 64;
	}

	/* Secrets pass through this process: no core dumps, no ptrace by peers. */
	prctl(PR_SET_DUMPABLE, 0);
	/* Each run in flight holds a few descriptors: use all the host allows
	 * (the supervisor keeps runs queued past what that allows). */
	struct rlimit nofile;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	json_set_alloc_funcs(malloc, json_free_wiped);
	signal(SIGPIPE, SIG_IGN);
	umask(077);

	static struct daemon d;
	struct uh_error err = {0};
	int r = uh_config_defaults(&d.cfg, &err);
	if (!r && config_path)
		r = uh_config_load(config_path, &d.cfg, &err);
	if (r) {
		fprintf(stderr, "uhub: %s\n", err.message);
		return 78;
	}
	if (listen) {
		free(d.cfg.listen);
		d.cfg.listen = strdup(listen);
	}
	if (db) {
		free(d.cfg.db);
		d.cfg.db = strdup(db);
	}
	d.config_path = config_path;
	d.current = &d.cfg;
	const char *db_path = strncmp(d.cfg.db, "sqlite:", 7) == 0 ? d.cfg.db + 7 : NULL;
	if (strncmp(d.cfg.db, "sqlite:", 7) != 0 && strncmp(d.cfg.db, "postgres", 8) != 0) {
		fprintf(stderr, "uhub: 'db' must be sqlite:PATH or postgres://...\n");
		return 78;
	}

	/* The audit key and head live outside the store. */
	struct uh_buf keyp = UH_BUF_INIT(4096), headp = UH_BUF_INIT(4096);
	if (d.cfg.audit.key_file)
		uh_buf_appends(&keyp, d.cfg.audit.key_file);
	else
		uh_buf_printf(&keyp, "%s.audit-key", db_path ? db_path : "./uhub");
	if (d.cfg.audit.head_file)
		uh_buf_appends(&headp, d.cfg.audit.head_file);
	else
		uh_buf_printf(&headp, "%s.audit-head", db_path ? db_path : "./uhub");
	unsigned char audit_key[UH_AUDIT_KEY_LEN];
	if (uh_audit_key_load(keyp.data, audit_key, &err)) {
		fprintf(stderr, "uhub: %s\n", err.message);
		return 78;
	}
	struct uh_store_options so = {audit_key, headp.data};
	r = uh_store_open(d.cfg.db, &so, &d.store, &err);
	uh_memzero(audit_key, sizeof(audit_key));
	if (r) {
		fprintf(stderr, "uhub: cannot open the store: %s\n", err.message);
		return 78;
	}
	/* Secrets: the store's key, a rotation a crash interrupted, Vault. */
	if (uh_secret_keys_init(&d.cfg, &err) || finish_rotation(d.store, &err) ||
	    uh_vault_new(&d.cfg, &d.vault, &err)) {
		fprintf(stderr, "uhub: secrets: %s\n", err.message);
		uh_store_close(d.store);
		return 78;
	}
	if (bootstrap(&d, db_path ? db_path : "./uhub", &err)) {
		fprintf(stderr, "uhub: first admin: %s\n", err.message);
		uh_store_close(d.store);
		return 78;
	}

	uv_loop_init(&d.loop);
	if (uh_backend_init_all(&d.cfg, &d.loop, &err)) {
		fprintf(stderr, "uhub: %s\n", err.message);
		uh_store_close(d.store);
		return 78;
	}
	if (uh_supervisor_new(&d.loop, d.store, &d.cfg, &d.sup, &err) ||
	    (uh_supervisor_set_vault(d.sup, d.vault), uh_supervisor_recover(d.sup, &err))) {
		fprintf(stderr, "uhub: recovery: %s\n", err.message);
		uh_store_close(d.store);
		return 70;
	}
	struct uh_api_deps deps = {
	    .store = d.store,
	    .cfg = &d.cfg,
	    .kick = uh_supervisor_kick,
	    .cancel = uh_supervisor_cancel,
	    .callback = uh_supervisor_callback,
	    .arg = d.sup,
	    .draining = &draining,
	};
	if (uh_api_start(&deps, &d.api, &err)) {
		fprintf(stderr, "uhub: cannot serve on %s: %s\n", d.cfg.listen, err.message);
		uh_store_close(d.store);
		return 69;
	}
	uv_signal_init(&d.loop, &d.sigterm);
	uv_signal_init(&d.loop, &d.sigint);
	uv_signal_init(&d.loop, &d.sighup);
	d.sigterm.data = d.sigint.data = d.sighup.data = &d;
	uv_signal_start(&d.sigterm, on_signal, SIGTERM);
	uv_signal_start(&d.sigint, on_signal, SIGINT);
	uv_signal_start(&d.sighup, on_signal, SIGHUP);

	char host[256];
	snprintf(host, sizeof(host), "%s", d.cfg.listen);
	char *colon = strrchr(host, ':');
	if (colon)
		*colon = '\0';
	printf("uhub: listening on %s://%s:%d\n", d.cfg.tls_cert ? "https" : "http", host, uh_api_port(d.api));
	fflush(stdout);
	uh_info("serving; store %s", d.cfg.db);

	uv_run(&d.loop, UV_RUN_DEFAULT);

	uh_api_stop(d.api);
	uh_backend_shutdown_all();
	uv_walk(&d.loop, close_walk, NULL);
	uv_run(&d.loop, UV_RUN_DEFAULT);
	uh_supervisor_free(d.sup);
	uv_loop_close(&d.loop);
	uh_store_close(d.store);
	uh_vault_free(d.vault);
	uh_secret_keys_shutdown();
	uh_config_free(&d.cfg);
	for (size_t i = 0; i < d.n_reloaded; i++) {
		uh_config_free(d.reloaded[i]);
		free(d.reloaded[i]);
	}
	uh_buf_free(&keyp);
	uh_buf_free(&headp);
	return 0;
}
