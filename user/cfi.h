/* SPDX-License-Identifier: MIT */
/*
 * Unwind tables: a module's call-frame information (.eh_frame, .debug_frame) compiled into
 * sorted rows of struct asz_cfi_row (include/asizeof.h), the format the BPF unwinder reads,
 * and a reference unwinder over those rows running the same algorithm as the BPF side.
 * x86-64 only.
 */
#ifndef ASZ_CFI_H
#define ASZ_CFI_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>

#include "asizeof.h"

#define CFI_BUILD_ID_MAX 64

/* A PT_LOAD segment of the module: converts mapping offsets to ELF virtual addresses. */
struct cfi_segment {
	__u64 offset;
	__u64 vaddr;
	__u64 filesz;
	bool exec;
};

/*
 * What the build saw. FDE counters count FDEs in which the construct occurs at least once; their
 * rows become ASZ_CFA_UNSUPPORTED (CFA or return address) or ASZ_RBP_UNDEFINED (rbp).
 */
struct cfi_stats {
	__u32 cies;
	__u32 fdes;		/* FDEs compiled into rows */
	__u32 fdes_debug_frame;	/* of which from .debug_frame (where .eh_frame has none) */
	__u32 fdes_skipped;	/* empty, past base + 4 GiB, or .debug_frame under .eh_frame */
	__u32 fdes_overlap;	/* starting inside an earlier FDE, which they cut short */
	__u32 bad_entries;	/* CIE/FDE records that could not be parsed */
	__u32 fde_bad_program;	/* CFA program error (unknown opcode, truncated, bad state) */
	__u32 fde_cfa_expr;	/* DW_CFA_def_cfa_expression: PLT stubs, hand-written code */
	__u32 fde_cfa_deref;	/* CFA = *(rbp + off): gcc's stack realignment (DRAP) */
	__u32 fde_cfa_reg;	/* CFA based on a register other than rsp/rbp */
	__u32 fde_ra_rule;	/* return address not at CFA-8 (e.g. kept in a register) */
	__u32 fde_ra_undefined;	/* return address undefined: the outermost frame (_start) */
	__u32 fde_rbp_rule;	/* rbp in a register or by an expression */
	__u32 fde_signal;	/* CIE augmentation 'S' (signal trampoline) */
	__u32 rows_unsupported;	/* rows of the final table with ASZ_CFA_UNSUPPORTED */
	__u64 build_ns;		/* wall time of cfi__build() */
};

struct cfi_table {
	__u64 base;		   /* ELF vaddr of row pc 0: the lowest executable PT_LOAD */
	struct asz_cfi_row *rows;  /* sorted by pc, neighbours differ, the last is undefined */
	__u32 nr_rows;
	__u32 *index;		   /* bucket b: rows with pc < b << index_shift (asizeof.h) */
	__u32 nr_buckets;	   /* 0: no index */
	__u32 index_shift;
	__u32 nr_segs;
	struct cfi_segment *segs;  /* PT_LOAD segments in file order */
	__u8 build_id[CFI_BUILD_ID_MAX];
	__u32 build_id_len;	   /* 0 if the module has no GNU build-id note */
	struct cfi_stats stats;
};

/*
 * Compile the call-frame information of the ELF file at path (or open as fd, which is not
 * closed) into *out. .eh_frame is used first; .debug_frame fills in code that .eh_frame does
 * not cover. Returns 0, or a negative errno: -ENOEXEC (not an x86-64 ELF file with an
 * executable segment), -ENODATA (no FDE at all: unwind this module with frame pointers),
 * -ENOMEM, or the error of open(). On error *out is left empty (safe to cfi_table__free).
 */
int cfi__build(const char *path, struct cfi_table *out);
int cfi__build_fd(int fd, struct cfi_table *out);

/*
 * Build t's bucket index (cfi__build does): CFI_ROWS_PER_BUCKET to twice that many rows a
 * bucket, its words padded with nr_rows to a multiple of 4 (the kernel's layout). 0 or -ENOMEM.
 */
#define CFI_ROWS_PER_BUCKET 4
int cfi_table__index(struct cfi_table *t);

void cfi_table__free(struct cfi_table *t);

/* Bytes the rows and their bucket index take (what a BPF map of them holds). */
static inline size_t cfi_table__bytes(const struct cfi_table *t)
{
	return (size_t)ASZ_CFI_SLICE(t->nr_rows, t->nr_buckets) * sizeof(struct asz_cfi_row);
}

/* The row covering pc (relative to t->base), or NULL when pc is below the first row. */
const struct asz_cfi_row *cfi_table__lookup(const struct cfi_table *t, __u64 pc);

/*
 * For a mapping of the module at process address map_start with file offset pgoff: the bias
 * such that row pc = process address - bias. Returns 0, or -ENOENT when pgoff lies in no
 * PT_LOAD segment.
 */
int cfi_table__bias(const struct cfi_table *t, __u64 map_start, __u64 pgoff, __u64 *bias);

/* One executable mapping of a process, as the unwinder sees it. */
struct cfi_map {
	__u64 start;		       /* process addresses [start, end) */
	__u64 end;
	__u64 bias;		       /* row pc = address - bias */
	const struct cfi_table *table; /* NULL: the module has no table */
};

struct cfi_regs {
	__u64 pc; /* an exact instruction address (probe site, interrupted instruction) */
	__u64 sp;
	__u64 rbp;
};

/* Reads 8 bytes of the process at addr. Returns 0 or a negative errno. */
typedef int (*cfi_read_fn)(void *ctx, __u64 addr, __u64 *val);

enum cfi_unwind_flags {
	/* Where a pc's mapping has no table, walk frame pointers (rbp chain). */
	CFI_UNWIND_FP_FALLBACK = 1,
	/* regs->pc is a function's first instruction: CFA = rsp + 8 even without a table. */
	CFI_UNWIND_ENTRY = 2,
};

enum cfi_stop {
	CFI_STOP_END = 0,	  /* return address 0 or undefined row: outermost frame (or gap) */
	CFI_STOP_DEPTH,		  /* more frames than room: truncated */
	CFI_STOP_UNSUPPORTED,	  /* row the format cannot express: truncated */
	CFI_STOP_NO_MAPPING,	  /* pc in no known executable mapping: truncated */
	CFI_STOP_NO_TABLE,	  /* module without table and no frame-pointer fallback */
	CFI_STOP_BAD_FRAME,	  /* CFA not above sp, or rbp needed but unknown: truncated */
	CFI_STOP_READ,		  /* memory read failed: truncated */
};

const char *cfi__stop_name(enum cfi_stop stop);

/*
 * Unwind from regs. maps must be sorted by start and not overlap. Writes the return addresses
 * of the callers, innermost first, to ips (at most max) and returns how many; *stop says why it
 * ended. Frame 0 looks up regs->pc itself; later frames look up return address - 1 (the call).
 * Per frame: CFA = (rsp or rbp) + cfa_off; return address = *(CFA - 8); caller's rbp = rbp
 * (ASZ_RBP_SAME) or *(CFA + rbp_off), unknown after ASZ_RBP_UNDEFINED; caller's sp = CFA.
 * Frame-pointer fallback, only for a mapping without table: CFA = rbp + 16, caller's rbp = *rbp,
 * provided rbp is known, 8-aligned and not below sp. Every frame's CFA must be above its sp.
 */
int cfi__unwind(const struct cfi_map *maps, __u32 nr_maps, const struct cfi_regs *regs,
		cfi_read_fn read_mem, void *ctx, unsigned int flags, __u64 *ips, __u32 max,
		enum cfi_stop *stop);

#endif
