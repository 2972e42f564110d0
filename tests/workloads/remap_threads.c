// SPDX-License-Identifier: MIT
/*
 * mremap(2) and glibc's memalign family under threads (the mremap tracepoints, the memalign
 * probes past their cmpb). Run with MALLOC_MMAP_THRESHOLD_=131072.
 *   remap_threads MODE OUT   run MODE, write the expectation to OUT, exit (what is kept stays)
 * The expectation: {"pid", "heap": {site: live bytes}, "mmap": {site: live bytes},
 * "mmap_bytes", "mmap_regions"} (sizes are those asked; frame 0's function names the site).
 * Modes:
 *   threads  4 threads at once, ITER rounds each: site_map (2P) grown by site_grow (16P,
 *            MREMAP_MAYMOVE), shrunk in place by site_shrink (4P), grown by a raw
 *            syscall(SYS_mremap) in site_raw (6P), an mremap that fails (EINVAL: MREMAP_FIXED
 *            without MAYMOVE) in site_fail, moved by site_fixed onto the head of an 8P mapping
 *            of site_tgt (6P + the target's 2P), site_part moves and grows the head 2P of an 8P
 *            mapping of site_part_src (4P + 6P); a 256 KiB malloc (site_big) realloc'ed to
 *            512 KiB (site_regrow) and 300 KiB (site_reshrink): glibc's mremap inside realloc.
 *            All but the last KEEP rounds unmapped/freed. Memalign family: each thread's
 *            memalign/aligned_alloc/posix_memalign/valloc/pvalloc blocks (and a 256 KiB
 *            memalign(4096), mapped by glibc); then each thread frees a quarter of the next
 *            thread's blocks and reallocs (site_xrealloc) another quarter, during its mremaps.
 *   threads_fp     the same, for --unwind fp (no raw mremap: site_raw uses libc's mremap)
 *   merged_grow    two adjacent 4P mappings (site_lo, site_hi: one VMA to the kernel) moved and
 *                  grown by one mremap of 8P to 16P (site_merge): 16P in one region
 *   merged_shrink  the same shrunk to 2P in place
 *   fork     site_map/site_grow mappings and a realloc'ed mapped block, then a fork: the child
 *            (not a target) mremaps, munmaps, reallocs and frees what it inherited and exits;
 *            the parent then shrinks its own (site_shrink)
 *   race     2 threads move the middle 2P of 8P mappings (site_race_src) away and grown
 *            (site_race_part; race_head: the head 2P), 2 others map 2P (site_race_b) 300 times
 *            each and keep them: the
 *            kernel hands the holes the moves leave to those mappings
 *   stale_skip  a mapping (site_map), a 16-byte malloc (unsampled under --sample-bytes), then
 *            from a frame whose buffer spans where that malloc's return address was (not
 *            written since), the mapping grown and moved (site_stale_remap) and one more
 *            mapped (site_stale_map)
 *   dup      mremap of 0 bytes of a shared anonymous mapping (site_shared): a second mapping of
 *            the same pages, 8P (site_dup); both stay
 *   exiting  threads that allocate (memalign family, mremaps) and exit while others allocate
 *            (what they kept stays, their tcache teardown frees are no unknown frees)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define P 4096ul
#define NT 4
#define ITER 40
#define KEEP 1 /* with 4 threads in flight the index of 64 mappings is not overflowed */
#define NA 32 /* memalign family blocks of each kind a thread makes */

#define SITE __attribute__((noipa, used))

static int use_raw = 1;
void *volatile sink;

struct th {
	pthread_t t;
	int idx;
	char *volatile fixed[ITER], *volatile tgt[ITER], *volatile part[ITER], *volatile src[ITER];
	void *volatile heap[ITER];
	void *volatile ma[5][NA];
	void *volatile bigal;
};

static struct th th[NT];
static pthread_barrier_t bar;

