// SPDX-License-Identifier: MIT
/* Published states of `serve` and their history of changes (see serve_state.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "serve_state.h"
#include "util.h"

struct hist_change {
	struct pprof_key key;
	__s64 d[PPROF_NR_VALUES];
};

/* The changes one snapshot brought; shared by every state whose window includes it. */
struct hist_entry {
	int refs;
	__u64 mono_ns;
	size_t nr;
	struct hist_change *ch;
};

struct serve_history {
	struct hist_change *prev; /* every stack's values at the last snapshot, sorted by key */
	size_t nr_prev;
	struct hist_entry **ents; /* oldest first */
	size_t nr, cap;
	size_t nr_changes;
	bool from_start; /* ents[0] holds the changes from nothing (the first snapshot) */
	size_t max_changes, max_snapshots;
};

struct serve_state {
	int refs;
	char *metrics;
	size_t metrics_len;
	struct pprof_model *model;
	struct hist_entry **ents; /* references, oldest first; the last is this snapshot's */
	size_t nr;
	bool from_start;
	double elapsed_s;
};

static void entry_put(struct hist_entry *e)
{
	if (e && __atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		free(e->ch);
		free(e);
	}
}

struct serve_history *serve_history__new(void)
{
	struct serve_history *h = calloc(1, sizeof(*h));

	if (h) {
		h->from_start = true;
		h->max_changes = SERVE_MAX_CHANGES;
		h->max_snapshots = SERVE_MAX_SNAPSHOTS;
	}
	return h;
}

void serve_history__set_limits(struct serve_history *h, size_t max_changes, size_t max_snapshots)
{
	h->max_changes = max_changes;
	h->max_snapshots = max_snapshots;
}

void serve_history__size(const struct serve_history *h, size_t *snapshots, size_t *changes)
{
	*snapshots = h->nr;
	*changes = h->nr_changes;
}

void serve_history__free(struct serve_history *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->nr; i++)
		entry_put(h->ents[i]);
	free(h->ents);
	free(h->prev);
	free(h);
}

static int cmp_change(const void *a, const void *b)
{
	return pprof_key__cmp(&((const struct hist_change *)a)->key,
			      &((const struct hist_change *)b)->key);
}

static bool nonzero(const __s64 *d)
{
	return d[0] || d[1] || d[2] || d[3];
}

static void drop_oldest(struct serve_history *h)
{
	h->nr_changes -= h->ents[0]->nr;
	entry_put(h->ents[0]);
	memmove(h->ents, h->ents + 1, (h->nr - 1) * sizeof(*h->ents));
	h->nr--;
	h->from_start = false;
}

/* The changes of a then b (both sorted by key) as one entry ending when b does. */
static struct hist_entry *entry_merge(const struct hist_entry *a, const struct hist_entry *b)
{
	struct hist_entry *e = calloc(1, sizeof(*e));
	size_t i = 0, j = 0, n = 0;

	if (!e)
		return NULL;
	e->ch = calloc(a->nr + b->nr ? a->nr + b->nr : 1, sizeof(*e->ch));
	if (!e->ch) {
		free(e);
		return NULL;
	}
	while (i < a->nr || j < b->nr) {
		int c = i == a->nr ? 1 : j == b->nr ? -1 : pprof_key__cmp(&a->ch[i].key, &b->ch[j].key);
		struct hist_change *x = &e->ch[n];

		if (c < 0) {
			*x = a->ch[i++];
		} else if (c > 0) {
			*x = b->ch[j++];
		} else {
			*x = a->ch[i];
			for (int v = 0; v < PPROF_NR_VALUES; v++)
				x->d[v] += b->ch[j].d[v];
			i++;
			j++;
		}
		/* a process that came and went in between: nothing */
		if (nonzero(x->d))
			n++;
	}
	e->refs = 1;
	e->mono_ns = b->mono_ns;
	e->nr = n;
	if (n < a->nr + b->nr) {
		struct hist_change *shrunk = realloc(e->ch, (n ? n : 1) * sizeof(*e->ch));

		if (shrunk)
			e->ch = shrunk;
	}
	return e;
}

/*
 * Remove the one snapshot (not the first, nor the newest) whose loss coarsens the windows the
 * least: ents[k] and ents[k + 1] become one, and a window that began at ents[k] begins at
 * ents[k - 1], a gap of t[k + 1] - t[k - 1] at an age of now - t[k]. The relative error is
 * smallest far back: the history stays fine for recent windows, ever coarser for old ones.
 * Returns 0, -ENOMEM, or -EAGAIN (for_changes, and the merge would not save any).
 */
