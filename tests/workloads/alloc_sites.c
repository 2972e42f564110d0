/* SPDX-License-Identifier: MIT */
/*
 * alloc_sites: one call site per glibc allocator entry point (and per tricky case), each in its own
 * non-inlinable, non-clonable function, so a profiler's report can be checked site by site.
 *
 *   alloc_sites launch [OUTFILE]   run every site once, write the expected-JSON line to OUTFILE
 *                                  (default stdout) and exit WITHOUT freeing the kept blocks.
 *   alloc_sites attach             allocate a few blocks, print "ready <pid>", wait for "go" on
 *                                  stdin, then free the pre-attach blocks (frees the profiler
 *                                  cannot know: unknown_frees), run every site, print the
 *                                  expected-JSON line. Then commands, one per line:
 *                                    free   free every kept block, print the expected-JSON line
 *                                    exit   (or EOF) exit without freeing anything else
 *
 * Expected-JSON line:
 *   {"pid":P,"mode":"launch|attach","sites":{"NAME":{"allocator":A,"live_bytes":..,
 *    "live_allocs":..,"alloc_bytes":..,"allocs":..,"frees":..},...},
 *    "proc":{"live_bytes":..,"live_allocs":..,"alloc_bytes":..,"allocs":..,"frees":..,
 *            "unknown_frees":..},"info":{...}}
 * NAME is the function that called the allocator (frames[0] of the profiler's stacks), except
 * for site_strdup whose frames[0] is libc's strdup: its entry is keyed "strdup" with
 * "caller":"site_strdup". Sizes are the sizes asked for. Counting rules (the profiler's contract):
 * an allocation call that returns a block = 1 alloc of the asked size (realloc too, old block
 * counted as 1 free of the stack that allocated it); realloc(p, 0) = 1 free; free(NULL) and
 * failed calls = nothing. A site with allocs == 0 must not appear (or appear with all zeros).
 *
 * No stdio after start (stdio allocates its buffer): output is snprintf into static memory plus
 * write(2). Blocks are stored in a global table so gcc cannot elide any malloc/free pair, and
 * every size or pointer that gcc could fold (NULL, huge sizes, strdup's source) goes through a
 * volatile variable.
 *
 * Measured with the profiler and with gdb breakpoints on every allocator entry: on Debian 12
 * (glibc 2.36) nothing in this program allocates besides the sites below - not the dynamic loader,
 * not libc start-up, not exit() - so the per-process expectation is exactly the sum of the sites.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SITE __attribute__((noipa, used))

enum alloc_kind { K_MALLOC, K_CALLOC, K_REALLOC, K_MEMALIGN, K_POSIX_MEMALIGN, K_VALLOC, K_PVALLOC };
static const char *const kind_name[] = { "malloc",   "calloc",         "realloc", "memalign",
					 "posix_memalign", "valloc", "pvalloc" };

struct site {
	const char *name;
	const char *caller; /* for sites whose frames[0] is inside libc */
	enum alloc_kind kind;
	long long live_bytes, live_allocs, alloc_bytes, allocs, frees;
};

enum {
	S_PRE_ATTACH,
	S_MALLOC,
	S_MALLOC_ZERO,
	S_CALLOC,
	S_CALLOC_BIG,
	S_PREP_REALLOC,
	S_REALLOC_GROW,
	S_REALLOC_MOVE,
	S_REALLOC_SHRINK,
	S_REALLOC_NULL,
	S_REALLOC_TO_ZERO,
	S_REALLOC_FAIL,
	S_REALLOC_MMAP,
	S_MEMALIGN,
	S_MEMALIGN_SMALL,
	S_ALIGNED_ALLOC,
	S_POSIX_MEMALIGN,
	S_POSIX_MEMALIGN_SMALL,
	S_VALLOC,
	S_PVALLOC,
	S_BIG_MMAP,
	S_CHURN,
	S_STRDUP,
	S_FREE_NULL,
	S_MALLOC_FAIL,
	S_CALLOC_FAIL,
	S_MEMALIGN_FAIL,
	S_POSIX_MEMALIGN_FAIL,
	S_VALLOC_FAIL,
	S_PVALLOC_FAIL,
	NR_SITES
};