static void die(const char *m)
{
	fprintf(stderr, "remap_threads: %s: %s\n", m, strerror(errno));
	_exit(3);
}

/* a macro: an inlined function would be frame 0 of the site's stack */
#define anon(len)                                                                                 \
	({                                                                                        \
		void *p_ = mmap(NULL, (len), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, \
				-1, 0);                                                           \
		if (p_ == MAP_FAILED)                                                             \
			die("mmap");                                                              \
		(char *)p_;                                                                       \
	})

SITE char *site_map(void)
{
	char *p = anon(2 * P);

	sink = p;
	return p;
}

SITE char *site_tgt(void)
{
	char *p = anon(8 * P);

	sink = p;
	return p;
}

SITE char *site_part_src(void)
{
	char *p = anon(8 * P);

	sink = p;
	return p;
}

SITE char *site_grow(char *a)
{
	char *p = mremap(a, 2 * P, 16 * P, MREMAP_MAYMOVE);

	sink = p;
	return p;
}

SITE char *site_shrink(char *a, size_t from, size_t to)
{
	char *p = mremap(a, from, to, 0);

	sink = p;
	return p;
}

SITE char *site_raw(char *a)
{
	char *p;

	if (use_raw)
		p = (char *)syscall(SYS_mremap, a, 4 * P, 6 * P, MREMAP_MAYMOVE);
	else
		p = mremap(a, 4 * P, 6 * P, MREMAP_MAYMOVE);
	sink = p;
	return p;
}

SITE long site_fail(char *a)
{
	/* MREMAP_FIXED without MREMAP_MAYMOVE: EINVAL */
	char *p = mremap(a, 6 * P, 8 * P, MREMAP_FIXED, a + 64 * P);

	sink = p;
	return p == MAP_FAILED ? errno : 0;
}

SITE char *site_fixed(char *a, char *to)
{
	char *p = mremap(a, 6 * P, 6 * P, MREMAP_MAYMOVE | MREMAP_FIXED, to);

	sink = p;
	return p;
}

SITE char *site_part(char *a)
{
	char *p = mremap(a, 2 * P, 4 * P, MREMAP_MAYMOVE);

	sink = p;
	return p;
}

SITE void *site_big(void)
{
	void *p = malloc(256 << 10);

	sink = p;
	return p;
}

SITE void *site_regrow(void *p)
{
	void *q = realloc(p, 512 << 10);

	sink = q;
	return q;
}

SITE void *site_reshrink(void *p)
{
	void *q = realloc(p, 300 << 10);

	sink = q;
	return q;
}

SITE void *site_memalign(void)
{
	void *p = memalign(64, 1000);

	sink = p;
	return p;
}

SITE void *site_aligned(void)
{
	void *p = aligned_alloc(4096, 8192);

	sink = p;
	return p;
}

SITE void *site_posix(void)
{
	void *p = NULL;

	if (posix_memalign(&p, 256, 3000))
		return NULL;
	sink = p;
	return p;
}

SITE void *site_valloc(void)
{
	void *p = valloc(5000);

	sink = p;
	return p;
}

SITE void *site_pvalloc(void)
{
	void *p = pvalloc(5000);

	sink = p;
	return p;
}

SITE void *site_bigalign(void)
{
	void *p = memalign(4096, 256 << 10);

	sink = p;
	return p;
}

SITE void *site_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);

	sink = q;
	return q;
}

static const size_t ma_size[5] = {1000, 8192, 3000, 5000, 5000};
static const char *const ma_site[5] = {"site_memalign", "site_aligned", "site_posix", "site_valloc",
				       "site_pvalloc"};

static void alloc_family(struct th *me)
{
	for (int j = 0; j < NA; j++) {
		me->ma[0][j] = site_memalign();
		me->ma[1][j] = site_aligned();
		me->ma[2][j] = site_posix();
		me->ma[3][j] = site_valloc();
		me->ma[4][j] = site_pvalloc();
		for (int k = 0; k < 5; k++)
			if (!me->ma[k][j])
				die("memalign family");
	}
	me->bigal = site_bigalign();
	if (!me->bigal)
		die("memalign 256k");
}

