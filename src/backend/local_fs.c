/* Scratch directories of Local runs: <work_root>/<run_id> with home/ and tmp/,
 * owned by the run's uid, and their removal without following any symlink
 * the job may have planted (openat(O_NOFOLLOW|O_DIRECTORY) + unlinkat).
 * Removal holds a bounded number of descriptors: directories nested deeper
 * than RM_MAX_DEPTH are moved up to the top and emptied on a later pass. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/local_impl.h"
#include "util/crypto.h"

#define RM_MAX_DEPTH 32

bool local_safe_name(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++) {
		char c = s[n];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
		      c == '-'))
			return false;
	}
	return n > 0 && n < UH_ID_MAX;
}

int local_mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) && errno != EEXIST)
		return -errno;
	return 0;
}

int local_work_root(const char *path, char **resolved, struct uh_error *err)
{
	if (!path || path[0] != '/')
		return uh_error_set(err, UH_E_INVALID_CONFIG, "local.work_root",
		                    "'local.work_root' must be an absolute path");
	bool created = access(path, F_OK) != 0;
	int r = local_mkdir_p(path, 0711);
	if (r)
		return uh_error_set(err, UH_E_INTERNAL, "local.work_root", "cannot create '%s': %s", path,
		                    strerror(-r));
	char *real = realpath(path, NULL);
	if (!real)
		return uh_error_set(err, UH_E_INTERNAL, "local.work_root", "cannot resolve '%s': %s", path,
		                    strerror(errno));
	struct stat st;
	if (stat(real, &st) || !S_ISDIR(st.st_mode)) {
		free(real);
		return uh_error_set(err, UH_E_INVALID_CONFIG, "local.work_root", "'%s' is not a directory", path);
	}
	/* Our own fresh directory: make it traversable by run users, no more. */
	if (created && (st.st_mode & 07777) != 0711 && chmod(real, 0711) == 0)
		st.st_mode = (st.st_mode & ~07777u) | 0711;
	if (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH))) {
		free(real);
		return uh_error_set(err, UH_E_INVALID_CONFIG, "local.work_root",
		                    "'%s' must be owned by root and not writable by group or others", path);
	}
	if (!(st.st_mode & S_IXOTH)) {
		free(real);
		return uh_error_set(err, UH_E_INVALID_CONFIG, "local.work_root",
		                    "'%s' must be searchable by run users (mode 0711)", path);
	}
	*resolved = real;
	return 0;
}

int local_scratch_create(const char *root, const char *run_id, uid_t uid, gid_t gid, struct uh_error *err)
{
	int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "cannot open work root '%s': %s", root, strerror(errno));
	const char *what = "mkdir";
	int fd = -1;
	if (mkdirat(rootfd, run_id, 0700)) {
		if (errno != EEXIST)
			goto fail;
		local_scratch_remove(root, run_id); /* a leftover of an earlier attempt */
		if (mkdirat(rootfd, run_id, 0700))
			goto fail;
	}
	fd = openat(rootfd, run_id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	what = "open";
	if (fd < 0)
		goto fail;
	/* Owned by the run at once, so a start-up sweep recognises it. */
	what = "chown";
	if (fchown(fd, uid, gid))
		goto fail;
	static const char *const subs[] = {"home", "tmp"};
	for (size_t i = 0; i < 2; i++) {
		what = "mkdir";
		if (mkdirat(fd, subs[i], 0700))
			goto fail;
		what = "chown";
		if (fchownat(fd, subs[i], uid, gid, AT_SYMLINK_NOFOLLOW))
			goto fail;
	}
	close(fd);
	close(rootfd);
	return 0;
fail:;
	int e = errno;
	if (fd >= 0)
		close(fd);
	close(rootfd);
	local_scratch_remove(root, run_id);
	return uh_error_set(err, UH_E_INTERNAL, NULL, "cannot create scratch dir '%s/%s' (%s): %s", root, run_id, what,
	                    strerror(e));
}

/* Empty the directory `fd`. Subdirectories at depth RM_MAX_DEPTH are moved
 * into rootfd instead (*moved counts them) for the next pass. */