static struct site sites[NR_SITES] = {
	[S_PRE_ATTACH] = { "pre_attach_alloc", NULL, K_MALLOC },
	[S_MALLOC] = { "site_malloc", NULL, K_MALLOC },
	[S_MALLOC_ZERO] = { "site_malloc_zero", NULL, K_MALLOC },
	[S_CALLOC] = { "site_calloc", NULL, K_CALLOC },
	[S_CALLOC_BIG] = { "site_calloc_big", NULL, K_CALLOC },
	[S_PREP_REALLOC] = { "prep_realloc", NULL, K_MALLOC },
	[S_REALLOC_GROW] = { "site_realloc_grow", NULL, K_REALLOC },
	[S_REALLOC_MOVE] = { "site_realloc_move", NULL, K_REALLOC },
	[S_REALLOC_SHRINK] = { "site_realloc_shrink", NULL, K_REALLOC },
	[S_REALLOC_NULL] = { "site_realloc_null", NULL, K_REALLOC },
	[S_REALLOC_TO_ZERO] = { "site_realloc_to_zero", NULL, K_REALLOC },
	[S_REALLOC_FAIL] = { "site_realloc_fail", NULL, K_REALLOC },
	[S_REALLOC_MMAP] = { "site_realloc_mmap", NULL, K_REALLOC },
	[S_MEMALIGN] = { "site_memalign", NULL, K_MEMALIGN },
	[S_MEMALIGN_SMALL] = { "site_memalign_small", NULL, K_MEMALIGN },
	/* glibc 2.36: aligned_alloc is memalign (one address), so the profiler names it memalign */
	[S_ALIGNED_ALLOC] = { "site_aligned_alloc", NULL, K_MEMALIGN },
	[S_POSIX_MEMALIGN] = { "site_posix_memalign", NULL, K_POSIX_MEMALIGN },
	[S_POSIX_MEMALIGN_SMALL] = { "site_posix_memalign_small", NULL, K_POSIX_MEMALIGN },
	[S_VALLOC] = { "site_valloc", NULL, K_VALLOC },
	[S_PVALLOC] = { "site_pvalloc", NULL, K_PVALLOC },
	[S_BIG_MMAP] = { "site_big_mmap", NULL, K_MALLOC },
	[S_CHURN] = { "site_churn", NULL, K_MALLOC },
	[S_STRDUP] = { "strdup", "site_strdup", K_MALLOC },
	[S_FREE_NULL] = { "site_free_null", NULL, K_MALLOC },
	[S_MALLOC_FAIL] = { "site_malloc_fail", NULL, K_MALLOC },
	[S_CALLOC_FAIL] = { "site_calloc_fail", NULL, K_CALLOC },
	[S_MEMALIGN_FAIL] = { "site_memalign_fail", NULL, K_MEMALIGN },
	[S_POSIX_MEMALIGN_FAIL] = { "site_posix_memalign_fail", NULL, K_POSIX_MEMALIGN },
	[S_VALLOC_FAIL] = { "site_valloc_fail", NULL, K_VALLOC },
	[S_PVALLOC_FAIL] = { "site_pvalloc_fail", NULL, K_PVALLOC },
};

/* Process-level counters of what the profiler can see. */
static long long p_unknown_frees;
static int attach_mode;

/* Every live block we know about: pointer -> (site, asked size). Static: no heap for bookkeeping. */
#define MAX_BLOCKS 4096
struct block {
	void *volatile p;
	int site;
	size_t size;
	int used;
	int pre_attach; /* allocated before the profiler attached (attach mode) */
};
struct block g_blocks[MAX_BLOCKS];

