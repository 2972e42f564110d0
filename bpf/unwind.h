/* SPDX-License-Identifier: GPL-2.0 */
/*
 * DWARF unwinding in the kernel, from the compiled .eh_frame tables user space loads into
 * cfi_rows / cfi_mods (user/unwind.c). The same algorithm as cfi__unwind() in user/cfi.c, which
 * is its reference and its unit-tested specification:
 *   per frame: the pc's mapping (bpf_find_vma) -> its module's rows -> the row covering the pc
 *   (binary search) -> CFA = rsp|rbp + off -> return address = *(CFA - 8), caller's rbp =
 *   *(CFA + off) or unchanged -> caller's sp = CFA.
 * A module without a table is walked with frame pointers; one never seen is asked for in
 * cfi_wanted and walked with frame pointers meanwhile. Frames the last stack had are checked,
 * not unwound (see struct uw_memo). Included once, by asizeof.bpf.c. Global functions keep the
 * verifier's work small: each is verified once, not once per frame.
 */
#ifndef ASZ_BPF_UNWIND_H
#define ASZ_BPF_UNWIND_H

/* --unwind dwarf (set by the loader when the kernel has bpf_find_vma). */
const volatile bool unwind_dwarf = false;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE); /* user space writes the rows in place */
	__uint(max_entries, 1);		   /* sized by the loader (--max-unwind-rows) */
	__type(key, __u32);
	__type(value, struct asz_cfi_row);
} cfi_rows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct asz_mod_key);
	__type(value, struct asz_mod);
} cfi_mods SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct asz_mod_key);
	__type(value, struct asz_mod_want);
} cfi_wanted SEC(".maps");

enum uw_stop {
	UW_GOING = 0,
	UW_END,	       /* outermost frame reached: the stack is complete */
	UW_DEPTH,      /* --max-depth */
	UW_INCOMPLETE, /* no mapping, unsupported rule, bad frame, unreadable memory */
	UW_FOLLOW,     /* this frame is one of the last stack's: check the rest against it */
};

/* Rules beside enum asz_cfa_reg, in a row's cfa_reg: what to do at a pc without a row. */
#define UW_CFA_FP 16	/* module without a table: frame pointers */
#define UW_CFA_NOMAP 17 /* pc in no mapping */

/* A mapping met while unwinding, and its module. */
struct uw_map {
	__u64 start, end, pgoff;
	struct asz_mod mod;
	struct asz_mod_key mk; /* zero: anonymous */
	__u32 has_table;
	__u32 pad;
};

/* The rule of a pc seen before (the same call sites come back allocation after allocation). */
struct uw_pc {
	__u64 pc;
	struct asz_cfi_row row; /* row.pc: the cache epoch it was found in */
};

#define UW_MAPS 8 /* stacks alternate between a few modules: program, libc, ... */
/*
 * The pc cache: UW_PC_PAGES values of UW_PCS entries (24 bytes each; a per-CPU value holds at
 * most 32 KiB), 192 KiB a CPU. Big programs have many call sites: cc1's 10k stacks made 164k
 * table searches (~150 ns each) with 1024 entries, 66k with 4096, 38k with 8192, 24k with 16384.
 */
#define UW_PCS 1024
#define UW_PC_PAGES 8

/*
 * Per-CPU cache of one address space's mappings (its pc rules: uw_pcs, by epoch). When
 * mm->mm_lock_seq has moved (any mmap, munmap or brk takes the mmap lock for writing: busy
 * programs do it all the time, for heap and stack mappings) the cached mappings are checked
 * again, one bpf_find_vma each, and the pc rules stand unless one of them changed.
 * bpf_find_vma only try-locks: while another thread holds the lock the last answers stand in
 * (code mappings rarely move) and the check is made again at the next stack. Programs on one
 * CPU do not nest here (uprobes fire in user context only).
 */
struct uw_cache {
	__u64 mm; /* the address space: see uw_space() */
	__u32 seq;
	__u32 epoch; /* bumped at each reset: older pc entries are stale */
	__u32 nr_maps;
	__u32 has_missing; /* a module without a table yet: do not keep its rules */
	struct uw_map maps[UW_MAPS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct uw_cache);
} uw_caches SEC(".maps");

struct uw_pc_page {
	struct uw_pc e[UW_PCS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, UW_PC_PAGES);
	__type(key, __u32);
	__type(value, struct uw_pc_page);
} uw_pcs SEC(".maps");

/*
 * A window of the user stack read in one go: a user-memory read costs ~35 ns here for 512 bytes
 * (~60 ns for 2 KiB), and frames are often 16-64 bytes apart (but hundreds in big programs:
 * cc1's stacks span 2-3 KiB). Stacks on one CPU span about the same, so the first read is sized
 * by the last stack's span: most stacks take one read, not two or three.
 */
