/* SPDX-License-Identifier: GPL-2.0 */
/*
 * DWARF unwinding in the kernel, from the compiled .eh_frame tables user space loads into
 * cfi_rows / cfi_mods (user/unwind.c). The same algorithm as cfi__unwind() in user/cfi.c, which
 * is its reference and its unit-tested specification:
 *   per frame: the pc's mapping (bpf_find_vma) -> its module's rows -> the row covering the pc
 *   (binary search) -> CFA = rsp|rbp + off -> return address = *(CFA - 8), caller's rbp =
 *   *(CFA + off) or unchanged -> caller's sp = CFA.
 * A module without a table is walked with frame pointers; one never seen is asked for in
 * cfi_wanted and walked with frame pointers meanwhile. Included once, by asizeof.bpf.c.
 * Global functions (uw_rule, uw_find_row) keep the verifier's work per frame small.
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
};

/* Rules beside enum asz_cfa_reg, in a row's cfa_reg: what to do at a pc without a row. */
#define UW_CFA_FP 16	/* module without a table: frame pointers */
#define UW_CFA_NOMAP 17 /* pc in no mapping */

/* A mapping met while unwinding, and its module. */
struct uw_map {
	__u64 start, end, pgoff;
	struct asz_mod mod;
	__u32 has_table;
	__u32 seq; /* the address space's sequence when bpf_find_vma said so */
};

/* The rule of a pc seen before (the same call sites come back allocation after allocation). */
struct uw_pc {
	__u64 pc;
	__u64 mm;
	__u32 epoch;
	__u32 pad;
	struct asz_cfi_row row;
};

#define UW_MAPS 4 /* stacks alternate between a few modules: program, libc, ... */
#define UW_PCS 512 /* a power of two; 40 bytes each: per-CPU values are at most 32 KiB */

/*
 * Per-CPU cache of mappings and pc rules, valid while the same address space has not changed:
 * mm->mm_lock_seq moves whenever the mmap lock is taken for writing (any mmap, munmap, brk).
 * bpf_find_vma only try-locks: while another thread holds the lock (busy multi-threaded
 * programs map arenas and stacks all the time) the last answers for this address space stand
 * in; code mappings rarely move. Programs on one CPU do not nest here (uprobes fire in user
 * context only).
 */
struct uw_cache {
	__u64 mm; /* the address space: see uw_space() */
	__u32 seq;
	__u32 epoch; /* bumped at each reset: older pc entries are stale */
	__u32 nr_maps;
	__u32 has_missing; /* a module without a table yet: do not keep its rules */
	struct uw_map maps[UW_MAPS];
	struct uw_pc pcs[UW_PCS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct uw_cache);
} uw_caches SEC(".maps");

/*
 * A window of the user stack read in one go: a user-memory read costs ~35 ns here whatever
 * its size up to a few hundred bytes, and frames are often 16-64 bytes apart.
 */
#define UW_WIN_WORDS 64

struct uw_win {
	__u64 base;
	__u32 len; /* bytes valid from base */
	__u32 pad;
	__u64 w[UW_WIN_WORDS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct uw_win);
} uw_wins SEC(".maps");

struct uw_state {
	__u64 pc, sp, rbp;
	__u32 rbp_known;
	__u32 n;    /* return addresses written */
	__u32 stop; /* enum uw_stop */
	__u32 pad;
	struct asz_stack *st;
	struct uw_win *win;
	struct uw_cache *c;
};

/* 8 bytes of the user stack at addr, through the window; 0 or a negative errno. */
static __always_inline long uw_read(struct uw_state *s, __u64 addr, __u64 *out)
{
	struct uw_win *w = s->win;
	__u64 off;
	__u32 len;

	if (!w || (addr & 7))
		return bpf_probe_read_user(out, sizeof(*out), (void *)addr);
	off = addr - w->base;
	if (addr < w->base || off + 8 > w->len) {
		/* refill from addr; near the end of the stack's mapping, to the end of its page */
		w->base = addr;
		w->len = 0;
		if (bpf_probe_read_user(w->w, sizeof(w->w), (void *)addr)) {
			len = 4096 - (addr & 4095);
			if (len > sizeof(w->w))
				len = sizeof(w->w);
			if (bpf_probe_read_user(w->w, len & (sizeof(w->w) - 1), (void *)addr))
				return -14; /* EFAULT */
			w->len = len;
		} else {
			w->len = sizeof(w->w);
		}
		off = 0;
	}
	off >>= 3;
	if (off >= UW_WIN_WORDS)
		return -14;
	*out = w->w[off];
	return 0;
}

/* bpf_find_vma's answer */
struct uw_vma {
	__u64 vm_start, vm_end, vm_pgoff;
	struct asz_mod_key mk;
	__u32 has_file;
	__u32 pad;
};

