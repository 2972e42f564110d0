// SPDX-License-Identifier: MIT
/*
 * The report command: trace processes given with -p, or a command launched after --, and print
 * a report every interval and once at the end.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "cmd.h"
#include "engine.h"
#include "log.h"
#include "report.h"
#include "symbolizer.h"
#include "target.h"
#include "util.h"

#define MAX_TARGETS 64
/* After a launch, mappings are re-read this often so short-lived commands still symbolize. */
#define STARTUP_POLL_MS 2
#define STARTUP_POLL_S 1.0
#define MAPS_POLL_MS 100

struct report_args {
	pid_t pids[MAX_TARGETS];
	int nr_pids;
	double interval;
	double duration; /* 0: until the targets end or a signal */
	struct report_opts ro;
	enum report_format fmt;
	const char *output;
	struct engine_opts eo;
	char **cmd;
};

struct tracked {
	pid_t pid;
	int pidfd; /* -1 for the launched child (reaped through SIGCHLD) */
	bool exited;
};

struct session {
	struct report_args *a;
	struct engine *eng;
	struct symbolizer *sym;
	FILE *out;
	struct tracked t[MAX_TARGETS + 1];
	int nr;
	struct launched child;
	char child_path[PATH_MAX];
	bool launched;
	int child_status;
	bool child_done;
	struct snapshot *prev;
};

enum {
	OPT_MAX_DEPTH = 256,
	OPT_MAX_ALLOCS,
	OPT_MAX_STACKS,
	OPT_ATTACH,
	OPT_EMPTY_PROBES,
	OPT_WEIGHT,
};

static const struct option long_opts[] = {
	{"pid", required_argument, NULL, 'p'},
	{"interval", required_argument, NULL, 'i'},
	{"duration", required_argument, NULL, 'd'},
	{"top", required_argument, NULL, 'n'},
	{"sort", required_argument, NULL, 's'},
	{"format", required_argument, NULL, 'f'},
	{"output", required_argument, NULL, 'o'},
	{"max-depth", required_argument, NULL, OPT_MAX_DEPTH},
	{"max-allocs", required_argument, NULL, OPT_MAX_ALLOCS},
	{"max-stacks", required_argument, NULL, OPT_MAX_STACKS},
	{"attach", required_argument, NULL, OPT_ATTACH},
	{"weight", required_argument, NULL, OPT_WEIGHT},
	{"empty-probes", no_argument, NULL, OPT_EMPTY_PROBES}, /* benchmarks only, undocumented */
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{},
};

void cmd_report__usage(FILE *f)
{
	fprintf(f,
		"Usage: asizeof-bpf [OPTIONS] -p PID [-p PID ...]\n"
		"       asizeof-bpf [OPTIONS] -- COMMAND [ARGS...]\n"
		"\n"
		"Report which call stacks hold live heap bytes, and which grow, in running processes\n"
		"(glibc malloc, calloc, realloc, memalign/aligned_alloc, posix_memalign, valloc,\n"
		"pvalloc, free), without stopping them. Needs root.\n"
		"\n"
		"Targets:\n"
		"  -p, --pid PID          trace this process (repeat for several, side by side)\n"
		"  -- COMMAND [ARGS]      launch COMMAND and trace it from its first allocation;\n"
		"                         exit with its exit status\n"
		"Reports:\n"
		"  -i, --interval SECS    report every SECS seconds (default 5); a final report\n"
		"                         is always printed at the end\n"
		"  -d, --duration SECS    stop after SECS seconds (a launched command is terminated)\n"
		"  -n, --top N            stacks per report (default 10, 0 = all)\n"
		"  -s, --sort KEY         growth (default), live, allocs or bytes\n"
		"  -f, --format FMT       text (default), json (one object per report per line),\n"
		"                         collapsed (folded stacks) or pprof (gzipped profile.proto;\n"
		"                         needs -o); these two are written once, at the end\n"
		"  --weight W             collapsed: live_bytes (default), alloc_bytes or allocs\n"
		"  -o, --output FILE      write reports to FILE instead of standard output\n"
		"Limits:\n"
		"  --max-depth N          stack frames kept per allocation (1-%d, default %d)\n"
		"  --max-allocs N         live blocks tracked (default 1048576)\n"
		"  --max-stacks N         distinct stacks kept (default 65536)\n"
		"  --attach MODE          auto (default), multi (one uprobe_multi link per program)\n"
		"                         or perf (one perf-event link per probe)\n"
		"Other:\n"
		"  -v, --verbose          more diagnostics on stderr (-vv: libbpf debug)\n"
		"  -h, --help             this help\n"
		"  -V, --version          version\n"
		"\n"
		"Exit status: 0 done; with -- COMMAND, the command's status (128+N if killed by\n"
		"signal N); 1 runtime error; 2 usage error.\n"
		"See asizeof-bpf(8).\n",
		ASZ_MAX_FRAMES, ASZ_MAX_FRAMES);
}

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "asizeof-bpf: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (see --help)\n");
	return 2;
}

