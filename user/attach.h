/* SPDX-License-Identifier: MIT */
/* Allocator probe points in a library, and the links that attach our programs to them. */
#ifndef ASZ_ATTACH_H
#define ASZ_ATTACH_H

#include <stdbool.h>
#include <sys/types.h>
#include <linux/types.h>
#include "asizeof.h"

struct alloc_sym {
	const char *name;
	__u32 allocator; /* enum asz_allocator, the probe's cookie */
	__u64 vaddr;	 /* ELF virtual address of the symbol */
	__u64 offset;	 /* file offset where the probe goes */
	int skip;	 /* bytes past the symbol's start (cost-aware placement) */
};

#define ATTACH_MAX_SYMS 40

struct alloc_syms {
	struct alloc_sym syms[ATTACH_MAX_SYMS];
	int nr;
};

/*
 * Find the allocator entry points exported by an ELF file, one per address (aliases such as
 * aligned_alloc = memalign share one). Returns 0, -ENOENT if malloc or free is missing, or
 * another negative errno.
 */
int attach__find_syms(const char *path, struct alloc_syms *out);

/* How far past a symbol's entry its probe can go (see attach.c); pure, for tests. */
int attach__probe_skip(const __u8 *code, size_t len, __u32 allocator);

/*
 * The instructions that begin in (0, skip] of an entry's code whose probe skips skip bytes: bit
 * k set for one beginning at offset k (skip < 64). Pure, for tests.
 */
__u64 attach__insn_starts(const __u8 *code, size_t len, size_t skip);

/*
 * The bytes of an entry's first 64 known to be inside an instruction, not at its start (bit k:
 * offset k), decoded straight on from the entry as far as the instructions are known. Pure.
 */
__u64 attach__insn_inside(const __u8 *code, size_t len);

/*
 * Might a branch in code (len bytes) go to one of the instructions starts (bits of starts, as
 * attach__insn_starts gives them) past offset entry in it, the probe's included? Every byte is
 * read as a possible branch but those inside an instruction past the entry (bits of inside, as
 * attach__insn_inside gives them): true may be wrong (then the probe stays at the entry), false
 * is not (a branch goes to an instruction's start, and those are known between entry and probe).
 */
bool attach__branches_into(const __u8 *code, size_t len, size_t entry, __u64 starts,
			   __u64 inside);

/*
 * The allocation entry points of libc that syms (another allocator: jemalloc, tcmalloc) lacks,
 * e.g. pvalloc: calls to them still reach glibc's allocator. free is never included (the
 * program's free is the other allocator's). Returns 0 (out may be empty) or a negative errno.
 */
int attach__complement(const char *libc, const struct alloc_syms *syms, struct alloc_syms *out);

enum attach_mode {
	ATTACH_AUTO = 0,
	ATTACH_MULTI, /* one uprobe_multi link per program (raw BPF_LINK_CREATE) */
	ATTACH_PERF,  /* one perf-event link per probe */
};

#define BPF_TRACE_UPROBE_MULTI_TYPE 48
#define BPF_TRACE_UPROBE_SESSION_TYPE 57
#define BPF_F_UPROBE_MULTI_RETURN_FLAG 1u

/*
 * Raw uprobe_multi or uprobe session link (libbpf 1.1 has no API): attach_type is one of the two
 * types above. Returns a link fd or a negative errno.
 */
int attach__uprobe_multi(int prog_fd, __u32 attach_type, bool retprobe, const char *path,
			 const __u64 *offsets, const __u64 *cookies, __u32 cnt, pid_t pid);

#endif