static long uw_vma_cb(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	struct uw_vma *s = data;
	struct file *f = vma->vm_file;

	s->vm_start = vma->vm_start;
	s->vm_end = vma->vm_end;
	s->vm_pgoff = vma->vm_pgoff << 12;
	s->has_file = f != NULL;
	if (f) {
		s->mk.ino = BPF_CORE_READ(f, f_inode, i_ino);
		s->mk.dev = BPF_CORE_READ(f, f_inode, i_sb, s_dev);
	}
	return 0;
}

/*
 * Global functions (verified once, on their own): index of the row covering pc in a module's
 * slice, or -1 (below the first row).
 */
__noinline int uw_find_row(__u32 first, __u32 nr, __u32 pc)
{
	__u32 lo = 0, hi = nr;

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

/* The mapping and module of addr, from the cache or the kernel; NULL: unknown. */
static __always_inline struct uw_map *uw_lookup_module(struct uw_vma *s, struct uw_cache *c,
						       __u64 addr)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct uw_map *um = NULL, *stale = NULL;
	struct asz_mod *m;
	__u32 slot = UW_MAPS;

	for (int i = 0; i < UW_MAPS; i++) {
		if (i >= c->nr_maps)
			break;
		if (addr >= c->maps[i].start && addr < c->maps[i].end) {
			if (c->maps[i].seq == c->seq && !(c->seq & 1))
				return &c->maps[i];
			stale = &c->maps[i];
			slot = i;
			break;
		}
	}
	s->has_file = 0;
	if (bpf_find_vma(task, addr, uw_vma_cb, s, 0))
		return stale;
	if (slot >= UW_MAPS)
		slot = c->nr_maps < UW_MAPS ? c->nr_maps++ : (__u32)addr % UW_MAPS;
	if (slot >= UW_MAPS)
		return NULL;
	um = &c->maps[slot];
	um->start = s->vm_start;
	um->end = s->vm_end;
	um->pgoff = s->vm_pgoff;
	um->has_table = 0;
	um->seq = c->seq;
	if (!s->has_file)
		return um; /* anonymous code (JIT): frame pointers, if any */
	m = bpf_map_lookup_elem(&cfi_mods, &s->mk);
	if (m) {
		um->mod = *m;
		um->has_table = m->kind == ASZ_MOD_TABLE;
	} else {
		struct asz_mod_want w = {
			.tgid = bpf_get_current_pid_tgid() >> 32,
			.start = s->vm_start,
			.end = s->vm_end,
		};

		/* user space builds its table; until then this module is walked with rbp */
		bpf_map_update_elem(&cfi_wanted, &s->mk, &w, BPF_NOEXIST);
		c->has_missing = 1;
	}
	return um;
}

/* The unwind rule at pc (a copy of its row, or a UW_CFA_* rule) into *rule; c: this CPU's. */
__noinline int uw_rule(struct uw_cache *c, __u64 at, struct asz_cfi_row *rule)
{
	__u32 h = (__u32)(at ^ (at >> 9)) & (UW_PCS - 1);
	struct uw_vma v = {};
	struct uw_map *um;
	struct asz_cfi_row *r;
	struct uw_pc *e;
	__u64 rel;
	int i;

	if (!rule)
		return -1;
	rule->cfa_reg = UW_CFA_NOMAP;
	if (!c || h >= UW_PCS)
		return -1;
	e = &c->pcs[h];
	if (e->pc == at && e->epoch == c->epoch) {
		*rule = e->row;
		return 0;
	}
	um = uw_lookup_module(&v, c, at);
	if (!um) {
		/* the mapping is unknown just now: this address space's last word on pc */
		if (e->pc == at && e->mm == c->mm)
			*rule = e->row;
		return 0;
	}
	if (!um->has_table) {
		rule->cfa_reg = UW_CFA_FP;
	} else {
		rel = at - um->start + um->pgoff + um->mod.adj;
		i = rel >> 32 ? -1 : uw_find_row(um->mod.first, um->mod.nr, (__u32)rel);
		r = i < 0 ? NULL : bpf_map_lookup_elem(&cfi_rows, &(__u32){i});
		if (r)
			*rule = *r;
		else
			rule->cfa_reg = ASZ_CFA_UNDEFINED;
	}
	if (!c->has_missing) {
		e->pc = at;
		e->mm = c->mm;
		e->epoch = c->epoch;
		e->row = *rule;
	}
	return 0;
}

