// SPDX-License-Identifier: MIT
//
// je_threads: every C++ operator new and delete, and jemalloc's extended API (mallocx,
// rallocx, xallocx, dallocx, sdallocx with flags), realloc that moves and that fails, nothrow
// new that fails, from NR_THREADS threads at once, each freeing blocks another one allocated.
//
//   je_threads MODE OUT [ROUNDS]   MODE: new (operator new/delete only: any allocator),
//                                  x (jemalloc's extended API and realloc: jemalloc only),
//                                  all (both); write the expectation to OUT, exit without
//                                  freeing (workers stay alive until the exit: no teardown).
//
// Expectation: {"pid":P,"calls":{"NAME":N},"sites":{"NAME":{"live_bytes","live_allocs","allocs",
// "frees","alloc_bytes"}}}: per site_* function (the allocator's caller, frames[0]), what the
// program did, at the sizes it asked for (xallocx: what it holds, min(usable, size + extra));
// calls: the allocator calls each site made (xallocx: those that resized).
#include <atomic>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <new>
#include <pthread.h>
#include <unistd.h>

#define SITE extern "C" __attribute__((noipa, used))
#define NR_THREADS 4
#define PER 64 // blocks per site per thread per round

static void die(const char *msg)
{
	ssize_t r = write(2, msg, strlen(msg));

	(void)r;
	_exit(99);
}

// ---- sites, counted with atomics (threads)

enum {
	S_NEW, S_NEW_ARR, S_NEW_NT, S_NEW_ARR_NT, S_NEW_AL, S_NEW_ARR_AL, S_NEW_AL_NT,
	S_NEW_ARR_AL_NT, S_NEW_BIG, S_NEW_BIG_NT, S_NEW_NT_FAIL, S_MALLOCX, S_MALLOCX_BIG,
	S_PREP, S_RALLOCX, S_RALLOCX_FAIL, S_XALLOCX, S_REALLOC, S_REALLOC_FAIL, NR_SITES
};
static const char *site_names[NR_SITES] = {
	"site_new", "site_new_arr", "site_new_nt", "site_new_arr_nt", "site_new_al",
	"site_new_arr_al", "site_new_al_nt", "site_new_arr_al_nt", "site_new_big",
	"site_new_big_nt", "site_new_nt_fail", "site_mallocx", "site_mallocx_big", "site_prep",
	"site_rallocx", "site_rallocx_fail", "site_xallocx", "site_realloc", "site_realloc_fail",
};
struct counts {
	std::atomic<long long> live_bytes, live_allocs, allocs, frees, alloc_bytes;
};
static counts sites[NR_SITES];
static std::atomic<long long> calls[NR_SITES]; // allocator calls made from each site

static void add(int s, size_t size)
{
	sites[s].live_bytes += size;
	sites[s].live_allocs++;
	sites[s].allocs++;
	sites[s].alloc_bytes += size;
}

static void gone(int s, size_t size)
{
	sites[s].live_bytes -= size;
	sites[s].live_allocs--;
	sites[s].frees++;
}

// ---- blocks: each thread's slots, freed by the next thread

enum kind { K_NEW, K_ARR, K_AL, K_ARR_AL, K_MX };
struct slot {
	void *volatile p;
	size_t size, align;
	int site, kind, flags;
};
#define SLOTS 8192
static slot slots[NR_THREADS][SLOTS];
static int nr_slots[NR_THREADS];
static int round_start[NR_THREADS];
void *volatile g_sink;
volatile size_t g_fail = ((size_t)1 << 47) - ((size_t)1 << 24); // fails (no room), below 128 TiB
volatile size_t g_huge = (size_t)1 << 62;   // fails for sure
static int rounds = 3, do_new, do_x;

static void keep(int t, int s, int kind, void *p, size_t size, size_t align = 0, int flags = 0)
{
	slot *sl;

	if (!p)
		die("je_threads: allocation failed\n");
	if (nr_slots[t] == SLOTS)
		die("je_threads: slots full\n");
	sl = &slots[t][nr_slots[t]++];
	sl->p = p;
	sl->size = size;
	sl->align = align;
	sl->site = s;
	sl->kind = kind;
	sl->flags = flags;
	add(s, size);
}

