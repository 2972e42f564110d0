// SPDX-License-Identifier: MIT
/*
 * Prometheus metrics of `serve` (see serve_metrics.h). A process is counted in the group
 * (comm, exe) it had when first seen; when it execs into another group, or exits and is
 * forgotten, what it counted so far stays with the old group as "retired" counts, so every
 * counter series only ever grows. A process's exe is read from /proc/PID/exe while it lives.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cmd.h"
#include "serve_metrics.h"
#include "util.h"

/* A group without processes for this long is forgotten (its series end). */
#define GROUP_IDLE_NS (15 * 60 * 1000000000ull)

struct mgroup {
	char comm[UTIL_UTF8_COMM_LEN]; /* labels: valid UTF-8, as the exe */
	char *exe;		       /* "" when unknown */
	__u64 retired_alloc_bytes, retired_allocs, retired_frees;
	__u64 idle_since_ns; /* 0 while it has processes */
	/* this round's figures */
	__u64 alloc_bytes, allocs, frees;
	__s64 live_bytes, live_blocks;
	int nr_procs;
};

struct mproc {
	__u32 pid;
	__u32 gen; /* the image (execs): counts of each start from zero */
	int group;
	char comm[UTIL_UTF8_COMM_LEN];
	char *exe;
	__u64 base_alloc_bytes, base_allocs, base_frees; /* counts when it joined its group */
	__u64 alloc_bytes, allocs, frees;		 /* as of the last snapshot */
	__s64 live_bytes, live_blocks, growth;
	bool exited, seen;
};

struct serve_metrics {
	struct mgroup *groups;
	size_t nr_groups, cap_groups;
	struct mproc *procs; /* sorted by pid */
	size_t nr_procs, cap_procs;
};

struct serve_metrics *serve_metrics__new(void)
{
	return calloc(1, sizeof(struct serve_metrics));
}

void serve_metrics__free(struct serve_metrics *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->nr_groups; i++)
		free(m->groups[i].exe);
	for (size_t i = 0; i < m->nr_procs; i++)
		free(m->procs[i].exe);
	free(m->groups);
	free(m->procs);
	free(m);
}

/* The executable of a live process ("" if it cannot be read). */
static char *read_exe(__u32 pid)
{
	char path[64], buf[PATH_MAX];
	ssize_t n;
	size_t dl = strlen(" (deleted)");

	snprintf(path, sizeof(path), "/proc/%u/exe", pid);
	n = readlink(path, buf, sizeof(buf) - 1);
	if (n < 0)
		n = 0;
	buf[n] = '\0';
	/* a replaced binary is still the same program for grouping */
	if ((size_t)n > dl && strcmp(buf + n - dl, " (deleted)") == 0)
		buf[n - dl] = '\0';
	return util__utf8_dup(buf);
}

static int group_of(struct serve_metrics *m, const char *comm, const char *exe)
{
	struct mgroup *g;

	for (size_t i = 0; i < m->nr_groups; i++)
		if (strcmp(m->groups[i].comm, comm) == 0 && strcmp(m->groups[i].exe, exe) == 0)
			return i;
	if (util__reserve(&m->groups, &m->cap_groups, m->nr_groups + 1, sizeof(*g), 32))
		return -ENOMEM;
	g = &m->groups[m->nr_groups];
	memset(g, 0, sizeof(*g));
	snprintf(g->comm, sizeof(g->comm), "%s", comm);
	g->exe = strdup(exe);
	if (!g->exe)
		return -ENOMEM;
	return m->nr_groups++;
}

/* What p counted in its group stays there. */
static void retire(struct serve_metrics *m, struct mproc *p)
{
	struct mgroup *g = &m->groups[p->group];

	g->retired_alloc_bytes += p->alloc_bytes - p->base_alloc_bytes;
	g->retired_allocs += p->allocs - p->base_allocs;
	g->retired_frees += p->frees - p->base_frees;
	p->base_alloc_bytes = p->alloc_bytes;
	p->base_allocs = p->allocs;
	p->base_frees = p->frees;
}