static int merge_cheapest(struct serve_history *h, bool for_changes)
{
	__u64 now = h->ents[h->nr - 1]->mono_ns;
	struct hist_entry *m;
	double best = 0;
	size_t k, at = 0;

	for (k = 1; k + 1 < h->nr; k++) {
		double err = (double)(h->ents[k + 1]->mono_ns - h->ents[k - 1]->mono_ns) /
			     (double)(now - h->ents[k]->mono_ns + 1);

		if (!at || err < best) {
			best = err;
			at = k;
		}
	}
	m = entry_merge(h->ents[at], h->ents[at + 1]);
	if (!m)
		return -ENOMEM;
	/* changes of different stacks: nothing saved, the oldest must go instead */
	if (for_changes && m->nr == h->ents[at]->nr + h->ents[at + 1]->nr) {
		entry_put(m);
		return -EAGAIN;
	}
	h->nr_changes += m->nr;
	h->nr_changes -= h->ents[at]->nr + h->ents[at + 1]->nr;
	entry_put(h->ents[at]);
	entry_put(h->ents[at + 1]);
	h->ents[at] = m;
	memmove(h->ents + at + 1, h->ents + at + 2, (h->nr - at - 2) * sizeof(*h->ents));
	h->nr--;
	return 0;
}

/* Record what changed since the last snapshot; the new values become the reference. */
static int history_advance(struct serve_history *h, const struct snapshot *s)
{
	struct hist_change *cur = calloc(s->nr_stacks ? s->nr_stacks : 1, sizeof(*cur));
	struct hist_change *ch = calloc(s->nr_stacks + h->nr_prev + 1, sizeof(*ch));
	struct hist_entry *e = calloc(1, sizeof(*e));
	size_t i = 0, j = 0, n = 0;
	__u64 cutoff;

	if (!cur || !ch || !e)
		goto nomem;
	if (util__reserve(&h->ents, &h->cap, h->nr + 1, sizeof(*h->ents), 64))
		goto nomem;
	for (size_t k = 0; k < s->nr_stacks; k++) {
		const struct snap_stack *st = &s->stacks[k];

		const struct snap_proc *p = snapshot__find_proc(s, st->pid);

		cur[k].key = (struct pprof_key){.pid = st->pid, .allocator = st->allocator,
						.stack_id = st->stack_id};
		/* as the profiles: an exited process holds nothing */
		pprof__stack_values(st, !(p && p->exited), cur[k].d);
	}
	qsort(cur, s->nr_stacks, sizeof(*cur), cmp_change);
	/* merge: new and changed stacks, and stacks that vanished (their values go to zero) */
	while (i < s->nr_stacks || j < h->nr_prev) {
		int c = i == s->nr_stacks ? 1
			: j == h->nr_prev ? -1
					  : pprof_key__cmp(&cur[i].key, &h->prev[j].key);
		struct hist_change *x = &ch[n];

		if (c < 0) {
			*x = cur[i++];
		} else if (c > 0) {
			x->key = h->prev[j].key;
			for (int v = 0; v < PPROF_NR_VALUES; v++)
				x->d[v] = -h->prev[j].d[v];
			j++;
		} else {
			x->key = cur[i].key;
			for (int v = 0; v < PPROF_NR_VALUES; v++)
				x->d[v] = cur[i].d[v] - h->prev[j].d[v];
			i++;
			j++;
		}
		if (nonzero(x->d))
			n++;
	}
	free(h->prev);
	h->prev = cur;
	h->nr_prev = s->nr_stacks;
	/* most snapshots change few stacks: keep only what changed */
	if (n == 0) {
		free(ch);
		ch = NULL;
	} else {
		struct hist_change *shrunk = realloc(ch, n * sizeof(*ch));

		if (shrunk)
			ch = shrunk;
	}
	e->refs = 1;
	e->mono_ns = s->mono_ns;
	e->nr = n;
	e->ch = ch;
	h->ents[h->nr++] = e;
	h->nr_changes += n;

	/* keep the newest entry at or before the longest window as the base */
	cutoff = s->mono_ns > (__u64)(SERVE_MAX_WINDOW_S * 1e9)
			 ? s->mono_ns - (__u64)(SERVE_MAX_WINDOW_S * 1e9)
			 : 0;
	while (h->nr >= 2 && h->ents[1]->mono_ns <= cutoff)
		drop_oldest(h);
	/*
	 * Over budget: coarser in the past rather than shorter, where merging saves changes (the
	 * same stacks changing in both); else, and after a few merges (each copies two entries),
	 * the oldest snapshot goes.
	 */
	for (int merges = 0;
	     h->nr >= 2 && (h->nr_changes > h->max_changes || h->nr > h->max_snapshots);) {
		if (h->nr < 3 || merges++ >= SERVE_MAX_MERGES ||
		    merge_cheapest(h, h->nr <= h->max_snapshots))
			drop_oldest(h);
	}
	return 0;
nomem:
	free(cur);
	free(ch);
	free(e);
	return -ENOMEM;
}