/* Pointers escape here as well; read back so nothing is dead. */
void *volatile g_sink;
volatile size_t g_huge = (size_t)1 << 46;  /* 64 TiB: mmap fails, malloc returns NULL */
volatile size_t g_size_max = SIZE_MAX;
void *volatile g_null;

static void die(const char *msg)
{
	ssize_t r = write(2, msg, strlen(msg));
	(void)r;
	_exit(99);
}

static void track(void *p, int site, size_t size, int pre_attach)
{
	if (!p)
		die("alloc_sites: unexpected allocation failure\n");
	for (int i = 0; i < MAX_BLOCKS; i++) {
		if (!g_blocks[i].used) {
			g_blocks[i].p = p;
			g_blocks[i].site = site;
			g_blocks[i].size = size;
			g_blocks[i].used = 1;
			g_blocks[i].pre_attach = pre_attach;
			if (!pre_attach) {
				struct site *s = &sites[site];
				s->live_bytes += size;
				s->live_allocs++;
				s->alloc_bytes += size;
				s->allocs++;
			}
			return;
		}
	}
	die("alloc_sites: block table full\n");
}

/* Forget block p (it was freed or realloc'ed away): a free of the site that allocated it. */
static void untrack(void *p)
{
	for (int i = 0; i < MAX_BLOCKS; i++) {
		if (g_blocks[i].used && g_blocks[i].p == p) {
			g_blocks[i].used = 0;
			if (g_blocks[i].pre_attach) {
				p_unknown_frees++;
			} else {
				struct site *s = &sites[g_blocks[i].site];
				s->live_bytes -= g_blocks[i].size;
				s->live_allocs--;
				s->frees++;
			}
			return;
		}
	}
	die("alloc_sites: untrack of an unknown block\n");
}

static void release(void *p)
{
	untrack(p);
	free(p);
}

/* ---- the sites ---- */

SITE void pre_attach_alloc(int pre)
{
	static const size_t sz[] = { 1111, 2222, 3333, 4444, 123456 };
	for (unsigned i = 0; i < sizeof(sz) / sizeof(sz[0]); i++)
		track(malloc(sz[i]), S_PRE_ATTACH, sz[i], pre);
}

SITE void site_malloc(void)
{
	track(malloc(100), S_MALLOC, 100, 0);
	track(malloc(200), S_MALLOC, 200, 0);
	track(malloc(333), S_MALLOC, 333, 0);
	void *p = malloc(50);
	track(p, S_MALLOC, 50, 0);
	g_sink = p;
}

SITE void site_malloc_zero(void)
{
	track(malloc(0), S_MALLOC_ZERO, 0, 0);
}

SITE void site_calloc(void)
{
	track(calloc(10, 24), S_CALLOC, 240, 0);
	track(calloc(3, 1000), S_CALLOC, 3000, 0);
}

SITE void site_calloc_big(void)
{
	track(calloc(1024, 2048), S_CALLOC_BIG, 2097152, 0); /* mmapped */
}

/* The blocks the realloc sites start from. */
static void *r_grow, *r_move, *r_shrink, *r_zero, *r_fail, *r_mmap;

SITE void prep_realloc(void)
{
	/* 1001 bytes get a 1024-byte chunk (1016 usable): growing to 1010 stays in place */
	r_grow = malloc(1001);
	track(r_grow, S_PREP_REALLOC, 1001, 0);
	/* r_shrink, allocated right after r_move and still live when r_move grows, forces a move */
	r_move = malloc(96);
	track(r_move, S_PREP_REALLOC, 96, 0);
	r_shrink = malloc(5000);
	track(r_shrink, S_PREP_REALLOC, 5000, 0);
	r_zero = malloc(77);
	track(r_zero, S_PREP_REALLOC, 77, 0);
	r_fail = malloc(555);
	track(r_fail, S_PREP_REALLOC, 555, 0);
	r_mmap = malloc(2 << 20);
	track(r_mmap, S_PREP_REALLOC, 2 << 20, 0);
}

