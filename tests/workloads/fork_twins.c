// SPDX-License-Identifier: MIT
/*
 * Two processes with the same call stacks: forked from one image, they allocate from the same
 * site through the same return addresses, so their stacks (and stack ids) are the same and only
 * the process tells their aggregates apart.
 *   fork_twins   forks two children and prints "ready PID", then "twins C0 C1"; on "go" child i
 *                allocates 10 * (i + 1) blocks of 100 * (i + 1) bytes from site_twin and frees
 *                the first i + 1 of them (child 0 first, then child 1), and the parent prints
 *                "done"; at EOF on stdin the children are killed and it exits.
 * No stdio in the children: every allocation of theirs is site_twin's.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

void *volatile kept[32];

__attribute__((noinline, noclone)) static void site_twin(int k)
{
	for (int i = 0; i < 10 * k; i++)
		kept[i] = malloc(100 * k);
}

__attribute__((noinline, noclone)) static void drop(int k)
{
	for (int i = 0; i < k; i++)
		free(kept[i]);
}

static void child(int i, int go, int done)
{
	char c;

	if (read(go, &c, 1) != 1)
		_exit(1);
	site_twin(i + 1);
	drop(i + 1);
	if (write(done, "d", 1) != 1)
		_exit(1);
	for (;;)
		pause();
}

static int read_line(char *buf, size_t len)
{
	size_t n = 0;
	char c;

	while (n + 1 < len && read(0, &c, 1) == 1 && c != '\n')
		buf[n++] = c;
	buf[n] = 0;
	return n;
}

int main(void)
{
	int go[2][2], done[2];
	pid_t pids[2];
	char buf[128], c;
	int n;

	if (pipe(done))
		return 1;
	for (int i = 0; i < 2; i++) {
		if (pipe(go[i]))
			return 1;
		pids[i] = fork();
		if (pids[i] < 0)
			return 1;
		if (pids[i] == 0)
			child(i, go[i][0], done[1]);
	}
	n = snprintf(buf, sizeof(buf), "ready %d\ntwins %d %d\n", getpid(), pids[0], pids[1]);
	if (write(1, buf, n) != n)
		return 1;
	while (read_line(buf, sizeof(buf)) && strcmp(buf, "go"))
		;
	/* one after the other: the second finds the first's aggregate of the same stack */
	for (int i = 0; i < 2; i++)
		if (write(go[i][1], "g", 1) != 1 || read(done[0], &c, 1) != 1)
			return 1;
	if (write(1, "done\n", 5) != 5)
		return 1;
	while (read_line(buf, sizeof(buf)))
		;
	for (int i = 0; i < 2; i++) {
		kill(pids[i], SIGKILL);
		waitpid(pids[i], NULL, 0);
	}
	return 0;
}
