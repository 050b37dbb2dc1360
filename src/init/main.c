/* uhub-init: the small static PID 1 of every run uhub starts itself.
 *
 *   uhub-init local ...      Local backend: set up the run's namespaces,
 *                            limits and identity, then run the job (local.c)
 *
 * Modes share the supervision loop below: start the job, forward its
 * output to the daemon and polite signals to the whole PID namespace, reap
 * every zombie, report how the main process ended, exit (the kernel then
 * kills whatever is left in the namespace). libc only: no NSS, no allocation after start-up. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include "backend/local_proto.h"
#include "init/init.h"

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

/* One record on the channel: the kind byte is buf[0], the payload follows.
 * The channel is blocking: a daemon slow to read holds init (and, through
 * the full pipes, the job) back, as a pipe would. Fails once the daemon is
 * gone. */
static int send_rec(int chan, char *buf, size_t n)
{
	for (;;) {
		ssize_t w = send(chan, buf, n, MSG_NOSIGNAL);
		if (w == (ssize_t)n)
			return 0;
		if (w < 0 && errno == EINTR)
			continue;
		return -1;
	}
}

/* init's own messages go to the run's stderr. */
static void say(int chan, const char *a, const char *b, const char *c)
{
	char line[512];
	size_t n = 1;
	const char *parts[] = {"uhub-init: ", a, b, c, "\n"};
	line[0] = UH_INIT_MSG_STDERR;
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		if (!parts[i])
			continue;
		size_t l = strlen(parts[i]);
		if (l > sizeof(line) - n)
			l = sizeof(line) - n;
		memcpy(line + n, parts[i], l);
		n += l;
	}
	if (chan < 0 || send_rec(chan, line, n))
		write_all(STDERR_FILENO, line + 1, n - 1); /* started by hand */
}

void uh_init_status_write(int chan, int kind, int code, int err)
{
	if (chan < 0)
		return;
	struct uh_init_status st = {.magic = UH_INIT_STATUS_MAGIC, .kind = kind, .code = code, .err = err};
	char rec[1 + sizeof(st)];
	rec[0] = UH_INIT_MSG_STATUS;
	memcpy(rec + 1, &st, sizeof(st));
	send_rec(chan, rec, sizeof(rec));
}

noreturn void uh_init_fail(int chan, int step, int err, const char *what)
{
	say(chan, what, ": ", strerror(err));
	uh_init_status_write(chan, UH_INIT_SETUP_FAILED, step, err);
	_exit(UH_INIT_EXIT_SETUP);
}

/* Signals init acts on; all stay blocked and arrive through a signalfd. */
static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

/* The job's output on its way to the daemon: one record per read, of at
 * most `chunk` bytes (a record must fit the socket's send buffer whole). */
static char obuf[1 + UH_INIT_MSG_MAX];
static size_t chunk = UH_INIT_MSG_MAX;

/* Forward one read of a job pipe; false at EOF (or a read error). A daemon
 * gone takes the run down. */
static bool forward(int chan, int fd, int kind)
{
	for (;;) {
		ssize_t n = read(fd, obuf + 1, chunk);
		if (n > 0) {
			obuf[0] = (char)kind;
			if (send_rec(chan, obuf, 1 + (size_t)n)) {
				/* The daemon closed its end (or no memory is left
				 * for a record): nobody to tell. */
				kill(-1, SIGKILL);
				_exit(UH_INIT_EXIT_LIFELINE);
			}
			return true;
		}
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 && errno == EAGAIN;
	}
}

