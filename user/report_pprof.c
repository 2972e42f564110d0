// SPDX-License-Identifier: MIT
/*
 * pprof output: a gzipped profile.proto (protobuf-c + zlib) that `go tool pprof`, Pyroscope,
 * Parca and Grafana read. The model (serve_profile.h) is built from a snapshot once, then
 * encoded: `-f pprof` encodes it whole, `serve` many times with filters and deltas.
 *
 * Locations are keyed by (pid, return address): the address is the frame's (return address
 * - 1, the call instruction), its lines the inline chain innermost first, as pprof wants.
 * Mappings are per (pid, module file, PT_LOAD segment), read from the module's ELF program
 * headers, with the GNU build-id note as build_id. Every mapping says it has functions, so
 * pprof never tries to symbolize again (remotely through /debug/pprof/symbol, or locally from
 * files that may be gone).
 */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <elfutils/libdwelf.h>
#include "cmd.h"
#include "profile.pb-c.h"
#include "report.h"
#include "serve_profile.h"
#include "util.h"

/* Frames one return address can expand to (its inline chain); deeper chains are cut. */
#define PPROF_MAX_INLINE 32

/* Strings every model has, at these indexes of its string table. */
enum {
	S_EMPTY = 0,
	S_ALLOC_OBJECTS,
	S_COUNT,
	S_ALLOC_SPACE,
	S_BYTES,
	S_INUSE_OBJECTS,
	S_INUSE_SPACE,
	S_SPACE,
	S_PID,
	S_COMM,
	S_ALLOCATOR,
	S_VERSION,
	S_NR_FIXED,
};

static const char *const fixed_strings[S_NR_FIXED] = {
	[S_EMPTY] = "",
	[S_ALLOC_OBJECTS] = "alloc_objects",
	[S_COUNT] = "count",
	[S_ALLOC_SPACE] = "alloc_space",
	[S_BYTES] = "bytes",
	[S_INUSE_OBJECTS] = "inuse_objects",
	[S_INUSE_SPACE] = "inuse_space",
	[S_SPACE] = "space",
	[S_PID] = "pid",
	[S_COMM] = "comm",
	[S_ALLOCATOR] = "allocator",
	[S_VERSION] = "asizeof-bpf " ASZ_VERSION,
};

struct pm_mapping {
	__u32 pid;
	__u32 file;	/* string index */
	__u32 build_id; /* string index */
	__u64 start, limit, offset;
	bool has_files, has_lines;
	bool exe; /* of the process's executable: the main binary */
};

struct pm_function {
	__u32 name, file; /* string indexes */
};

struct pm_location {
	__u32 pid;
	__u32 mapping; /* index + 1; 0: none */
	__u64 ip;      /* the return address: the key */
	__u64 addr;    /* what pprof sees: ip - 1 */
	__u32 first_line, nr_lines;
};

struct pm_line {
	__u32 func; /* index */
	__s64 line;
};

struct pm_sample {
	struct pprof_key key;
	__u32 comm, allocator; /* string indexes */
	__s64 v[PPROF_NR_VALUES];
	__u32 first_loc, nr_locs; /* in stack_locs */
};

struct pprof_model {
	char **strs;
	size_t nr_strs, cap_strs;
	struct pm_mapping *maps;
	size_t nr_maps, cap_maps;
	struct pm_function *funcs;
	size_t nr_funcs, cap_funcs;
	struct pm_location *locs;
	size_t nr_locs, cap_locs;
	struct pm_line *lines;
	size_t nr_lines, cap_lines;
	struct pm_sample *samples;
	size_t nr_samples, cap_samples;
	__u32 *stack_locs; /* location indexes, innermost first */
	size_t nr_stack_locs, cap_stack_locs;
	__s64 time_ns;
	double elapsed_s;
	__u64 sample_bytes;
	__u32 mode_comment; /* string index: exact or sampled */
	/* string indexes: what --min-size left out, the drop counters (0: none) */
	__u32 min_size_comment, drops_comment, retired_comment;
};

/* ---------------------------------------------------------------- small tools */

