// SPDX-License-Identifier: MIT
/* Unit tests: util.c (sizes, strict parsing, clocks, maps lines) and json_writer.c. */
#include <criterion/criterion.h>
#include <sys/sysmacros.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "json_writer.h"
#include "util.h"

static const char *human(__s64 v, bool plus)
{
	static char buf[UTIL_HUMAN_LEN];

	return util__humanize_bytes(buf, sizeof(buf), v, plus);
}

Test(util, humanize_small_exact)
{
	cr_assert_str_eq(human(0, false), "0 B");
	cr_assert_str_eq(human(1, false), "1 B");
	cr_assert_str_eq(human(512, false), "512 B");
	cr_assert_str_eq(human(1023, false), "1023 B");
	cr_assert_str_eq(human(-512, false), "-512 B");
	cr_assert_str_eq(human(-1023, false), "-1023 B");
}

Test(util, humanize_units)
{
	cr_assert_str_eq(human(1024, false), "1.0 KiB");
	cr_assert_str_eq(human(1536, false), "1.5 KiB");
	cr_assert_str_eq(human(-1536, false), "-1.5 KiB");
	cr_assert_str_eq(human(4 << 20, false), "4.0 MiB");
	cr_assert_str_eq(human(40ll << 20, false), "40.0 MiB");
	cr_assert_str_eq(human(3ll << 30, false), "3.0 GiB");
	cr_assert_str_eq(human(5ll << 40, false), "5.0 TiB");
	cr_assert_str_eq(human(7ll << 50, false), "7.0 PiB");
	cr_assert_str_eq(human(1ll << 60, false), "1.0 EiB");
	cr_assert_str_eq(human(INT64_MAX, false), "8.0 EiB");
	cr_assert_str_eq(human(INT64_MIN, false), "-8.0 EiB");
}

Test(util, humanize_rounding_carries_to_next_unit)
{
	/* 1048524 B = 1023.949 KiB: still KiB. 1048525 B = 1023.950 KiB: would print 1024.0. */
	cr_assert_str_eq(human(1048524, false), "1023.9 KiB");
	cr_assert_str_eq(human(1048525, false), "1.0 MiB");
	cr_assert_str_eq(human((1ll << 30) - 1, false), "1.0 GiB");
	cr_assert_str_eq(human(-((1ll << 20) - 1), false), "-1.0 MiB");
}

Test(util, humanize_plus_sign)
{
	cr_assert_str_eq(human(4 << 20, true), "+4.0 MiB");
	cr_assert_str_eq(human(100, true), "+100 B");
	cr_assert_str_eq(human(0, true), "0 B");
	cr_assert_str_eq(human(-1536, true), "-1.5 KiB");
}

Test(util, humanize_truncates_to_buffer)
{
	char buf[4];

	cr_assert_eq(util__humanize_bytes(buf, sizeof(buf), 4 << 20, false), buf);
	cr_assert_str_eq(buf, "4.0");
	cr_assert_null(util__humanize_bytes(NULL, 8, 1, false));
}

Test(util, parse_u64_valid)
{
	__u64 v = 1;

	cr_assert_eq(util__parse_u64("0", &v), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(util__parse_u64("5", &v), 0);
	cr_assert_eq(v, 5);
	cr_assert_eq(util__parse_u64("007", &v), 0);
	cr_assert_eq(v, 7);
	cr_assert_eq(util__parse_u64("1048576", &v), 0);
	cr_assert_eq(v, 1048576);
	cr_assert_eq(util__parse_u64("18446744073709551615", &v), 0);
	cr_assert_eq(v, UINT64_MAX);
}

Test(util, parse_u64_rejects)
{
	static const char *const bad[] = {
		"", "-1", "-0", "+1", " 1", "1 ", "1x", "0x10", "1.5", "1e3", "abc", "\t7", "5\n",
	};
	__u64 v = 42;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(util__parse_u64(bad[i], &v), -EINVAL, "input \"%s\"", bad[i]);
		cr_assert_eq(v, 42, "input \"%s\" wrote the output", bad[i]);
	}
	cr_assert_eq(util__parse_u64(NULL, &v), -EINVAL);
	cr_assert_eq(util__parse_u64("18446744073709551616", &v), -ERANGE);
	cr_assert_eq(util__parse_u64("99999999999999999999999", &v), -ERANGE);
	cr_assert_eq(v, 42);
}

