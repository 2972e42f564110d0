// SPDX-License-Identifier: MIT
/*
 * Unwind tables from DWARF call-frame information, x86-64.
 *
 * libdw's dwarf_next_cfi() splits .eh_frame / .debug_frame into CIEs and FDEs; the CFA programs
 * are run here by a small interpreter that tracks only what an unwinder at an allocator needs:
 * the CFA rule, the return address (column 16) and rbp (column 6). Each advance of the location
 * ends a row, so the row boundaries come for free; asking libdw for the frame at every address
 * (dwarf_cfi_addrframe) gives the same answers but reruns the FDE program per query. The tests
 * compare both at every byte of whole modules.
 *
 * Semantics follow libdw with its x86-64 ABI defaults: registers a CIE does not mention keep
 * their value (same value), DW_CFA_restore goes back to the CIE's initial rule, and for
 * overlapping FDEs the later-starting one wins from its start on (what an .eh_frame_hdr lookup
 * finds). Not thread-safe per table; tables are independent.
 */
#include <dwarf.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwelf.h>

#include "cfi.h"
#include "util.h"

#define REG_RBP 6
#define REG_RSP 7
#define REG_RA 16
#define STATE_STACK_MAX 16 /* DW_CFA_remember_state nesting; glibc uses 1 */
#define PAGE_SIZE_MIN 4096

enum rule_kind {
	RULE_SAME = 0,	 /* same value (also: never mentioned, the x86-64 ABI default) */
	RULE_UNDEF = 1,
	RULE_OFFSET = 2, /* saved at CFA + off */
	RULE_OTHER = 3,	 /* register, value or expression rule: not expressible */
};

enum cfa_kind {
	CFA_NONE = 0, /* never defined */
	CFA_REG = 1,
	CFA_EXPR = 2,
	CFA_INVALID = 3, /* def_cfa_register/offset applied to an expression */
	CFA_DEREF = 4,	 /* CFA = *(reg + off): an expression too */
	CFA_EXPR_REG = 5, /* reg + off, written as an expression: def_cfa_offset may not follow */
};

struct rule {
	__u8 kind;
	__s64 off;
};

struct state {
	__u8 cfa_kind;
	__u64 cfa_reg;
	__s64 cfa_off;
	struct rule rbp;
	struct rule ra;
};

/* Per-FDE findings, summed into struct cfi_stats once per FDE. */
enum fde_flag {
	FF_BAD = 1,
	FF_CFA_EXPR = 2,
	FF_CFA_REG = 4,
	FF_RA_RULE = 8,
	FF_RA_UNDEF = 16,
	FF_RBP_RULE = 32,
	FF_CFA_DEREF = 64,
};

struct cie {
	__u64 offset; /* section offset */
	const __u8 *insns, *insns_end;
	__u64 code_align;
	__s64 data_align;
	__u64 ra_reg;
	__u8 fde_enc;
	bool sized;  /* augmentation 'z': FDEs carry a sized augmentation block */
	bool signal; /* augmentation 'S' */
	bool ok;     /* augmentation understood */
	bool init_ok;
	size_t fde_aug_size;
	struct state init;
};

struct section {
	const char *name;
	Elf_Data *data;
	__u64 vaddr; /* sh_addr: where pc-relative pointers count from */
	bool eh;
	struct cie *cies;
	size_t nr_cies, cap_cies;
};

struct fde {
	__u64 start, end;
	const __u8 *insns, *insns_end;
	const struct cie *cie;
	const struct section *sec;
};

struct builder {
	struct cfi_table *t;
	struct section secs[2];
	struct fde *fdes;
	size_t nr_fdes, cap_fdes;
	struct asz_cfi_row *rows;
	size_t nr_rows, cap_rows;
	__u64 fde_end;	 /* absolute vaddr: rows at or past it are dropped */
	__u64 last_end;	 /* end of the previous FDE */
	unsigned int ff; /* enum fde_flag of the FDE being compiled */
	bool nomem;
};

static int read_uleb(const __u8 **p, const __u8 *end, __u64 *out)
{
	__u64 v = 0;
	unsigned int shift = 0;

	while (*p < end) {
		__u8 b = *(*p)++;

		if (shift < 64)
			v |= (__u64)(b & 0x7f) << shift;
		shift += 7;
		if (!(b & 0x80)) {
			*out = v;
			return 0;
		}
	}
	return -EINVAL;
}

static int read_sleb(const __u8 **p, const __u8 *end, __s64 *out)
{
	__u64 v = 0;
	unsigned int shift = 0;

	while (*p < end) {
		__u8 b = *(*p)++;

		if (shift < 64)
			v |= (__u64)(b & 0x7f) << shift;
		shift += 7;
		if (!(b & 0x80)) {
			if (shift < 64 && (b & 0x40))
				v |= ~0ULL << shift;
			*out = (__s64)v;
			return 0;
		}
	}
	return -EINVAL;
}

static int read_fixed(const __u8 **p, const __u8 *end, unsigned int size, bool sign, __u64 *out)
{
	__u64 v = 0;

	if ((size_t)(end - *p) < size)
		return -EINVAL;
	memcpy(&v, *p, size); /* little-endian host and target */
	if (sign && size < 8 && (v >> (size * 8 - 1)) & 1)
		v |= ~0ULL << (size * 8);
	*p += size;
	*out = v;
	return 0;
}

