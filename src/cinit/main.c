/* uhub-cinit: the entrypoint of every container the Docker backend starts.
 *
 * It is bind-mounted read-only at /.uhub/init and runs as the container's
 * first process with the job's command as its arguments. Its only job is to
 * receive the run's secrets over stdin (so they never appear in the
 * container's config, which the engine writes to disk and shows in
 * `docker inspect`), put them in its environment, and exec the command.
 *
 * Protocol on stdin (written by src/backend/docker.c):
 *
 *   "UHS1"                      4 bytes, magic
 *   repeated: LEN (4 bytes, big-endian, 1..UH_CINIT_MAX_RECORD)
 *             NAME=VALUE (LEN bytes, no NUL byte; NAME matches [A-Za-z_][A-Za-z0-9_]*)
 *   LEN 0                       end of the records
 *
 * then the writer half-closes the stream (EOF). At most UH_CINIT_MAX_RECORDS
 * records and UH_CINIT_MAX_TOTAL bytes in all. Anything else: exit 126 with a
 * message that never contains a value. After the end record fd 0 is
 * replaced by /dev/null and argv[1..] is exec'd with execvp (PATH from the
 * image's environment). Exec failure: exit 127 (as a shell does).
 *
 * Static, libc only, so it runs in any image (FROM scratch included). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UH_CINIT_MAX_RECORD  (1u << 20)
#define UH_CINIT_MAX_RECORDS 4096u
#define UH_CINIT_MAX_TOTAL   (8u << 20)

static void write_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

static void say(const char *a, const char *b, const char *c)
{
	const char *parts[] = {"uhub-cinit: ", a, b, c, "\n"};
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		if (parts[i])
			write_all(STDERR_FILENO, parts[i], strlen(parts[i]));
}

static void fail(int code, const char *why)
{
	say(why, NULL, NULL);
	_exit(code);
}

/* Read exactly n bytes; 0 or -1 (EOF or error before n). */
static int read_full(int fd, void *p, size_t n)
{
	char *c = p;
	while (n > 0) {
		ssize_t r = read(fd, c, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c += r;
		n -= (size_t)r;
	}
	return 0;
}

static int name_ok(const char *s, size_t n)
{
	if (n == 0 || !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '_'))
			return 0;
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		fail(126, "usage: uhub-cinit COMMAND [ARG...] (secrets on stdin)");
	unsigned char magic[4];
	if (read_full(STDIN_FILENO, magic, 4) || memcmp(magic, "UHS1", 4) != 0)
		fail(126, "no secrets header on stdin");
	size_t total = 0;
	for (unsigned count = 0;; count++) {
		unsigned char l[4];
		if (read_full(STDIN_FILENO, l, 4))
			fail(126, "secrets stream cut short");
		uint32_t len = (uint32_t)l[0] << 24 | (uint32_t)l[1] << 16 | (uint32_t)l[2] << 8 | l[3];
		if (len == 0)
			break;
		if (count >= UH_CINIT_MAX_RECORDS || len > UH_CINIT_MAX_RECORD || total + len > UH_CINIT_MAX_TOTAL)
			fail(126, "secrets stream too large");
		total += len;
		char *rec = calloc(1, (size_t)len + 1);
		if (!rec)
			fail(126, "out of memory");
		if (read_full(STDIN_FILENO, rec, len))
			fail(126, "secrets stream cut short");
		rec[len] = 0;
		char *eq = memchr(rec, '=', len);
		if (!eq || memchr(rec, 0, len) || !name_ok(rec, (size_t)(eq - rec)))
			fail(126, "malformed secret record");
		/* putenv keeps the record: it is the environment entry itself. */
		if (putenv(rec))
			fail(126, "cannot set a secret variable");
	}
	int nul = open("/dev/null", O_RDONLY);
	if (nul < 0 || dup2(nul, STDIN_FILENO) < 0)
		close(STDIN_FILENO);
	if (nul > STDIN_FILENO)
		close(nul);
	execvp(argv[1], argv + 1);
	int e = errno;
	say("cannot execute '", argv[1], "'");
	say(strerror(e), NULL, NULL);
	_exit(e == ENOENT ? 127 : 126);
}
