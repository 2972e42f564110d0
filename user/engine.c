// SPDX-License-Identifier: MIT
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/magic.h>
#include <linux/perf_event.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "asizeof.skel.h"
#include "engine.h"
#include "kfeatures.h"
#include "log.h"
#include "target.h"
#include "util.h"

struct etarget {
	pid_t pid;
	char comm[ASZ_COMM_LEN];
	char *exe; /* malloc'ed, NULL until known: paths run to PATH_MAX, most are short */
	char cgroup[256];
	bool exited;
};

/*
 * Stack contents never change for an id, so each is fetched from the kernel once. A slot holds
 * what a snapshot copies (the frame count and flags too): collecting 60,000 stacks an interval
 * then costs one cache miss a stack, not three (key, pointer, stack).
 */
struct stack_slot {
	__u64 key; /* 0: free */
	struct asz_stack *st;
	__u32 nr, flags;
	__u32 seen; /* the last engine__collect() whose aggregates used it */
	__u32 pad;
};

struct stack_cache {
	struct stack_slot *slot;
	size_t cap, nr;
};

/* Stack ids sorted, for membership tests. */
struct idset {
	__u64 *ids;
	size_t nr, cap;
};

/*
 * The aggregates' slots (struct asz_agg_slot), mapped in place. A slot user space retires (its
 * key out of the aggs hash) is freed for reuse once no program can hold it and no block does.
 */
enum {
	SLOT_USED = 0,
	SLOT_RETIRING = 1, /* idle: freed when no block holds it (its blocks still count) */
	SLOT_GONE = 2,	   /* of an older image or a forgotten process: freed, blocks and all */
};

struct retiring {
	__u32 slot;
	bool waited; /* the programs running when its key went have all returned since */
};

/* A process image's counts in its retired aggregates (in no stack's figures any more). */
struct retired_proc {
	__u32 pid, gen;
	__u64 allocs, alloc_bytes;
};

struct aggs {
	struct asz_agg_slot *slots;
	size_t map_len, full_len; /* mapped (the slots in use, rounded up), and the whole array */
	int slots_fd;
	__u32 nr;	/* slots */
	__u8 *state;	/* SLOT_* per slot */
	__u64 *seen;	/* allocs + frees + 1 of each slot at the last collect (0: not seen) */
	__u8 *idle;	/* unchanged since the collect before, holding no block */
	struct retiring *retiring;
	size_t nr_retiring, cap_retiring;
	int hash_fd, free_fd;
	int gp_fd, gp_inner_fd; /* an array of maps: each update waits for running programs */
	__u64 retired;		/* idle aggregates retired (ASZ_DROP_AGGS_RETIRED) */
	struct idset freed_stacks; /* stacks of slots freed since the last sweep: to look at */
	struct retired_proc *procs; /* what their heap aggregates had counted, sorted by pid */
	size_t nr_procs, cap_procs;
	__u32 used;		/* slots in use at the last collect */
	__u32 stacks_used[2];	/* short and long stacks its aggregates used */
};


struct engine {
	struct asizeof_bpf *skel;
	bool multi;
	bool session; /* entry and return in one uprobe session program (sampling mode) */
	bool entry_only; /* --empty-probes=entry: no return probes */
	bool new_session; /* operator new alone in one (its return can be skipped: see BPF) */
	struct bpf_link **links; /* perf-event links */
	pid_t *link_pids;	 /* the pid each link is for (-1: every process) */
	int nr_links, cap_links;
	struct bpf_link *tp_exec, *tp_exit, *tp_fork;
	struct bpf_link *tp_munmap; /* munmap's syscall tracepoint; NULL: libc's munmap probed */
	/* mremap's syscall tracepoints (DWARF unwinding only); NULL: libc's mremap probed */
	struct bpf_link *tp_mremap, *tp_mremap_exit;
	int stats_fd; /* BPF_ENABLE_STATS: run-time accounting while we hold it (-v) */
	struct ring_buffer *rb;
	void (*ev_fn)(const struct asz_event *ev, void *ctx);
	void *ev_ctx;
	int *link_fds; /* uprobe_multi links */
	pid_t *fd_pids;		 /* the same (0: every process, as uprobe_multi has it) */
	int nr_fds, cap_fds;
	struct etarget *targets;
	int nr_targets;
	struct stack_cache stacks;
	__u32 max_stacks;
	__u32 collects; /* engine__collect() calls: which stacks the last one saw */
	struct aggs aggs;
	struct idset unreferenced; /* stacks no aggregate used at the last sweep */
	unsigned int sweeps;	   /* sweeps run after slots were freed (not system-wide) */
	__u64 start_ns;
	__u64 sample_bytes;
	__u64 min_size;
	bool system_wide;
	int ncpus;
	struct unwind *unwind; /* NULL: frame pointers */
};

static int aggs__open(struct aggs *a, struct asizeof_bpf *skel, __u32 nr);
static int cmp_pid(const void *a, const void *b);
static int idset_add(struct idset *s, __u64 id);
static struct retired_proc *aggs__retired_of(const struct aggs *a, __u32 pid);
static void aggs__close(struct aggs *a);

/* libbpf's warnings too with -v only: each failure it warns of gets a line of ours */
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG && env_verbosity < 2)
		return 0;
	if (env_verbosity < 1)
		return 0;
	return vfprintf(stderr, fmt, args);
}

/* Tables the BPF sampler reads: -ln(u) for exponential draws, x/(1-e^-x) for weights. */
static int fill_sampling_tables(struct engine *e)
{
	__u32 i;
	__u64 v;
	int err;

	for (i = 0; i < ASZ_EXP_TABLE; i++) {
		v = (__u64)(-log((i + 0.5) / ASZ_EXP_TABLE) * 65536.0 + 0.5);
		err = bpf_map__update_elem(e->skel->maps.exp_table, &i, sizeof(i), &v, sizeof(v), 0);
		if (err)
			return err;
	}
	for (i = 0; i < ASZ_WEIGHT_TABLE; i++) {
		double x = (double)i / ASZ_WEIGHT_STEPS;

		v = (__u64)((i ? x / -expm1(-x) : 1.0) * 65536.0 + 0.5);
		err = bpf_map__update_elem(e->skel->maps.weight_table, &i, sizeof(i), &v, sizeof(v),
					   0);
		if (err)
			return err;
	}
	return 0;
}

static int on_event(void *ctx, void *data, size_t size)
{
	struct engine *e = ctx;

	if (size >= sizeof(struct asz_event) && e->ev_fn)
		e->ev_fn(data, e->ev_ctx);
	return 0;
}

int engine__events_fd(const struct engine *e)
{
	return ring_buffer__epoll_fd(e->rb);
}

int engine__consume_events(struct engine *e, void (*fn)(const struct asz_event *ev, void *ctx),
			   void *ctx)
{
	int n;

	e->ev_fn = fn;
	e->ev_ctx = ctx;
	n = ring_buffer__consume(e->rb);
	e->ev_fn = NULL;
	return n;
}

/* The id of tracepoint CAT/NAME, read from a tracefs mount of our own; -errno. */
static long tracepoint_id(const char *cat_name)
{
	char path[128], buf[32] = "";
	int fs = -1, mnt = -1, fd = -1;
	long id = -ENOENT;
	ssize_t n;

	fs = fsopen("tracefs", FSOPEN_CLOEXEC);
	if (fs < 0 || fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0)) {
		id = -errno;
		goto cleanup;
	}
	/* attached nowhere: nobody else sees it, and it goes with its fd */
	mnt = fsmount(fs, FSMOUNT_CLOEXEC, 0);
	snprintf(path, sizeof(path), "events/%s/id", cat_name);
	fd = mnt < 0 ? -1 : openat(mnt, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		id = -errno;
		goto cleanup;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	if (n > 0)
		id = strtol(buf, NULL, 10);
cleanup:
	if (fd >= 0)
		close(fd);
	if (mnt >= 0)
		close(mnt);
	if (fs >= 0)
		close(fs);
	return id;
}

/* Has the kernel tracepoint CAT/NAME (before loading a program for it)? */
static bool tracepoint_exists(const char *cat_name)
{
	char path[160];

	snprintf(path, sizeof(path), "/sys/kernel/tracing/events/%s", cat_name);
	if (!access(path, F_OK))
		return true;
	snprintf(path, sizeof(path), "/sys/kernel/debug/tracing/events/%s", cat_name);
	return !access(path, F_OK) || tracepoint_id(cat_name) >= 0;
}

/*
 * Attach prog to syscall tracepoint CAT/NAME. libbpf finds the tracepoint's id in tracefs where
 * it is mounted (/sys/kernel/tracing, or under debugfs); where it is not (a minimal VM or a
 * container: systemd mounts it at boot elsewhere), the id is read from a mount of our own and
 * the perf event opened here. NULL with errno set on failure.
 */
static struct bpf_link *attach_syscall_tp(struct bpf_program *prog, const char *cat_name)
{
	struct perf_event_attr attr = {.type = PERF_TYPE_TRACEPOINT, .size = sizeof(attr),
				       .sample_period = 1, .wakeup_events = 1};
	struct bpf_link *link;
	long id;
	int pfd, err;

	if (!access("/sys/kernel/tracing/events", F_OK) ||
	    !access("/sys/kernel/debug/tracing/events", F_OK)) {
		link = bpf_program__attach(prog);
		if (link)
			return link;
	}
	id = tracepoint_id(cat_name);
	if (id < 0) {
		vlog("tracepoint %s: no id from tracefs: %s\n", cat_name, strerror(-id));
		errno = -id;
		return NULL;
	}
	vlog("tracepoint %s: tracefs is not mounted: its id read from a mount of our own\n",
	     cat_name);
	attr.config = id;
	pfd = syscall(__NR_perf_event_open, &attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC);
	if (pfd < 0) {
		vlog("tracepoint %s: perf_event_open: %s\n", cat_name, strerror(errno));
		return NULL;
	}
	link = bpf_program__attach_perf_event(prog, pfd); /* the link owns pfd */
	if (!link) {
		err = errno;
		close(pfd);
		errno = err;
	}
	return link;
}

