/* See audit.h. */
#include "core/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/crypto.h"

static void field(struct uh_buf *b, const char *s)
{
	if (!s)
		s = "";
	uh_buf_printf(b, "%zu:", strlen(s));
	uh_buf_appends(b, s);
	uh_buf_append(b, "\n", 1);
}

void uh_audit_hash(const unsigned char *key, size_t keylen, const struct uh_audit_event *ev, char out[65])
{
	struct uh_buf b = UH_BUF_INIT(0);
	uh_buf_printf(&b, "uhub-audit-v1\n%" PRId64 "\n%" PRId64 "\n", ev->seq, ev->at);
	field(&b, ev->actor);
	field(&b, ev->action);
	field(&b, ev->target);
	field(&b, ev->details);
	field(&b, ev->prev);
	unsigned char mac[32];
	uh_hmac_sha256(key, keylen, b.data, b.len, mac);
	uh_hex(mac, 32, out);
	uh_buf_free(&b);
}

int uh_audit_key_load(const char *path, unsigned char key[UH_AUDIT_KEY_LEN], struct uh_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT) {
		unsigned char k[UH_AUDIT_KEY_LEN];
		if (uh_random(k, sizeof(k)))
			return uh_error_set(err, UH_E_INTERNAL, NULL, "no randomness for the audit key");
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0)
			return uh_error_set(err, UH_E_INTERNAL, "audit.key_file",
			                    "cannot create audit key file '%s': %s", path, strerror(errno));
		ssize_t w = write(fd, k, sizeof(k));
		int fs = fsync(fd);
		close(fd);
		if (w != (ssize_t)sizeof(k) || fs)
			return uh_error_set(err, UH_E_INTERNAL, "audit.key_file", "cannot write audit key file '%s'",
			                    path);
		memcpy(key, k, sizeof(k));
		uh_memzero(k, sizeof(k));
		return 0;
	}
	if (fd < 0)
		return uh_error_set(err, UH_E_INTERNAL, "audit.key_file", "cannot open audit key file '%s': %s", path,
		                    strerror(errno));
	struct stat st;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
		close(fd);
		return uh_error_set(err, UH_E_INTERNAL, "audit.key_file",
		                    "audit key file '%s' must be a regular file of mode 0600", path);
	}
	ssize_t n = read(fd, key, UH_AUDIT_KEY_LEN);
	char extra;
	ssize_t more = read(fd, &extra, 1);
	close(fd);
	if (n != UH_AUDIT_KEY_LEN || more != 0)
		return uh_error_set(err, UH_E_INTERNAL, "audit.key_file", "audit key file '%s' must hold %d bytes",
		                    path, UH_AUDIT_KEY_LEN);
	return 0;
}

#define HEAD_LEN 96 /* "SEQ HASH\n" padded with spaces */

int uh_audit_head_open(struct uh_audit_head *h, const char *path, struct uh_error *err)
{
	h->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (h->fd < 0)
		return uh_error_set(err, UH_E_INTERNAL, "audit.head_file", "cannot open audit head file '%s': %s", path,
		                    strerror(errno));
	return 0;
}

int uh_audit_head_write(struct uh_audit_head *h, int64_t seq, const char hash[65])
{
	if (h->fd < 0)
		return 0;
	char rec[HEAD_LEN];
	memset(rec, ' ', sizeof(rec));
	int n = snprintf(rec, sizeof(rec), "%" PRId64 " %s", seq, hash);
	rec[n] = ' ';
	rec[HEAD_LEN - 1] = '\n';
	return pwrite(h->fd, rec, sizeof(rec), 0) == (ssize_t)sizeof(rec) ? 0 : UH_E_INTERNAL;
}

int uh_audit_head_read(const char *path, int64_t *seq, char hash[65], struct uh_error *err)
{
	*seq = 0;
	hash[0] = '\0';
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return uh_error_set(err, UH_E_INTERNAL, NULL, "cannot read audit head file '%s': %s", path,
		                    strerror(errno));
	}
	char rec[HEAD_LEN + 1];
	ssize_t n = pread(fd, rec, HEAD_LEN, 0);
	close(fd);
	if (n <= 0)
		return 0;
	rec[n] = '\0';
	long long s;
	char hx[65];
	if (sscanf(rec, "%lld %64s", &s, hx) != 2 || strlen(hx) != 64)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "audit head file '%s' is malformed", path);
	*seq = s;
	memcpy(hash, hx, 65);
	return 0;
}

void uh_audit_head_close(struct uh_audit_head *h)
{
	if (h->fd >= 0)
		close(h->fd);
	h->fd = -1;
}
