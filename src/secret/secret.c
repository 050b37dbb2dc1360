/* The built-in secret store's cryptography (see secret.h). */
#include "secret/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_LEN   crypto_aead_xchacha20poly1305_ietf_KEYBYTES
#define NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_LEN   crypto_aead_xchacha20poly1305_ietf_ABYTES
#define KID_LEN   8
#define MAGIC     "US1"
#define MAGIC_LEN 3
#define HDR_LEN   (MAGIC_LEN + KID_LEN + NONCE_LEN)

struct key {
	unsigned char k[KEY_LEN];
	unsigned char id[KID_LEN];
};

/* Keys in one sodium_malloc'd block: cur (what seals), next (during a
 * rotation, or left over by a crash in one). */
static struct {
	pthread_mutex_t mu;
	struct key *keys; /* [0] current, [1] next */
	bool has_next;
	char *path;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* sodium_malloc puts the block's end against a guard page, so its start is
 * aligned only if the size is: round up. */
static struct uh_secret_value *value_alloc(size_t len)
{
	size_t n = (sizeof(struct uh_secret_value) + len + 1 + 15) & ~(size_t)15;
	return sodium_malloc(n);
}

struct uh_secret_value *uh_secret_value_new(const void *data, size_t len)
{
	if (sodium_init() < 0)
		return NULL;
	struct uh_secret_value *v = value_alloc(len);
	if (!v)
		return NULL;
	v->len = len;
	if (len)
		memcpy(v->data, data, len);
	v->data[len] = '\0';
	return v;
}

void uh_secret_value_free(struct uh_secret_value *v)
{
	if (v)
		sodium_free(v); /* wipes */
}

static void key_id(struct key *k)
{
	unsigned char h[crypto_generichash_BYTES];
	crypto_generichash(h, sizeof(h), k->k, KEY_LEN, (const unsigned char *)"uhub-key-id", 11);
	memcpy(k->id, h, KID_LEN);
}

static int read_key(const char *path, struct key *out, bool *missing, struct uh_error *err)
{
	*missing = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT) {
			*missing = true;
			return 0;
		}
		return uh_error_set(err, UH_E_INVALID_CONFIG, "secrets.key_file",
		                    "cannot open secrets key file '%s': %s", path, strerror(errno));
	}
	struct stat st;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
		close(fd);
		return uh_error_set(err, UH_E_INVALID_CONFIG, "secrets.key_file",
		                    "secrets key file '%s' must be a regular file of mode 0600", path);
	}
	ssize_t n = read(fd, out->k, KEY_LEN);
	char extra;
	ssize_t more = read(fd, &extra, 1);
	close(fd);
	if (n != KEY_LEN || more != 0)
		return uh_error_set(err, UH_E_INVALID_CONFIG, "secrets.key_file",
		                    "secrets key file '%s' must hold %d bytes", path, KEY_LEN);
	key_id(out);
	return 0;
}

static int fsync_dir_of(const char *path)
{
	char *dup = strdup(path);
	if (!dup)
		return -1;
	int fd = open(dirname(dup), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dup);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	close(fd);
	return r;
}

/* Create `path` (must not exist) holding k, 0600, fsync'd with its dir. */
static int write_key(const char *path, const struct key *k, struct uh_error *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return uh_error_set(err, UH_E_INTERNAL, "secrets.key_file", "cannot create secrets key file '%s': %s",
		                    path, strerror(errno));
	ssize_t w = write(fd, k->k, KEY_LEN);
	int fs = fsync(fd);
	close(fd);
	if (w != KEY_LEN || fs || fsync_dir_of(path)) {
		unlink(path);
		return uh_error_set(err, UH_E_INTERNAL, "secrets.key_file", "cannot write secrets key file '%s'", path);
	}
	return 0;
}

static char *next_path(const char *path)
{
	size_t n = strlen(path) + 6;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s.next", path);
	return p;
}