static struct mproc *find_proc(struct serve_metrics *m, __u32 pid)
{
	size_t lo = 0, hi = m->nr_procs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->procs[mid].pid == pid)
			return &m->procs[mid];
		if (m->procs[mid].pid < pid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int cmp_proc(const void *a, const void *b)
{
	__u32 x = ((const struct mproc *)a)->pid, y = ((const struct mproc *)b)->pid;

	return x < y ? -1 : x > y;
}

/*
 * Move p into the group of (comm, its exe), re-reading the exe if it lives. Both are kept as
 * valid UTF-8, as labels must be: names that differ only in bytes that are not UTF-8 are one
 * group, not two series with the same labels.
 */
static int regroup(struct serve_metrics *m, struct mproc *p, const char *comm)
{
	int g;

	if (!p->exited) {
		char *exe = read_exe(p->pid);

		if (!exe)
			return -ENOMEM;
		free(p->exe);
		p->exe = exe;
	}
	snprintf(p->comm, sizeof(p->comm), "%s", comm);
	g = group_of(m, p->comm, p->exe);
	if (g < 0)
		return g;
	p->group = g;
	return 0;
}

static int account_proc(struct serve_metrics *m, const struct snap_proc *sp, size_t *nr_new)
{
	char raw[ASZ_COMM_LEN + 1] = "", comm[UTIL_UTF8_COMM_LEN];
	struct mproc *p = find_proc(m, sp->pid);
	int err;

	memcpy(raw, sp->comm, ASZ_COMM_LEN);
	util__utf8_copy(comm, sizeof(comm), raw);
	/* counters that went down: the pid now names another process */
	if (p && (sp->life_alloc_bytes < p->alloc_bytes || sp->life_allocs < p->allocs ||
		  sp->life_frees < p->frees)) {
		retire(m, p);
		p->base_alloc_bytes = p->base_allocs = p->base_frees = 0;
		p->alloc_bytes = p->allocs = p->frees = 0;
		p->exited = sp->exited;
		err = regroup(m, p, comm);
		if (err)
			return err;
	}
	if (!p) {
		/* appended past the sorted part: sorted in once every process is seen */
		err = util__reserve(&m->procs, &m->cap_procs, m->nr_procs + *nr_new + 1, sizeof(*p),
				    32);
		if (err)
			return err;
		p = &m->procs[m->nr_procs + (*nr_new)++];
		memset(p, 0, sizeof(*p));
		p->pid = sp->pid;
		p->exited = sp->exited;
		p->exe = strdup("");
		if (!p->exe)
			return -ENOMEM;
		err = regroup(m, p, comm);
		if (err)
			return err;
	} else if (sp->gen != p->gen || strcmp(p->comm, comm) != 0 || (!p->exe[0] && !sp->exited)) {
		/* exec'ed (or its exe was unreadable): counts from now on go to the new group */
		int old_group = p->group, g;

		if (sp->gen != p->gen) {
			/*
			 * The old images counted everything but the new image's figures, also
			 * what they did after the last snapshot: that stays in the old group too.
			 */
			p->alloc_bytes = sp->life_alloc_bytes - sp->alloc_bytes;
			p->allocs = sp->life_allocs - sp->allocs;
			p->frees = sp->life_frees - sp->frees;
		}
		p->exited = sp->exited;
		err = regroup(m, p, comm);
		if (err)
			return err;
		if (p->group != old_group) {
			g = p->group;
			p->group = old_group;
			retire(m, p);
			p->group = g;
		}
	}
	/* every image's: counters must never go down */
	p->gen = sp->gen;
	p->alloc_bytes = sp->life_alloc_bytes;
	p->allocs = sp->life_allocs;
	p->frees = sp->life_frees;
	p->live_bytes = sp->live_bytes;
	p->live_blocks = sp->live_allocs;
	p->growth = sp->growth_total_bytes;
	p->exited = sp->exited;
	p->seen = true;
	return 0;
}

/* Forget processes gone from the snapshot, and groups idle for long. */
static void prune(struct serve_metrics *m, __u64 now)
{
	size_t i, j;
	int *remap;

	for (i = j = 0; i < m->nr_procs; i++) {
		struct mproc *p = &m->procs[i];

		if (!p->seen) {
			retire(m, p);
			free(p->exe);
			continue;
		}
		m->procs[j++] = *p;
	}
	m->nr_procs = j;
	for (i = 0; i < m->nr_groups; i++)
		m->groups[i].nr_procs = 0;
	for (i = 0; i < m->nr_procs; i++)
		m->groups[m->procs[i].group].nr_procs++;
	remap = calloc(m->nr_groups ? m->nr_groups : 1, sizeof(*remap));
	if (!remap)
		return; /* try again next time */
	for (i = j = 0; i < m->nr_groups; i++) {
		struct mgroup *g = &m->groups[i];

		if (g->nr_procs)
			g->idle_since_ns = 0;
		else if (!g->idle_since_ns)
			g->idle_since_ns = now;
		if (!g->nr_procs && now - g->idle_since_ns >= GROUP_IDLE_NS) {
			free(g->exe);
			remap[i] = -1;
			continue;
		}
		remap[i] = j;
		m->groups[j++] = *g;
	}
	m->nr_groups = j;
	for (i = 0; i < m->nr_procs; i++)
		m->procs[i].group = remap[m->procs[i].group];
	free(remap);
}

/* ---------------------------------------------------------------- rendering */

/* A label value (valid UTF-8: see regroup()), with \\ " and newline escaped. */
static void put_label(FILE *f, const char *name, const char *v, bool first)
{
	fprintf(f, "%s%s=\"", first ? "" : ",", name);
	for (; *v; v++) {
		if (*v == '\\')
			fputs("\\\\", f);
		else if (*v == '"')
			fputs("\\\"", f);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
	fputc('"', f);
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

enum gval { G_LIVE, G_BLOCKS, G_ALLOC_BYTES, G_ALLOCS, G_FREES };

static void group_series(FILE *f, const struct mgroup *const *groups, size_t n, const char *name,
			 enum gval v)
{
	for (size_t i = 0; i < n; i++) {
		const struct mgroup *g = groups[i];

		fputs(name, f);
		put_label(f, "{comm", g->comm, true);
		put_label(f, "exe", g->exe, false);
		switch (v) {
		case G_LIVE:
			fprintf(f, "} %lld\n", (long long)g->live_bytes);
			break;
		case G_BLOCKS:
			fprintf(f, "} %lld\n", (long long)g->live_blocks);
			break;
		case G_ALLOC_BYTES:
			fprintf(f, "} %llu\n", (unsigned long long)g->alloc_bytes);
			break;
		case G_ALLOCS:
			fprintf(f, "} %llu\n", (unsigned long long)g->allocs);
			break;
		case G_FREES:
			fprintf(f, "} %llu\n", (unsigned long long)g->frees);
			break;
		}
	}
}

static int cmp_group(const void *a, const void *b)
{
	const struct mgroup *x = *(const struct mgroup *const *)a;
	const struct mgroup *y = *(const struct mgroup *const *)b;
	int c = strcmp(x->comm, y->comm);

	return c ? c : strcmp(x->exe, y->exe);
}

/* Top growers first: growth since attach, then live bytes, then pid. */
static int cmp_grower(const void *a, const void *b)
{
	const struct mproc *x = *(const struct mproc *const *)a, *y = *(const struct mproc *const *)b;

	if (x->growth != y->growth)
		return x->growth > y->growth ? -1 : 1;
	if (x->live_bytes != y->live_bytes)
		return x->live_bytes > y->live_bytes ? -1 : 1;
	return x->pid < y->pid ? -1 : x->pid > y->pid;
}

static void render_pids(FILE *f, const struct serve_metrics *m, int n)
{
	const struct mproc **top = calloc(m->nr_procs ? m->nr_procs : 1, sizeof(*top));
	size_t nr = 0, i;

	if (!top)
		return;
	for (i = 0; i < m->nr_procs; i++)
		if (!m->procs[i].exited)
			top[nr++] = &m->procs[i];
	qsort(top, nr, sizeof(*top), cmp_grower);
	if ((size_t)n < nr)
		nr = n;
	family(f, "asizeof_process_live_bytes", "gauge",
	       "Live heap bytes of the top growing processes (--pid-labels).");
	for (i = 0; i < nr; i++) {
		fprintf(f, "asizeof_process_live_bytes{pid=\"%u\"", top[i]->pid);
		put_label(f, "comm", top[i]->comm, false);
		put_label(f, "exe", top[i]->exe, false);
		fprintf(f, "} %lld\n", (long long)top[i]->live_bytes);
	}
	family(f, "asizeof_process_growth_bytes", "gauge",
	       "Live heap bytes gained since attach by the top growing processes (--pid-labels).");
	for (i = 0; i < nr; i++) {
		fprintf(f, "asizeof_process_growth_bytes{pid=\"%u\"", top[i]->pid);
		put_label(f, "comm", top[i]->comm, false);
		put_label(f, "exe", top[i]->exe, false);
		fprintf(f, "} %lld\n", (long long)top[i]->growth);
	}
	free(top);
}

static int render(FILE *f, struct serve_metrics *m, const struct snapshot *s, int pid_labels)
{
	const struct mgroup **g = calloc(m->nr_groups ? m->nr_groups : 1, sizeof(*g));
	size_t i, n = m->nr_groups;
	int tracked = 0;

	if (!g)
		return -ENOMEM;
	/* sorted: the same order every time, easy to read and to diff */
	for (i = 0; i < n; i++)
		g[i] = &m->groups[i];
	qsort(g, n, sizeof(*g), cmp_group);

	family(f, "asizeof_live_bytes", "gauge",
	       "Heap bytes allocated and not yet freed by the live processes of the group.");
	group_series(f, g, n, "asizeof_live_bytes", G_LIVE);
	family(f, "asizeof_live_blocks", "gauge",
	       "Heap blocks allocated and not yet freed by the live processes of the group.");
	group_series(f, g, n, "asizeof_live_blocks", G_BLOCKS);
	family(f, "asizeof_allocated_bytes_total", "counter",
	       "Heap bytes allocated since attach (sizes asked for), exited processes included.");
	group_series(f, g, n, "asizeof_allocated_bytes_total", G_ALLOC_BYTES);
	family(f, "asizeof_allocations_total", "counter",
	       "Heap allocations since attach, exited processes included.");
	group_series(f, g, n, "asizeof_allocations_total", G_ALLOCS);
	family(f, "asizeof_frees_total", "counter",
	       "Frees of blocks allocated since attach, exited processes included.");
	group_series(f, g, n, "asizeof_frees_total", G_FREES);

	family(f, "asizeof_dropped_events_total", "counter",
	       "Allocator events not recorded exactly, by reason.");
	for (i = 0; i < ASZ_NR_DROPS; i++)
		fprintf(f, "asizeof_dropped_events_total{reason=\"%s\"} %llu\n",
			snapshot__drop_name(i), (unsigned long long)s->drops[i]);
	for (i = 0; i < m->nr_procs; i++)
		tracked += !m->procs[i].exited;
	family(f, "asizeof_tracked_processes", "gauge", "Live processes being traced.");
	fprintf(f, "asizeof_tracked_processes %d\n", tracked);
	family(f, "asizeof_sample_bytes", "gauge",
	       "Sampling period in bytes (--sample-bytes): 0, every allocation is counted exactly; "
	       "else the byte and count figures are estimates.");
	fprintf(f, "asizeof_sample_bytes %llu\n", (unsigned long long)s->sample_bytes);
	family(f, "asizeof_build_info", "gauge", "Version of asizeof-bpf; always 1.");
	fprintf(f, "asizeof_build_info{version=\"%s\"} 1\n", ASZ_VERSION);
	if (pid_labels > 0)
		render_pids(f, m, pid_labels);
	free(g);
	return 0;
}

int serve_metrics__update(struct serve_metrics *m, const struct snapshot *s, int pid_labels,
			  char **text, size_t *len)
{
	size_t nr_new = 0, i;
	FILE *f;
	int err;

	*text = NULL;
	*len = 0;
	for (i = 0; i < m->nr_procs; i++)
		m->procs[i].seen = false;
	for (i = 0; i < s->nr_procs; i++) {
		err = account_proc(m, &s->procs[i], &nr_new);
		if (err)
			return err;
	}
	m->nr_procs += nr_new;
	prune(m, s->mono_ns ? s->mono_ns : util__mono_ns());
	if (m->nr_procs)
		qsort(m->procs, m->nr_procs, sizeof(*m->procs), cmp_proc);

	/* group figures: retired counts plus what live members counted in the group */
	for (i = 0; i < m->nr_groups; i++) {
		struct mgroup *g = &m->groups[i];

		g->alloc_bytes = g->retired_alloc_bytes;
		g->allocs = g->retired_allocs;
		g->frees = g->retired_frees;
		g->live_bytes = g->live_blocks = 0;
	}
	for (i = 0; i < m->nr_procs; i++) {
		const struct mproc *p = &m->procs[i];
		struct mgroup *g = &m->groups[p->group];

		g->alloc_bytes += p->alloc_bytes - p->base_alloc_bytes;
		g->allocs += p->allocs - p->base_allocs;
		g->frees += p->frees - p->base_frees;
		/* an exited process holds nothing any more */
		if (!p->exited) {
			g->live_bytes += p->live_bytes;
			g->live_blocks += p->live_blocks;
		}
	}

	f = open_memstream(text, len);
	if (!f)
		return -errno;
	err = render(f, m, s, pid_labels);
	if (fclose(f) && !err)
		err = -ENOMEM;
	if (err) {
		free(*text);
		*text = NULL;
		return err;
	}
	return 0;
}
