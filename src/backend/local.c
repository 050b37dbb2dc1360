/* The Local execution backend (SPEC §3 "local"): a run is a process tree on
 * this host, under uhub-init as PID 1 of its own PID and mount namespaces,
 * with a uid of its own, cgroup limits and a scratch dir.
 *
 * Spawning: clone(CLONE_VM|CLONE_VFORK|CLONE_PIDFD|CLONE_NEWPID|CLONE_NEWNS)
 * from the supervisor thread, so the cost does not grow with the daemon's
 * size; the child only moves descriptors into place and execveat()s the
 * uhub-init opened at start-up, which does the rest (src/init/local.c).
 *
 * Per run the daemon holds one descriptor: its end of the run's channel, a
 * SOCK_SEQPACKET socket on which init forwards the job's stdout and stderr
 * and, unless the job simply exited, a status record (local_proto.h). EOF
 * on it means init has exited (the kernel has then killed the rest of the
 * namespace); the backend reaps init (by pid: an unreaped child's pid
 * cannot be reused; its exit status is the job's when no record came),
 * reports, then parks or removes the run's cgroups and scratch dir. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "backend/cgroup.h"
#include "backend/local_impl.h"
#include "backend/local_proto.h"
#include "util/buf.h"
#include "util/log.h"

#ifndef UH_INIT_NAME
#define UH_INIT_NAME "uhub-init"
#endif

#define REAP_RETRY_MS     1           /* init closed its channel, is not a zombie yet */
#define HARDSTOP_MS       2000        /* init's time to end the run after a hard stop */
#define PIDFDS_MAX        64          /* pidfds open at once for runs ending (else REAP_RETRY_MS) */
#define CG_RETRY_MS       10          /* re-kill and re-check a non-empty cgroup */
#define CG_RETRIES        300         /* ... for at most 3 s */
#define BACKSTOP_SLACK_MS 5000        /* hard kill past timeout + grace + this */
#define SPAWN_STACK       (64 * 1024) /* the clone child's stack: a few frames */
#define RUN_NOFILE        1024
#define RUN_FSIZE         (4LL << 30)
#define POOL_MAX          64 /* empty scratch dirs kept for later runs */
#ifndef UH_UID_CLAIM_FILE
#define UH_UID_CLAIM_FILE "/run/uhub/uids.lock" /* host-wide uid claims, see uid_claim_lock() */
#endif

/* ---- backend-wide state (supervisor thread) ---- */

static struct {
	bool ready;
	char unavailable[256]; /* why runs cannot start, or "" */
	int init_fd;           /* uhub-init, O_PATH */
	int null_fd;           /* /dev/null for the run's stdin */
	int life_r, life_w;    /* lifeline: only the daemon holds life_w */
	bool fixed_user;
	char *user_name;
	uid_t user_uid;
	gid_t user_gid;
	void *stack;     /* mmap'd: guard page + SPAWN_STACK */
	char *root_conf; /* local.work_root as configured ... */
	char *root;      /* ... and resolved, checked */
	/* uid allocator: sorted uids in use, and where the next search starts */
	int claim_fd; /* UH_UID_CLAIM_FILE, or -1: uids not coordinated host-wide */
	uint32_t *used;
	size_t nused, capused;
	uint32_t next_uid;
	uv_loop_t *loop;
	size_t cleaning; /* runs reported whose clean-up is not done */
	size_t pidfds;   /* runs' pidfds open (PIDFDS_MAX) */
	/* Parked scratch dirs "pool-N" in G.root (local_fs.c): a run that left
	 * its dir empty hands it on, which spares the next run three mkdirs
	 * and this one three rmdirs on the work root's file system. */
	uint32_t pool[POOL_MAX];
	size_t npool;
	uint32_t pool_next;
} G = {.init_fd = -1, .null_fd = -1, .life_r = -1, .life_w = -1, .claim_fd = -1};

static char rbuf[1 + UH_INIT_MSG_MAX]; /* one channel record */

/* ---- uid allocation ---- */

