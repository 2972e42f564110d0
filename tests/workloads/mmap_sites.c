// SPDX-License-Identifier: MIT
/*
 * Anonymous memory mapped by the program itself, beside the heap.
 *   mmap_sites OUT   run the sites, write the expectation to OUT, exit (mappings kept)
 *   mmap_sites OUT wait   print "ready PID", run them at a line on stdin, print "ok" once OUT
 *                         is written, exit at the next line or EOF (for -p)
 * site_map_keep: 3 x 64 KiB kept; site_map_drop: 2 x 32 KiB, unmapped; site_map_head: 4 pages,
 * the first unmapped (3 pages stay, accounted from the mapping's call site); site_remap:
 * 2 pages grown to 64 pages with MREMAP_MAYMOVE (mremap's call site owns it after);
 * a file mapping (not counted); site_big_malloc: a 4 MiB malloc (glibc maps it: heap only);
 * site_map_raw: 2 x 16 KiB unmapped by syscall(SYS_munmap), not libc's munmap;
 * site_remap_raw: 2 pages grown to 8 by syscall(SYS_mremap), not libc's mremap (seen where
 * mremap is followed by its tracepoints: with DWARF unwinding).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

void *volatile keep[16];

static void *anon(size_t len)
{
	return mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

__attribute__((noinline, noclone)) static void site_map_keep(void)
{
	for (int i = 0; i < 3; i++)
		keep[i] = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

__attribute__((noinline, noclone)) static void site_map_drop(void)
{
	for (int i = 0; i < 2; i++) {
		void *p = mmap(NULL, 32768, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		keep[10] = p;
		munmap(p, 32768);
	}
}

__attribute__((noinline, noclone)) static void site_map_head(void)
{
	char *p = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	munmap(p, 4096);
	keep[4] = p + 4096;
}

__attribute__((noinline, noclone)) static void *site_remap_src(void)
{
	return anon(2 * 4096);
}

__attribute__((noinline, noclone)) static void site_remap(void)
{
	keep[5] = mremap(site_remap_src(), 2 * 4096, 64 * 4096, MREMAP_MAYMOVE);
}

__attribute__((noinline, noclone)) static void *site_remap_raw_src(void)
{
	void *p = anon(2 * 4096);

	keep[13] = p; /* no tail call: the mapping's frame 0 is this function */
	return p;
}

__attribute__((noinline, noclone)) static void site_remap_raw(void)
{
	keep[12] = (void *)syscall(SYS_mremap, site_remap_raw_src(), 2 * 4096, 8 * 4096,
				   MREMAP_MAYMOVE);
}

__attribute__((noinline, noclone)) static void site_map_raw(void)
{
	for (int i = 0; i < 2; i++) {
		void *p = anon(16384);

		keep[11] = p;
		syscall(SYS_munmap, p, 16384);
	}
}

__attribute__((noinline, noclone)) static void site_big_malloc(void)
{
	keep[6] = malloc(4 << 20);
}

int main(int argc, char **argv)
{
	char buf[1024];
	int fd, n;

	if (argc < 2)
		return 2;
	if (argc > 2) {
		n = snprintf(buf, sizeof(buf), "ready %d\n", getpid());
		if (write(1, buf, n) != n || read(0, buf, sizeof(buf)) <= 0)
			return 1;
	}
	site_map_keep();
	site_map_drop();
	site_map_head();
	site_remap();
	site_remap_raw();
	site_map_raw();
	site_big_malloc();
	fd = open("/proc/self/exe", O_RDONLY);
	keep[7] = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	n = snprintf(buf, sizeof(buf),
		     "{\"pid\":%d,\"mmap\":{\"site_map_keep\":196608,\"site_map_drop\":0,"
		     "\"site_map_head\":12288,\"site_remap\":262144,\"site_map_raw\":0,"
		     "\"site_remap_raw\":32768,\"site_remap_raw_src\":0},\"mmap_bytes\":503808,"
		     "\"mmap_regions\":6,\"heap\":{\"site_big_malloc\":4194304}}\n",
		     getpid());
	fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, n) != n)
		return 1;
	close(fd);
	if (argc > 2 && (write(1, "ok\n", 3) != 3 || read(0, buf, sizeof(buf)) < 0))
		return 1;
	return 0;
}
