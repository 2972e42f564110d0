// SPDX-License-Identifier: MIT
/*
 * Demo workload for asizeof-bpf, a C twin of Pympler's classic asizeof example: objects made of
 * smaller objects, most of them thrown away, a few kept. Run it under the profiler:
 *
 *	asizeof-bpf -i 1 -n 5 -- ./demo
 *
 * 1000 iterations over about 3 seconds. Each one creates an Empty object and a Dummy object
 * (a list of strings, a small key/value table and a 4 MiB buffer). Every 100th Dummy and every
 * 10th Empty are kept for good, so the profile grows steadily: the buffer's call site in
 * dummy_new_buffer() ends up the top grower with 10 x 4 MiB = 40 MiB live. The last iteration
 * keeps one too, so the final report's last interval still shows the buffer growing.
 *
 * Build: gcc -O2 -g -Wall -o demo demo.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ITERATIONS 1000
#define KEEP_DUMMY_EVERY 100
#define KEEP_EMPTY_EVERY 10
#define NR_STRINGS 8
#define NR_KV 4
#define BUFFER_SIZE (4u << 20)
#define SLEEP_US 3000

/* Pympler's "class Empty: pass": an object with no data of its own. */
struct empty {
	struct empty *next; /* only to chain the kept ones */
};

struct kv {
	char *key;
	long value;
};

struct dummy {
	char **strings; /* like a Python list of str */
	size_t nr_strings;
	struct kv *table; /* like a small dict */
	size_t nr_kv;
	char *buffer;
	size_t buffer_len;
};

/*
 * Everything kept is reachable from these volatile globals, so the compiler can neither drop an
 * allocation nor pair a malloc() with its free() and remove both.
 */
static struct dummy *volatile kept_dummies[ITERATIONS / KEEP_DUMMY_EVERY];
static struct empty *volatile kept_empties;
static void *volatile sink;

static void die(const char *what)
{
	fprintf(stderr, "demo: out of memory (%s)\n", what);
	exit(1);
}

/*
 * Not inlined nor cloned, and the buffer is touched after malloc() so the call is no tail call: the
 * allocation's return address stays inside this function, which is what the profiler shows.
 */
static __attribute__((noinline, noclone)) char *dummy_new_buffer(size_t len, int seed)
{
	char *buf = malloc(len);

	if (!buf)
		die("buffer");
	/* One byte per end is enough to make the block real without paying for 4 GB of stores. */
	buf[0] = (char)seed;
	buf[len - 1] = (char)(seed >> 8);
	return buf;
}

static __attribute__((noinline, noclone)) char **dummy_new_strings(size_t n, int seed)
{
	char **strings = malloc(n * sizeof(*strings));
	char text[64];
	size_t i;

	if (!strings)
		die("string list");
	for (i = 0; i < n; i++) {
		snprintf(text, sizeof(text), "string %zu of dummy %d", i, seed);
		strings[i] = strdup(text);
		if (!strings[i])
			die("string");
	}
	return strings;
}

static __attribute__((noinline, noclone)) struct kv *dummy_new_table(size_t n, int seed)
{
	struct kv *table = calloc(n, sizeof(*table));
	char key[32];
	size_t i;

	if (!table)
		die("table");
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "key%zu", i);
		table[i].key = strdup(key);
		if (!table[i].key)
			die("key");
		table[i].value = seed * (long)n + (long)i;
	}
	return table;
}

static __attribute__((noinline, noclone)) struct dummy *dummy_new(int seed)
{
	struct dummy *d = malloc(sizeof(*d));

	if (!d)
		die("dummy");
	d->nr_strings = NR_STRINGS;
	d->strings = dummy_new_strings(d->nr_strings, seed);
	d->nr_kv = NR_KV;
	d->table = dummy_new_table(d->nr_kv, seed);
	d->buffer_len = BUFFER_SIZE;
	d->buffer = dummy_new_buffer(d->buffer_len, seed);
	return d;
}

static void dummy_free(struct dummy *d)
{
	size_t i;

	for (i = 0; i < d->nr_strings; i++)
		free(d->strings[i]);
	free(d->strings);
	for (i = 0; i < d->nr_kv; i++)
		free(d->table[i].key);
	free(d->table);
	free(d->buffer);
	free(d);
}

static __attribute__((noinline, noclone)) struct empty *empty_new(void)
{
	struct empty *e = malloc(sizeof(*e));

	if (!e)
		die("empty");
	e->next = NULL;
	return e;
}

int main(void)
{
	size_t nr_kept = 0, nr_empties = 0;
	struct empty *e;
	struct dummy *d;
	int i;

	for (i = 0; i < ITERATIONS; i++) {
		e = empty_new();
		sink = e;
		if (i % KEEP_EMPTY_EVERY == KEEP_EMPTY_EVERY - 1) {
			e->next = kept_empties;
			kept_empties = e;
			nr_empties++;
		} else {
			free(e);
		}

		d = dummy_new(i);
		sink = d;
		if (i % KEEP_DUMMY_EVERY == KEEP_DUMMY_EVERY - 1)
			kept_dummies[nr_kept++] = d;
		else
			dummy_free(d);
		/* Spread the work over ~3 s so that reports at -i 1 see steady growth. */
		usleep(SLEEP_US);
	}
	fprintf(stderr, "demo: %d iterations, kept %zu dummies (%zu MiB of buffers), %zu empties\n",
		ITERATIONS, nr_kept, nr_kept * (BUFFER_SIZE >> 20), nr_empties);
	return 0;
}