static int parse_count(const char *s, __u64 min, __u64 max, __u64 *out)
{
	__u64 v;

	if (util__parse_u64(s, &v) || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Returns -1 to go on, or an exit status. */
static int parse_args(int argc, char **argv, struct report_args *a)
{
	__u64 v;
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:p:i:d:n:s:f:o:vhV", long_opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (parse_count(optarg, 1, INT_MAX, &v))
				return usage_error("-p: '%s' is not a process id", optarg);
			if (a->nr_pids == MAX_TARGETS)
				return usage_error("too many -p (at most %s)", "64");
			/* a pid given twice would get two probe sets and count every call twice */
			for (int i = 0; i < a->nr_pids; i++)
				if (a->pids[i] == (pid_t)v)
					v = 0;
			if (v)
				a->pids[a->nr_pids++] = v;
			break;
		case 'i':
			if (util__parse_double(optarg, &a->interval) || a->interval < 0.01 ||
			    a->interval > 86400)
				return usage_error("-i: '%s' is not an interval in seconds (0.01-86400)",
						   optarg);
			break;
		case 'd':
			if (util__parse_double(optarg, &a->duration) || a->duration <= 0)
				return usage_error("-d: '%s' is not a duration in seconds", optarg);
			break;
		case 'n':
			if (parse_count(optarg, 0, INT_MAX, &v))
				return usage_error("-n: '%s' is not a count", optarg);
			a->ro.top_n = v;
			break;
		case 's':
			if (snapshot__parse_sort(optarg, &a->ro.sort))
				return usage_error("-s: unknown key '%s' (growth, live, allocs, bytes)",
						   optarg);
			break;
		case 'f':
			if (strcmp(optarg, "text") == 0)
				a->fmt = REPORT_TEXT;
			else if (strcmp(optarg, "json") == 0)
				a->fmt = REPORT_JSON;
			else if (strcmp(optarg, "collapsed") == 0)
				a->fmt = REPORT_COLLAPSED;
			else if (strcmp(optarg, "pprof") == 0)
				a->fmt = REPORT_PPROF;
			else
				return usage_error(
					"-f: unknown format '%s' (text, json, collapsed, pprof)", optarg);
			break;
		case 'o':
			a->output = optarg;
			break;
		case OPT_MAX_DEPTH:
			if (parse_count(optarg, 1, ASZ_MAX_FRAMES, &v))
				return usage_error("--max-depth: '%s' is not 1-127", optarg);
			a->eo.max_depth = v;
			break;
		case OPT_MAX_ALLOCS:
			if (parse_count(optarg, 1024, 1u << 28, &v))
				return usage_error("--max-allocs: '%s' is not 1024-268435456", optarg);
			a->eo.max_allocs = v;
			break;
		case OPT_MAX_STACKS:
			if (parse_count(optarg, 64, 1u << 24, &v))
				return usage_error("--max-stacks: '%s' is not 64-16777216", optarg);
			a->eo.max_stacks = v;
			a->eo.max_aggs = v;
			break;
		case OPT_ATTACH:
			if (strcmp(optarg, "auto") == 0)
				a->eo.attach = ATTACH_AUTO;
			else if (strcmp(optarg, "multi") == 0)
				a->eo.attach = ATTACH_MULTI;
			else if (strcmp(optarg, "perf") == 0)
				a->eo.attach = ATTACH_PERF;
			else
				return usage_error("--attach: unknown mode '%s' (auto, multi, perf)",
						   optarg);
			break;
		case OPT_WEIGHT:
			if (strcmp(optarg, "live_bytes") == 0)
				a->ro.weight = WEIGHT_LIVE_BYTES;
			else if (strcmp(optarg, "alloc_bytes") == 0)
				a->ro.weight = WEIGHT_ALLOC_BYTES;
			else if (strcmp(optarg, "allocs") == 0)
				a->ro.weight = WEIGHT_ALLOCS;
			else
				return usage_error(
					"--weight: unknown '%s' (live_bytes, alloc_bytes, allocs)",
					optarg);
			break;
		case OPT_EMPTY_PROBES:
			a->eo.empty_probes = true;
			break;
		case 'v':
			env_verbosity++;
			break;
		case 'h':
			cmd_report__usage(stdout);
			return 0;
		case 'V':
			printf("asizeof-bpf %s\n", ASZ_VERSION);
			return 0;
		case ':': /* the leading ':' in the option string makes getopt tell these apart */
			return usage_error("option '%s' needs an argument", argv[optind - 1]);
		case '?':
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc) {
		/* getopt stops at "--"; anything left is the command */
		if (strcmp(argv[optind - 1], "--") != 0)
			return usage_error("unexpected argument '%s' (a command goes after --)",
					   argv[optind]);
		a->cmd = &argv[optind];
	} else if (optind > 1 && strcmp(argv[optind - 1], "--") == 0) {
		return usage_error("%s", "no command after --");
	}
	if (a->fmt == REPORT_PPROF && !a->output && isatty(1))
		return usage_error("%s", "-f pprof writes binary: give -o FILE");
	if (a->cmd && a->nr_pids)
		return usage_error("%s", "give either -p PID or -- COMMAND, not both");
	if (!a->cmd && !a->nr_pids)
		return usage_error("%s", "no target: give -p PID or -- COMMAND");
	return -1;
}

static int track(struct session *s, pid_t pid, bool child)
{
	struct tracked *t = &s->t[s->nr++];

	t->pid = pid;
	t->exited = false;
	t->pidfd = child ? -1 : (int)syscall(SYS_pidfd_open, pid, 0);
	return 0;
}

static void mark_exited(struct session *s, struct tracked *t)
{
	if (t->exited)
		return;
	t->exited = true;
	engine__set_exited(s->eng, t->pid);
	vlog("pid %d exited\n", t->pid);
}

static void reap_child(struct session *s, bool block)
{
	int status;

	if (!s->launched || s->child_done)
		return;
	if (waitpid(s->child.pid, &status, block ? 0 : WNOHANG) != s->child.pid)
		return;
	s->child_done = true;
	s->child_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	for (int i = 0; i < s->nr; i++)
		if (s->t[i].pid == s->child.pid)
			mark_exited(s, &s->t[i]);
}

static void check_exits(struct session *s)
{
	reap_child(s, false);
	for (int i = 0; i < s->nr; i++) {
		struct tracked *t = &s->t[i];
		struct pollfd p = {.fd = t->pidfd, .events = POLLIN};

		if (t->exited || t->pidfd < 0)
			continue;
		if (poll(&p, 1, 0) == 1)
			mark_exited(s, t);
	}
}

static bool all_exited(const struct session *s)
{
	for (int i = 0; i < s->nr; i++)
		if (!s->t[i].exited)
			return false;
	return true;
}

static void refresh_maps(struct session *s)
{
	engine__refresh(s->eng);
	for (int i = 0; i < s->nr; i++)
		if (!s->t[i].exited)
			symbolizer__add_pid(s->sym, s->t[i].pid);
}

static void add_file(const char *path, void *sym)
{
	symbolizer__add_file(sym, path);
}

static void add_vma(const struct asz_vma_key *k, const struct asz_vma *v, void *sym)
{
	symbolizer__add_mapping(sym, k->tgid, k->start, v->end, v->pgoff, v->dev >> 20,
				v->dev & 0xfffff, v->ino);
}

static int emit_report(struct session *s, bool final)
{
	struct snapshot *cur;
	int err;

	/* last look at the mappings before they may be needed for good */
	refresh_maps(s);
	for (int i = 0; i < s->nr; i++)
		if (s->t[i].exited)
			engine__for_each_vma(s->eng, s->t[i].pid, add_vma, s->sym);
	err = engine__collect(s->eng, &cur);
	if (err) {
		elog("cannot read the kernel maps: %s\n", strerror(-err));
		return err;
	}
	cur->final = final;
	/* counting starts at attach, so growth since attach is measured from zero */
	snapshot__diff(cur, s->prev, NULL);
	snapshot__sort_procs(cur, s->a->ro.sort);
	snapshot__sort_stacks(cur, s->a->ro.sort);
	if (!final && report__final_only(s->a->fmt))
		err = 0;
	else
		err = report__write(s->out, s->a->fmt, cur, s->sym, &s->a->ro);
	if (!err && fflush(s->out))
		err = -errno;
	if (err)
		elog("cannot write the report: %s\n", strerror(-err));
	snapshot__free(s->prev);
	s->prev = cur;
	return err;
}

/* A launched command still running when profiling stops is ended: we started it. */
static void stop_child(struct session *s)
{
	if (!s->launched || s->child_done)
		return;
	kill(s->child.pid, SIGTERM);
	for (int i = 0; i < 200 && !s->child_done; i++) {
		usleep(10000);
		reap_child(s, false);
	}
	if (!s->child_done) {
		kill(s->child.pid, SIGKILL);
		reap_child(s, true);
	}
}

static int attach_targets(struct session *s)
{
	struct report_args *a = s->a;
	char comm[ASZ_COMM_LEN], lib[PATH_MAX], path[PATH_MAX];
	int err, i;

	for (i = 0; i < a->nr_pids; i++) {
		err = target__inspect(a->pids[i], comm, sizeof(comm), lib, sizeof(lib));
		if (err) {
			if (err == -ESRCH)
				elog("pid %d: no such process\n", a->pids[i]);
			else if (err == -EPERM)
				elog("pid %d (%s) is a kernel thread: it has no heap to trace\n",
				     a->pids[i], comm);
			else if (err == -ENOENT)
				elog("pid %d (%s): no glibc mapped (static or another libc: not "
				     "supported yet)\n",
				     a->pids[i], comm);
			else
				elog("pid %d: %s\n", a->pids[i], strerror(-err));
			return err;
		}
		err = engine__attach(s->eng, a->pids[i], lib);
		if (err)
			return err;
		track(s, a->pids[i], false);
		symbolizer__add_pid(s->sym, a->pids[i]);
	}
	if (!a->cmd)
		return 0;

	err = target__resolve_cmd(a->cmd[0], path, sizeof(path));
	if (err) {
		elog("%s: %s\n", a->cmd[0], err == -ENOENT ? "command not found" : strerror(-err));
		return err;
	}
	/*
	 * The command's files are opened now: if it exits before its /proc/PID/maps is read, the
	 * mappings the kernel recorded for its stacks name them by device and inode.
	 */
	symbolizer__add_file(s->sym, path);
	err = target__exec_libc(path, lib, sizeof(lib), add_file, s->sym);
	if (err) {
		elog("%s: %s\n", path,
		     err == -ENOEXEC ? "statically linked: no glibc to probe (not supported yet)"
				     : "cannot find the C library it loads");
		return err;
	}
	snprintf(s->child_path, sizeof(s->child_path), "%s", path);
	err = target__launch(path, a->cmd, &s->child);
	if (err) {
		elog("cannot start %s: %s\n", path, strerror(-err));
		return err;
	}
	s->launched = true;
	err = engine__attach(s->eng, s->child.pid, lib);
	if (err) {
		target__abort(&s->child);
		s->child_done = true;
		return err;
	}
	track(s, s->child.pid, true);
	return 0;
}

static int run_loop(struct session *s, int sfd)
{
	struct report_args *a = s->a;
	__u64 start = util__mono_ns(), next_report, next_maps, end = 0, now;
	bool stop = false, signaled = false;
	int err = 0;

	next_report = start + (__u64)(a->interval * 1e9);
	next_maps = start;
	if (a->duration > 0)
		end = start + (__u64)(a->duration * 1e9);
	while (!stop) {
		struct pollfd pfds[MAX_TARGETS + 2];
		__u64 wake = next_report;
		int n = 0, i, timeout_ms;

		now = util__mono_ns();
		if (now >= next_maps) {
			bool startup = s->launched && (now - start) < STARTUP_POLL_S * 1e9;

			refresh_maps(s);
			next_maps = now + (startup ? STARTUP_POLL_MS : MAPS_POLL_MS) * 1000000ull;
		}
		if (next_maps < wake)
			wake = next_maps;
		if (end && end < wake)
			wake = end;
		timeout_ms = wake > now ? (int)((wake - now + 999999) / 1000000) : 0;

		pfds[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
		for (i = 0; i < s->nr; i++)
			if (!s->t[i].exited && s->t[i].pidfd >= 0)
				pfds[n++] = (struct pollfd){.fd = s->t[i].pidfd, .events = POLLIN};
		if (poll(pfds, n, timeout_ms) < 0 && errno != EINTR)
			return -errno;
		if (pfds[0].revents & POLLIN) {
			struct signalfd_siginfo si;

			while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM) {
					signaled = true;
					stop = true;
				}
			}
		}
		check_exits(s);
		if (all_exited(s))
			stop = true;
		now = util__mono_ns();
		if (end && now >= end)
			stop = true;
		if (!stop && now >= next_report) {
			err = emit_report(s, false);
			if (err)
				return err;
			while (next_report <= now)
				next_report += (__u64)(a->interval * 1e9);
		}
	}
	if (!signaled && s->launched && !s->child_done)
		vlog("duration reached: terminating pid %d\n", s->child.pid);
	stop_child(s);
	err = emit_report(s, true);
	if (err)
		return err;
	if (signaled || !s->launched)
		return 0;
	return s->child_status;
}

