// SPDX-License-Identifier: MIT
/*
 * Unit tests: the pure parts of top_view.c (no terminal): the trend sparkline, name filter,
 * orderings, column layout on narrow terminals, the model built from snapshots (history,
 * copies), the screens' text and the key handling (selection, stacks view, filter, freeze).
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "top_view.h"

#define MIB (1024 * 1024)

/* ------------------------------------------------------------------ sparkline */

Test(top_sparkline, ramp_utf8)
{
	__s64 v[8] = {0, 1, 2, 3, 4, 5, 6, 7};
	char out[64];

	cr_assert_eq(top__sparkline(out, sizeof(out), v, 8, 20, true), 8);
	cr_assert_str_eq(out, "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588");
}

Test(top_sparkline, ramp_ascii)
{
	__s64 v[8] = {0, 10, 20, 30, 40, 50, 60, 70};
	char out[64];

	cr_assert_eq(top__sparkline(out, sizeof(out), v, 8, 20, false), 8);
	cr_assert_str_eq(out, "_.-~=+*#");
}

Test(top_sparkline, flat_and_empty)
{
	__s64 same[5] = {42, 42, 42, 42, 42}, zero[3] = {0, 0, 0};
	char out[64];

	cr_assert_eq(top__sparkline(out, sizeof(out), same, 5, 20, false), 5);
	cr_assert_str_eq(out, "_____");
	cr_assert_eq(top__sparkline(out, sizeof(out), zero, 3, 20, false), 3);
	cr_assert_str_eq(out, "___");
	cr_assert_eq(top__sparkline(out, sizeof(out), same, 0, 20, false), 0);
	cr_assert_str_eq(out, "");
	cr_assert_eq(top__sparkline(out, sizeof(out), same, 5, 0, false), 0);
	cr_assert_str_eq(out, "");
}

Test(top_sparkline, small_jitter_draws_flat)
{
	/* 1 MiB +- 100 bytes: far below 1/16 of the value */
	__s64 v[4] = {MIB, MIB + 100, MIB - 100, MIB};
	char out[64];

	top__sparkline(out, sizeof(out), v, 4, 20, false);
	cr_assert_str_eq(out, "____");
}

Test(top_sparkline, keeps_the_last_width_values)
{
	__s64 v[10] = {100, 100, 100, 100, 100, 100, 0, 1, 2, 3};
	char out[64];

	/* only the last 4 count, and are scaled among themselves: levels 0, 2.3, 4.7, 7 */
	cr_assert_eq(top__sparkline(out, sizeof(out), v, 10, 4, false), 4);
	cr_assert_str_eq(out, "_-+#");
}

Test(top_sparkline, extremes_do_not_overflow)
{
	__s64 v[3] = {INT64_MIN, 0, INT64_MAX};
	char out[64];

	/* the middle is level 3.5, rounded up */
	cr_assert_eq(top__sparkline(out, sizeof(out), v, 3, 20, false), 3);
	cr_assert_str_eq(out, "_=#");
	__s64 neg[3] = {-300, -200, -100};
	top__sparkline(out, sizeof(out), neg, 3, 20, false);
	cr_assert_str_eq(out, "_=#");
}

Test(top_sparkline, short_buffer_cuts_whole_glyphs)
{
	__s64 v[4] = {0, 1, 2, 3};
	char out[8]; /* room for two 3-byte glyphs and the NUL */

	cr_assert_eq(top__sparkline(out, sizeof(out), v, 4, 20, true), 2);
	cr_assert_eq(strlen(out), 6);
	cr_assert_eq(top__text_cols(out), 2);
}

/* ------------------------------------------------------------------ small helpers */

Test(top_helpers, comm_match)
{
	cr_assert(top__comm_match("top_grower", NULL));
	cr_assert(top__comm_match("top_grower", ""));
	cr_assert(top__comm_match("top_grower", "grow"));
	cr_assert(top__comm_match("top_grower", "GROW"));
	cr_assert(top__comm_match("Top_Grower", "top_g"));
	cr_assert(top__comm_match("top_grower", "top_grower"));
	cr_assert_not(top__comm_match("top_grower", "top_grower2"));
	cr_assert_not(top__comm_match("top_churner", "grow"));
	cr_assert_not(top__comm_match("", "a"));
}

Test(top_helpers, parse_sort)
{
	enum top_sort k = TOP_SORT_GROWTH;

	cr_assert_eq(top__parse_sort("live", &k), 0);
	cr_assert_eq(k, TOP_SORT_LIVE);
	cr_assert_eq(top__parse_sort("allocs", &k), 0);
	cr_assert_eq(k, TOP_SORT_ALLOCS);
	cr_assert_eq(top__parse_sort("total", &k), 0);
	cr_assert_eq(k, TOP_SORT_TOTAL);
	cr_assert_eq(top__parse_sort("growth", &k), 0);
	cr_assert_eq(k, TOP_SORT_GROWTH);
	cr_assert_neq(top__parse_sort("Growth", &k), 0);
	cr_assert_neq(top__parse_sort("", &k), 0);
	cr_assert_neq(top__parse_sort(NULL, &k), 0);
	cr_assert_eq(k, TOP_SORT_GROWTH);
}

Test(top_helpers, text_cols)
{
	cr_assert_eq(top__text_cols(""), 0);
	cr_assert_eq(top__text_cols("abc"), 3);
	cr_assert_eq(top__text_cols("a\u2581b\u2588"), 4);
}

/* ------------------------------------------------------------------ layout */

static const struct top_col cols7[] = {
	{"PID", 7, 0, 0, false, false},	 {"COMM", 15, 6, 1, true, true},
	{"LIVE", 10, 0, 0, false, false}, {"GROWTH", 10, 0, 0, false, false},
	{"TOTAL", 12, 0, 4, false, false}, {"RATE", 9, 0, 3, false, false},
	{"TREND", 20, 0, 2, true, false},
};
#define NC7 ((int)(sizeof(cols7) / sizeof(cols7[0])))

