// SPDX-License-Identifier: MIT
/*
 * short_lived: one strdup from site_short, then exit at once, for the system-wide tests of
 * processes that are gone before the profiler can read their /proc/PID/maps.
 */
#include <stdlib.h>
#include <string.h>

char *volatile kept;

__attribute__((noinline, noclone)) static void site_short(const char *s)
{
	kept = strdup(s);
}

int main(int argc, char **argv)
{
	site_short(argc > 1 ? argv[1] : "a string that short_lived keeps until it exits");
	return kept ? 0 : 1;
}
