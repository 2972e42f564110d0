// SPDX-License-Identifier: MIT
/*
 * Allocator-neutral call sites (only what every malloc implementation does alike), for
 * jemalloc/tcmalloc/static runs.
 *   simple_sites launch OUT   run the sites, write the expectation to OUT, exit (blocks kept)
 *   simple_sites attach       print "ready PID", wait for "go", run the sites, print the
 *                             expectation, wait for a line, exit
 * Expectation: {"pid":P,"sites":{"NAME":{"live_bytes":..,"live_allocs":..}}}. No stdio.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *volatile kept[512], *volatile sink;

__attribute__((noinline, noclone)) static void site_malloc(void)
{
	for (int i = 0; i < 100; i++)
		kept[i] = malloc(333);
}

__attribute__((noinline, noclone)) static void site_calloc(void)
{
	for (int i = 0; i < 50; i++)
		kept[100 + i] = calloc(7, 11);
}

__attribute__((noinline, noclone)) static void site_realloc_init(void)
{
	for (int i = 0; i < 20; i++)
		kept[200 + i] = malloc(100);
}

__attribute__((noinline, noclone)) static void site_realloc(void)
{
	for (int i = 0; i < 20; i++)
		kept[200 + i] = realloc(kept[200 + i], 5000);
}

__attribute__((noinline, noclone)) static void site_posix_memalign(void)
{
	for (int i = 0; i < 10; i++) {
		void *p = NULL;

		if (posix_memalign(&p, 64, 4096) == 0)
			kept[300 + i] = p;
	}
}

__attribute__((noinline, noclone)) static void site_churn(void)
{
	for (int i = 0; i < 1000; i++) {
		void *p = malloc(16 + i % 500);

		sink = p;
		free(p);
	}
}

static int expectation(char *buf, size_t len)
{
	return snprintf(buf, len,
			"{\"pid\":%d,\"sites\":{\"site_malloc\":{\"live_bytes\":33300,\"live_allocs\":100},"
			"\"site_calloc\":{\"live_bytes\":3850,\"live_allocs\":50},"
			"\"site_realloc_init\":{\"live_bytes\":0,\"live_allocs\":0},"
			"\"site_realloc\":{\"live_bytes\":100000,\"live_allocs\":20},"
			"\"site_posix_memalign\":{\"live_bytes\":40960,\"live_allocs\":10},"
			"\"site_churn\":{\"live_bytes\":0,\"live_allocs\":0}}}\n",
			getpid());
}

static void run(void)
{
	site_malloc();
	site_calloc();
	site_realloc_init();
	site_realloc();
	site_posix_memalign();
	site_churn();
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

int main(int argc, char **argv)
{
	char buf[1024];
	int n, fd;

	if (argc >= 2 && !strcmp(argv[1], "attach")) {
		n = snprintf(buf, sizeof(buf), "ready %d\n", getpid());
		if (write(1, buf, n) != n)
			return 1;
		while (read_line(buf, sizeof(buf)) && strcmp(buf, "go"))
			;
		run();
		n = expectation(buf, sizeof(buf));
		if (write(1, buf, n) != n)
			return 1;
		read_line(buf, sizeof(buf));
		return 0;
	}
	if (argc < 3 || strcmp(argv[1], "launch"))
		return 2;
	run();
	n = expectation(buf, sizeof(buf));
	fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, n) != n)
		return 1;
	close(fd);
	return 0;
}