Test(top_layout, wide_shows_all)
{
	bool shown[NC7];
	int w[NC7];
	int total = top__layout(cols7, NC7, 200, shown, w);

	for (int i = 0; i < NC7; i++) {
		cr_assert(shown[i], "column %d", i);
		cr_assert_eq(w[i], cols7[i].width, "column %d", i);
	}
	cr_assert_eq(total, 7 + 15 + 10 + 10 + 12 + 9 + 20 + 2 * 6);
}

Test(top_layout, flex_shrinks_before_anything_drops)
{
	bool shown[NC7];
	int w[NC7];
	/* everything with COMM at its minimum of 6: 74 + 12 = 86 columns */
	int total = top__layout(cols7, NC7, 90, shown, w);

	for (int i = 0; i < NC7; i++)
		cr_assert(shown[i], "column %d", i);
	cr_assert_eq(w[1], 10);
	cr_assert_eq(total, 90);
}

Test(top_layout, drops_highest_rank_first_and_takes_back)
{
	bool shown[NC7];
	int w[NC7];
	int total;

	/* 60: TOTAL (4), then RATE (3) and TREND (2) go; RATE comes back where it fits */
	total = top__layout(cols7, NC7, 60, shown, w);
	cr_assert(shown[0] && shown[1] && shown[2] && shown[3]);
	cr_assert_not(shown[4]);
	cr_assert(shown[5]);
	cr_assert_not(shown[6]);
	cr_assert_leq(total, 60);
	/* COMM takes the room left, up to its width */
	cr_assert_eq(w[1], 15);

	/* 40: only what is never dropped, and COMM */
	total = top__layout(cols7, NC7, 40, shown, w);
	cr_assert(shown[0] && shown[1] && shown[2] && shown[3]);
	cr_assert_not(shown[4] || shown[5] || shown[6]);
	cr_assert_leq(total, 40);
}

Test(top_layout, flex_shrinks_below_its_minimum_before_it_drops)
{
	static const struct top_col cols[] = {
		{"#", 2, 0, 0, false, false},	     {"ALLOCATOR", 9, 0, 4, true, false},
		{"LIVE", 10, 0, 0, false, false},    {"BLOCKS", 6, 0, 3, false, false},
		{"GROWTH", 10, 0, 0, false, false},  {"ALLOCS", 6, 0, 2, false, false},
		{"CALL SITE", 80, 40, 1, true, true}, /* as wide as its longest site */
	};
	bool shown[7];
	int w[7];
	/* the never-dropped columns take 2 + 10 + 10 and two gaps: 26 of 60 */
	int total = top__layout(cols, 7, 60, shown, w);

	cr_assert(shown[6], "the call site stays");
	cr_assert_eq(w[6], 60 - 26 - 2);
	cr_assert_not(shown[1] || shown[3] || shown[5], "the numbers beside it go first");
	cr_assert_eq(total, 60);
}

Test(top_layout, too_narrow_keeps_rank_zero_only)
{
	bool shown[NC7];
	int w[NC7];
	int total = top__layout(cols7, NC7, 20, shown, w);

	cr_assert(shown[0] && shown[2] && shown[3]);
	cr_assert_not(shown[1] || shown[4] || shown[5] || shown[6]);
	/* wider than avail: the caller cuts the line */
	cr_assert_eq(total, 7 + 10 + 10 + 4);
}

/* ------------------------------------------------------------------ model */

static const __u64 ips_grow[] = {0x401001, 0x402002};
static const __u64 ips_churn[] = {0x501001};

static void add_proc(struct snapshot *s, __u32 pid, const char *comm, __s64 live, __u64 allocs,
		     __u64 frees)
{
	struct snap_proc p = {.pid = pid, .live_bytes = live, .allocs = allocs, .frees = frees,
			      .alloc_bytes = allocs * 100};

	snprintf(p.comm, sizeof(p.comm), "%s", comm);
	cr_assert_eq(snapshot__add_proc(s, &p), 0);
}

static void add_stack(struct snapshot *s, __u32 pid, __u64 id, __s64 live, __u64 allocs,
		      const __u64 *ips, __u32 nr)
{
	struct snap_stack st = {.pid = pid, .allocator = ASZ_MALLOC, .stack_id = id,
				.live_bytes = live, .live_allocs = allocs, .alloc_bytes = allocs * 64,
				.allocs = allocs, .ips = ips, .nr_frames = nr};

	cr_assert_eq(snapshot__add_stack(s, &st), 0);
}

/*
 * Snapshot number k (1-based) of a run: pid 10 "grower" grows 4 MiB per snapshot from one
 * stack; pid 20 "churner" stays at 1000 bytes with many allocations; pid 30 "idle" holds 50 MiB
 * and does nothing.
 */
static struct snapshot *run_snapshot(int k, const struct snapshot *prev)
{
	struct snapshot *s = snapshot__new();

	cr_assert_not_null(s);
	s->time = 1700000000 + k;
	s->elapsed_s = k;
	add_proc(s, 10, "grower", (__s64)k * 4 * MIB, k, 0);
	add_proc(s, 20, "churner", 1000, 1000ull * k, 1000ull * k - 10);
	add_proc(s, 30, "idle", 50ll * MIB, 5, 0);
	add_stack(s, 10, 1, (__s64)k * 4 * MIB, k, ips_grow, 2);
	add_stack(s, 20, 2, 600, 600ull * k, ips_churn, 1);
	add_stack(s, 20, 3, 400, 400ull * k, NULL, 0);
	add_stack(s, 30, 4, 50ll * MIB, 5, ips_churn, 1);
	snapshot__diff(s, prev, NULL);
	return s;
}

