// SPDX-License-Identifier: GPL-2.0
/*
 * Allocation accounting in the kernel: live blocks per (tgid, address), aggregates per
 * (tgid, allocator, stack), totals per tgid. User space only reads these maps.
 *
 * Every program here is attached with a cookie naming the allocator entry point, so the same
 * programs serve per-probe perf-event links and uprobe_multi links.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "asizeof.h"

#ifndef EEXIST
#define EEXIST 17
#endif

char LICENSE[] SEC("license") = "GPL";

/* Set by the loader before load. */
const volatile __u32 max_depth = ASZ_MAX_FRAMES;
/* Links attached with a pid already filter in the kernel; this is for links that are not. */
const volatile bool filter_tgid = false;
/* System-wide: links without a pid; these filters apply instead. */
const volatile bool system_wide = false;
const volatile __u32 self_tgid = 0;
#define MAX_COMMS 8
const volatile __u32 nr_comms = 0;
const volatile char comms[MAX_COMMS][ASZ_COMM_LEN] = {};
/* --cgroup: only tasks under the cgroup in cgroup_filter[0]. */
const volatile bool filter_cgroup = false;
/* Blocks smaller than this are not recorded (0: all). */
const volatile __u64 min_size = 0;
/* Sampling period in bytes; 0 = full mode (every block). */
const volatile __u64 sample_bytes = 0;
/* Benchmarks only: the same probe points with programs that do nothing (the cost floor). */
const volatile bool empty_probes = false;
/*
 * No allocation of this many bytes or more can succeed: one mapping as large as the user
 * address space (without an address hint, also with 5-level page tables).
 */
#define NEW_FAILS_FROM (1ull << 47)

/* Probing slots tried after a hash collision before a stack is given up as unresolved. */
#define STACK_PROBES 4
/* A frame pointer farther than this above the stack pointer is not trusted. */
#define MAX_STACK_SPAN (64ull << 20)

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u32); /* 1 + the processes it started (on_fork) */
} targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 20); /* resized by the loader */
	__type(key, struct asz_alloc_key);
	__type(value, struct asz_alloc_val);
} allocs SEC(".maps");

/*
 * The keys of the allocs entries that are the programs' own mappings: an munmap, mremap or
 * MAP_FIXED that starts inside one (or spans several) finds them here, without walking allocs.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 13);
	__type(key, struct asz_alloc_key);
	__type(value, __u64); /* when it was made (bpf_ktime_get_ns): a piece keeps its mapping's */
} mappings SEC(".maps");

/* Per process, the starts of its mappings in order (struct asz_mapidx): no walk of mappings. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct asz_mapidx);
} mapidx SEC(".maps");

/* A new process's index (too large for the stack) */
static const struct asz_mapidx mapidx_empty;

/* an aggregate's key -> its slot in agg_slots (see struct asz_agg_slot) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 16);
	__type(key, struct asz_agg_key);
	__type(value, __u32);
} aggs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE); /* user space reads every aggregate in place */
	__uint(max_entries, 1 << 16);	   /* as aggs (the loader sets both) */
	__type(key, __u32);
	__type(value, struct asz_agg_slot);
} agg_slots SEC(".maps");

/*
 * Where an aggregate was found last, by a hash of its key: slot << 32 | the slot's life (its
 * key.pad, see struct asz_agg_slot). An aggs lookup of a key not used lately costs two or three
 * cache misses (~140 ns more than a hot one in cc1, whose DWARF stacks make ~10k aggregates);
 * the hint costs one, and the slot's line is read anyway. Only a guess: the slot must still hold
 * the key, in the same life, not retiring.
 */
#define AGG_HINTS (1 << 16) /* a power of two */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, AGG_HINTS);
	__type(key, __u32);
	__type(value, __u64);
} agg_hints SEC(".maps");

/*
 * A better hint, where the stack is kept: the word after its last frame in its stacks map
 * element, read at the entry from the line the stack's comparison has just read (its agg_hints
 * line would be one more cache miss), handed to agg_find() at the return. AGG_HINT_UNKNOWN:
 * none came (the last stack again, no room, another caller of block_add).
 */
#define AGG_HINT_UNKNOWN (~0ull)

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} agg_hint_in SEC(".maps");

/* Slots user space retired, once no program can still hold them (see struct asz_agg_slot). */
struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 1 << 16);
	__type(value, __u32);
} agg_free SEC(".maps");

/* Slots never used start here (then the queue): user space reads slots below it. */
__u64 agg_next = 0;

/*
 * Stack sweeps (user space's stack deletes), a sequence count: odd while one deletes. A stack
 * id found in a map while it was even stays good while it has not moved.
 */
__u64 stack_sweeps = 0;
const volatile __u32 nr_agg_slots = 1 << 16;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct asz_proc_val);
} procs SEC(".maps");

/* stacks of up to ASZ_SHORT_FRAMES frames; deeper ones in long_stacks, ids with ASZ_STACK_LONG */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 16);
	__type(key, __u64);
	__type(value, struct asz_stack_short);
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 16);
	__type(key, __u64);
	__type(value, struct asz_stack);
} long_stacks SEC(".maps");

/* The map a stack id is in (ASZ_STACK_LONG says which). */
static __always_inline void *stacks_map_of(__u64 id)
{
	return id & ASZ_STACK_LONG ? (void *)&long_stacks : (void *)&stacks;
}

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 14);
	__type(key, struct asz_vma_key);
	__type(value, struct asz_vma);
} vmas SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} cgroup_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ASZ_NR_DROPS);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct asz_stack);
} stack_scratch SEC(".maps");

/* 1 while a program on this CPU builds a stack in stack_scratch (and the unwinder's caches) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} scratch_busy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ASZ_EXP_TABLE);
	__type(key, __u32);
	__type(value, __u64);
} exp_table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ASZ_WEIGHT_TABLE);
	__type(key, __u32);
	__type(value, __u64);
} weight_table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct asz_tstate);
} tstates SEC(".maps");

static __always_inline void count_drop(__u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(&drops, &reason);

	if (c)
		__sync_fetch_and_add(c, 1); /* a preempted program may count here too */
}

/* --comm: the process's name (its group leader's), not a thread's. */
static __always_inline bool comm_allowed(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	char comm[ASZ_COMM_LEN];

	if (!nr_comms)
		return true;
	if (bpf_probe_read_kernel_str(comm, sizeof(comm), task->group_leader->comm) < 0)
		return false;
	for (int i = 0; i < MAX_COMMS; i++) {
		bool same = true;

		if (i >= nr_comms)
			break;
		for (int j = 0; j < ASZ_COMM_LEN; j++) {
			if (comm[j] != comms[i][j]) {
				same = false;
				break;
			}
			if (!comm[j])
				break;
		}
		if (same)
			return true;
	}
	return false;
}

static __always_inline bool traced(__u32 tgid)
{
	if (system_wide)
		return tgid != self_tgid && comm_allowed() &&
		       (!filter_cgroup || bpf_current_task_under_cgroup(&cgroup_filter, 0) == 1);
	return !filter_tgid || bpf_map_lookup_elem(&targets, &tgid);
}

/*
 * traced() for a system call's tracepoint, which every process reaches: with targets only
 * theirs (traced() trusts the probes' links, which filter by process), and not a new process
 * under an exited target's pid.
 */
static __always_inline bool syscall_traced(__u32 tgid)
{
	struct asz_proc_val *p;

	if (system_wide)
		return traced(tgid);
	if (!bpf_map_lookup_elem(&targets, &tgid))
		return false;
	p = bpf_map_lookup_elem(&procs, &tgid);
	return p && !p->dead;
}

/*
 * A process we account for that --comm or --cgroup no longer selects (renamed, moved): what it
 * frees still leaves its accounts, or its blocks would stay live forever.
 */
static __always_inline bool left_filter(__u32 tgid)
{
	return system_wide && (nr_comms || filter_cgroup) && bpf_map_lookup_elem(&procs, &tgid);
}

/* The process's name (its group leader's): short-lived processes are gone before we look. */
static __always_inline void read_comm(struct task_struct *task, __u64 comm[2])
{
	bpf_probe_read_kernel_str(comm, ASZ_COMM_LEN, task->group_leader->comm);
}

/* A new image of the process (an exec), or a new process under an exited one's pid. */
static __always_inline __u32 proc_restart(struct asz_proc_val *p, struct task_struct *task)
{
	p->live_bytes = 0;
	p->live_allocs = 0;
	p->exec_alloc_bytes = p->alloc_bytes;
	p->exec_allocs = p->allocs;
	p->exec_frees = p->frees;
	p->exec_unknown_frees = p->unknown_frees;
	p->mmap_bytes = 0;
	p->mmap_regions = 0;
	p->dead = 0;
	read_comm(task, p->comm);
	return ++p->gen;
}

static __always_inline void emit(__u32 type, __u32 tgid, __u32 gen, __u32 flags,
				 struct linux_binprm *bprm);

static const struct asz_proc_val proc_empty;

static __always_inline struct asz_proc_val *proc_get(__u32 tgid)
{
	struct asz_proc_val *p = bpf_map_lookup_elem(&procs, &tgid);

	/*
	 * Its pid was given again before user space forgot the exited process: the new one must
	 * not count to the old one's accounts (the old blocks are stale by the generation).
	 */
	if (p && p->dead) {
		emit(ASZ_EV_REUSED, tgid, proc_restart(p, bpf_get_current_task_btf()), 0, NULL);
		bpf_map_delete_elem(&mapidx, &tgid); /* the index holds one image's mappings */
	}
	if (p)
		return p;
	/* made from a zero value, filled in place (136 bytes are too many for the stack here) */
	if (bpf_map_update_elem(&procs, &tgid, &proc_empty, BPF_NOEXIST) == 0) {
		p = bpf_map_lookup_elem(&procs, &tgid);
		if (p) {
			read_comm(bpf_get_current_task_btf(), p->comm);
			p->cgroup_id = bpf_get_current_cgroup_id();
		}
		return p;
	}
	return bpf_map_lookup_elem(&procs, &tgid);
}

/* A free slot for a new aggregate, or ~0: none left. */
static __always_inline __u32 agg_slot_new(void)
{
	__u32 n;

	if (agg_next < nr_agg_slots) {
		n = __sync_fetch_and_add(&agg_next, 1);
		if (n < nr_agg_slots)
			return n;
	}
	if (bpf_map_pop_elem(&agg_free, &n) == 0)
		return n;
	return ~0u;
}