static size_t uid_lower_bound(uint32_t uid)
{
	size_t lo = 0, hi = G.nused;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (G.used[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* A uid is also claimed host-wide while a run has it: an exclusive
 * open-file-description lock on byte <uid> of UH_UID_CLAIM_FILE, which dies
 * with its holder. Daemons on one host whose local.uid_range overlap then
 * never give one uid to two runs (which could read and write each other's
 * 0700 scratch dirs, or anything else that uid owns). One descriptor holds
 * every claim of the daemon (a lock per file would cost one per run in
 * flight), and nothing is left on disk to clean. 0, -EBUSY when another
 * uhub holds it, else -errno. */
static int uid_claim_lock(uint32_t uid, short type)
{
	if (G.claim_fd < 0)
		return 0;
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = (off_t)uid, .l_len = 1};
	if (fcntl(G.claim_fd, F_OFD_SETLK, &fl) == 0)
		return 0;
	return errno == EAGAIN || errno == EACCES ? -EBUSY : -errno;
}

/* A uid of the range no live run holds, here or (uid_claim_lock) in
 * another uhub on this host, searching round-robin so a freed uid is not
 * handed out again at once. */
static int uid_alloc(uint32_t min, uint32_t max, uint32_t *out)
{
	if (min == 0 || min > max)
		return -EINVAL;
	if (G.nused == G.capused) {
		size_t cap = G.capused ? G.capused * 2 : 64;
		uint32_t *v = realloc(G.used, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		G.used = v;
		G.capused = cap;
	}
	uint64_t span = (uint64_t)max - min + 1;
	uint32_t c = G.next_uid >= min && G.next_uid <= max ? G.next_uid : min;
	size_t p = uid_lower_bound(c);
	for (uint64_t tried = 0; tried < span; tried++) {
		int e = p >= G.nused || G.used[p] != c ? uid_claim_lock(c, F_WRLCK) : -EBUSY;
		if (e && e != -EBUSY)
			return e;
		if (!e) {
			memmove(G.used + p + 1, G.used + p, (G.nused - p) * sizeof(*G.used));
			G.used[p] = c;
			G.nused++;
			G.next_uid = c == max ? min : c + 1;
			*out = c;
			return 0;
		}
		if (c == max) {
			c = min;
			p = uid_lower_bound(c);
		} else {
			if (p < G.nused && G.used[p] == c)
				p++; /* else c was free here but claimed elsewhere */
			c++;
		}
	}
	return -EAGAIN;
}

static void uid_free(uint32_t uid)
{
	size_t p = uid_lower_bound(uid);
	if (p < G.nused && G.used[p] == uid) {
		memmove(G.used + p, G.used + p + 1, (G.nused - p - 1) * sizeof(*G.used));
		G.nused--;
	}
	uid_claim_lock(uid, F_UNLCK);
}

/* The claim file: root's, in a directory only root writes, or none (a
 * warning: uids are then only unique within this daemon). */
static void uid_claim_open(void)
{
	if (G.claim_fd >= 0)
		return;
	const char *file = UH_UID_CLAIM_FILE;
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", file);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir)
		*slash = 0;
	int r = local_mkdir_p(dir, 0700);
	int fd = r ? -1 : open(file, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	struct stat st, dst;
	if (fd < 0) {
		uh_warn("backend=local: cannot open %s (%s): run uids are not coordinated with other uhub daemons "
		        "on this host; give each one its own local.uid_range",
		        file, strerror(r ? -r : errno));
		return;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022) || stat(dir, &dst) ||
	    dst.st_uid != 0 || (dst.st_mode & 022)) {
		uh_warn("backend=local: %s is not a file only root can write: run uids are not coordinated with "
		        "other uhub daemons on this host; give each one its own local.uid_range",
		        file);
		close(fd);
		return;
	}
	G.claim_fd = fd;
}

/* ---- string vectors for argv and envp (wiped: they carry secrets) ---- */

struct strv {
	char **v;
	size_t n, cap;
	bool oom;
};

static void strv_push_mem(struct strv *s, const char *a, size_t alen, const char *b, size_t blen)
{
	if (s->oom)
		return;
	if (s->n + 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 32;
		char **v = realloc(s->v, cap * sizeof(*v));
		if (!v) {
			s->oom = true;
			return;
		}
		s->v = v;
		s->cap = cap;
	}
	char *p = malloc(alen + blen + 1);
	if (!p) {
		s->oom = true;
		return;
	}
	memcpy(p, a, alen);
	if (blen)
		memcpy(p + alen, b, blen);
	p[alen + blen] = 0;
	s->v[s->n++] = p;
	s->v[s->n] = NULL;
}

static void strv_push(struct strv *s, const char *str)
{
	strv_push_mem(s, str, strlen(str), NULL, 0);
}

__attribute__((format(printf, 2, 3))) static void strv_pushf(struct strv *s, const char *fmt, ...)
{
	char buf[PATH_MAX + 64];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		s->oom = true;
		return;
	}
	strv_push_mem(s, buf, (size_t)n, NULL, 0);
}

/* NAME=value; value may be a secret of known length. */
static void strv_push_env(struct strv *s, const char *name, const char *value, size_t vlen)
{
	size_t nl = strlen(name);
	char *tmp = malloc(nl + 2);
	if (!tmp) {
		s->oom = true;
		return;
	}
	memcpy(tmp, name, nl);
	tmp[nl] = '=';
	strv_push_mem(s, tmp, nl + 1, value, vlen);
	free(tmp);
}

static void strv_free(struct strv *s)
{
	for (size_t i = 0; i < s->n; i++) {
		uh_memzero(s->v[i], strlen(s->v[i]));
		free(s->v[i]);
	}
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* ---- the run ---- */

struct local_handle {
	struct uh_run_handle h; /* first: UH_HANDLE_CAST */
	struct local_run *run;
};

/* Lives apart from the handle: its uv handles must outlive a failed start
 * (backend.c frees the handle at once) until their close callbacks ran. */
struct local_run {
	struct uh_run_handle *h; /* NULL when the handle is gone */
	uv_loop_t *loop;
	uv_poll_t chan_poll, pid_poll; /* pid_poll: only while init is exiting */
	uv_timer_t kill_timer, wait_timer;
	uv_work_t rm_work;
	int closing; /* uv handles still to close */
	int chan;    /* our end of the channel (the one descriptor in flight) */
	int pidfd;   /* opened only if init is slow to become a zombie */
	pid_t pid;   /* init's, our child until reaped */
	uint32_t uid;
	bool uid_allocated;
	char run_id[UH_ID_MAX];
	char *root;  /* resolved work root of the scratch dir */
	char *argv0; /* for messages */
	uint64_t kill_at;
	int cg_tries;
	int rm_result;
	bool stop_sent, hardstop_sent, reaped, cg_done, rm_queued, finishing, finished, released;
	siginfo_t info;
	bool have_status;
	struct uh_init_status status;
};

static void run_free(struct local_run *r)
{
	if (r->pidfd >= 0)
		G.pidfds--;
	int fds[] = {r->chan, r->pidfd};
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (r->uid_allocated)
		uid_free(r->uid);
	free(r->root);
	free(r->argv0);
	free(r->h);
	free(r);
}

static void on_close(uv_handle_t *hd)
{
	struct local_run *r = hd->data;
	if (--r->closing == 0)
		run_free(r);
}

/* Close every uv handle; the run (and its handle, if still attached) is
 * freed by the last close callback. */
static void run_close(struct local_run *r)
{
	uv_handle_t *hs[] = {(uv_handle_t *)&r->chan_poll, (uv_handle_t *)&r->pid_poll, (uv_handle_t *)&r->kill_timer,
	                     (uv_handle_t *)&r->wait_timer};
	r->closing = 0;
	for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
		if (hs[i]->data == r && !uv_is_closing(hs[i]))
			r->closing++;
	if (r->closing == 0) {
		run_free(r);
		return;
	}
	for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
		if (hs[i]->data == r && !uv_is_closing(hs[i]))
			uv_close(hs[i], on_close);
}

/* init is our child until we reap it, so its pid names it alone. */
static int send_signal(struct local_run *r, int sig)
{
	if (r->pid <= 0 || r->reaped)
		return 0;
	return kill(r->pid, sig);
}

static void advance(struct local_run *r);

/* Read what the channel holds (at most max records): output goes to the
 * host, the status record is kept; true at EOF (init has exited). */
static bool chan_read(struct local_run *r, int max)
{
	for (int i = 0; i < max; i++) {
		ssize_t n = recv(r->chan, rbuf, sizeof(rbuf), MSG_DONTWAIT);
		if (n > 1 && (rbuf[0] == UH_INIT_MSG_STDOUT || rbuf[0] == UH_INIT_MSG_STDERR)) {
			enum uh_stream stream = rbuf[0] == UH_INIT_MSG_STDOUT ? UH_STREAM_STDOUT : UH_STREAM_STDERR;
			if (r->h && !r->released)
				r->h->host->output(r->h, stream, rbuf + 1, (size_t)n - 1);
			continue;
		}
		if (n == 1 + (ssize_t)sizeof(r->status) && rbuf[0] == UH_INIT_MSG_STATUS) {
			memcpy(&r->status, rbuf + 1, sizeof(r->status));
			r->have_status = r->status.magic == UH_INIT_STATUS_MAGIC;
			continue;
		}
		if (n > 0)
			continue; /* not a record of ours: ignored */
		if (n == 0)
			return true;
		if (errno == EINTR)
			continue;
		return errno != EAGAIN;
	}
	return false;
}

static void on_pid(uv_poll_t *p, int status, int events);
static void on_wait_timer_reap(uv_timer_t *t);

/* init has closed its channel (read to its end): reap it, now or as soon
 * as it is a zombie (its exit ends with killing the namespace's other
 * processes). Called only after that EOF, so reaped implies it. */
static void reap(struct local_run *r)
{
	if (r->reaped)
		return;
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	int w = waitid(P_PID, (id_t)r->pid, &si, WEXITED | WNOHANG);
	if (w == 0 && si.si_pid == 0) {
		/* Not yet: watch a pidfd (readable once it has exited), or
		 * without a descriptor to spare, look again shortly. */
		if (r->pidfd < 0 && !r->pid_poll.data && G.pidfds < PIDFDS_MAX) {
			int fd = (int)syscall(SYS_pidfd_open, r->pid, 0);
			if (fd >= 0 && uv_poll_init(r->loop, &r->pid_poll, fd) == 0) {
				r->pidfd = fd;
				G.pidfds++;
				r->pid_poll.data = r;
				uv_poll_start(&r->pid_poll, UV_READABLE, on_pid);
				return;
			}
			if (fd >= 0)
				close(fd);
		}
		if (r->pidfd < 0)
			uv_timer_start(&r->wait_timer, on_wait_timer_reap, REAP_RETRY_MS, 0);
		return;
	}
	/* Reaped now, or (w < 0, ECHILD) by someone else. */
	r->info = si;
	r->reaped = true;
	if (r->pid_poll.data)
		uv_poll_stop(&r->pid_poll);
	uv_timer_stop(&r->kill_timer);
	advance(r);
}

static void on_pid(uv_poll_t *p, int status, int events)
{
	reap(p->data);
}

static void on_chan(uv_poll_t *p, int status, int events)
{
	struct local_run *r = p->data;
	if (status < 0 || chan_read(r, 16)) {
		uv_poll_stop(&r->chan_poll);
		reap(r);
	}
}

static void on_wait_timer(uv_timer_t *t)
{
	advance(t->data);
}

static void on_wait_timer_reap(uv_timer_t *t)
{
	reap(t->data);
}

static void on_kill_timer(uv_timer_t *t)
{
	struct local_run *r = t->data;
	r->kill_at = 0;
	if (r->reaped)
		return;
	if (!r->hardstop_sent) {
		/* init kills the rest and reports, with what the job's pipes
		 * still hold; if it does not end, it is killed itself. */
		r->hardstop_sent = true;
		send_signal(r, UH_INIT_SIG_HARDSTOP);
		uv_timer_start(&r->kill_timer, on_kill_timer, HARDSTOP_MS, 0);
		return;
	}
	send_signal(r, SIGKILL); /* init's death takes the whole namespace */
}

static const char *signame(int sig)
{
	const char *s = sigabbrev_np(sig);
	return s ? s : "?";
}

static void make_result(struct local_run *r, struct uh_run_result *res)
{
	memset(res, 0, sizeof(*res));
	if (r->have_status) {
		const struct uh_init_status *st = &r->status;
		switch (st->kind) {
		case UH_INIT_EXITED:
			res->kind = UH_RESULT_EXITED;
			res->exit_code = st->code;
			snprintf(res->message, sizeof(res->message), "exited with status %d", st->code);
			break;
		case UH_INIT_SIGNALED:
			res->kind = UH_RESULT_SIGNALED;
			res->signal = st->code;
			res->exit_code = 128 + st->code;
			snprintf(res->message, sizeof(res->message), "killed by signal %d (SIG%s)", st->code,
			         signame(st->code));
			break;
		case UH_INIT_LIFELINE:
			res->kind = UH_RESULT_ERROR;
			res->reason = "backend_error";
			snprintf(res->message, sizeof(res->message),
			         "the run was killed: the daemon's lifeline closed");
			break;
		case UH_INIT_EXEC_FAILED:
			res->kind = UH_RESULT_ERROR;
			res->reason = "backend_error";
			snprintf(res->message, sizeof(res->message), "cannot execute '%s': %s", r->argv0,
			         strerror(st->err));
			break;
		default:
			res->kind = UH_RESULT_ERROR;
			res->reason = "backend_error";
			snprintf(res->message, sizeof(res->message), "run set-up failed (%s): %s",
			         uh_init_step_name(st->code), strerror(st->err));
			break;
		}
	} else if (r->info.si_code == CLD_EXITED && r->info.si_pid && !uh_init_exit_reserved(r->info.si_status)) {
		/* No status record: the job exited and init with its status. */
		res->kind = UH_RESULT_EXITED;
		res->exit_code = r->info.si_status;
		snprintf(res->message, sizeof(res->message), "exited with status %d", r->info.si_status);
	} else if (r->info.si_code == CLD_KILLED || r->info.si_code == CLD_DUMPED) {
		/* init itself was killed: by our stop, the OOM killer, or root. */
		int sig = r->info.si_status;
		res->kind = UH_RESULT_SIGNALED;
		res->signal = sig;
		res->exit_code = 128 + sig;
		snprintf(res->message, sizeof(res->message), "killed by signal %d (SIG%s)", sig, signame(sig));
	} else {
		res->kind = UH_RESULT_ERROR;
		res->reason = "backend_error";
		snprintf(res->message, sizeof(res->message), "uhub-init ended without a report (status %d)",
		         r->info.si_pid ? r->info.si_status : -1);
	}
	/* The memory cgroup's OOM count matters only for a run that did not
	 * succeed: a clean exit spares reading it. */
	if (!(res->kind == UH_RESULT_EXITED && res->exit_code == 0) && uh_cg_oom(r->run_id)) {
		res->oom = true;
		snprintf(res->message + strlen(res->message), sizeof(res->message) - strlen(res->message),
		         "; the memory limit was hit");
	}
}

static void slot_name(uint32_t slot, char *out, size_t size)
{
	snprintf(out, size, "pool-%u", (unsigned)slot);
}

/* Drop the parked dirs (the work root changed, or shutdown). */
static void pool_drop(void)
{
	char slot[32];
	while (G.npool > 0) {
		slot_name(G.pool[--G.npool], slot, sizeof(slot));
		if (G.root)
			local_scratch_remove(G.root, slot);
	}
}

/* The run's scratch dir: a parked one when there is one, else a new one. */
static int scratch_take(struct local_run *r, uid_t uid, gid_t gid, struct uh_error *err)
{
	char slot[32];
	while (G.npool > 0) {
		slot_name(G.pool[--G.npool], slot, sizeof(slot));
		if (local_scratch_unpark(r->root, slot, r->run_id, uid, gid) == 0)
			return 0;
		local_scratch_remove(r->root, slot);
		local_scratch_remove(r->root, r->run_id);
	}
	return local_scratch_create(r->root, r->run_id, uid, gid, err);
}

/* A dir clean_up could not park: removed on the thread pool (it may hold
 * anything the job left). */
static void rm_work(uv_work_t *w)
{
	struct local_run *r = w->data;
	r->rm_result = local_scratch_remove(r->root, r->run_id);
}

/* The last step of the clean-up: the uid may go to another run now. */
static void rm_done(uv_work_t *w, int status)
{
	struct local_run *r = w->data;
	if (r->rm_result)
		uh_warn("backend=local run=%s: scratch dir not fully removed: %s", r->run_id, strerror(-r->rm_result));
	if (r->uid_allocated) {
		uid_free(r->uid);
		r->uid_allocated = false;
	}
	r->finished = true;
	G.cleaning--;
	if (r->released)
		run_close(r);
}

/* After the report: the run's cgroups (parked for a later run or removed;
 * killing again while one is not empty), then its scratch dir on the
 * thread pool. Its uid stays taken until both are gone. */
static void clean_up(struct local_run *r)
{
	if (r->rm_queued)
		return;
	if (!r->cg_done) {
		if (uh_cg_release(r->run_id) == -EBUSY && r->cg_tries++ < CG_RETRIES) {
			uh_cg_kill(r->run_id);
			uv_timer_start(&r->wait_timer, on_wait_timer, CG_RETRY_MS, 0);
			return;
		}
		if (r->cg_tries > CG_RETRIES)
			uh_warn("backend=local run=%s: a cgroup of the run stays busy after %d kills", r->run_id,
			        CG_RETRIES);
		r->cg_done = true;
	}
	uv_timer_stop(&r->wait_timer);
	r->rm_queued = true;
	r->rm_work.data = r;
	if (G.ready && G.root && strcmp(G.root, r->root) == 0 && G.npool < POOL_MAX) {
		/* Parking is a few bounded calls (it reads at most three entries
		 * of a dir): done here, it spares the hand-off to a pool thread
		 * and back. A dir it refuses is removed on the pool. */
		uint32_t slot = G.pool_next++;
		char name[32];
		slot_name(slot, name, sizeof(name));
		if (local_scratch_park(r->root, r->run_id, name) == 0) {
			G.pool[G.npool++] = slot;
			r->rm_result = 0;
			rm_done(&r->rm_work, 0);
			return;
		}
	}
	if (uv_queue_work(r->loop, &r->rm_work, rm_work, rm_done)) {
		rm_work(&r->rm_work);
		rm_done(&r->rm_work, 0);
	}
}

/* Move the run towards its end; called whenever something it waits on
 * happens. Order: channel at EOF, init reaped (reap()), finished() (init
 * was PID 1 of the run's namespace: the kernel had killed and reaped every
 * other process of it before init's own exit completed), then clean_up(). */
static void advance(struct local_run *r)
{
	if (!r->reaped)
		return;
	if (r->finishing) {
		clean_up(r); /* a cgroup retry */
		return;
	}
	uv_timer_stop(&r->wait_timer);
	r->finishing = true;
	G.cleaning++;
	struct uh_run_result res;
	make_result(r, &res);
	if (r->h && !r->released)
		r->h->host->finished(r->h, &res); /* may release the handle */
	clean_up(r);
}

/* ---- spawning ---- */

struct spawn_arg {
	int fds[UH_INIT_FD_CGROUP + UH_CG_MAX]; /* fds[i] becomes descriptor i */
	int nfds;
	int init_fd;
	char *const *argv;
	char *const *envp;
	volatile int err;
};

/* The clone child: it shares the daemon's memory until execveat, so it only
 * makes raw system calls (no allocation, no locks, no glibc state; errno is
 * the one glibc word it touches, in the suspended parent's TLS). Signals
 * stay blocked through the exec; uhub-init sets its own. */
__attribute__((noinline, no_sanitize("address", "undefined"))) static int spawn_child(void *p)
{
	struct spawn_arg *a = p;
	int fds[UH_INIT_FD_CGROUP + UH_CG_MAX];
	int n = a->nfds, init_fd = a->init_fd;
	long rv;
	/* Lift every source out of the target range 0..n-1 before placing. */
	if (init_fd < n) {
		if ((rv = syscall(SYS_fcntl, init_fd, F_DUPFD_CLOEXEC, n)) < 0)
			goto fail;
		init_fd = (int)rv;
	}
	for (int i = 0; i < n; i++) {
		fds[i] = a->fds[i];
		if (fds[i] < n) {
			if ((rv = syscall(SYS_fcntl, fds[i], F_DUPFD_CLOEXEC, n)) < 0)
				goto fail;
			fds[i] = (int)rv;
		}
	}
	for (int i = 0; i < n; i++)
		if (syscall(SYS_dup3, fds[i], i, 0) < 0)
			goto fail;
	syscall(SYS_execveat, init_fd, "", a->argv, a->envp, AT_EMPTY_PATH);
fail:
	a->err = errno ? errno : EINVAL;
	syscall(SYS_exit, 127);
	return 127;
}

static pid_t spawn_init(struct spawn_arg *a, bool net_none)
{
	int flags = CLONE_VM | CLONE_VFORK | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | SIGCHLD;
	if (net_none)
		flags |= CLONE_NEWNET;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid_t pid = clone(spawn_child, (char *)G.stack + sysconf(_SC_PAGESIZE) + SPAWN_STACK, flags, a);
	int e = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = e;
	return pid;
}

/* ---- start ---- */

static bool env_has(const json_t *env, const struct uh_run_spec *spec, const char *name, bool secrets_only)
{
	for (size_t i = 0; i < spec->n_secrets; i++)
		if (spec->secrets[i].name && strcmp(spec->secrets[i].name, name) == 0)
			return true;
	return !secrets_only && env && json_object_get(env, name);
}

static int env_error(struct uh_error *err, const char *name, const char *why)
{
	char f[128];
	snprintf(f, sizeof(f), "env.%s", name);
	return uh_error_set(err, UH_E_INVALID_REQUEST, f, "environment variable '%s' %s", name, why);
}

static int build_env(const struct uh_run_spec *spec, const char *scratch, struct strv *envp, struct uh_error *err)
{
	const json_t *env = spec->env;
	if (env && !json_is_object(env))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "env", "'env' must be an object of strings");
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)env, key, v)
	{
		const char *why = local_env_name_refused(key, true);
		if (!why && (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)))
			why = "must be a string without NUL bytes";
		if (why)
			return env_error(err, key, why);
	}
	for (size_t i = 0; i < spec->n_secrets; i++) {
		const struct uh_secret_env *s = &spec->secrets[i];
		const char *why = local_env_name_refused(s->name, false);
		if (!why && (!s->value || memchr(s->value, 0, s->value_len)))
			why = "has a secret value that is missing or holds a NUL byte";
		if (why)
			return env_error(err, s->name ? s->name : "", why);
	}

	strv_push(envp, "PATH=/usr/local/bin:/usr/bin:/bin");
	strv_pushf(envp, "HOME=%s/home", scratch);
	strv_pushf(envp, "TMPDIR=%s/tmp", scratch);
	if (!env_has(env, spec, "LANG", false))
		strv_push(envp, "LANG=C.UTF-8");
	json_object_foreach((json_t *)env, key, v)
	{
		if (!env_has(NULL, spec, key, true)) /* a secret of the same name wins */
			strv_push_env(envp, key, json_string_value(v), json_string_length(v));
	}
	for (size_t i = 0; i < spec->n_secrets; i++)
		strv_push_env(envp, spec->secrets[i].name, spec->secrets[i].value, spec->secrets[i].value_len);
	if (envp->oom)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory building the environment");
	return 0;
}

