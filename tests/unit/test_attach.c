// SPDX-License-Identifier: MIT
/* Unit tests: attach.c (allocator symbols, probe placement). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include "attach.h"
#include "target.h"

Test(attach, free_skips_null_test_rel32)
{
	/* glibc 2.36: test %rdi,%rdi; je rel32; push %rbp */
	const __u8 code[] = {0x48, 0x85, 0xff, 0x0f, 0x84, 0xbf, 0x00, 0x00, 0x00, 0x55, 0x48};

	cr_assert_eq(attach__probe_skip(code, sizeof(code), ASZ_FREE), 9);
}

Test(attach, free_skips_null_test_rel8_push_r12)
{
	const __u8 code[] = {0x48, 0x85, 0xff, 0x74, 0x10, 0x41, 0x54, 0x90};

	cr_assert_eq(attach__probe_skip(code, sizeof(code), ASZ_FREE), 5);
}

Test(attach, free_without_push_probes_its_je)
{
	/* test %rdi,%rdi; je; lea: the je is on every path and emulated (free(NULL) included) */
	const __u8 code[] = {0x48, 0x85, 0xff, 0x74, 0x10, 0x48, 0x8d, 0x77, 0xf0};

	cr_assert_eq(attach__probe_skip(code, sizeof(code), ASZ_FREE), 3);
}

Test(attach, entries_move_past_plain_instructions_only)
{
	const __u8 endbr[] = {0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48, 0x89, 0xe5, 0x90};
	const __u8 push_first[] = {0x41, 0x54, 0x55, 0x53};
	/* mov %rsi,%rdi; push %rbx: malloc's size is gone by the push */
	const __u8 arg_written[] = {0x48, 0x89, 0xf7, 0x53};
	/* sub $8,%rsp; call: the return address is no longer at the stack pointer */
	const __u8 rsp_written[] = {0x48, 0x83, 0xec, 0x08, 0xe8, 0, 0, 0, 0};
	/* mov %rdi,(%rsp); push: a store (it might be to what we read) */
	const __u8 store[] = {0x48, 0x89, 0x3c, 0x24, 0x53};
	/* mul %rsi (not decoded here); push */
	const __u8 unknown[] = {0x48, 0xf7, 0xe6, 0x53};
	/* mov %rdi,%r8; push: r8 is nothing malloc's programs read, everything for others */
	const __u8 r8_written[] = {0x49, 0x89, 0xf8, 0x53};

	cr_assert_eq(attach__probe_skip(endbr, sizeof(endbr), ASZ_FREE), 4);
	cr_assert_eq(attach__probe_skip(push_first, sizeof(push_first), ASZ_MALLOC), 0);
	cr_assert_eq(attach__probe_skip(arg_written, sizeof(arg_written), ASZ_MALLOC), 0);
	cr_assert_eq(attach__probe_skip(arg_written, sizeof(arg_written), ASZ_FREE), 0);
	cr_assert_eq(attach__probe_skip(rsp_written, sizeof(rsp_written), ASZ_MALLOC), 0);
	cr_assert_eq(attach__probe_skip(store, sizeof(store), ASZ_MALLOC), 0);
	cr_assert_eq(attach__probe_skip(unknown, sizeof(unknown), ASZ_MALLOC), 0);
	cr_assert_eq(attach__probe_skip(r8_written, sizeof(r8_written), ASZ_MEMALIGN), 3);
	cr_assert_eq(attach__probe_skip(r8_written, sizeof(r8_written), ASZ_MMAP), 0);
	/* cut short: nothing emulated within what was read */
	cr_assert_eq(attach__probe_skip(rsp_written, 2, ASZ_MALLOC), 0);
}