/* The value part of a DW_EH_PE_* encoded pointer, without its application (pcrel, ...). */
static int read_encoded_raw(__u8 enc, const __u8 **p, const __u8 *end, __u64 *out)
{
	__s64 s;

	switch (enc & 0x0f) {
	case DW_EH_PE_absptr:
	case DW_EH_PE_udata8:
	case DW_EH_PE_sdata8:
		return read_fixed(p, end, 8, false, out);
	case DW_EH_PE_udata2:
		return read_fixed(p, end, 2, false, out);
	case DW_EH_PE_sdata2:
		return read_fixed(p, end, 2, true, out);
	case DW_EH_PE_udata4:
		return read_fixed(p, end, 4, false, out);
	case DW_EH_PE_sdata4:
		return read_fixed(p, end, 4, true, out);
	case DW_EH_PE_uleb128:
		return read_uleb(p, end, out);
	case DW_EH_PE_sleb128:
		if (read_sleb(p, end, &s))
			return -EINVAL;
		*out = (__u64)s;
		return 0;
	default:
		return -EINVAL;
	}
}

/* An encoded code address: absolute or pc-relative (nothing else occurs for code on x86-64). */
static int read_encoded_addr(__u8 enc, const __u8 **p, const __u8 *end, const struct section *sec,
			     __u64 *out)
{
	__u64 field = sec->vaddr + (__u64)(*p - (const __u8 *)sec->data->d_buf);
	__u64 v;

	if (enc == DW_EH_PE_omit || (enc & DW_EH_PE_indirect))
		return -EINVAL;
	if (read_encoded_raw(enc, p, end, &v))
		return -EINVAL;
	switch (enc & 0x70) {
	case DW_EH_PE_absptr:
		break;
	case DW_EH_PE_pcrel:
		v += field;
		break;
	default:
		return -EINVAL;
	}
	*out = v;
	return 0;
}

static void set_reg_rule(struct state *st, __u64 reg, __u8 kind, __s64 off)
{
	struct rule r = { .kind = kind, .off = off };

	if (reg == REG_RBP)
		st->rbp = r;
	else if (reg == REG_RA)
		st->ra = r;
}

static void restore_reg_rule(struct state *st, __u64 reg, const struct state *init)
{
	static const struct rule same = { .kind = RULE_SAME };

	if (reg == REG_RBP)
		st->rbp = init ? init->rbp : same;
	else if (reg == REG_RA)
		st->ra = init ? init->ra : same;
}

/*
 * DW_CFA_def_cfa_expression: "DW_OP_bregN off" alone is a plain register rule; "DW_OP_bregN off;
 * DW_OP_deref" (gcc's stack realignment, CFA = *(rbp - off)) is told apart for the statistics;
 * anything else (PLT stubs, signal frames) is an expression.
 */
static void cfa_expression(struct state *st, const __u8 *p, const __u8 *end)
{
	__u8 op = p < end ? *p++ : 0;
	__s64 off;

	st->cfa_kind = CFA_EXPR;
	if (op < DW_OP_breg0 || op > DW_OP_breg31 || read_sleb(&p, end, &off))
		return;
	if (p == end) {
		st->cfa_kind = CFA_EXPR_REG;
		st->cfa_reg = op - DW_OP_breg0;
		st->cfa_off = off;
	} else if (p + 1 == end && *p == DW_OP_deref) {
		st->cfa_kind = CFA_DEREF;
	}
}

/* The row for a state; sets FF_* findings in *ff. pc is filled in by the caller. */
static void state_row(const struct cie *cie, const struct state *st, struct asz_cfi_row *r,
		      unsigned int *ff)
{
	memset(r, 0, sizeof(*r));
	r->rbp_rule = ASZ_RBP_UNDEFINED;
	if (cie->ra_reg != REG_RA) {
		*ff |= FF_RA_RULE;
		r->cfa_reg = ASZ_CFA_UNSUPPORTED;
		return;
	}
	if (st->ra.kind == RULE_UNDEF) {
		/* The outermost frame (_start, a thread's clone): nothing to return to. */
		*ff |= FF_RA_UNDEF;
		r->cfa_reg = ASZ_CFA_END;
		return;
	}
	r->cfa_reg = ASZ_CFA_UNSUPPORTED;
	if (st->cfa_kind == CFA_EXPR || st->cfa_kind == CFA_DEREF) {
		*ff |= st->cfa_kind == CFA_DEREF ? FF_CFA_DEREF : FF_CFA_EXPR;
		return;
	}
	if (st->cfa_kind != CFA_REG && st->cfa_kind != CFA_EXPR_REG) {
		*ff |= FF_BAD;
		return;
	}
	if ((st->cfa_reg != REG_RSP && st->cfa_reg != REG_RBP) || st->cfa_off < INT32_MIN ||
	    st->cfa_off > INT32_MAX) {
		*ff |= FF_CFA_REG;
		return;
	}
	if (st->ra.kind != RULE_OFFSET || st->ra.off != -8) {
		*ff |= FF_RA_RULE;
		return;
	}
	r->cfa_reg = st->cfa_reg == REG_RSP ? ASZ_CFA_RSP : ASZ_CFA_RBP;
	r->cfa_off = (__s32)st->cfa_off;
	switch (st->rbp.kind) {
	case RULE_SAME:
		r->rbp_rule = ASZ_RBP_SAME;
		break;
	case RULE_OFFSET:
		if (st->rbp.off >= INT32_MIN && st->rbp.off <= INT32_MAX) {
			r->rbp_rule = ASZ_RBP_OFFSET;
			r->rbp_off = (__s32)st->rbp.off;
		} else {
			*ff |= FF_RBP_RULE;
		}
		break;
	case RULE_UNDEF:
		break;
	default:
		*ff |= FF_RBP_RULE;
		break;
	}
}

