// SPDX-License-Identifier: MIT
/*
 * Process lifecycle workload: exact accounts across fork and exec.
 *   lifecycle fork DIR   parent: site_parent keeps 10 x 1000 B; forks; the child frees 4 of the
 *                        inherited blocks (unknown frees for the child: it never allocated them)
 *                        and keeps 3 x 5000 B from site_child; the parent waits for the child,
 *                        then keeps 2 x 700 B more from site_parent_after. Each writes
 *                        DIR/<pid>.json with its expectation, then the parent waits for a line
 *                        on stdin before exiting.
 *   lifecycle exec DIR   site_before_exec allocates 8 x 3000 B and frees one, then the process
 *                        execs itself as "lifecycle image2 DIR": the new image allocates 6 x
 *                        1234 B from site_image2, frees one and writes DIR/<pid>.json; the old
 *                        image's blocks and counts are gone. Then it waits for a line on stdin.
 *   lifecycle exec-other DIR PROG
 *                        as exec, but 1.5 s later (a profiler's first look sees the first
 *                        image), and the new image is PROG (a copy of this program elsewhere:
 *                        another exe, another comm), run as "PROG image2 DIR".
 *   lifecycle thread-exec DIR
 *                        as exec, but another thread than the main one calls exec (the kernel
 *                        then gives it the process's pid, and the old main thread is gone);
 *                        the new image ("image2 DIR late") waits for a line on stdin before
 *                        it allocates (the profiler probes it after the fact).
 *   lifecycle image2 DIR late
 *                        the new image of exec, run directly: waits for a line, then as there.
 *   lifecycle exec-chain DIR N
 *                        N images, each making DEPTHS distinct stacks (one block each, freed at
 *                        once) and living ~300 ms, exec themselves; the last one keeps 30 x 100 B
 *                        from 30 distinct stacks (site_chain_keep) and writes DIR/<pid>.json.
 *   lifecycle exec-loop DIR N
 *                        waits for a file DIR/go, then execs itself N - 1 times at once, as
 *                        fast as it can (exec events by the thousand), each image keeping one
 *                        16 B block; the last image writes DIR/<pid>.json and exits.
 *   lifecycle many-stacks DIR N
 *                        keeps one 10 B block from each of N distinct stacks (N <= 120: deeper
 *                        ones would share their innermost 127 frames), writes DIR/<pid>.json.
 *   lifecycle realloc-zero DIR
 *                        site_rz allocates 10 x 4000 B, then realloc(p, 0) of each (which frees
 *                        p in glibc, jemalloc and tcmalloc alike); writes DIR/<pid>.json.
 *   lifecycle rename DIR site_rename allocates 10 x 1001 B, the process renames itself
 *                        "renamed" (out of a --comm lifecycle filter), frees them, writes
 *                        DIR/<pid>.json and waits for a line.
 *   lifecycle keep-many N
 *                        N x 16 B kept (the array that holds them too), then exits at once.
 *   lifecycle attach-realloc
 *                        prints "ready <pid>", keeps 20 x 100 B, waits for "go": reallocs 5 of
 *                        them to a size that fails (they stay), 5 others to 200 B (site_regrow:
 *                        each an unknown free), frees the first 5 and the last 10; prints the
 *                        expectation line, waits for "exit".
 * No stdio: every allocation of the process is one of the sites'.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>

void *volatile blocks[64];
void *volatile many[120];

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

#define DEPTHS 40

/* a block from a stack depth frames deeper than its caller's: one distinct stack per depth */
__attribute__((noinline, noclone)) static void *site_chain(int depth, size_t size)
{
	void *p;

	if (depth > 0) {
		p = site_chain(depth - 1, size);
		asm volatile("" : "+r"(p)); /* not a tail call */
		return p;
	}
	return malloc(size);
}

__attribute__((noinline, noclone)) static void site_chain_keep(void)
{
	for (int i = 0; i < 30; i++)
		blocks[i] = site_chain(i, 100);
}

__attribute__((noinline, noclone)) static void site_rename(void)
{
	for (int i = 0; i < 10; i++)
		blocks[i] = malloc(1001); /* not site_parent's body: gcc would fold the two */
}

__attribute__((noinline, noclone)) static void site_rz(void)
{
	for (int i = 0; i < 10; i++)
		blocks[i] = malloc(4000);
}

__attribute__((noinline, noclone)) static void site_regrow(void)
{
	for (int i = 5; i < 10; i++)
		blocks[i] = realloc(blocks[i], 200);
}

static void exec_self(char **argv, const char *mode, const char *arg)
{
	char self[512];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n <= 0)
		_exit(4);
	self[n] = 0;
	/* by its path, so that the process keeps its name */
	execl(self, "lifecycle", mode, argv[2], arg, (char *)NULL);
	_exit(4);
}