#define UW_WIN_MIN 512	  /* the least first read of a stack */
#define UW_WIN_BYTES 4096 /* the most read at once */

struct uw_win {
	__u64 base;
	__u32 len;   /* bytes valid from base */
	__u32 fills; /* reads made for this stack */
	__u32 first; /* bytes of the first read: the last stack's span, 512 at least */
	__u32 pad;
	__u64 top;   /* the main thread's frames are below its argument strings: read no further */
	__u64 w[UW_WIN_BYTES / 8];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct uw_win);
} uw_wins SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct asz_unwind_stats);
} uw_stats SEC(".maps");

/*
 * The last stack unwound on this CPU, frame by frame, to walk the next one faster. Stacks share
 * their outer frames (main, the event loop, the pass) allocation after allocation, and walking
 * a frame is a chain of dependent loads (return address -> rule -> CFA -> next return address),
 * ~15 ns a frame here. A frame whose registers are those of one of the last stack's frames, in
 * the same address space and cache epoch, has the same rule, so the same CFA and the same
 * stack slots to read: its callers' frames are checked by reading those slots and comparing
 * them with what they held (loads that do not depend on each other) instead of being unwound.
 * Any difference and the walk goes on unwinding from there: the memo is only a guess, every
 * word of it is checked against the stack.
 */
#define UW_MEMO (ASZ_MAX_FRAMES + 1) /* a power of two: indexes are masked */

#define UW_F_FIRST 1 /* frame 0: the allocator's entry (its rule is looked up at pc, not pc-1) */
#define UW_F_KNOWN 2 /* rbp is known */
#define UW_F_RA 4    /* the caller's pc was read at sp + ra_off (else the walk stopped here) */
#define UW_F_RBP 8   /* the caller's rbp was read at sp + rbp_off (else the same, or unknown) */
#define UW_F_SAVED 16 /* rbp is known, restored from where a CFI rule says it was saved */
#define UW_F_END 32   /* the outermost frame, so by a rule: registers and tables, no memory */

struct uw_frame {
	__u64 pc, sp, rbp;
	__u32 ra_off;  /* CFA - 8 - sp */
	__u16 rbp_off; /* a 64 KiB frame or more has no memo */
	__u16 flags;   /* UW_F_* */
};

/*
 * The registers of the frame being unwound, and the walk's state (scalars only: an argument of
 * global functions).
 */
struct uw_regs {
	__u64 pc, sp, rbp;
	__u32 rbp_known;
	__u32 n;    /* return addresses written */
	__u32 stop; /* enum uw_stop */
	__u32 memo; /* the memo may be followed: same epoch, not followed yet */
	__u32 p;    /* the memo frame whose sp is next above or at this frame's; UW_MEMO: none */
	__u32 k;    /* the frame that matched memo frame p_match, ~0: none */
	__u32 p_match;
	__u32 n_end;	/* the first frame not checked against the memo */
	__u32 mismatch; /* the memo's frames differ past n_end */
	__u32 checked;	/* return addresses found by checking the memo's frames */
	__u32 follows;	 /* the memo followed so far; the first sets k, p_match and n_end */
	__u32 no_p;	 /* the memo frame a follow stopped at: not matched again */
	__u32 refollows; /* follows after one that stopped at a difference */
	__u32 lost;	 /* this stack's frames could not all be kept: no memo */
	__u32 in_body;	 /* pc is inside the allocator, past its prologue (a system call's) */
	__u32 pad;
};

struct uw_memo {
	__u64 id;     /* the last stack's id in the stacks maps, 0 (ASZ_STACK_NONE): unknown */
	__u64 sweeps; /* stack_sweeps when id was last found in its map (even) */
	__u32 epoch; /* the uw_cache epoch its frames were unwound in */
	__u32 nr;
	struct uw_frame last[UW_MEMO]; /* the last stack, outermost frame first */
	struct uw_frame cur[UW_MEMO];  /* this one, innermost first */
	struct uw_regs regs;	       /* the walk's state */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct uw_memo);
} uw_memos SEC(".maps");

/* An index the verifier can bound at its use (clang would fold it into a pointer it cannot). */
#define uw_opaque(x) asm volatile("" : "+r"(x))

/* memo frame i, whatever clang knows of i's range */
static __always_inline struct uw_frame *uw_memo_at(struct uw_frame *arr, __u32 i)
{
	uw_opaque(i);
	return &arr[i & (UW_MEMO - 1)];
}

#define UW_F_NOMEMO 0x8000 /* while recording: an offset too big */

/* The caller's rbp of frame f is read at sp + off: remembered in *fl if it fits. */
static __always_inline void uw_memo_rbp(struct uw_frame *f, __u32 *fl, __u64 off)
{
	if (off < 0x10000) {
		f->rbp_off = off;
		*fl |= UW_F_RBP;
	} else {
		*fl |= UW_F_NOMEMO;
	}
}