static int resolve_user(const struct uh_config *cfg, struct uh_error *err)
{
	if (!cfg->local.user) {
		G.fixed_user = false;
		return 0;
	}
	if (G.fixed_user && G.user_name && strcmp(G.user_name, cfg->local.user) == 0)
		return 0;
	struct passwd *pw = getpwnam(cfg->local.user);
	if (!pw)
		return uh_error_set(err, UH_E_INVALID_CONFIG, "local.user", "'local.user' '%s' is not a known user",
		                    cfg->local.user);
	if (pw->pw_uid == 0 || pw->pw_gid == 0)
		return uh_error_set(err, UH_E_INVALID_CONFIG, "local.user",
		                    "'local.user' '%s' must not be root (uid and gid 0 are refused)", cfg->local.user);
	char *name = strdup(cfg->local.user);
	if (!name)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	free(G.user_name);
	G.user_name = name;
	G.user_uid = pw->pw_uid;
	G.user_gid = pw->pw_gid;
	G.fixed_user = true;
	return 0;
}

/* The resolved work root (a copy for the run), checked once per configured
 * value and again whenever it has gone missing. */
static int work_root(const struct uh_config *cfg, char **out, struct uh_error *err)
{
	const char *conf = cfg->local.work_root ? cfg->local.work_root : "";
	if (!G.root_conf || strcmp(G.root_conf, conf) != 0 || access(G.root, X_OK) != 0) {
		char *real = NULL;
		int rc = local_work_root(conf, &real, err);
		if (rc)
			return rc;
		char *c = strdup(conf);
		if (!c) {
			free(real);
			return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
		}
		pool_drop(); /* they live in the old root */
		free(G.root_conf);
		free(G.root);
		G.root_conf = c;
		G.root = real;
	}
	*out = strdup(G.root);
	return *out ? 0 : uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
}

