// SPDX-License-Identifier: MIT
/*
 * A library dlclose'd and another mapped where it was.
 *   dlopen_reuse LIBA FNA LIBB FNB OUT
 * dlopens LIBA, waits 300 ms (its unwind table is built), allocates 1111 bytes through its FNA
 * (kept live), waits 300 ms (the profiler reads the mappings meanwhile), dlcloses it, dlopens
 * LIBB (of the same size: the loader puts it where LIBA was; exit 3 if not), waits 300 ms,
 * allocates 2222 bytes through FNB (kept live), waits 300 ms, writes {"pid","base"} to OUT.
 * FNA's and FNB's frames must name their own library.
 * With LIBB "-": no second library; after the dlclose, waits 2.5 s (reports at -i 1 come while
 * the block of the library that is gone is live).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef void *(*alloc_fn)(size_t);

void *volatile keep[2];

static void *open_base(const char *lib, const char *fn, alloc_fn *f, void **h)
{
	Dl_info info;

	*h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
	if (!*h || !(*f = (alloc_fn)dlsym(*h, fn)) || !dladdr((void *)*f, &info)) {
		fprintf(stderr, "dlopen_reuse: %s\n", dlerror());
		return NULL;
	}
	return info.dli_fbase;
}

int main(int argc, char **argv)
{
	struct timespec wait = {0, 300 * 1000 * 1000};
	void *ha, *hb, *base_a, *base_b;
	alloc_fn fa, fb;
	char buf[128];
	int fd, n;

	if (argc < 6)
		return 2;
	base_a = open_base(argv[1], argv[2], &fa, &ha);
	if (!base_a)
		return 1;
	nanosleep(&wait, NULL); /* its unwind table is built meanwhile: stacks through it complete */
	keep[0] = fa(1111);
	nanosleep(&wait, NULL);
	dlclose(ha);
	if (!strcmp(argv[3], "-")) {
		wait.tv_sec = 2, wait.tv_nsec = 500 * 1000 * 1000;
		nanosleep(&wait, NULL);
		base_b = base_a;
		goto out;
	}
	base_b = open_base(argv[3], argv[4], &fb, &hb);
	if (!base_b)
		return 1;
	if (base_b != base_a) {
		fprintf(stderr, "dlopen_reuse: %s at %p, not at %p\n", argv[3], base_b, base_a);
		return 3;
	}
	nanosleep(&wait, NULL);
	keep[1] = fb(2222);
	nanosleep(&wait, NULL);
out:
	n = snprintf(buf, sizeof(buf), "{\"pid\":%d,\"base\":%lu}\n", getpid(),
		     (unsigned long)base_a);
	fd = open(argv[5], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, n) != n)
		return 1;
	close(fd);
	return 0;
}
