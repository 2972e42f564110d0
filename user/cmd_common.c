// SPDX-License-Identifier: MIT
/* What the subcommands share before their sessions start: privileges, the output file. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/capability.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include "cmd.h"
#include "log.h"
#include "util.h"

static bool stdout_closed;

void cmd__open_std_fds(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		int nfd;

		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		if (fd == 1)
			stdout_closed = true;
		/* the lowest free descriptor: fd itself, those below it are open */
		nfd = open("/dev/null", fd ? O_WRONLY : O_RDONLY);
		if (nfd > fd) {
			dup2(nfd, fd);
			close(nfd);
		}
	}
}

bool cmd__stdout_closed(void)
{
	return stdout_closed;
}

/*
 * CAP_BPF and CAP_PERFMON load the programs and attach the uprobes; CAP_SYS_PTRACE and
 * CAP_DAC_READ_SEARCH read other users' /proc/PID/{maps,exe,root} and mapped files. Root has
 * them unless they were dropped (a container, setpriv): then libbpf's failures would be a page
 * of messages instead of one line.
 */
static bool has_cap(const struct __user_cap_data_struct *data, int cap)
{
	return data[cap / 32].effective & (1u << (cap % 32));
}

int cmd__check_privileges(void)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2] = {};
	/* each capability needed, or the older, wider one the kernel takes instead */
	static const struct {
		int cap, or_cap;
		const char *name;
	} need[] = {
		{CAP_BPF, CAP_SYS_ADMIN, "CAP_BPF (or CAP_SYS_ADMIN)"},
		{CAP_PERFMON, CAP_SYS_ADMIN, "CAP_PERFMON (or CAP_SYS_ADMIN)"},
		{CAP_SYS_PTRACE, CAP_SYS_PTRACE, "CAP_SYS_PTRACE"},
		{CAP_DAC_READ_SEARCH, CAP_DAC_OVERRIDE, "CAP_DAC_READ_SEARCH (or CAP_DAC_OVERRIDE)"},
	};

	if (syscall(SYS_capget, &hdr, data) == 0) {
		const char *missing = NULL;

		for (size_t i = 0; i < sizeof(need) / sizeof(need[0]) && !missing; i++)
			if (!has_cap(data, need[i].cap) && !has_cap(data, need[i].or_cap))
				missing = need[i].name;
		if (!missing)
			return 0;
		if (geteuid() == 0) {
			elog("must run as root with its capabilities: %s is not in this process's "
			     "effective set\n",
			     missing);
			return 1;
		}
	}
	elog("must run as root, or with CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE and "
	     "CAP_DAC_READ_SEARCH\n");
	return 1;
}

FILE *cmd__open_output(const char *path, bool binary)
{
	struct stat st;
	FILE *f;
	int fd;

	/*
	 * A FIFO nobody reads would block the open (with the signals that end a run blocked):
	 * refused instead, as a clear error.
	 */
	if (stat(path, &st) == 0 && S_ISFIFO(st.st_mode)) {
		fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0) {
			elog("%s: %s\n", util__name(path),
			     errno == ENXIO ? "a FIFO with no reader" : strerror(errno));
			return NULL;
		}
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		f = fdopen(fd, "w");
		if (!f)
			close(fd);
	} else {
		fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
		f = fd >= 0 ? fdopen(fd, "w") : NULL;
		if (!f && fd >= 0)
			close(fd);
	}
	if (!f) {
		elog("%s: %s\n", util__name(path), strerror(errno));
		return NULL;
	}
	if (binary && isatty(fileno(f))) {
		elog("%s: a terminal: binary output goes to a file or a pipe\n", util__name(path));
		fclose(f);
		return NULL;
	}
	return f;
}

int cmd__truncate_output(FILE *f, const char *path)
{
	struct stat st;
	int err;

	/* devices and pipes have nothing to truncate (and some refuse to) */
	if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode) || ftruncate(fileno(f), 0) == 0)
		return 0;
	err = -errno;
	elog("%s: %s\n", util__name(path), strerror(-err));
	return err;
}

int cmd__close_stdout(void)
{
	int err = 0;

	/* printf's errors show only here: exiting would flush and lose them */
	errno = 0;
	if (stdout_closed) /* /dev/null took everything */
		err = -EBADF;
	else if (fflush(stdout) || ferror(stdout))
		err = util__write_error(stdout);
	if (fclose(stdout) && !err)
		err = errno ? -errno : -EIO;
	if (!err)
		return 0;
	elog("cannot write to standard output: %s\n", strerror(-err));
	return 1;
}

int cmd__parse_duration(const char *s, double *out)
{
	double d;

	if (util__parse_double(s, &d) || d <= 0 || d > 31536000.0)
		return -EINVAL;
	*out = d;
	return 0;
}

/*
 * The signals that end a run are blocked and read from a signalfd, so a write to a reader that
 * stopped reading (a full pipe, a FIFO, a terminal held by Ctrl-S) would block with them
 * pending, for ever. Writes wait for the output, looking every 100 ms whether one of them is
 * pending (SIGCHLD, SIGWINCH are not: they do not end a run); then they fail (ECANCELED).
 * Into a pipe as much as it has room for goes at once (4 KiB writes, each after a poll, made a
 * 62 MB report into a pipe ~12% slower: 1.05 s instead of 0.93).
 */
