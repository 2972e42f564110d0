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
#include "cmd.h"
#include "engine.h"
#include "engine_opts.h"
#include "session.h"
#include "log.h"
#include "report.h"
#include "util.h"

#define MAX_TARGETS SESSION_MAX_TARGETS

struct report_args {
	pid_t pids[MAX_TARGETS];
	int nr_pids;
	double interval;
	double duration; /* 0: until the targets end or a signal */
	struct report_opts ro;
	enum report_format fmt;
	const char *output;
	bool weight; /* --weight given */
	struct engine_opts eo;
	const char *comms[ENGINE_MAX_COMMS];
	char **cmd;
};

enum {
	OPT_MAX_DEPTH = 256,
	OPT_EMPTY_PROBES,
	OPT_SCRATCH_TAKEN,
	OPT_WEIGHT,
	OPT_COMM,
	OPT_MIN_SIZE,
	OPT_CGROUP,
	OPT_EXCLUDE_SELF,
	OPT_NO_EXCLUDE_SELF,
};

static const struct option long_opts[] = {
	{"pid", required_argument, NULL, 'p'},
	{"interval", required_argument, NULL, 'i'},
	{"duration", required_argument, NULL, 'd'},
	{"top", required_argument, NULL, 'n'},
	{"sort", required_argument, NULL, 's'},
	{"format", required_argument, NULL, 'f'},
	{"output", required_argument, NULL, 'o'},
	{"weight", required_argument, NULL, OPT_WEIGHT},
	{"comm", required_argument, NULL, OPT_COMM},
	{"min-size", required_argument, NULL, OPT_MIN_SIZE},
	{"cgroup", required_argument, NULL, OPT_CGROUP},
	{"exclude-self", no_argument, NULL, OPT_EXCLUDE_SELF},
	{"no-exclude-self", no_argument, NULL, OPT_NO_EXCLUDE_SELF},
	{"empty-probes", optional_argument, NULL, OPT_EMPTY_PROBES}, /* benchmarks only, undocumented */
	{"test-scratch-taken", no_argument, NULL, OPT_SCRATCH_TAKEN}, /* tests only, undocumented */
	ENGINE_LONG_OPTS,
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
		"       asizeof-bpf [OPTIONS] [--comm NAME ...]     (every process)\n"
		"\n"
		"Report which call stacks hold live heap bytes, and which grow, in running processes\n"
		"(glibc malloc, calloc, realloc, memalign/aligned_alloc, posix_memalign, valloc,\n"
		"pvalloc, free), without stopping them. Needs root.\n"
		"\n"
		"Commands (each with its own --help):\n"
		"  asizeof-bpf [report] ...  reports on stdout or to a file (this help)\n"
		"  asizeof-bpf top ...       a live, top-style view of processes and their stacks\n"
		"  asizeof-bpf serve ...     HTTP exporter: Prometheus /metrics, pprof heap profiles\n"
		"\n"
		"Targets:\n"
		"  -p, --pid PID          trace this process (repeat for several, side by side)\n"
		"  -- COMMAND [ARGS]      launch COMMAND and trace it from its first allocation;\n"
		"                         exit with its exit status\n"
		"  (neither)              every process on the machine but this one, including\n"
		"                         those started later; exited ones are reported once more\n"
		"  --comm NAME            system-wide: only processes named NAME (repeatable)\n"
		"  --cgroup PATH          system-wide: only processes in this cgroup v2 directory\n"
		"  --no-exclude-self      system-wide: trace the profiler too (excluded by default)\n"
		"  --min-size BYTES       do not record blocks smaller than BYTES (0 to 2^48;\n"
		"                         realloc: the new size decides)\n"
		"Reports:\n"
		"  -i, --interval SECS    report every SECS seconds (default 5); a final report\n"
		"                         is always printed at the end\n"
		"  -d, --duration SECS    stop after SECS seconds (a launched command is terminated)\n"
		"  -n, --top N            stacks per report (default 10, 0 = all)\n"
		"  -s, --sort KEY         growth (default), live, allocs or bytes\n"
		"  -f, --format FMT       text (default), json (one object per report per line),\n"
		"                         collapsed (folded stacks) or pprof (gzipped profile.proto:\n"
		"                         to -o FILE or a pipe, not a terminal); these two are\n"
		"                         written once, at the end\n"
		"  --weight W             collapsed: live_bytes (default), alloc_bytes or allocs\n"
		"  -o, --output FILE      write reports to FILE instead of standard output\n"
		"Limits:\n"
		"  --max-depth N          stack frames kept per allocation (1-%d, default %d)\n"
		"  --max-allocs N         live blocks tracked (default 1048576)\n"
		"  --max-stacks N         distinct stacks kept (default 65536, and as many deeper\n"
		"                         than 23 frames)\n"
		"  --max-procs N          processes accounted at once, exited ones until they are\n"
		"                         forgotten (1-4194304, default 4096; 65536 system-wide)\n"
		"  --unwind MODE          auto (default): dwarf where the kernel can, else fp;\n"
		"                         dwarf (.eh_frame tables in the kernel: complete without\n"
		"                         frame pointers) or fp (frame pointers only)\n"
		"  --max-unwind-rows N    room for unwind tables, 16 bytes a row (default 2097152;\n"
		"                         4194304 system-wide)\n"
		"  --sample-bytes N       sample one allocated byte in N (Poisson, e.g. 524288):\n"
		"                         much cheaper, figures become unbiased estimates\n"
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

/* Returns -1 to go on, or an exit status. */
static int parse_args(int argc, char **argv, struct report_args *a)
{
	static const char optstring[] = "+:p:i:d:n:s:f:o:vhV";
	const char *last_arg = NULL;
	char msg[160];
	__u64 v;
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, optstring, long_opts, NULL)) != -1) {
		last_arg = optarg;
		if (engine_opts__is(c)) {
			if (engine_opts__parse(&a->eo, c, optarg, msg, sizeof(msg)))
				return usage_error("%s", msg);
			continue;
		}
		switch (c) {
		case 'p':
			if (engine_opts__add_pid(a->pids, &a->nr_pids, MAX_TARGETS, optarg, msg,
						 sizeof(msg)))
				return usage_error("%s", msg);
			break;
		case 'i':
			if (util__parse_double(optarg, &a->interval) || a->interval < 0.01 ||
			    a->interval > 86400)
				return usage_error("-i: '%s' is not an interval in seconds (0.01-86400)",
						   optarg);
			break;
		case 'd':
			if (cmd__parse_duration(optarg, &a->duration))
				return usage_error(CMD_DURATION_USAGE, optarg);
			break;
		case 'n':
			if (util__parse_range(optarg, 0, INT_MAX, &v))
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
		case OPT_COMM:
			if (engine_opts__add_comm(&a->eo, a->comms, optarg, msg, sizeof(msg)))
				return usage_error("%s", msg);
			break;
		case OPT_CGROUP:
			a->eo.cgroup = optarg;
			break;
		case OPT_EXCLUDE_SELF:
			a->eo.include_self = false;
			break;
		case OPT_NO_EXCLUDE_SELF:
			a->eo.include_self = true;
			break;
		case OPT_MIN_SIZE:
			if (engine_opts__min_size(&a->eo, optarg, msg, sizeof(msg)))
				return usage_error("%s", msg);
			break;
		case OPT_WEIGHT:
			a->weight = true;
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
			/* =entry: no return probes (the bench's cost of one trap, apart from returns') */
			if (optarg && strcmp(optarg, "entry") != 0)
				return usage_error("--empty-probes: unknown '%s' (entry)", optarg);
			a->eo.empty_probes = true;
			a->eo.entry_only = optarg != NULL;
			break;
		case OPT_SCRATCH_TAKEN:
			a->eo.scratch_taken = true;
			break;
		case 'v':
			env_verbosity++;
			break;
		case 'h':
			cmd_report__usage(stdout);
			return cmd__close_stdout();
		case 'V':
			printf("asizeof-bpf %s\n", ASZ_VERSION);
			return cmd__close_stdout();
		case ':': /* the leading ':' in the option string makes getopt tell these apart */
		case '?':
			cmd__option_error(c, argv, optstring, msg, sizeof(msg));
			return usage_error("%s", msg);
		}
	}
	if (optind < argc) {
		/* getopt stops at "--"; anything left is the command */
		if (!cmd__options_ended(argv, last_arg))
			return usage_error("unexpected argument '%s' (a command goes after --)",
					   argv[optind]);
		a->cmd = &argv[optind];
	} else if (cmd__options_ended(argv, last_arg)) {
		return usage_error("%s", "no command after --");
	}
	/* with another format it would change nothing, silently */
	if (a->weight && a->fmt != REPORT_COLLAPSED)
		return usage_error("%s", "--weight applies to -f collapsed only");
	if (a->fmt == REPORT_PPROF && !a->output && isatty(1))
		return usage_error("%s", "-f pprof writes binary: give -o FILE");
	if (a->cmd && a->nr_pids)
		return usage_error("%s", "give either -p PID or -- COMMAND, not both");
	if ((a->cmd || a->nr_pids) && (a->eo.nr_comms || a->eo.cgroup))
		return usage_error("%s",
				   "--comm and --cgroup filter system-wide mode (no -p, no command)");
	/* no target: every process on the machine */
	a->eo.system_wide = !a->cmd && !a->nr_pids;
	a->eo.comms = a->comms;
	return -1;
}