static size_t sz(int t, int i, int r)
{
	return (size_t)(t * 37 + i * 13 + r * 7) % 600;
}

// ---- jemalloc's API, found with dlsym

#define MALLOCX_LG_ALIGN(la) ((int)(la))
#define MALLOCX_ALIGN64 6
#define MALLOCX_ZERO 0x40
#define MALLOCX_TCACHE_NONE (1 << 8)
#define MALLOCX_ARENA(a) ((int)(((unsigned)(a) + 1) << 20))

static void *(*p_mallocx)(size_t, int);
static void *(*p_rallocx)(void *, size_t, int);
static size_t (*p_xallocx)(void *, size_t, size_t, int);
static void (*p_dallocx)(void *, int);
static void (*p_sdallocx)(void *, size_t, int);
static int (*p_mallctl)(const char *, void *, size_t *, void *, size_t);
static unsigned arena;

static void *sym(const char *name)
{
	void *p = dlsym(RTLD_DEFAULT, name);

	if (!p)
		die("je_threads: a jemalloc symbol is missing\n");
	return p;
}

static int mx_flags(int i)
{
	static const int f[] = {0, MALLOCX_LG_ALIGN(MALLOCX_ALIGN64), MALLOCX_ZERO,
				MALLOCX_TCACHE_NONE, MALLOCX_LG_ALIGN(12) | MALLOCX_ZERO, -1};
	int x = f[i % 6];

	return x == -1 ? MALLOCX_ARENA(arena) | MALLOCX_TCACHE_NONE : x;
}

// ---- sites

SITE void site_new(int t, int r)
{
	for (int i = 0; i < PER; i++, calls[S_NEW]++)
		keep(t, S_NEW, K_NEW, ::operator new(sz(t, i, r)), sz(t, i, r));
}

SITE void site_new_arr(int t, int r)
{
	for (int i = 0; i < PER; i++, calls[S_NEW_ARR]++)
		keep(t, S_NEW_ARR, K_ARR, ::operator new[](sz(t, i, r) + 1), sz(t, i, r) + 1);
}

SITE void site_new_nt(int t, int r)
{
	for (int i = 0; i < PER; i++, calls[S_NEW_NT]++)
		keep(t, S_NEW_NT, K_NEW, ::operator new(sz(t, i, r) + 2, std::nothrow),
		     sz(t, i, r) + 2);
}

SITE void site_new_arr_nt(int t, int r)
{
	for (int i = 0; i < PER; i++, calls[S_NEW_ARR_NT]++)
		keep(t, S_NEW_ARR_NT, K_ARR, ::operator new[](sz(t, i, r) + 3, std::nothrow),
		     sz(t, i, r) + 3);
}

SITE void site_new_al(int t, int r)
{
	for (int i = 0; i < PER; i++, calls[S_NEW_AL]++) {
		size_t a = (size_t)16 << (i % 6);
		keep(t, S_NEW_AL, K_AL, ::operator new(sz(t, i, r) + 4, std::align_val_t(a)),
		     sz(t, i, r) + 4, a);
	}
}

SITE void site_new_arr_al(int t, int r)
{
	for (int i = 0; i < PER; i++, calls[S_NEW_ARR_AL]++) {
		size_t a = (size_t)32 << (i % 8);
		keep(t, S_NEW_ARR_AL, K_ARR_AL,
		     ::operator new[](sz(t, i, r) + 5, std::align_val_t(a)), sz(t, i, r) + 5, a);
	}
}

SITE void site_new_al_nt(int t, int r)
{
	for (int i = 0; i < PER; i++, calls[S_NEW_AL_NT]++) {
		size_t a = (size_t)64 << (i % 4);
		keep(t, S_NEW_AL_NT, K_AL,
		     ::operator new(sz(t, i, r) + 6, std::align_val_t(a), std::nothrow),
		     sz(t, i, r) + 6, a);
	}
}

