/* SPDX-License-Identifier: MIT */
/*
 * The one header shared by the BPF programs and user space: map keys and values, enums.
 * Only __u32/__u64/__s64 fields, explicit padding, sizes checked below.
 */
#ifndef ASIZEOF_H
#define ASIZEOF_H

#define ASZ_MAX_FRAMES 127
#define ASZ_COMM_LEN 16
/* Stack id 0 means "no stack": collection failed or the stack map was full; counted in drops. */
#define ASZ_STACK_NONE 0

/* Allocator entry points. The value is the attach cookie of each probe. */
enum asz_allocator {
	ASZ_MALLOC = 0,
	ASZ_CALLOC = 1,
	ASZ_REALLOC = 2,
	ASZ_MEMALIGN = 3, /* also aligned_alloc: one address in glibc */
	ASZ_POSIX_MEMALIGN = 4,
	ASZ_VALLOC = 5,
	ASZ_PVALLOC = 6,
	ASZ_FREE = 7,
	/* anonymous memory the program maps itself (not from inside an allocator) */
	ASZ_MMAP = 8,
	ASZ_MREMAP = 9,
	ASZ_MUNMAP = 10,
	/* C++ operator new and delete of an allocator library that has its own (jemalloc, tcmalloc) */
	ASZ_NEW = 11,
	ASZ_DELETE = 12, /* retires like free (and may call the public free itself) */
	/* jemalloc's extended API (its dallocx and sdallocx are probed as free) */
	ASZ_MALLOCX = 13, /* mallocx(size, flags) */
	ASZ_RALLOCX = 14, /* realloc that never frees: NULL on failure, the block kept */
	ASZ_XALLOCX = 15, /* resizes in place; returns the usable size (< size: it could not) */
	ASZ_THREAD_EXIT = 16, /* glibc's thread teardown begins (no allocator: see the BPF) */
	ASZ_NR_ALLOCATORS = 17,
};

#define ASZ_IS_MMAP(a) ((a) >= ASZ_MMAP && (a) <= ASZ_MUNMAP)
/*
 * In a realloc probe's cookie, beside ASZ_REALLOC: an allocator (jemalloc, tcmalloc) whose
 * realloc(p, 0) frees p itself, not through the public free that glibc's calls.
 */
#define ASZ_REALLOC_FREES_ITSELF 0x100

/* Everything not recorded, or recorded imperfectly, is counted under one of these. */
enum asz_drop {
	ASZ_DROP_ALLOCS_FULL = 0,   /* live-allocation map full: block not tracked */
	ASZ_DROP_AGGS_FULL = 1,     /* per-stack aggregate map full: block not tracked */
	ASZ_DROP_PROCS_FULL = 2,    /* per-process map full: block not tracked */
	ASZ_DROP_STACKS_FULL = 3,   /* stack map full: block tracked under stack id 0 */
	ASZ_DROP_STACK_COLLISION = 4, /* hash collision, resolved by probing: informational */
	ASZ_DROP_STACK_UNRESOLVED = 5, /* every probe slot collided: block under stack id 0 */
	ASZ_DROP_STACK_TRUNCATED = 6, /* stack deeper than --max-depth */
	ASZ_DROP_THREAD_STATE = 7,  /* per-thread state unavailable: call not recorded */
	ASZ_DROP_UNKNOWN_FREE = 8,  /* free of a block allocated before attach (or not tracked) */
	ASZ_DROP_MISSED_FREE = 9,   /* address returned again while still live: old block retired */
	ASZ_DROP_STACK_INCOMPLETE = 10, /* DWARF unwinding stopped before the outermost frame */
	ASZ_DROP_UNWIND_TABLE_FULL = 11, /* a module's unwind table did not fit (user space) */
	ASZ_DROP_STACK_PREEMPTED = 12, /* this CPU's stack scratch busy (a preempted program) */
	ASZ_DROP_EVENTS_LOST = 13,  /* exec or exit event not sent: the ring buffer was full */
	ASZ_DROP_PROCS_UNTRACED = 14, /* a process or exec'd image that could not be probed (user) */
	ASZ_DROP_MAPPINGS_UNINDEXED = 15, /* a mapping not in its process's index: munmaps walk */
	ASZ_DROP_AGGS_RETIRED = 16, /* idle aggregates retired to make room (user space): no loss */
	ASZ_DROP_STACK_SWEPT = 17, /* stack deleted as unused between entry and return: no stack */
	ASZ_NR_DROPS = 18,
};

