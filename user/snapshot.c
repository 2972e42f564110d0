// SPDX-License-Identifier: MIT
/* Snapshots: plain copies of the aggregates, diffed against earlier ones for growth and rates. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "snapshot.h"
#include "util.h"

static const char *const allocator_names[ASZ_NR_ALLOCATORS] = {
	[ASZ_MALLOC] = "malloc",
	[ASZ_CALLOC] = "calloc",
	[ASZ_REALLOC] = "realloc",
	[ASZ_MEMALIGN] = "memalign",
	[ASZ_POSIX_MEMALIGN] = "posix_memalign",
	[ASZ_VALLOC] = "valloc",
	[ASZ_PVALLOC] = "pvalloc",
	[ASZ_FREE] = "free",
	[ASZ_MMAP] = "mmap",
	[ASZ_MREMAP] = "mremap",
	[ASZ_MUNMAP] = "munmap",
	[ASZ_NEW] = "operator new",
	[ASZ_DELETE] = "operator delete",
	[ASZ_MALLOCX] = "mallocx",
	[ASZ_RALLOCX] = "rallocx",
	[ASZ_XALLOCX] = "xallocx",
	[ASZ_THREAD_EXIT] = "thread exit",
};

/* These are JSON keys: consumers depend on them, keep them stable. */
static const char *const drop_names[ASZ_NR_DROPS] = {
	[ASZ_DROP_ALLOCS_FULL] = "allocs_map_full",
	[ASZ_DROP_AGGS_FULL] = "aggs_map_full",
	[ASZ_DROP_PROCS_FULL] = "procs_map_full",
	[ASZ_DROP_STACKS_FULL] = "stacks_map_full",
	[ASZ_DROP_STACK_COLLISION] = "stack_collisions",
	[ASZ_DROP_STACK_UNRESOLVED] = "stack_unresolved",
	[ASZ_DROP_STACK_TRUNCATED] = "stack_truncated",
	[ASZ_DROP_THREAD_STATE] = "thread_state_unavailable",
	[ASZ_DROP_UNKNOWN_FREE] = "unknown_frees",
	[ASZ_DROP_MISSED_FREE] = "missed_frees",
	[ASZ_DROP_STACK_INCOMPLETE] = "stack_incomplete",
	[ASZ_DROP_UNWIND_TABLE_FULL] = "unwind_table_full",
	[ASZ_DROP_STACK_PREEMPTED] = "stack_preempted",
	[ASZ_DROP_EVENTS_LOST] = "events_lost",
	[ASZ_DROP_PROCS_UNTRACED] = "procs_untraced",
	[ASZ_DROP_MAPPINGS_UNINDEXED] = "mappings_unindexed",
	[ASZ_DROP_AGGS_RETIRED] = "aggs_retired",
	[ASZ_DROP_STACK_SWEPT] = "stack_swept",
};

static const char *const sort_names[] = {
	[SNAP_SORT_GROWTH] = "growth",
	[SNAP_SORT_LIVE] = "live",
	[SNAP_SORT_ALLOCS] = "allocs",
	[SNAP_SORT_BYTES] = "bytes",
};

struct snapshot *snapshot__new(void)
{
	return calloc(1, sizeof(struct snapshot));
}

void snapshot__free(struct snapshot *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nr_procs; i++)
		free(s->procs[i].exe);
	free(s->procs);
	free(s->stacks);
	free(s);
}

/*
 * The header keeps no capacity fields, so the capacity is derived from the count: arrays are
 * allocated in powers of two starting at 64, which is all util__reserve() ever produces from 64.
 */
static size_t cap_of(size_t nr)
{
	size_t cap = 64;

	if (!nr)
		return 0;
	while (cap < nr)
		cap *= 2;
	return cap;
}