static bool same_rule(const struct asz_cfi_row *a, const struct asz_cfi_row *b)
{
	return a->cfa_reg == b->cfa_reg && a->cfa_off == b->cfa_off &&
	       a->rbp_rule == b->rbp_rule && a->rbp_off == b->rbp_off;
}

/*
 * Append the row starting at absolute vaddr pc. Rows of an earlier FDE at or past pc are
 * dropped (a later-starting FDE wins); a row equal to its predecessor is merged into it.
 */
static void push_row(struct builder *b, __u64 pc, const struct asz_cfi_row *rule)
{
	__u32 rel = (__u32)(pc - b->t->base);
	struct asz_cfi_row *r;

	if (pc >= b->fde_end)
		return;
	while (b->nr_rows && b->rows[b->nr_rows - 1].pc >= rel)
		b->nr_rows--;
	if (b->nr_rows && same_rule(&b->rows[b->nr_rows - 1], rule))
		return;
	if (util__reserve(&b->rows, &b->cap_rows, b->nr_rows + 1, sizeof(*b->rows), 64)) {
		b->nomem = true;
		return;
	}
	r = &b->rows[b->nr_rows++];
	*r = *rule;
	r->pc = rel;
}

static void emit_state(struct builder *b, const struct cie *cie, const struct state *st, __u64 pc)
{
	struct asz_cfi_row row;

	state_row(cie, st, &row, &b->ff);
	push_row(b, pc, &row);
}

static void emit_kind(struct builder *b, __u8 cfa_reg, __u64 pc)
{
	struct asz_cfi_row row = { .cfa_reg = cfa_reg, .rbp_rule = ASZ_RBP_UNDEFINED };

	push_row(b, pc, &row);
}

/*
 * Run a CFA program. For an FDE (b != NULL) a row is emitted at each advance of the location
 * and at the end; init is the CIE's initial state for DW_CFA_restore (NULL: the ABI default,
 * while running the CIE's own instructions). Returns 0 or -EINVAL at a malformed program, in
 * which case the rows from the current location to the FDE's end are unsupported.
 */
