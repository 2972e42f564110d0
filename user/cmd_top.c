// SPDX-License-Identifier: MIT
/*
 * The top command: a live, top-style view of which processes hold heap bytes and which grow.
 * This file is the sampler: options, the session, signals and the terminal's input, a
 * snapshot every interval and the profiler's own cost. top_view.c draws (and is the only code
 * that touches curses); it receives copies of the snapshots and never reads BPF maps.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <langinfo.h>
#include <limits.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include "cmd.h"
#include "engine.h"
#include "engine_opts.h"
#include "log.h"
#include "session.h"
#include "top_view.h"
#include "util.h"

#define MAX_TARGETS SESSION_MAX_TARGETS
/* Batch: process rows per screen unless -n says otherwise. */
#define BATCH_ROWS 20
/* Polls of a readable stdin that yield no key before it counts as closed. */
#define IDLE_INPUT_LIMIT 8

struct top_args {
	pid_t pids[MAX_TARGETS];
	int nr_pids;
	double interval;
	double duration; /* 0: until q, a signal, or (batch) the targets' end */
	int rows;	 /* -1: the default */
	enum top_sort sort;
	bool batch;
	bool exact_bytes;
	struct engine_opts eo;
	const char *comms[ENGINE_MAX_COMMS];
	char **cmd;
};

enum {
	OPT_BYTES = 256,
	OPT_COMM,
	OPT_MIN_SIZE,
};

static const struct option long_opts[] = {
	{"pid", required_argument, NULL, 'p'},
	{"interval", required_argument, NULL, 'i'},
	{"duration", required_argument, NULL, 'd'},
	{"rows", required_argument, NULL, 'n'},
	{"sort", required_argument, NULL, 's'},
	{"batch", no_argument, NULL, 'b'},
	{"bytes", no_argument, NULL, OPT_BYTES},
	{"comm", required_argument, NULL, OPT_COMM},
	{"min-size", required_argument, NULL, OPT_MIN_SIZE},
	ENGINE_LONG_OPTS,
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{},
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: asizeof-bpf top [OPTIONS] -p PID [-p PID ...]\n"
		"       asizeof-bpf top [OPTIONS] -- COMMAND [ARGS...]\n"
		"       asizeof-bpf top [OPTIONS] [--comm NAME ...]     (every process)\n"
		"\n"
		"A live view of which processes hold heap bytes and which grow, refreshed every\n"
		"interval without pausing them, with the call stacks behind each. Needs root.\n"
		"\n"
		"Targets:\n"
		"  -p, --pid PID          trace this process (repeatable)\n"
		"  -- COMMAND [ARGS]      launch COMMAND and trace it from its first allocation\n"
		"  (neither)              every process on the machine but this one\n"
		"  --comm NAME            system-wide: only processes named NAME (repeatable)\n"
		"Display:\n"
		"  -i, --interval SECS    refresh every SECS seconds (default 1)\n"
		"  -d, --duration SECS    quit after SECS seconds\n"
		"  -n, --rows N           process rows at most (default: what fits the terminal;\n"
		"                         batch: 20; 0 = all)\n"
		"  -s, --sort KEY         growth (default, over the last interval), live, allocs\n"
		"                         (allocations/s) or total (growth since start)\n"
		"  -b, --batch            plain text, one screen per interval, for scripts and logs\n"
		"                         (also when standard output is not a terminal)\n"
		"  --bytes                sizes as exact byte counts instead of KiB, MiB, ...\n"
		"Limits (as in the report):\n"
		"  --min-size BYTES, --sample-bytes N, --max-depth N, --max-allocs N,\n"
		"  --max-stacks N, --max-procs N, --attach auto|multi|perf,\n"
		"  --unwind auto|dwarf|fp, --max-unwind-rows N\n"
		"Other:\n"
		"  -v, --verbose          diagnostics (shown in the status line, printed at exit);\n"
		"                         adds the BPF programs' run time to the header\n"
		"  -h, --help             this help\n"
		"  -V, --version          version\n"
		"\n"
		"Keys: g l a t sort, Up/Down (j/k) PgUp/PgDn Home/End select, Enter (Right) call\n"
		"stacks (Enter, Space, Right again: frames), Esc (Backspace, Left) back or clear the\n"
		"filter, / filter by name, p freeze the display, Ctrl-L repaint, h (?) help, q quit.\n"
		"Exit status: 0 done; with -- COMMAND, its status once it has ended; 1 runtime\n"
		"error; 2 usage error.\n");
}

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "asizeof-bpf: top: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (see top --help)\n");
	return 2;
}

