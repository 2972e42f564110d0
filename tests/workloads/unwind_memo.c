/* SPDX-License-Identifier: MIT */
/*
 * unwind_memo: stacks built to fool an unwinder that reuses the last stack's frames (the BPF
 * side checks, not unwinds, the frames the last stack had). Built plain gcc -O2: no frame
 * pointers. Interleaved, ROUNDS times:
 *
 *   twins:  main -> twin_a -> shared_site -> malloc(TWIN_SIZE)
 *           main -> twin_b -> shared_site -> malloc(TWIN_SIZE)
 *     twin_a and twin_b have the same code, so shared_site's frame has the same registers and
 *     the same stack address under both: only the return address above it differs.
 *   depths: main -> descend(d) -> ... -> descend(0) -> malloc(DEPTH_BASE + d), d = 0..DEPTHS-1
 *     stacks that share their outer frames and differ in depth, in a changing order.
 *   calls:  main -> two_calls -> malloc(CALL_SIZE) from two call sites of one function.
 *
 * Every block is kept (volatile globals), so each call site holds exactly ROUNDS blocks of its
 * size. Prints "done" and exits 0.
 */
#include <stdio.h>
#include <stdlib.h>

#define ROUNDS 3000
#define TWIN_SIZE 48
#define DEPTHS 12
#define DEPTH_BASE 1000
#define CALL_SIZE 77
#define NOIPA __attribute__((noipa))

void *volatile twin_kept[2][ROUNDS];
void *volatile depth_kept[DEPTHS][ROUNDS];
void *volatile call_kept[2][ROUNDS];
volatile int sink;

NOIPA void *shared_site(int n)
{
	void *p = malloc(n);

	sink++;
	return p;
}

NOIPA void twin_a(int i)
{
	twin_kept[0][i] = shared_site(TWIN_SIZE);
	sink++;
}

NOIPA void twin_b(int i)
{
	twin_kept[1][i] = shared_site(TWIN_SIZE);
	sink++;
}

NOIPA int descend(int d, int i, int top)
{
	int r;

	if (d == 0) {
		depth_kept[top][i] = malloc(DEPTH_BASE + top);
		return 0;
	}
	r = descend(d - 1, i, top);
	sink += r;
	return r + 1;
}

NOIPA void two_calls(int i)
{
	call_kept[0][i] = malloc(CALL_SIZE);
	sink++;
	call_kept[1][i] = malloc(CALL_SIZE);
	sink++;
}

int main(void)
{
	for (int i = 0; i < ROUNDS; i++) {
		twin_a(i);
		twin_b(i);
		/* depths in an order that changes every round: deeper, shallower, the same */
		for (int j = 0; j < DEPTHS; j++) {
			int d = (j * 5 + i) % DEPTHS;

			descend(d, i, d);
		}
		two_calls(i);
	}
	printf("done\n");
	return 0;
}
