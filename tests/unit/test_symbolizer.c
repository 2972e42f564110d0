// SPDX-License-Identifier: MIT
/*
 * Symbolizer tests. Addresses come from __builtin_return_address() of noinline helpers, never
 * from stack walking (the tests are built -O2 without frame pointers). eu-addr2line is the
 * oracle for file:line and inline chains.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "symbolizer.h"

#define SYMTEST_MAX 16
#define SYMTEST_NOINLINE __attribute__((noinline, noclone))
/* Keeps a call from becoming a tail call, so its return address stays in the caller. */
#define SYMTEST_KEEP(x) asm volatile("" : "+r"(x))

static SYMTEST_NOINLINE void *symtest_get_ra(void)
{
	return __builtin_return_address(0);
}

static SYMTEST_NOINLINE void *symtest_caller(int *line)
{
	void *ra = symtest_get_ra(); *line = __LINE__;

	SYMTEST_KEEP(ra);
	return ra;
}

static inline __attribute__((always_inline)) void *symtest_inl_inner(int *lines)
{
	void *ra = symtest_get_ra(); lines[0] = __LINE__;

	SYMTEST_KEEP(ra);
	return ra;
}

static inline __attribute__((always_inline)) void *symtest_inl_mid(int *lines)
{
	void *ra = symtest_inl_inner(lines); lines[1] = __LINE__;

	SYMTEST_KEEP(ra);
	return ra;
}

static SYMTEST_NOINLINE void *symtest_inl_outer(int *lines)
{
	void *ra = symtest_inl_mid(lines); lines[2] = __LINE__;

	SYMTEST_KEEP(ra);
	return ra;
}

/* A cold function: the block that calls it goes to symtest_split's cold part. */
static __attribute__((cold, noinline, noclone)) void *symtest_get_ra_cold(void)
{
	return __builtin_return_address(0);
}

static inline __attribute__((always_inline)) void *symtest_cold_inl(int *lines)
{
	void *ra = symtest_get_ra_cold(); lines[0] = __LINE__;

	SYMTEST_KEEP(ra);
	return ra;
}

/* gcc -O2 splits this function in two address ranges: symtest_split and symtest_split.cold. */
static SYMTEST_NOINLINE void *symtest_split(int rare, int *lines)
{
	void *ra = NULL;

	if (rare) {
		ra = symtest_cold_inl(lines); lines[1] = __LINE__;
	}
	SYMTEST_KEEP(ra);
	return ra;
}

static const char *symtest_base(const char *path)
{
	const char *slash = path ? strrchr(path, '/') : NULL;

	return slash ? slash + 1 : path;
}

static double symtest_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct symtest_a2l {
	char func[1024];
	char file[1024];
	int line;
};

/* Parse "file:line" or "file:line:col" in place. */
static void symtest_parse_loc(char *loc, struct symtest_a2l *f)
{
	char *c1 = strrchr(loc, ':'), *c2;

	f->line = 0;
	if (!c1)
		return;
	*c1 = '\0';
	c2 = strrchr(loc, ':');
	if (c2 && c2[1] >= '0' && c2[1] <= '9') {
		*c2 = '\0';
		f->line = atoi(c2 + 1);
	} else {
		f->line = atoi(c1 + 1);
	}
	snprintf(f->file, sizeof(f->file), "%s", loc);
}

/* Run `eu-addr2line -i -f -e MODULE 0xVADDR`: pairs of lines "func[ inlined at ...]", "loc". */
static int symtest_addr2line(const char *module, unsigned long long vaddr,
			     struct symtest_a2l *out, int max)
{
	char cmd[1024], fline[1024], lline[1024];
	FILE *p;
	int n = 0;

	snprintf(cmd, sizeof(cmd), "eu-addr2line -i -f -e '%s' 0x%llx", module, vaddr);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	while (n < max && fgets(fline, sizeof(fline), p) && fgets(lline, sizeof(lline), p)) {
		fline[strcspn(fline, " \n")] = '\0';
		lline[strcspn(lline, "\n")] = '\0';
		snprintf(out[n].func, sizeof(out[n].func), "%s", fline);
		symtest_parse_loc(lline, &out[n]);
		n++;
	}
	pclose(p);
	return n;
}