static const struct top_stats stats = {.interval_s = 1, .cpu_pct = 1.5, .map_bytes = 3 * MIB,
				       .bpf_ms_per_s = -1, .nr_targets = -1, .cmd_status = -1};

/* Feeds k snapshots of the run into the view. */
static void feed(struct top_view *v, int from, int to)
{
	struct snapshot *prev = from > 1 ? run_snapshot(from - 1, NULL) : NULL;

	for (int k = from; k <= to; k++) {
		struct snapshot *s = run_snapshot(k, prev);

		cr_assert_eq(top_view__update(v, s, &stats), 0);
		snapshot__free(prev);
		prev = s;
	}
	snapshot__free(prev);
}

Test(top_model, ingest_keeps_history_and_totals)
{
	struct top_model m;
	struct snapshot *prev = NULL;

	top_model__init(&m);
	for (int k = 1; k <= 25; k++) {
		struct snapshot *s = run_snapshot(k, prev);

		cr_assert_eq(top_model__ingest(&m, s, &stats), 0);
		snapshot__free(prev);
		prev = s;
	}
	cr_assert_eq(m.seq, 25);
	cr_assert_eq(m.nr_procs, 3);
	const struct top_proc *g = top_model__find_proc(&m, 10);

	cr_assert_not_null(g);
	cr_assert_str_eq(g->comm, "grower");
	cr_assert_eq(g->nr_hist, TOP_HIST);
	/* the last 20 of 25: snapshots 6..25, oldest first */
	for (int i = 0; i < TOP_HIST; i++)
		cr_assert_eq(g->hist[i], (__s64)(6 + i) * 4 * MIB, "hist[%d]", i);
	cr_assert_eq(g->growth_bytes, 4 * MIB);
	cr_assert_eq(m.live_bytes, 25ll * 4 * MIB + 1000 + 50ll * MIB);
	cr_assert_eq(m.growth_bytes, 4 * MIB);
	cr_assert_eq(m.nr_stacks, 4);
	cr_assert_eq(m.nr_ips, 4);
	cr_assert(m.stats.cpu_pct == 1.5);
	snapshot__free(prev);
	top_model__release(&m);
}

Test(top_model, addresses_are_copied_and_gone_processes_dropped)
{
	__u64 ips[2] = {0x1234, 0x5678};
	struct snapshot *s = snapshot__new();
	struct top_model m, c;

	top_model__init(&m);
	top_model__init(&c);
	add_proc(s, 7, "a", 100, 1, 0);
	add_proc(s, 8, "b", 200, 1, 0);
	add_stack(s, 7, 9, 100, 1, ips, 2);
	snapshot__diff(s, NULL, NULL);
	cr_assert_eq(top_model__ingest(&m, s, NULL), 0);
	ips[0] = ips[1] = 0; /* the engine's copy may go away */
	cr_assert_eq(m.ips[m.stacks[0].ips], 0x1234);
	cr_assert_eq(m.ips[m.stacks[0].ips + 1], 0x5678);
	cr_assert_eq(top_model__copy(&c, &m), 0);
	snapshot__free(s);

	/* pid 8 is no longer reported: its row goes; pid 7's history continues */
	s = snapshot__new();
	add_proc(s, 7, "a", 300, 2, 0);
	snapshot__diff(s, NULL, NULL);
	cr_assert_eq(top_model__ingest(&m, s, NULL), 0);
	cr_assert_eq(m.nr_procs, 1);
	cr_assert_null(top_model__find_proc(&m, 8));
	cr_assert_eq(top_model__find_proc(&m, 7)->nr_hist, 2);
	cr_assert_eq(m.nr_stacks, 0);
	/* the copy is independent */
	cr_assert_eq(c.nr_procs, 2);
	cr_assert_eq(c.ips[c.stacks[0].ips], 0x1234);
	cr_assert_eq(top_model__find_proc(&c, 7)->live_bytes, 100);
	snapshot__free(s);
	top_model__release(&m);
	top_model__release(&c);
}

/* ------------------------------------------------------------------ ordering */

static __u32 pid_at(const struct top_model *m, const size_t *idx, size_t i)
{
	return m->procs[idx[i]].pid;
}

Test(top_order, processes_by_each_key_and_filter)
{
	struct top_view_opts o = {.sort = TOP_SORT_GROWTH};
	struct top_view *v = top_view__new(&o);
	const struct top_model *m;
	size_t idx[8], n;

	feed(v, 1, 3);
	m = top_view__model(v);
	n = top__order_procs(m, TOP_SORT_GROWTH, NULL, idx);
	cr_assert_eq(n, 3);
	/* growth: grower +4 MiB; idle and churner 0, then by live bytes */
	cr_assert_eq(pid_at(m, idx, 0), 10);
	cr_assert_eq(pid_at(m, idx, 1), 30);
	cr_assert_eq(pid_at(m, idx, 2), 20);
	n = top__order_procs(m, TOP_SORT_LIVE, NULL, idx);
	cr_assert_eq(pid_at(m, idx, 0), 30); /* 50 MiB > 12 MiB */
	cr_assert_eq(pid_at(m, idx, 1), 10);
	n = top__order_procs(m, TOP_SORT_ALLOCS, NULL, idx);
	cr_assert_eq(pid_at(m, idx, 0), 20); /* 1000/s */
	n = top__order_procs(m, TOP_SORT_TOTAL, NULL, idx);
	cr_assert_eq(pid_at(m, idx, 0), 30); /* growth since attach = live: 50 MiB */
	n = top__order_procs(m, TOP_SORT_GROWTH, "CHURN", idx);
	cr_assert_eq(n, 1);
	cr_assert_eq(pid_at(m, idx, 0), 20);
	n = top__order_procs(m, TOP_SORT_GROWTH, "nothing", idx);
	cr_assert_eq(n, 0);
	top_view__free(v);
}

