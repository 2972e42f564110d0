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

int engine_opts__min_size(struct engine_opts *eo, const char *arg, char *err, size_t len)
{
	__u64 v;

	if (count(arg, 0, 1ull << 48, &v)) {
		snprintf(err, len, "--min-size: '%s' is not 0-%llu bytes", arg, 1ull << 48);
		return -EINVAL;
	}
	eo->min_size = v;
	return 0;
}

/* The numeric engine options: each range is checked and quoted in the error from here. */
static const struct {
	int opt;
	const char *name;
	__u64 min, max;
} ranges[] = {
    {EOPT_MAX_DEPTH, "--max-depth", 1, ASZ_MAX_FRAMES},
    {EOPT_MAX_ALLOCS, "--max-allocs", 1024, 1u << 28},
    {EOPT_MAX_STACKS, "--max-stacks", 64, 1u << 24},
    /* the kernel's bucket array (16 bytes each) is allocated whole: 64 MiB at most */
    {EOPT_MAX_PROCS, "--max-procs", 1, 1u << 22},
    {EOPT_MAX_UNWIND_ROWS, "--max-unwind-rows", 1024, 1u << 26},
    /* a sampled 1-byte block stands for ~N blocks, counted in 32 bits (2^32 wrapped to 0) */
    {EOPT_SAMPLE_BYTES, "--sample-bytes", 1, 1ull << 31},
};

int engine_opts__parse(struct engine_opts *eo, int opt, const char *arg, char *err, size_t len)
{
	__u64 v = 0;

	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
		if (ranges[i].opt != opt)
			continue;
		if (count(arg, ranges[i].min, ranges[i].max, &v)) {
			snprintf(err, len, "%s: '%s' is not %llu-%llu", ranges[i].name, arg,
				 (unsigned long long)ranges[i].min,
				 (unsigned long long)ranges[i].max);
			return -EINVAL;
		}
		break;
	}
	switch (opt) {
	case EOPT_MAX_DEPTH:
		eo->max_depth = v;
		return 0;
	case EOPT_MAX_ALLOCS:
		eo->max_allocs = v;
		return 0;
	case EOPT_MAX_STACKS:
		eo->max_stacks = v;
		eo->max_aggs = ENGINE_AGGS_PER_STACK * v;
		return 0;
	case EOPT_MAX_PROCS:
		eo->max_procs = v;
		return 0;
	case EOPT_MAX_UNWIND_ROWS:
		eo->max_unwind_rows = v;
		return 0;
	case EOPT_SAMPLE_BYTES:
		eo->sample_bytes = v;
		return 0;
	case EOPT_UNWIND:
		if (unwind__parse_mode(arg, &eo->unwind) == 0)
			return 0;
		snprintf(err, len, "--unwind: unknown mode '%s' (auto, dwarf, fp)", arg);
		return -EINVAL;
	case EOPT_ATTACH:
		if (strcmp(arg, "auto") == 0)
			eo->attach = ATTACH_AUTO;
		else if (strcmp(arg, "multi") == 0)
			eo->attach = ATTACH_MULTI;
		else if (strcmp(arg, "perf") == 0)
			eo->attach = ATTACH_PERF;
		else {
			snprintf(err, len, "--attach: unknown mode '%s' (auto, multi, perf)", arg);
			return -EINVAL;
		}
		return 0;
	}
	snprintf(err, len, "not an engine option");
	return -EINVAL;
}