/*
 * eu-addr2line always prefixes a relative name with the compilation directory; with a relative
 * one (-fdebug-prefix-map, as in libc6-dbg) that gives "./string/./string/strdup.c", which the
 * symbolizer leaves as "./string/strdup.c".
 */
static bool symtest_same_file(const char *ours, const char *a2l)
{
	size_t lo, la;

	if (!strcmp(ours, a2l))
		return true;
	if (ours[0] == '/')
		return false;
	if (!strncmp(ours, "./", 2))
		ours += 2;
	lo = strlen(ours);
	la = strlen(a2l);
	return la > lo && a2l[la - lo - 1] == '/' && !strcmp(a2l + la - lo, ours);
}

/*
 * Every frame's file:line must match eu-addr2line, and its function name too; the outermost
 * name may differ when outer_alias is given (symbol name vs. DWARF name of an alias).
 */
static void symtest_check_oracle(const struct sym_frame *f, int n, const char *outer_alias)
{
	struct symtest_a2l a2l[SYMTEST_MAX];
	int na, i;

	na = symtest_addr2line(f[0].module, f[0].module_offset, a2l, SYMTEST_MAX);
	cr_assert_eq(na, n, "eu-addr2line gives %d frames, symbolizer %d", na, n);
	for (i = 0; i < n; i++) {
		cr_assert_not_null(f[i].func, "frame %d has no function", i);
		cr_assert_not_null(f[i].file, "frame %d has no file", i);
		cr_assert(symtest_same_file(f[i].file, a2l[i].file),
			  "frame %d: %s, eu-addr2line %s", i, f[i].file, a2l[i].file);
		cr_assert_eq(f[i].line, a2l[i].line, "frame %d: line %d, eu-addr2line %d", i,
			     f[i].line, a2l[i].line);
		cr_assert_eq(f[i].inlined, i < n - 1, "frame %d", i);
		if (i == n - 1 && outer_alias && !strcmp(f[i].func, outer_alias))
			continue;
		cr_assert_str_eq(f[i].func, a2l[i].func, "frame %d", i);
	}
}

/* strdup of libc itself, not of an interposer (a sanitizer runtime, say). */
static void *symtest_libc_strdup(void)
{
	void *h = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD), *fn;

	cr_assert_not_null(h, "%s", dlerror());
	fn = dlsym(h, "strdup");
	cr_assert_not_null(fn);
	dlclose(h);
	return fn;
}

static void symtest_exe_path(char *buf, size_t size)
{
	ssize_t n = readlink("/proc/self/exe", buf, size - 1);

	cr_assert_gt(n, 0);
	buf[n] = '\0';
}

Test(symbolizer, function_in_test_binary)
{
	struct symbolizer *s = symbolizer__new();
	struct sym_frame f[SYMTEST_MAX];
	char exe[4096];
	Dl_info info;
	int line = 0, n;
	void *ra = symtest_caller(&line);

	cr_assert_not_null(s);
	cr_assert_eq(symbolizer__add_pid(s, getpid()), 0);
	/* Unchanged maps: nothing to do, still fine. */
	cr_assert_eq(symbolizer__add_pid(s, getpid()), 0);
	n = symbolizer__resolve(s, getpid(), (__u64)(uintptr_t)ra, f, SYMTEST_MAX);
	cr_assert_eq(n, 1);
	cr_assert_eq(f[0].addr, (__u64)(uintptr_t)ra - 1);
	cr_assert_str_eq(f[0].func, "symtest_caller");
	cr_assert_str_eq(symtest_base(f[0].file), "test_symbolizer.c");
	cr_assert_eq(f[0].line, line);
	cr_assert_not(f[0].inlined);
	symtest_exe_path(exe, sizeof(exe));
	cr_assert_str_eq(f[0].module, exe);
	/* PIE: the ELF vaddr is the offset from the load base (first PT_LOAD at vaddr 0). */
	cr_assert(dladdr((void *)symtest_caller, &info));
	cr_assert_eq(f[0].module_offset, f[0].addr - (uintptr_t)info.dli_fbase);
	symtest_check_oracle(f, n, NULL);
	symbolizer__free(s);
}

