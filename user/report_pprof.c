// SPDX-License-Identifier: MIT
/* Placeholder until the pprof writer lands (being written now). */
#include <errno.h>
#include "report.h"

int report_pprof__write(FILE *f, const struct snapshot *s, struct symbolizer *sym,
			    const struct report_opts *o)
{
	(void)f, (void)s, (void)sym, (void)o;
	return -EOPNOTSUPP;
}
