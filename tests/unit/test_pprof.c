// SPDX-License-Identifier: MIT
/*
 * pprof output on hand-built snapshots, decoded back with protobuf-c after gunzip: header,
 * exact values and labels, locations, mappings (checked against /proc/self/maps and
 * eu-readelf), inline chains; the model's filters and deltas over a window (serve_state.c);
 * and serve's Prometheus text (serve_metrics.c).
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <zlib.h>
#include "cmd.h"
#include "profile.pb-c.h"
#include "report.h"
#include "serve_metrics.h"
#include "util.h"
#include "serve_profile.h"
#include "serve_state.h"
#include "symbolizer.h"

typedef Perftools__Profiles__Profile Profile;

#define PP_NOINLINE __attribute__((noinline, noclone))
#define PP_KEEP(x) asm volatile("" : "+r"(x))

static PP_NOINLINE void *pp_get_ra(void)
{
	return __builtin_return_address(0);
}

static PP_NOINLINE void *pp_leaf(int *line)
{
	void *ra = pp_get_ra(); *line = __LINE__;

	PP_KEEP(ra);
	return ra;
}

static inline __attribute__((always_inline)) void *pp_inl_inner(int *lines)
{
	void *ra = pp_get_ra(); lines[0] = __LINE__;

	PP_KEEP(ra);
	return ra;
}

static PP_NOINLINE void *pp_inl_outer(int *lines)
{
	void *ra = pp_inl_inner(lines); lines[1] = __LINE__;

	PP_KEEP(ra);
	return ra;
}

/* ---------------------------------------------------------------- decoding */

static void *gunzip(const void *in, size_t len, size_t *out_len)
{
	z_stream zs = {};
	size_t cap = len * 8 + 1024;
	unsigned char *out = malloc(cap);
	int ret;

	cr_assert_not_null(out);
	cr_assert_gt(len, 2);
	/* a gzip member, not a bare zlib stream */
	cr_assert_eq(((const unsigned char *)in)[0], 0x1f);
	cr_assert_eq(((const unsigned char *)in)[1], 0x8b);
	cr_assert_eq(inflateInit2(&zs, 16 + MAX_WBITS), Z_OK);
	zs.next_in = (Bytef *)in;
	zs.avail_in = len;
	for (;;) {
		zs.next_out = out + zs.total_out;
		zs.avail_out = cap - zs.total_out;
		ret = inflate(&zs, Z_FINISH);
		if (ret == Z_STREAM_END)
			break;
		cr_assert(ret == Z_BUF_ERROR || ret == Z_OK, "inflate: %d", ret);
		cap *= 2;
		out = realloc(out, cap);
		cr_assert_not_null(out);
	}
	cr_assert_eq(zs.avail_in, 0, "bytes after the gzip member");
	*out_len = zs.total_out;
	inflateEnd(&zs);
	return out;
}

static Profile *decode(const void *gz, size_t len)
{
	size_t raw_len;
	void *raw = gunzip(gz, len, &raw_len);
	Profile *p = perftools__profiles__profile__unpack(NULL, raw_len, raw);

	free(raw);
	cr_assert_not_null(p, "not a profile.proto Profile");
	/* what every reader relies on */
	cr_assert_geq(p->n_string_table, 1);
	cr_assert_str_eq(p->string_table[0], "");
	for (size_t i = 0; i < p->n_location; i++)
		cr_assert_eq(p->location[i]->id, i + 1);
	for (size_t i = 0; i < p->n_mapping; i++)
		cr_assert_eq(p->mapping[i]->id, i + 1);
	for (size_t i = 0; i < p->n_function; i++)
		cr_assert_eq(p->function[i]->id, i + 1);
	for (size_t i = 0; i < p->n_sample; i++) {
		cr_assert_eq(p->sample[i]->n_value, p->n_sample_type);
		for (size_t j = 0; j < p->sample[i]->n_location_id; j++) {
			cr_assert_gt(p->sample[i]->location_id[j], 0);
			cr_assert_leq(p->sample[i]->location_id[j], p->n_location);
		}
	}
	for (size_t i = 0; i < p->n_location; i++) {
		cr_assert_leq(p->location[i]->mapping_id, p->n_mapping);
		for (size_t j = 0; j < p->location[i]->n_line; j++) {
			cr_assert_gt(p->location[i]->line[j]->function_id, 0);
			cr_assert_leq(p->location[i]->line[j]->function_id, p->n_function);
		}
	}
	return p;
}

static const char *str(const Profile *p, int64_t i)
{
	cr_assert(i >= 0 && (size_t)i < p->n_string_table, "string index %lld", (long long)i);
	return p->string_table[i];
}

static Profile *write_profile(const struct snapshot *s, struct symbolizer *sym)
{
	struct report_opts o = {.top_n = 1};
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	Profile *p;

	cr_assert_not_null(f);
	cr_assert_eq(report__write(f, REPORT_PPROF, s, sym, &o), 0);
	fclose(f);
	p = decode(buf, len);
	free(buf);
	return p;
}

static const Perftools__Profiles__Label *label(const Perftools__Profiles__Sample *sm,
					       const Profile *p, const char *key)
{
	for (size_t i = 0; i < sm->n_label; i++)
		if (!strcmp(str(p, sm->label[i]->key), key))
			return sm->label[i];
	return NULL;
}

/* The sample of (pid, allocator), which must be unique. */
static const Perftools__Profiles__Sample *sample_of(const Profile *p, __u32 pid,
						    const char *allocator)
{
	const Perftools__Profiles__Sample *found = NULL;

	for (size_t i = 0; i < p->n_sample; i++) {
		const Perftools__Profiles__Sample *sm = p->sample[i];
		const Perftools__Profiles__Label *l = label(sm, p, "pid"), *a;

		cr_assert_not_null(l, "sample without a pid label");
		a = label(sm, p, "allocator");
		cr_assert_not_null(a);
		if (l->num == pid && !strcmp(str(p, a->str), allocator)) {
			cr_assert_null(found, "two samples for pid %u %s", pid, allocator);
			found = sm;
		}
	}
	return found;
}

static void check_values(const Perftools__Profiles__Sample *sm, int64_t ao, int64_t as,
			 int64_t io, int64_t is)
{
	cr_assert_not_null(sm);
	cr_assert_eq(sm->value[0], ao, "alloc_objects %lld != %lld", (long long)sm->value[0],
		     (long long)ao);
	cr_assert_eq(sm->value[1], as, "alloc_space %lld != %lld", (long long)sm->value[1],
		     (long long)as);
	cr_assert_eq(sm->value[2], io, "inuse_objects %lld != %lld", (long long)sm->value[2],
		     (long long)io);
	cr_assert_eq(sm->value[3], is, "inuse_space %lld != %lld", (long long)sm->value[3],
		     (long long)is);
}

static const Perftools__Profiles__Location *loc(const Profile *p, uint64_t id)
{
	cr_assert(id >= 1 && id <= p->n_location);
	return p->location[id - 1];
}

/* ---------------------------------------------------------------- fixtures */

static const __u64 ips_a[] = {0x1001, 0x2001};
static const __u64 ips_b[] = {0x1001, 0x3001, 0x4001};