/*
 * Stacks differ in the middle as often as at the end (A calls B or C, which call D), and a
 * frame can match a memo frame by its registers and still have another caller (frame 0 at the
 * allocator's entry, whoever called). After a follow stops at a difference, the memo is
 * matched again further out, this many times a stack.
 */
#define UW_REFOLLOWS 3

/*
 * Refill the window from addr (a global function: verified once, not at every read): first as
 * much as the last stack on this CPU spanned (512 bytes at least), 4 KiB after that, never past
 * the main thread's argument strings, and when that fails (past the end of the stack's mapping)
 * to the end of addr's page. 0 or -EFAULT.
 */
__noinline int uw_refill(struct uw_win *w, __u64 addr)
{
	__u32 len, page;

	if (!w)
		return -14;
	len = w->fills++ ? UW_WIN_BYTES : w->first ? w->first : UW_WIN_MIN;
	if (addr < w->top && w->top - addr < len)
		len = (w->top - addr) & ~7;
	w->base = addr;
	w->len = 0;
	if (len < 8 || len > UW_WIN_BYTES || bpf_probe_read_user(w->w, len, (void *)addr)) {
		page = 4096 - (addr & 4095);
		if (page >= len)
			return -14; /* unreadable within one page: swapped out, not a stack */
		len = page;
		if (len < 8 || len > UW_WIN_BYTES || bpf_probe_read_user(w->w, len, (void *)addr))
			return -14;
	}
	w->len = len;
	return 0;
}

/*
 * The next stack's first read: this one's span (bytes from sp to the last frame) and a frame's
 * slack, or if that is less, a quarter of the way down to it (a short stack among long ones
 * does not cost the next long one two reads).
 */
static __always_inline void uw_win_learn(struct uw_win *w, __u64 span)
{
	span += 128;
	if (span < w->first)
		span = w->first - (w->first - span) / 4;
	if (span < UW_WIN_MIN)
		span = UW_WIN_MIN;
	w->first = span > UW_WIN_BYTES ? UW_WIN_BYTES : span & ~63;
}

/* A new stack: nothing read yet, not past the main thread's argument strings. */
static __always_inline void uw_win_start(struct uw_win *w, struct mm_struct *mm)
{
	w->len = 0;
	w->fills = 0;
	w->top = mm->arg_start;
}

/* 8 bytes of the user stack at addr, through the window; 0 or a negative errno. */
static __always_inline long uw_read(struct uw_win *w, __u64 addr, __u64 *out)
{
	__u64 off = addr - w->base;

	if (addr & 7)
		return bpf_probe_read_user(out, sizeof(*out), (void *)addr);
	if (addr < w->base || off + 8 > w->len) {
		if (uw_refill(w, addr))
			return -14;
		off = 0;
	}
	off >>= 3;
	if (off >= UW_WIN_BYTES / 8)
		return -14;
	*out = w->w[off];
	return 0;
}

/* bpf_find_vma's answer */
struct uw_vma {
	__u64 vm_start, vm_end, vm_pgoff;
	struct asz_mod_key mk;
};

static long uw_vma_cb(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	struct uw_vma *s = data;
	struct file *f = vma->vm_file;

	s->vm_start = vma->vm_start;
	s->vm_end = vma->vm_end;
	s->vm_pgoff = vma->vm_pgoff << 12;
	if (f) {
		s->mk.ino = BPF_CORE_READ(f, f_inode, i_ino);
		s->mk.dev = BPF_CORE_READ(f, f_inode, i_sb, s_dev);
	}
	return 0;
}

/* Word b of a module's bucket index (asizeof.h): the rows below bucket b; ~0: unreadable. */
static __always_inline __u32 uw_bucket(__u32 at, __u32 b)
{
	__u32 idx = at + b / 4;
	__u32 *r = bpf_map_lookup_elem(&cfi_rows, &idx);

	return r ? r[b & 3] : ~0u;
}

/*
 * Global functions (verified once, on their own): index of the row covering pc in a module's
 * slice, or -1 (below the first row). Searched in pc's bucket only: rows before it are below
 * pc, rows from the next bucket's on above it (cfi_table__lookup() in user/cfi.c, the same).
 */
