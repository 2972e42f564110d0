/* SPDX-License-Identifier: MIT */
/*
 * Prometheus metrics of `serve`: the text exposition format 0.0.4, rendered once per snapshot
 * on the sampler thread. Series are per process group (comm, exe): a bounded label set however
 * many processes come and go. Counters of a group stay monotonic when its processes exit or
 * exec into another group: what a process counted is kept in the group it counted in.
 */
#ifndef ASZ_SERVE_METRICS_H
#define ASZ_SERVE_METRICS_H

#include <stddef.h>
#include "snapshot.h"

struct serve_metrics;

struct serve_metrics *serve_metrics__new(void);
void serve_metrics__free(struct serve_metrics *m);

/*
 * Account snapshot s (every snapshot, in order) and render the exposition text into *text
 * (malloc'ed, *len bytes, NUL-terminated). pid_labels: also per-process series, labelled with
 * the pid, for that many top growers (growth since attach). Returns 0 or a negative errno.
 */
int serve_metrics__update(struct serve_metrics *m, const struct snapshot *s, int pid_labels,
			  char **text, size_t *len);

#endif