Test(top_order, stacks_of_one_process)
{
	struct top_view_opts o = {.sort = TOP_SORT_GROWTH};
	struct top_view *v = top_view__new(&o);
	const struct top_model *m;
	size_t idx[8], n;

	feed(v, 1, 2);
	m = top_view__model(v);
	n = top__order_stacks(m, 20, TOP_SORT_LIVE, idx);
	cr_assert_eq(n, 2);
	cr_assert_eq(m->stacks[idx[0]].stack_id, 2);
	cr_assert_eq(m->stacks[idx[1]].stack_id, 3);
	n = top__order_stacks(m, 10, TOP_SORT_GROWTH, idx);
	cr_assert_eq(n, 1);
	cr_assert_eq(m->stacks[idx[0]].stack_id, 1);
	cr_assert_eq(top__order_stacks(m, 99, TOP_SORT_GROWTH, idx), 0);
	cr_assert_eq(top__order_stacks(m, 5, TOP_SORT_GROWTH, idx), 0);
	top_view__free(v);
}

/* ------------------------------------------------------------------ screens */

static bool has_line(const struct top_line *l, int n, const char *needle)
{
	for (int i = 0; i < n; i++)
		if (strstr(l[i].text, needle))
			return true;
	return false;
}

static const struct top_line *find_line(const struct top_line *l, int n, const char *needle)
{
	for (int i = 0; i < n; i++)
		if (strstr(l[i].text, needle))
			return &l[i];
	return NULL;
}

/* The table's head line (the one starting with PID). */
static const char *proc_head(const struct top_line *l, int n)
{
	for (int i = 0; i < n; i++)
		if (!strncmp(l[i].text + strspn(l[i].text, " "), "PID ", 4))
			return l[i].text;
	return NULL;
}

Test(top_screen, every_width_fits_and_columns_drop_in_order)
{
	struct top_view_opts o = {.sort = TOP_SORT_GROWTH, .utf8 = true};
	struct top_view *v = top_view__new(&o);

	feed(v, 1, 4);
	for (int w = 1; w <= 300; w++) {
		const struct top_line *l = NULL;
		const char *head;
		int n;

		l = top_view__render(v, w, 30, &n);
		cr_assert_not_null(l);
		cr_assert_eq(n, 30, "width %d: %d lines", w, n);
		for (int i = 0; i < n; i++)
			cr_assert_leq(top__text_cols(l[i].text), w, "width %d line %d: '%s'", w, i,
				      l[i].text);
		/* the status line is last */
		cr_assert_eq(l[n - 1].attr, TOP_ATTR_STATUS);
		if (w < 40)
			continue;
		/*
		 * PID 7, COMM 7 ("churner": names are not cut below 12 columns), LIVE 10 and
		 * GROWTH 10 are always there: 40 columns with their gaps. TREND (20) comes first,
		 * at 62; everything at 98.
		 */
		head = proc_head(l, n);
		cr_assert_not_null(head, "width %d", w);
		cr_assert(strstr(head, "PID  COMM") && strstr(head, "LIVE") && strstr(head, "GROWTH"),
			  "width %d: %s", w, head);
		cr_assert(has_line(l, n, "  churner  "), "width %d", w);
		cr_assert_eq(strstr(head, "TREND") != NULL, w >= 62, "width %d: %s", w, head);
		cr_assert_eq(strstr(head, "FREE/s") && strstr(head, "GROWTH-TOTAL") &&
				     strstr(head, "ALLOC/s"),
			     w >= 98, "width %d: %s", w, head);
	}
	top_view__free(v);
}

Test(top_screen, rows_header_and_selection)
{
	struct top_view_opts o = {.sort = TOP_SORT_GROWTH, .utf8 = false};
	struct top_view *v = top_view__new(&o);
	const struct top_line *l, *row;
	int n;

	l = top_view__render(v, 160, 20, &n);
	cr_assert(has_line(l, n, "waiting for the first sample"));
	cr_assert(has_line(l, n, "(no sample yet)"));

	feed(v, 1, 3);
	l = top_view__render(v, 160, 20, &n);
	cr_assert(has_line(l, n, "Processes: 3 traced, 0 exited"));
	cr_assert(has_line(l, n, "Live: 62.0 MiB"));
	cr_assert(has_line(l, n, "Growth: +4.0 MiB last interval, +62.0 MiB since start"));
	cr_assert(has_line(l, n, "Drops: none"));
	cr_assert(has_line(l, n, "Profiler: CPU 1.5%"));
	cr_assert(has_line(l, n, "BPF maps 3.0 MiB"));
	row = find_line(l, n, "grower");
	cr_assert_not_null(row);
	/* the first row is selected, and shows the trend of 3 snapshots (4, 8, 12 MiB) */
	cr_assert_eq(row->attr, TOP_ATTR_SELECTED);
	cr_assert(strstr(row->text, "  10  grower  "), "%s", row->text);
	cr_assert(strstr(row->text, "12.0 MiB"), "%s", row->text);
	cr_assert(strstr(row->text, "+4.0 MiB"), "%s", row->text);
	cr_assert(strstr(row->text, "_=#"), "%s", row->text);
	cr_assert_eq(top_view__selected_pid(v), 10);
	top_view__free(v);
}