__noinline int uw_find_row(__u32 first, __u32 nr, __u32 buckets, __u32 shift, __u32 pc)
{
	__u32 lo = 0, hi = nr, b = pc >> (shift & 31);

	if (buckets) {
		lo = b < buckets ? uw_bucket(first + nr, b) : nr;
		hi = b + 1 < buckets ? uw_bucket(first + nr, b + 1) : nr;
		if (lo > hi || hi > nr)
			return -1;
	}
	for (int i = 0; i < ASZ_CFI_SEARCH_STEPS; i++) {
		__u32 mid, idx;
		struct asz_cfi_row *r;

		if (lo >= hi)
			break;
		mid = lo + (hi - lo) / 2;
		idx = first + mid;
		r = bpf_map_lookup_elem(&cfi_rows, &idx);
		if (!r)
			return -1;
		if (r->pc <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < hi || lo == 0)
		return -1;
	return first + lo - 1;
}

/*
 * The address space's mappings moved since the cache was filled: are the cached ones still
 * there, the same? If not, everything cached is forgotten. 0: checked; 1: the mmap lock was
 * busy (the last answers stand, checked again next time).
 */
__noinline int uw_recheck(struct uw_cache *c)
{
	struct task_struct *task = bpf_get_current_task_btf();
	int busy = 0;

	if (!c)
		return 0;
	for (int i = 0; i < UW_MAPS; i++) {
		struct uw_vma v = {};
		struct uw_map *um;

		if (i >= c->nr_maps)
			break;
		um = &c->maps[i];
		if (bpf_find_vma(task, um->start, uw_vma_cb, &v, 0)) {
			busy = 1;
			continue;
		}
		if (v.vm_start != um->start || v.vm_end != um->end || v.vm_pgoff != um->pgoff ||
		    v.mk.ino != um->mk.ino || v.mk.dev != um->mk.dev) {
			c->nr_maps = 0;
			c->epoch++;
			return 0;
		}
	}
	return busy;
}

/* The mapping and module of addr, from the cache or the kernel; NULL: unknown. */
static __always_inline struct uw_map *uw_lookup_module(struct uw_cache *c, __u64 addr)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct uw_vma v = {};
	struct uw_map *um;
	struct asz_mod *m;
	__u32 slot;

	for (int i = 0; i < UW_MAPS; i++) {
		if (i >= c->nr_maps)
			break;
		if (addr >= c->maps[i].start && addr < c->maps[i].end)
			return &c->maps[i];
	}
	if (bpf_find_vma(task, addr, uw_vma_cb, &v, 0))
		return NULL;
	slot = c->nr_maps;
	if (slot >= UW_MAPS) {
		/* pc rules are only as good as the mappings checked: forget them with the mapping */
		slot = (__u32)addr % UW_MAPS;
		c->epoch++;
	} else {
		c->nr_maps++;
	}
	if (slot >= UW_MAPS)
		return NULL;
	um = &c->maps[slot];
	um->start = v.vm_start;
	um->end = v.vm_end;
	um->pgoff = v.vm_pgoff;
	um->mk = v.mk;
	um->has_table = 0;
	if (!v.mk.ino && !v.mk.dev)
		return um; /* anonymous code (JIT): frame pointers, if any */
	m = bpf_map_lookup_elem(&cfi_mods, &v.mk);
	if (m) {
		um->mod = *m;
		um->has_table = m->kind == ASZ_MOD_TABLE;
	} else {
		struct asz_mod_want w = {
			.tgid = bpf_get_current_pid_tgid() >> 32,
			.start = v.vm_start,
			.end = v.vm_end,
		};

		/* user space builds its table; until then this module is walked with rbp */
		bpf_map_update_elem(&cfi_wanted, &v.mk, &w, BPF_NOEXIST);
		c->has_missing = 1;
	}
	return um;
}

/* The pc cache's entry for at (direct-mapped: a pc that hashes there too evicts it). */
static __always_inline struct uw_pc *uw_pc_slot(__u64 at)
{
	__u32 h = (__u32)(at ^ (at >> 12) ^ (at >> 22)) & (UW_PCS * UW_PC_PAGES - 1);
	__u32 page = h / UW_PCS;
	struct uw_pc_page *pg = bpf_map_lookup_elem(&uw_pcs, &page);

	return pg ? &pg->e[h & (UW_PCS - 1)] : NULL;
}

/* The unwind rule at a pc not in the pc cache (a copy of its row, or a UW_CFA_* rule). */
__noinline int uw_rule(struct uw_cache *c, __u64 at, struct asz_cfi_row *rule)
{
	struct asz_unwind_stats *us;
	struct asz_cfi_row *r;
	struct uw_map *um;
	struct uw_pc *e;
	__u64 rel;
	int i;

	if (!rule)
		return -1;
	rule->cfa_reg = UW_CFA_NOMAP;
	if (!c)
		return -1;
	um = uw_lookup_module(c, at);
	if (!um)
		return 0;
	if (!um->has_table) {
		rule->cfa_reg = UW_CFA_FP;
	} else {
		rel = at - um->start + um->pgoff + um->mod.adj;
		us = bpf_map_lookup_elem(&uw_stats, &(__u32){0});
		if (us)
			us->rule_searches++;
		i = rel >> 32 ? -1
				   : uw_find_row(um->mod.first, um->mod.nr, um->mod.buckets,
						 um->mod.shift, (__u32)rel);
		r = i < 0 ? NULL : bpf_map_lookup_elem(&cfi_rows, &(__u32){i});
		if (r)
			*rule = *r;
		else
			rule->cfa_reg = ASZ_CFA_UNDEFINED;
	}
	e = uw_pc_slot(at);
	if (e && !c->has_missing) {
		e->pc = at;
		e->row = *rule;
		e->row.pc = c->epoch;
	}
	return 0;
}

