/* SPDX-License-Identifier: MIT */
/*
 * alloc_threads: 4 threads allocating at the same time, from one shared call site and from one
 * call site of their own each, plus a churn site (all freed). Half of the shared site's blocks
 * are then freed by the main thread (frees from another thread than the allocating one).
 *
 *   alloc_threads [OUTFILE]   write the expected-JSON line (same shape as alloc_sites') to
 *                             OUTFILE (default stdout) and exit without freeing the rest.
 *
 * The worker threads never exit: they block until the process exits. A thread that exits runs
 * glibc's tcache_thread_shutdown(), which calls free() on blocks that are already free (the
 * tcache's entries) and on the tcache itself (allocated internally, never through malloc): a
 * profiler correctly counts those as unknown frees, and their number depends on the tcache's
 * state. Keeping the threads alive makes unknown_frees exactly 0.
 *
 * Allocations that are not ours: pthread_create() has the dynamic loader allocate each thread's
 * DTV with calloc (frames[0] in ld-linux, _dl_allocate_tls / allocate_dtv), kept for the thread's
 * life. Their sizes depend on the loader, so "proc" here only sums our sites; tests check the
 * process total against the sum of all its reported stacks and our sites exactly.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NTHREADS 4
#define SHARED_N 64
#define OWN_N 40
#define CHURN_N 3000

#define SITE __attribute__((noipa, used))

struct counts {
	long long live_bytes, live_allocs, alloc_bytes, allocs, frees;
};

struct worker {
	pthread_t th;
	int idx;
	void *volatile shared[SHARED_N];
	size_t shared_size[SHARED_N];
	void *volatile own[OWN_N];
	struct counts c_shared, c_own, c_churn;
};

struct worker workers[NTHREADS];
static pthread_barrier_t start_barrier, done_barrier;
void *volatile g_sink;

static void die(const char *msg)
{
	ssize_t r = write(2, msg, strlen(msg));
	(void)r;
	_exit(99);
}

static void count_alloc(struct counts *c, size_t size)
{
	c->live_bytes += size;
	c->live_allocs++;
	c->alloc_bytes += size;
	c->allocs++;
}

static void count_free(struct counts *c, size_t size)
{
	c->live_bytes -= size;
	c->live_allocs--;
	c->frees++;
}

/* One site for all threads: same call stack top, different threads. */
SITE void site_thread_shared(struct worker *w, int i)
{
	size_t size = 100 * (size_t)(w->idx + 1) + (size_t)i;
	void *p = malloc(size);
	if (!p)
		die("malloc failed\n");
	w->shared[i] = p;
	w->shared_size[i] = size;
	count_alloc(&w->c_shared, size);
}

/* One site per thread, each with another allocator. */
SITE void site_thread0(struct worker *w)
{
	for (int i = 0; i < OWN_N; i++) {
		w->own[i] = malloc(1000 + (size_t)i);
		if (!w->own[i])
			die("malloc failed\n");
		count_alloc(&w->c_own, 1000 + (size_t)i);
	}
}

SITE void site_thread1(struct worker *w)
{
	for (int i = 0; i < OWN_N; i++) {
		w->own[i] = calloc(3, 100 + (size_t)i);
		if (!w->own[i])
			die("calloc failed\n");
		count_alloc(&w->c_own, 3 * (100 + (size_t)i));
	}
}

SITE void site_thread2(struct worker *w)
{
	/* one block grown by realloc many times: each call is 1 alloc and 1 free of this site */
	void *p = NULL;
	size_t size = 0;
	for (int i = 0; i < OWN_N; i++) {
		size_t nsize = 64 * (size_t)(i + 1);
		void *q = realloc(p, nsize);
		if (!q)
			die("realloc failed\n");
		if (p)
			count_free(&w->c_own, size);
		count_alloc(&w->c_own, nsize);
		p = q;
		size = nsize;
		w->own[0] = p;
	}
}

SITE void site_thread3(struct worker *w)
{
	for (int i = 0; i < OWN_N; i++) {
		void *p = NULL;
		if (posix_memalign(&p, 64, 200 + (size_t)i))
			die("posix_memalign failed\n");
		w->own[i] = p;
		count_alloc(&w->c_own, 200 + (size_t)i);
	}
}

