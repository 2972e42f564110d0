/* SPDX-License-Identifier: MIT */
/* The engine's options that every command takes: one getopt table fragment, one parser. */
#ifndef ASZ_ENGINE_OPTS_H
#define ASZ_ENGINE_OPTS_H

#include <getopt.h>
#include <stddef.h>
#include <sys/types.h>
#include "engine.h"

/* getopt values, above every command's own */
enum engine_opt {
	EOPT_MAX_DEPTH = 0x200,
	EOPT_MAX_ALLOCS,
	EOPT_MAX_STACKS,
	EOPT_UNWIND,
	EOPT_MAX_UNWIND_ROWS,
	EOPT_ATTACH,
	EOPT_SAMPLE_BYTES,
	EOPT_MAX_PROCS,
	EOPT_END,
};

#define ENGINE_LONG_OPTS                                                                           \
	{"max-depth", required_argument, NULL, EOPT_MAX_DEPTH},                                    \
		{"max-allocs", required_argument, NULL, EOPT_MAX_ALLOCS},                          \
		{"max-stacks", required_argument, NULL, EOPT_MAX_STACKS},                          \
		{"unwind", required_argument, NULL, EOPT_UNWIND},                                  \
		{"max-unwind-rows", required_argument, NULL, EOPT_MAX_UNWIND_ROWS},                \
		{"attach", required_argument, NULL, EOPT_ATTACH},                                  \
		{"sample-bytes", required_argument, NULL, EOPT_SAMPLE_BYTES},                      \
		{"max-procs", required_argument, NULL, EOPT_MAX_PROCS}

static inline bool engine_opts__is(int opt)
{
	return opt >= EOPT_MAX_DEPTH && opt < EOPT_END;
}

/*
 * Apply option opt (an enum engine_opt) with its argument. Returns 0, or -EINVAL with a
 * one-line message (no prefix, no newline) in err.
 */
int engine_opts__parse(struct engine_opts *eo, int opt, const char *arg, char *err, size_t len);

/* -p PID into pids (at most max, each once), --comm NAME into comms: 0 or -EINVAL as above. */
int engine_opts__add_pid(pid_t *pids, int *nr, int max, const char *arg, char *err, size_t len);
int engine_opts__add_comm(struct engine_opts *eo, const char **comms, const char *arg, char *err,
			  size_t len);
/* --min-size BYTES (report and top; serve has none): 0 or -EINVAL as above. */
int engine_opts__min_size(struct engine_opts *eo, const char *arg, char *err, size_t len);

#endif
