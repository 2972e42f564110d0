// SPDX-License-Identifier: MIT
/*
 * A process holding one live block on each of N distinct call stacks (default 60000, at most
 * 65536) of which R a second change (default 100): to measure what one report interval costs
 * the profiler when few of many stacks change (asizeof-bpf -p PID -i 1).
 *
 * Block i is allocated through a recursion of DEPTH frames that takes walk_a or walk_b by bit d
 * of i: the return addresses make 2^16 distinct stacks through one malloc call site. A change
 * frees block i and allocates it again, on the same stack, one size larger or smaller, so that
 * its stack's live bytes move. Build with -O2 -fno-omit-frame-pointer
 * -fno-optimize-sibling-calls so that the kernel's frame-pointer walk sees every frame.
 *
 * Usage: bench_churn [N] [R]
 * Prints "ready PID" and waits for a line on stdin (attach the profiler then: blocks allocated
 * before are not seen), prints "holding N" once every block is allocated, then changes blocks
 * until a line (or EOF) on stdin; exits by itself after 10 minutes in any case, so that it is
 * never left behind.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define DEPTH 16
#define MAX_BLOCKS (1L << DEPTH)

/* not static: the blocks escape, so the compiler keeps every malloc and free */
void *kept[MAX_BLOCKS];
volatile long sizes[MAX_BLOCKS];

static void walk_a(long i, int d);
static void walk_b(long i, int d);

static __attribute__((noinline)) void step(long i, int d)
{
	if (d == DEPTH)
		kept[i] = malloc(sizes[i]);
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
	long n = argc > 1 ? atol(argv[1]) : 60000, rate = argc > 2 ? atol(argv[2]) : 100, i, k;
	struct pollfd in = {.fd = 0, .events = POLLIN};
	struct timespec gap;
	char line[64];

	if (n < 1 || n > MAX_BLOCKS || rate < 1 || rate > 1000000) {
		fprintf(stderr, "bench_churn: N must be 1-%ld, R 1-1000000\n", MAX_BLOCKS);
		return 2;
	}
	alarm(600);
	printf("ready %d\n", getpid());
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	for (i = 0; i < n; i++) {
		sizes[i] = 64 + (i & 255);
		step(i, 0);
	}
	printf("holding %ld\n", n);
	fflush(stdout);
	gap.tv_sec = 0;
	gap.tv_nsec = 1000000000L / rate;
	for (k = 0;; k++) {
		/* a stride coprime with most N visits the blocks in a scattered order */
		i = (k * 7919) % n;
		free(kept[i]);
		sizes[i] += (k / n) & 1 ? -1 : 1;
		step(i, 0);
		if (k % rate == 0 && poll(&in, 1, 0) > 0)
			break;
		nanosleep(&gap, NULL);
	}
	return 0;
}