/* One frame: from (pc, sp, rbp) to the caller's; appends the caller's return address. */
static long uw_step(__u32 idx, void *data)
{
	struct uw_state *s = data;
	/* a return address is after the call: look up the call itself */
	__u64 at = s->n ? s->pc - 1 : s->pc, cfa, ra = 0, nrbp = s->rbp;
	__u32 nrbp_known = s->rbp_known, n = s->n;
	struct asz_stack *st = s->st;
	struct asz_cfi_row r = {};

	if (!st || !s->c)
		return 1;
	uw_rule(s->c, at, &r);
	switch (r.cfa_reg) {
	case ASZ_CFA_RSP:
	case ASZ_CFA_RBP:
		if (r.cfa_reg == ASZ_CFA_RBP && !s->rbp_known) {
			s->stop = UW_INCOMPLETE;
			return 1;
		}
		cfa = (r.cfa_reg == ASZ_CFA_RSP ? s->sp : s->rbp) + (__s64)r.cfa_off;
		if (r.rbp_rule == ASZ_RBP_OFFSET) {
			if (uw_read(s, cfa + (__s64)r.rbp_off, &nrbp)) {
				s->stop = UW_INCOMPLETE;
				return 1;
			}
			nrbp_known = 1;
		} else if (r.rbp_rule == ASZ_RBP_UNDEFINED) {
			nrbp_known = 0;
		}
		break;
	case ASZ_CFA_UNDEFINED:
		s->stop = UW_END;
		return 1;
	case UW_CFA_NOMAP:
		if (n != 0) {
			s->stop = UW_INCOMPLETE;
			return 1;
		}
		/* fall through: frame 0 is right without knowing the mapping */
	case UW_CFA_FP:
		if (n == 0) {
			/* the allocator's first instruction: the return address is at *rsp */
			cfa = s->sp + 8;
			break;
		}
		/* frame pointers: rbp points at the saved rbp, the return address above it */
		if (!s->rbp_known || s->rbp < s->sp || (s->rbp & 7) ||
		    uw_read(s, s->rbp, &nrbp)) {
			s->stop = UW_INCOMPLETE;
			return 1;
		}
		cfa = s->rbp + 16;
		break;
	default: /* ASZ_CFA_UNSUPPORTED */
		s->stop = UW_INCOMPLETE;
		return 1;
	}
	/* callers' frames are above: anything else would loop */
	if (cfa <= s->sp || uw_read(s, cfa - 8, &ra)) {
		s->stop = UW_INCOMPLETE;
		return 1;
	}
	if (!ra) {
		s->stop = UW_END;
		return 1;
	}
	if (n >= max_depth || n >= ASZ_MAX_FRAMES) {
		s->stop = UW_DEPTH;
		return 1;
	}
	st->ips[n] = ra;
	s->n = n + 1;
	s->pc = ra;
	s->sp = cfa;
	s->rbp = nrbp;
	s->rbp_known = nrbp_known;
	return 0;
}

/* The mmap lock's write sequence of the current address space; odd or 0: do not cache. */
static __always_inline __u32 uw_mm_seq(struct task_struct *task)
{
	__u32 seq = 1;

	if (bpf_core_field_exists(task->mm->mm_lock_seq))
		seq = BPF_CORE_READ(task, mm, mm_lock_seq.sequence);
	return seq;
}

/*
 * Which address space this is: an mm_struct freed at exit can be reused by another process,
 * so the pointer goes with the tgid and the randomized mmap base.
 */
static __always_inline __u64 uw_space(struct task_struct *task)
{
	/* read, not dereferenced: a plain number (the verifier allows no arithmetic on pointers) */
	__u64 mm = (__u64)BPF_CORE_READ(task, mm);

	return mm ^ ((__u64)task->tgid << 40) ^ (BPF_CORE_READ(task, mm, mmap_base) << 12);
}

/*
 * Unwind from the allocator's probe site (regs->ip is the probed instruction, exact) into st.
 * Innermost first: st->ips[0] is the allocator's caller.
 */
static __always_inline void unwind_dwarf_stack(struct pt_regs *ctx, struct asz_stack *st)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 mm = uw_space(task);
	__u32 zero = 0, seq = uw_mm_seq(task);
	struct uw_state s = {
		.pc = PT_REGS_IP(ctx),
		.sp = PT_REGS_SP(ctx),
		.rbp = PT_REGS_FP(ctx),
		.rbp_known = 1,
		.st = st,
	};
	struct uw_cache *c = bpf_map_lookup_elem(&uw_caches, &zero);
	struct uw_win *win = bpf_map_lookup_elem(&uw_wins, &zero);

	if (!c || !win)
		return;
	win->len = 0;
	s.win = win;
	s.c = c;
	if (c->mm != mm || c->has_missing) {
		/* another process, or a module whose table may have come since: look again */
		c->mm = mm;
		c->nr_maps = 0;
		c->epoch++;
	} else if (c->seq != seq || (seq & 1)) {
		/* mappings are checked again as they are used; pc rules are found again */
		c->epoch++;
	}
	c->seq = seq;
	c->has_missing = 0;
	/*
	 * One more step than frames kept: it tells a stack at the limit from a deeper one. A plain
	 * bounded loop (uw_step is a subprogram): ~5 ns a frame cheaper here than bpf_loop.
	 */
	for (int i = 0; i < ASZ_MAX_FRAMES + 1; i++)
		if (uw_step(i, &s))
			break;
	st->nr = s.n > ASZ_MAX_FRAMES ? ASZ_MAX_FRAMES : s.n;
	st->flags = 0;
	if (s.stop == UW_DEPTH)
		st->flags = ASZ_STACK_TRUNCATED;
	else if (s.stop != UW_END)
		st->flags = ASZ_STACK_INCOMPLETE;
}

#endif