static int grow_in_place, move_moved;

SITE void site_realloc_grow(void)
{
	void *old = r_grow;
	uintptr_t old_addr = (uintptr_t)old;
	untrack(old); /* bookkeeping only, before the call */
	void *p = realloc(old, 1010);
	if (!p)
		die("realloc grow failed\n");
	grow_in_place = ((uintptr_t)p == old_addr);
	track(p, S_REALLOC_GROW, 1010, 0);
}

SITE void site_realloc_move(void)
{
	void *old = r_move;
	uintptr_t old_addr = (uintptr_t)old;
	untrack(old); /* bookkeeping only, before the call */
	void *p = realloc(old, 4000);
	if (!p)
		die("realloc move failed\n");
	move_moved = ((uintptr_t)p != old_addr);
	track(p, S_REALLOC_MOVE, 4000, 0);
}

SITE void site_realloc_shrink(void)
{
	void *old = r_shrink;
	untrack(old); /* bookkeeping only, before the call */
	void *p = realloc(old, 300);
	if (!p)
		die("realloc shrink failed\n");
	track(p, S_REALLOC_SHRINK, 300, 0);
}

SITE void site_realloc_null(void)
{
	/* realloc(NULL, n) is malloc(n) inside glibc: must count once, as realloc */
	track(realloc(g_null, 4321), S_REALLOC_NULL, 4321, 0);
}

SITE void site_realloc_to_zero(void)
{
	/* glibc 2.36: realloc(p, 0) frees p and returns NULL */
	untrack(r_zero);
	void *p = realloc(r_zero, 0);
	g_sink = p;
	if (p)
		die("realloc(p, 0) returned a block\n");
}

SITE void site_realloc_fail(void)
{
	/* fails: r_fail stays allocated, still owned by prep_realloc */
	void *p = realloc(r_fail, g_huge);
	g_sink = p;
	if (p)
		die("huge realloc succeeded\n");
}

SITE void site_realloc_mmap(void)
{
	void *old = r_mmap;
	untrack(old); /* bookkeeping only, before the call */
	void *p = realloc(old, 5 << 20); /* mmapped chunk: mremap */
	if (!p)
		die("realloc mmap failed\n");
	track(p, S_REALLOC_MMAP, 5 << 20, 0);
}

SITE void site_memalign(void)
{
	track(memalign(64, 1000), S_MEMALIGN, 1000, 0);
	track(memalign(4096, 10), S_MEMALIGN, 10, 0);
}

SITE void site_memalign_small(void)
{
	/* alignment <= 16: glibc relays to malloc internally; must count once, as memalign */
	track(memalign(8, 72), S_MEMALIGN_SMALL, 72, 0);
}

SITE void site_aligned_alloc(void)
{
	track(aligned_alloc(128, 1024), S_ALIGNED_ALLOC, 1024, 0);
}

SITE void site_posix_memalign(void)
{
	void *p = NULL;
	if (posix_memalign(&p, 256, 3000))
		die("posix_memalign failed\n");
	track(p, S_POSIX_MEMALIGN, 3000, 0);
}

SITE void site_posix_memalign_small(void)
{
	void *p = NULL;
	if (posix_memalign(&p, 8, 40)) /* relays to malloc inside glibc */
		die("posix_memalign small failed\n");
	track(p, S_POSIX_MEMALIGN_SMALL, 40, 0);
}

SITE void site_valloc(void)
{
	track(valloc(5000), S_VALLOC, 5000, 0);
}

SITE void site_pvalloc(void)
{
	track(pvalloc(5000), S_PVALLOC, 5000, 0); /* asked 5000, glibc gives 8192: 5000 counts */
}