/* Returns -1 to go on, or an exit status. */
static int parse_args(int argc, char **argv, struct top_args *a)
{
	static const char optstring[] = "+:p:i:d:n:s:bvhV";
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
			if (util__parse_double(optarg, &a->interval) || a->interval < 0.1 ||
			    a->interval > 86400)
				return usage_error("-i: '%s' is not an interval in seconds (0.1-86400)",
						   optarg);
			break;
		case 'd':
			if (cmd__parse_duration(optarg, &a->duration))
				return usage_error(CMD_DURATION_USAGE, optarg);
			break;
		case 'n':
			if (util__parse_range(optarg, 0, 100000, &v))
				return usage_error("-n: '%s' is not a number of rows (0-100000)", optarg);
			a->rows = (int)v;
			break;
		case 's':
			if (top__parse_sort(optarg, &a->sort))
				return usage_error("-s: unknown key '%s' (growth, live, allocs, total)",
						   optarg);
			break;
		case 'b':
			a->batch = true;
			break;
		case OPT_BYTES:
			a->exact_bytes = true;
			break;
		case OPT_COMM:
			if (engine_opts__add_comm(&a->eo, a->comms, optarg, msg, sizeof(msg)))
				return usage_error("%s", msg);
			break;
		case OPT_MIN_SIZE:
			if (engine_opts__min_size(&a->eo, optarg, msg, sizeof(msg)))
				return usage_error("%s", msg);
			break;
		case 'v':
			env_verbosity++;
			break;
		case 'h':
			usage(stdout);
			return cmd__close_stdout();
		case 'V':
			printf("asizeof-bpf %s\n", ASZ_VERSION);
			return cmd__close_stdout();
		case ':':
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
	if (a->cmd && a->nr_pids)
		return usage_error("%s", "give either -p PID or -- COMMAND, not both");
	if ((a->cmd || a->nr_pids) && a->eo.nr_comms)
		return usage_error("%s", "--comm filters system-wide mode (no -p, no command)");
	a->eo.system_wide = !a->cmd && !a->nr_pids;
	a->eo.comms = a->comms;
	return -1;
}

/*
 * While curses owns the terminal, diagnostics written to stderr would scribble over the
 * screen: they go to a memory file instead, the latest line is shown in the status line, and
 * all of them are printed on the real stderr once the terminal is restored.
 */
struct errcap {
	int fd;	   /* the memory file; -1 when not capturing */
	int saved; /* the real stderr */
	off_t seen;
};

static void errcap_start(struct errcap *c)
{
	c->fd = memfd_create("asizeof-bpf-stderr", MFD_CLOEXEC);
	c->saved = c->fd >= 0 ? fcntl(2, F_DUPFD_CLOEXEC, 3) : -1;
	c->seen = 0;
	if (c->fd < 0 || c->saved < 0 || dup2(c->fd, 2) < 0) {
		/* not worth failing for: diagnostics then land on the screen until redrawn */
		if (c->fd >= 0)
			close(c->fd);
		if (c->saved >= 0)
			close(c->saved);
		c->fd = c->saved = -1;
	}
}

/* The last complete line written since the last call, into msg; false if none. */
static bool errcap_poll(struct errcap *c, char *msg, size_t size)
{
	char buf[4096];
	bool found = false;
	ssize_t n;

	if (c->fd < 0)
		return false;
	while ((n = pread(c->fd, buf, sizeof(buf) - 1, c->seen)) > 0) {
		char *end, *start;

		buf[n] = '\0';
		end = strrchr(buf, '\n');
		if (!end)
			break; /* a line being written: next time */
		*end = '\0';
		c->seen += end - buf + 1;
		start = strrchr(buf, '\n');
		start = start ? start + 1 : buf;
		/* cut to the status line's room */
		n = (ssize_t)strlen(start);
		if ((size_t)n >= size)
			n = (ssize_t)size - 1;
		memcpy(msg, start, n);
		msg[n] = '\0';
		found = true;
	}
	return found;
}

