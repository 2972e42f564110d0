// SPDX-License-Identifier: MIT
/*
 * Symbolizer: process addresses -> function, file:line, module, inline chain, using libdwfl.
 *
 * Three tables:
 *  - processes (pid): the file mappings seen in /proc/PID/maps, kept after the process exits;
 *  - module files (dev, inode): an fd opened while the file was mapped, and, once first needed,
 *    a Dwfl with the file reported at base 0 plus a sorted function symbol table;
 *  - results (module file, ELF vaddr): the frames of one address, so each address is symbolized
 *    once whichever process it came from.
 * A module file lives while a recorded process maps it (symbolizer__trim() closes the others).
 * All strings handed out are interned here and live until symbolizer__free(). Not thread-safe.
 */
#include <dwarf.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>

#include "log.h"
#include "symbolizer.h"
#include "util.h"

/* From libstdc++ (the C++ ABI); declared here so that this file stays C. */
char *__cxa_demangle(const char *mangled, char *buf, size_t *len, int *status);

#define MAX_INLINE_FRAMES 64
/* A miss in a known process rereads its maps (dlopen) at most this often. */
#define MISS_REFRESH_NS 1000000000ULL
/* Lines of /proc/PID/maps longer than this (absurd paths) are ignored. */
#define MAPS_LINE_MAX 4352

/* Open-addressing hash table keyed by two integers; val == NULL marks an empty slot. */
struct htab_ent {
	__u64 a, b;
	void *val;
};

struct htab {
	struct htab_ent *ents;
	size_t cap; /* a power of two, or 0 */
	size_t len;
};

/* Set of interned strings. */
struct strtab {
	char **slots;
	size_t cap;
	size_t len;
};

struct seg {
	__u64 off, filesz, vaddr;
};

struct fsym {
	__u64 addr, end; /* Dwfl addresses: [addr, end) */
	const char *name; /* raw (mangled), owned by the Dwfl */
	int rank;	   /* lower is preferred among symbols at the same address */
};

enum modfile_state { MF_NEW, MF_READY, MF_BAD };

struct modfile {
	__u64 dev, ino;
	int fd;		  /* opened while mapped; handed to the Dwfl on load; -1 if none */
	/*
	 * The root of the first process seen mapping it when not ours (another mount namespace,
	 * a chroot): its debug files are there, not here. Held until loaded; NULL if none.
	 */
	struct fsroot *root;
	const char *path; /* path it was first seen under (interned) */
	enum modfile_state state;
	Dwfl *dwfl;
	Dwfl_Module *mod;
	__u64 bias; /* Dwfl address = ELF vaddr + bias */
	struct seg *segs;
	int nsegs;
	struct fsym *syms;
	size_t nsyms;
	struct htab cus; /* (CU DIE offset, 0) -> struct cu_index, built at a unit's first lookup */
	/*
	 * Mappings of recorded processes that name this file. A file no process maps (and not
	 * kept) is closed at the second symbolizer__trim() that finds it so: system-wide, every
	 * program ever run would otherwise hold an fd, a Dwfl and, deleted, its disk space.
	 */
	size_t refs;
	int idle;  /* trims that found it unreferenced in a row */
	bool keep; /* a file of a probed library or of the launched command: never closed */
	bool dead; /* being closed by this trim: its cached results go with it */
};

/*
 * The functions of one compile unit by address range. dwarf_getscopes walks a unit's DIEs from
 * its root at every call: ~0.8 ms an address in a unit of 10k functions.
 */
struct fn_range {
	Dwarf_Addr lo, hi; /* [lo, hi) in the unit's DWARF addresses */
	Dwarf_Addr maxhi;  /* the highest hi of this range and all before it: ends a backward scan */
	Dwarf_Die die;
};

struct cu_index {
	struct fn_range *r; /* sorted by lo */
	size_t n, cap;
};

/*
 * The root directory of processes in another mount namespace or a chroot, shared by the module
 * files they map. nsfd holds that mount namespace: when its last process exits, its mounts are
 * taken apart, and the root directory alone no longer leads into them.
 */
struct fsroot {
	__u64 ns_ino, root_dev, root_ino;
	int rootfd; /* O_PATH; -1 once no module file holds it (reopened by the next one) */
	int nsfd;   /* -1 in our mount namespace (a chroot) */
	bool ns_paths; /* another mount namespace: maps paths are as seen from rootfd */
	size_t refs;
};

struct mapping {
	__u64 start, end, pgoff;
	struct modfile *mf;
	const char *path; /* as shown in /proc/PID/maps (interned) */
};

struct proc {
	__u32 pid;
	/*
	 * Length and hash of the last /proc/PID/maps read, to skip reparsing when unchanged (not
	 * the text: 16-32 KiB a process, hundreds of processes system-wide).
	 */
	size_t maps_len;
	__u64 maps_hash;
	__u64 exe_dev, exe_ino; /* identity of /proc/PID/exe, to tell exec from dlopen */
	struct mapping *tab;	/* sorted by start, non-overlapping */
	size_t ntab;
	__u64 last_miss_refresh;
};

struct cframe {
	const char *func, *file;
	int line;
	bool inlined;
};

struct cache_ent {
	int n;
	struct cframe f[];
};

struct symbolizer {
	struct htab procs; /* (pid, 0) -> struct proc */
	struct htab files; /* (dev, ino) -> struct modfile */
	struct htab cache; /* (struct modfile *, vaddr) -> struct cache_ent */
	struct htab roots; /* (mount namespace inode, root inode) -> struct fsroot */
	struct strtab strs;
	struct symbolizer_stats stats;
};

