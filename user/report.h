/* SPDX-License-Identifier: MIT */
/* Report writers: one snapshot (already diffed and sorted) -> text or JSON lines. */
#ifndef ASZ_REPORT_H
#define ASZ_REPORT_H

#include <stdbool.h>
#include <stdio.h>
#include "snapshot.h"
#include "symbolizer.h"

enum report_format {
	REPORT_TEXT = 0,
	REPORT_JSON,
	REPORT_COLLAPSED, /* folded stacks for flame graphs: final report only */
	REPORT_PPROF,	  /* gzipped profile.proto: final report only */
};

/* What a collapsed (folded) stack line weighs. */
enum report_weight {
	WEIGHT_LIVE_BYTES = 0,
	WEIGHT_ALLOC_BYTES,
	WEIGHT_ALLOCS,
};

struct report_opts {
	int top_n;	   /* stacks shown; 0 = all */
	enum snap_sort sort;
	int max_frames;	   /* symbolized frames shown per stack in text (JSON: all) */
	enum report_weight weight; /* collapsed only */
};

/* Formats that hold one whole profile are written once, at the end, not every interval. */
static inline bool report__final_only(enum report_format fmt)
{
	return fmt == REPORT_COLLAPSED || fmt == REPORT_PPROF;
}

/*
 * How many of the sorted stacks a format reads in their order (0: all of them): text and JSON
 * only the first top_n, the profiles every one (their tables are built in the stacks' order).
 */
static inline size_t report__stacks_ranked(enum report_format fmt, const struct report_opts *o)
{
	if ((fmt == REPORT_TEXT || fmt == REPORT_JSON) && o->top_n > 0)
		return (size_t)o->top_n;
	return 0;
}

/*
 * Write one report. The snapshot's first report__stacks_ranked() stacks must be in order (of
 * snapshot__rank_stacks()); the first top_n are written.
 * sym may be NULL (frames then carry addresses only). Returns 0 or a negative errno.
 */
int report__write(FILE *f, enum report_format fmt, const struct snapshot *s,
		  struct symbolizer *sym, const struct report_opts *o);
int report_text__write(FILE *f, const struct snapshot *s, struct symbolizer *sym,
		       const struct report_opts *o);
int report_json__write(FILE *f, const struct snapshot *s, struct symbolizer *sym,
		       const struct report_opts *o);
int report_collapsed__write(FILE *f, const struct snapshot *s, struct symbolizer *sym,
			    const struct report_opts *o);
int report_pprof__write(FILE *f, const struct snapshot *s, struct symbolizer *sym,
			const struct report_opts *o);

#endif
