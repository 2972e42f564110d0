// SPDX-License-Identifier: MIT
/*
 * Unit tests: unwind.c (unwind tables in BPF maps: rows written in place, modules keyed as the
 * kernel maps them, sharing by build-id, room made by forgetting unused modules). Real BPF maps,
 * so root; without it the tests are skipped, except with CI=true in the environment: they fail.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <bpf/bpf.h>
#include "asizeof.h"
#include "cfi.h"
#include "unwind.h"

#define LIBC "/lib/x86_64-linux-gnu/libc.so.6"
#define LIBSTDCXX "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"

struct uw_maps {
	int rows, mods, wanted;
	__u32 max_rows;
};

static void uw_need_root(void)
{
	const char *ci = getenv("CI");

	if (geteuid() == 0)
		return;
	if (ci && strcmp(ci, "true") == 0)
		cr_assert_fail("not root: cannot create BPF maps (CI=true: not skipping)");
	cr_skip_test("not root: cannot create BPF maps");
}

static void uw_maps_create(struct uw_maps *m, __u32 max_rows)
{
	LIBBPF_OPTS(bpf_map_create_opts, mmapable, .map_flags = BPF_F_MMAPABLE);

	uw_need_root();
	m->max_rows = max_rows;
	m->rows = bpf_map_create(BPF_MAP_TYPE_ARRAY, "t_cfi_rows", sizeof(__u32),
				 sizeof(struct asz_cfi_row), max_rows, &mmapable);
	m->mods = bpf_map_create(BPF_MAP_TYPE_HASH, "t_cfi_mods", sizeof(struct asz_mod_key),
				 sizeof(struct asz_mod), 1024, NULL);
	m->wanted = bpf_map_create(BPF_MAP_TYPE_HASH, "t_cfi_wanted", sizeof(struct asz_mod_key),
				   sizeof(struct asz_mod_want), 64, NULL);
	cr_assert(m->rows >= 0 && m->mods >= 0 && m->wanted >= 0, "bpf_map_create: %s",
		  strerror(errno));
}

static void uw_maps_close(struct uw_maps *m)
{
	close(m->rows);
	close(m->mods);
	close(m->wanted);
}

static struct asz_mod_key uw_key(const char *path)
{
	struct asz_mod_key k = {};
	struct stat st;

	cr_assert_eq(stat(path, &st), 0, "%s", path);
	k.dev = major(st.st_dev) << 20 | minor(st.st_dev);
	k.ino = st.st_ino;
	return k;
}

/* The module's entry in the kernel map; false when absent. */
static bool uw_mod(const struct uw_maps *m, const char *path, struct asz_mod *out)
{
	struct asz_mod_key k = uw_key(path);

	return bpf_map_lookup_elem(m->mods, &k, out) == 0;
}

/* Rows the kernel sees for a module are exactly what cfi__build makes of the file. */
static void uw_check_rows(const struct uw_maps *m, const char *path, const struct asz_mod *mod)
{
	struct cfi_table t = {};

	cr_assert_eq(cfi__build(path, &t), 0);
	cr_assert_eq(mod->kind, ASZ_MOD_TABLE);
	cr_assert_eq(mod->nr, t.nr_rows);
	for (__u32 i = 0; i < t.nr_rows; i += 97) {
		struct asz_cfi_row r;
		__u32 idx = mod->first + i;

		cr_assert_eq(bpf_map_lookup_elem(m->rows, &idx, &r), 0);
		cr_assert_eq(memcmp(&r, &t.rows[i], sizeof(r)), 0, "row %u of %s", i, path);
	}
	/* then its bucket index, 4 words an entry: what uw_find_row reads */
	cr_assert_eq(mod->buckets, t.nr_buckets);
	cr_assert_eq(mod->shift, t.index_shift);
	cr_assert_gt(mod->buckets, 0);
	for (__u32 i = 0; i < ASZ_CFI_INDEX_ROWS(t.nr_buckets); i++) {
		__u32 words[4], idx = mod->first + mod->nr + i;

		cr_assert_eq(bpf_map_lookup_elem(m->rows, &idx, words), 0);
		cr_assert_eq(memcmp(words, &t.index[i * 4], sizeof(words)), 0, "index %u of %s", i,
			     path);
	}
	cfi_table__free(&t);
}

