// SPDX-License-Identifier: MIT
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include "engine_opts.h"
#include "util.h"

#define count util__parse_range

int engine_opts__add_pid(pid_t *pids, int *nr, int max, const char *arg, char *err, size_t len)
{
	__u64 v;

	if (count(arg, 1, INT_MAX, &v)) {
		snprintf(err, len, "-p: '%s' is not a process id", arg);
		return -EINVAL;
	}
	/* a pid given twice would get two probe sets and count every call twice */
	for (int i = 0; i < *nr; i++)
		if (pids[i] == (pid_t)v)
			return 0;
	if (*nr == max) {
		snprintf(err, len, "too many -p (at most %d)", max);
		return -EINVAL;
	}
	pids[(*nr)++] = v;
	return 0;
}

int engine_opts__add_comm(struct engine_opts *eo, const char **comms, const char *arg, char *err,
			  size_t len)
{
	if (eo->nr_comms == ENGINE_MAX_COMMS) {
		snprintf(err, len, "too many --comm (at most %d)", ENGINE_MAX_COMMS);
		return -EINVAL;
	}
	if (!*arg || strlen(arg) >= ASZ_COMM_LEN) {
		snprintf(err, len, "--comm: '%s' is not a process name (1-15 chars)", arg);
		return -EINVAL;
	}
	comms[eo->nr_comms++] = arg;
	return 0;
}

int engine_opts__parse(struct engine_opts *eo, int opt, const char *arg, char *err, size_t len)
{
	__u64 v = 0;

	switch (opt) {
	case EOPT_MAX_DEPTH:
		if (count(arg, 1, ASZ_MAX_FRAMES, &v))
			goto bad;
		eo->max_depth = v;
		return 0;
	case EOPT_MAX_ALLOCS:
		if (count(arg, 1024, 1u << 28, &v))
			goto bad;
		eo->max_allocs = v;
		return 0;
	case EOPT_MAX_STACKS:
		if (count(arg, 64, 1u << 24, &v))
			goto bad;
		eo->max_stacks = v;
		eo->max_aggs = v;
		return 0;
	case EOPT_UNWIND:
		if (unwind__parse_mode(arg, &eo->unwind))
			goto bad;
		return 0;
	case EOPT_MAX_UNWIND_ROWS:
		if (count(arg, 1024, 1u << 26, &v))
			goto bad;
		eo->max_unwind_rows = v;
		return 0;
	case EOPT_ATTACH:
		if (strcmp(arg, "auto") == 0)
			eo->attach = ATTACH_AUTO;
		else if (strcmp(arg, "multi") == 0)
			eo->attach = ATTACH_MULTI;
		else if (strcmp(arg, "perf") == 0)
			eo->attach = ATTACH_PERF;
		else
			goto bad;
		return 0;
	case EOPT_SAMPLE_BYTES:
		if (count(arg, 1, 1ull << 32, &v))
			goto bad;
		eo->sample_bytes = v;
		return 0;
	}
bad:
	switch (opt) {
	case EOPT_MAX_DEPTH:
		snprintf(err, len, "--max-depth: '%s' is not 1-127", arg);
		break;
	case EOPT_MAX_ALLOCS:
		snprintf(err, len, "--max-allocs: '%s' is not 1024-268435456", arg);
		break;
	case EOPT_MAX_STACKS:
		snprintf(err, len, "--max-stacks: '%s' is not 64-16777216", arg);
		break;
	case EOPT_UNWIND:
		snprintf(err, len, "--unwind: unknown mode '%s' (auto, dwarf, fp)", arg);
		break;
	case EOPT_MAX_UNWIND_ROWS:
		snprintf(err, len, "--max-unwind-rows: '%s' is not 1024-67108864", arg);
		break;
	case EOPT_ATTACH:
		snprintf(err, len, "--attach: unknown mode '%s' (auto, multi, perf)", arg);
		break;
	case EOPT_SAMPLE_BYTES:
		snprintf(err, len, "--sample-bytes: '%s' is not 1-4294967296", arg);
		break;
	default:
		snprintf(err, len, "not an engine option");
		break;
	}
	return -EINVAL;
}