static void add_proc(struct snapshot *s, __u32 pid, const char *comm, bool exited)
{
	struct snap_proc p = {.pid = pid, .exited = exited};

	memcpy(p.comm, comm, strnlen(comm, ASZ_COMM_LEN));
	cr_assert_eq(snapshot__add_proc(s, &p), 0);
}

static void add_stack(struct snapshot *s, __u32 pid, __u32 allocator, __u64 id, const __u64 *ips,
		      __u32 n, __s64 live, __s64 live_allocs, __u64 alloc_bytes, __u64 allocs)
{
	struct snap_stack st = {.pid = pid, .allocator = allocator, .stack_id = id,
				.live_bytes = live, .live_allocs = live_allocs,
				.alloc_bytes = alloc_bytes, .allocs = allocs,
				.frees = allocs - live_allocs, .nr_frames = n, .ips = ips};

	cr_assert_eq(snapshot__add_stack(s, &st), 0);
}

/* pid 100 "app": two stacks sharing their leaf; pid 200 "db" exited; pid 300 all zeros. */
static struct snapshot *fixture(void)
{
	struct snapshot *s = snapshot__new();

	cr_assert_not_null(s);
	s->time = 1700000000.5;
	s->elapsed_s = 12.25;
	s->final = true;
	add_proc(s, 100, "app", false);
	add_proc(s, 200, "db", true);
	add_proc(s, 300, "idle", false);
	add_stack(s, 100, ASZ_MALLOC, 7, ips_a, 2, 2048, 2, 4096, 4);
	add_stack(s, 100, ASZ_CALLOC, 7, ips_b, 3, 512, 1, 512, 1);
	add_stack(s, 200, ASZ_MALLOC, 3, ips_a, 2, 0, 0, 64, 4);
	add_stack(s, 300, ASZ_MALLOC, 5, ips_a, 2, 0, 0, 0, 0);
	return s;
}

/* ---------------------------------------------------------------- the file format */

Test(pprof, header_values_labels_locations)
{
	struct snapshot *s = fixture();
	Profile *p = write_profile(s, NULL);
	static const char *const types[4][2] = {
		{"alloc_objects", "count"},
		{"alloc_space", "bytes"},
		{"inuse_objects", "count"},
		{"inuse_space", "bytes"},
	};
	const Perftools__Profiles__Sample *sm;
	bool version = false, exact = false;

	cr_assert_eq(p->n_sample_type, 4);
	for (int i = 0; i < 4; i++) {
		cr_assert_str_eq(str(p, p->sample_type[i]->type), types[i][0]);
		cr_assert_str_eq(str(p, p->sample_type[i]->unit), types[i][1]);
	}
	cr_assert_str_eq(str(p, p->default_sample_type), "inuse_space");
	cr_assert_not_null(p->period_type);
	cr_assert_str_eq(str(p, p->period_type->type), "space");
	cr_assert_str_eq(str(p, p->period_type->unit), "bytes");
	cr_assert_eq(p->period, 1);
	cr_assert_eq(p->time_nanos, 1700000000500000000ll);
	cr_assert_eq(p->duration_nanos, 12250000000ll);
	for (size_t i = 0; i < p->n_comment; i++) {
		version |= !strcmp(str(p, p->comment[i]), "asizeof-bpf " ASZ_VERSION);
		exact |= !strncmp(str(p, p->comment[i]), "exact", 5);
	}
	cr_assert(version && exact);

	/* pid 300's stack has only zeros: left out */
	cr_assert_eq(p->n_sample, 3);
	sm = sample_of(p, 100, "malloc");
	check_values(sm, 4, 4096, 2, 2048);
	cr_assert_str_eq(str(p, label(sm, p, "comm")->str), "app");
	cr_assert_eq(label(sm, p, "comm")->num, 0);
	cr_assert_eq(label(sm, p, "pid")->str, 0, "pid is a numeric label");
	cr_assert_eq(sm->n_label, 3);
	/* leaf first; addresses are the calls (return address - 1) */
	cr_assert_eq(sm->n_location_id, 2);
	cr_assert_eq(loc(p, sm->location_id[0])->address, 0x1000);
	cr_assert_eq(loc(p, sm->location_id[1])->address, 0x2000);
	/* no symbolizer: no mapping, no lines */
	cr_assert_eq(loc(p, sm->location_id[0])->mapping_id, 0);
	cr_assert_eq(loc(p, sm->location_id[0])->n_line, 0);

	sm = sample_of(p, 100, "calloc");
	check_values(sm, 1, 512, 1, 512);
	cr_assert_eq(sm->n_location_id, 3);
	/* the same return address in the same process is one location */
	cr_assert_eq(sm->location_id[0], sample_of(p, 100, "malloc")->location_id[0]);
	cr_assert_eq(loc(p, sm->location_id[1])->address, 0x3000);
	cr_assert_eq(loc(p, sm->location_id[2])->address, 0x4000);

	sm = sample_of(p, 200, "malloc");
	check_values(sm, 4, 64, 0, 0);
	cr_assert_str_eq(str(p, label(sm, p, "comm")->str), "db");
	/* another process: its own locations (another address space) */
	cr_assert_neq(sm->location_id[0], sample_of(p, 100, "malloc")->location_id[0]);
	cr_assert_eq(loc(p, sm->location_id[0])->address, 0x1000);
	/* 0x1000 0x2000 0x3000 0x4000 for pid 100, 0x1000 0x2000 for pid 200 */
	cr_assert_eq(p->n_location, 6);
	cr_assert_eq(p->n_mapping, 0);
	cr_assert_eq(p->n_function, 0);
	perftools__profiles__profile__free_unpacked(p, NULL);
	snapshot__free(s);
}

Test(pprof, empty_snapshot)
{
	struct snapshot *s = snapshot__new();
	Profile *p = write_profile(s, NULL);

	cr_assert_eq(p->n_sample, 0);
	cr_assert_eq(p->n_sample_type, 4);
	cr_assert_str_eq(str(p, p->default_sample_type), "inuse_space");
	perftools__profiles__profile__free_unpacked(p, NULL);
	snapshot__free(s);
}

/* The comments a profile carries, joined by newlines (for strstr). */
static void comments_of(const Profile *p, char *buf, size_t size)
{
	size_t len = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < p->n_comment && len < size; i++)
		len += snprintf(buf + len, size - len, "%s\n", str(p, p->comment[i]));
}