/*
 * One frame: from (pc, sp, rbp) to the caller's, appending its return address. A global
 * function, so the verifier walks it once, not once per frame (batching frames into one call
 * gained nothing measurable). 0: go on; 1: stopped (s->stop).
 */
__noinline int uw_step(struct uw_regs *s, struct uw_cache *c, struct uw_win *w,
			struct asz_stack *st, struct uw_memo *m)
{
	__u64 pc, sp, rbp, at, cfa, ra, nrbp;
	__u32 known, n, stop = UW_GOING;
	struct asz_cfi_row rbuf;
	const struct asz_cfi_row *r;
	struct uw_frame *f, *mf;
	struct uw_pc *e;
	__u32 flags, fl, p;
	__u64 v;

	if (!s || !c || !w || !st || !m)
		return 1;
	pc = s->pc;
	sp = s->sp;
	rbp = s->rbp;
	known = s->rbp_known;
	n = s->n;
	p = s->p;
	flags = (n ? 0 : UW_F_FIRST) | (known ? UW_F_KNOWN : 0) | (known == 2 ? UW_F_SAVED : 0);
	if (s->memo) {
		/* the memo's frames below this one's sp are not this stack's */
		for (int j = 0; j < 4; j++) {
			uw_opaque(p);
			if (p >= UW_MEMO || uw_memo_at(m->last, p)->sp >= sp)
				break;
			p = p ? p - 1 : UW_MEMO;
		}
		uw_opaque(p);
		if (p < UW_MEMO && p != s->no_p) {
			mf = uw_memo_at(m->last, p);
			if (mf->sp == sp && mf->pc == pc && mf->rbp == rbp &&
			    (mf->flags & ~UW_F_RBP) == (flags | UW_F_RA)) {
				stop = UW_FOLLOW;
				goto out;
			}
		}
	}
	if (n >= UW_MEMO)
		goto incomplete;
	f = uw_memo_at(m->cur, n);
	f->pc = pc;
	f->sp = sp;
	f->rbp = rbp;
	f->flags = flags;
	fl = flags;
	/* a return address is after the call: look up the call itself */
	at = n ? pc - 1 : pc;
	e = uw_pc_slot(at);
	if (e && e->pc == at && e->row.pc == c->epoch) {
		r = &e->row;
	} else {
		uw_rule(c, at, &rbuf);
		r = &rbuf;
	}
	/*
	 * No FDE covers the call: code without CFI (frame pointers then), unless the return
	 * address is the first byte of an FDE: no call's, but a trampoline's whose address was
	 * pushed (makecontext's __start_context), the outermost frame there.
	 */
	if (n && r->cfa_reg == ASZ_CFA_UNDEFINED) {
		uw_rule(c, pc, &rbuf);
		if (rbuf.cfa_reg != ASZ_CFA_UNDEFINED && rbuf.cfa_reg < UW_CFA_FP) {
			f->flags = flags | UW_F_END;
			stop = UW_END;
			goto out;
		}
		r = &rbuf;
	}
	nrbp = rbp;
	switch (r->cfa_reg) {
	case ASZ_CFA_RSP:
	case ASZ_CFA_RBP:
		if (r->cfa_reg == ASZ_CFA_RBP && !known)
			goto incomplete;
		cfa = (r->cfa_reg == ASZ_CFA_RSP ? sp : rbp) + (__s64)r->cfa_off;
		if (r->rbp_rule == ASZ_RBP_OFFSET) {
			v = cfa + (__s64)r->rbp_off;
			uw_memo_rbp(f, &fl, v - sp);
			if (uw_read(w, v, &nrbp))
				goto incomplete;
			known = 2;
		} else if (r->rbp_rule == ASZ_RBP_UNDEFINED) {
			known = 0;
		}
		break;
	case ASZ_CFA_END:
		f->flags = flags | UW_F_END;
		stop = UW_END;
		goto out;
	case UW_CFA_NOMAP:
		if (n != 0)
			goto incomplete;
		/* fall through: frame 0 is right without knowing the mapping */
	case ASZ_CFA_UNDEFINED: /* no FDE covers it (assembly, no unwind tables): as no table */
	case UW_CFA_FP:
		if (n == 0) {
			/*
			 * The allocator's first instruction: the return address is at *rsp. From
			 * inside its body (a system call), only its table says where it is.
			 */
			if (s->in_body)
				goto incomplete;
			cfa = sp + 8;
			break;
		}
		/* frame pointers: rbp points at the saved rbp, the return address above */
		if (known == 2 && !rbp) {
			/*
			 * The ABI's mark of the outermost frame (_start, ld.so's _dl_start_user
			 * clear rbp before their call), where the callee saved it: not a 0 that
			 * code without frame pointers happens to hold.
			 */
			f->flags = flags | UW_F_END;
			stop = UW_END;
			goto out;
		}
		if (!known || rbp < sp || (rbp & 7))
			goto incomplete;
		uw_memo_rbp(f, &fl, rbp - sp);
		if (uw_read(w, rbp, &nrbp))
			goto incomplete;
		known = 1; /* read through the frame-pointer chain: no CFI rule vouches for it */
		cfa = rbp + 16;
		break;
	default: /* ASZ_CFA_UNSUPPORTED */
		goto incomplete;
	}
	/* callers' frames are above: anything else would loop */
	if (cfa <= sp)
		goto incomplete;
	if (uw_read(w, cfa - 8, &ra))
		goto incomplete;
	if (cfa - 8 - sp < 0xffffffffull && !(fl & UW_F_NOMEMO)) {
		f->ra_off = cfa - 8 - sp;
		f->flags = fl | UW_F_RA;
	}
	if (!ra) {
		stop = UW_END;
		goto out;
	}
	if (n >= max_depth) {
		stop = UW_DEPTH;
		goto out;
	}
	uw_opaque(n);
	if (n >= ASZ_MAX_FRAMES) {
		stop = UW_DEPTH;
		goto out;
	}
	st->ips[n] = ra;
	n++;
	pc = ra;
	sp = cfa;
	rbp = nrbp;
	goto out;
incomplete:
	stop = UW_INCOMPLETE;
out:
	s->pc = pc;
	s->sp = sp;
	s->rbp = rbp;
	s->rbp_known = known;
	s->n = n;
	s->stop = stop;
	s->p = p;
	return stop != UW_GOING;
}