SITE void site_big_mmap(void)
{
	track(malloc(4 << 20), S_BIG_MMAP, 4 << 20, 0); /* kept */
	void *p = malloc(3 << 20);
	track(p, S_BIG_MMAP, 3 << 20, 0);
	release(p); /* munmap'ed */
}

SITE void site_churn(void)
{
	/* many short-lived blocks, tcache and bins reuse the addresses: all freed */
	void *ring[8] = { 0 };
	for (int i = 0; i < 2000; i++) {
		size_t sz = 16 + (size_t)(i * 37) % 3000;
		if (ring[i % 8])
			release(ring[i % 8]);
		ring[i % 8] = malloc(sz);
		track(ring[i % 8], S_CHURN, sz, 0);
	}
	for (int i = 0; i < 8; i++)
		release(ring[i]);
}

/* strdup's source comes through a volatile pointer so gcc cannot turn strdup into malloc+memcpy */
static char strdup_src[64];
char *volatile g_strdup_src = strdup_src;

SITE void site_strdup(void)
{
	const char *s = g_strdup_src;
	char *p = strdup(s);
	track(p, S_STRDUP, strlen(s) + 1, 0);
	p = strdup(s + 10);
	track(p, S_STRDUP, strlen(s + 10) + 1, 0);
}

SITE void site_free_null(void)
{
	free(g_null); /* records nothing */
	free(g_null);
}

SITE void site_malloc_fail(void)
{
	g_sink = malloc(g_huge);
	g_sink = malloc(g_size_max);
	if (g_sink)
		die("huge malloc succeeded\n");
}

SITE void site_calloc_fail(void)
{
	g_sink = calloc(g_size_max / 2, 4); /* n*m overflows */
	g_sink = calloc(g_huge, 1);
	if (g_sink)
		die("huge calloc succeeded\n");
}

SITE void site_memalign_fail(void)
{
	g_sink = memalign(64, g_huge);
	g_sink = aligned_alloc(64, g_huge);
	if (g_sink)
		die("huge memalign succeeded\n");
}

SITE void site_posix_memalign_fail(void)
{
	void *p = (void *)0x1234; /* left untouched on failure */
	if (posix_memalign(&p, 3, 100) != EINVAL) /* bad alignment */
		die("posix_memalign EINVAL expected\n");
	if (posix_memalign(&p, 64, g_huge) != ENOMEM)
		die("posix_memalign ENOMEM expected\n");
	g_sink = p;
}

SITE void site_valloc_fail(void)
{
	g_sink = valloc(g_huge);
	if (g_sink)
		die("huge valloc succeeded\n");
}

SITE void site_pvalloc_fail(void)
{
	g_sink = pvalloc(g_size_max - 100); /* page rounding overflows */
	if (g_sink)
		die("huge pvalloc succeeded\n");
}

/* ---- output ---- */

static char out[1 << 16];
static size_t out_len;

__attribute__((format(printf, 1, 2))) static void emit(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out + out_len, sizeof(out) - out_len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(out) - out_len)
		die("alloc_sites: output buffer full\n");
	out_len += (size_t)n;
}

static void write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("alloc_sites: write failed\n");
		}
		buf += n;
		len -= (size_t)n;
	}
}