Test(pprof, profile_says_what_was_not_counted)
{
	struct snapshot *s = fixture();
	char text[1024];
	Profile *p;

	/* only informational counters: still every allocation counted, and the counters said */
	s->drops[ASZ_DROP_UNKNOWN_FREE] = 2;
	p = write_profile(s, NULL);
	comments_of(p, text, sizeof(text));
	cr_assert(strstr(text, "exact: every allocation counted\n"), "%s", text);
	cr_assert(strstr(text, "dropped: unknown_frees=2\n"), "%s", text);
	perftools__profiles__profile__free_unpacked(p, NULL);

	/* blocks not tracked, and --min-size: "every allocation counted" would be false */
	s->drops[ASZ_DROP_ALLOCS_FULL] = 90;
	s->drops[ASZ_DROP_STACK_TRUNCATED] = 7;
	s->min_size = 4096;
	p = write_profile(s, NULL);
	comments_of(p, text, sizeof(text));
	cr_assert_null(strstr(text, "every allocation counted"), "%s", text);
	cr_assert(strstr(text, "exact, except"), "%s", text);
	cr_assert(strstr(text, "blocks under 4096 bytes (--min-size) are not counted\n"), "%s",
		  text);
	cr_assert(strstr(text, "dropped: allocs_map_full=90 stack_truncated=7 unknown_frees=2\n"),
		  "%s", text);
	perftools__profiles__profile__free_unpacked(p, NULL);

	/* idle stacks retired: their allocations are in no sample's alloc_* values */
	memset(s->drops, 0, sizeof(s->drops));
	s->min_size = 0;
	s->drops[ASZ_DROP_AGGS_RETIRED] = 12;
	p = write_profile(s, NULL);
	comments_of(p, text, sizeof(text));
	cr_assert_null(strstr(text, "every allocation counted"), "%s", text);
	cr_assert(strstr(text, "alloc_* leave out 12 idle stacks retired for room (no block live: "
			       "inuse_* exact)\n"), "%s", text);
	cr_assert(strstr(text, "dropped: aggs_retired=12\n"), "%s", text);
	perftools__profiles__profile__free_unpacked(p, NULL);

	/* nothing lost, every size: no such comment */
	memset(s->drops, 0, sizeof(s->drops));
	p = write_profile(s, NULL);
	comments_of(p, text, sizeof(text));
	cr_assert_null(strstr(text, "dropped"), "%s", text);
	cr_assert_null(strstr(text, "min-size"), "%s", text);
	perftools__profiles__profile__free_unpacked(p, NULL);
	snapshot__free(s);
}

Test(pprof, sampled_profile_says_so)
{
	struct snapshot *s = fixture();
	Profile *p;
	bool said = false;

	s->sample_bytes = 524288;
	p = write_profile(s, NULL);
	cr_assert_eq(p->period, 524288);
	for (size_t i = 0; i < p->n_comment; i++)
		said |= strstr(str(p, p->comment[i]), "sampled: one allocated byte in 524288") != NULL;
	cr_assert(said);
	perftools__profiles__profile__free_unpacked(p, NULL);
	snapshot__free(s);
}

/* Build-id of a file by eu-readelf (the oracle). */
static void readelf_build_id(const char *path, char *out, size_t size)
{
	char cmd[PATH_MAX + 64], line[512];
	FILE *f;

	out[0] = '\0';
	snprintf(cmd, sizeof(cmd), "eu-readelf -n '%s'", path);
	f = popen(cmd, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		char *b = strstr(line, "Build ID: ");

		if (b) {
			snprintf(out, size, "%s", b + strlen("Build ID: "));
			out[strcspn(out, " \n")] = '\0';
		}
	}
	pclose(f);
	cr_assert(out[0], "eu-readelf found no build-id in %s", path);
}

/* File offset of address addr of this process, from /proc/self/maps. */
static __u64 maps_file_offset(__u64 addr)
{
	FILE *f = fopen("/proc/self/maps", "r");
	unsigned long long start, end, off;
	char line[PATH_MAX + 128];
	__u64 res = UINT64_MAX;

	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%llx-%llx %*s %llx", &start, &end, &off) == 3 && addr >= start &&
		    addr < end)
			res = addr - start + off;
	fclose(f);
	cr_assert_neq(res, UINT64_MAX);
	return res;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

Test(pprof, symbolized_functions_inline_chain_and_mapping)
{
	struct symbolizer *sym = symbolizer__new();
	struct snapshot *s = snapshot__new();
	const Perftools__Profiles__Location *l0, *l1;
	const Perftools__Profiles__Mapping *m;
	const Perftools__Profiles__Function *fn;
	const Perftools__Profiles__Sample *sm;
	char exe[PATH_MAX], bid[256];
	int leaf_line = 0, lines[2] = {};
	__u64 ips[2];
	ssize_t n;
	Profile *p;

	ips[0] = (uintptr_t)pp_leaf(&leaf_line);
	ips[1] = (uintptr_t)pp_inl_outer(lines);
	cr_assert_eq(symbolizer__add_pid(sym, getpid()), 0);
	add_proc(s, getpid(), "unit", false);
	add_stack(s, getpid(), ASZ_MALLOC, 1, ips, 2, 100, 1, 100, 1);
	p = write_profile(s, sym);

	cr_assert_eq(p->n_sample, 1);
	sm = p->sample[0];
	check_values(sm, 1, 100, 1, 100);
	cr_assert_eq(sm->n_location_id, 2);
	l0 = loc(p, sm->location_id[0]);
	l1 = loc(p, sm->location_id[1]);
	cr_assert_eq(l0->address, ips[0] - 1);
	cr_assert_eq(l1->address, ips[1] - 1);

	cr_assert_eq(l0->n_line, 1);
	fn = p->function[l0->line[0]->function_id - 1];
	cr_assert_str_eq(str(p, fn->name), "pp_leaf");
	cr_assert_str_eq(base_name(str(p, fn->filename)), "test_pprof.c");
	cr_assert_eq(l0->line[0]->line, leaf_line);

	/* the inline chain: innermost first, the function it was inlined into last */
	cr_assert_eq(l1->n_line, 2);
	fn = p->function[l1->line[0]->function_id - 1];
	cr_assert_str_eq(str(p, fn->name), "pp_inl_inner");
	cr_assert_eq(l1->line[0]->line, lines[0]);
	fn = p->function[l1->line[1]->function_id - 1];
	cr_assert_str_eq(str(p, fn->name), "pp_inl_outer");
	cr_assert_eq(l1->line[1]->line, lines[1]);
	cr_assert_eq(p->n_function, 3);

	/* one mapping: this test binary's executable segment */
	cr_assert_eq(p->n_mapping, 1);
	cr_assert_eq(l0->mapping_id, 1);
	cr_assert_eq(l1->mapping_id, 1);
	m = p->mapping[0];
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	cr_assert_gt(n, 0);
	exe[n] = '\0';
	cr_assert_str_eq(str(p, m->filename), exe);
	readelf_build_id(exe, bid, sizeof(bid));
	cr_assert_str_eq(str(p, m->build_id), bid);
	cr_assert(m->memory_start <= l0->address && l0->address < m->memory_limit);
	cr_assert(m->memory_start <= l1->address && l1->address < m->memory_limit);
	cr_assert_eq(m->memory_start % 4096, 0);
	/* the file offset pprof derives is the one the kernel mapped */
	cr_assert_eq(l0->address - m->memory_start + m->file_offset, maps_file_offset(l0->address));
	cr_assert_eq(l1->address - m->memory_start + m->file_offset, maps_file_offset(l1->address));
	cr_assert(m->has_functions && m->has_filenames && m->has_line_numbers &&
		  m->has_inline_frames);
	perftools__profiles__profile__free_unpacked(p, NULL);
	snapshot__free(s);
	symbolizer__free(sym);
}