int uh_secret_keys_init(const struct uh_config *cfg, struct uh_error *err)
{
	const char *path = cfg->secrets.key_file;
	if (!path || !*path)
		return uh_error_set(err, UH_E_INVALID_CONFIG, "secrets.key_file", "'secrets.key_file' must be set");
	if (sodium_init() < 0)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "libsodium failed to initialise");
	pthread_mutex_lock(&g.mu);
	if (g.keys && g.path && strcmp(g.path, path) == 0) {
		pthread_mutex_unlock(&g.mu);
		return 0;
	}
	int rc = 0;
	struct key *keys = sodium_malloc(2 * sizeof(struct key)); /* byte arrays: any alignment */
	char *np = next_path(path), *dup = strdup(path);
	bool missing = false, next_missing = true;
	if (!keys || !np || !dup) {
		rc = uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
		goto out;
	}
	if ((rc = read_key(path, &keys[0], &missing, err)))
		goto out;
	if ((rc = read_key(np, &keys[1], &next_missing, err)))
		goto out;
	if (missing && next_missing) {
		char *d = strdup(path);
		if (d) {
			mkdir(dirname(d), 0700); /* the default's /var/lib/uhub may not exist yet */
			free(d);
		}
		randombytes_buf(keys[0].k, KEY_LEN);
		key_id(&keys[0]);
		if ((rc = write_key(path, &keys[0], err)))
			goto out;
	} else if (missing) {
		/* A crash between removing... cannot happen (rename is atomic), but
		 * a .next alone is a complete rotation: finish it. */
		if (rename(np, path) || fsync_dir_of(path)) {
			rc = uh_error_set(err, UH_E_INTERNAL, "secrets.key_file", "cannot rename '%s' to '%s': %s", np,
			                  path, strerror(errno));
			goto out;
		}
		keys[0] = keys[1];
		next_missing = true;
	}
	if (g.keys)
		sodium_free(g.keys);
	free(g.path);
	g.keys = keys;
	g.has_next = !next_missing;
	g.path = dup;
	keys = NULL;
	dup = NULL;
out:
	pthread_mutex_unlock(&g.mu);
	if (keys)
		sodium_free(keys);
	free(np);
	free(dup);
	return rc;
}

void uh_secret_keys_shutdown(void)
{
	pthread_mutex_lock(&g.mu);
	if (g.keys)
		sodium_free(g.keys);
	g.keys = NULL;
	g.has_next = false;
	free(g.path);
	g.path = NULL;
	pthread_mutex_unlock(&g.mu);
}

/* "uhub-secret-v1\0" SCOPE "\0" NAME */
static unsigned char *make_ad(const char *scope, const char *name, size_t *len)
{
	static const char pre[] = "uhub-secret-v1";
	size_t ls = strlen(scope), ln = strlen(name);
	*len = sizeof(pre) + ls + 1 + ln;
	unsigned char *ad = malloc(*len);
	if (!ad)
		return NULL;
	memcpy(ad, pre, sizeof(pre));
	memcpy(ad + sizeof(pre), scope, ls + 1);
	memcpy(ad + sizeof(pre) + ls + 1, name, ln);
	return ad;
}

static int seal_with(const struct key *k, const char *scope, const char *name, const void *value, size_t len,
                     unsigned char **blob, size_t *blob_len, struct uh_error *err)
{
	size_t adl;
	unsigned char *ad = make_ad(scope, name, &adl);
	unsigned char *b = malloc(HDR_LEN + len + TAG_LEN);
	if (!ad || !b) {
		free(ad);
		free(b);
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	}
	memcpy(b, MAGIC, MAGIC_LEN);
	memcpy(b + MAGIC_LEN, k->id, KID_LEN);
	randombytes_buf(b + MAGIC_LEN + KID_LEN, NONCE_LEN);
	unsigned long long cl = 0;
	crypto_aead_xchacha20poly1305_ietf_encrypt(b + HDR_LEN, &cl, value, len, ad, adl, NULL, b + MAGIC_LEN + KID_LEN,
	                                           k->k);
	free(ad);
	*blob = b;
	*blob_len = HDR_LEN + (size_t)cl;
	return 0;
}

int uh_secret_seal(const char *scope, const char *name, const void *value, size_t len, unsigned char **blob,
                   size_t *blob_len, struct uh_error *err)
{
	pthread_mutex_lock(&g.mu);
	/* During a rotation new values are sealed under the new key: a row
	 * written after the re-seal transaction must open once it ends. */
	int rc = g.keys ? seal_with(&g.keys[g.has_next ? 1 : 0], scope, name, value, len, blob, blob_len, err)
	                : uh_error_set(err, UH_E_INTERNAL, NULL, "the secret store's key is not loaded");
	pthread_mutex_unlock(&g.mu);
	return rc;
}

