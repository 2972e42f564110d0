// SPDX-License-Identifier: MIT
/*
 * Parts of the program's own mappings unmapped, remapped or mapped over.
 *   mmap_partial STEP OUT   run one step, write the live mmap bytes and regions it leaves to OUT
 * Steps (P = one page): middle (8P, 2P of its middle unmapped: 6P in 2 regions), tail (8P, its
 * last 3P unmapped), span (two adjacent 4P mappings, one munmap from the middle of the lower to
 * the middle of the upper: 2P + 2P), span_whole (one munmap of both), span_many (one munmap of
 * 20 adjacent 1P mappings, more than one walk of the index finds), grow (2P grown in place to
 * 4P), move (2P moved to 16P), shrink (8P to 3P), fixed (mremap MREMAP_FIXED of 4P onto the head
 * of another 8P mapping: 4P + 4P), part (mremap of the first 2P of 8P, moved and grown to 6P:
 * 6P stay, 6P new), map_fixed (MAP_FIXED of 2P over the middle of 8P: 8P in 3 regions),
 * map_fixed_same (MAP_FIXED over the whole of a 4P mapping), dontneed (madvise(MADV_DONTNEED) of
 * 4P: the program still holds them), zero_len (munmap of 0 bytes of a 4P mapping: EINVAL, it
 * stays), many (80 mappings of 2P, more than a process's index holds: the last page of two
 * unmapped, 10 unmapped whole), over_8192 (9,000 mappings of 3P, more than the kernel's index of
 * mappings once held for all processes: the last page of the last one unmapped), foreign (a 4P mapping held while 4,000 munmaps of mappings not
 * the program's: malloc's of 256 KiB blocks, and of a file).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define P 4096ul

void *volatile keep[8];
void *volatile many[80];
void *volatile lots[9000];

static char *map_at(void *hint, size_t len, int flags)
{
	char *p = mmap(hint, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* a mapping of len bytes with free room after it (a fresh address far from the others) */
static char *map_roomy(size_t len)
{
	char *room = map_at(NULL, 64 * P, 0), *p;

	if (!room)
		return NULL;
	/* the room itself is the program's mapping too: gone before the step starts */
	munmap(room, 64 * P);
	p = map_at(room, len, MAP_FIXED_NOREPLACE);
	return p == room ? p : NULL;
}