/* The mapping of the location the sample of pid has at depth i. */
static const Perftools__Profiles__Mapping *mapping_at(const Profile *p, __u32 pid, size_t i)
{
	const Perftools__Profiles__Sample *sm = sample_of(p, pid, "malloc");

	cr_assert_not_null(sm);
	cr_assert_gt(sm->n_location_id, i);
	cr_assert_gt(loc(p, sm->location_id[i])->mapping_id, 0);
	return p->mapping[loc(p, sm->location_id[i])->mapping_id - 1];
}

/*
 * profile.proto: "mapping[0] will be the main binary". Stacks that start in a library (libc
 * here, as C++ ones in libstdc++) used it first, and it was mapping[0]. Several processes:
 * the executable of the one with the lowest pid (a forked child, the same files mapped).
 */
Test(pprof, main_binary_is_mapping_zero)
{
	struct symbolizer *sym = symbolizer__new();
	struct snapshot *s = snapshot__new();
	struct snap_proc sp = {.comm = "unit"};
	char exe[PATH_MAX];
	int line, fds[2], status;
	__u32 first, other;
	__u64 ips[2];
	ssize_t n;
	pid_t child;
	Profile *p;

	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	cr_assert_gt(n, 0);
	exe[n] = '\0';
	ips[0] = (uintptr_t)&abort + 1;
	ips[1] = (uintptr_t)pp_leaf(&line);
	cr_assert_eq(pipe(fds), 0);
	child = fork();
	cr_assert_geq(child, 0);
	if (!child) {
		char c;

		close(fds[1]);
		_exit(read(fds[0], &c, 1) < 0);
	}
	close(fds[0]);
	first = (__u32)getpid() < (__u32)child ? (__u32)getpid() : (__u32)child;
	other = first == (__u32)child ? (__u32)getpid() : (__u32)child;
	cr_assert_eq(symbolizer__add_pid(sym, getpid()), 0);
	cr_assert_eq(symbolizer__add_pid(sym, child), 0);

	/* the executable unknown: the order of use, libc first */
	add_proc(s, getpid(), "unit", false);
	add_stack(s, getpid(), ASZ_MALLOC, 1, ips, 2, 100, 1, 100, 1);
	p = write_profile(s, sym);
	cr_assert_eq(p->n_mapping, 2);
	cr_assert_str_neq(str(p, p->mapping[0]->filename), exe);
	cr_assert_eq(mapping_at(p, getpid(), 0), p->mapping[0]);
	perftools__profiles__profile__free_unpacked(p, NULL);
	snapshot__free(s);

	/* known: the executable first */
	s = snapshot__new();
	sp.exe = exe;
	sp.pid = getpid();
	cr_assert_eq(snapshot__add_proc(s, &sp), 0);
	add_stack(s, getpid(), ASZ_MALLOC, 1, ips, 2, 100, 1, 100, 1);
	p = write_profile(s, sym);
	cr_assert_eq(p->n_mapping, 2);
	cr_assert_str_eq(str(p, p->mapping[0]->filename), exe);
	cr_assert_eq(mapping_at(p, getpid(), 1), p->mapping[0]);
	perftools__profiles__profile__free_unpacked(p, NULL);

	/* two processes, the other's stacks first (its mappings first in the model): the lowest
	 * pid's executable */
	sp.pid = child;
	cr_assert_eq(snapshot__add_proc(s, &sp), 0);
	s->nr_stacks = 0;
	add_stack(s, other, ASZ_MALLOC, 1, ips, 2, 100, 1, 100, 1);
	add_stack(s, first, ASZ_MALLOC, 1, ips, 2, 100, 1, 100, 1);
	p = write_profile(s, sym);
	cr_assert_eq(p->n_mapping, 4);
	cr_assert_str_eq(str(p, p->mapping[0]->filename), exe);
	cr_assert_eq(mapping_at(p, first, 1), p->mapping[0]);
	cr_assert_neq(mapping_at(p, other, 1), p->mapping[0]);
	perftools__profiles__profile__free_unpacked(p, NULL);

	close(fds[1]);
	cr_assert_eq(waitpid(child, &status, 0), child);
	snapshot__free(s);
	symbolizer__free(sym);
}

/* ---------------------------------------------------------------- model encoding options */

static Profile *encode(const struct pprof_model *m, const struct pprof_encode_opts *o)
{
	void *buf = NULL;
	size_t len = 0;
	Profile *p;

	cr_assert_eq(pprof_model__encode(m, o, &buf, &len), 0);
	p = decode(buf, len);
	free(buf);
	return p;
}

Test(pprof, filters_prune_and_values_override)
{
	struct pprof_builder *b = pprof_builder__new();
	struct snapshot *s = fixture();
	struct pprof_model *m = NULL;
	struct pprof_encode_opts o = {.duration_s = -1};
	struct pprof_key k = {.pid = 100, .allocator = ASZ_CALLOC, .stack_id = 7};
	__s64 vals[3 * PPROF_NR_VALUES] = {};
	bool said = false;
	ssize_t ci;
	Profile *p;

	cr_assert_eq(pprof_builder__build(b, s, NULL, &m), 0);
	/* samples are the non-zero stacks, sorted by (pid, allocator, stack) */
	cr_assert_eq(pprof_model__nr_samples(m), 3);
	cr_assert_eq(pprof_model__key(m, 0)->pid, 100);
	cr_assert_eq(pprof_model__key(m, 0)->allocator, ASZ_MALLOC);
	cr_assert_eq(pprof_model__key(m, 1)->allocator, ASZ_CALLOC);
	cr_assert_eq(pprof_model__key(m, 2)->pid, 200);
	ci = pprof_model__find(m, &k);
	cr_assert_eq(ci, 1);
	k.pid = 300;
	cr_assert_eq(pprof_model__find(m, &k), -1);

	o.pid = 200;
	p = encode(m, &o);
	cr_assert_eq(p->n_sample, 1);
	check_values(sample_of(p, 200, "malloc"), 4, 64, 0, 0);
	/* only what that sample uses */
	cr_assert_eq(p->n_location, 2);
	perftools__profiles__profile__free_unpacked(p, NULL);

	o.pid = 0;
	o.comm = "app";
	p = encode(m, &o);
	cr_assert_eq(p->n_sample, 2);
	cr_assert_not_null(sample_of(p, 100, "malloc"));
	cr_assert_not_null(sample_of(p, 100, "calloc"));
	cr_assert_eq(p->n_location, 4);
	perftools__profiles__profile__free_unpacked(p, NULL);

	o.comm = "nobody";
	p = encode(m, &o);
	cr_assert_eq(p->n_sample, 0);
	cr_assert_eq(p->n_location, 0);
	perftools__profiles__profile__free_unpacked(p, NULL);

	/* other values (a delta): negative ones stay, all-zero samples go */
	o.comm = NULL;
	vals[1 * PPROF_NR_VALUES + 0] = 3;
	vals[1 * PPROF_NR_VALUES + 1] = 300;
	vals[1 * PPROF_NR_VALUES + 2] = -1;
	vals[1 * PPROF_NR_VALUES + 3] = -512;
	o.values = vals;
	o.duration_s = 2.5;
	o.comment = "a window";
	p = encode(m, &o);
	cr_assert_eq(p->n_sample, 1);
	check_values(sample_of(p, 100, "calloc"), 3, 300, -1, -512);
	cr_assert_eq(p->duration_nanos, 2500000000ll);
	for (size_t i = 0; i < p->n_comment; i++)
		said |= !strcmp(str(p, p->comment[i]), "a window");
	cr_assert(said);
	perftools__profiles__profile__free_unpacked(p, NULL);
	pprof_model__free(m);
	pprof_builder__free(b);
	snapshot__free(s);
}

