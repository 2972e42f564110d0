// SPDX-License-Identifier: MIT
/*
 * Blocks on both sides of --min-size 4096, for its exactness.
 *   min_size_sites OUT   run the sites, write the expectation to OUT, exit (blocks kept)
 * Expectation (with --min-size 4096): {"pid":P,"sites":{"NAME":{counts}},"proc":{counts}}.
 * No stdio.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MIN 4096

void *volatile kept[512], *volatile sink;

__attribute__((noinline, noclone)) static void site_below(void)
{
	for (int i = 0; i < 100; i++)
		kept[i] = malloc(MIN - 1);
}

__attribute__((noinline, noclone)) static void site_at(void)
{
	for (int i = 0; i < 100; i++)
		kept[100 + i] = malloc(MIN);
}

__attribute__((noinline, noclone)) static void site_calloc_at(void)
{
	for (int i = 0; i < 20; i++)
		kept[200 + i] = calloc(64, 64);
}

__attribute__((noinline, noclone)) static void site_calloc_below(void)
{
	for (int i = 0; i < 20; i++)
		kept[220 + i] = calloc(63, 65);
}

/* n*m wraps to exactly MIN: calloc fails, nothing to record */
__attribute__((noinline, noclone)) static void site_calloc_wrap(void)
{
	volatile size_t n = ((size_t)1 << 63) + MIN / 2;

	sink = calloc(n, 2);
}

__attribute__((noinline, noclone)) static void site_grow_init(void)
{
	for (int i = 0; i < 10; i++)
		kept[250 + i] = malloc(100);
}

__attribute__((noinline, noclone)) static void site_grow(void)
{
	for (int i = 0; i < 10; i++)
		kept[250 + i] = realloc(kept[250 + i], 5000);
}

__attribute__((noinline, noclone)) static void site_shrink_init(void)
{
	for (int i = 0; i < 10; i++)
		kept[270 + i] = malloc(8000);
}

__attribute__((noinline, noclone)) static void site_shrink(void)
{
	for (int i = 0; i < 10; i++)
		kept[270 + i] = realloc(kept[270 + i], 100);
}

__attribute__((noinline, noclone)) static void site_free_small(void)
{
	for (int i = 0; i < 50; i++) {
		void *p = malloc(64);

		sink = p;
		free(p);
	}
}

__attribute__((noinline, noclone)) static void site_free_big(void)
{
	for (int i = 0; i < 10; i++) {
		void *p = malloc(5000);

		sink = p;
		free(p);
	}
}

#define SITE(name, live, nlive, bytes, n, frees, alloc)                                           \
	"\"" name "\":{\"live_bytes\":" #live ",\"live_allocs\":" #nlive                         \
	",\"alloc_bytes\":" #bytes ",\"allocs\":" #n ",\"frees\":" #frees                          \
	",\"allocator\":\"" alloc "\"}"

static int expectation(char *buf, size_t len)
{
	return snprintf(buf, len,
			"{\"pid\":%d,\"sites\":{" SITE("site_below", 0, 0, 0, 0, 0, "malloc") ","
			SITE("site_at", 409600, 100, 409600, 100, 0, "malloc") ","
			SITE("site_calloc_at", 81920, 20, 81920, 20, 0, "calloc") ","
			SITE("site_calloc_below", 0, 0, 0, 0, 0, "calloc") ","
			SITE("site_calloc_wrap", 0, 0, 0, 0, 0, "calloc") ","
			SITE("site_grow_init", 0, 0, 0, 0, 0, "malloc") ","
			SITE("site_grow", 50000, 10, 50000, 10, 0, "realloc") ","
			SITE("site_shrink_init", 0, 0, 80000, 10, 10, "malloc") ","
			SITE("site_shrink", 0, 0, 0, 0, 0, "realloc") ","
			SITE("site_free_small", 0, 0, 0, 0, 0, "malloc") ","
			SITE("site_free_big", 0, 0, 50000, 10, 10, "malloc") "},"
			"\"proc\":{\"live_bytes\":541520,\"live_allocs\":130,"
			"\"alloc_bytes\":671520,\"allocs\":150,\"frees\":20,"
			"\"unknown_frees\":0}}\n",
			getpid());
}

int main(int argc, char **argv)
{
	char buf[4096];
	int n, fd;

	if (argc < 2)
		return 2;
	site_below();
	site_at();
	site_calloc_at();
	site_calloc_below();
	site_calloc_wrap();
	site_grow_init();
	site_grow();
	site_shrink_init();
	site_shrink();
	site_free_small();
	site_free_big();
	n = expectation(buf, sizeof(buf));
	fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, n) != n)
		return 1;
	close(fd);
	return 0;
}
