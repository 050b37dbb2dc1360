/* The Local backend against the real kernel: isolation, refusals, limits,
 * stop, crash recovery. Runs as root (it is what the backend needs); waits
 * on conditions with deadlines, never on bare sleeps. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "backend/backend.h"
#include "backend/cgroup.h"
#include "core/config.h"
#include "tap.h"
#include "util/buf.h"
#include "util/crypto.h"
#include "util/time.h"

extern char **environ;

/* snprintf without the truncation warnings: test paths are short. */
__attribute__((format(printf, 3, 4))) static void sfmt(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, size, fmt, ap);
	va_end(ap);
}

static uv_loop_t loop;
static struct uh_config cfg;      /* /bin/sh, /bin/true, ... listed */
static struct uh_config cfg_true; /* only /bin/true and a few test files */
static char base[256];            /* test root, root-owned 0755 */
static char work[300];            /* work_root */
static char drop[300];            /* 1777: where a job that ran would leave a marker */

/* ---- fake host ---- */

struct out {
	struct uh_buf out, err;
	int persisted, finished, late_output;
	struct uh_run_result res;
	char ext[256];
	int64_t t_start, t_end;
};

static void h_output(struct uh_run_handle *h, enum uh_stream s, const char *d, size_t n)
{
	struct out *o = h->host_data;
	o->late_output += o->finished; /* output after finished() breaks the contract */
	uh_buf_append(s == UH_STREAM_STDERR ? &o->err : &o->out, d, n);
}

static void h_persist(struct uh_run_handle *h)
{
	struct out *o = h->host_data;
	o->persisted++;
	sfmt(o->ext, sizeof(o->ext), "%s", h->external_id);
}

static void h_finished(struct uh_run_handle *h, const struct uh_run_result *res)
{
	struct out *o = h->host_data;
	o->finished++;
	o->res = *res;
	o->t_end = uh_mono_us();
}

static const struct uh_backend_host host = {.output = h_output, .persist = h_persist, .finished = h_finished};

struct run {
	struct uh_run_handle *h;
	struct out o;
	char id[UH_ID_MAX];
	int rc;
	struct uh_error err;
	const char *root; /* the work root it was started with */
};

/* ---- waiting ---- */

static void tick(uv_timer_t *t)
{
	(void)t;
}

static bool wait_for(bool (*cond)(void *), void *arg, int timeout_ms)
{
	uv_timer_t t;
	uv_timer_init(&loop, &t);
	uv_timer_start(&t, tick, 5, 5); /* conditions on host state need a look now and then */
	int64_t end = uh_mono_us() + (int64_t)timeout_ms * 1000;
	bool ok;
	while (!(ok = cond(arg)) && uh_mono_us() < end)
		uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	return ok;
}

static bool is_finished(void *a)
{
	return ((struct run *)a)->o.finished > 0;
}

struct want_out {
	struct run *r;
	const char *s;
};

static bool has_output(void *a)
{
	struct want_out *w = a;
	return w->r->o.out.data && strstr(w->r->o.out.data, w->s);
}

/* ---- runs ---- */

static void run_start_cfg(struct run *r, const struct uh_config *c, const char *command, const char *config,
                          const char *env, const struct uh_secret_env *secrets, size_t n_secrets)
{
	memset(r, 0, sizeof(*r));
	uh_buf_init(&r->o.out, 1 << 24);
	uh_buf_init(&r->o.err, 1 << 24);
	uh_id_new("r_", r->id);
	json_t *cmd = json_loads(command, 0, NULL);
	json_t *conf = json_loads(config ? config : "{}", 0, NULL);
	json_t *en = json_loads(env ? env : "{}", 0, NULL);
	json_object_set_new(en, "UHUB_RUN_ID", json_string(r->id));
	if (!cmd || !conf || !en)
		fprintf(stderr, "bad test json: %s %s %s\n", command, config ? config : "", env ? env : "");
	struct uh_run_spec spec = {
	    .run_id = r->id,
	    .job_id = "j_test",
	    .job_name = "test",
	    .project_id = "p_test",
	    .project_name = "test",
	    .backend = "local",
	    .config = conf,
	    .command = cmd,
	    .env = en,
	    .secrets = secrets,
	    .n_secrets = n_secrets,
	    .timeout_s = 120,
	};
	r->root = c->local.work_root;
	r->o.t_start = uh_mono_us();
	r->rc = uh_backend_start(&uh_backend_local, &host, &r->o, &loop, c, &spec, &r->h, &r->err);
	json_decref(cmd);
	json_decref(conf);
	json_decref(en);
}

static void run_start(struct run *r, const char *command, const char *config, const char *env)
{
	run_start_cfg(r, &cfg, command, config, env, NULL, 0);
}

static bool cleaned_up(void *a);

static void run_release(struct run *r)
{
	if (r->rc == 0) {
		CHECK(r->o.finished == 1);
		CHECK(r->o.late_output == 0);
		uh_backend_release(r->h);
		uv_run(&loop, UV_RUN_NOWAIT);
		/* Nothing of it is left once its clean-up is done (and a test
		 * that forks inherits no clean-up in progress). */
		CHECK(wait_for(cleaned_up, r, 5000));
	}
	uh_buf_free(&r->o.out);
	uh_buf_free(&r->o.err);
}

/* Start, wait for the end (20 s at most), do not release yet. */
static void run_wait(struct run *r, const char *command, const char *config, const char *env)
{
	run_start(r, command, config, env);
	if (r->rc) {
		fprintf(stderr, "start failed: %s (%s)\n", r->err.message, r->err.field);
		return;
	}
	CHECK(wait_for(is_finished, r, 20000));
}

static const char *out_of(struct run *r)
{
	return r->o.out.data ? r->o.out.data : "";
}

static const char *err_of(struct run *r)
{
	return r->o.err.data ? r->o.err.data : "";
}

/* ---- host-side inspection ---- */

/* Processes on the host (any namespace) with real uid `uid`. */
static int count_uid(uid_t uid, bool zombies_too)
{
	DIR *d = opendir("/proc");
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		char p[300], buf[2048];
		sfmt(p, sizeof(p), "/proc/%s/status", e->d_name);
		int fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t k = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (k <= 0)
			continue;
		buf[k] = 0;
		const char *u = strstr(buf, "\nUid:");
		const char *s = strstr(buf, "\nState:");
		if (!u || !s)
			continue;
		unsigned ru = (unsigned)strtoul(u + 5, NULL, 10);
		char st = s[8];
		if (ru == uid && (zombies_too || st != 'Z'))
			n++;
	}
	if (d)
		closedir(d);
	return n;
}

struct uid_cond {
	uid_t uid;
	int min;
};

static bool uid_gone(void *a)
{
	return count_uid(((struct uid_cond *)a)->uid, true) == 0;
}

/* Orphans of a dead child daemon are reparented to us (subreaper). */
static bool uid_gone_reaping(void *a)
{
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	return uid_gone(a);
}

static bool uid_at_least(void *a)
{
	struct uid_cond *c = a;
	return count_uid(c->uid, false) >= c->min;
}

/* The uid of a running run: owner of its scratch dir. */
static uid_t run_uid(struct run *r)
{
	char p[400];
	struct stat st;
	sfmt(p, sizeof(p), "%s/%s", work, r->id);
	return stat(p, &st) == 0 ? st.st_uid : 0;
}

__attribute__((format(printf, 1, 2))) static bool path_exists(const char *fmt, ...)
{
	char p[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p, sizeof(p), fmt, ap);
	va_end(ap);
	struct stat st;
	return lstat(p, &st) == 0;
}

/* A host pid with this uid and this comm. */
static pid_t find_pid(uid_t uid, const char *comm)
{
	DIR *d = opendir("/proc");
	pid_t found = 0;
	struct dirent *e;
	while (d && !found && (e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		char p[300], buf[2048], c[64] = "";
		sfmt(p, sizeof(p), "/proc/%s/comm", e->d_name);
		FILE *f = fopen(p, "r");
		if (!f)
			continue;
		if (fgets(c, sizeof(c), f))
			c[strcspn(c, "\n")] = 0;
		fclose(f);
		if (strcmp(c, comm) != 0)
			continue;
		sfmt(p, sizeof(p), "/proc/%s/status", e->d_name);
		int fd = open(p, O_RDONLY | O_CLOEXEC);
		ssize_t k = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
		if (fd >= 0)
			close(fd);
		if (k <= 0)
			continue;
		buf[k] = 0;
		const char *u = strstr(buf, "\nUid:");
		if (u && (uid_t)strtoul(u + 5, NULL, 10) == uid)
			found = (pid_t)atoi(e->d_name);
	}
	if (d)
		closedir(d);
	return found;
}

struct find_cond {
	uid_t uid;
	const char *comm;
	pid_t pid;
};

static bool found_pid(void *a)
{
	struct find_cond *c = a;
	return (c->pid = find_pid(c->uid, c->comm)) > 0;
}

static bool pid_alive(pid_t pid)
{
	char p[64], buf[512];
	sfmt(p, sizeof(p), "/proc/%d/stat", (int)pid);
	int fd = open(p, O_RDONLY);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	const char *rp = strrchr(buf, ')');
	return rp && rp[2] != 'Z' && rp[2] != 'X';
}

static bool pid_dead(void *a)
{
	return !pid_alive(*(pid_t *)a);
}

static void sh(const char *cmd)
{
	int r = system(cmd);
	if (r != 0)
		fprintf(stderr, "setup command failed (%d): %s\n", r, cmd);
}

static void set_list(struct uh_strlist *l, const char *const *v, size_t n)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = calloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		l->v[i] = strdup(v[i]);
	l->n = n;
}