static int emit_report(struct session *s, const struct report_args *a, FILE *out, bool final)
{
	struct snapshot *cur;
	int err;

	err = session__snapshot(s, final, &cur);
	if (err)
		return err;
	if (!final && report__final_only(a->fmt))
		return 0;
	snapshot__sort_procs(cur, a->ro.sort);
	/* -n 10 of 60,000 stacks: the 10 selected, not the 60,000 sorted, every interval */
	snapshot__rank_stacks(cur, a->ro.sort, report__stacks_ranked(a->fmt, &a->ro));
	if (env_verbosity) {
		struct engine_stats st;

		engine__stats(session__engine(s), &st);
		vlog("own cost: BPF %.3f s over %llu runs (%.0f ns each), maps %.1f MiB, %llu stacks\n",
		     st.run_ns / 1e9, (unsigned long long)st.run_cnt,
		     st.run_cnt ? (double)st.run_ns / st.run_cnt : 0.0, st.map_bytes / 1048576.0,
		     (unsigned long long)st.stacks);
		if (st.unwind.modules)
			vlog("unwind tables: %u modules (%u with tables, %u shared by build-id, %u "
			     "without unwind info, %u unreadable, %u did not fit, %u forgotten unused), "
			     "%llu of %llu rows (%.1f MiB), built in %.1f ms\n",
			     st.unwind.modules, st.unwind.tables, st.unwind.shared, st.unwind.no_cfi,
			     st.unwind.failed, st.unwind.full, st.unwind.evicted,
			     (unsigned long long)st.unwind.rows,
			     (unsigned long long)st.unwind.max_rows, st.unwind.bytes / 1048576.0,
			     st.unwind.build_ns / 1e6);
		if (cur->unwind.work.stacks) {
			const struct asz_unwind_stats *w = &cur->unwind.work;
			__u64 frames = w->frames_unwound + w->frames_checked;

			vlog("unwinder: %llu stacks, %llu frames: %llu unwound, %llu checked against "
			     "the last stack (%.0f%%); %llu pc rules searched in tables; "
			     "%llu reads of the user stack (%.2f a stack); %llu stacks the same as "
			     "the last one\n",
			     (unsigned long long)w->stacks, (unsigned long long)frames,
			     (unsigned long long)w->frames_unwound,
			     (unsigned long long)w->frames_checked,
			     frames ? 100.0 * w->frames_checked / frames : 0.0,
			     (unsigned long long)w->rule_searches,
			     (unsigned long long)w->stack_reads,
			     (double)w->stack_reads / w->stacks,
			     (unsigned long long)w->stacks_repeated);
		}
	}
	err = report__write(out, a->fmt, cur, session__symbolizer(s), &a->ro);
	if (!err && fflush(out))
		err = -errno;
	if (err)
		cmd__write_error("the report", err);
	/* folded stacks have no place for the drop counters either: they are said here */
	if (!err && a->fmt == REPORT_COLLAPSED) {
		char drops[SNAPSHOT_DROPS_TEXT];

		if (snapshot__drops_text(cur, drops, sizeof(drops)))
			elog("dropped: %s (drop counters in asizeof-bpf(8))\n", drops);
	}
	return err;
}