/* ---------------------------------------------------------------- deltas over a window */

/* One stack (pid 7, malloc, id 1) and, when other, a second one (pid 8). */
static struct snapshot *at(double t, __s64 live, __u64 allocs, bool other)
{
	struct snapshot *s = snapshot__new();

	s->mono_ns = (__u64)(t * 1e9);
	s->elapsed_s = t;
	add_proc(s, 7, "grow", false);
	add_stack(s, 7, ASZ_MALLOC, 1, ips_a, 2, live, live / 10, allocs * 10, allocs);
	if (other) {
		add_proc(s, 8, "other", false);
		add_stack(s, 8, ASZ_MALLOC, 1, ips_a, 2, 5, 1, 5, 1);
	}
	return s;
}

static struct serve_state *publish(struct serve_history *h, struct pprof_builder *b,
				   struct snapshot *s)
{
	struct pprof_model *m = NULL;
	struct serve_state *st = NULL;

	cr_assert_eq(pprof_builder__build(b, s, NULL, &m), 0);
	cr_assert_eq(serve_state__new(h, s, m, strdup("x"), 1, &st), 0);
	snapshot__free(s);
	return st;
}

static Profile *heap(const struct serve_state *st, double seconds, __u32 pid)
{
	struct serve_heap_query q = {.seconds = seconds, .pid = pid};
	void *buf = NULL;
	size_t len = 0;
	Profile *p;

	cr_assert_eq(serve_state__heap(st, &q, &buf, &len), 0);
	p = decode(buf, len);
	free(buf);
	return p;
}

Test(pprof, delta_over_window)
{
	struct serve_history *h = serve_history__new();
	struct pprof_builder *b = pprof_builder__new();
	struct serve_state *s1, *s2, *s3, *s4;
	Profile *p;

	/* t=1: 100 live (10 allocs); t=3: 300 (30) and pid 8 appears; t=6: 250 (40), pid 8 gone;
	 * t=7: pid 8 back (a new process under the same pid and stack) */
	s1 = publish(h, b, at(1, 100, 10, false));
	s2 = publish(h, b, at(3, 300, 30, true));
	s3 = publish(h, b, at(6, 250, 40, false));

	/* no window: everything since attach */
	p = heap(s3, 0, 0);
	cr_assert_eq(p->n_sample, 1);
	check_values(sample_of(p, 7, "malloc"), 40, 400, 25, 250);
	perftools__profiles__profile__free_unpacked(p, NULL);

	/* 2 s: from t=3 (3 s back, the newest at least 2 s old) */
	p = heap(s3, 2, 0);
	check_values(sample_of(p, 7, "malloc"), 10, 100, -5, -50);
	cr_assert_eq(p->duration_nanos, 3000000000ll);
	perftools__profiles__profile__free_unpacked(p, NULL);

	/* less than a nanosecond: the last interval, as any window shorter than it */
	p = heap(s3, 1e-10, 0);
	check_values(sample_of(p, 7, "malloc"), 10, 100, -5, -50);
	cr_assert_eq(p->duration_nanos, 3000000000ll);
	perftools__profiles__profile__free_unpacked(p, NULL);

	/* 5 s: from t=1 */
	p = heap(s3, 5, 0);
	check_values(sample_of(p, 7, "malloc"), 30, 300, 15, 150);
	cr_assert_eq(p->duration_nanos, 5000000000ll);
	perftools__profiles__profile__free_unpacked(p, NULL);

	/* longer than the history: since attach (the first snapshot counts from nothing) */
	p = heap(s3, 100, 0);
	check_values(sample_of(p, 7, "malloc"), 40, 400, 25, 250);
	cr_assert_eq(p->duration_nanos, 6000000000ll);
	perftools__profiles__profile__free_unpacked(p, NULL);

	/* an older state still answers for its own time */
	p = heap(s2, 1, 8);
	cr_assert_eq(p->n_sample, 1);
	check_values(sample_of(p, 8, "malloc"), 1, 5, 1, 5);
	perftools__profiles__profile__free_unpacked(p, NULL);

	/* pid 8 vanished at t=6 and is back at t=7: its window counts only the new process */
	s4 = publish(h, b, at(7, 250, 40, true));
	p = heap(s4, 5, 0);
	check_values(sample_of(p, 8, "malloc"), 1, 5, 1, 5);
	check_values(sample_of(p, 7, "malloc"), 30, 300, 15, 150);
	perftools__profiles__profile__free_unpacked(p, NULL);
	/* a window with no change at all: no samples */
	p = heap(s4, 0.5, 7);
	cr_assert_eq(p->n_sample, 0);
	perftools__profiles__profile__free_unpacked(p, NULL);

	serve_state__put(s1);
	serve_state__put(s2);
	serve_state__put(s3);
	serve_state__put(s4);
	serve_history__free(h);
	pprof_builder__free(b);
}

/*
 * Snapshots come a little late, by a varying amount: one a few ms short of N seconds old is
 * the base of an N-second window (the one an interval before it made the window an interval
 * longer than asked). One a second, each 100 bytes (10 allocations) more.
 */
Test(pprof, window_takes_a_snapshot_a_little_short_of_its_age)
{
	static const double t[] = {1, 2, 3.002, 4.001, 5};
	struct serve_history *h = serve_history__new();
	struct pprof_builder *b = pprof_builder__new();
	struct serve_state *st = NULL;
	Profile *p;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		serve_state__put(st);
		st = publish(h, b, at(t[i], 100 * (i + 1), 10 * (i + 1), false));
	}
	/* 2 s: from t=3.002, 1.998 s back (not from t=2: 3 s) */
	p = heap(st, 2, 0);
	cr_assert_eq(p->duration_nanos, 5000000000ll - (long long)(__u64)(3.002 * 1e9));
	check_values(sample_of(p, 7, "malloc"), 20, 200, 20, 200);
	perftools__profiles__profile__free_unpacked(p, NULL);
	/* 1 s: from t=4.001 */
	p = heap(st, 1, 0);
	cr_assert_eq(p->duration_nanos, 5000000000ll - (long long)(__u64)(4.001 * 1e9));
	check_values(sample_of(p, 7, "malloc"), 10, 100, 10, 100);
	perftools__profiles__profile__free_unpacked(p, NULL);
	/* 3 s: from t=2, exactly; 2.6 s is the same (t=3.002 is 0.6 s short, more than half) */
	for (int i = 0; i < 2; i++) {
		p = heap(st, i ? 2.6 : 3, 0);
		cr_assert_eq(p->duration_nanos, 3000000000ll);
		check_values(sample_of(p, 7, "malloc"), 30, 300, 30, 300);
		perftools__profiles__profile__free_unpacked(p, NULL);
	}
	/* a window shorter than the last interval is still that interval */
	p = heap(st, 0.3, 0);
	cr_assert_eq(p->duration_nanos, 5000000000ll - (long long)(__u64)(4.001 * 1e9));
	perftools__profiles__profile__free_unpacked(p, NULL);
	serve_state__put(st);
	serve_history__free(h);
	pprof_builder__free(b);
}