static int run_program(struct builder *b, const struct cie *cie, const struct section *sec,
		       const __u8 *p, const __u8 *end, struct state *st, const struct state *init,
		       __u64 loc)
{
	struct state stack[STATE_STACK_MAX];
	unsigned int depth = 0;
	__u64 reg, uoff, delta, nloc;
	__s64 soff;

	while (p < end) {
		__u8 op = *p++;

		switch (op & 0xc0) {
		case DW_CFA_advance_loc:
			delta = (__u64)(op & 0x3f) * cie->code_align;
			goto advance;
		case DW_CFA_offset:
			if (read_uleb(&p, end, &uoff))
				goto bad;
			set_reg_rule(st, op & 0x3f, RULE_OFFSET, (__s64)uoff * cie->data_align);
			continue;
		case DW_CFA_restore:
			restore_reg_rule(st, op & 0x3f, init);
			continue;
		}
		switch (op) {
		case DW_CFA_nop:
			continue;
		case DW_CFA_set_loc:
			if (read_encoded_addr(cie->fde_enc, &p, end, sec, &nloc) || nloc < loc)
				goto bad;
			delta = nloc - loc;
			goto advance;
		case DW_CFA_advance_loc1:
			if (read_fixed(&p, end, 1, false, &delta))
				goto bad;
			delta *= cie->code_align;
			goto advance;
		case DW_CFA_advance_loc2:
			if (read_fixed(&p, end, 2, false, &delta))
				goto bad;
			delta *= cie->code_align;
			goto advance;
		case DW_CFA_advance_loc4:
			if (read_fixed(&p, end, 4, false, &delta))
				goto bad;
			delta *= cie->code_align;
			goto advance;
		case DW_CFA_MIPS_advance_loc8:
			if (read_fixed(&p, end, 8, false, &delta))
				goto bad;
			delta *= cie->code_align;
			goto advance;
		case DW_CFA_offset_extended:
			if (read_uleb(&p, end, &reg) || read_uleb(&p, end, &uoff))
				goto bad;
			set_reg_rule(st, reg, RULE_OFFSET, (__s64)uoff * cie->data_align);
			continue;
		case DW_CFA_offset_extended_sf:
			if (read_uleb(&p, end, &reg) || read_sleb(&p, end, &soff))
				goto bad;
			set_reg_rule(st, reg, RULE_OFFSET, soff * cie->data_align);
			continue;
		case DW_CFA_GNU_negative_offset_extended:
			if (read_uleb(&p, end, &reg) || read_uleb(&p, end, &uoff))
				goto bad;
			set_reg_rule(st, reg, RULE_OFFSET, -(__s64)uoff * cie->data_align);
			continue;
		case DW_CFA_restore_extended:
			if (read_uleb(&p, end, &reg))
				goto bad;
			restore_reg_rule(st, reg, init);
			continue;
		case DW_CFA_undefined:
			if (read_uleb(&p, end, &reg))
				goto bad;
			set_reg_rule(st, reg, RULE_UNDEF, 0);
			continue;
		case DW_CFA_same_value:
			if (read_uleb(&p, end, &reg))
				goto bad;
			set_reg_rule(st, reg, RULE_SAME, 0);
			continue;
		case DW_CFA_register:
		case DW_CFA_val_offset:
			if (read_uleb(&p, end, &reg) || read_uleb(&p, end, &uoff))
				goto bad;
			set_reg_rule(st, reg, RULE_OTHER, 0);
			continue;
		case DW_CFA_val_offset_sf:
			if (read_uleb(&p, end, &reg) || read_sleb(&p, end, &soff))
				goto bad;
			set_reg_rule(st, reg, RULE_OTHER, 0);
			continue;
		case DW_CFA_expression:
		case DW_CFA_val_expression:
			if (read_uleb(&p, end, &reg) || read_uleb(&p, end, &uoff) ||
			    uoff > (__u64)(end - p))
				goto bad;
			p += uoff;
			set_reg_rule(st, reg, RULE_OTHER, 0);
			continue;
		case DW_CFA_remember_state:
			if (depth == STATE_STACK_MAX)
				goto bad;
			stack[depth++] = *st;
			continue;
		case DW_CFA_restore_state:
			if (!depth)
				goto bad;
			*st = stack[--depth];
			continue;
		case DW_CFA_def_cfa:
			if (read_uleb(&p, end, &reg) || read_uleb(&p, end, &uoff))
				goto bad;
			st->cfa_kind = CFA_REG;
			st->cfa_reg = reg;
			st->cfa_off = (__s64)uoff;
			continue;
		case DW_CFA_def_cfa_sf:
			if (read_uleb(&p, end, &reg) || read_sleb(&p, end, &soff))
				goto bad;
			st->cfa_kind = CFA_REG;
			st->cfa_reg = reg;
			st->cfa_off = soff * cie->data_align;
			continue;
		case DW_CFA_def_cfa_register:
			if (read_uleb(&p, end, &reg))
				goto bad;
			if (st->cfa_kind != CFA_REG)
				st->cfa_kind = CFA_INVALID;
			st->cfa_reg = reg;
			continue;
		case DW_CFA_def_cfa_offset:
			if (read_uleb(&p, end, &uoff))
				goto bad;
			if (st->cfa_kind != CFA_REG)
				st->cfa_kind = CFA_INVALID;
			st->cfa_off = (__s64)uoff;
			continue;
		case DW_CFA_def_cfa_offset_sf:
			if (read_sleb(&p, end, &soff))
				goto bad;
			if (st->cfa_kind != CFA_REG)
				st->cfa_kind = CFA_INVALID;
			st->cfa_off = soff * cie->data_align;
			continue;
		case DW_CFA_def_cfa_expression:
			if (read_uleb(&p, end, &uoff) || uoff > (__u64)(end - p))
				goto bad;
			cfa_expression(st, p, p + uoff);
			p += uoff;
			continue;
		case DW_CFA_GNU_args_size:
			if (read_uleb(&p, end, &uoff))
				goto bad;
			continue;
		default:
			/* DW_CFA_GNU_window_save (SPARC) and unknown opcodes */
			goto bad;
		}
advance:
		if (b) {
			if (delta && loc < b->fde_end)
				emit_state(b, cie, st, loc);
		}
		loc += delta;
	}
	if (b)
		emit_state(b, cie, st, loc);
	return 0;
bad:
	if (b) {
		b->ff |= FF_BAD;
		emit_kind(b, ASZ_CFA_UNSUPPORTED, loc);
	}
	return -EINVAL;
}

