// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <bpf/bpf.h>
#include "asizeof.h"
#include "cfi.h"
#include "log.h"
#include "unwind.h"
#include "util.h"

struct umod {
	struct asz_mod_key key;
	struct asz_mod mod;
	__u8 build_id[CFI_BUILD_ID_MAX];
	__u32 build_id_len;
	__u64 added_ns; /* tables are built before a process maps them (a command to launch) */
};

/* A module's table is kept at least this long, mapped or not. */
#define UNWIND_KEEP_NEW_NS 10000000000ull

struct unwind {
	int rows_fd, mods_fd, wanted_fd;
	__u32 max_rows;
	__u64 keep_new_ns; /* UNWIND_KEEP_NEW_NS but in tests */
	struct umod *mods;
	size_t nr_mods, cap_mods;
	struct unwind_stats st;
};

int unwind__parse_mode(const char *s, enum unwind_mode *out)
{
	static const char *const names[] = {[UNWIND_AUTO] = "auto", [UNWIND_DWARF] = "dwarf",
					    [UNWIND_FP] = "fp"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = i;
			return 0;
		}
	}
	return -EINVAL;
}

int unwind__new(struct unwind **out, int rows_fd, __u32 max_rows, int mods_fd, int wanted_fd)
{
	struct unwind *u;
	void *p;

	/* mapped only while rows are written: a mapping of the whole array would count in our RSS */
	p = mmap(NULL, sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE, MAP_SHARED, rows_fd, 0);
	if (p == MAP_FAILED) {
		int err = -errno;

		elog("cannot map the unwind table map: %s\n", strerror(errno));
		return err;
	}
	munmap(p, sysconf(_SC_PAGESIZE));
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->rows_fd = rows_fd;
	u->max_rows = max_rows;
	u->mods_fd = mods_fd;
	u->wanted_fd = wanted_fd;
	u->st.max_rows = max_rows;
	u->keep_new_ns = UNWIND_KEEP_NEW_NS;
	*out = u;
	return 0;
}

void unwind__set_keep_new(struct unwind *u, __u64 ns)
{
	u->keep_new_ns = ns;
}

/* Rows [first, first + n) of the array, through a mapping of just their pages. */
struct rows_view {
	char *base;
	size_t len;
	struct asz_cfi_row *rows;
};

static int rows_map(const struct unwind *u, __u32 first, __u32 n, int prot, struct rows_view *v)
{
	size_t page = sysconf(_SC_PAGESIZE), from = (size_t)first * sizeof(*v->rows);
	size_t off = from / page * page;

	v->len = from + (size_t)n * sizeof(*v->rows) - off;
	v->base = mmap(NULL, v->len, prot, MAP_SHARED, u->rows_fd, off);
	if (v->base == MAP_FAILED)
		return -errno;
	v->rows = (struct asz_cfi_row *)(v->base + (from - off));
	return 0;
}

/* Write n rows at index first of the array. */
static int write_rows(struct unwind *u, __u32 first, const struct asz_cfi_row *rows, __u32 n)
{
	struct rows_view v;
	int err = rows_map(u, first, n, PROT_READ | PROT_WRITE, &v);

	if (err)
		return err;
	memcpy(v.rows, rows, (size_t)n * sizeof(*rows));
	munmap(v.base, v.len);
	return 0;
}

static struct umod *find_mod(struct unwind *u, const struct asz_mod_key *k)
{
	for (size_t i = 0; i < u->nr_mods; i++)
		if (u->mods[i].key.ino == k->ino && u->mods[i].key.dev == k->dev)
			return &u->mods[i];
	return NULL;
}

/* Are the n rows at index first of the array these? */
static bool same_rows(const struct unwind *u, __u32 first, const struct asz_cfi_row *rows, __u32 n)
{
	struct rows_view v;
	bool same;

	if (rows_map(u, first, n, PROT_READ, &v))
		return false;
	same = !memcmp(v.rows, rows, (size_t)n * sizeof(*rows));
	munmap(v.base, v.len);
	return same;
}

/*
 * A table already loaded for the same file content (same build-id, and the same rows: a
 * build-id can be given by hand, or collide): its rows serve again.
 */
static const struct umod *find_build_id(const struct unwind *u, const struct cfi_table *t)
{
	if (!t->build_id_len)
		return NULL;
	for (size_t i = 0; i < u->nr_mods; i++) {
		const struct umod *m = &u->mods[i];

		if (m->mod.kind == ASZ_MOD_TABLE && m->build_id_len == t->build_id_len &&
		    !memcmp(m->build_id, t->build_id, t->build_id_len) && m->mod.nr == t->nr_rows &&
		    m->mod.buckets == t->nr_buckets && m->mod.shift == t->index_shift &&
		    same_rows(u, m->mod.first, t->rows, t->nr_rows))
			return m;
	}
	return NULL;
}