/* the next thread's blocks: j % 4 == 1 freed, == 2 realloc'ed to 2 * size + 8; its big one grown */
static void touch_other(struct th *o, int j)
{
	for (int k = 0; k < 5; k++) {
		if (j % 4 == 1) {
			free(o->ma[k][j]);
			o->ma[k][j] = NULL;
		} else if (j % 4 == 2) {
			void *q = site_xrealloc(o->ma[k][j], 2 * ma_size[k] + 8);

			if (!q)
				die("xrealloc");
			o->ma[k][j] = q;
		}
	}
	if (j == 0) {
		o->bigal = site_xrealloc(o->bigal, 700 << 10);
		if (!o->bigal)
			die("xrealloc big");
	}
}

static void remap_round(struct th *me, int i, struct th *other)
{
	char *a = site_map(), *t, *s, *f;
	void *h;

	a = site_grow(a);
	if (a == MAP_FAILED)
		die("grow");
	if (site_shrink(a, 16 * P, 4 * P) != a)
		die("shrink");
	a = site_raw(a);
	if (a == MAP_FAILED)
		die("raw");
	if (site_fail(a) != EINVAL)
		die("fail did not fail");
	t = site_tgt();
	if (site_fixed(a, t) != t)
		die("fixed");
	s = site_part_src();
	f = site_part(s);
	if (f == MAP_FAILED)
		die("part");
	h = site_big();
	h = site_regrow(h);
	h = site_reshrink(h);
	if (!h)
		die("realloc");
	if (other && i < NA)
		touch_other(other, i);
	if (i < ITER - KEEP) {
		/* t: 6P of site_fixed + 2P of site_tgt; s: 6P left at s + 2P */
		if (munmap(t, 8 * P) || munmap(s + 2 * P, 6 * P) || munmap(f, 4 * P))
			die("munmap");
		free(h);
	} else {
		me->fixed[i] = t, me->tgt[i] = t + 6 * P, me->part[i] = f, me->src[i] = s + 2 * P;
		me->heap[i] = h;
	}
}

static void *worker(void *arg)
{
	struct th *me = arg;

	alloc_family(me);
	pthread_barrier_wait(&bar);
	for (int i = 0; i < ITER; i++)
		remap_round(me, i, &th[(me->idx + 1) % NT]);
	pthread_barrier_wait(&bar); /* done */
	pthread_barrier_wait(&bar); /* kept alive until the process exits */
	return NULL;
}

static FILE *out;
static int nsites;

static void site_out(const char *name, unsigned long long v)
{
	fprintf(out, "%s\"%s\":%llu", nsites++ ? "," : "", name, v);
}

static void write_family_expect(int nthreads)
{
	unsigned long long live[5] = {0}, xre = 0;

	for (int t = 0; t < nthreads; t++)
		for (int j = 0; j < NA; j++)
			for (int k = 0; k < 5; k++) {
				if (j % 4 == 2)
					xre += 2 * ma_size[k] + 8;
				else if (j % 4 != 1)
					live[k] += ma_size[k];
			}
	for (int k = 0; k < 5; k++)
		site_out(ma_site[k], live[k]);
	site_out("site_bigalign", 0);
	site_out("site_xrealloc", xre + (unsigned long long)nthreads * (700 << 10));
}

static void open_out(const char *path)
{
	out = fopen(path, "w");
	if (!out)
		die("open");
	fprintf(out, "{\"pid\":%d,\"heap\":{", getpid());
	nsites = 0;
}

