/* SPDX-License-Identifier: MIT */
/* Subcommands: one file each, dispatched from main's table. */
#ifndef ASZ_CMD_H
#define ASZ_CMD_H

#include <stdio.h>

#define ASZ_VERSION "0.1.0"

int cmd_report(int argc, char **argv);
void cmd_report__usage(FILE *f);
int cmd_top(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