/* The first bytes of Debian 12's jemalloc 5.3.0 and tcmalloc 2.10 entry points. */
Test(attach, jemalloc_and_tcmalloc_fast_paths)
{
	/* jemalloc malloc: cmp $0x1000,%rdi; ja */
	const __u8 je_malloc[] = {0x48, 0x81, 0xff, 0x00, 0x10, 0x00, 0x00, 0x0f, 0x87, 0x93, 0, 0, 0};
	/* jemalloc free: mov, mov x(%rip), mov, shr, and, and, add %fs:0, add, cmp x(%rax); jne */
	const __u8 je_free[] = {0x48, 0x89, 0xf8, 0x48, 0x8b, 0x15, 0x0e, 0x53, 0x0a, 0x00, 0x48,
				0x89, 0xf9, 0x48, 0xc1, 0xe8, 0x1a, 0x48, 0x81, 0xe1, 0x00, 0x00,
				0x00, 0xc0, 0x25, 0xf0, 0x00, 0x00, 0x00, 0x64, 0x48, 0x03, 0x04,
				0x25, 0x00, 0x00, 0x00, 0x00, 0x48, 0x01, 0xd0, 0x48, 0x3b, 0x88,
				0xb0, 0x01, 0x00, 0x00, 0x0f, 0x85, 0x8a, 0x00, 0x00, 0x00};
	/* tcmalloc malloc: mov x(%rip),%rax; test %rax,%rax; jne */
	const __u8 tc_malloc[] = {0x48, 0x8b, 0x05, 0x59, 0xab, 0x00, 0x00, 0x48,
				  0x85, 0xc0, 0x75, 0x75, 0x48, 0x8b, 0x05, 0x05};
	/* tcmalloc posix_memalign: lea -1(%rsi),%rax; or $7,%rax; test %rsi,%rax; jne */
	const __u8 tc_posix[] = {0x48, 0x8d, 0x46, 0xff, 0x48, 0x83, 0xc8, 0x07,
				 0x48, 0x85, 0xf0, 0x75, 0x2b, 0x53, 0xb8, 0x16};
	/* tcmalloc memalign: mov %rdi,%r8; cmp $0x2000,%rdi; ja */
	const __u8 tc_memalign[] = {0x49, 0x89, 0xf8, 0x48, 0x81, 0xff, 0x00, 0x20,
				    0x00, 0x00, 0x0f, 0x87, 0xe8, 0x00, 0x00, 0x00};

	cr_assert_eq(attach__probe_skip(je_malloc, sizeof(je_malloc), ASZ_MALLOC), 7);
	cr_assert_eq(attach__probe_skip(je_malloc, sizeof(je_malloc), ASZ_NEW), 7);
	cr_assert_eq(attach__probe_skip(je_free, sizeof(je_free), ASZ_FREE), 48);
	/* the same code as a realloc would lose its size (%rsi is not written, %rdx is) */
	cr_assert_eq(attach__probe_skip(je_free, sizeof(je_free), ASZ_POSIX_MEMALIGN), 0);
	cr_assert_eq(attach__probe_skip(tc_malloc, sizeof(tc_malloc), ASZ_MALLOC), 10);
	cr_assert_eq(attach__probe_skip(tc_malloc, sizeof(tc_malloc), ASZ_FREE), 10);
	cr_assert_eq(attach__probe_skip(tc_posix, sizeof(tc_posix), ASZ_POSIX_MEMALIGN), 11);
	cr_assert_eq(attach__probe_skip(tc_memalign, sizeof(tc_memalign), ASZ_MEMALIGN), 10);
}

/* Debian 12's glibc 2.36 mmap64: the flags' move and the offset's test, then jne (emulated). */
Test(attach, glibc_mmap_past_its_offset_test)
{
	/* mov %ecx,%r10d; test $0xfff,%r9d; jne; mov $9,%eax; syscall */
	const __u8 mmap64[] = {0x41, 0x89, 0xca, 0x41, 0xf7, 0xc1, 0xff, 0x0f, 0x00, 0x00,
			       0x75, 0x14, 0xb8, 0x09, 0x00, 0x00, 0x00, 0x0f, 0x05};
	/* test $1,%dil (f6 /0, imm8); jne */
	const __u8 test8[] = {0x40, 0xf6, 0xc7, 0x01, 0x75, 0x02};
	/* neg %rdi (f7 /3) writes its operand: not skipped */
	const __u8 neg[] = {0x48, 0xf7, 0xdf, 0x75, 0x02};
	/* munmap: mov $0xb,%eax; syscall (not emulated): at its entry */
	const __u8 munmap[] = {0xb8, 0x0b, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x3d};

	cr_assert_eq(attach__probe_skip(mmap64, sizeof(mmap64), ASZ_MMAP), 10);
	cr_assert_eq(attach__probe_skip(test8, sizeof(test8), ASZ_MALLOC), 4);
	cr_assert_eq(attach__probe_skip(neg, sizeof(neg), ASZ_MALLOC), 0);
	cr_assert_eq(attach__probe_skip(neg, sizeof(neg), ASZ_CALLOC), 0);
	cr_assert_eq(attach__probe_skip(munmap, sizeof(munmap), ASZ_MUNMAP), 0);
}