Test(top_screen, drops_are_highlighted)
{
	struct top_view_opts o = {.sort = TOP_SORT_GROWTH};
	struct top_view *v = top_view__new(&o);
	struct snapshot *s = run_snapshot(1, NULL);
	const struct top_line *l, *d;
	int n;

	s->drops[ASZ_DROP_ALLOCS_FULL] = 3;
	s->drops[ASZ_DROP_UNKNOWN_FREE] = 5;
	cr_assert_eq(top_view__update(v, s, &stats), 0);
	l = top_view__render(v, 160, 20, &n);
	d = find_line(l, n, "Drops: allocs_map_full=3");
	cr_assert_not_null(d);
	cr_assert(strstr(d->text, "unknown_frees=5"));
	cr_assert_eq(d->hl_attr, TOP_ATTR_ALERT);
	cr_assert_eq(strncmp(d->text + d->hl_start, "Drops: allocs_map_full=3", d->hl_len), 0);
	cr_assert_eq(d->hl_len, (int)strlen("Drops: allocs_map_full=3"));
	snapshot__free(s);

	/* informational counters only: listed, not painted */
	s = run_snapshot(1, NULL);
	s->drops[ASZ_DROP_UNKNOWN_FREE] = 5;
	cr_assert_eq(top_view__update(v, s, &stats), 0);
	l = top_view__render(v, 160, 20, &n);
	d = find_line(l, n, "Drops: none; unknown_frees=5");
	cr_assert_not_null(d);
	cr_assert_eq(d->hl_len, 0);
	snapshot__free(s);
	top_view__free(v);
}

/* totals without the blocks under --min-size must say so, or they read as the whole heap */
Test(top_screen, min_size_is_in_the_title)
{
	struct top_view_opts o = {.sort = TOP_SORT_GROWTH};
	struct top_view *v = top_view__new(&o);
	struct snapshot *s = run_snapshot(1, NULL);
	const struct top_line *l;
	int n;

	s->min_size = 4096;
	cr_assert_eq(top_view__update(v, s, &stats), 0);
	l = top_view__render(v, 160, 20, &n);
	cr_assert_geq(n, 1);
	cr_assert(strstr(l[0].text, "blocks under 4096 bytes not counted"), "%s", l[0].text);
	snapshot__free(s);
	top_view__free(v);
}

Test(top_screen, batch_text_exact_bytes)
{
	struct top_view_opts o = {.batch = true, .sort = TOP_SORT_GROWTH, .exact_bytes = true};
	struct top_view *v = top_view__new(&o);
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	feed(v, 1, 2);
	f = open_memstream(&buf, &len);
	cr_assert_not_null(f);
	cr_assert_eq(top_view__print(v, f), 0);
	fclose(f);
	/* the process table with exact sizes, then the top stacks of the top processes */
	cr_assert(strstr(buf, "\n     10  grower      8388608    +4194304      +8388608  "), "%s",
		  buf);
	cr_assert(strstr(buf, "Top stacks of 10 grower by growth (last interval):   live 8388608, "
			      "growth +4194304, +8388608 since start\n"),
		  "%s", buf);
	cr_assert(strstr(buf, "Top stacks of 30 idle by growth"), "%s", buf);
	cr_assert(strstr(buf, "Top stacks of 20 churner by growth"), "%s", buf);
	/* frames without a symbolizer: addresses (return address - 1) */
	cr_assert(strstr(buf, "\n        0x401000\n        0x402001\n"), "%s", buf);
	cr_assert(strstr(buf, "(no call stack: see the drops)"), "%s", buf);
	/* no trailing blanks, no terminal attributes */
	cr_assert_null(strstr(buf, " \n"), "%s", buf);
	cr_assert_null(strchr(buf, '\033'));
	free(buf);
	top_view__free(v);
}

Test(top_screen, batch_rows_limit)
{
	struct top_view_opts o = {.batch = true, .sort = TOP_SORT_LIVE, .max_rows = 1};
	struct top_view *v = top_view__new(&o);
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	feed(v, 1, 2);
	f = open_memstream(&buf, &len);
	cr_assert_eq(top_view__print(v, f), 0);
	fclose(f);
	cr_assert(strstr(buf, "  idle  "), "%s", buf);
	cr_assert_null(strstr(buf, "  grower  "), "%s", buf);
	cr_assert(strstr(buf, "... and 2 more processes (-n 0 shows all)"), "%s", buf);
	/* stacks of the processes shown only */
	cr_assert(strstr(buf, "Top stacks of 30 idle by live bytes"), "%s", buf);
	cr_assert_null(strstr(buf, "Top stacks of 10"), "%s", buf);
	free(buf);
	top_view__free(v);
}

Test(top_screen, exited_rows_marked)
{
	struct top_view_opts o = {.sort = TOP_SORT_GROWTH};
	struct top_view *v = top_view__new(&o);
	struct snapshot *s = run_snapshot(1, NULL);
	const struct top_line *l, *row;
	int n;

	for (size_t i = 0; i < s->nr_procs; i++)
		s->procs[i].exited = true;
	cr_assert_eq(top_view__update(v, s, &stats), 0);
	l = top_view__render(v, 160, 20, &n);
	cr_assert(has_line(l, n, "Processes: 0 traced, 3 exited"));
	cr_assert(has_line(l, n, "all targets exited"));
	/* the top row (idle: 50 MiB at the first snapshot) is selected; the others dim */
	row = find_line(l, n, "  grower  ");
	cr_assert_not_null(row);
	cr_assert_eq(row->attr, TOP_ATTR_DIM);
	cr_assert(strstr(row->text, "  exited"), "%s", row->text);
	snapshot__free(s);
	top_view__free(v);
}

/* ------------------------------------------------------------------ keys */