/* Row pc = address - vm_start + vm_pgoff + adj, from the executable segment. */
static bool table_adj(const struct cfi_table *t, __s64 *adj)
{
	for (__u32 i = 0; i < t->nr_segs; i++) {
		if (!t->segs[i].exec)
			continue;
		*adj = (__s64)(t->segs[i].vaddr - t->segs[i].offset - t->base);
		return true;
	}
	return false;
}

struct range {
	__u32 first, nr;
};

static int range_cmp(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	return x->first < y->first ? -1 : x->first > y->first;
}

/* The row ranges in use, sorted, each once (modules sharing a build-id share one). */
static struct range *ranges(const struct unwind *u, size_t *n)
{
	struct range *r = malloc((u->nr_mods + 1) * sizeof(*r));
	size_t k = 0;

	if (!r)
		return NULL;
	for (size_t i = 0; i < u->nr_mods; i++) {
		const struct asz_mod *m = &u->mods[i].mod;

		if (m->kind == ASZ_MOD_TABLE)
			r[k++] = (struct range){m->first, ASZ_CFI_SLICE(m->nr, m->buckets)};
	}
	qsort(r, k, sizeof(*r), range_cmp);
	*n = 0;
	for (size_t i = 0; i < k; i++)
		if (!*n || r[*n - 1].first != r[i].first)
			r[(*n)++] = r[i];
	return r;
}

static void recount(struct unwind *u)
{
	struct range *r;
	size_t n = 0;

	u->st.modules = u->nr_mods;
	u->st.tables = 0;
	for (size_t i = 0; i < u->nr_mods; i++)
		u->st.tables += u->mods[i].mod.kind == ASZ_MOD_TABLE;
	r = ranges(u, &n);
	u->st.rows = 0;
	for (size_t i = 0; r && i < n; i++)
		u->st.rows += r[i].nr;
	/* rows and bucket indexes: the entries of cfi_rows in use, against --max-unwind-rows */
	u->st.bytes = u->st.rows * sizeof(struct asz_cfi_row);
	free(r);
}

/* First fit among the gaps the ranges leave; -1 when nothing fits. */
static long first_fit(const struct unwind *u, __u32 nr)
{
	struct range *r;
	size_t n = 0;
	__u64 pos = 0;
	long at = -1;

	r = ranges(u, &n);
	if (!r)
		return -1;
	for (size_t i = 0; i < n && at < 0; i++) {
		if (r[i].first >= pos + nr)
			at = pos;
		else if (r[i].first + (__u64)r[i].nr > pos)
			pos = r[i].first + (__u64)r[i].nr;
	}
	if (at < 0 && u->max_rows >= pos + nr)
		at = pos;
	free(r);
	return at;
}

static bool note_in_use(void *ctx, __u64 start, __u64 end, const struct asz_mod_key *k,
			const char *path);

/* The modules some process maps now, as a sorted array of keys (for eviction). */
struct keyset {
	struct asz_mod_key *k;
	size_t nr, cap;
};