Test(attach, branches_back_into_the_skipped_bytes)
{
	/* cmp $0x1000,%rdi; ja +2; nop; nop; then a jmp rel8 back to +7 (the ja) */
	const __u8 back8[] = {0x48, 0x81, 0xff, 0x00, 0x10, 0x00, 0x00, 0x77, 0x02,
			      0x90, 0x90, 0xeb, 0xfa};
	/* the same with a jne rel32 back to +7 */
	const __u8 back32[] = {0x48, 0x81, 0xff, 0x00, 0x10, 0x00, 0x00, 0x77, 0x02,
			       0x90, 0x90, 0x0f, 0x85, 0xf6, 0xff, 0xff, 0xff};
	/* a jne rel32 to +3, inside the cmp: no code branches there (bytes that read so) */
	const __u8 mid32[] = {0x48, 0x81, 0xff, 0x00, 0x10, 0x00, 0x00, 0x77, 0x02,
			      0x90, 0x90, 0x0f, 0x85, 0xf2, 0xff, 0xff, 0xff};
	/* branches to the entry itself and forward are fine */
	const __u8 to_entry[] = {0x48, 0x81, 0xff, 0x00, 0x10, 0x00, 0x00, 0x77, 0x02,
				 0x90, 0x90, 0xeb, 0xf3};
	/* from before the entry: a call to the ja of a function starting 5 bytes after it */
	const __u8 before[] = {0xe8, 0x07, 0x00, 0x00, 0x00, 0x48, 0x81, 0xff, 0x00, 0x10, 0x00,
			       0x00, 0x77, 0x02};
	/*
	 * glibc 2.36's valloc's tail and pvalloc: the mov's 78 18 read as "js +0x18" lands inside
	 * pvalloc's cmpb, which no branch can: pvalloc goes past it.
	 */
	const __u8 pvalloc[] = {0x48, 0x8b, 0x78, 0x18, 0xe9, 0xdf, 0xf5, 0xff, 0xff, 0x0f, 0x1f,
				0x80, 0x00, 0x00, 0x00, 0x00, 0xe8, 0x73, 0xbc, 0xff, 0xff, 0xeb,
				0xde, 0x90, 0x80, 0x3d, 0x01, 0x0e, 0x14, 0x00, 0x00, 0x53};
	__u64 cmp_ja = attach__insn_starts(back8, sizeof(back8), 7);

	cr_assert_eq(cmp_ja, 1ull << 7);
	cr_assert_eq(attach__insn_starts(pvalloc + 24, 8, 7), 1ull << 7);
	/* free's test; je rel32: starts at 3 and 9 */
	cr_assert_eq(attach__insn_starts((const __u8[]){0x48, 0x85, 0xff, 0x0f, 0x84, 0xbf, 0, 0, 0,
							0x55}, 10, 9),
		     1ull << 3 | 1ull << 9);
	cr_assert(attach__branches_into(back8, sizeof(back8), 0, cmp_ja, 0));
	cr_assert_not(attach__branches_into(back8, sizeof(back8), 0, 1ull << 6, 0));
	cr_assert(attach__branches_into(back32, sizeof(back32), 0, cmp_ja, 0));
	cr_assert_not(attach__branches_into(mid32, sizeof(mid32), 0, cmp_ja, 0));
	cr_assert(attach__branches_into(mid32, sizeof(mid32), 0, ~0ull << 1, 0));
	cr_assert_not(attach__branches_into(to_entry, sizeof(to_entry), 0, cmp_ja, 0));
	cr_assert(attach__branches_into(before, sizeof(before), 5, cmp_ja, 0));
	cr_assert_not(attach__branches_into(before, sizeof(before), 5, 1ull << 2, 0));
	cr_assert_not(attach__branches_into(pvalloc, sizeof(pvalloc), 24, cmp_ja, 0));
	cr_assert(attach__branches_into(pvalloc, sizeof(pvalloc), 24, 1ull << 4, 0));
}