SITE void site_new_arr_al_nt(int t, int r)
{
	for (int i = 0; i < PER; i++, calls[S_NEW_ARR_AL_NT]++) {
		size_t a = (size_t)128 << (i % 3);
		keep(t, S_NEW_ARR_AL_NT, K_ARR_AL,
		     ::operator new[](sz(t, i, r) + 7, std::align_val_t(a), std::nothrow),
		     sz(t, i, r) + 7, a);
	}
}

// past jemalloc's fast path (cmp $0x1000,%rdi; ja): its slow path, large size classes
SITE void site_new_big(int t, int r)
{
	for (int i = 0; i < PER / 4; i++, calls[S_NEW_BIG]++) {
		size_t n = 0x1000 + sz(t, i, r) * 97;
		keep(t, S_NEW_BIG, i % 2 ? K_ARR : K_NEW,
		     i % 2 ? ::operator new[](n) : ::operator new(n), n);
	}
}

SITE void site_new_big_nt(int t, int r)
{
	for (int i = 0; i < PER / 4; i++, calls[S_NEW_BIG_NT]++) {
		size_t n = 0x1001 + sz(t, i, r) * 301;
		keep(t, S_NEW_BIG_NT, i % 2 ? K_ARR : K_NEW,
		     i % 2 ? ::operator new[](n, std::nothrow) : ::operator new(n, std::nothrow), n);
	}
}

SITE void site_new_nt_fail(int t, int r)
{
	(void)t;
	(void)r;
	for (int i = 0; i < 4; i++, calls[S_NEW_NT_FAIL]++) {
		void *p = i & 1 ? ::operator new[](i & 2 ? g_huge : g_fail, std::nothrow)
				: ::operator new(i & 2 ? g_huge : g_fail, std::nothrow);
		if (p)
			die("je_threads: a nothrow new of a huge size succeeded\n");
		g_sink = p;
	}
}

SITE void site_mallocx(int t, int r)
{
	for (int i = 0; i < PER; i++, calls[S_MALLOCX]++) {
		int f = mx_flags(i);
		keep(t, S_MALLOCX, K_MX, p_mallocx(sz(t, i, r) + 1, f), sz(t, i, r) + 1, 0, f);
	}
}

SITE void site_mallocx_big(int t, int r)
{
	for (int i = 0; i < PER / 4; i++, calls[S_MALLOCX_BIG]++) {
		int f = mx_flags(i);
		size_t n = 20000 + sz(t, i, r) * 311;
		keep(t, S_MALLOCX_BIG, K_MX, p_mallocx(n, f), n, 0, f);
	}
}

// blocks that rallocx, xallocx and realloc take: in slots prep[], not freed by the neighbour
struct pblock {
	void *volatile p;
	size_t size;
	int flags;
};
static pblock prep[NR_THREADS][4 * PER];

SITE void site_prep(int t, int r)
{
	for (int i = 0; i < 4 * PER; i++, calls[S_PREP]++) {
		int f = mx_flags(i);
		size_t n = 100 + sz(t, i, r);
		prep[t][i].p = p_mallocx(n, f);
		if (!prep[t][i].p)
			die("je_threads: mallocx failed\n");
		prep[t][i].size = n;
		prep[t][i].flags = f;
		add(S_PREP, n);
	}
}

// a block of prep's goes to another site: its slot now belongs to that site
static void moved(int t, int i, int s, void *np, size_t n, int kind, int flags)
{
	gone(S_PREP, prep[t][i].size);
	prep[t][i].p = nullptr;
	keep(t, s, kind, np, n, 0, flags);
}

SITE void site_rallocx(int t, int r)
{
	(void)r;
	for (int i = 0; i < PER; i++, calls[S_RALLOCX]++) {
		int f = prep[t][i].flags;
		// grow (moves), shrink, or grow a lot with another alignment
		size_t n = i % 3 == 0 ? prep[t][i].size * 9 : i % 3 == 1 ? prep[t][i].size / 2 + 1
								    : 70000 + i;
		if (i % 3 == 2)
			f = (f & ~0x3f) | MALLOCX_LG_ALIGN(7);
		void *np = p_rallocx(prep[t][i].p, n, f);
		moved(t, i, S_RALLOCX, np, n, K_MX, f);
	}
}