int engine__open(struct engine **out, const struct engine_opts *o)
{
	struct kfeatures feat = {};
	struct engine *e;
	__u32 rows = o->max_unwind_rows, procs = o->max_procs;
	bool dwarf, mremap_tp;
	int err;

	libbpf_set_print(libbpf_print);
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->stats_fd = -1;
	e->aggs.gp_fd = e->aggs.gp_inner_fd = -1;
	e->ncpus = libbpf_num_possible_cpus();
	/* only for -v: the accounting costs two clock reads per program run */
	e->stats_fd = env_verbosity ? bpf_enable_stats(BPF_STATS_RUN_TIME) : -1;
	err = kfeatures__probe(&feat);
	if (err)
		vlog("kernel feature probe failed (%d): assuming per-probe attachment\n", err);
	if (o->attach == ATTACH_MULTI && !feat.uprobe_multi) {
		elog("--attach multi: this kernel has no uprobe_multi links\n");
		err = -EOPNOTSUPP;
		goto cleanup;
	}
	e->multi = o->attach == ATTACH_MULTI || (o->attach == ATTACH_AUTO && feat.uprobe_multi);
	/* sessions pay off when most calls are not recorded: their return trap is then skipped */
	e->session = e->multi && o->sample_bytes && feat.uprobe_session;
	e->entry_only = o->empty_probes && o->entry_only && !e->session;
	/* one more program to load (~100 ms): only where a target's malloc may not be libc's */
	e->new_session = e->multi && !e->session && feat.uprobe_session && o->own_new;
	dwarf = o->unwind != UNWIND_FP && feat.find_vma;
	if (o->unwind == UNWIND_DWARF && !dwarf) {
		elog("--unwind dwarf: this kernel lacks bpf_find_vma (5.17+)\n");
		err = -EOPNOTSUPP;
		goto cleanup;
	}

	e->skel = asizeof_bpf__open();
	if (!e->skel) {
		err = -errno;
		elog("cannot open BPF object: %s\n", strerror(errno));
		goto cleanup;
	}
	e->skel->rodata->max_depth = o->max_depth;
	e->skel->rodata->unwind_dwarf = dwarf;
	e->skel->rodata->have_find_vma = feat.find_vma;
	/* the rows map is allocated in full at load: one row when unused */
	if (!rows)
		rows = o->system_wide ? ENGINE_DEFAULT_UNWIND_ROWS_ALL : ENGINE_DEFAULT_UNWIND_ROWS;
	bpf_map__set_max_entries(e->skel->maps.cfi_rows, dwarf ? rows : 1);
	/*
	 * Every link is attached with its target's pid and the kernel filters: uprobe_multi links
	 * by process, perf-event links by address space only (a clone(CLONE_VM) child of a target,
	 * a vfork child, share it): those need the lookup.
	 */
	e->skel->rodata->filter_tgid = !o->system_wide && !e->multi;
	e->skel->rodata->empty_probes = o->empty_probes;
	e->skel->rodata->sample_bytes = o->sample_bytes;
	e->skel->rodata->min_size = o->min_size;
	e->skel->rodata->system_wide = o->system_wide;
	e->skel->rodata->self_tgid = o->include_self ? 0 : getpid();
	e->skel->rodata->filter_cgroup = o->cgroup != NULL;
	if (o->nr_comms > ENGINE_MAX_COMMS) {
		elog("at most %d --comm\n", ENGINE_MAX_COMMS);
		err = -E2BIG;
		goto cleanup;
	}
	e->skel->rodata->nr_comms = o->nr_comms;
	for (int i = 0; i < o->nr_comms; i++)
		strncpy((char *)e->skel->rodata->comms[i], o->comms[i], ASZ_COMM_LEN - 1);
	e->sample_bytes = o->sample_bytes;
	e->min_size = o->min_size;
	e->system_wide = o->system_wide;
	bpf_map__set_max_entries(e->skel->maps.allocs, o->max_allocs);
	/* as many of each: a workload's stacks are mostly one kind */
	bpf_map__set_max_entries(e->skel->maps.stacks, o->max_stacks);
	bpf_map__set_max_entries(e->skel->maps.long_stacks, o->max_stacks);
	bpf_map__set_max_entries(e->skel->maps.aggs, o->max_aggs);
	bpf_map__set_max_entries(e->skel->maps.agg_slots, o->max_aggs);
	bpf_map__set_max_entries(e->skel->maps.agg_free, o->max_aggs);
	e->skel->rodata->nr_agg_slots = o->max_aggs;
	e->max_stacks = o->max_stacks;
	if (!procs)
		procs = o->system_wide ? ENGINE_DEFAULT_PROCS_ALL : ENGINE_DEFAULT_PROCS;
	bpf_map__set_max_entries(e->skel->maps.procs, procs);
	/* the programs' own mappings are allocs entries, their index one entry per process */
	bpf_map__set_max_entries(e->skel->maps.mappings, o->max_allocs);
	bpf_map__set_max_entries(e->skel->maps.mapidx, procs);
	/* load only the programs this mode attaches (the session one needs kernel support) */
	bpf_program__set_autoload(e->skel->progs.alloc_session, e->session || e->new_session);
	bpf_program__set_autoload(e->skel->progs.alloc_entry, !e->session);
	bpf_program__set_autoload(e->skel->progs.alloc_return, !e->session);
	/*
	 * mremap's stack from inside it needs its table: with frame pointers its entry is probed.
	 * Its tracepoint programs take ~250 ms to load: not where they cannot be attached.
	 */
	mremap_tp = dwarf && tracepoint_exists("syscalls/sys_enter_mremap") &&
		    tracepoint_exists("syscalls/sys_exit_mremap");
	bpf_program__set_autoload(e->skel->progs.mremap_syscall, mremap_tp);
	bpf_program__set_autoload(e->skel->progs.mremap_syscall_exit, mremap_tp);
	if (e->multi) {
		bpf_program__set_expected_attach_type(e->skel->progs.alloc_entry,
						      BPF_TRACE_UPROBE_MULTI_TYPE);
		bpf_program__set_expected_attach_type(e->skel->progs.alloc_return,
						      BPF_TRACE_UPROBE_MULTI_TYPE);
		bpf_program__set_expected_attach_type(e->skel->progs.alloc_session,
						      BPF_TRACE_UPROBE_SESSION_TYPE);
		bpf_program__set_expected_attach_type(e->skel->progs.free_entry,
						      BPF_TRACE_UPROBE_MULTI_TYPE);
		bpf_program__set_expected_attach_type(e->skel->progs.munmap_entry,
						      BPF_TRACE_UPROBE_MULTI_TYPE);
		bpf_program__set_expected_attach_type(e->skel->progs.thread_exit_entry,
						      BPF_TRACE_UPROBE_MULTI_TYPE);
	}
	if (o->cgroup) {
		struct statfs sf;

		/* the kernel's own error for another directory would be EBADF */
		if (statfs(o->cgroup, &sf) == 0 && sf.f_type != CGROUP2_SUPER_MAGIC) {
			elog("--cgroup %s: not a cgroup v2 directory (e.g. "
			     "/sys/fs/cgroup/system.slice/nginx.service)\n",
			     util__name(o->cgroup));
			err = -ENOTDIR;
			goto cleanup;
		}
	}
	err = asizeof_bpf__load(e->skel);
	if (err) {
		elog("cannot load BPF programs: %s (run as root; -vv shows the verifier log)\n",
		     strerror(-err));
		goto cleanup;
	}
	if (o->cgroup) {
		int cfd = open(o->cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC), zero = 0;

		err = cfd < 0 ? -errno
			      : bpf_map__update_elem(e->skel->maps.cgroup_filter, &zero, sizeof(zero),
						     &cfd, sizeof(cfd), 0);
		if (cfd >= 0)
			close(cfd);
		if (err) {
			elog("--cgroup %s: %s (a cgroup v2 directory, e.g. "
			     "/sys/fs/cgroup/system.slice/nginx.service)\n",
			     util__name(o->cgroup), strerror(-err));
			goto cleanup;
		}
	}
	err = aggs__open(&e->aggs, e->skel, o->max_aggs);
	if (err)
		goto cleanup;
	/* exec and exit: generations (exact accounts across exec) and lifecycle events */
	e->tp_exec = bpf_program__attach(e->skel->progs.on_exec);
	e->tp_exit = bpf_program__attach(e->skel->progs.on_exit);
	e->tp_fork = bpf_program__attach(e->skel->progs.on_fork);
	if (!e->tp_exec || !e->tp_exit || !e->tp_fork) {
		err = -errno;
		elog("cannot attach the exec/exit/fork tracepoints: %s\n", strerror(-err));
		goto cleanup;
	}
	/* munmap by its syscall where the kernel can (no trap); else libc's munmap is probed */
	e->tp_munmap =
		attach_syscall_tp(e->skel->progs.munmap_syscall, "syscalls/sys_enter_munmap");
	if (e->tp_munmap)
		vlog("munmap: followed by its syscall tracepoint\n");
	else
		vlog("munmap: no syscall tracepoint (%s): libc's munmap is probed\n",
		     strerror(errno));
	/* mremap likewise, its return first: an entry seen without it would leave a depth stuck */
	if (mremap_tp) {
		e->tp_mremap_exit = attach_syscall_tp(e->skel->progs.mremap_syscall_exit,
						      "syscalls/sys_exit_mremap");
		if (e->tp_mremap_exit)
			e->tp_mremap = attach_syscall_tp(e->skel->progs.mremap_syscall,
							 "syscalls/sys_enter_mremap");
		if (e->tp_mremap) {
			vlog("mremap: followed by its syscall tracepoints\n");
		} else {
			vlog("mremap: no syscall tracepoints (%s): libc's mremap is probed\n",
			     strerror(errno));
			bpf_link__destroy(e->tp_mremap_exit);
			e->tp_mremap_exit = NULL;
		}
	} else {
		vlog("mremap: libc's mremap is probed (%s)\n",
		     dwarf ? "no syscall tracepoints" : "--unwind fp: its caller known at its entry");
	}

	e->rb = ring_buffer__new(bpf_map__fd(e->skel->maps.events), on_event, e, NULL);
	if (!e->rb) {
		err = -errno;
		elog("cannot open the event ring buffer: %s\n", strerror(-err));
		goto cleanup;
	}
	if (o->sample_bytes) {
		err = fill_sampling_tables(e);
		if (err) {
			elog("cannot fill the sampling tables: %s\n", strerror(-err));
			goto cleanup;
		}
	}
	if (dwarf) {
		err = unwind__new(&e->unwind, bpf_map__fd(e->skel->maps.cfi_rows),
				  rows, bpf_map__fd(e->skel->maps.cfi_mods),
				  bpf_map__fd(e->skel->maps.cfi_wanted));
		if (err)
			goto cleanup;
	}
	if (o->scratch_taken) {
		/* what a program preempted while building a stack leaves: per-CPU values, 8 bytes each */
		__u64 *taken = calloc(e->ncpus, sizeof(*taken));
		__u32 zero = 0;

		for (int c = 0; taken && c < e->ncpus; c++)
			taken[c] = 1;
		err = taken ? bpf_map_update_elem(bpf_map__fd(e->skel->maps.scratch_busy), &zero,
						  taken, 0) : -ENOMEM;
		free(taken);
		if (err) {
			elog("cannot set the stack scratch: %s\n", strerror(-err));
			goto cleanup;
		}
	}
	vlog("stacks: %s unwinding\n", engine__unwind_mode(e));
	e->start_ns = util__mono_ns();
	*out = e;
	return 0;
cleanup:
	engine__close(e);
	return err;
}