/*
 * jemalloc 5.3's operator new(size_t, nothrow_t): cmp $0x1000,%rdi; ja; lea x(%rip),%rdx; lea;
 * mov x(%rip),%rcx; shr; movzbl; lea x(%rip),%rax, whose 72 db reads as "jb" back to the ja.
 * Those bytes are inside a known instruction: the probe goes past the cmp.
 */
Test(attach, bytes_inside_known_instructions_are_no_branches)
{
	const __u8 nothrow_new[] = {0x48, 0x81, 0xff, 0x00, 0x10, 0x00, 0x00, 0x0f, 0x87, 0x93,
				    0x00, 0x00, 0x00, 0x48, 0x8d, 0x15, 0x4c, 0xd9, 0x23, 0x00,
				    0x48, 0x8d, 0x47, 0x07, 0x48, 0x8b, 0x0d, 0x39, 0xf0, 0x01,
				    0x00, 0x48, 0xc1, 0xe8, 0x03, 0x0f, 0xb6, 0x34, 0x02, 0x48,
				    0x8d, 0x05, 0x72, 0xdb, 0x23, 0x00, 0x64, 0x48, 0x8b, 0x91,
				    0x38, 0x03, 0x00, 0x00};
	/* the same bytes behind a jmp: not known to be instructions, read as a branch */
	const __u8 after_jmp[] = {0x48, 0x81, 0xff, 0x00, 0x10, 0x00, 0x00, 0xeb, 0x02, 0x90,
				  0x90, 0x48, 0x8d, 0x05, 0x72, 0xf7};
	__u64 starts = attach__insn_starts(nothrow_new, sizeof(nothrow_new), 7);
	__u64 inside = attach__insn_inside(nothrow_new, sizeof(nothrow_new));

	cr_assert_eq(attach__probe_skip(nothrow_new, sizeof(nothrow_new), ASZ_NEW), 7);
	cr_assert_eq(starts, 1ull << 7);
	/* every byte up to the lea's end but the eight instructions' first is inside */
	cr_assert_eq(inside & ((1ull << 46) - 1),
		     ((1ull << 46) - 1) & ~(1ull << 0 | 1ull << 7 | 1ull << 13 | 1ull << 20 |
					    1ull << 24 | 1ull << 31 | 1ull << 35 | 1ull << 39),
		     "%#llx", (unsigned long long)inside);
	cr_assert(attach__branches_into(nothrow_new, sizeof(nothrow_new), 0, starts, 0));
	cr_assert_not(attach__branches_into(nothrow_new, sizeof(nothrow_new), 0, starts, inside));
	inside = attach__insn_inside(after_jmp, sizeof(after_jmp));
	cr_assert_eq(inside, 0x17e, "%#llx", (unsigned long long)inside);
	cr_assert(attach__branches_into(after_jmp, sizeof(after_jmp), 0, 1ull << 7, inside));
}

/* jemalloc's rallocx: xor %ecx,%ecx; jmp (rcx is no argument of rallocx): probed at the jmp */
Test(attach, jemalloc_rallocx_past_its_xor)
{
	const __u8 rallocx[] = {0x31, 0xc9, 0xe9, 0xe9, 0x1c, 0xff, 0xff};
	/* movzbl x(%rip),%eax; test %al,%al; jne */
	const __u8 movzx[] = {0x0f, 0xb6, 0x05, 0x10, 0x00, 0x00, 0x00, 0x84, 0xc0, 0x75, 0x02};

	cr_assert_eq(attach__probe_skip(rallocx, sizeof(rallocx), ASZ_RALLOCX), 2);
	cr_assert_eq(attach__probe_skip(rallocx, sizeof(rallocx), ASZ_XALLOCX), 2); /* rcx: flags */
	cr_assert_eq(attach__probe_skip(rallocx, sizeof(rallocx), ASZ_MMAP), 0); /* rcx: flags, read */
	cr_assert_eq(attach__probe_skip(movzx, sizeof(movzx), ASZ_MALLOC), 9);
	/* movzbl into %edi writes the size */
	cr_assert_eq(attach__probe_skip((const __u8[]){0x0f, 0xb6, 0x3d, 0x10, 0x00, 0x00, 0x00,
						       0x75, 0x02}, 9, ASZ_MALLOC), 0);
}