Test(symbolizer, inline_chain)
{
	struct symbolizer *s = symbolizer__new();
	struct sym_frame f[SYMTEST_MAX];
	int lines[3] = {}, n;
	void *ra = symtest_inl_outer(lines);

	cr_assert_eq(symbolizer__add_pid(s, getpid()), 0);
	n = symbolizer__resolve(s, getpid(), (__u64)(uintptr_t)ra, f, SYMTEST_MAX);
	cr_assert_eq(n, 3);
	cr_assert_str_eq(f[0].func, "symtest_inl_inner");
	cr_assert_eq(f[0].line, lines[0]);
	cr_assert(f[0].inlined);
	cr_assert_str_eq(f[1].func, "symtest_inl_mid");
	cr_assert_eq(f[1].line, lines[1]);
	cr_assert(f[1].inlined);
	cr_assert_str_eq(f[2].func, "symtest_inl_outer");
	cr_assert_eq(f[2].line, lines[2]);
	cr_assert_not(f[2].inlined);
	for (int i = 0; i < n; i++) {
		cr_assert_str_eq(symtest_base(f[i].file), "test_symbolizer.c");
		cr_assert_eq(f[i].addr, f[0].addr);
		cr_assert_eq(f[i].module_offset, f[0].module_offset);
		cr_assert_eq(f[i].module, f[0].module);
	}
	symtest_check_oracle(f, n, NULL);

	/* Fewer slots than frames: the innermost ones. */
	n = symbolizer__resolve(s, getpid(), (__u64)(uintptr_t)ra, f, 1);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(f[0].func, "symtest_inl_inner");
	symbolizer__free(s);
}

/*
 * An inline chain in the cold part of a function split by gcc: a function of two address
 * ranges, the second far from the first.
 */
Test(symbolizer, inline_chain_in_a_cold_part)
{
	struct symbolizer *s = symbolizer__new();
	struct sym_frame f[SYMTEST_MAX];
	struct symbolizer_stats st;
	int lines[2] = {}, n;
	void *ra = symtest_split(1, lines), *hot = (void *)symtest_split;

	cr_assert_eq(symbolizer__add_pid(s, getpid()), 0);
	n = symbolizer__resolve(s, getpid(), (__u64)(uintptr_t)ra, f, SYMTEST_MAX);
	/* found from the unit's index of functions, whose ranges include the cold part */
	symbolizer__stats(s, &st);
	cr_assert_eq(st.symbolized, 1);
	cr_assert_eq(st.units_indexed, 1);
	cr_assert_eq(st.unit_walks, 0);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(f[0].func, "symtest_cold_inl");
	cr_assert_eq(f[0].line, lines[0]);
	cr_assert(f[0].inlined);
	cr_assert_str_eq(f[1].func, "symtest_split.cold", "the return address is in the cold part");
	cr_assert_eq(f[1].line, lines[1]);
	/* eu-addr2line names the outer frame by its DWARF name, we by its symbol */
	symtest_check_oracle(f, n, "symtest_split.cold");

	/* the hot part is symtest_split itself */
	n = symbolizer__resolve(s, getpid(), (__u64)(uintptr_t)hot + 2, f, SYMTEST_MAX);
	cr_assert_str_eq(f[n - 1].func, "symtest_split");
	symbolizer__free(s);
}

Test(symbolizer, libc_function)
{
	struct symbolizer *s = symbolizer__new();
	struct sym_frame f[SYMTEST_MAX];
	void *fn = symtest_libc_strdup();
	__u64 ip = (__u64)(uintptr_t)fn + 5;
	int n;

	cr_assert_eq(symbolizer__add_pid(s, getpid()), 0);
	n = symbolizer__resolve(s, getpid(), ip, f, SYMTEST_MAX);
	cr_assert_geq(n, 1);
	cr_assert_not_null(f[0].module);
	cr_assert_not_null(strstr(f[0].module, "libc.so.6"), "module %s", f[0].module);
	cr_assert_not_null(f[n - 1].func);
	cr_assert(!strcmp(f[n - 1].func, "strdup") || !strcmp(f[n - 1].func, "__strdup"),
		  "func %s", f[n - 1].func);
	/* Source location from libc6-dbg (found by build-id). */
	cr_assert_not_null(f[0].file);
	cr_assert_gt(f[0].line, 0);
	cr_assert_str_eq(symtest_base(f[n - 1].file), "strdup.c");
	symtest_check_oracle(f, n, f[n - 1].func);
	symbolizer__free(s);
}