/* Room for one more in an array of links and its array of pids. */
static int grow_links(void *arrp, pid_t **pids, int *cap, int nr, size_t elem)
{
	void **arr = arrp, *p;
	int ncap = *cap ? *cap * 2 : 32;

	if (nr < *cap)
		return 0;
	p = realloc(*arr, ncap * elem);
	if (!p)
		return -ENOMEM;
	*arr = p;
	p = realloc(*pids, ncap * sizeof(**pids));
	if (!p)
		return -ENOMEM;
	*pids = p;
	*cap = ncap;
	return 0;
}

static int push_link(struct engine *e, struct bpf_link *l, pid_t pid)
{
	if (grow_links(&e->links, &e->link_pids, &e->cap_links, e->nr_links, sizeof(*e->links)))
		return -ENOMEM;
	e->link_pids[e->nr_links] = pid;
	e->links[e->nr_links++] = l;
	return 0;
}

static int push_fd(struct engine *e, int fd, pid_t pid)
{
	if (grow_links(&e->link_fds, &e->fd_pids, &e->cap_fds, e->nr_fds, sizeof(*e->link_fds)))
		return -ENOMEM;
	e->fd_pids[e->nr_fds] = pid;
	e->link_fds[e->nr_fds++] = fd;
	return 0;
}

void engine__detach_pid(struct engine *e, pid_t pid)
{
	int i, j;

	for (i = j = 0; i < e->nr_links; i++) {
		if (e->link_pids[i] == pid) {
			bpf_link__destroy(e->links[i]);
			continue;
		}
		e->link_pids[j] = e->link_pids[i];
		e->links[j++] = e->links[i];
	}
	e->nr_links = j;
	for (i = j = 0; i < e->nr_fds; i++) {
		if (e->fd_pids[i] == pid) {
			close(e->link_fds[i]);
			continue;
		}
		e->fd_pids[j] = e->fd_pids[i];
		e->link_fds[j++] = e->link_fds[i];
	}
	e->nr_fds = j;
}

/* For messages: the pid links are made for, or all of them. */
static const char *whose(pid_t pid, char *buf, size_t len)
{
	if (pid <= 0)
		return "all processes";
	snprintf(buf, len, "pid %d", pid);
	return buf;
}

/* Is allocator followed by its system call's tracepoints instead of a probe? */
static bool by_tracepoint(const struct engine *e, __u32 allocator)
{
	return (allocator == ASZ_MUNMAP && e->tp_munmap) ||
	       (allocator == ASZ_MREMAP && e->tp_mremap);
}

/* free (operator delete) and munmap have an entry program of their own and no return probe */
static struct bpf_program *release_prog(struct engine *e, __u32 allocator)
{
	if (allocator == ASZ_FREE || allocator == ASZ_DELETE)
		return e->skel->progs.free_entry;
	if (allocator == ASZ_MUNMAP)
		return e->skel->progs.munmap_entry;
	if (allocator == ASZ_THREAD_EXIT)
		return e->skel->progs.thread_exit_entry;
	return NULL;
}

static int attach_perf(struct engine *e, pid_t pid, const char *lib, const struct alloc_syms *syms)
{
	struct bpf_program *progs[] = {e->skel->progs.alloc_return, e->skel->progs.alloc_entry};
	char who[32];
	int i, pass, err;

	/* return probes first: an entry without its return would leave a thread's depth stuck */
	for (pass = 0; pass < 3; pass++) {
		for (i = 0; i < syms->nr; i++) {
			const struct alloc_sym *s = &syms->syms[i];
			LIBBPF_OPTS(bpf_uprobe_opts, uo, .bpf_cookie = s->allocator,
				    .retprobe = pass == 0);
			struct bpf_program *prog;
			struct bpf_link *l;

			prog = release_prog(e, s->allocator);
			if (!!prog != (pass == 2) || by_tracepoint(e, s->allocator) ||
			    (pass == 0 && e->entry_only))
				continue;
			if (!prog)
				prog = progs[pass];
			l = bpf_program__attach_uprobe_opts(prog, pid, lib, s->offset, &uo);
			if (!l) {
				err = -errno;
				/*
				 * Of a path through /proc/PID/root, or a task, gone with the
				 * process: -ESRCH, unlogged (the caller says it is gone).
				 */
				if (target__gone(pid))
					return -ESRCH;
				elog("cannot attach to %s in %s (%s): %s\n", s->name, lib,
				     whose(pid, who, sizeof(who)), strerror(-err));
				return err;
			}
			err = push_link(e, l, pid);
			if (err) {
				bpf_link__destroy(l);
				return err;
			}
		}
	}
	return 0;
}

static int attach_multi(struct engine *e, pid_t pid, const char *lib, const struct alloc_syms *syms)
{
	__u64 offs[ATTACH_MAX_SYMS], cookies[ATTACH_MAX_SYMS];
	__u64 free_offs[ATTACH_MAX_SYMS], free_cookies[ATTACH_MAX_SYMS];
	__u64 munmap_off = 0, munmap_cookie = ASZ_MUNMAP;
	__u64 exit_off = 0, exit_cookie = ASZ_THREAD_EXIT;
	__u64 new_offs[ATTACH_MAX_SYMS], new_cookies[ATTACH_MAX_SYMS];
	int i, n = 0, nf = 0, nn = 0, fd, err;
	char who[32];

	for (i = 0; i < syms->nr; i++) {
		if (syms->syms[i].allocator == ASZ_NEW && e->new_session) {
			new_offs[nn] = syms->syms[i].offset;
			new_cookies[nn++] = ASZ_NEW;
			continue;
		}
		if (syms->syms[i].allocator == ASZ_FREE || syms->syms[i].allocator == ASZ_DELETE) {
			/* free, and C++ operator delete where the library has its own */
			free_offs[nf] = syms->syms[i].offset;
			free_cookies[nf++] = syms->syms[i].allocator;
			continue;
		}
		if (by_tracepoint(e, syms->syms[i].allocator))
			continue;
		if (syms->syms[i].allocator == ASZ_MUNMAP) {
			munmap_off = syms->syms[i].offset;
			continue;
		}
		if (syms->syms[i].allocator == ASZ_THREAD_EXIT) {
			exit_off = syms->syms[i].offset; /* one of its two names (attach.c) */
			continue;
		}
		offs[n] = syms->syms[i].offset;
		cookies[n++] = syms->syms[i].allocator;
	}
	struct {
		struct bpf_program *prog;
		__u32 type;
		bool ret;
		const __u64 *offs, *cookies;
		int cnt;
	} plan[] = {
		{e->skel->progs.alloc_return, BPF_TRACE_UPROBE_MULTI_TYPE, true, offs, cookies, n},
		{e->skel->progs.alloc_entry, BPF_TRACE_UPROBE_MULTI_TYPE, false, offs, cookies, n},
		{e->skel->progs.free_entry, BPF_TRACE_UPROBE_MULTI_TYPE, false, free_offs,
		 free_cookies, nf},
		{e->skel->progs.munmap_entry, BPF_TRACE_UPROBE_MULTI_TYPE, false, &munmap_off,
		 &munmap_cookie, munmap_off ? 1 : 0},
		{e->skel->progs.alloc_session, BPF_TRACE_UPROBE_SESSION_TYPE, false, new_offs,
		 new_cookies, nn},
		{e->skel->progs.thread_exit_entry, BPF_TRACE_UPROBE_MULTI_TYPE, false, &exit_off,
		 &exit_cookie, exit_off ? 1 : 0},
	};

	if (e->session) {
		/* one program for entries and returns: the return slot is not needed */
		plan[0] = (typeof(plan[0])){e->skel->progs.alloc_session,
					    BPF_TRACE_UPROBE_SESSION_TYPE, false, offs, cookies, n};
		plan[1].cnt = 0;
	}
	if (e->entry_only)
		plan[0].cnt = 0;
	for (i = 0; i < (int)(sizeof(plan) / sizeof(plan[0])); i++) {
		if (!plan[i].cnt)
			continue;
		fd = attach__uprobe_multi(bpf_program__fd(plan[i].prog), plan[i].type, plan[i].ret,
					  lib, plan[i].offs, plan[i].cookies, plan[i].cnt, pid);
		if (fd < 0) {
			if (target__gone(pid))
				return -ESRCH;
			elog("cannot attach to %s (%s): %s\n", lib, whose(pid, who, sizeof(who)),
			     strerror(-fd));
			return fd;
		}
		err = push_fd(e, fd, pid);
		if (err) {
			close(fd);
			return err;
		}
	}
	return 0;
}

/* *exe = s, or as it was when out of memory. */
static void set_exe(char **exe, const char *s)
{
	char *dup;

	if (*exe && strcmp(*exe, s) == 0)
		return;
	dup = strdup(s);
	if (!dup)
		return;
	free(*exe);
	*exe = dup;
}

/* What identifies a live process beyond its pid: name, executable, cgroup (each kept if gone). */
static void read_identity(struct etarget *t)
{
	char exe[PATH_MAX];

	target__comm(t->pid, t->comm, ASZ_COMM_LEN);
	if (!target__exe(t->pid, exe, sizeof(exe)))
		set_exe(&t->exe, exe);
	target__cgroup(t->pid, t->cgroup, sizeof(t->cgroup));
}

int engine__track(struct engine *e, pid_t pid)
{
	struct etarget *t;

	for (int i = 0; i < e->nr_targets; i++) {
		if (e->targets[i].pid != pid)
			continue;
		/*
		 * A pid given again (system-wide, the old process not yet forgotten): the same
		 * entry, alive; a second one would leave the first, exited, to name it forever.
		 */
		if (e->targets[i].exited) {
			e->targets[i].exited = false;
			read_identity(&e->targets[i]);
		}
		return 0;
	}
	t = realloc(e->targets, (e->nr_targets + 1) * sizeof(*t));
	if (!t)
		return -ENOMEM;
	e->targets = t;
	t = &e->targets[e->nr_targets++];
	memset(t, 0, sizeof(*t));
	t->pid = pid;
	read_identity(t);
	return 0;
}

