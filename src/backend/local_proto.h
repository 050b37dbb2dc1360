/* The wire between the Local backend (daemon side) and uhub-init (PID 1 of
 * each Local run): fixed descriptor numbers, the argv words, and the records
 * init sends on its channel. Header only: uhub-init is a static, libc-only
 * binary and shares nothing else with the daemon.
 *
 * The channel is the only descriptor the daemon holds per run in flight (a
 * daemon limited to 20,000 descriptors runs ~19,000 runs at once): init
 * reads the job's stdout and stderr pipes itself and forwards what they
 * hold, then exits (EOF on the channel). When the job simply exited, init
 * exits with the job's exit status and sends no status record (the daemon
 * reads it when it reaps init: one wake-up fewer per run), unless that
 * status is one of init's own (below); any other end (the job killed by a
 * signal, a failed set-up or exec, the lifeline) is told by a status
 * record first. */
#ifndef UH_BACKEND_LOCAL_PROTO_H
#define UH_BACKEND_LOCAL_PROTO_H

#include <signal.h>
#include <stdint.h>

/* Descriptors uhub-init finds open when it starts (mode "local"). */
enum {
	UH_INIT_FD_STDIN = 0,    /* /dev/null (the job's stdin) */
	UH_INIT_FD_STDOUT = 1,   /* /dev/null: init writes nothing there */
	UH_INIT_FD_STDERR = 2,   /* /dev/null */
	UH_INIT_FD_EXEC = 3,     /* O_PATH fd of the checked job executable, no O_CLOEXEC */
	UH_INIT_FD_CHAN = 4,     /* init's end of the run's channel (SOCK_SEQPACKET) */
	UH_INIT_FD_LIFELINE = 5, /* read end of the daemon's lifeline: EOF = daemon gone */
	UH_INIT_FD_CGROUP = 6,   /* first of `cg=N` cgroup.procs fds, written "0" to join */
};

#define UH_INIT_MAX_CGROUP_FDS 8

/* argv of uhub-init in mode "local":
 *   uhub-init local run=ID uid=N gid=N cwd=DIR keep=DIR nofile=N fsize=N cg=N [net=none] -- ARGV...
 * `net=none`: the run is in a new, empty network namespace; init brings
 * up its loopback.
 * `keep` is a directory (the run's scratch dir) that must stay reachable when
 * /tmp and /var/tmp are replaced by private tmpfs mounts. */

/* init's own exit statuses. Each comes after a status record when the
 * channel still takes one; when it does not (the daemon closed it, or the
 * run's memory is exhausted), the daemon, seeing one of these without a
 * record, reports that init ended without a report. A job that exits with
 * one of them is therefore told by a record too, never by init's status:
 * init exits without a record only with the status of a job that exited,
 * so a lost record can never read as a job's success. */
#define UH_INIT_EXIT_SETUP     111 /* set-up failed (uh_init_fail) */
#define UH_INIT_EXIT_SUPERVISE 112 /* waiting on the job failed */
#define UH_INIT_EXIT_LIFELINE  113 /* the daemon's lifeline closed: the run was killed */
#define UH_INIT_EXIT_TOLD      114 /* the end was told by a record (the job killed by a signal) */
#define UH_INIT_EXIT_EXEC      127 /* the job could not be executed */

static inline int uh_init_exit_reserved(int code)
{
	return code == UH_INIT_EXIT_SETUP || code == UH_INIT_EXIT_SUPERVISE || code == UH_INIT_EXIT_LIFELINE ||
	       code == UH_INIT_EXIT_TOLD || code == UH_INIT_EXIT_EXEC;
}

/* Sent by the daemon to init at the end of a stop's grace: init kills every
 * other process of the run at once, forwards what their pipes still hold
 * and reports the job killed by SIGKILL. (SIGKILL to init itself would lose
 * output the pipes hold; the daemon does that only if init does not end.) */
#define UH_INIT_SIG_HARDSTOP SIGALRM

/* Channel records, one per SOCK_SEQPACKET message: a kind byte, then the
 * payload: output bytes (at most UH_INIT_MSG_MAX) or one struct
 * uh_init_status, the last record init sends (none when the job exited:
 * see above). */
enum uh_init_msg_kind {
	UH_INIT_MSG_STDOUT = 1,
	UH_INIT_MSG_STDERR = 2,
	UH_INIT_MSG_STATUS = 3,
};
#define UH_INIT_MSG_MAX 65536

#define UH_INIT_STATUS_MAGIC 0x75686931u /* "uhi1" */

enum uh_init_status_kind {
	UH_INIT_EXITED = 1,       /* code = exit status (init sends none: its own tells) */
	UH_INIT_SIGNALED = 2,     /* code = signal number */
	UH_INIT_EXEC_FAILED = 3,  /* err = errno of execveat */
	UH_INIT_SETUP_FAILED = 4, /* code = enum uh_init_step, err = errno */
	UH_INIT_LIFELINE = 5,     /* the daemon's lifeline closed: init killed the run */
};

enum uh_init_step {
	UH_INIT_STEP_ARGS = 1,
	UH_INIT_STEP_CGROUP,
	UH_INIT_STEP_MOUNT,
	UH_INIT_STEP_RLIMIT,
	UH_INIT_STEP_CREDS,
	UH_INIT_STEP_PRCTL,
	UH_INIT_STEP_CHDIR,
	UH_INIT_STEP_SIGNALS,
	UH_INIT_STEP_FORK,
	UH_INIT_STEP_NETWORK,
	UH_INIT_STEP_SUPERVISE,
};

/* The payload of the UH_INIT_MSG_STATUS record. */
struct uh_init_status {
	uint32_t magic;
	int32_t kind;
	int32_t code;
	int32_t err;
};

static inline const char *uh_init_step_name(int step)
{
	switch (step) {
	case UH_INIT_STEP_ARGS:
		return "arguments";
	case UH_INIT_STEP_CGROUP:
		return "joining cgroups";
	case UH_INIT_STEP_MOUNT:
		return "mounts";
	case UH_INIT_STEP_RLIMIT:
		return "resource limits";
	case UH_INIT_STEP_CREDS:
		return "switching user";
	case UH_INIT_STEP_PRCTL:
		return "process attributes";
	case UH_INIT_STEP_CHDIR:
		return "working directory";
	case UH_INIT_STEP_SIGNALS:
		return "signals";
	case UH_INIT_STEP_FORK:
		return "fork";
	case UH_INIT_STEP_NETWORK:
		return "network";
	case UH_INIT_STEP_SUPERVISE:
		return "supervising the job";
	default:
		return "setup";
	}
}

#endif
