// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/bpf.h>
#include "attach.h"
#include "log.h"

static const struct {
	const char *name;
	__u32 allocator;
} wanted[] = {
	{"malloc", ASZ_MALLOC},
	{"calloc", ASZ_CALLOC},
	{"realloc", ASZ_REALLOC},
	{"memalign", ASZ_MEMALIGN},
	{"aligned_alloc", ASZ_MEMALIGN},
	{"posix_memalign", ASZ_POSIX_MEMALIGN},
	{"valloc", ASZ_VALLOC},
	{"pvalloc", ASZ_PVALLOC},
	{"free", ASZ_FREE},
	{"mmap", ASZ_MMAP},
	{"mremap", ASZ_MREMAP},
	{"munmap", ASZ_MUNMAP},
	/*
	 * C++: only allocator libraries define these (libstdc++'s call malloc, and it is not
	 * probed): jemalloc's and tcmalloc's do not call the public malloc and free.
	 */
	{"_Znwm", ASZ_NEW},
	{"_Znam", ASZ_NEW},
	{"_ZnwmRKSt9nothrow_t", ASZ_NEW},
	{"_ZnamRKSt9nothrow_t", ASZ_NEW},
	{"_ZnwmSt11align_val_t", ASZ_NEW},
	{"_ZnamSt11align_val_t", ASZ_NEW},
	{"_ZnwmSt11align_val_tRKSt9nothrow_t", ASZ_NEW},
	{"_ZnamSt11align_val_tRKSt9nothrow_t", ASZ_NEW},
	{"_ZdlPv", ASZ_DELETE},
	{"_ZdaPv", ASZ_DELETE},
	{"_ZdlPvm", ASZ_DELETE},
	{"_ZdaPvm", ASZ_DELETE},
	{"_ZdlPvRKSt9nothrow_t", ASZ_DELETE},
	{"_ZdaPvRKSt9nothrow_t", ASZ_DELETE},
	{"_ZdlPvSt11align_val_t", ASZ_DELETE},
	{"_ZdaPvSt11align_val_t", ASZ_DELETE},
	{"_ZdlPvmSt11align_val_t", ASZ_DELETE},
	{"_ZdaPvmSt11align_val_t", ASZ_DELETE},
	{"_ZdlPvSt11align_val_tRKSt9nothrow_t", ASZ_DELETE},
	{"_ZdaPvSt11align_val_tRKSt9nothrow_t", ASZ_DELETE},
	/* jemalloc's extended API; a tcmalloc function that is no alias of malloc */
	{"mallocx", ASZ_MALLOCX},
	{"rallocx", ASZ_RALLOCX},
	{"xallocx", ASZ_XALLOCX},
	{"dallocx", ASZ_FREE},
	{"sdallocx", ASZ_FREE},
	{"tc_malloc_skip_new_handler", ASZ_MALLOC},
	/*
	 * A glibc thread's teardown, where it frees its malloc cache (blocks it had freed): the
	 * malloc part of it where the symbol is there (static programs), else the first step.
	 */
	{"__malloc_arena_thread_freeres", ASZ_THREAD_EXIT},
	{"__call_tls_dtors", ASZ_THREAD_EXIT},
};
#define NR_WANTED (sizeof(wanted) / sizeof(wanted[0]))
_Static_assert(NR_WANTED <= ATTACH_MAX_SYMS, "struct alloc_syms holds every wanted name");
#define FREE_INDEX 8 /* malloc (0) and free make an allocator */
#define FREERES_INDEX (NR_WANTED - 2) /* __malloc_arena_thread_freeres, then __call_tls_dtors */

static int vaddr_to_offset(Elf *elf, __u64 vaddr, __u64 *off)
{
	size_t n, i;
	GElf_Phdr ph;

	if (elf_getphdrnum(elf, &n))
		return -EINVAL;
	for (i = 0; i < n; i++) {
		if (!gelf_getphdr(elf, i, &ph) || ph.p_type != PT_LOAD)
			continue;
		if (vaddr >= ph.p_vaddr && vaddr < ph.p_vaddr + ph.p_filesz) {
			*off = vaddr - ph.p_vaddr + ph.p_offset;
			return 0;
		}
	}
	return -ENOENT;
}