static int run_loop(struct session *s, const struct report_args *a, FILE *out, int sfd)
{
	__u64 start = util__mono_ns(), step = (__u64)(a->interval * 1e9), next_report, end = 0;
	bool stop = false, signaled = false, warned_slow = false;
	int err, status;

	next_report = start + step;
	if (a->duration > 0)
		end = start + (__u64)(a->duration * 1e9);
	while (!stop) {
		struct pollfd pfds[MAX_TARGETS + 1];
		__u64 now, wake = session__service(s);
		int n = 1;

		if (next_report < wake)
			wake = next_report;
		if (end && end < wake)
			wake = end;
		now = util__mono_ns();
		pfds[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
		n += session__pollfds(s, pfds + 1, MAX_TARGETS);
		if (poll(pfds, n, wake > now ? (int)((wake - now + 999999) / 1000000) : 0) < 0 &&
		    errno != EINTR)
			return -errno;
		if (pfds[0].revents & POLLIN) {
			struct signalfd_siginfo si;

			while (read(sfd, &si, sizeof(si)) == sizeof(si))
				if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM ||
				    si.ssi_signo == SIGHUP)
					signaled = stop = true;
		}
		session__service(s);
		if (session__all_exited(s))
			stop = true;
		now = util__mono_ns();
		if (end && now >= end)
			stop = true;
		if (!stop && now >= next_report) {
			__u64 due = next_report;
			int skipped = 0;

			err = emit_report(s, a, out, false);
			if (err)
				return err;
			now = util__mono_ns();
			while (next_report <= now) {
				next_report += step;
				skipped++;
			}
			if (skipped > 1 && !warned_slow) {
				elog("a report took %.1f s, longer than -i %g: %d skipped (fewer stacks with "
				     "-n, or a longer -i)\n",
				     (now - due) / 1e9, a->interval, skipped - 1);
				warned_slow = true;
			}
		}
	}
	session__stop_command(s);
	if (!signaled && session__launched(s) && session__command_status(s) == 128 + SIGTERM &&
	    end && util__mono_ns() >= end)
		vlog("duration reached: pid %d terminated\n", session__command_pid(s));
	err = emit_report(s, a, out, true);
	if (err)
		return err;
	status = session__command_status(s);
	return signaled || status < 0 ? 0 : status;
}