int snapshot__add_proc(struct snapshot *s, const struct snap_proc *p)
{
	size_t cap = cap_of(s->nr_procs);
	void *arr = s->procs;
	int err;

	err = util__reserve(&arr, &cap, s->nr_procs + 1, sizeof(*s->procs), 64);
	if (err)
		return err;
	s->procs = arr;
	s->procs[s->nr_procs] = *p;
	s->procs[s->nr_procs].exe = NULL;
	err = snapshot__set_exe(&s->procs[s->nr_procs], p->exe);
	if (err)
		return err;
	s->nr_procs++;
	return 0;
}

int snapshot__set_exe(struct snap_proc *p, const char *exe)
{
	char *dup = NULL;

	/* paths run to PATH_MAX, most are short: as long as each is, not a fixed array */
	if (exe && exe[0]) {
		dup = strdup(exe);
		if (!dup)
			return -ENOMEM;
	}
	free(p->exe);
	p->exe = dup;
	return 0;
}

int snapshot__add_stack(struct snapshot *s, const struct snap_stack *st)
{
	size_t cap = cap_of(s->nr_stacks);
	void *arr = s->stacks;
	int err;

	err = util__reserve(&arr, &cap, s->nr_stacks + 1, sizeof(*s->stacks), 64);
	if (err)
		return err;
	s->stacks = arr;
	s->stacks[s->nr_stacks++] = *st;
	return 0;
}

static int cmp_u64(__u64 a, __u64 b)
{
	return a < b ? -1 : a > b;
}

/* Identity of a stack across snapshots: (pid, allocator, stack id). */
static int stack_key_cmp(const struct snap_stack *a, const struct snap_stack *b)
{
	int c;

	c = cmp_u64(a->pid, b->pid);
	if (c)
		return c;
	c = cmp_u64(a->allocator, b->allocator);
	if (c)
		return c;
	return cmp_u64(a->stack_id, b->stack_id);
}

/*
 * The previous snapshot's live bytes by stack identity, for one lookup a stack: an index sorted
 * by identity cost a sort and a bsearch of ~16 cache misses a stack (60,000 stacks: ~20 ms an
 * interval). Open addressing, the key kept in the slot: one miss a lookup.
 */
struct prev_slot {
	__u64 stack_id;
	__s64 live_bytes;
	__u32 pid;
	__u32 allocator;
	__u32 used;
};

struct prev_table {
	struct prev_slot *slot;
	size_t mask;
};

static size_t stack_hash(__u32 pid, __u32 allocator, __u64 stack_id)
{
	__u64 h = stack_id ^ ((__u64)pid << 32 | allocator) * 0x9e3779b97f4a7c15ULL;

	/* a 64-bit finalizer: stack ids and pids are not uniform in the low bits */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return (size_t)h;
}

static struct prev_slot *prev_table__slot(const struct prev_table *t, const struct snap_stack *k)
{
	size_t i = stack_hash(k->pid, k->allocator, k->stack_id) & t->mask;

	while (t->slot[i].used && (t->slot[i].stack_id != k->stack_id ||
				   t->slot[i].pid != k->pid || t->slot[i].allocator != k->allocator))
		i = (i + 1) & t->mask;
	return &t->slot[i];
}

/* -ENOMEM if memory is short (lookups then fall back to a linear scan). */
static int prev_table__build(struct prev_table *t, const struct snapshot *s)
{
	size_t cap = 64;

	while (cap < 2 * s->nr_stacks) {
		if (cap > (size_t)-1 / 2 / sizeof(*t->slot))
			return -ENOMEM;
		cap *= 2;
	}
	t->slot = calloc(cap, sizeof(*t->slot));
	if (!t->slot)
		return -ENOMEM;
	t->mask = cap - 1;
	for (size_t i = 0; i < s->nr_stacks; i++) {
		const struct snap_stack *st = &s->stacks[i];
		struct prev_slot *sl = prev_table__slot(t, st);

		/* the first of equal identities, as a scan in order finds */
		if (sl->used)
			continue;
		*sl = (struct prev_slot){st->stack_id, st->live_bytes, st->pid, st->allocator, 1};
	}
	return 0;
}

