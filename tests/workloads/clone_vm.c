/* SPDX-License-Identifier: MIT */
/*
 * clone_vm: a child made with clone(CLONE_VM) shares the target's address space but is another
 * process: not traced (children of a target are not). The parent keeps 10 x 1000 bytes from
 * site_parent; the child allocates 20 x 500 bytes from site_child and frees nothing.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#define NOIPA __attribute__((noipa))

void *volatile kept[30];

NOIPA void site_parent(int i)
{
	kept[i] = malloc(1000);
}

NOIPA void site_child(int i)
{
	kept[10 + i] = malloc(500);
}

static int child(void *arg)
{
	(void)arg;
	for (int i = 0; i < 20; i++)
		site_child(i);
	return 0;
}

int main(void)
{
	char *stack = malloc(1 << 20);
	pid_t c;

	for (int i = 0; i < 10; i++)
		site_parent(i);
	c = clone(child, stack + (1 << 20), CLONE_VM | SIGCHLD, NULL);
	if (c < 0 || waitpid(c, NULL, 0) != c)
		return 1;
	printf("child %d\n", c);
	return 0;
}