SITE void site_thread_churn(struct worker *w)
{
	for (int i = 0; i < CHURN_N; i++) {
		size_t size = 8 + (size_t)((i * 131 + w->idx * 17) % 2000);
		void *p = malloc(size);
		if (!p)
			die("malloc failed\n");
		g_sink = p;
		count_alloc(&w->c_churn, size);
		free(p);
		count_free(&w->c_churn, size);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	pthread_barrier_wait(&start_barrier);
	/* interleave the shared site with the others so threads overlap on it */
	for (int i = 0; i < SHARED_N; i++) {
		site_thread_shared(w, i);
		if (i == SHARED_N / 2) {
			switch (w->idx) {
			case 0: site_thread0(w); break;
			case 1: site_thread1(w); break;
			case 2: site_thread2(w); break;
			case 3: site_thread3(w); break;
			}
			site_thread_churn(w);
		}
	}
	pthread_barrier_wait(&done_barrier);
	for (;;)
		pause(); /* never exit: see the top comment */
	return NULL;
}

static char out[1 << 14];
static size_t out_len;

__attribute__((format(printf, 1, 2))) static void emit(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out + out_len, sizeof(out) - out_len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(out) - out_len)
		die("output buffer full\n");
	out_len += (size_t)n;
}

static void emit_site(const char *name, const char *allocator, const struct counts *c, int first)
{
	emit("%s\"%s\":{\"allocator\":\"%s\",\"live_bytes\":%lld,\"live_allocs\":%lld,"
	     "\"alloc_bytes\":%lld,\"allocs\":%lld,\"frees\":%lld}",
	     first ? "" : ",", name, allocator, c->live_bytes, c->live_allocs, c->alloc_bytes,
	     c->allocs, c->frees);
}

static void add(struct counts *t, const struct counts *c)
{
	t->live_bytes += c->live_bytes;
	t->live_allocs += c->live_allocs;
	t->alloc_bytes += c->alloc_bytes;
	t->allocs += c->allocs;
	t->frees += c->frees;
}

int main(int argc, char **argv)
{
	if (pthread_barrier_init(&start_barrier, NULL, NTHREADS) ||
	    pthread_barrier_init(&done_barrier, NULL, NTHREADS + 1))
		die("barrier init failed\n");
	for (int i = 0; i < NTHREADS; i++) {
		workers[i].idx = i;
		if (pthread_create(&workers[i].th, NULL, worker_main, &workers[i]))
			die("pthread_create failed\n");
	}
	pthread_barrier_wait(&done_barrier);

	/* the main thread frees every other block of the shared site (allocated by the workers) */
	for (int t = 0; t < NTHREADS; t++) {
		struct worker *w = &workers[t];
		for (int i = 0; i < SHARED_N; i += 2) {
			free(w->shared[i]);
			count_free(&w->c_shared, w->shared_size[i]);
		}
	}

	struct counts shared = { 0 }, churn = { 0 }, total = { 0 };
	for (int t = 0; t < NTHREADS; t++) {
		add(&shared, &workers[t].c_shared);
		add(&churn, &workers[t].c_churn);
	}
	static const char *const own_name[] = { "site_thread0", "site_thread1", "site_thread2",
						"site_thread3" };
	static const char *const own_alloc[] = { "malloc", "calloc", "realloc", "posix_memalign" };
	emit("{\"pid\":%d,\"mode\":\"launch\",\"threads\":%d,\"sites\":{", (int)getpid(), NTHREADS);
	emit_site("site_thread_shared", "malloc", &shared, 1);
	emit_site("site_thread_churn", "malloc", &churn, 0);
	add(&total, &shared);
	add(&total, &churn);
	for (int t = 0; t < NTHREADS; t++) {
		emit_site(own_name[t], own_alloc[t], &workers[t].c_own, 0);
		add(&total, &workers[t].c_own);
	}
	emit("},\"proc\":{\"live_bytes\":%lld,\"live_allocs\":%lld,\"alloc_bytes\":%lld,"
	     "\"allocs\":%lld,\"frees\":%lld,\"unknown_frees\":0}}\n",
	     total.live_bytes, total.live_allocs, total.alloc_bytes, total.allocs, total.frees);

	int fd = 1;
	if (argc >= 2 && strcmp(argv[1], "-")) {
		fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			die("cannot open output file\n");
	}
	for (size_t off = 0; off < out_len;) {
		ssize_t n = write(fd, out + off, out_len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("write failed\n");
		off += (size_t)n;
	}
	exit(0); /* the workers are still blocked in pause() */
}
