/* Per-run cgroups (see cgroup.h). The layout is read from
 * /proc/self/mountinfo: a v1 hierarchy per controller where one is mounted,
 * else the v2 mount (controllers enabled through cgroup.subtree_control).
 * Run cgroups live under a `uhub` directory at the root of each hierarchy,
 * like Docker's cgroupfs driver, so a restarted daemon finds them at the
 * same place whatever cgroup it was started in. */
#include "backend/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum ctl { CTL_PIDS = 1u << 0, CTL_MEMORY = 1u << 1, CTL_CPU = 1u << 2 };
static const char *const ctl_names[] = {"pids", "memory", "cpu"};
#define CTL_ALL (CTL_PIDS | CTL_MEMORY | CTL_CPU)

/* Emptied run cgroups kept per hierarchy for later runs. Creating a memory
 * cgroup and removing it cost ~0.75 ms of CPU in the caller plus the
 * kernel's offline work (shrinker maps allocated, reparented and freed per
 * cgroup); renaming one costs ~3 us. */
#define POOL_MAX 32
/* ... if they hold at most this much memory (the page cache of what the
 * last run read stays charged; a smaller limit written later reclaims it
 * synchronously, on the supervisor's thread). */
#define POOL_MAX_USAGE (32ll << 20)

struct hier {
	char parent[PATH_MAX]; /* <mount>/uhub */
	bool v2;
	bool can_kill;   /* v2 cgroup.kill */
	bool can_rename; /* v1 only: the kernel refuses to rename a v2 cgroup */
	unsigned ctls;   /* controllers whose limits we set here */
	int npool;
	unsigned pool[POOL_MAX]; /* parked cgroups, named pool-<pid>-<n> */
};

static struct {
	struct hier h[UH_CG_MAX];
	int n;
	unsigned have; /* controllers available */
	bool have_kill;
	long ncpu; /* CPUs the daemon (and so every run) may use */
	char warning[256];
	char describe[128];
	pid_t pid;          /* in the pool's names: the `uhub` parents are shared by every daemon of the host */
	unsigned pool_next; /* the next pool name */
} L;
static pthread_once_t layout_once = PTHREAD_ONCE_INIT;