Test(attach, libc_symbols_one_per_address)
{
	struct alloc_syms syms;
	int i, j, frees = 0;

	cr_assert_eq(attach__find_syms("/lib/x86_64-linux-gnu/libc.so.6", &syms), 0);
	cr_assert_eq(syms.nr, 12, "malloc calloc realloc memalign posix_memalign valloc pvalloc free "
				  "mmap mremap munmap __call_tls_dtors");
	for (i = 0; i < syms.nr; i++) {
		for (j = i + 1; j < syms.nr; j++)
			cr_assert_neq(syms.syms[i].vaddr, syms.syms[j].vaddr);
		if (syms.syms[i].allocator == ASZ_FREE) {
			frees++;
			cr_assert_eq(syms.syms[i].skip, 9);
		} else if (syms.syms[i].allocator == ASZ_MMAP) {
			cr_assert_eq(syms.syms[i].skip, 10); /* past mov %ecx,%r10d; test $0xfff,%r9d */
		} else if (syms.syms[i].allocator == ASZ_MEMALIGN ||
			   syms.syms[i].allocator == ASZ_POSIX_MEMALIGN ||
			   syms.syms[i].allocator == ASZ_VALLOC ||
			   syms.syms[i].allocator == ASZ_PVALLOC) {
			cr_assert_eq(syms.syms[i].skip, 7, "%s: past cmpb $0,x(%%rip)",
				     syms.syms[i].name);
		} else {
			cr_assert_eq(syms.syms[i].skip, 0, "%s moved", syms.syms[i].name);
		}
	}
	cr_assert_eq(frees, 1);
}

/* Debian 12's glibc 2.36 memalign family: a flag's byte compared, then a jcc or a push. */
Test(attach, glibc_memalign_family_past_its_flag_test)
{
	/* memalign: cmpb $0,x(%rip); je; jmp */
	const __u8 memalign[] = {0x80, 0x3d, 0x71, 0x0e, 0x14, 0x00, 0x00, 0x74, 0x07,
				 0xe9, 0x32, 0xf6, 0xff, 0xff};
	/* posix_memalign: cmpb $0,x(%rip); push %r12 */
	const __u8 posix_memalign[] = {0x80, 0x3d, 0x01, 0x02, 0x14, 0x00, 0x00, 0x41, 0x54};
	/* valloc: cmpb $0,x(%rip); push %rbx */
	const __u8 valloc[] = {0x80, 0x3d, 0x31, 0x0e, 0x14, 0x00, 0x00, 0x53};
	/* orb $1,x(%rip) (80 /1) stores: not skipped */
	const __u8 orb[] = {0x80, 0x0d, 0x31, 0x0e, 0x14, 0x00, 0x01, 0x53};
	/* cmpb $7,%dil (register operand); push */
	const __u8 cmp_reg[] = {0x40, 0x80, 0xff, 0x07, 0x53};

	cr_assert_eq(attach__probe_skip(memalign, sizeof(memalign), ASZ_MEMALIGN), 7);
	cr_assert_eq(attach__probe_skip(posix_memalign, sizeof(posix_memalign),
					ASZ_POSIX_MEMALIGN), 7);
	cr_assert_eq(attach__probe_skip(valloc, sizeof(valloc), ASZ_VALLOC), 7);
	cr_assert_eq(attach__probe_skip(orb, sizeof(orb), ASZ_VALLOC), 0);
	cr_assert_eq(attach__probe_skip(cmp_reg, sizeof(cmp_reg), ASZ_MALLOC), 4);
}

/* Is the instruction at c one the kernel emulates at a uprobe (push, jcc, jmp, call, nop)? */
static bool emulated(const __u8 *c)
{
	const __u8 *op = (c[0] == 0x41) ? c + 1 : c;

	return (op[0] >= 0x50 && op[0] <= 0x57) || (c[0] >= 0x70 && c[0] <= 0x7f) ||
	       c[0] == 0xeb || c[0] == 0xe8 || c[0] == 0xe9 || c[0] == 0x90 ||
	       (c[0] == 0x0f && c[1] >= 0x80 && c[1] <= 0x8f);
}

