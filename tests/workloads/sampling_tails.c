// SPDX-License-Identifier: MIT
/*
 * Sampling-mode workload for the tails: blocks far above and around the period, a few huge
 * blocks among many tiny ones, realloc chains (grown, shrunk, from NULL, to 0), calloc and the
 * aligned allocators, sites whose blocks are all freed, a site after allocations that fail; with
 * a PERIOD below 64, blocks of a few bytes instead. Usage: sampling_tails PERIOD OUTFILE
 * [entry-points] (then only the calloc and aligned allocator sites).
 * Writes {"pid":..,"period":..,"sites":{"name":{"live_bytes":..,"live_allocs":..,"allocs":..,
 * "sizes":[[size,count],...]}}} to OUTFILE at the end ("sizes": the live blocks, for the
 * variance an estimate should have). No stdio before the end: every allocation the process
 * makes is one of the sites'.
 */
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SITES 24
#define MAX_SIZES 4

struct site {
	const char *name;
	long live_bytes, live_allocs, allocs;
	int nr_sizes;
	long sizes[MAX_SIZES][2];
};

static struct site sites[MAX_SITES];
static int nr_sites;
static long period;
void *volatile sink;
/* the live blocks: kept reachable, so no allocation is optimised away */
static void *volatile *keep;
static long nr_keep;

static struct site *site__get(const char *name)
{
	for (int i = 0; i < nr_sites; i++)
		if (!strcmp(sites[i].name, name))
			return &sites[i];
	sites[nr_sites].name = name;
	return &sites[nr_sites++];
}

/* n live blocks of size bytes at this site */
static void site__live(const char *name, long size, long n)
{
	struct site *s = site__get(name);
	int i;

	s->live_bytes += size * n;
	s->live_allocs += n;
	for (i = 0; i < s->nr_sizes; i++)
		if (s->sizes[i][0] == size)
			break;
	if (i == s->nr_sizes && s->nr_sizes < MAX_SIZES)
		s->sizes[s->nr_sizes++][0] = size;
	if (i < MAX_SIZES)
		s->sizes[i][1] += n;
}

static void site__calls(const char *name, long n)
{
	site__get(name)->allocs += n;
}

static void hold(void *p)
{
	keep[nr_keep++] = p;
}

/* far above the period: always sampled, each counted as itself */
__attribute__((noinline, noclone)) static void site_huge(void)
{
	for (int i = 0; i < 20; i++)
		hold(malloc(64 * period));
	site__live("site_huge", 64 * period, 20);
	site__calls("site_huge", 20);
}

/* around the period */
__attribute__((noinline, noclone)) static void site_half(void)
{
	for (int i = 0; i < 20000; i++)
		hold(malloc(period / 2));
	site__live("site_half", period / 2, 20000);
	site__calls("site_half", 20000);
}

__attribute__((noinline, noclone)) static void site_one(void)
{
	for (int i = 0; i < 10000; i++)
		hold(malloc(period));
	site__live("site_one", period, 10000);
	site__calls("site_one", 10000);
}

__attribute__((noinline, noclone)) static void site_two(void)
{
	for (int i = 0; i < 5000; i++)
		hold(malloc(2 * period));
	site__live("site_two", 2 * period, 5000);
	site__calls("site_two", 5000);
}

/* a few huge blocks among many tiny ones, interleaved */
__attribute__((noinline, noclone)) static void mix_tiny(void)
{
	for (int i = 0; i < 10000; i++)
		hold(malloc(16));
}

__attribute__((noinline, noclone)) static void mix_huge(void)
{
	hold(malloc(1000 * period));
}

static void site_mix(void)
{
	for (int i = 0; i < 100; i++) {
		mix_tiny();
		if (i % 10 == 0)
			mix_huge();
	}
	site__live("mix_tiny", 16, 1000000);
	site__calls("mix_tiny", 1000000);
	site__live("mix_huge", 1000 * period, 10);
	site__calls("mix_huge", 10);
}