static __u64 mix64(__u64 h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

static void *htab_find(const struct htab *t, __u64 a, __u64 b)
{
	size_t i;

	if (!t->cap)
		return NULL;
	for (i = mix64(a * 0x9e3779b97f4a7c15ULL + b) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
		const struct htab_ent *e = &t->ents[i];

		if (!e->val)
			return NULL;
		if (e->a == a && e->b == b)
			return e->val;
	}
}

static void htab_place(struct htab_ent *ents, size_t cap, __u64 a, __u64 b, void *val)
{
	size_t i = mix64(a * 0x9e3779b97f4a7c15ULL + b) & (cap - 1);

	while (ents[i].val)
		i = (i + 1) & (cap - 1);
	ents[i] = (struct htab_ent){ .a = a, .b = b, .val = val };
}

/* Insert a key known to be absent. Keeps the load factor at most 1/2. */
static int htab_insert(struct htab *t, __u64 a, __u64 b, void *val)
{
	if ((t->len + 1) * 2 > t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64, i;
		struct htab_ent *ents = calloc(cap, sizeof(*ents));

		if (!ents)
			return -ENOMEM;
		for (i = 0; i < t->cap; i++)
			if (t->ents[i].val)
				htab_place(ents, cap, t->ents[i].a, t->ents[i].b, t->ents[i].val);
		free(t->ents);
		t->ents = ents;
		t->cap = cap;
	}
	htab_place(t->ents, t->cap, a, b, val);
	t->len++;
	return 0;
}

/* Remove a key (backward-shift deletion keeps every probe chain intact); returns its value. */
static void *htab_remove(struct htab *t, __u64 a, __u64 b)
{
	size_t mask = t->cap - 1, i, j, k;
	void *val;

	if (!t->cap)
		return NULL;
	for (i = mix64(a * 0x9e3779b97f4a7c15ULL + b) & mask;; i = (i + 1) & mask) {
		if (!t->ents[i].val)
			return NULL;
		if (t->ents[i].a == a && t->ents[i].b == b)
			break;
	}
	val = t->ents[i].val;
	for (j = (i + 1) & mask; t->ents[j].val; j = (j + 1) & mask) {
		k = mix64(t->ents[j].a * 0x9e3779b97f4a7c15ULL + t->ents[j].b) & mask;
		/* move j back to the hole i unless its home lies cyclically in (i, j] */
		if (i <= j ? (k > i && k <= j) : (k > i || k <= j))
			continue;
		t->ents[i] = t->ents[j];
		i = j;
	}
	t->ents[i] = (struct htab_ent){};
	t->len--;
	return val;
}

static __u64 str_hash(const char *s)
{
	__u64 h = 0xcbf29ce484222325ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return h;
}

/* 64 bits a step, each mixed: two different maps texts of one length collide with p ~2^-64. */
static __u64 mem_hash(const char *buf, size_t len)
{
	__u64 h = len, w;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		memcpy(&w, buf + i, 8);
		h = mix64(h ^ w) + 0x9e3779b97f4a7c15ULL;
	}
	w = 0;
	memcpy(&w, buf + i, len - i);
	return mix64(h ^ w);
}

/* Return the symbolizer's copy of s (NULL for NULL, or when out of memory). */
static const char *str_intern(struct strtab *t, const char *s)
{
	size_t i;
	char *copy;

	if (!s)
		return NULL;
	if ((t->len + 1) * 2 > t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 256, j;
		char **slots = calloc(cap, sizeof(*slots));

		if (!slots)
			return NULL;
		for (j = 0; j < t->cap; j++) {
			if (!t->slots[j])
				continue;
			i = str_hash(t->slots[j]) & (cap - 1);
			while (slots[i])
				i = (i + 1) & (cap - 1);
			slots[i] = t->slots[j];
		}
		free(t->slots);
		t->slots = slots;
		t->cap = cap;
	}
	for (i = str_hash(s) & (t->cap - 1); t->slots[i]; i = (i + 1) & (t->cap - 1))
		if (!strcmp(t->slots[i], s))
			return t->slots[i];
	copy = strdup(s);
	if (!copy)
		return NULL;
	t->slots[i] = copy;
	t->len++;
	return copy;
}

/* Intern a function name: without a symbol version ("memcpy@@GLIBC_2.14"), demangled. */
static const char *intern_func(struct symbolizer *s, const char *name)
{
	const char *ret = NULL, *at;
	char *base = NULL, *dem = NULL;
	int status = -1;

	if (!name || !*name)
		return NULL;
	at = strchr(name, '@');
	if (at && at != name) {
		base = strndup(name, at - name);
		if (!base)
			goto cleanup;
		name = base;
	}
	if (name[0] == '_' && name[1] == 'Z')
		dem = __cxa_demangle(name, NULL, NULL, &status);
	ret = str_intern(&s->strs, status == 0 && dem ? dem : name);
cleanup:
	free(dem);
	free(base);
	return ret;
}

static __u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

struct symbolizer *symbolizer__new(void)
{
	return calloc(1, sizeof(struct symbolizer));
}

/* A module file no longer needs its root: closed once none does (forgotten at a trim). */
static void modfile_drop_root(struct modfile *mf)
{
	struct fsroot *r = mf->root;

	mf->root = NULL;
	if (!r || --r->refs)
		return;
	close(r->rootfd);
	if (r->nsfd >= 0)
		close(r->nsfd);
	r->rootfd = -1;
	r->nsfd = -1;
}

static void modfile_free(struct modfile *mf)
{
	size_t i;

	for (i = 0; i < mf->cus.cap; i++) {
		struct cu_index *ix = mf->cus.ents[i].val;

		if (ix)
			free(ix->r);
		free(ix);
	}
	free(mf->cus.ents);
	if (mf->dwfl)
		dwfl_end(mf->dwfl);
	if (mf->fd >= 0)
		close(mf->fd);
	modfile_drop_root(mf);
	free(mf->segs);
	free(mf->syms);
	free(mf);
}

/* Count the mappings of a table in (delta 1) or out (-1) of their module files' references. */
static void tab_ref(struct mapping *tab, size_t n, int delta)
{
	for (size_t i = 0; i < n; i++) {
		tab[i].mf->refs += delta;
		tab[i].mf->idle = 0;
	}
}

static void proc_free(struct proc *p)
{
	tab_ref(p->tab, p->ntab, -1);
	free(p->tab);
	free(p);
}

void symbolizer__remove_pid(struct symbolizer *s, __u32 pid)
{
	struct proc *p = htab_remove(&s->procs, pid, 0);

	if (p)
		proc_free(p);
}

/* Forget the roots no module file holds (their descriptors are closed already). */
static void roots_trim(struct symbolizer *s)
{
	for (size_t i = 0; i < s->roots.cap;) {
		struct fsroot *r = s->roots.ents[i].val;

		/* (removing may shift another entry into slot i) */
		if (r && !r->refs)
			free(htab_remove(&s->roots, r->ns_ino, r->root_ino));
		else
			i++;
	}
}

void symbolizer__trim(struct symbolizer *s)
{
	struct modfile **dead = NULL;
	size_t ndead = 0, i;

	roots_trim(s);
	for (i = 0; i < s->files.cap; i++) {
		struct modfile *mf = s->files.ents[i].val;

		if (!mf || mf->refs || mf->keep || ++mf->idle < 2)
			continue;
		if (!dead) {
			dead = calloc(s->files.len, sizeof(*dead));
			if (!dead)
				return;
		}
		mf->dead = true;
		dead[ndead++] = mf;
	}
	if (!ndead)
		return;
	/* one pass over the results for all of them (keyed by the modfile's address) */
	for (i = 0; i < s->cache.cap;) {
		struct htab_ent *e = &s->cache.ents[i];

		if (e->val && ((struct modfile *)(uintptr_t)e->a)->dead)
			free(htab_remove(&s->cache, e->a, e->b)); /* may shift another into slot i */
		else
			i++;
	}
	for (i = 0; i < ndead; i++) {
		dlog("symbolizer: closing %s (no process maps it)\n", dead[i]->path);
		htab_remove(&s->files, dead[i]->dev, dead[i]->ino);
		modfile_free(dead[i]);
	}
	s->stats.files_closed += ndead;
	free(dead);
}

