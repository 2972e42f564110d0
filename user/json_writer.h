/* SPDX-License-Identifier: MIT */
/*
 * A small streaming JSON writer: values go straight to a FILE*, commas and nesting are tracked
 * here. No allocation; misuse (a value without a key inside an object, unbalanced ends, nesting
 * deeper than JSON_WRITER_MAX_DEPTH) is recorded and reported by json_writer__status().
 */
#ifndef ASZ_JSON_WRITER_H
#define ASZ_JSON_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <linux/types.h>

#define JSON_WRITER_MAX_DEPTH 32

struct json_writer {
	FILE *f;
	int depth;
	int err;	/* first error: -EINVAL misuse, -EIO write error */
	bool need_comma; /* a value was already written at this level */
	bool after_key;	/* a key was written, its value is next */
	char kind[JSON_WRITER_MAX_DEPTH]; /* '{' or '[' per open level */
};

void json_writer__init(struct json_writer *w, FILE *f);

void json_writer__begin_object(struct json_writer *w);
void json_writer__end_object(struct json_writer *w);
void json_writer__begin_array(struct json_writer *w);
void json_writer__end_array(struct json_writer *w);
/* The key of the next value inside an object; escaped like a string. */
void json_writer__key(struct json_writer *w, const char *key);

/* NUL-terminated string; NULL writes null. */
void json_writer__string(struct json_writer *w, const char *s);
/* At most len bytes of s, stopping at a NUL; NULL writes null. */
void json_writer__string_len(struct json_writer *w, const char *s, size_t len);
void json_writer__s64(struct json_writer *w, __s64 v);
void json_writer__u64(struct json_writer *w, __u64 v);
/* Shortest text that reads back as the same double; NaN and infinities write null. */
void json_writer__double(struct json_writer *w, double v);
void json_writer__bool(struct json_writer *w, bool v);
void json_writer__null(struct json_writer *w);

/* key + value in one call. */
void json_writer__field_string(struct json_writer *w, const char *key, const char *s);
void json_writer__field_s64(struct json_writer *w, const char *key, __s64 v);
void json_writer__field_u64(struct json_writer *w, const char *key, __u64 v);
void json_writer__field_double(struct json_writer *w, const char *key, double v);
void json_writer__field_bool(struct json_writer *w, const char *key, bool v);
void json_writer__field_null(struct json_writer *w, const char *key);

/*
 * 0 if everything written so far is well-formed and reached the stream; else the first error
 * (-EINVAL misuse, -EIO write error). Does not flush.
 */
int json_writer__status(const struct json_writer *w);

#endif