static const struct cie *find_cie(const struct section *sec, __u64 offset)
{
	size_t lo = 0, hi = sec->nr_cies;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (sec->cies[mid].offset < offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < sec->nr_cies && sec->cies[lo].offset == offset ? &sec->cies[lo] : NULL;
}

/* Augmentation: the FDE pointer encoding, signal flag; then the initial state. */
static int add_cie(struct builder *b, struct section *sec, __u64 offset, const Dwarf_CIE *e)
{
	const __u8 *d = e->augmentation_data;
	const __u8 *dend = d ? d + e->augmentation_data_size : NULL;
	const char *a = e->augmentation;
	struct cie *c;
	__u64 skip;

	if (util__reserve(&sec->cies, &sec->cap_cies, sec->nr_cies + 1, sizeof(*sec->cies), 64))
		return -ENOMEM;
	c = &sec->cies[sec->nr_cies++];
	memset(c, 0, sizeof(*c));
	c->offset = offset;
	c->insns = e->initial_instructions;
	c->insns_end = e->initial_instructions_end;
	c->code_align = e->code_alignment_factor;
	c->data_align = e->data_alignment_factor;
	c->ra_reg = e->return_address_register;
	c->fde_enc = DW_EH_PE_absptr;
	c->ok = true;
	b->t->stats.cies++;
	if (a[0] == 'z') {
		c->sized = true;
		for (a++; *a && c->ok; a++) {
			__u8 enc;

			if (*a == 'S') {
				c->signal = true;
				continue;
			}
			if (*a == 'B' || *a == 'G') /* AArch64 BTI, memory tagging: no data */
				continue;
			if (*a != 'R' && *a != 'L' && *a != 'P')
				break; /* unknown data follows: an 'R' after it would be missed */
			if (d >= dend) {
				c->ok = false;
				break;
			}
			enc = *d++;
			if (*a == 'R')
				c->fde_enc = enc;
			else if (*a == 'P' && read_encoded_raw(enc, &d, dend, &skip))
				c->ok = false;
		}
	} else if (a[0]) {
		c->ok = false; /* pre-'z' augmentations ("eh"): not produced by current tools */
	}
	c->fde_aug_size = e->fde_augmentation_data_size;
	c->init = (struct state){ .cfa_kind = CFA_NONE };
	c->init_ok = c->ok && !run_program(NULL, c, sec, c->insns, c->insns_end, &c->init, NULL, 0);
	return 0;
}

struct raw_fde {
	__u64 cie_offset;
	const __u8 *start, *end;
};

/* Decode an FDE's address range against its CIE and queue it. */
static int add_fde(struct builder *b, const struct section *sec, const struct raw_fde *raw)
{
	const struct cie *cie = find_cie(sec, raw->cie_offset);
	const __u8 *p = raw->start;
	__u64 start, range, len;
	struct fde *f;

	if (!cie || !cie->ok)
		goto bad;
	if (read_encoded_addr(cie->fde_enc, &p, raw->end, sec, &start) ||
	    read_encoded_raw(cie->fde_enc, &p, raw->end, &range))
		goto bad;
	if (cie->sized) {
		if (read_uleb(&p, raw->end, &len) || len > (__u64)(raw->end - p))
			goto bad;
		p += len;
	} else {
		if (cie->fde_aug_size > (size_t)(raw->end - p))
			goto bad;
		p += cie->fde_aug_size;
	}
	if ((cie->fde_enc & 0x0f) == DW_EH_PE_udata4 || (cie->fde_enc & 0x0f) == DW_EH_PE_sdata4)
		range &= 0xffffffffULL;
	if (!range || start < b->t->base || start - b->t->base > UINT32_MAX ||
	    range > UINT32_MAX || start + range - b->t->base > UINT32_MAX) {
		b->t->stats.fdes_skipped++;
		return 0;
	}
	if (util__reserve(&b->fdes, &b->cap_fdes, b->nr_fdes + 1, sizeof(*b->fdes), 64))
		return -ENOMEM;
	f = &b->fdes[b->nr_fdes++];
	f->start = start;
	f->end = start + range;
	f->insns = p;
	f->insns_end = raw->end;
	f->cie = cie;
	f->sec = sec;
	return 0;
bad:
	b->t->stats.bad_entries++;
	return 0;
}

/* Split one section into CIEs and FDEs. */
static int read_section(struct builder *b, struct section *sec, const unsigned char *ident)
{
	struct raw_fde *raws = NULL;
	size_t nr_raws = 0, cap_raws = 0, i;
	Dwarf_Off off = 0, next;
	Dwarf_CFI_Entry e;
	int err = 0, r;

	for (;;) {
		r = dwarf_next_cfi(ident, sec->data, sec->eh, off, &next, &e);
		if (r > 0)
			break;
		if (r < 0) {
			/* The entry's length is unknown past a malformed header: stop here. */
			b->t->stats.bad_entries++;
			break;
		}
		if (dwarf_cfi_cie_p(&e)) {
			err = add_cie(b, sec, off, &e.cie);
		} else {
			err = util__reserve(&raws, &cap_raws, nr_raws + 1, sizeof(*raws), 64);
			if (!err)
				raws[nr_raws++] = (struct raw_fde){ e.fde.CIE_pointer, e.fde.start,
								    e.fde.end };
		}
		if (err)
			goto cleanup;
		off = next;
	}
	/* CIEs come in section order, so the array is sorted by offset already. */
	for (i = 0; i < nr_raws && !err; i++)
		err = add_fde(b, sec, &raws[i]);
cleanup:
	free(raws);
	return err;
}

static int cmp_fde(const void *a, const void *b)
{
	const struct fde *x = a, *y = b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	/* Stable on equal starts: section order, then position in the section. */
	if (x->sec != y->sec)
		return x->sec < y->sec ? -1 : 1;
	return x->insns < y->insns ? -1 : x->insns > y->insns;
}

/* Does [start, end) intersect one of the first n FDEs (sorted, from .eh_frame)? */
static bool covered(const struct fde *fdes, size_t n, __u64 start, __u64 end)
{
	size_t lo = 0, hi = n;

	/* First FDE starting at or after end; its predecessors are the candidates. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (fdes[mid].start < end)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* FDEs rarely overlap: looking back a few is enough, and exact for disjoint ones. */
	for (size_t i = lo, k = 0; i-- > 0 && k < 8; k++)
		if (fdes[i].end > start)
			return true;
	return false;
}

static void compile_fde(struct builder *b, const struct fde *f)
{
	struct cfi_stats *s = &b->t->stats;
	struct state st = f->cie->init;

	b->ff = 0;
	b->fde_end = f->end;
	if (f->start < b->last_end)
		s->fdes_overlap++;
	b->last_end = f->end;
	if (!f->cie->init_ok) {
		b->ff |= FF_BAD;
		emit_kind(b, ASZ_CFA_UNSUPPORTED, f->start);
	} else if (f->cie->signal) {
		/* Its return address is an interrupted pc, not a call: not expressible. */
		emit_kind(b, ASZ_CFA_UNSUPPORTED, f->start);
	} else {
		run_program(b, f->cie, f->sec, f->insns, f->insns_end, &st, &f->cie->init,
			    f->start);
	}
	/* Up to the next FDE (which replaces this row if adjacent): no information. */
	b->fde_end = UINT64_MAX;
	emit_kind(b, ASZ_CFA_UNDEFINED, f->end);

	s->fdes++;
	if (f->sec == &b->secs[1])
		s->fdes_debug_frame++;
	s->fde_signal += f->cie->signal;
	s->fde_bad_program += !!(b->ff & FF_BAD);
	s->fde_cfa_expr += !!(b->ff & FF_CFA_EXPR);
	s->fde_cfa_deref += !!(b->ff & FF_CFA_DEREF);
	s->fde_cfa_reg += !!(b->ff & FF_CFA_REG);
	s->fde_ra_rule += !!(b->ff & FF_RA_RULE);
	s->fde_ra_undefined += !!(b->ff & FF_RA_UNDEF);
	s->fde_rbp_rule += !!(b->ff & FF_RBP_RULE);
}

static int read_segments(Elf *elf, struct cfi_table *t)
{
	size_t n, i;
	bool have_x = false;

	if (elf_getphdrnum(elf, &n))
		return -ENOEXEC;
	t->segs = calloc(n ? n : 1, sizeof(*t->segs));
	if (!t->segs)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		GElf_Phdr ph;
		struct cfi_segment *s;

		if (!gelf_getphdr(elf, i, &ph) || ph.p_type != PT_LOAD)
			continue;
		s = &t->segs[t->nr_segs++];
		s->offset = ph.p_offset;
		s->vaddr = ph.p_vaddr;
		s->filesz = ph.p_filesz;
		s->exec = ph.p_flags & PF_X;
		if (s->exec && (!have_x || ph.p_vaddr < t->base)) {
			t->base = ph.p_vaddr;
			have_x = true;
		}
	}
	return have_x ? 0 : -ENOEXEC;
}