static __u64 hash_mix(__u64 x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static __u64 hash_str(const char *s)
{
	__u64 h = 0xcbf29ce484222325ull;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 0x100000001b3ull;
	return hash_mix(h);
}

/* An index over an array: open addressing, slots hold the element's hash and index + 1. */
struct hslot {
	__u64 h;
	__u32 idx1;
};

struct hidx {
	struct hslot *slots;
	size_t cap, len; /* cap: a power of two, or 0 */
};

typedef bool (*hidx_eq_fn)(const void *ctx, __u32 idx, const void *key);

static long hidx_find(const struct hidx *t, __u64 h, hidx_eq_fn eq, const void *ctx,
		      const void *key)
{
	size_t i;

	if (!t->cap)
		return -1;
	for (i = h & (t->cap - 1); t->slots[i].idx1; i = (i + 1) & (t->cap - 1))
		if (t->slots[i].h == h && eq(ctx, t->slots[i].idx1 - 1, key))
			return t->slots[i].idx1 - 1;
	return -1;
}

static int hidx_add(struct hidx *t, __u64 h, __u32 idx)
{
	size_t i;

	if ((t->len + 1) * 2 > t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 256;
		struct hslot *ns = calloc(ncap, sizeof(*ns));

		if (!ns)
			return -ENOMEM;
		for (size_t j = 0; j < t->cap; j++) {
			if (!t->slots[j].idx1)
				continue;
			for (i = t->slots[j].h & (ncap - 1); ns[i].idx1; i = (i + 1) & (ncap - 1))
				;
			ns[i] = t->slots[j];
		}
		free(t->slots);
		t->slots = ns;
		t->cap = ncap;
	}
	for (i = h & (t->cap - 1); t->slots[i].idx1; i = (i + 1) & (t->cap - 1))
		;
	t->slots[i] = (struct hslot){.h = h, .idx1 = idx + 1};
	t->len++;
	return 0;
}

static void hidx_free(struct hidx *t)
{
	free(t->slots);
	*t = (struct hidx){};
}

/* ---------------------------------------------------------------- ELF facts per module file */

struct elf_seg {
	__u64 vaddr, memsz, offset;
};

struct elf_info {
	char *path; /* the key: the module's path (and file identity, where the symbolizer has it) */
	char *build_id; /* lowercase hex, or NULL */
	struct elf_seg *segs;
	size_t nr_segs;
	bool used; /* by the model being built: the others are forgotten after it */
};

struct pprof_builder {
	struct elf_info *elfs;
	size_t nr_elfs, cap_elfs;
	struct hidx idx;
	bool exited_released; /* see pprof_builder__set_exited_held() */
};

/* The segments and build-id of a module file. */
static void read_elf(struct elf_info *ei, Elf *e)
{
	const void *id = NULL;
	size_t n = 0, i;
	ssize_t len;

	if (elf_kind(e) != ELF_K_ELF || elf_getphdrnum(e, &n))
		return;
	ei->segs = calloc(n ? n : 1, sizeof(*ei->segs));
	if (!ei->segs)
		return;
	for (i = 0; i < n; i++) {
		GElf_Phdr ph;

		if (gelf_getphdr(e, i, &ph) && ph.p_type == PT_LOAD && ph.p_memsz)
			ei->segs[ei->nr_segs++] = (struct elf_seg){
				.vaddr = ph.p_vaddr, .memsz = ph.p_memsz, .offset = ph.p_offset};
	}
	len = dwelf_elf_gnu_build_id(e, &id);
	if (len > 0 && len <= 64) {
		ei->build_id = malloc(len * 2 + 1);
		for (i = 0; ei->build_id && i < (size_t)len; i++)
			snprintf(ei->build_id + i * 2, 3, "%02x", ((const unsigned char *)id)[i]);
	}
}

/* The same of a module file the symbolizer does not hold, by path. */
static void read_elf_path(struct elf_info *ei, const char *path, __u32 pid)
{
	char alt[PATH_MAX];
	Elf *e;
	int fd = -1;

	/* the path is in the process's mount namespace (a container's): its root, while it lives */
	if (pid && snprintf(alt, sizeof(alt), "/proc/%u/root%s", pid, path) < (int)sizeof(alt))
		fd = open(alt, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	elf_version(EV_CURRENT);
	e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (e) {
		read_elf(ei, e);
		elf_end(e);
	}
	close(fd);
}

static bool elf_eq(const void *ctx, __u32 idx, const void *key)
{
	return strcmp(((const struct pprof_builder *)ctx)->elfs[idx].path, key) == 0;
}

/*
 * What the module file of frame fr of pid says (read once; NULL only when out of memory). By
 * the file the symbolizer holds where it can: by path, a deleted file had no build-id, and
 * two containers' libraries at one path shared the first one's.
 */
static const struct elf_info *elf_get(struct pprof_builder *b, struct symbolizer *sym, __u32 pid,
				      const struct sym_frame *fr)
{
	const char *path = fr->module;
	__u64 dev = 0, ino = 0, h;
	Elf *elf = sym ? symbolizer__module_elf(sym, pid, fr->addr + 1, &dev, &ino) : NULL;
	struct elf_info *ei;
	char *key = NULL;
	long i;

	if (elf && asprintf(&key, "%s\n%llx:%llu", path, (unsigned long long)dev,
			    (unsigned long long)ino) < 0)
		return NULL;
	if (key)
		path = key;
	h = hash_str(path);
	i = hidx_find(&b->idx, h, elf_eq, b, path);
	if (i >= 0) {
		free(key);
		b->elfs[i].used = true;
		return &b->elfs[i];
	}
	if (util__reserve(&b->elfs, &b->cap_elfs, b->nr_elfs + 1, sizeof(*b->elfs), 64)) {
		free(key);
		return NULL;
	}
	ei = &b->elfs[b->nr_elfs];
	*ei = (struct elf_info){.path = key ? key : strdup(path), .used = true};
	if (!ei->path || hidx_add(&b->idx, h, b->nr_elfs)) {
		free(ei->path);
		return NULL;
	}
	b->nr_elfs++;
	if (elf)
		read_elf(ei, elf);
	else
		read_elf_path(ei, path, pid);
	return ei;
}

struct pprof_builder *pprof_builder__new(void)
{
	return calloc(1, sizeof(struct pprof_builder));
}

void pprof_builder__set_exited_held(struct pprof_builder *b, bool held)
{
	b->exited_released = !held;
}

static void elf_info_free(struct elf_info *ei)
{
	free(ei->path);
	free(ei->build_id);
	free(ei->segs);
}

/*
 * Forget the module files the last model did not use (serve builds one a snapshot: system-wide,
 * every program ever run would stay here), and reindex the rest.
 */
static void elf_sweep(struct pprof_builder *b)
{
	size_t i, j;

	for (i = j = 0; i < b->nr_elfs; i++) {
		if (!b->elfs[i].used) {
			elf_info_free(&b->elfs[i]);
			continue;
		}
		b->elfs[i].used = false;
		b->elfs[j++] = b->elfs[i];
	}
	if (j == b->nr_elfs)
		return;
	b->nr_elfs = j;
	hidx_free(&b->idx);
	for (i = 0; i < b->nr_elfs; i++) {
		if (hidx_add(&b->idx, hash_str(b->elfs[i].path), i)) {
			/* out of memory: forget them all (they are read again when needed) */
			for (j = 0; j < b->nr_elfs; j++)
				elf_info_free(&b->elfs[j]);
			b->nr_elfs = 0;
			hidx_free(&b->idx);
			return;
		}
	}
}

size_t pprof_builder__nr_modules(const struct pprof_builder *b)
{
	return b->nr_elfs;
}

void pprof_builder__free(struct pprof_builder *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->nr_elfs; i++)
		elf_info_free(&b->elfs[i]);
	free(b->elfs);
	hidx_free(&b->idx);
	free(b);
}

/* ---------------------------------------------------------------- building a model */

struct build {
	struct pprof_builder *b;
	struct pprof_model *m;
	struct symbolizer *sym;
	struct hidx strs, maps, funcs, locs;
	long page;
};

static bool str_eq(const void *ctx, __u32 idx, const void *key)
{
	return strcmp(((const struct pprof_model *)ctx)->strs[idx], key) == 0;
}

/*
 * Index of s in the string table (added if new), or -1 when out of memory. profile.proto's
 * strings must be UTF-8 (readers refuse the profile otherwise): other bytes become U+FFFD.
 */
static long intern(struct build *bd, const char *s)
{
	struct pprof_model *m = bd->m;
	__u64 h;
	long i;
	char *copy;

	if (!util__utf8_valid(s)) {
		copy = util__utf8_dup(s);
		i = copy ? intern(bd, copy) : -1;
		free(copy);
		return i;
	}
	h = hash_str(s);
	i = hidx_find(&bd->strs, h, str_eq, m, s);
	if (i >= 0)
		return i;
	if (util__reserve(&m->strs, &m->cap_strs, m->nr_strs + 1, sizeof(*m->strs), 64))
		return -1;
	copy = strdup(s);
	if (!copy || hidx_add(&bd->strs, h, m->nr_strs)) {
		free(copy);
		return -1;
	}
	m->strs[m->nr_strs] = copy;
	return m->nr_strs++;
}

struct map_key {
	__u32 pid, file;
	__u64 start;
};

static bool map_eq(const void *ctx, __u32 idx, const void *key)
{
	const struct pm_mapping *mp = &((const struct pprof_model *)ctx)->maps[idx];
	const struct map_key *k = key;

	return mp->pid == k->pid && mp->file == k->file && mp->start == k->start;
}

/*
 * The mapping holding frame fr of pid (exe: its executable, or NULL) as index + 1, 0 if none,
 * -1 when out of memory.
 */
static long mapping_of(struct build *bd, __u32 pid, const char *exe, const struct sym_frame *fr)
{
	struct pprof_model *m = bd->m;
	const struct elf_info *ei;
	const struct elf_seg *seg = NULL;
	struct pm_mapping *mp;
	struct map_key k;
	__u64 bias, mask = ~(__u64)(bd->page - 1), h;
	long file, bid = S_EMPTY, i;

	if (!fr->module)
		return 0;
	file = intern(bd, fr->module);
	ei = elf_get(bd->b, bd->sym, pid, fr);
	if (file < 0 || !ei)
		return -1;
	if (ei->build_id && (bid = intern(bd, ei->build_id)) < 0)
		return -1;
	bias = fr->addr - fr->module_offset;
	for (size_t j = 0; j < ei->nr_segs; j++)
		if (fr->module_offset >= ei->segs[j].vaddr &&
		    fr->module_offset - ei->segs[j].vaddr < ei->segs[j].memsz)
			seg = &ei->segs[j];
	/* without the file's segments: the whole module from its load bias */
	k = (struct map_key){.pid = pid, .file = file,
			     .start = seg ? bias + (seg->vaddr & mask) : bias};
	h = hash_mix(hash_mix(((__u64)pid << 32) | (__u32)file) ^ k.start);
	i = hidx_find(&bd->maps, h, map_eq, m, &k);
	if (i >= 0) {
		mp = &m->maps[i];
		if (!seg && fr->addr >= mp->limit)
			mp->limit = fr->addr + 1;
		return i + 1;
	}
	if (util__reserve(&m->maps, &m->cap_maps, m->nr_maps + 1, sizeof(*m->maps), 64) ||
	    hidx_add(&bd->maps, h, m->nr_maps))
		return -1;
	mp = &m->maps[m->nr_maps];
	*mp = (struct pm_mapping){.pid = pid, .file = file, .build_id = bid, .start = k.start};
	/* both named by the kernel's d_path(): /proc/PID/exe and /proc/PID/maps */
	mp->exe = exe && strcmp(exe, fr->module) == 0;
	if (seg) {
		mp->limit = (bias + seg->vaddr + seg->memsz + bd->page - 1) & mask;
		mp->offset = seg->offset & mask;
	} else {
		mp->limit = fr->addr + 1;
		mp->offset = 0;
	}
	return ++m->nr_maps;
}

static bool func_eq(const void *ctx, __u32 idx, const void *key)
{
	const struct pm_function *f = &((const struct pprof_model *)ctx)->funcs[idx];
	const struct pm_function *k = key;

	return f->name == k->name && f->file == k->file;
}

/* Index of the function (name, file), or -1 when out of memory. */
static long function_of(struct build *bd, const char *name, const char *file)
{
	struct pprof_model *m = bd->m;
	struct pm_function k;
	long n = intern(bd, name), f = file ? intern(bd, file) : S_EMPTY, i;
	__u64 h;

	if (n < 0 || f < 0)
		return -1;
	k = (struct pm_function){.name = n, .file = f};
	h = hash_mix(((__u64)n << 32) | (__u32)f);
	i = hidx_find(&bd->funcs, h, func_eq, m, &k);
	if (i >= 0)
		return i;
	if (util__reserve(&m->funcs, &m->cap_funcs, m->nr_funcs + 1, sizeof(*m->funcs), 64) ||
	    hidx_add(&bd->funcs, h, m->nr_funcs))
		return -1;
	m->funcs[m->nr_funcs] = k;
	return m->nr_funcs++;
}

struct loc_key {
	__u32 pid;
	__u64 ip;
};

static bool loc_eq(const void *ctx, __u32 idx, const void *key)
{
	const struct pm_location *l = &((const struct pprof_model *)ctx)->locs[idx];
	const struct loc_key *k = key;

	return l->pid == k->pid && l->ip == k->ip;
}

/*
 * Index of the location of return address ip in pid, whose executable is exe (NULL: unknown),
 * symbolized when new; -1 when out of memory.
 */
static long location_of(struct build *bd, __u32 pid, const char *exe, __u64 ip)
{
	struct pprof_model *m = bd->m;
	struct sym_frame frames[PPROF_MAX_INLINE];
	struct loc_key k = {.pid = pid, .ip = ip};
	__u64 h = hash_mix(hash_mix(pid) ^ ip);
	struct pm_location *l;
	long i, map;
	int n;

	i = hidx_find(&bd->locs, h, loc_eq, m, &k);
	if (i >= 0)
		return i;
	n = bd->sym ? symbolizer__resolve(bd->sym, pid, ip, frames, PPROF_MAX_INLINE) : 0;
	if (n <= 0) {
		memset(frames, 0, sizeof(frames[0]));
		frames[0].addr = ip ? ip - 1 : 0;
		n = 1;
	}
	/* every frame of the chain is the same address; the outermost names the module */
	map = mapping_of(bd, pid, exe, &frames[n - 1]);
	if (map < 0 || util__reserve(&m->locs, &m->cap_locs, m->nr_locs + 1, sizeof(*m->locs), 64))
		return -1;
	l = &m->locs[m->nr_locs];
	*l = (struct pm_location){.pid = pid, .mapping = map, .ip = ip, .addr = frames[0].addr,
				  .first_line = m->nr_lines};
	for (int j = 0; j < n; j++) {
		long f;

		if (!frames[j].func)
			continue;
		f = function_of(bd, frames[j].func, frames[j].file);
		if (f < 0 ||
		    util__reserve(&m->lines, &m->cap_lines, m->nr_lines + 1, sizeof(*m->lines), 64))
			return -1;
		m->lines[m->nr_lines++] = (struct pm_line){.func = f, .line = frames[j].line};
		l->nr_lines++;
		if (map && frames[j].file)
			m->maps[map - 1].has_files = true;
		if (map && frames[j].line > 0)
			m->maps[map - 1].has_lines = true;
	}
	if (hidx_add(&bd->locs, h, m->nr_locs))
		return -1;
	return m->nr_locs++;
}

/* Keys of the marker locations: no return address is this small. */
#define MARK_UNKNOWN 0 /* a block recorded under no stack */
#define MARK_TRUNCATED 1 /* the stack goes on past --max-depth */

/*
 * The location standing for what a stack does not hold, as the collapsed format's markers: no
 * address, no mapping, one line naming it. Index, or -1 when out of memory.
 */
static long marker_location(struct build *bd, __u32 pid, __u64 mark)
{
	struct pprof_model *m = bd->m;
	struct loc_key k = {.pid = pid, .ip = mark};
	__u64 h = hash_mix(hash_mix(pid) ^ mark);
	long i, f;

	i = hidx_find(&bd->locs, h, loc_eq, m, &k);
	if (i >= 0)
		return i;
	f = function_of(bd, mark == MARK_TRUNCATED ? "[truncated]" : "[unknown]", NULL);
	if (f < 0 || util__reserve(&m->locs, &m->cap_locs, m->nr_locs + 1, sizeof(*m->locs), 64) ||
	    util__reserve(&m->lines, &m->cap_lines, m->nr_lines + 1, sizeof(*m->lines), 64))
		return -1;
	m->locs[m->nr_locs] = (struct pm_location){.pid = pid, .ip = mark,
						   .first_line = m->nr_lines, .nr_lines = 1};
	m->lines[m->nr_lines++] = (struct pm_line){.func = f};
	if (hidx_add(&bd->locs, h, m->nr_locs))
		return -1;
	return m->nr_locs++;
}

void pprof__stack_values(const struct snap_stack *st, bool held, __s64 v[PPROF_NR_VALUES])
{
	v[PPROF_ALLOC_OBJECTS] = st->allocs;
	v[PPROF_ALLOC_SPACE] = st->alloc_bytes;
	v[PPROF_INUSE_OBJECTS] = held ? st->live_allocs : 0;
	v[PPROF_INUSE_SPACE] = held ? st->live_bytes : 0;
}

int pprof_key__cmp(const struct pprof_key *a, const struct pprof_key *b)
{
	if (a->pid != b->pid)
		return a->pid < b->pid ? -1 : 1;
	if (a->allocator != b->allocator)
		return a->allocator < b->allocator ? -1 : 1;
	if (a->stack_id != b->stack_id)
		return a->stack_id < b->stack_id ? -1 : 1;
	return 0;
}

static int cmp_sample(const void *a, const void *b)
{
	return pprof_key__cmp(&((const struct pm_sample *)a)->key,
			      &((const struct pm_sample *)b)->key);
}

static int add_sample(struct build *bd, const struct snapshot *s, const struct snap_stack *st)
{
	struct pprof_model *m = bd->m;
	const struct snap_proc *p = snapshot__find_proc(s, st->pid);
	struct pm_sample *sm;
	__s64 v[PPROF_NR_VALUES];
	char comm[ASZ_COMM_LEN + 1] = "";
	__u32 nr;
	long c, a;

	pprof__stack_values(st, !(bd->b->exited_released && p && p->exited), v);
	if (!v[0] && !v[1] && !v[2] && !v[3])
		return 0;
	if (p)
		memcpy(comm, p->comm, ASZ_COMM_LEN);
	c = intern(bd, comm);
	a = intern(bd, snapshot__allocator_name(st->allocator) ?: "unknown");
	if (c < 0 || a < 0 ||
	    util__reserve(&m->samples, &m->cap_samples, m->nr_samples + 1, sizeof(*sm), 64))
		return -ENOMEM;
	sm = &m->samples[m->nr_samples++];
	*sm = (struct pm_sample){.key = {.pid = st->pid, .allocator = st->allocator,
					 .stack_id = st->stack_id},
				 .comm = c, .allocator = a, .first_loc = m->nr_stack_locs};
	memcpy(sm->v, v, sizeof(v));
	nr = st->ips ? st->nr_frames : 0;
	/* outermost last: a stack cut at --max-depth ends in [truncated], no stack is [unknown] */
	for (__u32 i = 0; i < nr + 1; i++) {
		long l;

		if (i < nr)
			l = location_of(bd, st->pid, p ? p->exe : NULL, st->ips[i]);
		else if (!nr || (st->flags & ASZ_STACK_PARTIAL))
			l = marker_location(bd, st->pid, nr ? MARK_TRUNCATED : MARK_UNKNOWN);
		else
			break;
		if (l < 0 || util__reserve(&m->stack_locs, &m->cap_stack_locs, m->nr_stack_locs + 1,
					   sizeof(*m->stack_locs), 64))
			return -ENOMEM;
		m->stack_locs[m->nr_stack_locs++] = l;
		sm->nr_locs++;
	}
	return 0;
}

int pprof_builder__build(struct pprof_builder *b, const struct snapshot *s,
			 struct symbolizer *sym, struct pprof_model **out)
{
	struct build bd = {.b = b, .sym = sym, .page = sysconf(_SC_PAGESIZE)};
	char mode[128], drops[SNAPSHOT_DROPS_TEXT];
	bool lost = false;
	long i;
	int err = -ENOMEM;

	*out = NULL;
	if (!b || !s)
		return -EINVAL;
	if (bd.page <= 0)
		bd.page = 4096;
	bd.m = calloc(1, sizeof(*bd.m));
	if (!bd.m)
		return -ENOMEM;
	for (i = 0; i < S_NR_FIXED; i++)
		if (intern(&bd, fixed_strings[i]) != i)
			goto cleanup;
	for (i = 0; i < ASZ_NR_DROPS; i++)
		lost |= s->drops[i] && snapshot__drop_is_loss(i);
	/* "every allocation counted" is said only when it is true */
	if (s->sample_bytes)
		snprintf(mode, sizeof(mode), "sampled: one allocated byte in %llu, values estimated",
			 (unsigned long long)s->sample_bytes);
	else if (s->min_size || lost || s->drops[ASZ_DROP_AGGS_RETIRED])
		snprintf(mode, sizeof(mode), "exact, except what the next comments say was not "
			 "recorded");
	else
		snprintf(mode, sizeof(mode), "exact: every allocation counted");
	i = intern(&bd, mode);
	if (i < 0)
		goto cleanup;
	bd.m->mode_comment = i;
	if (s->min_size) {
		snprintf(mode, sizeof(mode), "blocks under %llu bytes (--min-size) are not counted",
			 (unsigned long long)s->min_size);
		i = intern(&bd, mode);
		if (i < 0)
			goto cleanup;
		bd.m->min_size_comment = i;
	}
	if (s->drops[ASZ_DROP_AGGS_RETIRED]) {
		snprintf(mode, sizeof(mode), "alloc_* leave out %llu idle stacks retired for room "
			 "(no block live: inuse_* exact)",
			 (unsigned long long)s->drops[ASZ_DROP_AGGS_RETIRED]);
		i = intern(&bd, mode);
		if (i < 0)
			goto cleanup;
		bd.m->retired_comment = i;
	}
	/* the profile has no other place for what was lost: say it as the text report does */
	strcpy(drops, "dropped: ");
	if (snapshot__drops_text(s, drops + strlen(drops), sizeof(drops) - strlen(drops))) {
		i = intern(&bd, drops);
		if (i < 0)
			goto cleanup;
		bd.m->drops_comment = i;
	}
	bd.m->time_ns = (__s64)(s->time * 1e9);
	bd.m->elapsed_s = s->elapsed_s;
	bd.m->sample_bytes = s->sample_bytes;
	for (size_t j = 0; j < s->nr_stacks; j++) {
		err = add_sample(&bd, s, &s->stacks[j]);
		if (err)
			goto cleanup;
	}
	if (bd.m->nr_samples)
		qsort(bd.m->samples, bd.m->nr_samples, sizeof(*bd.m->samples), cmp_sample);
	elf_sweep(b);
	*out = bd.m;
	bd.m = NULL;
	err = 0;
cleanup:
	pprof_model__free(bd.m);
	hidx_free(&bd.strs);
	hidx_free(&bd.maps);
	hidx_free(&bd.funcs);
	hidx_free(&bd.locs);
	return err;
}

void pprof_model__free(struct pprof_model *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->nr_strs; i++)
		free(m->strs[i]);
	free(m->strs);
	free(m->maps);
	free(m->funcs);
	free(m->locs);
	free(m->lines);
	free(m->samples);
	free(m->stack_locs);
	free(m);
}