static const char *cg_file(const char *ctl, const char *id, const char *v1name, const char *v2name, char *buf,
                           size_t size)
{
	char p[512];
	sfmt(p, sizeof(p), "/sys/fs/cgroup/%s/uhub/%s/%s", ctl, id, v1name);
	if (access(p, F_OK) != 0)
		sfmt(p, sizeof(p), "/sys/fs/cgroup/uhub/%s/%s", id, v2name);
	buf[0] = 0;
	FILE *f = fopen(p, "r");
	if (f) {
		if (!fgets(buf, (int)size, f))
			buf[0] = 0;
		fclose(f);
	}
	buf[strcspn(buf, "\n")] = 0;
	return buf;
}

static bool cg_exists(const char *id)
{
	char p[512];
	const char *dirs[] = {"pids", "memory", "cpu", "unified", ""};
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		sfmt(p, sizeof(p), "/sys/fs/cgroup/%s%suhub/%s", dirs[i], dirs[i][0] ? "/" : "", id);
		if (access(p, F_OK) == 0)
			return true;
	}
	return false;
}

/* Clean-up (cgroups, then the scratch dir) follows the report. */
static bool cleaned_up(void *a)
{
	const struct run *r = a;
	return !path_exists("%s/%s", r->root ? r->root : work, r->id) && !cg_exists(r->id);
}

/* ---- tests ---- */

static void test_echo_and_exit(void)
{
	struct run r;
	run_wait(&r, "[\"/bin/echo\", \"hello\", \"world\"]", NULL, NULL);
	CHECK(r.rc == 0);
	CHECK_STR(out_of(&r), "hello world\n");
	CHECK(r.o.res.kind == UH_RESULT_EXITED && r.o.res.exit_code == 0 && !r.o.res.oom);
	CHECK(r.o.persisted == 1);
	CHECK(strncmp(r.o.ext, "pid:", 4) == 0 && atoi(r.o.ext + 4) > 1);
	CHECK(wait_for(cleaned_up, &r, 5000));
	run_release(&r);

	run_wait(&r, "[\"/bin/sh\", \"-c\", \"echo oops >&2; echo out; exit 3\"]", NULL, NULL);
	CHECK(r.o.res.kind == UH_RESULT_EXITED && r.o.res.exit_code == 3);
	CHECK_STR(err_of(&r), "oops\n");
	CHECK_STR(out_of(&r), "out\n");
	run_release(&r);

	/* A plain exit travels as init's own exit status: every code is the
	 * job's, including those init uses for its own ends (111 set-up, 112,
	 * 113 lifeline, 127 exec), which always come with a status record. */
	const int codes[] = {1, 111, 112, 113, 127, 128, 255};
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		char cmd[96];
		sfmt(cmd, sizeof(cmd), "[\"/bin/sh\", \"-c\", \"exit %d\"]", codes[i]);
		run_wait(&r, cmd, NULL, NULL);
		CHECK(r.o.res.kind == UH_RESULT_EXITED && r.o.res.exit_code == codes[i]);
		if (r.o.res.kind != UH_RESULT_EXITED || r.o.res.exit_code != codes[i])
			fprintf(stderr, "exit %d: kind %d code %d: %s\n", codes[i], (int)r.o.res.kind,
			        r.o.res.exit_code, r.o.res.message);
		run_release(&r);
	}

	/* Much output, in order, complete. */
	run_wait(&r, "[\"/bin/sh\", \"-c\", \"head -c 3000000 /dev/zero | tr '\\\\0' x; echo; echo end\"]", NULL, NULL);
	CHECK(r.o.out.len == 3000000 + 1 + 4);
	CHECK(r.o.out.len > 4 && strcmp(r.o.out.data + r.o.out.len - 4, "end\n") == 0);
	run_release(&r);
}

static void test_identity(void)
{
	struct run r;
	run_wait(&r, "[\"/usr/bin/id\"]", NULL, NULL);
	unsigned u = 0, g = 0, gr = 0;
	char extra = 0;
	int n = sscanf(out_of(&r), "uid=%u gid=%u groups=%u%c", &u, &g, &gr, &extra);
	CHECK(n == 4 && extra == '\n');
	CHECK(u >= cfg.local.uid_min && u <= cfg.local.uid_max && u != 0);
	CHECK(g == u && gr == u);
	if (n != 4)
		fprintf(stderr, "id said: %s\n", out_of(&r));
	run_release(&r);

	run_wait(&r,
	         "[\"/bin/sh\", \"-c\", \"grep -E '^(Groups|NoNewPrivs|CapEff|CapPrm):' /proc/self/status; ulimit -n; "
	         "ulimit -c; ulimit -f; ulimit -Hn\"]",
	         NULL, NULL);
	const char *o = out_of(&r);
	CHECK(strstr(o, "Groups:\t\n") || strstr(o, "Groups:\t \n")); /* the kernel adds a space */
	CHECK(strstr(o, "NoNewPrivs:\t1"));
	CHECK(strstr(o, "CapEff:\t0000000000000000"));
	CHECK(strstr(o, "CapPrm:\t0000000000000000"));
	CHECK(strstr(o, "\n1024\n0\n8388608\n1024\n"));
	run_release(&r);

	/* Two runs at once get two uids. */
	struct run a, b;
	run_start(&a, "[\"/bin/sh\", \"-c\", \"echo ready; exec sleep 100\"]", NULL, NULL);
	run_start(&b, "[\"/bin/sh\", \"-c\", \"echo ready; exec sleep 100\"]", NULL, NULL);
	CHECK(a.rc == 0 && b.rc == 0);
	CHECK(run_uid(&a) != 0 && run_uid(&b) != 0 && run_uid(&a) != run_uid(&b));
	uh_backend_stop(a.h, 0);
	uh_backend_stop(b.h, 0);
	CHECK(wait_for(is_finished, &a, 5000) && wait_for(is_finished, &b, 5000));
	run_release(&a);
	run_release(&b);
}

static void test_private_proc_and_tmp(void)
{
	struct run r;
	sh("rm -f /tmp/uhub-test-private-file /dev/shm/uhub-test-private-file");
	int shmid = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0666); /* a run must not see it */
	CHECK(shmid >= 0);
	run_wait(&r,
	         "[\"/bin/sh\", \"-c\", \"for p in /proc/[0-9]*; do echo \\\"${p#/proc/} $(cat $p/comm)\\\"; done; "
	         "echo tmp=$(ls -A /tmp | wc -l) vartmp=$(ls -A /var/tmp | wc -l) shm=$(ls -A /dev/shm | wc -l); "
	         "touch /tmp/uhub-test-private-file /dev/shm/uhub-test-private-file; ipcs -m | grep -c 0x; "
	         "echo pwd=$(pwd)\"]",
	         NULL, NULL);
	const char *o = out_of(&r);
	CHECK(strncmp(o, "1 uhub-init\n", 12) == 0);
	int procs = 0;
	for (const char *p = o; (p = strchr(p, '\n')); p++)
		if (p[1] >= '0' && p[1] <= '9')
			procs++;
	CHECK(procs + 1 <= 4); /* init, sh, and the pipeline's children at most */
	CHECK(!strstr(o, "test_local"));
	CHECK(strstr(o, "tmp=0 vartmp=0 shm=0\n0\n"));
	CHECK(!path_exists("/tmp/uhub-test-private-file") && !path_exists("/dev/shm/uhub-test-private-file"));
	shmctl(shmid, IPC_RMID, NULL);
	char want[600];
	sfmt(want, sizeof(want), "pwd=%s/%s\n", work, r.id);
	CHECK(strstr(o, want));
	if (!strstr(o, want))
		fprintf(stderr, "output: %s\n", o);
	run_release(&r);
}

static void test_env(void)
{
	setenv("UHUB_TEST_DAEMON_CANARY", "canary-from-daemon", 1);
	static const char secret_value[] = "s3cr3t-value";
	struct uh_secret_env secrets[] = {{.name = "MY_SECRET", .value = secret_value, .value_len = 12}};
	struct run r;
	run_start_cfg(&r, &cfg, "[\"/bin/sh\", \"-c\", \"env; echo cmdline=$(tr '\\\\0' ' ' < /proc/1/cmdline)\"]",
	              NULL, "{\"MY_VAR\": \"plain value\", \"LANG\": \"fr_FR.UTF-8\"}", secrets, 1);
	CHECK(r.rc == 0);
	CHECK(wait_for(is_finished, &r, 10000));
	const char *o = out_of(&r);
	char want[600];
	CHECK(!strstr(o, "canary-from-daemon"));
	CHECK(strstr(o, "PATH=/usr/local/bin:/usr/bin:/bin\n"));
	sfmt(want, sizeof(want), "HOME=%s/%s/home\n", work, r.id);
	CHECK(strstr(o, want));
	sfmt(want, sizeof(want), "TMPDIR=%s/%s/tmp\n", work, r.id);
	CHECK(strstr(o, want));
	CHECK(strstr(o, "LANG=fr_FR.UTF-8\n") && !strstr(o, "LANG=C.UTF-8"));
	CHECK(strstr(o, "MY_VAR=plain value\n"));
	CHECK(strstr(o, "MY_SECRET=s3cr3t-value\n"));
	sfmt(want, sizeof(want), "UHUB_RUN_ID=%s\n", r.id);
	CHECK(strstr(o, want));
	/* The secret is in the environment only, never on init's command line. */
	const char *cl = strstr(o, "cmdline=");
	CHECK(cl && strstr(cl, "uhub-init local run=") && !strstr(cl, "s3cr3t"));
	CHECK(!strstr(o, "SSH_") && !strstr(o, "USER="));
	run_release(&r);
	unsetenv("UHUB_TEST_DAEMON_CANARY");
}

