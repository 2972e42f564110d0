// SPDX-License-Identifier: MIT
/* Unit tests: attach.c (allocator symbols, probe placement). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
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

Test(attach, no_skip_when_not_followed_by_push)
{
	const __u8 code[] = {0x48, 0x85, 0xff, 0x74, 0x10, 0x48, 0x8d, 0x77, 0xf0};

	cr_assert_eq(attach__probe_skip(code, sizeof(code), ASZ_FREE), 0);
}

Test(attach, no_skip_for_other_prologues)
{
	const __u8 endbr[] = {0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48, 0x89, 0xe5, 0x90};
	const __u8 malloc_entry[] = {0x48, 0x85, 0xff, 0x74, 0x10, 0x55, 0x90, 0x90, 0x90};

	cr_assert_eq(attach__probe_skip(endbr, sizeof(endbr), ASZ_FREE), 0);
	/* allocation entries never move: their stack walk needs the entry's stack pointer */
	cr_assert_eq(attach__probe_skip(malloc_entry, sizeof(malloc_entry), ASZ_MALLOC), 0);
	cr_assert_eq(attach__probe_skip(malloc_entry, 4, ASZ_FREE), 0);
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
		} else {
			cr_assert_eq(syms.syms[i].skip, 0, "%s moved", syms.syms[i].name);
		}
	}
	cr_assert_eq(frees, 1);
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
