/* The Docker execution backend (SPEC §3 "docker"): one ephemeral, hardened
 * container per run, driven through the Engine API (docker_api.c) on the
 * supervisor's loop. Never the docker CLI.
 *
 * A run's sequence (each step starts when the previous one answered):
 *
 *   [GET /version, once per daemon]  negotiate the API version
 *   GET /images/NAME/json | POST /images/create   pull policy
 *   POST /containers/create          labelled uhub.run_id / uhub.node; external_id = its id
 *   POST /containers/ID/attach       hijacked (Upgrade: tcp) on a socket of our own
 *   POST /containers/ID/wait?condition=next-exit   in flight before start: its
 *                                    headers come back once the engine waits
 *   POST /containers/ID/start
 *   write the secrets on the attach stream's stdin, half-close it; read
 *   the multiplexed output until EOF and the wait's answer
 *   GET /containers/ID/json          State.OOMKilled (a run that did not exit 0)
 *   [GET /events?filters=oom&until=] a SIGKILL uhub did not send and the engine
 *                                    did not call an OOM kill (see on_inspected)
 *   DELETE /containers/ID?force=1&v=1
 *   host->finished
 *
 * Secrets travel only over the attach stream to uhub-cinit (src/cinit),
 * the container's entrypoint, which puts them in the job's environment.
 *
 * The hijacked attach connection is a plain non-blocking socket watched by
 * a uv_poll, with the HTTP/1.1 upgrade request written by hand: libcurl
 * 7.88 has no two-way upgrade API, and CONNECT_ONLY + curl_easy_send/recv
 * would need a second watcher on a socket curl's multi also watches.
 *
 * Remote engines (tcp://IPV4:PORT, TLS with docker.tls): the attach socket
 * is TCP, under OpenSSL when docker.tls is set, and the init comes from a
 * named volume the first run populates (see "the init volume" below).
 *
 * Orphans: containers labelled uhub.node=<this node> whose run is not in
 * flight are removed at init() and whenever the engine comes back after a
 * failed request (a sweep every SWEEP_MS while one is owed). */
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "backend/docker_impl.h"
#include "util/crypto.h"
#include "util/log.h"

#ifndef UH_CINIT_NAME
#define UH_CINIT_NAME "uhub-cinit"
#endif

#define CFG               "execution_backend_config"
#define CINIT_MOUNT       "/.uhub/init"
#define CINIT_DIR         "/.uhub"
#define WORK_DIR          "/work"
#define DEFAULT_USER      "65534:65534"
#define API_MAX_MAJOR     1
#define API_MAX_MINOR     41 /* what this file is written against */
#define API_MIN_MINOR     30 /* condition=next-exit */
#define REQ_TIMEOUT_MS    30000L
#define OOM_EVENT_WAIT_MS 1000 /* see on_inspected */
#define PULL_TIMEOUT_MS   (30L * 60 * 1000)
#define DRAIN_MS          2000
#define BACKSTOP_MS       10000 /* past timeout: kill */
#define HARD_STOP_MS      30000 /* past the kill: give up on the engine */
#define SWEEP_MS          5000
#define READ_CHUNK        65536
#define HDR_MAX           8192

/* ---- backend-wide state (supervisor thread) ---- */

struct dk_run;

static struct {
	bool ready;
	uv_loop_t *loop;
	const struct uh_config *cfg; /* the init-time config, for sweeps */
	char node[256];
	char cinit[PATH_MAX];
	char cinit_why[256]; /* why runs cannot start, or "" */
	char api[16];        /* negotiated "1.41", "" until known */
	struct dk_run *runs; /* in flight */
	uv_timer_t sweep_timer;
	bool sweep_needed;
	struct dk_req *sweep_req;
	struct dk_req *sweep_del[64]; /* DELETEs of a sweep in flight */
	size_t sweep_dels;
	/* Remote engines: uhub-cinit as a tar for the named volume holding it. */
	unsigned char *cinit_tar;
	size_t cinit_tar_len;
	char vol[64];          /* "uhub-cinit-" + 16 hex of the binary's SHA-256 */
	bool vol_ready;        /* populated on this engine by this daemon */
	struct dk_run *vol_by; /* the run populating it, or NULL */
	/* The attach stream over TLS (docker.tls): a context per config. */
	SSL_CTX *tls_ctx;
	const json_t *tls_of; /* the docker.tls it was made from */
} G;

static char rbuf[READ_CHUNK];

/* ---- config ---- */

bool dk_glob_match(const char *pattern, const char *s)
{
	return fnmatch(pattern, s, 0) == 0;
}

static bool image_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return false;
	return true;
}

static bool parse_u32(const char *s, size_t n, uint32_t *out)
{
	if (n == 0 || n > 10)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

int dk_conf_parse(const struct uh_config *cfg, const json_t *config, struct dk_conf *c, struct uh_error *err)
{
	memset(c, 0, sizeof(*c));
	c->uid = c->gid = 65534;
	c->network = "none";
	c->pull_policy = cfg->docker.pull_policy ? cfg->docker.pull_policy : "if_not_present";
	c->pids_limit = cfg->docker.pids_limit;
	if (config && !json_is_object(config))
		return uh_error_set(err, UH_E_INVALID_CONFIG, CFG, "'%s' must be a JSON object", CFG);
	int r = uh_backend_limits(config, &c->cpu_milli, &c->mem_bytes, err);
	if (r)
		return r;
	if (c->mem_bytes && c->mem_bytes < 6 * 1024 * 1024)
		return uh_error_set(err, UH_E_INVALID_CONFIG, CFG ".mem_limit",
		                    "'%s.mem_limit' must be at least 6Mi (the engine's minimum)", CFG);
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)config, key, v)
	{
		if (uh_backend_common_key(key))
			continue; /* timeout_seconds is checked and capped by backend.c */
		if (strcmp(key, "image") == 0) {
			const char *s = json_string_value(v);
			if (!s || !image_name_ok(s))
				return uh_error_set(err, UH_E_INVALID_CONFIG, CFG ".image",
				                    "'%s.image' must be an image reference such as \"alpine:3.19\"",
				                    CFG);
			bool ok = false;
			for (size_t i = 0; !ok && i < cfg->docker.allowed_images.n; i++)
				ok = dk_glob_match(cfg->docker.allowed_images.v[i], s);
			if (!ok)
				return uh_error_set(err, UH_E_INVALID_CONFIG, CFG ".image",
				                    "'%s.image' '%s' is not allowed by docker.allowed_images", CFG, s);
			c->image = s;
		} else if (strcmp(key, "user") == 0) {
			const char *s = json_string_value(v);
			const char *colon = s ? strchr(s, ':') : NULL;
			if (!s || !colon || !parse_u32(s, (size_t)(colon - s), &c->uid) ||
			    !parse_u32(colon + 1, strlen(colon + 1), &c->gid) || c->uid == 0 || c->gid == 0)
				return uh_error_set(err, UH_E_INVALID_CONFIG, CFG ".user",
				                    "'%s.user' must be a numeric \"uid:gid\", both non-zero (names and "
				                    "root are refused)",
				                    CFG);
		} else if (strcmp(key, "network") == 0) {
			const char *s = json_string_value(v);
			bool ok = s && strcmp(s, "none") == 0;
			for (size_t i = 0; s && !ok && i < cfg->docker.allowed_networks.n; i++)
				ok = strcmp(cfg->docker.allowed_networks.v[i], s) == 0;
			if (!s || strcmp(s, "host") == 0 || !ok)
				return uh_error_set(err, UH_E_INVALID_CONFIG, CFG ".network",
				                    "'%s.network' must be \"none\" or one of docker.allowed_networks "
				                    "(\"host\" is never allowed)",
				                    CFG);
			c->network = s;
		} else if (strcmp(key, "pull_policy") == 0) {
			const char *s = json_string_value(v);
			if (!s || (strcmp(s, "never") && strcmp(s, "if_not_present") && strcmp(s, "always")))
				return uh_error_set(
				    err, UH_E_INVALID_CONFIG, CFG ".pull_policy",
				    "'%s.pull_policy' must be \"never\", \"if_not_present\" or \"always\"", CFG);
			c->pull_policy = s;
		} else if (strcmp(key, "pids_limit") == 0) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > cfg->docker.pids_limit)
				return uh_error_set(err, UH_E_INVALID_CONFIG, CFG ".pids_limit",
				                    "'%s.pids_limit' must be an integer from 1 to the server cap "
				                    "docker.pids_limit=%lld",
				                    CFG, (long long)cfg->docker.pids_limit);
			c->pids_limit = json_integer_value(v);
		} else {
			char f[128];
			snprintf(f, sizeof(f), CFG ".%s", key);
			return uh_error_set(err, UH_E_INVALID_CONFIG, f,
			                    "unknown key '%s' for backend 'docker' (image, user, network, pull_policy, "
			                    "pids_limit, timeout_seconds, cpu_limit, mem_limit)",
			                    f);
		}
	}
	if (!c->image)
		return uh_error_set(err, UH_E_INVALID_CONFIG, CFG ".image",
		                    "'%s.image' is required for backend 'docker'", CFG);
	return 0;
}