/* dst[d0], dst[d0 - 1], ... = src[s0], src[s0 + 1], ...: cnt frames; -1 if out of range. */
static __always_inline int uw_memo_copy_reversed(struct uw_frame *dst, __u32 d0,
						 struct uw_frame *src, __u32 s0, __u32 cnt)
{
	for (int i = 0; i < UW_MEMO; i++) {
		__u32 d = d0 - i, from = s0 + i;

		if (i >= cnt)
			break;
		if (d >= UW_MEMO || from >= UW_MEMO)
			return -1;
		*uw_memo_at(dst, d) = *uw_memo_at(src, from);
	}
	return 0;
}

/*
 * cur[d0 - i] = last[s0 + i], i < cnt: the frames a later follow checked, into this stack's
 * list (a global function: one copy loop verified once, not one per way out of uw_follow).
 */
__noinline int uw_memo_take(struct uw_memo *m, __u32 d0, __u32 s0, __u32 cnt)
{
	return m ? uw_memo_copy_reversed(m->cur, d0, m->last, s0, cnt) : 0;
}

/*
 * From memo frame s->p, which this frame matches: the callers' frames are the memo's while the
 * stack slots they were read from still hold them. Stops at the first difference (unwinding
 * goes on from there), at the memo's outermost frame, or at the depth limit.
 */
__noinline int uw_follow(struct uw_regs *s, struct uw_win *w, struct asz_stack *st,
			 struct uw_memo *m)
{
	__u32 n, k0, p0, stop = UW_GOING;
	struct uw_frame *f, *nf;
	bool copy;
	__u64 ra, v;
	__u32 p;

