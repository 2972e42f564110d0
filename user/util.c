// SPDX-License-Identifier: MIT
/* Small helpers: human-readable sizes, strict number parsing for the CLI, clocks, maps lines. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/sysmacros.h>
#include "util.h"

char *util__humanize_bytes(char *buf, size_t size, __s64 bytes, bool plus)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	const char *sign = "";
	__u64 mag;
	double v;
	size_t unit = 0;

	if (!buf || !size)
		return buf;
	/* Negate in unsigned arithmetic so that INT64_MIN has a magnitude too. */
	if (bytes < 0) {
		sign = "-";
		mag = -(__u64)bytes;
	} else {
		sign = (plus && bytes > 0) ? "+" : "";
		mag = bytes;
	}
	if (mag < 1024) {
		snprintf(buf, size, "%s%llu B", sign, (unsigned long long)mag);
		return buf;
	}
	v = (double)mag / 1024.0;
	while (v >= 1024.0 && unit + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024.0;
		unit++;
	}
	/* "1024.0 KiB" would print for 1023.95 KiB and up: show "1.0 MiB" instead. */
	if (v >= 1023.95 && unit + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024.0;
		unit++;
	}
	snprintf(buf, size, "%s%.1f %s", sign, v, units[unit]);
	return buf;
}

int util__parse_u64(const char *s, __u64 *out)
{
	unsigned long long v;
	char *end;

	/* strtoull() would accept blanks, signs ("-1" wraps) and an empty string: refuse them. */
	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end)
		return -EINVAL;
	if (errno == ERANGE)
		return -ERANGE;
	if (errno)
		return -EINVAL;
	*out = v;
	return 0;
}

int util__parse_double(const char *s, double *out)
{
	double v;
	char *end;

	/* Only plain decimal notation: strtod() also takes blanks, signs, hex, "inf" and "nan". */
	if (!s || !((*s >= '0' && *s <= '9') || *s == '.'))
		return -EINVAL;
	if (s[strspn(s, "0123456789.eE+-")])
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end)
		return -EINVAL;
	if (errno == ERANGE)
		return -ERANGE;
	if (errno || !isfinite(v))
		return -EINVAL;
	*out = v;
	return 0;
}

__u64 util__mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + (__u64)ts.tv_nsec;
}

bool util__ending_signal_pending(void)
{
	sigset_t set;

	return sigpending(&set) == 0 &&
	       (sigismember(&set, SIGINT) == 1 || sigismember(&set, SIGTERM) == 1 ||
		sigismember(&set, SIGHUP) == 1 || sigismember(&set, SIGQUIT) == 1);
}

double util__wall_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