static void errcap_stop(struct errcap *c)
{
	char buf[4096];
	off_t off = 0;
	ssize_t n;

	if (c->fd < 0)
		return;
	dup2(c->saved, 2);
	while ((n = pread(c->fd, buf, sizeof(buf), off)) > 0) {
		if (write(2, buf, n) != n)
			break;
		off += n;
	}
	close(c->saved);
	close(c->fd);
	c->fd = c->saved = -1;
}

/* The profiler's own CPU time and its BPF programs' run time, per interval. */
struct meter {
	__u64 wall_ns;
	__u64 cpu_ns;
	__u64 bpf_ns;
};

static __u64 own_cpu_ns(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		return 0;
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
}

static void meter_read(struct session *s, struct meter *m, struct top_stats *st)
{
	struct engine_stats es;
	struct meter now = {util__mono_ns(), own_cpu_ns(), 0};
	double dt;

	engine__stats(session__engine(s), &es);
	now.bpf_ns = es.run_ns;
	dt = (now.wall_ns - m->wall_ns) / 1e9;
	st->cpu_pct = dt > 0 ? (now.cpu_ns - m->cpu_ns) / 1e9 / dt * 100 : 0;
	st->map_bytes = es.map_bytes;
	/* run times are only counted with -v (the accounting has a cost) */
	st->bpf_ms_per_s = env_verbosity && dt > 0 ? (now.bpf_ns - m->bpf_ns) / 1e6 / dt : -1;
	*m = now;
}

static int sample(struct session *s, struct top_view *v, struct meter *mt,
		  const struct top_args *a, bool final)
{
	struct top_stats st = {.interval_s = a->interval, .system_wide = a->eo.system_wide};
	struct snapshot *snap;
	int err;

	err = session__snapshot(s, final, &snap);
	if (err)
		return err;
	meter_read(s, mt, &st);
	st.nr_targets = a->eo.system_wide ? session__nr_targets(s) : -1;
	st.cmd_status = session__command_status(s);
	err = top_view__update(v, snap, &st);
	if (err)
		elog("out of memory keeping the snapshot\n");
	return err;
}

/*
 * A launched command inherits our stdin. When that is the view's keyboard, the command and the
 * view would split the keys between them (q pressed twice, three times...): the command gets
 * /dev/null instead, and the view reads the keys from /dev/tty, as when stdin is redirected.
 * Without a controlling terminal to open, things stay as they are.
 */
static void command_stdin_devnull(void)
{
	int tty, null;

	if (!isatty(0))
		return;
	tty = open("/dev/tty", O_RDONLY | O_CLOEXEC);
	if (tty < 0)
		return;
	close(tty);
	null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null < 0)
		return;
	if (dup2(null, 0) < 0)
		elog("cannot give the command /dev/null as its stdin: %s\n", strerror(errno));
	close(null);
}

static int print_screen(struct top_view *v, FILE *out)
{
	int err = top_view__print(v, out);

	if (err)
		cmd__write_error("the screen", err);
	return err;
}

struct loop_state {
	struct session *s;
	struct top_view *v;
	const struct top_args *a;
	int sfd;
	bool batch;
	FILE *out; /* batch: the screens' stream */
	struct errcap *ec;
};