/* The aggregate in slot n (NULL: out of range). */
static __always_inline struct asz_agg_val *agg_at(__u32 n)
{
	struct asz_agg_slot *a = bpf_map_lookup_elem(&agg_slots, &n);

	return a ? &a->v : NULL;
}

/* Keep hint with stack id, in the word after its last frame, if it has room. */
static __always_inline void stack_hint_set(__u64 id, __u64 hint)
{
	if (id & ASZ_STACK_LONG) {
		struct asz_stack *k = bpf_map_lookup_elem(&long_stacks, &id);
		__u32 nr = k ? k->nr : ASZ_MAX_FRAMES;

		if (nr < ASZ_MAX_FRAMES)
			k->ips[nr] = hint;
	} else {
		struct asz_stack_short *k = bpf_map_lookup_elem(&stacks, &id);
		__u32 nr = k ? k->nr : ASZ_SHORT_FRAMES;

		if (nr < ASZ_SHORT_FRAMES)
			k->ips[nr] = hint;
	}
}

/*
 * Does slot a hold key, in the life hint saw (slot << 32 | life), not retiring (user space sets
 * ASZ_AGG_RETIRING in the life before the key leaves aggs, and hints never have it)?
 */
static __always_inline bool agg_slot_holds(const struct asz_agg_slot *a, __u64 hint,
					   const struct asz_agg_key *key)
{
	return a && a->key.pad == (__u32)hint && a->key.tgid == key->tgid &&
	       a->key.gen == key->gen && a->key.stack_id == key->stack_id &&
	       a->key.allocator == key->allocator;
}

/* agg_find()'s answer beside the slot number */
#define AGG_NEW (1ull << 32)	   /* a new aggregate */
#define AGG_NO_STACK (1ull << 33) /* ... under no stack: its stack was deleted meanwhile */
#define AGG_NONE 0xffffffffull	   /* no slot left */

/*
 * The slot of an aggregate, found or made, with AGG_* flags; AGG_NONE if no slot is left. A new
 * one's stack must still be there: user space deletes stacks no aggregate uses, and an id found
 * at an allocator's entry can have gone by its return (the sweep wants it unused at two reports
 * in a row: an allocation lasting that long). Global (verified once, its key in a frame of its
 * own: the callers' frames are near the stack limit).
 */
__noinline __u64 agg_find(__u32 tgid, __u32 gen, __u64 stack_id, __u32 allocator)
{
	struct asz_agg_key key = {.tgid = tgid, .gen = gen, .stack_id = stack_id,
				  .allocator = allocator};
	__u64 flags = AGG_NEW, *hint, h0 = AGG_HINT_UNKNOWN, *in;
	__u32 *found, n, hi, life;
	struct asz_agg_slot *a;
	bool keep = false;
	long err;

	in = bpf_map_lookup_elem(&agg_hint_in, &(__u32){0});
	if (in) {
		h0 = *in;
		*in = AGG_HINT_UNKNOWN; /* for this call only */
	}
	if (h0 != AGG_HINT_UNKNOWN && stack_id != ASZ_STACK_NONE) {
		n = h0 >> 32;
		a = h0 ? bpf_map_lookup_elem(&agg_slots, &n) : NULL;
		if (agg_slot_holds(a, h0, &key))
			return n;
		/*
		 * Kept again when there was none or its slot has had another life since: not when
		 * it is another process's live aggregate of the same stack (they would take turns).
		 */
		keep = !a || a->key.pad != (__u32)h0;
	}
	hi = (__u32)((stack_id ^ ((__u64)tgid << 20) ^ ((__u64)gen << 40) ^ allocator) *
		     0x9e3779b97f4a7c15ull >> 32) & (AGG_HINTS - 1);
	hint = bpf_map_lookup_elem(&agg_hints, &hi);
	if (!hint)
		return AGG_NONE;
	if (*hint) {
		n = *hint >> 32;
		a = bpf_map_lookup_elem(&agg_slots, &n);
		/*
		 * In the life the hint saw, not retiring (user space marks a slot before taking
		 * its key out of aggs, then waits for the programs running: this one): its key
		 * stays the same while this program runs.
		 */
		if (agg_slot_holds(a, *hint, &key)) {
			if (keep)
				stack_hint_set(stack_id, *hint);
			return n;
		}
	}
	found = bpf_map_lookup_elem(&aggs, &key);
	if (found) {
		n = *found;
		a = bpf_map_lookup_elem(&agg_slots, &n);
		if (a && !(a->key.pad & ASZ_AGG_RETIRING)) {
			*hint = (__u64)n << 32 | a->key.pad;
			if (keep)
				stack_hint_set(stack_id, *hint);
		}
		return n;
	}
	if (stack_id != ASZ_STACK_NONE &&
	    !bpf_map_lookup_elem(stacks_map_of(stack_id), &stack_id)) {
		count_drop(ASZ_DROP_STACK_SWEPT);
		key.stack_id = ASZ_STACK_NONE;
		flags |= AGG_NO_STACK;
		found = bpf_map_lookup_elem(&aggs, &key);
		if (found)
			return *found | AGG_NO_STACK;
	}
	n = agg_slot_new();
	a = bpf_map_lookup_elem(&agg_slots, &n);
	if (!a)
		return AGG_NONE;
	a->v = (struct asz_agg_val){};
	a->key.gen = gen;
	a->key.stack_id = key.stack_id;
	a->key.allocator = allocator;
	/* a new life: hints of the slot's earlier ones are stale */
	life = (a->key.pad + 1) & ~ASZ_AGG_RETIRING;
	a->key.pad = life ? life : 1;
	/* taken (user space reads slots as they are): tgid last */
	asm volatile("" ::: "memory");
	*(volatile __u32 *)&a->key.tgid = tgid;
	err = bpf_map_update_elem(&aggs, &key, &n, BPF_NOEXIST);
	if (err == 0) {
		if (!(flags & AGG_NO_STACK)) {
			*hint = (__u64)n << 32 | a->key.pad;
			if (keep)
				stack_hint_set(stack_id, *hint);
		}
		return n | flags;
	}
	/*
	 * Another CPU made it meanwhile (or aggs is full): the slot goes back (user space may have
	 * read it, empty: it skips slots that counted nothing).
	 */
	*(volatile __u32 *)&a->key.tgid = 0;
	bpf_map_push_elem(&agg_free, &n, 0);
	if (err != -EEXIST)
		return AGG_NONE;
	found = bpf_map_lookup_elem(&aggs, &key);
	return found ? *found | (flags & AGG_NO_STACK) : AGG_NONE;
}

/*
 * The aggregate a new (or restored) block v of tgid counts in, found or made: its slot into v
 * (and no stack, if its stack went meanwhile); agg_find()'s answer in *r. NULL: no slot left.
 */
static __always_inline struct asz_agg_val *agg_of_block(__u32 tgid, struct asz_alloc_val *v,
							__u64 *r)
{
	*r = agg_find(tgid, v->gen, v->stack_id, v->allocator);
	if (*r & AGG_NO_STACK)
		v->stack_id = ASZ_STACK_NONE;
	v->slot = (__u32)*r;
	return agg_at(v->slot);
}

/*
 * Does a stack kept in a map equal st? kept: a struct asz_stack, or its first bytes (the
 * frames up to max).
 */
static __always_inline bool stack_equal(const void *kept, const struct asz_stack *st, __u32 max)
{
	const struct asz_stack *k = kept;

	if (k->nr != st->nr)
		return false;
	for (int i = 0; i < max; i++) {
		if (i >= st->nr)
			break;
		if (k->ips[i] != st->ips[i])
			return false;
	}
	return true;
}

#include "unwind.h"

/*
 * Frame pointers (--unwind fp): walk the user stack at an allocator's entry. The allocator has
 * not built a frame yet, so its caller's return address is at the stack pointer and rbp still
 * belongs to the caller: frame 0 comes from *sp, the rest from the frame-pointer chain, checked
 * to stay above sp and to grow.
 * The first frame is read alone: in code without frame pointers rbp is a plain register and
 * the walk ends there, at the cost of one small read. Once a frame has led to a plausible
 * next one, the chain is read through the unwinder's window: one read for most stacks, not
 * one a frame.
 */
static __always_inline long fp_frame(struct uw_win *w, __u64 fp, __u64 frame[2], bool chained)
{
	if (!chained || !w)
		return bpf_probe_read_user(frame, 2 * sizeof(frame[0]), (void *)fp);
	if (uw_read(w, fp, &frame[0]) || uw_read(w, fp + 8, &frame[1]))
		return -14;
	return 0;
}

static __always_inline void walk_stack(struct pt_regs *ctx, struct asz_stack *st, bool in_body)
{
	__u64 sp = PT_REGS_SP(ctx), fp = PT_REGS_FP(ctx), ret = 0;
	struct uw_win *w = bpf_map_lookup_elem(&uw_wins, &(__u32){0});
	struct mm_struct *mm = bpf_get_current_task_btf()->mm;
	__u64 frame[2], top = sp;
	bool chained = false;
	__u32 nr = 0;

	st->flags = 0;
	if (in_body) {
		/* inside the allocator (a system call): its caller's frame is not known */
		st->nr = 0;
		st->flags = ASZ_STACK_INCOMPLETE;
		return;
	}
	if (w && mm)
		uw_win_start(w, mm);
	else
		w = NULL; /* never so for a user task; then every frame is read alone */
	if (bpf_probe_read_user(&ret, sizeof(ret), (void *)sp) == 0 && ret)
		st->ips[nr++] = ret;
	for (int i = 1; i < ASZ_MAX_FRAMES; i++) {
		if (i >= max_depth)
			break;
		if (fp < sp || fp - sp > MAX_STACK_SPAN || (fp & 7))
			break;
		if (fp_frame(w, fp, frame, chained))
			break;
		if (chained)
			top = fp + 16; /* the span the window had to cover, for the next stack */
		if (frame[1] < 4096)
			break;
		st->ips[i] = frame[1];
		nr = i + 1;
		if (frame[0] <= fp)
			break;
		fp = frame[0];
		chained = true;
		if (i == max_depth - 1 || i == ASZ_MAX_FRAMES - 1)
			st->flags |= ASZ_STACK_TRUNCATED;
	}
	st->nr = nr;
	if (w)
		uw_win_learn(w, top - sp);
}

