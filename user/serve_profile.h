/* SPDX-License-Identifier: MIT */
/*
 * Heap profiles in pprof's terms (profile.proto), implemented in report_pprof.c and shared by
 * `-f pprof` and `serve`'s /debug/pprof/heap.
 *
 * A model is built once from a snapshot, symbolizing every stack (on the thread that owns the
 * symbolizer), and is immutable after that: it copies every string it needs, so any thread may
 * encode it, many times over, with filters or with other values (a delta over a window).
 *
 * Samples: one per (pid, allocator, stack), sorted by that key, with four values in this order:
 *   alloc_objects/count, alloc_space/bytes, inuse_objects/count, inuse_space/bytes
 * (the default sample type is inuse_space), and labels pid (numeric), comm and allocator.
 */
#ifndef ASZ_SERVE_PROFILE_H
#define ASZ_SERVE_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <linux/types.h>
#include "snapshot.h"
#include "symbolizer.h"

enum pprof_value {
	PPROF_ALLOC_OBJECTS = 0,
	PPROF_ALLOC_SPACE,
	PPROF_INUSE_OBJECTS,
	PPROF_INUSE_SPACE,
	PPROF_NR_VALUES,
};

struct pprof_key {
	__u32 pid;
	__u32 allocator;
	__u64 stack_id;
};

/*
 * The four values of a stack, in enum pprof_value order; held false (its process exited and
 * the view is of what processes hold now): nothing in use.
 */
void pprof__stack_values(const struct snap_stack *st, bool held, __s64 v[PPROF_NR_VALUES]);
int pprof_key__cmp(const struct pprof_key *a, const struct pprof_key *b);

struct pprof_model;
/* Builds models; keeps what it read from ELF files (build-ids, segments) for the next one. */
struct pprof_builder;

struct pprof_builder *pprof_builder__new(void);
void pprof_builder__free(struct pprof_builder *b);
/*
 * Do an exited process's blocks stay in use? Yes by default: a report at the end shows what a
 * program leaked. No for serve, whose profiles are of what processes hold now (as its metrics).
 */
void pprof_builder__set_exited_held(struct pprof_builder *b, bool held);
/*
 * Model every stack of s that has a nonzero value (sym may be NULL: addresses only).
 * Returns 0 or a negative errno.
 */
int pprof_builder__build(struct pprof_builder *b, const struct snapshot *s,
			 struct symbolizer *sym, struct pprof_model **out);
/* Module files whose ELF facts are kept: those the last model used. */
size_t pprof_builder__nr_modules(const struct pprof_builder *b);

void pprof_model__free(struct pprof_model *m);
size_t pprof_model__nr_samples(const struct pprof_model *m);
const struct pprof_key *pprof_model__key(const struct pprof_model *m, size_t i);
/* The sample with key k, or -1. */
ssize_t pprof_model__find(const struct pprof_model *m, const struct pprof_key *k);

struct pprof_encode_opts {
	__u32 pid;	     /* only this process; 0: every one */
	const char *comm;    /* only processes with this name; NULL: every one */
	const __s64 *values; /* NULL: the model's; else PPROF_NR_VALUES per sample, in model order */
	double duration_s;   /* what the values cover; < 0: since tracing started */
	const char *comment; /* one more comment line, or NULL */
};

/*
 * Serialize (samples whose values are all zero are left out, and so is whatever only they
 * referenced) and gzip. *out is malloc'ed. Returns 0 or a negative errno.
 */
int pprof_model__encode(const struct pprof_model *m, const struct pprof_encode_opts *o,
			void **out, size_t *len);

#endif