size_t pprof_model__nr_samples(const struct pprof_model *m)
{
	return m ? m->nr_samples : 0;
}

const struct pprof_key *pprof_model__key(const struct pprof_model *m, size_t i)
{
	return &m->samples[i].key;
}

ssize_t pprof_model__find(const struct pprof_model *m, const struct pprof_key *k)
{
	size_t lo = 0, hi = m->nr_samples;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = pprof_key__cmp(&m->samples[mid].key, k);

		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* ---------------------------------------------------------------- encoding */

/* A mapping some selected location uses, before it has its id. */
#define MAP_USED UINT32_MAX

/* Everything one encoding allocates, freed together. */
struct enc {
	__u32 *loc_id, *map_id, *func_id; /* new ids (0: not used) by model index */
	Perftools__Profiles__Sample *samples, **psamples;
	Perftools__Profiles__Label *labels, **plabels;
	Perftools__Profiles__Location *locs, **plocs;
	Perftools__Profiles__Line *lines, **plines;
	Perftools__Profiles__Mapping *maps, **pmaps;
	Perftools__Profiles__Function *funcs, **pfuncs;
	uint64_t *loc_ids;
	int64_t *values;
	char **strs;
	void *packed;
};

static void enc_free(struct enc *e)
{
	free(e->loc_id);
	free(e->map_id);
	free(e->func_id);
	free(e->samples);
	free(e->psamples);
	free(e->labels);
	free(e->plabels);
	free(e->locs);
	free(e->plocs);
	free(e->lines);
	free(e->plines);
	free(e->maps);
	free(e->pmaps);
	free(e->funcs);
	free(e->pfuncs);
	free(e->loc_ids);
	free(e->values);
	free(e->strs);
	free(e->packed);
}

static const __s64 *sample_values(const struct pprof_model *m, const struct pprof_encode_opts *o,
				  size_t i)
{
	const __s64 *v = o->values ? &o->values[i * PPROF_NR_VALUES] : m->samples[i].v;

	if (o->pid && m->samples[i].key.pid != o->pid)
		return NULL;
	if (o->comm && strcmp(m->strs[m->samples[i].comm], o->comm) != 0)
		return NULL;
	if (!v[0] && !v[1] && !v[2] && !v[3])
		return NULL;
	return v;
}

static void *calloc_n(size_t n, size_t size)
{
	return calloc(n ? n : 1, size);
}

static int gzip_buf(const void *in, size_t len, void **out, size_t *out_len)
{
	z_stream zs = {};
	size_t bound;
	void *buf;
	int ret;

	if (len > UINT_MAX)
		return -EFBIG;
	/* windowBits 15 + 16: a gzip header and trailer rather than zlib's */
	if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
	    Z_OK)
		return -ENOMEM;
	bound = deflateBound(&zs, len);
	buf = malloc(bound);
	if (!buf) {
		deflateEnd(&zs);
		return -ENOMEM;
	}
	zs.next_in = (Bytef *)in;
	zs.avail_in = len;
	zs.next_out = buf;
	zs.avail_out = bound;
	ret = deflate(&zs, Z_FINISH);
	*out_len = zs.total_out;
	deflateEnd(&zs);
	if (ret != Z_STREAM_END) {
		free(buf);
		return -EIO;
	}
	*out = buf;
	return 0;
}