/*
 * Two lanes (even and odd frames), so that the multiplications of one do not wait for the
 * other's: the hash of a deep stack is a chain of dependent multiplies otherwise.
 */
static __always_inline __u64 stack_hash(const struct asz_stack *st)
{
	__u64 h = 0xcbf29ce484222325ull ^ st->nr, g = 0x84222325cbf29ce4ull;

	for (int i = 0; i < ASZ_MAX_FRAMES; i += 2) {
		if (i >= st->nr)
			break;
		h ^= st->ips[i];
		h *= 0x100000001b3ull;
		h ^= h >> 29;
		if (i + 1 >= st->nr || i + 1 >= ASZ_MAX_FRAMES)
			break;
		g ^= st->ips[i + 1];
		g *= 0x100000001b3ull;
		g ^= g >> 29;
	}
	h ^= (g << 31 | g >> 33) * 0x9e3779b97f4a7c15ull;
	return h ? h : 1;
}

struct vma_ctx {
	__u32 tgid;
	__u32 recorded;	  /* the mapping is in vmas now (or has no file: nothing to record) */
	__u64 start, end; /* the last mapping met: consecutive frames often share it */
};

/*
 * The mappings this CPU last recorded for one address space (see uw_space()): a new stack
 * whose frames lie in them needs no bpf_find_vma (~0.2 us and a try of the target's mmap lock
 * each) and no map update. Entries stay in vmas until their process is forgotten.
 */
#define VMA_SEEN 8 /* a power of two */

struct vma_seen {
	__u64 space;
	__u32 next;
	__u32 pad;
	__u64 start[VMA_SEEN], end[VMA_SEEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vma_seen);
} vma_seens SEC(".maps");

static long record_vma(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	struct vma_ctx *c = data;
	struct asz_vma_key key = {.tgid = c->tgid, .start = vma->vm_start};
	struct file *f = vma->vm_file;
	struct asz_vma v = {};
	long err;

	c->start = vma->vm_start;
	c->end = vma->vm_end;
	c->recorded = 1;
	if (!f)
		return 0;
	v.end = vma->vm_end;
	v.pgoff = vma->vm_pgoff << 12;
	v.ino = BPF_CORE_READ(f, f_inode, i_ino);
	v.dev = BPF_CORE_READ(f, f_inode, i_sb, s_dev);
	err = bpf_map_update_elem(&vmas, &key, &v, BPF_NOEXIST);
	/* full: not recorded, tried again with the next new stack */
	c->recorded = err == 0 || err == -EEXIST;
	return 0;
}

/*
 * Record the mapping of ip unless this CPU did lately (a global function: its loop is verified
 * once, not once per frame of the caller's loop).
 */
__noinline int record_vma_of(struct vma_seen *seen, struct vma_ctx *c, __u64 ip)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct vma_ctx v; /* bpf_find_vma's context must be on this stack */
	__u32 j;

	if (!seen || !c)
		return 0;
	for (j = 0; j < VMA_SEEN; j++) {
		if (ip >= seen->start[j] && ip < seen->end[j]) {
			c->start = seen->start[j];
			c->end = seen->end[j];
			return 0;
		}
	}
	v = *c;
	v.recorded = 0;
	if (bpf_find_vma(task, ip, record_vma, &v, 0))
		return 0;
	*c = v;
	if (!v.recorded)
		return 0;
	j = seen->next++ & (VMA_SEEN - 1);
	seen->start[j] = c->start;
	seen->end[j] = c->end;
	return 0;
}

/* Remember which file mappings a new stack's frames lie in (once per stack, not per call). */
static __always_inline void record_vmas(const struct asz_stack *st)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct vma_ctx c = {.tgid = bpf_get_current_pid_tgid() >> 32};
	struct vma_seen *seen = bpf_map_lookup_elem(&vma_seens, &(__u32){0});
	struct mm_struct *mm = task->mm;
	__u64 space;

	if (!seen || !mm)
		return;
	space = uw_space(task, mm);
	if (seen->space != space) {
		__builtin_memset(seen, 0, sizeof(*seen));
		seen->space = space;
	}
	for (int i = 0; i < ASZ_MAX_FRAMES; i++) {
		__u64 ip;

		if (i >= st->nr)
			break;
		ip = st->ips[i] - 1;
		if (ip < c.start || ip >= c.end)
			record_vma_of(seen, &c, ip);
	}
}

/*
 * st's id in map (stacks or long_stacks, whose values hold max frames): found from its hash h,
 * or added; never merges two different stacks. Inlined once per map.
 */
static __always_inline __u64 stack_put(void *map, struct asz_stack *st, __u64 h, __u32 max,
				       __u64 *hint)
{
	/* loaded apart from stack_equal's loop, whose bound must stay unknown (or no pruning) */
	__u32 nr = *(volatile __u32 *)&st->nr;
	const struct asz_stack *old;
	__u64 key;
	long err;

	/* a new element's hint word: none yet */
	if (nr < max && nr < ASZ_MAX_FRAMES)
		st->ips[nr] = 0;

	for (int i = 0; i < STACK_PROBES; i++) {
		/* probing stays within the id's half: ASZ_STACK_LONG as h has it */
		key = (h & ASZ_STACK_LONG) | ((h + i) & ~ASZ_STACK_LONG);
		if (key == ASZ_STACK_NONE)
			continue;
		old = bpf_map_lookup_elem(map, &key);
		if (!old) {
			err = bpf_map_update_elem(map, &key, st, BPF_NOEXIST);
			if (err == 0) {
				record_vmas(st);
				*hint = nr < max ? 0 : AGG_HINT_UNKNOWN;
				return key;
			}
			if (err != -EEXIST) {
				count_drop(ASZ_DROP_STACKS_FULL);
				return ASZ_STACK_NONE;
			}
			/* another CPU inserted this slot meanwhile */
			old = bpf_map_lookup_elem(map, &key);
			if (!old)
				continue;
		}
		if (stack_equal(old, st, max)) {
			/* (nr < max: within the element) */
			if (nr < max && nr < ASZ_MAX_FRAMES)
				*hint = old->ips[nr];
			return key;
		}
		count_drop(ASZ_DROP_STACK_COLLISION);
	}
	count_drop(ASZ_DROP_STACK_UNRESOLVED);
	return ASZ_STACK_NONE;
}

/* Walk the current stack (from inside the allocator: in_body) and intern it. */
static __always_inline __u64 stack_intern_scratch(struct pt_regs *ctx, bool in_body,
						   __u64 *hint)
{
	__u32 zero = 0;
	struct asz_stack *st = bpf_map_lookup_elem(&stack_scratch, &zero);
	__u64 h, key, sweeps;

	if (!st)
		return ASZ_STACK_NONE;
	/* read before any lookup: a sweep that starts after it moves it (see uw_memo_set_id) */
	sweeps = *(volatile __u64 *)&stack_sweeps;
	if (!unwind_dwarf) {
		walk_stack(ctx, st, in_body);
	} else {
		key = unwind_dwarf_stack(ctx, st, in_body, sweeps);
		/*
		 * the last stack again (complete: nothing to count), if user space has not deleted
		 * it since (an idle one it swept): else interned again below
		 */
		if (key != ASZ_STACK_NONE)
			return key;
	}
	if (st->flags & ASZ_STACK_TRUNCATED)
		count_drop(ASZ_DROP_STACK_TRUNCATED);
	if (st->flags & ASZ_STACK_INCOMPLETE)
		count_drop(ASZ_DROP_STACK_INCOMPLETE);
	h = stack_hash(st);
	if (st->nr <= ASZ_SHORT_FRAMES)
		key = stack_put(&stacks, st, h & ~ASZ_STACK_LONG, ASZ_SHORT_FRAMES, hint);
	else
		key = stack_put(&long_stacks, st, h | ASZ_STACK_LONG, ASZ_MAX_FRAMES, hint);
	if (unwind_dwarf)
		uw_memo_set_id(key, sweeps);
	return key;
}

/*
 * Per-CPU scratch is only safe while programs on one CPU do not overlap. Uprobe programs run
 * with migration off but preemptible: on a preempt=full kernel another task can run this
 * program on the same CPU meanwhile. It finds the scratch taken and records its block under
 * no stack, counted, rather than share (and corrupt) the stack being built.
 */
static __always_inline __u64 stack_intern(struct pt_regs *ctx, bool in_body, __u64 *hint)
{
	__u32 zero = 0, *busy = bpf_map_lookup_elem(&scratch_busy, &zero);
	__u64 key;

	if (!busy)
		return ASZ_STACK_NONE;
	if (__sync_lock_test_and_set(busy, 1)) {
		count_drop(ASZ_DROP_STACK_PREEMPTED);
		return ASZ_STACK_NONE;
	}
	key = stack_intern_scratch(ctx, in_body, hint);
	/* released after every access to the scratch (a compiler barrier, then a plain store) */
	asm volatile("" ::: "memory");
	*(volatile __u32 *)busy = 0;
	return key;
}

/*
 * A process's totals move by (bytes, count) blocks: heap blocks, or, kept apart, the anonymous
 * mappings the program makes itself. allocated: a new block (not a restored one).
 */
static __always_inline void proc_move(struct asz_proc_val *p, __u32 allocator, __s64 bytes,
				      __s64 count, bool allocated)
{
	if (ASZ_IS_MMAP(allocator)) {
		__sync_fetch_and_add(&p->mmap_bytes, bytes);
		__sync_fetch_and_add(&p->mmap_regions, count);
		return;
	}
	__sync_fetch_and_add(&p->live_bytes, bytes);
	__sync_fetch_and_add(&p->live_allocs, count);
	if (allocated) {
		__sync_fetch_and_add(&p->alloc_bytes, bytes);
		__sync_fetch_and_add(&p->allocs, count);
	} else {
		/* a free, or a failed realloc's block coming back: -count frees */
		__sync_fetch_and_add(&p->frees, -count);
	}
}

/* The end of a mapping of len bytes: the kernel maps whole pages (its size is the bytes asked) */
static __always_inline __u64 page_up(__u64 len)
{
	return (len + 4095) & ~4095ull;
}

