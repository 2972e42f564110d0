// SPDX-License-Identifier: MIT
/*
 * The serve command: a daemon for fleet monitoring. The main thread drives the session (like
 * the report command) and, every interval, turns a snapshot into an immutable state (metrics
 * text, pprof model, history) that it publishes; libmicrohttpd's threads answer requests from
 * the published state only. SIGTERM or SIGINT: stop serving, detach, exit 0.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include "cmd.h"
#include "engine.h"
#include "engine_opts.h"
#include "log.h"
#include "serve_http.h"
#include "serve_metrics.h"
#include "serve_profile.h"
#include "serve_state.h"
#include "session.h"
#include "util.h"

#define MAX_TARGETS SESSION_MAX_TARGETS
#define DEFAULT_LISTEN "127.0.0.1:9464"

struct serve_args {
	pid_t pids[MAX_TARGETS];
	int nr_pids;
	double interval;
	int pid_labels;
	const char *listen;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	struct engine_opts eo;
	const char *comms[ENGINE_MAX_COMMS];
	char **cmd;
};

/* What the sampler keeps from one snapshot to the next. */
struct sampler {
	struct session *s;
	const struct serve_args *a;
	struct pprof_builder *builder;
	struct serve_metrics *metrics;
	struct serve_history *hist;
	struct serve_http *http;
};

enum {
	OPT_LISTEN = 256,
	OPT_PID_LABELS,
	OPT_COMM,
};

static const struct option long_opts[] = {
	{"listen", required_argument, NULL, OPT_LISTEN},
	{"pid", required_argument, NULL, 'p'},
	{"interval", required_argument, NULL, 'i'},
	{"pid-labels", required_argument, NULL, OPT_PID_LABELS},
	{"comm", required_argument, NULL, OPT_COMM},
	ENGINE_LONG_OPTS,
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{},
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: asizeof-bpf serve [OPTIONS] [--comm NAME ...]    (every process)\n"
		"       asizeof-bpf serve [OPTIONS] -p PID [-p PID ...]\n"
		"       asizeof-bpf serve [OPTIONS] -- COMMAND [ARGS...]\n"
		"\n"
		"Trace heap allocations and serve them over HTTP until SIGTERM:\n"
		"  GET /metrics            Prometheus metrics per process group (comm, exe)\n"
		"  GET /debug/pprof/heap   pprof heap profile (?pid=N, ?comm=NAME, ?seconds=N for\n"
		"                          the change over the last N seconds)\n"
		"  GET /healthz            \"ok\"\n"
		"Needs root, or CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH.\n"
		"\n"
		"Options:\n"
		"  --listen ADDR:PORT     address to serve on (default %s; [::1]:PORT for\n"
		"                         IPv6; port 0 picks a free one)\n"
		"  -p, --pid PID          trace this process (repeatable)\n"
		"  -- COMMAND [ARGS]      launch COMMAND and trace it; exit with its status\n"
		"  --comm NAME            system-wide: only processes named NAME (repeatable)\n"
		"  -i, --interval SECS    take a snapshot every SECS seconds (default 5)\n"
		"  --pid-labels N         also per-process series, with a pid label, for the N\n"
		"                         processes that grew most (default 0)\n"
		"  --max-depth N, --max-allocs N, --max-stacks N, --max-procs N,\n"
		"  --sample-bytes N,\n"
		"  --unwind MODE, --max-unwind-rows N,\n"
		"  --attach MODE          as for the report command (see asizeof-bpf --help)\n"
		"  -v, --verbose          more diagnostics on stderr\n"
		"  -h, --help             this help\n"
		"  -V, --version          version\n"
		"\n"
		"Exit status: 0 stopped by a signal or every target exited; with -- COMMAND, its\n"
		"status; 1 runtime error (e.g. the address is in use); 2 usage error.\n",
		DEFAULT_LISTEN);
}

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "asizeof-bpf: serve: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (see serve --help)\n");
	return 2;
}

/* ---------------------------------------------------------------- arguments */

/*
 * Parse ADDR:PORT (a dotted quad, or [IPv6]) into ss. Returns 0, -EINVAL, or -EADDRNOTAVAIL for
 * a multicast or broadcast address: a TCP listener binds to one, but no client reaches it.
 */