size_t util__utf8_len(const char *s, size_t left)
{
	const unsigned char *p = (const unsigned char *)s;
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (!left)
		return 0;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0; /* overlong */
		else if (c == 0xed)
			hi = 0x9f; /* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90; /* overlong */
		else if (c == 0xf4)
			hi = 0x8f; /* above U+10FFFF */
	} else {
		return 0;
	}
	if (left < n || p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

bool util__utf8_valid(const char *s)
{
	size_t left = strlen(s), n;

	for (; left; s += n, left -= n) {
		n = util__utf8_len(s, left);
		if (!n)
			return false;
	}
	return true;
}

char *util__utf8_copy(char *dst, size_t size, const char *src)
{
	size_t len = strlen(src), i = 0, o = 0, n;

	if (!size)
		return dst;
	while (i < len) {
		n = util__utf8_len(src + i, len - i);
		if (o + (n ? n : 3) >= size)
			break; /* whole characters only */
		if (n) {
			memcpy(dst + o, src + i, n);
			i += n;
		} else {
			memcpy(dst + o, UTIL_UTF8_REPLACEMENT, 3);
			n = 3;
			i++;
		}
		o += n;
	}
	dst[o] = '\0';
	return dst;
}

char *util__utf8_dup(const char *s)
{
	size_t size = strlen(s) * 3 + 1; /* each bad byte grows to 3 */
	char *out = malloc(size);

	return out ? util__utf8_copy(out, size, s) : NULL;
}

bool util__is_comm(const char *s)
{
	size_t len = strlen(s), left = len, bytes = 0, n;

	if (!len)
		return false;
	if (len < 16)
		return true;
	for (; left; s += n, left -= n) {
		n = util__utf8_len(s, left);
		if (!n)
			return false;
		/* the fewest bytes it can stand for: a U+FFFD may be one byte that was not UTF-8 */
		bytes += n == 3 && memcmp(s, UTIL_UTF8_REPLACEMENT, 3) == 0 ? 1 : n;
	}
	return bytes < 16;
}

__u32 util__kernel_dev(__u64 st_dev)
{
	return major(st_dev) << 20 | minor(st_dev);
}

int util__write_error(FILE *f)
{
	int then = errno;

	errno = 0;
	if (f && fflush(f) && errno)
		return -errno;
	return then ? -then : -EIO;
}

const char *util__basename(const char *path)
{
	const char *slash;

	if (!path)
		return NULL;
	slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

const char *util__name(const char *name)
{
	return name && name[0] ? name : "''";
}

bool util__is_libc_name(const char *path)
{
	const char *base = util__basename(path);

	return base && (strncmp(base, "libc.so", 7) == 0 || strncmp(base, "libc-2.", 7) == 0);
}

int util__parse_range(const char *s, __u64 min, __u64 max, __u64 *out)
{
	__u64 v;

	if (util__parse_u64(s, &v) || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int util__parse_maps_line(char *line, struct util_maps_line *m)
{
	unsigned long long start, end, pgoff, ino;
	unsigned int maj, min;
	char *r, *w;
	int off = 0;

	if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu %n", &start, &end, m->perms, &pgoff, &maj,
		   &min, &ino, &off) < 7 ||
	    !off)
		return -EINVAL;
	m->start = start;
	m->end = end;
	m->pgoff = pgoff;
	m->ino = ino;
	m->maj = maj;
	m->min = min;
	m->path = line + off;
	/*
	 * The kernel writes a newline in a file name as \012 (and escapes nothing else: a file
	 * named with that literal text reads the same, and is taken for the newline).
	 */
	for (r = w = line + off; *r;) {
		if (strncmp(r, "\\012", 4) == 0) {
			*w++ = '\n';
			r += 4;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
	return 0;
}

int util__for_each_maps_line(int pid, bool (*fn)(void *ctx, const struct util_maps_line *m),
			     void *ctx)
{
	char path[64], *line = NULL;
	struct util_maps_line m;
	size_t cap = 0;
	ssize_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	f = fopen(path, "re");
	if (!f)
		return errno == ENOENT || errno == ESRCH ? -ESRCH : -errno;
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] == '\n')
			line[n - 1] = '\0';
		if (util__parse_maps_line(line, &m) == 0 && !fn(ctx, &m))
			break;
	}
	free(line);
	fclose(f);
	return 0;
}

/* Length of "operator" and the symbol after it when p starts an operator spelled with < or >. */
static size_t operator_len(const char *name, const char *p)
{
	static const char *const ops[] = {"<=>", "<<=", ">>=", "->*", "<<", ">>", "<=", ">=", "->",
					  "<",	 ">"};

	bool word_start = p == name || !(isalnum((unsigned char)p[-1]) || p[-1] == '_');

	if (!word_start || strncmp(p, "operator", 8))
		return 0;
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (!strncmp(p + 8, ops[i], strlen(ops[i])))
			return 8 + strlen(ops[i]);
	return 0;
}

static void put(char *out, size_t size, size_t *o, const char *s, size_t n)
{
	for (size_t i = 0; i < n && *o + 1 < size; i++)
		out[(*o)++] = s[i];
}

char *util__short_func(const char *name, char *out, size_t size)
{
	static const char str_long[] =
		"std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >";
	const size_t long_len = sizeof(str_long) - 1;
	size_t o = 0, n;
	int depth = 0;

	if (!size)
		return out;
	for (const char *p = name; *p;) {
		if (!strncmp(p, str_long, long_len)) {
			if (!depth)
				put(out, size, &o, "std::string", 11);
			p += long_len;
		} else if ((n = operator_len(name, p))) {
			if (!depth)
				put(out, size, &o, p, n);
			p += n;
		} else if (depth && p[0] == '-' && p[1] == '>') {
			p += 2; /* an arrow in a template argument (decltype): not its end */
		} else if (*p == '<') {
			if (!depth++)
				put(out, size, &o, "<...", 4);
			p++;
		} else if (*p == '>' && depth) {
			if (!--depth)
				put(out, size, &o, ">", 1);
			p++;
		} else {
			if (!depth)
				put(out, size, &o, p, 1);
			p++;
		}
	}
	if (depth)
		put(out, size, &o, ">", 1);
	out[o] = '\0';
	return out;
}

int util__reserve(void *arrp, size_t *cap, size_t need, size_t size, size_t first)
{
	void **arr = arrp, *p;
	size_t n = *cap ? *cap : first ? first : 1;

	if (need <= *cap)
		return 0;
	while (n < need) {
		if (n > SIZE_MAX / 2)
			return -ENOMEM;
		n *= 2;
	}
	if (!size || n > SIZE_MAX / size)
		return -ENOMEM;
	p = realloc(*arr, n * size);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = n;
	return 0;
}

void *util__grow(void *arr, size_t *cap, size_t nr, size_t size, size_t first)
{
	return util__reserve(&arr, cap, nr + 1, size, first) ? NULL : arr;
}