/*
 * A process's index of its mappings' starts. Its lock is held for a few hundred instructions,
 * with no helper calls: a holder on another CPU is soon done; one preempted on this CPU is not,
 * and then the caller does without the index.
 */
static __always_inline bool mapidx_lock(struct asz_mapidx *m)
{
	for (int i = 0; i < 256; i++)
		if (!__sync_val_compare_and_swap(&m->lock, 0, 1))
			return true;
	return false;
}

static __always_inline void mapidx_unlock(struct asz_mapidx *m)
{
	__sync_lock_test_and_set(&m->lock, 0);
}

/* An index into starts the verifier can bound (where it may not see the test before it). */
static __always_inline __u32 slot(__u32 i)
{
	return i & (ASZ_MAPIDX_SLOTS - 1);
}

/*
 * With the lock held: the starts that are <= x (the index after them), of the first n. Global:
 * its callers go on with one unknown result, not one per path through the search.
 */
__noinline __u32 mapidx_rank(const struct asz_mapidx *m, __u32 n, __u64 x)
{
	__u32 l = 0, h = n;

	if (!m)
		return 0;
	for (int k = 0; k < 8; k++) {
		__u32 mid = (l + h) / 2;

		if (l >= h || mid >= ASZ_MAPIDX_SLOTS)
			break;
		if (m->starts[slot(mid)] <= x)
			l = mid + 1;
		else
			h = mid;
	}
	return l;
}

/* With the lock held: the count of starts, as the verifier can bound it. */
static __always_inline __u32 mapidx_n(const struct asz_mapidx *m)
{
	__u32 n = m->n;

	return n < ASZ_MAPIDX_SLOTS ? n : ASZ_MAPIDX_SLOTS;
}

/* With the lock held: an index of an image the process has exec'd away starts over empty. */
static __always_inline bool mapidx_current(struct asz_mapidx *m, __u32 gen)
{
	if (m->gen == gen)
		return true;
	if ((__s32)(gen - m->gen) < 0)
		return false; /* a stale block's: not indexed any more */
	/*
	 * A new entry (generation 0, empty) keeps its count of mappings left out: another thread
	 * of this image may have found it locked and counted one between its creation and now.
	 */
	if (m->gen || m->n)
		m->outside = 0;
	m->gen = gen;
	m->n = 0;
	m->stale = 0;
	return true;
}

/*
 * A new mapping of image gen starts at addr: put in order (counted when it does not fit).
 * The index's functions are global: verified once, not at each of the many places they serve.
 */
__noinline int mapidx_add(__u32 tgid, __u32 gen, __u64 addr, __u64 end)
{
	struct asz_mapidx *m = bpf_map_lookup_elem(&mapidx, &tgid);
	__u32 n, pos;

	if (!m) {
		/* generation 0: the first add starts it over at gen */
		bpf_map_update_elem(&mapidx, &tgid, &mapidx_empty, BPF_NOEXIST);
		m = bpf_map_lookup_elem(&mapidx, &tgid);
		if (!m) {
			count_drop(ASZ_DROP_MAPPINGS_UNINDEXED); /* no index: munmaps walk */
			return 0;
		}
	}
	if (!mapidx_lock(m)) {
		__sync_fetch_and_add(&m->outside, 1);
		count_drop(ASZ_DROP_MAPPINGS_UNINDEXED);
		return 0;
	}
	if (!mapidx_current(m, gen))
		goto unlock;
	n = mapidx_n(m);
	pos = mapidx_rank(m, n, addr);
	if (end > m->top)
		m->top = end;
	if (pos > 0 && pos <= ASZ_MAPIDX_SLOTS && m->starts[slot(pos - 1)] == addr)
		goto unlock;
	if (n >= ASZ_MAPIDX_SLOTS) {
		__sync_fetch_and_add(&m->outside, 1);
		mapidx_unlock(m);
		count_drop(ASZ_DROP_MAPPINGS_UNINDEXED);
		return 0;
	}
	for (int i = ASZ_MAPIDX_SLOTS - 1; i > 0; i--) {
		if (i <= pos)
			break;
		if (i <= n)
			m->starts[i] = m->starts[i - 1];
	}
	if (pos < ASZ_MAPIDX_SLOTS)
		m->starts[slot(pos)] = addr;
	m->n = n + 1;
unlock:
	mapidx_unlock(m);
	return 0;
}

/* The mapping of image gen at addr is gone: out of the index. */
__noinline int mapidx_remove(__u32 tgid, __u32 gen, __u64 addr)
{
	struct asz_mapidx *m = bpf_map_lookup_elem(&mapidx, &tgid);
	__u32 n, pos;

	if (!m)
		return 0;
	if (!mapidx_lock(m)) {
		/* its start stays: a mapping made there later could hide behind it */
		m->stale = 1;
		count_drop(ASZ_DROP_MAPPINGS_UNINDEXED);
		return 0;
	}
	if (m->gen != gen)
		goto unlock;
	n = mapidx_n(m);
	pos = mapidx_rank(m, n, addr);
	if (pos == 0 || pos > ASZ_MAPIDX_SLOTS || m->starts[slot(pos - 1)] != addr) {
		/* one of those that did not fit */
		if (m->outside)
			m->outside--;
		goto unlock;
	}
	for (int i = 0; i < ASZ_MAPIDX_SLOTS - 1; i++) {
		if (i + 1 >= n)
			break;
		if (i >= pos - 1)
			m->starts[i] = m->starts[i + 1];
	}
	m->n = n - 1;
	if (n == 1)
		m->top = 0;
unlock:
	mapidx_unlock(m);
	return 0;
}

/* When the mapping at key was made (0: not known). */
static __always_inline __u64 mapping_made(const struct asz_alloc_key *key)
{
	__u64 *made = bpf_map_lookup_elem(&mappings, key);

	return made ? *made : 0;
}

/*
 * Note a block that is a mapping in the mappings indexes (counted when they are full), made at
 * made (0: now).
 */
static __always_inline void mapping_index(__u32 tgid, const struct asz_alloc_key *key,
					  const struct asz_alloc_val *v, __u64 made)
{
	if (!ASZ_IS_MMAP(v->allocator))
		return;
	if (!made)
		made = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&mappings, key, &made, BPF_NOEXIST)) {
		count_drop(ASZ_DROP_ALLOCS_FULL);
		return;
	}
	mapidx_add(tgid, v->gen, key->addr, key->addr + page_up(v->size));
}

/* The block at key (a mapping of image gen) leaves the mappings indexes. */
static __always_inline void mapping_unindex(__u32 tgid, const struct asz_alloc_key *key, __u32 gen)
{
	if (!bpf_map_delete_elem(&mappings, key))
		mapidx_remove(tgid, gen, key->addr);
}

/* Retire a live block: its bytes leave its stack's and its process's live totals. */
static __always_inline bool block_remove(__u32 tgid, __u64 addr, struct asz_alloc_val *out)
{
	struct asz_alloc_key key = {.tgid = tgid, .addr = addr};
	struct asz_alloc_val *v = bpf_map_lookup_elem(&allocs, &key), copy;
	struct asz_agg_val *a;
	struct asz_proc_val *p;

	if (!v)
		return false;
	copy = *v;
	/* a failed delete means a racing free of the same block already accounted it */
	if (bpf_map_delete_elem(&allocs, &key))
		return false;
	if (ASZ_IS_MMAP(copy.allocator))
		mapping_unindex(tgid, &key, copy.gen);
	p = bpf_map_lookup_elem(&procs, &tgid);
	/*
	 * A block of an image the process has since exec'd away: already gone from the totals; or
	 * of an exited process whose pid is another's now; or of one forgotten (its slots freed).
	 */
	if (!p || p->gen != copy.gen || p->dead)
		return false;
	a = agg_at(copy.slot);
	if (a) {
		/*
		 * live_allocs last: user space frees a retired slot once it reads no block live, and
		 * nothing may write to it after that
		 */
		__sync_fetch_and_add(&a->frees, copy.count);
		__sync_fetch_and_add(&a->live_bytes, -(__s64)copy.size);
		__sync_fetch_and_add(&a->live_allocs, -(__s64)copy.count);
	}
	if (p)
		proc_move(p, copy.allocator, -(__s64)copy.size, -(__s64)copy.count, false);
	if (out)
		*out = copy;
	return true;
}

/* Undo block_remove() for a realloc that failed and kept its block. Global: a frame of its own. */
__noinline int block_restore(__u32 tgid, __u64 addr, const struct asz_tstate *ts)
{
	struct asz_alloc_key key = {.tgid = tgid, .addr = addr};
	struct asz_alloc_val val = {};
	struct asz_agg_val *a;
	struct asz_proc_val *p = bpf_map_lookup_elem(&procs, &tgid);
	__u64 r;

	if (!ts)
		return 0;
	val.size = ts->old_size;
	val.stack_id = ts->old_stack_id;
	val.allocator = ts->old_allocator;
	val.count = ts->old_count;
	val.gen = ts->old_gen;
	/* by its key: its slot may have been retired since (no block held it) */
	a = agg_of_block(tgid, &val, &r);
	if (!a) {
		count_drop(ASZ_DROP_AGGS_FULL);
		if (p)
			__sync_fetch_and_add(&p->drops, 1);
		return 0;
	}
	if (bpf_map_update_elem(&allocs, &key, &val, BPF_NOEXIST)) {
		count_drop(ASZ_DROP_ALLOCS_FULL);
		return 0;
	}
	mapping_index(tgid, &key, &val, ts->old_made ?: 1);
	__sync_fetch_and_add(&a->live_bytes, val.size);
	__sync_fetch_and_add(&a->live_allocs, val.count);
	if (val.slot != ts->old_slot || (r & AGG_NEW)) {
		/*
		 * its aggregate was retired meanwhile (or its stack deleted): in the one it counts in
		 * now, freed and allocated again (that one never counted the free)
		 */
		__sync_fetch_and_add(&a->alloc_bytes, val.size);
		__sync_fetch_and_add(&a->allocs, val.count);
	} else {
		__sync_fetch_and_add(&a->frees, -(__s64)val.count);
	}
	if (p)
		proc_move(p, val.allocator, val.size, val.count,
			  val.slot != ts->old_slot || (r & AGG_NEW));
	return 0;
}

