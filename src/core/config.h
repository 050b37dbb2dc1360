/* The server configuration (SPEC §7): one JSON file, every key with a safe
 * default, any unknown key or bad value refused with its dotted name.
 * A loaded config is immutable; a reload builds a new one. */
#ifndef UH_CORE_CONFIG_H
#define UH_CORE_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct uh_strlist {
	char **v;
	size_t n;
};

struct uh_config {
	char *listen;             /* "127.0.0.1:8080" */
	char *public_url;         /* "http://127.0.0.1:8080" */
	char *tls_cert, *tls_key; /* NULL: plain HTTP */
	char *db;                 /* "sqlite:./uhub.db" or "postgres://..." */
	int64_t max_body_bytes;   /* api.max_body_bytes */
	int64_t rate_limit_per_minute;
	int64_t log_max_bytes; /* logs.max_bytes_per_run */
	int64_t retention_days;
	struct {
		int64_t default_timeout_s, max_timeout_s;
		int64_t max_cpu_milli; /* "4" -> 4000 */
		int64_t max_mem_bytes; /* "8Gi" -> 8 GiB */
		bool prod_local_allowed;
		int64_t approval_ttl_s;
		bool allow_self_approval;
	} guardrails;
	struct {
		uint32_t uid_min, uid_max; /* local.uid_range, inclusive */
		char *user;                /* local.user or NULL */
		struct uh_strlist allowed_executables;
		struct uh_strlist allowed_workdirs;
		int64_t grace_s;
		char *work_root;
		int64_t pids_limit; /* local.pids_limit: processes per run */
	} local;
	struct {
		char *host;
		json_t *tls; /* null or object, validated */
		struct uh_strlist allowed_images, allowed_networks;
		char *pull_policy;
		int64_t pids_limit;
	} docker;
	struct {
		bool allow_private_networks;
		struct uh_strlist allowed_hosts;
	} webhook;
	struct {
		char *node_name; /* NULL: derived at start-up */
		int64_t lease_s;
	} cluster;
	struct {
		char *key_file, *head_file; /* NULL: beside the store */
	} audit;
	struct {
		char *key_file;
		char *vault_addr, *vault_ca_cert, *vault_kv_mount, *vault_token_file;
		char *vault_role_id_file, *vault_secret_id_file;
	} secrets;
	int64_t shutdown_grace_s;
};

/* Defaults of every key (SPEC §7). */
int uh_config_defaults(struct uh_config *cfg, struct uh_error *err);
/* Parse a JSON document over the defaults. Errors name the key:
 * field "local.grace_seconds", message "'local.grace_seconds' must be ...". */
int uh_config_parse(const char *json, size_t len, struct uh_config *cfg, struct uh_error *err);
/* Read and parse a file (missing file is an error naming it). */
int uh_config_load(const char *path, struct uh_config *cfg, struct uh_error *err);
void uh_config_free(struct uh_config *cfg);

/* "500m" -> 500, "2" -> 2000, "0.5" -> 500. UH_E_INVALID_CONFIG on bad input. */
int uh_parse_cpu(const char *s, int64_t *milli);
/* "512Mi", "1Gi", "100M", "1048576" -> bytes. UH_E_INVALID_CONFIG on bad input. */
int uh_parse_mem(const char *s, int64_t *bytes);

#endif
