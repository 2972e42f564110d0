// SPDX-License-Identifier: MIT
/*
 * Collapsed (folded) stacks: hand-built snapshots, without a symbolizer (bare addresses) and
 * with one on this very process (functions of this file, an inline chain).
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "report.h"

#define COLL_NOINLINE __attribute__((noinline, noclone))
#define COLL_KEEP(x) asm volatile("" : "+r"(x))

static COLL_NOINLINE void *coll_get_ra(void)
{
	return __builtin_return_address(0);
}

/* distinct side effects: gcc -O2 would fold identical functions into one (-fipa-icf) */
static volatile int coll_leaf_calls, coll_root_calls;

static COLL_NOINLINE void *coll_leaf(void)
{
	void *ra = coll_get_ra();

	coll_leaf_calls++;
	COLL_KEEP(ra);
	return ra;
}

static COLL_NOINLINE void *coll_root(void)
{
	void *ra = coll_get_ra();

	coll_root_calls++;
	COLL_KEEP(ra);
	return ra;
}

static inline __attribute__((always_inline)) void *coll_inl_inner(void)
{
	void *ra = coll_get_ra();

	COLL_KEEP(ra);
	return ra;
}

static COLL_NOINLINE void *coll_inl_outer(void)
{
	void *ra = coll_inl_inner();

	COLL_KEEP(ra);
	return ra;
}

static char *render(const struct snapshot *s, struct symbolizer *sym, enum report_weight w,
		    int top_n, int *ret)
{
	struct report_opts o = {.top_n = top_n, .weight = w};
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	cr_assert_not_null(f);
	*ret = report__write(f, REPORT_COLLAPSED, s, sym, &o);
	fclose(f);
	return buf;
}

static void add_proc(struct snapshot *s, __u32 pid, const char *comm)
{
	struct snap_proc p = {.pid = pid};

	memcpy(p.comm, comm, strnlen(comm, ASZ_COMM_LEN));
	cr_assert_eq(snapshot__add_proc(s, &p), 0);
}

static void add_stack(struct snapshot *s, __u32 pid, __u64 id, const __u64 *ips, __u32 n,
		      __s64 live, __u64 alloc_bytes, __u64 allocs)
{
	struct snap_stack st = {.pid = pid, .allocator = ASZ_MALLOC, .stack_id = id,
				.live_bytes = live, .live_allocs = live > 0, .alloc_bytes = alloc_bytes,
				.allocs = allocs, .nr_frames = n, .ips = ips};

	cr_assert_eq(snapshot__add_stack(s, &st), 0);
}

/* innermost first, as the kernel records them */
static const __u64 ips_a[] = {0x1001, 0x2001, 0x3001};
static const __u64 ips_b[] = {0x1001, 0x2001, 0x4001};
static const __u64 ips_c[] = {0x5001};

Test(collapsed, root_first_weights_and_omissions)
{
	struct snapshot *s = snapshot__new();
	char *out;
	int ret;

	add_proc(s, 10, "app");
	add_proc(s, 11, "other");
	add_stack(s, 10, 1, ips_a, 3, 700, 1000, 3);
	add_stack(s, 10, 2, ips_b, 3, 300, 300, 1);
	add_stack(s, 11, 3, ips_c, 1, 0, 64, 2);    /* nothing live: no line for live bytes */
	add_stack(s, 11, 4, ips_c, 1, -16, 0, 0);   /* negative (freed more): no line either */
	/* top_n does not cut a flame graph: every stack is there */
	out = render(s, NULL, WEIGHT_LIVE_BYTES, 1, &ret);
	cr_assert_eq(ret, 0);
	cr_assert_str_eq(out, "app;0x3000;0x2000;0x1000 700\n"
			      "app;0x4000;0x2000;0x1000 300\n");
	free(out);

	out = render(s, NULL, WEIGHT_ALLOC_BYTES, 0, &ret);
	cr_assert_eq(ret, 0);
	cr_assert_str_eq(out, "app;0x3000;0x2000;0x1000 1000\n"
			      "app;0x4000;0x2000;0x1000 300\n"
			      "other;0x5000 64\n");
	free(out);

	out = render(s, NULL, WEIGHT_ALLOCS, 0, &ret);
	cr_assert_eq(ret, 0);
	cr_assert_str_eq(out, "app;0x3000;0x2000;0x1000 3\n"
			      "app;0x4000;0x2000;0x1000 1\n"
			      "other;0x5000 2\n");
	free(out);
	snapshot__free(s);
}

