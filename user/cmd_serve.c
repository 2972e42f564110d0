// SPDX-License-Identifier: MIT
/* Placeholder until the serve command lands (being written now). */
#include "cmd.h"
#include "log.h"

int cmd_serve(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	elog("'serve' is not available in this build\n");
	return 2;
}