struct asz_alloc_key {
	__u32 tgid;
	__u32 pad;
	__u64 addr;
};

struct asz_alloc_val {
	__u64 size;	/* bytes accounted: asked for, or the estimate a sampled block stands for */
	__u64 stack_id;
	__u32 allocator;
	__u32 count;	/* allocations accounted: 1, or the estimate a sampled block stands for */
	__u32 gen;	/* the process image (exec count) it belongs to */
	__u32 slot;	/* its aggregate's slot in agg_slots */
};

/* Aggregate per (process image, allocator entry point, stack). */
struct asz_agg_key {
	__u32 tgid;
	__u32 gen; /* exec count of the process (all 32 bits): an older image's aggregates are stale */
	__u64 stack_id;
	__u32 allocator;
	__u32 pad;
};

struct asz_agg_val {
	__s64 live_bytes;
	__s64 live_allocs;
	__u64 alloc_bytes;
	__u64 allocs;
	__u64 frees;
};

/*
 * Aggregates live in the slots of an array (agg_slots, mmapped by user space); the aggs hash maps
 * a key to its slot. Array memory is never handed to another use by the kernel, so user space
 * can retire an idle aggregate safely: it deletes the key from aggs, waits for the programs
 * running then to finish (an RCU grace period) and only then frees the slot for reuse. A live
 * block holds its slot's number, so frees do not look the key up. key.tgid 0: a free slot.
 */
struct asz_agg_slot {
	struct asz_agg_val v;
	/*
	 * tgid written last when the slot is taken. key.pad (0 in aggs' keys) is the slot's life
	 * here: bumped by BPF each time the slot is taken (never 0), ASZ_AGG_RETIRING set by user
	 * space before it takes the key out of aggs (BPF's agg_hints then see it gone).
	 */
	struct asz_agg_key key;
};

#define ASZ_AGG_RETIRING (1u << 31)

struct asz_proc_val {
	__s64 live_bytes;
	__s64 live_allocs;
	__u64 alloc_bytes;
	__u64 allocs;
	__u64 frees;
	__u64 unknown_frees;
	__u64 drops;
	__u32 gen; /* bumped at each exec: the old image's blocks and aggregates are gone */
	__u32 dead; /* its last thread exited: a process met under this pid later is another one */
	__u64 comm[2]; /* char[16]: the process's name when first seen and at each exec */
	__s64 mmap_bytes;   /* anonymous mappings made directly by the program, live */
	__s64 mmap_regions;
	__u64 cgroup_id;    /* cgroup v2 id (the cgroup directory's inode) when first seen */
	/* alloc_bytes, allocs, frees, unknown_frees (counted since first seen) at the last exec */
	__u64 exec_alloc_bytes;
	__u64 exec_allocs;
	__u64 exec_frees;
	__u64 exec_unknown_frees;
};

/* Process lifecycle events, kernel to user space (ring buffer). */
enum asz_event_type {
	ASZ_EV_EXEC = 1,
	ASZ_EV_EXIT = 2,
	ASZ_EV_REUSED = 3, /* a new process (forked, no exec) allocates under an exited one's pid */
	ASZ_EV_FORK = 4,   /* a target (-p, -- CMD) started its first process: gen is its pid */
};

/* exec by another thread than the main one: the kernel gave it the pid, the old main is gone */
#define ASZ_EV_NEW_LEADER 1

#define ASZ_EXEC_PATH_LEN 256

