// SPDX-License-Identifier: MIT
/*
 * The view of `asizeof-bpf top`: a model built from snapshots, screens laid out as lines of
 * text (pure, shared by the terminal and batch output), key handling, and the curses painter.
 * The only code in the project that includes curses.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <ncursesw/curses.h>
#include <ncursesw/term.h>
#include "log.h"
#include "top_view.h"
#include "util.h"

/* Frames one return address can expand to (its inline chain). */
#define TOP_MAX_INLINE 32
/* Batch: stacks shown for the first few processes of the table. */
#define TOP_BATCH_PROCS 3
#define TOP_BATCH_STACKS 5
#define TOP_BATCH_FRAMES 8
#define TOP_MAX_EXPANDED 64
#define CELL_LEN 64
#define FRAME_LEN 512
#define FRAME_INDENT "        "

enum mode {
	MODE_PROCS = 0,
	MODE_STACKS,
};

struct stack_ref {
	__u32 allocator;
	__u64 stack_id;
};

struct top_view {
	struct top_view_opts o;
	struct top_model live, frozen;
	bool is_frozen;
	enum mode mode;
	bool help;
	bool editing;
	char filter[TOP_FILTER_LEN];
	char filter_saved[TOP_FILTER_LEN];
	enum top_sort proc_sort, stack_sort;
	/* process list: the top row until the user moves, then a process followed by pid */
	bool sel_follow;
	__u32 sel_pid;
	size_t sel_idx, proc_first;
	int proc_page;
	/* stacks view */
	__u32 stk_pid;
	bool stk_follow;
	struct stack_ref stk_sel;
	size_t stk_idx, stk_first_line;
	int stk_page;
	/* the selected stack's lines (row and frames); how many are scrolled off the top */
	size_t stk_sel_lines, stk_scroll;
	struct stack_ref expanded[TOP_MAX_EXPANDED];
	int nr_expanded;
	char message[256];
	size_t *idx; /* scratch for orderings */
	size_t idx_cap;
	struct top_line *rows;
	int nr_lines;
	size_t cap_lines;
	bool oom;
	struct top_line scratch; /* written to when lines cannot grow */
	/* terminal */
	SCREEN *scr;
	FILE *keys; /* the controlling terminal, when stdin is not one */
	bool term;
	bool colors;
	bool input_idle;
	bool repaint; /* the next draw repaints every cell: the terminal may not show what we drew */
};

/* ------------------------------------------------------------------ model */

void top_model__init(struct top_model *m)
{
	memset(m, 0, sizeof(*m));
	m->stats.cmd_status = -1; /* no command has exited before the first sample says so */
}

void top_model__release(struct top_model *m)
{
	free(m->procs);
	free(m->stacks);
	free(m->ips);
	top_model__init(m);
}

static int proc_pid_cmp(const void *a, const void *b)
{
	const struct top_proc *x = a, *y = b;

	return x->pid < y->pid ? -1 : x->pid > y->pid;
}

static int stack_key_cmp(const void *a, const void *b)
{
	const struct top_stack *x = a, *y = b;

	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	if (x->allocator != y->allocator)
		return x->allocator < y->allocator ? -1 : 1;
	return x->stack_id < y->stack_id ? -1 : x->stack_id > y->stack_id;
}

const struct top_proc *top_model__find_proc(const struct top_model *m, __u32 pid)
{
	struct top_proc key = {.pid = pid};

	if (!m->nr_procs)
		return NULL;
	return bsearch(&key, m->procs, m->nr_procs, sizeof(key), proc_pid_cmp);
}

static void model_totals(struct top_model *m)
{
	m->live_bytes = m->growth_bytes = m->growth_total_bytes = 0;
	m->alloc_rate = m->free_rate = 0;
	m->nr_exited = 0;
	for (size_t i = 0; i < m->nr_procs; i++) {
		const struct top_proc *p = &m->procs[i];

		m->live_bytes += p->live_bytes;
		m->growth_bytes += p->growth_bytes;
		m->growth_total_bytes += p->growth_total_bytes;
		m->alloc_rate += p->alloc_rate;
		m->free_rate += p->free_rate;
		m->nr_exited += p->exited;
	}
}

int top_model__ingest(struct top_model *m, const struct snapshot *s, const struct top_stats *st)
{
	struct top_proc *procs;
	struct top_stack *stacks;
	size_t i, nr_ips = 0;
	__u64 *ips;

	for (i = 0; i < s->nr_stacks; i++)
		if (s->stacks[i].ips)
			nr_ips += s->stacks[i].nr_frames;
	procs = calloc(s->nr_procs + 1, sizeof(*procs));
	stacks = calloc(s->nr_stacks + 1, sizeof(*stacks));
	ips = calloc(nr_ips + 1, sizeof(*ips));
	if (!procs || !stacks || !ips) {
		free(procs);
		free(stacks);
		free(ips);
		return -ENOMEM;
	}
	for (i = 0; i < s->nr_procs; i++) {
		const struct snap_proc *sp = &s->procs[i];
		struct top_proc *p = &procs[i];
		const struct top_proc *old = top_model__find_proc(m, sp->pid);

		p->pid = sp->pid;
		memcpy(p->comm, sp->comm, sizeof(p->comm));
		p->comm[sizeof(p->comm) - 1] = '\0';
		p->exited = sp->exited;
		p->live_bytes = sp->live_bytes;
		p->live_allocs = sp->live_allocs;
		p->growth_bytes = sp->growth_bytes;
		p->growth_total_bytes = sp->growth_total_bytes;
		p->alloc_bytes = sp->alloc_bytes;
		p->allocs = sp->allocs;
		p->frees = sp->frees;
		p->alloc_rate = sp->alloc_rate;
		p->free_rate = sp->free_rate;
		if (old) {
			memcpy(p->hist, old->hist, sizeof(p->hist));
			p->nr_hist = old->nr_hist;
		}
		if (p->nr_hist == TOP_HIST) {
			memmove(p->hist, p->hist + 1, (TOP_HIST - 1) * sizeof(p->hist[0]));
			p->nr_hist--;
		}
		p->hist[p->nr_hist++] = p->live_bytes;
	}
	qsort(procs, s->nr_procs, sizeof(*procs), proc_pid_cmp);
	nr_ips = 0;
	for (i = 0; i < s->nr_stacks; i++) {
		const struct snap_stack *ss = &s->stacks[i];
		struct top_stack *t = &stacks[i];

		t->pid = ss->pid;
		t->allocator = ss->allocator;
		t->stack_id = ss->stack_id;
		t->live_bytes = ss->live_bytes;
		t->live_allocs = ss->live_allocs;
		t->growth_bytes = ss->growth_bytes;
		t->alloc_bytes = ss->alloc_bytes;
		t->allocs = ss->allocs;
		t->frees = ss->frees;
		t->flags = ss->flags;
		t->nr_frames = ss->ips ? ss->nr_frames : 0;
		t->ips = nr_ips;
		/* the addresses belong to the engine: copied, a frozen screen outlives them */
		if (t->nr_frames)
			memcpy(ips + nr_ips, ss->ips, t->nr_frames * sizeof(*ips));
		nr_ips += t->nr_frames;
	}
	qsort(stacks, s->nr_stacks, sizeof(*stacks), stack_key_cmp);
	free(m->procs);
	free(m->stacks);
	free(m->ips);
	m->procs = procs;
	m->nr_procs = s->nr_procs;
	m->stacks = stacks;
	m->nr_stacks = s->nr_stacks;
	m->ips = ips;
	m->nr_ips = nr_ips;
	m->seq++;
	m->time = s->time;
	m->elapsed_s = s->elapsed_s;
	m->final = s->final;
	m->sample_bytes = s->sample_bytes;
	m->min_size = s->min_size;
	memcpy(m->drops, s->drops, sizeof(m->drops));
	if (st)
		m->stats = *st;
	model_totals(m);
	return 0;
}

int top_model__copy(struct top_model *dst, const struct top_model *src)
{
	struct top_model c = *src;

	c.procs = malloc((src->nr_procs + 1) * sizeof(*c.procs));
	c.stacks = malloc((src->nr_stacks + 1) * sizeof(*c.stacks));
	c.ips = malloc((src->nr_ips + 1) * sizeof(*c.ips));
	if (!c.procs || !c.stacks || !c.ips) {
		free(c.procs);
		free(c.stacks);
		free(c.ips);
		return -ENOMEM;
	}
	if (src->nr_procs)
		memcpy(c.procs, src->procs, src->nr_procs * sizeof(*c.procs));
	if (src->nr_stacks)
		memcpy(c.stacks, src->stacks, src->nr_stacks * sizeof(*c.stacks));
	if (src->nr_ips)
		memcpy(c.ips, src->ips, src->nr_ips * sizeof(*c.ips));
	top_model__release(dst);
	*dst = c;
	return 0;
}

/* ------------------------------------------------------------------ pure helpers */