static void *exec_thread(void *argv)
{
	exec_self(argv, "image2", "late");
	return NULL;
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

	if (argc == 2 && !strcmp(argv[1], "attach-realloc")) {
		static volatile size_t huge = (size_t)1 << 62;
		char buf[64];
		int n;

		for (int i = 0; i < 20; i++)
			blocks[i] = malloc(100);
		n = snprintf(buf, sizeof(buf), "ready %d\n", getpid());
		if (write(1, buf, n) != n)
			return 3;
		wait_line();
		for (int i = 0; i < 5; i++)
			if (realloc(blocks[i], huge))
				return 5; /* cannot succeed */
		site_regrow();
		for (int i = 0; i < 5; i++)
			free(blocks[i]);
		for (int i = 10; i < 20; i++)
			free(blocks[i]);
		/* 5 + 5 + 10 frees of blocks from before the attach (not the 5 failed reallocs) */
		n = snprintf(buf, sizeof(buf), "{\"live_bytes\":1000,\"unknown_frees\":20}\n");
		if (write(1, buf, n) != n)
			return 3;
		wait_line();
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "keep-many")) {
		int n = atoi(argv[2]);
		void *volatile *keep = malloc(n * sizeof(*keep));

		if (n <= 0 || !keep)
			return 2;
		for (int i = 0; i < n; i++)
			keep[i] = malloc(16);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "rename")) {
		site_rename();
		prctl(PR_SET_NAME, "renamed");
		for (int i = 0; i < 10; i++)
			free(blocks[i]);
		expect(argv[2], "\"sites\":{\"site_rename\":{\"live_bytes\":0,\"live_allocs\":0,"
				"\"allocs\":10,\"frees\":10}}");
		wait_line();
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "realloc-zero")) {
		site_rz();
		for (int i = 0; i < 10; i++)
			if (realloc(blocks[i], 0))
				return 5; /* all three free p and return NULL */
		expect(argv[2], "\"sites\":{\"site_rz\":{\"live_bytes\":0,\"live_allocs\":0,"
				"\"allocs\":10,\"frees\":10}}");
		wait_line();
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "many-stacks")) {
		int n = atoi(argv[3]);
		char body[256];

		if (n < 1 || n > 120)
			return 2;
		for (int d = 0; d < n; d++)
			if (!(many[d] = site_chain(d, 10)))
				return 3;
		snprintf(body, sizeof(body), "\"sites\":{},\"live_bytes\":%d,\"live_allocs\":%d,"
			 "\"unknown_frees\":0,\"alloc_bytes\":%d,\"allocs\":%d,\"frees\":0",
			 10 * n, n, 10 * n, n);
		expect(argv[2], body);
		wait_line();
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "exec-chain")) {
		int left = atoi(argv[3]);

		if (left > 0) {
			char next[16];

			for (int d = 0; d < DEPTHS; d++)
				free(site_chain(d, 16));
			usleep(300000);
			snprintf(next, sizeof(next), "%d", left - 1);
			exec_self(argv, "exec-chain", next);
		}
		site_chain_keep();
		/* per stack, not per frames[0]: gcc may fold depth 0 into site_chain_keep */
		expect(argv[2], "\"sites\":{},\"stacks\":30,\"live_bytes\":3000,\"live_allocs\":30,"
				"\"unknown_frees\":0,\"alloc_bytes\":3000,\"allocs\":30,\"frees\":0");
		wait_line();
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "exec-loop")) {
		char go[512], next[16];
		int left = atoi(argv[3]);

		/* one block per image: the kernel tells of the execs of processes that allocated */
		blocks[0] = malloc(16);
		/* the first image waits for DIR/go: a test stops the profiler's reading first */
		snprintf(go, sizeof(go), "%s/go", argv[2]);
		while (access(go, F_OK))
			usleep(1000);
		if (left > 1) {
			snprintf(next, sizeof(next), "%d", left - 1);
			exec_self(argv, "exec-loop", next);
		}
		expect(argv[2], "\"sites\":{}");
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "image2") && !strcmp(argv[3], "late")) {
		/*
		 * The profiler probes the new image after the fact (an exec by a thread, another
		 * libc): the test sends a line once it says so (a sleep was too short under load).
		 */
		wait_line();
		argc = 3;
	}
	if (argc == 4 && !strcmp(argv[1], "exec-other")) {
		usleep(1500000);
		site_before_exec();
		free(blocks[40]);
		execl(argv[3], argv[3], "image2", argv[2], (char *)NULL);
		_exit(4);
	}
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
		site_before_exec();
		free(blocks[40]);
		exec_self(argv, "image2", NULL);
	}
	if (!strcmp(argv[1], "thread-exec")) {
		pthread_t t;

		site_before_exec();
		free(blocks[40]);
		if (pthread_create(&t, NULL, exec_thread, argv))
			return 4;
		pthread_join(t, NULL); /* never returns: exec ends this thread */
		return 4;
	}
	if (!strcmp(argv[1], "image2")) {
		site_image2();
		free(blocks[50]);
		expect(argv[2], "\"sites\":{\"site_image2\":{\"live_bytes\":6170,\"live_allocs\":5}},"
				"\"unknown_frees\":0,\"alloc_bytes\":7404,\"allocs\":6,\"frees\":1");
		wait_line();
		return 0;
	}
	return 2;
}
