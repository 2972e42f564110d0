// SPDX-License-Identifier: MIT
/*
 * Unwind-table build cost, for make bench: compiles the call-frame information of each file
 * given (cfi__build, as the profiler does when a module is first seen) ROUNDS times and prints
 * one line per file: "path rows bytes median_ms min_ms max_ms".
 * Usage: bench_cfi ROUNDS FILE...
 */
#include <stdio.h>
#include <stdlib.h>
#include "cfi.h"

static int cmp_u64(const void *a, const void *b)
{
	__u64 x = *(const __u64 *)a, y = *(const __u64 *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 0;

	if (rounds < 1 || rounds > 100 || argc < 3) {
		fprintf(stderr, "usage: bench_cfi ROUNDS(1-100) FILE...\n");
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		__u64 ns[100];
		__u32 rows = 0;
		size_t bytes = 0;

		for (int r = 0; r < rounds; r++) {
			struct cfi_table t = {};
			int err = cfi__build(argv[i], &t);

			if (err) {
				fprintf(stderr, "bench_cfi: %s: error %d\n", argv[i], err);
				return 1;
			}
			ns[r] = t.stats.build_ns;
			rows = t.nr_rows;
			bytes = cfi_table__bytes(&t); /* with the bucket index */
			cfi_table__free(&t);
		}
		qsort(ns, rounds, sizeof(ns[0]), cmp_u64);
		printf("%s %u %zu %.2f %.2f %.2f\n", argv[i], rows, bytes,
		       ns[rounds / 2] / 1e6, ns[0] / 1e6, ns[rounds - 1] / 1e6);
	}
	return 0;
}