int top__sparkline(char *out, size_t size, const __s64 *vals, int n, int width, bool utf8)
{
	static const char *const blocks[8] = {"\u2581", "\u2582", "\u2583", "\u2584",
					      "\u2585", "\u2586", "\u2587", "\u2588"};
	static const char ascii[8] = {'_', '.', '-', '~', '=', '+', '*', '#'};
	long double span, mag;
	__s64 lo, hi;
	size_t len = 0;
	int i, cols = 0;

	if (!size)
		return 0;
	out[0] = '\0';
	if (n <= 0 || width <= 0)
		return 0;
	if (n > width) {
		vals += n - width;
		n = width;
	}
	lo = hi = vals[0];
	for (i = 1; i < n; i++) {
		if (vals[i] < lo)
			lo = vals[i];
		if (vals[i] > hi)
			hi = vals[i];
	}
	/*
	 * In long double: hi - lo may not fit an __s64. The span is at least 1/16 of the largest
	 * magnitude, so that a flat process jittering by a few bytes draws flat.
	 */
	span = (long double)hi - lo;
	mag = fabsl((long double)hi) > fabsl((long double)lo) ? fabsl((long double)hi) :
								  fabsl((long double)lo);
	if (span < mag / 16)
		span = mag / 16;
	for (i = 0; i < n; i++) {
		int lvl = span > 0 ? (int)(((long double)vals[i] - lo) * 7 / span + 0.5) : 0;
		size_t gl = utf8 ? strlen(blocks[lvl]) : 1;

		if (len + gl + 1 > size)
			break;
		if (utf8)
			memcpy(out + len, blocks[lvl], gl);
		else
			out[len] = ascii[lvl];
		len += gl;
		cols++;
	}
	out[len] = '\0';
	return cols;
}

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

bool top__comm_match(const char *comm, const char *pat)
{
	size_t n, m;

	if (!pat || !pat[0])
		return true;
	n = strlen(comm);
	m = strlen(pat);
	for (size_t i = 0; i + m <= n; i++) {
		size_t j = 0;

		while (j < m && lower((unsigned char)comm[i + j]) == lower((unsigned char)pat[j]))
			j++;
		if (j == m)
			return true;
	}
	return false;
}

struct order_ctx {
	const struct top_model *m;
	enum top_sort key;
};

static int cmp_s64(__s64 a, __s64 b)
{
	return a < b ? -1 : a > b;
}

static int cmp_u64(__u64 a, __u64 b)
{
	return a < b ? -1 : a > b;
}

static int cmp_dbl(double a, double b)
{
	return a < b ? -1 : a > b;
}

/* Descending by key, then by live bytes; then pid ascending: a stable order between refreshes. */
static int proc_order_cmp(const void *a, const void *b, void *arg)
{
	const struct order_ctx *c = arg;
	const struct top_proc *x = &c->m->procs[*(const size_t *)a];
	const struct top_proc *y = &c->m->procs[*(const size_t *)b];
	int r;

	switch (c->key) {
	case TOP_SORT_LIVE:
		r = cmp_s64(x->live_bytes, y->live_bytes);
		break;
	case TOP_SORT_ALLOCS:
		r = cmp_dbl(x->alloc_rate, y->alloc_rate);
		break;
	case TOP_SORT_TOTAL:
		r = cmp_s64(x->growth_total_bytes, y->growth_total_bytes);
		break;
	default:
		r = cmp_s64(x->growth_bytes, y->growth_bytes);
		break;
	}
	if (r)
		return -r;
	r = cmp_s64(x->live_bytes, y->live_bytes);
	if (r)
		return -r;
	return cmp_u64(x->pid, y->pid);
}

size_t top__order_procs(const struct top_model *m, enum top_sort key, const char *filter,
			size_t *idx)
{
	struct order_ctx c = {m, key};
	size_t n = 0;

	for (size_t i = 0; i < m->nr_procs; i++)
		if (top__comm_match(m->procs[i].comm, filter))
			idx[n++] = i;
	qsort_r(idx, n, sizeof(*idx), proc_order_cmp, &c);
	return n;
}

static int stack_order_cmp(const void *a, const void *b, void *arg)
{
	const struct order_ctx *c = arg;
	const struct top_stack *x = &c->m->stacks[*(const size_t *)a];
	const struct top_stack *y = &c->m->stacks[*(const size_t *)b];
	int r;

	switch (c->key) {
	case TOP_SORT_LIVE:
		r = cmp_s64(x->live_bytes, y->live_bytes);
		break;
	case TOP_SORT_ALLOCS:
		r = cmp_u64(x->allocs, y->allocs);
		break;
	case TOP_SORT_TOTAL:
		r = cmp_u64(x->alloc_bytes, y->alloc_bytes);
		break;
	default:
		r = cmp_s64(x->growth_bytes, y->growth_bytes);
		break;
	}
	if (r)
		return -r;
	r = cmp_s64(x->live_bytes, y->live_bytes);
	if (r)
		return -r;
	r = cmp_u64(x->allocator, y->allocator);
	if (r)
		return r;
	return cmp_u64(x->stack_id, y->stack_id);
}

size_t top__order_stacks(const struct top_model *m, __u32 pid, enum top_sort key, size_t *idx)
{
	struct order_ctx c = {m, key};
	size_t lo = 0, hi = m->nr_stacks, n = 0;

	/* stacks are sorted by pid: the first one of pid, then its run */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->stacks[mid].pid < pid)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < m->nr_stacks && m->stacks[lo].pid == pid; lo++)
		idx[n++] = lo;
	qsort_r(idx, n, sizeof(*idx), stack_order_cmp, &c);
	return n;
}

static const char *const sort_names[TOP_NR_SORTS] = {
	[TOP_SORT_GROWTH] = "growth",
	[TOP_SORT_LIVE] = "live",
	[TOP_SORT_ALLOCS] = "allocs",
	[TOP_SORT_TOTAL] = "total",
};