static int local_start(struct uh_run_handle *h, const struct uh_run_spec *spec, struct uh_error *err)
{
	struct local_handle *lh = UH_HANDLE_CAST(struct local_handle, h, &uh_backend_local);
	const struct uh_config *cfg = h->cfg;
	if (!G.ready || G.unavailable[0])
		return uh_error_set(err, UH_E_UNAVAILABLE, "backend_unavailable",
		                    "the local backend is unavailable: %s",
		                    G.ready ? G.unavailable : "not initialised");
	if (!local_safe_name(h->run_id))
		return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "run id '%s' is not usable as a directory name",
		                    h->run_id);

	struct local_conf conf;
	int rc = local_conf_parse(cfg, spec->config, &conf, err);
	if (rc)
		return rc;
	rc = resolve_user(cfg, err);
	if (rc)
		return rc;

	struct local_run *r = calloc(1, sizeof(*r));
	if (!r)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory starting run '%s'", h->run_id);
	r->loop = h->loop;
	r->chan = r->pidfd = -1;
	snprintf(r->run_id, sizeof(r->run_id), "%s", h->run_id);

	int exe_fd = -1, chan[2] = {-1, -1}, cgfds[UH_CG_MAX], ncg = 0;
	struct strv argv = {0}, envp = {0};
	bool scratch_made = false, cg_made = false;
	char scratch[PATH_MAX];

	/* The file checked is the file executed: exe_fd goes to the child. */
	rc = local_check_command(cfg, spec->command, &exe_fd, UH_E_FORBIDDEN, "not_whitelisted", err);
	if (rc)
		goto fail;
	r->argv0 = strdup(json_string_value(json_array_get(spec->command, 0)));

	uid_t uid;
	gid_t gid;
	if (G.fixed_user) {
		uid = G.user_uid;
		gid = G.user_gid;
	} else {
		uint32_t u = 0;
		int e = uid_alloc(cfg->local.uid_min, cfg->local.uid_max, &u);
		if (e) {
			rc = uh_error_set(
			    err, UH_E_UNAVAILABLE, "backend_unavailable", "no free uid in local.uid_range [%u, %u]: %s",
			    cfg->local.uid_min, cfg->local.uid_max,
			    e == -EAGAIN ? "all in use (by runs of this or another uhub on this host)" : strerror(-e));
			goto fail;
		}
		uid = gid = u;
		r->uid = u;
		r->uid_allocated = true;
	}
	if (uid == 0 || gid == 0) {
		rc = uh_error_set(err, UH_E_FORBIDDEN, NULL, "refusing to run as uid or gid 0");
		goto fail;
	}

	rc = work_root(cfg, &r->root, err);
	if (rc)
		goto fail;
	if (snprintf(scratch, sizeof(scratch), "%s/%s", r->root, r->run_id) >= (int)sizeof(scratch)) {
		rc = uh_error_set(err, UH_E_INTERNAL, NULL, "work root path too long");
		goto fail;
	}
	rc = scratch_take(r, uid, gid, err);
	if (rc)
		goto fail;
	scratch_made = true;

	rc = build_env(spec, scratch, &envp, err);
	if (rc)
		goto fail;

	/* Limits: the job's, else the server's caps (a run is never unbounded). */
	struct uh_cg_limits lim = {
	    .pids_max = cfg->local.pids_limit,
	    .mem_bytes = conf.mem_bytes ? conf.mem_bytes : cfg->guardrails.max_mem_bytes,
	    .cpu_milli = conf.cpu_milli ? conf.cpu_milli : cfg->guardrails.max_cpu_milli,
	};
	rc = uh_cg_create(r->run_id, &lim, cgfds, &ncg, err);
	if (rc)
		goto fail;
	cg_made = true;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, chan)) {
		rc = uh_error_set(err, UH_E_INTERNAL, NULL, "cannot create the run's channel: %s", strerror(errno));
		goto fail;
	}

	strv_push(&argv, UH_INIT_NAME);
	strv_push(&argv, "local");
	strv_pushf(&argv, "run=%s", r->run_id);
	strv_pushf(&argv, "uid=%u", (unsigned)uid);
	strv_pushf(&argv, "gid=%u", (unsigned)gid);
	strv_pushf(&argv, "cwd=%s", conf.has_workdir ? conf.workdir : scratch);
	strv_pushf(&argv, "keep=%s", scratch);
	strv_pushf(&argv, "nofile=%d", RUN_NOFILE);
	strv_pushf(&argv, "fsize=%lld", (long long)RUN_FSIZE);
	strv_pushf(&argv, "cg=%d", ncg);
	if (conf.net_none)
		strv_push(&argv, "net=none");
	strv_push(&argv, "--");
	for (size_t i = 0; i < json_array_size(spec->command); i++)
		strv_push(&argv, json_string_value(json_array_get(spec->command, i)));
	if (argv.oom || !r->argv0) {
		rc = uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory building the command line");
		goto fail;
	}

	/* Watch the channel before the spawn: less can fail once the run exists. */
	if (uv_poll_init(r->loop, &r->chan_poll, chan[0])) {
		rc = uh_error_set(err, UH_E_INTERNAL, NULL, "cannot watch the run's channel");
		goto fail;
	}
	r->chan_poll.data = r;
	uv_timer_init(r->loop, &r->kill_timer);
	uv_timer_init(r->loop, &r->wait_timer);
	r->kill_timer.data = r->wait_timer.data = r;

	struct spawn_arg a = {.init_fd = G.init_fd, .argv = argv.v, .envp = envp.v};
	a.fds[UH_INIT_FD_STDIN] = G.null_fd;
	a.fds[UH_INIT_FD_STDOUT] = G.null_fd;
	a.fds[UH_INIT_FD_STDERR] = G.null_fd;
	a.fds[UH_INIT_FD_EXEC] = exe_fd;
	a.fds[UH_INIT_FD_CHAN] = chan[1];
	a.fds[UH_INIT_FD_LIFELINE] = G.life_r;
	for (int i = 0; i < ncg; i++)
		a.fds[UH_INIT_FD_CGROUP + i] = cgfds[i];
	a.nfds = UH_INIT_FD_CGROUP + ncg;

	pid_t pid = spawn_init(&a, conf.net_none);
	int spawn_errno = errno;
	strv_free(&envp); /* wipes the secrets */
	strv_free(&argv);
	if (pid < 0) {
		rc = uh_error_set(err, UH_E_INTERNAL, NULL, "cannot create the run's process: %s",
		                  strerror(spawn_errno));
		goto fail;
	}
	if (a.err) {
		siginfo_t si;
		waitid(P_PID, (id_t)pid, &si, WEXITED);
		rc = uh_error_set(err, UH_E_INTERNAL, NULL, "cannot execute uhub-init: %s", strerror(a.err));
		goto fail;
	}

	/* The daemon keeps its end of the channel only. */
	close(chan[1]);
	close(exe_fd);
	for (int i = 0; i < ncg; i++)
		close(cgfds[i]);
	r->pid = pid;
	r->chan = chan[0];
	uv_poll_start(&r->chan_poll, UV_READABLE, on_chan);

	/* Backstop: the supervisor stops runs at their timeout; if it ever
	 * does not, the run is killed anyway a little after timeout + grace. */
	if (spec->timeout_s > 0) {
		r->kill_at = uv_now(r->loop) + (uint64_t)spec->timeout_s * 1000 + (uint64_t)cfg->local.grace_s * 1000 +
		             BACKSTOP_SLACK_MS;
		uv_timer_start(&r->kill_timer, on_kill_timer, r->kill_at - uv_now(r->loop), 0);
	}

	r->h = h;
	lh->run = r;
	snprintf(h->external_id, sizeof(h->external_id), "pid:%d", (int)pid);
	h->host->persist(h);
	return 0;