Test(top_keys, selection_follows_the_process_once_moved)
{
	struct top_view_opts o = {.sort = TOP_SORT_GROWTH};
	struct top_view *v = top_view__new(&o);

	feed(v, 1, 2);
	cr_assert_eq(top_view__selected_pid(v), 10);
	cr_assert_eq(top_view__key(v, TOP_KEY_DOWN), TOP_ACT_REDRAW);
	cr_assert_eq(top_view__selected_pid(v), 30);
	cr_assert_eq(top_view__key(v, 'j'), TOP_ACT_REDRAW);
	cr_assert_eq(top_view__selected_pid(v), 20);
	cr_assert_eq(top_view__key(v, 'j'), TOP_ACT_REDRAW); /* stays on the last row */
	cr_assert_eq(top_view__selected_pid(v), 20);
	cr_assert_eq(top_view__key(v, 'k'), TOP_ACT_REDRAW);
	cr_assert_eq(top_view__selected_pid(v), 30);
	/* sorted by allocations, pid 30 moves to the bottom: the selection goes with it */
	cr_assert_eq(top_view__key(v, 'a'), TOP_ACT_REDRAW);
	cr_assert_eq(top_view__selected_pid(v), 30);
	cr_assert_eq(top_view__key(v, TOP_KEY_HOME), TOP_ACT_REDRAW);
	cr_assert_eq(top_view__selected_pid(v), 20);
	cr_assert_eq(top_view__key(v, TOP_KEY_END), TOP_ACT_REDRAW);
	cr_assert_eq(top_view__selected_pid(v), 30);
	top_view__free(v);
}

Test(top_keys, enter_opens_stacks_and_expands_frames)
{
	struct top_view_opts o = {.sort = TOP_SORT_GROWTH};
	struct top_view *v = top_view__new(&o);
	const struct top_line *l;
	int n;

	feed(v, 1, 2);
	cr_assert_eq(top_view__key(v, TOP_KEY_ENTER), TOP_ACT_REDRAW);
	cr_assert(top_view__in_stacks(v));
	l = top_view__render(v, 120, 25, &n);
	cr_assert(has_line(l, n, "Call stacks of 10 grower by growth"));
	cr_assert(has_line(l, n, "+  1  malloc"), "collapsed marker");
	cr_assert_not(has_line(l, n, "        0x402001"));
	cr_assert_eq(top_view__key(v, TOP_KEY_ENTER), TOP_ACT_REDRAW);
	l = top_view__render(v, 120, 25, &n);
	cr_assert(has_line(l, n, "-  1  malloc"), "expanded marker");
	cr_assert(has_line(l, n, "        0x401000"));
	cr_assert(has_line(l, n, "        0x402001"));
	/* every line still fits a narrow terminal */
	l = top_view__render(v, 30, 12, &n);
	cr_assert_eq(n, 12);
	for (int i = 0; i < n; i++)
		cr_assert_leq(top__text_cols(l[i].text), 30, "'%s'", l[i].text);
	cr_assert_eq(top_view__key(v, TOP_KEY_ESC), TOP_ACT_REDRAW);
	cr_assert_not(top_view__in_stacks(v));
	cr_assert_eq(top_view__key(v, TOP_KEY_RIGHT), TOP_ACT_REDRAW);
	cr_assert(top_view__in_stacks(v));
	cr_assert_eq(top_view__key(v, TOP_KEY_BACKSPACE), TOP_ACT_REDRAW);
	cr_assert_not(top_view__in_stacks(v));
	top_view__free(v);
}

Test(top_keys, filter_edit_keep_cancel)
{
	struct top_view_opts o = {.sort = TOP_SORT_GROWTH};
	struct top_view *v = top_view__new(&o);
	const struct top_line *l;
	int n;

	feed(v, 1, 2);
	cr_assert_eq(top_view__key(v, '/'), TOP_ACT_REDRAW);
	/* while typing, q and the sort keys are text */
	cr_assert_eq(top_view__key(v, 'c'), TOP_ACT_REDRAW);
	cr_assert_eq(top_view__key(v, 'q'), TOP_ACT_REDRAW);
	cr_assert_eq(top_view__key(v, TOP_KEY_BACKSPACE), TOP_ACT_REDRAW);
	cr_assert_eq(top_view__key(v, 'H'), TOP_ACT_REDRAW);
	l = top_view__render(v, 120, 20, &n);
	cr_assert(has_line(l, n, "Filter by name: cH_"));
	cr_assert_eq(top_view__key(v, TOP_KEY_ENTER), TOP_ACT_REDRAW);
	cr_assert_eq(top_view__selected_pid(v), 20);
	l = top_view__render(v, 120, 20, &n);
	cr_assert_not(has_line(l, n, " grower "));
	cr_assert(has_line(l, n, " churner"));
	/* a new edit cancelled with Esc keeps the previous filter */
	top_view__key(v, '/');
	top_view__key(v, 'x');
	cr_assert_eq(top_view__key(v, TOP_KEY_ESC), TOP_ACT_REDRAW);
	cr_assert_eq(top_view__selected_pid(v), 20);
	/* nothing matches */
	top_view__key(v, '/');
	top_view__key(v, 'z');
	top_view__key(v, TOP_KEY_ENTER);
	l = top_view__render(v, 120, 20, &n);
	cr_assert(has_line(l, n, "no process name contains 'cHz'"));
	cr_assert_eq(top_view__key(v, TOP_KEY_ENTER), TOP_ACT_NONE);
	cr_assert_not(top_view__in_stacks(v));
	/* Esc in the list clears the filter */
	cr_assert_eq(top_view__key(v, TOP_KEY_ESC), TOP_ACT_REDRAW);
	cr_assert_eq(top_view__selected_pid(v), 10);
	top_view__free(v);
}

Test(top_keys, backspace_in_the_list_clears_the_filter)
{
	struct top_view_opts o = {.sort = TOP_SORT_GROWTH};
	struct top_view *v = top_view__new(&o);
	const struct top_line *l;
	int n;

	feed(v, 1, 2);
	top_view__key(v, '/');
	top_view__key(v, 'c');
	top_view__key(v, 'h');
	cr_assert_eq(top_view__key(v, TOP_KEY_ENTER), TOP_ACT_REDRAW);
	cr_assert_eq(top_view__selected_pid(v), 20);
	/* the help says: "Esc Backspace ... (in the list: clear the filter)" */
	cr_assert_eq(top_view__key(v, TOP_KEY_BACKSPACE), TOP_ACT_REDRAW);
	l = top_view__render(v, 120, 20, &n);
	cr_assert(has_line(l, n, " grower "));
	cr_assert(has_line(l, n, " churner"));
	cr_assert_eq(top_view__selected_pid(v), 10);
	cr_assert_eq(top_view__key(v, TOP_KEY_BACKSPACE), TOP_ACT_NONE, "no filter: nothing to do");
	cr_assert_not(top_view__in_stacks(v));
	top_view__free(v);
}