struct guarded_out {
	FILE *f; /* the stream whose descriptor is written; closed with the guard (not stdout) */
	int fd;
	bool file, pipe; /* a regular file (never waits for a reader); a pipe or FIFO */
};

/*
 * Set once a write gave up on a stalled reader for such a signal: the run is ending, and the
 * loop reads the signal, so the writes of its shutdown (the final report, diagnostics into a
 * stalled stderr) would wait for a second one. They give up at once instead.
 */
static bool gave_up_on_signal;

static bool ending_signal_pending(void)
{
	if (!gave_up_on_signal)
		gave_up_on_signal = util__ending_signal_pending();
	return gave_up_on_signal;
}

/* What a write may take without blocking once poll said POLLOUT. */
static size_t guarded_room(const struct guarded_out *g, size_t want)
{
	int size, used;
	size_t room = PIPE_BUF; /* POLLOUT: a pipe takes that much */

	if (g->file)
		return want;
	/* a partly read page cannot take new bytes: two pages of slack */
	if (g->pipe && (size = fcntl(g->fd, F_GETPIPE_SZ)) > 0 &&
	    ioctl(g->fd, FIONREAD, &used) == 0 && size - used > 2 * 4096 + PIPE_BUF)
		room = size - used - 2 * 4096;
	return want < room ? want : room;
}

static ssize_t guarded_write(void *cookie, const char *buf, size_t len)
{
	struct guarded_out *g = cookie;
	size_t done = 0;

	while (done < len) {
		struct pollfd p = {.fd = g->fd, .events = POLLOUT};
		ssize_t n;
		int r = g->file ? 1 : poll(&p, 1, 100);

		if (r < 0 && errno != EINTR)
			return done ? (ssize_t)done : -1;
		if (r <= 0 ||
		    (!g->file && !(p.revents & (POLLOUT | POLLERR | POLLHUP | POLLNVAL)))) {
			if (ending_signal_pending()) {
				errno = ECANCELED;
				return done ? (ssize_t)done : -1;
			}
			continue;
		}
		n = write(g->fd, buf + done, guarded_room(g, len - done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return done ? (ssize_t)done : -1;
		}
		done += n;
	}
	return done;
}

static int guarded_close(void *cookie)
{
	struct guarded_out *g = cookie;
	int err = 0;

	if (g->f && g->f != stdout)
		err = fclose(g->f);
	free(g);
	return err;
}

/* A guarded stream writing fd; f (NULL: none) is closed with it. */
static FILE *guard_fd(FILE *f, int fd)
{
	cookie_io_functions_t io = {.write = guarded_write, .close = guarded_close};
	struct guarded_out *g = calloc(1, sizeof(*g));
	struct stat st;
	FILE *out;

	if (!g)
		return NULL;
	*g = (struct guarded_out){.f = f, .fd = fd};
	if (fstat(g->fd, &st) == 0) {
		g->file = S_ISREG(st.st_mode);
		g->pipe = S_ISFIFO(st.st_mode);
	}
	out = fopencookie(g, "w", io);
	if (!out)
		free(g);
	return out;
}

FILE *cmd__guard_output(FILE *f)
{
	FILE *out = guard_fd(f, fileno(f));

	if (!out)
		return NULL;
	/* big reports: fewer, larger writes; one thread writes it: no lock per character */
	setvbuf(out, NULL, _IOFBF, 65536);
	__fsetlocking(out, FSETLOCKING_BYCALLER);
	return out;
}

int cmd__guard_stderr(void)
{
	FILE *err = guard_fd(NULL, STDERR_FILENO);

	if (!err)
		return -ENOMEM;
	/* unbuffered as stderr is (each fprintf is one write); the HTTP threads log too: locked */
	setvbuf(err, NULL, _IONBF, 0);
	stderr = err;
	return 0;
}

void cmd__write_error(const char *what, int err)
{
	if (err == -ECANCELED)
		elog("cannot write %s: its reader stopped reading, and a signal came\n", what);
	else
		elog("cannot write %s: %s\n", what, strerror(-err));
}

bool cmd__options_ended(char **argv, const char *last_arg)
{
	return optind > 1 && argv[optind - 1] != last_arg && strcmp(argv[optind - 1], "--") == 0;
}

void cmd__option_error(int c, char **argv, const char *optstring, char *msg, size_t len)
{
	const char *arg = argv[optind - 1];
	int name_len = (int)strcspn(arg, "=");
	bool known = optopt > UCHAR_MAX ||
		     (optopt > 0 && optopt != ':' && optopt != '+' && strchr(optstring, optopt));

	/*
	 * optind passes an element when its last character is read: at -x in "-xv", argv[optind -
	 * 1] is the element before. A short option is named by optopt, a long one by its element;
	 * for a long one optopt is 0 if unknown, its val if given a value it does not take.
	 */
	if (c == ':' && strncmp(arg, "--", 2) == 0)
		snprintf(msg, len, "option '%.*s' needs an argument", name_len, arg);
	else if (c == ':')
		snprintf(msg, len, "option '-%c' needs an argument", optopt);
	else if (optopt == 0)
		snprintf(msg, len, "unknown option '%s'", arg);
	else if (known)
		snprintf(msg, len, "option '%.*s' takes no argument", name_len, arg);
	else if (optopt > ' ' && optopt < 0x7f)
		snprintf(msg, len, "unknown option '-%c'", optopt);
	else /* a control character, or a byte of a multibyte one */
		snprintf(msg, len, "unknown option '-\\x%02x'", optopt & 0xff);
}