static bool is_push(const __u8 *c, size_t len)
{
	if (len >= 1 && c[0] >= 0x50 && c[0] <= 0x57)
		return true;
	return len >= 2 && c[0] == 0x41 && c[1] >= 0x50 && c[1] <= 0x57;
}

/* x86-64 register numbers as instructions encode them (REX extends them to 4 bits) */
#define REG_RCX 1
#define REG_RDX 2
#define REG_RSP 4
#define REG_RBP 5
#define REG_RSI 6
#define REG_RDI 7
#define REG_R8 8
#define REG_R9 9
#define REG_BIT(r) (1u << (r))
#define ARG_REGS                                                                          \
	(REG_BIT(REG_RDI) | REG_BIT(REG_RSI) | REG_BIT(REG_RDX) | REG_BIT(REG_RCX) |      \
	 REG_BIT(REG_R8) | REG_BIT(REG_R9))

/* The argument registers the BPF programs read at an allocator's entry (all six if unsure). */
static __u32 args_read(__u32 allocator)
{
	switch (allocator) {
	case ASZ_MALLOC:
	case ASZ_VALLOC:
	case ASZ_PVALLOC:
	case ASZ_NEW: /* the size only */
	case ASZ_FREE:
	case ASZ_DELETE:
		return REG_BIT(REG_RDI);
	case ASZ_CALLOC:
	case ASZ_REALLOC:
	case ASZ_MEMALIGN:
		return REG_BIT(REG_RDI) | REG_BIT(REG_RSI);
	case ASZ_POSIX_MEMALIGN:
		return REG_BIT(REG_RDI) | REG_BIT(REG_RSI) | REG_BIT(REG_RDX);
	case ASZ_MALLOCX: /* jemalloc's: their flags are not read */
		return REG_BIT(REG_RDI);
	case ASZ_RALLOCX:
		return REG_BIT(REG_RDI) | REG_BIT(REG_RSI);
	case ASZ_XALLOCX: /* ptr, size, extra */
		return REG_BIT(REG_RDI) | REG_BIT(REG_RSI) | REG_BIT(REG_RDX);
	default:
		return ARG_REGS;
	}
}

enum insn_kind {
	INSN_UNKNOWN,  /* not decoded here: nothing after it is known */
	INSN_EMULATED, /* the kernel emulates it at a probe: push, jcc, jmp, call rel32, nop */
	INSN_PLAIN,    /* straight-line, no memory store: *writes says which registers it sets */
};

/*
 * A jcc, jmp or call with a relative displacement at c (no prefix): its length in *n and its
 * target, relative to c, in *to.
 */
static bool rel_branch(const __u8 *c, size_t len, size_t *n, __s64 *to)
{
	__s32 rel32;

	if (len >= 2 && ((c[0] >= 0x70 && c[0] <= 0x7f) || c[0] == 0xeb)) {
		*n = 2;
		*to = 2 + (__s8)c[1];
		return true;
	}
	if (len >= 5 && (c[0] == 0xe8 || c[0] == 0xe9)) {
		memcpy(&rel32, c + 1, 4);
		*n = 5;
		*to = 5 + (__s64)rel32;
		return true;
	}
	if (len >= 6 && c[0] == 0x0f && c[1] >= 0x80 && c[1] <= 0x8f) {
		memcpy(&rel32, c + 2, 4);
		*n = 6;
		*to = 6 + (__s64)rel32;
		return true;
	}
	return false;
}

/* Bytes of a ModRM operand from its ModRM byte on (with SIB, displacement), 0 if cut. */
static size_t modrm_len(const __u8 *c, size_t len)
{
	__u8 mod = c[0] >> 6, rm = c[0] & 7;
	size_t n = 1;

	if (mod != 3 && rm == 4) {
		if (len < 2)
			return 0;
		if (mod == 0 && (c[1] & 7) == 5)
			n += 4; /* no base: disp32 */
		n++;
	}
	if (mod == 1)
		n += 1;
	else if (mod == 2 || (mod == 0 && rm == 5))
		n += 4;
	return n <= len ? n : 0;
}