Test(top_keys, freeze_holds_the_display_not_the_model)
{
	struct top_view_opts o = {.sort = TOP_SORT_GROWTH};
	struct top_view *v = top_view__new(&o);
	const struct top_line *l;
	int n;

	feed(v, 1, 2);
	cr_assert_eq(top_view__key(v, 'p'), TOP_ACT_REDRAW);
	feed(v, 3, 5);
	cr_assert_eq(top_model__find_proc(top_view__model(v), 10)->live_bytes, 8 * MIB);
	l = top_view__render(v, 120, 20, &n);
	cr_assert(has_line(l, n, "[FROZEN: p resumes]"));
	cr_assert_eq(top_view__key(v, 'p'), TOP_ACT_REDRAW);
	cr_assert_eq(top_model__find_proc(top_view__model(v), 10)->live_bytes, 20 * MIB);
	/* the history kept growing meanwhile */
	cr_assert_eq(top_model__find_proc(top_view__model(v), 10)->nr_hist, 5);
	top_view__free(v);
}

Test(top_keys, help_quit_and_unknown)
{
	struct top_view_opts o = {.sort = TOP_SORT_GROWTH};
	struct top_view *v = top_view__new(&o);
	const struct top_line *l;
	int n;

	feed(v, 1, 1);
	cr_assert_eq(top_view__key(v, '?'), TOP_ACT_REDRAW);
	l = top_view__render(v, 100, 30, &n);
	cr_assert(has_line(l, n, "asizeof-bpf top: keys"));
	cr_assert_eq(top_view__key(v, 'x'), TOP_ACT_REDRAW); /* any key closes it */
	l = top_view__render(v, 100, 30, &n);
	cr_assert_not(has_line(l, n, "asizeof-bpf top: keys"));
	cr_assert_eq(top_view__key(v, 'x'), TOP_ACT_NONE);
	cr_assert_eq(top_view__key(v, 'h'), TOP_ACT_REDRAW);
	cr_assert_eq(top_view__key(v, 'q'), TOP_ACT_QUIT);
	top_view__free(v);
}

Test(top_keys, help_fits_an_80_column_terminal)
{
	struct top_view_opts o = {.sort = TOP_SORT_GROWTH};
	struct top_view *v = top_view__new(&o);
	const struct top_line *l;
	char wide[40][TOP_LINE_LEN];
	int n, nw;

	feed(v, 1, 1);
	cr_assert_eq(top_view__key(v, 'h'), TOP_ACT_REDRAW);
	l = top_view__render(v, 200, 30, &nw);
	cr_assert_leq(nw, 40);
	for (int i = 0; i < nw; i++)
		snprintf(wide[i], sizeof(wide[i]), "%s", l[i].text);
	/* every line of the help as on a wide terminal: none cut at the 80th column */
	l = top_view__render(v, 80, 30, &n);
	cr_assert_eq(n, nw);
	for (int i = 0; i < n - 1; i++) {
		cr_assert_str_eq(l[i].text, wide[i], "line %d cut at 80 columns", i);
		cr_assert_lt(top__text_cols(l[i].text), 80, "'%s'", l[i].text);
	}
	cr_assert(has_line(l, n, "(also Ctrl-C, Ctrl-\\)"));
	top_view__free(v);
}

/* ------------------------------------------------------------------ scrolling */

static int selected_line(const struct top_line *l, int n)
{
	int found = -1;

	for (int i = 0; i < n; i++) {
		if (l[i].attr != TOP_ATTR_SELECTED)
			continue;
		cr_assert_eq(found, -1, "two selected lines");
		found = i;
	}
	return found;
}

Test(top_scroll, process_list_keeps_the_selection_on_screen)
{
	struct top_view_opts o = {.sort = TOP_SORT_LIVE};
	struct top_view *v = top_view__new(&o);
	struct snapshot *s = snapshot__new();
	const struct top_line *l;
	char name[16];
	int n, sel;

	/* 50 processes, pid 1000 + i holding i KiB: sorted by live, pid 1049 first */
	for (int i = 0; i < 50; i++) {
		snprintf(name, sizeof(name), "p%d", i);
		add_proc(s, 1000 + i, name, i * 1024, 1, 0);
	}
	snapshot__diff(s, NULL, NULL);
	cr_assert_eq(top_view__update(v, s, &stats), 0);
	l = top_view__render(v, 100, 15, &n);
	cr_assert_eq(n, 15);
	sel = selected_line(l, n);
	cr_assert(sel >= 0 && strstr(l[sel].text, " 1049  p49 "), "%s", l[sel].text);
	cr_assert_eq(top_view__key(v, TOP_KEY_END), TOP_ACT_REDRAW);
	l = top_view__render(v, 100, 15, &n);
	sel = selected_line(l, n);
	cr_assert(sel == 13 && strstr(l[sel].text, " 1000  p0 "), "line %d", sel);
	cr_assert_eq(top_view__key(v, TOP_KEY_PGUP), TOP_ACT_REDRAW);
	l = top_view__render(v, 100, 15, &n);
	sel = selected_line(l, n);
	cr_assert(sel >= 0, "selection off screen");
	cr_assert_eq(top_view__selected_pid(v), 1000 + 7, "page up by the 7 rows shown");
	for (int i = 0; i < 60; i++)
		top_view__key(v, 'k');
	l = top_view__render(v, 100, 15, &n);
	sel = selected_line(l, n);
	cr_assert(sel >= 0 && strstr(l[sel].text, " 1049  p49 "));
	cr_assert(strstr(l[sel - 1].text, "PID  COMM"), "the first row is right below the head");
	snapshot__free(s);
	top_view__free(v);
}