/* The live bytes of the stack of k's identity in s (0 if none there). */
static __s64 prev_live(const struct snapshot *s, const struct prev_table *t,
		       const struct snap_stack *k)
{
	const struct prev_slot *sl;

	if (!s)
		return 0;
	if (t->slot) {
		sl = prev_table__slot(t, k);
		return sl->used ? sl->live_bytes : 0;
	}
	for (size_t i = 0; i < s->nr_stacks; i++)
		if (!stack_key_cmp(&s->stacks[i], k))
			return s->stacks[i].live_bytes;
	return 0;
}

const struct snap_proc *snapshot__find_proc(const struct snapshot *s, __u32 pid)
{
	size_t i;

	if (!s)
		return NULL;
	for (i = 0; i < s->nr_procs; i++)
		if (s->procs[i].pid == pid)
			return &s->procs[i];
	return NULL;
}

/* Events per second between two cumulative counters; a counter that went back counts as 0. */
static double rate(__u64 cur, __u64 prev, double dt)
{
	if (dt <= 0 || cur <= prev)
		return 0;
	return (double)(cur - prev) / dt;
}

void snapshot__diff(struct snapshot *cur, const struct snapshot *prev, const struct snapshot *first)
{
	struct prev_table t = {};
	/* the first report's interval starts at attach, where every counter was zero */
	double dt = prev ? cur->elapsed_s - prev->elapsed_s : cur->elapsed_s;
	size_t i;

	for (i = 0; i < cur->nr_procs; i++) {
		struct snap_proc *p = &cur->procs[i];
		const struct snap_proc *pp = snapshot__find_proc(prev, p->pid);
		const struct snap_proc *fp = snapshot__find_proc(first, p->pid);

		p->growth_bytes = p->live_bytes - (pp ? pp->live_bytes : 0);
		p->growth_total_bytes = p->live_bytes - (fp ? fp->live_bytes : 0);
		/*
		 * A process missing from prev appeared during the interval with counters at 0,
		 * so everything it counted happened within dt.
		 */
		/* an exec in the interval: the new image's counts began at 0 within it */
		if (pp && pp->gen != p->gen)
			pp = NULL;
		p->alloc_rate = rate(p->allocs, pp ? pp->allocs : 0, dt);
		p->free_rate = rate(p->frees, pp ? pp->frees : 0, dt);
	}

	if (prev && prev->nr_stacks && cur->nr_stacks)
		prev_table__build(&t, prev);
	for (i = 0; i < cur->nr_stacks; i++) {
		struct snap_stack *st = &cur->stacks[i];

		st->growth_bytes = st->live_bytes - prev_live(prev, &t, st);
	}
	free(t.slot);
}

static int cmp_s64(__s64 a, __s64 b)
{
	return a < b ? -1 : a > b;
}

/* What processes and stacks are ranked by: the key, then live bytes; both descending. */
static int key_cmp(__s64 growth_a, __s64 live_a, __u64 allocs_a, __u64 bytes_a, __s64 growth_b,
		   __s64 live_b, __u64 allocs_b, __u64 bytes_b, enum snap_sort key)
{
	int c = 0;

	/* growth and live are signed so that shrinking entries rank last */
	if (key == SNAP_SORT_GROWTH)
		c = cmp_s64(growth_a, growth_b);
	else if (key == SNAP_SORT_LIVE)
		c = cmp_s64(live_a, live_b);
	else if (key == SNAP_SORT_ALLOCS)
		c = cmp_u64(allocs_a, allocs_b);
	else if (key == SNAP_SORT_BYTES)
		c = cmp_u64(bytes_a, bytes_b);
	if (!c)
		c = cmp_s64(live_a, live_b);
	return -c;
}

static int stack_sort_cmp(const struct snap_stack *a, const struct snap_stack *b,
			  enum snap_sort key)
{
	int c = key_cmp(a->growth_bytes, a->live_bytes, a->allocs, a->alloc_bytes, b->growth_bytes,
			b->live_bytes, b->allocs, b->alloc_bytes, key);