/* Under g.mu. */
static int open_locked(const char *scope, const char *name, const unsigned char *blob, size_t blob_len,
                       struct uh_secret_value **out, struct uh_error *err)
{
	if (!g.keys)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "the secret store's key is not loaded");
	if (blob_len < HDR_LEN + TAG_LEN || memcmp(blob, MAGIC, MAGIC_LEN) != 0)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "secret '%s' is not a sealed value of this uhub", name);
	const struct key *k = NULL;
	for (int i = 0; i < (g.has_next ? 2 : 1); i++)
		if (sodium_memcmp(g.keys[i].id, blob + MAGIC_LEN, KID_LEN) == 0)
			k = &g.keys[i];
	if (!k)
		return uh_error_set(err, UH_E_INTERNAL, NULL,
		                    "secret '%s' was sealed under another key than secrets.key_file holds", name);
	size_t adl, ml = blob_len - HDR_LEN - TAG_LEN;
	unsigned char *ad = make_ad(scope, name, &adl);
	struct uh_secret_value *v = value_alloc(ml);
	if (!ad || !v) {
		free(ad);
		if (v)
			sodium_free(v);
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	}
	unsigned long long outl = 0;
	int r =
	    crypto_aead_xchacha20poly1305_ietf_decrypt((unsigned char *)v->data, &outl, NULL, blob + HDR_LEN,
	                                               blob_len - HDR_LEN, ad, adl, blob + MAGIC_LEN + KID_LEN, k->k);
	free(ad);
	if (r != 0) {
		sodium_free(v);
		return uh_error_set(err, UH_E_INTERNAL, NULL, "secret '%s' does not open: altered or moved", name);
	}
	v->len = (size_t)outl;
	v->data[v->len] = '\0';
	*out = v;
	return 0;
}

int uh_secret_open(const char *scope, const char *name, const unsigned char *blob, size_t blob_len,
                   struct uh_secret_value **out, struct uh_error *err)
{
	pthread_mutex_lock(&g.mu);
	int rc = open_locked(scope, name, blob, blob_len, out, err);
	pthread_mutex_unlock(&g.mu);
	return rc;
}

int uh_secret_rotate_begin(struct uh_error *err)
{
	pthread_mutex_lock(&g.mu);
	int rc = 0;
	char *np = NULL;
	if (!g.keys) {
		rc = uh_error_set(err, UH_E_INTERNAL, NULL, "the secret store's key is not loaded");
		goto out;
	}
	if (g.has_next) /* a rotation that did not finish: finish it with its key */
		goto out;
	if (!(np = next_path(g.path))) {
		rc = uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
		goto out;
	}
	randombytes_buf(g.keys[1].k, KEY_LEN);
	key_id(&g.keys[1]);
	if ((rc = write_key(np, &g.keys[1], err)))
		goto out;
	g.has_next = true;
out:
	pthread_mutex_unlock(&g.mu);
	free(np);
	return rc;
}

bool uh_secret_rotation_pending(void)
{
	pthread_mutex_lock(&g.mu);
	bool p = g.has_next;
	pthread_mutex_unlock(&g.mu);
	return p;
}

int uh_secret_rotate_reseal(const char *scope, const char *name, const unsigned char *blob, size_t blob_len,
                            unsigned char **out, size_t *out_len, bool *unreadable, struct uh_error *err)
{
	*unreadable = false;
	pthread_mutex_lock(&g.mu);
	struct uh_secret_value *v = NULL;
	struct uh_error oe = {0};
	int rc = 0;
	if (!g.has_next)
		rc = uh_error_set(err, UH_E_INTERNAL, NULL, "no key rotation in progress");
	else if (open_locked(scope, name, blob, blob_len, &v, &oe) == 0)
		rc = seal_with(&g.keys[1], scope, name, v->data, v->len, out, out_len, err);
	else if (!(*out = malloc(blob_len ? blob_len : 1)))
		rc = uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	else {
		/* Altered or moved in the database: it opened before under no key
		 * either, and must not block the rotation for ever. Kept as is. */
		memcpy(*out, blob, blob_len);
		*out_len = blob_len;
		*unreadable = true;
	}
	uh_secret_value_free(v);
	pthread_mutex_unlock(&g.mu);
	return rc;
}

int uh_secret_rotate_end(bool ok, struct uh_error *err)
{
	pthread_mutex_lock(&g.mu);
	int rc = 0;
	char *np = g.path ? next_path(g.path) : NULL;
	if (!g.has_next || !np) {
		rc = uh_error_set(err, UH_E_INTERNAL, NULL, "no key rotation in progress");
		goto out;
	}
	if (ok) {
		if (rename(np, g.path) || fsync_dir_of(g.path)) {
			/* The rows are under the new key, which stays loaded and on disk
			 * as .next: start-up finishes the rename. */
			rc = uh_error_set(err, UH_E_INTERNAL, "secrets.key_file", "cannot rename '%s' to '%s': %s", np,
			                  g.path, strerror(errno));
			goto out;
		}
		g.keys[0] = g.keys[1];
		sodium_memzero(&g.keys[1], sizeof(g.keys[1]));
		g.has_next = false;
	}
	/* !ok: rows written meanwhile may be sealed under the new key, so the
	 * rotation stays pending (both keys open); the next rotate-key or the
	 * next start-up finishes it. */
out:
	pthread_mutex_unlock(&g.mu);
	free(np);
	return rc;
}