static int parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *sslen)
{
	char host[INET6_ADDRSTRLEN];
	const char *colon = strrchr(spec, ':'), *h = spec;
	size_t hl;
	__u64 port;

	if (!colon || util__parse_range(colon + 1, 0, 65535, &port))
		return -EINVAL;
	hl = colon - spec;
	if (hl >= 2 && spec[0] == '[' && spec[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	memset(ss, 0, sizeof(*ss));
	if (h == spec) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		/* inet_pton, unlike inet_aton, takes nothing but four decimal parts */
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			return -EINVAL;
		if (IN_MULTICAST(ntohl(s4->sin_addr.s_addr)) ||
		    s4->sin_addr.s_addr == htonl(INADDR_BROADCAST))
			return -EADDRNOTAVAIL;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		*sslen = sizeof(*s4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return -EINVAL;
		if (IN6_IS_ADDR_MULTICAST(&s6->sin6_addr))
			return -EADDRNOTAVAIL;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		*sslen = sizeof(*s6);
	}
	return 0;
}

/* Returns -1 to go on, or an exit status. */
static int parse_args(int argc, char **argv, struct serve_args *a)
{
	static const char optstring[] = "+:p:i:vhV";
	const char *last_arg = NULL;
	char msg[160];
	__u64 v;
	int c, err;

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
		case OPT_LISTEN:
			a->listen = optarg;
			break;
		case OPT_PID_LABELS:
			if (util__parse_range(optarg, 0, 10000, &v))
				return usage_error("--pid-labels: '%s' is not a count (0-10000)", optarg);
			a->pid_labels = v;
			break;
		case OPT_COMM:
			if (engine_opts__add_comm(&a->eo, a->comms, optarg, msg, sizeof(msg)))
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
	err = parse_listen(a->listen, &a->addr, &a->addr_len);
	if (err == -EADDRNOTAVAIL)
		return usage_error("--listen: '%s' is a multicast or broadcast address (no client "
				   "can connect to it)", a->listen);
	if (err)
		return usage_error("--listen: '%s' is not ADDR:PORT (e.g. 127.0.0.1:9464, "
				   "[::1]:9464)", a->listen);
	a->eo.system_wide = !a->cmd && !a->nr_pids;
	a->eo.comms = a->comms;
	return -1;
}

/* ---------------------------------------------------------------- the listening socket */

/* "ADDR:PORT" as a URL authority ("[::1]:9464" for IPv6). */
static void format_addr(const struct sockaddr_storage *ss, char *buf, size_t size)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		snprintf(buf, size, "[%s]:%u", host, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const void *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		snprintf(buf, size, "%s:%u", host, ntohs(s4->sin_port));
	}
}

/* Bind and listen before anything is attached: a busy port leaves nothing behind. */
static int open_listener(const struct serve_args *a, char *where, size_t size)
{
	struct sockaddr_storage ss = a->addr;
	socklen_t len = a->addr_len;
	int fd, one = 1, err;

	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* a restart must not wait for old connections in TIME_WAIT; a live listener still wins */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 64)) {
		err = -errno;
		close(fd);
		return err;
	}
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
		format_addr(&ss, where, size);
	return fd;
}

/* ---------------------------------------------------------------- sampling */

/* Take a snapshot and make it what requests see (st_out: the first state, before serving). */
static int sample(struct sampler *sp, bool final, struct serve_state **st_out)
{
	struct pprof_model *model = NULL;
	struct serve_state *st = NULL;
	struct snapshot *snap;
	char *text = NULL;
	size_t len = 0;
	int err;

	err = session__snapshot(sp->s, final, &snap);
	if (err)
		goto fail;
	err = serve_metrics__update(sp->metrics, snap, sp->a->pid_labels, &text, &len);
	if (err)
		goto fail;
	err = pprof_builder__build(sp->builder, snap, session__symbolizer(sp->s), &model);
	if (err) {
		free(text);
		goto fail;
	}
	err = serve_state__new(sp->hist, snap, model, text, len, &st);
	if (err)
		goto fail;
	if (st_out)
		*st_out = st;
	else
		serve_http__publish(sp->http, st);
	return 0;
fail:
	elog("cannot take a snapshot: %s\n", strerror(-err));
	return err;
}