fail:
	if (exe_fd >= 0)
		close(exe_fd);
	for (int i = 0; i < ncg; i++)
		close(cgfds[i]);
	for (int i = 0; i < 2; i++)
		if (chan[i] >= 0)
			close(chan[i]);
	strv_free(&envp);
	strv_free(&argv);
	if (cg_made)
		uh_cg_remove(r->run_id);
	if (scratch_made)
		local_scratch_remove(r->root, r->run_id);
	r->h = NULL; /* backend.c frees the handle itself */
	run_close(r);
	return rc;
}

/* ---- stop, release ---- */

static void local_stop(struct uh_run_handle *h, int64_t grace_ms)
{
	struct local_handle *lh = UH_HANDLE_CAST(struct local_handle, h, &uh_backend_local);
	struct local_run *r = lh->run;
	if (!r || r->reaped)
		return;
	if (!r->stop_sent && grace_ms > 0) {
		r->stop_sent = true;
		send_signal(r, SIGTERM); /* init forwards it to every process */
	}
	if (grace_ms <= 0) {
		uv_timer_stop(&r->kill_timer);
		on_kill_timer(&r->kill_timer);
		return;
	}
	uint64_t at = uv_now(r->loop) + (uint64_t)grace_ms;
	if (r->kill_at == 0 || at < r->kill_at) {
		r->kill_at = at;
		uv_timer_start(&r->kill_timer, on_kill_timer, (uint64_t)grace_ms, 0);
	}
}