/* Find .eh_frame and .debug_frame (decompressed if needed). */
static int find_sections(Elf *elf, struct builder *b)
{
	size_t shstrndx;
	Elf_Scn *scn = NULL;

	if (elf_getshdrstrndx(elf, &shstrndx))
		return 0; /* no section headers: nothing to read */
	b->secs[0] = (struct section){ .name = ".eh_frame", .eh = true };
	b->secs[1] = (struct section){ .name = ".debug_frame", .eh = false };
	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		const char *name;
		struct section *sec = NULL;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type == SHT_NOBITS)
			continue;
		name = elf_strptr(elf, shstrndx, sh.sh_name);
		if (!name)
			continue;
		for (int i = 0; i < 2; i++)
			if (!strcmp(name, b->secs[i].name))
				sec = &b->secs[i];
		if (!sec || sec->data)
			continue;
		if ((sh.sh_flags & SHF_COMPRESSED) && elf_compress(scn, 0, 0) < 0)
			continue;
		sec->data = elf_getdata(scn, NULL);
		sec->vaddr = sh.sh_addr;
		if (sec->data && !sec->data->d_size)
			sec->data = NULL;
	}
	return 0;
}

int cfi__build_fd(int fd, struct cfi_table *out)
{
	struct builder b = { .t = out };
	__u64 t0 = util__mono_ns();
	const unsigned char *ident;
	const void *bid = NULL;
	GElf_Ehdr eh;
	Elf *elf = NULL;
	size_t neh = 0, i;
	ssize_t bid_len;
	int err;

	memset(out, 0, sizeof(*out));
	elf_version(EV_CURRENT);
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!elf || elf_kind(elf) != ELF_K_ELF || !gelf_getehdr(elf, &eh) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64) {
		err = -ENOEXEC;
		goto cleanup;
	}
	ident = eh.e_ident;
	err = read_segments(elf, out);
	if (err)
		goto cleanup;
	bid_len = dwelf_elf_gnu_build_id(elf, &bid);
	if (bid_len > 0 && bid_len <= CFI_BUILD_ID_MAX) {
		memcpy(out->build_id, bid, bid_len);
		out->build_id_len = bid_len;
	}
	find_sections(elf, &b);
	for (i = 0; i < 2; i++) {
		if (!b.secs[i].data)
			continue;
		err = read_section(&b, &b.secs[i], ident);
		if (err)
			goto cleanup;
		if (i == 0) {
			qsort(b.fdes, b.nr_fdes, sizeof(*b.fdes), cmp_fde);
			neh = b.nr_fdes;
		}
	}
	/* .debug_frame only where .eh_frame says nothing. */
	for (i = neh; i < b.nr_fdes;) {
		if (covered(b.fdes, neh, b.fdes[i].start, b.fdes[i].end)) {
			out->stats.fdes_skipped++;
			b.fdes[i] = b.fdes[--b.nr_fdes];
		} else {
			i++;
		}
	}
	if (!b.nr_fdes) {
		err = -ENODATA;
		goto cleanup;
	}
	qsort(b.fdes, b.nr_fdes, sizeof(*b.fdes), cmp_fde);
	for (i = 0; i < b.nr_fdes && !b.nomem; i++)
		compile_fde(&b, &b.fdes[i]);
	if (b.nomem) {
		err = -ENOMEM;
		goto cleanup;
	}
	for (i = 0; i < b.nr_rows; i++)
		out->stats.rows_unsupported += b.rows[i].cfa_reg == ASZ_CFA_UNSUPPORTED;
	/* Trim the slack: large tables are kept for the life of the module. */
	out->rows = realloc(b.rows, b.nr_rows * sizeof(*b.rows)) ?: b.rows;
	out->nr_rows = b.nr_rows;
	b.rows = NULL;
	err = cfi_table__index(out);
	if (err)
		goto cleanup;
	out->stats.build_ns = util__mono_ns() - t0;
	err = 0;