/* The probes of path not on an instruction the kernel emulates, as "name name ...". */
static void single_stepped(const char *path, char *out, size_t size)
{
	struct alloc_syms syms;
	size_t n = 0;
	__u8 code[16];
	int fd, i;

	cr_assert_eq(attach__find_syms(path, &syms), 0, "%s missing: make deps installs it", path);
	fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	out[0] = 0;
	for (i = 0; i < syms.nr; i++) {
		const struct alloc_sym *s = &syms.syms[i];

		cr_assert_eq(pread(fd, code, sizeof(code), s->offset), (ssize_t)sizeof(code));
		if (!emulated(code))
			n += snprintf(out + n, size - n, "%s%s", n ? " " : "", s->name);
		cr_assert_lt(n, size);
	}
	close(fd);
}

/*
 * This machine's allocators: every probe but those named sits on an instruction the kernel
 * emulates (a single-step is ~30 us a hit here). libc's mremap and munmap begin by moving the
 * stack pointer or with the syscall's number (both followed by tracepoints where there are
 * some). jemalloc's operator new(size_t, nothrow_t) (a lea's byte read as a jb back to its ja)
 * and rallocx (xor %ecx,%ecx first: rcx is no argument of it) were.
 */
Test(attach, allocator_probes_not_single_stepped)
{
	static const struct {
		const char *path, *stepped;
	} libs[] = {
		{"/lib/x86_64-linux-gnu/libc.so.6", "mremap munmap"},
		{"/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", ""},
		{"/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4", ""},
	};
	char got[2048];

	for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
		single_stepped(libs[i].path, got, sizeof(got));
		cr_expect_str_eq(got, libs[i].stepped, "%s: %s", libs[i].path, got);
	}
}

/* The probe of a symbol of path, or NULL. */
static const struct alloc_sym *sym_named(const struct alloc_syms *syms, const char *name)
{
	for (int i = 0; i < syms->nr; i++)
		if (strcmp(syms->syms[i].name, name) == 0)
			return &syms->syms[i];
	return NULL;
}

Test(attach, jemalloc_extended_api)
{
	static const struct {
		const char *name;
		__u32 allocator;
	} want[] = {
		{"mallocx", ASZ_MALLOCX}, {"rallocx", ASZ_RALLOCX}, {"xallocx", ASZ_XALLOCX},
		{"dallocx", ASZ_FREE},	  {"sdallocx", ASZ_FREE},
	};
	const char *je = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";
	struct alloc_syms syms;

	cr_assert_eq(attach__find_syms(je, &syms), 0, "%s missing: make deps installs it", je);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct alloc_sym *s = sym_named(&syms, want[i].name);

		cr_assert(s, "%s not probed", want[i].name);
		cr_assert_eq(s->allocator, want[i].allocator, "%s", want[i].name);
	}
	/* not allocations */
	cr_assert_null(sym_named(&syms, "nallocx"));
	cr_assert_null(sym_named(&syms, "sallocx"));
	cr_assert_null(sym_named(&syms, "malloc_usable_size"));
}

Test(attach, tcmalloc_function_of_its_own)
{
	const char *tc = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4";
	struct alloc_syms syms;
	const struct alloc_sym *s;

	cr_assert_eq(attach__find_syms(tc, &syms), 0, "%s missing: make deps installs it", tc);
	s = sym_named(&syms, "tc_malloc_skip_new_handler");
	cr_assert(s && s->allocator == ASZ_MALLOC);
	/* its other tc_* functions are aliases: their address is probed under the standard name */
	cr_assert(sym_named(&syms, "malloc") && !sym_named(&syms, "tc_malloc"));
}

/*
 * A static C++ program with thread_local destructors has both thread-teardown symbols: only
 * the malloc cache's flush is probed (from __call_tls_dtors on, a thread's frees of blocks
 * never seen stopped counting as unknown before its destructors ran).
 */
