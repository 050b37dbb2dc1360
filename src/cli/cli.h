/* The uhub command-line client (SPEC §6). */
#ifndef UH_CLI_CLI_H
#define UH_CLI_CLI_H

/* Run a client command: argv[0] is the program, argv[1] the subcommand.
 * Returns the process exit status of SPEC §6. */
int uh_cli_main(int argc, char **argv);

#endif