static void local_release(struct uh_run_handle *h)
{
	struct local_handle *lh = UH_HANDLE_CAST(struct local_handle, h, &uh_backend_local);
	struct local_run *r = lh->run;
	if (!r) {
		free(h);
		return;
	}
	r->released = true;
	if (!r->finishing) {
		/* Released before its end (the contract says after finished();
		 * be safe anyway): nothing of the run may outlive it. */
		if (!r->reaped) {
			send_signal(r, SIGKILL);
			siginfo_t si;
			waitid(P_PID, (id_t)r->pid, &si, WEXITED);
			r->reaped = true;
		}
		uh_cg_destroy_sync(r->run_id, 3000);
		local_scratch_remove(r->root, r->run_id);
		if (r->uid_allocated) {
			uid_free(r->uid);
			r->uid_allocated = false;
		}
		r->finishing = r->finished = true;
	}
	if (!r->finished)
		return; /* rm_done closes it */
	run_close(r);
}

/* ---- validate ---- */

static int local_validate(const struct uh_config *cfg, const json_t *config, const json_t *command,
                          const json_t *env_names, struct uh_error *err)
{
	struct local_conf conf;
	int r = local_conf_parse(cfg, config, &conf, err);
	if (r)
		return r;
	r = local_check_command(cfg, command, NULL, UH_E_INVALID_REQUEST, "command", err);
	if (r)
		return r;
	if (env_names && !json_is_object(env_names))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "env", "'env' must be an object");
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)env_names, key, v)
	{
		const char *why = local_env_name_refused(key, false);
		if (why) {
			char f[128];
			snprintf(f, sizeof(f), "env.%s", key);
			return uh_error_set(err, UH_E_INVALID_REQUEST, f, "environment variable '%s' %s", key, why);
		}
	}
	return 0;
}