static __always_inline void unknown_free(__u32 tgid)
{
	struct asz_proc_val *p;

	/* when sampling or skipping small blocks, untracked blocks are by design: no news */
	if (sample_bytes || min_size)
		return;
	p = proc_get(tgid);
	count_drop(ASZ_DROP_UNKNOWN_FREE);
	if (p)
		__sync_fetch_and_add(&p->unknown_frees, 1);
}

/*
 * Track a new live block; counts a drop and records nothing if a map is full. Global: its frame
 * is not in its caller's (count << 32 | allocator: five arguments at most).
 */
__noinline int block_add(__u32 tgid, __u64 addr, __u64 size, __u64 stack_id, __u64 count_alloc)
{
	__u32 count = count_alloc >> 32, allocator = (__u32)count_alloc;
	struct asz_alloc_key key = {.tgid = tgid, .addr = addr};
	struct asz_alloc_val val = {.size = size,
				    .stack_id = stack_id,
				    .allocator = allocator,
				    .count = count};
	struct asz_proc_val *p;
	struct asz_agg_val *a;
	long err;
	__u64 r;

	p = proc_get(tgid);
	if (!p) {
		count_drop(ASZ_DROP_PROCS_FULL);
		return 0;
	}
	val.gen = p->gen;
	a = agg_of_block(tgid, &val, &r);
	if (!a) {
		count_drop(ASZ_DROP_AGGS_FULL);
		__sync_fetch_and_add(&p->drops, 1);
		return 0;
	}
	err = bpf_map_update_elem(&allocs, &key, &val, BPF_NOEXIST);
	if (err == -EEXIST) {
		/*
		 * The allocator handed out an address we still think is live: we missed its free
		 * (unless the entry is from an image the process exec'd away).
		 */
		if (block_remove(tgid, addr, NULL))
			count_drop(ASZ_DROP_MISSED_FREE);
		err = bpf_map_update_elem(&allocs, &key, &val, BPF_NOEXIST);
	}
	if (err) {
		count_drop(ASZ_DROP_ALLOCS_FULL);
		__sync_fetch_and_add(&p->drops, 1);
		return 0;
	}
	mapping_index(tgid, &key, &val, 0);
	__sync_fetch_and_add(&a->live_bytes, size);
	__sync_fetch_and_add(&a->live_allocs, count);
	__sync_fetch_and_add(&a->alloc_bytes, size);
	__sync_fetch_and_add(&a->allocs, count);
	proc_move(p, allocator, size, count, true);
	return 0;
}

/* An exponential draw with mean sample_bytes (never 0: 0 marks "not drawn yet"). */
static __always_inline __s64 sample_draw(void)
{
	__u32 i = bpf_get_prandom_u32() & (ASZ_EXP_TABLE - 1);
	__u64 *v = bpf_map_lookup_elem(&exp_table, &i);

	return v ? (__s64)((sample_bytes * *v) >> 16) + 1 : (__s64)sample_bytes;
}

/*
 * The blocks a sampled block of size bytes stands for, w / size (>= 1), in whole blocks: rounded
 * up with the probability of its fraction, so that its expectation is w / size (rounding to the
 * nearest biased the estimates of blocks near the period by up to a third).
 */
static __always_inline __u32 sample_count(__u64 w, __u64 size)
{
	__u64 q = w / size, r = w - q * size;

	/* r / size against a 32-bit draw: both scaled down while size needs more than 32 bits */
	for (int k = 0; k < 32 && (size >> 32); k++) {
		size >>= 1;
		r >>= 1;
	}
	if (r && (__u64)bpf_get_prandom_u32() * size < (r << 32))
		q++;
	return q;
}

/*
 * Poisson sampling of bytes: a block of size s is sampled with probability p = 1 - e^(-s/N)
 * and then stands for s/p bytes and 1/p blocks, so sums stay unbiased. s/p = N * x/(1-e^-x)
 * with x = s/N, interpolated from a table. Returns false when the block is not sampled.
 */
static __always_inline bool sample(struct asz_tstate *ts, __u64 size)
{
	__u64 x64, frac, w;
	__u32 i, j;
	__u64 *a, *b;

	/*
	 * A size that cannot succeed (a calloc whose product overflowed, a negative size) takes
	 * nothing from the countdown: from 2^63 on, subtracting it moved the next sample point up
	 * to 2^63 bytes away, leaving the thread unsampled.
	 */
	if (size >= NEW_FAILS_FROM)
		return false;
	if (!ts->sample_left)
		ts->sample_left = sample_draw();
	ts->sample_left -= size;
	if (ts->sample_left > 0 || size == 0)
		return false;
	for (int k = 0; k < 8 && ts->sample_left <= 0; k++)
		ts->sample_left += sample_draw();
	if (ts->sample_left <= 0)
		ts->sample_left = sample_draw();

	x64 = size * ASZ_WEIGHT_STEPS / sample_bytes;
	if (x64 >= ASZ_WEIGHT_TABLE - 1) {
		w = size; /* p = 1 to within e^-16 */
	} else {
		i = x64;
		j = i + 1;
		a = bpf_map_lookup_elem(&weight_table, &i);
		b = bpf_map_lookup_elem(&weight_table, &j);
		if (!a || !b)
			return false;
		frac = size * ASZ_WEIGHT_STEPS - x64 * sample_bytes; /* in units of 1/sample_bytes */
		w = sample_bytes * *a + frac * (*b - *a); /* in 1/65536 bytes */
		/*
		 * Whole bytes, rounded up with the probability of the fraction: truncated, small
		 * periods were biased low (1-byte blocks by 37% at N = 1, 21% at N = 2).
		 */
		w = (w >> 16) + ((bpf_get_prandom_u32() & 0xffff) < (w & 0xffff));
		if (w < size)
			w = size;
	}
	ts->weight = w;
	ts->count = sample_count(w, size);
	return true;
}

/* Is addr in the page the kernel returns through for return probes (the xol area's)? */
static __always_inline bool uretprobe_trampoline(__u64 addr)
{
	struct mm_struct *mm = bpf_get_current_task_btf()->mm;
	__u64 xol;

	if (!mm || !bpf_core_field_exists(mm->uprobes_state))
		return false;
	xol = BPF_CORE_READ(mm, uprobes_state.xol_area, vaddr);
	return xol && addr >= xol && addr < xol + 4096;
}

/* The kernel has bpf_find_vma (set by the loader). */
const volatile bool have_find_vma = false;

/* The code mapping of ts->skip_ip into ts (1), or 0 (the mmap lock busy). Global: its frame. */
__noinline int skip_text_find(struct asz_tstate *ts)
{
	struct uw_vma v = {}; /* bpf_find_vma's context must be on this stack */

	if (!ts || bpf_find_vma(bpf_get_current_task_btf(), ts->skip_ip, uw_vma_cb, &v, 0) ||
	    ts->skip_ip < v.vm_start || ts->skip_ip >= v.vm_end)
		return 0;
	ts->skip_text_lo = v.vm_start;
	ts->skip_text_hi = v.vm_end;
	return 1;
}

/*
 * Is the return address at sp (an mmap's caller) in the code mapping of the unseen call's
 * probe (its allocator's)? A program's own mmap is not (a hook of the program's the allocator
 * calls is not either). 1 where it cannot tell (no bpf_find_vma, the mmap lock busy, another
 * tracer's return probe there). The mapping is kept in ts: the lock is often busy where the
 * program maps memory from several threads.
 */
static __always_inline bool called_from_text_of(struct asz_tstate *ts, __u64 sp)
{
	__u64 ra;

	if (!have_find_vma || bpf_probe_read_user(&ra, sizeof(ra), (void *)sp) ||
	    uretprobe_trampoline(ra))
		return true;
	if ((ts->skip_ip < ts->skip_text_lo || ts->skip_ip >= ts->skip_text_hi) &&
	    !skip_text_find(ts))
		return true;
	return ra >= ts->skip_text_lo && ra < ts->skip_text_hi;
}

/*
 * An allocator call whose return will not be seen: the mappings made below its frame are its
 * own, not the program's (see the skip_sp test at the entry).
 */
static __always_inline void note_unseen_call(struct pt_regs *ctx, struct asz_tstate *ts)
{
	ts->skip_ip = PT_REGS_IP(ctx);
	ts->skip_sp = PT_REGS_SP(ctx);
	if (bpf_probe_read_user(&ts->skip_ra, sizeof(ts->skip_ra), (void *)ts->skip_sp))
		ts->skip_sp = 0;
}

/* jemalloc's rallocx and xallocx: realloc's accounting, but they never free their block */
static __always_inline bool resizes(__u32 allocator)
{
	return allocator == ASZ_RALLOCX || allocator == ASZ_XALLOCX;
}

/*
 * The keys and block copy of mapping_trim_head() and mapping_cut(): one frame for both; made:
 * when the mapping at key was made, its pieces' time (1 if not indexed: never left alone).
 */
struct unmap_tmp {
	struct asz_alloc_key key, rest;
	struct asz_alloc_val copy;
	__u64 made;
};

/*
 * munmap of the first len bytes of a mapping the program made: its rest stays, the same
 * mapping of the same stack (no free, no new allocation), only len bytes fewer. True if done;
 * false when addr starts no mapping we know, or len covers it all (then it is retired whole).
 */
static __always_inline bool mapping_trim_head(__u32 tgid, __u64 addr, __u64 len,
					      struct unmap_tmp *t)
{
	struct asz_alloc_key *key = &t->key, *rest = &t->rest;
	struct asz_alloc_val *v, *copy = &t->copy;
	struct asz_proc_val *p;
	struct asz_agg_val *a;

