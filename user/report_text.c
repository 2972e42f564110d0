// SPDX-License-Identifier: MIT
/*
 * Text report for a terminal: a process table, the top stacks with their symbolized frames, and
 * the drop counters. Column widths are computed from the values so that columns always line up.
 */
#include <errno.h>
#include <string.h>
#include <time.h>
#include "report.h"
#include "util.h"

/* Frames one return address can expand to (its inline chain); deeper chains are cut. */
#define REPORT_MAX_INLINE 32
#define CELL_LEN 48
#define PROC_COLS 9
#define STACK_COLS 9
#define MAX_COLS 9
#define FRAME_INDENT "      "

static const char *const sort_names[] = {
	[SNAP_SORT_GROWTH] = "growth",
	[SNAP_SORT_LIVE] = "live",
	[SNAP_SORT_ALLOCS] = "allocs",
	[SNAP_SORT_BYTES] = "bytes",
};

/* MMAP (column 4) only where a process has mappings of its own: the heap's are in LIVE */
#define PROC_MMAP_COL 4
static const char *const proc_heads[PROC_COLS] = {
	"PID", "COMM", "LIVE", "ALLOCS", "MMAP", "GROWTH", "GROWTH-TOTAL", "ALLOC/s", "FREE/s",
};
/* Text columns are left-aligned, numbers right-aligned. */
static const bool proc_left[PROC_COLS] = { [1] = true };

static const char *const stack_heads[STACK_COLS] = {
	"#", "PID", "COMM", "ALLOCATOR", "LIVE", "ALLOCS", "GROWTH", "ALLOCATED", "CALLS",
};
static const bool stack_left[STACK_COLS] = { [2] = true, [3] = true };

struct row {
	char cell[MAX_COLS][CELL_LEN];
};

/* comm straight from the kernel may hold anything: keep the terminal safe and the columns. */
static void put_comm(char *out, size_t size, const char *comm)
{
	size_t i;

	if (!comm || !comm[0]) {
		snprintf(out, size, "?");
		return;
	}
	for (i = 0; i < ASZ_COMM_LEN && i + 1 < size && comm[i]; i++)
		out[i] = (comm[i] >= ' ' && comm[i] < 0x7f) ? comm[i] : '?';
	out[i] = '\0';
}

static void fmt_proc(struct row *r, const struct snap_proc *p, bool mmap_col)
{
	int c = 0;

	snprintf(r->cell[c++], CELL_LEN, "%u", p->pid);
	put_comm(r->cell[c++], CELL_LEN, p->comm);
	util__humanize_bytes(r->cell[c++], CELL_LEN, p->live_bytes, false);
	snprintf(r->cell[c++], CELL_LEN, "%lld", (long long)p->live_allocs);
	if (mmap_col)
		util__humanize_bytes(r->cell[c++], CELL_LEN, p->mmap_bytes, false);
	util__humanize_bytes(r->cell[c++], CELL_LEN, p->growth_bytes, true);
	util__humanize_bytes(r->cell[c++], CELL_LEN, p->growth_total_bytes, true);
	snprintf(r->cell[c++], CELL_LEN, "%.1f", p->alloc_rate);
	snprintf(r->cell[c], CELL_LEN, "%.1f", p->free_rate);
}

static void fmt_stack(struct row *r, size_t rank, const struct snapshot *s,
		      const struct snap_stack *st)
{
	const struct snap_proc *p = snapshot__find_proc(s, st->pid);

	snprintf(r->cell[0], CELL_LEN, "%zu", rank);
	snprintf(r->cell[1], CELL_LEN, "%u", st->pid);
	put_comm(r->cell[2], CELL_LEN, p ? p->comm : NULL);
	snprintf(r->cell[3], CELL_LEN, "%s", snapshot__allocator_name(st->allocator));
	util__humanize_bytes(r->cell[4], CELL_LEN, st->live_bytes, false);
	snprintf(r->cell[5], CELL_LEN, "%lld", (long long)st->live_allocs);
	util__humanize_bytes(r->cell[6], CELL_LEN, st->growth_bytes, true);
	util__humanize_bytes(r->cell[7], CELL_LEN, (__s64)st->alloc_bytes, false);
	snprintf(r->cell[8], CELL_LEN, "%llu", (unsigned long long)st->allocs);
}

