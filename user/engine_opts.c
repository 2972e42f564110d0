// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "engine_opts.h"
#include "util.h"

static int count(const char *s, __u64 min, __u64 max, __u64 *out)
{
	__u64 v;

	if (util__parse_u64(s, &v) || v < min || v > max)
		return -EINVAL;
	*out = v;
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
