// SPDX-License-Identifier: MIT
/* Placeholder until the top command lands (being written now). */
#include "cmd.h"
#include "log.h"

int cmd_top(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	elog("'top' is not available in this build\n");
	return 2;
}
