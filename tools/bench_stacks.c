// SPDX-License-Identifier: MIT
/*
 * make bench: a process holding one live block on each of N distinct call stacks (default 10000),
 * to measure the profiler's own CPU, memory and symbolization cost with many stacks.
 *
 * Block i is allocated through a recursion of DEPTH frames that takes walk_a or walk_b by bit d
 * of i (2^14 paths), ending in leaf function i of 10000 distinct ones: every stack is distinct and
 * the stacks hold ~10000 distinct return addresses for the symbolizer. Build with
 * -fno-omit-frame-pointer -fno-optimize-sibling-calls so that the kernel's frame-pointer walk
 * sees every frame.
 *
 * Usage: bench_stacks [N] [--wait]
 *   --wait: print "ready PID" and wait for a line on stdin before allocating.
 * Then prints "holding N" and holds the blocks until a line (or EOF) on stdin; exits by itself
 * after 10 minutes in any case, so that it is never left behind.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEPTH 14
#define NLEAVES 10000

/* not static: the blocks escape, so the compiler keeps every malloc */
void *kept[NLEAVES];
volatile long last_leaf;

/*
 * 10000 leaf functions leaf_10000 .. leaf_19999, each with its own malloc call site; the number
 * stored keeps their bodies distinct (no identical-code folding).
 */
#define LEAF(n)                                                                                    \
	static __attribute__((noinline)) void leaf_##n(long i)                                     \
	{                                                                                          \
		kept[i] = malloc(64 + (i & 255));                                                  \
		last_leaf = n;                                                                     \
	}
#define PTR(n) leaf_##n,
#define X0(m, p) m(p##0) m(p##1) m(p##2) m(p##3) m(p##4) m(p##5) m(p##6) m(p##7) m(p##8) m(p##9)
#define X1(m, p)                                                                                   \
	X0(m, p##0) X0(m, p##1) X0(m, p##2) X0(m, p##3) X0(m, p##4) X0(m, p##5) X0(m, p##6)        \
	X0(m, p##7) X0(m, p##8) X0(m, p##9)
#define X2(m, p)                                                                                   \
	X1(m, p##0) X1(m, p##1) X1(m, p##2) X1(m, p##3) X1(m, p##4) X1(m, p##5) X1(m, p##6)        \
	X1(m, p##7) X1(m, p##8) X1(m, p##9)
#define X3(m, p)                                                                                   \
	X2(m, p##0) X2(m, p##1) X2(m, p##2) X2(m, p##3) X2(m, p##4) X2(m, p##5) X2(m, p##6)        \
	X2(m, p##7) X2(m, p##8) X2(m, p##9)

X3(LEAF, 1)

static void (*const leaves[NLEAVES])(long) = {X3(PTR, 1)};

static void walk_a(long i, int d);
static void walk_b(long i, int d);

static __attribute__((noinline)) void step(long i, int d)
{
	if (d == DEPTH)
		leaves[i](i);
	else if ((i >> d) & 1)
		walk_b(i, d + 1);
	else
		walk_a(i, d + 1);
	__asm__ volatile("" ::: "memory");
}

static __attribute__((noinline)) void walk_a(long i, int d)
{
	step(i, d);
	__asm__ volatile("" ::: "memory");
}

static __attribute__((noinline)) void walk_b(long i, int d)
{
	step(i, d);
	__asm__ volatile("" ::: "memory");
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : NLEAVES, i;
	char line[64];

	if (n < 1 || n > NLEAVES) {
		fprintf(stderr, "bench_stacks: N must be 1-%d\n", NLEAVES);
		return 2;
	}
	alarm(600);
	if (argc > 2 && strcmp(argv[2], "--wait") == 0) {
		printf("ready %d\n", getpid());
		fflush(stdout);
		if (!fgets(line, sizeof(line), stdin))
			return 1;
	}
	for (i = 0; i < n; i++)
		step(i, 0);
	printf("holding %ld\n", n);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 0;
	return 0;
}