void symbolizer__free(struct symbolizer *s)
{
	size_t i;

	if (!s)
		return;
	for (i = 0; i < s->procs.cap; i++)
		if (s->procs.ents[i].val)
			proc_free(s->procs.ents[i].val);
	for (i = 0; i < s->files.cap; i++)
		if (s->files.ents[i].val)
			modfile_free(s->files.ents[i].val);
	for (i = 0; i < s->cache.cap; i++)
		free(s->cache.ents[i].val);
	for (i = 0; i < s->roots.cap; i++)
		free(s->roots.ents[i].val); /* (their descriptors went with the last module file) */
	for (i = 0; i < s->strs.cap; i++)
		free(s->strs.slots[i]);
	free(s->procs.ents);
	free(s->files.ents);
	free(s->cache.ents);
	free(s->roots.ents);
	free(s->strs.slots);
	free(s);
}

/*
 * Read all of /proc/PID/maps. An empty file means a zombie or a kernel thread: nothing to learn
 * from it, and replacing a recorded table with it would lose the mappings, so it is -ESRCH too.
 */
static int read_maps(__u32 pid, char **bufp, size_t *lenp)
{
	char path[64];
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int fd, err = 0;

	snprintf(path, sizeof(path), "/proc/%u/maps", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ESRCH ? -ESRCH : -errno;
	for (;;) {
		ssize_t n;

		if (util__reserve(&buf, &cap, len + 4096, 1, 16384)) {
			err = -ENOMEM;
			goto cleanup;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = errno == ESRCH ? -ESRCH : -errno;
			goto cleanup;
		}
		if (n == 0)
			break;
		len += n;
	}
	if (len == 0) {
		err = -ESRCH;
		goto cleanup;
	}
	*bufp = buf;
	*lenp = len;
	buf = NULL;
cleanup:
	free(buf);
	close(fd);
	return err;
}

/*
 * Open a mapped file so that it stays readable after the process is gone. map_files gives the
 * very file that is mapped (also deleted files and memfds, across mount namespaces); the
 * path under /proc/PID/root is the fallback, accepted only if it is still the same inode.
 */
static int open_mapped(__u32 pid, const struct mapping *m, __u64 ino)
{
	char path[MAPS_LINE_MAX + 64];
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "/proc/%u/map_files/%llx-%llx", pid,
		 (unsigned long long)m->start, (unsigned long long)m->end);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0)
		return fd;
	snprintf(path, sizeof(path), "/proc/%u/root%s", pid, m->path);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_ino != ino) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Open the root (and mount namespace) of pid as r's; 0 or -1. */
static int fsroot_open(struct fsroot *r, __u32 pid, const char *root, const char *ns)
{
	r->rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	r->nsfd = r->ns_paths ? open(ns, O_RDONLY | O_CLOEXEC) : -1;
	if (r->rootfd >= 0 && (!r->ns_paths || r->nsfd >= 0))
		return 0;
	dlog("symbolizer: pid %u: cannot hold its root\n", pid);
	if (r->rootfd >= 0)
		close(r->rootfd);
	r->rootfd = -1;
	r->nsfd = -1;
	return -1;
}

/*
 * Hold the root directory of pid for mf if it is not ours (another mount namespace, a chroot),
 * so that the debug files of what it maps can be found there later, also once it is gone.
 */
static void modfile_set_root(struct symbolizer *s, struct modfile *mf, __u32 pid)
{
	char ns[64], root[64];
	struct stat ns_st, root_st, self_ns, self_root;
	struct fsroot *r;

	snprintf(ns, sizeof(ns), "/proc/%u/ns/mnt", pid);
	snprintf(root, sizeof(root), "/proc/%u/root", pid);
	if (stat(ns, &ns_st) || stat(root, &root_st) || stat("/proc/self/ns/mnt", &self_ns) ||
	    stat("/", &self_root))
		return;
	if (ns_st.st_ino == self_ns.st_ino && root_st.st_dev == self_root.st_dev &&
	    root_st.st_ino == self_root.st_ino)
		return;
	r = htab_find(&s->roots, ns_st.st_ino, root_st.st_ino);
	if (r && r->root_dev != root_st.st_dev)
		return; /* (two roots of one inode number in one namespace: not worth a table) */
	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r)
			return;
		*r = (struct fsroot){ .ns_ino = ns_st.st_ino, .root_dev = root_st.st_dev,
				      .root_ino = root_st.st_ino, .rootfd = -1, .nsfd = -1,
				      .ns_paths = ns_st.st_ino != self_ns.st_ino };
		if (htab_insert(&s->roots, r->ns_ino, r->root_ino, r)) {
			free(r);
			return;
		}
	}
	if (r->rootfd < 0 && fsroot_open(r, pid, root, ns))
		return;
	r->refs++;
	mf->root = r;
}

/* Open the file pid maps at m for mf, and hold pid's root with it if not ours. */
static void modfile_open(struct symbolizer *s, struct modfile *mf, __u32 pid,
			 const struct mapping *m, __u64 ino)
{
	mf->fd = open_mapped(pid, m, ino);
	if (mf->fd >= 0 && !mf->root)
		modfile_set_root(s, mf, pid);
}

static struct modfile *modfile_get(struct symbolizer *s, __u32 pid, const struct mapping *m,
				   __u64 dev, __u64 ino)
{
	struct modfile *mf = htab_find(&s->files, dev, ino);

	if (mf) {
		/* Not opened last time (raced with exit?): this mapping is another chance. */
		if (mf->fd < 0 && mf->state == MF_NEW)
			modfile_open(s, mf, pid, m, ino);
		return mf;
	}
	mf = calloc(1, sizeof(*mf));
	if (!mf)
		return NULL;
	mf->dev = dev;
	mf->ino = ino;
	mf->path = m->path;
	mf->state = MF_NEW;
	modfile_open(s, mf, pid, m, ino);
	if (htab_insert(&s->files, dev, ino, mf)) {
		modfile_free(mf);
		return NULL;
	}
	dlog("symbolizer: %s (%llx:%llu) fd %d\n", m->path, (unsigned long long)dev,
	     (unsigned long long)ino, mf->fd);
	return mf;
}

/* One parsed line of /proc/PID/maps. */
struct maps_line {
	__u64 start, end, pgoff, dev, ino;
	bool exec;
	/*
	 * interned, for executable mappings only: interned strings live to the end, and data files
	 * (a database's segments, shared memory files) come and go by the thousand
	 */
	const char *path;
};

static int cmp_mapping(const void *a, const void *b)
{
	const struct mapping *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* The mapping containing addr, or NULL. */
static struct mapping *find_mapping(struct mapping *tab, size_t n, __u64 addr)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (addr < tab[mid].start)
			hi = mid;
		else if (addr >= tab[mid].end)
			lo = mid + 1;
		else
			return &tab[mid];
	}
	return NULL;
}

