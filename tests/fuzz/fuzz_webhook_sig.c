/* Fuzz target for the webhook callback signature parser and check
 * (src/backend/webhook.c uh_webhook_sig_check). The input is split at the
 * first NUL: before it the X-Uhub-Signature header, after it the raw body.
 * Properties: no crash; a header built from the body by the documented
 * recipe is always accepted, and the same with one body byte changed is
 * refused. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/webhook.h"
#include "util/crypto.h"

#define TOKEN "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define NOW   1700000000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t hlen = nul ? (size_t)(nul - data) : size;
	char *hdr = malloc(hlen + 1);
	if (!hdr)
		return 0;
	memcpy(hdr, data, hlen);
	hdr[hlen] = '\0';
	const char *body = nul ? (const char *)nul + 1 : "";
	size_t blen = nul ? size - hlen - 1 : 0;
	(void)uh_webhook_sig_check(TOKEN, hdr, NOW, body, blen);
	(void)uh_webhook_sig_check(TOKEN, hdr, NOW, NULL, 0);
	free(hdr);

	/* The recipe always verifies, and a changed body never does. */
	char *msg = malloc(32 + blen);
	if (!msg)
		return 0;
	int n = snprintf(msg, 32, "%d.", NOW);
	memcpy(msg + n, body, blen);
	unsigned char mac[32];
	uh_hmac_sha256(TOKEN, strlen(TOKEN), msg, (size_t)n + blen, mac);
	free(msg);
	char good[128];
	char hex[65];
	uh_hex(mac, 32, hex);
	snprintf(good, sizeof(good), "t=%d,v1=%s", NOW, hex);
	if (uh_webhook_sig_check(TOKEN, good, NOW, body, blen) != 0)
		abort();
	if (blen) {
		char *other = malloc(blen);
		if (!other)
			return 0;
		memcpy(other, body, blen);
		other[blen / 2] ^= 1;
		if (uh_webhook_sig_check(TOKEN, good, NOW, other, blen) == 0)
			abort();
		free(other);
	}
	return 0;
}