/* Returns an exit status. */
static int run_loop(struct sampler *sp, int sfd)
{
	__u64 step = (__u64)(sp->a->interval * 1e9), next = util__mono_ns() + step;
	bool signaled = false;
	int status;

	for (;;) {
		struct pollfd pfds[MAX_TARGETS + 1];
		__u64 now, wake = session__service(sp->s);
		int n = 1;

		if (next < wake)
			wake = next;
		now = util__mono_ns();
		pfds[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
		n += session__pollfds(sp->s, pfds + 1, MAX_TARGETS);
		if (poll(pfds, n, wake > now ? (int)((wake - now + 999999) / 1000000) : 0) < 0 &&
		    errno != EINTR) {
			elog("poll: %s\n", strerror(errno));
			return 1;
		}
		if (pfds[0].revents & POLLIN) {
			struct signalfd_siginfo si;

			while (read(sfd, &si, sizeof(si)) == sizeof(si))
				if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM ||
				    si.ssi_signo == SIGHUP)
					signaled = true;
		}
		if (signaled)
			return 0;
		session__service(sp->s);
		if (session__all_exited(sp->s))
			break;
		now = util__mono_ns();
		if (now >= next) {
			if (sample(sp, false, NULL))
				return 1;
			while (next <= now)
				next += step;
		}
	}
	vlog("every target exited\n");
	/* reaps a launched command if the loop saw it exit before waitpid did */
	session__stop_command(sp->s);
	status = session__command_status(sp->s);
	return status < 0 ? 0 : status;
}

int cmd_serve(int argc, char **argv)
{
	struct serve_args a = {
		.interval = 5,
		.listen = DEFAULT_LISTEN,
		.eo = ENGINE_DEFAULT_OPTS,
	};
	struct sampler sp = {.a = &a};
	struct serve_state *first = NULL;
	struct session_opts so;
	char where[INET6_ADDRSTRLEN + 16] = "?";
	sigset_t mask, old;
	int ret, err, sfd = -1, lfd = -1;

	ret = parse_args(argc, argv, &a);
	if (ret >= 0)
		return ret;
	/* root, or the capabilities the systemd unit grants instead (tools/asizeof-bpf.service) */
	if (cmd__check_privileges())
		return 1;
	lfd = open_listener(&a, where, sizeof(where));
	if (lfd < 0) {
		elog("cannot listen on %s: %s\n", a.listen, strerror(-lfd));
		return 1;
	}
	ret = 1;
	signal(SIGPIPE, SIG_IGN);
	/* blocked before the HTTP threads exist, so that they inherit the mask */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
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
	sp.builder = pprof_builder__new();
	if (sp.builder)
		pprof_builder__set_exited_held(sp.builder, false);
	sp.metrics = serve_metrics__new();
	sp.hist = serve_history__new();
	if (!sp.builder || !sp.metrics || !sp.hist) {
		elog("out of memory\n");
		goto cleanup;
	}
	so = (struct session_opts){.pids = a.pids, .nr_pids = a.nr_pids, .cmd = a.cmd, .eo = a.eo};
	so.cmd_sigmask = &old; /* the command's, as it would run without us */
	err = session__open(&sp.s, &so);
	if (err)
		goto cleanup;
	if (a.eo.system_wide)
		elog("attached to all processes (%d now, %d %s links)\n", session__nr_targets(sp.s),
		     engine__nr_links(session__engine(sp.s)),
		     engine__attach_mode(session__engine(sp.s)));
	else
		elog("attached to %d process%s (%d %s links)\n", session__nr_targets(sp.s),
		     session__nr_targets(sp.s) == 1 ? "" : "es",
		     engine__nr_links(session__engine(sp.s)),
		     engine__attach_mode(session__engine(sp.s)));
	if (session__start(sp.s))
		goto cleanup;
	/* a state exists before the first request can arrive */
	if (sample(&sp, false, &first))
		goto cleanup;
	err = serve_http__start(&sp.http, lfd, first);
	lfd = -1;
	if (err) {
		elog("cannot start the HTTP server on %s\n", where);
		goto cleanup;
	}
	elog("serving on http://%s\n", where);
	ret = run_loop(&sp, sfd);
cleanup:
	/* stop answering first: requests only read states, but nothing should outlive this */
	serve_http__stop(sp.http);
	if (sp.s)
		session__stop_command(sp.s);
	session__close(sp.s);
	serve_history__free(sp.hist);
	serve_metrics__free(sp.metrics);
	pprof_builder__free(sp.builder);
	if (lfd >= 0)
		close(lfd);
	if (sfd >= 0)
		close(sfd);
	/* the signals stay blocked: one arriving now would end the process by it, not by ret */
	return ret;
}