static bool overlaps_any(struct mapping *tab, size_t n, const struct mapping *m)
{
	size_t lo = 0, hi = n;

	/* First mapping ending after m->start; tab is sorted and non-overlapping. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (tab[mid].end <= m->start)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && tab[lo].start < m->end;
}

/* Parse file-backed mappings out of a maps buffer. Returns the count or a negative errno. */
static int parse_maps(struct symbolizer *s, const char *buf, size_t len, struct maps_line **out)
{
	struct maps_line *lines = NULL;
	size_t n = 0, cap = 0;
	const char *p = buf, *end = buf + len;
	char line[MAPS_LINE_MAX];
	int err = 0;

	while (p < end) {
		const char *eol = memchr(p, '\n', end - p);
		size_t ll = (eol ? eol : end) - p;
		struct util_maps_line m;

		if (ll >= sizeof(line))
			goto next;
		memcpy(line, p, ll);
		line[ll] = '\0';
		if (util__parse_maps_line(line, &m))
			goto next;
		/* Anonymous memory, [heap], [vdso], anon_inode:...: nothing to symbolize with. */
		if (m.ino == 0 || m.path[0] != '/' || m.end <= m.start)
			goto next;
		if (util__reserve(&lines, &cap, n + 1, sizeof(*lines), 64)) {
			err = -ENOMEM;
			goto cleanup;
		}
		lines[n] = (struct maps_line){
			.start = m.start,
			.end = m.end,
			.pgoff = m.pgoff,
			.dev = (__u64)m.maj << 32 | m.min,
			.ino = m.ino,
			.exec = strchr(m.perms, 'x') != NULL,
		};
		if (lines[n].exec) {
			lines[n].path = str_intern(&s->strs, m.path);
			if (!lines[n].path) {
				err = -ENOMEM;
				goto cleanup;
			}
		}
		n++;
next:
		p += ll + 1;
	}
	*out = lines;
	lines = NULL;
cleanup:
	free(lines);
	return err ? err : (int)n;
}

/* Identity of the running executable, to tell an exec apart from a dlopen. */
static void exe_identity(__u32 pid, __u64 *dev, __u64 *ino)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%u/exe", pid);
	if (stat(path, &st)) {
		*dev = 0;
		*ino = 0;
		return;
	}
	*dev = st.st_dev;
	*ino = st.st_ino;
}

static struct proc *proc_create(struct symbolizer *s, __u32 pid)
{
	struct proc *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->pid = pid;
	if (htab_insert(&s->procs, pid, 0, p)) {
		free(p);
		return NULL;
	}
	return p;
}

int symbolizer__add_pid(struct symbolizer *s, __u32 pid)
{
	struct maps_line *lines = NULL;
	struct mapping *tab = NULL;
	struct proc *p = htab_find(&s->procs, pid, 0);
	char *buf = NULL;
	struct htab execs = {};
	size_t len = 0, ntab = 0, i;
	__u64 exe_dev, exe_ino, hash;
	int n, err;

	err = read_maps(pid, &buf, &len);
	if (err)
		goto cleanup;
	hash = mem_hash(buf, len);
	if (p && p->maps_len == len && p->maps_hash == hash)
		goto cleanup;
	exe_identity(pid, &exe_dev, &exe_ino);

	n = parse_maps(s, buf, len, &lines);
	if (n < 0) {
		err = n;
		goto cleanup;
	}
	tab = calloc(n + (p ? p->ntab : 0) + 1, sizeof(*tab));
	if (!tab) {
		err = -ENOMEM;
		goto cleanup;
	}
	/*
	 * Keep every mapping of a file that is mapped executable somewhere: code addresses fall in
	 * the executable one, and the others let a stray address still name its module. Files only
	 * mapped as data (locale archives, caches) are not opened at all.
	 */
	for (i = 0; i < (size_t)n; i++) {
		if (!lines[i].exec || htab_find(&execs, lines[i].dev, lines[i].ino))
			continue;
		err = htab_insert(&execs, lines[i].dev, lines[i].ino, &lines[i]);
		if (err)
			goto cleanup;
	}
	for (i = 0; i < (size_t)n; i++) {
		struct maps_line *x = htab_find(&execs, lines[i].dev, lines[i].ino);

		if (!x)
			continue;
		tab[ntab] = (struct mapping){
			.start = lines[i].start,
			.end = lines[i].end,
			.pgoff = lines[i].pgoff,
			.path = lines[i].exec ? lines[i].path : x->path,
		};
		tab[ntab].mf = modfile_get(s, pid, &tab[ntab], lines[i].dev, lines[i].ino);
		if (!tab[ntab].mf) {
			err = -ENOMEM;
			goto cleanup;
		}
		ntab++;
	}
	qsort(tab, ntab, sizeof(*tab), cmp_mapping);

	/*
	 * Same executable: a dlopen/dlclose, so old mappings nothing replaced are kept for stacks
	 * recorded while a since-unloaded library was mapped. After an exec, start afresh.
	 */
	if (p && exe_ino && p->exe_dev == exe_dev && p->exe_ino == exe_ino) {
		size_t nnew = ntab;

		for (i = 0; i < p->ntab; i++)
			if (!overlaps_any(tab, nnew, &p->tab[i]))
				tab[ntab++] = p->tab[i];
		if (ntab != nnew)
			qsort(tab, ntab, sizeof(*tab), cmp_mapping);
	}

	if (!p) {
		p = proc_create(s, pid);
		if (!p) {
			err = -ENOMEM;
			goto cleanup;
		}
	}
	tab_ref(tab, ntab, 1);
	tab_ref(p->tab, p->ntab, -1);
	free(p->tab);
	p->maps_hash = hash;
	p->maps_len = len;
	p->tab = tab;
	p->ntab = ntab;
	p->exe_dev = exe_dev;
	p->exe_ino = exe_ino;
	tab = NULL;
	dlog("symbolizer: pid %u: %zu file mappings\n", pid, p->ntab);
cleanup:
	free(execs.ents);
	free(tab);
	free(lines);
	free(buf);
	return err;
}

int symbolizer__add_file(struct symbolizer *s, const char *path, bool keep)
{
	char real[PATH_MAX];
	struct modfile *mf;
	struct stat st;
	__u64 dev;
	int fd;

	/*
	 * Named as /proc/PID/maps names it (symbolic links resolved, absolute), whichever of the
	 * two comes first: "./prog" or /lib/... would make identical runs name modules differently.
	 */
	if (realpath(path, real))
		path = real;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	dev = (__u64)major(st.st_dev) << 32 | minor(st.st_dev);
	mf = htab_find(&s->files, dev, st.st_ino);
	if (mf) {
		mf->keep |= keep;
		mf->idle = 0;
		close(fd);
		return 0;
	}
	mf = calloc(1, sizeof(*mf));
	if (!mf) {
		close(fd);
		return -ENOMEM;
	}
	mf->dev = dev;
	mf->ino = st.st_ino;
	mf->fd = fd;
	mf->state = MF_NEW;
	mf->keep = keep;
	mf->path = str_intern(&s->strs, path);
	if (!mf->path || htab_insert(&s->files, dev, st.st_ino, mf)) {
		modfile_free(mf);
		return -ENOMEM;
	}
	return 0;
}