/* Entries of the rows map a module takes: its rows and its bucket index. */
static __u64 uw_slice(const struct asz_mod *mod)
{
	return ASZ_CFI_SLICE((__u64)mod->nr, mod->buckets);
}

Test(unwind, parse_mode)
{
	enum unwind_mode m = UNWIND_FP;

	cr_assert_eq(unwind__parse_mode("auto", &m), 0);
	cr_assert_eq(m, UNWIND_AUTO);
	cr_assert_eq(unwind__parse_mode("dwarf", &m), 0);
	cr_assert_eq(m, UNWIND_DWARF);
	cr_assert_eq(unwind__parse_mode("fp", &m), 0);
	cr_assert_eq(m, UNWIND_FP);
	cr_assert_eq(unwind__parse_mode("DWARF", &m), -EINVAL);
	cr_assert_eq(unwind__parse_mode("", &m), -EINVAL);
}

Test(unwind, tables_in_the_kernel_maps)
{
	struct unwind_stats st;
	struct uw_maps m;
	struct unwind *u;
	struct asz_mod libc, cxx;

	uw_maps_create(&m, 1u << 17);
	cr_assert_eq(unwind__new(&u, m.rows, m.max_rows, m.mods, m.wanted), 0);
	cr_assert_eq(unwind__add_file(u, LIBC), 0);
	cr_assert_eq(unwind__add_file(u, LIBSTDCXX), 0);
	/* a second time: nothing new */
	cr_assert_eq(unwind__add_file(u, LIBC), 0);
	cr_assert(uw_mod(&m, LIBC, &libc));
	cr_assert(uw_mod(&m, LIBSTDCXX, &cxx));
	uw_check_rows(&m, LIBC, &libc);
	uw_check_rows(&m, LIBSTDCXX, &cxx);
	/* slices do not overlap */
	cr_assert(libc.first + uw_slice(&libc) <= cxx.first ||
		  cxx.first + uw_slice(&cxx) <= libc.first);
	/* glibc's executable segment: offset == vaddr, so row pc = address - start + pgoff - base */
	cr_assert_lt(libc.adj, 0);
	unwind__stats(u, &st);
	cr_assert_eq(st.modules, 2);
	cr_assert_eq(st.tables, 2);
	cr_assert_eq(st.rows, uw_slice(&libc) + uw_slice(&cxx));
	cr_assert_eq(st.bytes, st.rows * sizeof(struct asz_cfi_row));
	cr_assert_eq(st.full, 0);
	cr_assert_gt(st.build_ns, 0);
	unwind__free(u);
	uw_maps_close(&m);
}

Test(unwind, same_build_id_shares_rows)
{
	char copy[] = "/tmp/asz_unwind_libcXXXXXX";
	struct asz_mod a, b;
	struct unwind_stats st;
	struct uw_maps m;
	struct unwind *u;
	char cmd[256];
	int fd;

	uw_maps_create(&m, 1u << 17);
	fd = mkstemp(copy);
	cr_assert_geq(fd, 0);
	close(fd);
	snprintf(cmd, sizeof(cmd), "cp %s %s", LIBC, copy);
	cr_assert_eq(system(cmd), 0);
	cr_assert_eq(unwind__new(&u, m.rows, m.max_rows, m.mods, m.wanted), 0);
	cr_assert_eq(unwind__add_file(u, LIBC), 0);
	cr_assert_eq(unwind__add_file(u, copy), 0);
	cr_assert(uw_mod(&m, LIBC, &a));
	cr_assert(uw_mod(&m, copy, &b));
	cr_assert_eq(a.first, b.first);
	cr_assert_eq(a.nr, b.nr);
	unwind__stats(u, &st);
	cr_assert_eq(st.shared, 1);
	cr_assert_eq(st.rows, uw_slice(&a), "shared rows are counted once");
	unwind__free(u);
	unlink(copy);
	uw_maps_close(&m);
}

static __u32 uw_rows_of(const char *path)
{
	struct cfi_table t = {};
	__u32 n;

	cr_assert_eq(cfi__build(path, &t), 0, "%s", path);
	n = ASZ_CFI_SLICE(t.nr_rows, t.nr_buckets); /* the entries its slice takes */
	cfi_table__free(&t);
	return n;
}