static int key_cmp(const void *a, const void *b)
{
	const struct asz_mod_key *x = a, *y = b;

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

static int for_each_exec_mapping(pid_t pid,
				 bool (*fn)(void *ctx, __u64 start, __u64 end,
					    const struct asz_mod_key *k, const char *path),
				 void *ctx);

/*
 * Forget the modules no process maps any more (a program that ran and ended, a library
 * dlclose'd everywhere): their rows become free; not those built in the last 10 s (a command
 * to launch maps its modules once it runs). Rows of modules in use never move, so the
 * kernel never sees a table change under it. Returns how many were forgotten.
 */
static int evict_unused(struct unwind *u)
{
	__u64 now = util__mono_ns();
	struct keyset ks = {};
	struct dirent *d;
	size_t i, kept = 0;
	int evicted = 0;
	DIR *dir;

	dir = opendir("/proc");
	if (!dir)
		return 0;
	while ((d = readdir(dir))) {
		char *end;
		long pid = strtol(d->d_name, &end, 10);

		if (!*end && pid > 0)
			for_each_exec_mapping(pid, note_in_use, &ks);
	}
	closedir(dir);
	qsort(ks.k, ks.nr, sizeof(*ks.k), key_cmp);
	for (i = 0; i < u->nr_mods; i++) {
		struct umod *m = &u->mods[i];

		if ((ks.nr && bsearch(&m->key, ks.k, ks.nr, sizeof(*ks.k), key_cmp)) ||
		    now - m->added_ns < u->keep_new_ns) {
			u->mods[kept++] = *m;
			continue;
		}
		/* gone from the kernel's view first: then its rows are free */
		bpf_map_delete_elem(u->mods_fd, &m->key);
		evicted++;
	}
	u->nr_mods = kept;
	free(ks.k);
	u->st.evicted += evicted;
	recount(u);
	return evicted;
}

static bool note_in_use(void *ctx, __u64 start, __u64 end, const struct asz_mod_key *k,
			const char *path)
{
	struct keyset *ks = ctx;

	(void)start;
	(void)end;
	(void)path;
	if (util__reserve(&ks->k, &ks->cap, ks->nr + 1, sizeof(*ks->k), 256))
		return false;
	ks->k[ks->nr++] = *k;
	return true;
}

/* Room for nr rows: first fit, else after forgetting unused modules; -1 if still none. */
static long alloc_rows(struct unwind *u, __u32 nr)
{
	long at = first_fit(u, nr);

	if (at < 0 && evict_unused(u))
		at = first_fit(u, nr);
	return at;
}

static int add_fd(struct unwind *u, int fd, const struct asz_mod_key *key, const char *name)
{
	struct umod m = {.key = *key, .mod = {.kind = ASZ_MOD_FP}, .added_ns = util__mono_ns()};
	struct cfi_table t = {};
	const struct umod *same;
	__u64 t0 = util__mono_ns();
	long first;
	int err;

	if (find_mod(u, key))
		return 0;
	if (util__reserve(&u->mods, &u->cap_mods, u->nr_mods + 1, sizeof(*u->mods), 64))
		return -ENOMEM;
	err = cfi__build_fd(fd, &t);
	u->st.build_ns += util__mono_ns() - t0;
	if (err == -ENODATA || err == -ENOEXEC) {
		u->st.no_cfi++;
		dlog("unwind: %s: no call-frame information: frame pointers\n", name);
	} else if (err) {
		u->st.failed++;
		dlog("unwind: %s: %s: frame pointers\n", name, strerror(-err));
	} else if (!table_adj(&t, &m.mod.adj)) {
		u->st.no_cfi++;
	} else if ((same = find_build_id(u, &t))) {
		m.mod.first = same->mod.first;
		m.mod.nr = same->mod.nr;
		m.mod.shift = same->mod.shift;
		m.mod.buckets = same->mod.buckets;
		m.mod.kind = ASZ_MOD_TABLE;
		u->st.shared++;
	} else if ((first = alloc_rows(u, ASZ_CFI_SLICE(t.nr_rows, t.nr_buckets))) < 0) {
		u->st.full++;
		elog("unwind: %s: %u rows do not fit (%llu of %u used, --max-unwind-rows): frame "
		     "pointers there\n",
		     name, ASZ_CFI_SLICE(t.nr_rows, t.nr_buckets), (unsigned long long)u->st.rows,
		     u->max_rows);
	} else if ((err = write_rows(u, first, t.rows, t.nr_rows)) ||
		   (err = write_rows(u, first + t.nr_rows, (const void *)t.index,
				     ASZ_CFI_INDEX_ROWS(t.nr_buckets)))) {
		u->st.failed++;
		elog("unwind: %s: cannot write its rows: %s\n", name, strerror(-err));
	} else {
		m.mod.first = first;
		m.mod.nr = t.nr_rows;
		m.mod.shift = t.index_shift;
		m.mod.buckets = t.nr_buckets;
		m.mod.kind = ASZ_MOD_TABLE;
		vlog("unwind: %s: %u rows (%.1f ms)\n", name, t.nr_rows,
		     (util__mono_ns() - t0) / 1e6);
	}
	if (m.mod.kind == ASZ_MOD_TABLE) {
		m.build_id_len = t.build_id_len;
		memcpy(m.build_id, t.build_id, sizeof(m.build_id));
	}
	cfi_table__free(&t);
	/* rows are in place before the kernel can see the module; a full map: forget unused ones */
	if (bpf_map_update_elem(u->mods_fd, key, &m.mod, BPF_ANY) &&
	    (errno != E2BIG || !evict_unused(u) ||
	     bpf_map_update_elem(u->mods_fd, key, &m.mod, BPF_ANY))) {
		err = -errno;
		dlog("unwind: %s: cannot add the module: %s\n", name, strerror(errno));
		return err;
	}
	u->mods[u->nr_mods++] = m;
	recount(u);
	return 0;
}

int unwind__add_file(struct unwind *u, const char *path)
{
	struct asz_mod_key key = {};
	struct stat st;
	int fd, err;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		err = -errno;
		goto cleanup;
	}
	/* the kernel's encoding of i_sb->s_dev, as /proc/PID/maps prints it */
	key.dev = util__kernel_dev(st.st_dev);
	key.ino = st.st_ino;
	err = add_fd(u, fd, &key, path);
cleanup:
	close(fd);
	return err;
}

