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

/*
 * At startup: a closed descriptor 0, 1 or 2 gets /dev/null, so that none of ours (the
 * signalfd, a map, -o FILE) lands there to be written as standard output. Whether 1 was closed:
 * cmd__stdout_closed().
 */
void cmd__open_std_fds(void);
bool cmd__stdout_closed(void);

/* 0, or 1 after a one-line error: the capabilities loading and attaching need are missing. */
int cmd__check_privileges(void);
/*
 * Open -o FILE for writing (a FIFO without a reader and, for binary output, a terminal are
 * refused); NULL after a one-line error. An existing file keeps what it holds until
 * cmd__truncate_output(), once the run is set up: a run that fails before leaves it as it was.
 */
FILE *cmd__open_output(const char *path, bool binary);
/*
 * f's writes, through a stream that fails them with ECANCELED when f's reader stops reading
 * and SIGINT, SIGTERM or SIGHUP is pending (the run ends instead of blocking with its signals
 * blocked). Closing it closes f (not stdout). NULL: out of memory.
 */
FILE *cmd__guard_output(FILE *f);
/*
 * The same guard for diagnostics, once the signals that end a run are blocked: stderr becomes
 * such a stream on descriptor 2 (with -v a run writes ~50 KB/s there, and a stalled log reader
 * held it in the write past -d and SIGTERM). Once a write gave up for a signal, no guarded
 * write waits for a stalled reader any more. 0, or -ENOMEM (stderr as it was).
 */
int cmd__guard_stderr(void);
/* "cannot write WHAT: ..." for err (-errno), ECANCELED as cmd__guard_output() means it. */
void cmd__write_error(const char *what, int err);
/* Empty the file cmd__open_output() opened (if a regular file): 0, or -errno after an error. */
int cmd__truncate_output(FILE *f, const char *path);

/*
 * After --help or --version: 0, or 1 after a one-line error when standard output did not take
 * them (a full disk, a closed descriptor).
 */
int cmd__close_stdout(void);

/*
 * -d SECS: a decimal number above 0 and at most a year (longer is no limit a run can reach,
 * and would overflow the clock). 0, or -EINVAL after which CMD_DURATION_USAGE says why.
 */
int cmd__parse_duration(const char *s, double *out);
#define CMD_DURATION_USAGE "-d: '%s' is not a duration in seconds (at most 31536000, a year)"

/*
 * Once getopt_long has returned -1: whether it stopped past a "--" that ended the options.
 * last_arg is the last optarg it gave: a "--" that was an option's value (-o --) is no marker.
 */
bool cmd__options_ended(char **argv, const char *last_arg);
/*
 * getopt_long's '?' or ':' (with opterr 0 and optstring, the short options, starting "+:") as
 * a one-line message in msg that names the option at fault.
 */
void cmd__option_error(int c, char **argv, const char *optstring, char *msg, size_t len);

#endif