struct refusal {
	const struct uh_config *c;
	const char *command;
	const char *why; /* part of the message */
};

static void test_refusals(void)
{
	char cmd[1024];
	char link_sh[400], copy_sh[400], copy_true[400], hard_sh[400], ow[400], gwdir_sh[400], marker[400];
	sfmt(link_sh, sizeof(link_sh), "%s/sh-link", drop); /* a symlink in a 1777 dir, like /tmp */
	sfmt(copy_sh, sizeof(copy_sh), "%s/bin/sh-copy", base);
	sfmt(copy_true, sizeof(copy_true), "%s/bin/true-copy", base);
	sfmt(hard_sh, sizeof(hard_sh), "%s/bin/sh-hardlink", base);
	sfmt(ow, sizeof(ow), "%s/bin/sh-ow", base);
	sfmt(gwdir_sh, sizeof(gwdir_sh), "%s/gw/sh", base);
	sfmt(marker, sizeof(marker), "%s/ran", drop);
	unlink(marker);
	sfmt(cmd, sizeof(cmd),
	     "ln -sf /bin/sh %s && cp /bin/sh %s && cp /bin/true %s && ln -f /usr/bin/dash %s && cp /bin/sh %s && "
	     "chmod 0757 %s && mkdir -p %s/gw && chmod 0775 %s/gw && cp /bin/sh %s",
	     link_sh, copy_sh, copy_true, hard_sh, ow, ow, base, base, gwdir_sh);
	sh(cmd);

	char c[16][700];
	int k = 0;
	struct refusal cases[16];
#define CASE(conf, why, ...)                                  \
	do {                                                  \
		sfmt(c[k], sizeof(c[k]), __VA_ARGS__);        \
		cases[k] = (struct refusal){conf, c[k], why}; \
		k++;                                          \
	} while (0)
	CASE(&cfg_true, "absolute", "[\"sh\", \"-c\", \"touch %s\"]", marker);
	CASE(&cfg_true, "absolute", "[\"bin/sh\", \"-c\", \"touch %s\"]", marker);
	CASE(&cfg_true, "not in local.allowed_executables", "[\"/bin/../bin/sh\", \"-c\", \"touch %s\"]", marker);
	CASE(&cfg_true, "not in local.allowed_executables", "[\"/usr/bin/../../usr/bin/sh\", \"-c\", \"touch %s\"]",
	     marker);
	CASE(&cfg_true, "not in local.allowed_executables", "[\"%s\", \"-c\", \"touch %s\"]", link_sh, marker);
	CASE(&cfg_true, "not in local.allowed_executables", "[\"%s\", \"-c\", \"touch %s\"]", copy_sh, marker);
	CASE(&cfg_true, "not in local.allowed_executables", "[\"%s\"]", copy_true);
	CASE(&cfg, "not in local.allowed_executables", "[\"%s\", \"-c\", \"touch %s\"]", hard_sh, marker);
	CASE(&cfg_true, "not writable by group or others", "[\"%s\", \"-c\", \"touch %s\"]", ow, marker);
	CASE(&cfg_true, "directory", "[\"%s\", \"-c\", \"touch %s\"]", gwdir_sh, marker);
	CASE(&cfg_true, "cannot be opened", "[\"/nonexistent/x\"]");
	CASE(&cfg_true, "not a regular file", "[\"%s/bin/adir\"]", base);
#undef CASE
	for (int i = 0; i < k; i++) {
		json_t *command = json_loads(cases[i].command, 0, NULL);
		json_t *conf = json_object();
		struct uh_error e = {0};
		int rc = uh_backend_validate(cases[i].c, "local", conf, command, NULL, &e);
		CHECK(rc == UH_E_INVALID_REQUEST);
		CHECK_STR(e.field, "command");
		CHECK(strstr(e.message, cases[i].why) != NULL);
		if (!strstr(e.message, cases[i].why))
			fprintf(stderr, "case %d: %s\n", i, e.message);
		json_decref(command);
		json_decref(conf);

		struct run r;
		run_start_cfg(&r, cases[i].c, cases[i].command, NULL, NULL, NULL, 0);
		CHECK(r.rc == UH_E_FORBIDDEN);
		CHECK_STR(r.err.field, "not_whitelisted");
		CHECK(r.o.persisted == 0 && r.o.finished == 0);
		CHECK(!path_exists("%s/%s", work, r.id));
		CHECK(!cg_exists(r.id));
		run_release(&r);
	}
	uv_run(&loop, UV_RUN_NOWAIT);
	CHECK(!path_exists("%s", marker));

	/* Shape errors. */
	const char *shapes[] = {"[]", "{}", "[1]", "[\"/bin/true\", 2]", "\"x\""};
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		json_t *command = json_loads(shapes[i], JSON_DECODE_ANY, NULL);
		json_t *conf = json_object();
		struct uh_error e = {0};
		CHECK(uh_backend_validate(&cfg, "local", conf, command, NULL, &e) == UH_E_INVALID_REQUEST);
		CHECK_STR(e.field, "command");
		json_decref(command);
		json_decref(conf);
	}
	{
		struct uh_error e = {0};
		json_t *conf = json_object();
		CHECK(uh_backend_validate(&cfg, "local", conf, NULL, NULL, &e) == UH_E_INVALID_REQUEST);
		CHECK_STR(e.field, "command");
		json_decref(conf);
	}

	/* What is allowed: the listed file, also by another path to it. */
	const char *ok[] = {"[\"/bin/true\"]", "[\"/usr/bin/true\"]", "[\"/usr/bin/../bin/true\"]"};
	for (size_t i = 0; i < 3; i++) {
		json_t *command = json_loads(ok[i], 0, NULL);
		json_t *conf = json_object();
		struct uh_error e = {0};
		CHECK(uh_backend_validate(&cfg_true, "local", conf, command, NULL, &e) == 0);
		if (e.message[0])
			fprintf(stderr, "%s: %s\n", ok[i], e.message);
		json_decref(command);
		json_decref(conf);
	}
}

static void test_env_names(void)
{
	const char *bad[] = {"LD_PRELOAD",
	                     "LD_LIBRARY_PATH",
	                     "BASH_ENV",
	                     "ENV",
	                     "BASH_FUNC_x%%",
	                     "BASH_FUNC_f",
	                     "SHELLOPTS",
	                     "BASHOPTS",
	                     "PS4",
	                     "IFS",
	                     "PYTHONPATH",
	                     "PYTHONSTARTUP",
	                     "PERL5LIB",
	                     "PERL5OPT",
	                     "PERLLIB",
	                     "RUBYOPT",
	                     "RUBYLIB",
	                     "NODE_OPTIONS",
	                     "NODE_PATH",
	                     "JAVA_TOOL_OPTIONS",
	                     "_JAVA_OPTIONS",
	                     "ANSIBLE_SSH_ARGS",
	                     "ANSIBLE_SCP_EXTRA_ARGS",
	                     "TF_CLI_ARGS",
	                     "TF_CLI_ARGS_plan",
	                     "GCONV_PATH",
	                     "GLIBC_TUNABLES",
	                     "MALLOC_CHECK_",
	                     "HOSTALIASES",
	                     "LOCALDOMAIN",
	                     "RES_OPTIONS",
	                     "NLSPATH",
	                     "PATH",
	                     "HOME",
	                     "TMPDIR",
	                     "UHUB_RUN_ID",
	                     "UHUB_X",
	                     "1ABC",
	                     "A-B",
	                     "A B",
	                     "",
	                     "A=B",
	                     "Ä"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *names = json_object();
		json_object_set_new(names, "GOOD", json_true());
		json_object_set_new(names, bad[i], json_true());
		json_t *command = json_loads("[\"/bin/true\"]", 0, NULL);
		json_t *conf = json_object();
		struct uh_error e = {0};
		int rc = uh_backend_validate(&cfg, "local", conf, command, names, &e);
		char want[128];
		sfmt(want, sizeof(want), "env.%s", bad[i]);
		CHECK(rc == UH_E_INVALID_REQUEST);
		CHECK_STR(e.field, want);
		json_decref(names);
		json_decref(command);
		json_decref(conf);
	}
	const char *good[] = {"MY_VAR", "ANSIBLE_FORCE_COLOR", "TF_VAR_region", "_X", "lower_case", "LANG", "X1"};
	json_t *names = json_object();
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		json_object_set_new(names, good[i], json_true());
	json_t *command = json_loads("[\"/bin/true\"]", 0, NULL);
	json_t *conf = json_object();
	struct uh_error e = {0};
	CHECK(uh_backend_validate(&cfg, "local", conf, command, names, &e) == 0);
	json_decref(names);

	/* And again at start: the env of the spec and the secrets. */
	struct run r;
	run_start(&r, "[\"/bin/true\"]", NULL, "{\"LD_PRELOAD\": \"/tmp/x.so\"}");
	CHECK(r.rc == UH_E_INVALID_REQUEST);
	CHECK_STR(r.err.field, "env.LD_PRELOAD");
	run_release(&r);
	struct uh_secret_env s = {.name = "PYTHONPATH", .value = "abcdefgh", .value_len = 8};
	run_start_cfg(&r, &cfg, "[\"/bin/true\"]", NULL, NULL, &s, 1);
	CHECK(r.rc == UH_E_INVALID_REQUEST);
	CHECK_STR(r.err.field, "env.PYTHONPATH");
	CHECK(!strstr(r.err.message, "abcdefgh"));
	CHECK(!path_exists("%s/%s", work, r.id) && !cg_exists(r.id));
	run_release(&r);

	/* Config keys. */
	struct {
		const char *conf, *field;
	} cc[] = {
	    {"{\"bogus\": 1}", "execution_backend_config.bogus"},
	    {"{\"network\": \"bridge\"}", "execution_backend_config.network"},
	    {"{\"network\": 1}", "execution_backend_config.network"},
	    {"{\"working_dir\": \"rel/dir\"}", "execution_backend_config.working_dir"},
	    {"{\"working_dir\": \"/etc\"}", "execution_backend_config.working_dir"},
	    {"{\"working_dir\": \"/nonexistent\"}", "execution_backend_config.working_dir"},
	    {"{\"cpu_limit\": \"lots\"}", "execution_backend_config.cpu_limit"},
	    {"{\"mem_limit\": 5}", "execution_backend_config.mem_limit"},
	};
	for (size_t i = 0; i < sizeof(cc) / sizeof(cc[0]); i++) {
		json_t *c2 = json_loads(cc[i].conf, 0, NULL);
		struct uh_error e2 = {0};
		CHECK(uh_backend_validate(&cfg, "local", c2, command, NULL, &e2) == UH_E_INVALID_CONFIG);
		CHECK_STR(e2.field, cc[i].field);
		json_decref(c2);
	}
	char okconf[600];
	sfmt(okconf, sizeof(okconf),
	     "{\"working_dir\": \"%s/wd\", \"network\": \"none\", \"timeout_seconds\": 30, \"cpu_limit\": \"500m\", "
	     "\"mem_limit\": \"256Mi\"}",
	     base);
	json_t *c3 = json_loads(okconf, 0, NULL);
	CHECK(uh_backend_validate(&cfg, "local", c3, command, NULL, &e) == 0);
	json_decref(c3);
	json_decref(command);
	json_decref(conf);
}