SITE void site_rallocx_fail(int t, int r)
{
	(void)r;
	for (int i = PER; i < PER + 8; i++, calls[S_RALLOCX_FAIL]++) {
		void *np = p_rallocx(prep[t][i].p, g_fail, prep[t][i].flags);
		if (np)
			die("je_threads: a huge rallocx succeeded\n");
		g_sink = np;
	}
}

SITE void site_xallocx(int t, int r)
{
	(void)r;
	for (int i = 2 * PER; i < 3 * PER; i++) {
		size_t old = prep[t][i].size;
		// in place within the size class, with extra, or too big (fails: stays as it was)
		size_t n = i % 3 == 0 ? old + 1 : i % 3 == 1 ? old : old * 50;
		size_t extra = i % 3 == 1 ? 5 : 0;
		size_t got = p_xallocx(prep[t][i].p, n, extra, prep[t][i].flags);
		if (got < n)
			continue; // not resized: the block stays prep's
		size_t held = got < n + extra ? got : n + extra;
		calls[S_XALLOCX]++; // (counted where it resized: the calls that allocate)
		moved(t, i, S_XALLOCX, prep[t][i].p, held, K_MX, prep[t][i].flags);
		// sdallocx needs a size within the block's size class: held is one
	}
}

SITE void site_realloc(int t, int r)
{
	(void)r;
	for (int i = 3 * PER; i < 3 * PER + PER / 2; i++, calls[S_REALLOC]++) {
		size_t n = i % 2 ? prep[t][i].size * 30 : prep[t][i].size + 3;
		void *np = realloc(prep[t][i].p, n);
		moved(t, i, S_REALLOC, np, n, K_MX, 0);
	}
}

SITE void site_realloc_fail(int t, int r)
{
	(void)r;
	for (int i = 3 * PER + PER / 2; i < 3 * PER + PER / 2 + 8; i++, calls[S_REALLOC_FAIL]++) {
		void *np = realloc(prep[t][i].p, g_fail);
		if (np)
			die("je_threads: a huge realloc succeeded\n");
		g_sink = np;
	}
}

// ---- frees: thread t frees some of thread o's blocks, with every matching variant

static void release(slot *sl, int v)
{
	void *p = sl->p;
	size_t n = sl->size;
	std::align_val_t a = std::align_val_t(sl->align);

	switch (sl->kind) {
	case K_NEW:
		if (v % 3 == 0)
			::operator delete(p);
		else if (v % 3 == 1)
			::operator delete(p, n);
		else
			::operator delete(p, std::nothrow);
		break;
	case K_ARR:
		if (v % 3 == 0)
			::operator delete[](p);
		else if (v % 3 == 1)
			::operator delete[](p, n);
		else
			::operator delete[](p, std::nothrow);
		break;
	case K_AL:
		if (v % 3 == 0)
			::operator delete(p, a);
		else if (v % 3 == 1)
			::operator delete(p, n, a);
		else
			::operator delete(p, a, std::nothrow);
		break;
	case K_ARR_AL:
		if (v % 3 == 0)
			::operator delete[](p, a);
		else if (v % 3 == 1)
			::operator delete[](p, n, a);
		else
			::operator delete[](p, a, std::nothrow);
		break;
	case K_MX:
		if (v % 3 == 0)
			p_dallocx(p, sl->flags & ~MALLOCX_ZERO);
		else if (v % 3 == 1)
			p_sdallocx(p, n, sl->flags & ~MALLOCX_ZERO);
		else
			free(p);
		break;
	}
	gone(sl->site, n);
	sl->p = nullptr;
}

SITE void frees_of(int o, int start)
{
	for (int i = start; i < nr_slots[o]; i++) {
		slot *sl = &slots[o][i];
		if (sl->p && i % 3 != 2) // a third stays live
			release(sl, i / 3);
	}
}

static pthread_barrier_t barrier;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int done;