int symbolizer__add_mapping(struct symbolizer *s, __u32 pid, __u64 start, __u64 end, __u64 pgoff,
			    __u32 dev_major, __u32 dev_minor, __u64 ino)
{
	struct modfile *mf = htab_find(&s->files, (__u64)dev_major << 32 | dev_minor, ino);
	struct proc *p = htab_find(&s->procs, pid, 0);
	struct mapping *tab;

	if (!mf)
		return -ENOENT;
	if (!p) {
		p = proc_create(s, pid);
		if (!p)
			return -ENOMEM;
	}
	if (find_mapping(p->tab, p->ntab, start))
		return 0;
	tab = realloc(p->tab, (p->ntab + 1) * sizeof(*tab));
	if (!tab)
		return -ENOMEM;
	tab[p->ntab++] = (struct mapping){
		.start = start, .end = end, .pgoff = pgoff, .mf = mf, .path = mf->path};
	tab_ref(&tab[p->ntab - 1], 1, 1);
	qsort(tab, p->ntab, sizeof(*tab), cmp_mapping);
	p->tab = tab;
	return 0;
}

static int cmp_fsym(const void *a, const void *b)
{
	const struct fsym *x = a, *y = b;

	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	if (x->rank != y->rank)
		return x->rank - y->rank;
	return strcmp(x->name, y->name);
}

#define RANK_SIZELESS 100000
/* untyped labels: named only where no function covers the address */
#define RANK_LABEL 1000000

/*
 * Preference among aliases at one address (lower rank first): sized over sizeless, functions
 * over IFUNC symbols (the resolver, not what it resolves to), global/weak over local, default
 * over compat versions (free over cfree@GLIBC_2.2.5), then fewer leading underscores (strdup
 * over __strdup, malloc over __libc_malloc). Aliases ranking equal are then told apart by
 * alias_bonus().
 */
static int fsym_rank(const GElf_Sym *sym, const char *name)
{
	const char *at = strchr(name, '@');
	int rank = 0, us = 0;

	if (!sym->st_size)
		rank += RANK_SIZELESS;
	if (GELF_ST_TYPE(sym->st_info) == STT_GNU_IFUNC)
		rank += 10000;
	if (GELF_ST_TYPE(sym->st_info) == STT_NOTYPE)
		rank += RANK_LABEL;
	if (GELF_ST_BIND(sym->st_info) == STB_LOCAL)
		rank += 1000;
	if (at && at[1] != '@')
		rank += 1000;
	while (name[us] == '_' && us < 9)
		us++;
	return rank + us * 10 + 9;
}

/*
 * The name a library itself builds on has internal "__" variants: memalign has __memalign and
 * __libc_memalign, its alias aligned_alloc none. Count them, to prefer such a name.
 */
static int alias_bonus(const struct fsym *grp, size_t n, const char *name)
{
	size_t len = strcspn(name, "@"), i;
	int bonus = 0;

	for (i = 0; i < n && bonus < 9; i++) {
		const char *other = grp[i].name;
		size_t olen = strcspn(other, "@");

		if (olen > len && other[olen - len - 1] == '_' &&
		    !memcmp(other + olen - len, name, len))
			bonus++;
	}
	return bonus;
}

static bool is_code_label(Elf *elf, GElf_Word shndx, const char *name)
{
	Elf_Scn *scn = elf && shndx < SHN_LORESERVE ? elf_getscn(elf, shndx) : NULL;
	GElf_Shdr shdr;

	if (name[0] == '.' || name[0] == '$' || !scn || !gelf_getshdr(scn, &shdr))
		return false;
	return shdr.sh_flags & SHF_EXECINSTR;
}

/*
 * Function symbols of the module sorted by address, one per address, each with the end of the
 * range it covers. Replaces dwfl_module_addrinfo, which is a linear-ish search per call.
 */
static int build_symtab(struct modfile *mf)
{
	struct fsym *syms = NULL;
	size_t n = 0, i, j, out;
	int nsym, k, err = 0;

	nsym = dwfl_module_getsymtab(mf->mod);
	if (nsym <= 0)
		goto cleanup;
	syms = calloc(nsym, sizeof(*syms));
	if (!syms) {
		err = -ENOMEM;
		goto cleanup;
	}
	for (k = 1; k < nsym; k++) {
		GElf_Sym sym;
		GElf_Addr addr;
		GElf_Word shndx;
		Elf *elf = NULL;
		const char *name;
		int type;

		name = dwfl_module_getsym_info(mf->mod, k, &sym, &addr, &shndx, &elf, NULL);
		if (!name || !*name)
			continue;
		type = GELF_ST_TYPE(sym.st_info);
		if (shndx == SHN_UNDEF || shndx == (GElf_Word)-1)
			continue;
		/* untyped labels in code are functions written in assembly (ld.so's _dl_start_user) */
		if (type == STT_NOTYPE && !is_code_label(elf, shndx, name))
			continue;
		if (type != STT_FUNC && type != STT_GNU_IFUNC && type != STT_NOTYPE)
			continue;
		syms[n].addr = addr;
		syms[n].name = name;
		syms[n].rank = fsym_rank(&sym, name);
		if (sym.st_size) {
			syms[n].end = addr + sym.st_size;
		} else {
			/* A sizeless symbol covers at most the rest of its section. */
			Elf_Scn *scn = elf && shndx < SHN_LORESERVE ? elf_getscn(elf, shndx) : NULL;
			GElf_Shdr shdr;

			syms[n].end = UINT64_MAX;
			if (scn && gelf_getshdr(scn, &shdr))
				syms[n].end = shdr.sh_addr + shdr.sh_size + (addr - sym.st_value);
		}
		n++;
	}
	qsort(syms, n, sizeof(*syms), cmp_fsym);
	/* Keep the preferred alias per address; bound sizeless ones by the next symbol. */
	for (i = 0, out = 0; i < n; i = j) {
		for (j = i + 1; j < n && syms[j].addr == syms[i].addr; j++)
			;
		if (j - i > 1) {
			for (k = i; k < (int)j; k++)
				syms[k].rank -= alias_bonus(syms + i, j - i, syms[k].name);
			qsort(syms + i, j - i, sizeof(*syms), cmp_fsym);
		}
		syms[out++] = syms[i];
	}
	for (i = 0; i + 1 < out; i++)
		if (syms[i].rank >= RANK_SIZELESS && syms[i].end > syms[i + 1].addr)
			syms[i].end = syms[i + 1].addr;
	mf->syms = syms;
	mf->nsyms = out;
	syms = NULL;
cleanup:
	free(syms);
	return err;
}

