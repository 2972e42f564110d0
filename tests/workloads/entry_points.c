/* SPDX-License-Identifier: MIT */
/*
 * entry_points: allocator entry points beyond alloc_sites' (libc internals, jemalloc's extended
 * API, tcmalloc's tc_* functions, threads), each from its own site_* function, blocks kept.
 *
 *   entry_points MODE OUT   MODE: glibc, jemalloc, tcmalloc or threads; run MODE's sites, write
 *                           the expectation to OUT and exit without freeing the kept blocks.
 *
 * Expectation: {"pid":P,"sites":{"NAME":{"live_bytes":..,"live_allocs":..[,"allocs":..,
 * "frees":..]}}}: the totals of the stacks whose innermost site_* frame is NAME (libc's
 * internals may come first: asprintf, getline). allocs and frees only where the program knows
 * them (not where libc picks its own buffer sizes and growth). jemalloc's and tcmalloc's own
 * functions are found with dlsym before any site runs.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SITE __attribute__((noipa, used))
#define MAX_SITES 32

struct site {
	const char *name;
	long long live_bytes, live_allocs, allocs, frees;
	int exact; /* allocs and frees known */
};

static struct site sites[MAX_SITES];
static int nr_sites;
void *volatile kept[8192];
static int nr_kept;
void *volatile g_sink;
volatile size_t g_huge = (size_t)1 << 46;
volatile size_t g_size_max = SIZE_MAX;
void *volatile g_null;

static void die(const char *msg)
{
	ssize_t r = write(2, msg, strlen(msg));

	(void)r;
	_exit(99);
}

static struct site *site(const char *name, int exact)
{
	for (int i = 0; i < nr_sites; i++)
		if (!strcmp(sites[i].name, name))
			return &sites[i];
	if (nr_sites == MAX_SITES)
		die("entry_points: too many sites\n");
	sites[nr_sites].name = name;
	sites[nr_sites].exact = exact;
	return &sites[nr_sites++];
}

/* A block of size bytes from site name, kept. */
static void *keep(const char *name, void *p, long long size)
{
	struct site *s = site(name, 1);

	if (!p)
		die("entry_points: allocation failed\n");
	s->live_bytes += size;
	s->live_allocs++;
	s->allocs++;
	kept[nr_kept++] = p;
	return p;
}

/* A kept block of site name goes (freed, or moved by a realloc). */
static void gone(const char *name, long long size)
{
	struct site *s = site(name, 1);

	s->live_bytes -= size;
	s->live_allocs--;
	s->frees++;
}

/* ---- glibc ---- */

SITE void prep_glibc(void **a, void **b)
{
	*a = keep("prep_glibc", malloc(64), 64);
	*b = keep("prep_glibc", malloc(80), 80);
}

SITE void site_reallocarray(void *a, void *b)
{
	void *p;

	keep("site_reallocarray", reallocarray(g_null, 10, 30), 300);
	gone("prep_glibc", 64);
	keep("site_reallocarray", reallocarray(a, 20, 50), 1000);
	/* n*m overflows: NULL, b stays prep_glibc's */
	p = reallocarray(b, g_size_max / 2, 4);
	if (p)
		die("reallocarray overflow succeeded\n");
	g_sink = p;
}

SITE void site_aligned_alloc_odd(void)
{
	/* glibc 2.36: aligned_alloc is memalign, which rounds an alignment up to a power of 2 */
	void *p = aligned_alloc(24, 100);

	site("site_aligned_alloc_odd", 1);
	if (p)
		keep("site_aligned_alloc_odd", p, 100);
}

SITE void site_pvalloc_small(void)
{
	keep("site_pvalloc_small", pvalloc(100), 100); /* the size asked, not the page */
}

SITE void site_valloc_small(void)
{
	keep("site_valloc_small", valloc(100), 100);
}

static char src[64] = "the quick brown fox jumps over the lazy dog";
char *volatile g_src = src;

SITE void site_strndup(void)
{
	keep("site_strndup", strndup(g_src, 5), 6);
	keep("site_strndup", strndup(g_src, 1000), strlen(g_src) + 1);
}

SITE void site_asprintf(void)
{
	char *s = NULL;
	int n = asprintf(&s, "%s-%d-%s", g_src, 12345, g_src);
	struct site *st = site("site_asprintf", 0);

	if (n < 0)
		die("asprintf failed\n");
	kept[nr_kept++] = s;
	st->live_bytes += n + 1;
	st->live_allocs++;
}

SITE void site_getline(FILE *f)
{
	char *line = NULL;
	size_t n = 0;
	struct site *st = site("site_getline", 0);

	if (getline(&line, &n, f) < 0)
		die("getline failed\n");
	kept[nr_kept++] = line;
	st->live_bytes += n; /* getline says how big its buffer is */
	st->live_allocs++;
}

