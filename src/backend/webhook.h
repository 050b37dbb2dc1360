/* The webhook backend's pieces that others reuse or test (SPEC §3
 * "webhook"): the SSRF address guard, template expansion, the callback
 * signature, and the list of secret references a config uses.
 *
 * Everything here is pure and thread-safe except where noted; the run
 * machinery itself lives in webhook.c on the supervisor's loop. */
#ifndef UH_BACKEND_WEBHOOK_H
#define UH_BACKEND_WEBHOOK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/config.h"
#include "util/error.h"

/* ---- SSRF guard (webhook_ssrf.c) ---- */

enum uh_wh_addr_class {
	UH_WH_ADDR_PUBLIC = 0,
	UH_WH_ADDR_PRIVATE,  /* loopback, RFC 1918, link-local, CGNAT, ULA, multicast, unspecified... */
	UH_WH_ADDR_METADATA, /* 169.254.169.254, fd00:ec2::254: refused always */
};

/* Classify an address (AF_INET or AF_INET6 sockaddr). v4-mapped,
 * v4-compatible, NAT64 (64:ff9b::/96) and 6to4 forms are classified by the
 * IPv4 address they embed. Unknown families: PRIVATE. */
enum uh_wh_addr_class uh_webhook_addr_class(const struct sockaddr *sa);
/* Whether an address may be connected to under this policy. */
bool uh_webhook_addr_allowed(const struct sockaddr *sa, bool allow_private);
/* Parse a literal IP the way inet_aton/getaddrinfo would (so "127.1",
 * "0x7f.1", "2130706433", "017700000001" and "[::1]" count as addresses)
 * into *ss. 0 when `host` is an IP literal, -1 when it is a name. */
int uh_webhook_parse_ip(const char *host, struct sockaddr_storage *ss);
/* Whether `host` matches one of the webhook.allowed_hosts globs
 * (case-insensitive, '*' any run of characters, '?' one). */
bool uh_webhook_host_allowed(const struct uh_config *cfg, const char *host);
/* Blocking: resolve `host` (getaddrinfo) and check every address. On 0,
 * `out` holds the first address (port 0). For tests and tools; the backend
 * resolves off the loop with uv_getaddrinfo and applies the same checks. */
int uh_webhook_resolve_check(const char *host, bool allow_private, struct sockaddr_storage *out, struct uh_error *err);

/* A parsed https URL. host without brackets; port 443 when absent. */
struct uh_wh_url {
	char host[256];
	int port;
	char rest[2048]; /* path + query, starting with '/' */
};
/* Parse an absolute https:// URL (no userinfo, no fragment). -1 if bad. */
int uh_webhook_url_parse(const char *url, struct uh_wh_url *out);

/* ---- Templates (webhook_preset.c) ---- */

enum uh_wh_escape { UH_WH_ESC_NONE = 0, UH_WH_ESC_JSON, UH_WH_ESC_URL };

/* Lookup of a template variable ("run.id", "parameters.X"...): the value,
 * or NULL when unknown. */
typedef const char *(*uh_wh_lookup_fn)(void *arg, const char *name);

/* Expand {{name}} in `tpl`, each value escaped per `esc` (JSON: as the
 * inside of a JSON string; URL: RFC 3986 percent-encoding of everything but
 * unreserved characters). An unknown name or an unclosed "{{" fails with
 * UH_E_INVALID_CONFIG naming it. Result malloc'd (free()). */
int uh_webhook_expand(const char *tpl, enum uh_wh_escape esc, uh_wh_lookup_fn fn, void *arg, char **out,
                      struct uh_error *err);

/* Append to `refs_array_out` (a JSON array) every secret reference the
 * config uses after preset expansion: the `token_secret` value and each
 * {{secrets.REF}} of a header value. Duplicates appear once. 0, or an error
 * when the config is not a JSON object. */
int uh_webhook_secret_refs(const json_t *config, json_t *refs_array_out);

/* ---- Answers (webhook_preset.c) ---- */

/* RFC 6901 JSON pointer: whether well formed ("" or "/a/b~1c"). */
bool uh_webhook_pointer_ok(const char *ptr);
/* The value at `ptr` in `doc`, or NULL. */
const json_t *uh_webhook_pointer_get(const json_t *doc, const char *ptr);
/* A scalar as text ("x", "12", "true"); NULL for null, objects, arrays. The
 * buffer holds at least 64 bytes. */