/* Name of the function symbol covering Dwfl address a, or NULL. */
/* How many symbols start at or below a (syms is sorted by address, one per address). */
static size_t syms_upto(const struct modfile *mf, __u64 a)
{
	size_t lo = 0, hi = mf->nsyms;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (mf->syms[mid].addr <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static const char *lookup_sym(const struct modfile *mf, __u64 a)
{
	size_t lo = syms_upto(mf, a), i;
	const char *label = NULL;
	int back;

	/*
	 * lo - 1 is the last symbol starting at or below a; also try a few enclosing ones. A label
	 * inside a function does not name it: labels only where no function covers a.
	 */
	for (i = lo, back = 0; i > 0 && back < 8; i--, back++) {
		if (a >= mf->syms[i - 1].end)
			continue;
		if (mf->syms[i - 1].rank < RANK_LABEL)
			return mf->syms[i - 1].name;
		if (!label)
			label = mf->syms[i - 1].name;
	}
	return label;
}

/*
 * The function starting at a, if any. A return address no call precedes (the kernel's pushed
 * signal restorer, makecontext's trampoline) is a function's first byte, and the byte before
 * it (what is looked up) in none.
 */
static const char *sym_starting_at(const struct modfile *mf, __u64 a)
{
	size_t i = syms_upto(mf, a);

	return i && mf->syms[i - 1].addr == a && mf->syms[i - 1].rank < RANK_LABEL
		       ? mf->syms[i - 1].name
		       : NULL;
}

/* Where libdwfl looks for debug files: NULL is its default (":.debug:/usr/lib/debug"). */
static char *debuginfo_path;

/*
 * Debug files as libdwfl looks for them, and then, for a module mapped in another root, in that
 * root: next to the file, in its .debug directory, under its /usr/lib/debug by build-id and by
 * the file's path. A stripped program in a container had no symbols at all.
 */
static int find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
			  const char *file_name, const char *debuglink_file,
			  GElf_Word debuglink_crc, char **debuginfo_file_name)
{
	struct modfile *mf = *userdata;
	struct fsroot *r = mf ? mf->root : NULL;
	char *in_root = NULL, *path = NULL;
	int fd;

	fd = dwfl_standard_find_debuginfo(mod, userdata, modname, base, file_name, debuglink_file,
					  debuglink_crc, debuginfo_file_name);
	if (fd >= 0 || !r || !file_name)
		return fd;
	if (asprintf(&path, ":.debug:/proc/self/fd/%d/usr/lib/debug", r->rootfd) < 0) {
		path = NULL;
		goto cleanup;
	}
	if (r->ns_paths && asprintf(&in_root, "/proc/self/fd/%d%s", r->rootfd, file_name) < 0) {
		in_root = NULL;
		goto cleanup;
	}
	/*
	 * Next to the file, its .debug directory, the root's build-id directory, and the root's
	 * /usr/lib/debug/<directory of the file>/<debug link>: libdwfl tries an absolute entry
	 * with the file's directory cut by one leading component at a time, so the path as we
	 * open it (/proc/self/fd/N/..., or a chroot's directory in front) ends at the file's own.
	 */
	debuginfo_path = path;
	fd = dwfl_standard_find_debuginfo(mod, userdata, modname, base,
					  in_root ? in_root : file_name, debuglink_file,
					  debuglink_crc, debuginfo_file_name);
	debuginfo_path = NULL;
cleanup:
	free(in_root);
	free(path);
	return fd;
}

/* Create the Dwfl of a module file on first use. On failure the module is marked bad. */
static void modfile_load(struct modfile *mf)
{
	static const Dwfl_Callbacks callbacks = {
		.find_debuginfo = find_debuginfo,
		.section_address = dwfl_offline_section_address,
		.debuginfo_path = &debuginfo_path,
	};
	void **userdata;
	Dwarf_Addr bias = 0;
	size_t nph, i;
	Elf *elf;
	int fd = -1;

	mf->state = MF_BAD;
	if (mf->fd < 0)
		goto cleanup;
	mf->dwfl = dwfl_begin(&callbacks);
	if (!mf->dwfl)
		goto cleanup;
	fd = dup(mf->fd);
	if (fd < 0)
		goto cleanup;
	dwfl_report_begin(mf->dwfl);
	mf->mod = dwfl_report_elf(mf->dwfl, mf->path, mf->path, fd, 0, false);
	dwfl_report_end(mf->dwfl, NULL, NULL);
	if (!mf->mod) {
		dlog("symbolizer: %s: %s\n", mf->path, dwfl_errmsg(-1));
		goto cleanup;
	}
	fd = -1; /* the Dwfl owns it now */
	/* The Dwfl holds its own descriptor; ours is no longer needed. */
	close(mf->fd);
	mf->fd = -1;
	if (dwfl_module_info(mf->mod, &userdata, NULL, NULL, NULL, NULL, NULL, NULL))
		*userdata = mf;

	elf = dwfl_module_getelf(mf->mod, &bias);
	if (!elf || elf_getphdrnum(elf, &nph))
		goto cleanup;
	mf->bias = bias;
	mf->segs = calloc(nph ? nph : 1, sizeof(*mf->segs));
	if (!mf->segs)
		goto cleanup;
	for (i = 0; i < nph; i++) {
		GElf_Phdr ph;

		if (!gelf_getphdr(elf, i, &ph) || ph.p_type != PT_LOAD)
			continue;
		mf->segs[mf->nsegs++] = (struct seg){
			.off = ph.p_offset, .filesz = ph.p_filesz, .vaddr = ph.p_vaddr
		};
	}
	if (build_symtab(mf))
		goto cleanup;
	if (mf->root) {
		/* the debug file is looked for now, while the root is held */
		dwfl_module_getdwarf(mf->mod, &bias);
		modfile_drop_root(mf);
	}
	mf->state = MF_READY;
	dlog("symbolizer: loaded %s: %d segments, %zu functions\n", mf->path, mf->nsegs,
	     mf->nsyms);
cleanup:
	if (fd >= 0)
		close(fd);
	if (mf->state == MF_BAD && mf->fd >= 0) {
		close(mf->fd);
		mf->fd = -1;
	}
	if (mf->state == MF_BAD)
		modfile_drop_root(mf);
}

/* File offset -> ELF virtual address through the PT_LOAD segment holding that offset. */
static bool file_to_vaddr(const struct modfile *mf, __u64 off, __u64 *vaddr)
{
	int i;

	for (i = 0; i < mf->nsegs; i++) {
		const struct seg *sg = &mf->segs[i];

		if (off >= sg->off && off < sg->off + sg->filesz) {
			*vaddr = off - sg->off + sg->vaddr;
			return true;
		}
	}
	return false;
}

/* Name of a function DIE: demangled linkage name (qualified, as symbols are) or plain name. */
static const char *die_func_name(struct symbolizer *s, Dwarf_Die *die)
{
	Dwarf_Attribute attr;
	const char *name;

	name = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_linkage_name, &attr));
	if (!name)
		name = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &attr));
	if (name)
		return intern_func(s, name);
	return intern_func(s, dwarf_diename(die));
}

