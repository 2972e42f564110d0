/* SPDX-License-Identifier: MIT */
/*
 * unwind_signal: an allocation in a signal handler. The stack ends at the signal frame (the
 * kernel's return to glibc's restorer, __restore_rt), marked truncated:
 *
 *   malloc(7777) <- in_handler <- handler <- __restore_rt (signal frame: the walk ends)
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#define NOIPA __attribute__((noipa))

void *volatile kept;
volatile int sink;

NOIPA void in_handler(void)
{
	kept = malloc(7777);
	sink++;
}

NOIPA void handler(int sig)
{
	(void)sig;
	in_handler();
	sink++;
}

int main(void)
{
	signal(SIGUSR1, handler);
	raise(SIGUSR1);
	printf("%p\n", kept);
	return 0;
}