/* grown step by step from 16 bytes to period / 4: unsampled sizes, then sampled, ... */
__attribute__((noinline, noclone)) static void site_grow(void)
{
	for (int i = 0; i < 20000; i++) {
		char *p = malloc(16);

		for (long n = 32; n <= period / 4; n += 16)
			p = realloc(p, n);
		hold(p);
	}
	site__live("site_grow", period / 4, 20000);
}

/* shrunk step by step from 4 periods to 64 bytes: sampled sizes, then unsampled ones */
__attribute__((noinline, noclone)) static void site_shrink(void)
{
	for (int i = 0; i < 5000; i++) {
		char *p = malloc(4 * period);

		for (long n = 4 * period - period / 4; n >= 64; n -= period / 4)
			p = realloc(p, n < 64 ? 64 : n);
		p = realloc(p, 64);
		hold(p);
	}
	site__live("site_shrink", 64, 5000);
}

__attribute__((noinline, noclone)) static void site_realloc_null(void)
{
	for (int i = 0; i < 40000; i++)
		hold(realloc(NULL, period / 8));
	site__live("site_realloc_null", period / 8, 40000);
	site__calls("site_realloc_null", 40000);
}

/* realloc(p, 0) frees p (glibc): nothing stays */
__attribute__((noinline, noclone)) static void site_realloc_zero(void)
{
	for (int i = 0; i < 40000; i++) {
		void *p = malloc(i % 2 ? period / 8 : 2 * period);

		sink = p;
		sink = realloc(p, 0);
	}
	site__live("site_realloc_zero", 0, 0);
}

__attribute__((noinline, noclone)) static void site_calloc(void)
{
	for (int i = 0; i < 40000; i++)
		hold(calloc(period / 64, 8));
	site__live("site_calloc", period / 8, 40000);
	site__calls("site_calloc", 40000);
}

__attribute__((noinline, noclone)) static void site_memalign(void)
{
	for (int i = 0; i < 20000; i++)
		hold(memalign(64, period / 4));
	site__live("site_memalign", period / 4, 20000);
	site__calls("site_memalign", 20000);
}

__attribute__((noinline, noclone)) static void site_aligned_alloc(void)
{
	for (int i = 0; i < 20000; i++)
		hold(aligned_alloc(256, period / 4));
	site__live("site_aligned_alloc", period / 4, 20000);
	site__calls("site_aligned_alloc", 20000);
}

__attribute__((noinline, noclone)) static void site_posix_memalign(void)
{
	for (int i = 0; i < 20000; i++) {
		void *p = NULL;

		if (posix_memalign(&p, 128, period / 4) == 0)
			hold(p);
	}
	site__live("site_posix_memalign", period / 4, 20000);
	site__calls("site_posix_memalign", 20000);
}

__attribute__((noinline, noclone)) static void site_valloc(void)
{
	for (int i = 0; i < 5000; i++)
		hold(valloc(period));
	site__live("site_valloc", period, 5000);
	site__calls("site_valloc", 5000);
}

/* every block freed: sampled ones must leave exactly what they added */
__attribute__((noinline, noclone)) static void site_freed(void)
{
	for (int i = 0; i < 100000; i++) {
		void *p = malloc(i % 100 ? 48 : 3 * period);

		sink = p;
		free(p);
	}
	site__live("site_freed", 0, 0);
	site__calls("site_freed", 100000);
}

/* sizes that cannot succeed: volatile, or gcc warns and may fold them */
volatile size_t huge_n = 1ull << 62, huge_m = 3, neg_size = -(1ull << 40);

/*
 * Allocations that fail for sure (a calloc whose product overflows, a "negative" malloc) take
 * no bytes from the sampling countdown: the site after them is estimated like any other.
 */
__attribute__((noinline, noclone)) static void site_after_failed(void)
{
	sink = calloc(huge_n, huge_m);
	sink = malloc(neg_size);
	for (int i = 0; i < 40000; i++)
		hold(malloc(period / 8));
	site__live("site_after_failed", period / 8, 40000);
	site__calls("site_after_failed", 40000);
}

