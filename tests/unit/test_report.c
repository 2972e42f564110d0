// SPDX-License-Identifier: MIT
/* Unit tests: report.c, report_json.c, report_text.c on a hand-built snapshot, no symbolizer. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "report.h"

static const __u64 ips_a[] = { 0x1001, 0x2001 };
static const __u64 ips_b[] = { 0x3000 };

/*
 * first (0 s): pid 100 live 500. prev (2 s): pid 100 live 1000, 4 allocs, 1 free; stack
 * (100, malloc, 7) live 1024. cur (4 s, final): two processes, three stacks, two drop counters.
 */
static struct snapshot *fixture(void)
{
	struct snapshot *first = snapshot__new(), *prev = snapshot__new(), *cur = snapshot__new();
	struct snap_proc p = { .pid = 100, .live_bytes = 500 };
	struct snap_stack st = { .pid = 100, .allocator = ASZ_MALLOC, .stack_id = 7 };

	cr_assert(first && prev && cur);
	cr_assert_eq(snapshot__add_proc(first, &p), 0);

	prev->elapsed_s = 2.0;
	p = (struct snap_proc){ .pid = 100, .live_bytes = 1000, .allocs = 4, .frees = 1 };
	cr_assert_eq(snapshot__add_proc(prev, &p), 0);
	st.live_bytes = 1024;
	cr_assert_eq(snapshot__add_stack(prev, &st), 0);

	cur->time = 1700000000.25;
	cur->elapsed_s = 4.0;
	cur->final = true;
	p = (struct snap_proc){ .pid = 100, .comm = "app", .live_bytes = 3000, .live_allocs = 3,
				.alloc_bytes = 5000, .allocs = 10, .frees = 7, .unknown_frees = 2 };
	cr_assert_eq(snapshot__add_proc(cur, &p), 0);
	p = (struct snap_proc){ .pid = 200, .exited = true, .alloc_bytes = 64, .allocs = 4,
				.frees = 4 };
	cr_assert_eq(snapshot__add_proc(cur, &p), 0);

	/* Added out of order: the report shows them as sorted. */
	st = (struct snap_stack){ .pid = 300, .allocator = 99, .stack_id = 9, .live_bytes = 10,
				  .live_allocs = 1, .alloc_bytes = 10, .allocs = 1 };
	cr_assert_eq(snapshot__add_stack(cur, &st), 0);
	st = (struct snap_stack){ .pid = 100, .allocator = ASZ_CALLOC, .stack_id = 7,
				  .live_bytes = 512, .live_allocs = 1, .alloc_bytes = 512,
				  .allocs = 1, .nr_frames = 1, .flags = ASZ_STACK_TRUNCATED,
				  .ips = ips_b };
	cr_assert_eq(snapshot__add_stack(cur, &st), 0);
	st = (struct snap_stack){ .pid = 100, .allocator = ASZ_MALLOC, .stack_id = 7,
				  .live_bytes = 2048, .live_allocs = 2, .alloc_bytes = 4096,
				  .allocs = 4, .frees = 2, .nr_frames = 2, .ips = ips_a };
	cr_assert_eq(snapshot__add_stack(cur, &st), 0);
	cur->drops[ASZ_DROP_STACKS_FULL] = 5;
	cur->drops[ASZ_DROP_UNKNOWN_FREE] = 12;

	snapshot__diff(cur, prev, first);
	snapshot__sort_stacks(cur, SNAP_SORT_GROWTH);
	snapshot__free(first);
	snapshot__free(prev);
	return cur;
}

/* Runs a writer into memory; returns the text (freed by the caller) and the writer's result. */
static char *render(enum report_format fmt, const struct snapshot *s, const struct report_opts *o,
		    int *ret)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	cr_assert_not_null(f);
	*ret = report__write(f, fmt, s, NULL, o);
	fclose(f);
	return buf;
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (hay = strstr(hay, needle); hay; hay = strstr(hay + 1, needle))
		n++;
	return n;
}

/* A strict JSON syntax checker (RFC 8259), enough to prove the output parses. */
static bool j_value(const char **p, int depth);

static void j_ws(const char **p)
{
	while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r')
		(*p)++;
}