static int attach_set(struct engine *e, pid_t pid, const char *lib, const struct alloc_syms *syms)
{
	int err, nr = syms->nr;

	if (!syms->nr)
		return 0;
	err = e->multi ? attach_multi(e, pid < 0 ? 0 : pid, lib, syms)
		       : attach_perf(e, pid, lib, syms);
	for (int i = 0; i < syms->nr; i++)
		nr -= by_tracepoint(e, syms->syms[i].allocator);
	if (!err && pid < 0)
		vlog("all processes: %d probe points in %s (%s links)\n", nr, lib,
		     engine__attach_mode(e));
	else if (!err)
		vlog("pid %d: %d probe points in %s (%s links)\n", pid, nr, lib,
		     engine__attach_mode(e));
	return err;
}

/*
 * pid > 0: that process only (the kernel filters); pid -1: every process mapping lib. libc
 * (NULL when lib is libc) supplies the entry points lib lacks.
 */
static int attach_syms(struct engine *e, pid_t pid, const char *lib, const char *libc)
{
	struct alloc_syms syms, rest = {};
	int err;

	err = attach__find_syms(lib, &syms);
	if (err && target__gone(pid))
		return -ESRCH;
	if (err) {
		elog("%s: no allocator symbols (malloc, free) found (%s)\n", lib, strerror(-err));
		return err;
	}
	if (libc && attach__complement(libc, &syms, &rest))
		rest.nr = 0;
	/* lib is not glibc (jemalloc, tcmalloc, the program's own): realloc(p, 0) frees p itself */
	for (int i = 0; libc && i < syms.nr; i++)
		if (syms.syms[i].allocator == ASZ_REALLOC)
			syms.syms[i].allocator |= ASZ_REALLOC_FREES_ITSELF;
	err = attach_set(e, pid, lib, &syms);
	if (!err)
		err = attach_set(e, pid, libc, &rest);
	/*
	 * Links made before a failure stay: closing a live one could leave a thread inside an
	 * allocator without its return, its nesting depth stuck (it would never count again).
	 */
	return err;
}

int engine__attach(struct engine *e, pid_t pid, const char *lib, const char *libc)
{
	__u32 key = pid, one = 1;
	int err;

	err = engine__track(e, pid);
	if (err)
		return err;
	err = bpf_map__update_elem(e->skel->maps.targets, &key, sizeof(key), &one, sizeof(one),
				   BPF_ANY);
	if (err) {
		elog("cannot add pid %d to the target map: %s\n", pid, strerror(-err));
		return err;
	}
	return attach_syms(e, pid, lib, libc);
}

unsigned int engine__forks(struct engine *e, pid_t pid)
{
	__u32 key = pid, n = 0;

	if (bpf_map__lookup_elem(e->skel->maps.targets, &key, sizeof(key), &n, sizeof(n), 0) ||
	    !n)
		return 0;
	return n - 1;
}

int engine__reattach(struct engine *e, pid_t pid, const char *lib, const char *libc)
{
	/*
	 * The old links are closed first, although that takes 28-40 ms each (strace): links made
	 * for the pid while the old ones were still open never fired once those were closed.
	 */
	engine__detach_pid(e, pid);
	/* a perf-event link follows one task (the kernel refuses one for a pid mid-exec) */
	if (!e->multi)
		return -EOPNOTSUPP;
	return attach_syms(e, pid, lib, libc);
}

int engine__reprobe(struct engine *e, pid_t pid, const char *lib, const char *libc)
{
	engine__detach_pid(e, pid);
	return attach_syms(e, pid, lib, libc);
}

int engine__attach_lib(struct engine *e, const char *lib, const char *libc)
{
	return attach_syms(e, -1, lib, libc);
}

void engine__set_exited(struct engine *e, pid_t pid)
{
	for (int i = 0; i < e->nr_targets; i++)
		if (e->targets[i].pid == pid)
			e->targets[i].exited = true;
}

void engine__set_image(struct engine *e, pid_t pid, const char *comm, const char *exe)
{
	for (int i = 0; i < e->nr_targets; i++) {
		if (e->targets[i].pid != pid)
			continue;
		snprintf(e->targets[i].comm, sizeof(e->targets[i].comm), "%s", comm);
		set_exe(&e->targets[i].exe, exe);
	}
}

void engine__refresh(struct engine *e)
{
	for (int i = 0; i < e->nr_targets; i++)
		if (!e->targets[i].exited)
			read_identity(&e->targets[i]);
}

bool engine__all_exited(const struct engine *e)
{
	for (int i = 0; i < e->nr_targets; i++)
		if (!e->targets[i].exited)
			return false;
	return true;
}

void engine__unwind_pid(struct engine *e, pid_t pid)
{
	if (e->unwind)
		unwind__add_pid(e->unwind, pid);
}

void engine__unwind_file(struct engine *e, const char *path)
{
	if (e->unwind)
		unwind__add_file(e->unwind, path);
}

void engine__unwind_service(struct engine *e)
{
	if (e->unwind)
		unwind__service(e->unwind);
}

const char *engine__unwind_mode(const struct engine *e)
{
	return e->unwind ? "dwarf" : "fp";
}

__s64 engine__image_allocs(struct engine *e, pid_t pid)
{
	struct asz_proc_val v;
	__u32 key = pid;

	if (bpf_map__lookup_elem(e->skel->maps.procs, &key, sizeof(key), &v, sizeof(v), 0))
		return -1;
	return (__s64)(v.allocs - v.exec_allocs);
}

int engine__nr_links(const struct engine *e)
{
	return e->nr_links + e->nr_fds;
}

const char *engine__attach_mode(const struct engine *e)
{
	return e->session ? "uprobe session" : e->multi ? "uprobe_multi" : "perf-event";
}

static size_t cache_slot(const struct stack_cache *c, __u64 key)
{
	size_t i = (key * 0x9e3779b97f4a7c15ull) & (c->cap - 1);

	while (c->slot[i].key && c->slot[i].key != key)
		i = (i + 1) & (c->cap - 1);
	return i;
}

static int cache_grow(struct stack_cache *c)
{
	struct stack_cache n = {.cap = c->cap ? c->cap * 2 : 1024};
	size_t i;

	n.slot = calloc(n.cap, sizeof(*n.slot));
	if (!n.slot)
		return -ENOMEM;
	for (i = 0; i < c->cap; i++)
		if (c->slot[i].key)
			n.slot[cache_slot(&n, c->slot[i].key)] = c->slot[i];
	n.nr = c->nr;
	free(c->slot);
	*c = n;
	return 0;
}

/* The stack of an id, from the cache or the kernel; NULL for id 0 or on error. */
static struct stack_slot *stack_get(struct engine *e, __u64 id)
{
	struct stack_cache *c = &e->stacks;
	struct asz_stack buf, *st;
	struct bpf_map *map;
	size_t i, len;
	bool is_long;

	if (id == ASZ_STACK_NONE)
		return NULL;
	if (c->nr * 2 >= c->cap && cache_grow(c))
		return NULL;
	i = cache_slot(c, id);
	if (c->slot[i].key)
		return &c->slot[i];
	is_long = id & ASZ_STACK_LONG;
	map = is_long ? e->skel->maps.long_stacks : e->skel->maps.stacks;
	/* a short stack's value is the first bytes of a struct asz_stack */
	if (bpf_map__lookup_elem(map, &id, sizeof(id), &buf, bpf_map__value_size(map), 0))
		return NULL;
	if (buf.nr > (is_long ? ASZ_MAX_FRAMES : ASZ_SHORT_FRAMES))
		buf.nr = is_long ? ASZ_MAX_FRAMES : ASZ_SHORT_FRAMES;
	/* kept for the stack's life: only the frames it has (~20, not 127) */
	len = offsetof(struct asz_stack, ips) + buf.nr * sizeof(buf.ips[0]);
	st = malloc(len);
	if (!st)
		return NULL;
	memcpy(st, &buf, len);
	c->slot[i] = (struct stack_slot){id, st, st->nr, st->flags, 0, 0};
	c->nr++;
	return &c->slot[i];
}

static struct etarget *find_target(struct engine *e, __u32 pid)
{
	for (int i = 0; i < e->nr_targets; i++)
		if ((__u32)e->targets[i].pid == pid)
			return &e->targets[i];
	return NULL;
}

/* p->exe points to the target's exe or into exe[PATH_MAX], for snapshot__add_proc() to copy. */
static void fill_proc(struct engine *e, struct snap_proc *p, __u32 pid,
		      const struct asz_proc_val *kv, char *exe)
{
	struct etarget *t = find_target(e, pid);

	memset(p, 0, sizeof(*p));
	p->pid = pid;
	if (t) {
		/* comm and exe change at exec: refresh them while the process lives */
		if (!t->exited)
			read_identity(t);
		memcpy(p->comm, t->comm, sizeof(p->comm));
		p->exe = t->exe;
		memcpy(p->cgroup, t->cgroup, sizeof(p->cgroup));
		p->exited = t->exited;
	} else if (target__comm(pid, p->comm, sizeof(p->comm))) {
		p->exited = true;
	} else {
		if (!target__exe(pid, exe, PATH_MAX))
			p->exe = exe;
		target__cgroup(pid, p->cgroup, sizeof(p->cgroup));
	}
	/* gone before we could read /proc: what the kernel recorded */
	if (kv && !p->comm[0])
		memcpy(p->comm, kv->comm, ASZ_COMM_LEN - 1);
	if (kv && !p->cgroup[0])
		target__cgroup_path(kv->cgroup_id, p->cgroup, sizeof(p->cgroup));
}

/* Exec generations of the processes, for telling current aggregates from stale ones. */
struct gens {
	__u32 *tgid; /* pairs (tgid, gen), sorted by tgid once all are in */
	size_t nr, cap;
	bool failed; /* out of memory: every aggregate counts as current */
};

static int gen_cmp(const void *a, const void *b)
{
	__u32 x = *(const __u32 *)a, y = *(const __u32 *)b;

	return x < y ? -1 : x > y;
}

