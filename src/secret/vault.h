/* The HashiCorp Vault client (SPEC §5 "vault:PATH#KEY", §7 "secrets.vault"):
 * reads one key of the latest version of a KV v2 secret over HTTPS with
 * libcurl, logging in with a token file or AppRole and keeping the token
 * fresh (renew-self, re-login). Tokens and values live in locked memory
 * (struct uh_secret_value) and never appear in an error message. */
#ifndef UH_SECRET_VAULT_H
#define UH_SECRET_VAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "secret/secret.h"
#include "util/error.h"

/* Largest answer read from Vault; a longer one is an error. */
#define UH_VAULT_MAX_ANSWER (1024 * 1024)

struct uh_vault;

/* NULL *out (and 0) when cfg->secrets.vault_addr is NULL. Checks: addr is
 * https://..., or http:// only to a loopback address (127.0.0.0/8, ::1,
 * "localhost") else UH_E_INVALID_CONFIG naming "secrets.vault.addr"; ca_cert
 * (a PEM file path) readable; exactly one auth: token_file, or
 * approle.role_id_file + secret_id_file (errors name the key; the files must
 * be readable). Does not contact Vault. */
int uh_vault_new(const struct uh_config *cfg, struct uh_vault **out, struct uh_error *err);

/* Read KEY of the latest version of secret PATH (KV v2 under
 * cfg->secrets.vault_kv_mount): GET {addr}/v1/{mount}/data/{path} with
 * X-Vault-Token. Thread-safe. *out is the value in locked memory (caller
 * frees with uh_secret_value_free). Errors: UH_E_INVALID_REQUEST for a PATH
 * or KEY that cannot be a reference (empty, '.' or '..' or empty segments);
 * UH_E_UNAVAILABLE otherwise (Vault unreachable, TLS failure, login failed,
 * permission denied, not found, version deleted or destroyed, KEY missing,
 * value not a string, 5xx). Messages name "vault:PATH#KEY", never the token
 * or the value. */
int uh_vault_read(struct uh_vault *v, const char *path, const char *key, struct uh_secret_value **out,
                  struct uh_error *err);

void uh_vault_free(struct uh_vault *v);

/* ---- for tests (tests/unit/test_vault.c, tests/fuzz/fuzz_vault_answer.c) ---- */

/* Parse a KV v2 read answer of HTTP status `status`: 0 and *out (the string
 * value of `key`), or UH_E_UNAVAILABLE with a message saying what happened
 * ("permission denied", "not found", "latest version deleted", ...), without
 * the reference (the caller adds it) and without any value. */
int uh_vault_parse_kv(long status, const char *body, size_t len, const char *key, struct uh_secret_value **out,
                      struct uh_error *err);

/* What a login, renew-self or lookup-self answer says about the token. */
struct uh_vault_auth {
	struct uh_secret_value *token; /* NULL for lookup-self (the token is not taken from it) */
	int64_t ttl_s;                 /* 0: never expires */
	bool renewable;
};

/* Parse a 200 answer of approle login or renew-self ("auth" block:
 * client_token, lease_duration, renewable) or, when lookup is true, of
 * lookup-self ("data" block: ttl, renewable). UH_E_UNAVAILABLE on anything
 * else, naming neither token nor body. */
int uh_vault_parse_auth(const char *body, size_t len, bool lookup, struct uh_vault_auth *out, struct uh_error *err);

/* The URL path "/v1/{mount}/data/{path}" with each segment percent-encoded
 * ('/' kept). UH_E_INVALID_REQUEST for an empty, '.' or '..' segment. *out is
 * malloc'd. */
int uh_vault_kv_url_path(const char *mount, const char *path, char **out, struct uh_error *err);

/* Counters for tests: logins (token file read or AppRole login) and renewals. */
struct uh_vault_stats {
	uint64_t logins, renewals;
};
void uh_vault_get_stats(struct uh_vault *v, struct uh_vault_stats *out);

#endif
