/* SPDX-License-Identifier: MIT */
/*
 * alloc_growth: allocates and frees on command, so a test can step the live bytes of two call
 * sites between the profiler's periodic reports without relying on timing.
 *
 * Prints "ready <pid>" on stdout, then reads commands from stdin, one per line:
 *   a SIZE COUNT   COUNT blocks of SIZE bytes from site_grow_a (kept)
 *   b SIZE COUNT   COUNT blocks of SIZE bytes from site_grow_b (kept)
 *   fa COUNT       free the COUNT most recent blocks of site_grow_a
 *   fb COUNT       free the COUNT most recent blocks of site_grow_b
 *   exit           (or EOF) exit at once, without freeing
 * After each command it prints "ok A_LIVE_BYTES A_LIVE_ALLOCS B_LIVE_BYTES B_LIVE_ALLOCS", the
 * expected live totals of the two sites, once all of the command's calls have returned.
 * Bad commands print "error ..." and are ignored.
 *
 * No stdio (it allocates): snprintf into a stack buffer plus write(2). Nothing else in the
 * process allocates (checked with gdb breakpoints on every allocator entry).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_KEEP 100000

struct pool {
	void *volatile p[MAX_KEEP];
	size_t size[MAX_KEEP];
	long n;
	long long live_bytes;
};

struct pool pool_a, pool_b;

static void say(const char *s)
{
	size_t len = strlen(s);
	while (len) {
		ssize_t n = write(1, s, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(98);
		s += n;
		len -= (size_t)n;
	}
}

__attribute__((noipa, used)) int site_grow_a(size_t size, long count)
{
	for (long i = 0; i < count; i++) {
		if (pool_a.n >= MAX_KEEP)
			return -1;
		void *p = malloc(size);
		if (!p)
			return -1;
		pool_a.p[pool_a.n] = p;
		pool_a.size[pool_a.n++] = size;
		pool_a.live_bytes += size;
	}
	return 0;
}

__attribute__((noipa, used)) int site_grow_b(size_t size, long count)
{
	for (long i = 0; i < count; i++) {
		if (pool_b.n >= MAX_KEEP)
			return -1;
		void *p = calloc(1, size);
		if (!p)
			return -1;
		pool_b.p[pool_b.n] = p;
		pool_b.size[pool_b.n++] = size;
		pool_b.live_bytes += size;
	}
	return 0;
}

static int release(struct pool *pl, long count)
{
	if (count > pl->n)
		return -1;
	for (long i = 0; i < count; i++) {
		pl->n--;
		free(pl->p[pl->n]);
		pl->live_bytes -= pl->size[pl->n];
	}
	return 0;
}

static int read_line(char *buf, size_t size)
{
	size_t n = 0;
	for (;;) {
		char c;
		ssize_t r = read(0, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			buf[n] = 0;
			return n > 0;
		}
		if (c == '\n')
			break;
		if (n + 1 < size)
			buf[n++] = c;
	}
	buf[n] = 0;
	return 1;
}

int main(void)
{
	char line[256], msg[320];
	snprintf(msg, sizeof(msg), "ready %d\n", (int)getpid());
	say(msg);
	while (read_line(line, sizeof(line))) {
		char cmd[8];
		long a = 0, b = 0;
		int n = sscanf(line, "%7s %ld %ld", cmd, &a, &b);
		int rc = -1;
		if (n >= 1 && !strcmp(cmd, "exit"))
			break;
		if (n == 3 && !strcmp(cmd, "a") && a >= 0 && b >= 0)
			rc = site_grow_a((size_t)a, b);
		else if (n == 3 && !strcmp(cmd, "b") && a >= 0 && b >= 0)
			rc = site_grow_b((size_t)a, b);
		else if (n == 2 && !strcmp(cmd, "fa") && a >= 0)
			rc = release(&pool_a, a);
		else if (n == 2 && !strcmp(cmd, "fb") && a >= 0)
			rc = release(&pool_b, a);
		if (rc)
			snprintf(msg, sizeof(msg), "error %s\n", line);
		else
			snprintf(msg, sizeof(msg), "ok %lld %ld %lld %ld\n", pool_a.live_bytes, pool_a.n,
				 pool_b.live_bytes, pool_b.n);
		say(msg);
	}
	return 0;
}
