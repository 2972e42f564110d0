// SPDX-License-Identifier: MIT
/* Unit tests: snapshot.c (arrays, diff, growth, rates, sorting, names). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "report.h"
#include "snapshot.h"

static struct snap_proc mkproc(__u32 pid, __s64 live, __u64 allocs, __u64 frees)
{
	struct snap_proc p = {
		.pid = pid,
		.live_bytes = live,
		.live_allocs = live ? 1 : 0,
		.alloc_bytes = live > 0 ? (__u64)live : 0,
		.allocs = allocs,
		.frees = frees,
	};

	snprintf(p.comm, sizeof(p.comm), "p%u", pid);
	return p;
}

static struct snap_stack mkstack(__u32 pid, __u32 allocator, __u64 id, __s64 live)
{
	struct snap_stack st = {
		.pid = pid,
		.allocator = allocator,
		.stack_id = id,
		.live_bytes = live,
	};

	return st;
}

static void add_proc(struct snapshot *s, struct snap_proc p)
{
	cr_assert_eq(snapshot__add_proc(s, &p), 0);
}

static void add_stack(struct snapshot *s, struct snap_stack st)
{
	cr_assert_eq(snapshot__add_stack(s, &st), 0);
}

static struct snapshot *new_snap(double elapsed)
{
	struct snapshot *s = snapshot__new();

	cr_assert_not_null(s);
	s->elapsed_s = elapsed;
	return s;
}

Test(snapshot, new_is_empty_and_free_null_is_safe)
{
	struct snapshot *s = new_snap(0);
	size_t i;

	cr_assert_eq(s->nr_procs, 0);
	cr_assert_eq(s->nr_stacks, 0);
	cr_assert_null(s->procs);
	cr_assert_null(s->stacks);
	cr_assert_eq(s->final, false);
	for (i = 0; i < ASZ_NR_DROPS; i++)
		cr_assert_eq(s->drops[i], 0);
	snapshot__free(s);
	snapshot__free(NULL);
}

Test(snapshot, arrays_grow_and_keep_copies)
{
	struct snapshot *s = new_snap(0);
	struct snap_stack st;
	struct snap_proc p;
	size_t i;

	for (i = 0; i < 1000; i++) {
		p = mkproc(i + 1, i * 10, i, 0);
		st = mkstack(i + 1, i % ASZ_NR_ALLOCATORS, i * 3, i);
		cr_assert_eq(snapshot__add_proc(s, &p), 0);
		cr_assert_eq(snapshot__add_stack(s, &st), 0);
		/* The caller's struct is copied, not referenced. */
		p.pid = 0;
		st.pid = 0;
	}
	cr_assert_eq(s->nr_procs, 1000);
	cr_assert_eq(s->nr_stacks, 1000);
	for (i = 0; i < 1000; i++) {
		cr_assert_eq(s->procs[i].pid, i + 1);
		cr_assert_eq(s->procs[i].live_bytes, (__s64)i * 10);
		cr_assert_eq(s->stacks[i].pid, i + 1);
		cr_assert_eq(s->stacks[i].stack_id, i * 3);
		cr_assert_eq(s->stacks[i].allocator, i % ASZ_NR_ALLOCATORS);
	}
	snapshot__free(s);
}

