// SPDX-License-Identifier: MIT
/* Report dispatch: one snapshot to the chosen output format. */
#include <errno.h>
#include "report.h"

int report__write(FILE *f, enum report_format fmt, const struct snapshot *s,
		  struct symbolizer *sym, const struct report_opts *o)
{
	if (!f || !s || !o)
		return -EINVAL;
	switch (fmt) {
	case REPORT_TEXT:
		return report_text__write(f, s, sym, o);
	case REPORT_JSON:
		return report_json__write(f, s, sym, o);
	case REPORT_COLLAPSED:
		return report_collapsed__write(f, s, sym, o);
	case REPORT_PPROF:
		return report_pprof__write(f, s, sym, o);
	}
	return -EINVAL;
}