Test(symbolizer, after_exit)
{
	struct symbolizer *s = symbolizer__new();
	struct sym_frame f[SYMTEST_MAX];
	int line = 0, n, status;
	void *ra = symtest_caller(&line);
	pid_t child = fork();

	cr_assert_geq(child, 0);
	if (child == 0) {
		for (;;)
			pause();
	}
	cr_assert_eq(symbolizer__add_pid(s, child), 0);
	kill(child, SIGKILL);
	cr_assert_eq(waitpid(child, &status, 0), child);

	/* Gone: add_pid fails and keeps what it had. */
	cr_assert_eq(symbolizer__add_pid(s, child), -ESRCH);
	n = symbolizer__resolve(s, child, (__u64)(uintptr_t)ra, f, SYMTEST_MAX);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(f[0].func, "symtest_caller");
	cr_assert_str_eq(symtest_base(f[0].file), "test_symbolizer.c");
	cr_assert_eq(f[0].line, line);
	cr_assert_not_null(f[0].module);
	symbolizer__free(s);
}

Test(symbolizer, unknown_addresses)
{
	struct symbolizer *s = symbolizer__new();
	struct sym_frame f[SYMTEST_MAX];
	char exe[4096];
	Dl_info info;
	int n;

	cr_assert_eq(symbolizer__add_pid(s, getpid()), 0);
	n = symbolizer__resolve(s, getpid(), 0x11, f, SYMTEST_MAX);
	cr_assert_eq(n, 1);
	cr_assert_eq(f[0].addr, 0x10);
	cr_assert_null(f[0].func);
	cr_assert_null(f[0].module);
	cr_assert_null(f[0].file);

	/* The ELF header of the executable: mapped, but in no function. */
	cr_assert(dladdr((void *)symtest_caller, &info));
	n = symbolizer__resolve(s, getpid(), (uintptr_t)info.dli_fbase + 0x11, f, SYMTEST_MAX);
	cr_assert_eq(n, 1);
	cr_assert_null(f[0].func);
	symtest_exe_path(exe, sizeof(exe));
	cr_assert_str_eq(f[0].module, exe);
	cr_assert_eq(f[0].module_offset, 0x10);

	/* Above pid_max (at most 2^22): never a process. */
	cr_assert_eq(symbolizer__add_pid(s, 0x7ffffff0), -ESRCH);
	n = symbolizer__resolve(s, 0x7ffffff0, (__u64)(uintptr_t)symtest_caller + 1, f, 1);
	cr_assert_eq(n, 1);
	cr_assert_null(f[0].func);
	cr_assert_null(f[0].module);
	cr_assert_eq(symbolizer__resolve(s, getpid(), 0x11, f, 0), 0);
	symbolizer__free(s);
}

/* A deleted, then unloaded library: opened through map_files, kept after dlclose. */
Test(symbolizer, deleted_library)
{
	struct symbolizer *s = symbolizer__new();
	struct sym_frame f[SYMTEST_MAX];
	char tmp[] = "/tmp/asz_symtest_XXXXXX", buf[65536];
	void *h = dlopen("libz.so.1", RTLD_NOW), *h2, *fn;
	Dl_info info;
	int in, out, n;
	ssize_t len;

	cr_assert_not_null(h, "%s", dlerror());
	cr_assert(dladdr(dlsym(h, "zlibVersion"), &info));
	in = open(info.dli_fname, O_RDONLY);
	out = mkstemp(tmp);
	cr_assert_geq(in, 0);
	cr_assert_geq(out, 0);
	while ((len = read(in, buf, sizeof(buf))) > 0)
		cr_assert_eq(write(out, buf, len), len);
	close(in);
	close(out);
	h2 = dlopen(tmp, RTLD_NOW | RTLD_LOCAL);
	cr_assert_not_null(h2, "%s", dlerror());
	fn = dlsym(h2, "zlibVersion");
	cr_assert_not_null(fn);
	cr_assert(dladdr(fn, &info));
	cr_assert_str_eq(info.dli_fname, tmp);
	unlink(tmp);

	cr_assert_eq(symbolizer__add_pid(s, getpid()), 0);
	n = symbolizer__resolve(s, getpid(), (uintptr_t)fn + 1, f, SYMTEST_MAX);
	cr_assert_eq(n, 1);
	cr_assert_not_null(f[0].module);
	cr_assert_not_null(strstr(f[0].module, tmp), "module %s", f[0].module);
	cr_assert_not_null(strstr(f[0].module, "(deleted)"), "module %s", f[0].module);
	cr_assert_str_eq(f[0].func, "zlibVersion");

	dlclose(h2);
	cr_assert_eq(symbolizer__add_pid(s, getpid()), 0);
	n = symbolizer__resolve(s, getpid(), (uintptr_t)fn + 1, f, SYMTEST_MAX);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(f[0].func, "zlibVersion");
	dlclose(h);
	symbolizer__free(s);
}

