// SPDX-License-Identifier: MIT
/*
 * System-wide at scale: many processes with known live bytes, fork storms, pid reuse.
 *   scale_hold hold K    site_keep keeps K x 1000 B, site_pair 2 x 333 B, site_gone allocates
 *                        one 50 B block and frees it: live K * 1000 + 666 B in K + 2 blocks,
 *                        K + 3 allocations, 1 free. Writes "ready <pid>\n" to stdout, then waits
 *                        for EOF on stdin and exits.
 *   scale_hold storm SECS
 *                        for SECS seconds forks children that each allocate 10 x 64 B from
 *                        site_child, free 5 and exit, up to 32 at a time; prints the count.
 *   scale_hold storm SECS exec
 *                        the same, but each child execs "scale_hold hold 0" (stdin, stdout
 *                        /dev/null): a new image a process, which exits at once.
 *   scale_hold at PID PROG [ARGS]
 *                        runs PROG with pid PID (writes PID - 1 to /proc/sys/kernel/ns_last_pid
 *                        and forks, until the child gets it: other processes may take it);
 *                        prints "pid PID" once the child has it (before the child goes on),
 *                        waits for it, exits with its status. PROG "-": the child does not
 *                        exec, it runs "hold ARGS[0]".
 * No stdio in the sites' processes: every allocation of hold is one of the sites'.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

void *volatile keep[4096];
void *volatile pair[2];
void *volatile gone;

__attribute__((noinline, noclone)) static void site_keep(int k)
{
	for (int i = 0; i < k; i++)
		keep[i] = malloc(1000);
}

__attribute__((noinline, noclone)) static void site_pair(void)
{
	for (int i = 0; i < 2; i++)
		pair[i] = malloc(333);
}

__attribute__((noinline, noclone)) static void site_gone(void)
{
	gone = malloc(50);
	free(gone);
}

__attribute__((noinline, noclone)) static void site_child(void)
{
	for (int i = 0; i < 10; i++)
		keep[i] = malloc(64);
	for (int i = 0; i < 5; i++)
		free(keep[i]);
}

static void say(const char *s)
{
	size_t n = strlen(s);

	while (n) {
		ssize_t w = write(1, s, n);

		if (w <= 0)
			exit(3);
		s += w;
		n -= w;
	}
}

static int hold(int k)
{
	char buf[64];

	if (k < 0 || k > 4096)
		return 2;
	site_keep(k);
	site_pair();
	site_gone();
	snprintf(buf, sizeof(buf), "ready %d\n", (int)getpid());
	say(buf);
	while (read(0, buf, sizeof(buf)) > 0)
		;
	return 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int storm(double secs, char *self, bool exec_self)
{
	double end = now() + secs;
	long n = 0;
	int running = 0;
	char buf[64];

	while (now() < end) {
		pid_t c;

		while (running >= 32) {
			if (wait(NULL) > 0)
				running--;
		}
		c = fork();
		if (c == 0 && exec_self) {
			char *argv[] = {self, "hold", "0", NULL};
			int fd = open("/dev/null", O_RDONLY);

			if (fd < 0 || dup2(fd, 0) < 0 || dup2(open("/dev/null", O_WRONLY), 1) < 0)
				_exit(4);
			execv(self, argv);
			_exit(127);
		}
		if (c == 0) {
			site_child();
			_exit(0);
		}
		if (c > 0) {
			running++;
			n++;
		}
	}
	while (wait(NULL) > 0)
		;
	snprintf(buf, sizeof(buf), "%ld\n", n);
	say(buf);
	return 0;
}

static int at(pid_t want, char **argv)
{
	char buf[32];
	int status;

	for (int tries = 0; tries < 100000; tries++) {
		int fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY), go[2];
		pid_t c;
		char b;

		if (fd < 0)
			return 4;
		snprintf(buf, sizeof(buf), "%d", (int)want - 1);
		if (write(fd, buf, strlen(buf)) < 0) {
			close(fd);
			return 4;
		}
		close(fd);
		if (pipe2(go, O_CLOEXEC))
			return 4;
		c = fork();
		if (c == 0) {
			close(go[1]);
			if (getpid() != want)
				_exit(99);
			/* "pid PID" is written before the program's own "ready PID" */
			if (read(go[0], &b, 1) != 1)
				_exit(98);
			close(go[0]);
			if (!strcmp(argv[0], "-"))
				_exit(hold(atoi(argv[1])));
			execv(argv[0], argv);
			_exit(127);
		}
		close(go[0]);
		if (c < 0) {
			close(go[1]);
			return 4;
		}
		if (c == want) {
			snprintf(buf, sizeof(buf), "pid %d\n", (int)c);
			say(buf);
			b = 1;
			if (write(go[1], &b, 1) != 1)
				return 4;
			close(go[1]);
			if (waitpid(c, &status, 0) < 0)
				return 4;
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
		close(go[1]);
		waitpid(c, NULL, 0);
	}
	return 5;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "hold"))
		return hold(atoi(argv[2]));
	if ((argc == 3 || (argc == 4 && !strcmp(argv[3], "exec"))) && !strcmp(argv[1], "storm"))
		return storm(atof(argv[2]), argv[0], argc == 4);
	if (argc >= 4 && !strcmp(argv[1], "at"))
		return at(atoi(argv[2]), argv + 3);
	return 2;
}
