// SPDX-License-Identifier: MIT
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
	/* "asizeof-bpf report ..." and plain "asizeof-bpf ..." are the same */
	for (size_t i = 0; argc > 1 && i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cmds[i].fn(argc - 1, argv + 1);
	return cmd_report(argc, argv);
}
