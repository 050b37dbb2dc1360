/* See tap.h. */
#include "tap.h"

int uh_tap_failures, uh_tap_checks;

int uh_tap_done(void)
{
	fprintf(stderr, "%d checks, %d failed\n", uh_tap_checks, uh_tap_failures);
	return uh_tap_failures ? 1 : 0;
}