static int empty_dir(int rootfd, int fd, int depth, unsigned *moved)
{
	int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (dfd < 0)
		return -errno;
	DIR *d = fdopendir(dfd);
	if (!d) {
		int e = errno;
		close(dfd);
		return -e;
	}
	rewinddir(d); /* the dup shares the offset of an earlier pass */
	int r = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		const char *n = e->d_name;
		if (n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0)))
			continue;
		if (e->d_type != DT_DIR && e->d_type != DT_UNKNOWN) {
			if (unlinkat(fd, n, 0) && errno != ENOENT)
				r = -errno;
			continue;
		}
		if (e->d_type == DT_UNKNOWN && unlinkat(fd, n, 0) == 0)
			continue;
		if (depth >= RM_MAX_DEPTH) {
			char to[48];
			for (int tries = 0; tries < 1000; tries++) {
				snprintf(to, sizeof(to), ".uhub-rm-%u", (*moved)++);
				if (renameat2(fd, n, rootfd, to, RENAME_NOREPLACE) == 0 || errno != EEXIST)
					break;
			}
			continue;
		}
		int sub = openat(fd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0) {
			/* Not a directory after all (a symlink): unlink the link itself. */
			if (unlinkat(fd, n, 0) && errno != ENOENT)
				r = -errno;
			continue;
		}
		int rr = empty_dir(rootfd, sub, depth + 1, moved);
		close(sub);
		if (unlinkat(fd, n, AT_REMOVEDIR) && errno != ENOENT)
			r = rr ? rr : -errno;
	}
	closedir(d);
	return r;
}

int local_scratch_remove(const char *root, const char *name)
{
	int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return errno == ENOENT ? 0 : -errno;
	int r = 0;
	int fd = openat(rootfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			r = 0;
		else if (errno == ENOTDIR || errno == ELOOP)
			r = unlinkat(rootfd, name, 0) ? -errno : 0;
		else
			r = -errno;
		close(rootfd);
		return r;
	}
	unsigned moved = 0;
	for (int pass = 0; pass < 100000; pass++) {
		unsigned before = moved;
		r = empty_dir(fd, fd, 0, &moved);
		if (moved == before)
			break;
	}
	close(fd);
	if (unlinkat(rootfd, name, AT_REMOVEDIR) && errno != ENOENT && !r)
		r = -errno;
	close(rootfd);
	return r;
}

/* The names in directory `fd` other than . and ..: how many (up to 3), and
 * whether they are exactly `a` and `b` (NULL: no name expected). -1 on error. */
static int entries(int fd, const char *a, const char *b, bool *exact)
{
	int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return -1;
	}
	int n = 0, matched = 0;
	struct dirent *e;
	while (n < 3 && (e = readdir(d))) {
		const char *name = e->d_name;
		if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0)))
			continue;
		n++;
		if (e->d_type == DT_DIR && ((a && strcmp(name, a) == 0) || (b && strcmp(name, b) == 0)))
			matched++;
	}
	closedir(d);
	*exact = n == matched && n == (a ? 1 : 0) + (b ? 1 : 0);
	return n;
}

int local_scratch_park(const char *root, const char *run_id, const char *slot)
{
	int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return -errno;
	int fd = openat(rootfd, run_id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int r = fd < 0 ? -errno : 1;
	bool exact = false;
	/* Root's first, then checked: nothing but root can add to it after. */
	if (fd >= 0 && fchown(fd, 0, 0) == 0 && fchmod(fd, 0700) == 0 && entries(fd, "home", "tmp", &exact) == 2 &&
	    exact) {
		static const char *const subs[] = {"home", "tmp"};
		size_t i;
		for (i = 0; i < 2; i++) {
			int sub = openat(fd, subs[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			bool ok = sub >= 0 && fchown(sub, 0, 0) == 0 && fchmod(sub, 0700) == 0 &&
			          entries(sub, NULL, NULL, &exact) == 0;
			if (sub >= 0)
				close(sub);
			if (!ok)
				break;
		}
		if (i == 2)
			r = renameat2(rootfd, run_id, rootfd, slot, RENAME_NOREPLACE) ? -errno : 0;
	}
	if (fd >= 0)
		close(fd);
	close(rootfd);
	return r;
}

int local_scratch_unpark(const char *root, const char *slot, const char *run_id, uid_t uid, gid_t gid)
{
	int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return -errno;
	int r = 0, fd = -1;
	if (renameat2(rootfd, slot, rootfd, run_id, RENAME_NOREPLACE))
		r = -errno;
	else if ((fd = openat(rootfd, run_id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		r = -errno;
	else if (fchown(fd, uid, gid) || fchownat(fd, "home", uid, gid, AT_SYMLINK_NOFOLLOW) ||
	         fchownat(fd, "tmp", uid, gid, AT_SYMLINK_NOFOLLOW))
		r = -errno;
	if (fd >= 0)
		close(fd);
	close(rootfd);
	return r;
}

int64_t local_scratch_owner(const char *root, const char *name)
{
	char p[PATH_MAX];
	struct stat st;
	if (snprintf(p, sizeof(p), "%s/%s", root, name) >= (int)sizeof(p) || lstat(p, &st) || !S_ISDIR(st.st_mode))
		return -1;
	return st.st_uid;
}