struct asz_event {
	__u32 type;
	__u32 tgid;
	__u32 gen;
	__u32 flags; /* ASZ_EV_NEW_LEADER */
	/*
	 * exec: the file as execve was given it (cut at 255 bytes; may be relative, or another
	 * mount namespace's: its device and inode tell): a process gone before its /proc is read
	 * still names the program its stacks are in.
	 */
	__u64 ino;
	__u32 dev; /* the kernel's encoding, as /proc/PID/maps prints it */
	__u32 pad;
	char path[ASZ_EXEC_PATH_LEN];
};

#define ASZ_STACK_TRUNCATED 1u  /* deeper than --max-depth */
#define ASZ_STACK_INCOMPLETE 2u /* the unwinder could not go on: outer frames missing */
#define ASZ_STACK_PARTIAL (ASZ_STACK_TRUNCATED | ASZ_STACK_INCOMPLETE)

struct asz_stack {
	__u32 nr;
	__u32 flags;
	/*
	 * return addresses, innermost (the allocator's caller) first; in the stacks maps, ips[nr]
	 * (if there is room) is BPF's: the hint of the stack's last aggregate (slot << 32 | life)
	 */
	__u64 ips[ASZ_MAX_FRAMES];
};

/*
 * Most stacks are shallow: those of up to ASZ_SHORT_FRAMES frames are kept in a map of their
 * own, whose elements take an eighth of the kernel memory: 192 bytes and the hash table's and
 * allocator's 56 fill a 256-byte allocation (a struct asz_stack takes 2 KiB).
 * A stack id says which map: ASZ_STACK_LONG is set in the ids of the deeper ones.
 */
#define ASZ_SHORT_FRAMES 23
#define ASZ_STACK_LONG (1ull << 63)

struct asz_stack_short {
	__u32 nr;
	__u32 flags;
	__u64 ips[ASZ_SHORT_FRAMES]; /* struct asz_stack's first bytes */
};

/*
 * A file mapping holding a frame of some stack, recorded when the stack is first seen, so that a
 * process that exits before user space reads /proc/PID/maps still symbolizes.
 */
struct asz_vma_key {
	__u32 tgid;
	__u32 pad;
	__u64 start;
};

struct asz_vma {
	__u64 end;
	__u64 pgoff; /* bytes */
	__u64 ino;
	__u32 dev; /* kernel encoding: major << 20 | minor */
	__u32 pad;
};

/*
 * One row of a compiled unwind table (from .eh_frame / .debug_frame): from pc up to the next
 * row's pc, the canonical frame address is cfa_reg + cfa_off, the return address is at CFA - 8
 * (x86-64), and the caller's rbp is restored by rbp_rule. Rows of a module are sorted by pc.
 */
enum asz_cfa_reg {
	ASZ_CFA_RSP = 0,
	ASZ_CFA_RBP = 1,
	ASZ_CFA_UNDEFINED = 2, /* no unwind info for this range (gap between FDEs): use FP */
	ASZ_CFA_UNSUPPORTED = 3, /* a DWARF expression (e.g. PLT): stop */
	ASZ_CFA_END = 4, /* the outermost frame (return address undefined: _start, clone) */
};

enum asz_rbp_rule {
	ASZ_RBP_SAME = 0,   /* rbp unchanged in the caller */
	ASZ_RBP_OFFSET = 1, /* caller's rbp saved at CFA + rbp_off */
	ASZ_RBP_UNDEFINED = 2,
};

struct asz_cfi_row {
	__u32 pc;      /* ELF virtual address of the module, minus the module's table base */
	__u8 cfa_reg;  /* enum asz_cfa_reg */
	__u8 rbp_rule; /* enum asz_rbp_rule */
	__u16 pad;
	__s32 cfa_off;
	__s32 rbp_off;
};

/*
 * Unwind tables in the kernel. Rows of every module live in one array (cfi_rows), each module's
 * sorted slice [first, first + nr), then its bucket index: ASZ_CFI_INDEX_ROWS(buckets) entries of
 * the array holding 4 __u32 each, bucket b's at entry first + nr + b / 4, word b % 4: the number
 * of rows whose pc is below b << shift. A pc's row is searched for in its bucket only (a few
 * rows, a cache line or two), not in the module's megabytes. Modules are keyed by the file the
 * kernel maps (i_sb->s_dev in kernel encoding, i_ino), as /proc/PID/maps shows them.
 */
