/* The built-in secret store's cryptography (secret/secret.h): the key file
 * (created 0600, refused when group/other can read it or of the wrong size),
 * seal/open round trips, a blob bound to its scope and name (a row moved to
 * another project or renamed does not open), tampering detected, key
 * rotation, a rotation interrupted after the new key was written (finished
 * with the same key at the next start), and values written during a
 * rotation. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "secret/secret.h"
#include "tap.h"

static char dir[] = "/tmp/uh-secret-XXXXXX";
static char key_path[256], next_path[300];

static int init(void)
{
	struct uh_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.secrets.key_file = key_path;
	struct uh_error e = {0};
	int rc = uh_secret_keys_init(&cfg, &e);
	if (rc)
		fprintf(stderr, "init: %s\n", e.message);
	return rc;
}

static int opens_to(const char *scope, const char *name, const unsigned char *b, size_t n, const char *want)
{
	struct uh_secret_value *v = NULL;
	struct uh_error e = {0};
	if (uh_secret_open(scope, name, b, n, &v, &e))
		return 0;
	int ok = v->len == strlen(want) && memcmp(v->data, want, v->len) == 0 && v->data[v->len] == '\0';
	uh_secret_value_free(v);
	return ok;
}

static void file_bytes(const char *p, unsigned char *buf, size_t *n)
{
	int fd = open(p, O_RDONLY);
	ssize_t r = fd >= 0 ? read(fd, buf, 64) : -1;
	*n = r > 0 ? (size_t)r : 0;
	if (fd >= 0)
		close(fd);
}

int main(void)
{
	if (!mkdtemp(dir))
		return 1;
	snprintf(key_path, sizeof(key_path), "%s/sub/secrets.key", dir);
	snprintf(next_path, sizeof(next_path), "%s.next", key_path);
	struct uh_error e = {0};
	bool unreadable = false;
	const char *val = "correct horse battery staple";

	/* first start creates the key (and its missing directory), 0600 */
	CHECK(init() == 0);
	struct stat st;
	CHECK(stat(key_path, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_size == 32);

	unsigned char *b1 = NULL;
	size_t n1 = 0;
	CHECK(uh_secret_seal("p_1", "tok", val, strlen(val), &b1, &n1, &e) == 0);
	CHECK(n1 > strlen(val));
	CHECK(memmem(b1, n1, val, strlen(val)) == NULL); /* not in clear */
	CHECK(opens_to("p_1", "tok", b1, n1, val));
	/* bound to scope and name */
	CHECK(!opens_to("p_2", "tok", b1, n1, val));
	CHECK(!opens_to("p_1", "tok2", b1, n1, val));
	CHECK(!opens_to("shared", "tok", b1, n1, val));
	/* scope/name boundary cannot be shifted: ("p_1t","ok") != ("p_1","tok") */
	CHECK(!opens_to("p_1t", "ok", b1, n1, val));
	/* tampering anywhere */
	for (size_t i = 0; i < n1; i++) {
		b1[i] ^= 0x01;
		struct uh_secret_value *v = NULL;
		int rc = uh_secret_open("p_1", "tok", b1, n1, &v, &e);
		CHECK(rc != 0);
		CHECK(strstr(e.message, val) == NULL);
		uh_secret_value_free(v);
		b1[i] ^= 0x01;
	}
	CHECK(!opens_to("p_1", "tok", b1, 10, val)); /* truncated */
	/* two seals of one value differ (random nonce) */
	unsigned char *b2 = NULL;
	size_t n2 = 0;
	CHECK(uh_secret_seal("p_1", "tok", val, strlen(val), &b2, &n2, &e) == 0);
	CHECK(n1 == n2 && memcmp(b1, b2, n1) != 0);
	free(b2);

	/* a restart reads the same key */
	uh_secret_keys_shutdown();
	CHECK(init() == 0);
	CHECK(opens_to("p_1", "tok", b1, n1, val));

	/* rotation: begin writes .next, reseal, end renames */
	unsigned char old_key[64], new_key[64];
	size_t okn = 0, nkn = 0;
	file_bytes(key_path, old_key, &okn);
	CHECK(uh_secret_rotate_begin(&e) == 0);
	CHECK(stat(next_path, &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK(uh_secret_rotation_pending());
	/* a value written during the rotation is sealed under the new key */
	unsigned char *b3 = NULL;
	size_t n3 = 0;
	CHECK(uh_secret_seal("p_1", "during", "written during rotation", 23, &b3, &n3, &e) == 0);
	unsigned char *r1 = NULL;
	size_t rn1 = 0;
	CHECK(uh_secret_rotate_reseal("p_1", "tok", b1, n1, &r1, &rn1, &unreadable, &e) == 0 && !unreadable);
	CHECK(uh_secret_rotate_end(true, &e) == 0);
	CHECK(!uh_secret_rotation_pending());
	CHECK(stat(next_path, &st) != 0);
	file_bytes(key_path, new_key, &nkn);
	CHECK(nkn == 32 && okn == 32 && memcmp(old_key, new_key, 32) != 0);
	CHECK(opens_to("p_1", "tok", r1, rn1, val));
	CHECK(!opens_to("p_1", "tok", b1, n1, val)); /* the old key is gone */
	CHECK(opens_to("p_1", "during", b3, n3, "written during rotation"));
	free(b3);

	/* a crash after begin: the next start loads both keys, seals under the
	 * new one, and begin resumes with that key */
	CHECK(uh_secret_rotate_begin(&e) == 0);
	unsigned char *r2 = NULL;
	size_t rn2 = 0;
	CHECK(uh_secret_rotate_reseal("p_1", "tok", r1, rn1, &r2, &rn2, &unreadable, &e) == 0 && !unreadable);
	uh_secret_keys_shutdown(); /* "crash": .next stays on disk */
	CHECK(stat(next_path, &st) == 0);
	CHECK(init() == 0);
	CHECK(uh_secret_rotation_pending());
	CHECK(opens_to("p_1", "tok", r1, rn1, val)); /* row not yet re-sealed */
	CHECK(opens_to("p_1", "tok", r2, rn2, val)); /* row already re-sealed */
	CHECK(uh_secret_rotate_begin(&e) == 0);      /* resumes */
	unsigned char *r3 = NULL;
	size_t rn3 = 0;
	CHECK(uh_secret_rotate_reseal("p_1", "tok", r1, rn1, &r3, &rn3, &unreadable, &e) == 0 && !unreadable);
	CHECK(uh_secret_rotate_end(true, &e) == 0);
	CHECK(opens_to("p_1", "tok", r3, rn3, val));
	CHECK(opens_to("p_1", "tok", r2, rn2, val)); /* same new key */
	free(r1);
	free(r2);
	free(r3);

	/* a failed re-seal keeps the rotation pending: both keys still open */
	unsigned char *b4 = NULL;
	size_t n4 = 0;
	CHECK(uh_secret_seal("p_1", "x", "value number four", 17, &b4, &n4, &e) == 0);
	CHECK(uh_secret_rotate_begin(&e) == 0);
	CHECK(uh_secret_rotate_end(false, &e) == 0);
	CHECK(uh_secret_rotation_pending());
	CHECK(opens_to("p_1", "x", b4, n4, "value number four"));
	CHECK(uh_secret_rotate_begin(&e) == 0);
	unsigned char *r4 = NULL;
	size_t rn4 = 0;
	CHECK(uh_secret_rotate_reseal("p_1", "x", b4, n4, &r4, &rn4, &unreadable, &e) == 0 && !unreadable);
	unsigned char *moved = NULL;
	size_t mn = 0;
	CHECK(uh_secret_rotate_reseal("p_2", "x", b4, n4, &moved, &mn, &unreadable, &e) == 0 && unreadable);
	CHECK(mn == n4 && memcmp(moved, b4, n4) == 0); /* a moved row: kept as is */
	free(moved);
	CHECK(uh_secret_rotate_end(true, &e) == 0);
	CHECK(opens_to("p_1", "x", r4, rn4, "value number four"));
	free(b4);
	free(r4);
	free(b1);

	/* key files that are refused */
	uh_secret_keys_shutdown();
	chmod(key_path, 0644);
	CHECK(init() != 0);
	chmod(key_path, 0600);
	int fd = open(key_path, O_WRONLY | O_APPEND);
	CHECK(fd >= 0 && write(fd, "x", 1) == 1);
	close(fd);
	CHECK(init() != 0);

	/* locked values */
	struct uh_secret_value *v = uh_secret_value_new("abc", 3);
	CHECK(v && v->len == 3 && strcmp(v->data, "abc") == 0);
	uh_secret_value_free(v);
	uh_secret_value_free(NULL);

	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
	return uh_tap_done();
}