Test(util, parse_double_valid)
{
	double v = -1;

	cr_assert_eq(util__parse_double("5", &v), 0);
	cr_assert_eq(v, 5.0);
	cr_assert_eq(util__parse_double("0.5", &v), 0);
	cr_assert_eq(v, 0.5);
	cr_assert_eq(util__parse_double(".25", &v), 0);
	cr_assert_eq(v, 0.25);
	cr_assert_eq(util__parse_double("1e3", &v), 0);
	cr_assert_eq(v, 1000.0);
	cr_assert_eq(util__parse_double("2.5E-1", &v), 0);
	cr_assert_eq(v, 0.25);
	cr_assert_eq(util__parse_double("0", &v), 0);
	cr_assert_eq(v, 0.0);
	cr_assert_eq(util__parse_double("3.", &v), 0);
	cr_assert_eq(v, 3.0);
}

Test(util, parse_double_rejects)
{
	static const char *const bad[] = {
		"", "-1", "-0.5", "+1", " 1", "1 ", "1s", "1.5x", "inf", "nan", "INF", "infinity",
		"0x1p3", "0x10", ".", "1e", "e5", "1..2", "1e+", "1-2", ",5",
	};
	double v = 42;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(util__parse_double(bad[i], &v), -EINVAL, "input \"%s\"", bad[i]);
		cr_assert_eq(v, 42, "input \"%s\" wrote the output", bad[i]);
	}
	cr_assert_eq(util__parse_double(NULL, &v), -EINVAL);
	cr_assert_eq(util__parse_double("1e400", &v), -ERANGE);
	cr_assert_eq(util__parse_double("1e-400", &v), -ERANGE);
	cr_assert_eq(v, 42);
}

Test(util, basename)
{
	cr_assert_str_eq(util__basename("/usr/lib/libc.so.6"), "libc.so.6");
	cr_assert_str_eq(util__basename("demo"), "demo");
	cr_assert_str_eq(util__basename("./a/b.c"), "b.c");
	cr_assert_str_eq(util__basename("/"), "");
	cr_assert_null(util__basename(NULL));
}

Test(util, is_libc_name)
{
	cr_assert(util__is_libc_name("/usr/lib/x86_64-linux-gnu/libc.so.6"));
	cr_assert(util__is_libc_name("libc.so.6"));
	cr_assert(util__is_libc_name("/lib/x86_64-linux-gnu/libc-2.31.so"));
	cr_assert_not(util__is_libc_name("/usr/lib/x86_64-linux-gnu/libc++.so.1"));
	cr_assert_not(util__is_libc_name("/usr/lib/libcrypt.so.1"));
	cr_assert_not(util__is_libc_name("/opt/libc.so.6/libz.so.1"));
	cr_assert_not(util__is_libc_name(NULL));
}

static void short_is(const char *in, const char *want)
{
	char out[256];

	cr_assert_str_eq(util__short_func(in, out, sizeof(out)), want, "from %s", in);
}

