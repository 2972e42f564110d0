/* SPDX-License-Identifier: MIT */
/*
 * unwind_alternate: two call sites taken in turn under the same deep chain, for the unwinder's
 * reuse of the last stack (see bpf/unwind.h, struct uw_memo). Built plain gcc -O2: no frame
 * pointers. ROUNDS times:
 *
 *   main -> chain(CHAIN) -> ... -> chain(0) -> site_a -> leaf -> malloc(SIZE_A)
 *   main -> chain(CHAIN) -> ... -> chain(0) -> site_b -> leaf -> malloc(SIZE_B)
 *
 * site_a and site_b have the same code, so at malloc's entry the registers are the same under
 * both (pc, sp, and rbp, which nothing here uses): the last stack's frame 0 matches and its
 * caller does not, while the CHAIN + 3 frames above are the last stack's. Then ROUNDS times
 * in a row the same stack, through site_c (SIZE_C): the last stack again.
 * Every block is kept: each site holds exactly ROUNDS blocks of its size. Prints "done" and
 * exits 0.
 */
#include <stdio.h>
#include <stdlib.h>

#define ROUNDS 2000
#define CHAIN 16
#define SIZE_A 40
#define SIZE_B 56
#define SIZE_C 72
#define NOIPA __attribute__((noipa))

void *volatile kept[3][ROUNDS];
volatile int sink;

NOIPA void *leaf(int n)
{
	void *p = malloc(n);

	sink++;
	return p;
}

NOIPA void site_a(int i)
{
	kept[0][i] = leaf(SIZE_A);
	sink++;
}

NOIPA void site_b(int i)
{
	kept[1][i] = leaf(SIZE_B);
	sink++;
}

NOIPA void site_c(int i)
{
	kept[2][i] = leaf(SIZE_C);
	sink++;
}

/* the store after the call keeps every frame (no tail call, no loop) */
NOIPA void chain(int d, int i, int which)
{
	if (d == 0) {
		if (which == 2)
			site_c(i);
		else if (which)
			site_b(i);
		else
			site_a(i);
	} else {
		chain(d - 1, i, which);
	}
	sink++;
}

int main(void)
{
	for (int i = 0; i < ROUNDS; i++) {
		chain(CHAIN, i, 0);
		chain(CHAIN, i, 1);
	}
	for (int i = 0; i < ROUNDS; i++)
		chain(CHAIN, i, 2);
	printf("done\n");
	return 0;
}