static void write_expected(int fd)
{
	long long lb = 0, la = 0, ab = 0, al = 0, fr = 0;
	out_len = 0;
	emit("{\"pid\":%d,\"mode\":\"%s\",\"sites\":{", (int)getpid(), attach_mode ? "attach" : "launch");
	for (int i = 0; i < NR_SITES; i++) {
		struct site *s = &sites[i];
		emit("%s\"%s\":{\"allocator\":\"%s\",", i ? "," : "", s->name, kind_name[s->kind]);
		if (s->caller)
			emit("\"caller\":\"%s\",", s->caller);
		emit("\"live_bytes\":%lld,\"live_allocs\":%lld,\"alloc_bytes\":%lld,\"allocs\":%lld,"
		     "\"frees\":%lld}",
		     s->live_bytes, s->live_allocs, s->alloc_bytes, s->allocs, s->frees);
		lb += s->live_bytes;
		la += s->live_allocs;
		ab += s->alloc_bytes;
		al += s->allocs;
		fr += s->frees;
	}
	emit("},\"proc\":{\"live_bytes\":%lld,\"live_allocs\":%lld,\"alloc_bytes\":%lld,"
	     "\"allocs\":%lld,\"frees\":%lld,\"unknown_frees\":%lld},",
	     lb, la, ab, al, fr, p_unknown_frees);
	emit("\"info\":{\"realloc_grow_in_place\":%d,\"realloc_move_moved\":%d}}\n", grow_in_place,
	     move_moved);
	write_all(fd, out, out_len);
}

/* Read one line from stdin without stdio; returns 0 on EOF. */
static int read_line(char *buf, size_t size)
{
	size_t n = 0;
	for (;;) {
		char c;
		ssize_t r = read(0, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			buf[n] = 0;
			return n > 0;
		}
		if (c == '\n')
			break;
		if (n + 1 < size)
			buf[n++] = c;
	}
	buf[n] = 0;
	return 1;
}

static void run_sites(void)
{
	prep_realloc();
	site_malloc();
	site_malloc_zero();
	site_calloc();
	site_calloc_big();
	site_realloc_grow();
	site_realloc_move();
	site_realloc_shrink();
	site_realloc_null();
	site_realloc_to_zero();
	site_realloc_fail();
	site_realloc_mmap();
	site_memalign();
	site_memalign_small();
	site_aligned_alloc();
	site_posix_memalign();
	site_posix_memalign_small();
	site_valloc();
	site_pvalloc();
	site_big_mmap();
	site_churn();
	site_strdup();
	site_free_null();
	site_malloc_fail();
	site_calloc_fail();
	site_memalign_fail();
	site_posix_memalign_fail();
	site_valloc_fail();
	site_pvalloc_fail();
}

int main(int argc, char **argv)
{
	for (int i = 0; i < 40; i++)
		strdup_src[i] = (char)('a' + (i * 7 + argc) % 26);

	if (argc >= 2 && !strcmp(argv[1], "attach")) {
		attach_mode = 1;
		pre_attach_alloc(1);
		char line[128];
		int n = snprintf(line, sizeof(line), "ready %d\n", (int)getpid());
		write_all(1, line, (size_t)n);
		while (read_line(line, sizeof(line))) {
			if (!strcmp(line, "go"))
				break;
			if (!strcmp(line, "exit"))
				return 0;
		}
		/* free what was allocated before the profiler attached */
		for (int i = 0; i < MAX_BLOCKS; i++)
			if (g_blocks[i].used && g_blocks[i].pre_attach)
				release(g_blocks[i].p);
		run_sites();
		write_expected(1);
		while (read_line(line, sizeof(line))) {
			if (!strcmp(line, "free")) {
				for (int i = 0; i < MAX_BLOCKS; i++)
					if (g_blocks[i].used)
						release(g_blocks[i].p);
				write_expected(1);
			} else if (!strcmp(line, "exit")) {
				break;
			}
		}
		return 0;
	}
	if (argc >= 2 && strcmp(argv[1], "launch")) {
		write_all(2, "usage: alloc_sites launch [OUTFILE] | alloc_sites attach\n", 57);
		return 2;
	}
	pre_attach_alloc(0);
	for (int i = 0; i < MAX_BLOCKS; i++)
		if (g_blocks[i].used && g_blocks[i].site == S_PRE_ATTACH)
			release(g_blocks[i].p);
	run_sites();
	int fd = 1;
	if (argc >= 3 && strcmp(argv[2], "-")) {
		fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			die("alloc_sites: cannot open output file\n");
	}
	write_expected(fd);
	return 0;
}