/* ---- init, shutdown, settle ---- */

static int open_init_binary(char *why, size_t whylen)
{
	char path[PATH_MAX];
	const char *env = getenv("UHUB_INIT_PATH");
	if (env && *env) {
		snprintf(path, sizeof(path), "%s", env);
	} else {
		ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
		if (n <= 0) {
			snprintf(why, whylen, "cannot find the daemon's own path: %s", strerror(errno));
			return -1;
		}
		path[n] = 0;
		char *slash = strrchr(path, '/');
		if (!slash || (size_t)(slash - path) + sizeof("/" UH_INIT_NAME) > sizeof(path)) {
			snprintf(why, whylen, "unusable daemon path '%s'", path);
			return -1;
		}
		memcpy(slash, "/" UH_INIT_NAME, sizeof("/" UH_INIT_NAME));
	}
	int fd = open(path, O_PATH | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st)) {
		snprintf(why, whylen, "cannot open '%s' (set UHUB_INIT_PATH): %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)) || !(st.st_mode & S_IXUSR)) {
		snprintf(why, whylen, "'%s' must be an executable file owned by root, not writable by group or others",
		         path);
		close(fd);
		return -1;
	}
	return fd;
}

struct sweep_ctx {
	char **names;
	size_t n, cap;
};

/* Leftovers of a previous daemon in the work root: a dir owned by a uid
 * runs get, named like a run. Their cgroups go too (the lifeline has
 * normally killed their processes already). */
static void sweep(const struct uh_config *cfg, const char *root)
{
	DIR *d = opendir(root);
	if (!d)
		return;
	struct sweep_ctx s = {0};
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!local_safe_name(e->d_name))
			continue;
		int64_t owner = local_scratch_owner(root, e->d_name);
		bool ours = owner > 0 && ((owner >= cfg->local.uid_min && owner <= cfg->local.uid_max) ||
		                          (G.fixed_user && owner == (int64_t)G.user_uid));
		if (owner == 0 && strncmp(e->d_name, "pool-", 5) == 0)
			ours = true; /* a parked dir of an earlier daemon */
		if (!ours)
			continue;
		if (s.n == s.cap) {
			size_t cap = s.cap ? s.cap * 2 : 16;
			char **v = realloc(s.names, cap * sizeof(*v));
			if (!v)
				break;
			s.names = v;
			s.cap = cap;
		}
		if (!(s.names[s.n] = strdup(e->d_name)))
			break;
		s.n++;
	}
	closedir(d);
	for (size_t i = 0; i < s.n; i++) {
		if (uh_cg_destroy_sync(s.names[i], 5000))
			uh_warn("backend=local run=%s: leftover cgroup still busy after kill", s.names[i]);
		if (local_scratch_remove(root, s.names[i]))
			uh_warn("backend=local run=%s: cannot remove leftover scratch dir", s.names[i]);
		free(s.names[i]);
	}
	free(s.names);
}

