/* The built-in secret store's cryptography and the secret values of a run.
 *
 * Values are sealed with XChaCha20-Poly1305 (libsodium) under a 32-byte key
 * kept in `secrets.key_file` (created 0600 on first start, never in the
 * store). A sealed blob is
 *     "US1" | key id (8 bytes: first 8 of BLAKE2b(key)) | nonce (24) | ciphertext+tag
 * with the associated data "uhub-secret-v1\0" SCOPE "\0" NAME, so a row copied
 * to another project or name does not open. SCOPE is the owning project's id,
 * or "shared" for an admin's shared secret.
 *
 * Key rotation (uh_secret_rotate_*): a new key is written to KEY_FILE.next
 * (0600, fsync'd) before any row is re-sealed; the rows are re-sealed in one
 * store transaction; then KEY_FILE.next is renamed over KEY_FILE. At start-up
 * a leftover KEY_FILE.next (a crash mid-rotation) is loaded too: each blob
 * names the key that opens it.
 *
 * Plaintext values live only in struct uh_secret_value (sodium_malloc:
 * guard pages, mlock'd, wiped on free). */
#ifndef UH_SECRET_SECRET_H
#define UH_SECRET_SECRET_H

#include <stdbool.h>
#include <stddef.h>

#include "core/config.h"
#include "util/error.h"

#define UH_SECRET_MIN_LEN      8
#define UH_SECRET_MAX_LEN      65536
#define UH_SECRET_SCOPE_SHARED "shared"

struct uh_secret_value {
	size_t len;
	char data[]; /* len bytes, then a NUL */
};

/* A value in locked memory (copy of data/len). NULL on ENOMEM. */
struct uh_secret_value *uh_secret_value_new(const void *data, size_t len);
void uh_secret_value_free(struct uh_secret_value *v);

/* Load (or create) the process's keys from cfg->secrets.key_file. Once at
 * start-up, before any seal/open; again after a config reload is a no-op
 * unless the path changed. Errors name "secrets.key_file". */
int uh_secret_keys_init(const struct uh_config *cfg, struct uh_error *err);
void uh_secret_keys_shutdown(void);

/* Seal `value` for (scope, name): *blob is malloc'd (not secret), free(). */
int uh_secret_seal(const char *scope, const char *name, const void *value, size_t len, unsigned char **blob,
                   size_t *blob_len, struct uh_error *err);
/* Open a blob sealed for (scope, name). UH_E_INTERNAL naming neither value
 * nor key when it does not open (wrong key, moved row, tampering). */
int uh_secret_open(const char *scope, const char *name, const unsigned char *blob, size_t blob_len,
                   struct uh_secret_value **out, struct uh_error *err);

/* Key rotation, three steps around the store's re-seal transaction:
 *   begin: create the new key, write KEY_FILE.next;
 *   reseal: open a blob under whichever key and seal it under the new one
 *           (call for each row inside the transaction); a blob that opens
 *           under no key (altered or moved in the database) is handed back
 *           unchanged with *unreadable set, so it cannot block rotation;
 *   end (ok=true): rename KEY_FILE.next over KEY_FILE, use only the new
 *           key. ok=false (the transaction failed): the rotation stays
 *           pending — both keys open, new values are sealed under the new
 *           one — and the next begin (or start-up) finishes it with the same
 *           new key. While a rotation is pending, seal() uses the new key,
 *           so a value written concurrently with the re-seal is never lost. */
int uh_secret_rotate_begin(struct uh_error *err);
int uh_secret_rotate_reseal(const char *scope, const char *name, const unsigned char *blob, size_t blob_len,
                            unsigned char **out, size_t *out_len, bool *unreadable, struct uh_error *err);
int uh_secret_rotate_end(bool ok, struct uh_error *err);
/* A rotation is pending (KEY_FILE.next was found at start-up, or a re-seal
 * failed): the daemon finishes it right after opening the store. */
bool uh_secret_rotation_pending(void);

#endif