static bool env_name_ok(const char *s)
{
	if (!s || !((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
		return false;
	for (const char *p = s + 1; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return false;
	return strlen(s) < 128;
}

static int check_command(const json_t *command, struct uh_error *err)
{
	if (!json_is_array(command) || json_array_size(command) == 0 || json_array_size(command) > 4096)
		return uh_error_set(err, UH_E_INVALID_REQUEST, "command",
		                    "'command' must be a non-empty array of strings for backend 'docker'");
	for (size_t i = 0; i < json_array_size(command); i++) {
		json_t *a = json_array_get(command, i);
		if (!json_is_string(a) || strlen(json_string_value(a)) != json_string_length(a) ||
		    (i == 0 && json_string_length(a) == 0))
			return uh_error_set(err, UH_E_INVALID_REQUEST, "command",
			                    "'command' must be an array of strings without NUL bytes");
	}
	return 0;
}

static int docker_validate(const struct uh_config *cfg, const json_t *config, const json_t *command,
                           const json_t *env_names, struct uh_error *err)
{
	struct dk_conf c;
	int r = dk_conf_parse(cfg, config, &c, err);
	if (r)
		return r;
	r = check_command(command, err);
	if (r)
		return r;
	if (env_names && !json_is_object(env_names))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "env", "'env' must be an object");
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)env_names, key, v)
	{
		if (!env_name_ok(key)) {
			char f[160];
			snprintf(f, sizeof(f), "env.%s", key);
			return uh_error_set(err, UH_E_INVALID_REQUEST, f,
			                    "environment variable '%s' must match [A-Za-z_][A-Za-z0-9_]*", key);
		}
	}
	return 0;
}

/* ---- the run ---- */

enum step {
	ST_VERSION = 1,
	ST_IMAGE,
	ST_PULL,
	ST_VOLUME, /* remote engine: the init volume */
	ST_CREATE,
	ST_ATTACH,
	ST_WAIT, /* wait in flight, its headers not in yet */
	ST_START,
	ST_RUNNING,
	ST_INSPECT,
	ST_OOM_EVENTS, /* a SIGKILL the engine did not call an OOM kill: ask its event log */
	ST_REMOVE,
	ST_DONE,
};

struct dk_run {
	struct uh_run_handle h; /* first: UH_HANDLE_CAST */
	struct dk_run *next, **pprev;
	bool listed;
	enum step step;
	char *image, *pull_policy, *create_body;
	struct uh_buf secrets; /* uhub-cinit's stdin; wiped */
	size_t secrets_off;
	bool secrets_done;
	char id[80];
	struct dk_req *req;  /* the current step's request */
	struct dk_req *wait; /* the wait, in flight from ST_WAIT on */
	struct dk_req *kill; /* a kill in flight */
	int sock;
	uv_poll_t poll;
	int poll_events;
	struct uh_buf hdr; /* the attach answer's head */
	bool upgraded, att_eof;
	struct dk_demux dmx;
	uv_timer_t kill_timer, drain_timer, backstop, kick;
	int closing;
	bool remote;          /* tcp:// engine: init from the volume, attach over TCP */
	bool connecting;      /* attach socket: TCP connect in progress */
	SSL *ssl;             /* attach over TLS, else NULL */
	bool handshaking;     /* ... its handshake in progress */
	enum step after_pull; /* where a pull returns to */
	int vol_step;         /* ST_VOLUME's sub-steps, for the run populating it */
	char helper[80];      /* the volume's helper container */
	bool probed;          /* the engine answered a new connection after a non-zero exit */
	bool pulled, started, stop_requested, sigkill_sent, wait_done, have_exit, oom, failed, unavailable;
	bool finished, released;
	bool reattached; /* taken over after a daemon restart: attach and wait only */
	int exit_code;
	char ev_since[32], ev_until[32]; /* ST_OOM_EVENTS: the engine's clock, "SECONDS.NANOSECONDS" */
	int64_t timeout_s;
	struct uh_run_result res;
};

static void advance(struct dk_run *r);
static void apply_stop(struct dk_run *r, int64_t grace_ms);
static void on_kick(uv_timer_t *t);

static void unlist(struct dk_run *r)
{
	if (!r->listed)
		return;
	*r->pprev = r->next;
	if (r->next)
		r->next->pprev = r->pprev;
	r->listed = false;
}

static void on_run_close(uv_handle_t *hd)
{
	struct dk_run *r = hd->data;
	if (--r->closing == 0)
		free(r);
}

static void vol_release(struct dk_run *r);

static void run_free(struct dk_run *r)
{
	vol_release(r);
	unlist(r);
	dk_req_cancel(r->req);
	dk_req_cancel(r->wait);
	dk_req_cancel(r->kill);
	r->req = r->wait = r->kill = NULL;
	free(r->image);
	free(r->pull_policy);
	free(r->create_body);
	uh_buf_free(&r->secrets);
	uh_buf_free(&r->hdr);
	uv_handle_t *hs[] = {(uv_handle_t *)&r->poll, (uv_handle_t *)&r->kill_timer, (uv_handle_t *)&r->drain_timer,
	                     (uv_handle_t *)&r->backstop, (uv_handle_t *)&r->kick};
	r->closing = 1;
	for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
		if (hs[i]->data == r && !uv_is_closing(hs[i])) {
			r->closing++;
			uv_close(hs[i], on_run_close);
		}
	SSL_free(r->ssl);
	r->ssl = NULL;
	if (r->sock >= 0)
		close(r->sock); /* after uv_close of its poll: libuv stopped watching it */
	r->sock = -1;
	if (--r->closing == 0)
		free(r);
}

static void close_attach(struct dk_run *r)
{
	if (r->poll.data == r && !uv_is_closing((uv_handle_t *)&r->poll))
		uv_poll_stop(&r->poll);
	r->poll_events = 0;
	r->att_eof = true;
}

/* End the run as an error; what exists of it is removed first. */
static void fail(struct dk_run *r, bool unavailable, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct dk_run *r, bool unavailable, const char *fmt, ...)
{
	if (r->failed || r->step >= ST_REMOVE)
		return;
	r->failed = true;
	r->unavailable = r->unavailable || unavailable;
	if (r->helper[0])
		G.sweep_needed = true; /* the helper is labelled with this run */
	vol_release(r);
	if (unavailable)
		G.sweep_needed = true;
	memset(&r->res, 0, sizeof(r->res));
	r->res.kind = UH_RESULT_ERROR;
	r->res.reason = unavailable ? "backend_unavailable" : "backend_error";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->res.message, sizeof(r->res.message), fmt, ap);
	va_end(ap);
	dk_req_cancel(r->req);
	dk_req_cancel(r->wait);
	r->req = r->wait = NULL;
	close_attach(r);
	uv_timer_stop(&r->drain_timer);
	r->step = r->id[0] ? ST_INSPECT : ST_DONE; /* ST_INSPECT is skipped once failed */
	advance(r);
}

static void fail_req(struct dk_run *r, struct dk_req *q, const char *what)
{
	char d[300];
	dk_req_describe(q, d, sizeof(d));
	bool unav = dk_req_transport_failed(q);
	fail(r, unav, "%s%s: %s", unav ? "docker engine unavailable: " : "", what, d);
}

/* A request of the run's sequence; NULL means the client could not even
 * start it, which ends the run. */
static bool request(struct dk_run *r, const char *method, const char *path, const char *body, long timeout_ms,
                    dk_req_fn done)
{
	r->req = dk_req_start(r->h.cfg, G.api, method, path, body, timeout_ms, 1 << 20, done, NULL, r);
	if (!r->req) {
		fail(r, false, "cannot start a request to the docker engine (%s %s)", method, path);
		return false;
	}
	return true;
}

/* Take the current step's finished request. */
static struct dk_run *take(struct dk_req *q)
{
	struct dk_run *r = q->arg;
	if (r->req == q)
		r->req = NULL;
	return r;
}

/* ---- version ---- */

static bool parse_version(const char *s, int *maj, int *min)
{
	return s && sscanf(s, "%d.%d", maj, min) == 2;
}

static void on_version(struct dk_req *q)
{
	struct dk_run *r = take(q);
	if (q->cc != CURLE_OK || q->status != 200) {
		fail_req(r, q, "GET /version");
		dk_req_free(q);
		return;
	}
	json_t *j = dk_req_json(q);
	int maj = 0, min = 0;
	bool ok = parse_version(json_string_value(json_object_get(j, "ApiVersion")), &maj, &min);
	json_decref(j);
	dk_req_free(q);
	if (!ok || maj != API_MAX_MAJOR || min < API_MIN_MINOR) {
		fail(r, false, "the docker engine's API version %d.%d is too old (1.%d needed)", maj, min,
		     API_MIN_MINOR);
		return;
	}
	if (min > API_MAX_MINOR)
		min = API_MAX_MINOR;
	snprintf(G.api, sizeof(G.api), "%d.%d", maj, min);
	r->step = ST_IMAGE;
	advance(r);
}

/* ---- image ---- */

static void on_pulled(struct dk_req *q)
{
	struct dk_run *r = take(q);
	/* The answer is a stream of JSON progress lines; a failure is a line
	 * with "error" (the status stays 200). */
	if (q->cc != CURLE_OK || q->status != 200 || (q->resp.data && strstr(q->resp.data, "\"error\""))) {
		char d[300] = "";
		if (q->cc == CURLE_OK && q->status == 200) {
			const char *e = strstr(q->resp.data, "\"error\"");
			const char *colon = strchr(e, ':');
			const char *nl = strchr(e, '\n');
			json_t *v = colon ? json_loadb(colon + 1, (size_t)((nl ? nl : e + strlen(e)) - colon - 1),
			                               JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, NULL)
			                  : NULL;
			snprintf(d, sizeof(d), "%s", json_string_value(v) ? json_string_value(v) : "pull failed");
			json_decref(v);
			fail(r, false, "cannot pull image '%s': %s", r->image, d);
		} else {
			fail_req(r, q, "pull");
		}
		dk_req_free(q);
		return;
	}
	dk_req_free(q);
	r->pulled = true;
	r->step = r->after_pull;
	advance(r);
}