static bool j_string(const char **p)
{
	const char *s = *p;
	int i;

	if (*s++ != '"')
		return false;
	for (;;) {
		unsigned char c = *s++;

		if (c == '"')
			break;
		if (c < 0x20)
			return false;
		if (c != '\\')
			continue;
		c = *s++;
		if (c == 'u') {
			for (i = 0; i < 4; i++)
				if (!isxdigit((unsigned char)*s++))
					return false;
		} else if (!strchr("\"\\/bfnrt", c) || !c) {
			return false;
		}
	}
	*p = s;
	return true;
}

static bool j_digits(const char **p)
{
	const char *s = *p;

	while (isdigit((unsigned char)**p))
		(*p)++;
	return *p > s;
}

static bool j_number(const char **p)
{
	if (**p == '-')
		(*p)++;
	if (**p == '0')
		(*p)++;
	else if (!j_digits(p))
		return false;
	if (**p == '.') {
		(*p)++;
		if (!j_digits(p))
			return false;
	}
	if (**p == 'e' || **p == 'E') {
		(*p)++;
		if (**p == '+' || **p == '-')
			(*p)++;
		if (!j_digits(p))
			return false;
	}
	return true;
}

static bool j_seq(const char **p, char close, bool members, int depth)
{
	(*p)++;
	j_ws(p);
	if (**p == close) {
		(*p)++;
		return true;
	}
	for (;;) {
		if (members) {
			if (!j_string(p))
				return false;
			j_ws(p);
			if (*(*p)++ != ':')
				return false;
		}
		if (!j_value(p, depth + 1))
			return false;
		j_ws(p);
		if (**p == close) {
			(*p)++;
			return true;
		}
		if (*(*p)++ != ',')
			return false;
		j_ws(p);
	}
}

static bool j_value(const char **p, int depth)
{
	if (depth > 64)
		return false;
	j_ws(p);
	switch (**p) {
	case '{':
		return j_seq(p, '}', true, depth);
	case '[':
		return j_seq(p, ']', false, depth);
	case '"':
		return j_string(p);
	case 't':
		return !strncmp(*p, "true", 4) && (*p += 4);
	case 'f':
		return !strncmp(*p, "false", 5) && (*p += 5);
	case 'n':
		return !strncmp(*p, "null", 4) && (*p += 4);
	default:
		return j_number(p);
	}
}

/* One JSON value on exactly one line. */
static bool json_line_ok(const char *s)
{
	const char *p = s;
	size_t len = strlen(s);

	if (!len || s[len - 1] != '\n' || memchr(s, '\n', len - 1))
		return false;
	if (!j_value(&p, 0))
		return false;
	return !strcmp(p, "\n");
}

Test(report_json, checker_sanity)
{
	cr_assert(json_line_ok("{\"a\":[1,-2.5e+3,true,false,null,\"x\\n\\u00e9\"],\"b\":{}}\n"));
	cr_assert(!json_line_ok("{\"a\":1,}\n"));
	cr_assert(!json_line_ok("{\"a\":01}\n"));
	cr_assert(!json_line_ok("{\"a\":nan}\n"));
	cr_assert(!json_line_ok("{\"a\":\"\x01\"}\n"));
	cr_assert(!json_line_ok("{}\n{}\n"));
	cr_assert(!json_line_ok("{}"));
}

#define FRAME_NULL(addr)                                                                           \
	"{\"addr\":" #addr ",\"func\":null,\"file\":null,\"line\":null,\"module\":null,"          \
	"\"inlined\":false,\"module_offset\":null}"