static void *worker(void *arg)
{
	int t = (int)(intptr_t)arg, o = (t + 1) % NR_THREADS;

	for (int r = 0; r < rounds; r++) {
		int start = nr_slots[t];

		if (do_new) {
			site_new(t, r);
			site_new_arr(t, r);
			site_new_nt(t, r);
			site_new_arr_nt(t, r);
			site_new_al(t, r);
			site_new_arr_al(t, r);
			site_new_al_nt(t, r);
			site_new_arr_al_nt(t, r);
			site_new_big(t, r);
			site_new_big_nt(t, r);
			site_new_nt_fail(t, r);
		}
		if (do_x) {
			site_mallocx(t, r);
			site_mallocx_big(t, r);
			site_prep(t, r);
			site_rallocx(t, r);
			site_rallocx_fail(t, r);
			site_xallocx(t, r);
			site_realloc(t, r);
			site_realloc_fail(t, r);
		}
		round_start[t] = start; // where this round's blocks begin, for the neighbour
		pthread_barrier_wait(&barrier);
		frees_of(o, round_start[o]);
		pthread_barrier_wait(&barrier);
	}
	// stay alive: a thread's exit runs the allocator's teardown
	pthread_mutex_lock(&lock);
	done++;
	pthread_cond_broadcast(&cond);
	for (;;)
		pthread_cond_wait(&cond, &lock);
	return nullptr;
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
		die("je_threads: output buffer full\n");
	out_len += n;
}

int main(int argc, char **argv)
{
	pthread_t th[NR_THREADS];
	int fd, first;

	if (argc < 3)
		die("usage: je_threads new|x|all OUT [ROUNDS]\n");
	do_new = !strcmp(argv[1], "new") || !strcmp(argv[1], "all");
	do_x = !strcmp(argv[1], "x") || !strcmp(argv[1], "all");
	if (!do_new && !do_x)
		die("je_threads: unknown mode\n");
	if (argc > 3)
		rounds = atoi(argv[3]);
	if (rounds < 1 || rounds > 8)
		die("je_threads: 1 to 8 rounds\n");
	if (do_x) {
		size_t n = sizeof(arena);

		p_mallocx = (void *(*)(size_t, int))sym("mallocx");
		p_rallocx = (void *(*)(void *, size_t, int))sym("rallocx");
		p_xallocx = (size_t(*)(void *, size_t, size_t, int))sym("xallocx");
		p_dallocx = (void (*)(void *, int))sym("dallocx");
		p_sdallocx = (void (*)(void *, size_t, int))sym("sdallocx");
		p_mallctl = (int (*)(const char *, void *, size_t *, void *, size_t))sym("mallctl");
		if (p_mallctl("arenas.create", &arena, &n, nullptr, 0))
			die("je_threads: arenas.create failed\n");
	}
	pthread_barrier_init(&barrier, nullptr, NR_THREADS);
	for (int t = 0; t < NR_THREADS; t++)
		if (pthread_create(&th[t], nullptr, worker, (void *)(intptr_t)t))
			die("je_threads: pthread_create\n");
	pthread_mutex_lock(&lock);
	while (done < NR_THREADS)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	emit("{\"pid\":%d,\"calls\":{", (int)getpid());
	first = 1;
	for (int s = 0; s < NR_SITES; s++)
		if (calls[s]) {
			emit("%s\"%s\":%lld", first ? "" : ",", site_names[s], calls[s].load());
			first = 0;
		}
	emit("},\"sites\":{");
	first = 1;
	for (int s = 0; s < NR_SITES; s++) {
		counts *c = &sites[s];

		if (!calls[s])
			continue;
		emit("%s\"%s\":{\"live_bytes\":%lld,\"live_allocs\":%lld,\"allocs\":%lld,"
		     "\"frees\":%lld,\"alloc_bytes\":%lld}",
		     first ? "" : ",", site_names[s], c->live_bytes.load(), c->live_allocs.load(),
		     c->allocs.load(), c->frees.load(), c->alloc_bytes.load());
		first = 0;
	}
	emit("}}\n");
	fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, out, out_len) != (ssize_t)out_len)
		die("je_threads: cannot write the expectation\n");
	close(fd);
	_exit(0);
}