	if (!s || !w || !st || !m)
		return 1;
	n = s->n;
	p = s->p;
	k0 = n;
	s->memo = 0;
	if (!s->follows) {
		s->k = n;
		s->p_match = p;
	}
	/* the first follow's frames are copied at the end (uw_memo_save), later ones here */
	copy = s->follows++ > 0;
	p0 = p;
	for (int i = 0; i < UW_MEMO; i++) {
		uw_opaque(p);
		if (p == 0 || p >= UW_MEMO)
			break;
		f = uw_memo_at(m->last, p);
		nf = uw_memo_at(m->last, p - 1);
		/* in address order, as the window is filled: the saved rbp is below the CFA */
		if ((f->flags & UW_F_RBP) &&
		    (uw_read(w, f->sp + f->rbp_off, &v) || v != nf->rbp)) {
			s->mismatch = 1;
			break;
		}
		if (uw_read(w, f->sp + f->ra_off, &ra) || ra != nf->pc) {
			s->mismatch = 1;
			break;
		}
		if (n >= max_depth) {
			stop = UW_DEPTH;
			break;
		}
		uw_opaque(n);
		if (n >= ASZ_MAX_FRAMES) {
			stop = UW_DEPTH;
			break;
		}
		st->ips[n] = ra;
		n++;
		p--;
	}
	s->checked += n - k0;
	if (copy && n > k0 && uw_memo_take(m, n - 1, p0 - (n - k0) + 1, n - k0))
		s->lost = 1;
	if (s->mismatch && s->refollows < UW_REFOLLOWS) {
		s->refollows++;
		s->no_p = p;
		s->memo = 1;
		if (n == k0) {
			/* nothing checked: as if not followed */
			if (!--s->follows) {
				s->k = ~0u;
				s->mismatch = 0;
			}
		}
	}
	if (p >= UW_MEMO) {
		s->stop = UW_INCOMPLETE;
		return 1;
	}
	/* on from memo frame p, whose registers these are */
	f = uw_memo_at(m->last, p);
	s->pc = f->pc;
	s->sp = f->sp;
	s->rbp = f->rbp;
	s->rbp_known = f->flags & UW_F_SAVED ? 2 : !!(f->flags & UW_F_KNOWN);
	s->n = n;
	if (s->follows == 1)
		s->n_end = n;
	s->p = p;
	/*
	 * The memo's outermost frame, ended by a rule (the same registers, the same tables): so
	 * is this stack, without a step. It is this stack's frame n, as a step would record it.
	 */
	if (stop == UW_GOING && p == 0 && (f->flags & UW_F_END) && n < UW_MEMO) {
		*uw_memo_at(m->cur, n) = *f;
		stop = UW_END;
	}
	s->stop = stop;
	return stop != UW_GOING;
}

/*
 * This stack becomes the memo: in place when its outer frames are the memo's (only the inner
 * ones are written), else in full.
 */
__noinline int uw_memo_save(struct uw_regs *s, struct uw_memo *m, __u32 epoch)
{
	__u32 nr, k, pm;

	if (!s || !m)
		return 0;
	nr = s->n + 1;
	k = s->k;
	pm = s->p_match;
	if (nr > UW_MEMO)
		nr = UW_MEMO;
	if (k < UW_MEMO && !s->mismatch && nr <= s->n_end + 1) {
		/* memo frames 0..p_match stay; this stack's frames 0..k-1 go above them */
		if (uw_memo_copy_reversed(m->last, pm + k, m->cur, 0, k))
			goto forget;
		m->nr = pm + k + 1;
		return 0;
	}
	/* the frames checked against the memo (k..n_end-1): theirs, into this stack's list */
	if (k < UW_MEMO && s->n_end > k &&
	    uw_memo_copy_reversed(m->cur, s->n_end - 1, m->last, pm + k + 1 - s->n_end, s->n_end - k))
		goto forget;
	if (uw_memo_copy_reversed(m->last, nr - 1, m->cur, 0, nr))
		goto forget;
	m->nr = nr;
	m->epoch = epoch;
	return 0;
forget:
	m->nr = 0;
	return 0;
}

/* The mmap lock's write sequence of the current address space; odd or 0: do not cache. */
static __always_inline __u32 uw_mm_seq(struct mm_struct *mm)
{
	/* a seqcount since 6.13 (odd while write-locked); before, no such thing: no caching */
	if (bpf_core_field_exists(mm->mm_lock_seq.sequence))
		return mm->mm_lock_seq.sequence;
	return 1;
}

/*
 * Which address space this is: an mm_struct freed at exit can be reused by another process,
 * so the pointer goes with the tgid and the randomized mmap base. (task is a trusted BTF
 * pointer: plain loads, not one bpf_probe_read_kernel per field.)
 */
static __always_inline __u64 uw_space(struct task_struct *task, struct mm_struct *mm)
{
	/* x86's context id: one per address space since boot, never reused (a plain load) */
	if (bpf_core_field_exists(mm->context.ctx_id))
		return mm->context.ctx_id;
	/* the pointer, read as a number (the verifier allows no arithmetic on pointers) */
	__u64 v = (__u64)BPF_CORE_READ(task, mm);

	return v ^ ((__u64)task->tgid << 40) ^ (mm->mmap_base << 12);
}

/*
 * Unwind from the allocator's probe site (regs->ip is the probed instruction, exact; in_body:
 * an instruction of its body, where a system call left user space) into st. Innermost first:
 * st->ips[0] is the allocator's caller. Returns the last stack's id when this one is the same
 * (see uw_memo_set_id), else ASZ_STACK_NONE.
 */