	*key = (struct asz_alloc_key){.tgid = tgid, .addr = addr};
	*rest = (struct asz_alloc_key){.tgid = tgid};
	v = bpf_map_lookup_elem(&allocs, key);
	if (!v || len >= v->size || !ASZ_IS_MMAP(v->allocator))
		return false;
	*copy = *v;
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p || p->gen != copy->gen || p->dead)
		return false; /* stale: retired whole (block_remove knows) */
	rest->addr = addr + len;
	copy->size -= len;
	if (bpf_map_update_elem(&allocs, rest, copy, BPF_NOEXIST)) {
		count_drop(ASZ_DROP_ALLOCS_FULL);
		return false; /* no room: retired whole */
	}
	if (bpf_map_delete_elem(&allocs, key)) {
		/* a racing munmap retired it meanwhile */
		bpf_map_delete_elem(&allocs, rest);
		return true;
	}
	mapping_unindex(tgid, key, copy->gen);
	mapping_index(tgid, rest, copy, t->made ?: 1);
	a = agg_at(copy->slot);
	if (a)
		__sync_fetch_and_add(&a->live_bytes, -(__s64)len);
	__sync_fetch_and_add(&p->mmap_bytes, -(__s64)len);
	return true;
}

/*
 * munmap from lo (page-aligned, inside a mapping the program made) to its end: the same mapping,
 * lo - start bytes long. With keep_from inside it, the bytes from there on stay: the kernel split
 * the mapping, and its rest is a region of its own (of the same stack, not a new allocation).
 */
static __always_inline void mapping_cut(__u32 tgid, __u64 start, __u64 lo, __u64 keep_from,
					struct unmap_tmp *t)
{
	struct asz_alloc_key *key = &t->key, *rest = &t->rest;
	struct asz_alloc_val *v, *copy = &t->copy;
	struct asz_proc_val *p = bpf_map_lookup_elem(&procs, &tgid);
	struct asz_agg_val *a;
	__u64 end, gone;
	__u32 split = 0;

	*key = (struct asz_alloc_key){.tgid = tgid, .addr = start};
	*rest = (struct asz_alloc_key){.tgid = tgid};
	v = bpf_map_lookup_elem(&allocs, key);
	if (!v || !p || p->gen != v->gen || p->dead || !ASZ_IS_MMAP(v->allocator))
		return;
	*copy = *v;
	end = start + copy->size;
	if (lo <= start || lo >= end)
		return; /* only the pages' slack past the bytes asked: nothing held there */
	gone = end - lo;
	if (keep_from > lo && keep_from < end) {
		rest->addr = keep_from;
		copy->size = end - keep_from;
		if (bpf_map_update_elem(&allocs, rest, copy, BPF_NOEXIST)) {
			count_drop(ASZ_DROP_ALLOCS_FULL); /* no room: the rest goes too */
		} else {
			mapping_index(tgid, rest, copy, t->made ?: 1);
			gone = keep_from - lo;
			split = copy->count;
		}
	}
	v->size = lo - start;
	a = agg_at(copy->slot);
	if (a) {
		__sync_fetch_and_add(&a->live_bytes, -(__s64)gone);
		__sync_fetch_and_add(&a->live_allocs, split);
		__sync_fetch_and_add(&a->allocs, split);
	}
	__sync_fetch_and_add(&p->mmap_bytes, -(__s64)gone);
	__sync_fetch_and_add(&p->mmap_regions, split);
}

/*
 * What [lo, hi) takes of the mapping at start, if made before before: all of it, its head, its
 * tail or its middle. 1 if it was. Global: verified once, not at each of the up to
 * UNMAP_PASSES * UNMAP_MAX calls.
 */
__noinline int mapping_unmap_one(__u32 tgid, __u64 start, __u64 lo, __u64 hi, __u64 before)
{
	struct unmap_tmp t = {.key = {.tgid = tgid, .addr = start}};
	struct asz_alloc_val *v = bpf_map_lookup_elem(&allocs, &t.key);
	__u64 end;

	if (!v)
		return 0;
	t.made = mapping_made(&t.key);
	if (t.made >= before)
		return 0;
	end = start + page_up(v->size);
	if (lo > start)
		mapping_cut(tgid, start, lo, hi < end ? hi : 0, &t);
	else if (hi >= end || !mapping_trim_head(tgid, start, hi - start, &t))
		block_remove(tgid, start, NULL);
	return 1;
}

/* Mappings a range overlaps, found per walk of the index (a range over more is rare). */
#define UNMAP_MAX 8
#define UNMAP_PASSES 4

struct unmap_ctx {
	__u32 tgid;
	__u32 n;
	__u64 lo;
	__u64 hi;
	__u64 after; /* mapidx_find: the last start looked at */
	__u64 before; /* mappings made from then on are left alone */
	__u64 starts[UNMAP_MAX];
};

static long unmap_find(struct bpf_map *map, struct asz_alloc_key *key, __u64 *made,
		       struct unmap_ctx *c)
{
	struct asz_alloc_val *v;
	__u32 n = c->n;

	if (key->tgid != c->tgid || *made >= c->before)
		return 0;
	v = bpf_map_lookup_elem(&allocs, key);
	if (!v || key->addr >= c->hi || key->addr + page_up(v->size) <= c->lo)
		return 0;
	if (n >= UNMAP_MAX)
		return 1;
	c->starts[n] = key->addr;
	c->n = n + 1;
	return c->n >= UNMAP_MAX;
}

/*
 * From the process's index, into c: the starts of the mappings that overlap [c->lo, c->hi),
 * of up to UNMAP_MAX looked at from the last that starts at or before c->lo (c->after = 0)
 * or after c->after, which becomes the last looked at. 1 if more may follow, 0 if not, -1 if
 * the index cannot tell (then the mappings map is walked), -2 if the process has none. The
 * index is of the process's current image (an exec or a pid's reuse removes it).
 */
__noinline int mapidx_find(struct unmap_ctx *c)
{
	struct asz_mapidx *m;
	__u64 seen[UNMAP_MAX];
	__u32 n, i0, nseen = 0;

	if (!c)
		return -1;
	m = bpf_map_lookup_elem(&mapidx, &c->tgid);
	if (!m)
		return -2;
	if (!mapidx_lock(m))
		return -1;
	if (m->outside || m->stale) {
		mapidx_unlock(m);
		return -1;
	}
	n = mapidx_n(m);
	/*
	 * From the last start below lo, not at it: one made at lo since the range was freed
	 * (another thread's mmap given the pages before this exit was seen) hides the one the
	 * range is cut from, which starts below it.
	 */
	i0 = mapidx_rank(m, n, c->after ? c->after : c->lo ? c->lo - 1 : 0);
	if (!c->after && i0 > 0)
		i0--;
	for (int j = 0; j < UNMAP_MAX; j++) {
		__u32 i = i0 + j;
		__u64 start;

		if (i >= n || i >= ASZ_MAPIDX_SLOTS)
			break;
		start = m->starts[slot(i)];
		if (start >= c->hi)
			break;
		seen[j] = start;
		nseen = j + 1;
	}
	mapidx_unlock(m);
	/* the one before lo may end before it */
	c->n = 0;
	for (int j = 0; j < UNMAP_MAX; j++) {
		struct asz_alloc_key key = {.tgid = c->tgid};
		struct asz_alloc_val *v;

		if (j >= nseen)
			break;
		key.addr = seen[j];
		c->after = seen[j];
		v = bpf_map_lookup_elem(&allocs, &key);
		if (!v || key.addr + page_up(v->size) <= c->lo)
			continue;
		c->starts[c->n & (UNMAP_MAX - 1)] = key.addr;
		c->n++;
	}
	return nseen == UNMAP_MAX;
}

/*
 * The mappings [lo, hi) overlaps, each cut; 1 if there was any. Those done leave the range (a
 * cut one stays before lo): each pass goes on after the last start the one before found, to
 * UNMAP_PASSES. The index finds them in its sorted starts; without it (mappings that did not
 * fit), a walk of the mappings map. Global: verified once, for its three callers.
 */
__noinline int mappings_search(__u32 tgid, __u64 lo, __u64 hi, __u64 before)
{
	struct unmap_ctx c = {.tgid = tgid, .lo = lo, .hi = hi, .before = before};
	struct asz_proc_val *p;
	int any = 0;

	for (int pass = 0; pass < UNMAP_PASSES; pass++) {
		int more;

		c.n = 0;
		more = mapidx_find(&c);
		if (more == -2) {
			/* no index: none of its own, or one could not be made (counted) */
			p = bpf_map_lookup_elem(&procs, &tgid);
			if (!p || p->mmap_regions <= 0)
				return any;
		}
		if (more < 0) {
			bpf_for_each_map_elem(&mappings, unmap_find, &c, 0);
			more = c.n >= UNMAP_MAX;
		}
		for (int i = 0; i < UNMAP_MAX; i++) {
			if (i >= c.n)
				break;
			any |= mapping_unmap_one(tgid, c.starts[i], lo, hi, before);
		}
		if (!more)
			return any;
	}
	count_drop(ASZ_DROP_ALLOCS_FULL); /* more mappings than followed: said, not silent */
	return any;
}

/*
 * [lo, hi) (page-aligned) is no longer mapped (munmap, or a fixed mapping put there): each
 * mapping of the program's it overlaps, made before before, loses those bytes. True if there
 * was any.
 */
static __always_inline bool mappings_unmap(__u32 tgid, __u64 lo, __u64 hi, __u64 before)
{
	struct asz_alloc_key key = {.tgid = tgid, .addr = lo};
	struct asz_alloc_val *v = bpf_map_lookup_elem(&allocs, &key);
	struct asz_mapidx *m;

	if (hi <= lo)
		return false;
	/* the common case, the whole of one mapping or its head: no search */
	if (v && ASZ_IS_MMAP(v->allocator) && hi - lo <= page_up(v->size) &&
	    mapping_unmap_one(tgid, lo, lo, hi, before))
		return true;
	/*
	 * The next most common: below or above all of them (malloc's, the C library's, file
	 * mappings), told without the lock: starts[0] and top only move with mappings made or
	 * unmapped, which an munmap that overlaps none of them does not race with.
	 */
	m = bpf_map_lookup_elem(&mapidx, &tgid);
	if (m && !m->outside && !m->stale &&
	    (!m->n || hi <= m->starts[0] || lo >= m->top))
		return false;
	return mappings_search(tgid, lo, hi, before);
}

/*
 * Is [addr, addr + len) one whole mapping the program made (1), or does one begin at addr (2)?
 * (Two it made side by side are one to the kernel, and may move as one: a part of each.)
 */
static __always_inline int mapping_at(__u32 tgid, __u64 addr, __u64 len)
{
	struct asz_alloc_key key = {.tgid = tgid, .addr = addr};
	struct asz_alloc_val *v = bpf_map_lookup_elem(&allocs, &key);

	if (!v || !ASZ_IS_MMAP(v->allocator))
		return 0;
	return len == page_up(v->size) ? 1 : 2;
}