	/* then pid, stack id and allocator ascending: equal stacks always in the same order */
	if (c)
		return c;
	c = cmp_u64(a->pid, b->pid);
	if (c)
		return c;
	c = cmp_u64(a->stack_id, b->stack_id);
	if (c)
		return c;
	return cmp_u64(a->allocator, b->allocator);
}

static int stack_qsort_cmp(const void *a, const void *b, void *key)
{
	return stack_sort_cmp(a, b, *(const enum snap_sort *)key);
}

static int stack_pqsort_cmp(const void *a, const void *b, void *key)
{
	return stack_sort_cmp(*(const struct snap_stack *const *)a,
			      *(const struct snap_stack *const *)b, *(const enum snap_sort *)key);
}

/*
 * All of them in order: pointers sorted (a stack is ~80 bytes, each move of a struct sort
 * copies them all), then each struct copied once into an array of the same capacity.
 */
static int sort_all(struct snapshot *s, enum snap_sort key)
{
	struct snap_stack **ptr = malloc(s->nr_stacks * sizeof(*ptr));
	struct snap_stack *out = malloc(cap_of(s->nr_stacks) * sizeof(*out));
	int err = -ENOMEM;

	if (!ptr || !out)
		goto cleanup;
	for (size_t i = 0; i < s->nr_stacks; i++)
		ptr[i] = &s->stacks[i];
	qsort_r(ptr, s->nr_stacks, sizeof(*ptr), stack_pqsort_cmp, &key);
	for (size_t i = 0; i < s->nr_stacks; i++)
		out[i] = *ptr[i];
	free(s->stacks);
	s->stacks = out;
	out = NULL;
	err = 0;
cleanup:
	free(out);
	free(ptr);
	return err;
}

/* Restore the heap of top[0..n) (its root ranks last of them) below slot i. */
static void heap_down(struct snap_stack **top, size_t n, size_t i, enum snap_sort key)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, last = i;
		struct snap_stack *t;

		if (l < n && stack_sort_cmp(top[l], top[last], key) > 0)
			last = l;
		if (r < n && stack_sort_cmp(top[r], top[last], key) > 0)
			last = r;
		if (last == i)
			return;
		t = top[i];
		top[i] = top[last];
		top[last] = t;
		i = last;
	}
}

static int ptr_cmp(const void *a, const void *b)
{
	const struct snap_stack *x = *(const struct snap_stack *const *)a;
	const struct snap_stack *y = *(const struct snap_stack *const *)b;

	return x < y ? -1 : x > y;
}

/*
 * The first n in order, the others after them in no order: a heap of the n best seen so far
 * (one comparison for most stacks), then the n sorted and swapped to the front.
 */
static int select_top(struct snapshot *s, enum snap_sort key, size_t n)
{
	struct snap_stack **top = malloc(n * sizeof(*top)), *keep = malloc(n * sizeof(*keep));
	struct snap_stack *base = s->stacks;
	size_t i, nr = 0, front = 0;
	int err = -ENOMEM;

	if (!top || !keep)
		goto cleanup;
	for (i = 0; i < s->nr_stacks; i++) {
		struct snap_stack *st = &base[i];

		if (nr < n) {
			top[nr++] = st;
			if (nr == n)
				for (size_t j = n / 2; j-- > 0;)
					heap_down(top, n, j, key);
		} else if (stack_sort_cmp(st, top[0], key) < 0) {
			top[0] = st;
			heap_down(top, n, 0, key);
		}
	}
	/*
	 * The stacks in the front n slots that are not of the top go to the slots the top leave,
	 * found in address order (both sides walked once); then the top in order to the front.
	 */
	qsort(top, n, sizeof(*top), ptr_cmp);
	for (i = 0; i < n; i++)
		keep[i] = *top[i];
	for (i = 0; i < n; i++) {
		size_t from = top[i] - base;

		if (from < n)
			continue;
		/* the next front slot not of the top (top is sorted by address): pushed out */
		while (front < n) {
			const struct snap_stack *f = &base[front];

			if (!bsearch(&f, top, n, sizeof(*top), ptr_cmp))
				break;
			front++;
		}
		base[from] = base[front++];
	}
	qsort_r(keep, n, sizeof(*keep), stack_qsort_cmp, &key);
	for (i = 0; i < n; i++)
		base[i] = keep[i];
	err = 0;
cleanup:
	free(keep);
	free(top);
	return err;
}