static void gens_add(struct gens *g, __u32 tgid, __u32 gen)
{
	if (g->failed)
		return;
	if (g->nr == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 64;
		__u32 *t = realloc(g->tgid, cap * 2 * sizeof(*t));

		if (!t) {
			g->failed = true;
			return;
		}
		g->tgid = t;
		g->cap = cap;
	}
	g->tgid[2 * g->nr] = tgid;
	g->tgid[2 * g->nr + 1] = gen;
	g->nr++;
}

/* The processes, and their generations into g (one read of the map serves both). */
static int collect_procs(struct engine *e, struct snapshot *s, struct gens *g)
{
	int fd = bpf_map__fd(e->skel->maps.procs), err, i;
	__u32 key, next, *prev = NULL;
	struct asz_proc_val v;
	const struct retired_proc *r;
	struct snap_proc p;
	char exe[PATH_MAX];
	bool *seen;

	seen = calloc(e->nr_targets + 1, sizeof(*seen));
	if (!seen)
		return -ENOMEM;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, &v))
			continue;
		gens_add(g, key, v.gen);
		fill_proc(e, &p, key, &v, exe);
		p.gen = v.gen;
		p.live_bytes = v.live_bytes;
		p.live_allocs = v.live_allocs;
		p.alloc_bytes = v.alloc_bytes - v.exec_alloc_bytes;
		p.allocs = v.allocs - v.exec_allocs;
		p.frees = v.frees - v.exec_frees;
		p.unknown_frees = v.unknown_frees - v.exec_unknown_frees;
		p.life_alloc_bytes = v.alloc_bytes;
		p.life_allocs = v.allocs;
		p.life_frees = v.frees;
		p.drops = v.drops;
		p.mmap_bytes = v.mmap_bytes;
		p.mmap_regions = v.mmap_regions;
		r = aggs__retired_of(&e->aggs, key);
		p.retired_allocs = r && r->gen == v.gen ? r->allocs : 0;
		p.retired_alloc_bytes = r && r->gen == v.gen ? r->alloc_bytes : 0;
		for (i = 0; i < e->nr_targets; i++)
			if ((__u32)e->targets[i].pid == key)
				seen[i] = true;
		err = snapshot__add_proc(s, &p);
		if (err)
			goto cleanup;
	}
	/* targets that have not allocated yet are shown too, with zeros (not system-wide: noise) */
	for (i = 0; i < e->nr_targets && !e->system_wide; i++) {
		if (seen[i])
			continue;
		fill_proc(e, &p, e->targets[i].pid, NULL, exe);
		err = snapshot__add_proc(s, &p);
		if (err)
			goto cleanup;
	}
	err = 0;
cleanup:
	if (g->nr)
		qsort(g->tgid, g->nr, 2 * sizeof(__u32), gen_cmp);
	free(seen);
	return err;
}

enum agg_age { AGG_CURRENT, AGG_STALE, AGG_NEWER };

/*
 * Which image of its process an aggregate is of, against the generations read just before:
 * an earlier one (exec'd away: stale), the current one, or one newer than that read (the
 * process exec'd while the maps were read: not in this snapshot, and certainly not stale).
 */
static enum agg_age agg_age(const struct gens *g, const struct asz_agg_key *k)
{
	const __u32 *hit;
	__s32 d;

	if (g->failed || !g->nr)
		return AGG_CURRENT;
	hit = bsearch(&k->tgid, g->tgid, g->nr, 2 * sizeof(__u32), gen_cmp);
	if (!hit)
		return AGG_CURRENT;
	d = (__s32)(k->gen - hit[1]);
	return d == 0 ? AGG_CURRENT : d < 0 ? AGG_STALE : AGG_NEWER;
}

static void sweep_stacks(struct engine *e, bool all);

/*
 * Map at least the first hi slots: the mapping grows with the slots in use (all of the array
 * mapped would put its every page in our RSS: 16 MiB by default).
 */
static int aggs__map(struct aggs *a, __u32 hi)
{
	size_t len = a->map_len ? a->map_len : 1 << 20;
	void *p;

	if (a->map_len && (size_t)hi * sizeof(*a->slots) <= a->map_len)
		return 0;
	while (len < (size_t)hi * sizeof(*a->slots))
		len *= 2;
	if (len > a->full_len)
		len = a->full_len;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, a->slots_fd, 0);
	if (p == MAP_FAILED) {
		elog("cannot map the aggregates: %s\n", strerror(errno));
		return -errno;
	}
	if (a->slots)
		munmap(a->slots, a->map_len);
	a->slots = p;
	a->map_len = len;
	return 0;
}

static int aggs__open(struct aggs *a, struct asizeof_bpf *skel, __u32 nr)
{
	LIBBPF_OPTS(bpf_map_create_opts, opts);
	long page = sysconf(_SC_PAGESIZE);
	int err;

	a->nr = nr;
	a->hash_fd = bpf_map__fd(skel->maps.aggs);
	a->free_fd = bpf_map__fd(skel->maps.agg_free);
	a->slots_fd = bpf_map__fd(skel->maps.agg_slots);
	a->gp_fd = a->gp_inner_fd = -1;
	a->full_len = ((size_t)nr * sizeof(*a->slots) + page - 1) / page * page;
	err = aggs__map(a, 1);
	if (err)
		return err;
	a->state = calloc(nr, sizeof(*a->state));
	a->seen = calloc(nr, sizeof(*a->seen));
	a->idle = calloc(nr, sizeof(*a->idle));
	if (!a->state || !a->seen || !a->idle)
		return -ENOMEM;
	/* the kernel waits for the running programs after each update of an array of maps */
	a->gp_inner_fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "asz_gp_inner", 4, 4, 1, NULL);
	opts.inner_map_fd = a->gp_inner_fd;
	if (a->gp_inner_fd >= 0)
		a->gp_fd = bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "asz_gp", 4, 4, 1, &opts);
	if (a->gp_fd < 0) {
		err = -errno;
		elog("cannot create a map of maps: %s\n", strerror(errno));
		return err;
	}
	return 0;
}

static void aggs__close(struct aggs *a)
{
	if (a->slots)
		munmap(a->slots, a->map_len);
	if (a->gp_fd >= 0)
		close(a->gp_fd);
	if (a->gp_inner_fd >= 0)
		close(a->gp_inner_fd);
	free(a->state);
	free(a->seen);
	free(a->idle);
	free(a->retiring);
	free(a->procs);
	free(a->freed_stacks.ids);
}

/* Slots BPF has handed out so far (the others were never used), mapped; fewer if they cannot be. */
static __u32 aggs__hi(struct aggs *a, const struct asizeof_bpf *skel)
{
	__u64 hi = __atomic_load_n(&skel->bss->agg_next, __ATOMIC_ACQUIRE);

	if (hi > a->nr)
		hi = a->nr;
	if (aggs__map(a, hi))
		hi = a->map_len / sizeof(*a->slots);
	return hi;
}

/* Slot n's key; false if the slot is free. */
static bool aggs__key(const struct aggs *a, __u32 n, struct asz_agg_key *k)
{
	const struct asz_agg_slot *sl = &a->slots[n];

	/* BPF writes the rest of the key before tgid */
	k->tgid = __atomic_load_n(&sl->key.tgid, __ATOMIC_ACQUIRE);
	if (!k->tgid)
		return false;
	k->gen = sl->key.gen;
	k->stack_id = sl->key.stack_id;
	k->allocator = sl->key.allocator;
	k->pad = 0;
	return true;
}

static void aggs__val(const struct aggs *a, __u32 n, struct asz_agg_val *v)
{
	const struct asz_agg_val *sv = &a->slots[n].v;

	v->live_bytes = __atomic_load_n(&sv->live_bytes, __ATOMIC_RELAXED);
	v->live_allocs = __atomic_load_n(&sv->live_allocs, __ATOMIC_RELAXED);
	v->alloc_bytes = __atomic_load_n(&sv->alloc_bytes, __ATOMIC_RELAXED);
	v->allocs = __atomic_load_n(&sv->allocs, __ATOMIC_RELAXED);
	v->frees = __atomic_load_n(&sv->frees, __ATOMIC_RELAXED);
}

static int aggs__add_retiring(struct aggs *a, __u32 n, __u8 state)
{
	void *p;

	if (a->state[n] != SLOT_USED) {
		if (state == SLOT_GONE)
			a->state[n] = SLOT_GONE;
		return 0;
	}
	p = util__grow(a->retiring, &a->cap_retiring, a->nr_retiring, sizeof(*a->retiring), 64);
	if (!p)
		return -ENOMEM;
	a->retiring = p;
	a->retiring[a->nr_retiring++] = (struct retiring){n, false};
	a->state[n] = state;
	/* before its key leaves aggs: no BPF hint (agg_hints', stacks') finds the slot */
	__atomic_fetch_or(&a->slots[n].key.pad, ASZ_AGG_RETIRING, __ATOMIC_SEQ_CST);
	return 0;
}

/*
 * Take key (in slot n) out of the aggs hash: no program finds the slot from now on. Only if the
 * key is n's: a slot whose key is not in the hash is one BPF is giving back (it lost a race to
 * make the aggregate) or one not published yet.
 */
static void aggs__retire(struct aggs *a, __u32 n, const struct asz_agg_key *key, __u8 state)
{
	__u32 v;

	if (a->state[n] != SLOT_USED) {
		aggs__add_retiring(a, n, state);
		return;
	}
	if (bpf_map_lookup_elem(a->hash_fd, key, &v) || v != n)
		return;
	if (aggs__add_retiring(a, n, state))
		return; /* retired another time */
	if (bpf_map_delete_elem(a->hash_fd, key)) {
		a->state[n] = SLOT_USED, a->nr_retiring--;
		__atomic_fetch_and(&a->slots[n].key.pad, ~ASZ_AGG_RETIRING, __ATOMIC_SEQ_CST);
	}
}

static int retired_cmp(const void *k, const void *e)
{
	__u32 pid = *(const __u32 *)k, other = ((const struct retired_proc *)e)->pid;

	return pid < other ? -1 : pid > other;
}

static struct retired_proc *aggs__retired_of(const struct aggs *a, __u32 pid)
{
	return a->nr_procs ? bsearch(&pid, a->procs, a->nr_procs, sizeof(*a->procs), retired_cmp)
			   : NULL;
}