static void test_working_dir(void)
{
	struct run r;
	char conf[600];
	sfmt(conf, sizeof(conf), "{\"working_dir\": \"%s/wd/sub\"}", base);
	run_wait(&r, "[\"/bin/sh\", \"-c\", \"pwd; touch made-here\"]", conf, NULL);
	char want[600];
	sfmt(want, sizeof(want), "%s/wd/sub\n", base);
	CHECK_STR(out_of(&r), want);
	CHECK(r.o.res.kind == UH_RESULT_EXITED && r.o.res.exit_code == 0);
	CHECK(path_exists("%s/wd/sub/made-here", base));
	run_release(&r);
}

/* A work root under /tmp (which a run replaces by its own tmpfs): the
 * scratch dir is bound back at its path, nothing else of the host's /tmp
 * shows. */
static void test_work_root_in_tmp(void)
{
	char tmpbase[64] = "/tmp/uhub-lt.XXXXXX";
	if (!mkdtemp(tmpbase)) {
		CHECK(0);
		return;
	}
	chmod(tmpbase, 0755);
	char tmpwork[128];
	sfmt(tmpwork, sizeof(tmpwork), "%s/work", tmpbase);
	struct uh_config c = cfg;
	c.local.work_root = tmpwork;
	struct run r;
	run_start_cfg(&r, &c,
	              "[\"/bin/sh\", \"-c\", \"touch $HOME/f && echo home-ok; pwd; ls -A /tmp; ls -A $(dirname "
	              "$(dirname $(pwd)))\"]",
	              NULL, NULL, NULL, 0);
	CHECK(r.rc == 0 && wait_for(is_finished, &r, 10000));
	char want[512];
	sfmt(want, sizeof(want), "home-ok\n%s/%s\n%s\nwork\n", tmpwork, r.id, tmpbase + 5);
	CHECK_STR(out_of(&r), want);
	CHECK(r.o.res.kind == UH_RESULT_EXITED && r.o.res.exit_code == 0);
	CHECK(wait_for(cleaned_up, &r, 5000));
	run_release(&r);
	char cmd[256];
	sfmt(cmd, sizeof(cmd), "rm -rf %s", tmpbase);
	sh(cmd);
}

static void test_scripts(void)
{
	struct run r;
	char cmd[700];
	sfmt(cmd, sizeof(cmd), "[\"%s/bin/hello.py\", \"a1\"]", base);
	run_start_cfg(&r, &cfg_true, cmd, NULL, NULL, NULL, 0);
	CHECK(r.rc == 0);
	CHECK(r.rc == 0 && wait_for(is_finished, &r, 10000));
	CHECK(strncmp(out_of(&r), "py-ok /dev/fd/3 ['a1'] ", 23) == 0);
	if (strncmp(out_of(&r), "py-ok", 5) != 0)
		fprintf(stderr, "python script: %s / %s / %s\n", out_of(&r), err_of(&r), r.o.res.message);
	run_release(&r);

	sfmt(cmd, sizeof(cmd), "[\"%s/bin/hello.sh\", \"x\", \"y z\"]", base);
	run_start_cfg(&r, &cfg_true, cmd, NULL, NULL, NULL, 0);
	CHECK(r.rc == 0 && wait_for(is_finished, &r, 10000));
	CHECK_STR(out_of(&r), "sh-ok 2 x|y z\n");
	run_release(&r);

	/* Listed, root-owned, but not executable: the kernel refuses, the run
	 * ends in error with words, nothing ran. */
	sfmt(cmd, sizeof(cmd), "[\"%s/bin/noexec.sh\"]", base);
	run_start_cfg(&r, &cfg_true, cmd, NULL, NULL, NULL, 0);
	CHECK(r.rc == 0 && wait_for(is_finished, &r, 10000));
	CHECK(r.o.res.kind == UH_RESULT_ERROR && r.o.res.reason && strcmp(r.o.res.reason, "backend_error") == 0);
	CHECK(strstr(r.o.res.message, "cannot execute") && strstr(r.o.res.message, "Permission denied"));
	run_release(&r);
}

static void test_stop(void)
{
	/* A polite job: SIGTERM ends it long before the grace. */
	struct run r;
	run_start(&r, "[\"/bin/sh\", \"-c\", \"echo ready; exec sleep 1000\"]", NULL, NULL);
	struct want_out w = {&r, "ready"};
	CHECK(r.rc == 0 && wait_for(has_output, &w, 5000));
	int64_t t0 = uh_mono_us();
	uh_backend_stop(r.h, 10000);
	CHECK(wait_for(is_finished, &r, 5000));
	CHECK(r.o.t_end - t0 < 2000000);
	CHECK(r.o.res.kind == UH_RESULT_SIGNALED && r.o.res.signal == SIGTERM && r.o.res.exit_code == 128 + 15);
	uh_backend_stop(r.h, 0); /* after the end: nothing */
	run_release(&r);

	/* Stop right after start, before the job could even begin. */
	run_start(&r, "[\"/bin/sleep\", \"1000\"]", NULL, NULL);
	uh_backend_stop(r.h, 10000);
	CHECK(wait_for(is_finished, &r, 5000));
	CHECK(r.o.res.kind == UH_RESULT_SIGNALED && r.o.res.signal == SIGTERM);
	run_release(&r);

	/* TERM ignored everywhere, a setsid'd grandchild, a double fork: all
	 * gone after stop() with a short grace. */
	run_start(&r,
	          "[\"/bin/sh\", \"-c\", \"trap '' TERM; setsid /bin/sh -c 'trap \\\"\\\" TERM; exec sleep 1000' & "
	          "(trap '' TERM; (trap '' TERM; exec sleep 1000) &) ; echo ready; wait\"]",
	          NULL, NULL);
	CHECK(r.rc == 0);
	w.r = &r;
	CHECK(wait_for(has_output, &w, 5000));
	struct uid_cond uc = {.uid = run_uid(&r), .min = 4}; /* init, sh, 2 sleeps */
	CHECK(uc.uid != 0 && wait_for(uid_at_least, &uc, 5000));
	t0 = uh_mono_us();
	uh_backend_stop(r.h, 60000);
	uh_backend_stop(r.h, 300); /* a second stop shortens the grace */
	CHECK(wait_for(is_finished, &r, 5000));
	int64_t took = r.o.t_end - t0;
	CHECK(took >= 250000 && took < 3000000);
	CHECK(r.o.res.kind == UH_RESULT_SIGNALED && r.o.res.signal == SIGKILL);
	CHECK(count_uid(uc.uid, true) == 0);
	CHECK(wait_for(cleaned_up, &r, 5000));
	run_release(&r);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n - 3; /* ".", ".." and the directory's own */
}

static bool fds_back_to(void *a)
{
	return count_fds() <= *(int *)a;
}

/* The daemon holds one descriptor per Local run in flight (its end of the
 * run's channel), which is what the supervisor's budget counts: 20 sleeping
 * runs cost 20 (a daemon allowed 20,000 runs ~19,500 at once), and none is
 * left once they are gone. Output and the status still arrive by it. */
static void test_one_descriptor_per_run(void)
{
	enum { N = 20 };
	static struct run rs[N];
	int before = count_fds();
	for (int i = 0; i < N; i++) {
		run_start(&rs[i], "[\"/bin/sh\", \"-c\", \"echo err >&2; echo ready; exec sleep 1000\"]", NULL, NULL);
		CHECK(rs[i].rc == 0);
	}
	for (int i = 0; i < N; i++) {
		struct want_out w = {&rs[i], "ready"};
		CHECK(wait_for(has_output, &w, 10000));
	}
	int during = count_fds();
	CHECK(during - before == N);
	if (during - before != N)
		fprintf(stderr, "# %d runs in flight hold %d descriptors\n", N, during - before);
	for (int i = 0; i < N; i++)
		uh_backend_stop(rs[i].h, 0);
	for (int i = 0; i < N; i++) {
		CHECK(wait_for(is_finished, &rs[i], 10000));
		CHECK(rs[i].o.res.kind == UH_RESULT_SIGNALED && rs[i].o.res.signal == SIGKILL);
		CHECK(rs[i].o.err.data && strcmp(rs[i].o.err.data, "err\n") == 0); /* written before "ready" */
		run_release(&rs[i]);
	}
	CHECK(wait_for(fds_back_to, &before, 5000));
}