SITE void site_memstream(void)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);
	struct site *st = site("site_memstream", 0);

	if (!f)
		die("open_memstream failed\n");
	for (int i = 0; i < 300; i++)
		fprintf(f, "%d:%s;", i, g_src);
	if (fclose(f))
		die("memstream fclose failed\n");
	kept[nr_kept++] = buf;
	st->live_bytes += size + 1; /* the FILE is gone, the buffer is size + 1 bytes */
	st->live_allocs++;
}

SITE void site_usable_size(void)
{
	void *p = keep("site_usable_size", malloc(100), 100);

	if (malloc_usable_size(p) < 100)
		die("malloc_usable_size\n");
}

static void run_glibc(void)
{
	static char text[] = "a line of text that getline reads into a buffer of its own\nmore\n";
	void *a, *b;
	FILE *f;

	prep_glibc(&a, &b);
	site_reallocarray(a, b);
	site_aligned_alloc_odd();
	site_pvalloc_small();
	site_valloc_small();
	site_strndup();
	site_asprintf();
	f = fmemopen(text, sizeof(text) - 1, "r");
	if (!f)
		die("fmemopen failed\n");
	site_getline(f);
	fclose(f);
	site_memstream();
	site_usable_size();
}

/* ---- jemalloc's extended API ---- */

#define MALLOCX_LG_ALIGN(la) ((int)(la))
#define MALLOCX_ZERO ((int)0x40)

static void *(*p_mallocx)(size_t, int);
static void *(*p_rallocx)(void *, size_t, int);
static size_t (*p_xallocx)(void *, size_t, size_t, int);
static void (*p_dallocx)(void *, int);
static void (*p_sdallocx)(void *, size_t, int);
static size_t (*p_nallocx)(size_t, int);
static size_t (*p_sallocx)(const void *, int);

static void *must_sym(const char *name)
{
	void *p = dlsym(RTLD_DEFAULT, name);

	if (!p)
		die("entry_points: a symbol is missing (is the allocator preloaded?)\n");
	return p;
}

SITE void prep_je(void **r, void **x, void **d, void **sd)
{
	*r = keep("prep_je", malloc(100), 100);
	*x = keep("prep_je", malloc(100), 100); /* 112 usable: xallocx to 110 stays in place */
	*d = keep("prep_je", malloc(300), 300);
	*sd = keep("prep_je", malloc(400), 400);
}

SITE void site_mallocx(void)
{
	keep("site_mallocx", p_mallocx(100, 0), 100);
	keep("site_mallocx", p_mallocx(1000, MALLOCX_LG_ALIGN(6) | MALLOCX_ZERO), 1000);
}

SITE void site_mallocx_freed(void)
{
	void *p = keep("site_mallocx_freed", p_mallocx(200, 0), 200);

	nr_kept--;
	free(p);
	gone("site_mallocx_freed", 200);
}

SITE void site_rallocx(void *r)
{
	gone("prep_je", 100);
	keep("site_rallocx", p_rallocx(r, 5000, 0), 5000);
}

SITE void site_xallocx(void *x)
{
	size_t n = p_xallocx(x, 110, 0, 0);

	if (n < 110)
		die("xallocx did not resize in place\n");
	/* resized in place: like a realloc that kept its address, 110 bytes asked */
	gone("prep_je", 100);
	keep("site_xallocx", x, 110);
}

SITE void site_dallocx(void *d, void *sd)
{
	p_dallocx(d, 0);
	gone("prep_je", 300);
	p_sdallocx(sd, 400, 0);
	gone("prep_je", 400);
}

SITE void site_nallocx(void)
{
	/* sizes asked about, not allocations */
	site("site_nallocx", 1);
	if (p_nallocx(100, 0) < 100 || p_sallocx((void *)kept[0], 0) < 1)
		die("nallocx\n");
}

static void run_jemalloc(void)
{
	void *r, *x, *d, *sd;

	p_mallocx = must_sym("mallocx");
	p_rallocx = must_sym("rallocx");
	p_xallocx = must_sym("xallocx");
	p_dallocx = must_sym("dallocx");
	p_sdallocx = must_sym("sdallocx");
	p_nallocx = must_sym("nallocx");
	p_sallocx = must_sym("sallocx");
	prep_je(&r, &x, &d, &sd);
	site_mallocx();
	site_mallocx_freed();
	site_rallocx(r);
	site_xallocx(x);
	site_dallocx(d, sd);
	site_nallocx();
}

/* ---- tcmalloc's tc_* functions ---- */

static void *(*p_tc_malloc)(size_t);
static void *(*p_tc_calloc)(size_t, size_t);
static void *(*p_tc_realloc)(void *, size_t);
static void *(*p_tc_memalign)(size_t, size_t);
static int (*p_tc_posix_memalign)(void **, size_t, size_t);
static void *(*p_tc_skip)(size_t);
static void (*p_tc_free)(void *);
static void (*p_tc_free_sized)(void *, size_t);