/* Slot n's counts into its process image's retired figures (heap blocks: mappings have none). */
static void aggs__keep_counts(struct aggs *a, __u32 n)
{
	struct asz_agg_key k;
	struct asz_agg_val v;
	struct retired_proc *r;
	size_t i;

	if (!aggs__key(a, n, &k) || ASZ_IS_MMAP(k.allocator))
		return;
	aggs__val(a, n, &v);
	r = aggs__retired_of(a, k.tgid);
	if (!r) {
		void *p = util__grow(a->procs, &a->cap_procs, a->nr_procs, sizeof(*a->procs), 16);

		if (!p)
			return;
		a->procs = p;
		for (i = a->nr_procs; i && a->procs[i - 1].pid > k.tgid; i--)
			a->procs[i] = a->procs[i - 1];
		r = &a->procs[i];
		*r = (struct retired_proc){.pid = k.tgid, .gen = k.gen};
		a->nr_procs++;
	}
	if (r->gen != k.gen) /* an image's figures start from zero */
		*r = (struct retired_proc){.pid = k.tgid, .gen = k.gen};
	r->allocs += v.allocs;
	r->alloc_bytes += v.alloc_bytes;
}

/* Forget the retired figures of the processes in pids (sorted). */
static void aggs__forget_procs(struct aggs *a, const pid_t *pids, int n)
{
	size_t i, j;

	for (i = j = 0; i < a->nr_procs; i++)
		if (!bsearch(&a->procs[i].pid, pids, n, sizeof(*pids), cmp_pid))
			a->procs[j++] = a->procs[i];
	a->nr_procs = j;
}

static void aggs__free(struct aggs *a, __u32 n)
{
	__u64 id = a->slots[n].key.stack_id;

	if (id != ASZ_STACK_NONE)
		idset_add(&a->freed_stacks, id); /* (out of memory: left to a whole sweep) */
	__atomic_store_n(&a->slots[n].key.tgid, 0, __ATOMIC_RELEASE);
	a->state[n] = SLOT_USED;
	a->seen[n] = 0;
	a->idle[n] = 0;
	if (bpf_map_update_elem(a->free_fd, NULL, &n, 0))
		vlog("aggregate slot %u not given back: %s\n", n, strerror(errno));
}

/*
 * Return once every BPF program running now has returned: the kernel waits for an RCU grace
 * period after each update of an array of maps (our programs are not sleepable: they run under
 * rcu_read_lock). 0 or -errno.
 */
static int aggs__wait_programs(struct aggs *a)
{
	__u32 zero = 0;

	int err = 0;

	if (bpf_map_update_elem(a->gp_fd, &zero, &a->gp_inner_fd, 0)) {
		err = -errno;
		vlog("cannot wait for running programs: %s\n", strerror(-err));
	}
	return err;
}

/*
 * Free the retiring slots no program can reach any more: those whose key went before one wait for
 * the running programs (an RCU grace period, ~10-30 ms), and that no block holds (their blocks'
 * frees reach them by number) or whose blocks are stale.
 */
static void aggs__reap(struct aggs *a)
{
	size_t i, j;
	bool wait = false;

	for (i = 0; i < a->nr_retiring; i++)
		wait |= !a->retiring[i].waited;
	if (wait) {
		if (aggs__wait_programs(a))
			return; /* next time */
		for (i = 0; i < a->nr_retiring; i++)
			a->retiring[i].waited = true;
	}
	for (i = j = 0; i < a->nr_retiring; i++) {
		__u32 n = a->retiring[i].slot;
		struct asz_agg_val v;

		aggs__val(a, n, &v);
		if (a->state[n] == SLOT_GONE || (!v.live_allocs && !v.live_bytes)) {
			if (a->state[n] == SLOT_RETIRING) {
				a->retired++;
				aggs__keep_counts(a, n);
			}
			aggs__free(a, n);
			continue;
		}
		a->retiring[j++] = a->retiring[i];
	}
	a->nr_retiring = j;
}

/*
 * Under pressure (half the slots, or half of a stacks map, used at this collect), retire the
 * aggregates that hold no block and did not change since the last one: their stacks then go at
 * the next sweeps, and new stacks find room. Their counts stay in their process's totals.
 */
static bool aggs__retire_idle(struct engine *e)
{
	struct aggs *a = &e->aggs;
	__u32 hi = aggs__hi(a, e->skel), half = e->max_stacks / 2;
	size_t before = a->nr_retiring;

	if (a->used <= a->nr / 2 && a->stacks_used[0] <= half && a->stacks_used[1] <= half)
		return false;
	for (__u32 n = 0; n < hi; n++) {
		struct asz_agg_key k;

		if (a->state[n] != SLOT_USED || !a->idle[n] || !aggs__key(a, n, &k))
			continue;
		aggs__retire(a, n, &k, SLOT_RETIRING);
	}
	dlog("%zu idle aggregates retired (%u of %u slots used)\n", a->nr_retiring - before,
	     a->used, a->nr);
	return a->nr_retiring > before;
}

static int add_agg(struct engine *e, struct snapshot *s, const struct asz_agg_key *key,
		   const struct asz_agg_val *v)
{
	struct stack_slot *st;
	struct snap_stack ss = {};

	ss.pid = key->tgid;
	ss.allocator = key->allocator;
	ss.stack_id = key->stack_id;
	ss.live_bytes = v->live_bytes;
	ss.live_allocs = v->live_allocs;
	ss.alloc_bytes = v->alloc_bytes;
	ss.allocs = v->allocs;
	ss.frees = v->frees;
	st = stack_get(e, key->stack_id);
	if (st) {
		ss.nr_frames = st->nr;
		ss.flags = st->flags;
		ss.ips = st->st->ips;
		if (st->seen != e->collects) {
			st->seen = e->collects;
			e->aggs.stacks_used[!!(key->stack_id & ASZ_STACK_LONG)]++;
		}
	}
	return snapshot__add_stack(s, &ss);
}

/* A retiring slot's blocks, beside its key's new slot: one figure (few: a linear search). */
static int add_orphan(struct engine *e, struct snapshot *s, const struct asz_agg_key *key,
		      const struct asz_agg_val *v)
{
	for (size_t i = 0; i < s->nr_stacks; i++) {
		struct snap_stack *ss = &s->stacks[i];

		if (ss->pid != key->tgid || ss->allocator != key->allocator ||
		    ss->stack_id != key->stack_id)
			continue;
		ss->live_bytes += v->live_bytes;
		ss->live_allocs += v->live_allocs;
		ss->alloc_bytes += v->alloc_bytes;
		ss->allocs += v->allocs;
		ss->frees += v->frees;
		return 0;
	}
	return add_agg(e, s, key, v);
}

/*
 * Every aggregate, read in place from its slot. Those of images exec'd away are retired (nothing
 * touches them again: their blocks are stale too), so processes that exec again and again do
 * not fill the maps; idle ones under pressure too.
 */
static int collect_stacks(struct engine *e, struct snapshot *s, const struct gens *g)
{
	struct aggs *a = &e->aggs;
	__u32 hi = aggs__hi(a, e->skel), *orphans = NULL;
	size_t nr_orphans = 0, cap_orphans = 0;
	size_t gone = 0;
	int err = 0;

	e->collects++;
	a->used = 0;
	a->stacks_used[0] = a->stacks_used[1] = 0;
	for (__u32 n = 0; n < hi && !err; n++) {
		struct asz_agg_key k;
		struct asz_agg_val v;

		if (!aggs__key(a, n, &k))
			continue;
		a->used++;
		aggs__val(a, n, &v);
		a->idle[n] = !v.live_allocs && !v.live_bytes && a->seen[n] == v.allocs + v.frees + 1;
		a->seen[n] = v.allocs + v.frees + 1;
		if (a->state[n] == SLOT_GONE)
			continue;
		switch (agg_age(g, &k)) {
		case AGG_CURRENT:
			break;
		case AGG_NEWER:
			continue;
		case AGG_STALE:
			aggs__retire(a, n, &k, SLOT_GONE);
			gone++;
			continue;
		}
		/* one being given back, or made for a block that did not fit in allocs: nothing */
		if (!v.live_allocs && !v.live_bytes && !v.alloc_bytes && !v.allocs && !v.frees)
			continue;
		if (a->state[n] == SLOT_RETIRING) {
			void *p = util__grow(orphans, &cap_orphans, nr_orphans, sizeof(*orphans), 16);

			if (!p) {
				err = -ENOMEM;
				break;
			}
			orphans = p;
			orphans[nr_orphans++] = n;
			continue;
		}
		err = add_agg(e, s, &k, &v);
	}
	for (size_t i = 0; i < nr_orphans && !err; i++) {
		struct asz_agg_key k;
		struct asz_agg_val v;

		if (!aggs__key(a, orphans[i], &k))
			continue;
		aggs__val(a, orphans[i], &v);
		err = add_orphan(e, s, &k, &v);
	}
	free(orphans);
	if (gone)
		dlog("%zu aggregates of images exec'd away retired\n", gone);
	aggs__retire_idle(e);
	aggs__reap(a);
	/*
	 * The stacks of the slots freed: deleted by the sweeps after, once unused at two (system-
	 * wide: at each report, all of them). Every 16th sweep walks all stacks: those interned at an
	 * allocator's entry whose block was never recorded (it failed, a map was full) have none.
	 */
	if (!e->system_wide && (a->freed_stacks.nr || e->unreferenced.nr))
		sweep_stacks(e, ++e->sweeps % 16 == 0);
	return err;
}

static void collect_drops(struct engine *e, struct snapshot *s)
{
	int fd = bpf_map__fd(e->skel->maps.drops);
	__u64 *vals = calloc(e->ncpus, sizeof(__u64));
	__u32 r;
	int c;

	if (!vals)
		return;
	for (r = 0; r < ASZ_NR_DROPS; r++) {
		s->drops[r] = 0;
		if (r == ASZ_DROP_AGGS_RETIRED) {
			s->drops[r] = e->aggs.retired; /* counted here */
			continue;
		}
		if (bpf_map_lookup_elem(fd, &r, vals))
			continue;
		for (c = 0; c < e->ncpus; c++)
			s->drops[r] += vals[c];
	}
	free(vals);
	if (e->unwind) {
		struct unwind_stats st;
		struct asz_unwind_stats *w = calloc(e->ncpus, sizeof(*w));
		__u32 zero = 0;

		/* counted in user space: modules left to frame pointers for want of room */
		unwind__stats(e->unwind, &st);
		s->drops[ASZ_DROP_UNWIND_TABLE_FULL] = st.full;
		s->unwind = (struct snap_unwind){
			.dwarf = true,
			.modules = st.modules,
			.tables = st.tables,
			.rows = st.rows,
			.bytes = st.bytes,
			.build_ns = st.build_ns,
		};
		if (w && !bpf_map_lookup_elem(bpf_map__fd(e->skel->maps.uw_stats), &zero, w)) {
			for (c = 0; c < e->ncpus; c++) {
				s->unwind.work.stacks += w[c].stacks;
				s->unwind.work.frames_unwound += w[c].frames_unwound;
				s->unwind.work.frames_checked += w[c].frames_checked;
				s->unwind.work.rule_searches += w[c].rule_searches;
				s->unwind.work.stack_reads += w[c].stack_reads;
				s->unwind.work.stacks_repeated += w[c].stacks_repeated;
			}
		}
		free(w);
	}
}