Test(collapsed, same_folded_stack_is_merged)
{
	struct snapshot *s = snapshot__new();
	struct snap_stack st = {.pid = 21, .allocator = ASZ_CALLOC, .stack_id = 1, .live_bytes = 5,
				.nr_frames = 3, .ips = ips_a};
	char *out;
	int ret;

	/* two processes of one name, and two allocators: one flame, the exact sum */
	add_proc(s, 20, "srv");
	add_proc(s, 21, "srv");
	add_stack(s, 20, 1, ips_a, 3, 100, 100, 1);
	add_stack(s, 21, 1, ips_a, 3, 40, 40, 1);
	cr_assert_eq(snapshot__add_stack(s, &st), 0);
	out = render(s, NULL, WEIGHT_LIVE_BYTES, 0, &ret);
	cr_assert_eq(ret, 0);
	cr_assert_str_eq(out, "srv;0x3000;0x2000;0x1000 145\n");
	free(out);
	snapshot__free(s);
}

Test(collapsed, names_are_sanitized_and_gaps_marked)
{
	struct snapshot *s = snapshot__new();
	struct snap_stack st = {.pid = 30, .allocator = ASZ_MALLOC, .stack_id = 9, .live_bytes = 8,
				.nr_frames = 1, .ips = ips_c, .flags = ASZ_STACK_TRUNCATED};
	char *out;
	int ret;

	add_proc(s, 30, "a;b\nc\xff");
	cr_assert_eq(snapshot__add_stack(s, &st), 0);
	add_stack(s, 30, 10, NULL, 0, 4, 4, 1);     /* no stack at all */
	add_stack(s, 31, 11, ips_c, 1, 2, 2, 1);    /* a process the snapshot does not list */
	out = render(s, NULL, WEIGHT_LIVE_BYTES, 0, &ret);
	cr_assert_eq(ret, 0);
	cr_assert_str_eq(out, "[pid 31];0x5000 2\n"
			      "a:b?c\xef\xbf\xbd;[truncated];0x5000 8\n"
			      "a:b?c\xef\xbf\xbd;[unknown] 4\n");
	free(out);
	snapshot__free(s);
}

Test(collapsed, empty_snapshot)
{
	struct snapshot *s = snapshot__new();
	char *out;
	int ret;

	out = render(s, NULL, WEIGHT_LIVE_BYTES, 0, &ret);
	cr_assert_eq(ret, 0);
	cr_assert_str_eq(out, "");
	free(out);
	snapshot__free(s);
}

Test(collapsed, symbolized_with_inline_marks)
{
	struct symbolizer *sym = symbolizer__new();
	struct snapshot *s = snapshot__new();
	__u64 ips[3], inl[2];
	char *out;
	int ret;

	cr_assert_not_null(sym);
	/* return addresses into coll_leaf and coll_root; the innermost caller first */
	ips[0] = (uintptr_t)coll_leaf();
	ips[1] = 0xdead1001; /* mapped nowhere: the bare address */
	ips[2] = (uintptr_t)coll_root();
	inl[0] = (uintptr_t)coll_inl_outer();
	inl[1] = (uintptr_t)coll_root();
	cr_assert_eq(symbolizer__add_pid(sym, getpid()), 0);
	add_proc(s, getpid(), "unit");
	add_stack(s, getpid(), 1, ips, 3, 1234, 1234, 1);
	add_stack(s, getpid(), 2, inl, 2, 99, 99, 1);
	out = render(s, sym, WEIGHT_LIVE_BYTES, 0, &ret);
	cr_assert_eq(ret, 0);
	/* the inlined function comes after (inside) the one it was inlined into */
	cr_assert_str_eq(out, "unit;coll_root;0xdead1000;coll_leaf 1234\n"
			      "unit;coll_root;coll_inl_outer;coll_inl_inner_[i] 99\n");
	free(out);
	snapshot__free(s);
	symbolizer__free(sym);
}
