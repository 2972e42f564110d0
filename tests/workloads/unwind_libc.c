/* SPDX-License-Identifier: MIT */
/*
 * unwind_libc: allocations made inside libc on the program's behalf, for the DWARF unwinder's
 * end-to-end tests. Built plain gcc -O2 like Debian's programs: no frame pointers, so only
 * .eh_frame tells how to get from libc back into the program. Chains, innermost first:
 *
 *   malloc <- fopen's internals (libc) <- site_fopen <- run_sites <- main <- libc <- _start
 *   malloc <- getline's internals (libc) <- site_getline <- run_sites <- main <- ...
 *   malloc <- strdup (libc) <- site_strdup <- run_sites <- main <- ...
 *   malloc(4242) <- site_direct <- run_sites <- main <- ...
 *
 * Every block stays live (volatile globals, and printed) until exit. Functions are noipa and
 * each call is followed by work: no inlining, no tail calls, every frame stays on the stack.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOIPA __attribute__((noipa))

volatile int sink;
FILE *volatile kept_file;
char *volatile kept_line, *volatile kept_dup, *volatile kept_direct;
static char text[101]; /* 100 x 'x' */

NOIPA void site_fopen(const char *path)
{
	kept_file = fopen(path, "r");
	sink++;
}

NOIPA void site_getline(void)
{
	char *line = NULL;
	size_t n = 0;

	if (kept_file && getline(&line, &n, kept_file) >= 0)
		kept_line = line;
	sink++;
}

NOIPA void site_strdup(void)
{
	kept_dup = strdup(text);
	sink++;
}

NOIPA void site_direct(void)
{
	kept_direct = malloc(4242);
	sink++;
}

NOIPA void run_sites(const char *path)
{
	site_fopen(path);
	site_getline();
	site_strdup();
	site_direct();
	sink++;
}

int main(int argc, char **argv)
{
	(void)argc;
	memset(text, 'x', 100);
	run_sites(argv[0]);
	printf("%p %p %p %p\n", (void *)kept_file, (void *)kept_line, (void *)kept_dup,
	       (void *)kept_direct);
	return kept_file && kept_line && kept_dup && kept_direct ? 0 : 1;
}