/* The job cannot speak for init on the channel: bytes shaped like init's
 * status record ("exited 0") written to stdout stay output, and init's end
 * of the channel (descriptor 4 of PID 1) is out of the job's reach (init is
 * not dumpable: its /proc/1/fd is root's). The run ends as the job did. */
static void test_channel_forgery(void)
{
	const char *script = "printf '\\0031ihu\\001\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000'; "
	                     "printf '\\003\\061\\151\\150\\165\\001\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000"
	                     "\\000' >&2; echo; ls /proc/1/fd >/dev/null 2>&1; echo ls=$?; "
	                     "(: > /proc/1/fd/4) 2>/dev/null; echo w=$?; exit 3";
	json_t *cmd = json_pack("[s,s,s]", "/bin/sh", "-c", script);
	char *c = json_dumps(cmd, 0);
	struct run r;
	run_wait(&r, c, NULL, NULL);
	free(c);
	json_decref(cmd);
	CHECK(r.rc == 0 && r.o.finished == 1);
	CHECK(r.o.res.kind == UH_RESULT_EXITED && r.o.res.exit_code == 3);
	const char fake[] = "\0031ihu\001";
	CHECK(r.o.out.len > 6 && memcmp(r.o.out.data, fake, 6) == 0);
	CHECK(r.o.err.len >= 17 && memcmp(r.o.err.data, fake, 6) == 0);
	CHECK(memmem(r.o.out.data, r.o.out.len, "\nls=2\n", 6) && memmem(r.o.out.data, r.o.out.len, "\nw=2\n", 5));
	run_release(&r);
}

static void test_fork_flood(void)
{
	struct uh_config small = cfg;
	small.local.pids_limit = 16;
	struct run r;
	run_start_cfg(&r, &small,
	              "[\"/bin/sh\", \"-c\", \"i=0; while [ $i -lt 200 ]; do sleep 100 & i=$((i+1)); done; echo "
	              "spawned; wait\"]",
	              NULL, NULL, NULL, 0);
	CHECK(r.rc == 0);
	char buf[64];
	CHECK_STR(cg_file("pids", r.id, "pids.max", "pids.max", buf, sizeof(buf)), "16");
	uid_t uid = run_uid(&r);
	CHECK(wait_for(is_finished, &r, 20000));
	CHECK(strstr(err_of(&r), "fork") || strstr(err_of(&r), "Resource temporarily unavailable"));
	CHECK(!strstr(out_of(&r), "spawned"));
	CHECK(r.o.res.kind == UH_RESULT_EXITED && r.o.res.exit_code != 0);
	CHECK(count_uid(uid, true) == 0);
	run_release(&r);

	/* A true fork bomb: bounded, ends with its main process. */
	run_start_cfg(&r, &small, "[\"/bin/sh\", \"-c\", \"b() { b | b & }; b; sleep 2; echo survived\"]", NULL, NULL,
	              NULL, 0);
	CHECK(r.rc == 0);
	uid = run_uid(&r);
	CHECK(wait_for(is_finished, &r, 20000));
	CHECK(count_uid(uid, true) == 0);
	run_release(&r);

	/* The host is fine. */
	run_wait(&r, "[\"/bin/echo\", \"still fine\"]", NULL, NULL);
	CHECK_STR(out_of(&r), "still fine\n");
	run_release(&r);
}

static void test_limits(void)
{
	struct run r;
	run_start(&r, "[\"/bin/sh\", \"-c\", \"x=$(head -c 400000000 /dev/zero | tr '\\\\0' a); echo survived ${#x}\"]",
	          "{\"mem_limit\": \"64Mi\", \"cpu_limit\": \"500m\"}", NULL);
	CHECK(r.rc == 0);
	char buf[64];
	const char *mem = cg_file("memory", r.id, "memory.limit_in_bytes", "memory.max", buf, sizeof(buf));
	CHECK_STR(mem, "67108864");
	char q[64], v2[64];
	cg_file("cpu", r.id, "cpu.cfs_quota_us", "cpu.max", q, sizeof(q));
	sfmt(v2, sizeof(v2), "50000 100000");
	CHECK(strcmp(q, "50000") == 0 || strcmp(q, v2) == 0);
	CHECK(wait_for(is_finished, &r, 60000));
	CHECK(r.o.res.oom);
	CHECK(!strstr(out_of(&r), "survived 400000000"));
	CHECK(strstr(r.o.res.message, "memory limit"));
	run_release(&r);

	/* Without limits in the config the server caps apply. */
	run_start(&r, "[\"/bin/true\"]", NULL, NULL);
	CHECK(r.rc == 0);
	mem = cg_file("memory", r.id, "memory.limit_in_bytes", "memory.max", buf, sizeof(buf));
	char capbuf[32];
	sfmt(capbuf, sizeof(capbuf), "%lld", (long long)cfg.guardrails.max_mem_bytes);
	CHECK_STR(mem, capbuf);
	CHECK(wait_for(is_finished, &r, 10000));
	CHECK(!r.o.res.oom && r.o.res.kind == UH_RESULT_EXITED);
	run_release(&r);
}

static void test_network(void)
{
	struct run r;
	run_wait(&r, "[\"/bin/cat\", \"/proc/net/dev\"]", "{\"network\": \"none\"}", NULL);
	const char *o = out_of(&r);
	int ifaces = 0;
	for (const char *p = o; (p = strchr(p, ':')); p++)
		ifaces++;
	CHECK(strstr(o, "lo:") && ifaces == 1); /* the header lines hold no ':' */
	if (!(strstr(o, "lo:") && ifaces == 1))
		fprintf(stderr, "netns none: %s\n", o);
	run_release(&r);

	/* The loopback is up: a local listener is reachable. */
	run_wait(&r,
	         "[\"/bin/sh\", \"-c\", \"python3 -c 'import socket; s=socket.socket(); s.bind((\\\"127.0.0.1\\\",0)); "
	         "s.listen(); "
	         "c=socket.create_connection(s.getsockname()); print(\\\"lo-ok\\\")'\"]",
	         "{\"network\": \"none\"}", NULL);
	CHECK(strstr(out_of(&r), "lo-ok"));
	run_release(&r);

	run_wait(&r, "[\"/bin/cat\", \"/proc/net/dev\"]", "{\"network\": \"host\"}", NULL);
	int host_ifaces = 0;
	for (const char *p = out_of(&r); (p = strchr(p, ':')); p++)
		host_ifaces++;
	CHECK(host_ifaces >= 2);
	run_release(&r);
}

static void test_cross_run(void)
{
	struct run a, b;
	run_start(&a, "[\"/bin/sh\", \"-c\", \"echo ready; exec sleep 1000\"]", NULL, NULL);
	struct want_out w = {&a, "ready"};
	CHECK(a.rc == 0 && wait_for(has_output, &w, 5000));
	uid_t ua = run_uid(&a);
	struct find_cond fc = {.uid = ua, .comm = "sleep"};
	CHECK(wait_for(found_pid, &fc, 5000));
	pid_t sleeper = fc.pid;
	pid_t a_init = (pid_t)atoi(a.o.ext + 4);
	char cmd[1200];
	sfmt(cmd, sizeof(cmd),
	     "[\"/bin/sh\", \"-c\", \"kill -9 %d; echo rc=$?; kill -9 %d; echo rc2=$?; ls %s/%s/home; echo ls=$?; "
	     "cat /proc/%d/environ; echo env=$?\"]",
	     (int)sleeper, (int)a_init, work, a.id, (int)sleeper);
	run_wait(&b, cmd, NULL, NULL);
	const char *o = out_of(&b);
	CHECK(strstr(o, "rc=1\n") && strstr(o, "rc2=1\n"));
	CHECK(strstr(o, "ls=2\n"));
	CHECK(strstr(o, "env=1\n"));
	CHECK(pid_alive(sleeper) && pid_alive(a_init));
	CHECK(a.o.finished == 0);
	run_release(&b);

	uh_backend_stop(a.h, 0);
	CHECK(wait_for(is_finished, &a, 5000));
	CHECK(a.o.res.kind == UH_RESULT_SIGNALED && a.o.res.signal == SIGKILL);
	CHECK(!pid_alive(sleeper) && count_uid(ua, true) == 0);
	run_release(&a);
}

static void test_scratch_symlinks(void)
{
	char cmd[2000];
	sfmt(cmd, sizeof(cmd),
	     "[\"/bin/sh\", \"-c\", \"ln -s %s/victim $HOME/v; ln -s %s/victim/keep $HOME/vf; ln -s / $TMPDIR/root; "
	     "ln -s %s/victim $TMPDIR/../tmp-v; mkdir -p $HOME/a/b; ln -s %s/victim $HOME/a/b/v2; cd $HOME; "
	     "i=0; while [ $i -lt 80 ]; do mkdir d && cd d || exit 9; ln -s %s/victim v; i=$((i+1)); done; "
	     "touch deep; mkfifo fifo; chmod 000 $HOME/a; echo planted\"]",
	     base, base, base, base, base);
	struct run r;
	run_wait(&r, cmd, NULL, NULL);
	CHECK(strstr(out_of(&r), "planted"));
	if (!strstr(out_of(&r), "planted"))
		fprintf(stderr, "plant: %s %s\n", out_of(&r), err_of(&r));
	CHECK(wait_for(cleaned_up, &r, 5000));
	CHECK(path_exists("%s/victim/keep", base));
	CHECK(path_exists("%s/victim", base));
	CHECK(access("/etc/passwd", F_OK) == 0);
	run_release(&r);
}