/* exe paths run to PATH_MAX: the snapshot keeps its own copy, whole; "" is unknown (NULL) */
Test(snapshot, exe_is_copied_whole)
{
	struct snapshot *s = snapshot__new();
	struct snap_proc p = mkproc(1, 0, 0, 0);
	char path[4096];

	memset(path, 'x', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	p.exe = path;
	add_proc(s, p);
	p.exe = "";
	add_proc(s, mkproc(2, 0, 0, 0));
	add_proc(s, p);
	path[1] = 'y';
	cr_assert_neq(s->procs[0].exe, path);
	cr_assert_eq(strlen(s->procs[0].exe), sizeof(path) - 1);
	cr_assert_eq(s->procs[0].exe[1], 'x');
	cr_assert_null(s->procs[1].exe);
	cr_assert_null(s->procs[2].exe);
	cr_assert_eq(snapshot__set_exe(&s->procs[1], "/bin/true"), 0);
	cr_assert_str_eq(s->procs[1].exe, "/bin/true");
	cr_assert_eq(snapshot__set_exe(&s->procs[0], NULL), 0);
	cr_assert_null(s->procs[0].exe);
	snapshot__free(s);
}

Test(snapshot, find_proc)
{
	struct snapshot *s = new_snap(0);

	add_proc(s, mkproc(10, 1, 0, 0));
	add_proc(s, mkproc(20, 2, 0, 0));
	cr_assert_eq(snapshot__find_proc(s, 20), &s->procs[1]);
	cr_assert_eq(snapshot__find_proc(s, 10), &s->procs[0]);
	cr_assert_null(snapshot__find_proc(s, 30));
	cr_assert_null(snapshot__find_proc(NULL, 10));
	snapshot__free(s);
}

Test(snapshot, diff_without_prev_and_first)
{
	struct snapshot *s = new_snap(5.0);

	add_proc(s, mkproc(1, 3000, 50, 20));
	add_proc(s, mkproc(2, -100, 5, 9));
	add_stack(s, mkstack(1, ASZ_MALLOC, 7, 2048));
	add_stack(s, mkstack(2, ASZ_CALLOC, 8, -64));
	snapshot__diff(s, NULL, NULL);

	cr_assert_eq(s->procs[0].growth_bytes, 3000);
	cr_assert_eq(s->procs[0].growth_total_bytes, 3000);
	/* no previous report: the interval is the 5 s since attach */
	cr_assert_float_eq(s->procs[0].alloc_rate, 10.0, 1e-12);
	cr_assert_float_eq(s->procs[0].free_rate, 4.0, 1e-12);
	cr_assert_eq(s->procs[1].growth_bytes, -100);
	cr_assert_eq(s->procs[1].growth_total_bytes, -100);
	cr_assert_eq(s->stacks[0].growth_bytes, 2048);
	cr_assert_eq(s->stacks[1].growth_bytes, -64);
	snapshot__free(s);
}

Test(snapshot, diff_growth_and_rates)
{
	struct snapshot *first = new_snap(0.0), *prev = new_snap(2.0), *cur = new_snap(6.0);

	add_proc(first, mkproc(1, 500, 1, 0));
	add_proc(prev, mkproc(1, 1000, 10, 4));
	add_proc(cur, mkproc(1, 3000, 30, 12));
	snapshot__diff(cur, prev, first);

	cr_assert_eq(cur->procs[0].growth_bytes, 2000);
	cr_assert_eq(cur->procs[0].growth_total_bytes, 2500);
	/* (30 - 10) / (6 - 2) and (12 - 4) / 4 */
	cr_assert_float_eq(cur->procs[0].alloc_rate, 5.0, 1e-12);
	cr_assert_float_eq(cur->procs[0].free_rate, 2.0, 1e-12);
	snapshot__free(first);
	snapshot__free(prev);
	snapshot__free(cur);
}

Test(snapshot, diff_shrinking_process)
{
	struct snapshot *first = new_snap(0.0), *prev = new_snap(1.0), *cur = new_snap(2.0);

	add_proc(first, mkproc(1, 100, 0, 0));
	add_proc(prev, mkproc(1, 5000, 10, 0));
	add_proc(cur, mkproc(1, 1000, 10, 8));
	snapshot__diff(cur, prev, first);

	cr_assert_eq(cur->procs[0].growth_bytes, -4000);
	cr_assert_eq(cur->procs[0].growth_total_bytes, 900);
	cr_assert_float_eq(cur->procs[0].alloc_rate, 0.0, 1e-12);
	cr_assert_float_eq(cur->procs[0].free_rate, 8.0, 1e-12);
	snapshot__free(first);
	snapshot__free(prev);
	snapshot__free(cur);
}

Test(snapshot, diff_process_new_since_prev)
{
	struct snapshot *first = new_snap(0.0), *prev = new_snap(2.0), *cur = new_snap(4.0);

	add_proc(first, mkproc(1, 10, 0, 0));
	add_proc(prev, mkproc(1, 10, 0, 0));
	add_proc(cur, mkproc(1, 10, 0, 0));
	/* pid 2 started after prev: its counters were 0 then. */
	add_proc(cur, mkproc(2, 700, 8, 2));
	snapshot__diff(cur, prev, first);

	cr_assert_eq(cur->procs[1].growth_bytes, 700);
	cr_assert_eq(cur->procs[1].growth_total_bytes, 700);
	cr_assert_float_eq(cur->procs[1].alloc_rate, 4.0, 1e-12);
	cr_assert_float_eq(cur->procs[1].free_rate, 1.0, 1e-12);
	cr_assert_eq(cur->procs[0].growth_bytes, 0);
	cr_assert_eq(cur->procs[0].growth_total_bytes, 0);
	snapshot__free(first);
	snapshot__free(prev);
	snapshot__free(cur);
}

Test(snapshot, diff_rates_zero_when_dt_not_positive)
{
	struct snapshot *prev = new_snap(3.0), *cur = new_snap(3.0);

	add_proc(prev, mkproc(1, 0, 10, 10));
	add_proc(cur, mkproc(1, 0, 20, 20));
	snapshot__diff(cur, prev, NULL);
	cr_assert_eq(cur->procs[0].alloc_rate, 0.0);
	cr_assert_eq(cur->procs[0].free_rate, 0.0);

	cur->elapsed_s = 2.0; /* clock went backwards: still no rate */
	snapshot__diff(cur, prev, NULL);
	cr_assert_eq(cur->procs[0].alloc_rate, 0.0);
	cr_assert_eq(cur->procs[0].free_rate, 0.0);
	snapshot__free(prev);
	snapshot__free(cur);
}

Test(snapshot, diff_rates_zero_when_counter_goes_back)
{
	struct snapshot *prev = new_snap(1.0), *cur = new_snap(2.0);

	/* A reused pid (or a reset) must not produce a huge unsigned rate. */
	add_proc(prev, mkproc(1, 0, 100, 100));
	add_proc(cur, mkproc(1, 0, 40, 40));
	snapshot__diff(cur, prev, NULL);
	cr_assert_eq(cur->procs[0].alloc_rate, 0.0);
	cr_assert_eq(cur->procs[0].free_rate, 0.0);
	snapshot__free(prev);
	snapshot__free(cur);
}

Test(snapshot, diff_growth_total_uses_first_only)
{
	struct snapshot *first = new_snap(0.0), *cur = new_snap(1.0);

	add_proc(first, mkproc(1, 100, 0, 0));
	add_proc(cur, mkproc(1, 400, 0, 0));
	add_proc(cur, mkproc(2, 50, 0, 0));
	snapshot__diff(cur, NULL, first);
	cr_assert_eq(cur->procs[0].growth_bytes, 400);
	cr_assert_eq(cur->procs[0].growth_total_bytes, 300);
	cr_assert_eq(cur->procs[1].growth_total_bytes, 50);
	snapshot__free(first);
	snapshot__free(cur);
}

Test(snapshot, diff_matches_stacks_by_pid_allocator_and_id)
{
	struct snapshot *prev = new_snap(1.0), *cur = new_snap(2.0);

	add_stack(prev, mkstack(1, ASZ_MALLOC, 7, 1000));
	add_stack(prev, mkstack(1, ASZ_CALLOC, 8, 300));
	add_stack(prev, mkstack(2, ASZ_MALLOC, 9, 50));

	add_stack(cur, mkstack(1, ASZ_MALLOC, 7, 1500));  /* same key: +500 */
	add_stack(cur, mkstack(1, ASZ_CALLOC, 7, 200));   /* other allocator: new */
	add_stack(cur, mkstack(2, ASZ_MALLOC, 7, 100));   /* other pid: new */
	add_stack(cur, mkstack(1, ASZ_CALLOC, 8, 100));   /* shrank: -200 */
	add_stack(cur, mkstack(1, ASZ_MALLOC, 8, 40));    /* other allocator than prev's id 8 */
	add_stack(cur, mkstack(2, ASZ_MALLOC, 9, 50));    /* unchanged */
	snapshot__diff(cur, prev, NULL);

	cr_assert_eq(cur->stacks[0].growth_bytes, 500);
	cr_assert_eq(cur->stacks[1].growth_bytes, 200);
	cr_assert_eq(cur->stacks[2].growth_bytes, 100);
	cr_assert_eq(cur->stacks[3].growth_bytes, -200);
	cr_assert_eq(cur->stacks[4].growth_bytes, 40);
	cr_assert_eq(cur->stacks[5].growth_bytes, 0);
	snapshot__free(prev);
	snapshot__free(cur);
}

Test(snapshot, diff_many_stacks_in_any_order)
{
	struct snapshot *prev = new_snap(1.0), *cur = new_snap(2.0);
	const size_t n = 20000;
	size_t i;

	/* prev in reverse order, cur in forward order: matching must not depend on position. */
	for (i = n; i-- > 0;)
		add_stack(prev, mkstack(i % 7 + 1, i % 3, i, (__s64)i * 2));
	for (i = 0; i < n; i++)
		add_stack(cur, mkstack(i % 7 + 1, i % 3, i, (__s64)i * 3));
	add_stack(cur, mkstack(1, 0, n + 1, 11)); /* only in cur */
	snapshot__diff(cur, prev, NULL);
	for (i = 0; i < n; i++)
		cr_assert_eq(cur->stacks[i].growth_bytes, (__s64)i, "stack %zu", i);
	cr_assert_eq(cur->stacks[n].growth_bytes, 11);
	snapshot__free(prev);
	snapshot__free(cur);
}

/* Set the sort fields of stack i directly, bypassing diff. */
static struct snap_stack sortable(__u32 pid, __u64 id, __s64 growth, __s64 live, __u64 allocs,
				  __u64 bytes)
{
	struct snap_stack st = mkstack(pid, ASZ_MALLOC, id, live);

	st.growth_bytes = growth;
	st.allocs = allocs;
	st.alloc_bytes = bytes;
	return st;
}

static void assert_order(const struct snapshot *s, const __u64 *ids, size_t n)
{
	size_t i;

	cr_assert_eq(s->nr_stacks, n);
	for (i = 0; i < n; i++)
		cr_assert_eq(s->stacks[i].stack_id, ids[i], "position %zu: id %llu, expected %llu",
			     i, (unsigned long long)s->stacks[i].stack_id,
			     (unsigned long long)ids[i]);
}

static struct snapshot *sort_fixture(void)
{
	struct snapshot *s = new_snap(0);

	/*                  pid id growth  live  allocs bytes */
	add_stack(s, sortable(1, 1, 100, 1000, 5, 9000));
	add_stack(s, sortable(1, 2, -50, 5000, 50, 100));
	add_stack(s, sortable(2, 3, 300, 200, 1, 50000));
	add_stack(s, sortable(1, 4, 0, 0, 500, 700));
	return s;
}

Test(snapshot, sort_stacks_by_each_key)
{
	static const __u64 by_growth[] = { 3, 1, 4, 2 };
	static const __u64 by_live[] = { 2, 1, 3, 4 };
	static const __u64 by_allocs[] = { 4, 2, 1, 3 };
	static const __u64 by_bytes[] = { 3, 1, 4, 2 };
	struct snapshot *s = sort_fixture();

	snapshot__sort_stacks(s, SNAP_SORT_GROWTH);
	assert_order(s, by_growth, 4);
	snapshot__sort_stacks(s, SNAP_SORT_LIVE);
	assert_order(s, by_live, 4);
	snapshot__sort_stacks(s, SNAP_SORT_ALLOCS);
	assert_order(s, by_allocs, 4);
	snapshot__sort_stacks(s, SNAP_SORT_BYTES);
	assert_order(s, by_bytes, 4);
	snapshot__free(s);
}

Test(snapshot, sort_stacks_ties)
{
	/* All growth 10: live bytes desc, then pid asc, then stack id asc, then allocator asc. */
	struct snapshot *s = new_snap(0);

	add_stack(s, sortable(9, 10, 10, 100, 0, 0));
	add_stack(s, sortable(3, 20, 10, 500, 0, 0));
	add_stack(s, sortable(3, 31, 10, 500, 0, 0));
	add_stack(s, sortable(3, 30, 10, 500, 0, 0));
	add_stack(s, sortable(1, 40, 10, 500, 0, 0));
	add_stack(s, sortable(5, 50, 10, 900, 0, 0));
	add_stack(s, sortable(3, 20, 10, 500, 0, 0));
	s->stacks[1].allocator = ASZ_REALLOC;
	s->stacks[6].allocator = ASZ_CALLOC;
	snapshot__sort_stacks(s, SNAP_SORT_GROWTH);
	cr_assert_eq(s->stacks[0].stack_id, 50);
	cr_assert_eq(s->stacks[1].stack_id, 40);
	/* pid 3, live 500: stack ids 20 (calloc, realloc), 30, 31 */
	cr_assert_eq(s->stacks[2].stack_id, 20);
	cr_assert_eq(s->stacks[2].allocator, ASZ_CALLOC);
	cr_assert_eq(s->stacks[3].stack_id, 20);
	cr_assert_eq(s->stacks[3].allocator, ASZ_REALLOC);
	cr_assert_eq(s->stacks[4].stack_id, 30);
	cr_assert_eq(s->stacks[5].stack_id, 31);
	cr_assert_eq(s->stacks[6].stack_id, 10);
	snapshot__free(s);
}

Test(snapshot, sort_stacks_is_deterministic)
{
	struct snapshot *a = new_snap(0), *b = new_snap(0);
	size_t i, n = 500;

	/* Same set inserted in two orders, many equal keys: same result. */
	for (i = 0; i < n; i++)
		add_stack(a, sortable(i % 5, i % 11, (__s64)(i % 3), (__s64)(i % 4), 0, 0));
	for (i = n; i-- > 0;)
		add_stack(b, sortable(i % 5, i % 11, (__s64)(i % 3), (__s64)(i % 4), 0, 0));
	snapshot__sort_stacks(a, SNAP_SORT_GROWTH);
	snapshot__sort_stacks(b, SNAP_SORT_GROWTH);
	for (i = 0; i < n; i++) {
		cr_assert_eq(a->stacks[i].pid, b->stacks[i].pid);
		cr_assert_eq(a->stacks[i].stack_id, b->stacks[i].stack_id);
		cr_assert_eq(a->stacks[i].live_bytes, b->stacks[i].live_bytes);
		cr_assert_eq(a->stacks[i].growth_bytes, b->stacks[i].growth_bytes);
	}
	for (i = 1; i < n; i++)
		cr_assert_geq(a->stacks[i - 1].growth_bytes, a->stacks[i].growth_bytes);
	snapshot__free(a);
	snapshot__free(b);
}

Test(snapshot, sort_empty_and_single)
{
	struct snapshot *s = new_snap(0);

	snapshot__sort_stacks(s, SNAP_SORT_LIVE);
	snapshot__sort_procs(s, SNAP_SORT_LIVE);
	add_stack(s, sortable(1, 1, 0, 0, 0, 0));
	snapshot__sort_stacks(s, SNAP_SORT_LIVE);
	cr_assert_eq(s->nr_stacks, 1);
	snapshot__free(s);
}

Test(snapshot, sort_procs_by_each_key)
{
	struct snapshot *s = new_snap(0);
	struct snap_proc p;

	p = mkproc(1, 100, 10, 0);
	p.growth_bytes = 5;
	p.alloc_bytes = 1000;
	add_proc(s, p);
	p = mkproc(2, 900, 1, 0);
	p.growth_bytes = -5;
	p.alloc_bytes = 3000;
	add_proc(s, p);
	p = mkproc(3, 100, 50, 0);
	p.growth_bytes = 7;
	p.alloc_bytes = 2000;
	add_proc(s, p);
	p = mkproc(4, 500, 10, 0); /* ties pid 1 on growth; more live */
	p.growth_bytes = 5;
	p.alloc_bytes = 10;
	add_proc(s, p);

	snapshot__sort_procs(s, SNAP_SORT_GROWTH);
	cr_assert_eq(s->procs[0].pid, 3);
	cr_assert_eq(s->procs[1].pid, 4);
	cr_assert_eq(s->procs[2].pid, 1);
	cr_assert_eq(s->procs[3].pid, 2);
	snapshot__sort_procs(s, SNAP_SORT_LIVE);
	cr_assert_eq(s->procs[0].pid, 2);
	cr_assert_eq(s->procs[1].pid, 4);
	cr_assert_eq(s->procs[2].pid, 1); /* live tie with pid 3: lower pid first */
	cr_assert_eq(s->procs[3].pid, 3);
	snapshot__sort_procs(s, SNAP_SORT_ALLOCS);
	cr_assert_eq(s->procs[0].pid, 3);
	cr_assert_eq(s->procs[1].pid, 4); /* allocs tie with pid 1: more live first */
	cr_assert_eq(s->procs[2].pid, 1);
	cr_assert_eq(s->procs[3].pid, 2);
	snapshot__sort_procs(s, SNAP_SORT_BYTES);
	cr_assert_eq(s->procs[0].pid, 2);
	cr_assert_eq(s->procs[1].pid, 3);
	cr_assert_eq(s->procs[2].pid, 1);
	cr_assert_eq(s->procs[3].pid, 4);
	snapshot__free(s);
}

Test(snapshot, parse_sort)
{
	enum snap_sort k = SNAP_SORT_BYTES;

	cr_assert_eq(snapshot__parse_sort("growth", &k), 0);
	cr_assert_eq(k, SNAP_SORT_GROWTH);
	cr_assert_eq(snapshot__parse_sort("live", &k), 0);
	cr_assert_eq(k, SNAP_SORT_LIVE);
	cr_assert_eq(snapshot__parse_sort("allocs", &k), 0);
	cr_assert_eq(k, SNAP_SORT_ALLOCS);
	cr_assert_eq(snapshot__parse_sort("bytes", &k), 0);
	cr_assert_eq(k, SNAP_SORT_BYTES);

	k = SNAP_SORT_LIVE;
	cr_assert_eq(snapshot__parse_sort("", &k), -EINVAL);
	cr_assert_eq(snapshot__parse_sort("Growth", &k), -EINVAL);
	cr_assert_eq(snapshot__parse_sort("growth ", &k), -EINVAL);
	cr_assert_eq(snapshot__parse_sort("grow", &k), -EINVAL);
	cr_assert_eq(snapshot__parse_sort("size", &k), -EINVAL);
	cr_assert_eq(snapshot__parse_sort(NULL, &k), -EINVAL);
	cr_assert_eq(k, SNAP_SORT_LIVE);
}

Test(snapshot, allocator_names)
{
	cr_assert_str_eq(snapshot__allocator_name(ASZ_MALLOC), "malloc");
	cr_assert_str_eq(snapshot__allocator_name(ASZ_CALLOC), "calloc");
	cr_assert_str_eq(snapshot__allocator_name(ASZ_REALLOC), "realloc");
	cr_assert_str_eq(snapshot__allocator_name(ASZ_MEMALIGN), "memalign");
	cr_assert_str_eq(snapshot__allocator_name(ASZ_POSIX_MEMALIGN), "posix_memalign");
	cr_assert_str_eq(snapshot__allocator_name(ASZ_VALLOC), "valloc");
	cr_assert_str_eq(snapshot__allocator_name(ASZ_PVALLOC), "pvalloc");
	cr_assert_str_eq(snapshot__allocator_name(ASZ_FREE), "free");
	cr_assert_str_eq(snapshot__allocator_name(ASZ_NR_ALLOCATORS), "unknown");
	cr_assert_str_eq(snapshot__allocator_name(0xffffffffu), "unknown");
}

Test(snapshot, drop_names)
{
	static const char *const expect[ASZ_NR_DROPS] = {
		"allocs_map_full", "aggs_map_full", "procs_map_full", "stacks_map_full",
		"stack_collisions", "stack_unresolved", "stack_truncated",
		"thread_state_unavailable", "unknown_frees", "missed_frees",
		"stack_incomplete", "unwind_table_full", "stack_preempted", "events_lost",
		"procs_untraced",
		"mappings_unindexed", "aggs_retired", "stack_swept",
	};
	int i;

	for (i = 0; i < ASZ_NR_DROPS; i++)
		cr_assert_str_eq(snapshot__drop_name(i), expect[i]);
	cr_assert_str_eq(snapshot__drop_name(ASZ_DROP_STACKS_FULL), "stacks_map_full");
	cr_assert_str_eq(snapshot__drop_name(ASZ_DROP_MISSED_FREE), "missed_frees");
	cr_assert_str_eq(snapshot__drop_name(ASZ_NR_DROPS), "unknown");
	cr_assert_str_eq(snapshot__drop_name(-1), "unknown");
}

/*
 * Diff and ranking against straightforward references on random snapshots: a linear search
 * for the previous stack, a full sort written from the documented order. Keys and live bytes
 * from small ranges, so that most comparisons tie down to the identity.
 */
static __u64 rnd_state;

static __u64 rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

/* n stacks of distinct identities (as the kernel's map keys are) from a domain of 4n. */
static struct snapshot *random_snap(size_t n, int spread)
{
	struct snapshot *s = new_snap(1.0);
	size_t dom = 4 * n + 4, i, j;
	bool *taken = calloc(dom, sizeof(*taken));

	cr_assert_not_null(taken);
	for (i = 0; i < n; i++) {
		struct snap_stack st;

		do
			j = rnd() % dom;
		while (taken[j]);
		taken[j] = true;
		/* identity from j: pid, allocator and id each vary alone too */
		st = mkstack(j % 5 + 1, (j / 5) % 3, j / 15, (__s64)(rnd() % spread));
		st.growth_bytes = (__s64)(rnd() % (2 * spread + 1)) - spread;
		st.allocs = rnd() % spread;
		st.alloc_bytes = rnd() % spread;
		st.frees = rnd(); /* in no key: must travel with its stack */
		add_stack(s, st);
	}
	free(taken);
	return s;
}

static bool same_identity(const struct snap_stack *a, const struct snap_stack *b)
{
	return a->pid == b->pid && a->allocator == b->allocator && a->stack_id == b->stack_id;
}

Test(snapshot, diff_matches_linear_reference_on_random_snapshots)
{
	rnd_state = 0x9e3779b97f4a7c15ULL;
	for (int round = 0; round < 200; round++) {
		size_t np = round % 10 == 0 ? 0 : rnd() % (round < 100 ? 40 : 3000);
		size_t nc = round % 13 == 0 ? 0 : rnd() % (round < 100 ? 40 : 3000);
		struct snapshot *prev = random_snap(np, 1000), *cur = random_snap(nc, 1000);
		size_t i, j;

		snapshot__diff(cur, round % 17 == 0 ? NULL : prev, NULL);
		for (i = 0; i < cur->nr_stacks; i++) {
			const struct snap_stack *st = &cur->stacks[i];
			__s64 want = st->live_bytes;

			for (j = 0; round % 17 && j < prev->nr_stacks; j++) {
				if (same_identity(&prev->stacks[j], st)) {
					want -= prev->stacks[j].live_bytes;
					break;
				}
			}
			cr_assert_eq(st->growth_bytes, want, "round %d stack %zu: %lld, expected %lld",
				     round, i, (long long)st->growth_bytes, (long long)want);
		}
		snapshot__free(prev);
		snapshot__free(cur);
	}
}

/* The documented order, spelled out: key desc, live desc, pid, stack id, allocator asc. */
static int ref_before(const struct snap_stack *a, const struct snap_stack *b, enum snap_sort key)
{
	__s64 ka, kb;

	switch (key) {
	case SNAP_SORT_GROWTH:
		ka = a->growth_bytes, kb = b->growth_bytes;
		break;
	case SNAP_SORT_LIVE:
		ka = a->live_bytes, kb = b->live_bytes;
		break;
	case SNAP_SORT_ALLOCS:
		ka = (__s64)a->allocs, kb = (__s64)b->allocs; /* small: no sign issue */
		break;
	default:
		ka = (__s64)a->alloc_bytes, kb = (__s64)b->alloc_bytes;
		break;
	}
	if (ka != kb)
		return ka > kb;
	if (a->live_bytes != b->live_bytes)
		return a->live_bytes > b->live_bytes;
	if (a->pid != b->pid)
		return a->pid < b->pid;
	if (a->stack_id != b->stack_id)
		return a->stack_id < b->stack_id;
	return a->allocator < b->allocator;
}

/* Insertion sort: slow, obviously right. */
static void ref_sort(struct snap_stack *st, size_t n, enum snap_sort key)
{
	for (size_t i = 1; i < n; i++) {
		struct snap_stack x = st[i];
		size_t j = i;

		for (; j > 0 && ref_before(&x, &st[j - 1], key); j--)
			st[j] = st[j - 1];
		st[j] = x;
	}
}

static int identity_cmp(const void *a, const void *b)
{
	const struct snap_stack *x = a, *y = b;

	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	if (x->allocator != y->allocator)
		return x->allocator < y->allocator ? -1 : 1;
	if (x->stack_id != y->stack_id)
		return x->stack_id < y->stack_id ? -1 : 1;
	return 0;
}

Test(snapshot, rank_matches_full_reference_sort_on_random_snapshots)
{
	rnd_state = 12345;
	for (int round = 0; round < 300; round++) {
		size_t nr = rnd() % (round < 200 ? 60 : 2000);
		size_t n, shown, i;
		enum snap_sort key = (enum snap_sort)(round % 4);
		struct snapshot *s = random_snap(nr, round % 3 ? 4 : 100000);
		struct snap_stack *want = malloc((nr + 1) * sizeof(*want));
		struct snap_stack *a = malloc((nr + 1) * sizeof(*a));
		struct snap_stack *b = malloc((nr + 1) * sizeof(*b));

		cr_assert(want && a && b);
		/* 0 (all), 1, a few, all but one, all, more than all */
		switch (round % 6) {
		case 0: n = 0; break;
		case 1: n = 1; break;
		case 2: n = rnd() % 12 + 1; break;
		case 3: n = nr > 1 ? nr - 1 : 1; break;
		case 4: n = nr; break;
		default: n = nr + 5; break;
		}
		if (nr)
			memcpy(want, s->stacks, nr * sizeof(*want));
		ref_sort(want, nr, key);
		snapshot__rank_stacks(s, key, n);
		cr_assert_eq(s->nr_stacks, nr);
		shown = n && n < nr ? n : nr;
		for (i = 0; i < shown; i++)
			cr_assert(!memcmp(&s->stacks[i], &want[i], sizeof(want[i])),
				  "round %d (key %d, %zu of %zu): position %zu is pid %u id %llu, "
				  "expected pid %u id %llu", round, key, n, nr, i, s->stacks[i].pid,
				  (unsigned long long)s->stacks[i].stack_id, want[i].pid,
				  (unsigned long long)want[i].stack_id);
		/* the others are all there, each whole, once */
		if (nr) {
			memcpy(a, s->stacks, nr * sizeof(*a));
			memcpy(b, want, nr * sizeof(*b));
		}
		qsort(a, nr, sizeof(*a), identity_cmp);
		qsort(b, nr, sizeof(*b), identity_cmp);
		for (i = 0; i < nr; i++)
			cr_assert(!memcmp(&a[i], &b[i], sizeof(a[i])), "round %d: stack %zu lost",
				  round, i);
		/* the array keeps room to grow as before */
		for (i = 0; i < 70; i++)
			add_stack(s, mkstack(9, 0, 1000000 + i, 1));
		cr_assert_eq(s->stacks[nr + 69].stack_id, 1000069);
		if (nr)
			cr_assert(!memcmp(&s->stacks[0], shown ? &want[0] : &s->stacks[0],
					  sizeof(want[0])));
		free(want);
		free(a);
		free(b);
		snapshot__free(s);
	}
}

static char *render_report(enum report_format fmt, const struct snapshot *s, int top_n,
			   enum snap_sort key)
{
	struct report_opts o = {.top_n = top_n, .sort = key, .max_frames = 8};
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	cr_assert_not_null(f);
	cr_assert_eq(report__write(f, fmt, s, NULL, &o), 0);
	fclose(f);
	return buf;
}

/* What a report prints is the same from the ranked front as from the whole array sorted. */
Test(snapshot, ranked_reports_are_byte_identical_to_sorted_ones)
{
	static const enum report_format fmts[] = {REPORT_TEXT, REPORT_JSON, REPORT_COLLAPSED};

	rnd_state = 777;
	for (int round = 0; round < 60; round++) {
		enum report_format fmt = fmts[round % 3];
		enum snap_sort key = (enum snap_sort)(round % 4);
		int top_n = round % 5 == 0 ? 0 : (int)(rnd() % 15) + 1;
		__u64 seed = rnd();
		struct snapshot *s[2];
		char *out[2];

		for (int k = 0; k < 2; k++) {
			rnd_state = seed;
			s[k] = random_snap(rnd() % 500, round % 2 ? 3 : 5000);
			for (__u32 pid = 1; pid <= 5; pid++)
				add_proc(s[k], mkproc(pid, 100 * pid, pid, 0));
		}
		snapshot__sort_stacks(s[0], key);
		snapshot__rank_stacks(s[1], key, report__stacks_ranked(fmt, &(struct report_opts){
							   .top_n = top_n}));
		for (int k = 0; k < 2; k++)
			out[k] = render_report(fmt, s[k], top_n, key);
		cr_assert_str_eq(out[1], out[0], "round %d (format %d, key %d, -n %d)", round, fmt,
				 key, top_n);
		for (int k = 0; k < 2; k++) {
			free(out[k]);
			snapshot__free(s[k]);
		}
	}
}
