/* See crypto.h. */
#include "util/crypto.h"

#include <errno.h>
#include <pthread.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <string.h>
#include <sys/random.h>

#include "util/error.h"

int uh_random(void *buf, size_t n)
{
	unsigned char *p = buf;
	while (n) {
		ssize_t r = getrandom(p, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return UH_E_INTERNAL;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

void uh_id_new(const char *prefix, char out[UH_ID_MAX])
{
	static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
	unsigned char r[20];
	uh_random(r, sizeof(r));
	size_t n = strlen(prefix);
	if (n > 8)
		n = 8;
	memcpy(out, prefix, n);
	for (int i = 0; i < 20; i++)
		out[n + (size_t)i] = b32[r[i] & 31];
	out[n + 20] = '\0';
}

void uh_token_new(char out[64])
{
	static const char b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char r[33];
	uh_random(r, sizeof(r));
	memcpy(out, "uht_", 4);
	size_t o = 4;
	for (size_t i = 0; i < 33; i += 3) {
		unsigned v = (unsigned)r[i] << 16 | (unsigned)r[i + 1] << 8 | r[i + 2];
		out[o++] = b64u[(v >> 18) & 63];
		out[o++] = b64u[(v >> 12) & 63];
		out[o++] = b64u[(v >> 6) & 63];
		out[o++] = b64u[v & 63];
	}
	out[o] = '\0';
	OPENSSL_cleanse(r, sizeof(r));
}

void uh_hex(const unsigned char *in, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hx[in[i] >> 4];
		out[2 * i + 1] = hx[in[i] & 15];
	}
	out[2 * n] = '\0';
}

/* SHA256() fetches the algorithm from OpenSSL's provider on every call
 * (EVP_Q_digest): a third of the cost of hashing a token. Fetched once. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void uh_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[32];
	pthread_once(&sha256_once, sha256_fetch);
	if (!sha256_md || !EVP_Digest(data, len, md, NULL, sha256_md, NULL))
		SHA256(data, len, md);
	uh_hex(md, 32, out);
}

void uh_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, unsigned char mac[32])
{
	unsigned int ml = 32;
	HMAC(EVP_sha256(), key, (int)keylen, data, len, mac, &ml);
}

int uh_ct_equal(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}
