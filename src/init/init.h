/* uhub-init internals: the pieces every mode shares (status record, the
 * PID 1 supervision loop). Mode "local" is the Local backend's run init; a
 * "container" mode (Docker: secrets on stdin, then exec) can be added beside
 * it with its own uh_init_<mode>() entry point. libc only, no NSS. */
#ifndef UH_INIT_INIT_H
#define UH_INIT_INIT_H

#include <stdnoreturn.h>

/* Write the fixed-size status record to `fd` (ignored if fd < 0). */
void uh_init_status_write(int fd, int kind, int code, int err);

/* Report a setup failure on stderr and on the status fd, then exit. */
noreturn void uh_init_fail(int status_fd, int step, int err, const char *what);

/* Start the job (execveat(exec_fd, "", argv, envp, AT_EMPTY_PATH) in a
 * child) and act as PID 1 until its main process ends: forward SIGTERM,
 * SIGINT and SIGHUP to every process of the namespace, reap every zombie,
 * write the status record to status_fd, exit. EOF or error on lifeline_fd
 * (if >= 0) means the daemon is gone: kill everything and exit. Every signal
 * must be blocked on entry. */
noreturn void uh_init_supervise(int exec_fd, char **argv, char **envp, int status_fd, int lifeline_fd);

int uh_init_local(int argc, char **argv, char **envp);

#endif