void snapshot__rank_stacks(struct snapshot *s, enum snap_sort key, size_t n)
{
	int err;

	if (!s || s->nr_stacks < 2)
		return;
	if (n && n < s->nr_stacks)
		err = select_top(s, key, n);
	else
		err = sort_all(s, key);
	/* short of memory: the plain sort needs none */
	if (err)
		qsort_r(s->stacks, s->nr_stacks, sizeof(*s->stacks), stack_qsort_cmp, &key);
}

void snapshot__sort_stacks(struct snapshot *s, enum snap_sort key)
{
	snapshot__rank_stacks(s, key, 0);
}

static int proc_sort_cmp(const struct snap_proc *a, const struct snap_proc *b, enum snap_sort key)
{
	int c = key_cmp(a->growth_bytes, a->live_bytes, a->allocs, a->alloc_bytes, b->growth_bytes,
			b->live_bytes, b->allocs, b->alloc_bytes, key);

	return c ? c : cmp_u64(a->pid, b->pid);
}

static int proc_qsort_cmp(const void *a, const void *b, void *key)
{
	return proc_sort_cmp(a, b, *(const enum snap_sort *)key);
}

void snapshot__sort_procs(struct snapshot *s, enum snap_sort key)
{
	if (!s || s->nr_procs < 2)
		return;
	qsort_r(s->procs, s->nr_procs, sizeof(*s->procs), proc_qsort_cmp, &key);
}

const char *snapshot__allocator_name(__u32 allocator)
{
	if (allocator >= ASZ_NR_ALLOCATORS)
		return "unknown";
	return allocator_names[allocator];
}

const char *snapshot__drop_name(int drop)
{
	if (drop < 0 || drop >= ASZ_NR_DROPS)
		return "unknown";
	return drop_names[drop];
}

bool snapshot__drop_is_loss(int drop)
{
	return drop != ASZ_DROP_STACK_COLLISION && drop != ASZ_DROP_STACK_TRUNCATED &&
	       drop != ASZ_DROP_STACK_INCOMPLETE && drop != ASZ_DROP_UNKNOWN_FREE &&
	       drop != ASZ_DROP_MAPPINGS_UNINDEXED && /* still followed exactly, only slower */
	       drop != ASZ_DROP_AGGS_RETIRED;	      /* held no block: in its process's totals */
}

int snapshot__drops_text(const struct snapshot *s, char *buf, size_t size)
{
	size_t len = 0;
	int nr = 0;

	if (size)
		buf[0] = '\0';
	for (int i = 0; i < ASZ_NR_DROPS; i++) {
		int n;

		if (!s->drops[i])
			continue;
		nr++;
		if (len >= size)
			continue;
		n = snprintf(buf + len, size - len, "%s%s=%llu", len ? " " : "",
			     snapshot__drop_name(i), (unsigned long long)s->drops[i]);
		len = n < 0 ? size : len + n;
	}
	return nr;
}

int snapshot__parse_sort(const char *s, enum snap_sort *out)
{
	size_t i;

	if (!s)
		return -EINVAL;
	for (i = 0; i < sizeof(sort_names) / sizeof(sort_names[0]); i++) {
		if (!strcmp(s, sort_names[i])) {
			*out = (enum snap_sort)i;
			return 0;
		}
	}
	return -EINVAL;
}