static void pull(struct dk_run *r)
{
	char from[800], tag[300] = "", path[1200];
	/* fromImage without a tag pulls every tag: name one. */
	const char *slash = strrchr(r->image, '/');
	const char *last = slash ? slash + 1 : r->image;
	bool has_tag = strchr(last, ':') || strchr(r->image, '@');
	if (!dk_urlencode(r->image, from, sizeof(from))) {
		fail(r, false, "image name too long");
		return;
	}
	if (!has_tag)
		snprintf(tag, sizeof(tag), "&tag=latest");
	snprintf(path, sizeof(path), "/images/create?fromImage=%s%s", from, tag);
	r->step = ST_PULL;
	r->req = dk_req_start(r->h.cfg, G.api, "POST", path, NULL, PULL_TIMEOUT_MS, 4 << 20, on_pulled, NULL, r);
	if (!r->req)
		fail(r, false, "cannot start a request to the docker engine (pull)");
}

/* ---- the init volume (remote engines) ----
 *
 * A host bind of uhub-cinit does not exist on a remote engine, and PUT
 * /archive is refused on a read-only root: the init lives in a named volume
 * ("uhub-cinit-<hash of the binary>", labelled uhub.cinit) mounted read-only
 * at /.uhub. The first run that needs it populates it: create the volume, a
 * helper container (the run's image, never started) with it mounted
 * read-write, PUT the init into it as a tar, remove the helper. Other runs
 * wait for that (a daemon does it once per engine; PUT is idempotent, so
 * daemons racing on one engine are harmless). */

static void vol_release(struct dk_run *r)
{
	if (G.vol_by != r)
		return;
	G.vol_by = NULL;
	for (struct dk_run *o = G.runs; o; o = o->next)
		if (o != r && o->step == ST_VOLUME)
			uv_timer_start(&o->kick, on_kick, 0, 0);
}

static void vol_next(struct dk_run *r);

static void on_vol(struct dk_req *q)
{
	struct dk_run *r = take(q);
	long st = q->status;
	bool ok = q->cc == CURLE_OK;
	switch (r->vol_step) {
	case 0: /* volume created (or there already) */
		ok = ok && (st == 201 || st == 200);
		break;
	case 1: { /* helper created */
		if (ok && st == 404 && strcmp(r->pull_policy, "never") != 0 && !r->pulled) {
			dk_req_free(q);
			vol_release(r);
			r->after_pull = ST_VOLUME;
			pull(r);
			return;
		}
		json_t *j = ok && st == 201 ? dk_req_json(q) : NULL;
		const char *id = json_string_value(json_object_get(j, "Id"));
		ok = id && *id && strlen(id) < sizeof(r->helper) && strspn(id, "0123456789abcdef") == strlen(id);
		if (ok)
			snprintf(r->helper, sizeof(r->helper), "%s", id);
		json_decref(j);
		break;
	}
	case 2: /* init copied in */
		ok = ok && st == 200;
		break;
	default: /* helper removed */
		ok = ok && (st == 204 || st == 404);
		break;
	}
	if (!ok) {
		fail_req(r, q, "init volume");
		dk_req_free(q);
		return;
	}
	dk_req_free(q);
	if (++r->vol_step == 4) {
		r->helper[0] = 0;
		G.vol_ready = true;
		vol_release(r);
		r->step = ST_CREATE;
		advance(r);
		return;
	}
	vol_next(r);
}

static void vol_next(struct dk_run *r)
{
	char path[300];
	json_t *body = NULL;
	switch (r->vol_step) {
	case 0:
		body = json_pack("{s:s, s:{s:s}}", "Name", G.vol, "Labels", "uhub.cinit", "1");
		snprintf(path, sizeof(path), "/volumes/create");
		break;
	case 1:
		body =
		    json_pack("{s:s, s:[s], s:{s:s, s:s}, s:b, s:{s:[{s:s, s:s, s:s}], s:s, s:{s:s, s:{}}}}", "Image",
		              r->image, "Cmd", CINIT_MOUNT, "Labels", "uhub.node", G.node, "uhub.run_id", r->h.run_id,
		              "NetworkDisabled", 1, "HostConfig", "Mounts", "Type", "volume", "Source", G.vol, "Target",
		              CINIT_DIR, "NetworkMode", "none", "LogConfig", "Type", "none", "Config");
		snprintf(path, sizeof(path), "/containers/create?name=uhub-cinit-%s", r->h.run_id);
		break;
	case 2:
		snprintf(path, sizeof(path), "/containers/%s/archive?path=%s", r->helper, CINIT_DIR);
		r->req = dk_req_start_raw(r->h.cfg, G.api, "PUT", path, G.cinit_tar, G.cinit_tar_len,
		                          "Content-Type: application/x-tar", REQ_TIMEOUT_MS, 4096, on_vol, NULL, r);
		if (!r->req)
			fail(r, false, "cannot start a request to the docker engine (init volume)");
		return;
	default:
		snprintf(path, sizeof(path), "/containers/%s?force=1", r->helper);
		request(r, "DELETE", path, NULL, REQ_TIMEOUT_MS, on_vol);
		return;
	}
	char *b = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!b) {
		fail(r, false, "out of memory");
		return;
	}
	request(r, "POST", path, b, REQ_TIMEOUT_MS, on_vol);
	free(b);
}

/* ---- create ---- */

static void on_created(struct dk_req *q)
{
	struct dk_run *r = take(q);
	if (q->cc == CURLE_OK && q->status == 404) {
		/* No such image (a container of that name cannot be missing). */
		dk_req_free(q);
		if (strcmp(r->pull_policy, "never") == 0)
			fail(r, false, "image '%s' is not on the docker engine and pull_policy is \"never\"", r->image);
		else if (r->pulled)
			fail(r, false, "image '%s' is still missing after a pull", r->image);
		else {
			r->after_pull = ST_CREATE;
			pull(r);
		}
		return;
	}
	json_t *j = q->cc == CURLE_OK && q->status == 201 ? dk_req_json(q) : NULL;
	const char *id = json_string_value(json_object_get(j, "Id"));
	if (!id || !*id || strlen(id) >= sizeof(r->id) || strspn(id, "0123456789abcdef") != strlen(id)) {
		json_decref(j);
		fail_req(r, q, "container create");
		dk_req_free(q);
		return;
	}
	snprintf(r->id, sizeof(r->id), "%s", id);
	json_decref(j);
	dk_req_free(q);
	snprintf(r->h.external_id, sizeof(r->h.external_id), "container:%s", r->id);
	r->h.host->persist(&r->h);
	r->step = ST_ATTACH;
	advance(r);
}

/* ---- attach ---- */

static void on_frame(void *arg, int stream, const char *data, size_t len)
{
	struct dk_run *r = arg;
	if (!r->released && !r->finished)
		r->h.host->output(&r->h, stream == 2 ? UH_STREAM_STDERR : UH_STREAM_STDOUT, data, len);
}

static void on_sock(uv_poll_t *p, int status, int events);

static void watch(struct dk_run *r)
{
	if (r->connecting || r->handshaking)
		return;
	int ev = 0;
	if (!r->att_eof) {
		ev |= UV_READABLE;
		if (r->started && r->upgraded && !r->secrets_done)
			ev |= UV_WRITABLE;
	}
	if (ev == r->poll_events)
		return;
	r->poll_events = ev;
	if (ev)
		uv_poll_start(&r->poll, ev, on_sock);
	else
		uv_poll_stop(&r->poll);
}

/* send/recv on the attach socket, through TLS when there is one; -1 with
 * errno EAGAIN when it would block, 0 at EOF. */
static ssize_t io_send(struct dk_run *r, const void *b, size_t n)
{
	if (!r->ssl)
		return send(r->sock, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	ERR_clear_error();
	int k = SSL_write(r->ssl, b, n > INT_MAX ? INT_MAX : (int)n);
	if (k > 0)
		return k;
	int e = SSL_get_error(r->ssl, k);
	errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : EPIPE;
	return -1;
}

static ssize_t io_recv(struct dk_run *r, void *b, size_t n)
{
	if (!r->ssl)
		return recv(r->sock, b, n, MSG_DONTWAIT);
	ERR_clear_error();
	int k = SSL_read(r->ssl, b, n > INT_MAX ? INT_MAX : (int)n);
	if (k > 0)
		return k;
	int e = SSL_get_error(r->ssl, k);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		errno = EAGAIN;
		return -1;
	}
	if (e == SSL_ERROR_ZERO_RETURN)
		return 0;
	errno = ECONNRESET;
	return -1;
}

static void io_shutdown_write(struct dk_run *r)
{
	if (r->ssl)
		SSL_shutdown(r->ssl); /* close_notify: the engine reads EOF, and writes on */
	else
		shutdown(r->sock, SHUT_WR);
}