static const char expect_json[] =
	"{\"type\":\"report\",\"time\":1700000000.25,\"elapsed_s\":4,\"final\":true,\"sampled\":false,\"sample_bytes\":0,"
	"\"min_size\":0,\"unwind\":{\"mode\":\"fp\",\"modules\":0,\"tables\":0,\"rows\":0,\"bytes\":0,\"build_ms\":0,"
	"\"stacks\":0,\"frames_unwound\":0,\"frames_checked\":0,\"rule_searches\":0,"
	"\"stack_reads\":0,\"stacks_repeated\":0},"
	"\"processes\":["
	"{\"pid\":100,\"comm\":\"app\",\"live_bytes\":3000,\"live_allocs\":3,\"growth_bytes\":2000,"
	"\"alloc_bytes\":5000,\"allocs\":10,\"frees\":7,\"exited\":false,"
	"\"growth_total_bytes\":2500,\"alloc_rate\":3,\"free_rate\":3,\"unknown_frees\":2,\"dropped\":0,"
	"\"mmap_bytes\":0,\"mmap_regions\":0,\"retired_allocs\":0,\"retired_alloc_bytes\":0,\"exe\":null,\"cgroup\":null,"
	"\"container_id\":null},"
	"{\"pid\":200,\"comm\":null,\"live_bytes\":0,\"live_allocs\":0,\"growth_bytes\":0,"
	"\"alloc_bytes\":64,\"allocs\":4,\"frees\":4,\"exited\":true,"
	"\"growth_total_bytes\":0,\"alloc_rate\":2,\"free_rate\":2,\"unknown_frees\":0,\"dropped\":0,"
	"\"mmap_bytes\":0,\"mmap_regions\":0,\"retired_allocs\":0,\"retired_alloc_bytes\":0,\"exe\":null,\"cgroup\":null,"
	"\"container_id\":null}],"
	"\"stacks\":["
	"{\"pid\":100,\"comm\":\"app\",\"allocator\":\"malloc\",\"kind\":\"heap\",\"live_bytes\":2048,"
	"\"live_allocs\":2,\"growth_bytes\":1024,\"alloc_bytes\":4096,\"allocs\":4,\"frees\":2,"
	"\"stack_id\":\"7\",\"truncated\":false,\"frames\":["
	FRAME_NULL(4096) "," FRAME_NULL(8192) "]},"
	"{\"pid\":100,\"comm\":\"app\",\"allocator\":\"calloc\",\"kind\":\"heap\",\"live_bytes\":512,"
	"\"live_allocs\":1,\"growth_bytes\":512,\"alloc_bytes\":512,\"allocs\":1,\"frees\":0,"
	"\"stack_id\":\"7\",\"truncated\":true,\"frames\":[" FRAME_NULL(12287) "]},"
	"{\"pid\":300,\"comm\":null,\"allocator\":\"unknown\",\"kind\":\"heap\",\"live_bytes\":10,"
	"\"live_allocs\":1,\"growth_bytes\":10,\"alloc_bytes\":10,\"allocs\":1,\"frees\":0,"
	"\"stack_id\":\"9\",\"truncated\":false,\"frames\":[]}],"
	"\"dropped\":{\"allocs_map_full\":0,\"aggs_map_full\":0,\"procs_map_full\":0,"
	"\"stacks_map_full\":5,\"stack_collisions\":0,\"stack_unresolved\":0,"
	"\"stack_truncated\":0,\"thread_state_unavailable\":0,\"unknown_frees\":12,"
	"\"missed_frees\":0,\"stack_incomplete\":0,\"unwind_table_full\":0,\"stack_preempted\":0,"
	"\"events_lost\":0,\"procs_untraced\":0,\"mappings_unindexed\":0,\"aggs_retired\":0,\"stack_swept\":0}}\n";

Test(report_json, exact_output_without_symbolizer)
{
	struct report_opts o = { .top_n = 10, .sort = SNAP_SORT_GROWTH, .max_frames = 1 };
	struct snapshot *s = fixture();
	char *out;
	int ret;

	out = render(REPORT_JSON, s, &o, &ret);
	cr_assert_eq(ret, 0);
	cr_assert_str_eq(out, expect_json);
	cr_assert(json_line_ok(out));
	free(out);
	snapshot__free(s);
}

Test(report_json, direct_call_matches_dispatch)
{
	struct report_opts o = { .top_n = 0, .sort = SNAP_SORT_GROWTH };
	struct snapshot *s = fixture();
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	cr_assert_eq(report_json__write(f, s, NULL, &o), 0);
	fclose(f);
	cr_assert_str_eq(buf, expect_json);
	free(buf);
	snapshot__free(s);
}