/* ---- daemon death ---- */

struct child_report {
	char id[UH_ID_MAX];
	char ext[256];
	uid_t uid;
};

/* A tiny daemon in a child process: its own backend state and lifeline,
 * starts one run, reports it, then either exits at once (hold < 0) or waits
 * for its pipe to close. */
static pid_t child_daemon(int hold_fd, int hold_w, struct child_report *rep_out)
{
	int p[2];
	if (pipe(p))
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		if (hold_w >= 0)
			close(hold_w);
		uh_backend_shutdown_all();
		uv_loop_t l2;
		uv_loop_init(&l2);
		struct uh_error e = {0};
		if (uh_backend_init_all(&cfg, &l2, &e))
			_exit(2);
		struct run r;
		memset(&r, 0, sizeof(r));
		uh_buf_init(&r.o.out, 1 << 20);
		uh_buf_init(&r.o.err, 1 << 20);
		uh_id_new("r_", r.id);
		json_t *cmd = json_loads(
		    "[\"/bin/sh\", \"-c\", \"(exec sleep 1000) & setsid sleep 1000 & echo ready; wait\"]", 0, NULL);
		json_t *env = json_object();
		struct uh_run_spec spec = {.run_id = r.id, .command = cmd, .env = env, .timeout_s = 600};
		if (uh_backend_start(&uh_backend_local, &host, &r.o, &l2, &cfg, &spec, &r.h, &e))
			_exit(3);
		while (!r.o.out.data || !strstr(r.o.out.data, "ready"))
			uv_run(&l2, UV_RUN_ONCE);
		struct child_report rep = {0};
		sfmt(rep.id, sizeof(rep.id), "%s", r.id);
		sfmt(rep.ext, sizeof(rep.ext), "%s", r.o.ext);
		char path[400];
		struct stat st;
		sfmt(path, sizeof(path), "%s/%s", work, r.id);
		rep.uid = stat(path, &st) == 0 ? st.st_uid : 0;
		if (write(p[1], &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
			_exit(4);
		if (hold_fd >= 0) {
			char c;
			while (read(hold_fd, &c, 1) > 0)
				;
		}
		_exit(0); /* no clean-up: a crash */
	}
	close(p[1]);
	ssize_t n = read(p[0], rep_out, sizeof(*rep_out));
	close(p[0]);
	return n == (ssize_t)sizeof(*rep_out) ? pid : -pid;
}

static void test_daemon_death(void)
{
	/* 1. The daemon dies: the lifeline takes the run down. */
	struct child_report rep;
	pid_t d = child_daemon(-1, -1, &rep);
	CHECK(d > 0);
	if (d <= 0) {
		if (d < 0)
			waitpid(-d, NULL, 0);
		return;
	}
	pid_t init_pid = (pid_t)atoi(rep.ext + 4);
	CHECK(rep.uid != 0 && init_pid > 1);
	int st;
	waitpid(d, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK(wait_for(pid_dead, &init_pid, 5000));
	waitpid(init_pid, NULL, WNOHANG); /* we are its subreaper now */
	struct uid_cond uc = {.uid = rep.uid};
	CHECK(wait_for(uid_gone, &uc, 5000));
	/* Its leftovers (scratch dir, cgroups) are for settle(). */
	CHECK(path_exists("%s/%s", work, rep.id));
	struct uh_error e = {0};
	CHECK(uh_backend_settle(&cfg, "local", rep.id, rep.ext, &e) == 0);
	CHECK(!path_exists("%s/%s", work, rep.id) && !cg_exists(rep.id));

	/* 2. The daemon is alive but lost track (a restart elsewhere): settle
	 * kills what runs. */
	int hold[2];
	CHECK(pipe(hold) == 0);
	d = child_daemon(hold[0], hold[1], &rep);
	close(hold[0]);
	CHECK(d > 0);
	if (d > 0) {
		init_pid = (pid_t)atoi(rep.ext + 4);
		struct uid_cond three = {.uid = rep.uid, .min = 3};
		CHECK(wait_for(uid_at_least, &three, 5000));
		memset(&e, 0, sizeof(e));
		CHECK(uh_backend_settle(&cfg, "local", rep.id, rep.ext, &e) == 0);
		if (e.message[0])
			fprintf(stderr, "settle: %s\n", e.message);
		CHECK(count_uid(rep.uid, false) == 0);
		CHECK(!path_exists("%s/%s", work, rep.id) && !cg_exists(rep.id));
	}
	close(hold[1]);
	if (d > 0)
		waitpid(d, NULL, 0);
	else if (d < 0)
		waitpid(-d, NULL, 0);
	uc.uid = rep.uid;
	CHECK(wait_for(uid_gone_reaping, &uc, 5000));

	/* 3. The lifeline alone (the daemon thread lives on, so no parent-death
	 * signal): closing it ends the run and everything in it. */
	struct run r;
	run_start(&r, "[\"/bin/sh\", \"-c\", \"echo ready; sleep 1000 & exec sleep 1000\"]", NULL, NULL);
	struct want_out w = {&r, "ready"};
	CHECK(r.rc == 0 && wait_for(has_output, &w, 5000));
	uc.uid = run_uid(&r);
	uc.min = 3;
	CHECK(wait_for(uid_at_least, &uc, 5000));
	uh_backend_shutdown_all(); /* closes the lifeline's write end */
	CHECK(wait_for(is_finished, &r, 5000));
	CHECK(r.o.res.kind == UH_RESULT_ERROR && strstr(r.o.res.message, "lifeline"));
	CHECK(count_uid(uc.uid, true) == 0);
	CHECK(wait_for(cleaned_up, &r, 5000));
	run_release(&r);

	/* 4. A restarted daemon sweeps leftovers of the work root at init; it
	 * leaves alone what is not a run's. */
	char cmd[1200];
	sfmt(cmd, sizeof(cmd),
	     "mkdir -p %s/r_leftover1/home && ln -s %s/victim %s/r_leftover1/home/v && chown -R %u:%u "
	     "%s/r_leftover1 && mkdir -p %s/not-a-run && mkdir -p %s/rootowned && mkdir -p %s/pool-77/home && "
	     "ln -s %s/victim %s/pool-77/home/v",
	     work, base, work, cfg.local.uid_min + 7, cfg.local.uid_min + 7, work, work, work, work, base, work);
	sh(cmd);
	/* An empty run cgroup left long ago by a dead daemon, and a fresh one
	 * (maybe another daemon's run being set up right now). */
	char stale[64], fresh[64];
	uh_id_new("r_", stale);
	uh_id_new("r_", fresh);
	sfmt(cmd, sizeof(cmd),
	     "mkdir /sys/fs/cgroup/pids/uhub/%s /sys/fs/cgroup/pids/uhub/%s && touch -d '2 hours ago' "
	     "/sys/fs/cgroup/pids/uhub/%s",
	     stale, fresh, stale);
	bool v1pids = access("/sys/fs/cgroup/pids/uhub", F_OK) == 0;
	if (v1pids)
		sh(cmd);
	uh_backend_shutdown_all();
	memset(&e, 0, sizeof(e));
	CHECK(uh_backend_init_all(&cfg, &loop, &e) == 0);
	if (v1pids) {
		CHECK(!cg_exists(stale));
		CHECK(cg_exists(fresh));
		sfmt(cmd, sizeof(cmd), "rmdir /sys/fs/cgroup/pids/uhub/%s", fresh);
		sh(cmd);
	}
	CHECK(!path_exists("%s/r_leftover1", work));
	CHECK(!path_exists("%s/pool-77", work)); /* a parked dir of the dead daemon */
	CHECK(path_exists("%s/not-a-run", work) && path_exists("%s/rootowned", work));
	CHECK(path_exists("%s/victim/keep", base));
	CHECK(uh_backend_settle(&cfg, "local", "r_neverexisted", "pid:1", &e) == 0);
	CHECK(uh_backend_settle(&cfg, "local", "../etc", "", &e) != 0);
}

/* A run that left its scratch dir empty hands it on to a later run (same
 * inode), made that run's own; one that left anything in it never does:
 * the next run gets an empty HOME and TMPDIR of its own. */
static void test_scratch_pool(void)
{
	const char *show = "[\"/bin/sh\", \"-c\", \"stat -c 'home=%i:%u:%a' $HOME; stat -c 'tmp=%i:%u:%a' $TMPDIR; "
	                   "echo uid=$(id -u); echo left=$(ls -A $HOME | wc -l)$(ls -A $TMPDIR | wc -l); "
	                   "if [ -n \\\"$PLANT\\\" ]; then echo secret > $HOME/s; echo secret > $TMPDIR/s; "
	                   "ln -s / $HOME/root; fi\"]";
	struct run a, b, c;
	char home[3][64], tmp[3][64], uid[3][32], left[3][64];
	struct run *rs[3] = {&a, &b, &c};
	for (int i = 0; i < 3; i++) {
		run_wait(rs[i], show, NULL, i == 1 ? "{\"PLANT\": \"1\"}" : NULL);
		const char *o = out_of(rs[i]);
		const char *h = strstr(o, "home="), *t = strstr(o, "tmp="), *u = strstr(o, "uid="),
		           *l = strstr(o, "left=");
		CHECK(h && t && u && l);
		if (!h || !t || !u || !l) {
			fprintf(stderr, "pool run %d: %s %s\n", i, o, err_of(rs[i]));
			run_release(rs[i]);
			return;
		}
		sscanf(h + 5, "%63[^\n]", home[i]);
		sscanf(t + 4, "%63[^\n]", tmp[i]);
		sscanf(u + 4, "%31[^\n]", uid[i]);
		left[i][0] = 0;
		sscanf(l + 5, "%63[^\n]", left[i]);
		run_release(rs[i]); /* waits for the clean-up: the dir is parked or gone */
	}
	for (int i = 0; i < 3; i++) {
		char want[64];
		sfmt(want, sizeof(want), ":%s:700", uid[i]);
		CHECK(strstr(home[i], want) && strstr(tmp[i], want)); /* the run's own, private */
		CHECK(strcmp(left[i], "00") == 0);                    /* and empty */
	}
	CHECK(strcmp(uid[0], uid[1]) != 0 && strcmp(uid[1], uid[2]) != 0);
	/* b got a's dir (same inodes); c, after b left files and a symlink in
	 * its dir, got an empty one of its own (checked above: `left` is 00).
	 * Inode numbers cannot show that c's is not b's: the file system may
	 * give a removed directory's inode to the next new one. */
	CHECK(strtoul(home[1], NULL, 10) == strtoul(home[0], NULL, 10));
	CHECK(strtoul(tmp[1], NULL, 10) == strtoul(tmp[0], NULL, 10));
}

/* ---- parked cgroups ---- */

/* The inode of the run's cgroup in a v1 hierarchy (0: none there). */
static unsigned long cg_ino(const char *ctl, const char *id)
{
	char p[512];
	struct stat st;
	sfmt(p, sizeof(p), "/sys/fs/cgroup/%s/uhub/%s", ctl, id);
	return stat(p, &st) == 0 ? (unsigned long)st.st_ino : 0;
}

/* An emptied cgroup goes to the next run (v1: renamed) with that run's
 * limits, every one rewritten: a raised memory limit (past the old
 * memory+swap limit), a CPU quota lifted, a lower one again. A cgroup
 * whose run was OOM-killed is never handed on (the kernel's oom_kill count
 * would mark the next run OOM). Checks the limits on any host, the reuse
 * where the memory hierarchy is v1. */
static void test_cgroup_pool(void)
{
	bool v1 = access("/sys/fs/cgroup/memory/uhub", F_OK) == 0;
	char buf[64], want[64];
	struct run a, b, c, d, e;

	run_start(&a, "[\"/bin/true\"]", "{\"mem_limit\": \"64Mi\", \"cpu_limit\": \"500m\"}", NULL);
	CHECK(a.rc == 0);
	unsigned long mem_a = cg_ino("memory", a.id), cpu_a = cg_ino("cpu", a.id);
	CHECK_STR(cg_file("memory", a.id, "memory.limit_in_bytes", "memory.max", buf, sizeof(buf)), "67108864");
	CHECK(wait_for(is_finished, &a, 10000));
	CHECK(!a.o.res.oom && a.o.res.kind == UH_RESULT_EXITED && a.o.res.exit_code == 0);
	run_release(&a);
	CHECK(!cg_exists(a.id));

	/* The server's caps: more memory than a's limit, no CPU quota. */
	run_start(&b, "[\"/bin/true\"]", NULL, NULL);
	CHECK(b.rc == 0);
	if (v1)
		CHECK(cg_ino("memory", b.id) == mem_a);
	sfmt(want, sizeof(want), "%lld", (long long)cfg.guardrails.max_mem_bytes);
	CHECK_STR(cg_file("memory", b.id, "memory.limit_in_bytes", "memory.max", buf, sizeof(buf)), want);
	if (access("/sys/fs/cgroup/memory/uhub/memory.memsw.limit_in_bytes", F_OK) == 0)
		CHECK_STR(cg_file("memory", b.id, "memory.memsw.limit_in_bytes", "memory.max", buf, sizeof(buf)), want);
	sfmt(want, sizeof(want), "%lld", (long long)cfg.local.pids_limit);
	CHECK_STR(cg_file("pids", b.id, "pids.max", "pids.max", buf, sizeof(buf)), want);
	CHECK(wait_for(is_finished, &b, 10000));
	CHECK(!b.o.res.oom && b.o.res.kind == UH_RESULT_EXITED);
	run_release(&b);

	/* Lower limits again, and a's CPU cgroup back with a new quota. */
	run_start(&c, "[\"/bin/true\"]", "{\"mem_limit\": \"32Mi\", \"cpu_limit\": \"250m\"}", NULL);
	CHECK(c.rc == 0);
	if (v1) {
		CHECK(cg_ino("memory", c.id) == mem_a);
		CHECK(cpu_a == 0 || cg_ino("cpu", c.id) == cpu_a);
	}
	CHECK_STR(cg_file("memory", c.id, "memory.limit_in_bytes", "memory.max", buf, sizeof(buf)), "33554432");
	cg_file("cpu", c.id, "cpu.cfs_quota_us", "cpu.max", buf, sizeof(buf));
	CHECK(strcmp(buf, "25000") == 0 || strcmp(buf, "25000 100000") == 0);
	CHECK(wait_for(is_finished, &c, 10000));
	run_release(&c);

	/* Parked cgroups removed behind our back (another daemon's start-up
	 * sweep may do that): the next run gets new ones. */
	if (v1) {
		char cmd[256];
		sfmt(cmd, sizeof(cmd), "rmdir /sys/fs/cgroup/*/uhub/pool-%d-* 2>/dev/null; true", (int)getpid());
		sh(cmd);
		struct run f;
		run_start(&f, "[\"/bin/true\"]", "{\"mem_limit\": \"32Mi\"}", NULL);
		CHECK(f.rc == 0);
		CHECK(cg_ino("memory", f.id) != 0 && cg_ino("memory", f.id) != mem_a);
		CHECK_STR(cg_file("memory", f.id, "memory.limit_in_bytes", "memory.max", buf, sizeof(buf)), "33554432");
		CHECK(wait_for(is_finished, &f, 10000));
		CHECK(f.o.res.kind == UH_RESULT_EXITED && f.o.res.exit_code == 0);
		run_release(&f);
	}

	/* An OOM kill: that cgroup is not handed on, and the next run is not OOM. */
	run_start(&d, "[\"/bin/sh\", \"-c\", \"x=$(head -c 200000000 /dev/zero | tr '\\\\0' a); echo ${#x}\"]",
	          "{\"mem_limit\": \"32Mi\"}", NULL);
	CHECK(d.rc == 0);
	unsigned long mem_d = cg_ino("memory", d.id);
	CHECK(wait_for(is_finished, &d, 60000));
	CHECK(d.o.res.oom);
	run_release(&d);
	run_start(&e, "[\"/bin/true\"]", "{\"mem_limit\": \"32Mi\"}", NULL);
	CHECK(e.rc == 0);
	if (v1)
		CHECK(mem_d != 0 && cg_ino("memory", e.id) != mem_d);
	CHECK(wait_for(is_finished, &e, 10000));
	CHECK(!e.o.res.oom && e.o.res.kind == UH_RESULT_EXITED && e.o.res.exit_code == 0);
	run_release(&e);

	/* At start, the parked cgroups of a daemon gone are removed whatever
	 * their age; a live daemon's (our parent stands in for one) stay. */
	if (v1) {
		pid_t gone = fork();
		if (gone == 0)
			_exit(0);
		waitpid(gone, NULL, 0);
		char p1[256], p2[256];
		sfmt(p1, sizeof(p1), "/sys/fs/cgroup/pids/uhub/pool-%d-7", (int)gone);
		sfmt(p2, sizeof(p2), "/sys/fs/cgroup/pids/uhub/pool-%d-7", (int)getppid());
		CHECK(mkdir(p1, 0755) == 0 && mkdir(p2, 0755) == 0);
		uh_cg_sweep_empty(60);
		CHECK(access(p1, F_OK) != 0);
		CHECK(access(p2, F_OK) == 0);
		rmdir(p1);
		rmdir(p2);
	}
}

/* ---- host-wide uid claims ---- */

/* Another uhub's view of the claim file: its own open file description,
 * whose locks conflict with the daemon's. */
static int claim_lock(int fd, unsigned uid, short type, int cmd)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = (off_t)uid, .l_len = 1};
	int rc = fcntl(fd, cmd, &fl);
	return rc ? -errno : cmd == F_OFD_GETLK ? fl.l_type : 0;
}