int serve_state__new(struct serve_history *h, const struct snapshot *s, struct pprof_model *model,
		     char *metrics, size_t metrics_len, struct serve_state **out)
{
	struct serve_state *st;
	int err;

	*out = NULL;
	st = calloc(1, sizeof(*st));
	if (!st) {
		free(metrics);
		pprof_model__free(model);
		return -ENOMEM;
	}
	st->refs = 1;
	st->metrics = metrics;
	st->metrics_len = metrics_len;
	st->model = model;
	st->elapsed_s = s->elapsed_s;
	err = history_advance(h, s);
	if (!err) {
		st->ents = calloc(h->nr, sizeof(*st->ents));
		if (!st->ents)
			err = -ENOMEM;
	}
	if (err) {
		serve_state__put(st);
		return err;
	}
	for (size_t i = 0; i < h->nr; i++) {
		__atomic_add_fetch(&h->ents[i]->refs, 1, __ATOMIC_RELAXED);
		st->ents[i] = h->ents[i];
	}
	st->nr = h->nr;
	st->from_start = h->from_start;
	*out = st;
	return 0;
}

void serve_state__get(struct serve_state *st)
{
	__atomic_add_fetch(&st->refs, 1, __ATOMIC_RELAXED);
}

void serve_state__put(struct serve_state *st)
{
	if (!st || __atomic_sub_fetch(&st->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	for (size_t i = 0; i < st->nr; i++)
		entry_put(st->ents[i]);
	free(st->ents);
	free(st->metrics);
	pprof_model__free(st->model);
	free(st);
}

const char *serve_state__metrics(const struct serve_state *st, size_t *len)
{
	*len = st->metrics_len;
	return st->metrics;
}

/*
 * Values of the model's samples over the last `seconds`: the sum of the changes after the
 * base, the newest snapshot taken at least that long before the current one, less half an
 * interval (or, if the history does not reach that far, its oldest snapshot, or nothing at
 * all when it still starts at the first snapshot). *window_s: what the values cover.
 */
static __s64 *window_values(const struct serve_state *st, double seconds, double *window_s)
{
	const struct pprof_model *m = st->model;
	/* at least 1 ns: a window of less is the last interval's, as 1e-9 s is */
	__u64 now = st->ents[st->nr - 1]->mono_ns, want = (__u64)ceil(seconds * 1e9), slack = 0;
	size_t first = 0, nr = pprof_model__nr_samples(m);
	__s64 *vals = calloc(nr ? nr * PPROF_NR_VALUES : 1, sizeof(*vals));

	if (!vals)
		return NULL;
	/*
	 * Snapshots are late by a little, never on the dot: one that is 2 intervals old less a
	 * few ms is the base of a 2-interval window (the one before made it 3). Half the last
	 * interval at most, and less than half the window: never the current snapshot itself.
	 */
	if (st->nr >= 2)
		slack = (now - st->ents[st->nr - 2]->mono_ns) / 2;
	if (slack > want / 2)
		slack = want / 2;
	want -= slack;
	for (size_t k = st->nr; k-- > 0;) {
		if (now - st->ents[k]->mono_ns >= want) {
			first = k + 1;
			break;
		}
		if (k == 0)
			first = st->from_start ? 0 : 1;
	}
	if (first == 0)
		*window_s = st->elapsed_s;
	else
		*window_s = (now - st->ents[first - 1]->mono_ns) / 1e9;
	for (size_t k = first; k < st->nr; k++) {
		const struct hist_entry *e = st->ents[k];

		for (size_t c = 0; c < e->nr; c++) {
			ssize_t idx = pprof_model__find(m, &e->ch[c].key);

			if (idx < 0)
				continue; /* a stack gone by now: nothing left to show it with */
			for (int v = 0; v < PPROF_NR_VALUES; v++)
				vals[idx * PPROF_NR_VALUES + v] += e->ch[c].d[v];
		}
	}
	return vals;
}

int serve_state__heap(const struct serve_state *st, const struct serve_heap_query *q, void **out,
		      size_t *len)
{
	struct pprof_encode_opts o = {.pid = q->pid, .comm = q->comm, .duration_s = -1};
	__s64 *vals = NULL;
	char comment[200];
	int err;

	if (q->seconds > 0) {
		vals = window_values(st, q->seconds, &o.duration_s);
		if (!vals)
			return -ENOMEM;
		snprintf(comment, sizeof(comment),
			 "delta over the last %.3f s: alloc_* = allocated in the window, "
			 "inuse_* = change of live (negative: net freed)",
			 o.duration_s);
		o.values = vals;
		o.comment = comment;
	}
	err = pprof_model__encode(st->model, &o, out, len);
	free(vals);
	return err;
}