int cmd_report(int argc, char **argv)
{
	struct report_args a = {
		.interval = 5,
		.ro = {.top_n = 10, .sort = SNAP_SORT_GROWTH, .max_frames = 16},
		.fmt = REPORT_TEXT,
		.eo = ENGINE_DEFAULT_OPTS,
	};
	struct session_opts so;
	struct session *s = NULL;
	FILE *out = stdout, *guarded;
	sigset_t mask, old;
	int ret, err, sfd = -1;

	ret = parse_args(argc, argv, &a);
	if (ret >= 0)
		return ret;
	if (!a.output && cmd__stdout_closed()) {
		elog("standard output is closed: give -o FILE for the reports\n");
		return 1;
	}
	if (cmd__check_privileges())
		return 1;
	ret = 1;
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP); /* a closed terminal: the final report still goes to -o FILE */
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, &old);
	sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0) {
		elog("signalfd: %s\n", strerror(errno));
		goto cleanup;
	}
	if (cmd__guard_stderr()) {
		elog("out of memory\n");
		goto cleanup;
	}
	/* before anything is attached: a bad output path leaves nothing behind */
	if (a.output) {
		out = cmd__open_output(a.output, a.fmt == REPORT_PPROF);
		if (!out)
			goto cleanup;
	}
	so = (struct session_opts){.pids = a.pids, .nr_pids = a.nr_pids, .cmd = a.cmd, .eo = a.eo};
	so.cmd_sigmask = &old; /* the command's, as it would run without us */
	err = session__open(&s, &so);
	if (err)
		goto cleanup;
	if (a.eo.system_wide)
		elog("attached to all processes (%d now, %d %s links)%s\n", session__nr_targets(s),
		     engine__nr_links(session__engine(s)), engine__attach_mode(session__engine(s)),
		     a.output ? "" : "; Ctrl-C for the final report");
	else
		elog("attached to %d process%s (%d %s links)%s\n", session__nr_targets(s),
		     session__nr_targets(s) == 1 ? "" : "es",
		     engine__nr_links(session__engine(s)), engine__attach_mode(session__engine(s)),
		     a.output ? "" : "; Ctrl-C for the final report");
	/* folded stacks have no place for a note: the estimates are said here */
	if (a.fmt == REPORT_COLLAPSED && a.eo.sample_bytes)
		elog("sampled (--sample-bytes %llu): the collapsed stacks' weights are estimates\n",
		     (unsigned long long)a.eo.sample_bytes);
	if (a.fmt == REPORT_COLLAPSED && a.eo.min_size)
		elog("blocks under %llu bytes (--min-size) are not in the collapsed stacks\n",
		     (unsigned long long)a.eo.min_size);
	if (session__start(s))
		goto cleanup;
	/* traced, and a command released: only now may an existing FILE lose what it held */
	if (out != stdout && cmd__truncate_output(out, a.output))
		goto cleanup;
	guarded = cmd__guard_output(out);
	if (!guarded) {
		elog("out of memory\n");
		goto cleanup;
	}
	out = guarded;
	ret = run_loop(s, &a, out, sfd);
	if (ret < 0)
		ret = 1;
cleanup:
	session__close(s);
	if (out && out != stdout)
		fclose(out);
	if (sfd >= 0)
		close(sfd);
	/* the signals stay blocked: one arriving now would end the process by it, not by ret */
	return ret;
}
