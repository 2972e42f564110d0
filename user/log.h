/* SPDX-License-Identifier: MIT */
#ifndef ASZ_LOG_H
#define ASZ_LOG_H

#include <stdio.h>

extern int env_verbosity; /* 0 normal, 1 -v, 2 -vv (debug) */

/* All diagnostics go to stderr, prefixed with the program name. */
#define elog(fmt, ...) fprintf(stderr, "asizeof-bpf: " fmt, ##__VA_ARGS__)
#define vlog(fmt, ...)                                                                             \
	do {                                                                                       \
		if (env_verbosity >= 1)                                                            \
			fprintf(stderr, "asizeof-bpf: " fmt, ##__VA_ARGS__);                       \
	} while (0)
#define dlog(fmt, ...)                                                                             \
	do {                                                                                       \
		if (env_verbosity >= 2)                                                            \
			fprintf(stderr, "asizeof-bpf: " fmt, ##__VA_ARGS__);                       \
	} while (0)

#endif