Test(report_json, top_n_limits_stacks)
{
	struct report_opts o = { .top_n = 1, .sort = SNAP_SORT_GROWTH };
	struct snapshot *s = fixture();
	char *out;
	int ret;

	out = render(REPORT_JSON, s, &o, &ret);
	cr_assert_eq(ret, 0);
	cr_assert(json_line_ok(out));
	cr_assert_eq(count(out, "\"stack_id\":"), 1);
	cr_assert_eq(count(out, "\"allocator\":\"malloc\""), 1);
	cr_assert_eq(count(out, "\"allocator\":\"calloc\""), 0);
	/* Processes and drop counters are never cut. */
	cr_assert_eq(count(out, "\"exited\":"), 2);
	cr_assert_eq(count(out, "\"events_lost\":0,\"procs_untraced\":0,\"mappings_unindexed\":0,\"aggs_retired\":0,\"stack_swept\":0}}\n"), 1);
	free(out);

	o.top_n = 0; /* all */
	out = render(REPORT_JSON, s, &o, &ret);
	cr_assert_eq(ret, 0);
	cr_assert_eq(count(out, "\"stack_id\":"), 3);
	free(out);
	snapshot__free(s);
}

Test(report_json, empty_snapshot)
{
	struct report_opts o = { .top_n = 10 };
	struct snapshot *s = snapshot__new();
	char *out;
	int ret;

	s->time = 12.5;
	s->elapsed_s = 0.5;
	out = render(REPORT_JSON, s, &o, &ret);
	cr_assert_eq(ret, 0);
	cr_assert_str_eq(out, "{\"type\":\"report\",\"time\":12.5,\"elapsed_s\":0.5,"
			      "\"final\":false,\"sampled\":false,\"sample_bytes\":0,\"min_size\":0,"
			      "\"unwind\":{\"mode\":\"fp\",\"modules\":0,\"tables\":0,\"rows\":0,\"bytes\":0,"
			      "\"build_ms\":0,\"stacks\":0,\"frames_unwound\":0,\"frames_checked\":0,"
			      "\"rule_searches\":0,\"stack_reads\":0,\"stacks_repeated\":0},"
			      "\"processes\":[],\"stacks\":[],"
			      "\"dropped\":{\"allocs_map_full\":0,"
			      "\"aggs_map_full\":0,\"procs_map_full\":0,\"stacks_map_full\":0,"
			      "\"stack_collisions\":0,\"stack_unresolved\":0,"
			      "\"stack_truncated\":0,\"thread_state_unavailable\":0,"
			      "\"unknown_frees\":0,\"missed_frees\":0,\"stack_incomplete\":0,\"unwind_table_full\":0,"
			      "\"stack_preempted\":0,\"events_lost\":0,\"procs_untraced\":0,\"mappings_unindexed\":0,\"aggs_retired\":0,\"stack_swept\":0}}\n");
	free(out);
	snapshot__free(s);
}

Test(report_json, odd_strings_stay_valid)
{
	struct report_opts o = { .top_n = 10 };
	struct snapshot *s = snapshot__new();
	/* A full 16-byte comm without NUL, with a quote, a control char and a stray byte. */
	struct snap_proc p = { .pid = 1 };
	struct snap_stack st = { .pid = 1, .stack_id = 3 };
	char *out;
	int ret;

	memcpy(p.comm, "ab\"c\x01\xff" "0123456789", ASZ_COMM_LEN);
	cr_assert_eq(snapshot__add_proc(s, &p), 0);
	cr_assert_eq(snapshot__add_stack(s, &st), 0);
	s->procs[0].alloc_rate = 0.1;
	out = render(REPORT_JSON, s, &o, &ret);
	cr_assert_eq(ret, 0);
	cr_assert(json_line_ok(out), "%s", out);
	cr_assert_eq(count(out, "\"comm\":\"ab\\\"c\\u0001\\ufffd0123456789\""), 2);
	cr_assert_eq(count(out, "\"alloc_rate\":0.1,"), 1);
	free(out);
	snapshot__free(s);
}

/* totals without the blocks under --min-size must say so, or they read as the whole heap */
Test(report_json, min_size_is_reported)
{
	struct report_opts o = { .top_n = 10 };
	struct snapshot *s = snapshot__new();
	char *out;
	int ret;

	s->min_size = 4096;
	out = render(REPORT_JSON, s, &o, &ret);
	cr_assert_eq(ret, 0);
	cr_assert(json_line_ok(out), "%s", out);
	cr_assert_eq(count(out, "\"sample_bytes\":0,\"min_size\":4096,"), 1, "%s", out);
	free(out);
	snapshot__free(s);
}