int engine__collect(struct engine *e, struct snapshot **out)
{
	struct snapshot *s = snapshot__new();
	struct gens g = {};
	struct timespec wall;
	int err;

	if (!s)
		return -ENOMEM;
	clock_gettime(CLOCK_REALTIME, &wall);
	s->time = wall.tv_sec + wall.tv_nsec / 1e9;
	s->mono_ns = util__mono_ns();
	s->elapsed_s = (s->mono_ns - e->start_ns) / 1e9;
	s->sample_bytes = e->sample_bytes;
	s->min_size = e->min_size;
	err = collect_procs(e, s, &g);
	if (!err)
		err = collect_stacks(e, s, &g);
	free(g.tgid);
	if (err) {
		snapshot__free(s);
		return err;
	}
	collect_drops(e, s);
	*out = s;
	return 0;
}

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return x < y ? -1 : x > y;
}

/* A sorted copy of n pids, for key_of(); NULL if out of memory. */
static pid_t *sorted_pids(const pid_t *pids, int n)
{
	pid_t *sorted = malloc(n * sizeof(*sorted));

	if (sorted) {
		memcpy(sorted, pids, n * sizeof(*sorted));
		qsort(sorted, n, sizeof(*sorted), cmp_pid);
	}
	return sorted;
}

/* Is the entry of this key (its first 4 bytes a tgid) one of the sorted pids'? */
static bool key_of(const void *key, const pid_t *pids, int n)
{
	pid_t tgid;

	memcpy(&tgid, key, sizeof(tgid));
	return bsearch(&tgid, pids, n, sizeof(*pids), cmp_pid) != NULL;
}

void engine__for_each_vma(struct engine *e, const pid_t *pids, int n,
			  void (*fn)(const struct asz_vma_key *k, const struct asz_vma *v, void *ctx),
			  void *ctx)
{
	int fd = bpf_map__fd(e->skel->maps.vmas);
	struct asz_vma_key key, next, *prev = NULL;
	struct asz_vma v;
	pid_t *sorted;

	/* one walk for all of them: one per process was quadratic (seconds a report in a storm) */
	if (n <= 0)
		return;
	sorted = sorted_pids(pids, n);
	if (!sorted)
		return;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (key_of(&key, sorted, n) && bpf_map_lookup_elem(fd, &key, &v) == 0)
			fn(&key, &v, ctx);
	}
	free(sorted);
}

#define FORGET_BATCH 4096

/*
 * Every entry of map fd, a batch at a time (keys and vals have room for max each), to fn, whose
 * non-zero return stops the walk and is returned. -EOPNOTSUPP when the kernel has no batch
 * lookup for the map (nothing was read: walk it a key at a time instead).
 */
static int map_for_each_batch(int fd, void *keys, void *vals, __u32 max,
			      int (*fn)(void *ctx, const void *keys, const void *vals, __u32 n),
			      void *ctx)
{
	__u64 in = 0, out = 0;
	bool first = true;
	int err;

	for (;;) {
		LIBBPF_OPTS(bpf_map_batch_opts, opts);
		__u32 n = max;
		int rc = bpf_map_lookup_batch(fd, first ? NULL : &in, &out, keys, vals, &n, &opts);

		if (rc && errno != ENOENT)
			return first && !n ? -EOPNOTSUPP : -errno;
		err = fn(ctx, keys, vals, n);
		if (err || rc)
			return err; /* rc: ENOENT, that was the last batch */
		in = out;
		first = false;
	}
}

struct forget_ctx {
	int fd;
	size_t key_size;
	const pid_t *pids; /* sorted */
	int n;
	char *dead;	   /* room for FORGET_BATCH keys */
	struct aggs *aggs; /* map is the aggs hash: its values are slots, retired with the keys */
	__u32 *slots;	   /* the dead keys' slots (aggs) */
};

/* The slot of an aggs key deleted by forget_in(): no block of it will be freed any more. */
static void forget_slot(struct aggs *a, __u32 n)
{
	if (n < a->nr)
		aggs__add_retiring(a, n, SLOT_GONE);
}

/* Room for n more slots in the retiring list before their keys go (else a slot is lost). */
static int forget_room(struct aggs *a, size_t n)
{
	return a ? util__reserve(&a->retiring, &a->cap_retiring, a->nr_retiring + n,
				 sizeof(*a->retiring), 64)
		 : 0;
}

static int forget_batch(void *ctx, const void *keys, const void *vals, __u32 cnt)
{
	struct forget_ctx *c = ctx;
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	__u32 nd = 0, del;

	if (forget_room(c->aggs, cnt))
		return -ENOMEM; /* this batch and the rest: at the next sweep */

	for (__u32 i = 0; i < cnt; i++) {
		if (!key_of((const char *)keys + i * c->key_size, c->pids, c->n))
			continue;
		if (c->aggs)
			c->slots[nd] = ((const __u32 *)vals)[i];
		memcpy(c->dead + nd++ * c->key_size, (const char *)keys + i * c->key_size,
		       c->key_size);
	}
	del = nd;
	/*
	 * A slot is forgotten with its key only (one whose key stays is still the key's). A batch
	 * stops at a key already gone, the del before it deleted.
	 */
	if (nd && bpf_map_delete_batch(c->fd, c->dead, &del, &opts)) {
		for (__u32 i = 0; i < nd; i++) {
			bool gone = !bpf_map_delete_elem(c->fd, c->dead + i * c->key_size) ||
				    (errno == ENOENT && i < del);

			if (gone && c->aggs)
				forget_slot(c->aggs, c->slots[i]);
		}
	} else if (c->aggs) {
		for (__u32 i = 0; i < nd; i++)
			forget_slot(c->aggs, c->slots[i]);
	}
	return 0;
}

/*
 * Delete the entries of map whose key starts with one of the tgids in pids (sorted). Read and
 * deleted in batches: one entry at a time, a million live blocks took two syscalls each and
 * stalled system-wide reports for minutes. One by one where the kernel has no batch operations.
 */
static void forget_in(struct bpf_map *map, size_t key_size, const pid_t *pids, int n,
		      struct aggs *aggs)
{
	struct forget_ctx c = {bpf_map__fd(map), key_size, pids, n, NULL, aggs, NULL};
	__u32 slot;
	char key[64], next[64], *keys, *vals;
	bool have = false;
	int err = -EOPNOTSUPP;

	keys = malloc(FORGET_BATCH * key_size);
	vals = malloc(FORGET_BATCH * bpf_map__value_size(map));
	c.dead = malloc(FORGET_BATCH * key_size);
	c.slots = malloc(FORGET_BATCH * sizeof(*c.slots));
	if (key_size > sizeof(key))
		goto cleanup;
	if (keys && vals && c.dead && c.slots)
		err = map_for_each_batch(c.fd, keys, vals, FORGET_BATCH, forget_batch, &c);
	if (err != -EOPNOTSUPP)
		goto cleanup; /* done, or failed midway: what is left goes at the next sweep */
	while (bpf_map_get_next_key(c.fd, have ? key : NULL, next) == 0) {
		if (key_of(next, pids, n) && (!aggs || !bpf_map_lookup_elem(c.fd, next, &slot)) &&
		    !forget_room(aggs, 1) && bpf_map_delete_elem(c.fd, next) == 0) {
			if (aggs)
				forget_slot(aggs, slot);
			continue; /* the same key then finds the element after the deleted one */
		}
		memcpy(key, next, key_size);
		have = true;
	}
cleanup:
	free(keys);
	free(vals);
	free(c.dead);
	free(c.slots);
}

static int cmp_u64(const void *a, const void *b)
{
	__u64 x = *(const __u64 *)a, y = *(const __u64 *)b;

	return x < y ? -1 : x > y;
}

static int idset_add(struct idset *s, __u64 id)
{
	__u64 *p = util__grow(s->ids, &s->cap, s->nr, sizeof(*s->ids), 256);

	if (!p)
		return -ENOMEM;
	s->ids = p;
	s->ids[s->nr++] = id;
	return 0;
}

static bool idset_has(const struct idset *s, __u64 id)
{
	return s->nr && bsearch(&id, s->ids, s->nr, sizeof(id), cmp_u64);
}

/* Drop cached stacks whose ids are in gone (the kernel map no longer has them). */
static void cache_drop(struct stack_cache *c, const struct idset *gone)
{
	struct stack_cache n = {.cap = c->cap};
	size_t i;

	if (!gone->nr || !c->cap)
		return;
	n.slot = calloc(n.cap, sizeof(*n.slot));
	if (!n.slot)
		return;
	for (i = 0; i < c->cap; i++) {
		if (!c->slot[i].key)
			continue;
		if (idset_has(gone, c->slot[i].key)) {
			free(c->slot[i].st);
			continue;
		}
		n.slot[cache_slot(&n, c->slot[i].key)] = c->slot[i];
		n.nr++;
	}
	free(c->slot);
	*c = n;
}

/* The ids of ids (sorted) that a slot uses now, into *out (sorted); 0 or -ENOMEM. */
static int sweep_referenced(struct engine *e, const struct idset *ids, struct idset *out)
{
	__u32 hi = aggs__hi(&e->aggs, e->skel);

	for (__u32 n = 0; n < hi; n++) {
		struct asz_agg_key ak;

		if (aggs__key(&e->aggs, n, &ak) && idset_has(ids, ak.stack_id) &&
		    idset_add(out, ak.stack_id))
			return -ENOMEM;
	}
	qsort(out->ids, out->nr, sizeof(*out->ids), cmp_u64);
	return 0;
}

