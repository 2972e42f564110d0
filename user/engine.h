/* SPDX-License-Identifier: MIT */
/*
 * The engine: owns the BPF skeleton and its links. open -> set rodata and map sizes -> load ->
 * attach per target -> collect snapshots -> close. One engine serves every mode.
 */
#ifndef ASZ_ENGINE_H
#define ASZ_ENGINE_H

#include <stdbool.h>
#include <sys/types.h>
#include "attach.h"
#include "snapshot.h"
#include "unwind.h"

struct engine_opts {
	__u32 max_allocs; /* live blocks tracked */
	__u32 max_stacks;
	__u32 max_aggs;	  /* (process, allocator, stack) aggregates */
	__u32 max_procs; /* processes accounted at once (exited ones until forgotten); 0: default */
	__u32 max_depth;  /* stack frames */
	enum attach_mode attach;
	bool empty_probes; /* benchmarks: attach programs that do nothing */
	bool entry_only;   /* ... and no return probes */
	bool scratch_taken; /* tests: every CPU's stack scratch looks taken (stack_preempted) */
	__u64 sample_bytes; /* 0: every block; else Poisson sampling of one byte in sample_bytes */
	__u64 min_size;	    /* blocks smaller are not recorded */
	bool system_wide;   /* every process (but this one), filtered by comms */
	const char *const *comms;
	int nr_comms;
	const char *cgroup; /* system-wide: only tasks under this cgroup v2 directory */
	bool include_self;  /* system-wide: trace the profiler too (default: excluded) */
	enum unwind_mode unwind;
	__u32 max_unwind_rows; /* rows of all unwind tables together (16 bytes each); 0: default */
	bool own_new; /* a target may use an allocator with its own operator new (see BPF) */
};

#define ENGINE_MAX_COMMS 8
/*
 * Aggregates a stack may have: --max-stacks allows as many short as deep stacks, processes of
 * one program share stacks, and a block whose stack did not fit is aggregated under no stack.
 */
#define ENGINE_AGGS_PER_STACK 4u
/*
 * Unwind rows by default: 2M (32 MiB) for given targets, 4M (64 MiB) system-wide. libc is ~28k
 * rows, libstdc++ ~34k, gcc's cc1 ~480k, libLLVM ~950k (clang-14 maps ~2.5M in all).
 */
#define ENGINE_DEFAULT_UNWIND_ROWS (1u << 21)
#define ENGINE_DEFAULT_UNWIND_ROWS_ALL (1u << 22)
/*
 * Process entries by default: 4096 for given targets, 65536 system-wide (a fork storm of 3,000
 * processes a second keeps ~30,000 until they are forgotten, two reports after they exit). The
 * kernel charges 16 bytes per entry up front (1 MiB system-wide), ~200 more per entry used.
 */
#define ENGINE_DEFAULT_PROCS (1u << 12)
#define ENGINE_DEFAULT_PROCS_ALL (1u << 16)

#define ENGINE_DEFAULT_OPTS                                                                        \
	{                                                                                          \
		.max_allocs = 1u << 20, .max_stacks = 1u << 16,                                    \
		.max_aggs = ENGINE_AGGS_PER_STACK << 16, .max_procs = 0,                           \
		.max_depth = ASZ_MAX_FRAMES, .attach = ATTACH_AUTO,                                \
	}

struct engine;

/* Open and load the BPF programs. Returns 0 or a negative errno (logged). */
int engine__open(struct engine **out, const struct engine_opts *o);
/*
 * Trace pid (all its threads) through the allocators of module lib; libc (NULL when lib is
 * libc) supplies the entry points lib lacks. Errors are logged, but -ESRCH: pid exited while it
 * was being attached (and with engine__reattach, engine__reprobe).
 */
int engine__attach(struct engine *e, pid_t pid, const char *lib, const char *libc);
/*
 * Probes for pid again, in the image it runs now: links made for a pid follow its main
 * thread, and after an exec by another thread that one is gone (the old links are closed).
 * -EOPNOTSUPP with perf-event links: they cannot be made for the pid again.
 */
int engine__reattach(struct engine *e, pid_t pid, const char *lib, const char *libc);
/* How many processes (not threads) target pid has started since it was attached. */
unsigned int engine__forks(struct engine *e, pid_t pid);
/* Probes for pid on another allocator library than before (its old links are closed). */
int engine__reprobe(struct engine *e, pid_t pid, const char *lib, const char *libc);
/* Close the links made for pid (those made for every process stay). */
void engine__detach_pid(struct engine *e, pid_t pid);
/* Trace every process mapping library lib (system-wide: no pid filter). */
int engine__attach_lib(struct engine *e, const char *lib, const char *libc);
/*
 * Unwind tables (--unwind dwarf; no-ops with frame pointers): for every executable mapping of
 * pid, for a file before it runs, and for the modules the kernel asked for since the last call.
 */
void engine__unwind_pid(struct engine *e, pid_t pid);
void engine__unwind_file(struct engine *e, const char *path);
void engine__unwind_service(struct engine *e);
/* "dwarf" or "fp": what stacks are walked with. */
const char *engine__unwind_mode(const struct engine *e);
/* Know a process (for its name) without attaching anything: system-wide mode. */
int engine__track(struct engine *e, pid_t pid);
/* Lifecycle events from the kernel (struct asz_event): a pollable fd, and a consumer. */
int engine__events_fd(const struct engine *e);
int engine__consume_events(struct engine *e, void (*fn)(const struct asz_event *ev, void *ctx),
			   void *ctx);
/* Drop every trace of processes that are gone (after their last report). */
void engine__forget(struct engine *e, const pid_t *pids, int n);
/* Mark a target as gone: its final state stays in the reports. */
void engine__set_exited(struct engine *e, pid_t pid);
/* What exec made of pid (its name, its file), until a refresh reads /proc (if it still can). */
void engine__set_image(struct engine *e, pid_t pid, const char *comm, const char *exe);
/* Re-read what changes in a live target (comm, at exec). */
void engine__refresh(struct engine *e);
bool engine__all_exited(const struct engine *e);
int engine__nr_links(const struct engine *e);
/* Allocations counted for pid since its last exec; -1 if it has none recorded. */
__s64 engine__image_allocs(struct engine *e, pid_t pid);
const char *engine__attach_mode(const struct engine *e);
/* Copy the kernel's aggregates into a new snapshot (no BPF access after this). */
int engine__collect(struct engine *e, struct snapshot **out);
/*
 * Call fn for each file mapping the kernel recorded under the stacks of pids (n of them; see
 * struct asz_vma), in one walk of the map:
 * the fallback for processes that exited before their /proc/PID/maps could be read.
 */
void engine__for_each_vma(struct engine *e, const pid_t *pids, int n,
			  void (*fn)(const struct asz_vma_key *k, const struct asz_vma *v, void *ctx),
			  void *ctx);
struct engine_stats {
	__u64 run_ns;	    /* BPF programs' total run time since attach (0 if stats are off) */
	__u64 run_cnt;
	__u64 map_bytes;    /* memory charged for our maps (memlock) */
	__u64 stacks;	    /* distinct stacks kept */
	struct unwind_stats unwind; /* zero with frame pointers */
};

/* The profiler's own cost, for -v. */
void engine__stats(struct engine *e, struct engine_stats *st);
/* Detach everything and free. Safe on NULL. */
void engine__close(struct engine *e);

#endif