SITE void site_tc(void)
{
	void *p, *q;

	keep("site_tc", p_tc_malloc(100), 100);
	keep("site_tc", p_tc_calloc(10, 20), 200);
	p = keep("site_tc", p_tc_malloc(50), 50);
	nr_kept--;
	gone("site_tc", 50);
	keep("site_tc", p_tc_realloc(p, 3000), 3000);
	keep("site_tc", p_tc_memalign(64, 300), 300);
	if (p_tc_posix_memalign(&q, 64, 400))
		die("tc_posix_memalign\n");
	keep("site_tc", q, 400);
	p = keep("site_tc", p_tc_malloc(60), 60);
	nr_kept--;
	p_tc_free(p);
	gone("site_tc", 60);
	p = keep("site_tc", p_tc_malloc(70), 70);
	nr_kept--;
	p_tc_free_sized(p, 70);
	gone("site_tc", 70);
}

SITE void site_tc_skip_new_handler(void)
{
	keep("site_tc_skip_new_handler", p_tc_skip(700), 700);
}

static void run_tcmalloc(void)
{
	p_tc_malloc = must_sym("tc_malloc");
	p_tc_calloc = must_sym("tc_calloc");
	p_tc_realloc = must_sym("tc_realloc");
	p_tc_memalign = must_sym("tc_memalign");
	p_tc_posix_memalign = must_sym("tc_posix_memalign");
	p_tc_skip = must_sym("tc_malloc_skip_new_handler");
	p_tc_free = must_sym("tc_free");
	p_tc_free_sized = must_sym("tc_free_sized");
	site_tc();
	site_tc_skip_new_handler();
}

/* ---- threads: each frees the blocks of the next one ---- */

#define NR_THREADS 4
#define PER_THREAD 2000

static void *blocks[NR_THREADS][PER_THREAD];
static pthread_barrier_t barrier;

static size_t thread_size(int t, int i)
{
	return 16 + (size_t)(t * 1000 + i * 37) % 3000;
}

SITE void site_thread_alloc(int t)
{
	for (int i = 0; i < PER_THREAD; i++)
		blocks[t][i] = malloc(thread_size(t, i));
}

SITE void site_thread_free(int t)
{
	int o = (t + 1) % NR_THREADS;

	for (int i = 0; i < PER_THREAD; i += 2)
		free(blocks[o][i]);
}

static void *thread_main(void *arg)
{
	int t = (int)(intptr_t)arg;

	for (int round = 0; round < 5; round++) {
		site_thread_alloc(t);
		pthread_barrier_wait(&barrier);
		site_thread_free(t);
		pthread_barrier_wait(&barrier);
		if (round < 4) /* the odd ones too, but for the last round's */
			for (int i = 1; i < PER_THREAD; i += 2)
				free(blocks[t][i]);
	}
	return NULL;
}

static void run_threads(void)
{
	pthread_t th[NR_THREADS];
	struct site *s = site("site_thread_alloc", 1);

	pthread_barrier_init(&barrier, NULL, NR_THREADS);
	for (int t = 0; t < NR_THREADS; t++)
		if (pthread_create(&th[t], NULL, thread_main, (void *)(intptr_t)t))
			die("pthread_create\n");
	for (int t = 0; t < NR_THREADS; t++)
		pthread_join(th[t], NULL);
	for (int t = 0; t < NR_THREADS; t++)
		for (int i = 0; i < PER_THREAD; i++) {
			s->allocs += 5;
			s->frees += i % 2 ? 4 : 5;
			if (i % 2) {
				s->live_bytes += thread_size(t, i);
				s->live_allocs++;
			}
		}
}

static char out[1 << 14];
static size_t out_len;

__attribute__((format(printf, 1, 2))) static void emit(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out + out_len, sizeof(out) - out_len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(out) - out_len)
		die("entry_points: output buffer full\n");
	out_len += n;
}

int main(int argc, char **argv)
{
	int fd;

	if (argc != 3)
		die("usage: entry_points glibc|jemalloc|tcmalloc|threads OUT\n");
	if (!strcmp(argv[1], "glibc"))
		run_glibc();
	else if (!strcmp(argv[1], "jemalloc"))
		run_jemalloc();
	else if (!strcmp(argv[1], "tcmalloc"))
		run_tcmalloc();
	else if (!strcmp(argv[1], "threads"))
		run_threads();
	else
		die("entry_points: unknown mode\n");
	emit("{\"pid\":%d,\"sites\":{", (int)getpid());
	for (int i = 0; i < nr_sites; i++) {
		struct site *s = &sites[i];

		emit("%s\"%s\":{\"live_bytes\":%lld,\"live_allocs\":%lld", i ? "," : "", s->name,
		     s->live_bytes, s->live_allocs);
		if (s->exact)
			emit(",\"allocs\":%lld,\"frees\":%lld", s->allocs, s->frees);
		emit("}");
	}
	emit("}}\n");
	fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, out, out_len) != (ssize_t)out_len)
		die("entry_points: cannot write the expectation\n");
	close(fd);
	return 0;
}
