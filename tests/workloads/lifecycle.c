// SPDX-License-Identifier: MIT
/*
 * Process lifecycle workload: exact accounts across fork and exec.
 *   lifecycle fork DIR   parent: site_parent keeps 10 x 1000 B; forks; the child frees 4 of the
 *                        inherited blocks (unknown frees for the child: it never allocated them)
 *                        and keeps 3 x 5000 B from site_child; the parent waits for the child,
 *                        then keeps 2 x 700 B more from site_parent_after. Each writes
 *                        DIR/<pid>.json with its expectation, then the parent waits for a line
 *                        on stdin before exiting.
 *   lifecycle exec DIR   site_before_exec keeps 8 x 3000 B, then the process execs itself as
 *                        "lifecycle image2 DIR": the new image keeps 6 x 1234 B from
 *                        site_image2 and writes DIR/<pid>.json; the old image's blocks are gone.
 *                        Then it waits for a line on stdin.
 * No stdio: every allocation of the process is one of the sites'.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

void *volatile blocks[64];

__attribute__((noinline, noclone)) static void site_parent(void)
{
	for (int i = 0; i < 10; i++)
		blocks[i] = malloc(1000);
}

__attribute__((noinline, noclone)) static void site_child(void)
{
	for (int i = 0; i < 3; i++)
		blocks[20 + i] = malloc(5000);
}

__attribute__((noinline, noclone)) static void site_parent_after(void)
{
	for (int i = 0; i < 2; i++)
		blocks[30 + i] = malloc(700);
}

__attribute__((noinline, noclone)) static void site_before_exec(void)
{
	for (int i = 0; i < 8; i++)
		blocks[40 + i] = malloc(3000);
}

__attribute__((noinline, noclone)) static void site_image2(void)
{
	for (int i = 0; i < 6; i++)
		blocks[50 + i] = malloc(1234);
}

static void expect(const char *dir, const char *body)
{
	char path[512], buf[1024];
	int fd, n;

	snprintf(path, sizeof(path), "%s/%d.json", dir, getpid());
	n = snprintf(buf, sizeof(buf), "{\"pid\":%d,%s}\n", getpid(), body);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, n) != n)
		_exit(3);
	close(fd);
}

static void wait_line(void)
{
	char c;

	while (read(0, &c, 1) == 1 && c != '\n')
		;
}

int main(int argc, char **argv)
{
	pid_t child;
	int status;

	if (argc != 3)
		return 2;
	if (!strcmp(argv[1], "fork")) {
		site_parent();
		child = fork();
		if (child == 0) {
			for (int i = 0; i < 4; i++)
				free(blocks[i]);
			site_child();
			expect(argv[2], "\"sites\":{\"site_child\":{\"live_bytes\":15000,"
					"\"live_allocs\":3}},\"unknown_frees\":4");
			_exit(0);
		}
		waitpid(child, &status, 0);
		site_parent_after();
		expect(argv[2], "\"sites\":{\"site_parent\":{\"live_bytes\":10000,\"live_allocs\":10},"
				"\"site_parent_after\":{\"live_bytes\":1400,\"live_allocs\":2}},"
				"\"unknown_frees\":0");
		wait_line();
		return 0;
	}
	if (!strcmp(argv[1], "exec")) {
		char self[512];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

		if (n <= 0)
			return 4;
		self[n] = 0;
		site_before_exec();
		/* by its path, so that the process keeps its name */
		execl(self, "lifecycle", "image2", argv[2], (char *)NULL);
		return 4;
	}
	if (!strcmp(argv[1], "image2")) {
		site_image2();
		expect(argv[2], "\"sites\":{\"site_image2\":{\"live_bytes\":7404,\"live_allocs\":6}},"
				"\"unknown_frees\":0");
		wait_line();
		return 0;
	}
	return 2;
}