static int run_loop(struct loop_state *ls)
{
	const struct top_args *a = ls->a;
	struct session *s = ls->s;
	struct top_view *v = ls->v;
	__u64 start = util__mono_ns(), step = (__u64)(a->interval * 1e9), next, end = 0;
	bool stop = false, signaled = false, quit = false, sampling = true;
	int keys = ls->batch ? -1 : top_view__term_input_fd(ls->v);
	bool use_stdin = keys >= 0;
	struct meter mt = {start, own_cpu_ns(), 0};
	int err, status, before, idle = 0;

	next = start + step;
	if (a->duration > 0)
		end = start + (__u64)(a->duration * 1e9);
	if (!ls->batch)
		top_view__term_draw(v);
	while (!stop) {
		struct pollfd pfds[MAX_TARGETS + 3];
		__u64 now, wake = sampling ? session__service(s) : UINT64_MAX;
		bool redraw = false, resized = false;
		int n = 0, in = -1, screen = -1, timeout;
		char msg[256];

		if (sampling && next < wake)
			wake = next;
		if (end && end < wake)
			wake = end;
		now = util__mono_ns();
		timeout = wake == UINT64_MAX ? -1 :
			  wake > now ? (int)((wake - now + 999999) / 1000000) : 0;
		pfds[n++] = (struct pollfd){.fd = ls->sfd, .events = POLLIN};
		if (use_stdin) {
			in = n;
			pfds[n++] = (struct pollfd){.fd = keys, .events = POLLIN};
		}
		if (!ls->batch) {
			/* a hung-up terminal, seen even with no keyboard and no SIGHUP (no ctty) */
			screen = n;
			pfds[n++] = (struct pollfd){.fd = 1, .events = 0};
		}
		if (sampling)
			n += session__pollfds(s, pfds + n, MAX_TARGETS);
		if (poll(pfds, n, timeout) < 0 && errno != EINTR) {
			err = -errno;
			elog("poll: %s\n", strerror(-err));
			return err;
		}
		if (pfds[0].revents & POLLIN) {
			struct signalfd_siginfo si;

			while (read(ls->sfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGWINCH)
					resized = true;
				else if (si.ssi_signo != SIGCHLD)
					signaled = stop = true;
			}
		}
		if ((in >= 0 && pfds[in].revents & (POLLHUP | POLLERR | POLLNVAL)) ||
		    (screen >= 0 && pfds[screen].revents & (POLLHUP | POLLERR))) {
			/* the terminal is gone: nobody to show anything to */
			stop = true;
		} else if (in >= 0 && pfds[in].revents & POLLIN) {
			enum top_action act = top_view__term_input(v);

			if (act == TOP_ACT_QUIT)
				quit = stop = true;
			redraw |= act == TOP_ACT_REDRAW;
			/* readable but no key, again and again: the input has ended */
			idle = top_view__term_input_idle(v) ? idle + 1 : 0;
			if (idle >= IDLE_INPUT_LIMIT)
				use_stdin = false;
		}
		if (stop)
			break;
		if (sampling)
			session__service(s);
		now = util__mono_ns();
		if (end && now >= end)
			break;
		if (sampling && session__all_exited(s)) {
			if (ls->batch)
				break;
			/* the last state stays on screen, marked exited, until q */
			err = sample(s, v, &mt, a, true);
			if (err)
				return err;
			sampling = false;
			redraw = true;
			/* no keyboard (or its input ended): no q will ever come */
			if (!use_stdin)
				break;
		}
		if (sampling && now >= next) {
			err = sample(s, v, &mt, a, false);
			if (err)
				return err;
			while (next <= now)
				next += step;
			if (ls->batch) {
				err = print_screen(v, ls->out);
				if (err)
					return err;
			}
			redraw = true;
		}
		if (!ls->batch && errcap_poll(ls->ec, msg, sizeof(msg))) {
			top_view__set_message(v, msg);
			redraw = true;
		}
		if (resized && !ls->batch) {
			top_view__term_resize(v);
			redraw = true;
		}
		if (redraw && !ls->batch)
			top_view__term_draw(v);
	}
	session__service(s); /* reaps a command that exited by itself */
	before = session__command_status(s);
	/* the shell back before a command is stopped: that may take it a while (up to 2 s) */
	if (!ls->batch)
		top_view__term_close(v);
	session__stop_command(s);
	if (!signaled && end && session__launched(s) && before < 0 &&
	    session__command_status(s) == 128 + SIGTERM)
		vlog("duration reached: pid %d terminated\n", session__command_pid(s));
	if (ls->batch) {
		err = sample(s, v, &mt, a, true);
		if (!err)
			err = print_screen(v, ls->out);
		if (err)
			return err;
	}
	/* q or a signal ends the command: its status then is ours, not the command's */
	if (signaled)
		return 0;
	if (quit)
		return before < 0 ? 0 : before;
	status = session__command_status(s);
	return status < 0 ? 0 : status;
}