Test(top_scroll, stacks_view_scrolls_and_expands)
{
	static __u64 ips[3] = {0x1001, 0x2001, 0x3001};
	struct top_view_opts o = {.sort = TOP_SORT_LIVE};
	struct top_view *v = top_view__new(&o);
	struct snapshot *s = snapshot__new();
	const struct top_line *l;
	int n, sel;

	add_proc(s, 5, "many", 0, 1, 0);
	/* 40 stacks, stack i holding i bytes: by live, stack 39 first */
	for (int i = 0; i < 40; i++)
		add_stack(s, 5, 100 + i, i, 1, ips, 3);
	snapshot__diff(s, NULL, NULL);
	cr_assert_eq(top_view__update(v, s, &stats), 0);
	top_view__key(v, TOP_KEY_ENTER);
	cr_assert(top_view__in_stacks(v));
	for (int i = 0; i < 30; i++)
		top_view__key(v, TOP_KEY_DOWN);
	l = top_view__render(v, 100, 20, &n);
	cr_assert_eq(n, 20);
	sel = selected_line(l, n);
	cr_assert(sel >= 0 && sel < 19, "selection on screen: %d", sel);
	cr_assert(strstr(l[sel].text, "+ 31  malloc"), "%s", l[sel].text);
	/* expanded at the bottom: the view scrolls to show its three frames */
	top_view__key(v, TOP_KEY_ENTER);
	l = top_view__render(v, 100, 20, &n);
	sel = selected_line(l, n);
	cr_assert(strstr(l[sel].text, "- 31  malloc"), "%s", l[sel].text);
	cr_assert(strstr(l[sel + 1].text, "0x1000"));
	cr_assert(strstr(l[sel + 2].text, "0x2000"));
	cr_assert(strstr(l[sel + 3].text, "0x3000"));
	cr_assert_leq(sel + 3, 18);
	/* back up to the top: the first row under the head */
	top_view__key(v, TOP_KEY_HOME);
	l = top_view__render(v, 100, 20, &n);
	sel = selected_line(l, n);
	cr_assert(strstr(l[sel].text, "+  1  malloc"), "%s", l[sel].text);
	cr_assert(strstr(l[sel - 1].text, "#  ALLOCATOR"), "%s", l[sel - 1].text);
	snapshot__free(s);
	top_view__free(v);
}

/* The frame lines of an expanded stack on screen: "        0x..." (the addresses less one). */
static int frame_lines(const struct top_line *l, int n, bool *seen, int nr)
{
	int count = 0;

	for (int i = 0; i < n; i++) {
		unsigned long long a;

		if (sscanf(l[i].text, "        0x%llx", &a) == 1 && a >= 0x10000 &&
		    a < 0x10000 + (unsigned long long)nr * 0x100) {
			seen[(a - 0x10000) / 0x100] = true;
			count++;
		}
	}
	return count;
}

Test(top_scroll, a_stack_taller_than_the_screen_scrolls_through_its_frames)
{
	enum { DEEP = 40 };
	static __u64 deep[DEEP], shallow[1] = {0x9001};
	struct top_view_opts o = {.sort = TOP_SORT_LIVE};
	struct top_view *v = top_view__new(&o);
	struct snapshot *s = snapshot__new();
	const struct top_line *l;
	bool seen[DEEP] = {false};
	int n, sel, count = 0;

	for (int i = 0; i < DEEP; i++)
		deep[i] = 0x10001 + i * 0x100; /* shown as 0x10000 + i * 0x100 */
	add_proc(s, 5, "deep", 0, 1, 0);
	add_stack(s, 5, 100, 2000, 1, deep, DEEP);
	add_stack(s, 5, 101, 1000, 1, shallow, 1);
	snapshot__diff(s, NULL, NULL);
	cr_assert_eq(top_view__update(v, s, &stats), 0);
	top_view__key(v, TOP_KEY_ENTER);
	cr_assert_eq(top_view__key(v, TOP_KEY_ENTER), TOP_ACT_REDRAW);
	l = top_view__render(v, 100, 20, &n);
	sel = selected_line(l, n);
	cr_assert(sel >= 0 && strstr(l[sel].text, "-  1  malloc"), "the deep stack, expanded");
	frame_lines(l, n, seen, DEEP);
	cr_assert(seen[0] && !seen[DEEP - 1], "its first frames, not its last");
	/* Down walks through its frames before it moves on: every frame comes on screen */
	for (int i = 0; i < DEEP + 5; i++) {
		top_view__key(v, TOP_KEY_DOWN);
		l = top_view__render(v, 100, 20, &n);
		cr_assert_eq(n, 20);
		frame_lines(l, n, seen, DEEP);
	}
	for (int i = 0; i < DEEP; i++)
		count += seen[i];
	cr_assert_eq(count, DEEP, "%d of the %d frames were ever on screen", count, DEEP);
	/* and then the next stack is selected, on screen */
	sel = selected_line(l, n);
	cr_assert(sel >= 0 && strstr(l[sel].text, "+  2  malloc"), "sel %d", sel);
	/* Up goes back to the deep stack's row, then through nothing else: Home is its top */
	top_view__key(v, TOP_KEY_UP);
	l = top_view__render(v, 100, 20, &n);
	sel = selected_line(l, n);
	cr_assert(sel >= 0 && strstr(l[sel].text, "-  1  malloc"), "sel %d", sel);
	cr_assert(strstr(l[sel - 1].text, "#  ALLOCATOR"), "its row on top: %s", l[sel - 1].text);
	snapshot__free(s);
	top_view__free(v);
}