#define LIBM "/lib/x86_64-linux-gnu/libm.so.6"
#define LIBZ "/lib/x86_64-linux-gnu/libz.so.1"

Test(unwind, full_table_forgets_unused_modules)
{
	char copy[] = "/tmp/asz_unwind_cxxXXXXXX";
	__u32 nlibc = uw_rows_of(LIBC), ncxx = uw_rows_of(LIBSTDCXX);
	struct asz_mod libc, mod, libm;
	struct unwind_stats st;
	struct uw_maps m;
	struct unwind *u;
	char cmd[256];
	int fd;

	cr_assert_lt(uw_rows_of(LIBM), ncxx);
	cr_assert_gt(uw_rows_of(LIBZ), 8);
	/* a copy of libstdc++ that no process maps */
	fd = mkstemp(copy);
	cr_assert_geq(fd, 0);
	close(fd);
	snprintf(cmd, sizeof(cmd), "cp %s %s", LIBSTDCXX, copy);
	cr_assert_eq(system(cmd), 0);

	/* room for libc and the copy, no more */
	uw_maps_create(&m, nlibc + ncxx + 8);
	cr_assert_eq(unwind__new(&u, m.rows, m.max_rows, m.mods, m.wanted), 0);
	cr_assert_eq(unwind__add_file(u, LIBC), 0);
	cr_assert_eq(unwind__add_file(u, copy), 0);
	cr_assert(uw_mod(&m, copy, &mod));
	cr_assert_eq(mod.kind, ASZ_MOD_TABLE);
	/* built just now (for a command to launch, say): kept, libz does not fit */
	cr_assert_eq(unwind__add_file(u, LIBZ), 0);
	cr_assert(!uw_mod(&m, LIBZ, &mod) || mod.kind != ASZ_MOD_TABLE);
	cr_assert(uw_mod(&m, copy, &mod), "a table built 0 s ago is kept");
	unwind__stats(u, &st);
	cr_assert_eq(st.evicted, 0);
	cr_assert_eq(st.full, 1);
	unwind__set_keep_new(u, 0);
	/* libm needs room: the copy, mapped by nobody, is forgotten; libc, mapped here, stays */
	cr_assert_eq(unwind__add_file(u, LIBM), 0);
	cr_assert(uw_mod(&m, LIBM, &libm));
	cr_assert(!uw_mod(&m, copy, &mod), "the unused module is gone from the kernel map");
	cr_assert(uw_mod(&m, LIBC, &libc));
	uw_check_rows(&m, LIBC, &libc);
	uw_check_rows(&m, LIBM, &libm);
	unwind__stats(u, &st);
	cr_assert_eq(st.evicted, 1);
	cr_assert_eq(st.full, 1);
	cr_assert_eq(st.modules, 3, "libc, libm, and libz without its table");
	cr_assert_eq(st.rows, uw_slice(&libc) + uw_slice(&libm));
	unwind__free(u);
	uw_maps_close(&m);
	unlink(copy);
}

Test(unwind, modules_in_use_are_never_forgotten)
{
	__u32 nlibc = uw_rows_of(LIBC);
	struct asz_mod libc, cxx;
	struct unwind_stats st;
	struct uw_maps m;
	struct unwind *u;

	/* libc is mapped by this very process: no room is made by forgetting it */
	uw_maps_create(&m, nlibc + 16);
	cr_assert_eq(unwind__new(&u, m.rows, m.max_rows, m.mods, m.wanted), 0);
	cr_assert_eq(unwind__add_file(u, LIBC), 0);
	cr_assert_eq(unwind__add_file(u, LIBSTDCXX), 0);
	cr_assert(uw_mod(&m, LIBC, &libc));
	cr_assert_eq(libc.kind, ASZ_MOD_TABLE);
	cr_assert(uw_mod(&m, LIBSTDCXX, &cxx));
	cr_assert_eq(cxx.kind, ASZ_MOD_FP, "no room: frame pointers there");
	unwind__stats(u, &st);
	cr_assert_eq(st.full, 1);
	cr_assert_eq(st.evicted, 0);
	cr_assert_eq(st.tables, 1);
	unwind__free(u);
	uw_maps_close(&m);
}
