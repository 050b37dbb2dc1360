/* Fuzz target for the Vault client's answer parsers and URL building
 * (src/secret/vault.c). Input: byte 0 picks the parser (0 KV read, 1 login or
 * renew-self, 2 lookup-self, 3 URL path), byte 1 the HTTP status, byte 2 the
 * length of the KEY (or of the mount for the URL path) that follows; the rest
 * is the answer body (or the PATH). Properties: no crash or leak; a value or
 * token handed back is NUL-terminated and no longer than the body; a token is
 * visible ASCII; an error message is one of the parser's own, so it quotes
 * nothing of the answer; a URL path holds only unreserved bytes,
 * '%XX' and '/', and no empty, '.' or '..' segment. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secret/vault.h"

static const long statuses[] = {200, 404, 403, 500, 503, 400, 302, 204};

/* Every message a parser may give, '|'-separated, with this input's KEY and
 * status filled in: a message must be one of them, so it can quote nothing
 * of the answer. */
static void check_message(const struct uh_error *err, const char *key, long status)
{
	static char all[2048];
	snprintf(all, sizeof(all),
	         "|permission denied (403)|vault answered status %ld|unexpected status %ld from vault"
	         "|vault's answer is not a JSON object|not found (404)|latest version destroyed"
	         "|latest version deleted|vault's answer holds no secret data|key '%s' missing"
	         "|value of key '%s' is not a string|value of key '%s' holds a NUL byte|out of memory"
	         "|token lookup answer has no 'data'|token lookup answer has no valid 'ttl'"
	         "|vault's answer has no 'auth'|vault's answer has no valid 'auth.client_token'"
	         "|vault's answer has no valid 'auth.lease_duration'|",
	         status, status, key, key, key);
	char want[600];
	snprintf(want, sizeof(want), "|%s|", err->message);
	if (!err->message[0] || !strstr(all, want))
		abort();
}

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
	       c == '_' || c == '~';
}

static void check_url(const char *p)
{
	if (strncmp(p, "/v1/", 4) != 0)
		abort();
	for (const char *s = p; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '%') {
			if (!s[1] || !s[2] || !strchr("0123456789ABCDEF", s[1]) || !strchr("0123456789ABCDEF", s[2]))
				abort();
		} else if (c != '/' && !unreserved(c)) {
			abort();
		}
	}
	if (strstr(p, "//") || strstr(p, "/./") || strstr(p, "/../"))
		abort();
	size_t n = strlen(p);
	if (p[n - 1] == '/' || (n >= 2 && strcmp(p + n - 2, "/.") == 0) || (n >= 3 && strcmp(p + n - 3, "/..") == 0))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	int mode = data[0] % 4;
	long status = statuses[data[1] % 8];
	size_t kl = data[2] % 32;
	if (kl > size - 3)
		kl = size - 3;
	char key[33];
	memcpy(key, data + 3, kl);
	key[kl] = '\0';
	const char *body = (const char *)data + 3 + kl;
	size_t len = size - 3 - kl;
	struct uh_error err = {0};

	if (mode == 0) {
		struct uh_secret_value *v = (struct uh_secret_value *)1;
		int r = uh_vault_parse_kv(status, body, len, key, &v, &err);
		if (r == 0) {
			if (!v || v->len > len || v->data[v->len] != '\0' || memchr(v->data, '\0', v->len))
				abort();
			uh_secret_value_free(v);
		} else {
			if (v || r != UH_E_UNAVAILABLE)
				abort();
			check_message(&err, key, status);
		}
	} else if (mode == 1 || mode == 2) {
		struct uh_vault_auth a;
		int r = uh_vault_parse_auth(body, len, mode == 2, &a, &err);
		if (r == 0) {
			if (a.ttl_s < 0 || (mode == 2) != (a.token == NULL))
				abort();
			if (a.token) {
				if (a.token->len == 0 || a.token->len > len || a.token->data[a.token->len] != '\0')
					abort();
				for (size_t i = 0; i < a.token->len; i++)
					if ((unsigned char)a.token->data[i] < 0x21 ||
					    (unsigned char)a.token->data[i] > 0x7e)
						abort();
			}
			uh_secret_value_free(a.token);
		} else {
			if (a.token || r != UH_E_UNAVAILABLE)
				abort();
			check_message(&err, "", status);
		}
	} else {
		char *path = malloc(len + 1), *out = NULL;
		memcpy(path, body, len);
		path[len] = '\0';
		int r = uh_vault_kv_url_path(key, path, &out, &err);
		if (r == 0) {
			check_url(out);
			free(out);
		} else if (out || (r != UH_E_INVALID_REQUEST && r != UH_E_INTERNAL)) {
			abort();
		}
		free(path);
	}
	return 0;
}
