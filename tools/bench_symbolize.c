// SPDX-License-Identifier: MIT
/*
 * make bench: time the profiler's own symbolizer (user/symbolizer.c, linked in) on the return
 * addresses of a live process: each address read from stdin (hex, one a line) is resolved once
 * cold (first lookup: ELF symbol table, DWARF lines and inline chain) and once warm (cached).
 * The very first address also opens the module (ELF, DWARF, sorted symbol table): timed apart.
 * Usage: bench_symbolize PID < addresses
 * Prints "maps_ms", "first_ms", "frames", "named", "cold_ns_per_frame" (the other frames, cold),
 * "warm_ns_per_frame".
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "symbolizer.h"

#define MAX_ADDRS 65536
#define MAX_INLINE 16

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static __u64 addrs[MAX_ADDRS];

int main(int argc, char **argv)
{
	struct sym_frame out[MAX_INLINE];
	struct symbolizer *s;
	double t0, t1, t2 = 0, t3, t4;
	int pid, n = 0, named = 0, i, err;
	unsigned long long a;

	if (argc != 2 || (pid = atoi(argv[1])) <= 0) {
		fprintf(stderr, "usage: bench_symbolize PID < addresses\n");
		return 2;
	}
	while (n < MAX_ADDRS && scanf("%llx", &a) == 1)
		addrs[n++] = a;
	s = symbolizer__new();
	if (!s) {
		fprintf(stderr, "bench_symbolize: out of memory\n");
		return 1;
	}
	t0 = now_ns();
	err = symbolizer__add_pid(s, pid);
	t1 = now_ns();
	if (err) {
		fprintf(stderr, "bench_symbolize: pid %d: error %d\n", pid, err);
		symbolizer__free(s);
		return 1;
	}
	for (i = 0; i < n; i++) {
		if (symbolizer__resolve(s, pid, addrs[i], out, MAX_INLINE) >= 1 && out[0].func)
			named++;
		if (i == 0)
			t2 = now_ns();
	}
	t3 = now_ns();
	for (i = 0; i < n; i++)
		symbolizer__resolve(s, pid, addrs[i], out, MAX_INLINE);
	t4 = now_ns();
	printf("maps_ms %.3f\nfirst_ms %.3f\nframes %d\nnamed %d\n", (t1 - t0) / 1e6,
	       n ? (t2 - t1) / 1e6 : 0.0, n, named);
	printf("cold_ns_per_frame %.1f\nwarm_ns_per_frame %.1f\n", n > 1 ? (t3 - t2) / (n - 1) : 0.0,
	       n ? (t4 - t3) / n : 0.0);
	symbolizer__free(s);
	return 0;
}