static void write_secrets(struct dk_run *r)
{
	while (r->secrets_off < r->secrets.len) {
		ssize_t n = io_send(r, r->secrets.data + r->secrets_off, r->secrets.len - r->secrets_off);
		if (n > 0) {
			r->secrets_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return; /* on_sock writes the rest */
		/* The stream is gone (the job ended or the engine went): the
		 * wait tells which. */
		break;
	}
	uh_buf_free(&r->secrets); /* wipes */
	io_shutdown_write(r);
	r->secrets_done = true;
}

static void attach_upgraded(struct dk_run *r);
static void send_attach(struct dk_run *r);
static void on_sock(uv_poll_t *p, int status, int events);

/* The client context for docker.tls (ca, cert, key): made once per
 * config (files read at the first TLS attach of a config), kept until the
 * next. NULL with *why on failure. */
static SSL_CTX *tls_ctx(const struct uh_config *cfg, char *why, size_t whylen)
{
	if (G.tls_ctx && G.tls_of == cfg->docker.tls)
		return G.tls_ctx;
	const char *ca = json_string_value(json_object_get(cfg->docker.tls, "ca"));
	const char *cert = json_string_value(json_object_get(cfg->docker.tls, "cert"));
	const char *key = json_string_value(json_object_get(cfg->docker.tls, "key"));
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());
	if (!c) {
		snprintf(why, whylen, "cannot create a TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
	SSL_CTX_set_options(c, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
	const char *bad = NULL;
	if (ca ? SSL_CTX_load_verify_locations(c, ca, NULL) != 1 : SSL_CTX_set_default_verify_paths(c) != 1)
		bad = "docker.tls.ca";
	else if (cert && SSL_CTX_use_certificate_chain_file(c, cert) != 1)
		bad = "docker.tls.cert";
	else if (key && SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1)
		bad = "docker.tls.key";
	if (bad) {
		snprintf(why, whylen, "cannot load '%s'", bad);
		SSL_CTX_free(c);
		return NULL;
	}
	SSL_CTX_free(G.tls_ctx);
	G.tls_ctx = c;
	G.tls_of = cfg->docker.tls;
	return c;
}

static void handshake(struct dk_run *r)
{
	ERR_clear_error();
	int k = SSL_connect(r->ssl);
	if (k == 1) {
		r->handshaking = false;
		r->poll_events = 0;
		send_attach(r);
		return;
	}
	int e = SSL_get_error(r->ssl, k);
	int ev = e == SSL_ERROR_WANT_READ ? UV_READABLE : e == SSL_ERROR_WANT_WRITE ? UV_WRITABLE : 0;
	if (!ev) {
		char msg[200];
		ERR_error_string_n(ERR_peek_last_error(), msg, sizeof(msg));
		long v = SSL_get_verify_result(r->ssl);
		fail(r, v != X509_V_OK ? false : true, "%sTLS handshake with the docker engine failed: %s%s%s",
		     v != X509_V_OK ? "" : "docker engine unavailable: ", msg, v != X509_V_OK ? ": " : "",
		     v != X509_V_OK ? X509_verify_cert_error_string(v) : "");
		return;
	}
	if (ev != r->poll_events) {
		r->poll_events = ev;
		uv_poll_start(&r->poll, ev, on_sock);
	}
}

static void start_tls(struct dk_run *r)
{
	char why[200];
	SSL_CTX *c = tls_ctx(r->h.cfg, why, sizeof(why));
	struct dk_host hst;
	dk_host_parse(r->h.cfg, &hst, NULL);
	char host[256];
	snprintf(host, sizeof(host), "%s", hst.hostport);
	char *colon = strrchr(host, ':');
	if (colon)
		*colon = 0;
	if (!c || !(r->ssl = SSL_new(c)) || SSL_set_fd(r->ssl, r->sock) != 1 ||
	    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(r->ssl), host) != 1) {
		fail(r, false, "attach over TLS: %s", c ? "cannot set up the connection" : why);
		return;
	}
	r->handshaking = true;
	handshake(r);
}

static void on_sock(uv_poll_t *p, int status, int events)
{
	struct dk_run *r = p->data;
	if (r->connecting && status == 0 && (events & UV_WRITABLE)) {
		int e = 0;
		socklen_t el = sizeof(e);
		if (getsockopt(r->sock, SOL_SOCKET, SO_ERROR, &e, &el) || e) {
			fail(r, true, "docker engine unavailable: cannot connect for attach: %s",
			     strerror(e ? e : errno));
			return;
		}
		r->connecting = false;
		r->poll_events = 0;
		if (json_is_object(r->h.cfg->docker.tls)) {
			start_tls(r);
			return;
		}
		send_attach(r);
		return;
	}
	if (r->handshaking) {
		if (status < 0)
			fail(r, true, "docker engine unavailable: attach: %s", uv_strerror(status));
		else
			handshake(r);
		return;
	}
	if (status < 0) {
		if (!r->upgraded) {
			fail(r, true, "docker engine unavailable: attach: %s", uv_strerror(status));
			return;
		}
		close_attach(r);
		advance(r);
		return;
	}
	if ((events & UV_WRITABLE) && r->started && !r->secrets_done) {
		write_secrets(r);
	}
	if (events & (UV_READABLE | UV_DISCONNECT)) {
		for (int i = 0; !r->att_eof && (i < 16 || (r->ssl && SSL_pending(r->ssl) > 0)); i++) {
			ssize_t n = io_recv(r, rbuf, sizeof(rbuf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			if (n <= 0) {
				if (!r->upgraded) {
					fail(r, true, "docker engine unavailable: the attach connection closed");
					return;
				}
				close_attach(r);
				break;
			}
			const char *d = rbuf;
			size_t len = (size_t)n;
			if (!r->upgraded) {
				size_t old = r->hdr.len;
				if (uh_buf_append(&r->hdr, d, len)) {
					fail(r, false, "attach: the engine's answer is too long");
					return;
				}
				char *end = strstr(r->hdr.data, "\r\n\r\n");
				if (!end)
					continue;
				size_t head = (size_t)(end - r->hdr.data) + 4;
				if (strncmp(r->hdr.data, "HTTP/1.1 101", 12) != 0 &&
				    strncmp(r->hdr.data, "HTTP/1.1 200", 12) != 0 &&
				    strncmp(r->hdr.data, "HTTP/1.0 200", 12) != 0) {
					char *eol = strstr(r->hdr.data, "\r\n");
					*eol = 0;
					fail(r, false, "attach refused: %.100s", r->hdr.data);
					return;
				}
				d = d + (head - old);
				len = r->hdr.len - head;
				attach_upgraded(r);
				if (r->failed)
					return;
			}
			if (len && dk_demux_feed(&r->dmx, d, len, on_frame, r)) {
				fail(r, false, "the attach stream is malformed");
				return;
			}
		}
	}
	if (r->att_eof)
		advance(r);
	else
		watch(r);
}

static void attach(struct dk_run *r)
{
	struct dk_host hst;
	struct uh_error e;
	if (dk_host_parse(r->h.cfg, &hst, &e)) {
		fail(r, false, "%s", e.message);
		return;
	}
	int fd = dk_raw_connect(&hst);
	if (fd < 0) {
		fail(r, true, "docker engine unavailable: cannot connect for attach: %s", strerror(-fd));
		return;
	}
	r->sock = fd;
	if (uv_poll_init_socket(r->h.loop, &r->poll, fd)) {
		fail(r, false, "cannot watch the attach connection");
		return;
	}
	r->poll.data = r;
	if (!hst.unix_sock) {
		/* TCP: the connect completes when the socket is writable. */
		r->connecting = true;
		uh_buf_init(&r->hdr, HDR_MAX);
		r->poll_events = UV_WRITABLE;
		uv_poll_start(&r->poll, UV_WRITABLE, on_sock);
		return;
	}
	send_attach(r);
}

static void send_attach(struct dk_run *r)
{
	struct dk_host hst;
	dk_host_parse(r->h.cfg, &hst, NULL);
	char req[512];
	int n = snprintf(req, sizeof(req),
	                 "POST /v%s/containers/%s/attach?stream=1&stdin=%d&stdout=1&stderr=1 HTTP/1.1\r\n"
	                 "Host: %s\r\nContent-Length: 0\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
	                 G.api, r->id, r->reattached ? 0 : 1, hst.unix_sock ? "docker" : hst.hostport);
	/* A few hundred bytes on a fresh socket: the kernel takes them at once
	 * (for a TCP connect in progress, once writable). */
	ssize_t w = io_send(r, req, (size_t)n);
	if (w != n) {
		fail(r, true, "docker engine unavailable: cannot send the attach request: %s",
		     w < 0 ? strerror(errno) : "short write");
		return;
	}
	uh_buf_init(&r->hdr, HDR_MAX);
	watch(r);
}

static void on_wait_headers(struct dk_req *q)
{
	struct dk_run *r = q->arg;
	if (q->status != 200 || r->step != ST_WAIT)
		return; /* on_waited reports it */
	/* Inside a libcurl callback: no curl call here, advance from the loop. */
	if (r->reattached) {
		r->step = ST_RUNNING; /* started long ago */
		if (r->stop_requested)
			uv_timer_start(&r->kick, on_kick, 0, 0);
		return;
	}
	r->step = ST_START;
	uv_timer_start(&r->kick, on_kick, 0, 0);
}

static void on_waited(struct dk_req *q)
{
	struct dk_run *r = q->arg;
	r->wait = NULL;
	if (q->cc != CURLE_OK || q->status != 200) {
		fail_req(r, q, "container wait");
		dk_req_free(q);
		return;
	}
	json_t *j = dk_req_json(q);
	json_t *code = json_object_get(j, "StatusCode");
	if (json_is_integer(code)) {
		r->exit_code = (int)json_integer_value(code);
		r->have_exit = true;
	}
	json_decref(j);
	dk_req_free(q);
	r->wait_done = true;
	advance(r);
}

static void attach_upgraded(struct dk_run *r)
{
	r->upgraded = true;
	uh_buf_free(&r->hdr);
	/* Attached: now the wait, whose answer's headers mean the engine waits
	 * for the next exit; only then start (a fast exit is never missed). */
	char path[200];
	/* Re-attached: the container may have ended while uhub was down;
	 * not-running answers at once then, with its exit code. */
	snprintf(path, sizeof(path), "/containers/%s/wait?condition=%s", r->id,
	         r->reattached ? "not-running" : "next-exit");
	r->step = ST_WAIT;
	r->wait = dk_req_start(r->h.cfg, G.api, "POST", path, NULL, 0, 4096, on_waited, on_wait_headers, r);
	if (!r->wait)
		fail(r, false, "cannot start a request to the docker engine (wait)");
}

/* ---- start, stop ---- */

static void on_started(struct dk_req *q)
{
	struct dk_run *r = take(q);
	if (q->cc != CURLE_OK || (q->status != 204 && q->status != 304)) {
		fail_req(r, q, "container start");
		dk_req_free(q);
		return;
	}
	dk_req_free(q);
	r->started = true;
	r->step = ST_RUNNING;
	write_secrets(r);
	if (r->stop_requested)
		apply_stop(r, r->sigkill_sent ? 0 : -1);
	watch(r);
	advance(r);
}

static void on_killed(struct dk_req *q)
{
	struct dk_run *r = q->arg;
	r->kill = NULL;
	dk_req_free(q); /* 409 "not running" and the like: the wait tells the end */
}

static void send_kill(struct dk_run *r, const char *sig)
{
	if (!r->id[0] || r->step >= ST_INSPECT)
		return;
	if (r->kill) {
		dk_req_cancel(r->kill);
		r->kill = NULL;
	}
	char path[200];
	snprintf(path, sizeof(path), "/containers/%s/kill?signal=%s", r->id, sig);
	r->kill = dk_req_start(r->h.cfg, G.api, "POST", path, NULL, REQ_TIMEOUT_MS, 4096, on_killed, NULL, r);
}

static void on_kill_timer(uv_timer_t *t)
{
	struct dk_run *r = t->data;
	r->sigkill_sent = true;
	send_kill(r, "SIGKILL");
}

/* grace_ms < 0: re-apply after start (the timer is already set). */
static void apply_stop(struct dk_run *r, int64_t grace_ms)
{
	if (grace_ms == 0) {
		uv_timer_stop(&r->kill_timer);
		on_kill_timer(&r->kill_timer);
		return;
	}
	if (!r->sigkill_sent)
		send_kill(r, "SIGTERM");
}

static void docker_stop(struct uh_run_handle *h, int64_t grace_ms)
{
	struct dk_run *r = UH_HANDLE_CAST(struct dk_run, h, &uh_backend_docker);
	if (r->step >= ST_INSPECT || r->finished)
		return;
	bool first = !r->stop_requested;
	r->stop_requested = true;
	if (!r->started) {
		/* Nothing runs yet: the sequence ends at the next step. */
		if (r->step != ST_START) {
			if ((r->req && r->step == ST_CREATE) || r->helper[0] || G.vol_by == r)
				G.sweep_needed = true; /* the engine may create it all the same */
			vol_release(r);
			dk_req_cancel(r->req);
			dk_req_cancel(r->wait);
			r->req = r->wait = NULL;
			close_attach(r);
			memset(&r->res, 0, sizeof(r->res));
			r->res.kind = UH_RESULT_SIGNALED;
			r->res.signal = SIGKILL;
			r->res.exit_code = 128 + SIGKILL;
			snprintf(r->res.message, sizeof(r->res.message), "stopped before the container started");
			r->failed = true; /* the result is set */
			r->step = r->id[0] ? ST_INSPECT : ST_DONE;
			advance(r);
			return;
		}
		/* start in flight: on_started applies the stop */
	}
	uint64_t due_in = uv_timer_get_due_in(&r->kill_timer); /* 0 when not armed */
	if (grace_ms <= 0) {
		if (r->started)
			apply_stop(r, 0);
		else
			uv_timer_start(&r->kill_timer, on_kill_timer, 0, 0);
		return;
	}
	if (first || !uv_is_active((uv_handle_t *)&r->kill_timer) || (uint64_t)grace_ms < due_in)
		uv_timer_start(&r->kill_timer, on_kill_timer, (uint64_t)grace_ms, 0);
	if (first && r->started)
		apply_stop(r, grace_ms);
}

static void on_backstop(uv_timer_t *t)
{
	struct dk_run *r = t->data;
	if (r->step >= ST_INSPECT)
		return;
	if (!r->sigkill_sent && r->started) {
		/* The supervisor should have stopped it by now: kill, and give the
		 * engine a little longer to report. */
		r->stop_requested = true;
		apply_stop(r, 0);
		uv_timer_start(&r->backstop, on_backstop, HARD_STOP_MS, 0);
		return;
	}
	fail(r, true, "docker engine unavailable: it did not report the container's end");
}

static void on_kick(uv_timer_t *t)
{
	advance(t->data);
}

static void on_drain_timer(uv_timer_t *t)
{
	struct dk_run *r = t->data;
	close_attach(r);
	advance(r);
}

/* ---- inspect, remove, finish ---- */

static void on_inspected(struct dk_req *q)
{
	struct dk_run *r = take(q);
	if (q->cc != CURLE_OK || q->status != 200) {
		fail_req(r, q, "container inspect");
		dk_req_free(q);
		return;
	}
	json_t *j = dk_req_json(q);
	json_t *state = json_object_get(j, "State");
	r->oom = json_is_true(json_object_get(state, "OOMKilled"));
	if (!r->have_exit && json_is_integer(json_object_get(state, "ExitCode"))) {
		r->exit_code = (int)json_integer_value(json_object_get(state, "ExitCode"));
		r->have_exit = true;
	}
	/* OOMKilled is only as good as the order in which the engine hears of
	 * the OOM kill and of the exit: containerd's shim watches the two apart,
	 * and dockerd 20.10 sets OOMKilled only if the OOM came first (newer
	 * engines set it when it comes, after the wait may have answered). Its
	 * "oom" event is logged either way. So a container that ended by a
	 * SIGKILL uhub did not send asks the event log, up to OOM_EVENT_WAIT_MS
	 * past the end by the engine's clock (the engine answers at once with
	 * what it has logged, and waits no longer than that). */
	r->step = ST_REMOVE;
	if (!r->oom && r->have_exit && r->exit_code == 128 + SIGKILL && !r->stop_requested &&
	    dk_engine_time(json_string_value(json_object_get(state, "StartedAt")), -1000, r->ev_since,
	                   sizeof(r->ev_since)) &&
	    dk_engine_time(json_string_value(json_object_get(state, "FinishedAt")), OOM_EVENT_WAIT_MS, r->ev_until,
	                   sizeof(r->ev_until)))
		r->step = ST_OOM_EVENTS;
	json_decref(j);
	dk_req_free(q);
	advance(r);
}

static void on_oom_events(struct dk_req *q)
{
	struct dk_run *r = take(q);
	/* Stopped at its first line (CURLE_WRITE_ERROR): an event came. */
	bool answered = (q->cc == CURLE_OK || q->cc == CURLE_WRITE_ERROR) && q->status == 200;
	if (answered)
		r->oom = q->resp.len > 0 && memmem(q->resp.data, q->resp.len, "\"oom\"", 5) != NULL;
	else {
		char d[300];
		dk_req_describe(q, d, sizeof(d));
		uh_warn("backend=docker run=%s: the engine's event log could not be read (%s); the run's end is "
		        "reported without it",
		        r->h.run_id, d);
	}
	dk_req_free(q);
	r->step = ST_REMOVE;
	advance(r);
}

static void on_probed(struct dk_req *q)
{
	struct dk_run *r = take(q);
	if (q->cc != CURLE_OK || q->status != 200) {
		fail_req(r, q, "the container ended and the engine does not answer a new connection (shutting down?)");
		dk_req_free(q);
		return;
	}
	dk_req_free(q);
	r->probed = true;
	advance(r);
}

static void on_removed(struct dk_req *q)
{
	struct dk_run *r = take(q);
	if (q->cc != CURLE_OK || (q->status != 204 && q->status != 404)) {
		char d[300];
		dk_req_describe(q, d, sizeof(d));
		G.sweep_needed = true;
		uh_warn("backend=docker run=%s: container %.12s not removed (%s); a sweep will retry", r->h.run_id,
		        r->id, d);
		if (!r->failed)
			fail(r, dk_req_transport_failed(q), "%scontainer not removed: %s",
			     dk_req_transport_failed(q) ? "docker engine unavailable: " : "", d);
		if (dk_req_transport_failed(q))
			r->unavailable = true;
	}
	dk_req_free(q);
	r->step = ST_DONE;
	advance(r);
}

static void make_result(struct dk_run *r)
{
	struct uh_run_result *res = &r->res;
	if (r->failed)
		return;
	memset(res, 0, sizeof(*res));
	if (!r->have_exit) {
		res->kind = UH_RESULT_ERROR;
		res->reason = "backend_error";
		snprintf(res->message, sizeof(res->message), "the engine reported no exit status");
		return;
	}
	int c = r->exit_code;
	/* The engine reports 128+N for a process killed by signal N. */
	if (c > 128 && c < 128 + 65) {
		res->kind = UH_RESULT_SIGNALED;
		res->signal = c - 128;
		res->exit_code = c;
		const char *abbr = sigabbrev_np(c - 128);
		snprintf(res->message, sizeof(res->message), "killed by signal %d (SIG%s)", c - 128, abbr ? abbr : "?");
	} else {
		res->kind = UH_RESULT_EXITED;
		res->exit_code = c;
		snprintf(res->message, sizeof(res->message), "exited with status %d", c);
		if (c == 126 || c == 127)
			snprintf(res->message + strlen(res->message), sizeof(res->message) - strlen(res->message),
			         " (command not found or not executable?)");
	}
	if (r->oom) {
		res->oom = true;
		snprintf(res->message + strlen(res->message), sizeof(res->message) - strlen(res->message),
		         "; the memory limit was hit");
	}
}

static void advance(struct dk_run *r)
{
	char path[512];
	if (r->req || r->finished)
		return; /* a request of the sequence is in flight */
	switch (r->step) {
	case ST_VERSION:
		if (G.api[0]) {
			r->step = ST_IMAGE;
			advance(r);
			return;
		}
		r->req =
		    dk_req_start(r->h.cfg, "", "GET", "/version", NULL, REQ_TIMEOUT_MS, 1 << 16, on_version, NULL, r);
		if (!r->req)
			fail(r, false, "cannot start a request to the docker engine (version)");
		return;
	case ST_IMAGE:
		if (r->reattached) {
			r->step = ST_ATTACH;
			advance(r);
			return;
		}
		/* `always` pulls first; otherwise create straight away and pull
		 * only when the engine says it has no such image (one round trip
		 * fewer per run than inspecting the image first). */
		if (strcmp(r->pull_policy, "always") == 0 && !r->pulled) {
			pull(r);
			return;
		}
		r->step = r->remote ? ST_VOLUME : ST_CREATE;
		advance(r);
		return;
	case ST_PULL:
		return;
	case ST_VOLUME:
		if (G.vol_ready) {
			r->step = ST_CREATE;
			advance(r);
			return;
		}
		if (G.vol_by && G.vol_by != r)
			return; /* kicked when the populating run is done */
		G.vol_by = r;
		vol_next(r);
		return;
	case ST_CREATE:
		snprintf(path, sizeof(path), "/containers/create?name=uhub-%s", r->h.run_id);
		request(r, "POST", path, r->create_body, REQ_TIMEOUT_MS, on_created);
		return;
	case ST_ATTACH:
		if (r->sock < 0)
			attach(r);
		return;
	case ST_WAIT:
		return;
	case ST_START:
		snprintf(path, sizeof(path), "/containers/%s/start", r->id);
		request(r, "POST", path, NULL, REQ_TIMEOUT_MS, on_started);
		return;
	case ST_RUNNING:
		if (!r->wait_done)
			return;
		if (!r->att_eof) {
			/* The container is gone; its stream should end at once.
			 * Do not wait for ever on one that does not. */
			if (!uv_is_active((uv_handle_t *)&r->drain_timer))
				uv_timer_start(&r->drain_timer, on_drain_timer, DRAIN_MS, 0);
			return;
		}
		uv_timer_stop(&r->drain_timer);
		r->step = ST_INSPECT;
		/* fall through */
	case ST_INSPECT:
		/* OOMKilled matters only for a run that did not succeed (as for
		 * the Local backend): a clean exit skips a round trip. */
		if (r->failed || (r->have_exit && r->exit_code == 0)) {
			r->step = ST_REMOVE;
			advance(r);
			return;
		}
		if (!r->probed) {
			/* A container killed by an engine that is shutting down
			 * looks like any other: the engine refuses new connections
			 * by then, so ask on a new one before believing the exit. */
			r->req = dk_req_ping(r->h.cfg, on_probed, r);
			if (!r->req)
				fail(r, false, "cannot start a request to the docker engine (ping)");
			return;
		}
		snprintf(path, sizeof(path), "/containers/%s/json", r->id);
		request(r, "GET", path, NULL, REQ_TIMEOUT_MS, on_inspected);
		return;
	case ST_OOM_EVENTS: {
		char filters[200], enc[400];
		snprintf(filters, sizeof(filters),
		         "{\"container\":[\"%s\"],\"type\":[\"container\"],\"event\":[\"oom\"]}", r->id);
		if (!dk_urlencode(filters, enc, sizeof(enc))) {
			r->step = ST_REMOVE;
			advance(r);
			return;
		}
		snprintf(path, sizeof(path), "/events?since=%s&until=%s&filters=%s", r->ev_since, r->ev_until, enc);
		if (request(r, "GET", path, NULL, OOM_EVENT_WAIT_MS + REQ_TIMEOUT_MS, on_oom_events))
			r->req->stop_at_line = true; /* one event is the answer */
		return;
	}
	case ST_REMOVE:
		if (r->unavailable) {
			/* The engine is gone: do not wait for it; the sweep removes
			 * the container once it is back. */
			r->step = ST_DONE;
			advance(r);
			return;
		}
		dk_req_cancel(r->kill);
		r->kill = NULL;
		snprintf(path, sizeof(path), "/containers/%s?force=1&v=1", r->id);
		r->req = dk_req_start(r->h.cfg, G.api, "DELETE", path, NULL, REQ_TIMEOUT_MS, 4096, on_removed, NULL, r);
		if (!r->req) {
			G.sweep_needed = true;
			r->step = ST_DONE;
			advance(r);
		}
		return;
	case ST_DONE:
		uv_timer_stop(&r->kill_timer);
		uv_timer_stop(&r->drain_timer);
		uv_timer_stop(&r->backstop);
		close_attach(r);
		dk_req_cancel(r->kill);
		dk_req_cancel(r->wait);
		r->kill = r->wait = NULL;
		make_result(r);
		unlist(r);
		r->finished = true;
		if (!r->released)
			r->h.host->finished(&r->h, &r->res);
		return;
	}
}

/* ---- start ---- */

static int secret_record(struct uh_buf *b, const char *name, const char *value, size_t vlen)
{
	size_t nl = strlen(name);
	uint64_t len = (uint64_t)nl + 1 + vlen;
	if (len > (1u << 20))
		return -1;
	unsigned char l[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16), (unsigned char)(len >> 8),
	                      (unsigned char)len};
	if (uh_buf_append(b, l, 4) || uh_buf_append(b, name, nl) || uh_buf_append(b, "=", 1) ||
	    (vlen && uh_buf_append(b, value, vlen)))
		return -1;
	return 0;
}

static bool is_secret(const struct uh_run_spec *spec, const char *name)
{
	for (size_t i = 0; i < spec->n_secrets; i++)
		if (spec->secrets[i].name && strcmp(spec->secrets[i].name, name) == 0)
			return true;
	return false;
}

static int build_create(struct dk_run *r, const struct uh_run_spec *spec, const struct dk_conf *c, struct uh_error *err)
{
	const struct uh_config *cfg = r->h.cfg;
	json_t *env = json_array();
	const char *key;
	json_t *v;
	bool home = false, tmpdir = false;
	json_object_foreach((json_t *)spec->env, key, v)
	{
		if (!env_name_ok(key) || !json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
			json_decref(env);
			char f[160];
			snprintf(f, sizeof(f), "env.%s", key);
			return uh_error_set(err, UH_E_INVALID_REQUEST, f,
			                    "environment variable '%s' must be a string without NUL bytes, named "
			                    "[A-Za-z_][A-Za-z0-9_]*",
			                    key);
		}
		if (is_secret(spec, key))
			continue; /* the secret of that name wins, and travels apart */
		home |= strcmp(key, "HOME") == 0;
		tmpdir |= strcmp(key, "TMPDIR") == 0;
		json_array_append_new(env, json_sprintf("%s=%s", key, json_string_value(v)));
	}
	if (!home)
		json_array_append_new(env, json_string("HOME=" WORK_DIR));
	if (!tmpdir)
		json_array_append_new(env, json_string("TMPDIR=/tmp"));

	int64_t mem = c->mem_bytes ? c->mem_bytes : cfg->guardrails.max_mem_bytes;
	int64_t cpu = c->cpu_milli ? c->cpu_milli : cfg->guardrails.max_cpu_milli;
	/* The engine refuses a limit above the CPUs it has; such a limit is no
	 * limit anyway (the engine is local: runs need its socket). */
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu > 0 && cpu > (int64_t)ncpu * 1000)
		cpu = (int64_t)ncpu * 1000;
	char user[32], bind[PATH_MAX + 64], work[128];
	snprintf(user, sizeof(user), "%u:%u", (unsigned)c->uid, (unsigned)c->gid);
	/* The engine resets the mode of a tmpfs that is also the WorkingDir to
	 * 0755 root: own it by the run's user instead. */
	snprintf(work, sizeof(work), "rw,exec,nosuid,nodev,mode=0700,uid=%u,gid=%u", (unsigned)c->uid,
	         (unsigned)c->gid);
	snprintf(bind, sizeof(bind), "%s:" CINIT_MOUNT ":ro", G.cinit);
	json_t *body = json_pack(
	    "{s:s, s:[s], s:O, s:s, s:o, s:s, s:{s:s, s:s, s:s, s:s}, s:b, s:b, s:b, s:b, s:b, s:b, s:b,"
	    " s:{s:I, s:I, s:I, s:I, s:[s], s:[s], s:b, s:b, s:{s:s, s:s}, s:s, s:[s], s:{s:s, s:{}},"
	    " s:b, s:b, s:b}}",
	    "Image", r->image, "Entrypoint", CINIT_MOUNT, "Cmd", spec->command, "User", user, "Env", env, "WorkingDir",
	    WORK_DIR, "Labels", "uhub.run_id", r->h.run_id, "uhub.node", G.node, "uhub.job_id",
	    spec->job_id ? spec->job_id : "", "uhub.project_id", spec->project_id ? spec->project_id : "",
	    "AttachStdin", 1, "AttachStdout", 1, "AttachStderr", 1, "OpenStdin", 1, "StdinOnce", 1, "Tty", 0,
	    "NetworkDisabled", strcmp(c->network, "none") == 0, "HostConfig", "Memory", (json_int_t)mem, "MemorySwap",
	    (json_int_t)mem, "NanoCpus", (json_int_t)cpu * 1000000, "PidsLimit", (json_int_t)c->pids_limit, "CapDrop",
	    "ALL", "SecurityOpt", "no-new-privileges", "ReadonlyRootfs", 1, "Privileged", 0, "Tmpfs", WORK_DIR, work,
	    "/tmp", "rw,exec,nosuid,nodev,mode=1777", "NetworkMode", c->network, "Binds", bind, "LogConfig", "Type",
	    "none", "Config", "AutoRemove", 0, "Init", 0, "PublishAllPorts", 0);
	if (!body)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "cannot build the container's config");
	if (r->remote) {
		/* No host path on a remote engine: the init volume, read-only. */
		json_t *hc = json_object_get(body, "HostConfig");
		json_object_del(hc, "Binds");
		json_object_set_new(hc, "Mounts",
		                    json_pack("[{s:s, s:s, s:s, s:b}]", "Type", "volume", "Source", G.vol, "Target",
		                              CINIT_DIR, "ReadOnly", 1));
	}
	r->create_body = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	return r->create_body ? 0 : uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
}

/* The run's timers, its place in the in-flight list (the sweep spares its
 * container), and its first step, sent from the loop: start() returns fast
 * and finished() is never called from inside it. */
static void go(struct dk_run *r, int64_t timeout_s)
{
	uv_loop_t *loop = r->h.loop;
	uv_timer_init(loop, &r->kill_timer);
	uv_timer_init(loop, &r->drain_timer);
	uv_timer_init(loop, &r->backstop);
	uv_timer_init(loop, &r->kick);
	r->kill_timer.data = r->drain_timer.data = r->backstop.data = r->kick.data = r;
	r->timeout_s = timeout_s;
	if (timeout_s > 0)
		uv_timer_start(&r->backstop, on_backstop, (uint64_t)timeout_s * 1000 + BACKSTOP_MS, 0);
	r->next = G.runs;
	if (G.runs)
		G.runs->pprev = &r->next;
	r->pprev = &G.runs;
	G.runs = r;
	r->listed = true;
	r->step = ST_VERSION;
	uv_timer_start(&r->kick, on_kick, 0, 0);
}

static int docker_start(struct uh_run_handle *h, const struct uh_run_spec *spec, struct uh_error *err)
{
	struct dk_run *r = UH_HANDLE_CAST(struct dk_run, h, &uh_backend_docker);
	const struct uh_config *cfg = h->cfg;
	r->sock = -1;
	if (!G.ready)
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "the docker backend is not initialised");
	if (G.cinit_why[0])
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "docker backend unavailable: %s", G.cinit_why);
	struct dk_host hst;
	int rc = dk_host_parse(cfg, &hst, err);
	if (rc)
		return rc;
	struct stat st;
	if (!hst.unix_sock) {
		if (dk_raw_check(&hst))
			return uh_error_set(err, UH_E_UNAVAILABLE, NULL,
			                    "docker backend: docker.host must be tcp://IPV4:PORT (no name resolution "
			                    "on the loop)");
		if (!G.cinit_tar)
			return uh_error_set(err, UH_E_UNAVAILABLE, NULL,
			                    "docker backend: uhub-cinit could not be read");
		r->remote = true;
	} else if (stat(hst.path, &st) || !S_ISSOCK(st.st_mode)) {
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "docker engine unavailable: no socket at '%s'",
		                    hst.path);
	}
	r->after_pull = r->remote ? ST_VOLUME : ST_CREATE;
	struct dk_conf c;
	rc = dk_conf_parse(cfg, spec->config, &c, err);
	if (!rc)
		rc = check_command(spec->command, err);
	if (rc)
		return rc;
	if (spec->env && !json_is_object(spec->env))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "env", "'env' must be an object of strings");

	uh_buf_init(&r->secrets, 16u << 20);
	r->secrets.secret = true;
	uh_buf_init(&r->hdr, HDR_MAX);
	if (uh_buf_append(&r->secrets, "UHS1", 4))
		goto oom;
	for (size_t i = 0; i < spec->n_secrets; i++) {
		const struct uh_secret_env *s = &spec->secrets[i];
		if (!env_name_ok(s->name) || !s->value || memchr(s->value, 0, s->value_len)) {
			uh_buf_free(&r->secrets);
			char f[160];
			snprintf(f, sizeof(f), "env.%s", s->name ? s->name : "");
			return uh_error_set(err, UH_E_INVALID_REQUEST, f,
			                    "secret variable '%s' has a bad name or a value holding a NUL byte",
			                    s->name ? s->name : "");
		}
		if (secret_record(&r->secrets, s->name, s->value, s->value_len))
			goto oom;
	}
	if (uh_buf_append(&r->secrets, "\0\0\0\0", 4))
		goto oom;
	r->image = strdup(c.image);
	r->pull_policy = strdup(c.pull_policy);
	if (!r->image || !r->pull_policy)
		goto oom;
	rc = build_create(r, spec, &c, err);
	if (rc)
		goto fail;

	go(r, spec->timeout_s);
	return 0;