/*
 * Decode the instruction at c, of the few kinds prologues begin with: its length in *n, what
 * it writes in *writes (register bits). Anything else is INSN_UNKNOWN.
 */
static enum insn_kind insn_decode(const __u8 *c, size_t len, size_t *n, __u32 *writes)
{
	size_t p = 0, m, imm = 0;
	__u8 rex = 0, op, reg, rm;
	bool seg = false, store = false, to_rm = false, to_reg = false;

	*writes = 0;
	if (len >= 4 && c[0] == 0xf3 && c[1] == 0x0f && c[2] == 0x1e && c[3] == 0xfa) {
		*n = 4; /* endbr64 */
		return INSN_PLAIN;
	}
	if (len >= 1 && (c[0] == 0x64 || c[0] == 0x65)) {
		seg = true; /* %fs:, %gs: (thread-local loads) */
		p++;
	}
	if (p < len && (c[p] & 0xf0) == 0x40)
		rex = c[p++];
	if (p >= len)
		return INSN_UNKNOWN;
	op = c[p++];
	if (!seg && (rex == 0 || rex == 0x41) && op >= 0x50 && op <= 0x57) {
		*n = p;
		return INSN_EMULATED; /* push */
	}
	if (!seg && !rex) {
		__s64 to;

		if (rel_branch(c, len, n, &to))
			return INSN_EMULATED;
		if (op == 0x90) {
			*n = p;
			return INSN_EMULATED;
		}
	}
	if (op >= 0xb8 && op <= 0xbf && !seg) {
		/* mov $imm, %reg */
		*n = p + (rex & 8 ? 8 : 4);
		*writes = REG_BIT((op & 7) | (rex & 1 ? 8 : 0));
		return *n <= len ? INSN_PLAIN : INSN_UNKNOWN;
	}
	if ((op == 0x3c || op == 0xa8 || op == 0x3d || op == 0xa9) && !seg) {
		*n = p + (op == 0x3c || op == 0xa8 ? 1 : 4); /* cmp, test with %al/%eax */
		return *n <= len ? INSN_PLAIN : INSN_UNKNOWN;
	}
	if ((op == 0x05 || op == 0x0d || op == 0x25 || op == 0x2d || op == 0x35) && !seg) {
		*n = p + 4; /* add, or, and, sub, xor $imm32 to %eax/%rax */
		*writes = REG_BIT(0);
		return *n <= len ? INSN_PLAIN : INSN_UNKNOWN;
	}
	if (op == 0x0f) {
		if (p >= len)
			return INSN_UNKNOWN;
		op = c[p++];
		if (op == 0xb6 || op == 0xb7 || op == 0xbe || op == 0xbf) {
			to_reg = true; /* movzx, movsx r/m, %r */
			goto operand;
		}
		/* nopl with an operand (multi-byte nop) */
		if (op != 0x1f || p >= len || ((c[p] >> 3) & 7) || !(m = modrm_len(c + p, len - p)))
			return INSN_UNKNOWN;
		*n = p + m;
		return INSN_PLAIN;
	}
	switch (op) {
	case 0x89: /* mov %r, r/m */
	case 0x01: /* add, or, and, sub, xor %r, r/m */
	case 0x09:
	case 0x21:
	case 0x29:
	case 0x31:
		to_rm = true;
		break;
	case 0x8b: /* mov r/m, %r */
	case 0x03: /* add, or, and, sub, xor r/m, %r */
	case 0x0b:
	case 0x23:
	case 0x2b:
	case 0x33:
		to_reg = true;
		break;
	case 0x8d: /* lea */
		if (seg)
			return INSN_UNKNOWN;
		to_reg = true;
		break;
	case 0x84: /* test */
	case 0x85:
	case 0x38: /* cmp */
	case 0x39:
	case 0x3a:
	case 0x3b:
		break;
	case 0x80: /* group 1 with imm8 (byte), imm32, imm8: cmp (/7) writes nothing */
	case 0x81:
	case 0x83:
		imm = op == 0x81 ? 4 : 1;
		to_rm = p < len && ((c[p] >> 3) & 7) != 7;
		break;
	case 0xf6: /* test $imm, r/m (/0 only: the rest of the group writes) */
	case 0xf7:
		if (p >= len || ((c[p] >> 3) & 7))
			return INSN_UNKNOWN;
		imm = op == 0xf6 ? 1 : 4;
		break;
	case 0xc1: /* shifts by imm8, by 1 */
		imm = 1;
		to_rm = true;
		break;
	case 0xd1:
		to_rm = true;
		break;
	default:
		return INSN_UNKNOWN;
	}
operand:
	if (p >= len || !(m = modrm_len(c + p, len - p)))
		return INSN_UNKNOWN;
	reg = ((c[p] >> 3) & 7) | (rex & 4 ? 8 : 0);
	rm = (c[p] & 7) | (rex & 1 ? 8 : 0);
	if (to_rm && (c[p] >> 6) != 3)
		store = true;
	if (op == 0x8d && (c[p] >> 6) == 3)
		return INSN_UNKNOWN;
	*n = p + m + imm;
	if (store || *n > len)
		return INSN_UNKNOWN; /* a store might be to the stack we read */
	if (to_rm)
		*writes = REG_BIT(rm);
	else if (to_reg)
		*writes = REG_BIT(reg);
	return INSN_PLAIN;
}