static __always_inline __u64 unwind_dwarf_stack(struct pt_regs *ctx, struct asz_stack *st,
						 bool in_body, __u64 sweeps)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct mm_struct *cur_mm = task->mm;
	__u32 zero = 0, seq, epoch;
	__u64 mm;
	bool same;
	struct uw_regs *s;
	struct uw_cache *c = bpf_map_lookup_elem(&uw_caches, &zero);
	struct uw_win *win = bpf_map_lookup_elem(&uw_wins, &zero);
	struct uw_memo *m = bpf_map_lookup_elem(&uw_memos, &zero);
	struct asz_unwind_stats *us;

	if (!c || !win || !m || !cur_mm) {
		if (m)
			m->id = ASZ_STACK_NONE; /* the memo is not this stack */
		return ASZ_STACK_NONE;
	}
	/* in the memo's per-CPU value, not on the stack: the programs' frames are near the limit */
	s = &m->regs;
	*s = (struct uw_regs){
		.pc = PT_REGS_IP(ctx),
		.sp = PT_REGS_SP(ctx),
		.rbp = PT_REGS_FP(ctx),
		.rbp_known = 1,
		.in_body = in_body,
	};
	mm = uw_space(task, cur_mm);
	seq = uw_mm_seq(cur_mm);
	uw_win_start(win, cur_mm);
	if (c->mm != mm || c->has_missing) {
		/* another process, or a module whose table may have come since: look again */
		c->mm = mm;
		c->nr_maps = 0;
		c->epoch++;
		c->seq = seq;
	} else if (c->seq != seq && !uw_recheck(c)) {
		c->seq = seq;
	}
	c->has_missing = 0;
	epoch = c->epoch;
	s->memo = m->epoch == epoch && m->nr;
	s->p = m->nr && m->nr <= UW_MEMO ? m->nr - 1 : UW_MEMO;
	s->k = ~0u;
	s->no_p = UW_MEMO;
	/*
	 * One more step than frames kept: it tells a stack at the limit from a deeper one. The memo
	 * is followed once, and UW_REFOLLOWS times more after follows that stopped at a difference:
	 * a round each.
	 */
	for (int i = 0; i < ASZ_MAX_FRAMES + 2 + UW_REFOLLOWS; i++) {
		if (!uw_step(s, c, win, st, m))
			continue;
		if (s->stop != UW_FOLLOW || uw_follow(s, win, st, m))
			break;
	}
	/*
	 * The last stack again, every frame checked: followed from frame 0 (the memo's innermost)
	 * to its end without a difference. Its id stands (a loop allocating from one place).
	 */
	same = s->follows == 1 && s->k == 0 && s->p_match + 1 == m->nr && !s->mismatch &&
	       s->stop == UW_END && s->n + 1 == m->nr;
	/*
	 * Rules found while a table was missing, or a mapping forgotten: no memo. (The memo must
	 * be the stack interned last, frame for frame: its id is reused when it comes again.)
	 */
	if (c->has_missing || c->epoch != epoch || s->lost)
		m->nr = 0;
	else
		uw_memo_save(s, m, epoch);
	/* from here m->id is this stack's id if it is the last one again, else unknown */
	if (!same || !m->nr)
		m->id = ASZ_STACK_NONE;
	st->nr = s->n > ASZ_MAX_FRAMES ? ASZ_MAX_FRAMES : s->n;
	uw_win_learn(win, s->sp - PT_REGS_SP(ctx));
	us = bpf_map_lookup_elem(&uw_stats, &zero);
	if (us) {
		us->stacks++;
		us->frames_checked += s->checked;
		us->frames_unwound += st->nr - s->checked;
		us->stack_reads += win->fills;
		us->stacks_repeated += m->id != ASZ_STACK_NONE;
	}
	st->flags = 0;
	if (s->stop == UW_DEPTH)
		st->flags = ASZ_STACK_TRUNCATED;
	else if (s->stop != UW_END)
		st->flags = ASZ_STACK_INCOMPLETE;
	/*
	 * Still in its map? Surely if no sweep has deleted since it was last found there (no map
	 * lookup then); else if a lookup finds it. Otherwise it is interned again.
	 */
	if (m->id != ASZ_STACK_NONE && (m->sweeps != sweeps || (sweeps & 1))) {
		if (!bpf_map_lookup_elem(stacks_map_of(m->id), &m->id))
			m->id = ASZ_STACK_NONE;
		else
			m->sweeps = sweeps; /* odd: looked up again next time, as in uw_memo_set_id */
	}
	return m->id;
}

/* The id of the stack just unwound, the memo's now: the next walk may find it the same. */
static __always_inline void uw_memo_set_id(__u64 id, __u64 sweeps)
{
	struct uw_memo *m = bpf_map_lookup_elem(&uw_memos, &(__u32){0});

	if (m && m->nr) {
		m->id = id;
		m->sweeps = sweeps; /* odd (a sweep under way): a lookup vouches for it next time */
	}
}

#endif