oom:
	rc = uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory starting the container");
fail:
	uh_buf_free(&r->secrets);
	uh_buf_free(&r->hdr);
	free(r->image);
	free(r->pull_policy);
	free(r->create_body);
	r->image = r->pull_policy = r->create_body = NULL;
	return rc;
}

static int docker_reattach(struct uh_run_handle *h, const struct uh_run_spec *spec, const char *external_id,
                           struct uh_error *err)
{
	struct dk_run *r = UH_HANDLE_CAST(struct dk_run, h, &uh_backend_docker);
	r->sock = -1;
	if (!G.ready)
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "the docker backend is not initialised");
	const char *id = strncmp(external_id, "container:", 10) == 0 ? external_id + 10 : "";
	if (!*id || strspn(id, "0123456789abcdef") != strlen(id) || strlen(id) >= sizeof(r->id))
		return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "no container id to re-attach to");
	struct dk_host hst;
	int rc = dk_host_parse(h->cfg, &hst, err);
	if (rc)
		return rc;
	r->remote = !hst.unix_sock;
	snprintf(r->id, sizeof(r->id), "%s", id);
	r->reattached = r->started = r->secrets_done = true;
	uh_buf_init(&r->hdr, HDR_MAX);
	r->image = strdup("");
	r->pull_policy = strdup("never");
	if (!r->image || !r->pull_policy) {
		free(r->image);
		free(r->pull_policy);
		r->image = r->pull_policy = NULL;
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	}
	go(r, spec->timeout_s);
	return 0;
}

