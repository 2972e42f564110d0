/* SPDX-License-Identifier: MIT */
/*
 * The view of `asizeof-bpf top`. It keeps what it needs of each snapshot (a model: processes
 * with the history of their live bytes, stacks with copies of their addresses, totals), lays
 * out screens as lines of text, and either paints them with curses (interactive) or prints
 * them (batch). top_view.c is the only code that includes curses. It reads snapshots and the
 * symbolizer, never BPF maps.
 *
 * The model, the ordering, the layout and the screens are pure functions of their inputs (unit
 * tested without a terminal); only the top_view__term_* functions touch the terminal.
 */
#ifndef ASZ_TOP_VIEW_H
#define ASZ_TOP_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <linux/types.h>
#include "asizeof.h"
#include "snapshot.h"
#include "symbolizer.h"

/* Live-byte values kept per process for the trend (one per snapshot). */
#define TOP_HIST 20
/* A screen line: at most TOP_MAX_COLS columns; UTF-8 (the trend) takes up to 3 bytes a column. */
#define TOP_MAX_COLS 512
#define TOP_LINE_LEN (TOP_MAX_COLS * 3 + 1)
#define TOP_FILTER_LEN 32

/*
 * Sort keys. Processes: growth over the last interval, live bytes, allocations per second,
 * growth since attach. Stacks: growth, live bytes, allocation count, bytes allocated.
 */
enum top_sort {
	TOP_SORT_GROWTH = 0,
	TOP_SORT_LIVE,
	TOP_SORT_ALLOCS,
	TOP_SORT_TOTAL,
	TOP_NR_SORTS,
};

/* What the sampler measured besides the snapshot. */
struct top_stats {
	double interval_s;
	double cpu_pct;	  /* the profiler's own CPU time over the last interval (% of one CPU) */
	__u64 map_bytes;  /* memory charged for the BPF maps; 0 if unknown */
	double bpf_ms_per_s; /* BPF programs' run time per second (< 0: not measured, needs -v) */
	int nr_targets;	  /* system-wide: processes known alive; < 0: count the table's */
	bool system_wide;
	int cmd_status;	  /* a launched command's exit status; -1: none, or still running */
};

struct top_proc {
	__u32 pid;
	char comm[ASZ_COMM_LEN];
	bool exited;
	__s64 live_bytes;
	__s64 live_allocs;
	__s64 growth_bytes;	  /* over the last interval */
	__s64 growth_total_bytes; /* since attach */
	__u64 alloc_bytes;
	__u64 allocs;
	__u64 frees;
	double alloc_rate;
	double free_rate;
	__s64 hist[TOP_HIST]; /* live bytes at the last nr_hist snapshots, oldest first */
	int nr_hist;
};

struct top_stack {
	__u32 pid;
	__u32 allocator;
	__u64 stack_id;
	__s64 live_bytes;
	__s64 live_allocs;
	__s64 growth_bytes;
	__u64 alloc_bytes;
	__u64 allocs;
	__u64 frees;
	__u32 nr_frames;
	__u32 flags;
	size_t ips; /* index of its first return address in the model's ips */
};

/* Everything a screen shows: a self-contained copy (snapshots are freed by the session). */
struct top_model {
	unsigned long seq; /* snapshots taken in so far; 0: none yet */
	double time;
	double elapsed_s;
	bool final;
	__u64 sample_bytes;
	__u64 min_size; /* blocks under it are in no figure */
	struct top_proc *procs; /* sorted by pid */
	size_t nr_procs;
	struct top_stack *stacks; /* sorted by pid */
	size_t nr_stacks;
	__u64 *ips;
	size_t nr_ips;
	__u64 drops[ASZ_NR_DROPS];
	struct top_stats stats;
	/* totals over the processes */
	__s64 live_bytes;
	__s64 growth_bytes;
	__s64 growth_total_bytes;
	double alloc_rate;
	double free_rate;
	int nr_exited;
};

void top_model__init(struct top_model *m);
void top_model__release(struct top_model *m);
/*
 * Take in a new snapshot: copy it, carry each process's history over (processes no longer in
 * the snapshot are dropped), recompute the totals. On error (-ENOMEM) m is unchanged.
 */
int top_model__ingest(struct top_model *m, const struct snapshot *s, const struct top_stats *st);
/* A deep copy (for a frozen display). Returns 0 or -ENOMEM. */
int top_model__copy(struct top_model *dst, const struct top_model *src);
const struct top_proc *top_model__find_proc(const struct top_model *m, __u32 pid);

/*
 * Pure helpers, exported for the unit tests.
 *
 * top__sparkline: the last min(n, width) values as one glyph each, scaled between their
 * minimum and maximum, over a span of at least 1/16 of the largest magnitude (a flat process
 * with small jitter draws flat; all equal: the lowest glyph). UTF-8 block elements, or ASCII
 * "_.-~=+*#". Returns the number of glyphs written (columns).
 */
int top__sparkline(char *out, size_t size, const __s64 *vals, int n, int width, bool utf8);
/* Case-insensitive substring match of a process name; an empty filter matches everything. */
bool top__comm_match(const char *comm, const char *filter);
/* Indices of the processes passing filter (NULL: all), ordered by key. Returns the count. */
size_t top__order_procs(const struct top_model *m, enum top_sort key, const char *filter,
			size_t *idx);