/* Put stack id back into its map from the cache (a short one's value is a struct's first bytes). */
static int stack_restore(struct engine *e, __u64 id)
{
	struct stack_cache *c = &e->stacks;
	struct asz_stack buf = {};
	struct bpf_map *map;
	size_t i;

	if (!c->cap)
		return -ENOENT;
	i = cache_slot(c, id);
	if (c->slot[i].key != id)
		return -ENOENT;
	buf.nr = c->slot[i].nr;
	buf.flags = c->slot[i].flags;
	memcpy(buf.ips, c->slot[i].st->ips, buf.nr * sizeof(buf.ips[0]));
	map = id & ASZ_STACK_LONG ? e->skel->maps.long_stacks : e->skel->maps.stacks;
	return bpf_map__update_elem(map, &id, sizeof(id), &buf, bpf_map__value_size(map), BPF_NOEXIST);
}

/*
 * Delete stacks no aggregate refers to any more (their processes are gone, their aggregates
 * retired). The BPF side interns a stack at an allocator's entry and creates its aggregate at
 * the return, so a stack is deleted only if it was unreferenced at the previous sweep too. all:
 * every stack in the maps (a walk of both, a syscall a stack: system-wide, and when targets
 * go); else only those of slots freed since (retired, exec'd away) and those left unreferenced
 * by the last sweep.
 */
static void sweep_stacks(struct engine *e, bool all)
{
	int sfds[2] = {bpf_map__fd(e->skel->maps.stacks), bpf_map__fd(e->skel->maps.long_stacks)};
	__u32 hi = aggs__hi(&e->aggs, e->skel);
	struct idset used = {}, now = {}, gone = {}, again = {};
	__u64 key, *prev;
	size_t deleted = 0, deep = 0, restored = 0, kept;

	/* every slot taken counts, retiring ones too (they may hold blocks) */
	for (__u32 n = 0; n < hi; n++) {
		struct asz_agg_key ak;

		if (aggs__key(&e->aggs, n, &ak) && idset_add(&used, ak.stack_id))
			goto cleanup;
	}
	qsort(used.ids, used.nr, sizeof(*used.ids), cmp_u64);
	for (int m = 0; m < 2 && all; m++) {
		for (prev = NULL; bpf_map_get_next_key(sfds[m], prev, &key) == 0; prev = &key)
			if (!idset_has(&used, key) &&
			    idset_add(idset_has(&e->unreferenced, key) ? &gone : &now, key))
				goto cleanup;
	}
	if (!all) {
		struct idset *cand[2] = {&e->aggs.freed_stacks, &e->unreferenced};

		qsort(cand[0]->ids, cand[0]->nr, sizeof(__u64), cmp_u64);
		for (int c = 0; c < 2; c++) {
			for (size_t i = 0; i < cand[c]->nr; i++) {
				key = cand[c]->ids[i];
				if ((i && key == cand[c]->ids[i - 1]) || idset_has(&used, key) ||
				    (c == 1 && idset_has(cand[0], key)))
					continue; /* (once each) */
				if (idset_add(c == 1 ? &gone : &now, key))
					goto cleanup;
			}
		}
	}
	if (gone.nr) {
		/* slots made since the scan above keep their stacks */
		qsort(gone.ids, gone.nr, sizeof(*gone.ids), cmp_u64);
		if (sweep_referenced(e, &gone, &again))
			goto cleanup;
	}
	kept = 0;
	/* odd while deleting: the BPF side's memo of the last stack id looks again (stack_sweeps) */
	if (gone.nr)
		__atomic_fetch_add(&e->skel->bss->stack_sweeps, 1, __ATOMIC_SEQ_CST);
	for (size_t i = 0; i < gone.nr; i++) {
		bool is_long = gone.ids[i] & ASZ_STACK_LONG;

		if (idset_has(&again, gone.ids[i]))
			continue; /* used again: stays */
		gone.ids[kept++] = gone.ids[i];
		if (bpf_map_delete_elem(sfds[is_long], &gone.ids[i]) == 0) {
			deleted++;
			deep += is_long;
		}
	}
	if (gone.nr)
		__atomic_fetch_add(&e->skel->bss->stack_sweeps, 1, __ATOMIC_SEQ_CST);
	gone.nr = kept;
	/*
	 * A slot made between that scan and the deletes (a return program that found the stack
	 * just before): its stack goes back, from our copy of it.
	 */
	free(again.ids);
	again = (struct idset){};
	if (deleted && !sweep_referenced(e, &gone, &again)) {
		kept = 0;
		for (size_t i = 0; i < gone.nr; i++) {
			if (idset_has(&again, gone.ids[i]) && stack_restore(e, gone.ids[i]) == 0)
				restored++;
			else
				gone.ids[kept++] = gone.ids[i];
		}
		gone.nr = kept;
	}
	cache_drop(&e->stacks, &gone);
	qsort(now.ids, now.nr, sizeof(*now.ids), cmp_u64);
	free(e->unreferenced.ids);
	e->unreferenced = now;
	now = (struct idset){};
	e->aggs.freed_stacks.nr = 0; /* looked at */
	dlog("stack sweep: %zu deleted (%zu of over %d frames), %zu put back, %zu unreferenced (%s)\n",
	     deleted, deep, ASZ_SHORT_FRAMES, restored, e->unreferenced.nr,
	     all ? "all stacks" : "those of freed slots");
cleanup:
	free(used.ids);
	free(now.ids);
	free(gone.ids);
	free(again.ids);
}

void engine__forget(struct engine *e, const pid_t *pids, int n)
{
	pid_t *sorted;
	int i, j;

	/* sweep even without new deaths: the second phase of the previous sweep */
	if (n <= 0) {
		sweep_stacks(e, true);
		return;
	}
	sorted = sorted_pids(pids, n);
	if (sorted) {
		forget_in(e->skel->maps.allocs, sizeof(struct asz_alloc_key), sorted, n, NULL);
		forget_in(e->skel->maps.mappings, sizeof(struct asz_alloc_key), sorted, n, NULL);
		forget_in(e->skel->maps.mapidx, sizeof(__u32), sorted, n, NULL);
		forget_in(e->skel->maps.aggs, sizeof(struct asz_agg_key), sorted, n, &e->aggs);
		forget_in(e->skel->maps.vmas, sizeof(struct asz_vma_key), sorted, n, NULL);
		forget_in(e->skel->maps.procs, sizeof(__u32), sorted, n, NULL);
		aggs__hi(&e->aggs, e->skel); /* maps every slot the hash named (all below agg_next) */
		/* slots of theirs retiring already (out of the hash, blocks held) go too */
		for (size_t r = 0; r < e->aggs.nr_retiring; r++) {
			__u32 slot = e->aggs.retiring[r].slot;

			if (key_of(&e->aggs.slots[slot].key.tgid, sorted, n))
				e->aggs.state[slot] = SLOT_GONE;
		}
		aggs__reap(&e->aggs);
		aggs__forget_procs(&e->aggs, sorted, n);
		free(sorted);
	}
	for (i = j = 0; i < e->nr_targets; i++) {
		bool dead = false;

		for (int k = 0; k < n && !dead; k++)
			dead = e->targets[i].pid == pids[k];
		if (dead)
			free(e->targets[i].exe);
		else
			e->targets[j++] = e->targets[i];
	}
	e->nr_targets = j;
	sweep_stacks(e, true);
}

static __u64 fdinfo_memlock(int fd)
{
	char path[64], line[128];
	unsigned long long v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "memlock: %llu", &v) == 1)
			break;
	fclose(f);
	return v;
}

void engine__stats(struct engine *e, struct engine_stats *st)
{
	struct bpf_program *prog;
	struct bpf_map *map;

	memset(st, 0, sizeof(*st));
	bpf_object__for_each_program(prog, e->skel->obj) {
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);

		if (bpf_program__fd(prog) < 0 ||
		    bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len))
			continue;
		st->run_ns += info.run_time_ns;
		st->run_cnt += info.run_cnt;
		if (info.run_cnt)
			dlog("own cost: %s %llu runs, %.0f ns each\n", bpf_program__name(prog),
			     (unsigned long long)info.run_cnt,
			     (double)info.run_time_ns / info.run_cnt);
	}
	bpf_object__for_each_map(map, e->skel->obj)
		if (bpf_map__fd(map) >= 0)
			st->map_bytes += fdinfo_memlock(bpf_map__fd(map));
	st->stacks = e->stacks.nr;
	if (e->unwind)
		unwind__stats(e->unwind, &st->unwind);
}

struct closer {
	const int *fds;
	int n, step;
};

static void *close_links(void *arg)
{
	struct closer *c = arg;

	for (int i = 0; i < c->n; i += c->step)
		close(c->fds[i]);
	return NULL;
}

/*
 * Closing a uprobe_multi link waits for an RCU grace period (~30-50 ms here): close them from
 * a few threads at once so the waits overlap. Serially on any thread error.
 */
static void close_link_fds(int *fds, int n)
{
	enum { MAX_CLOSERS = 8 };
	struct closer c[MAX_CLOSERS];
	pthread_t t[MAX_CLOSERS];
	bool started[MAX_CLOSERS] = {};
	int k = n < MAX_CLOSERS ? n : MAX_CLOSERS;

	for (int i = 0; i < k; i++) {
		c[i] = (struct closer){fds + i, n - i, k};
		started[i] = i > 0 && pthread_create(&t[i], NULL, close_links, &c[i]) == 0;
	}
	for (int i = 0; i < k; i++) {
		if (!started[i])
			close_links(&c[i]);
	}
	for (int i = 0; i < k; i++) {
		if (started[i])
			pthread_join(t[i], NULL);
	}
}

void engine__close(struct engine *e)
{
	size_t i;

	if (!e)
		return;
	close_link_fds(e->link_fds, e->nr_fds);
	for (int j = 0; j < e->nr_links; j++)
		bpf_link__destroy(e->links[j]);
	if (e->stats_fd >= 0)
		close(e->stats_fd);
	bpf_link__destroy(e->tp_exec);
	bpf_link__destroy(e->tp_exit);
	bpf_link__destroy(e->tp_fork);
	bpf_link__destroy(e->tp_munmap);
	bpf_link__destroy(e->tp_mremap); /* the entry first: its return still seen meanwhile */
	bpf_link__destroy(e->tp_mremap_exit);
	ring_buffer__free(e->rb);
	unwind__free(e->unwind);
	aggs__close(&e->aggs);
	asizeof_bpf__destroy(e->skel);
	for (i = 0; i < e->stacks.cap; i++)
		free(e->stacks.slot[i].st);
	free(e->stacks.slot);
	free(e->unreferenced.ids);
	free(e->links);
	free(e->link_pids);
	free(e->link_fds);
	free(e->fd_pids);
	for (int i = 0; i < e->nr_targets; i++)
		free(e->targets[i].exe);
	free(e->targets);
	free(e);
}