int cmd_top(int argc, char **argv)
{
	struct top_args a = {
		.interval = 1,
		.rows = -1,
		.sort = TOP_SORT_GROWTH,
		.eo = ENGINE_DEFAULT_OPTS,
	};
	struct errcap ec = {.fd = -1, .saved = -1};
	struct top_view_opts vo = {0};
	const char *no_color = getenv("NO_COLOR");
	struct session_opts so;
	struct session *s = NULL;
	struct top_view *v = NULL;
	struct loop_state ls;
	sigset_t mask, old;
	FILE *out = NULL;
	int ret, err, sfd = -1;

	ret = parse_args(argc, argv, &a);
	if (ret >= 0)
		return ret;
	if (cmd__stdout_closed()) {
		elog("standard output is closed: nowhere to show the view\n");
		return 1;
	}
	if (cmd__check_privileges())
		return 1;
	ret = 1;
	a.batch = a.batch || !isatty(1);
	/* only the character type: numbers keep their '.' whatever the locale */
	setlocale(LC_CTYPE, "");
	vo.batch = a.batch;
	vo.utf8 = !strcmp(nl_langinfo(CODESET), "UTF-8");
	vo.color = !no_color || !no_color[0];
	vo.exact_bytes = a.exact_bytes;
	vo.max_rows = a.rows >= 0 ? a.rows : a.batch ? BATCH_ROWS : 0;
	vo.sort = a.sort;
	/* the command's output goes to our terminal: each refresh paints over it */
	vo.repaint_each_update = a.cmd && !a.batch;
	/* before anything is attached: a terminal we cannot draw on leaves nothing behind */
	if (!a.batch && top_view__term_check())
		return 1;
	if (!a.batch && a.cmd)
		command_stdin_devnull();
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	/* Ctrl-\ too: by its default action it left the terminal in the view's modes */
	sigaddset(&mask, SIGQUIT);
	sigaddset(&mask, SIGWINCH);
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
	so = (struct session_opts){.pids = a.pids, .nr_pids = a.nr_pids, .cmd = a.cmd, .eo = a.eo};
	so.cmd_sigmask = &old; /* the command's, as it would run without us */
	err = session__open(&s, &so);
	if (err)
		goto cleanup;
	vo.sym = session__symbolizer(s);
	v = top_view__new(&vo);
	if (!v) {
		elog("out of memory\n");
		goto cleanup;
	}
	if (a.eo.system_wide)
		elog("attached to all processes (%d now, %d %s links)%s\n", session__nr_targets(s),
		     engine__nr_links(session__engine(s)), engine__attach_mode(session__engine(s)),
		     a.batch ? "" : "; q quits");
	else
		elog("attached to %d process%s (%d %s links)%s\n", session__nr_targets(s),
		     session__nr_targets(s) == 1 ? "" : "es", engine__nr_links(session__engine(s)),
		     engine__attach_mode(session__engine(s)), a.batch ? "" : "; q quits");
	if (!a.batch) {
		if (top_view__term_open(v))
			goto cleanup;
		errcap_start(&ec);
	}
	if (session__start(s))
		goto cleanup;
	if (a.batch) {
		out = cmd__guard_output(stdout);
		if (!out) {
			elog("out of memory\n");
			goto cleanup;
		}
	}
	ls = (struct loop_state){s, v, &a, sfd, a.batch, out, &ec};
	ret = run_loop(&ls);
	if (ret < 0)
		ret = 1; /* logged where it happened */
cleanup:
	/* the terminal first: the shell is back at once, detaching takes a few milliseconds */
	if (v)
		top_view__term_close(v);
	errcap_stop(&ec);
	session__close(s);
	top_view__free(v);
	if (out)
		fclose(out);
	if (sfd >= 0)
		close(sfd);
	/* the signals stay blocked: one arriving now would end the process by it, not by ret */
	return ret;
}
