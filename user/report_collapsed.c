// SPDX-License-Identifier: MIT
/*
 * Collapsed ("folded") stacks for flame graphs: one line per distinct stack, root first,
 *
 *   comm;outermost;...;innermost WEIGHT
 *
 * Every return address expands to its inline chain; inlined frames carry the "_[i]" suffix
 * flame graph tools know. Frames without a function show as "[module+0xOFFSET]" (offset in the
 * module file, for eu-addr2line) or the bare address. Stacks of the program's own mappings
 * (mmap, counted apart from the heap) end in an "[mmap]" frame. Stacks that fold to the same
 * text (same comm and frames, different pids or allocators) are merged, and lines come out
 * sorted, as stackcollapse tools produce them. Every stack is written, whatever --top says.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "report.h"
#include "util.h"

/* Frames one return address can expand to (its inline chain); deeper chains are cut. */
#define COLLAPSED_MAX_INLINE 32

struct folded {
	char *text;
	__u64 weight;
};

struct sbuf {
	char *p;
	size_t len, cap;
	int err;
};

static void sb_putc(struct sbuf *b, char c)
{
	if (b->err)
		return;
	if (util__reserve(&b->p, &b->cap, b->len + 2, 1, 256)) {
		b->err = -ENOMEM;
		return;
	}
	b->p[b->len++] = c;
	b->p[b->len] = '\0';
}

/*
 * A name inside a frame: ';' separates frames and a newline ends the line, so neither may stay;
 * bytes that are not UTF-8 become U+FFFD (flame graph tools read UTF-8).
 */
static void sb_name(struct sbuf *b, const char *s, size_t max)
{
	size_t len = strnlen(s, max), n;

	for (size_t i = 0; i < len; i += n) {
		unsigned char c = s[i];

		n = util__utf8_len(s + i, len - i);
		if (!n) {
			for (int k = 0; k < 3; k++)
				sb_putc(b, UTIL_UTF8_REPLACEMENT[k]);
			n = 1;
			continue;
		}
		if (n > 1) {
			for (size_t k = 0; k < n; k++)
				sb_putc(b, s[i + k]);
			continue;
		}
		if (c == ';')
			c = ':';
		else if (c < 0x20 || c == 0x7f)
			c = '?';
		sb_putc(b, c);
	}
}

static void sb_printf(struct sbuf *b, const char *fmt, unsigned long long v)
{
	char tmp[64];

	snprintf(tmp, sizeof(tmp), fmt, v);
	sb_name(b, tmp, sizeof(tmp));
}

static void sb_frame(struct sbuf *b, const struct sym_frame *fr)
{
	sb_putc(b, ';');
	if (fr->func) {
		sb_name(b, fr->func, (size_t)-1);
		if (fr->inlined)
			sb_name(b, "_[i]", 4);
	} else if (fr->module) {
		sb_putc(b, '[');
		sb_name(b, util__basename(fr->module), (size_t)-1);
		sb_printf(b, "+0x%llx]", fr->module_offset);
	} else {
		sb_printf(b, "0x%llx", fr->addr);
	}
}

/* The stack's weight; false when it has none (zero or negative: a flame graph cannot draw it). */
static bool stack_weight(const struct snap_stack *st, enum report_weight w, __u64 *out)
{
	switch (w) {
	case WEIGHT_LIVE_BYTES:
		if (st->live_bytes <= 0)
			return false;
		*out = st->live_bytes;
		return true;
	case WEIGHT_ALLOC_BYTES:
		*out = st->alloc_bytes;
		return *out != 0;
	case WEIGHT_ALLOCS:
		*out = st->allocs;
		return *out != 0;
	}
	return false;
}

static void fold_stack(struct sbuf *b, const struct snapshot *s, const struct snap_stack *st,
		       struct symbolizer *sym)
{
	const struct snap_proc *p = snapshot__find_proc(s, st->pid);
	struct sym_frame frames[COLLAPSED_MAX_INLINE];
	int n, j;

	if (p && p->comm[0])
		sb_name(b, p->comm, ASZ_COMM_LEN);
	else
		sb_printf(b, "[pid %llu]", st->pid);
	/* the kernel cut the stack: its root is missing, say so where the root would be */
	if (st->flags & ASZ_STACK_PARTIAL) {
		sb_putc(b, ';');
		sb_name(b, "[truncated]", (size_t)-1);
	}
	if (!st->ips || !st->nr_frames) {
		sb_putc(b, ';');
		sb_name(b, "[unknown]", (size_t)-1);
	}
	for (__u32 i = st->ips ? st->nr_frames : 0; i-- > 0;) {
		__u64 ip = st->ips[i];

		n = sym ? symbolizer__resolve(sym, st->pid, ip, frames, COLLAPSED_MAX_INLINE) : 0;
		if (n <= 0) {
			memset(frames, 0, sizeof(frames[0]));
			frames[0].addr = ip ? ip - 1 : 0;
			n = 1;
		}
		/* the chain is innermost first: the real function, then what was inlined into it */
		for (j = n - 1; j >= 0; j--)
			sb_frame(b, &frames[j]);
	}
	/* the program's own mappings, apart from the heap blocks of the same call stack */
	if (ASZ_IS_MMAP(st->allocator)) {
		sb_putc(b, ';');
		sb_name(b, "[mmap]", (size_t)-1);
	}
}

static int cmp_folded(const void *a, const void *b)
{
	return strcmp(((const struct folded *)a)->text, ((const struct folded *)b)->text);
}

int report_collapsed__write(FILE *f, const struct snapshot *s, struct symbolizer *sym,
			    const struct report_opts *o)
{
	struct folded *lines = NULL;
	size_t nr = 0, i, j;
	int err = 0;

	if (!f || !s || !o)
		return -EINVAL;
	if (s->nr_stacks) {
		lines = calloc(s->nr_stacks, sizeof(*lines));
		if (!lines)
			return -ENOMEM;
	}
	for (i = 0; i < s->nr_stacks; i++) {
		const struct snap_stack *st = &s->stacks[i];
		struct sbuf b = {};
		__u64 w;

		if (!stack_weight(st, o->weight, &w))
			continue;
		fold_stack(&b, s, st, sym);
		if (b.err) {
			free(b.p);
			err = b.err;
			goto cleanup;
		}
		lines[nr++] = (struct folded){.text = b.p, .weight = w};
	}
	if (nr)
		qsort(lines, nr, sizeof(*lines), cmp_folded);
	for (i = 0; i < nr; i = j) {
		__u64 w = lines[i].weight;

		for (j = i + 1; j < nr && strcmp(lines[i].text, lines[j].text) == 0; j++)
			w += lines[j].weight;
		if (fprintf(f, "%s %llu\n", lines[i].text, (unsigned long long)w) < 0) {
			err = util__write_error(f);
			goto cleanup;
		}
	}
	if (fflush(f))
		err = util__write_error(f);
cleanup:
	for (i = 0; i < nr; i++)
		free(lines[i].text);
	free(lines);
	return err;
}
