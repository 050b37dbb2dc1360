/* uhub-init internals: the pieces every mode shares (status record, the
 * PID 1 supervision loop). Mode "local" is the Local backend's run init; a
 * "container" mode (Docker: secrets on stdin, then exec) can be added beside
 * it with its own uh_init_<mode>() entry point. libc only, no NSS. */
#ifndef UH_INIT_INIT_H
#define UH_INIT_INIT_H

#include <stdnoreturn.h>

/* Send the status record on the channel `chan` (ignored if chan < 0). */
void uh_init_status_write(int chan, int kind, int code, int err);

/* Report a setup failure on the run's stderr and as the status record on
 * the channel, then exit. */
noreturn void uh_init_fail(int chan, int step, int err, const char *what);

/* Start the job (execveat(exec_fd, "", argv, envp, AT_EMPTY_PATH) in a
 * child, its stdout and stderr pipes init reads) and act as PID 1 until its
 * main process ends: forward the pipes' output on the channel, forward
 * SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1/2 to every process of the
 * namespace (UH_INIT_SIG_HARDSTOP: SIGKILL them), reap every zombie, exit:
 * with the job's exit status when it simply exited (after a status record
 * if that status is one init reserves), else after a status record with a
 * reserved status (local_proto.h). EOF or error on lifeline_fd (if >= 0), or a
 * channel that fails, means the daemon is gone: kill everything and exit.
 * Every signal must be blocked on entry. */
noreturn void uh_init_supervise(int exec_fd, char **argv, char **envp, int chan, int lifeline_fd);

int uh_init_local(int argc, char **argv, char **envp);

#endif
