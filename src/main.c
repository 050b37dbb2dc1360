/* uhub: `uhub serve` runs the daemon; every other subcommand is the client. */
#include <string.h>

#include "cli/cli.h"
#include "daemon/daemon.h"

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "serve") == 0)
		return uh_daemon_main(argc - 1, argv + 1);
	return uh_cli_main(argc, argv);
}
