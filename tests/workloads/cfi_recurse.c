/* SPDX-License-Identifier: MIT */
/*
 * cfi_recurse: a known call chain through the program and libc, for unwinder tests. Built plain
 * gcc -O2 like Debian's programs: no frame pointers. The chain, outermost first:
 *
 *   _start -> libc start-up -> main -> cfi_sort -> qsort (libc, a few frames) -> cfi_cmp
 *     -> cfi_recurse(20) -> ... -> cfi_recurse(0) -> cfi_leaf -> ACTION
 *
 * 21 frames of cfi_recurse. ACTION by argv[1]:
 *   stop    raise(SIGSTOP): the process stops inside libc (raise -> pthread_kill -> tgkill)
 *   alloc   raise(SIGSTOP) first in main (so a tracer can set a breakpoint in the loaded libc),
 *           then at the deepest frame strdup() a 100-byte string (libc strdup -> malloc(101))
 *           and malloc(4242) directly; the blocks escape through volatile globals.
 * Then the process exits 0. Every function is noipa (no inlining, cloning or IPA), and each
 * call is followed by work, so none becomes a tail call: every frame stays on the stack.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define CFI_DEPTH 20
#define NOIPA __attribute__((noipa))

static char text[101]; /* 100 x 'x' */
volatile int sink;
void *volatile kept[2];
static int alloc_mode;
static int chain_done;

NOIPA void cfi_leaf(void)
{
	if (alloc_mode) {
		kept[0] = strdup(text);
		kept[1] = malloc(4242);
	} else {
		raise(SIGSTOP);
	}
	sink++;
}

NOIPA int cfi_recurse(int n)
{
	int r;

	if (n == 0) {
		cfi_leaf();
		return 0;
	}
	r = cfi_recurse(n - 1);
	sink += r;
	return r + 1;
}

/* qsort's comparator: the chain continues from inside libc. */
NOIPA int cfi_cmp(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	if (!chain_done) {
		chain_done = 1;
		sink += cfi_recurse(CFI_DEPTH);
	}
	return (x > y) - (x < y);
}

NOIPA void cfi_sort(void)
{
	int v[2] = { 2, 1 };

	qsort(v, 2, sizeof(v[0]), cfi_cmp);
	sink += v[0];
}

int main(int argc, char **argv)
{
	if (argc != 2 || (strcmp(argv[1], "stop") && strcmp(argv[1], "alloc")))
		return 2;
	alloc_mode = !strcmp(argv[1], "alloc");
	memset(text, 'x', 100);
	if (alloc_mode)
		raise(SIGSTOP);
	cfi_sort();
	return 0;
}