cleanup:
	for (i = 0; i < 2; i++)
		free(b.secs[i].cies);
	free(b.fdes);
	free(b.rows);
	if (elf)
		elf_end(elf);
	if (err)
		cfi_table__free(out);
	return err;
}

int cfi__build(const char *path, struct cfi_table *out)
{
	int fd, err;

	memset(out, 0, sizeof(*out));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	err = cfi__build_fd(fd, out);
	close(fd);
	return err;
}

void cfi_table__free(struct cfi_table *t)
{
	if (!t)
		return;
	free(t->rows);
	free(t->index);
	free(t->segs);
	memset(t, 0, sizeof(*t));
}

int cfi_table__index(struct cfi_table *t)
{
	__u32 shift = 4, want, n, j = 0;
	__u64 last;

	free(t->index);
	t->index = NULL;
	t->nr_buckets = 0;
	if (!t->nr_rows)
		return 0;
	last = t->rows[t->nr_rows - 1].pc;
	want = t->nr_rows / CFI_ROWS_PER_BUCKET ?: 1;
	while (shift < 31 && (last >> shift) + 1 > want)
		shift++;
	n = (last >> shift) + 1;
	t->index = malloc(ASZ_CFI_INDEX_ROWS(n) * 4 * sizeof(__u32));
	if (!t->index)
		return -ENOMEM;
	for (__u32 b = 0; b < ASZ_CFI_INDEX_ROWS(n) * 4; b++) {
		while (b < n && j < t->nr_rows && t->rows[j].pc < ((__u64)b << shift))
			j++;
		t->index[b] = b < n ? j : t->nr_rows;
	}
	t->nr_buckets = n;
	t->index_shift = shift;
	return 0;
}