static int write_at(const char *dir, const char *name, const char *val)
{
	char p[PATH_MAX];
	if (snprintf(p, sizeof(p), "%s/%s", dir, name) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	int fd = open(p, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t len = strlen(val);
	ssize_t w = write(fd, val, len);
	int e = errno;
	close(fd);
	if (w < 0)
		return -e;
	return (size_t)w == len ? 0 : -EIO;
}

/* Read a small file (NUL-terminated); length or -errno. */
static ssize_t read_at(const char *dir, const char *name, char *buf, size_t size)
{
	char p[PATH_MAX];
	if (snprintf(p, sizeof(p), "%s/%s", dir, name) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t n = 0;
	while (n < size - 1) {
		ssize_t r = read(fd, buf + n, size - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = 0;
	return (ssize_t)n;
}

static bool exists_at(const char *dir, const char *name)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return access(p, F_OK) == 0;
}

/* Is `word` one of the separated tokens of s? */
static bool has_token(const char *s, const char *word, const char *seps)
{
	size_t n = strlen(word);
	for (const char *p = s; *p;) {
		size_t l = strcspn(p, seps);
		if (l == n && strncmp(p, word, n) == 0)
			return true;
		p += l;
		p += strspn(p, seps);
	}
	return false;
}

/* mountinfo escapes spaces and the like as \ooo. */
static void unescape(char *s)
{
	char *o = s;
	for (char *p = s; *p; p++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' &&
		    p[3] <= '7') {
			*o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
			p += 3;
		} else {
			*o++ = *p;
		}
	}
	*o = 0;
}

static void add_hier(const char *mount, bool v2, unsigned ctls)
{
	if (L.n >= UH_CG_MAX)
		return;
	struct hier *h = &L.h[L.n];
	if (snprintf(h->parent, sizeof(h->parent), "%s/uhub", mount) >= (int)sizeof(h->parent))
		return;
	if (mkdir(h->parent, 0755) && errno != EEXIST)
		return;
	h->v2 = v2;
	h->ctls = ctls;
	h->can_rename = !v2;
	if (v2) {
		/* The parent passes its controllers down to each run's cgroup. */
		for (int i = 0; i < 3; i++) {
			if (!(ctls & (1u << i)))
				continue;
			char w[16];
			snprintf(w, sizeof(w), "+%s", ctl_names[i]);
			if (write_at(h->parent, "cgroup.subtree_control", w))
				h->ctls &= ~(1u << i);
		}
		h->can_kill = exists_at(h->parent, "cgroup.kill");
	}
	L.have |= h->ctls;
	L.have_kill |= h->can_kill;
	L.n++;
}

static void detect(void)
{
	char v1mount[3][PATH_MAX] = {{0}};
	char v2mount[PATH_MAX] = {0};
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (f) {
		char *line = NULL;
		size_t cap = 0;
		while (getline(&line, &cap, f) > 0) {
			/* id parent maj:min root mountpoint opts [optional...] - fstype source superopts */
			char *sep = strstr(line, " - ");
			if (!sep)
				continue;
			*sep = 0;
			char fstype[32], source[64], super[512], root[PATH_MAX], mp[PATH_MAX];
			if (sscanf(sep + 3, "%31s %63s %511s", fstype, source, super) != 3)
				continue;
			if (sscanf(line, "%*s %*s %*s %4095s %4095s", root, mp) != 2)
				continue;
			unescape(mp);
			if (strcmp(fstype, "cgroup2") == 0) {
				if (!v2mount[0])
					snprintf(v2mount, sizeof(v2mount), "%s", mp);
			} else if (strcmp(fstype, "cgroup") == 0) {
				for (int i = 0; i < 3; i++)
					if (!v1mount[i][0] && has_token(super, ctl_names[i], ","))
						snprintf(v1mount[i], sizeof(v1mount[i]), "%s", mp);
			}
		}
		free(line);
		fclose(f);
	}

	L.pid = getpid();
	cpu_set_t cpus;
	L.ncpu = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 ? CPU_COUNT(&cpus) : 0;
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	if (L.ncpu <= 0 || (online > 0 && online < L.ncpu))
		L.ncpu = online;

	/* v1 hierarchies, one per mount (cpu may share one with cpuacct). */
	unsigned done = 0;
	for (int i = 0; i < 3; i++) {
		if (!v1mount[i][0] || (done & (1u << i)))
			continue;
		unsigned ctls = 1u << i;
		for (int j = i + 1; j < 3; j++)
			if (strcmp(v1mount[i], v1mount[j]) == 0)
				ctls |= 1u << j;
		done |= ctls;
		add_hier(v1mount[i], false, ctls);
	}
	/* v2: whatever v1 does not serve, plus kill and events. */
	if (v2mount[0]) {
		char avail[256] = "";
		read_at(v2mount, "cgroup.controllers", avail, sizeof(avail));
		unsigned ctls = 0;
		for (int i = 0; i < 3; i++) {
			if ((done & (1u << i)) || !has_token(avail, ctl_names[i], " \n"))
				continue;
			char w[16];
			snprintf(w, sizeof(w), "+%s", ctl_names[i]);
			char enabled[256] = "";
			read_at(v2mount, "cgroup.subtree_control", enabled, sizeof(enabled));
			if (has_token(enabled, ctl_names[i], " \n") ||
			    write_at(v2mount, "cgroup.subtree_control", w) == 0)
				ctls |= 1u << i;
		}
		/* On a hybrid host whose v1 hierarchies serve every controller, the
		 * v2 mount would only add a second cgroup move per run (and its
		 * RCU grace period): the run's PID namespace already kills the
		 * whole tree, and v1 lists what is left. */
		if (ctls || done == 0)
			add_hier(v2mount, true, ctls);
	}

	size_t off = 0;
	for (int i = 0; i < L.n; i++) {
		off += (size_t)snprintf(L.describe + off, sizeof(L.describe) - off, "%s%s", i ? " + " : "",
		                        L.h[i].v2 ? "v2" : "v1");
		for (int c = 0, first = 1; c < 3 && off < sizeof(L.describe); c++)
			if (L.h[i].ctls & (1u << c)) {
				off += (size_t)snprintf(L.describe + off, sizeof(L.describe) - off, "%s%s",
				                        first ? " " : ",", ctl_names[c]);
				first = 0;
			}
		if (L.h[i].can_kill && off < sizeof(L.describe))
			off += (size_t)snprintf(L.describe + off, sizeof(L.describe) - off, " (kill)");
		if (off >= sizeof(L.describe))
			break;
	}
	if (!L.n)
		snprintf(L.describe, sizeof(L.describe), "none");

	if (!L.n) {
		snprintf(L.warning, sizeof(L.warning),
		         "no usable cgroup hierarchy: process, memory and CPU limits are not enforced");
	} else if ((L.have & CTL_ALL) != CTL_ALL) {
		off = (size_t)snprintf(L.warning, sizeof(L.warning), "cgroup controller(s) unavailable:");
		for (int c = 0; c < 3 && off < sizeof(L.warning); c++)
			if (!(L.have & (1u << c)))
				off += (size_t)snprintf(L.warning + off, sizeof(L.warning) - off, " %s", ctl_names[c]);
		if (off < sizeof(L.warning))
			snprintf(L.warning + off, sizeof(L.warning) - off, "; those limits are not enforced");
	}
}

const char *uh_cg_setup(void)
{
	pthread_once(&layout_once, detect);
	return L.warning[0] ? L.warning : NULL;
}

const char *uh_cg_describe(void)
{
	uh_cg_setup();
	return L.describe;
}

bool uh_cg_complete(void)
{
	uh_cg_setup();
	return (L.have & CTL_ALL) == CTL_ALL;
}

static bool run_dir(const struct hier *h, const char *run_id, char *out, size_t size)
{
	return snprintf(out, size, "%s/%s", h->parent, run_id) < (int)size;
}

/* A quota of at least every CPU the run may use cannot slow it down:
 * such a limit is left out, and so is a v1 hierarchy that would hold only
 * it (its mkdir, join and rmdir cost a run about 0.2 ms for nothing). */
static bool cpu_binds(const struct uh_cg_limits *lim)
{
	return lim->cpu_milli > 0 && (L.ncpu <= 0 || lim->cpu_milli < L.ncpu * 1000);
}

/* Write the run's limits. A reused cgroup (`reset`) still has the last
 * run's: every limit is written then, "none" included, and in v1 the
 * memory+swap limit is lifted first (it may never be below the memory
 * limit, so raising the memory limit past the old one would fail). */
static int set_limits(const struct hier *h, const char *dir, const struct uh_cg_limits *lim, bool reset)
{
	char v[64];
	int r;
	if ((h->ctls & CTL_PIDS) && (lim->pids_max > 0 || reset)) {
		if (lim->pids_max > 0)
			snprintf(v, sizeof(v), "%lld", (long long)lim->pids_max);
		else
			snprintf(v, sizeof(v), "max");
		if ((r = write_at(dir, "pids.max", v)))
			return r;
	}
	if ((h->ctls & CTL_MEMORY) && (lim->mem_bytes > 0 || reset)) {
		if (lim->mem_bytes > 0)
			snprintf(v, sizeof(v), "%lld", (long long)lim->mem_bytes);
		else
			snprintf(v, sizeof(v), "%s", h->v2 ? "max" : "-1");
		if (h->v2) {
			if ((r = write_at(dir, "memory.max", v)))
				return r;
			/* No swap: memory.max is the whole budget (absent without swap accounting). */
			if (exists_at(dir, "memory.swap.max") && (r = write_at(dir, "memory.swap.max", "0")))
				return r;
		} else {
			bool memsw = exists_at(dir, "memory.memsw.limit_in_bytes");
			if (memsw && reset && (r = write_at(dir, "memory.memsw.limit_in_bytes", "-1")))
				return r;
			if ((r = write_at(dir, "memory.limit_in_bytes", v)))
				return r;
			if (memsw && lim->mem_bytes > 0 && (r = write_at(dir, "memory.memsw.limit_in_bytes", v)))
				return r;
		}
	}
	if ((h->ctls & CTL_CPU) && (cpu_binds(lim) || reset)) {
		const long long period = 100000;
		long long quota = lim->cpu_milli * period / 1000;
		if (quota < 1000)
			quota = 1000;
		bool binds = cpu_binds(lim);
		if (h->v2) {
			if (binds)
				snprintf(v, sizeof(v), "%lld %lld", quota, period);
			else
				snprintf(v, sizeof(v), "max %lld", period);
			if ((r = write_at(dir, "cpu.max", v)))
				return r;
		} else {
			snprintf(v, sizeof(v), "%lld", period);
			if ((r = write_at(dir, "cpu.cfs_period_us", v)))
				return r;
			snprintf(v, sizeof(v), "%lld", binds ? quota : -1ll);
			if ((r = write_at(dir, "cpu.cfs_quota_us", v)))
				return r;
		}
	}
	return 0;
}

static bool pool_path(const struct hier *h, unsigned n, char *out, size_t size)
{
	return snprintf(out, size, "%s/pool-%d-%u", h->parent, (int)L.pid, n) < (int)size;
}

/* Take a parked cgroup as `dir`. False when none could be taken. */
static bool pool_take(struct hier *h, const char *dir)
{
	char from[PATH_MAX];
	while (h->npool > 0) {
		if (!pool_path(h, h->pool[--h->npool], from, sizeof(from)))
			continue;
		if (rename(from, dir) == 0) {
			/* Fresh to another daemon's sweep of old empty cgroups. */
			utimensat(AT_FDCWD, dir, NULL, 0);
			return true;
		}
		rmdir(from); /* gone (swept) or not ours to use: try the next */
	}
	return false;
}

/* The run's cgroup in hierarchy h, with its limits: a parked one renamed,
 * else a new one. On failure nothing is left at dir; *what says which step. */
static int make_dir(struct hier *h, const char *dir, const struct uh_cg_limits *lim, const char **what)
{
	int r;
	if (h->can_rename && pool_take(h, dir)) {
		if (set_limits(h, dir, lim, true) == 0)
			return 0;
		/* e.g. more memory charged than the new limit allows and not
		 * reclaimable: a new cgroup instead. */
		rmdir(dir);
	}
	if (mkdir(dir, 0755)) {
		/* A leftover of an earlier attempt: reuse it only if empty. */
		if (errno != EEXIST || rmdir(dir) || mkdir(dir, 0755)) {
			*what = "mkdir";
			return -errno;
		}
	}
	if ((r = set_limits(h, dir, lim, false))) {
		*what = "limit";
		rmdir(dir);
	}
	return r;
}

int uh_cg_create(const char *run_id, const struct uh_cg_limits *lim, int fds[UH_CG_MAX], int *nfds,
                 struct uh_error *err)
{
	uh_cg_setup();
	*nfds = 0;
	int i, r = 0;
	char dir[PATH_MAX];
	const char *what = "";
	for (i = 0; i < L.n; i++) {
		struct hier *h = &L.h[i];
		if (!h->v2 && h->ctls == CTL_CPU && !cpu_binds(lim))
			continue;
		if (!run_dir(h, run_id, dir, sizeof(dir))) {
			r = -ENAMETOOLONG;
			what = "path";
			break;
		}
		if ((r = make_dir(h, dir, lim, &what)))
			break;
		/* uhub-init joins by writing "0". In v1 it writes to `tasks`: it is
		 * single-threaded then, and moving one thread skips the
		 * threadgroup lock whose write side waits for an RCU grace period
		 * (13-15 ms on an idle host). */
		char p[PATH_MAX];
		snprintf(p, sizeof(p), "%s/%s", dir, h->v2 ? "cgroup.procs" : "tasks");
		int fd = open(p, O_WRONLY | O_CLOEXEC);
		if (fd < 0) {
			r = -errno;
			what = "open the cgroup's procs file";
			rmdir(dir);
			break;
		}
		fds[(*nfds)++] = fd;
	}
	if (!r)
		return 0;
	for (int j = 0; j < *nfds; j++)
		close(fds[j]);
	*nfds = 0;
	for (int j = 0; j < i; j++)
		if (run_dir(&L.h[j], run_id, dir, sizeof(dir)))
			rmdir(dir);
	return uh_error_set(err, UH_E_INTERNAL, NULL, "cannot set up cgroup '%s/%s' (%s): %s", L.h[i].parent, run_id,
	                    what, strerror(-r));
}

/* Signal every pid listed in dir/cgroup.procs; returns how many. */
static int kill_listed(const char *dir)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/cgroup.procs", dir);
	FILE *f = fopen(p, "re");
	if (!f)
		return 0;
	int n = 0;
	long pid;
	while (fscanf(f, "%ld", &pid) == 1) {
		if (pid > 1) {
			kill((pid_t)pid, SIGKILL);
			n++;
		}
	}
	fclose(f);
	return n;
}

int uh_cg_kill(const char *run_id)
{
	uh_cg_setup();
	char dir[PATH_MAX];
	int n = 0;
	for (int i = 0; i < L.n; i++)
		if (L.h[i].can_kill && run_dir(&L.h[i], run_id, dir, sizeof(dir)))
			write_at(dir, "cgroup.kill", "1");
	for (int i = 0; i < L.n; i++)
		if (run_dir(&L.h[i], run_id, dir, sizeof(dir)))
			n += kill_listed(dir);
	return n;
}

int uh_cg_populated(const char *run_id)
{
	uh_cg_setup();
	char dir[PATH_MAX], buf[4096];
	for (int i = 0; i < L.n; i++) {
		if (!run_dir(&L.h[i], run_id, dir, sizeof(dir)))
			continue;
		if (L.h[i].v2) {
			if (read_at(dir, "cgroup.events", buf, sizeof(buf)) > 0 && strstr(buf, "populated 1"))
				return 1;
		} else if (read_at(dir, "cgroup.procs", buf, sizeof(buf)) > 0) {
			return 1;
		}
	}
	return 0;
}

/* The kernel's count of OOM kills in the memory cgroup at dir; -1 when it
 * cannot be read. */
static long long oom_kills(const struct hier *h, const char *dir)
{
	char buf[1024];
	if (read_at(dir, h->v2 ? "memory.events" : "memory.oom_control", buf, sizeof(buf)) <= 0)
		return -1;
	const char *p = strstr(buf, "oom_kill ");
	return p ? strtoll(p + 9, NULL, 10) : -1;
}

bool uh_cg_oom(const char *run_id)
{
	uh_cg_setup();
	char dir[PATH_MAX];
	for (int i = 0; i < L.n; i++)
		if ((L.h[i].ctls & CTL_MEMORY) && run_dir(&L.h[i], run_id, dir, sizeof(dir)) &&
		    oom_kills(&L.h[i], dir) > 0)
			return true;
	return false;
}

int uh_cg_remove(const char *run_id)
{
	uh_cg_setup();
	char dir[PATH_MAX];
	int r = 0;
	for (int i = 0; i < L.n; i++)
		if (run_dir(&L.h[i], run_id, dir, sizeof(dir)) && rmdir(dir) && errno != ENOENT)
			r = -errno;
	return r;
}

/* May the run's emptied cgroup at dir go to a later run? Only when no
 * process is in it, nothing of it was OOM-killed (the kernel's count
 * cannot be reset, and the next run would be reported OOM), and it holds
 * little memory. Any doubt (a file unreadable) says no. */
static bool parkable(const struct hier *h, const char *dir)
{
	char buf[1024];
	if (h->v2) {
		if (read_at(dir, "cgroup.events", buf, sizeof(buf)) <= 0 || !strstr(buf, "populated 0"))
			return false;
	} else if (read_at(dir, "cgroup.procs", buf, sizeof(buf)) != 0) {
		return false;
	}
	if (h->ctls & CTL_MEMORY) {
		if (oom_kills(h, dir) != 0)
			return false;
		if (read_at(dir, h->v2 ? "memory.current" : "memory.usage_in_bytes", buf, sizeof(buf)) <= 0 ||
		    strtoll(buf, NULL, 10) > POOL_MAX_USAGE)
			return false;
	}
	return true;
}

int uh_cg_release(const char *run_id)
{
	uh_cg_setup();
	char dir[PATH_MAX], to[PATH_MAX];
	int r = 0;
	for (int i = 0; i < L.n; i++) {
		struct hier *h = &L.h[i];
		if (!run_dir(h, run_id, dir, sizeof(dir)))
			continue;
		if (h->can_rename && h->npool < POOL_MAX && pool_path(h, L.pool_next, to, sizeof(to)) &&
		    parkable(h, dir)) {
			if (rename(dir, to) == 0) {
				h->pool[h->npool++] = L.pool_next++;
				continue;
			}
			if (errno == EPERM || errno == EINVAL || errno == ENOTSUP)
				h->can_rename = false;
			else if (errno == EEXIST)
				L.pool_next++; /* a leftover of a daemon that had our pid */
		}
		if (rmdir(dir) && errno != ENOENT)
			r = -errno;
	}
	return r;
}

void uh_cg_pool_drop(void)
{
	char dir[PATH_MAX];
	for (int i = 0; i < L.n; i++) {
		struct hier *h = &L.h[i];
		while (h->npool > 0)
			if (pool_path(h, h->pool[--h->npool], dir, sizeof(dir)))
				rmdir(dir);
	}
}

int uh_cg_destroy_sync(const char *run_id, int timeout_ms)
{
	struct timespec nap = {0, 2 * 1000 * 1000};
	for (int waited = 0;; waited += 2) {
		uh_cg_kill(run_id);
		if (uh_cg_remove(run_id) == 0)
			return 0;
		if (waited >= timeout_ms)
			return -EBUSY;
		nanosleep(&nap, NULL);
	}
}

/* Is `name` a parked cgroup of a daemon that no longer runs (or of an
 * earlier daemon with our pid: ours are named only after this sweep)? */
static bool stale_pool(const char *name)
{
	char *end;
	if (strncmp(name, "pool-", 5) != 0)
		return false;
	long pid = strtol(name + 5, &end, 10);
	if (end == name + 5 || *end != '-' || pid <= 0)
		return false;
	return pid == (long)L.pid || (kill((pid_t)pid, 0) && errno == ESRCH);
}

int uh_cg_sweep_empty(int min_age_s)
{
	uh_cg_setup();
	int n = 0;
	time_t now = time(NULL);
	for (int i = 0; i < L.n; i++) {
		DIR *d = opendir(L.h[i].parent);
		if (!d)
			continue;
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_type != DT_DIR || e->d_name[0] == '.')
				continue;
			struct stat st;
			if (!stale_pool(e->d_name) &&
			    (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) || now - st.st_mtime < min_age_s))
				continue;
			/* rmdir refuses a populated cgroup: nothing running is touched. */
			if (unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) == 0)
				n++;
		}
		closedir(d);
	}
	return n;
}