static void widen(int *width, const struct row *r, int ncols)
{
	int i, len;

	for (i = 0; i < ncols; i++) {
		len = strlen(r->cell[i]);
		if (len > width[i])
			width[i] = len;
	}
}

/* Columns two spaces apart, no trailing blanks; tail (may be empty) ends the line. */
static void print_row(FILE *f, const char *const *cells, const int *width, const bool *left,
		      int ncols, const char *tail)
{
	int i;

	for (i = 0; i < ncols; i++) {
		bool last = i == ncols - 1 && !tail[0];

		if (i)
			fputs("  ", f);
		if (left[i])
			fprintf(f, "%-*s", last ? 0 : width[i], cells[i]);
		else
			fprintf(f, "%*s", width[i], cells[i]);
	}
	fprintf(f, "%s\n", tail);
}

static void print_cells(FILE *f, const struct row *r, const int *width, const bool *left,
			int ncols, const char *tail)
{
	const char *cells[MAX_COLS];
	int i;

	for (i = 0; i < ncols; i++)
		cells[i] = r->cell[i];
	print_row(f, cells, width, left, ncols, tail);
}

static void print_header(FILE *f, const struct snapshot *s)
{
	char when[64] = "?";
	time_t t = (time_t)s->time;
	struct tm tm;

	if (localtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(f, "asizeof-bpf %sreport at %s, elapsed %.1f s\n", s->final ? "final " : "", when,
		s->elapsed_s);
	if (s->sample_bytes)
		fprintf(f, "sampled: one byte in %llu, figures are estimates\n",
			(unsigned long long)s->sample_bytes);
	if (s->min_size)
		fprintf(f, "blocks under %llu bytes (--min-size) are not counted\n",
			(unsigned long long)s->min_size);
}

/* Process rows shown in text; system-wide there may be hundreds (JSON has them all). */
#define TEXT_MAX_PROCS 20

static void print_procs(FILE *f, const struct snapshot *s, int top_n)
{
	const char *heads[PROC_COLS];
	int width[PROC_COLS] = { 0 }, ncols = 0;
	size_t i, shown = s->nr_procs;
	bool mmap_col = false;
	struct row r;

	if (top_n <= 0 || top_n < TEXT_MAX_PROCS)
		top_n = TEXT_MAX_PROCS;
	if (shown > (size_t)top_n)
		shown = top_n;
	if (!s->nr_procs) {
		fputs("no traced process has allocated yet\n", f);
		return;
	}
	for (i = 0; i < shown; i++)
		mmap_col |= s->procs[i].mmap_bytes != 0;
	for (i = 0; i < PROC_COLS; i++)
		if (i != PROC_MMAP_COL || mmap_col)
			heads[ncols++] = proc_heads[i];
	for (i = 0; i < (size_t)ncols; i++)
		width[i] = strlen(heads[i]);
	for (i = 0; i < shown; i++) {
		fmt_proc(&r, &s->procs[i], mmap_col);
		widen(width, &r, ncols);
	}
	print_row(f, heads, width, proc_left, ncols, "");
	for (i = 0; i < shown; i++) {
		fmt_proc(&r, &s->procs[i], mmap_col);
		print_cells(f, &r, width, proc_left, ncols, s->procs[i].exited ? "  exited" : "");
	}
	if (shown < s->nr_procs)
		fprintf(f, "... and %zu more processes (-f json lists all)\n", s->nr_procs - shown);
}

/*
 * One frame: "func (file:line) [module]". Unknown functions show their address, and the module
 * offset that eu-addr2line takes, so the frame can still be looked up by hand.
 */
/* A name from a file system or a binary: a newline or another control byte would break lines. */
static void put_name(FILE *f, const char *s)
{
	for (; *s; s++)
		fputc((unsigned char)*s < ' ' || *s == 0x7f ? '?' : *s, f);
}

static void print_frame(FILE *f, const struct sym_frame *fr)
{
	const char *mod = util__basename(fr->module);
	char name[1024];

	fputs(FRAME_INDENT, f);
	if (fr->func)
		put_name(f, util__short_func(fr->func, name, sizeof(name)));
	else
		fprintf(f, "0x%llx", (unsigned long long)fr->addr);
	if (fr->file) {
		fputs(" (", f);
		put_name(f, util__basename(fr->file));
		if (fr->line > 0)
			fprintf(f, ":%d", fr->line);
		fputc(')', f);
	}
	if (mod) {
		fputs(" [", f);
		put_name(f, mod);
		if (!fr->func)
			fprintf(f, "+0x%llx", (unsigned long long)fr->module_offset);
		fputc(']', f);
	}
	if (fr->inlined)
		fputs(" [inlined]", f);
	fputc('\n', f);
}

/* Frames of one stack, at most max (<= 0: all), then how many were left out. */
static void print_frames(FILE *f, const struct snap_stack *st, struct symbolizer *sym, int max)
{
	struct sym_frame frames[REPORT_MAX_INLINE];
	const char *why = st->flags & ASZ_STACK_TRUNCATED    ? " (stack truncated at --max-depth)"
			  : st->flags & ASZ_STACK_INCOMPLETE ? " (unwinding stopped: outer frames unknown)"
							     : NULL;
	long shown = 0, more = 0;
	__u32 i;
	int n, j;

	if (!st->ips || !st->nr_frames) {
		fputs(FRAME_INDENT "(no call stack: not collected, see the dropped counters)\n", f);
		return;
	}
	for (i = 0; i < st->nr_frames; i++) {
		__u64 ip = st->ips[i];

		/* Past the limit, frames are still resolved (cached) to say how many are hidden. */
		n = sym ? symbolizer__resolve(sym, st->pid, ip, frames, REPORT_MAX_INLINE) : 0;
		if (n <= 0) {
			memset(frames, 0, sizeof(frames[0]));
			frames[0].addr = ip ? ip - 1 : 0;
			n = 1;
		}
		for (j = 0; j < n; j++) {
			if (max > 0 && shown >= max) {
				more++;
				continue;
			}
			print_frame(f, &frames[j]);
			shown++;
		}
	}
	if (more)
		fprintf(f, FRAME_INDENT "... %ld more frame%s%s\n", more, more == 1 ? "" : "s",
			why ? why : "");
	else if (why)
		fprintf(f, FRAME_INDENT "...%s\n", why);
}

static void print_stacks(FILE *f, const struct snapshot *s, struct symbolizer *sym,
			 const struct report_opts *o)
{
	const char *key = (unsigned int)o->sort < sizeof(sort_names) / sizeof(sort_names[0]) ?
				  sort_names[o->sort] : "?";
	int width[STACK_COLS] = { 0 };
	size_t i, nr = s->nr_stacks;
	struct row r;

	if (o->top_n > 0 && (size_t)o->top_n < nr)
		nr = o->top_n;
	if (!nr) {
		fprintf(f, "Top stacks by %s: none recorded\n", key);
		return;
	}
	fprintf(f, "Top %zu stacks by %s:\n", nr, key);
	for (i = 0; i < STACK_COLS; i++)
		width[i] = strlen(stack_heads[i]);
	for (i = 0; i < nr; i++) {
		fmt_stack(&r, i + 1, s, &s->stacks[i]);
		widen(width, &r, STACK_COLS);
	}
	print_row(f, stack_heads, width, stack_left, STACK_COLS, "");
	for (i = 0; i < nr; i++) {
		/* A blank line between stacks keeps each row with its own frames. */
		if (i)
			fputc('\n', f);
		fmt_stack(&r, i + 1, s, &s->stacks[i]);
		print_cells(f, &r, width, stack_left, STACK_COLS, "");
		print_frames(f, &s->stacks[i], sym, o->max_frames);
	}
}

/* Nothing is lost silently: every non-zero counter is listed. */
static void print_drops(FILE *f, const struct snapshot *s)
{
	char drops[SNAPSHOT_DROPS_TEXT];

	fprintf(f, "dropped: %s\n", snapshot__drops_text(s, drops, sizeof(drops)) ? drops : "none");
}

int report_text__write(FILE *f, const struct snapshot *s, struct symbolizer *sym,
		       const struct report_opts *o)
{
	if (!f || !s || !o)
		return -EINVAL;
	print_header(f, s);
	print_procs(f, s, o->top_n);
	fputc('\n', f);
	print_stacks(f, s, sym, o);
	fputc('\n', f);
	print_drops(f, s);
	fputc('\n', f);
	if (fflush(f) || ferror(f))
		return util__write_error(f);
	return 0;
}