Test(util, short_func_elides_template_arguments)
{
	short_is("main", "main");
	short_is("operator new(unsigned long)", "operator new(unsigned long)");
	short_is("std::vector<int, std::allocator<int> >::push_back(int const&)",
		 "std::vector<...>::push_back(int const&)");
	short_is("std::__new_allocator<std::_Rb_tree_node<std::pair<int const, int> > >::allocate("
		 "unsigned long, void const*)",
		 "std::__new_allocator<...>::allocate(unsigned long, void const*)");
	/* a function template: its return type and its own arguments too */
	short_is("std::_Rb_tree_node<int>* std::_Rb_tree<int, int>::_M_create_node<int const&>(int "
		 "const&)",
		 "std::_Rb_tree_node<...>* std::_Rb_tree<...>::_M_create_node<...>(int const&)");
	/* std::string by its name, also where it stands alone */
	short_is("std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> "
		 ">::_M_create(unsigned long&, unsigned long)",
		 "std::string::_M_create(unsigned long&, unsigned long)");
	short_is("std::map<std::__cxx11::basic_string<char, std::char_traits<char>, "
		 "std::allocator<char> >, int>::operator[](std::__cxx11::basic_string<char, "
		 "std::char_traits<char>, std::allocator<char> >&&)",
		 "std::map<...>::operator[](std::string&&)");
}

Test(util, short_func_keeps_operators)
{
	short_is("operator<<(std::ostream&, Foo const&)", "operator<<(std::ostream&, Foo const&)");
	short_is("bool operator< <int>(Box<int> const&, Box<int> const&)",
		 "bool operator< <...>(Box<...> const&, Box<...> const&)");
	short_is("Foo::operator->() const", "Foo::operator->() const");
	short_is("Foo::operator>>=(int)", "Foo::operator>>=(int)");
	short_is("std::less<void>::operator()<int&, int&>(int&, int&) const",
		 "std::less<...>::operator()<...>(int&, int&) const");
	short_is("X<decltype (((Y*)0)->z)>::f()", "X<...>::f()");
	/* a name that merely contains "operator" is no operator */
	short_is("my_operator<int>(int)", "my_operator<...>(int)");
	/* unbalanced (never from the demangler): closed, not overrun */
	short_is("f<int(int)", "f<...>");
}

Test(util, short_func_fits_its_buffer)
{
	char out[8];

	cr_assert_str_eq(util__short_func("std::vector<int>::size() const", out, sizeof(out)),
			 "std::ve");
	cr_assert_str_eq(util__short_func("abc", out, 1), "");
}

Test(util, clocks)
{
	__u64 a = util__mono_ns(), b = util__mono_ns();

	cr_assert_geq(b, a);
	cr_assert_gt(a, 0);
	/* After 2020-01-01 and before 2100: a real unix time in seconds, not ms or ns. */
	cr_assert_gt(util__wall_s(), 1577836800.0);
	cr_assert_lt(util__wall_s(), 4102444800.0);
}

/* JSON writer: everything goes to a memory stream, compared exactly. */
struct jbuf {
	char *data;
	size_t len;
	FILE *f;
	struct json_writer w;
};

static void jbuf_open(struct jbuf *b)
{
	b->data = NULL;
	b->len = 0;
	b->f = open_memstream(&b->data, &b->len);
	cr_assert_not_null(b->f);
	json_writer__init(&b->w, b->f);
}

/* Closes the stream and returns the text (freed by the caller). */
static char *jbuf_close(struct jbuf *b, int *status)
{
	*status = json_writer__status(&b->w);
	fclose(b->f);
	return b->data;
}

static void check_string(const char *in, size_t len, const char *expect)
{
	struct jbuf b;
	char *out;
	int st;

	jbuf_open(&b);
	if (len == (size_t)-1)
		json_writer__string(&b.w, in);
	else
		json_writer__string_len(&b.w, in, len);
	out = jbuf_close(&b, &st);
	cr_assert_eq(st, 0);
	cr_assert_str_eq(out, expect);
	free(out);
}