static void local_shutdown(void);

static int local_init(const struct uh_config *cfg, uv_loop_t *loop, struct uh_error *err)
{
	if (G.ready)
		return 0;
	if (cfg->local.uid_min == 0 || cfg->local.uid_min > cfg->local.uid_max)
		return uh_error_set(err, UH_E_INVALID_CONFIG, "local.uid_range",
		                    "'local.uid_range' must be [min, max] with 0 < min <= max");
	int r = resolve_user(cfg, err);
	if (r)
		return r;
	G.ready = true;
	G.unavailable[0] = 0;
	G.loop = loop;

	if (geteuid() != 0) {
		snprintf(G.unavailable, sizeof(G.unavailable), "the daemon does not run as root");
		uh_warn("backend=local: unavailable: %s", G.unavailable);
		return 0;
	}
	G.init_fd = open_init_binary(G.unavailable, sizeof(G.unavailable));
	if (G.init_fd < 0) {
		uh_warn("backend=local: unavailable: %s", G.unavailable);
		return 0;
	}
	int life[2];
	if (pipe2(life, O_CLOEXEC) || (G.null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
		r = uh_error_set(err, UH_E_INTERNAL, NULL, "local backend: %s", strerror(errno));
		local_shutdown();
		return r;
	}
	G.life_r = life[0];
	G.life_w = life[1];
	uid_claim_open(); /* whatever local.user is now: a reload may unset it */
	long page = sysconf(_SC_PAGESIZE);
	G.stack = mmap(NULL, (size_t)page + SPAWN_STACK, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (G.stack == MAP_FAILED || mprotect(G.stack, (size_t)page, PROT_NONE)) {
		if (G.stack == MAP_FAILED)
			G.stack = NULL;
		r = uh_error_set(err, UH_E_INTERNAL, NULL, "local backend: cannot map a spawn stack");
		local_shutdown();
		return r;
	}

	const char *warn = uh_cg_setup();
	if (warn)
		uh_warn("backend=local: %s (cgroups: %s)", warn, uh_cg_describe());

	char *root = NULL;
	r = work_root(cfg, &root, err);
	if (r) {
		local_shutdown();
		return r;
	}
	sweep(cfg, root);
	free(root);
	uh_cg_sweep_empty(60);
	return 0;
}

static void local_shutdown(void)
{
	/* Runs already reported may still be cleaning up: let them finish
	 * (bounded: CG_RETRIES cgroup retries, then one directory walk). */
	while (G.cleaning > 0 && G.loop)
		uv_run(G.loop, UV_RUN_ONCE);
	G.loop = NULL;
	pool_drop();
	uh_cg_pool_drop();
	int *fds[] = {&G.init_fd, &G.null_fd, &G.life_r, &G.life_w, &G.claim_fd};
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
	if (G.stack)
		munmap(G.stack, (size_t)sysconf(_SC_PAGESIZE) + SPAWN_STACK);
	G.stack = NULL;
	free(G.user_name);
	G.user_name = NULL;
	G.fixed_user = false;
	free(G.root_conf);
	free(G.root);
	G.root_conf = G.root = NULL;
	free(G.used);
	G.used = NULL;
	G.nused = G.capused = 0;
	G.ready = false;
}

/* Is /proc/PID the uhub-init of this run (so a recycled pid is left alone)? */
static bool is_run_init(pid_t pid, const char *run_id)
{
	char p[64], buf[256];
	snprintf(p, sizeof(p), "/proc/%d/cmdline", (int)pid);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	char want[96];
	int wl = snprintf(want, sizeof(want), "%s%clocal%crun=%s", UH_INIT_NAME, 0, 0, run_id);
	return wl > 0 && n > wl && memcmp(buf, want, (size_t)wl) == 0 && buf[wl] == 0;
}

static bool pid_running(pid_t pid)
{
	char p[64], buf[512];
	snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	const char *rp = strrchr(buf, ')');
	return rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

static int local_settle(const struct uh_config *cfg, const char *run_id, const char *external_id, struct uh_error *err)
{
	if (!run_id || !local_safe_name(run_id))
		return uh_error_set(err, UH_E_INVALID_REQUEST, NULL, "run id '%s' is not a local run id",
		                    run_id ? run_id : "");
	pid_t pid = 0;
	if (external_id && strncmp(external_id, "pid:", 4) == 0)
		pid = (pid_t)strtol(external_id + 4, NULL, 10);
	bool pid_left = false;
	if (pid > 1 && is_run_init(pid, run_id)) {
		kill(pid, SIGKILL); /* its namespace goes with it */
		struct timespec nap = {0, 2 * 1000 * 1000};
		for (int i = 0; i < 2500 && pid_running(pid); i++)
			nanosleep(&nap, NULL);
		pid_left = pid_running(pid);
	}
	int cg = uh_cg_destroy_sync(run_id, 10000);
	char *root = realpath(cfg->local.work_root, NULL);
	int rm = root ? local_scratch_remove(root, run_id) : 0;
	free(root);
	if (pid_left || cg || rm)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "run '%s' not fully settled:%s%s%s", run_id,
		                    pid_left ? " its init survives SIGKILL;" : "", cg ? " its cgroups are busy;" : "",
		                    rm ? " its scratch dir cannot be removed" : "");
	return 0;
}

const struct uh_backend_ops uh_backend_local = {
    .name = "local",
    .caps = UH_CAP_CANCEL | UH_CAP_STREAMS_LOGS | UH_CAP_EXIT_CODE,
    .state_size = sizeof(struct local_handle),
    .fds_per_run = 1, /* the channel */
    .init = local_init,
    .shutdown = local_shutdown,
    .validate = local_validate,
    .start = local_start,
    .stop = local_stop,
    .release = local_release,
    .settle = local_settle,
};