/*
 * A history over its bounds merges snapshots far back instead of dropping the oldest: every
 * window still reaches as far as asked (further, when coarse), recent ones stay exact, and the
 * values are those of the time the window covers. One allocation a second, 10 bytes live more.
 */
static void check_merged_windows(size_t max_changes, size_t max_snapshots)
{
	struct serve_history *h = serve_history__new();
	struct pprof_builder *b = pprof_builder__new();
	struct serve_state *st = NULL;
	size_t snaps, changes, coarse = 0;
	Profile *p;

	serve_history__set_limits(h, max_changes, max_snapshots);
	for (int t = 1; t <= 200; t++) {
		serve_state__put(st);
		/* pid 8 comes and goes: merged over, it leaves nothing */
		st = publish(h, b, at(t, 10 * t, t, t % 7 == 3));
		serve_history__size(h, &snaps, &changes);
		cr_assert_leq(snaps, max_snapshots);
		cr_assert(changes <= max_changes || snaps == 1, "%zu changes", changes);
	}
	for (int w = 1; w < 200; w++) {
		double d;

		p = heap(st, w, 7);
		d = p->duration_nanos / 1e9;
		cr_assert_geq(d, w, "a %d s window covers %.0f s", w, d);
		if (w <= 2)
			cr_assert_eq(d, w, "recent windows are exact");
		coarse += d > w;
		cr_assert_eq(p->n_sample, 1);
		check_values(sample_of(p, 7, "malloc"), d, 10 * d, d, 10 * d);
		perftools__profiles__profile__free_unpacked(p, NULL);
	}
	cr_assert_gt(coarse, 0, "the bounds were never reached");
	/* the first snapshot is never merged: since attach still works */
	p = heap(st, 1000, 7);
	cr_assert_eq(p->duration_nanos, 200000000000ll);
	check_values(sample_of(p, 7, "malloc"), 200, 2000, 200, 2000);
	perftools__profiles__profile__free_unpacked(p, NULL);
	p = heap(st, 150, 8);
	cr_assert_eq(p->n_sample, 0, "pid 8 is gone now, and no window may show it");
	perftools__profiles__profile__free_unpacked(p, NULL);
	serve_state__put(st);
	serve_history__free(h);
	pprof_builder__free(b);
}

/*
 * Changes of different stacks save nothing when merged: then the oldest snapshot goes, and the
 * recent windows stay whole (merging everything into one entry made every window 0 s). 30
 * stacks at attach, then one other stack allocating each second; 40 changes at most.
 */
Test(pprof, history_of_changes_to_different_stacks_keeps_recent_windows)
{
	struct serve_history *h = serve_history__new();
	struct pprof_builder *b = pprof_builder__new();
	struct serve_state *st = NULL;
	__u64 allocs[30] = {};
	size_t snaps, changes;
	Profile *p;

	serve_history__set_limits(h, 40, 100000);
	for (int t = 1; t <= 100; t++) {
		struct snapshot *s = snapshot__new();

		s->mono_ns = (__u64)t * 1000000000ull;
		s->elapsed_s = t;
		add_proc(s, 7, "grow", false);
		if (t > 1)
			allocs[t % 30]++;
		for (int k = 0; k < 30; k++)
			add_stack(s, 7, ASZ_MALLOC, k + 1, ips_a, 2, 10 + allocs[k], 1 + allocs[k],
				  10 + allocs[k], 1 + allocs[k]);
		serve_state__put(st);
		st = publish(h, b, s);
		serve_history__size(h, &snaps, &changes);
		cr_assert_leq(changes, 40);
		if (t < 20)
			continue;
		for (int w = 1; w <= 8; w++) {
			p = heap(st, w, 7);
			cr_assert_geq(p->duration_nanos, w * 1000000000ll, "t=%d: a %d s window "
				      "covers %lld ns", t, w, (long long)p->duration_nanos);
			perftools__profiles__profile__free_unpacked(p, NULL);
		}
	}
	serve_state__put(st);
	serve_history__free(h);
	pprof_builder__free(b);
}

Test(pprof, history_over_its_bounds_merges_far_back)
{
	check_merged_windows(1000000, 12); /* snapshots */
	check_merged_windows(40, 100000); /* changes: 1-2 a snapshot */
}

static __attribute__((noinline)) __u64 pprof_test_ret(void)
{
	return (__u64)(uintptr_t)__builtin_return_address(0);
}

/* What the builder read of module files lasts one model: system-wide, programs come and go. */
Test(pprof, builder_forgets_modules_no_longer_used)
{
	struct pprof_builder *b = pprof_builder__new();
	struct symbolizer *sym = symbolizer__new();
	struct pprof_model *m = NULL;
	__u64 ips[1] = {pprof_test_ret()};
	struct snapshot *s;

	cr_assert_eq(symbolizer__add_pid(sym, getpid()), 0);
	s = snapshot__new();
	add_proc(s, getpid(), "self", false);
	add_stack(s, getpid(), ASZ_MALLOC, 1, ips, 1, 8, 1, 8, 1);
	cr_assert_eq(pprof_builder__build(b, s, sym, &m), 0);
	cr_assert_eq(pprof_builder__nr_modules(b), 1, "this test program");
	pprof_model__free(m);
	cr_assert_eq(pprof_builder__build(b, s, sym, &m), 0);
	cr_assert_eq(pprof_builder__nr_modules(b), 1, "still used");
	pprof_model__free(m);
	snapshot__free(s);

	/* a snapshot whose stacks are in no module file */
	s = snapshot__new();
	add_proc(s, getpid(), "self", false);
	add_stack(s, getpid(), ASZ_MALLOC, 1, ips_a, 2, 8, 1, 8, 1);
	cr_assert_eq(pprof_builder__build(b, s, sym, &m), 0);
	cr_assert_eq(pprof_builder__nr_modules(b), 0);
	pprof_model__free(m);
	snapshot__free(s);
	symbolizer__free(sym);
	pprof_builder__free(b);
}

/* serve's profiles are of what processes hold now: an exited one holds nothing */
Test(pprof, serve_exited_process_holds_nothing)
{
	struct serve_history *h = serve_history__new();
	struct pprof_builder *b = pprof_builder__new();
	struct serve_state *s1, *s2;
	struct snapshot *s;
	Profile *p;

	pprof_builder__set_exited_held(b, false);
	s1 = publish(h, b, at(1, 100, 10, true));
	s = at(2, 100, 10, false);
	add_proc(s, 8, "other", true);
	add_stack(s, 8, ASZ_MALLOC, 1, ips_a, 2, 5, 1, 5, 1);
	s2 = publish(h, b, s);
	p = heap(s2, 0, 0);
	check_values(sample_of(p, 7, "malloc"), 10, 100, 10, 100);
	/* its allocations stay, its blocks are gone */
	check_values(sample_of(p, 8, "malloc"), 1, 5, 0, 0);
	perftools__profiles__profile__free_unpacked(p, NULL);
	/* the window sees them go */
	p = heap(s2, 1, 8);
	check_values(sample_of(p, 8, "malloc"), 0, 0, -1, -5);
	perftools__profiles__profile__free_unpacked(p, NULL);
	serve_state__put(s1);
	serve_state__put(s2);
	serve_history__free(h);
	pprof_builder__free(b);

	/* a report at the end keeps what an exited program leaked */
	s = fixture();
	add_stack(s, 200, ASZ_CALLOC, 4, ips_b, 3, 96, 3, 96, 3);
	p = write_profile(s, NULL);
	check_values(sample_of(p, 200, "calloc"), 3, 96, 3, 96);
	perftools__profiles__profile__free_unpacked(p, NULL);
	snapshot__free(s);
}

