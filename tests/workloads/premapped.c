// SPDX-License-Identifier: MIT
/*
 * Mappings made before a profiler attaches (-p), then unmapped, remapped and mapped over after.
 *   premapped OUT   print "ready PID", wait for a line, work, write the expectation to OUT,
 *                   print "ok", exit at the next line or EOF
 * Before: 8 mappings of 4 pages (pre[0..7]). After: pre[0] unmapped whole, pre[1]'s head,
 * pre[2]'s tail, pre[3]'s middle; pre[4] grown (moving) by mremap, pre[5] shrunk in place;
 * pre[6] mapped over by MAP_FIXED (site_fixed_over: a new mapping of the program's, counted);
 * pre[7] moved with MREMAP_FIXED onto site_target's new mapping (which is gone then).
 * site_keep: 2 x 16 KiB mapped after attach, kept. Only mappings made after attach count;
 * mremaps of unrecorded mappings count nothing (the old bytes were never counted).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define P 4096
void *volatile keep[32];

static void *anon(size_t len)
{
	return mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

__attribute__((noinline, noclone)) static void site_keep(void)
{
	keep[20] = anon(4 * P);
	keep[21] = anon(4 * P);
}

__attribute__((noinline, noclone)) static void *site_target(void)
{
	void *r = anon(4 * P);

	keep[30] = r;
	return r;
}

__attribute__((noinline, noclone)) static void *site_fixed_over(void *at)
{
	void *r = mmap(at, 4 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);

	keep[31] = r;
	return r;
}

int main(int argc, char **argv)
{
	char buf[512], *pre[8];
	int n;
	FILE *f;

	if (argc < 2)
		return 2;
	for (int i = 0; i < 8; i++) {
		/* a guard page between them: no two merge */
		char *g = anon(6 * P);

		munmap(g, P);
		munmap(g + 5 * P, P);
		pre[i] = g + P;
	}
	n = snprintf(buf, sizeof(buf), "ready %d\n", getpid());
	if (write(1, buf, n) != n || read(0, buf, sizeof(buf)) <= 0)
		return 1;
	site_keep();
	munmap(pre[0], 4 * P);
	munmap(pre[1], P);
	munmap(pre[2] + 3 * P, P);
	munmap(pre[3] + P, P);
	keep[4] = mremap(pre[4], 4 * P, 64 * P, MREMAP_MAYMOVE);
	keep[5] = mremap(pre[5], 4 * P, 2 * P, 0);
	keep[6] = site_fixed_over(pre[6]);
	{
		void *t = site_target();

		keep[7] = mremap(pre[7], 4 * P, 4 * P, MREMAP_MAYMOVE | MREMAP_FIXED, t);
	}
	if (keep[4] == MAP_FAILED || keep[5] == MAP_FAILED || keep[6] == MAP_FAILED || keep[7] == MAP_FAILED)
		return 3;
	f = fopen(argv[1], "w");
	if (!f)
		return 1;
	fprintf(f, "{\"pid\":%d,\"mmap\":{\"site_keep\":%d,\"site_fixed_over\":%d,\"site_target\":0},"
		   "\"mmap_bytes\":%d,\"mmap_regions\":3}\n", getpid(), 8 * P, 4 * P, 12 * P);
	fclose(f);
	if (write(1, "ok\n", 3) != 3 || read(0, buf, sizeof(buf)) < 0)
		return 1;
	return 0;
}
