/* SPDX-License-Identifier: MIT */
/*
 * unwind_dlopen: a library loaded after start (dlopen of zlib), whose allocations the DWARF
 * unwinder must walk through, for the end-to-end tests. Built plain gcc -O2. It dlopens
 * libz.so.1, at once calls deflateInit_ from site_early (zlib allocates its state through
 * zcalloc -> malloc), waits 500 ms, then does the same from site_late. Chains, innermost first:
 *
 *   malloc <- zlib (zcalloc, deflateInit2_, deflateInit_) <- site_early|site_late <- main
 *          <- libc start-up <- _start
 *
 * The streams are never ended: their blocks stay live. Prints "ok" and exits 0.
 * With the argument "late", only site_late: the library is used for the first time 500 ms
 * after it was loaded.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define NOIPA __attribute__((noipa))

/* zlib's z_stream, as its ABI has it on x86-64 (112 bytes); only zalloc/zfree/opaque are set. */
struct zstream {
	char pad[64];
	void *zalloc, *zfree, *opaque;
	char rest[112 - 64 - 24];
};

typedef int (*deflate_init_fn)(struct zstream *, int, const char *, int);

volatile int sink;
static struct zstream streams[2];
static deflate_init_fn deflate_init;

NOIPA void site_early(void)
{
	sink += deflate_init(&streams[0], 6, "1.2.13", (int)sizeof(struct zstream));
}

NOIPA void site_late(void)
{
	sink += deflate_init(&streams[1], 6, "1.2.13", (int)sizeof(struct zstream));
}

int main(int argc, char **argv)
{
	struct timespec half = {0, 500 * 1000 * 1000};
	void *h = dlopen("libz.so.1", RTLD_NOW);

	if (!h || !(deflate_init = (deflate_init_fn)dlsym(h, "deflateInit_"))) {
		fprintf(stderr, "unwind_dlopen: %s\n", dlerror());
		return 1;
	}
	memset(streams, 0, sizeof(streams));
	if (argc < 2 || strcmp(argv[1], "late"))
		site_early();
	nanosleep(&half, NULL);
	site_late();
	printf("ok %d\n", sink);
	return sink == 0 ? 0 : 1;
}