static void docker_release(struct uh_run_handle *h)
{
	struct dk_run *r = UH_HANDLE_CAST(struct dk_run, h, &uh_backend_docker);
	r->released = true;
	if (!r->finished)
		G.sweep_needed = true; /* released early: the sweep removes its container */
	run_free(r);
}

/* ---- orphans ---- */

static bool in_flight(const char *run_id)
{
	for (struct dk_run *r = G.runs; r; r = r->next)
		if (strcmp(r->h.run_id, run_id) == 0)
			return true;
	return false;
}

static void on_sweep_del(struct dk_req *q)
{
	for (size_t i = 0; i < G.sweep_dels; i++)
		if (G.sweep_del[i] == q) {
			G.sweep_del[i] = G.sweep_del[--G.sweep_dels];
			break;
		}
	if (q->cc != CURLE_OK || (q->status != 204 && q->status != 404))
		G.sweep_needed = true;
	dk_req_free(q);
}

static void on_sweep_list(struct dk_req *q)
{
	G.sweep_req = NULL;
	if (q->cc != CURLE_OK || q->status != 200) {
		G.sweep_needed = true;
		dk_req_free(q);
		return;
	}
	json_t *list = dk_req_json(q);
	dk_req_free(q);
	size_t i;
	json_t *c;
	json_array_foreach(list, i, c)
	{
		const char *id = json_string_value(json_object_get(c, "Id"));
		const char *run = json_string_value(json_object_get(json_object_get(c, "Labels"), "uhub.run_id"));
		if (!id || !*id || strspn(id, "0123456789abcdef") != strlen(id) || strlen(id) > 64 ||
		    (run && in_flight(run)))
			continue;
		if (G.sweep_dels == sizeof(G.sweep_del) / sizeof(G.sweep_del[0])) {
			G.sweep_needed = true; /* the next sweep does the rest */
			break;
		}
		char path[200];
		snprintf(path, sizeof(path), "/containers/%s?force=1&v=1", id);
		struct dk_req *d =
		    dk_req_start(G.cfg, G.api, "DELETE", path, NULL, REQ_TIMEOUT_MS, 4096, on_sweep_del, NULL, NULL);
		if (d) {
			G.sweep_del[G.sweep_dels++] = d;
			uh_info("backend=docker run=%s: removing orphan container %.12s", run ? run : "?", id);
		} else {
			G.sweep_needed = true;
		}
	}
	json_decref(list);
}