int cmd_report(int argc, char **argv)
{
	struct report_args a = {
		.interval = 5,
		.ro = {.top_n = 10, .sort = SNAP_SORT_GROWTH, .max_frames = 16},
		.fmt = REPORT_TEXT,
		.eo = ENGINE_DEFAULT_OPTS,
	};
	struct session s = {.a = &a, .child = {.go_fd = -1, .exec_fd = -1}};
	sigset_t mask, old;
	int ret, err, sfd = -1;

	ret = parse_args(argc, argv, &a);
	if (ret >= 0)
		return ret;
	if (geteuid() != 0) {
		elog("must run as root (loading BPF programs and uprobes needs it)\n");
		return 1;
	}
	ret = 1;
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, &old);
	sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0) {
		elog("signalfd: %s\n", strerror(errno));
		goto cleanup;
	}
	s.out = stdout;
	if (a.output) {
		s.out = fopen(a.output, "we");
		if (!s.out) {
			elog("%s: %s\n", a.output, strerror(errno));
			goto cleanup;
		}
	}
	s.sym = symbolizer__new();
	if (!s.sym) {
		elog("out of memory\n");
		goto cleanup;
	}
	err = engine__open(&s.eng, &a.eo);
	if (err)
		goto cleanup;
	err = attach_targets(&s);
	if (err)
		goto cleanup;
	elog("attached to %d process%s (%d %s links)%s\n", s.nr, s.nr == 1 ? "" : "es",
	     engine__nr_links(s.eng), engine__attach_mode(s.eng),
	     a.output ? "" : "; Ctrl-C for the final report");
	if (s.launched) {
		err = target__release(&s.child);
		if (err) {
			elog("cannot start the command: %s\n", strerror(-err));
			goto cleanup;
		}
		/* exec has happened; the kernel named the process after the file (it may be gone) */
		engine__set_comm(s.eng, s.child.pid, util__basename(s.child_path));
		engine__refresh(s.eng);
	}
	ret = run_loop(&s, sfd);
	if (ret < 0)
		ret = 1;
cleanup:
	if (s.launched && !s.child_done) {
		if (s.child.go_fd >= 0)
			target__abort(&s.child);
		else
			stop_child(&s);
	}
	engine__close(s.eng);
	symbolizer__free(s.sym);
	snapshot__free(s.prev);
	if (s.out && s.out != stdout)
		fclose(s.out);
	for (int i = 0; i < s.nr; i++)
		if (s.t[i].pidfd >= 0)
			close(s.t[i].pidfd);
	if (sfd >= 0)
		close(sfd);
	sigprocmask(SIG_SETMASK, &old, NULL);
	return ret;
}
