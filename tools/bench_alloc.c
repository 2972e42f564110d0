// SPDX-License-Identifier: MIT
/*
 * Allocation-heavy microbenchmark: mixed sizes, one block in 16 kept. Times its own hot loop
 * (so attach/detach is not counted) and prints "ns_per_pair <value>".
 * Usage: bench_alloc [PAIRS] [--wait]   (--wait: print "ready", wait for a line on stdin)
 * Built with -DDEPTH=N the loop runs N calls deeper (noipa frames): the unwinder's cost per frame.
 * Built with -DPATHS=B each pair is made B calls deeper, through walk_a or walk_b by bit of the
 * pair's number (outermost by the highest bit, so consecutive stacks share their outer frames):
 * 2^B distinct stacks, the way a large program's call sites are many and share their callers.
 * Built with -DLARGE=N each block is N to N+4095 bytes and none is kept: run with
 * MALLOC_MMAP_THRESHOLD_ below N, each pair is glibc's mmap path (an mmap and an munmap).
 * Built with -DALIGNED=A each block comes from posix_memalign(A) instead of malloc.
 * Built with -DREMAP=N each "pair" is one realloc of one block between N and N+8192 bytes: run
 * with MALLOC_MMAP_THRESHOLD_ below N, each is an mremap of glibc's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void *volatile sink;
static void *kept[1 << 16];

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

#ifndef DEPTH
#define DEPTH 0
#endif

#ifndef PATHS
#define PATHS 0
#endif

#ifndef LARGE
#define LARGE 0
#endif

#ifndef ALIGNED
#define ALIGNED 0
#endif

#ifndef REMAP
#define REMAP 0
#endif

static void run(long pairs);

static volatile int depth_sink;

/*
 * DEPTH frames between main and the loop; the volatile store after the call keeps each frame
 * (gcc turns "return f(n - 1) + 1" into a loop).
 */
__attribute__((noipa)) static int descend(int n, long pairs)
{
	int r;

	if (n == 0) {
		run(pairs);
		return 0;
	}
	r = descend(n - 1, pairs);
	depth_sink = r;
	return r + 1;
}

int main(int argc, char **argv)
{
	long pairs = argc > 1 ? atol(argv[1]) : 200000;
	char line[16];

	if (argc > 2 && strcmp(argv[2], "--wait") == 0) {
		printf("ready %d\n", getpid());
		fflush(stdout);
		if (!fgets(line, sizeof(line), stdin))
			return 1;
	}
	return descend(DEPTH, pairs) == DEPTH ? 0 : 1;
}

static long nk;

/* One malloc+free pair; one block in 16 kept. */
static inline __attribute__((always_inline)) void pair(long i)
{
	size_t size = (LARGE ? LARGE : 16) + (i * 7919) % 4096;
	void *p;

	if (REMAP) {
		static void *block;

		block = realloc(block, REMAP + (i & 1) * 8192);
		sink = block;
		return;
	}
	if (!ALIGNED)
		p = malloc(size);
	else if (posix_memalign(&p, ALIGNED, size))
		p = NULL;
	sink = p;
	if (!LARGE && (i & 15) == 0 && nk < (long)(sizeof(kept) / sizeof(kept[0])))
		kept[nk++] = p;
	else
		free(p);
}

__attribute__((noipa)) static void walk_a(int n, long i);
__attribute__((noipa)) static void walk_b(int n, long i);

/* n more frames, chosen by bits n-1 .. 0 of i, then the pair */
static inline __attribute__((always_inline)) void walk(int n, long i)
{
	if (n == 0)
		pair(i);
	else if ((i >> (n - 1)) & 1)
		walk_a(n - 1, i);
	else
		walk_b(n - 1, i);
}

/* the stores after the calls keep each frame (no tail calls) and the two bodies apart */
__attribute__((noipa)) static void walk_a(int n, long i)
{
	walk(n, i);
	depth_sink = 1;
}

__attribute__((noipa)) static void walk_b(int n, long i)
{
	walk(n, i);
	depth_sink = 2;
}

__attribute__((noipa)) static void run(long pairs)
{
	double t0, t1;
	long i;

	t0 = now_ns();
	for (i = 0; i < pairs; i++)
		walk(PATHS, i);
	t1 = now_ns();
	printf("ns_per_pair %.1f\n", (t1 - t0) / pairs);
}