static void on_sweep_timer(uv_timer_t *t)
{
	if (!G.sweep_needed || G.sweep_req || G.sweep_dels)
		return;
	json_t *f = json_pack("{s:[s+]}", "label", "uhub.node=", G.node);
	char *fs = json_dumps(f, JSON_COMPACT);
	json_decref(f);
	char enc[1024], path[1200];
	if (!fs || !dk_urlencode(fs, enc, sizeof(enc))) {
		free(fs);
		return;
	}
	free(fs);
	snprintf(path, sizeof(path), "/containers/json?all=1&filters=%s", enc);
	G.sweep_needed = false;
	G.sweep_req = dk_req_start(G.cfg, G.api, "GET", path, NULL, REQ_TIMEOUT_MS, 8 << 20, on_sweep_list, NULL, NULL);
	if (!G.sweep_req)
		G.sweep_needed = true;
}

/* ---- init, shutdown, settle ---- */

/* uhub-cinit as a one-file ustar archive ("init", 0555, root), for the
 * remote engines' init volume; and the volume's name from its hash. */
static void make_cinit_tar(off_t size)
{
	free(G.cinit_tar);
	G.cinit_tar = NULL;
	G.cinit_tar_len = 0;
	G.vol[0] = 0;
	if (size <= 0 || size > (64 << 20))
		return;
	size_t n = (size_t)size, body = (n + 511) / 512 * 512;
	unsigned char *t = calloc(1, 512 + body + 1024);
	FILE *f = t ? fopen(G.cinit, "rbe") : NULL;
	if (!f || fread(t + 512, 1, n, f) != n) {
		if (f)
			fclose(f);
		free(t);
		return;
	}
	fclose(f);
	char h[65];
	uh_sha256_hex(t + 512, n, h);
	snprintf(G.vol, sizeof(G.vol), "uhub-cinit-%.16s", h);
	char *hd = (char *)t;
	memcpy(hd, "init", 4);
	snprintf(hd + 100, 8, "%07o", 0555);
	snprintf(hd + 108, 8, "%07o", 0);
	snprintf(hd + 116, 8, "%07o", 0);
	snprintf(hd + 124, 12, "%011llo", (unsigned long long)n);
	snprintf(hd + 136, 12, "%011llo", (unsigned long long)time(NULL));
	hd[156] = '0';
	memcpy(hd + 257, "ustar", 6);
	memcpy(hd + 263, "00", 2);
	memset(hd + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += (unsigned char)hd[i];
	snprintf(hd + 148, 8, "%06o", sum);
	hd[155] = ' ';
	G.cinit_tar = t;
	G.cinit_tar_len = 512 + body + 1024;
}

static void find_cinit(void)
{
	char path[PATH_MAX];
	const char *env = getenv("UHUB_CINIT_PATH");
	G.cinit_why[0] = 0;
	if (env && *env) {
		snprintf(path, sizeof(path), "%s", env);
	} else {
		ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
		if (n <= 0) {
			snprintf(G.cinit_why, sizeof(G.cinit_why), "cannot find the daemon's own path");
			return;
		}
		path[n] = 0;
		char *slash = strrchr(path, '/');
		if (!slash || (size_t)(slash - path) + sizeof("/" UH_CINIT_NAME) > sizeof(path)) {
			snprintf(G.cinit_why, sizeof(G.cinit_why), "unusable daemon path");
			return;
		}
		memcpy(slash, "/" UH_CINIT_NAME, sizeof("/" UH_CINIT_NAME));
	}
	char *real = realpath(path, NULL);
	struct stat st;
	if (!real || stat(real, &st) || !S_ISREG(st.st_mode) || !(st.st_mode & S_IXOTH) ||
	    (st.st_mode & (S_IWGRP | S_IWOTH)) || strchr(real, ':') || strchr(real, ',')) {
		snprintf(G.cinit_why, sizeof(G.cinit_why),
		         "'%.180s' must be an executable file, not writable by group or others (set UHUB_CINIT_PATH)",
		         path);
		free(real);
		return;
	}
	snprintf(G.cinit, sizeof(G.cinit), "%s", real);
	free(real);
	make_cinit_tar(st.st_size);
}

static void docker_shutdown(void);

static int docker_init(const struct uh_config *cfg, uv_loop_t *loop, struct uh_error *err)
{
	if (G.ready)
		return 0;
	struct dk_host hst;
	int r = dk_host_parse(cfg, &hst, err);
	if (r)
		return r;
	r = dk_api_init(loop, err);
	if (r)
		return r;
	G.loop = loop;
	G.cfg = cfg;
	if (cfg->cluster.node_name && *cfg->cluster.node_name)
		snprintf(G.node, sizeof(G.node), "%s", cfg->cluster.node_name);
	else if (gethostname(G.node, sizeof(G.node) - 1))
		snprintf(G.node, sizeof(G.node), "uhub");
	find_cinit();
	if (G.cinit_why[0])
		uh_warn("backend=docker: unavailable: %s", G.cinit_why);
	uv_timer_init(loop, &G.sweep_timer);
	uv_unref((uv_handle_t *)&G.sweep_timer);
	G.sweep_needed = true; /* orphans of an earlier daemon */
	uv_timer_start(&G.sweep_timer, on_sweep_timer, 0, SWEEP_MS);
	G.ready = true;
	return 0;
}

static void docker_shutdown(void)
{
	if (!G.ready)
		return;
	uv_timer_stop(&G.sweep_timer);
	if (!uv_is_closing((uv_handle_t *)&G.sweep_timer))
		uv_close((uv_handle_t *)&G.sweep_timer, NULL);
	dk_req_cancel(G.sweep_req);
	G.sweep_req = NULL;
	for (size_t i = 0; i < G.sweep_dels; i++)
		dk_req_cancel(G.sweep_del[i]);
	G.sweep_dels = 0;
	dk_api_shutdown();
	G.api[0] = 0;
	free(G.cinit_tar);
	G.cinit_tar = NULL;
	G.cinit_tar_len = 0;
	SSL_CTX_free(G.tls_ctx);
	G.tls_ctx = NULL;
	G.tls_of = NULL;
	G.vol_ready = false;
	G.vol_by = NULL;
	G.ready = false;
}

static int docker_settle(const struct uh_config *cfg, const char *run_id, const char *external_id, struct uh_error *err)
{
	/* Start-up only (blocking is fine here): remove the run's container by
	 * id, and any other labelled with its run id. */
	char path[1400];
	long st = 0;
	if (external_id && strncmp(external_id, "container:", 10) == 0) {
		const char *id = external_id + 10;
		if (strspn(id, "0123456789abcdef") == strlen(id) && strlen(id) <= 64 && *id) {
			snprintf(path, sizeof(path), "/containers/%s?force=1&v=1", id);
			st = dk_sync_request(cfg, "", "DELETE", path, REQ_TIMEOUT_MS, NULL);
			if (st < 0)
				return uh_error_set(err, UH_E_UNAVAILABLE, NULL,
				                    "docker engine unavailable: container %.12s of run '%s' left for "
				                    "the sweep",
				                    id, run_id);
		}
	}
	json_t *f = json_pack("{s:[s+]}", "label", "uhub.run_id=", run_id ? run_id : "");
	char *fs = json_dumps(f, JSON_COMPACT);
	json_decref(f);
	char enc[1024];
	bool ok = fs && dk_urlencode(fs, enc, sizeof(enc));
	free(fs);
	if (!ok)
		return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "run id too long");
	snprintf(path, sizeof(path), "/containers/json?all=1&filters=%s", enc);
	struct uh_buf resp;
	st = dk_sync_request(cfg, "", "GET", path, REQ_TIMEOUT_MS, &resp);
	if (st != 200) {
		uh_buf_free(&resp);
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL,
		                    "docker engine unavailable: containers of run '%s' left for the sweep", run_id);
	}
	json_t *list = resp.data ? json_loadb(resp.data, resp.len, 0, NULL) : NULL;
	uh_buf_free(&resp);
	size_t i;
	json_t *c;
	int left = 0;
	json_array_foreach(list, i, c)
	{
		const char *id = json_string_value(json_object_get(c, "Id"));
		if (!id || !*id || strspn(id, "0123456789abcdef") != strlen(id) || strlen(id) > 64)
			continue;
		snprintf(path, sizeof(path), "/containers/%s?force=1&v=1", id);
		st = dk_sync_request(cfg, "", "DELETE", path, REQ_TIMEOUT_MS, NULL);
		if (st != 204 && st != 404)
			left++;
	}
	json_decref(list);
	if (left)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "%d container(s) of run '%s' not removed", left, run_id);
	return 0;
}

const struct uh_backend_ops uh_backend_docker = {
    .name = "docker",
    .caps = UH_CAP_CANCEL | UH_CAP_STREAMS_LOGS | UH_CAP_EXIT_CODE | UH_CAP_REATTACH,
    .state_size = sizeof(struct dk_run),
    .init = docker_init,
    .shutdown = docker_shutdown,
    .validate = docker_validate,
    .start = docker_start,
    .stop = docker_stop,
    .release = docker_release,
    .settle = docker_settle,
    .reattach = docker_reattach,
};