const struct asz_cfi_row *cfi_table__lookup(const struct cfi_table *t, __u64 pc)
{
	__u32 lo = 0, hi = t->nr_rows, b;

	if (pc > UINT32_MAX)
		return NULL;
	/*
	 * The last row with row.pc <= pc: the same search the BPF side runs (uw_find_row), in pc's
	 * bucket: rows before it are below pc, rows from the next bucket's on above it.
	 */
	if (t->nr_buckets) {
		b = pc >> t->index_shift;
		lo = b < t->nr_buckets ? t->index[b] : t->nr_rows;
		hi = b + 1 < t->nr_buckets ? t->index[b + 1] : t->nr_rows;
	}
	while (lo < hi) {
		__u32 mid = lo + (hi - lo) / 2;

		if (t->rows[mid].pc <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo ? &t->rows[lo - 1] : NULL;
}

int cfi_table__bias(const struct cfi_table *t, __u64 map_start, __u64 pgoff, __u64 *bias)
{
	const struct cfi_segment *best = NULL;

	for (__u32 i = 0; i < t->nr_segs; i++) {
		const struct cfi_segment *s = &t->segs[i];
		__u64 first = s->offset & ~(__u64)(PAGE_SIZE_MIN - 1);

		if (pgoff < first || pgoff >= s->offset + s->filesz)
			continue;
		if (!best || (s->exec && !best->exec))
			best = s;
	}
	if (!best)
		return -ENOENT;
	/* vaddr = addr - map_start + pgoff - offset + vaddr(seg); row pc = vaddr - base */
	*bias = map_start - pgoff + best->offset - best->vaddr + t->base;
	return 0;
}

const char *cfi__stop_name(enum cfi_stop stop)
{
	switch (stop) {
	case CFI_STOP_END:
		return "end";
	case CFI_STOP_DEPTH:
		return "depth";
	case CFI_STOP_UNSUPPORTED:
		return "unsupported";
	case CFI_STOP_NO_MAPPING:
		return "no-mapping";
	case CFI_STOP_NO_TABLE:
		return "no-table";
	case CFI_STOP_BAD_FRAME:
		return "bad-frame";
	case CFI_STOP_READ:
		return "read";
	}
	return "?";
}

static const struct cfi_map *find_map(const struct cfi_map *maps, __u32 n, __u64 pc)
{
	__u32 lo = 0, hi = n;

	while (lo < hi) {
		__u32 mid = lo + (hi - lo) / 2;

		if (maps[mid].start <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo && pc < maps[lo - 1].end ? &maps[lo - 1] : NULL;
}

int cfi__unwind(const struct cfi_map *maps, __u32 nr_maps, const struct cfi_regs *regs,
		cfi_read_fn read_mem, void *ctx, unsigned int flags, __u64 *ips, __u32 max,
		enum cfi_stop *stop)
{
	__u64 pc = regs->pc, sp = regs->sp, rbp = regs->rbp;
	int rbp_known = 1; /* 2: restored from where a CFI rule says it was saved */
	__u32 n = 0;

	for (__u32 frame = 0;; frame++) {
		/* A return address is after the call: look up the call itself. */
		__u64 at = frame ? pc - 1 : pc;
		const struct cfi_map *m = find_map(maps, nr_maps, at);
		/* code no FDE covers (assembly, -fno-asynchronous-unwind-tables): as no table */
		const struct asz_cfi_row *row = m && m->table ? cfi_table__lookup(m->table, at - m->bias)
							      : NULL;
		__u64 cfa, ra, nrbp = rbp;
		int nrbp_known = rbp_known;

		if (row && row->cfa_reg == ASZ_CFA_UNDEFINED)
			row = NULL;
		/*
		 * The return address is the first byte of an FDE, the call before it in none: a
		 * pushed trampoline's (makecontext's __start_context), the outermost frame.
		 */
		if (frame && m && m->table && !row) {
			const struct asz_cfi_row *at_pc = cfi_table__lookup(m->table, pc - m->bias);

			if (at_pc && at_pc->cfa_reg != ASZ_CFA_UNDEFINED) {
				*stop = CFI_STOP_END;
				break;
			}
		}
		if (frame == 0 && (flags & CFI_UNWIND_ENTRY) && !row) {
			/* At a function's first instruction the return address is at *rsp. */
			cfa = sp + 8;
		} else if (!m) {
			*stop = CFI_STOP_NO_MAPPING;
			break;
		} else if (row) {
			if (row->cfa_reg == ASZ_CFA_END) {
				*stop = CFI_STOP_END;
				break;
			}
			if (row->cfa_reg == ASZ_CFA_UNSUPPORTED) {
				*stop = CFI_STOP_UNSUPPORTED;
				break;
			}
			if (row->cfa_reg == ASZ_CFA_RBP && !rbp_known) {
				*stop = CFI_STOP_BAD_FRAME;
				break;
			}
			cfa = (row->cfa_reg == ASZ_CFA_RSP ? sp : rbp) + (__s64)row->cfa_off;
			if (row->rbp_rule == ASZ_RBP_OFFSET) {
				if (read_mem(ctx, cfa + (__s64)row->rbp_off, &nrbp)) {
					*stop = CFI_STOP_READ;
					break;
				}
				nrbp_known = 2;
			} else if (row->rbp_rule == ASZ_RBP_UNDEFINED) {
				nrbp_known = 0;
			}
		} else if (flags & CFI_UNWIND_FP_FALLBACK) {
			/* rbp points at the saved rbp, the return address above it. */
			if (rbp_known == 2 && !rbp) {
				/* the ABI's mark of the outermost frame, saved by its callee */
				*stop = CFI_STOP_END;
				break;
			}
			if (!rbp_known || rbp < sp || (rbp & 7)) {
				*stop = CFI_STOP_BAD_FRAME;
				break;
			}
			cfa = rbp + 16;
			if (read_mem(ctx, rbp, &nrbp)) {
				*stop = CFI_STOP_READ;
				break;
			}
			nrbp_known = 1; /* through the frame-pointer chain: no CFI rule vouches */
		} else {
			*stop = CFI_STOP_NO_TABLE;
			break;
		}
		if (cfa <= sp) {
			/* Callers' frames are above: anything else would loop. */
			*stop = CFI_STOP_BAD_FRAME;
			break;
		}
		if (read_mem(ctx, cfa - 8, &ra)) {
			*stop = CFI_STOP_READ;
			break;
		}
		if (!ra) {
			*stop = CFI_STOP_END;
			break;
		}
		if (n == max) {
			*stop = CFI_STOP_DEPTH;
			break;
		}
		ips[n++] = ra;
		pc = ra;
		sp = cfa;
		rbp = nrbp;
		rbp_known = nrbp_known;
	}
	return n;
}
