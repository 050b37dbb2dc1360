/* uhub-init mode "local": PID 1 of a Local run (see backend/local_proto.h for
 * the descriptors and argv the daemon hands over).
 *
 * Runs as root in fresh PID, mount and IPC namespaces (and an empty network
 * namespace for network "none"), then: joins the run's cgroups, makes every
 * mount private, mounts its own /proc and private tmpfs on /tmp, /var/tmp,
 * /dev/shm and /run/lock, lowers rlimits, drops to the run's uid/gid with no
 * supplementary groups, sets no_new_privs, and supervises the job.
 * Everything it needs comes on argv; its environment is the job's, built by
 * the daemon. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "backend/local_proto.h"
#include "init/init.h"

struct local_args {
	const char *run;
	long long uid, gid;
	const char *cwd, *keep;
	long long nofile, fsize;
	long long ncg;
	bool net_none;
	char **argv; /* the job's */
};

static int parse_num(const char *s, long long min, long long max, long long *out)
{
	if (!s || !*s)
		return -1;
	long long v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9' || v > (LLONG_MAX - 9) / 10)
			return -1;
		v = v * 10 + (*p - '0');
	}
	if (v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static const char *word(const char *arg, const char *key)
{
	size_t n = strlen(key);
	return strncmp(arg, key, n) == 0 && arg[n] == '=' ? arg + n + 1 : NULL;
}

static int parse(int argc, char **argv, struct local_args *a)
{
	a->uid = a->gid = a->nofile = a->fsize = a->ncg = -1;
	int i;
	for (i = 2; i < argc && strcmp(argv[i], "--") != 0; i++) {
		const char *v;
		if ((v = word(argv[i], "run")))
			a->run = v;
		else if ((v = word(argv[i], "uid"))) {
			if (parse_num(v, 1, UINT32_MAX - 1, &a->uid))
				return -1;
		} else if ((v = word(argv[i], "gid"))) {
			if (parse_num(v, 1, UINT32_MAX - 1, &a->gid))
				return -1;
		} else if ((v = word(argv[i], "cwd")))
			a->cwd = v;
		else if ((v = word(argv[i], "keep")))
			a->keep = v;
		else if ((v = word(argv[i], "nofile"))) {
			if (parse_num(v, 1, 1 << 20, &a->nofile))
				return -1;
		} else if ((v = word(argv[i], "fsize"))) {
			if (parse_num(v, 1, LLONG_MAX, &a->fsize))
				return -1;
		} else if ((v = word(argv[i], "cg"))) {
			if (parse_num(v, 0, UH_INIT_MAX_CGROUP_FDS, &a->ncg))
				return -1;
		} else if ((v = word(argv[i], "net"))) {
			if (strcmp(v, "none") != 0)
				return -1;
			a->net_none = true;
		} else
			return -1;
	}
	if (i >= argc - 1 || a->uid < 0 || a->gid < 0 || a->nofile < 0 || a->fsize < 0 || a->ncg < 0 || !a->cwd ||
	    !a->keep || a->cwd[0] != '/' || a->keep[0] != '/')
		return -1;
	a->argv = argv + i + 1;
	return 0;
}

static bool under(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	return strncmp(path, dir, n) == 0 && path[n] == '/';
}

/* mkdir -p for a path inside a fresh tmpfs (root-owned, 0755). */
static int mkdirs(const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);
	if (n >= sizeof(buf))
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
	if (mkdir(buf, 0755) && errno != EEXIST)
		return -errno;
	return 0;
}

/* Replace a world-writable shared directory by a private tmpfs, keeping the
 * listed directories (opened beforehand) reachable at their old paths. */
static void private_tmp(const char *dir, const char *const keep[], const int keepfd[], size_t nkeep)
{
	struct stat st;
	if (lstat(dir, &st) || !S_ISDIR(st.st_mode))
		return; /* absent, or a symlink to one we already replaced */
	if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"))
		uh_init_fail(UH_INIT_FD_CHAN, UH_INIT_STEP_MOUNT, errno, "mount tmpfs");
	for (size_t i = 0; i < nkeep; i++) {
		if (!under(keep[i], dir))
			continue;
		char src[64];
		int r = mkdirs(keep[i]);
		if (r)
			uh_init_fail(UH_INIT_FD_CHAN, UH_INIT_STEP_MOUNT, -r, "mkdir in tmpfs");
		snprintf(src, sizeof(src), "/proc/self/fd/%d", keepfd[i]);
		if (mount(src, keep[i], NULL, MS_BIND | MS_REC, NULL))
			uh_init_fail(UH_INIT_FD_CHAN, UH_INIT_STEP_MOUNT, errno, "bind scratch dir");
	}
}

/* A new network namespace has only a loopback, and it is down. */
static void loopback_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, "lo", 3);
	if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr))
		uh_init_fail(UH_INIT_FD_CHAN, UH_INIT_STEP_NETWORK, errno, "loopback");
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr))
		uh_init_fail(UH_INIT_FD_CHAN, UH_INIT_STEP_NETWORK, errno, "loopback");
	close(s);
}