Test(json_writer, nesting_and_commas)
{
	struct jbuf b;
	char *out;
	int st;

	jbuf_open(&b);
	json_writer__begin_object(&b.w);
	json_writer__field_u64(&b.w, "a", 1);
	json_writer__key(&b.w, "b");
	json_writer__begin_array(&b.w);
	json_writer__s64(&b.w, -1);
	json_writer__u64(&b.w, 2);
	json_writer__begin_object(&b.w);
	json_writer__end_object(&b.w);
	json_writer__begin_array(&b.w);
	json_writer__end_array(&b.w);
	json_writer__null(&b.w);
	json_writer__bool(&b.w, true);
	json_writer__bool(&b.w, false);
	json_writer__end_array(&b.w);
	json_writer__key(&b.w, "c");
	json_writer__begin_object(&b.w);
	json_writer__field_string(&b.w, "d", "x");
	json_writer__field_null(&b.w, "e");
	json_writer__field_bool(&b.w, "f", true);
	json_writer__field_s64(&b.w, "g", -7);
	json_writer__field_double(&b.w, "h", 0.5);
	json_writer__end_object(&b.w);
	json_writer__end_object(&b.w);
	out = jbuf_close(&b, &st);
	cr_assert_eq(st, 0);
	cr_assert_str_eq(out, "{\"a\":1,\"b\":[-1,2,{},[],null,true,false],"
			      "\"c\":{\"d\":\"x\",\"e\":null,\"f\":true,\"g\":-7,\"h\":0.5}}");
	free(out);
}

Test(json_writer, top_level_values_are_lines)
{
	struct jbuf b;
	char *out;
	int st;

	jbuf_open(&b);
	json_writer__begin_object(&b.w);
	json_writer__end_object(&b.w);
	json_writer__u64(&b.w, 3);
	out = jbuf_close(&b, &st);
	cr_assert_eq(st, 0);
	cr_assert_str_eq(out, "{}\n3");
	free(out);
}

Test(json_writer, integers_extremes)
{
	struct jbuf b;
	char *out;
	int st;

	jbuf_open(&b);
	json_writer__begin_array(&b.w);
	json_writer__s64(&b.w, INT64_MIN);
	json_writer__s64(&b.w, INT64_MAX);
	json_writer__u64(&b.w, UINT64_MAX);
	json_writer__u64(&b.w, 0);
	json_writer__end_array(&b.w);
	out = jbuf_close(&b, &st);
	cr_assert_eq(st, 0);
	cr_assert_str_eq(out, "[-9223372036854775808,9223372036854775807,18446744073709551615,0]");
	free(out);
}

Test(json_writer, doubles)
{
	struct jbuf b;
	char *out;
	int st;

	jbuf_open(&b);
	json_writer__begin_array(&b.w);
	json_writer__double(&b.w, 0.1);
	json_writer__double(&b.w, 1.5);
	json_writer__double(&b.w, 0);
	json_writer__double(&b.w, 1700000000.25);
	json_writer__double(&b.w, 1e300);
	json_writer__double(&b.w, -2.5e-7);
	json_writer__double(&b.w, 1.0 / 3.0);
	json_writer__double(&b.w, NAN);
	json_writer__double(&b.w, INFINITY);
	json_writer__double(&b.w, -INFINITY);
	json_writer__end_array(&b.w);
	out = jbuf_close(&b, &st);
	cr_assert_eq(st, 0);
	cr_assert_str_eq(out, "[0.1,1.5,0,1700000000.25,1e+300,-2.5e-07,0.33333333333333331,"
			      "null,null,null]");
	free(out);
}

Test(json_writer, escapes_specials_and_controls)
{
	check_string("plain text", -1, "\"plain text\"");
	check_string("", -1, "\"\"");
	check_string("q\"b\\s/", -1, "\"q\\\"b\\\\s/\"");
	check_string("\b\f\n\r\t", -1, "\"\\b\\f\\n\\r\\t\"");
	check_string("\x01\x1f\x7f", -1, "\"\\u0001\\u001f\\u007f\"");
	check_string(NULL, -1, "null");
}