/*
 * Bytes to skip from a symbol's first instruction to the first one the kernel emulates instead
 * of single-stepping (~0.7 us against ~9.5 us per hit):
 * - free beginning "test %rdi,%rdi; je <return>" (glibc's): the push that every non-NULL free
 *   falls through to with %rdi intact, so a probe there sees every free we record and no
 *   free(NULL);
 * - otherwise the first emulated instruction after straight-line instructions that leave the
 *   stack pointer and the arguments the programs read as they are at the call (jemalloc's and
 *   tcmalloc's fast paths begin "cmp $N,%rdi; ja" or "mov x(%rip),%rax; test; jne"): the
 *   probe there sees the call exactly as its entry would.
 * A branch from further in to a skipped instruction or to the probe would count a call twice:
 * attach__branches_into() rules that out with the bytes of the code segment.
 */
int attach__probe_skip(const __u8 *code, size_t len, __u32 allocator)
{
	/* the stack pointer and rbp: the stack walks begin with them */
	__u32 keep = args_read(allocator) | REG_BIT(REG_RSP) | REG_BIT(REG_RBP), writes;
	size_t n, off = 0;

	if (allocator == ASZ_FREE && len >= 5 && code[0] == 0x48 && code[1] == 0x85 &&
	    code[2] == 0xff) {
		/* test %rdi,%rdi; je rel8 or rel32; push */
		n = code[3] == 0x74 ? 5 : len >= 9 && code[3] == 0x0f && code[4] == 0x84 ? 9 : 0;
		if (n && is_push(code + n, len - n))
			return (int)n;
	}
	for (int i = 0; i < 16 && off < len; i++) {
		switch (insn_decode(code + off, len - off, &n, &writes)) {
		case INSN_EMULATED:
			return (int)off;
		case INSN_PLAIN:
			if (writes & keep)
				return 0;
			off += n;
			break;
		default:
			return 0;
		}
	}
	return 0;
}

__u64 attach__insn_starts(const __u8 *code, size_t len, size_t skip)
{
	__u64 starts = 0;
	size_t off = 0, n;
	__u32 writes;

	if (skip >= 64)
		return ~0ull;
	/* the instructions attach__probe_skip went past: all decoded by insn_decode */
	while (off < skip) {
		if (insn_decode(code + off, len - off, &n, &writes) == INSN_UNKNOWN)
			return ~0ull << 1; /* cannot be: then any offset may be a start */
		off += n;
		starts |= 1ull << (off < 64 ? off : 63);
	}
	return starts;
}

__u64 attach__insn_inside(const __u8 *code, size_t len)
{
	__u64 inside = 0;
	size_t off = 0, n;
	__u32 writes;

	/* straight on while the instructions are known; past a jmp may be padding, or data */
	while (off < 64 && insn_decode(code + off, len - off, &n, &writes) != INSN_UNKNOWN) {
		for (size_t k = off + 1; k < off + n && k < 64; k++)
			inside |= 1ull << k;
		if (code[off] == 0xeb || code[off] == 0xe9)
			break;
		off += n;
	}
	return inside;
}