int uh_init_local(int argc, char **argv, char **envp)
{
	const int sfd = UH_INIT_FD_CHAN; /* where failures are reported */
	struct local_args a = {0};
	if (parse(argc, argv, &a))
		uh_init_fail(sfd, UH_INIT_STEP_ARGS, EINVAL, "bad arguments");

	umask(022);

	/* Nothing but our fixed descriptors may reach the job. */
	if (syscall(SYS_close_range, (unsigned)(UH_INIT_FD_CGROUP + a.ncg), ~0u, 0))
		uh_init_fail(sfd, UH_INIT_STEP_ARGS, errno, "close_range");
	fcntl(UH_INIT_FD_CHAN, F_SETFD, FD_CLOEXEC);
	fcntl(UH_INIT_FD_LIFELINE, F_SETFD, FD_CLOEXEC);

	/* Join the run's cgroups before anything can fork. */
	for (int i = 0; i < a.ncg; i++) {
		if (write(UH_INIT_FD_CGROUP + i, "0", 1) != 1)
			uh_init_fail(sfd, UH_INIT_STEP_CGROUP, errno, "join cgroup");
		close(UH_INIT_FD_CGROUP + i);
	}

	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		uh_init_fail(sfd, UH_INIT_STEP_MOUNT, errno, "make mounts private");
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
		uh_init_fail(sfd, UH_INIT_STEP_MOUNT, errno, "mount /proc");
	const char *keep[2] = {a.keep, a.cwd};
	int keepfd[2] = {-1, -1};
	size_t nkeep = strcmp(a.keep, a.cwd) == 0 ? 1 : 2;
	for (size_t i = 0; i < nkeep; i++) {
		keepfd[i] = open(keep[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (keepfd[i] < 0)
			uh_init_fail(sfd, UH_INIT_STEP_CHDIR, errno, "open working directory");
	}
	/* Every world-writable shared directory: runs must not meet there. */
	static const char *const shared[] = {"/tmp", "/var/tmp", "/dev/shm", "/run/lock"};
	for (size_t i = 0; i < sizeof(shared) / sizeof(shared[0]); i++)
		private_tmp(shared[i], keep, keepfd, nkeep);
	for (size_t i = 0; i < nkeep; i++)
		close(keepfd[i]);

	if (a.net_none)
		loopback_up();

	struct rlimit core = {0, 0}, nofile = {(rlim_t)a.nofile, (rlim_t)a.nofile},
	              fsize = {(rlim_t)a.fsize, (rlim_t)a.fsize}, have;
	/* Raising a hard limit needs CAP_SYS_RESOURCE, which a container may
	 * not grant: never ask for more than the daemon was given. */
	if (getrlimit(RLIMIT_NOFILE, &have) == 0 && have.rlim_max < nofile.rlim_max)
		nofile.rlim_cur = nofile.rlim_max = have.rlim_max;
	if (getrlimit(RLIMIT_FSIZE, &have) == 0 && have.rlim_max < fsize.rlim_max)
		fsize.rlim_cur = fsize.rlim_max = have.rlim_max;
	if (setrlimit(RLIMIT_CORE, &core) || setrlimit(RLIMIT_NOFILE, &nofile) || setrlimit(RLIMIT_FSIZE, &fsize))
		uh_init_fail(sfd, UH_INIT_STEP_RLIMIT, errno, "setrlimit");

	/* Single-threaded static binary: the set*id wrappers change just us. */
	uid_t uid = (uid_t)a.uid;
	gid_t gid = (gid_t)a.gid;
	if (setgroups(0, NULL) || setresgid(gid, gid, gid) || setresuid(uid, uid, uid))
		uh_init_fail(sfd, UH_INIT_STEP_CREDS, errno, "switch user");
	uid_t r, e, s;
	if (getresuid(&r, &e, &s) || r != uid || e != uid || s != uid || r == 0 || getgroups(0, NULL) != 0)
		uh_init_fail(sfd, UH_INIT_STEP_CREDS, EPERM, "switch user");

	/* After the uid change: it clears the parent-death signal. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) ||
	    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0))
		uh_init_fail(sfd, UH_INIT_STEP_PRCTL, errno, "prctl");

	if (chdir(a.cwd))
		uh_init_fail(sfd, UH_INIT_STEP_CHDIR, errno, "chdir");

	/* The daemon may have died while we were setting up: start nothing. */
	struct pollfd life = {.fd = UH_INIT_FD_LIFELINE, .events = POLLIN};
	if (poll(&life, 1, 0) != 0) {
		uh_init_status_write(sfd, UH_INIT_LIFELINE, 0, 0);
		_exit(UH_INIT_EXIT_LIFELINE);
	}

	uh_init_supervise(UH_INIT_FD_EXEC, a.argv, envp, UH_INIT_FD_CHAN, UH_INIT_FD_LIFELINE);
}