noreturn void uh_init_supervise(int exec_fd, char **argv, char **envp, int chan, int lifeline_fd)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, UH_INIT_SIG_HARDSTOP);
	for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
		sigaddset(&set, forwarded[i]);
	int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		uh_init_fail(chan, UH_INIT_STEP_SIGNALS, errno, "signalfd");

	/* A stop that arrived during set-up: do not start the job at all. */
	struct signalfd_siginfo early;
	while (read(sfd, &early, sizeof(early)) == (ssize_t)sizeof(early)) {
		int sig = (int)early.ssi_signo;
		if (sig != SIGCHLD) {
			uh_init_status_write(chan, UH_INIT_SIGNALED, sig == UH_INIT_SIG_HARDSTOP ? SIGKILL : sig, 0);
			_exit(UH_INIT_EXIT_TOLD);
		}
	}

	/* A record larger than the send buffer fails (EMSGSIZE): hosts that
	 * lowered net.core.wmem_default get smaller records. */
	int sndbuf = 0;
	socklen_t sl = sizeof(sndbuf);
	if (getsockopt(chan, SOL_SOCKET, SO_SNDBUF, &sndbuf, &sl) == 0 && sndbuf > 0 && (size_t)sndbuf < chunk + 512)
		chunk = sndbuf > 1024 ? (size_t)sndbuf - 512 : 512;

	/* The job's stdout and stderr: pipes init reads (non-blocking). */
	int out[2], err[2];
	if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
		uh_init_fail(chan, UH_INIT_STEP_FORK, errno, "pipe");
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	fcntl(err[0], F_SETFL, O_NONBLOCK);

	/* vfork: the child shares our memory until it execs, so a failed exec
	 * is reported through exec_err without a pipe. Its descriptor table is
	 * its own: the dup2s below do not touch ours. */
	volatile int exec_err = 0;
	pid_t job = vfork();
	if (job == 0) {
		sigset_t none;
		sigemptyset(&none);
		if (dup2(out[1], STDOUT_FILENO) < 0 || dup2(err[1], STDERR_FILENO) < 0) {
			exec_err = errno;
			_exit(UH_INIT_EXIT_EXEC);
		}
		sigprocmask(SIG_SETMASK, &none, NULL);
		syscall(SYS_execveat, exec_fd, "", argv, envp, AT_EMPTY_PATH);
		exec_err = errno ? errno : ENOEXEC;
		_exit(UH_INIT_EXIT_EXEC);
	}
	if (job < 0)
		uh_init_fail(chan, UH_INIT_STEP_FORK, errno, "fork");
	close(out[1]);
	close(err[1]);
	if (exec_err) {
		int e = exec_err;
		say(chan, "cannot execute '", argv[0], "'");
		waitpid(job, NULL, 0);
		uh_init_status_write(chan, UH_INIT_EXEC_FAILED, 0, e);
		_exit(UH_INIT_EXIT_EXEC);
	}
	close(exec_fd);

	struct pollfd pfd[4] = {{.fd = sfd, .events = POLLIN},
	                        {.fd = lifeline_fd, .events = POLLIN},
	                        {.fd = out[0], .events = POLLIN},
	                        {.fd = err[0], .events = POLLIN}};
	const int kinds[4] = {0, 0, UH_INIT_MSG_STDOUT, UH_INIT_MSG_STDERR};
	for (;;) {
		int n = ppoll(pfd, 4, NULL, NULL);
		if (n < 0 && errno != EINTR) {
			int e = errno;
			kill(-1, SIGKILL);
			uh_init_status_write(chan, UH_INIT_SETUP_FAILED, UH_INIT_STEP_SUPERVISE, e);
			_exit(UH_INIT_EXIT_SUPERVISE);
		}
		if (lifeline_fd >= 0 && pfd[1].revents) {
			/* Nobody ever writes the lifeline: any event is EOF, the
			 * daemon is gone. Take the whole namespace down. */
			kill(-1, SIGKILL);
			uh_init_status_write(chan, UH_INIT_LIFELINE, 0, 0);
			_exit(UH_INIT_EXIT_LIFELINE);
		}
		for (int i = 2; i < 4; i++)
			if (pfd[i].fd >= 0 && pfd[i].revents && !forward(chan, pfd[i].fd, kinds[i])) {
				close(pfd[i].fd);
				pfd[i].fd = -1; /* EOF: every writer closed it */
			}
		struct signalfd_siginfo si;
		while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
			int sig = (int)si.ssi_signo;
			if (sig == UH_INIT_SIG_HARDSTOP)
				kill(-1, SIGKILL); /* the job too: it reports SIGKILL */
			else if (sig != SIGCHLD)
				kill(-1, sig); /* every process but us */
		}
		/* SIGCHLD coalesces: reap until nothing is left to reap. */
		for (;;) {
			int st;
			pid_t w = waitpid(-1, &st, WNOHANG);
			if (w <= 0)
				break;
			if (w != job)
				continue;
			/* What the pipes hold now (writers left in the namespace
			 * die with us; a bounded drain). */
			for (int i = 2; i < 4; i++)
				for (int k = 0; pfd[i].fd >= 0 && k < 64; k++)
					if (!forward(chan, pfd[i].fd, kinds[i]))
						break;
			/* The kernel kills the rest of the namespace as we exit. A
			 * plain exit is told by ours (see local_proto.h). */
			if (WIFEXITED(st)) {
				if (uh_init_exit_reserved(WEXITSTATUS(st)))
					uh_init_status_write(chan, UH_INIT_EXITED, WEXITSTATUS(st), 0);
				_exit(WEXITSTATUS(st));
			}
			uh_init_status_write(chan, UH_INIT_SIGNALED, WTERMSIG(st), 0);
			_exit(UH_INIT_EXIT_TOLD);
		}
	}
}

struct mode {
	const char *name;
	int (*run)(int argc, char **argv, char **envp);
};

static const struct mode modes[] = {
    {"local", uh_init_local},
};

int main(int argc, char **argv, char **envp)
{
	/* Start from a known signal state whatever the spawner left: all
	 * blocked (they are read from a signalfd), all dispositions default
	 * (an inherited SIG_IGN would otherwise reach the job). */
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			sigaction(s, &dfl, NULL);

	if (argc >= 2)
		for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
			if (strcmp(argv[1], modes[i].name) == 0)
				return modes[i].run(argc, argv, envp);
	uh_init_fail(UH_INIT_FD_CHAN, UH_INIT_STEP_ARGS, EINVAL, "usage: uhub-init MODE ... (modes: local)");
}