/*
 * An allocator's entry (syscall: a system call's, ctx its user registers). Returns 1 when its
 * return need not be seen (uprobe sessions then skip the return trap), 0 otherwise.
 */
static __always_inline int on_entry(struct pt_regs *ctx, __u64 a1, __u64 a2, __u64 a3, __u64 a4,
				    __u32 allocator, bool session, bool syscall)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	bool frees_itself = allocator == (ASZ_REALLOC | ASZ_REALLOC_FREES_ITSELF);
	struct asz_tstate *ts;
	__u64 size = 0, arg = 0;

	if (empty_probes)
		return session;
	if (frees_itself)
		allocator = ASZ_REALLOC;
	if (syscall ? !syscall_traced(tgid) : !traced(tgid)) {
		/* its realloc'ed block goes (its new one is not recorded: out of the filters) */
		if ((allocator == ASZ_REALLOC || allocator == ASZ_MREMAP) && a1 && left_filter(tgid))
			block_remove(tgid, a1, NULL);
		return 1;
	}
	ts = bpf_task_storage_get(&tstates, bpf_get_current_task_btf(), 0,
				  BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!ts) {
		count_drop(ASZ_DROP_THREAD_STATE);
		return 0;
	}
	ts->deleted = 0; /* that delete is over: the next unknown free of its block is news */
	if (syscall)
		ts->sys_entered++;
	/* glibc calls itself (realloc(NULL, n) -> malloc, ...): only the outermost call counts */
	if (ts->depth++ > 0)
		return 0;
	if (ASZ_IS_MMAP(allocator))
		ts->since = bpf_ktime_get_ns();
	/* (no allocator we probe calls mremap inside malloc, calloc or operator new) */
	if (ts->skip_sp && allocator == ASZ_MMAP) {
		__u64 sp = PT_REGS_SP(ctx), ra = 0;

		/*
		 * Below that call's frame, which still returns where it did (or to the uretprobe
		 * trampoline another tracer's return probe put there), called from the allocator's
		 * code (a later call of the program's own from a frame over that stale slot is not):
		 * made inside it. Its own return probe, where it has one (a huge operator new alone
		 * is in a session), must find a call that records nothing.
		 */
		if (sp < ts->skip_sp && !bpf_probe_read_user(&ra, sizeof(ra), (void *)ts->skip_sp) &&
		    (ra == ts->skip_ra || uretprobe_trampoline(ra))) {
			/* (one from other code, a hook's, counts: the call may go on) */
			if (called_from_text_of(ts, sp)) {
				if (session) {
					ts->depth--;
					return 1;
				}
				ts->allocator = allocator;
				ts->count = 0;
				ts->old_valid = 0;
				ts->flags = 0;
				return 0;
			}
		} else {
			ts->skip_sp = 0;
		}
	}

	switch (allocator) {
	case ASZ_MALLOC:
	case ASZ_VALLOC:
	case ASZ_PVALLOC:
	case ASZ_MALLOCX:
	case ASZ_NEW: /* every variant: size first (alignment, nothrow after) */
		size = a1;
		break;
	case ASZ_CALLOC:
		/* on overflow calloc fails and records nothing, whatever size says */
		size = a1 * a2;
		break;
	case ASZ_REALLOC:
	case ASZ_RALLOCX:
	case ASZ_XALLOCX:
		arg = a1;
		size = a2;
		break;
	case ASZ_MEMALIGN:
		size = a2;
		break;
	case ASZ_POSIX_MEMALIGN:
		arg = a1;
		size = a3;
		break;
	case ASZ_MMAP:
		size = a2;
		break;
	case ASZ_MREMAP:
		arg = a1;
		size = a3;
		break;
	default:
		ts->depth--;
		return 0;
	}
	/*
	 * operator new throws when it fails, and no exception unwinds through a return probe (the
	 * kernel's trampoline has no CFI: std::terminate). A size that fails for sure (catching
	 * bad_alloc for an absurd size is common C++) has its return left alone: sessions only.
	 */
	if (session && allocator == ASZ_NEW && size >= NEW_FAILS_FROM) {
		ts->depth--;
		note_unseen_call(ctx, ts); /* jemalloc maps memory for it (an arena) */
		return 1;
	}
	ts->allocator = allocator;
	ts->size = size;
	ts->arg = arg;
	ts->extra = allocator == ASZ_XALLOCX ? a3 : 0;
	ts->flags = ASZ_IS_MMAP(allocator) ? a4 : 0;
	if (allocator == ASZ_MREMAP) {
		int at = mapping_at(tgid, arg, page_up(a2));

		ts->extra = page_up(a2);
		/*
		 * A part of a mapping moves or grows: followed at the return, if it succeeds. 0
		 * bytes of a shared one: a copy of it (the program's if the original is).
		 */
		if (!a2)
			ts->flags |= at ? ASZ_MREMAP_DUP : ASZ_MREMAP_PART;
		else if (at != 1)
			ts->flags |= ASZ_MREMAP_PART | (at ? ASZ_MREMAP_HEAD : 0);
	}
	ts->old_valid = 0;
	ts->old_unknown = 0;
	ts->weight = size;
	ts->count = 1;
	if (allocator == ASZ_MMAP && !(a4 & 0x20 /* MAP_ANONYMOUS */)) {
		ts->count = 0; /* file mappings are not memory the program allocated */
	} else if (ASZ_IS_MMAP(allocator)) {
		/* mappings are few and large: always exact, never sampled */
	} else if ((min_size && size < min_size) || (sample_bytes && !sample(ts, size))) {
		ts->count = 0;
		/*
		 * Nothing to record. With a session the return trap is skipped, but only for
		 * malloc and calloc, which call no other allocator we probe: elsewhere the depth
		 * must be kept, or the allocator called inside is sampled again (jemalloc's
		 * operator new calls its malloc, tcmalloc's valloc and pvalloc its memalign).
		 */
		if (session && (allocator == ASZ_MALLOC || allocator == ASZ_CALLOC)) {
			ts->depth--;
			note_unseen_call(ctx, ts);
			return 1;
		}
	}
	/*
	 * realloc retires the old block now, before glibc can hand its address to another thread;
	 * the return probe puts it back if realloc fails. glibc's realloc(p, 0) calls free(p),
	 * whose probe retires it; other allocators free it themselves: retired here. rallocx and
	 * xallocx never free their block: it is put back if they fail, whatever the size. So does
	 * mremap the mapping that begins where it begins (the whole, or its head: its rest is put
	 * back at the return), before the kernel can give those pages to another thread's mmap,
	 * whose block would meet it there.
	 */
	if ((allocator == ASZ_REALLOC || resizes(allocator) ||
	     (allocator == ASZ_MREMAP && !(ts->flags & ASZ_MREMAP_DUP) &&
	      (!(ts->flags & ASZ_MREMAP_PART) || (ts->flags & ASZ_MREMAP_HEAD)))) &&
	    arg && (size || frees_itself || resizes(allocator))) {
		struct asz_alloc_key okey = {.tgid = tgid, .addr = arg};
		struct asz_alloc_val old;

		ts->old_made = allocator == ASZ_MREMAP ? mapping_made(&okey) : 0;
		if (block_remove(tgid, arg, &old)) {
			ts->old_valid = 1;
			ts->old_size = old.size;
			ts->old_stack_id = old.stack_id;
			ts->old_allocator = old.allocator;
			ts->old_count = old.count;
			ts->old_gen = old.gen;
			ts->old_slot = old.slot;
		} else if (allocator == ASZ_MREMAP) {
			ts->count = 0; /* a mapping we do not track (a file, or made by malloc) */
		} else {
			ts->old_unknown = 1; /* counted at the return, if realloc did let it go */
		}
	}
	/* the stack walk is the expensive part: only for blocks that will be recorded */
	ts->agg_hint = AGG_HINT_UNKNOWN;
	ts->stack_id = ts->count ? stack_intern(ctx, syscall, &ts->agg_hint) : ASZ_STACK_NONE;
	return 0;
}

/* mmap(2)'s and mremap(2)'s flags (no uapi header beside vmlinux.h) */
#define MAP_FIXED_ 0x10
#define MREMAP_FIXED_ 2

