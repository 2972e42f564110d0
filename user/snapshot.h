/* SPDX-License-Identifier: MIT */
/*
 * A snapshot: one plain copy of the kernel's aggregates at one instant. Views read snapshots,
 * never BPF maps. Growth and rates come from diffing two snapshots.
 */
#ifndef ASZ_SNAPSHOT_H
#define ASZ_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>
#include "asizeof.h"

struct snap_proc {
	__u32 pid;
	__u32 gen; /* execs since first seen: each image's figures start from zero */
	char comm[ASZ_COMM_LEN];
	bool exited;
	__s64 live_bytes;
	__s64 live_allocs;
	__u64 alloc_bytes;
	__u64 allocs;
	__u64 frees;
	__u64 unknown_frees;
	__u64 drops;	  /* its blocks not recorded because a map was full */
	/* alloc_bytes, allocs, frees are of its current image; these count every image */
	__u64 life_alloc_bytes, life_allocs, life_frees;
	__s64 mmap_bytes; /* anonymous mappings made directly by the program (not the heap's) */
	__s64 mmap_regions;
	/*
	 * Of its image's heap aggregates retired when idle (--max-stacks pressure): counted here,
	 * in no stack's figures (their frees as many as their allocations: no block was held).
	 */
	__u64 retired_allocs, retired_alloc_bytes;
	/* NULL if unknown (the process was gone before we looked); a snapshot's own copy */
	char *exe;
	char cgroup[256]; /* cgroup v2 path, "" if unknown */
	/* filled by snapshot__diff() */
	__s64 growth_bytes;	  /* since the previous snapshot */
	__s64 growth_total_bytes; /* since the first snapshot (attach) */
	double alloc_rate;	  /* allocations per second over the last interval */
	double free_rate;
};

struct snap_stack {
	__u32 pid;
	__u32 allocator; /* enum asz_allocator */
	__u64 stack_id;
	__s64 live_bytes;
	__s64 live_allocs;
	__u64 alloc_bytes;
	__u64 allocs;
	__u64 frees;
	__s64 growth_bytes; /* filled by snapshot__diff() */
	__u32 nr_frames;
	__u32 flags;	  /* ASZ_STACK_TRUNCATED */
	const __u64 *ips; /* return addresses, innermost first; owned by the engine's stack cache */
};

/* The unwind tables behind the stacks (--unwind dwarf), as the engine saw them. */
struct snap_unwind {
	bool dwarf;
	__u32 modules; /* files known to the unwinder */
	__u32 tables;  /* of which with a table (the rest: frame pointers) */
	__u64 rows;
	__u64 bytes;
	__u64 build_ns;
	struct asz_unwind_stats work; /* the BPF unwinder's, summed over CPUs */
};

struct snapshot {
	double time;	  /* unix time, seconds */
	double elapsed_s; /* since the engine started tracing */
	__u64 mono_ns;
	bool final;
	__u64 sample_bytes; /* 0: exact; else the sampling period, and the figures are estimates */
	__u64 min_size;	    /* 0: every size; else smaller blocks are in no figure */
	struct snap_proc *procs;
	size_t nr_procs;
	struct snap_stack *stacks;
	size_t nr_stacks;
	__u64 drops[ASZ_NR_DROPS];
	struct snap_unwind unwind;
};

enum snap_sort {
	SNAP_SORT_GROWTH = 0,
	SNAP_SORT_LIVE,
	SNAP_SORT_ALLOCS,
	SNAP_SORT_BYTES,
};

struct snapshot *snapshot__new(void);
void snapshot__free(struct snapshot *s);
/* Append copies (of p->exe too: "" becomes NULL); return 0 or -ENOMEM. */
int snapshot__add_proc(struct snapshot *s, const struct snap_proc *p);
/* Set the exe of a process of s (a copy; NULL or "": unknown); 0 or -ENOMEM. */
int snapshot__set_exe(struct snap_proc *p, const char *exe);
int snapshot__add_stack(struct snapshot *s, const struct snap_stack *st);
/*
 * Fill growth and rates of cur against prev (NULL: growth = live, rates 0) and the growth since
 * the first snapshot against first (NULL: same as live).
 */
void snapshot__diff(struct snapshot *cur, const struct snapshot *prev, const struct snapshot *first);
/*
 * Sort stacks by key, descending, ties broken by live bytes (descending) then pid, stack id and
 * allocator (ascending).
 */
void snapshot__sort_stacks(struct snapshot *s, enum snap_sort key);
/*
 * The first n stacks as snapshot__sort_stacks() orders them, the others after them in no
 * particular order (n = 0, or n at least as many as there are: all sorted).
 */
void snapshot__rank_stacks(struct snapshot *s, enum snap_sort key, size_t n);
/* Sort processes by key, descending. */
void snapshot__sort_procs(struct snapshot *s, enum snap_sort key);
const struct snap_proc *snapshot__find_proc(const struct snapshot *s, __u32 pid);

const char *snapshot__allocator_name(__u32 allocator);
const char *snapshot__drop_name(int drop);
/* Does the counter mean blocks or calls went unrecorded (else it is informational)? */
bool snapshot__drop_is_loss(int drop);
/*
 * The non-zero counters of s as "name=N name=N" into buf (cut to size, NUL-terminated; "" when
 * all are zero); returns how many are non-zero. SNAPSHOT_DROPS_TEXT bytes hold them all.
 */
int snapshot__drops_text(const struct snapshot *s, char *buf, size_t size);
#define SNAPSHOT_DROPS_TEXT (ASZ_NR_DROPS * 48) /* a name, '=', 20 digits, ' ' each */
int snapshot__parse_sort(const char *s, enum snap_sort *out);

#endif
