// SPDX-License-Identifier: MIT
/* What the subcommands share before their sessions start: privileges, the output file. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>
#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include "cmd.h"
#include "log.h"
#include "util.h"

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
			elog("%s: %s\n", path, errno == ENXIO ? "a FIFO with no reader" : strerror(errno));
			return NULL;
		}
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		f = fdopen(fd, "w");
		if (!f)
			close(fd);
	} else {
		f = fopen(path, "we");
	}
	if (!f) {
		elog("%s: %s\n", path, strerror(errno));
		return NULL;
	}
	if (binary && isatty(fileno(f))) {
		elog("%s: a terminal: binary output goes to a file or a pipe\n", path);
		fclose(f);
		return NULL;
	}
	return f;
}

int cmd__parse_duration(const char *s, double *out)
{
	double d;

	if (util__parse_double(s, &d) || d <= 0 || d > 31536000.0)
		return -EINVAL;
	*out = d;
	return 0;
}
