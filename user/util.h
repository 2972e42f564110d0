/* SPDX-License-Identifier: MIT */
/* Small helpers: human-readable sizes, strict number parsing for the CLI, clocks, maps lines. */
#ifndef ASZ_UTIL_H
#define ASZ_UTIL_H

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <linux/types.h>

/*
 * Room for need elements in *arrp, an array of *cap elements of size bytes: its capacity
 * doubled (from first where it has none) until it holds them. 0, or -ENOMEM (then *arrp and
 * *cap are unchanged). The one growing step of the project's arrays.
 */
int util__reserve(void *arrp, size_t *cap, size_t need, size_t size, size_t first);

/*
 * Room for one more element in arr, nr of its *cap used: arr itself, or its copy doubled (as
 * util__reserve). NULL if out of memory (arr and *cap then unchanged).
 */
void *util__grow(void *arr, size_t *cap, size_t nr, size_t size, size_t first);

/* Large enough for any util__humanize_bytes() result, e.g. "-1023.9 EiB". */
#define UTIL_HUMAN_LEN 24

/*
 * Format bytes in binary units: "512 B", "1.5 KiB", "4.0 MiB", "-1.5 KiB". Values below 1 KiB
 * are exact, larger ones have one decimal. With plus, positive values get a leading '+' (for
 * growth columns); zero never has a sign. Writes at most size bytes (NUL included) into buf and
 * returns buf.
 */
char *util__humanize_bytes(char *buf, size_t size, __s64 bytes, bool plus);

/*
 * Strict parsing of a whole string as an unsigned decimal integer: no sign, no blanks, no
 * trailing characters. Returns 0, -EINVAL (empty, junk, negative) or -ERANGE (overflow);
 * *out is written only on success.
 */
int util__parse_u64(const char *s, __u64 *out);
/* util__parse_u64 within [min, max]; -EINVAL otherwise (*out then untouched). */
int util__parse_range(const char *s, __u64 min, __u64 max, __u64 *out);

/*
 * Strict parsing of a whole string as a finite, non-negative decimal number ("5", "0.5", ".5",
 * "1e3"). Rejects signs, blanks, hex, inf, nan and trailing characters (-EINVAL), and values
 * that overflow or underflow a double (-ERANGE). *out is written only on success.
 */
int util__parse_double(const char *s, double *out);

/*
 * After a write to f failed: what write(2) said (-ENOSPC, -EPIPE...), asked again by flushing
 * what is left (errno may have moved on since), else the errno of then, else -EIO.
 */
int util__write_error(FILE *f);

/* CLOCK_MONOTONIC in nanoseconds: the clock bpf_ktime_get_ns() uses. */
__u64 util__mono_ns(void);

/*
 * Is a signal that ends a run pending: SIGINT, SIGTERM, SIGHUP, or SIGQUIT (top's Ctrl-\)?
 * (The commands block them and read them from a signalfd.)
 */
bool util__ending_signal_pending(void);

/* Wall-clock time as unix seconds with sub-second precision. */
double util__wall_s(void);

/* The part of path after its last '/' (path itself if none; NULL stays NULL). */
const char *util__basename(const char *path);

/* A name the user gave, as an error shows it: '' if empty (not a bare ": No such file"). */
const char *util__name(const char *name);

/* Is path glibc's C library by its file name (libc.so.6, or libc-2.NN.so before glibc 2.34)? */
bool util__is_libc_name(const char *path);

/*
 * A demangled C++ function name shortened for people (the text report, top): template
 * arguments become "<...>" and std::string is named so; operators spelled with < or > stay.
 * "std::vector<int, std::allocator<int> >::push_back(int const&)" gives
 * "std::vector<...>::push_back(int const&)". Other names are copied. Writes at most size bytes
 * (NUL included) into out and returns out.
 */
char *util__short_func(const char *name, char *out, size_t size);

/*
 * Bytes of the well-formed UTF-8 sequence at s (at most left bytes): 1 for ASCII, 0 when the
 * bytes there are not UTF-8 (a stray continuation byte, a cut sequence, an overlong form, a
 * surrogate, a code point above U+10FFFF).
 */
size_t util__utf8_len(const char *s, size_t left);

/* U+FFFD, what every writer puts in place of a byte that is not UTF-8 */
#define UTIL_UTF8_REPLACEMENT "\xef\xbf\xbd"

/* Is all of s well-formed UTF-8? */
bool util__utf8_valid(const char *s);

/*
 * src as valid UTF-8, every byte that is not becoming U+FFFD, into dst (at most size bytes, NUL
 * included, whole characters only); returns dst. Names from the kernel and the file system are
 * bytes: a comm cut at 15 bytes can end inside a character.
 */
char *util__utf8_copy(char *dst, size_t size, const char *src);
/* The same in a new string (NULL when out of memory). */
char *util__utf8_dup(const char *s);

/* Room for a comm made valid UTF-8 (each byte may become 3). */
#define UTIL_UTF8_COMM_LEN (3 * 16 + 1)

/*
 * Can s name a process: a comm's bytes (1-15), or a comm as the outputs show it (that of
 * util__utf8_copy(), each U+FFFD standing for at least one byte)? Such an s fits in
 * UTIL_UTF8_COMM_LEN as it is.
 */
bool util__is_comm(const char *s);

/* A device as the kernel encodes it (i_sb->s_dev) and /proc/PID/maps shows it: major<<20|minor. */
__u32 util__kernel_dev(__u64 st_dev);

/* One line of /proc/PID/maps. */
struct util_maps_line {
	__u64 start, end, pgoff, ino;
	__u32 maj, min;	  /* the device as maps shows it */
	char perms[8];	  /* "r-xp" */
	const char *path; /* the rest of the line ("" for anonymous memory), in the line parsed */
};

/* Parse one line of /proc/PID/maps, without its newline, in place: 0 or -EINVAL. */
int util__parse_maps_line(char *line, struct util_maps_line *m);

/*
 * Call fn with each line of /proc/PID/maps until it returns false. 0, -ESRCH (no such process)
 * or another negative errno.
 */
int util__for_each_maps_line(int pid, bool (*fn)(void *ctx, const struct util_maps_line *m),
			     void *ctx);

#endif