const char *uh_webhook_scalar(const json_t *v, char *buf, size_t len);

enum uh_wh_verdict { UH_WH_PENDING = 0, UH_WH_SUCCEEDED, UH_WH_FAILED };
/* Map the status found at `status_path` in `doc` through success/failure
 * values (arrays of strings). Missing or other values: PENDING. */
enum uh_wh_verdict uh_webhook_map_status(const json_t *doc, const char *status_path, const json_t *success_values,
                                         const json_t *failure_values);

/* ---- Callback (webhook.c) ---- */

#define UH_WH_CALLBACK_TOLERANCE_S 300
#define UH_WH_CALLBACK_MAX_BODY    (64 * 1024)

/* The callback token of a run: lowercase hex of HMAC-SHA256(K,
 * "uhub-callback-v1:" + run_id), K the 32-byte key in `callback.key` beside
 * cfg->secrets.key_file (created 0600 on first use). Thread-safe. */
int uh_webhook_callback_token(const struct uh_config *cfg, const char *run_id, char out[65], struct uh_error *err);

/* Check a header "t=UNIX,v1=HEX[,v1=HEX...]" against the token: t within
 * UH_WH_CALLBACK_TOLERANCE_S of t_now, some v1 = HMAC-SHA256(token,
 * t "." body) (constant-time). 0 when good, -1 otherwise. Pure. */
int uh_webhook_sig_check(const char *token_hex, const char *sig_header, int64_t t_now, const char *raw_body,
                         size_t len);

/* uh_webhook_sig_check with the run's callback token. 0 when good. */
int uh_webhook_callback_verify(const struct uh_config *cfg, const char *run_id, const char *sig_header, int64_t t_now,
                               const char *raw_body, size_t len);

/* Whether a parsed callback body has the SPEC §3 shape: {"status":
 * "succeeded"|"failed", "exit_code"?: int, "message"?: string, "log"?:
 * string}, nothing else. */
bool uh_webhook_callback_body_ok(const json_t *body);

/* ---- Internal: the effective webhook config (webhook_preset.c) ----
 * A config with its preset expanded. Strings point into `j` (owned). */
enum uh_wh_mode { UH_WH_FIRE = 1, UH_WH_POLL, UH_WH_CALLBACK };
enum uh_wh_flow { UH_WH_FLOW_GENERIC = 0, UH_WH_FLOW_JENKINS, UH_WH_FLOW_AZURE };
enum uh_wh_auth { UH_WH_AUTH_BEARER = 0, UH_WH_AUTH_RAW, UH_WH_AUTH_BASIC, UH_WH_AUTH_BODY };

struct uh_wh_conf {
	json_t *j;             /* the expanded config (owned); the strings below are j's or literals */
	const char *preset;    /* NULL or "gitlab", "jenkins", "azure_function" */
	const char *url;       /* trigger URL template */
	const char *method;    /* "POST"... */
	const json_t *headers; /* object: name -> template, or NULL */
	const json_t *body;    /* JSON template (object/array/string) or NULL */
	const char *token_secret;
	const char *auth_header; /* header carrying the token ("Authorization") */
	enum uh_wh_auth auth;
	const char *basic_user;       /* jenkins */
	const char *body_token_field; /* gitlab: "token" */
	const char *ca_cert;
	enum uh_wh_mode mode;
	enum uh_wh_flow flow;
	const char *external_id_path, *status_url, *status_path, *cancel_url;
	const json_t *success_values, *failure_values;
	int64_t poll_interval_s;
};

/* Check a config's webhook keys and expand its preset. Errors name
 * "execution_backend_config.KEY". Pure. */
int uh_wh_conf_load(const struct uh_config *cfg, const json_t *config, struct uh_wh_conf *out, struct uh_error *err);
void uh_wh_conf_free(struct uh_wh_conf *c);
/* Whether a header name is credential-like (Authorization, Cookie,
 * *-Token, *Key...). */
bool uh_wh_header_sensitive(const char *name);

#endif