/* Indices of pid's stacks ordered by key (idx: room for m->nr_stacks). Returns the count. */
size_t top__order_stacks(const struct top_model *m, __u32 pid, enum top_sort key, size_t *idx);
int top__parse_sort(const char *s, enum top_sort *out);
const char *top__sort_name(enum top_sort key, bool stacks);
/* Display columns of a UTF-8 string (continuation bytes take none). */
int top__text_cols(const char *s);

/*
 * Column layout of a table line. Columns are two spaces apart. When the line is too narrow,
 * the shown column with the highest drop rank goes first (rank 0 is never dropped); columns
 * dropped are then taken back, most important first, where they still fit. The flex column
 * (at most one) shrinks down to min_width and takes any room left up to its width.
 */
struct top_col {
	const char *head;
	int width; /* wanted width: at least the head's and the cells' */
	int min_width;
	int drop;
	bool left; /* left-aligned (text); numbers are right-aligned */
	bool flex;
};

/* Fills shown[] and width[] (final widths); returns the line's width in columns. */
int top__layout(const struct top_col *cols, int n, int avail, bool *shown, int *width);

/* Line attributes: how the terminal paints them (batch ignores them). */
enum top_attr {
	TOP_ATTR_NORMAL = 0,
	TOP_ATTR_TITLE,	   /* bold */
	TOP_ATTR_HEAD,	   /* table heads: reverse */
	TOP_ATTR_SELECTED, /* the selection */
	TOP_ATTR_ALERT,	   /* drops: red (bold reverse without colours) */
	TOP_ATTR_DIM,	   /* exited processes */
	TOP_ATTR_STATUS,   /* bottom line */
	TOP_NR_ATTRS,
};

/* One screen line, already cut to the screen's width; one span may be painted differently. */
struct top_line {
	char text[TOP_LINE_LEN];
	enum top_attr attr;
	bool fill; /* paint the attribute across the whole width */
	int hl_start, hl_len; /* byte range painted with hl_attr (hl_len 0: none) */
	enum top_attr hl_attr;
};

struct top_view_opts {
	bool batch;
	bool utf8;	  /* the trend in block elements (else ASCII) */
	bool color;	  /* colours allowed (NO_COLOR unset) */
	bool exact_bytes; /* sizes as exact byte counts instead of KiB/MiB/... */
	int max_rows;	  /* process rows at most (0: as many as fit; batch: all) */
	enum top_sort sort;
	struct symbolizer *sym; /* may be NULL: frames then show addresses */
	/* repaint the whole terminal at each update: a launched command writes to it too */
	bool repaint_each_update;
};

/* Keys the view understands: characters as themselves, and these. */
enum top_key {
	TOP_KEY_ENTER = '\n',
	TOP_KEY_CTRL_L = 12,
	TOP_KEY_ESC = 27,
	TOP_KEY_BACKSPACE = 127,
	TOP_KEY_UP = 0x1000,
	TOP_KEY_DOWN,
	TOP_KEY_LEFT,
	TOP_KEY_RIGHT,
	TOP_KEY_PGUP,
	TOP_KEY_PGDN,
	TOP_KEY_HOME,
	TOP_KEY_END,
};

enum top_action {
	TOP_ACT_NONE = 0,
	TOP_ACT_REDRAW,
	TOP_ACT_QUIT,
};

struct top_view;

struct top_view *top_view__new(const struct top_view_opts *o);
void top_view__free(struct top_view *v);
/* A new snapshot (and what the sampler measured). Returns 0 or -ENOMEM. */
int top_view__update(struct top_view *v, const struct snapshot *s, const struct top_stats *st);
/* A line for the status bar (e.g. a diagnostic printed while the screen was up); NULL clears. */
void top_view__set_message(struct top_view *v, const char *msg);
/* One key press; returns what the caller should do. */
enum top_action top_view__key(struct top_view *v, int key);
/* The state shown, for tests: the frozen copy while frozen. */
const struct top_model *top_view__model(const struct top_view *v);
bool top_view__in_stacks(const struct top_view *v);
__u32 top_view__selected_pid(const struct top_view *v);

/*
 * Lay out the current screen for a terminal of width x height (height <= 0: unlimited, the
 * batch screen). Returns the lines (owned by the view, valid until the next call) and their
 * number in *nr; NULL if memory is short.
 */
const struct top_line *top_view__render(struct top_view *v, int width, int height, int *nr);
/* Batch: print the current screen as plain text (no trailing blanks); 0 or -EIO. */
int top_view__print(struct top_view *v, FILE *f);

/*
 * The terminal (curses). term_check tells whether stdout's terminal type can be driven
 * (before anything is attached; 0 or -ENOTTY, logged). term_open takes over stdout and the
 * keyboard: stdin, or the controlling terminal when stdin is not one (0 or -errno, logged);
 * term_input_fd is the keys' descriptor to poll, -1 if there is no keyboard. term_close
 * restores the terminal and is safe to call twice. term_input reads the pending keys and
 * returns TOP_ACT_QUIT when asked to; term_input_idle tells whether the last call found no key
 * at all (an input at its end). term_resize re-reads the terminal's size. term_draw paints.
 */
int top_view__term_check(void);
int top_view__term_open(struct top_view *v);
void top_view__term_close(struct top_view *v);
enum top_action top_view__term_input(struct top_view *v);
bool top_view__term_input_idle(const struct top_view *v);
int top_view__term_input_fd(const struct top_view *v);
void top_view__term_resize(struct top_view *v);
void top_view__term_draw(struct top_view *v);

#endif