bool attach__branches_into(const __u8 *code, size_t len, size_t entry, __u64 starts,
			   __u64 inside)
{
	for (size_t i = 0; i < len; i++) {
		size_t n;
		__s64 to, k;

		/* read at every byte but those known to be inside an instruction: yes may be wrong */
		if (i >= entry && i - entry < 64 && (inside >> (i - entry) & 1))
			continue;
		if (!rel_branch(code + i, len - i, &n, &to))
			continue;
		k = (__s64)i + to - (__s64)entry;
		if (k > 0 && k < 64 && (starts >> k & 1))
			return true;
	}
	return false;
}

/* Look the wanted names up in one symbol table; found[] keeps the first definition of each. */
static void scan_symtab(Elf *elf, Elf_Scn *scn, GElf_Shdr *sh, __u64 *found)
{
	Elf_Data *data = elf_getdata(scn, NULL);
	size_t i, j, n;
	GElf_Sym sym;

	if (!data || !sh->sh_entsize)
		return;
	n = sh->sh_size / sh->sh_entsize;
	for (i = 0; i < n; i++) {
		const char *name;
		int type;

		if (!gelf_getsym(data, i, &sym) || sym.st_shndx == SHN_UNDEF || !sym.st_value)
			continue;
		type = GELF_ST_TYPE(sym.st_info);
		if (type != STT_FUNC && type != STT_GNU_IFUNC)
			continue;
		name = elf_strptr(elf, sh->sh_link, sym.st_name);
		if (!name)
			continue;
		for (j = 0; j < NR_WANTED; j++)
			if (!found[j] && strcmp(name, wanted[j].name) == 0)
				found[j] = sym.st_value;
	}
}

/* The executable segment of a file that probes went into, read once. */
struct text {
	__u8 *buf;
	__u64 off, len; /* its file offset and size */
};

/*
 * Might a branch anywhere in the executable segment holding file offset off go to one of the
 * instruction starts past off? (Anywhere: a function's cold part, or another function, may
 * jump back into it.) Unreadable code says yes.
 */
static bool branch_back(int fd, Elf *elf, struct text *t, __u64 off, __u64 starts,
			__u64 inside)
{
	size_t n = 0, i;
	GElf_Phdr ph;

	if (!t->buf || off < t->off || off >= t->off + t->len) {
		free(t->buf);
		*t = (struct text){};
		if (elf_getphdrnum(elf, &n))
			return true;
		for (i = 0; i < n; i++)
			if (gelf_getphdr(elf, i, &ph) && ph.p_type == PT_LOAD && (ph.p_flags & PF_X) &&
			    off >= ph.p_offset && off < ph.p_offset + ph.p_filesz)
				break;
		if (i == n || ph.p_filesz > 1u << 28 || !(t->buf = malloc(ph.p_filesz)))
			return true;
		if (pread(fd, t->buf, ph.p_filesz, ph.p_offset) != (ssize_t)ph.p_filesz) {
			free(t->buf);
			t->buf = NULL;
			return true;
		}
		t->off = ph.p_offset;
		t->len = ph.p_filesz;
	}
	return attach__branches_into(t->buf, t->len, off - t->off, starts, inside);
}