int pprof_model__encode(const struct pprof_model *m, const struct pprof_encode_opts *o,
			void **out, size_t *out_len)
{
	static const int type_str[PPROF_NR_VALUES][2] = {
		{S_ALLOC_OBJECTS, S_COUNT},
		{S_ALLOC_SPACE, S_BYTES},
		{S_INUSE_OBJECTS, S_COUNT},
		{S_INUSE_SPACE, S_BYTES},
	};
	Perftools__Profiles__Profile prof = PERFTOOLS__PROFILES__PROFILE__INIT;
	Perftools__Profiles__ValueType types[PPROF_NR_VALUES], *ptypes[PPROF_NR_VALUES];
	Perftools__Profiles__ValueType period_type = PERFTOOLS__PROFILES__VALUE_TYPE__INIT;
	struct pprof_encode_opts none = {.duration_s = -1};
	size_t i, j, nsel = 0, nlocs_sel = 0, nline = 0, nlab = 0, nval = 0, nloc = 0, nmap = 0;
	size_t nfunc = 0, nstr, packed_len;
	__u32 main_pid = 0;
	bool has_main = false;
	int64_t comments[6]; /* version, mode, min-size, retired, dropped, --comment */
	size_t ncomments = 0;
	struct enc e = {};
	int err = -ENOMEM;

	*out = NULL;
	*out_len = 0;
	if (!m)
		return -EINVAL;
	if (!o)
		o = &none;
	e.loc_id = calloc_n(m->nr_locs, sizeof(*e.loc_id));
	e.map_id = calloc_n(m->nr_maps, sizeof(*e.map_id));
	e.func_id = calloc_n(m->nr_funcs, sizeof(*e.func_id));
	if (!e.loc_id || !e.map_id || !e.func_id)
		goto cleanup;

	/* what the selected samples reference, then ids 1..n in model order */
	for (i = 0; i < m->nr_samples; i++) {
		const struct pm_sample *sm = &m->samples[i];

		if (!sample_values(m, o, i))
			continue;
		nsel++;
		nlocs_sel += sm->nr_locs;
		for (j = 0; j < sm->nr_locs; j++)
			e.loc_id[m->stack_locs[sm->first_loc + j]] = 1;
	}
	for (i = 0; i < m->nr_locs; i++) {
		const struct pm_location *l = &m->locs[i];

		if (!e.loc_id[i])
			continue;
		e.loc_id[i] = ++nloc;
		nline += l->nr_lines;
		if (l->mapping)
			e.map_id[l->mapping - 1] = MAP_USED;
		for (j = 0; j < l->nr_lines; j++)
			e.func_id[m->lines[l->first_line + j].func] = 1;
	}
	/*
	 * profile.proto: "mapping[0] will be the main binary" (go tool pprof names the profile's
	 * File by it): the executable of the first process (by pid) that has frames there, then
	 * the rest in model order (as the samples first used them: often a library).
	 */
	for (i = 0; i < m->nr_maps; i++) {
		if (e.map_id[i] != MAP_USED || !m->maps[i].exe)
			continue;
		if (!has_main || m->maps[i].pid < main_pid)
			main_pid = m->maps[i].pid;
		has_main = true;
	}
	for (i = 0; i < m->nr_maps && has_main; i++)
		if (e.map_id[i] == MAP_USED && m->maps[i].exe && m->maps[i].pid == main_pid)
			e.map_id[i] = ++nmap;
	for (i = 0; i < m->nr_maps; i++)
		if (e.map_id[i] == MAP_USED)
			e.map_id[i] = ++nmap;
	for (i = 0; i < m->nr_funcs; i++)
		if (e.func_id[i])
			e.func_id[i] = ++nfunc;

	e.samples = calloc_n(nsel, sizeof(*e.samples));
	e.psamples = calloc_n(nsel, sizeof(*e.psamples));
	e.labels = calloc_n(nsel * 3, sizeof(*e.labels));
	e.plabels = calloc_n(nsel * 3, sizeof(*e.plabels));
	e.loc_ids = calloc_n(nlocs_sel, sizeof(*e.loc_ids));
	e.values = calloc_n(nsel * PPROF_NR_VALUES, sizeof(*e.values));
	e.locs = calloc_n(nloc, sizeof(*e.locs));
	e.plocs = calloc_n(nloc, sizeof(*e.plocs));
	e.lines = calloc_n(nline, sizeof(*e.lines));
	e.plines = calloc_n(nline, sizeof(*e.plines));
	e.maps = calloc_n(nmap, sizeof(*e.maps));
	e.pmaps = calloc_n(nmap, sizeof(*e.pmaps));
	e.funcs = calloc_n(nfunc, sizeof(*e.funcs));
	e.pfuncs = calloc_n(nfunc, sizeof(*e.pfuncs));
	nstr = m->nr_strs + (o->comment ? 1 : 0);
	e.strs = calloc_n(nstr, sizeof(*e.strs));
	if (!e.samples || !e.psamples || !e.labels || !e.plabels || !e.loc_ids || !e.values ||
	    !e.locs || !e.plocs || !e.lines || !e.plines || !e.maps || !e.pmaps || !e.funcs ||
	    !e.pfuncs || !e.strs)
		goto cleanup;

	/* samples */
	nsel = nlocs_sel = 0;
	for (i = 0; i < m->nr_samples; i++) {
		const struct pm_sample *sm = &m->samples[i];
		const __s64 *v = sample_values(m, o, i);
		Perftools__Profiles__Sample *ps;
		Perftools__Profiles__Label *lb;

		if (!v)
			continue;
		ps = &e.samples[nsel];
		perftools__profiles__sample__init(ps);
		ps->n_location_id = sm->nr_locs;
		ps->location_id = &e.loc_ids[nlocs_sel];
		for (j = 0; j < sm->nr_locs; j++)
			e.loc_ids[nlocs_sel++] = e.loc_id[m->stack_locs[sm->first_loc + j]];
		ps->n_value = PPROF_NR_VALUES;
		ps->value = &e.values[nval];
		for (j = 0; j < PPROF_NR_VALUES; j++)
			e.values[nval++] = v[j];
		ps->label = &e.plabels[nlab];
		lb = &e.labels[nlab];
		perftools__profiles__label__init(lb);
		lb->key = S_PID;
		lb->num = sm->key.pid;
		e.plabels[nlab++] = lb++;
		if (sm->comm != S_EMPTY) {
			perftools__profiles__label__init(lb);
			lb->key = S_COMM;
			lb->str = sm->comm;
			e.plabels[nlab++] = lb++;
		}
		perftools__profiles__label__init(lb);
		lb->key = S_ALLOCATOR;
		lb->str = sm->allocator;
		e.plabels[nlab++] = lb;
		ps->n_label = &e.plabels[nlab] - ps->label;
		e.psamples[nsel++] = ps;
	}

	/* locations and their lines */
	nline = 0;
	for (i = 0; i < m->nr_locs; i++) {
		const struct pm_location *l = &m->locs[i];
		Perftools__Profiles__Location *pl;

		if (!e.loc_id[i])
			continue;
		pl = &e.locs[e.loc_id[i] - 1];
		perftools__profiles__location__init(pl);
		pl->id = e.loc_id[i];
		pl->mapping_id = l->mapping ? e.map_id[l->mapping - 1] : 0;
		pl->address = l->addr;
		pl->n_line = l->nr_lines;
		pl->line = &e.plines[nline];
		for (j = 0; j < l->nr_lines; j++) {
			const struct pm_line *ml = &m->lines[l->first_line + j];
			Perftools__Profiles__Line *ln = &e.lines[nline];

			perftools__profiles__line__init(ln);
			ln->function_id = e.func_id[ml->func];
			ln->line = ml->line;
			e.plines[nline++] = ln;
		}
		e.plocs[pl->id - 1] = pl;
	}
	for (i = 0; i < m->nr_maps; i++) {
		const struct pm_mapping *mm = &m->maps[i];
		Perftools__Profiles__Mapping *pm;

		if (!e.map_id[i])
			continue;
		pm = &e.maps[e.map_id[i] - 1];
		perftools__profiles__mapping__init(pm);
		pm->id = e.map_id[i];
		pm->memory_start = mm->start;
		pm->memory_limit = mm->limit;
		pm->file_offset = mm->offset;
		pm->filename = mm->file;
		pm->build_id = mm->build_id;
		/* we symbolized everything we could: pprof must not try again */
		pm->has_functions = true;
		pm->has_inline_frames = true;
		pm->has_filenames = mm->has_files;
		pm->has_line_numbers = mm->has_lines;
		e.pmaps[pm->id - 1] = pm;
	}
	for (i = 0; i < m->nr_funcs; i++) {
		Perftools__Profiles__Function *pf;

		if (!e.func_id[i])
			continue;
		pf = &e.funcs[e.func_id[i] - 1];
		perftools__profiles__function__init(pf);
		pf->id = e.func_id[i];
		pf->name = m->funcs[i].name;
		pf->system_name = m->funcs[i].name;
		pf->filename = m->funcs[i].file;
		e.pfuncs[pf->id - 1] = pf;
	}
	for (i = 0; i < m->nr_strs; i++)
		e.strs[i] = m->strs[i];
	if (o->comment)
		e.strs[m->nr_strs] = (char *)o->comment;

	for (i = 0; i < PPROF_NR_VALUES; i++) {
		perftools__profiles__value_type__init(&types[i]);
		types[i].type = type_str[i][0];
		types[i].unit = type_str[i][1];
		ptypes[i] = &types[i];
	}
	period_type.type = S_SPACE;
	period_type.unit = S_BYTES;
	comments[ncomments++] = S_VERSION;
	comments[ncomments++] = m->mode_comment;
	if (m->min_size_comment)
		comments[ncomments++] = m->min_size_comment;
	if (m->retired_comment)
		comments[ncomments++] = m->retired_comment;
	if (m->drops_comment)
		comments[ncomments++] = m->drops_comment;
	if (o->comment)
		comments[ncomments++] = m->nr_strs;

	prof.n_sample_type = PPROF_NR_VALUES;
	prof.sample_type = ptypes;
	prof.n_sample = nsel;
	prof.sample = e.psamples;
	prof.n_mapping = nmap;
	prof.mapping = e.pmaps;
	prof.n_location = nloc;
	prof.location = e.plocs;
	prof.n_function = nfunc;
	prof.function = e.pfuncs;
	prof.n_string_table = nstr;
	prof.string_table = e.strs;
	prof.time_nanos = m->time_ns;
	prof.duration_nanos = (int64_t)((o->duration_s >= 0 ? o->duration_s : m->elapsed_s) * 1e9);
	prof.period_type = &period_type;
	/* the sampling period; 1 when every byte is counted */
	prof.period = m->sample_bytes ? (int64_t)m->sample_bytes : 1;
	prof.n_comment = ncomments;
	prof.comment = comments;
	prof.default_sample_type = S_INUSE_SPACE;

	packed_len = perftools__profiles__profile__get_packed_size(&prof);
	e.packed = malloc(packed_len ? packed_len : 1);
	if (!e.packed)
		goto cleanup;
	perftools__profiles__profile__pack(&prof, e.packed);
	err = gzip_buf(e.packed, packed_len, out, out_len);
cleanup:
	enc_free(&e);
	return err;
}

int report_pprof__write(FILE *f, const struct snapshot *s, struct symbolizer *sym,
			const struct report_opts *o)
{
	struct pprof_builder *b = NULL;
	struct pprof_model *m = NULL;
	void *buf = NULL;
	size_t len = 0;
	int err;

	if (!f || !s || !o)
		return -EINVAL;
	/* a profile holds every stack: --top does not apply */
	b = pprof_builder__new();
	if (!b)
		return -ENOMEM;
	err = pprof_builder__build(b, s, sym, &m);
	if (err)
		goto cleanup;
	err = pprof_model__encode(m, NULL, &buf, &len);
	if (err)
		goto cleanup;
	if (fwrite(buf, 1, len, f) != len || fflush(f))
		err = util__write_error(f);
cleanup:
	free(buf);
	pprof_model__free(m);
	pprof_builder__free(b);
	return err;
}
