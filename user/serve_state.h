/* SPDX-License-Identifier: MIT */
/*
 * What `serve` publishes after each snapshot: an immutable, reference-counted state (the
 * metrics text, the pprof model, and the recent history of changes) that the HTTP threads read
 * while the sampler thread goes on. Only the sampler thread creates states and touches the
 * history; any thread may take, read and release a state.
 *
 * History: per snapshot, the changes of every stack's four pprof values since the snapshot
 * before. A delta profile over the last N seconds is the sum of the changes after the newest
 * snapshot taken at least N seconds (less half an interval) before the current one: exact, and
 * cheap for stacks that did not change.
 */
#ifndef ASZ_SERVE_STATE_H
#define ASZ_SERVE_STATE_H

#include <stddef.h>
#include <linux/types.h>
#include "serve_profile.h"
#include "snapshot.h"

/* The longest window ?seconds= covers; older history is dropped. */
#define SERVE_MAX_WINDOW_S 3600.0
/*
 * At most this many stack changes (48 bytes each: 12 MiB) and snapshots are kept in the
 * history; beyond, snapshots far back are merged (their windows coarser), or where that saves
 * nothing (changes of different stacks) the oldest are dropped.
 */
#define SERVE_MAX_CHANGES (1u << 18)
#define SERVE_MAX_SNAPSHOTS 4096
/* Merges a snapshot may cause before the oldest snapshots are dropped instead. */
#define SERVE_MAX_MERGES 8

struct serve_history;
struct serve_state;

struct serve_history *serve_history__new(void);
void serve_history__free(struct serve_history *h);
/* Other bounds than SERVE_MAX_CHANGES and SERVE_MAX_SNAPSHOTS (tests). */
void serve_history__set_limits(struct serve_history *h, size_t max_changes, size_t max_snapshots);
/* Snapshots and stack changes the history holds now. */
void serve_history__size(const struct serve_history *h, size_t *snapshots, size_t *changes);

/*
 * The state of snapshot s (every snapshot, in order): takes ownership of model and metrics
 * (malloc'ed) whatever the result. Returns 0 or a negative errno.
 */
int serve_state__new(struct serve_history *h, const struct snapshot *s, struct pprof_model *model,
		     char *metrics, size_t metrics_len, struct serve_state **out);
void serve_state__get(struct serve_state *st);
/* Release a reference; the last one frees. Safe on NULL. */
void serve_state__put(struct serve_state *st);

const char *serve_state__metrics(const struct serve_state *st, size_t *len);

struct serve_heap_query {
	__u32 pid;	  /* 0: every process */
	const char *comm; /* NULL: every name */
	double seconds;	  /* 0: everything since attach; else the delta over this window */
};

/* The gzipped pprof profile for a query: *out malloc'ed. Returns 0 or a negative errno. */
int serve_state__heap(const struct serve_state *st, const struct serve_heap_query *q, void **out,
		      size_t *len);

#endif