int attach__find_syms(const char *path, struct alloc_syms *out)
{
	__u64 found[NR_WANTED] = {};
	struct text text = {};
	__u8 code[64];
	ssize_t got;
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	Elf *elf = NULL;
	int fd, err = 0, i, j;

	out->nr = 0;
	elf_version(EV_CURRENT);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!elf || elf_kind(elf) != ELF_K_ELF) {
		err = -ENOEXEC;
		goto cleanup;
	}
	/* .dynsym first: what the dynamic linker binds; .symtab for static programs */
	while ((scn = elf_nextscn(elf, scn)))
		if (gelf_getshdr(scn, &sh) && sh.sh_type == SHT_DYNSYM)
			scan_symtab(elf, scn, &sh, found);
	while ((scn = elf_nextscn(elf, scn)))
		if (gelf_getshdr(scn, &sh) && sh.sh_type == SHT_SYMTAB)
			scan_symtab(elf, scn, &sh, found);
	if (!found[0] || !found[FREE_INDEX]) {
		err = -ENOENT;
		goto cleanup;
	}
	/* a thread's teardown: the malloc cache's flush where it is a symbol, else its first step */
	if (found[FREERES_INDEX])
		found[FREERES_INDEX + 1] = 0;
	for (i = 0; i < (int)NR_WANTED; i++) {
		struct alloc_sym *s;
		bool dup = false;

		if (!found[i])
			continue;
		for (j = 0; j < out->nr; j++)
			dup |= out->syms[j].vaddr == found[i];
		if (dup) {
			dlog("%s: %s is an alias, probed once\n", path, wanted[i].name);
			continue;
		}
		s = &out->syms[out->nr];
		s->name = wanted[i].name;
		s->allocator = wanted[i].allocator;
		s->vaddr = found[i];
		err = vaddr_to_offset(elf, found[i], &s->offset);
		if (err)
			goto cleanup;
		got = pread(fd, code, sizeof(code), s->offset);
		if (got > 0) {
			s->skip = attach__probe_skip(code, got, s->allocator);
			if (s->skip && branch_back(fd, elf, &text, s->offset,
						   attach__insn_starts(code, got, s->skip),
						   attach__insn_inside(code, got))) {
				dlog("%s: %s probed at its entry (+%d might be a branch target)\n",
				     path, s->name, s->skip);
				s->skip = 0;
			}
			s->offset += s->skip;
			if (s->skip)
				dlog("%s: %s probed at +%d (first emulated instruction)\n", path,
				     s->name, s->skip);
		}
		out->nr++;
	}
cleanup:
	free(text.buf);
	if (elf)
		elf_end(elf);
	close(fd);
	return err;
}

int attach__complement(const char *libc, const struct alloc_syms *syms, struct alloc_syms *out)
{
	struct alloc_syms all;
	int err, i, j, n = 0;

	out->nr = 0;
	err = attach__find_syms(libc, &all);
	if (err)
		return err;
	for (i = 0; i < all.nr; i++) {
		bool have = all.syms[i].allocator == ASZ_FREE || all.syms[i].allocator == ASZ_DELETE;

		for (j = 0; j < syms->nr && !have; j++)
			have = syms->syms[j].allocator == all.syms[i].allocator;
		if (!have)
			out->syms[n++] = all.syms[i];
	}
	out->nr = n;
	return 0;
}

/* The uprobe_multi member of union bpf_attr's link_create, which the 6.1 uapi header lacks. */
struct link_create_uprobe_multi {
	__u32 prog_fd;
	__u32 target_fd;
	__u32 attach_type;
	__u32 flags;
	__u64 path;
	__u64 offsets;
	__u64 ref_ctr_offsets;
	__u64 cookies;
	__u32 cnt;
	__u32 um_flags;
	__u32 pid;
	__u32 pad;
};

int attach__uprobe_multi(int prog_fd, __u32 attach_type, bool retprobe, const char *path,
			 const __u64 *offsets, const __u64 *cookies, __u32 cnt, pid_t pid)
{
	union {
		union bpf_attr attr;
		struct link_create_uprobe_multi um;
		char bytes[128];
	} a;
	int fd;

	memset(&a, 0, sizeof(a));
	a.um.prog_fd = prog_fd;
	a.um.attach_type = attach_type;
	a.um.path = (__u64)(unsigned long)path;
	a.um.offsets = (__u64)(unsigned long)offsets;
	a.um.cookies = (__u64)(unsigned long)cookies;
	a.um.cnt = cnt;
	a.um.um_flags = retprobe ? BPF_F_UPROBE_MULTI_RETURN_FLAG : 0;
	a.um.pid = pid;
	fd = syscall(__NR_bpf, BPF_LINK_CREATE, &a, sizeof(a));
	return fd < 0 ? -errno : fd;
}