/* An allocator's return, with its return value (syscall: a system call's exit). */
static __always_inline int on_return(__u64 rc, bool syscall)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct asz_tstate *ts;
	__u64 addr = 0, *hin;
	__u32 allocator;

	if (empty_probes || (!syscall && !traced(tgid)))
		return 0;
	ts = bpf_task_storage_get(&tstates, bpf_get_current_task_btf(), 0, 0);
	/*
	 * depth 0: the call began before the entry probe was attached; a system call's exit
	 * without its entry must not end the allocator call around it
	 */
	if (!ts || ts->depth == 0 || (syscall && !ts->sys_entered))
		return 0;
	if (syscall)
		ts->sys_entered--;
	if (--ts->depth > 0 || (syscall && !syscall_traced(tgid)))
		return 0;
	/* a system call's exit at depth 0 ends the call its entry began (known: fewer branches) */
	allocator = ts->allocator;
	if (syscall && allocator != ASZ_MREMAP)
		return 0;
	if (syscall)
		allocator = ASZ_MREMAP;

	switch (allocator) {
	case ASZ_POSIX_MEMALIGN:
		if ((int)rc != 0)
			return 0;
		if (bpf_probe_read_user(&addr, sizeof(addr), (void *)ts->arg))
			return 0;
		break;
	case ASZ_REALLOC:
	case ASZ_RALLOCX:
	case ASZ_XALLOCX:
		/* rallocx: the new block or NULL; xallocx: the usable size (< size: it failed) */
		addr = allocator != ASZ_XALLOCX ? rc : (rc >= ts->size ? ts->arg : 0);
		if (!addr) {
			/*
			 * realloc(p, 0) freed p; any other NULL is a failure that kept p (rallocx
			 * and xallocx never free it)
			 */
			if (ts->old_valid && (ts->size != 0 || resizes(allocator)))
				block_restore(tgid, ts->arg, ts);
			return 0;
		}
		if (ts->old_unknown)
			unknown_free(tgid);
		/* xallocx holds size bytes, and of the extra ones asked what it could give */
		if (allocator == ASZ_XALLOCX && !sample_bytes) {
			__u64 most = ts->size + ts->extra;

			if (most < ts->size) /* no bound */
				most = ~0ull;
			ts->weight = rc < most ? rc : most;
		}
		break;
	case ASZ_MREMAP:
	case ASZ_MMAP:
		addr = rc;
		if (rc == (__u64)-1) { /* MAP_FAILED: the old mapping, if any, stays */
			if (ts->old_valid)
				block_restore(tgid, ts->arg, ts);
			return 0;
		}
		/* what was mapped where a fixed mapping goes is gone: the kernel unmapped it */
		if (ts->flags & (allocator == ASZ_MMAP ? MAP_FIXED_ : MREMAP_FIXED_))
			mappings_unmap(tgid, rc, rc + page_up(ts->size), ts->since);
		/* a head moved or shrunk: the rest of its mapping, taken at the entry, stays */
		if (allocator == ASZ_MREMAP && (ts->flags & ASZ_MREMAP_HEAD) && ts->old_valid &&
		    ts->old_size > ts->extra) {
			ts->old_size -= ts->extra;
			block_restore(tgid, ts->arg + ts->extra, ts);
		}
		/*
		 * a part moved: the mapping it was in loses it (none: not the program's, unless
		 * one began there, taken at the entry)
		 */
		if (allocator == ASZ_MREMAP && (ts->flags & ASZ_MREMAP_PART) &&
		    !mappings_unmap(tgid, ts->arg, ts->arg + ts->extra, ts->since) &&
		    !(ts->flags & ASZ_MREMAP_HEAD))
			return 0;
		break;
	default:
		addr = rc;
		break;
	}
	if (!addr || !ts->count)
		return 0;
	hin = bpf_map_lookup_elem(&agg_hint_in, &(__u32){0});
	if (hin)
		*hin = ts->agg_hint;
	block_add(tgid, addr, ts->weight, ts->stack_id, (__u64)ts->count << 32 | allocator);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(alloc_entry)
{
	/* arguments first: clang 14 may otherwise derive them from a modified ctx pointer */
	__u64 a1 = PT_REGS_PARM1(ctx), a2 = PT_REGS_PARM2(ctx), a3 = PT_REGS_PARM3(ctx);
	__u64 a4 = PT_REGS_PARM4(ctx);

	on_entry(ctx, a1, a2, a3, a4, bpf_get_attach_cookie(ctx), false, false);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(alloc_return)
{
	on_return(PT_REGS_RC(ctx), false);
	return 0;
}

extern bool bpf_session_is_return(void) __ksym __weak;

/* Entry and return in one program (uprobe session): loaded only where the kernel has them. */
SEC("uprobe")
int BPF_KPROBE(alloc_session)
{
	__u64 a1 = PT_REGS_PARM1(ctx), a2 = PT_REGS_PARM2(ctx), a3 = PT_REGS_PARM3(ctx);
	__u64 a4 = PT_REGS_PARM4(ctx), rc = PT_REGS_RC(ctx);

	if (bpf_session_is_return())
		return on_return(rc, false);
	return on_entry(ctx, a1, a2, a3, a4, bpf_get_attach_cookie(ctx), true, false);
}

/*
 * munmap of a mapping the program made: retired (a head unmap keeps the rest). Mappings made
 * inside malloc were never recorded, so their munmap (from free) finds nothing: no depth check.
 */
static __always_inline int munmap_of(__u64 addr, __u64 len)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (empty_probes || (!traced(tgid) && !left_filter(tgid)))
		return 0;
	/* the kernel refuses these (EINVAL): nothing is unmapped */
	if (!len || (addr & 4095))
		return 0;
	mappings_unmap(tgid, addr, addr + page_up(len), ~0ull);
	return 0;
}

/*
 * The munmap system call, where the kernel has its tracepoint: no trap (libc's munmap begins
 * mov $11,%eax; syscall, single-stepped at a probe), and a raw syscall(SYS_munmap) is seen too.
 */
SEC("tracepoint/syscalls/sys_enter_munmap")
int munmap_syscall(struct trace_event_raw_sys_enter *ctx)
{
	return munmap_of(ctx->args[0], ctx->args[1]);
}

/*
 * The mremap system call, where the kernel has its tracepoints and stacks are unwound with
 * tables: glibc's mremap begins sub $N,%rsp, single-stepped at a probe (~30 us a call here, on
 * every realloc of a block glibc mapped), and a raw syscall(SYS_mremap) is seen too. The stack
 * is unwound from where the call left user space, inside mremap: its table finds its caller.
 */
SEC("tracepoint/syscalls/sys_enter_mremap")
int mremap_syscall(struct trace_event_raw_sys_enter *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	__u64 a1 = ctx->args[0], a2 = ctx->args[1], a3 = ctx->args[2], a4 = ctx->args[3];

	on_entry(regs, a1, a2, a3, a4, ASZ_MREMAP, false, true);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_mremap")
int mremap_syscall_exit(struct trace_event_raw_sys_exit *ctx)
{
	__s64 ret = ctx->ret;

	/* -errno: libc's mremap returns MAP_FAILED, which the return's accounting knows */
	on_return(ret < 0 && ret > -4096 ? (__u64)-1 : (__u64)ret, true);
	return 0;
}

/* libc's munmap, where the tracepoint is not there */
SEC("uprobe")
int BPF_KPROBE(munmap_entry)
{
	return munmap_of(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx));
}

SEC("uprobe")
int BPF_KPROBE(free_entry)
{
	__u64 ptr = PT_REGS_PARM1(ctx);
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct asz_tstate *ts;
	bool in;

	/*
	 * No nesting check: glibc's allocators free internally without the public free, except
	 * realloc(p, 0), which leaves p for this probe to retire.
	 */
	if (empty_probes || !ptr)
		return 0;
	in = traced(tgid);
	if (!in && !left_filter(tgid))
		return 0;
	if (block_remove(tgid, ptr, NULL)) {
		/*
		 * (not looked up on free's hot path: only deletes note what they retired, per
		 * thread: a per-CPU note was lost when the thread moved to another CPU, or another
		 * thread deleted there, before the free inside)
		 */
		if (bpf_get_attach_cookie(ctx) == ASZ_DELETE &&
		    (ts = bpf_task_storage_get(&tstates, bpf_get_current_task_btf(), 0,
					       BPF_LOCAL_STORAGE_GET_F_CREATE)))
			ts->deleted = ptr;
		return 0;
	}
	/*
	 * Inside the operator delete that retired it (kept: a delete may call two more); or a
	 * block of the malloc cache an exiting thread flushes: the program freed it already.
	 */
	ts = bpf_task_storage_get(&tstates, bpf_get_current_task_btf(), 0, 0);
	if (ts && (ts->deleted == ptr || ts->exiting))
		return 0;
	/* out of the filters, it allocates unrecorded: those frees are no news */
	if (in)
		unknown_free(tgid);
	return 0;
}

/*
 * A thread's teardown in glibc: after its destructors, it frees the blocks its malloc cache
 * (tcache) holds, through free. The program had freed them (into that cache): up to 7 of each
 * size, hundreds of frees of blocks never seen as allocated, not unknown frees. Not the main
 * thread's: exit() calls __call_tls_dtors too, before the handlers atexit() registered.
 */
SEC("uprobe")
int BPF_KPROBE(thread_exit_entry)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct asz_tstate *ts;

	if (empty_probes || (__u32)id == id >> 32 || !traced(id >> 32))
		return 0;
	ts = bpf_task_storage_get(&tstates, bpf_get_current_task_btf(), 0,
				  BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (ts)
		ts->exiting = 1;
	return 0;
}

static __always_inline void emit(__u32 type, __u32 tgid, __u32 gen, __u32 flags,
				 struct linux_binprm *bprm)
{
	struct asz_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);

	/* user space fell behind: it will not look at this exec (or exit), say so */
	if (!ev) {
		count_drop(ASZ_DROP_EVENTS_LOST);
		return;
	}
	ev->type = type;
	ev->tgid = tgid;
	ev->gen = gen;
	ev->flags = flags;
	ev->ino = 0;
	ev->dev = 0;
	ev->pad = 0;
	ev->path[0] = '\0';
	if (bprm) {
		ev->ino = BPF_CORE_READ(bprm, file, f_inode, i_ino);
		ev->dev = BPF_CORE_READ(bprm, file, f_inode, i_sb, s_dev);
		if (bpf_probe_read_kernel_str(ev->path, sizeof(ev->path),
					      BPF_CORE_READ(bprm, filename)) < 0)
			ev->path[0] = '\0';
	}
	bpf_ringbuf_submit(ev, 0);
}

/*
 * exec replaces the address space: the old image's blocks are gone. Bumping the generation
 * makes its blocks and aggregates stale at once, without walking any map here.
 */
/* BTF tracepoints: no tracefs needed */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p_task, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct asz_proc_val *p = bpf_map_lookup_elem(&procs, &tgid);
	__u32 gen = 0;

	/* reports show the image its stacks are in: the new one counts from here */
	if (p) {
		gen = proc_restart(p, p_task);
		bpf_map_delete_elem(&mapidx, &tgid); /* the index holds one image's mappings */
	}
	if (p || (system_wide && traced(tgid)))
		emit(ASZ_EV_EXEC, tgid, gen, old_pid != (pid_t)tgid ? ASZ_EV_NEW_LEADER : 0, bprm);
	return 0;
}

/*
 * A target of -p or -- CMD starting a process (not a thread), which is not traced: user space
 * says so, or a report of a shell or of make would pass for one of what they ran.
 */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid, ctgid = child->tgid, *t;

	if (system_wide || ptgid == ctgid)
		return 0;
	t = bpf_map_lookup_elem(&targets, &ptgid);
	/* counted in the map; only the first is an event (a forking server makes thousands) */
	if (t && __sync_fetch_and_add(t, 1) == 1)
		emit(ASZ_EV_FORK, ptgid, ctgid, 0, NULL);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);
	struct asz_proc_val *p;

	/* the last thread of the group is leaving */
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (p)
		p->dead = 1;
	if (system_wide || p)
		emit(ASZ_EV_EXIT, tgid, 0, 0, NULL);
	return 0;
}