/* Open the file behind a mapping: map_files is exact; else its path, seen from the process. */
static int open_mapping(pid_t pid, __u64 start, __u64 end, const char *path)
{
	char buf[PATH_MAX + 64];
	int fd;

	snprintf(buf, sizeof(buf), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, pid, (uint64_t)start,
		 (uint64_t)end);
	fd = open(buf, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 || !path || path[0] != '/')
		return fd;
	snprintf(buf, sizeof(buf), "/proc/%d/root%s", pid, path);
	return open(buf, O_RDONLY | O_CLOEXEC);
}

struct exec_ctx {
	bool (*fn)(void *ctx, __u64 start, __u64 end, const struct asz_mod_key *k, const char *path);
	void *ctx;
};

static bool exec_line(void *ctx, const struct util_maps_line *m)
{
	struct exec_ctx *x = ctx;
	struct asz_mod_key k = {.dev = m->maj << 20 | m->min, .ino = m->ino};

	if (m->perms[2] != 'x' || !m->ino)
		return true;
	return x->fn(x->ctx, m->start, m->end, &k, m->path[0] ? m->path : NULL);
}

/*
 * Calls fn(ctx, start, end, key, path or NULL) for each executable file mapping of pid until it
 * returns false; returns 0 or -errno.
 */
static int for_each_exec_mapping(pid_t pid,
				 bool (*fn)(void *ctx, __u64 start, __u64 end,
					    const struct asz_mod_key *k, const char *path),
				 void *ctx)
{
	struct exec_ctx x = {fn, ctx};

	return util__for_each_maps_line(pid, exec_line, &x);
}

struct pid_ctx {
	struct unwind *u;
	pid_t pid;
};

static bool add_mapping(void *ctx, __u64 start, __u64 end, const struct asz_mod_key *k,
			const char *path)
{
	struct pid_ctx *c = ctx;
	int fd;

	if (find_mod(c->u, k))
		return true;
	fd = open_mapping(c->pid, start, end, path);
	if (fd < 0)
		return true;
	add_fd(c->u, fd, k, path ? path : "?");
	close(fd);
	return true;
}

void unwind__add_pid(struct unwind *u, pid_t pid)
{
	struct pid_ctx c = {u, pid};

	for_each_exec_mapping(pid, add_mapping, &c);
}

struct path_ctx {
	__u64 start;
	char path[PATH_MAX];
};

static bool match_start(void *ctx, __u64 start, __u64 end, const struct asz_mod_key *k,
			const char *path)
{
	struct path_ctx *c = ctx;

	(void)end;
	(void)k;
	if (start != c->start)
		return true;
	snprintf(c->path, sizeof(c->path), "%s", path ? path : "");
	return false;
}

int unwind__service(struct unwind *u)
{
	struct asz_mod_key keys[64], k, *prev = NULL;
	int n = 0, added = 0;

	/* collect first: deleting while iterating a hash map restarts the walk */
	while (n < 64 && bpf_map_get_next_key(u->wanted_fd, prev, &k) == 0) {
		keys[n] = k;
		prev = &keys[n++];
	}
	for (int i = 0; i < n; i++) {
		struct asz_mod_want w;
		struct path_ctx pc = {};
		int fd;

		if (bpf_map_lookup_elem(u->wanted_fd, &keys[i], &w))
			continue;
		if (!find_mod(u, &keys[i])) {
			pc.start = w.start;
			for_each_exec_mapping(w.tgid, match_start, &pc);
			fd = open_mapping(w.tgid, w.start, w.end, pc.path);
			if (fd >= 0) {
				if (add_fd(u, fd, &keys[i], pc.path[0] ? pc.path : "?") == 0)
					added++;
				close(fd);
			} else {
				/*
				 * Not marked as tableless: the process may have exited (a zombie has no
				 * map_files); the next one to map the file asks again.
				 */
				u->st.failed++;
			}
		}
		bpf_map_delete_elem(u->wanted_fd, &keys[i]);
	}
	return added;
}

void unwind__stats(const struct unwind *u, struct unwind_stats *st)
{
	*st = u->st;
}

void unwind__free(struct unwind *u)
{
	if (!u)
		return;
	free(u->mods);
	free(u);
}
