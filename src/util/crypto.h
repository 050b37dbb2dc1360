/* Randomness, ids, tokens and hashes (OpenSSL underneath). */
#ifndef UH_UTIL_CRYPTO_H
#define UH_UTIL_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define UH_ID_MAX 40 /* room for any id uhub makes, NUL included */

/* Fill buf with n bytes from the kernel's CSPRNG. 0 or UH_E_INTERNAL. */
int uh_random(void *buf, size_t n);
/* A new opaque id: prefix + 20 random base32 characters, e.g. "r_x3k...". */
void uh_id_new(const char *prefix, char out[UH_ID_MAX]);
/* A new bearer token: "uht_" + base64url of 32 random bytes (48 chars). */
void uh_token_new(char out[64]);
/* Lower-case hex SHA-256 of data into out (65 bytes). */
void uh_sha256_hex(const void *data, size_t len, char out[65]);
/* HMAC-SHA256 (32 bytes into mac). */
void uh_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, unsigned char mac[32]);
void uh_hex(const unsigned char *in, size_t n, char *out); /* out: 2n+1 bytes */
/* Constant-time comparison of n bytes; 1 when equal. */
int uh_ct_equal(const void *a, const void *b, size_t n);

#endif