/* profile.proto strings are UTF-8: readers refuse a profile with other bytes */
Test(pprof, strings_are_valid_utf8)
{
	struct snapshot *s = snapshot__new();
	Profile *p;

	add_proc(s, 10, "abcdefghijklmn\xe2", false); /* a comm cut inside a character */
	add_proc(s, 11, "x\xfe\xff", false);
	add_proc(s, 12, "sur\xed\xa0\x80", false);
	add_stack(s, 10, ASZ_MALLOC, 1, ips_a, 2, 8, 1, 8, 1);
	add_stack(s, 11, ASZ_MALLOC, 1, ips_a, 2, 8, 1, 8, 1);
	add_stack(s, 12, ASZ_MALLOC, 1, ips_a, 2, 8, 1, 8, 1);
	p = write_profile(s, NULL);
	for (size_t i = 0; i < p->n_string_table; i++)
		cr_assert(util__utf8_valid(p->string_table[i]), "string %zu: %s", i,
			  p->string_table[i]);
	cr_assert_str_eq(str(p, label(sample_of(p, 10, "malloc"), p, "comm")->str),
			 "abcdefghijklmn\xef\xbf\xbd");
	cr_assert_str_eq(str(p, label(sample_of(p, 11, "malloc"), p, "comm")->str),
			 "x\xef\xbf\xbd\xef\xbf\xbd");
	cr_assert_str_eq(str(p, label(sample_of(p, 12, "malloc"), p, "comm")->str),
			 "sur\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	perftools__profiles__profile__free_unpacked(p, NULL);
	snapshot__free(s);
}

Test(pprof, history_is_bounded)
{
	struct pprof_builder *b = pprof_builder__new();
	struct serve_history *h;
	struct serve_state *st = NULL;
	size_t snaps, changes;
	Profile *p;
	int i;


	/* 4100 snapshots 0.1 s apart: at most SERVE_MAX_SNAPSHOTS kept, merged, none dropped */
	h = serve_history__new();
	for (i = 1; i <= SERVE_MAX_SNAPSHOTS + 4; i++) {
		serve_state__put(st);
		st = publish(h, b, at(i * 0.1, 10 * i, i, false));
	}
	serve_history__size(h, &snaps, &changes);
	cr_assert_eq(snaps, SERVE_MAX_SNAPSHOTS);
	p = heap(st, 1e5, 0);
	check_values(sample_of(p, 7, "malloc"), SERVE_MAX_SNAPSHOTS + 4,
		     10 * (SERVE_MAX_SNAPSHOTS + 4), SERVE_MAX_SNAPSHOTS + 4,
		     10 * (SERVE_MAX_SNAPSHOTS + 4));
	cr_assert_eq(p->duration_nanos, (SERVE_MAX_SNAPSHOTS + 4) * 100000000ll);
	perftools__profiles__profile__free_unpacked(p, NULL);
	serve_state__put(st);
	serve_history__free(h);

	/* 2000 snapshots 2 s apart: nothing older than SERVE_MAX_WINDOW_S is needed */
	h = serve_history__new();
	st = NULL;
	for (i = 1; i <= 2000; i++) {
		serve_state__put(st);
		st = publish(h, b, at(i * 2.0, 10 * i, i, false));
	}
	p = heap(st, 1e5, 0);
	/* the base is the snapshot exactly 3600 s before the last: i = 200 */
	check_values(sample_of(p, 7, "malloc"), 1800, 18000, 1800, 18000);
	cr_assert_eq(p->duration_nanos, 3600000000000ll);
	perftools__profiles__profile__free_unpacked(p, NULL);
	serve_state__put(st);
	serve_history__free(h);
	pprof_builder__free(b);
}

/* ---------------------------------------------------------------- serve's /metrics text */

/* The value of the series line starting with `series ` (which must appear exactly once). */
static long long metric(const char *text, const char *series)
{
	size_t n = strlen(series);
	const char *p = text, *found = NULL;

	for (; (p = strstr(p, series)); p += n)
		if ((p == text || p[-1] == '\n') && p[n] == ' ') {
			cr_assert_null(found, "%s twice", series);
			found = p;
		}
	cr_assert_not_null(found, "no %s in:\n%s", series, text);
	return atoll(found + n + 1);
}

/* Pids that cannot exist (above the kernel's maximum): their exe is unknown. */
#define NO_PID1 (1u << 23)
#define NO_PID2 ((1u << 23) + 1)

static struct snapshot *procs_at(double t)
{
	struct snapshot *s = snapshot__new();

	s->mono_ns = (__u64)(t * 1e9);
	s->elapsed_s = t;
	return s;
}

static void proc(struct snapshot *s, __u32 pid, const char *comm, bool exited, __s64 live,
		 __u64 alloc_bytes, __u64 allocs, __u64 frees, __s64 growth)
{
	struct snap_proc p = {.pid = pid, .exited = exited, .live_bytes = live,
			      .live_allocs = allocs - frees, .alloc_bytes = alloc_bytes,
			      .allocs = allocs, .frees = frees, .life_alloc_bytes = alloc_bytes,
			      .life_allocs = allocs, .life_frees = frees, .growth_total_bytes = growth};

	memcpy(p.comm, comm, strnlen(comm, ASZ_COMM_LEN));
	cr_assert_eq(snapshot__add_proc(s, &p), 0);
}

static char *update(struct serve_metrics *m, struct snapshot *s, int pid_labels)
{
	char *text = NULL;
	size_t len = 0;

	cr_assert_eq(serve_metrics__update(m, s, pid_labels, &text, &len), 0);
	cr_assert_eq(strlen(text), len);
	snapshot__free(s);
	return text;
}

#define APP "{comm=\"app\",exe=\"\"}"
#define U_FFFD "\xef\xbf\xbd"
#define NEW "{comm=\"new\",exe=\"\"}"

Test(serve_metrics, groups_stay_monotonic_across_exit_and_exec)
{
	struct serve_metrics *m = serve_metrics__new();
	struct snapshot *s;
	char *t;

	/* two processes of one group */
	s = procs_at(1);
	proc(s, NO_PID1, "app", false, 600, 1000, 10, 4, 600);
	proc(s, NO_PID2, "app", false, 50, 80, 2, 1, 50);
	t = update(m, s, 0);
	cr_assert_eq(metric(t, "asizeof_live_bytes" APP), 650);
	cr_assert_eq(metric(t, "asizeof_live_blocks" APP), 7);
	cr_assert_eq(metric(t, "asizeof_allocated_bytes_total" APP), 1080);
	cr_assert_eq(metric(t, "asizeof_allocations_total" APP), 12);
	cr_assert_eq(metric(t, "asizeof_frees_total" APP), 5);
	cr_assert_eq(metric(t, "asizeof_tracked_processes"), 2);
	cr_assert_eq(metric(t, "asizeof_build_info{version=\"" ASZ_VERSION "\"}"), 1);
	cr_assert_eq(metric(t, "asizeof_dropped_events_total{reason=\"missed_frees\"}"), 0);
	cr_assert_null(strstr(t, "pid="), "no pid label without --pid-labels");
	cr_assert_not_null(strstr(t, "# TYPE asizeof_allocated_bytes_total counter\n"));
	cr_assert_not_null(strstr(t, "# TYPE asizeof_live_bytes gauge\n"));
	free(t);

	/* the first exits (reported once more), the second execs into "new" */
	s = procs_at(2);
	proc(s, NO_PID1, "app", true, 100, 1100, 11, 10, 100);
	proc(s, NO_PID2, "new", false, 70, 130, 4, 2, 70);
	s->drops[ASZ_DROP_MISSED_FREE] = 3;
	t = update(m, s, 0);
	cr_assert_eq(metric(t, "asizeof_live_bytes" APP), 0); /* exited: holds nothing */
	cr_assert_eq(metric(t, "asizeof_allocated_bytes_total" APP), 1180);
	cr_assert_eq(metric(t, "asizeof_allocations_total" APP), 13);
	cr_assert_eq(metric(t, "asizeof_frees_total" APP), 11);
	/* what it did after the exec counts in the new group */
	cr_assert_eq(metric(t, "asizeof_live_bytes" NEW), 70);
	cr_assert_eq(metric(t, "asizeof_allocated_bytes_total" NEW), 50);
	cr_assert_eq(metric(t, "asizeof_allocations_total" NEW), 2);
	cr_assert_eq(metric(t, "asizeof_frees_total" NEW), 1);
	cr_assert_eq(metric(t, "asizeof_tracked_processes"), 1);
	cr_assert_eq(metric(t, "asizeof_dropped_events_total{reason=\"missed_frees\"}"), 3);
	free(t);

	/* the exited one is forgotten: its counts stay in the group */
	s = procs_at(3);
	proc(s, NO_PID2, "new", false, 90, 150, 5, 2, 90);
	t = update(m, s, 0);
	cr_assert_eq(metric(t, "asizeof_allocated_bytes_total" APP), 1180);
	cr_assert_eq(metric(t, "asizeof_allocations_total" APP), 13);
	cr_assert_eq(metric(t, "asizeof_frees_total" APP), 11);
	cr_assert_eq(metric(t, "asizeof_allocated_bytes_total" NEW), 70);
	cr_assert_eq(metric(t, "asizeof_live_bytes" NEW), 90);
	free(t);

	/* the pid is reused by another process of group "app": counters restart at 0 for it */
	s = procs_at(4);
	proc(s, NO_PID1, "app", false, 8, 8, 1, 0, 8);
	proc(s, NO_PID2, "new", false, 90, 150, 5, 2, 90);
	t = update(m, s, 0);
	cr_assert_eq(metric(t, "asizeof_allocated_bytes_total" APP), 1188);
	cr_assert_eq(metric(t, "asizeof_allocations_total" APP), 14);
	cr_assert_eq(metric(t, "asizeof_live_bytes" APP), 8);
	free(t);
	serve_metrics__free(m);
}

Test(serve_metrics, pid_labels_for_top_growers_and_escaping)
{
	struct serve_metrics *m = serve_metrics__new();
	char exe[PATH_MAX], series[PATH_MAX + 128];
	struct snapshot *s = procs_at(1);
	ssize_t n;
	char *t;

	proc(s, NO_PID1, "a\"b\\c\xff", false, 10, 10, 1, 0, 10);
	proc(s, NO_PID2, "small", false, 5, 5, 1, 0, 5);
	proc(s, getpid(), "unit", false, 1000, 1000, 1, 0, 1000);
	t = update(m, s, 2);
	/* label values escaped, invalid UTF-8 replaced */
	cr_assert_eq(metric(t, "asizeof_live_bytes{comm=\"a\\\"b\\\\c" U_FFFD "\",exe=\"\"}"), 10);
	/* a live process's executable */
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	cr_assert_gt(n, 0);
	exe[n] = '\0';
	snprintf(series, sizeof(series), "asizeof_live_bytes{comm=\"unit\",exe=\"%s\"}", exe);
	cr_assert_eq(metric(t, series), 1000);
	/* the two top growers only */
	snprintf(series, sizeof(series),
		 "asizeof_process_live_bytes{pid=\"%d\",comm=\"unit\",exe=\"%s\"}", getpid(), exe);
	cr_assert_eq(metric(t, series), 1000);
	snprintf(series, sizeof(series), "asizeof_process_growth_bytes{pid=\"%u\",comm=\"a\\\"b\\\\c" U_FFFD "\","
		 "exe=\"\"}", NO_PID1);
	cr_assert_eq(metric(t, series), 10);
	snprintf(series, sizeof(series), "pid=\"%u\"", NO_PID2);
	cr_assert_null(strstr(t, series));
	free(t);
	serve_metrics__free(m);
}

/* names that differ only in bytes that are not UTF-8 are one group, not two equal series */
Test(serve_metrics, invalid_utf8_names_are_one_group)
{
	struct serve_metrics *m = serve_metrics__new();
	struct snapshot *s = procs_at(1);
	const char *line, *series = "asizeof_live_bytes{comm=\"x" U_FFFD "\",exe=\"\"}";
	char *t;

	proc(s, NO_PID1, "x\xfe", false, 10, 10, 1, 0, 10);
	proc(s, NO_PID2, "x\xff", false, 20, 20, 1, 0, 20);
	t = update(m, s, 0);
	cr_assert(util__utf8_valid(t));
	cr_assert_eq(metric(t, series), 30);
	line = strstr(t, series);
	cr_assert_null(strstr(line + 1, series), "one series");
	free(t);
	serve_metrics__free(m);
}

/* an exec between two snapshots: the old image's last counts are not lost to the counters */
Test(serve_metrics, exec_keeps_the_old_images_last_counts)
{
	struct serve_metrics *m = serve_metrics__new();
	struct snapshot *s = procs_at(1);
	struct snap_proc *p;
	char *t;

	proc(s, NO_PID1, "app", false, 100, 100, 1, 0, 100);
	t = update(m, s, 0);
	cr_assert_eq(metric(t, "asizeof_allocated_bytes_total" APP), 100);
	free(t);
	/* then 50 more bytes, the exec, and 70 in the new image: 220 in all since attach */
	s = procs_at(2);
	proc(s, NO_PID1, "app", false, 70, 70, 1, 0, 70);
	p = &s->procs[0];
	p->gen = 1;
	p->life_alloc_bytes = 220;
	p->life_allocs = 3;
	p->life_frees = 0;
	t = update(m, s, 0);
	cr_assert_eq(metric(t, "asizeof_allocated_bytes_total" APP), 220);
	cr_assert_eq(metric(t, "asizeof_allocations_total" APP), 3);
	cr_assert_eq(metric(t, "asizeof_live_bytes" APP), 70);
	free(t);
	serve_metrics__free(m);
}