Test(json_writer, utf8_valid_passes_through)
{
	/* é (2 bytes), € (3 bytes), U+1F600 (4 bytes), U+10FFFF (largest). */
	check_string("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", -1,
		     "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"");
}

Test(json_writer, utf8_invalid_replaced)
{
	/* Stray continuation, impossible bytes. */
	check_string("a\x80z", -1, "\"a\\ufffdz\"");
	check_string("\xff\xfe", -1, "\"\\ufffd\\ufffd\"");
	/* Overlong '/' and overlong 3-byte form: every byte replaced. */
	check_string("\xc0\xaf", -1, "\"\\ufffd\\ufffd\"");
	check_string("\xe0\x80\xaf", -1, "\"\\ufffd\\ufffd\\ufffd\"");
	/* UTF-16 surrogate U+D800 and U+110000 are not valid UTF-8. */
	check_string("\xed\xa0\x80", -1, "\"\\ufffd\\ufffd\\ufffd\"");
	check_string("\xf4\x90\x80\x80", -1, "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
	/* A sequence cut by the end of the string, then by a plain character. */
	check_string("x\xe2\x82", -1, "\"x\\ufffd\\ufffd\"");
	check_string("\xe2\x82z", -1, "\"\\ufffd\\ufffdz\"");
	/* A sequence cut by the length limit must not read past it. */
	check_string("\xc3\xa9", 1, "\"\\ufffd\"");
}

Test(json_writer, string_len_stops_at_len_or_nul)
{
	check_string("abcdef", 3, "\"abc\"");
	check_string("ab\0cd", 5, "\"ab\"");
	check_string("abc", 0, "\"\"");
}

Test(json_writer, keys_are_escaped)
{
	struct jbuf b;
	char *out;
	int st;

	jbuf_open(&b);
	json_writer__begin_object(&b.w);
	json_writer__field_u64(&b.w, "a\"b\n", 1);
	json_writer__end_object(&b.w);
	out = jbuf_close(&b, &st);
	cr_assert_eq(st, 0);
	cr_assert_str_eq(out, "{\"a\\\"b\\n\":1}");
	free(out);
}

Test(json_writer, misuse_is_reported)
{
	struct jbuf b;
	char *out;
	int st;

	/* A value inside an object without a key. */
	jbuf_open(&b);
	json_writer__begin_object(&b.w);
	json_writer__u64(&b.w, 1);
	json_writer__end_object(&b.w);
	out = jbuf_close(&b, &st);
	cr_assert_eq(st, -EINVAL);
	free(out);

	/* A key in an array, at top level, two keys in a row. */
	jbuf_open(&b);
	json_writer__begin_array(&b.w);
	json_writer__key(&b.w, "k");
	out = jbuf_close(&b, &st);
	cr_assert_eq(st, -EINVAL);
	free(out);

	jbuf_open(&b);
	json_writer__key(&b.w, "k");
	out = jbuf_close(&b, &st);
	cr_assert_eq(st, -EINVAL);
	free(out);

	jbuf_open(&b);
	json_writer__begin_object(&b.w);
	json_writer__key(&b.w, "a");
	json_writer__key(&b.w, "b");
	out = jbuf_close(&b, &st);
	cr_assert_eq(st, -EINVAL);
	free(out);

	/* Mismatched and unbalanced ends; a dangling key. */
	jbuf_open(&b);
	json_writer__begin_object(&b.w);
	json_writer__end_array(&b.w);
	out = jbuf_close(&b, &st);
	cr_assert_eq(st, -EINVAL);
	free(out);

	jbuf_open(&b);
	json_writer__end_object(&b.w);
	out = jbuf_close(&b, &st);
	cr_assert_eq(st, -EINVAL);
	free(out);

	jbuf_open(&b);
	json_writer__begin_object(&b.w);
	json_writer__key(&b.w, "a");
	json_writer__end_object(&b.w);
	out = jbuf_close(&b, &st);
	cr_assert_eq(st, -EINVAL);
	free(out);
}

Test(json_writer, depth_limit)
{
	struct jbuf b;
	char *out;
	int i, st;

	jbuf_open(&b);
	for (i = 0; i < JSON_WRITER_MAX_DEPTH; i++)
		json_writer__begin_array(&b.w);
	for (i = 0; i < JSON_WRITER_MAX_DEPTH; i++)
		json_writer__end_array(&b.w);
	out = jbuf_close(&b, &st);
	cr_assert_eq(st, 0);
	free(out);

	jbuf_open(&b);
	for (i = 0; i <= JSON_WRITER_MAX_DEPTH; i++)
		json_writer__begin_array(&b.w);
	for (i = 0; i <= JSON_WRITER_MAX_DEPTH; i++)
		json_writer__end_array(&b.w);
	out = jbuf_close(&b, &st);
	cr_assert_eq(st, -EINVAL);
	free(out);
}

Test(json_writer, write_error_is_reported)
{
	struct json_writer w;
	FILE *f = fopen("/dev/full", "w");

	cr_assert_not_null(f);
	/* Unbuffered, so the failing write happens now rather than at fclose(). */
	setvbuf(f, NULL, _IONBF, 0);
	json_writer__init(&w, f);
	json_writer__begin_object(&w);
	json_writer__end_object(&w);
	cr_assert_eq(json_writer__status(&w), -ENOSPC); /* what write(2) said */
	fclose(f);
}

Test(util, maps_lines_parse)
{
	char file[] = "7f3a1c000000-7f3a1c022000 r-xp 00026000 fe:01 1312       "
		      "            /usr/lib/x86_64-linux-gnu/libc.so.6";
	char spaced[] = "55d0c0a00000-55d0c0a01000 r--p 00000000 08:10 42 /tmp/a dir/b (deleted)";
	char anon[] = "7ffd5b9e1000-7ffd5ba02000 rw-p 00000000 00:00 0";
	char vdso[] = "7ffd5bbf0000-7ffd5bbf2000 r-xp 00000000 00:00 0                   [vdso]";
	char junk[] = "not a maps line";
	struct util_maps_line m;

	cr_assert_eq(util__parse_maps_line(file, &m), 0);
	cr_assert_eq(m.start, 0x7f3a1c000000ull);
	cr_assert_eq(m.end, 0x7f3a1c022000ull);
	cr_assert_eq(m.pgoff, 0x26000ull);
	cr_assert_eq(m.maj, 0xfe);
	cr_assert_eq(m.min, 1);
	cr_assert_eq(m.ino, 1312);
	cr_assert_str_eq(m.perms, "r-xp");
	cr_assert_str_eq(m.path, "/usr/lib/x86_64-linux-gnu/libc.so.6");

	cr_assert_eq(util__parse_maps_line(spaced, &m), 0);
	cr_assert_eq(m.maj, 8);
	cr_assert_eq(m.min, 0x10);
	cr_assert_str_eq(m.path, "/tmp/a dir/b (deleted)");

	cr_assert_eq(util__parse_maps_line(anon, &m), 0);
	cr_assert_eq(m.ino, 0);
	cr_assert_str_eq(m.path, "");
	cr_assert_str_eq(m.perms, "rw-p");

	cr_assert_eq(util__parse_maps_line(vdso, &m), 0);
	cr_assert_str_eq(m.path, "[vdso]");

	cr_assert_eq(util__parse_maps_line(junk, &m), -EINVAL);

	/* the kernel's escape of a newline in a file name is undone */
	char nl[] = "55d0c0a00000-55d0c0a01000 r-xp 00001000 08:10 43 /tmp/nl\\012x\\012";
	cr_assert_eq(util__parse_maps_line(nl, &m), 0);
	cr_assert_str_eq(m.path, "/tmp/nl\nx\n");
}

Test(util, utf8_len_accepts_only_well_formed)
{
	cr_assert_eq(util__utf8_len("a", 1), 1);
	cr_assert_eq(util__utf8_len("\xc3\xa9", 2), 2);
	cr_assert_eq(util__utf8_len("\xe2\x82\xac", 3), 3);
	cr_assert_eq(util__utf8_len("\xf0\x9f\x98\x80", 4), 4);
	cr_assert_eq(util__utf8_len("\xf4\x8f\xbf\xbf", 4), 4); /* U+10FFFF */
	cr_assert_eq(util__utf8_len("\xe2\x82\xac", 2), 0);	/* cut */
	cr_assert_eq(util__utf8_len("\x80", 1), 0);		/* a stray continuation */
	cr_assert_eq(util__utf8_len("\xc0\xaf", 2), 0);	/* overlong */
	cr_assert_eq(util__utf8_len("\xe0\x80\xaf", 3), 0);
	cr_assert_eq(util__utf8_len("\xf0\x80\x80\xaf", 4), 0);
	cr_assert_eq(util__utf8_len("\xed\xa0\x80", 3), 0);	/* a surrogate */
	cr_assert_eq(util__utf8_len("\xf4\x90\x80\x80", 4), 0); /* above U+10FFFF */
	cr_assert_eq(util__utf8_len("\xfe", 1), 0);
	cr_assert_eq(util__utf8_len("a", 0), 0);
}

Test(util, utf8_copy_replaces_and_cuts_at_characters)
{
	char out[8], *d;

	cr_assert(util__utf8_valid("plain \xc3\xa9t\xc3\xa9"));
	cr_assert_not(util__utf8_valid("abcdefghijklmn\xe2"));
	cr_assert_str_eq(util__utf8_copy(out, sizeof(out), "x\xfe"), "x\xef\xbf\xbd");
	/* whole characters only: the second U+FFFD does not fit in 8 bytes */
	cr_assert_str_eq(util__utf8_copy(out, sizeof(out), "ab\xff\xff"), "ab\xef\xbf\xbd");
	cr_assert_str_eq(util__utf8_copy(out, sizeof(out), "\xe2\x82\xac\xe2\x82\xac"),
			 "\xe2\x82\xac\xe2\x82\xac");
	cr_assert_str_eq(util__utf8_copy(out, 4, "\xe2\x82\xac\xe2\x82\xac"), "\xe2\x82\xac");
	d = util__utf8_dup("a\xff\xfe\xed\xa0\x80" "b");
	cr_assert_str_eq(d, "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "b");
	cr_assert(util__utf8_valid(d));
	free(d);
}

#define FFFD UTIL_UTF8_REPLACEMENT
#define EURO "\xe2\x82\xac"

/* ?comm= takes a comm's bytes or the comm as shown: every U+FFFD may stand for one byte */
Test(util, is_comm_takes_raw_and_shown_names)
{
	char shown[UTIL_UTF8_COMM_LEN], raw[17];

	memset(raw, 0xff, 15);
	raw[15] = '\0';
	cr_assert(util__is_comm("a"));
	cr_assert(util__is_comm("0123456789abcde"));
	cr_assert(util__is_comm(raw));
	cr_assert(util__is_comm(util__utf8_copy(shown, sizeof(shown), raw)));
	cr_assert_eq(strlen(shown), 45);
	cr_assert(util__is_comm(FFFD FFFD FFFD FFFD FFFD FFFD));
	cr_assert(util__is_comm("0123456789abcd" FFFD));
	cr_assert_not(util__is_comm("0123456789abcde" FFFD));
	/* other characters count all their bytes */
	cr_assert(util__is_comm(EURO EURO EURO EURO EURO));
	cr_assert_not(util__is_comm(EURO EURO EURO EURO EURO EURO));
	cr_assert_not(util__is_comm(""));
	cr_assert_not(util__is_comm("0123456789abcdef"));
	/* 16 bytes that are not UTF-8 are neither a comm nor a shown one */
	memset(raw, 0xff, 16);
	raw[16] = '\0';
	cr_assert_not(util__is_comm(raw));
}

struct maps_seen {
	char exe[4096];
	int lines, exe_exec;
};

static bool note_line(void *ctx, const struct util_maps_line *m)
{
	struct maps_seen *c = ctx;

	c->lines++;
	if (!strcmp(m->path, c->exe) && m->perms[2] == 'x')
		c->exe_exec++;
	return true;
}

static bool stop_at_first(void *ctx, const struct util_maps_line *m)
{
	(void)m;
	(*(int *)ctx)++;
	return false;
}

Test(util, maps_of_a_process)
{
	struct maps_seen c = {};
	ssize_t n = readlink("/proc/self/exe", c.exe, sizeof(c.exe) - 1);
	int first = 0;

	cr_assert_gt(n, 0);
	cr_assert_eq(util__for_each_maps_line(getpid(), note_line, &c), 0);
	/* our own code is mapped executable, and there are more lines than that */
	cr_assert_eq(c.exe_exec, 1, "%d executable mappings of %s", c.exe_exec, c.exe);
	cr_assert_gt(c.lines, 5);
	cr_assert_eq(util__for_each_maps_line(getpid(), stop_at_first, &first), 0);
	cr_assert_eq(first, 1);
	cr_assert_eq(util__for_each_maps_line(INT32_MAX, note_line, &c), -ESRCH);
}

Test(util, write_error_asks_the_file_again)
{
	FILE *f = fopen("/dev/full", "w");

	cr_assert_not_null(f);
	fputs("buffered", f);
	cr_assert_neq(fflush(f), 0);
	fputs("more", f);
	/* errno moved on since the failed write (an unrelated open, say) */
	errno = ENOENT;
	cr_assert_eq(util__write_error(f), -ENOSPC);
	fclose(f);
}

Test(util, kernel_dev)
{
	cr_assert_eq(util__kernel_dev(makedev(8, 16)), 8u << 20 | 16);
	cr_assert_eq(util__kernel_dev(makedev(259, 3)), 259u << 20 | 3);
}

Test(util, grow_doubles_when_full)
{
	size_t cap = 0;
	int *a = util__grow(NULL, &cap, 0, sizeof(int), 4), *b;

	cr_assert_not_null(a);
	cr_assert_eq(cap, 4);
	for (int i = 0; i < 4; i++)
		a[i] = i;
	cr_assert_eq(util__grow(a, &cap, 3, sizeof(int), 4), a); /* room: the same array */
	cr_assert_eq(cap, 4);
	b = util__grow(a, &cap, 4, sizeof(int), 4);
	cr_assert_not_null(b);
	cr_assert_eq(cap, 8);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(b[i], i);
	free(b);
}

Test(util, reserve_doubles_to_the_need)
{
	size_t cap = 0, small = 8;
	long *a = NULL, *keep;

	cr_assert_eq(util__reserve(&a, &cap, 0, sizeof(*a), 64), 0);
	cr_assert_null(a); /* nothing needed: nothing allocated */
	cr_assert_eq(util__reserve(&a, &cap, 1, sizeof(*a), 64), 0);
	cr_assert_eq(cap, 64);
	for (int i = 0; i < 64; i++)
		a[i] = i;
	cr_assert_eq(util__reserve(&a, &cap, 64, sizeof(*a), 64), 0);
	cr_assert_eq(cap, 64);
	cr_assert_eq(util__reserve(&a, &cap, 300, sizeof(*a), 64), 0); /* several doublings */
	cr_assert_eq(cap, 512);
	for (int i = 0; i < 64; i++)
		cr_assert_eq(a[i], i);
	/* overflow: refused, the array and its capacity unchanged */
	keep = a;
	cr_assert_eq(util__reserve(&a, &cap, SIZE_MAX / 4, sizeof(*a), 64), -ENOMEM);
	cr_assert_eq(a, keep);
	cr_assert_eq(cap, 512);
	free(a);
	a = NULL;
	cr_assert_eq(util__reserve(&a, &small, 4, sizeof(*a), 64), 0); /* room already */
	cr_assert_null(a);
}