static void mode_threads(const char *path)
{
	unsigned long long n = (unsigned long long)NT * KEEP;

	pthread_barrier_init(&bar, NULL, NT + 1);
	for (int t = 0; t < NT; t++) {
		th[t].idx = t;
		if (pthread_create(&th[t].t, NULL, worker, &th[t]))
			die("pthread_create");
	}
	pthread_barrier_wait(&bar);
	pthread_barrier_wait(&bar);
	open_out(path);
	write_family_expect(NT);
	site_out("site_big", 0);
	site_out("site_regrow", 0);
	site_out("site_reshrink", n * (300 << 10));
	fprintf(out, "},\"mmap\":{");
	nsites = 0;
	site_out("site_map", 0);
	site_out("site_grow", 0);
	site_out("site_shrink", 0);
	site_out("site_raw", 0);
	site_out("site_fail", 0);
	site_out("site_fixed", n * 6 * P);
	site_out("site_tgt", n * 2 * P);
	site_out("site_part_src", n * 6 * P);
	site_out("site_part", n * 4 * P);
	fprintf(out, "},\"mmap_bytes\":%llu,\"mmap_regions\":%llu}\n", n * 18 * P, n * 4);
	fclose(out);
	_exit(0); /* the workers stay blocked: no thread teardown */
}

SITE char *site_lo(char *at)
{
	char *p = mmap(at, 4 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
		       -1, 0);

	sink = p;
	return p;
}

SITE char *site_hi(char *at)
{
	char *p = mmap(at, 4 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
		       -1, 0);

	sink = p;
	return p;
}

SITE char *site_merge(char *a, size_t to, int flags)
{
	char *p = mremap(a, 8 * P, to, flags);

	sink = p;
	return p;
}

static void mode_merged(const char *path, int grow)
{
	char *room = anon(64 * P), *a, *b, *r;
	size_t to = grow ? 16 * P : 2 * P;

	munmap(room, 64 * P);
	a = site_lo(room);
	b = site_hi(room + 4 * P);
	if (a != room || b != room + 4 * P)
		die("placement");
	r = site_merge(a, to, grow ? MREMAP_MAYMOVE : 0);
	if (r == MAP_FAILED)
		die("mremap of both");
	sink = r;
	open_out(path);
	fprintf(out, "},\"mmap\":{\"site_lo\":0,\"site_hi\":0,\"site_merge\":%lu},\"mmap_bytes\":%lu,"
		     "\"mmap_regions\":1}\n", to, to);
	fclose(out);
}

