/* The uhub daemon: start-up, supervisor, recovery, shutdown. */
#ifndef UH_DAEMON_DAEMON_H
#define UH_DAEMON_DAEMON_H

/* `uhub serve [--config FILE] [--listen ADDR] [--db URL]`; argv[0] is "serve". */
int uh_daemon_main(int argc, char **argv);

#endif