struct asz_mod_key {
	__u64 ino;
	__u32 dev;
	__u32 pad;
};

enum asz_mod_kind {
	ASZ_MOD_TABLE = 0, /* rows in cfi_rows */
	ASZ_MOD_FP = 1,	   /* no table (none in the file, or no room): frame pointers */
};

struct asz_mod {
	__u32 first;
	__u32 nr;
	__s64 adj; /* row pc = address - vm_start + vm_pgoff (bytes) + adj */
	__u32 kind;
	__u32 shift;   /* bucket b: row pcs [b << shift, (b + 1) << shift) */
	__u32 buckets; /* 0: no index (the whole slice is searched) */
	__u32 pad;
};

/* Entries of cfi_rows a bucket index takes, and the slice of a module with nr rows. */
#define ASZ_CFI_INDEX_ROWS(buckets) (((buckets) + 3) / 4)
#define ASZ_CFI_SLICE(nr, buckets) ((nr) + ASZ_CFI_INDEX_ROWS(buckets))

/* What the DWARF unwinder did, per CPU (map uw_stats): where complete stacks' cost goes. */
struct asz_unwind_stats {
	__u64 stacks;	      /* stacks walked */
	__u64 frames_unwound; /* return addresses found by unwinding: a rule per frame */
	__u64 frames_checked; /* ... by checking the slots of the last stack's frames */
	__u64 rule_searches;  /* pc rules not cached: a binary search in a module's rows */
	__u64 stack_reads;    /* reads of the user stack (a window of up to 4 KiB each) */
	__u64 stacks_repeated; /* stacks found the same as the last one: its id, no lookup */
};

/* A module the BPF unwinder met without a table: user space builds one. */
struct asz_mod_want {
	__u32 tgid;
	__u32 pad;
	__u64 start; /* the mapping it was seen in */
	__u64 end;
};

/* Binary-search steps: enough for 2^24 rows in one module. */
#define ASZ_CFI_SEARCH_STEPS 24

/* Per-thread state between an allocator's entry and its return (task storage). */
struct asz_tstate {
	__u32 depth;
	__u32 allocator;
	__u64 size;   /* bytes asked for */
	__u64 arg;    /* posix_memalign: memptr; realloc: old pointer */
	__u64 extra;  /* xallocx: bytes it may add to size; mremap: the old length (pages) */
	/*
	 * The block the thread's last operator delete retired, until its next allocation: the
	 * deletes and frees that delete calls (jemalloc's call free, libstdc++'s sized delete the
	 * unsized one, which calls free) find it gone and must not count it as unknown.
	 */
	__u64 deleted;
	__u64 stack_id;
	__u64 weight; /* bytes to account: size, or the sampling estimate */
	__u32 count;  /* allocations to account: 1, the sampling estimate, or 0 (not sampled) */
	__u32 old_valid;
	__u64 old_size; /* realloc: the old block, removed at entry, restored if realloc fails */
	__u64 old_stack_id;
	__u32 old_allocator;
	__u32 old_count;
	__s64 sample_left; /* sampling: bytes until the next sample point; 0 = not drawn yet */
	__u32 old_gen;
	__u32 old_unknown; /* realloc: the old block was not tracked (an unknown free if it goes) */
	/*
	 * An allocator call whose return is not seen (uprobe sessions skip it when the block is not
	 * recorded): its entry's stack pointer and return address, to tell the mappings it makes
	 * itself (glibc's, jemalloc's) from the program's.
	 */
	__u64 skip_sp;
	__u64 skip_ra;
	__u64 skip_ip; /* where that call was probed: in its allocator's code */
	__u64 skip_text_lo, skip_text_hi; /* the code mapping of the last skip_ip looked up */
	__u32 exiting; /* a thread in glibc's teardown: it frees blocks of its malloc cache */
	__u32 flags;   /* mmap, mremap: their flags argument (ASZ_MREMAP_PART: a part of a mapping) */
	__u32 old_slot; /* realloc: the old block's aggregate slot */
	/*
	 * mremap(2) entries seen and not yet left: only their exits end a call. seccomp's denial
	 * skips the entry tracepoint, not the exit; an exit begun before the first entry has none.
	 */
	__u32 sys_entered;
	/*
	 * mmap, mremap: when the call began. What it unmaps at its return (a part moved, a fixed
	 * mapping's place) is of mappings made before: another thread's, made since where the
	 * kernel had just unmapped, is not.
	 */
	__u64 since;
	__u64 old_made; /* mremap from a mapping's start: when it was made (kept when put back) */
	__u64 agg_hint; /* the aggregate hint kept with the stack (agg_hint_in), for the return */
};