static void mode_fork(const char *path)
{
	char *a = site_grow(site_map()), *b;
	void *h = site_regrow(site_big());
	int st;
	pid_t pid;

	if (a == MAP_FAILED || !h)
		die("setup");
	b = site_tgt();
	pid = fork();
	if (pid < 0)
		die("fork");
	if (!pid) {
		/* the child: not a target; what it does to its copies is not the parent's */
		char *c = mremap(a, 16 * P, 32 * P, MREMAP_MAYMOVE);

		if (c == MAP_FAILED || munmap(c, 32 * P) || munmap(b, 4 * P))
			_exit(5);
		h = realloc(h, 1 << 20);
		free(h);
		sink = mremap(b + 4 * P, 4 * P, 2 * P, 0);
		_exit(0);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		die("child");
	if (site_shrink(a, 16 * P, 8 * P) != a)
		die("shrink");
	h = site_reshrink(h);
	if (!h)
		die("reshrink");
	open_out(path);
	fprintf(out, "\"site_big\":0,\"site_regrow\":0,\"site_reshrink\":%d},\"mmap\":{\"site_map\":0,"
		     "\"site_grow\":0,\"site_shrink\":%lu,\"site_tgt\":%lu},\"mmap_bytes\":%lu,"
		     "\"mmap_regions\":2}\n", 300 << 10, 8 * P, 8 * P, 16 * P);
	fclose(out);
}

/* exiting: NT threads allocate and exit, two at a time, while NT others allocate and stay */
static struct th ex[2 * NT];

static void *exiting_worker(void *arg)
{
	struct th *me = arg;

	alloc_family(me);
	for (int j = 0; j < NA; j++) /* freed by the thread itself: into its tcache */
		for (int k = 0; k < 5; k++)
			if (j % 4 == 1) {
				free(me->ma[k][j]);
				me->ma[k][j] = NULL;
			}
	for (int i = 0; i < 8; i++)
		free(malloc(100 + 16 * i)); /* more tcache entries for its teardown */
	remap_round(me, ITER - 1, NULL);
	return NULL;
}

static void *staying_worker(void *arg)
{
	struct th *me = arg;

	alloc_family(me);
	for (int j = 0; j < NA; j++)
		for (int k = 0; k < 5; k++)
			if (j % 4 == 1) {
				free(me->ma[k][j]);
				me->ma[k][j] = NULL;
			}
	for (int i = ITER - KEEP; i < ITER; i++)
		remap_round(me, i, NULL);
	pthread_barrier_wait(&bar);
	pthread_barrier_wait(&bar);
	return NULL;
}

static void mode_exiting(const char *path)
{
	unsigned long long live[5] = {0};
	unsigned long long n = (unsigned long long)NT * KEEP + NT; /* rounds kept */

	pthread_barrier_init(&bar, NULL, NT + 1);
	for (int t = 0; t < NT; t++)
		if (pthread_create(&ex[NT + t].t, NULL, staying_worker, &ex[NT + t]))
			die("pthread_create");
	for (int t = 0; t < NT; t += 2) {
		if (pthread_create(&ex[t].t, NULL, exiting_worker, &ex[t]) ||
		    pthread_create(&ex[t + 1].t, NULL, exiting_worker, &ex[t + 1]))
			die("pthread_create");
		pthread_join(ex[t].t, NULL);
		pthread_join(ex[t + 1].t, NULL);
	}
	pthread_barrier_wait(&bar);
	open_out(path);
	for (int j = 0; j < NA; j++)
		for (int k = 0; k < 5; k++)
			if (j % 4 != 1)
				live[k] += 2 * NT * ma_size[k];
	for (int k = 0; k < 5; k++)
		site_out(ma_site[k], live[k]);
	site_out("site_bigalign", 2ull * NT * (256 << 10));
	site_out("site_reshrink", n * (300 << 10));
	fprintf(out, "},\"mmap\":{");
	nsites = 0;
	site_out("site_fixed", n * 6 * P);
	site_out("site_tgt", n * 2 * P);
	site_out("site_part_src", n * 6 * P);
	site_out("site_part", n * 4 * P);
	fprintf(out, "},\"mmap_bytes\":%llu,\"mmap_regions\":%llu}\n", n * 18 * P, n * 4);
	fclose(out);
	_exit(0);
}

/* race */
#define RACE_A 3000
#define RACE_B 300
static char *volatile race_b[2][RACE_B];
static volatile int race_stop;
static unsigned long race_off = 2 * P; /* the part moved: the middle (race), the head (race_head) */

SITE char *site_race_src(void)
{
	char *p = anon(8 * P);

	sink = p;
	return p;
}

SITE char *site_race_part(char *a)
{
	char *p = mremap(a, 2 * P, 4 * P, MREMAP_MAYMOVE);

	sink = p;
	return p;
}

SITE char *site_race_b(void)
{
	char *p = anon(2 * P);

	sink = p;
	return p;
}

static void *race_mover(void *arg)
{
	for (int i = 0; i < RACE_A && !race_stop; i++) {
		char *m = site_race_src(), *f = site_race_part(m + race_off);

		if (f == MAP_FAILED)
			die("race mremap");
		if (munmap(f, 4 * P) || (race_off && munmap(m, race_off)) ||
		    munmap(m + race_off + 2 * P, 6 * P - race_off))
			die("race munmap");
	}
	return NULL;
}

static void *race_mapper(void *arg)
{
	long t = (long)arg;

	for (int i = 0; i < RACE_B; i++) {
		race_b[t][i] = site_race_b();
		usleep(200);
	}
	return NULL;
}

static void mode_race(const char *path)
{
	pthread_t a[2], b[2];

	for (long i = 0; i < 2; i++)
		if (pthread_create(&a[i], NULL, race_mover, NULL) ||
		    pthread_create(&b[i], NULL, race_mapper, (void *)i))
			die("pthread_create");
	for (int i = 0; i < 2; i++)
		pthread_join(b[i], NULL);
	race_stop = 1;
	for (int i = 0; i < 2; i++)
		pthread_join(a[i], NULL);
	open_out(path);
	fprintf(out, "},\"mmap\":{\"site_race_src\":0,\"site_race_part\":0,\"site_race_b\":%lu},"
		     "\"mmap_bytes\":%lu,\"mmap_regions\":%d}\n", 2 * RACE_B * 2 * P, 2 * RACE_B * 2 * P,
		2 * RACE_B);
	fclose(out);
}

/* stale_skip */
SITE void site_small(void)
{
	sink = malloc(16);
}

SITE char *site_stale_remap(char *a)
{
	char *p = mremap(a, 4 * P, 64 * P, MREMAP_MAYMOVE);

	sink = p;
	return p;
}

SITE char *site_stale_map(void)
{
	char *p = anon(4 * P);

	sink = p;
	return p;
}

SITE void stale_deep(char *m)
{
	volatile char buf[4096]; /* only its lowest byte written */

	buf[0] = 1;
	sink = (void *)(long)buf[0];
	if (site_stale_remap(m) == MAP_FAILED)
		die("stale mremap");
	site_stale_map();
}

static void mode_stale_skip(const char *path)
{
	char *m = anon(4 * P);

	sink = m;
	site_small();
	stale_deep(m);
	open_out(path);
	fprintf(out, "},\"mmap\":{\"site_stale_remap\":%lu,\"site_stale_map\":%lu},\"mmap_bytes\":%lu,"
		     "\"mmap_regions\":2}\n", 64 * P, 4 * P, 68 * P);
	fclose(out);
}

/* dup */
SITE char *site_shared(void)
{
	char *p = mmap(NULL, 4 * P, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("mmap shared");
	sink = p;
	return p;
}

SITE char *site_dup(char *a)
{
	char *p = mremap(a, 0, 8 * P, MREMAP_MAYMOVE);

	sink = p;
	return p;
}

static void mode_dup(const char *path)
{
	char *a = site_shared(), *b = site_dup(a);

	if (b == MAP_FAILED)
		die("mremap dup");
	open_out(path);
	fprintf(out, "},\"mmap\":{\"site_shared\":%lu,\"site_dup\":%lu},\"mmap_bytes\":%lu,"
		     "\"mmap_regions\":2}\n", 4 * P, 8 * P, 12 * P);
	fclose(out);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	if (!strcmp(argv[1], "threads") || !strcmp(argv[1], "threads_fp")) {
		use_raw = !strcmp(argv[1], "threads");
		mode_threads(argv[2]);
	} else if (!strcmp(argv[1], "merged_grow") || !strcmp(argv[1], "merged_shrink")) {
		mode_merged(argv[2], !strcmp(argv[1], "merged_grow"));
	} else if (!strcmp(argv[1], "fork")) {
		mode_fork(argv[2]);
	} else if (!strcmp(argv[1], "race") || !strcmp(argv[1], "race_head")) {
		race_off = strcmp(argv[1], "race") ? 0 : 2 * P;
		mode_race(argv[2]);
	} else if (!strcmp(argv[1], "stale_skip")) {
		mode_stale_skip(argv[2]);
	} else if (!strcmp(argv[1], "dup")) {
		mode_dup(argv[2]);
	} else if (!strcmp(argv[1], "exiting")) {
		mode_exiting(argv[2]);
	} else {
		return 2;
	}
	return 0;
}