/* A uid another uhub holds (its lock on byte UID of /run/uhub/uids.lock)
 * is skipped; the run's own claim is held while it runs, released after. */
static void test_uid_claims(void)
{
	struct run r;
	run_wait(&r, "[\"/usr/bin/id\", \"-u\"]", NULL, NULL);
	unsigned u = (unsigned)strtoul(out_of(&r), NULL, 10);
	run_release(&r);
	CHECK(u >= cfg.local.uid_min && u + 3 <= cfg.local.uid_max); /* allocation goes round: u+1 next */
	int other = open("/run/uhub/uids.lock", O_RDWR | O_CLOEXEC);
	CHECK(other >= 0 && claim_lock(other, u + 1, F_WRLCK, F_OFD_SETLK) == 0); /* "another daemon": u+1 */

	run_start(&r, "[\"/bin/sh\", \"-c\", \"id -u; exec sleep 100\"]", NULL, NULL);
	CHECK(r.rc == 0);
	struct want_out w = {.r = &r, .s = "\n"};
	CHECK(wait_for(has_output, &w, 5000));
	unsigned got = (unsigned)strtoul(out_of(&r), NULL, 10);
	CHECK(got == u + 2);                                            /* not u+1 */
	CHECK(claim_lock(other, got, F_WRLCK, F_OFD_GETLK) == F_WRLCK); /* held by the daemon */
	CHECK(claim_lock(other, got, F_WRLCK, F_OFD_SETLK) == -EAGAIN); /* not to be had */
	uh_backend_stop(r.h, 0);
	CHECK(wait_for(is_finished, &r, 5000));
	run_release(&r); /* waits for the clean-up, which frees the uid */
	CHECK(claim_lock(other, got, F_WRLCK, F_OFD_GETLK) == F_UNLCK); /* released with the uid */
	if (other >= 0)
		close(other);
}