/* C++ names come demangled; libstdc++ is linked in for __cxa_demangle anyway. */
Test(symbolizer, cxx_demangled)
{
	struct symbolizer *s = symbolizer__new();
	struct sym_frame f[SYMTEST_MAX];
	void *fn = dlsym(RTLD_DEFAULT, "_ZSt9terminatev");
	int n;

	cr_assert_not_null(fn);
	cr_assert_eq(symbolizer__add_pid(s, getpid()), 0);
	n = symbolizer__resolve(s, getpid(), (uintptr_t)fn + 1, f, SYMTEST_MAX);
	cr_assert_geq(n, 1);
	cr_assert_not_null(strstr(f[0].module, "libstdc++"), "module %s", f[0].module);
	cr_assert_str_eq(f[n - 1].func, "std::terminate()");
	symbolizer__free(s);
}

static int symtest_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	cr_assert_not_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* Every descriptor kept for module files and their debug info goes away with the symbolizer. */
Test(symbolizer, no_fd_leak)
{
	int before = symtest_count_fds(), line;
	struct symbolizer *s = symbolizer__new();
	struct sym_frame f[SYMTEST_MAX];
	void *ra = symtest_caller(&line);
	__u64 ip;

	cr_assert_eq(symbolizer__add_pid(s, getpid()), 0);
	cr_assert_eq(symbolizer__resolve(s, getpid(), (uintptr_t)ra, f, SYMTEST_MAX), 1);
	ip = (uintptr_t)symtest_libc_strdup() + 5;
	cr_assert_geq(symbolizer__resolve(s, getpid(), ip, f, SYMTEST_MAX), 1);
	cr_assert_gt(symtest_count_fds(), before);
	symbolizer__free(s);
	cr_assert_eq(symtest_count_fds(), before);
}

static pid_t symtest_fork_paused(void)
{
	pid_t child = fork();

	cr_assert_geq(child, 0);
	if (child == 0) {
		for (;;)
			pause();
	}
	return child;
}

static void symtest_reap(pid_t child)
{
	int status;

	kill(child, SIGKILL);
	cr_assert_eq(waitpid(child, &status, 0), child);
}

/*
 * A module file is closed, with its cached results, at the second trim after the last recorded
 * process mapping it was removed; a kept one never. System-wide runs see every program on the
 * machine: each used to hold an fd and a Dwfl (and a deleted file's disk space) to the end.
 */
