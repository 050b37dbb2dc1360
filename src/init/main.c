/* uhub-init: the small static PID 1 of every run uhub starts itself.
 *
 *   uhub-init local ...      Local backend: set up the run's namespaces,
 *                            limits and identity, then run the job (local.c)
 *
 * Modes share the supervision loop below: start the job, forward polite
 * signals to the whole PID namespace, reap every zombie, report how the main
 * process ended, exit (the kernel then kills whatever is left in the
 * namespace). libc only: no NSS, no allocation after start-up. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/signalfd.h>
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

static void say(const char *a, const char *b, const char *c)
{
	char line[512];
	size_t n = 0;
	const char *parts[] = {"uhub-init: ", a, b, c, "\n"};
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		if (!parts[i])
			continue;
		size_t l = strlen(parts[i]);
		if (l > sizeof(line) - n - 1)
			l = sizeof(line) - n - 1;
		memcpy(line + n, parts[i], l);
		n += l;
	}
	write_all(STDERR_FILENO, line, n);
}

void uh_init_status_write(int fd, int kind, int code, int err)
{
	if (fd < 0)
		return;
	struct uh_init_status st = {.magic = UH_INIT_STATUS_MAGIC, .kind = kind, .code = code, .err = err};
	write_all(fd, (const char *)&st, sizeof(st));
}

noreturn void uh_init_fail(int status_fd, int step, int err, const char *what)
{
	say(what, ": ", strerror(err));
	uh_init_status_write(status_fd, UH_INIT_SETUP_FAILED, step, err);
	_exit(111);
}

/* Signals init acts on; all stay blocked and arrive through a signalfd. */
static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

noreturn void uh_init_supervise(int exec_fd, char **argv, char **envp, int status_fd, int lifeline_fd)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
		sigaddset(&set, forwarded[i]);
	int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		uh_init_fail(status_fd, UH_INIT_STEP_SIGNALS, errno, "signalfd");

	/* A stop that arrived during set-up: do not start the job at all. */
	struct signalfd_siginfo early;
	while (read(sfd, &early, sizeof(early)) == (ssize_t)sizeof(early)) {
		if ((int)early.ssi_signo != SIGCHLD) {
			uh_init_status_write(status_fd, UH_INIT_SIGNALED, (int)early.ssi_signo, 0);
			_exit(0);
		}
	}

	/* vfork: the child shares our memory until it execs, so a failed exec
	 * is reported through exec_err without a pipe. */
	volatile int exec_err = 0;
	pid_t job = vfork();
	if (job == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		syscall(SYS_execveat, exec_fd, "", argv, envp, AT_EMPTY_PATH);
		exec_err = errno ? errno : ENOEXEC;
		_exit(127);
	}
	if (job < 0)
		uh_init_fail(status_fd, UH_INIT_STEP_FORK, errno, "fork");
	if (exec_err) {
		int e = exec_err;
		say("cannot execute '", argv[0], "'");
		waitpid(job, NULL, 0);
		uh_init_status_write(status_fd, UH_INIT_EXEC_FAILED, 0, e);
		_exit(127);
	}
	close(exec_fd);

	struct pollfd pfd[2] = {{.fd = sfd, .events = POLLIN}, {.fd = lifeline_fd, .events = POLLIN}};
	for (;;) {
		int n = ppoll(pfd, lifeline_fd >= 0 ? 2 : 1, NULL, NULL);
		if (n < 0 && errno != EINTR) {
			kill(-1, SIGKILL);
			_exit(112);
		}
		if (lifeline_fd >= 0 && pfd[1].revents) {
			/* Nobody ever writes the lifeline: any event is EOF, the
			 * daemon is gone. Take the whole namespace down. */
			kill(-1, SIGKILL);
			_exit(UH_INIT_EXIT_LIFELINE);
		}
		struct signalfd_siginfo si;
		while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
			if ((int)si.ssi_signo != SIGCHLD)
				kill(-1, (int)si.ssi_signo); /* every process but us */
		}
		/* SIGCHLD coalesces: reap until nothing is left to reap. */
		for (;;) {
			int st;
			pid_t w = waitpid(-1, &st, WNOHANG);
			if (w <= 0)
				break;
			if (w != job)
				continue;
			if (WIFEXITED(st))
				uh_init_status_write(status_fd, UH_INIT_EXITED, WEXITSTATUS(st), 0);
			else
				uh_init_status_write(status_fd, UH_INIT_SIGNALED, WTERMSIG(st), 0);
			_exit(0); /* the kernel kills the rest of the namespace */
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
	say("usage: uhub-init MODE ... (modes: local)", NULL, NULL);
	return 64;
}
