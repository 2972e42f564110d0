/* SPDX-License-Identifier: MIT */
/* Subcommands: one file each, dispatched from main's table. */
#ifndef ASZ_CMD_H
#define ASZ_CMD_H

#include <stdbool.h>
#include <stdio.h>

#define ASZ_VERSION "0.1.0"

int cmd_report(int argc, char **argv);
void cmd_report__usage(FILE *f);
int cmd_top(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* 0, or 1 after a one-line error: the capabilities loading and attaching need are missing. */
int cmd__check_privileges(void);
/*
 * Open -o FILE for writing (a FIFO without a reader and, for binary output, a terminal are
 * refused); NULL after a one-line error.
 */
FILE *cmd__open_output(const char *path, bool binary);

/* -d: longer than this is no limit a run can reach (and would overflow the clock). */
#define CMD_MAX_DURATION_S 31536000.0 /* a year */

#endif