Test(attach, static_thread_teardown_probed_once)
{
	char dir[] = "/tmp/asz_attach_XXXXXX", src[64], prog[64], cmd[256];
	struct alloc_syms syms;
	int i, n = 0;
	FILE *f;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(src, sizeof(src), "%s/tl.cc", dir);
	snprintf(prog, sizeof(prog), "%s/tl", dir);
	f = fopen(src, "w");
	cr_assert_not_null(f);
	fputs("#include <string>\n#include <thread>\nthread_local std::string s;\n"
	      "int main() { std::thread t([] { s.assign(100, 'x'); }); t.join(); }\n", f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "g++ -O2 -static -o %s %s -lpthread", prog, src);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
	cr_assert_eq(attach__find_syms(prog, &syms), 0);
	for (i = 0; i < syms.nr; i++) {
		if (syms.syms[i].allocator != ASZ_THREAD_EXIT)
			continue;
		n++;
		cr_assert_str_eq(syms.syms[i].name, "__malloc_arena_thread_freeres");
	}
	cr_assert_eq(n, 1);
	unlink(src);
	unlink(prog);
	rmdir(dir);
}

Test(attach, not_an_allocator_library)
{
	struct alloc_syms syms;

	cr_assert_eq(attach__find_syms("/lib/x86_64-linux-gnu/libz.so.1", &syms), -ENOENT);
	cr_assert_lt(attach__find_syms("/nonexistent/lib.so", &syms), 0);
}

Test(target, container_id_from_cgroup_paths)
{
	char id[65];
	const char *hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	char path[256];

	snprintf(path, sizeof(path), "/system.slice/docker-%s.scope", hex);
	cr_assert_eq(target__container_id(path, id), 1);
	cr_assert_str_eq(id, hex);
	snprintf(path, sizeof(path), "/kubepods/burstable/pod1/cri-containerd-%s.scope", hex);
	cr_assert_eq(target__container_id(path, id), 1);
	cr_assert_str_eq(id, hex);
	cr_assert_eq(target__container_id("/user.slice/user-0.slice/session-1.scope", id), 0);
	/* 65 hex digits is not an id */
	snprintf(path, sizeof(path), "/x/%sa", hex);
	cr_assert_eq(target__container_id(path, id), 0);
}

static void write_script(const char *dir, const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	cr_assert_eq(chmod(path, 0755), 0);
}

/* #! lines read as the kernel reads them, through chains of scripts, and what is at fault */
Test(target, program_of_scripts)
{
	char dir[] = "/tmp/asz_target_XXXXXX", path[256], prog[256], line[300];

	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(target__program("/bin/true", prog, sizeof(prog)), 0);
	cr_assert_str_eq(prog, "/bin/true");
	/* blanks before the name, an argument after it */
	write_script(dir, "a", "#! \t/bin/true -x y\n");
	snprintf(path, sizeof(path), "%s/a", dir);
	cr_assert_eq(target__program(path, prog, sizeof(prog)), 0);
	cr_assert_str_eq(prog, "/bin/true");
	/* a script naming a script naming the program */
	snprintf(line, sizeof(line), "#!%s/a\n", dir);
	write_script(dir, "b", line);
	snprintf(path, sizeof(path), "%s/b", dir);
	cr_assert_eq(target__program(path, prog, sizeof(prog)), 0);
	cr_assert_str_eq(prog, "/bin/true");
	/* no name; a name longer than what the kernel reads */
	write_script(dir, "c", "#!  \n");
	snprintf(path, sizeof(path), "%s/c", dir);
	cr_assert_eq(target__program(path, prog, sizeof(prog)), -ENOEXEC);
	cr_assert_str_eq(prog, path);
	memset(line, 'x', sizeof(line) - 1);
	line[0] = '#', line[1] = '!', line[2] = '/', line[sizeof(line) - 1] = 0;
	write_script(dir, "d", line);
	snprintf(path, sizeof(path), "%s/d", dir);
	cr_assert_eq(target__program(path, prog, sizeof(prog)), -ENOEXEC);
	/* an interpreter missing: named */
	write_script(dir, "e", "#!/nonexistent/interp\n");
	snprintf(path, sizeof(path), "%s/e", dir);
	cr_assert_eq(target__program(path, prog, sizeof(prog)), -ENOENT);
	cr_assert_str_eq(prog, "/nonexistent/interp");
	/* a script naming itself */
	snprintf(path, sizeof(path), "%s/f", dir);
	snprintf(line, sizeof(line), "#!%s\n", path);
	write_script(dir, "f", line);
	cr_assert_eq(target__program(path, prog, sizeof(prog)), -ELOOP);
	for (const char *n = "abcdef"; *n; n++) {
		snprintf(path, sizeof(path), "%s/%c", dir, *n);
		unlink(path);
	}
	rmdir(dir);
}
