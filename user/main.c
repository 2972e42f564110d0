// SPDX-License-Identifier: MIT
#include <malloc.h>
#include <string.h>
#include "cmd.h"

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} cmds[] = {
	{"report", cmd_report},
	{"top", cmd_top},
	{"serve", cmd_serve},
};

int main(int argc, char **argv)
{
	/*
	 * Every interval builds and frees arrays of megabytes (snapshots, profiles). glibc's
	 * threshold for mmapping a block rises after such a free, then they come from the heap and
	 * fragment it: serve system-wide held 72 MB of heap for 45 MB live after 3 minutes. A fixed
	 * threshold keeps them mmapped, given back when freed (10 MB, flat).
	 */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	cmd__open_std_fds();
	/* "asizeof-bpf report ..." and plain "asizeof-bpf ..." are the same */
	for (size_t i = 0; argc > 1 && i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cmds[i].fn(argc - 1, argv + 1);
	return cmd_report(argc, argv);
}
