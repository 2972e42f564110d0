// SPDX-License-Identifier: MIT
/* Snapshots: plain copies of the aggregates, diffed against earlier ones for growth and rates. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "snapshot.h"

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

/* Make room for one more element of an array that doubles when full. */
static int grow(void **arr, size_t *cap, size_t nr, size_t elem)
{
	size_t ncap;
	void *p;

	if (nr < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 64;
	if (ncap < *cap || ncap > (size_t)-1 / elem)
		return -ENOMEM;
	p = realloc(*arr, ncap * elem);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

/*
 * The header keeps no capacity fields, so the capacity is derived from the count: arrays are
 * allocated in powers of two starting at 64, which is all grow() ever produces.
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

	err = grow(&arr, &cap, s->nr_procs, sizeof(*s->procs));
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

	err = grow(&arr, &cap, s->nr_stacks, sizeof(*s->stacks));
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

static int stack_ptr_cmp(const void *a, const void *b)
{
	return stack_key_cmp(*(const struct snap_stack *const *)a,
			     *(const struct snap_stack *const *)b);
}

/*
 * Index of a snapshot's stacks sorted by identity, for O(log n) lookups: a live process can have
 * tens of thousands of stacks, a nested loop would be quadratic. NULL if s is NULL or empty, or
 * if memory is short (lookups then fall back to a linear scan).
 */
static const struct snap_stack **stack_index(const struct snapshot *s)
{
	const struct snap_stack **idx;
	size_t i;

	if (!s || !s->nr_stacks)
		return NULL;
	idx = malloc(s->nr_stacks * sizeof(*idx));
	if (!idx)
		return NULL;
	for (i = 0; i < s->nr_stacks; i++)
		idx[i] = &s->stacks[i];
	qsort(idx, s->nr_stacks, sizeof(*idx), stack_ptr_cmp);
	return idx;
}

static const struct snap_stack *find_stack(const struct snapshot *s,
					   const struct snap_stack **idx,
					   const struct snap_stack *key)
{
	const struct snap_stack **hit;
	size_t i;

	if (!s)
		return NULL;
	if (idx) {
		hit = bsearch(&key, idx, s->nr_stacks, sizeof(*idx), stack_ptr_cmp);
		return hit ? *hit : NULL;
	}
	for (i = 0; i < s->nr_stacks; i++)
		if (!stack_key_cmp(&s->stacks[i], key))
			return &s->stacks[i];
	return NULL;
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
	const struct snap_stack **idx;
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

	idx = stack_index(prev);
	for (i = 0; i < cur->nr_stacks; i++) {
		struct snap_stack *st = &cur->stacks[i];
		const struct snap_stack *ps = find_stack(prev, idx, st);

		st->growth_bytes = st->live_bytes - (ps ? ps->live_bytes : 0);
	}
	free(idx);
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

void snapshot__sort_stacks(struct snapshot *s, enum snap_sort key)
{
	if (!s || s->nr_stacks < 2)
		return;
	qsort_r(s->stacks, s->nr_stacks, sizeof(*s->stacks), stack_qsort_cmp, &key);
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
	       drop != ASZ_DROP_STACK_INCOMPLETE && drop != ASZ_DROP_UNKNOWN_FREE;
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
