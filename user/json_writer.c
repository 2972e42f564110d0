// SPDX-License-Identifier: MIT
/* A small streaming JSON writer; see json_writer.h. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "json_writer.h"
#include "util.h"

void json_writer__init(struct json_writer *w, FILE *f)
{
	memset(w, 0, sizeof(*w));
	w->f = f;
}

static void set_err(struct json_writer *w, int err)
{
	if (!w->err)
		w->err = err;
}

/* Kind of the innermost open level, 0 at top level or beyond the tracked depth. */
static char cur_kind(const struct json_writer *w)
{
	if (w->depth <= 0 || w->depth > JSON_WRITER_MAX_DEPTH)
		return 0;
	return w->kind[w->depth - 1];
}

/* Separator and checks before any value (scalar or container). */
static void before_value(struct json_writer *w)
{
	if (w->after_key) {
		w->after_key = false;
		return;
	}
	if (cur_kind(w) == '{')
		set_err(w, -EINVAL); /* a value inside an object needs a key first */
	if (w->need_comma)
		/* Several top-level values become JSON lines. */
		fputc(w->depth ? ',' : '\n', w->f);
}

/* Quoted, escaped string. Bytes that are not valid UTF-8 become U+FFFD so output stays valid. */
static void put_string(struct json_writer *w, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n;

	fputc('"', w->f);
	while (i < len && p[i]) {
		unsigned char c = p[i];

		switch (c) {
		case '"':
			fputs("\\\"", w->f);
			break;
		case '\\':
			fputs("\\\\", w->f);
			break;
		case '\b':
			fputs("\\b", w->f);
			break;
		case '\f':
			fputs("\\f", w->f);
			break;
		case '\n':
			fputs("\\n", w->f);
			break;
		case '\r':
			fputs("\\r", w->f);
			break;
		case '\t':
			fputs("\\t", w->f);
			break;
		default:
			if (c < 0x20 || c == 0x7f) {
				fprintf(w->f, "\\u%04x", c);
			} else if (c < 0x80) {
				fputc(c, w->f);
			} else {
				n = util__utf8_len((const char *)p + i, len - i);
				if (!n) {
					fputs("\\ufffd", w->f);
					break;
				}
				fwrite(p + i, 1, n, w->f);
				i += n;
				continue;
			}
		}
		i++;
	}
	fputc('"', w->f);
}

static void after_value(struct json_writer *w)
{
	w->need_comma = true;
}

static void begin(struct json_writer *w, char kind)
{
	before_value(w);
	fputc(kind, w->f);
	if (w->depth < JSON_WRITER_MAX_DEPTH)
		w->kind[w->depth] = kind;
	else
		set_err(w, -EINVAL);
	w->depth++;
	w->need_comma = false;
}

static void end(struct json_writer *w, char kind)
{
	if (w->depth <= 0) {
		set_err(w, -EINVAL);
		return;
	}
	if (cur_kind(w) != kind || w->after_key)
		set_err(w, -EINVAL);
	fputc(kind == '{' ? '}' : ']', w->f);
	w->depth--;
	w->after_key = false;
	after_value(w);
}

void json_writer__begin_object(struct json_writer *w)
{
	begin(w, '{');
}

void json_writer__end_object(struct json_writer *w)
{
	end(w, '{');
}

void json_writer__begin_array(struct json_writer *w)
{
	begin(w, '[');
}

void json_writer__end_array(struct json_writer *w)
{
	end(w, '[');
}

void json_writer__key(struct json_writer *w, const char *key)
{
	if (cur_kind(w) != '{' || w->after_key || !key)
		set_err(w, -EINVAL);
	if (w->need_comma)
		fputc(',', w->f);
	put_string(w, key ? key : "", (size_t)-1);
	fputc(':', w->f);
	w->need_comma = false;
	w->after_key = true;
}

void json_writer__string_len(struct json_writer *w, const char *s, size_t len)
{
	if (!s) {
		json_writer__null(w);
		return;
	}
	before_value(w);
	put_string(w, s, len);
	after_value(w);
}

void json_writer__string(struct json_writer *w, const char *s)
{
	json_writer__string_len(w, s, (size_t)-1);
}

void json_writer__s64(struct json_writer *w, __s64 v)
{
	before_value(w);
	fprintf(w->f, "%lld", (long long)v);
	after_value(w);
}

void json_writer__u64(struct json_writer *w, __u64 v)
{
	before_value(w);
	fprintf(w->f, "%llu", (unsigned long long)v);
	after_value(w);
}

void json_writer__double(struct json_writer *w, double v)
{
	char buf[40], *c;

	/* JSON has no NaN or infinity. */
	if (!isfinite(v)) {
		json_writer__null(w);
		return;
	}
	/*
	 * 15 significant digits read back exactly for most values and avoid printing 0.1 as
	 * 0.10000000000000001; the rest need 17.
	 */
	snprintf(buf, sizeof(buf), "%.15g", v);
	if (strtod(buf, NULL) != v)
		snprintf(buf, sizeof(buf), "%.17g", v);
	/* A locale with a decimal comma must not break the number. */
	c = strchr(buf, ',');
	if (c)
		*c = '.';
	before_value(w);
	fputs(buf, w->f);
	after_value(w);
}

void json_writer__bool(struct json_writer *w, bool v)
{
	before_value(w);
	fputs(v ? "true" : "false", w->f);
	after_value(w);
}

void json_writer__null(struct json_writer *w)
{
	before_value(w);
	fputs("null", w->f);
	after_value(w);
}

void json_writer__field_string(struct json_writer *w, const char *key, const char *s)
{
	json_writer__key(w, key);
	json_writer__string(w, s);
}

void json_writer__field_s64(struct json_writer *w, const char *key, __s64 v)
{
	json_writer__key(w, key);
	json_writer__s64(w, v);
}

void json_writer__field_u64(struct json_writer *w, const char *key, __u64 v)
{
	json_writer__key(w, key);
	json_writer__u64(w, v);
}

void json_writer__field_double(struct json_writer *w, const char *key, double v)
{
	json_writer__key(w, key);
	json_writer__double(w, v);
}

void json_writer__field_bool(struct json_writer *w, const char *key, bool v)
{
	json_writer__key(w, key);
	json_writer__bool(w, v);
}

void json_writer__field_null(struct json_writer *w, const char *key)
{
	json_writer__key(w, key);
	json_writer__null(w);
}

int json_writer__status(const struct json_writer *w)
{
	if (w->err)
		return w->err;
	if (ferror(w->f))
		return util__write_error(w->f);
	return 0;
}