/* Normalize a path in place: drop "." components and fold "dir/.." (keeps a leading "./"). */
static void path_normalize(char *path)
{
	char *comp[256], *p, *save = NULL, *out = path;
	bool abs = path[0] == '/', dot = path[0] == '.' && path[1] == '/';
	int n = 0, i;

	for (p = path, i = 0; *p; p++)
		i += *p == '/';
	if (i >= 256)
		return; /* absurdly deep: leave it */
	for (p = strtok_r(path, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
		if (!strcmp(p, "."))
			continue;
		if (!strcmp(p, "..") && n > 0 && strcmp(comp[n - 1], ".."))
			n--;
		else
			comp[n++] = p;
	}
	if (abs) {
		*out++ = '/';
	} else if (dot) {
		*out++ = '.';
		*out++ = '/';
	}
	for (i = 0; i < n; i++) {
		size_t len = strlen(comp[i]);

		memmove(out, comp[i], len);
		out += len;
		if (i + 1 < n)
			*out++ = '/';
	}
	*out = '\0';
}

/*
 * Intern a source file name, prefixed with the compilation directory if relative and not
 * already under it. libdw joins a file with its line-table directory but not a relative
 * directory with the compilation directory: libc6-dbg (built with -fdebug-prefix-map) has both
 * "./malloc/malloc.c" and "../include/scratch_buffer.h" for comp dir "./malloc".
 */
static const char *intern_src(struct symbolizer *s, const char *file, const char *comp_dir)
{
	size_t clen = comp_dir ? strlen(comp_dir) : 0;
	char *full = NULL;
	const char *ret;

	if (!file)
		return NULL;
	if (file[0] == '/' || !clen || (!strncmp(file, comp_dir, clen) && file[clen] == '/'))
		return str_intern(&s->strs, file);
	if (asprintf(&full, "%s/%s", comp_dir, file) < 0)
		return str_intern(&s->strs, file);
	path_normalize(full);
	ret = str_intern(&s->strs, full);
	free(full);
	return ret;
}

/* Where an inlined subroutine was called from: DW_AT_call_file / DW_AT_call_line. */
static void call_site(struct symbolizer *s, Dwarf_Die *die, const char **file, int *line)
{
	Dwarf_Attribute attr;
	Dwarf_Word val;
	Dwarf_Files *files;
	Dwarf_Die cu;
	size_t nfiles;

	*file = NULL;
	*line = 0;
	if (dwarf_formudata(dwarf_attr(die, DW_AT_call_file, &attr), &val) == 0 &&
	    dwarf_diecu(die, &cu, NULL, NULL) && dwarf_getsrcfiles(&cu, &files, &nfiles) == 0 &&
	    val < nfiles)
		*file = intern_src(s, dwarf_filesrc(files, val, NULL, NULL),
				   dwarf_formstring(dwarf_attr(&cu, DW_AT_comp_dir, &attr)));
	if (dwarf_formudata(dwarf_attr(die, DW_AT_call_line, &attr), &val) == 0)
		*line = val;
}

/* Add die's address ranges to ix (a function without ranges is a declaration: nothing). */
static int cu_index_add(struct cu_index *ix, Dwarf_Die *die)
{
	Dwarf_Addr base, lo, hi;
	ptrdiff_t off = 0;

	while ((off = dwarf_ranges(die, off, &base, &lo, &hi)) > 0) {
		if (lo >= hi)
			continue;
		if (util__reserve(&ix->r, &ix->cap, ix->n + 1, sizeof(*ix->r), 64))
			return -ENOMEM;
		ix->r[ix->n++] = (struct fn_range){ .lo = lo, .hi = hi, .die = *die };
	}
	return 0;
}

/* The functions among parent's children, and inside the namespaces and classes there. */
static int cu_index_scan(struct cu_index *ix, Dwarf_Die *parent, int depth)
{
	Dwarf_Die child;
	int err = 0;

	if (dwarf_child(parent, &child) != 0)
		return 0;
	do {
		switch (dwarf_tag(&child)) {
		case DW_TAG_subprogram:
			err = cu_index_add(ix, &child);
			break;
		case DW_TAG_namespace:
		case DW_TAG_module:
		case DW_TAG_class_type:
		case DW_TAG_structure_type:
			if (depth < 16)
				err = cu_index_scan(ix, &child, depth + 1);
			break;
		}
	} while (!err && dwarf_siblingof(&child, &child) == 0);
	return err;
}

static int cmp_fn_range(const void *a, const void *b)
{
	const struct fn_range *x = a, *y = b;

	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return x->hi < y->hi ? -1 : x->hi > y->hi;
}

/* The unit's index, built on first use (empty when it cannot be: lookups then fall back). */
static struct cu_index *cu_index_get(struct symbolizer *s, struct modfile *mf, Dwarf_Die *cudie)
{
	Dwarf_Off key = dwarf_dieoffset(cudie);
	struct cu_index *ix = htab_find(&mf->cus, key, 0);
	size_t i;

	if (ix)
		return ix;
	ix = calloc(1, sizeof(*ix));
	if (!ix)
		return NULL;
	if (cu_index_scan(ix, cudie, 0)) {
		free(ix->r);
		ix->r = NULL;
		ix->n = 0;
	}
	if (ix->n)
		qsort(ix->r, ix->n, sizeof(*ix->r), cmp_fn_range);
	for (i = 0; i < ix->n; i++) {
		Dwarf_Addr before = i ? ix->r[i - 1].maxhi : 0;

		ix->r[i].maxhi = before > ix->r[i].hi ? before : ix->r[i].hi;
	}
	if (htab_insert(&mf->cus, key, 0, ix)) {
		free(ix->r);
		free(ix);
		return NULL;
	}
	s->stats.units_indexed++;
	return ix;
}

/* The function holding pc: of those that do, the one starting last. */
static Dwarf_Die *cu_index_find(const struct cu_index *ix, Dwarf_Addr pc)
{
	size_t lo = 0, hi = ix->n;

	while (lo < hi) { /* the first range with r.lo > pc */
		size_t mid = lo + (hi - lo) / 2;

		if (ix->r[mid].lo <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	while (lo-- > 0 && ix->r[lo].maxhi > pc)
		if (pc < ix->r[lo].hi)
			return &ix->r[lo].die;
	return NULL;
}

/* Scopes that hold code, as libdw's own scope walk descends them. */
static bool is_code_scope(int tag)
{
	switch (tag) {
	case DW_TAG_lexical_block:
	case DW_TAG_inlined_subroutine:
	case DW_TAG_try_block:
	case DW_TAG_catch_block:
	case DW_TAG_with_stmt:
	case DW_TAG_entry_point:
	case DW_TAG_subprogram:
		return true;
	}
	return false;
}

/*
 * The scopes holding pc from fn down, innermost first, in *out (malloc'd): at each level the
 * first child holding pc, as dwarf_getscopes takes it.
 */
static int fn_scopes(Dwarf_Die *fn, Dwarf_Addr pc, Dwarf_Die **out)
{
	Dwarf_Die path[MAX_INLINE_FRAMES * 2], child;
	int n = 0, i;

	path[n++] = *fn;
	while (n < (int)(sizeof(path) / sizeof(path[0])) && dwarf_child(&path[n - 1], &child) == 0) {
		bool found = false;

		do {
			found = is_code_scope(dwarf_tag(&child)) && dwarf_haspc(&child, pc) > 0;
		} while (!found && dwarf_siblingof(&child, &child) == 0);
		if (!found)
			break;
		path[n++] = child;
	}
	*out = malloc(n * sizeof(**out));
	if (!*out)
		return 0;
	for (i = 0; i < n; i++)
		(*out)[i] = path[n - 1 - i];
	return n;
}

/*
 * The scopes holding pc in a unit, innermost first, each a DIE of the concrete tree (an inlined
 * subroutine's, not its abstract origin's), in *out (malloc'd). From the unit's index of
 * functions; where it has none for pc (code in an imported unit, say), from libdw's walk.
 */
static int scopes_at(struct symbolizer *s, struct modfile *mf, Dwarf_Die *cudie, Dwarf_Addr pc,
		     Dwarf_Die **out)
{
	struct cu_index *ix = cu_index_get(s, mf, cudie);
	Dwarf_Die *fn = ix ? cu_index_find(ix, pc) : NULL, *scopes = NULL;
	int n, i;

	*out = NULL;
	if (fn)
		return fn_scopes(fn, pc, out);
	s->stats.unit_walks++;
	n = dwarf_getscopes(cudie, pc, &scopes);
	for (i = 0; i < n; i++)
		if (dwarf_tag(&scopes[i]) == DW_TAG_inlined_subroutine)
			break;
	if (i == n) {
		*out = scopes;
		return n > 0 ? n : 0;
	}
	/*
	 * dwarf_getscopes continues into the abstract origin of an inlined subroutine, so the
	 * outer part of the chain only comes from walking the concrete DIE tree.
	 */
	n = dwarf_getscopes_die(&scopes[0], out);
	free(scopes);
	return n > 0 ? n : 0;
}

/* Symbolize one ELF vaddr of a loaded module: inlined frames first, then the real function. */
static struct cache_ent *symbolize(struct symbolizer *s, struct modfile *mf, __u64 vaddr)
{
	struct cframe fr[MAX_INLINE_FRAMES];
	struct cache_ent *ent = NULL;
	Dwarf_Die *chain = NULL, *cudie, outer;
	Dwarf_Addr a = vaddr + mf->bias, cubias = 0;
	const char *file = NULL, *func;
	bool have_outer = false;
	int n = 0, line = 0, nchain, i;
	Dwfl_Line *dl;

	dl = dwfl_module_getsrc(mf->mod, a);
	if (dl)
		file = intern_src(s, dwfl_lineinfo(dl, NULL, &line, NULL, NULL, NULL),
				  dwfl_line_comp_dir(dl));

	cudie = dwfl_module_addrdie(mf->mod, a, &cubias);
	s->stats.symbolized++;
	nchain = cudie ? scopes_at(s, mf, cudie, a - cubias, &chain) : 0;
	for (i = 0; i < nchain && n < MAX_INLINE_FRAMES - 1; i++) {
		int tag = dwarf_tag(&chain[i]);

		if (tag == DW_TAG_inlined_subroutine) {
			fr[n++] = (struct cframe){
				.func = die_func_name(s, &chain[i]),
				.file = file,
				.line = line,
				.inlined = true,
			};
			call_site(s, &chain[i], &file, &line);
		} else if (tag == DW_TAG_subprogram) {
			outer = chain[i];
			have_outer = true;
			break;
		}
	}

	func = intern_func(s, lookup_sym(mf, a));
	if (!func && have_outer)
		func = die_func_name(s, &outer);
	if (!func)
		func = intern_func(s, sym_starting_at(mf, a + 1));
	fr[n++] = (struct cframe){ .func = func, .file = file, .line = line, .inlined = false };

	ent = malloc(sizeof(*ent) + n * sizeof(ent->f[0]));
	if (!ent)
		goto cleanup;
	ent->n = n;
	memcpy(ent->f, fr, n * sizeof(fr[0]));
cleanup:
	free(chain);
	return ent;
}

void symbolizer__stats(const struct symbolizer *s, struct symbolizer_stats *out)
{
	*out = s->stats;
	out->files_open = s->files.len;
	out->results = s->cache.len;
	out->strings = s->strs.len;
}

/* Find the process and its mapping of addr, rereading a live process's maps on a miss. */
static struct mapping *lookup_mapping(struct symbolizer *s, __u32 pid, __u64 addr)
{
	struct proc *p = htab_find(&s->procs, pid, 0);
	struct mapping *m = p ? find_mapping(p->tab, p->ntab, addr) : NULL;
	__u64 now;

	if (m)
		return m;
	/* A library dlopened since add_pid(); rate-limited as it costs a read of the maps. */
	now = now_ns();
	if (!p) {
		/* Never added: try once, and remember a dead pid so as not to retry per frame. */
		symbolizer__add_pid(s, pid);
		p = htab_find(&s->procs, pid, 0);
		if (!p)
			p = proc_create(s, pid);
		if (p)
			p->last_miss_refresh = now;
	} else if (now - p->last_miss_refresh >= MISS_REFRESH_NS) {
		p->last_miss_refresh = now;
		if (symbolizer__add_pid(s, pid))
			return NULL;
	} else {
		return NULL;
	}
	return p ? find_mapping(p->tab, p->ntab, addr) : NULL;
}

int symbolizer__resolve(struct symbolizer *s, __u32 pid, __u64 ip, struct sym_frame *out, int max)
{
	struct cache_ent *ent;
	struct mapping *m;
	__u64 addr = ip - 1, off, vaddr;
	int i;

	if (max < 1)
		return 0;
	out[0] = (struct sym_frame){ .addr = addr };
	m = lookup_mapping(s, pid, addr);
	if (!m)
		return 1;
	off = addr - m->start + m->pgoff;
	out[0].module = m->path;
	out[0].module_offset = off; /* until the ELF vaddr is known */
	if (m->mf->state == MF_NEW)
		modfile_load(m->mf);
	if (m->mf->state != MF_READY || !file_to_vaddr(m->mf, off, &vaddr))
		return 1;
	out[0].module_offset = vaddr;

	ent = htab_find(&s->cache, (uintptr_t)m->mf, vaddr);
	if (!ent) {
		ent = symbolize(s, m->mf, vaddr);
		if (!ent)
			return 1;
		if (htab_insert(&s->cache, (uintptr_t)m->mf, vaddr, ent)) {
			free(ent);
			return 1;
		}
	}
	for (i = 0; i < ent->n && i < max; i++)
		out[i] = (struct sym_frame){
			.addr = addr,
			.module_offset = vaddr,
			.func = ent->f[i].func,
			.file = ent->f[i].file,
			.line = ent->f[i].line,
			.module = m->path,
			.inlined = ent->f[i].inlined,
		};
	return i;
}

Elf *symbolizer__module_elf(struct symbolizer *s, __u32 pid, __u64 ip, __u64 *dev, __u64 *ino)
{
	struct proc *p = htab_find(&s->procs, pid, 0);
	struct mapping *m = p ? find_mapping(p->tab, p->ntab, ip - 1) : NULL;
	Dwarf_Addr bias;

	if (!m || m->mf->state != MF_READY)
		return NULL;
	*dev = m->mf->dev;
	*ino = m->mf->ino;
	return dwfl_module_getelf(m->mf->mod, &bias);
}