/* reallocs that fail keep their blocks, sampled ones with the weight they had */
__attribute__((noinline, noclone)) static void site_realloc_fail(void)
{
	for (int i = 0; i < 20; i++) {
		void *p = malloc(64 * period), *q;

		/* more than this machine can map, then a negative size: both fail, p stays */
		q = realloc(p, 1ull << 46);
		if (q) { /* an allocator that maps it lazily (jemalloc): a new block of ours */
			free(q);
			p = malloc(64 * period);
		}
		if ((q = realloc(p, neg_size)))
			exit(3);
		hold(p);
	}
	site__live("site_realloc_fail", 64 * period, 20);
	site__calls("site_realloc_fail", 20);
}

/* periods of a few bytes: blocks of 1, 3 and 17 bytes (1/2, 3/2 and 17/2 periods at N = 2) */
__attribute__((noinline, noclone)) static void site_bytes1(void)
{
	for (int i = 0; i < 600000; i++)
		hold(malloc(1));
	site__live("site_bytes1", 1, 600000);
	site__calls("site_bytes1", 600000);
}

__attribute__((noinline, noclone)) static void site_bytes3(void)
{
	for (int i = 0; i < 300000; i++)
		hold(malloc(3));
	site__live("site_bytes3", 3, 300000);
	site__calls("site_bytes3", 300000);
}

__attribute__((noinline, noclone)) static void site_bytes17(void)
{
	for (int i = 0; i < 100000; i++)
		hold(malloc(17));
	site__live("site_bytes17", 17, 100000);
	site__calls("site_bytes17", 100000);
}

static void small_periods(void)
{
	site_bytes1();
	site_bytes3();
	site_bytes17();
}

/* the entry points an allocator may implement with another: few calls (probes that single-step) */
static void entry_points(void)
{
	site_calloc();
	site_memalign();
	site_aligned_alloc();
	site_posix_memalign();
	site_valloc();
}

static void large_periods(void)
{
	site_huge();
	site_half();
	site_one();
	site_two();
	site_mix();
	site_grow();
	site_shrink();
	site_realloc_null();
	site_realloc_zero();
	site_calloc();
	site_memalign();
	site_aligned_alloc();
	site_posix_memalign();
	site_valloc();
	site_freed();
	site_after_failed();
	site_realloc_fail();
}

int main(int argc, char **argv)
{
	static char buf[16384];
	int fd, n = 0;

	if (argc < 3 || (period = atol(argv[1])) < 1)
		return 2;
	keep = calloc(1300000, sizeof(*keep)); /* before any site: not one of theirs */
	if (!keep)
		return 1;
	if (argc > 3 && !strcmp(argv[3], "entry-points"))
		entry_points();
	else if (period < 64)
		small_periods();
	else
		large_periods();
	n += snprintf(buf + n, sizeof(buf) - n, "{\"pid\":%d,\"period\":%ld,\"sites\":{", getpid(),
		      period);
	for (int i = 0; i < nr_sites; i++) {
		struct site *s = &sites[i];

		n += snprintf(buf + n, sizeof(buf) - n,
			      "%s\"%s\":{\"live_bytes\":%ld,\"live_allocs\":%ld,\"allocs\":%ld,"
			      "\"sizes\":[",
			      i ? "," : "", s->name, s->live_bytes, s->live_allocs, s->allocs);
		for (int j = 0; j < s->nr_sizes; j++)
			n += snprintf(buf + n, sizeof(buf) - n, "%s[%ld,%ld]", j ? "," : "",
				      s->sizes[j][0], s->sizes[j][1]);
		n += snprintf(buf + n, sizeof(buf) - n, "]}");
	}
	n += snprintf(buf + n, sizeof(buf) - n, "}}\n");
	fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, n) != n)
		return 1;
	close(fd);
	return 0;
}