Test(symbolizer, files_no_process_maps_are_closed)
{
	int before = symtest_count_fds(), line = 0;
	struct symbolizer *s = symbolizer__new();
	struct sym_frame f[SYMTEST_MAX];
	void *ra = symtest_caller(&line);
	struct symbolizer_stats st, st1;
	pid_t a, b;

	cr_assert_eq(symbolizer__add_file(s, "/bin/true", true), 0);
	cr_assert_eq(symbolizer__add_file(s, "/bin/false", false), 0);
	a = symtest_fork_paused();
	b = symtest_fork_paused();
	cr_assert_eq(symbolizer__add_pid(s, a), 0);
	cr_assert_eq(symbolizer__add_pid(s, b), 0);
	cr_assert_eq(symbolizer__resolve(s, a, (uintptr_t)ra, f, SYMTEST_MAX), 1);
	cr_assert_str_eq(f[0].func, "symtest_caller");
	symbolizer__stats(s, &st);
	cr_assert_geq(st.files_open, 4, "true, false, this program, libc...");
	cr_assert_eq(st.results, 1);

	/* b still maps everything a did */
	symtest_reap(a);
	symbolizer__remove_pid(s, a);
	symbolizer__trim(s);
	symbolizer__trim(s);
	symbolizer__stats(s, &st1);
	cr_assert_eq(st1.files_open, st.files_open - 1, "only /bin/false is closed");
	cr_assert_eq(st1.files_closed, 1);
	cr_assert_eq(st1.results, 1);
	cr_assert_eq(symbolizer__resolve(s, b, (uintptr_t)ra, f, SYMTEST_MAX), 1);
	cr_assert_str_eq(f[0].func, "symtest_caller");

	/* the first trim after b is gone gives a second chance, the next one closes */
	symtest_reap(b);
	symbolizer__remove_pid(s, b);
	symbolizer__trim(s);
	symbolizer__stats(s, &st1);
	cr_assert_eq(st1.files_open, st.files_open - 1);
	symbolizer__trim(s);
	symbolizer__stats(s, &st1);
	cr_assert_eq(st1.files_open, 1, "only the kept /bin/true is open");
	cr_assert_eq(st1.files_closed, st.files_open - 1);
	cr_assert_eq(st1.results, 0);
	cr_assert_eq(symtest_count_fds(), before + 1);

	/* a process mapping the same files again opens them afresh */
	cr_assert_eq(symbolizer__add_pid(s, getpid()), 0);
	cr_assert_eq(symbolizer__resolve(s, getpid(), (uintptr_t)ra, f, SYMTEST_MAX), 1);
	cr_assert_str_eq(f[0].func, "symtest_caller");
	cr_assert_eq(f[0].line, line);
	symbolizer__stats(s, &st1);
	cr_assert_eq(st1.symbolized, st.symbolized + 1, "its results were not kept");
	symbolizer__free(s);
	cr_assert_eq(symtest_count_fds(), before);
}

/* After an exec the old table is dropped: the parent's code address means nothing anymore. */
Test(symbolizer, exec_replaces_mappings)
{
	struct symbolizer *s = symbolizer__new();
	struct sym_frame f[SYMTEST_MAX];
	int line = 0, pfd[2], status, i;
	void *ra = symtest_caller(&line);
	char exe[4096], path[64], c = 0;
	pid_t child;

	symtest_exe_path(exe, sizeof(exe));
	cr_assert_eq(pipe(pfd), 0);
	child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		close(pfd[1]);
		if (read(pfd[0], &c, 1) == 1)
			execl("/bin/sleep", "sleep", "100", (char *)NULL);
		_exit(127);
	}
	close(pfd[0]);
	cr_assert_eq(symbolizer__add_pid(s, child), 0);
	cr_assert_eq(symbolizer__resolve(s, child, (uintptr_t)ra, f, SYMTEST_MAX), 1);
	cr_assert_str_eq(f[0].func, "symtest_caller");

	cr_assert_eq(write(pfd[1], &c, 1), 1);
	snprintf(path, sizeof(path), "/proc/%d/exe", child);
	for (i = 0; i < 500; i++) {
		char target[4096];
		ssize_t n = readlink(path, target, sizeof(target) - 1);

		if (n > 0 && (target[n] = '\0', strstr(target, "sleep")))
			break;
		usleep(10000);
	}
	cr_assert_lt(i, 500, "child did not exec");
	cr_assert_eq(symbolizer__add_pid(s, child), 0);
	symbolizer__resolve(s, child, (uintptr_t)ra, f, SYMTEST_MAX);
	cr_assert(!f[0].module || strcmp(f[0].module, exe), "old mapping still there");
	cr_assert(!f[0].func || strcmp(f[0].func, "symtest_caller"));

	kill(child, SIGKILL);
	waitpid(child, &status, 0);
	close(pfd[1]);
	symbolizer__free(s);
}