/* ids take 64 bits: a JSON number above 2^53 is rounded by jq and JavaScript, a string is not */
Test(report, json_stack_ids_are_exact_strings)
{
	struct report_opts o = { .top_n = 10 };
	struct snapshot *s = snapshot__new();
	struct snap_stack st = { .pid = 1, .stack_id = 790067259556035669ull, .allocs = 1 };
	char *out;
	int ret;

	cr_assert_eq(snapshot__add_stack(s, &st), 0);
	st.stack_id = UINT64_MAX;
	cr_assert_eq(snapshot__add_stack(s, &st), 0);
	out = render(REPORT_JSON, s, &o, &ret);
	cr_assert_eq(ret, 0);
	cr_assert(json_line_ok(out), "%s", out);
	cr_assert_eq(count(out, "\"stack_id\":\"790067259556035669\","), 1, "%s", out);
	cr_assert_eq(count(out, "\"stack_id\":\"18446744073709551615\","), 1, "%s", out);
	free(out);
	snapshot__free(s);
}

static void utc(void)
{
	setenv("TZ", "UTC", 1);
	tzset();
}

static const char expect_text[] =
	"asizeof-bpf final report at 2023-11-14 22:13:20, elapsed 4.0 s\n"
	"PID  COMM     LIVE  ALLOCS    GROWTH  GROWTH-TOTAL  ALLOC/s  FREE/s\n"
	"100  app   2.9 KiB       3  +2.0 KiB      +2.4 KiB      3.0     3.0\n"
	"200  ?         0 B       0       0 B           0 B      2.0     2.0  exited\n"
	"\n"
	"Top 3 stacks by growth:\n"
	"#  PID  COMM  ALLOCATOR     LIVE  ALLOCS    GROWTH  ALLOCATED  CALLS\n"
	"1  100  app   malloc     2.0 KiB       2  +1.0 KiB    4.0 KiB      4\n"
	"      0x1000\n"
	"      0x2000\n"
	"\n"
	"2  100  app   calloc       512 B       1    +512 B      512 B      1\n"
	"      0x2fff\n"
	"      ... (stack truncated at --max-depth)\n"
	"\n"
	"3  300  ?     unknown       10 B       1     +10 B       10 B      1\n"
	"      (no call stack: not collected, see the dropped counters)\n"
	"\n"
	"dropped: stacks_map_full=5 unknown_frees=12\n"
	"\n";

Test(report_text, exact_output_without_symbolizer, .init = utc)
{
	struct report_opts o = { .top_n = 10, .sort = SNAP_SORT_GROWTH, .max_frames = 20 };
	struct snapshot *s = fixture();
	char *out;
	int ret;

	out = render(REPORT_TEXT, s, &o, &ret);
	cr_assert_eq(ret, 0);
	cr_assert_str_eq(out, expect_text);
	free(out);
	snapshot__free(s);
}

Test(report_text, direct_call_matches_dispatch, .init = utc)
{
	struct report_opts o = { .top_n = 0, .sort = SNAP_SORT_GROWTH, .max_frames = 0 };
	struct snapshot *s = fixture();
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	cr_assert_eq(report_text__write(f, s, NULL, &o), 0);
	fclose(f);
	cr_assert_str_eq(buf, expect_text);
	free(buf);
	snapshot__free(s);
}

Test(report_text, max_frames_and_top_n, .init = utc)
{
	struct report_opts o = { .top_n = 2, .sort = SNAP_SORT_LIVE, .max_frames = 1 };
	struct snapshot *s = fixture();
	char *out;
	int ret;

	out = render(REPORT_TEXT, s, &o, &ret);
	cr_assert_eq(ret, 0);
	cr_assert(strstr(out, "\nTop 2 stacks by live:\n"), "%s", out);
	cr_assert(strstr(out, "      0x1000\n      ... 1 more frame\n\n2  100"), "%s", out);
	cr_assert_eq(count(out, "0x2000"), 0);
	cr_assert_eq(count(out, "\n3  300"), 0);
	free(out);
	snapshot__free(s);
}