/* ---- timing ---- */

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* init tells a job that simply exited by its own exit status, without a
 * record; its own ends use statuses it reserves and always come after a
 * record. A stand-in init that reports nothing and exits with the status
 * its job's last argument names shows how the daemon reads a lost record:
 * a reserved status never passes for the job's, so never for success. */
static void test_init_without_record(void)
{
	char src[512], bin[512], cmd[1200];
	sfmt(src, sizeof(src), "%s/fake-init.c", base);
	sfmt(bin, sizeof(bin), "%s/fake-init", base);
	FILE *f = fopen(src, "w");
	CHECK(f != NULL);
	if (!f)
		return;
	fputs("#include <stdlib.h>\nint main(int c, char **v) { return atoi(v[c - 1]); }\n", f);
	fclose(f);
	sfmt(cmd, sizeof(cmd), "cc -o %s %s && chmod 0755 %s", bin, src, bin);
	sh(cmd);
	CHECK(access(bin, X_OK) == 0);
	struct uh_error e = {0};
	uh_backend_shutdown_all();
	uv_run(&loop, UV_RUN_NOWAIT); /* the closed handles' callbacks, before they are initialised again */
	setenv("UHUB_INIT_PATH", bin, 1);
	CHECK(uh_backend_init_all(&cfg, &loop, &e) == 0);
	const struct {
		int code;
		bool job;
	} cases[] = {{0, true},    {3, true},    {255, true},  {111, false},
	             {112, false}, {113, false}, {114, false}, {127, false}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char command[96];
		sfmt(command, sizeof(command), "[\"/bin/echo\", \"%d\"]", cases[i].code);
		struct run r;
		run_wait(&r, command, NULL, NULL);
		if (cases[i].job) {
			CHECK(r.o.res.kind == UH_RESULT_EXITED && r.o.res.exit_code == cases[i].code);
		} else {
			CHECK(r.o.res.kind == UH_RESULT_ERROR && strstr(r.o.res.message, "without a report"));
			CHECK(r.o.res.kind != UH_RESULT_EXITED);
		}
		if ((r.o.res.kind == UH_RESULT_EXITED) != cases[i].job)
			fprintf(stderr, "fake init status %d: kind %d code %d: %s\n", cases[i].code, (int)r.o.res.kind,
			        r.o.res.exit_code, r.o.res.message);
		run_release(&r);
	}
	uh_backend_shutdown_all();
	uv_run(&loop, UV_RUN_NOWAIT);
	unsetenv("UHUB_INIT_PATH");
	memset(&e, 0, sizeof(e));
	CHECK(uh_backend_init_all(&cfg, &loop, &e) == 0);
}

static void test_timing(void)
{
	enum { N = 100 };
	static int64_t t_local[N], t_spawn[N];
	for (int i = 0; i < N; i++) {
		struct run r;
		run_start(&r, "[\"/bin/true\"]", NULL, NULL);
		if (r.rc || !wait_for(is_finished, &r, 10000)) {
			CHECK(0);
			return;
		}
		t_local[i] = r.o.t_end - r.o.t_start;
		CHECK(r.o.res.kind == UH_RESULT_EXITED && r.o.res.exit_code == 0);
		run_release(&r);
	}
	char *argv[] = {"/bin/true", NULL};
	for (int i = 0; i < N; i++) {
		int64_t t0 = uh_mono_us();
		pid_t pid;
		int st;
		if (posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ) != 0 || waitpid(pid, &st, 0) != pid)
			CHECK(0);
		t_spawn[i] = uh_mono_us() - t0;
	}
	qsort(t_local, N, sizeof(int64_t), cmp64);
	qsort(t_spawn, N, sizeof(int64_t), cmp64);
	printf("# local /bin/true start->finished: median %lld us, p90 %lld us; posix_spawn+waitpid: median %lld us, "
	       "p90 %lld us (N=%d)\n",
	       (long long)t_local[N / 2], (long long)t_local[N * 9 / 10], (long long)t_spawn[N / 2],
	       (long long)t_spawn[N * 9 / 10], N);
	fflush(stdout);
}

int main(void)
{
	if (geteuid() != 0) {
		printf("# skip: the local backend needs root\n");
		return 0;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN); /* as the daemon does; runs must still get the default */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	uv_loop_init(&loop);

	/* The test root: a root-owned 0755 chain outside /tmp (a run's /tmp is
	 * its own tmpfs), wherever the tree itself was checked out. */
	mkdir("/var/lib/uhub-tests", 0755);
	chmod("/var/lib/uhub-tests", 0755);
	sfmt(base, sizeof(base), "/var/lib/uhub-tests/local-test.XXXXXX");
	if (!mkdtemp(base)) {
		perror("mkdtemp");
		return 1;
	}
	chmod(base, 0755);
	sfmt(work, sizeof(work), "%s/work", base);
	sfmt(drop, sizeof(drop), "%s/drop", base);
	char cmd[2048];
	sfmt(cmd, sizeof(cmd),
	     "mkdir -p %s/bin/adir %s/wd/sub %s/victim %s && chmod 1777 %s %s/wd/sub && echo keep > %s/victim/keep && "
	     "printf '#!/usr/bin/python3\\nimport sys, os\\nprint(\"py-ok\", sys.argv[0], sys.argv[1:], "
	     "os.getuid())\\n' "
	     "> %s/bin/hello.py && printf '#!/bin/sh\\necho sh-ok $# \"$1|$2\"\\n' > %s/bin/hello.sh && "
	     "chmod 0755 %s/bin/hello.py %s/bin/hello.sh && printf '#!/bin/sh\\necho no\\n' > %s/bin/noexec.sh && "
	     "chmod 0644 %s/bin/noexec.sh",
	     base, base, base, drop, drop, base, base, base, base, base, base, base, base);
	sh(cmd);

	struct uh_error e = {0};
	CHECK(uh_config_defaults(&cfg, &e) == 0);
	const char *exes[] = {"/bin/true", "/bin/sh", "/bin/sleep", "/bin/echo", "/usr/bin/id", "/bin/cat"};
	set_list(&cfg.local.allowed_executables, exes, 6);
	char wd[400];
	sfmt(wd, sizeof(wd), "%s/wd", base);
	const char *wds[] = {wd};
	set_list(&cfg.local.allowed_workdirs, wds, 1);
	free(cfg.local.work_root);
	cfg.local.work_root = strdup(work);
	cfg.local.grace_s = 2;
	/* A uid range of our own: other daemons on this host use the default. */
	cfg.local.uid_min = 2000000000u + (uint32_t)(getpid() % 1000) * 1000u;
	cfg.local.uid_max = cfg.local.uid_min + 999;

	CHECK(uh_config_defaults(&cfg_true, &e) == 0);
	char f1[400], f2[400], f3[400], f4[400], f5[400], f6[400];
	sfmt(f1, sizeof(f1), "%s/bin/sh-ow", base);
	sfmt(f2, sizeof(f2), "%s/gw/sh", base);
	sfmt(f3, sizeof(f3), "%s/bin/hello.py", base);
	sfmt(f4, sizeof(f4), "%s/bin/hello.sh", base);
	sfmt(f5, sizeof(f5), "%s/bin/noexec.sh", base);
	sfmt(f6, sizeof(f6), "%s/bin/adir", base);
	const char *exes2[] = {"/bin/true", f1, f2, f3, f4, f5, f6};
	set_list(&cfg_true.local.allowed_executables, exes2, 7);
	free(cfg_true.local.work_root);
	cfg_true.local.work_root = strdup(work);
	cfg_true.local.uid_min = cfg.local.uid_min;
	cfg_true.local.uid_max = cfg.local.uid_max;

	CHECK(uh_backend_init_all(&cfg, &loop, &e) == 0);
	if (e.message[0])
		fprintf(stderr, "init: %s\n", e.message);

	test_echo_and_exit();
	test_identity();
	test_private_proc_and_tmp();
	test_env();
	test_refusals();
	test_env_names();
	test_working_dir();
	test_work_root_in_tmp();
	test_scripts();
	test_stop();
	test_one_descriptor_per_run();
	test_channel_forgery();
	test_fork_flood();
	test_limits();
	test_network();
	test_cross_run();
	test_scratch_symlinks();
	test_scratch_pool();
	test_cgroup_pool();
	test_uid_claims();
	test_daemon_death();
	test_timing();
	test_init_without_record();

	uh_backend_shutdown_all();
	uv_run(&loop, UV_RUN_NOWAIT);
	CHECK(uv_loop_close(&loop) == 0);
	uh_config_free(&cfg);
	uh_config_free(&cfg_true);
	sfmt(cmd, sizeof(cmd), "rm -rf %s", base);
	if (!getenv("UH_KEEP_TEST_DIR"))
		sh(cmd);
	return uh_tap_done();
}