/*
 * The starts of a process's own mappings (mapidx, one per tgid), sorted: an munmap inside one
 * finds the mappings it overlaps by binary search. lock is taken by compare-and-swap (tracing
 * programs may not use bpf_spin_lock). outside: mappings of the image gen the starts do not hold
 * (there were ASZ_MAPIDX_SLOTS, or the lock was busy); stale: a start that is gone could not be
 * taken out. Either makes the munmaps of the process walk the mappings map instead. top: at
 * least the end of every mapping held; with starts[0], an munmap elsewhere is told at once.
 */
#define ASZ_MAPIDX_SLOTS 64
struct asz_mapidx {
	__u32 lock;
	__u32 n;
	__u32 gen;
	__u32 outside;
	__u32 stale;
	__u32 pad;
	__u64 top;
	__u64 starts[ASZ_MAPIDX_SLOTS];
};

/* tstate.flags: an mremap of a part of a mapping (or from inside one): followed at its return */
#define ASZ_MREMAP_PART (1u << 31)
/* tstate.flags: an mremap of 0 bytes of a (shared) mapping of the program's: a copy, it stays */
#define ASZ_MREMAP_DUP (1u << 30)
/* tstate.flags: a part that begins where one of the program's mappings does */
#define ASZ_MREMAP_HEAD (1u << 29)

/* Sampling tables, filled by user space: -ln(u) and x/(1-e^-x), both scaled by 2^16. */
#define ASZ_EXP_TABLE 4096
#define ASZ_WEIGHT_STEPS 64   /* table points per sampling period */
#define ASZ_WEIGHT_TABLE 1025 /* x = size/period from 0 to 16 */

_Static_assert(sizeof(struct asz_alloc_key) == 16, "asz_alloc_key");
_Static_assert(sizeof(struct asz_alloc_val) == 32, "asz_alloc_val");
_Static_assert(sizeof(struct asz_event) == 32 + ASZ_EXEC_PATH_LEN, "asz_event");
_Static_assert(sizeof(struct asz_agg_key) == 24, "asz_agg_key");
_Static_assert(sizeof(struct asz_agg_val) == 40, "asz_agg_val");
_Static_assert(sizeof(struct asz_agg_slot) == 64, "asz_agg_slot");
_Static_assert(sizeof(struct asz_proc_val) == 136, "asz_proc_val");
_Static_assert(sizeof(struct asz_stack) == 1024, "asz_stack");
_Static_assert(sizeof(struct asz_stack_short) == 192, "asz_stack_short");
_Static_assert(sizeof(struct asz_tstate) == 184, "asz_tstate");
_Static_assert(sizeof(struct asz_vma_key) == 16, "asz_vma_key");
_Static_assert(sizeof(struct asz_cfi_row) == 16, "asz_cfi_row");
_Static_assert(sizeof(struct asz_vma) == 32, "asz_vma");
_Static_assert(sizeof(struct asz_mod_key) == 16, "asz_mod_key");
_Static_assert(sizeof(struct asz_mod) == 32, "asz_mod");
_Static_assert(sizeof(struct asz_mod_want) == 24, "asz_mod_want");
_Static_assert(sizeof(struct asz_unwind_stats) == 48, "asz_unwind_stats");
_Static_assert(sizeof(struct asz_mapidx) == 32 + 8 * ASZ_MAPIDX_SLOTS, "asz_mapidx");

#endif /* ASIZEOF_H */