static int step(const char *s, unsigned long *bytes, unsigned long *regions)
{
	char *a, *b;

	if (!strcmp(s, "middle")) {
		a = map_at(NULL, 8 * P, 0);
		if (!a || munmap(a + 3 * P, 2 * P))
			return -1;
		keep[0] = a;
		*bytes = 6 * P, *regions = 2;
	} else if (!strcmp(s, "tail")) {
		a = map_at(NULL, 8 * P, 0);
		if (!a || munmap(a + 5 * P, 3 * P))
			return -1;
		keep[0] = a;
		*bytes = 5 * P, *regions = 1;
	} else if (!strcmp(s, "span") || !strcmp(s, "span_whole")) {
		a = map_roomy(8 * P);
		if (!a || munmap(a + 4 * P, 4 * P))
			return -1;
		b = map_at(a + 4 * P, 4 * P, MAP_FIXED_NOREPLACE);
		if (b != a + 4 * P)
			return -1;
		keep[0] = a, keep[1] = b;
		if (!strcmp(s, "span")) {
			if (munmap(a + 2 * P, 4 * P))
				return -1;
			*bytes = 4 * P, *regions = 2;
		} else {
			if (munmap(a, 8 * P))
				return -1;
			*bytes = 0, *regions = 0;
		}
	} else if (!strcmp(s, "span_many")) {
		a = map_roomy(20 * P);
		if (!a || munmap(a, 20 * P))
			return -1;
		for (int i = 0; i < 20; i++)
			if (map_at(a + i * P, P, MAP_FIXED_NOREPLACE) != a + i * P)
				return -1;
		keep[0] = a;
		if (munmap(a, 20 * P))
			return -1;
		*bytes = 0, *regions = 0;
	} else if (!strcmp(s, "grow")) {
		a = map_roomy(2 * P);
		if (!a || mremap(a, 2 * P, 4 * P, 0) != a)
			return -1;
		keep[0] = a;
		*bytes = 4 * P, *regions = 1;
	} else if (!strcmp(s, "move")) {
		a = map_at(NULL, 2 * P, 0);
		b = a ? mremap(a, 2 * P, 16 * P, MREMAP_MAYMOVE) : MAP_FAILED;
		if (b == MAP_FAILED)
			return -1;
		keep[0] = b;
		*bytes = 16 * P, *regions = 1;
	} else if (!strcmp(s, "shrink")) {
		a = map_at(NULL, 8 * P, 0);
		if (!a || mremap(a, 8 * P, 3 * P, 0) != a)
			return -1;
		keep[0] = a;
		*bytes = 3 * P, *regions = 1;
	} else if (!strcmp(s, "fixed")) {
		a = map_at(NULL, 4 * P, 0);
		b = map_at(NULL, 8 * P, 0);
		if (!a || !b || mremap(a, 4 * P, 4 * P, MREMAP_MAYMOVE | MREMAP_FIXED, b) != b)
			return -1;
		keep[0] = b;
		*bytes = 8 * P, *regions = 2;
	} else if (!strcmp(s, "part")) {
		a = map_at(NULL, 8 * P, 0);
		b = a ? mremap(a, 2 * P, 6 * P, MREMAP_MAYMOVE) : MAP_FAILED;
		if (b == MAP_FAILED)
			return -1;
		keep[0] = a, keep[1] = b;
		*bytes = 12 * P, *regions = 2;
	} else if (!strcmp(s, "map_fixed")) {
		a = map_at(NULL, 8 * P, 0);
		if (!a || map_at(a + 2 * P, 2 * P, MAP_FIXED) != a + 2 * P)
			return -1;
		keep[0] = a;
		*bytes = 8 * P, *regions = 3;
	} else if (!strcmp(s, "map_fixed_same")) {
		a = map_at(NULL, 4 * P, 0);
		if (!a || map_at(a, 4 * P, MAP_FIXED) != a)
			return -1;
		keep[0] = a;
		*bytes = 4 * P, *regions = 1;
	} else if (!strcmp(s, "zero_len")) {
		a = map_at(NULL, 4 * P, 0);
		if (!a || munmap(a, 0) == 0)
			return -1;
		keep[0] = a;
		*bytes = 4 * P, *regions = 1;
	} else if (!strcmp(s, "many")) {
		for (int i = 0; i < 80; i++)
			if (!(many[i] = map_at(NULL, 2 * P, 0)))
				return -1;
		/* one the index holds (the first made), one it could not (the last) */
		if (munmap((char *)many[3] + P, P) || munmap((char *)many[75] + P, P))
			return -1;
		for (int i = 30; i < 40; i++)
			if (munmap(many[i], 2 * P))
				return -1;
		*bytes = 70 * 2 * P - 2 * P, *regions = 70;
	} else if (!strcmp(s, "over_8192")) {
		for (int i = 0; i < 9000; i++)
			if (!(lots[i] = map_at(NULL, 3 * P, 0)))
				return -1;
		if (munmap((char *)lots[8999] + 2 * P, P))
			return -1;
		*bytes = 9000 * 3 * P - P, *regions = 9000;
	} else if (!strcmp(s, "foreign")) {
		int fd = open("/proc/self/exe", O_RDONLY);

		a = map_at(NULL, 4 * P, 0);
		/* every free of a 256 KiB block munmaps malloc's mapping */
		if (!a || fd < 0 || !mallopt(M_MMAP_THRESHOLD, 128 << 10))
			return -1;
		keep[0] = a;
		for (int i = 0; i < 2000; i++) {
			keep[1] = malloc(256 << 10);
			if (!keep[1])
				return -1;
			free(keep[1]);
			b = mmap(NULL, P, PROT_READ, MAP_PRIVATE, fd, 0);
			if (b == MAP_FAILED || munmap(b, P))
				return -1;
		}
		close(fd);
		*bytes = 4 * P, *regions = 1;
	} else if (!strcmp(s, "dontneed")) {
		a = map_at(NULL, 4 * P, 0);
		if (!a)
			return -1;
		memset(a, 1, 4 * P);
		if (madvise(a, 4 * P, MADV_DONTNEED))
			return -1;
		keep[0] = a;
		*bytes = 4 * P, *regions = 1;
	} else {
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long bytes, regions;
	char buf[256];
	int fd, n;

	if (argc < 3)
		return 2;
	if (step(argv[1], &bytes, &regions)) {
		fprintf(stderr, "mmap_partial: step %s failed\n", argv[1]);
		return 3;
	}
	n = snprintf(buf, sizeof(buf), "{\"pid\":%d,\"mmap_bytes\":%lu,\"mmap_regions\":%lu}\n",
		     getpid(), bytes, regions);
	fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, n) != n)
		return 1;
	close(fd);
	return 0;
}