int top__parse_sort(const char *s, enum top_sort *out)
{
	for (int i = 0; s && i < TOP_NR_SORTS; i++) {
		if (!strcmp(s, sort_names[i])) {
			*out = (enum top_sort)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *top__sort_name(enum top_sort key, bool stacks)
{
	static const char *const proc_desc[TOP_NR_SORTS] = {
		[TOP_SORT_GROWTH] = "growth (last interval)",
		[TOP_SORT_LIVE] = "live bytes",
		[TOP_SORT_ALLOCS] = "allocations/s",
		[TOP_SORT_TOTAL] = "growth since start",
	};
	static const char *const stack_desc[TOP_NR_SORTS] = {
		[TOP_SORT_GROWTH] = "growth (last interval)",
		[TOP_SORT_LIVE] = "live bytes",
		[TOP_SORT_ALLOCS] = "allocations",
		[TOP_SORT_TOTAL] = "bytes allocated",
	};

	if ((unsigned int)key >= TOP_NR_SORTS)
		return "?";
	return stacks ? stack_desc[key] : proc_desc[key];
}

/*
 * Bytes of the UTF-8 sequence starting at s (1 for ASCII and for anything malformed). A
 * terminator stops a sequence (it is no continuation byte): 4 bytes are never read past it.
 */
static size_t utf8_len(const char *s)
{
	size_t n = util__utf8_len(s, 4);

	return n ? n : 1;
}

int top__text_cols(const char *s)
{
	int cols = 0;

	while (*s) {
		s += utf8_len(s);
		cols++;
	}
	return cols;
}

/* Width of a line with these columns shown (flex at its current width). */
static int line_width(int n, const bool *shown, const int *width)
{
	int total = 0, cols = 0;

	for (int i = 0; i < n; i++) {
		if (!shown[i])
			continue;
		total += width[i];
		cols++;
	}
	return total + (cols > 1 ? 2 * (cols - 1) : 0);
}

/* Fewer columns than this and a flex column says nothing: dropped instead. */
#define TOP_FLEX_FLOOR 12

int top__layout(const struct top_col *cols, int n, int avail, bool *shown, int *width)
{
	int i, flex = -1, total, max_drop = 0;

	for (i = 0; i < n; i++) {
		shown[i] = true;
		width[i] = cols[i].width;
		if (cols[i].flex) {
			flex = i;
			if (cols[i].min_width < width[i])
				width[i] = cols[i].min_width;
		}
		if (cols[i].drop > max_drop)
			max_drop = cols[i].drop;
	}
	total = line_width(n, shown, width);
	while (total > avail) {
		int worst = -1;

		for (i = 0; i < n; i++)
			if (shown[i] && cols[i].drop > 0 &&
			    (worst < 0 || cols[i].drop > cols[worst].drop))
				worst = i;
		if (worst < 0)
			break; /* only columns never dropped: the line gets cut */
		/* the flex column is what the view is for: below its minimum before it goes */
		if (worst == flex && avail - (total - width[flex]) >= TOP_FLEX_FLOOR) {
			width[flex] = avail - (total - width[flex]);
			total = avail;
			break;
		}
		shown[worst] = false;
		total = line_width(n, shown, width);
	}
	/* dropping a wide column may have made room for a narrower, more important one */
	for (int rank = 1; rank <= max_drop; rank++) {
		for (i = 0; i < n; i++) {
			if (shown[i] || cols[i].drop != rank)
				continue;
			shown[i] = true;
			if (line_width(n, shown, width) > avail)
				shown[i] = false;
		}
	}
	total = line_width(n, shown, width);
	if (flex >= 0 && shown[flex] && total < avail) {
		int grow = cols[flex].width - width[flex];

		if (grow > avail - total)
			grow = avail - total;
		if (grow > 0)
			width[flex] += grow;
		total = line_width(n, shown, width);
	}
	return total;
}

/* ------------------------------------------------------------------ line building */

struct lb {
	struct top_line *l;
	size_t len;
	int cols, width;
};

/* Append up to maxcols columns of s, never past the line's width. */
static void lb_putn(struct lb *b, const char *s, int maxcols)
{
	int c = 0;

	while (*s && c < maxcols && b->cols < b->width) {
		size_t n = utf8_len(s);

		if (b->len + n >= TOP_LINE_LEN)
			break;
		memcpy(b->l->text + b->len, s, n);
		b->len += n;
		b->cols++;
		c++;
		s += n;
	}
	b->l->text[b->len] = '\0';
}

static void lb_puts(struct lb *b, const char *s)
{
	lb_putn(b, s, INT_MAX);
}

static void lb_pad(struct lb *b, int n)
{
	while (n-- > 0 && b->cols < b->width && b->len + 1 < TOP_LINE_LEN) {
		b->l->text[b->len++] = ' ';
		b->cols++;
	}
	b->l->text[b->len] = '\0';
}

__attribute__((format(printf, 2, 3))) static void lb_printf(struct lb *b, const char *fmt, ...)
{
	char buf[TOP_LINE_LEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	lb_puts(b, buf);
}

/* Mark what the next lb_* calls write as the line's highlighted span. */
static void lb_hl_begin(struct lb *b, enum top_attr attr)
{
	b->l->hl_start = (int)b->len;
	b->l->hl_attr = attr;
}

static void lb_hl_end(struct lb *b)
{
	b->l->hl_len = (int)b->len - b->l->hl_start;
}

static struct lb new_line(struct top_view *v, int width, enum top_attr attr)
{
	struct top_line *l;
	struct lb b;

	if (!util__reserve(&v->rows, &v->cap_lines, (size_t)v->nr_lines + 1, sizeof(*v->rows),
			   64)) {
		l = &v->rows[v->nr_lines++];
	} else {
		v->oom = true;
		l = &v->scratch;
	}
	l->text[0] = '\0';
	l->attr = attr;
	l->fill = false;
	l->hl_start = l->hl_len = 0;
	b.l = l;
	b.len = 0;
	b.cols = 0;
	b.width = width < TOP_MAX_COLS ? width : TOP_MAX_COLS;
	return b;
}

/* Printable ASCII only: names come from the kernel and from binaries, and may hold anything. */
static void sanitize(char *out, size_t size, const char *s)
{
	size_t i = 0;

	if (!size)
		return;
	for (; s && *s && i + 1 < size; s++)
		out[i++] = (*s >= ' ' && *s < 0x7f) ? *s : '?';
	out[i] = '\0';
}

static void fmt_bytes(const struct top_view *v, char *buf, size_t size, __s64 bytes, bool plus)
{
	if (v->o.exact_bytes)
		snprintf(buf, size, plus && bytes > 0 ? "+%lld" : "%lld", (long long)bytes);
	else
		util__humanize_bytes(buf, size, bytes, plus);
}

static void fmt_rate(char *buf, size_t size, double r)
{
	snprintf(buf, size, r < 1000 ? "%.1f" : "%.0f", r);
}

static void put_cells(struct lb *b, const struct top_col *cols, int n, const bool *shown,
		      const int *width, char cells[][CELL_LEN], bool pad_last)
{
	int last = -1;
	bool first = true;

	for (int i = 0; i < n; i++)
		if (shown[i])
			last = i;
	for (int i = 0; i < n; i++) {
		int len;

		if (!shown[i])
			continue;
		if (!first)
			lb_pad(b, 2);
		first = false;
		len = top__text_cols(cells[i]);
		if (len > width[i])
			len = width[i];
		if (cols[i].left) {
			lb_putn(b, cells[i], width[i]);
			if (i != last || pad_last)
				lb_pad(b, width[i] - len);
		} else {
			lb_pad(b, width[i] - len);
			lb_putn(b, cells[i], width[i]);
		}
	}
}

static void widen(struct top_col *cols, int n, char cells[][CELL_LEN])
{
	for (int i = 0; i < n; i++) {
		int len = top__text_cols(cells[i]);

		if (len > cols[i].width)
			cols[i].width = len;
	}
}

/* ------------------------------------------------------------------ frames */

static void fmt_frame(char *out, size_t size, const struct sym_frame *f)
{
	char func[FRAME_LEN / 2], file[FRAME_LEN / 4], mod[FRAME_LEN / 4], name[FRAME_LEN / 2];
	int n;

	sanitize(func, sizeof(func), f->func ? util__short_func(f->func, name, sizeof(name)) : NULL);
	sanitize(file, sizeof(file), util__basename(f->file));
	sanitize(mod, sizeof(mod), util__basename(f->module));
	if (f->func && f->file && f->line > 0)
		n = snprintf(out, size, "%s (%s:%d)", func, file, f->line);
	else if (f->func && f->file)
		n = snprintf(out, size, "%s (%s)", func, file);
	else if (f->func)
		n = snprintf(out, size, "%s", func);
	else if (f->module)
		n = snprintf(out, size, "0x%llx [%s+0x%llx]", (unsigned long long)f->addr, mod,
			     (unsigned long long)f->module_offset);
	else
		n = snprintf(out, size, "0x%llx", (unsigned long long)f->addr);
	if (f->inlined && n > 0 && (size_t)n < size)
		snprintf(out + n, size - n, " [inlined]");
}

/*
 * Call fn for each frame line of a stack (inline chains expanded), innermost first; fn returns
 * false to stop. Returns the number of lines visited.
 */
static int for_each_frame(struct top_view *v, const struct top_model *m, const struct top_stack *st,
			  bool (*fn)(const char *text, const struct sym_frame *f, void *ctx),
			  void *ctx)
{
	struct sym_frame fr[TOP_MAX_INLINE];
	char text[FRAME_LEN];
	int count = 0;

	for (__u32 i = 0; i < st->nr_frames; i++) {
		__u64 ip = m->ips[st->ips + i];
		int n = v->o.sym ? symbolizer__resolve(v->o.sym, st->pid, ip, fr, TOP_MAX_INLINE) : 0;

		if (n <= 0) {
			memset(fr, 0, sizeof(fr[0]));
			fr[0].addr = ip ? ip - 1 : 0;
			n = 1;
		}
		for (int j = 0; j < n; j++) {
			fmt_frame(text, sizeof(text), &fr[j]);
			count++;
			if (!fn(text, &fr[j], ctx))
				return count;
		}
	}
	return count;
}

/*
 * Code of the C and C++ runtime: the C library, libstdc++, libgcc, the dynamic linker, an
 * allocator library, and what is inlined from the system's headers (std::string's
 * constructor, say). A call site is the first frame that is none of these.
 */
static bool runtime_frame(const struct sym_frame *f)
{
	static const char *const libs[] = {"libstdc++.so",   "libgcc_s.so",  "ld-linux",
					   "libm.so",	     "libpthread.so", "libc++.so",
					   "libc++abi.so",   "libjemalloc.so", "libtcmalloc",
					   "libmimalloc.so"};
	const char *mod = util__basename(f->module);

	if (f->file && !strncmp(f->file, "/usr/include/", 13))
		return true;
	if (mod && util__is_libc_name(mod))
		return true;
	for (size_t i = 0; mod && i < sizeof(libs) / sizeof(libs[0]); i++)
		if (!strncmp(mod, libs[i], strlen(libs[i])))
			return true;
	return false;
}

struct site_pick {
	char *out;
	bool have; /* out holds frame 0, kept if no frame is the program's */
};

static bool pick_site(const char *text, const struct sym_frame *f, void *ctx)
{
	struct site_pick *pk = ctx;
	bool program = !runtime_frame(f);

	if (program || !pk->have)
		snprintf(pk->out, FRAME_LEN, "%s", text);
	pk->have = true;
	return !program;
}

static bool count_frame(const char *text, const struct sym_frame *f, void *ctx)
{
	(void)text;
	(void)f;
	(void)ctx;
	return true;
}

static void call_site(struct top_view *v, const struct top_model *m, const struct top_stack *st,
		      char *out)
{
	if (!st->nr_frames) {
		snprintf(out, FRAME_LEN, "(no call stack: see the drops)");
		return;
	}
	struct site_pick pk = {out, false};

	for_each_frame(v, m, st, pick_site, &pk);
}

/* ------------------------------------------------------------------ screens */

static const struct top_model *shown_model(const struct top_view *v)
{
	return v->is_frozen ? &v->frozen : &v->live;
}

static size_t *scratch_idx(struct top_view *v, size_t n)
{
	if (n + 1 > v->idx_cap) {
		size_t *p = realloc(v->idx, (n + 1) * sizeof(*p));

		if (!p)
			return NULL;
		v->idx = p;
		v->idx_cap = n + 1;
	}
	return v->idx;
}

/*
 * The header is made of segments ("Live: 40.0 MiB"), joined three spaces apart and wrapped at
 * segment boundaries on narrow terminals; a segment may be painted (drops, the frozen mark).
 */
#define SEG_LEN 256
#define MAX_SEGS 8

struct segs {
	char text[MAX_SEGS][SEG_LEN];
	enum top_attr hl[MAX_SEGS];
	int n;
};

__attribute__((format(printf, 3, 4))) static void seg_add(struct segs *g, enum top_attr hl,
							  const char *fmt, ...)
{
	va_list ap;

	if (g->n == MAX_SEGS)
		return;
	va_start(ap, fmt);
	vsnprintf(g->text[g->n], SEG_LEN, fmt, ap);
	va_end(ap);
	g->hl[g->n++] = hl;
}

static void put_segs(struct top_view *v, const struct segs *g, int width, enum top_attr attr)
{
	struct lb l = new_line(v, width, attr);
	bool empty = true;

	for (int i = 0; i < g->n; i++) {
		int len = top__text_cols(g->text[i]);

		if (!empty && l.cols + 3 + len > width) {
			l = new_line(v, width, attr);
			empty = true;
		}
		if (!empty)
			lb_pad(&l, 3);
		if (g->hl[i] != TOP_ATTR_NORMAL && !l.l->hl_len)
			lb_hl_begin(&l, g->hl[i]);
		lb_puts(&l, g->text[i]);
		if (g->hl[i] != TOP_ATTR_NORMAL && l.l->hl_attr == g->hl[i] && !l.l->hl_len)
			lb_hl_end(&l);
		empty = false;
	}
}

static void render_header(struct top_view *v, const struct top_model *m, int width, bool batch)
{
	char a[CELL_LEN], b[CELL_LEN], when[64] = "?";
	time_t t = m->seq ? (time_t)m->time : time(NULL);
	const struct top_stats *st = &m->stats;
	struct segs g = {.n = 0};
	char drops[SEG_LEN] = "", info[SEG_LEN] = "";
	size_t dl = 0, il = 0;
	struct tm tm;
	int alive;

	if (localtime_r(&t, &tm))
		strftime(when, sizeof(when), batch ? "%Y-%m-%d %H:%M:%S" : "%H:%M:%S", &tm);
	if (!m->seq)
		seg_add(&g, TOP_ATTR_NORMAL, "asizeof-bpf top - %s, waiting for the first sample",
			when);
	else if (st->interval_s > 0)
		seg_add(&g, TOP_ATTR_NORMAL, "asizeof-bpf top - %s, elapsed %.1f s, every %.3g s%s",
			when, m->elapsed_s, st->interval_s, batch && m->final ? ", final" : "");
	else
		seg_add(&g, TOP_ATTR_NORMAL, "asizeof-bpf top - %s, elapsed %.1f s%s", when,
			m->elapsed_s, batch && m->final ? ", final" : "");
	if (v->is_frozen)
		seg_add(&g, TOP_ATTR_ALERT, "[FROZEN: p resumes]");
	if (m->sample_bytes)
		seg_add(&g, TOP_ATTR_NORMAL, "sampled, 1 byte in %llu: estimates",
			(unsigned long long)m->sample_bytes);
	if (m->min_size)
		seg_add(&g, TOP_ATTR_NORMAL, "blocks under %llu bytes not counted",
			(unsigned long long)m->min_size);
	put_segs(v, &g, width, TOP_ATTR_TITLE);

	g.n = 0;
	alive = st->nr_targets >= 0 ? st->nr_targets : (int)m->nr_procs - m->nr_exited;
	seg_add(&g, TOP_ATTR_NORMAL, "Processes: %d traced, %d exited", alive < 0 ? 0 : alive,
		m->nr_exited);
	fmt_bytes(v, a, sizeof(a), m->live_bytes, false);
	seg_add(&g, TOP_ATTR_NORMAL, "Live: %s", a);
	fmt_bytes(v, a, sizeof(a), m->growth_bytes, true);
	fmt_bytes(v, b, sizeof(b), m->growth_total_bytes, true);
	seg_add(&g, TOP_ATTR_NORMAL, "Growth: %s last interval, %s since start", a, b);
	put_segs(v, &g, width, TOP_ATTR_NORMAL);

	g.n = 0;
	fmt_rate(a, sizeof(a), m->alloc_rate);
	fmt_rate(b, sizeof(b), m->free_rate);
	seg_add(&g, TOP_ATTR_NORMAL, "Allocs/s: %s", a);
	seg_add(&g, TOP_ATTR_NORMAL, "Frees/s: %s", b);
	/* losses painted; informational counters (unknown frees...) listed after them, plain */
	for (int d = 0; d < ASZ_NR_DROPS; d++) {
		char *buf = snapshot__drop_is_loss(d) ? drops : info;
		size_t *len = snapshot__drop_is_loss(d) ? &dl : &il;
		int n;

		if (!m->drops[d] || *len >= SEG_LEN - 1)
			continue;
		n = snprintf(buf + *len, SEG_LEN - *len, "%s%s=%llu", *len ? " " : "",
			     snapshot__drop_name(d), (unsigned long long)m->drops[d]);
		*len += n > 0 ? (size_t)n : 0;
		if (*len > SEG_LEN - 1)
			*len = SEG_LEN - 1;
	}
	if (dl)
		seg_add(&g, TOP_ATTR_ALERT, "Drops: %s", drops);
	if (il)
		seg_add(&g, TOP_ATTR_NORMAL, "%s%s", dl ? "" : "Drops: none; ", info);
	if (!dl && !il)
		seg_add(&g, TOP_ATTR_NORMAL, "Drops: none");
	put_segs(v, &g, width, TOP_ATTR_NORMAL);

	g.n = 0;
	if (m->seq && st->cpu_pct >= 0)
		seg_add(&g, TOP_ATTR_NORMAL, "Profiler: CPU %.1f%%", st->cpu_pct);
	else
		seg_add(&g, TOP_ATTR_NORMAL, "Profiler: CPU -");
	if (st->map_bytes) {
		util__humanize_bytes(a, sizeof(a), (__s64)st->map_bytes, false);
		seg_add(&g, TOP_ATTR_NORMAL, "BPF maps %s", a);
	} else {
		seg_add(&g, TOP_ATTR_NORMAL, "BPF maps ?");
	}
	if (st->bpf_ms_per_s >= 0 && m->seq)
		seg_add(&g, TOP_ATTR_NORMAL, "BPF run time %.1f ms/s", st->bpf_ms_per_s);
	if (st->cmd_status >= 0)
		seg_add(&g, TOP_ATTR_NORMAL, "command exited with status %d", st->cmd_status);
	if (m->seq && !st->system_wide && m->nr_procs && m->nr_exited == (int)m->nr_procs &&
	    !batch)
		seg_add(&g, TOP_ATTR_NORMAL, "all targets exited: their final state, q quits");
	put_segs(v, &g, width, TOP_ATTR_NORMAL);
}

enum { PC_PID, PC_COMM, PC_LIVE, PC_GROWTH, PC_TOTAL, PC_ARATE, PC_FRATE, PC_TREND, PC_N };

static const struct top_col proc_cols[PC_N] = {
	[PC_PID] = {"PID", 7, 0, 0, false, false},
	[PC_COMM] = {"COMM", 4, 12, 1, true, true},
	[PC_LIVE] = {"LIVE", 10, 0, 0, false, false},
	[PC_GROWTH] = {"GROWTH", 10, 0, 0, false, false},
	[PC_TOTAL] = {"GROWTH-TOTAL", 12, 0, 4, false, false},
	[PC_ARATE] = {"ALLOC/s", 9, 0, 3, false, false},
	[PC_FRATE] = {"FREE/s", 9, 0, 5, false, false},
	[PC_TREND] = {"TREND", TOP_HIST, 0, 2, true, false},
};

static void proc_cells(const struct top_view *v, const struct top_proc *p, char cells[][CELL_LEN])
{
	snprintf(cells[PC_PID], CELL_LEN, "%u", p->pid);
	sanitize(cells[PC_COMM], CELL_LEN, p->comm[0] ? p->comm : "?");
	fmt_bytes(v, cells[PC_LIVE], CELL_LEN, p->live_bytes, false);
	fmt_bytes(v, cells[PC_GROWTH], CELL_LEN, p->growth_bytes, true);
	fmt_bytes(v, cells[PC_TOTAL], CELL_LEN, p->growth_total_bytes, true);
	fmt_rate(cells[PC_ARATE], CELL_LEN, p->alloc_rate);
	fmt_rate(cells[PC_FRATE], CELL_LEN, p->free_rate);
	top__sparkline(cells[PC_TREND], CELL_LEN, p->hist, p->nr_hist, TOP_HIST, v->o.utf8);
}

static void head_cells(const struct top_col *cols, int n, char cells[][CELL_LEN])
{
	for (int i = 0; i < n; i++)
		snprintf(cells[i], CELL_LEN, "%s", cols[i].head);
}

/* The process table with at most rows rows (< 0: no limit), scrolled to the selection. */
static void render_procs(struct top_view *v, const struct top_model *m, int width, int rows,
			 bool batch)
{
	struct top_col cols[PC_N];
	char cells[PC_N][CELL_LEN];
	bool shown[PC_N];
	int w[PC_N];
	size_t *idx = scratch_idx(v, m->nr_procs), n, i, first, end;
	struct lb l;

	if (!idx) {
		v->oom = true;
		return;
	}
	n = top__order_procs(m, v->proc_sort, v->filter, idx);
	if (v->o.max_rows > 0 && (rows < 0 || rows > v->o.max_rows))
		rows = v->o.max_rows;
	if (rows < 0 || (size_t)rows > n)
		rows = (int)n;
	/* the selection: the top row until the user moves it, then the process chosen */
	if (v->sel_follow) {
		for (i = 0; i < n && m->procs[idx[i]].pid != v->sel_pid; i++)
			;
		if (i < n)
			v->sel_idx = i;
		else if (n)
			v->sel_pid = m->procs[idx[v->sel_idx < n ? v->sel_idx : n - 1]].pid;
	}
	if (v->sel_idx >= n)
		v->sel_idx = n ? n - 1 : 0;
	first = batch ? 0 : v->proc_first;
	if (!batch && rows > 0) {
		if (v->sel_idx < first)
			first = v->sel_idx;
		if (v->sel_idx >= first + (size_t)rows)
			first = v->sel_idx - rows + 1;
		if (first + rows > n)
			first = n > (size_t)rows ? n - rows : 0;
	}
	v->proc_first = first;
	v->proc_page = rows;
	end = first + (rows > 0 ? (size_t)rows : 0);
	if (end > n)
		end = n;

	memcpy(cols, proc_cols, sizeof(cols));
	head_cells(cols, PC_N, cells);
	widen(cols, PC_N, cells);
	for (i = first; i < end; i++) {
		proc_cells(v, &m->procs[idx[i]], cells);
		widen(cols, PC_N, cells);
	}
	if (cols[PC_COMM].width > ASZ_COMM_LEN - 1)
		cols[PC_COMM].width = ASZ_COMM_LEN - 1;
	top__layout(cols, PC_N, width, shown, w);

	l = new_line(v, width, TOP_ATTR_HEAD);
	l.l->fill = true;
	head_cells(cols, PC_N, cells);
	put_cells(&l, cols, PC_N, shown, w, cells, false);
	if (!n) {
		l = new_line(v, width, TOP_ATTR_NORMAL);
		if (!m->seq)
			lb_puts(&l, "  (no sample yet)");
		else if (m->nr_procs)
			lb_printf(&l, "  no process name contains '%s' (/ changes the filter)", v->filter);
		else
			lb_puts(&l, "  no traced process has allocated yet");
		return;
	}
	for (i = first; i < end; i++) {
		const struct top_proc *p = &m->procs[idx[i]];
		bool sel = !batch && i == v->sel_idx;

		l = new_line(v, width, sel ? TOP_ATTR_SELECTED : p->exited ? TOP_ATTR_DIM :
								   TOP_ATTR_NORMAL);
		l.l->fill = sel;
		proc_cells(v, p, cells);
		put_cells(&l, cols, PC_N, shown, w, cells, p->exited);
		if (p->exited)
			lb_puts(&l, "  exited");
	}
	if (batch && end < n) {
		l = new_line(v, width, TOP_ATTR_NORMAL);
		lb_printf(&l, "... and %zu more processes (-n 0 shows all)", n - end);
	}
}

enum { SC_RANK, SC_ALLOC, SC_LIVE, SC_BLOCKS, SC_GROWTH, SC_ALLOCS, SC_BYTES, SC_SITE, SC_N };

static const struct top_col stack_cols[SC_N] = {
	[SC_RANK] = {"#", 2, 0, 0, false, false},
	[SC_ALLOC] = {"ALLOCATOR", 9, 0, 4, true, false},
	[SC_LIVE] = {"LIVE", 10, 0, 0, false, false},
	[SC_BLOCKS] = {"BLOCKS", 6, 0, 3, false, false},
	[SC_GROWTH] = {"GROWTH", 10, 0, 0, false, false},
	[SC_ALLOCS] = {"ALLOCS", 6, 0, 2, false, false},
	[SC_BYTES] = {"ALLOCATED", 10, 0, 5, false, false},
	/* what the view is for: the numbers beside it drop before it shrinks below 40 */
	[SC_SITE] = {"CALL SITE", 9, 40, 1, true, true},
};

static void stack_cells(struct top_view *v, const struct top_model *m, size_t rank,
			const struct top_stack *st, char cells[][CELL_LEN], char *site)
{
	snprintf(cells[SC_RANK], CELL_LEN, "%zu", rank);
	snprintf(cells[SC_ALLOC], CELL_LEN, "%s", snapshot__allocator_name(st->allocator));
	fmt_bytes(v, cells[SC_LIVE], CELL_LEN, st->live_bytes, false);
	snprintf(cells[SC_BLOCKS], CELL_LEN, "%lld", (long long)st->live_allocs);
	fmt_bytes(v, cells[SC_GROWTH], CELL_LEN, st->growth_bytes, true);
	snprintf(cells[SC_ALLOCS], CELL_LEN, "%llu", (unsigned long long)st->allocs);
	fmt_bytes(v, cells[SC_BYTES], CELL_LEN, (__s64)st->alloc_bytes, false);
	call_site(v, m, st, site);
	/* the cell keeps what fits a cell; the row prints the whole site when there is room */
	snprintf(cells[SC_SITE], CELL_LEN, "%s", site);
}

static bool is_expanded(const struct top_view *v, const struct top_stack *st)
{
	for (int i = 0; i < v->nr_expanded; i++)
		if (v->expanded[i].allocator == st->allocator &&
		    v->expanded[i].stack_id == st->stack_id)
			return true;
	return false;
}

struct frame_emit {
	struct top_view *v;
	int width;
	int skip;  /* lines to skip (scrolled off the top) */
	int left;  /* lines left to write */
	int shown;
};

static bool emit_frame(const char *text, const struct sym_frame *f, void *ctx)
{
	struct frame_emit *e = ctx;
	struct lb l;

	(void)f;
	if (e->skip > 0) {
		e->skip--;
		return true;
	}
	if (e->left <= 0)
		return false;
	l = new_line(e->v, e->width, TOP_ATTR_NORMAL);
	lb_puts(&l, FRAME_INDENT);
	lb_puts(&l, text);
	e->left--;
	e->shown++;
	return true;
}

static void stack_title(struct top_view *v, const struct top_proc *p, __u32 pid, int width,
			bool batch)
{
	char comm[CELL_LEN], a[CELL_LEN], b[CELL_LEN], c[CELL_LEN];
	struct segs g = {.n = 0};

	if (!p) {
		seg_add(&g, TOP_ATTR_NORMAL, "Stacks of pid %u: the process is gone", pid);
		put_segs(v, &g, width, TOP_ATTR_TITLE);
		return;
	}
	sanitize(comm, sizeof(comm), p->comm[0] ? p->comm : "?");
	fmt_bytes(v, a, sizeof(a), p->live_bytes, false);
	fmt_bytes(v, b, sizeof(b), p->growth_bytes, true);
	fmt_bytes(v, c, sizeof(c), p->growth_total_bytes, true);
	seg_add(&g, TOP_ATTR_NORMAL, "%s stacks of %u %s%s by %s:", batch ? "Top" : "Call", pid,
		comm, p->exited ? " (exited)" : "", top__sort_name(v->stack_sort, true));
	seg_add(&g, TOP_ATTR_NORMAL, "live %s, growth %s, %s since start", a, b, c);
	put_segs(v, &g, width, TOP_ATTR_TITLE);
}

/* Column widths over the rows [first, end) of an ordering. */
static void stack_layout(struct top_view *v, const struct top_model *m, const size_t *idx,
			 size_t first, size_t end, int width, bool *shown, int *w,
			 struct top_col *cols)
{
	char cells[SC_N][CELL_LEN], site[FRAME_LEN];

	memcpy(cols, stack_cols, sizeof(stack_cols));
	head_cells(cols, SC_N, cells);
	widen(cols, SC_N, cells);
	for (size_t i = first; i < end; i++) {
		stack_cells(v, m, i + 1, &m->stacks[idx[i]], cells, site);
		widen(cols, SC_N, cells);
		if (top__text_cols(site) > cols[SC_SITE].width)
			cols[SC_SITE].width = top__text_cols(site);
	}
	/* two columns in front: the expansion marker */
	top__layout(cols, SC_N, width - 2, shown, w);
}

static void stack_row(struct top_view *v, const struct top_model *m, size_t rank,
		      const struct top_stack *st, const struct top_col *cols, const bool *shown,
		      const int *w, int width, bool sel, bool batch)
{
	char cells[SC_N][CELL_LEN], site[FRAME_LEN];
	struct lb l = new_line(v, width, sel ? TOP_ATTR_SELECTED : TOP_ATTR_NORMAL);
	bool site_shown = shown[SC_SITE];
	bool sh[SC_N];

	l.l->fill = sel;
	stack_cells(v, m, rank, st, cells, site);
	if (batch || !st->nr_frames)
		lb_puts(&l, "  ");
	else
		lb_puts(&l, is_expanded(v, st) ? "- " : "+ ");
	/* the call site goes last, whole: it may be longer than a cell */
	memcpy(sh, shown, sizeof(sh));
	sh[SC_SITE] = false;
	put_cells(&l, cols, SC_N, sh, w, cells, false);
	if (site_shown) {
		lb_pad(&l, 2);
		lb_putn(&l, site, w[SC_SITE]);
	}
}

static void render_stacks_batch(struct top_view *v, const struct top_model *m, int width)
{
	size_t *pidx, *sidx, np, shown_procs = 0;
	size_t n = m->nr_procs + m->nr_stacks + 2;

	if (!scratch_idx(v, n)) {
		v->oom = true;
		return;
	}
	pidx = v->idx;
	sidx = v->idx + m->nr_procs + 1;
	np = top__order_procs(m, v->proc_sort, v->filter, pidx);
	for (size_t i = 0; i < np && shown_procs < TOP_BATCH_PROCS; i++) {
		const struct top_proc *p = &m->procs[pidx[i]];
		struct top_col cols[SC_N];
		bool shown[SC_N];
		int w[SC_N];
		char cells[SC_N][CELL_LEN];
		size_t ns = top__order_stacks(m, p->pid, v->stack_sort, sidx), end;
		struct lb l;

		if (!ns)
			continue;
		if (v->o.max_rows > 0 && i >= (size_t)v->o.max_rows)
			break;
		shown_procs++;
		end = ns < TOP_BATCH_STACKS ? ns : TOP_BATCH_STACKS;
		new_line(v, width, TOP_ATTR_NORMAL);
		stack_title(v, p, p->pid, width, true);
		stack_layout(v, m, sidx, 0, end, width, shown, w, cols);
		l = new_line(v, width, TOP_ATTR_HEAD);
		lb_puts(&l, "  ");
		head_cells(cols, SC_N, cells);
		put_cells(&l, cols, SC_N, shown, w, cells, false);
		for (size_t j = 0; j < end; j++) {
			const struct top_stack *st = &m->stacks[sidx[j]];
			struct frame_emit e = {v, width, 0, TOP_BATCH_FRAMES, 0};
			int total;

			stack_row(v, m, j + 1, st, cols, shown, w, width, false, true);
			total = for_each_frame(v, m, st, emit_frame, &e);
			if (total > e.shown || st->flags & ASZ_STACK_PARTIAL) {
				/* count the rest (cached by the symbolizer) */
				total = for_each_frame(v, m, st, count_frame, NULL);
				l = new_line(v, width, TOP_ATTR_NORMAL);
				lb_puts(&l, FRAME_INDENT);
				if (total > e.shown)
					lb_printf(&l, "... %d more frame%s", total - e.shown,
						  total - e.shown == 1 ? "" : "s");
				else
					lb_puts(&l, "...");
				if (st->flags & ASZ_STACK_TRUNCATED)
					lb_puts(&l, " (stack truncated at --max-depth)");
				else if (st->flags & ASZ_STACK_INCOMPLETE)
					lb_puts(&l, " (unwinding stopped)");
			}
		}
		if (ns > end) {
			l = new_line(v, width, TOP_ATTR_NORMAL);
			lb_printf(&l, "  ... and %zu more stacks", ns - end);
		}
	}
}

/* Interactive stacks view of one process, in avail lines. */
static void render_stacks_view(struct top_view *v, const struct top_model *m, int width,
			       int avail)
{
	const struct top_proc *p = top_model__find_proc(m, v->stk_pid);
	struct top_col cols[SC_N];
	char cells[SC_N][CELL_LEN];
	bool shown[SC_N];
	int w[SC_N], rows_avail, before = v->nr_lines;
	size_t *idx = scratch_idx(v, m->nr_stacks), n, i, *line_of, total_lines, first_line, sel_end;
	struct lb l;

	/* the title may wrap; below it, the table's head and the rows */
	stack_title(v, p, v->stk_pid, width, false);
	rows_avail = avail - (v->nr_lines - before) - 1;
	if (!idx) {
		v->oom = true;
		return;
	}
	n = top__order_stacks(m, v->stk_pid, v->stack_sort, idx);
	if (v->stk_follow) {
		for (i = 0; i < n; i++) {
			const struct top_stack *st = &m->stacks[idx[i]];

			if (st->allocator == v->stk_sel.allocator &&
			    st->stack_id == v->stk_sel.stack_id)
				break;
		}
		if (i < n)
			v->stk_idx = i;
	}
	if (v->stk_idx >= n)
		v->stk_idx = n ? n - 1 : 0;
	if (v->stk_follow && n) {
		v->stk_sel.allocator = m->stacks[idx[v->stk_idx]].allocator;
		v->stk_sel.stack_id = m->stacks[idx[v->stk_idx]].stack_id;
	}
	if (!n) {
		l = new_line(v, width, TOP_ATTR_NORMAL);
		lb_puts(&l, "  no stack recorded for this process (Esc goes back)");
		return;
	}
	if (rows_avail < 1)
		rows_avail = 1;
	v->stk_page = rows_avail;
	/* the screen line of each stack's row: expanded stacks take their frames below */
	line_of = calloc(n + 1, sizeof(*line_of));
	if (!line_of) {
		v->oom = true;
		return;
	}
	total_lines = 0;
	for (i = 0; i < n; i++) {
		const struct top_stack *st = &m->stacks[idx[i]];

		line_of[i] = total_lines++;
		if (is_expanded(v, st))
			total_lines += for_each_frame(v, m, st, count_frame, NULL);
	}
	line_of[n] = total_lines;
	/* keep the selected row, and as much of its frames as fits, on screen */
	first_line = v->stk_first_line;
	sel_end = line_of[v->stk_idx + 1];
	v->stk_sel_lines = sel_end - line_of[v->stk_idx];
	if (v->stk_sel_lines > (size_t)rows_avail) {
		/* taller than the screen: Up and Down scroll through it (stk_scroll lines) */
		if (v->stk_scroll > v->stk_sel_lines - rows_avail)
			v->stk_scroll = v->stk_sel_lines - rows_avail;
		first_line = line_of[v->stk_idx] + v->stk_scroll;
	} else {
		v->stk_scroll = 0;
		if (sel_end > first_line + rows_avail)
			first_line = sel_end - rows_avail;
		if (line_of[v->stk_idx] < first_line)
			first_line = line_of[v->stk_idx];
	}
	if (first_line + rows_avail > total_lines)
		first_line = total_lines > (size_t)rows_avail ? total_lines - rows_avail : 0;
	v->stk_first_line = first_line;

	/* widths from the rows on screen */
	{
		size_t a = n, b = 0;

		for (i = 0; i < n; i++) {
			if (line_of[i] + 1 > first_line && line_of[i] < first_line + rows_avail) {
				if (a == n)
					a = i;
				b = i + 1;
			}
		}
		if (a == n)
			a = b = 0;
		stack_layout(v, m, idx, a, b, width, shown, w, cols);
	}
	l = new_line(v, width, TOP_ATTR_HEAD);
	l.l->fill = true;
	lb_puts(&l, "  ");
	head_cells(cols, SC_N, cells);
	put_cells(&l, cols, SC_N, shown, w, cells, false);
	{
		int left = rows_avail;

		for (i = 0; i < n && left > 0; i++) {
			const struct top_stack *st = &m->stacks[idx[i]];
			size_t row = line_of[i];

			if (line_of[i + 1] <= first_line)
				continue;
			if (row >= first_line) {
				stack_row(v, m, i + 1, st, cols, shown, w, width, i == v->stk_idx,
					  false);
				left--;
			}
			if (is_expanded(v, st) && left > 0) {
				struct frame_emit e = {v, width, 0, left, 0};

				/* frames scrolled off the top are skipped */
				if (row + 1 < first_line)
					e.skip = (int)(first_line - row - 1);
				for_each_frame(v, m, st, emit_frame, &e);
				left -= e.shown;
			}
		}
	}
	free(line_of);
}

/* At most 79 columns a line: an 80-column terminal shows the help whole. */
static const char *const help_text[] = {
	"asizeof-bpf top: keys",
	"",
	"  g l a t         sort processes by growth over the last interval, live bytes,",
	"                  allocations/s, growth since start; in a stacks view: growth,",
	"                  live bytes, allocations, bytes allocated",
	"  Up Down j k     move the selection (PgUp PgDn Home End); through the frames",
	"                  first where an expanded stack is taller than the screen",
	"  Enter           the call stacks of the selected process; in the stacks view,",
	"                  show or hide the frames of the selected stack (also Space,",
	"                  Right)",
	"  Esc Backspace   back to the process list (in the list: clear the filter)",
	"  /               filter processes by name (substring; Enter keeps it, Esc",
	"                  cancels)",
	"  p               freeze the display (the traced processes are never paused)",
	"  h ?             this help; any key closes it",
	"  Ctrl-L          paint the screen again (after something else wrote over it)",
	"  q               quit: probes are detached (also Ctrl-C, Ctrl-\\)",
	"",
	"Sizes are the bytes the program asked for; GROWTH is the change of live bytes",
	"over the last interval; TREND shows the live bytes of the last 20 intervals.",
};

static void render_status(struct top_view *v, int width)
{
	struct lb l = new_line(v, width, TOP_ATTR_STATUS);

	l.l->fill = true;
	if (v->editing) {
		lb_printf(&l, " Filter by name: %s_   (Enter keeps, Esc cancels)", v->filter);
		return;
	}
	if (v->message[0]) {
		l.l->attr = TOP_ATTR_ALERT;
		lb_printf(&l, " %s", v->message);
		return;
	}
	if (v->mode == MODE_STACKS)
		lb_printf(&l, " q quit  Esc back  Enter frames  g/l/a/t sort: %s  p freeze  h help",
			  sort_names[v->stack_sort]);
	else
		lb_printf(&l, " q quit  Enter stacks  g/l/a/t sort: %s  / filter%s%s  p freeze  "
			      "h help",
			  sort_names[v->proc_sort], v->filter[0] ? ": " : "", v->filter);
}

const struct top_line *top_view__render(struct top_view *v, int width, int height, int *nr)
{
	const struct top_model *m = shown_model(v);
	bool batch = height <= 0;
	int body;

	v->nr_lines = 0;
	v->oom = false;
	if (width > TOP_MAX_COLS)
		width = TOP_MAX_COLS;
	if (width < 1)
		width = 1;
	if (!batch && v->help) {
		for (size_t i = 0; i < sizeof(help_text) / sizeof(help_text[0]); i++) {
			struct lb l = new_line(v, width, i ? TOP_ATTR_NORMAL : TOP_ATTR_TITLE);

			lb_puts(&l, help_text[i]);
		}
	} else {
		render_header(v, m, width, batch);
		new_line(v, width, TOP_ATTR_NORMAL);
		body = batch ? -1 : height - 1 - v->nr_lines;
		if (batch) {
			render_procs(v, m, width, -1, true);
			render_stacks_batch(v, m, width);
		} else if (v->mode == MODE_STACKS) {
			render_stacks_view(v, m, width, body);
		} else {
			/* one line for the table's head */
			render_procs(v, m, width, body > 1 ? body - 1 : 0, false);
		}
	}
	if (!batch) {
		/* exactly height lines, the status line last */
		if (v->nr_lines > height - 1)
			v->nr_lines = height > 1 ? height - 1 : 0;
		while (v->nr_lines < height - 1 && !v->oom)
			new_line(v, width, TOP_ATTR_NORMAL);
		if (height >= 1)
			render_status(v, width);
	}
	if (v->oom)
		return NULL;
	*nr = v->nr_lines;
	return v->rows;
}

int top_view__print(struct top_view *v, FILE *f)
{
	const struct top_line *out;
	int n;

	out = top_view__render(v, TOP_MAX_COLS, 0, &n);
	if (!out)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		size_t len = strlen(out[i].text);

		while (len && out[i].text[len - 1] == ' ')
			len--;
		fprintf(f, "%.*s\n", (int)len, out[i].text);
	}
	fputc('\n', f);
	if (fflush(f) || ferror(f))
		return util__write_error(f);
	return 0;
}

/* ------------------------------------------------------------------ state and keys */

struct top_view *top_view__new(const struct top_view_opts *o)
{
	struct top_view *v = calloc(1, sizeof(*v));

	if (!v)
		return NULL;
	v->o = *o;
	v->proc_sort = o->sort;
	/* a stack's growth since attach is its live bytes */
	v->stack_sort = o->sort == TOP_SORT_TOTAL ? TOP_SORT_LIVE : o->sort;
	top_model__init(&v->live);
	top_model__init(&v->frozen);
	return v;
}

void top_view__free(struct top_view *v)
{
	if (!v)
		return;
	top_view__term_close(v);
	top_model__release(&v->live);
	top_model__release(&v->frozen);
	free(v->idx);
	free(v->rows);
	free(v);
}

int top_view__update(struct top_view *v, const struct snapshot *s, const struct top_stats *st)
{
	if (v->o.repaint_each_update)
		v->repaint = true;
	return top_model__ingest(&v->live, s, st);
}

void top_view__set_message(struct top_view *v, const char *msg)
{
	sanitize(v->message, sizeof(v->message), msg ? msg : "");
}

const struct top_model *top_view__model(const struct top_view *v)
{
	return shown_model(v);
}

bool top_view__in_stacks(const struct top_view *v)
{
	return v->mode == MODE_STACKS;
}

__u32 top_view__selected_pid(const struct top_view *v)
{
	const struct top_model *m = shown_model(v);
	size_t *idx = malloc((m->nr_procs + 1) * sizeof(*idx)), n;
	__u32 pid = 0;

	if (!idx)
		return 0;
	n = top__order_procs(m, v->proc_sort, v->filter, idx);
	if (v->sel_follow) {
		for (size_t i = 0; i < n; i++)
			if (m->procs[idx[i]].pid == v->sel_pid)
				pid = v->sel_pid;
	}
	if (!pid && n)
		pid = m->procs[idx[v->sel_idx < n ? v->sel_idx : n - 1]].pid;
	free(idx);
	return pid;
}

/* New index after a movement key over n rows showing page at once; -1: not a movement. */
static long move_sel(int key, size_t cur, size_t n, int page)
{
	long c = (long)cur, last = n ? (long)n - 1 : 0;

	if (page < 1)
		page = 1;
	switch (key) {
	case TOP_KEY_UP:
	case 'k':
		c--;
		break;
	case TOP_KEY_DOWN:
	case 'j':
		c++;
		break;
	case TOP_KEY_PGUP:
		c -= page;
		break;
	case TOP_KEY_PGDN:
		c += page;
		break;
	case TOP_KEY_HOME:
		c = 0;
		break;
	case TOP_KEY_END:
		c = last;
		break;
	default:
		return -1;
	}
	return c < 0 ? 0 : c > last ? last : c;
}

static void toggle_expanded(struct top_view *v, const struct top_stack *st)
{
	for (int i = 0; i < v->nr_expanded; i++) {
		if (v->expanded[i].allocator == st->allocator &&
		    v->expanded[i].stack_id == st->stack_id) {
			v->expanded[i] = v->expanded[--v->nr_expanded];
			return;
		}
	}
	if (v->nr_expanded == TOP_MAX_EXPANDED)
		v->nr_expanded--; /* forget the oldest-but-one: keeps it bounded */
	v->expanded[v->nr_expanded++] = (struct stack_ref){st->allocator, st->stack_id};
}

static enum top_action key_procs(struct top_view *v, int key)
{
	const struct top_model *m = shown_model(v);
	size_t *idx = scratch_idx(v, m->nr_procs), n;
	long c;

	if (!idx)
		return TOP_ACT_NONE;
	n = top__order_procs(m, v->proc_sort, v->filter, idx);
	if (v->sel_idx >= n)
		v->sel_idx = n ? n - 1 : 0;
	c = move_sel(key, v->sel_idx, n, v->proc_page);
	if (c >= 0) {
		if (!n)
			return TOP_ACT_NONE;
		v->sel_idx = (size_t)c;
		v->sel_follow = true;
		v->sel_pid = m->procs[idx[c]].pid;
		return TOP_ACT_REDRAW;
	}
	switch (key) {
	case TOP_KEY_ENTER:
	case '\r':
	case TOP_KEY_RIGHT:
		if (!n)
			return TOP_ACT_NONE;
		v->stk_pid = m->procs[idx[v->sel_idx]].pid;
		v->mode = MODE_STACKS;
		v->stk_follow = false;
		v->stk_idx = 0;
		v->stk_first_line = 0;
		v->stk_sel_lines = v->stk_scroll = 0;
		v->nr_expanded = 0;
		return TOP_ACT_REDRAW;
	case TOP_KEY_ESC:
	case TOP_KEY_BACKSPACE:
	case 8:
		/* as in the stacks view, "back": here that drops the filter */
		if (!v->filter[0])
			return TOP_ACT_NONE;
		v->filter[0] = '\0';
		return TOP_ACT_REDRAW;
	case '/':
		v->editing = true;
		memcpy(v->filter_saved, v->filter, sizeof(v->filter));
		return TOP_ACT_REDRAW;
	}
	return TOP_ACT_NONE;
}

/*
 * Up, Down, PgUp, PgDn within a selected stack taller than the screen (as last drawn): they
 * scroll through its frames, and move the selection only once at its end. True if scrolled.
 */
static bool scroll_stack(struct top_view *v, int key)
{
	size_t page = v->stk_page > 0 ? (size_t)v->stk_page : 1, max, step;

	if (v->stk_sel_lines <= page)
		return false;
	max = v->stk_sel_lines - page;
	step = key == TOP_KEY_PGDN || key == TOP_KEY_PGUP ? page : 1;
	switch (key) {
	case TOP_KEY_DOWN:
	case 'j':
	case TOP_KEY_PGDN:
		if (v->stk_scroll >= max)
			return false;
		v->stk_scroll = v->stk_scroll + step < max ? v->stk_scroll + step : max;
		return true;
	case TOP_KEY_UP:
	case 'k':
	case TOP_KEY_PGUP:
		if (!v->stk_scroll)
			return false;
		v->stk_scroll = v->stk_scroll > step ? v->stk_scroll - step : 0;
		return true;
	}
	return false;
}

static enum top_action key_stacks(struct top_view *v, int key)
{
	const struct top_model *m = shown_model(v);
	size_t *idx = scratch_idx(v, m->nr_stacks), n;
	long c;

	if (!idx)
		return TOP_ACT_NONE;
	n = top__order_stacks(m, v->stk_pid, v->stack_sort, idx);
	if (v->stk_idx >= n)
		v->stk_idx = n ? n - 1 : 0;
	if (scroll_stack(v, key))
		return TOP_ACT_REDRAW;
	c = move_sel(key, v->stk_idx, n, v->stk_page);
	if (c >= 0) {
		if (!n)
			return TOP_ACT_NONE;
		v->stk_idx = (size_t)c;
		v->stk_scroll = 0;
		v->stk_follow = true;
		v->stk_sel.allocator = m->stacks[idx[c]].allocator;
		v->stk_sel.stack_id = m->stacks[idx[c]].stack_id;
		return TOP_ACT_REDRAW;
	}
	switch (key) {
	case TOP_KEY_ENTER:
	case '\r':
	case ' ':
	case TOP_KEY_RIGHT:
		if (!n)
			return TOP_ACT_NONE;
		toggle_expanded(v, &m->stacks[idx[v->stk_idx]]);
		v->stk_scroll = 0;
		/* the selection stays on this stack while others move around it */
		v->stk_follow = true;
		v->stk_sel.allocator = m->stacks[idx[v->stk_idx]].allocator;
		v->stk_sel.stack_id = m->stacks[idx[v->stk_idx]].stack_id;
		return TOP_ACT_REDRAW;
	case TOP_KEY_ESC:
	case TOP_KEY_BACKSPACE:
	case 8:
	case TOP_KEY_LEFT:
		v->mode = MODE_PROCS;
		return TOP_ACT_REDRAW;
	}
	return TOP_ACT_NONE;
}

enum top_action top_view__key(struct top_view *v, int key)
{
	enum top_sort sort;

	v->message[0] = '\0';
	if (key == TOP_KEY_CTRL_L) {
		/* something else wrote over the screen: everything is painted again */
		v->repaint = true;
		return TOP_ACT_REDRAW;
	}
	if (v->editing) {
		size_t len = strlen(v->filter);

		if (key == TOP_KEY_ENTER || key == '\r') {
			v->editing = false;
		} else if (key == TOP_KEY_ESC) {
			memcpy(v->filter, v->filter_saved, sizeof(v->filter));
			v->editing = false;
		} else if (key == TOP_KEY_BACKSPACE || key == 8) {
			if (len)
				v->filter[len - 1] = '\0';
		} else if (key >= ' ' && key < 0x7f && len + 1 < sizeof(v->filter)) {
			v->filter[len] = (char)key;
			v->filter[len + 1] = '\0';
		} else {
			return TOP_ACT_NONE;
		}
		/* a new filter: the selection starts again on the top row */
		v->sel_follow = false;
		v->sel_idx = 0;
		v->proc_first = 0;
		return TOP_ACT_REDRAW;
	}
	if (key == 'q' || key == 'Q')
		return TOP_ACT_QUIT;
	if (v->help) {
		v->help = false;
		return TOP_ACT_REDRAW;
	}
	switch (key) {
	case 'h':
	case '?':
		v->help = true;
		return TOP_ACT_REDRAW;
	case 'p':
		if (v->is_frozen) {
			v->is_frozen = false;
			top_model__release(&v->frozen);
		} else if (top_model__copy(&v->frozen, &v->live) == 0) {
			v->is_frozen = true;
		} else {
			top_view__set_message(v, "not enough memory to freeze the display");
		}
		return TOP_ACT_REDRAW;
	case 'g':
	case 'l':
	case 'a':
	case 't':
		sort = key == 'g' ? TOP_SORT_GROWTH : key == 'l' ? TOP_SORT_LIVE :
			key == 'a' ? TOP_SORT_ALLOCS : TOP_SORT_TOTAL;
		if (v->mode == MODE_STACKS)
			v->stack_sort = sort;
		else
			v->proc_sort = sort;
		return TOP_ACT_REDRAW;
	}
	return v->mode == MODE_STACKS ? key_stacks(v, key) : key_procs(v, key);
}

/* ------------------------------------------------------------------ terminal (curses) */

static attr_t curses_attr(const struct top_view *v, enum top_attr a)
{
	switch (a) {
	case TOP_ATTR_TITLE:
		return A_BOLD;
	case TOP_ATTR_HEAD:
		return v->colors ? A_REVERSE : A_BOLD | A_UNDERLINE;
	case TOP_ATTR_SELECTED:
		return v->colors ? COLOR_PAIR(2) | A_BOLD : A_REVERSE;
	case TOP_ATTR_ALERT:
		return v->colors ? COLOR_PAIR(1) | A_BOLD : A_BOLD | A_REVERSE;
	case TOP_ATTR_DIM:
		return A_DIM;
	case TOP_ATTR_STATUS:
		return A_REVERSE;
	default:
		return A_NORMAL;
	}
}

int top_view__term_check(void)
{
	const char *term = getenv("TERM");
	char *cup;
	int err;

	/* an unknown type, or one that cannot move the cursor (dumb): nothing to draw with */
	if (setupterm(NULL, fileno(stdout), &err) != OK) {
		elog("cannot drive this terminal (TERM=%s): use --batch\n", term ? term : "");
		return -ENOTTY;
	}
	cup = tigetstr("cup");
	del_curterm(cur_term);
	if (!cup || cup == (char *)-1) {
		elog("cannot drive this terminal (TERM=%s): use --batch\n", term ? term : "");
		return -ENOTTY;
	}
	return 0;
}

int top_view__term_open(struct top_view *v)
{
	if (v->term)
		return 0;
	/* stdin redirected (top < file, a pipe): the keys come from the terminal we draw on */
	v->keys = isatty(fileno(stdin)) ? NULL : fopen("/dev/tty", "re");
	v->scr = newterm(NULL, stdout, v->keys ? v->keys : stdin);
	if (!v->scr) {
		if (v->keys)
			fclose(v->keys);
		v->keys = NULL;
		elog("cannot drive this terminal (TERM=%s): use --batch\n",
		     getenv("TERM") ? getenv("TERM") : "");
		return -ENOTTY;
	}
	set_term(v->scr);
	v->term = true;
	cbreak();
	noecho();
	nonl();
	intrflush(stdscr, FALSE);
	keypad(stdscr, TRUE);
	nodelay(stdscr, TRUE);
	set_escdelay(25);
	curs_set(0);
	if (v->o.color && has_colors() && start_color() == OK) {
		use_default_colors();
		init_pair(1, COLOR_RED, -1);
		init_pair(2, COLOR_BLACK, COLOR_CYAN);
		v->colors = true;
	}
	top_view__term_resize(v);
	return 0;
}

void top_view__term_close(struct top_view *v)
{
	if (!v->term)
		return;
	v->term = false;
	curs_set(1);
	endwin();
	fflush(stdout);
	delscreen(v->scr);
	v->scr = NULL;
	if (v->keys)
		fclose(v->keys);
	v->keys = NULL;
}

int top_view__term_input_fd(const struct top_view *v)
{
	if (!v->term)
		return -1;
	if (v->keys)
		return fileno(v->keys);
	return isatty(0) ? 0 : -1;
}

static int map_key(int ch)
{
	switch (ch) {
	case KEY_UP:
		return TOP_KEY_UP;
	case KEY_DOWN:
		return TOP_KEY_DOWN;
	case KEY_LEFT:
		return TOP_KEY_LEFT;
	case KEY_RIGHT:
		return TOP_KEY_RIGHT;
	case KEY_PPAGE:
		return TOP_KEY_PGUP;
	case KEY_NPAGE:
		return TOP_KEY_PGDN;
	case KEY_HOME:
		return TOP_KEY_HOME;
	case KEY_END:
		return TOP_KEY_END;
	case KEY_ENTER:
	case '\r':
	case '\n':
		return TOP_KEY_ENTER;
	case KEY_BACKSPACE:
	case 8:
	case 127:
		return TOP_KEY_BACKSPACE;
	}
	return ch >= 0 && ch < 256 ? ch : -1;
}

enum top_action top_view__term_input(struct top_view *v)
{
	enum top_action act = TOP_ACT_NONE;
	int ch, got = 0;

	if (!v->term)
		return act;
	while (got < 256 && (ch = getch()) != ERR) {
		int k = map_key(ch);
		enum top_action a;

		got++;
		if (k < 0) {
			act = TOP_ACT_REDRAW;
			continue;
		}
		a = top_view__key(v, k);
		if (a == TOP_ACT_QUIT)
			return a;
		if (a == TOP_ACT_REDRAW)
			act = a;
	}
	v->input_idle = got == 0;
	return act;
}

bool top_view__term_input_idle(const struct top_view *v)
{
	return v->input_idle;
}

void top_view__term_resize(struct top_view *v)
{
	struct winsize ws;

	if (!v->term)
		return;
	if (ioctl(fileno(stdout), TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0)
		resizeterm(ws.ws_row, ws.ws_col);
}

static void paint_line(const struct top_view *v, int y, const struct top_line *l, int width,
		       bool last_row)
{
	attr_t base = curses_attr(v, l->attr);
	int cols = top__text_cols(l->text);

	move(y, 0);
	attrset(base);
	if (l->hl_len > 0) {
		addnstr(l->text, l->hl_start);
		attrset(curses_attr(v, l->hl_attr));
		addnstr(l->text + l->hl_start, l->hl_len);
		attrset(base);
		addstr(l->text + l->hl_start + l->hl_len);
	} else {
		addstr(l->text);
	}
	/* the bottom-right cell is left alone: writing it may scroll some terminals */
	if (l->fill)
		for (int x = cols; x < width - (last_row ? 1 : 0); x++)
			addch(' ');
	attrset(A_NORMAL);
}

void top_view__term_draw(struct top_view *v)
{
	const struct top_line *out;
	int n, h, w;

	if (!v->term)
		return;
	h = LINES;
	w = COLS;
	out = top_view__render(v, w, h, &n);
	if (v->repaint) {
		/* what curses believes is on the screen is not: the next refresh sends it all */
		clearok(curscr, TRUE);
		v->repaint = false;
	}
	erase();
	if (out)
		for (int i = 0; i < n && i < h; i++)
			paint_line(v, i, &out[i], w, i == h - 1);
	else
		mvaddstr(0, 0, "asizeof-bpf: out of memory drawing the screen");
	refresh();
}
