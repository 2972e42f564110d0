// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
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

/*
 * Bytes to skip from a symbol's first instruction to the first one the kernel emulates instead
 * of single-stepping (~0.7 us against ~9.5 us per hit). Only free moves: it begins with
 * "test %rdi,%rdi; je <return>", and every non-NULL free falls through to a push with %rdi
 * intact, so a probe there sees every free we record. Allocation entries stay put: their stack
 * walk needs the stack pointer as it is at the call.
 */
int attach__probe_skip(const __u8 *code, size_t len, __u32 allocator)
{
	size_t n;

	if (allocator != ASZ_FREE || len < 5)
		return 0;
	/* test %rdi,%rdi */
	if (code[0] != 0x48 || code[1] != 0x85 || code[2] != 0xff)
		return 0;
	if (code[3] == 0x74) /* je rel8 */
		n = 5;
	else if (len >= 9 && code[3] == 0x0f && code[4] == 0x84) /* je rel32 */
		n = 9;
	else
		return 0;
	return is_push(code + n, len - n) ? (int)n : 0;
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

int attach__find_syms(const char *path, struct alloc_syms *out)
{
	__u64 found[NR_WANTED] = {};
	__u8 code[16];
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
		if (pread(fd, code, sizeof(code), s->offset) == (ssize_t)sizeof(code)) {
			s->skip = attach__probe_skip(code, sizeof(code), s->allocator);
			s->offset += s->skip;
			if (s->skip)
				dlog("%s: %s probed at +%d (first emulated instruction)\n", path,
				     s->name, s->skip);
		}
		out->nr++;
	}
cleanup:
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
