/* SPDX-License-Identifier: MIT */
/*
 * unwind_span: a stack near its top walked right after a much wider one on the same CPU. The
 * BPF unwinder sizes its first read of a stack by the last stack it walked on the CPU; here
 * that read runs past the top of the stack into a page that cannot be read, and the walk must
 * still be complete. Built plain gcc -O2: no frame pointers. Pinned to one CPU, ROUNDS times:
 *
 *   main -> wide -> malloc(WIDE_SIZE)   (wide's frame holds WIDE_FRAME bytes)
 *   __start_context -> ctx_fn -> near_top -> malloc(CTX_SIZE)
 *     on a stack of our own (makecontext) whose top is followed by a PROT_NONE page: its
 *     frames are the few dozen bytes below the top.
 *
 * Every block is kept (volatile globals). Prints "done" and exits 0.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>

#define ROUNDS 200
#define WIDE_SIZE 61
#define CTX_SIZE 83
#define WIDE_FRAME 3600
#define STACK_BYTES (256 * 1024)
#define NOIPA __attribute__((noipa))

void *volatile wide_kept[ROUNDS];
void *volatile ctx_kept[ROUNDS];
volatile int sink;
static ucontext_t main_ctx, ctx;

NOIPA void wide(int i)
{
	volatile char buf[WIDE_FRAME];

	buf[0] = (char)i;
	buf[WIDE_FRAME - 1] = (char)i;
	wide_kept[i] = malloc(WIDE_SIZE);
	sink += buf[0] + buf[WIDE_FRAME - 1];
}

NOIPA void near_top(int i)
{
	ctx_kept[i] = malloc(CTX_SIZE);
	sink++;
}

NOIPA void ctx_fn(int i)
{
	near_top(i);
	sink++;
}

int main(void)
{
	cpu_set_t one;
	char *map;

	/* one CPU: the context's stack is walked right after main's on the same CPU */
	CPU_ZERO(&one);
	CPU_SET(sched_getcpu(), &one);
	if (sched_setaffinity(0, sizeof(one), &one)) {
		perror("sched_setaffinity");
		return 1;
	}
	map = mmap(NULL, STACK_BYTES + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	if (map == MAP_FAILED || mprotect(map + STACK_BYTES, 4096, PROT_NONE)) {
		perror("mmap");
		return 1;
	}
	for (int i = 0; i < ROUNDS; i++) {
		wide(i);
		if (getcontext(&ctx)) {
			perror("getcontext");
			return 1;
		}
		ctx.uc_stack.ss_sp = map;
		ctx.uc_stack.ss_size = STACK_BYTES;
		ctx.uc_link = &main_ctx;
		makecontext(&ctx, (void (*)(void))ctx_fn, 1, i);
		if (swapcontext(&main_ctx, &ctx)) {
			perror("swapcontext");
			return 1;
		}
	}
	printf("done %p %p\n", wide_kept[ROUNDS - 1], ctx_kept[ROUNDS - 1]);
	return 0;
}