Test(symbolizer, cache_timing)
{
	enum { N = 10000 };
	struct symbolizer *s = symbolizer__new();
	struct sym_frame f[SYMTEST_MAX], g[SYMTEST_MAX];
	__u64 base = (uintptr_t)symtest_libc_strdup();
	double t0, t1, t2;
	long frames = 0, named = 0;
	int i, j, n, m;

	cr_assert_eq(symbolizer__add_pid(s, getpid()), 0);
	t0 = symtest_now();
	for (i = 0; i < N; i++) {
		n = symbolizer__resolve(s, getpid(), base + 1 + 16 * i, f, SYMTEST_MAX);
		frames += n;
		named += f[n - 1].func != NULL;
	}
	t1 = symtest_now();
	for (i = 0; i < N; i++)
		frames += symbolizer__resolve(s, getpid(), base + 1 + 16 * i, f, SYMTEST_MAX);
	t2 = symtest_now();
	fprintf(stderr,
		"symbolizer: %d libc addresses (%ld named): cold %.1f us/address (incl. loading "
		"libc debug info), warm %.3f us/address, %.2f ms for %d warm\n",
		N, named, (t1 - t0) * 1e6 / N, (t2 - t1) * 1e6 / N, (t2 - t1) * 1e3, N);
	cr_assert_gt(named, N / 2);

	/* Warm answers are the cached cold ones. */
	for (i = 0; i < N; i += 997) {
		n = symbolizer__resolve(s, getpid(), base + 1 + 16 * i, f, SYMTEST_MAX);
		m = symbolizer__resolve(s, getpid(), base + 1 + 16 * i, g, SYMTEST_MAX);
		cr_assert_eq(n, m);
		for (j = 0; j < n; j++) {
			cr_assert_eq(f[j].func, g[j].func);
			cr_assert_eq(f[j].file, g[j].file);
			cr_assert_eq(f[j].line, g[j].line);
		}
	}
	symbolizer__free(s);
}

/*
 * Files mapped only as data are not kept, and neither are their paths: interned strings live to
 * the end, and a process that maps data files by the thousand (a database's segments, shared
 * memory files) made the symbolizer grow at each reading of its maps.
 */
Test(symbolizer, data_file_paths_are_not_kept)
{
	enum { NFILES = 300 };
	char dir[] = "/tmp/symtest_data.XXXXXX", path[64];
	struct symbolizer *s = symbolizer__new();
	struct symbolizer_stats st0, st1;
	void *maps[NFILES];
	int i, fd;

	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(symbolizer__add_pid(s, getpid()), 0);
	symbolizer__stats(s, &st0);
	for (i = 0; i < NFILES; i++) {
		snprintf(path, sizeof(path), "%s/segment-%d", dir, i);
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		cr_assert_geq(fd, 0);
		cr_assert_eq(write(fd, "x", 1), 1);
		maps[i] = mmap(NULL, 1, PROT_READ, MAP_SHARED, fd, 0);
		cr_assert_neq(maps[i], MAP_FAILED);
		close(fd);
	}
	cr_assert_eq(symbolizer__add_pid(s, getpid()), 0);
	symbolizer__stats(s, &st1);
	for (i = 0; i < NFILES; i++) {
		munmap(maps[i], 1);
		snprintf(path, sizeof(path), "%s/segment-%d", dir, i);
		unlink(path);
	}
	rmdir(dir);
	cr_assert_lt(st1.strings - st0.strings, 10, "%llu strings more for %d data files",
		     (unsigned long long)(st1.strings - st0.strings), NFILES);
	cr_assert_eq(st1.files_open, st0.files_open);
	symbolizer__free(s);
}

/*
 * The module files of a process in a chroot (or another mount namespace) hold its root, to look
 * for their debug files there: one descriptor for them all, not one each (system-wide, every
 * library of every container), closed with the last of them.
 */
Test(symbolizer, files_of_one_root_share_it)
{
	char dir[] = "/tmp/symtest_root.XXXXXX";
	struct symbolizer *s = symbolizer__new();
	struct symbolizer_stats st;
	int before = symtest_count_fds(), sync[2];
	pid_t child;
	char c;

	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(pipe(sync), 0);
	child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		if (chroot(dir) || chdir("/"))
			_exit(1);
		if (write(sync[1], "r", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	cr_assert_eq(read(sync[0], &c, 1), 1);
	close(sync[0]);
	close(sync[1]);
	cr_assert_eq(symbolizer__add_pid(s, child), 0);
	symbolizer__stats(s, &st);
	symtest_reap(child);
	rmdir(dir);
	cr_assert_geq(st.files_open, 3, "this program, libc, libdw...");
	cr_assert_eq(symtest_count_fds() - before, (int)st.files_open + 1,
		     "%d descriptors for %llu files", symtest_count_fds() - before,
		     (unsigned long long)st.files_open);
	symbolizer__remove_pid(s, child);
	symbolizer__trim(s);
	symbolizer__trim(s);
	cr_assert_eq(symtest_count_fds(), before, "all closed with the files");
	symbolizer__free(s);
}