Test(report_text, more_frames_on_truncated_stack, .init = utc)
{
	static const __u64 ips[] = { 0x11, 0x21, 0x31, 0x41 };
	struct report_opts o = { .top_n = 1, .sort = SNAP_SORT_GROWTH, .max_frames = 2 };
	struct snapshot *s = snapshot__new();
	struct snap_stack st = { .pid = 5, .stack_id = 1, .nr_frames = 4, .ips = ips,
				 .flags = ASZ_STACK_TRUNCATED };
	char *out;
	int ret;

	cr_assert_eq(snapshot__add_stack(s, &st), 0);
	out = render(REPORT_TEXT, s, &o, &ret);
	cr_assert_eq(ret, 0);
	cr_assert(strstr(out, "      0x10\n      0x20\n"
			      "      ... 2 more frames (stack truncated at --max-depth)\n"),
		  "%s", out);
	free(out);
	snapshot__free(s);
}

Test(report_text, empty_snapshot, .init = utc)
{
	struct report_opts o = { .top_n = 10, .sort = SNAP_SORT_BYTES, .max_frames = 10 };
	struct snapshot *s = snapshot__new();
	char *out;
	int ret;

	s->time = 0;
	s->elapsed_s = 1.25;
	out = render(REPORT_TEXT, s, &o, &ret);
	cr_assert_eq(ret, 0);
	cr_assert_str_eq(out, "asizeof-bpf report at 1970-01-01 00:00:00, elapsed 1.2 s\n"
			      "no traced process has allocated yet\n"
			      "\n"
			      "Top stacks by bytes: none recorded\n"
			      "\n"
			      "dropped: none\n"
			      "\n");
	free(out);
	snapshot__free(s);
}

Test(report_text, min_size_is_said, .init = utc)
{
	struct report_opts o = { .top_n = 10, .sort = SNAP_SORT_BYTES, .max_frames = 10 };
	struct snapshot *s = snapshot__new();
	char *out;
	int ret;

	s->elapsed_s = 1.25;
	s->min_size = 4096;
	out = render(REPORT_TEXT, s, &o, &ret);
	cr_assert_eq(ret, 0);
	cr_assert_eq(count(out, "\nblocks under 4096 bytes (--min-size) are not counted\n"), 1,
		     "%s", out);
	free(out);
	snapshot__free(s);
}

Test(report_text, comm_is_sanitized, .init = utc)
{
	struct report_opts o = { .top_n = 10 };
	struct snapshot *s = snapshot__new();
	struct snap_proc p = { .pid = 7, .comm = "a b\tc\x1b[31m" };
	char *out;
	int ret;

	cr_assert_eq(snapshot__add_proc(s, &p), 0);
	out = render(REPORT_TEXT, s, &o, &ret);
	cr_assert_eq(ret, 0);
	cr_assert(strstr(out, "\n  7  a b?c?[31m  "), "%s", out);
	cr_assert_null(strchr(out, '\x1b'));
	free(out);
	snapshot__free(s);
}

Test(report, bad_arguments)
{
	struct report_opts o = { .top_n = 10 };
	struct snapshot *s = snapshot__new();

	cr_assert_eq(report__write(stdout, (enum report_format)7, s, NULL, &o), -EINVAL);
	cr_assert_eq(report__write(NULL, REPORT_TEXT, s, NULL, &o), -EINVAL);
	cr_assert_eq(report__write(stdout, REPORT_JSON, NULL, NULL, &o), -EINVAL);
	cr_assert_eq(report__write(stdout, REPORT_JSON, s, NULL, NULL), -EINVAL);
	snapshot__free(s);
}

Test(report, write_errors_are_reported)
{
	struct report_opts o = { .top_n = 10 };
	struct snapshot *s = fixture();
	FILE *f = fopen("/dev/full", "w");

	cr_assert_not_null(f);
	cr_assert_eq(report__write(f, REPORT_JSON, s, NULL, &o), -ENOSPC);
	clearerr(f);
	cr_assert_eq(report__write(f, REPORT_TEXT, s, NULL, &o), -ENOSPC);
	fclose(f);
	snapshot__free(s);
}
