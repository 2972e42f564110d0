/* SPDX-License-Identifier: MIT */
/*
 * stack_churn: ever-new call stacks around a few kept blocks, for the retirement of idle
 * aggregates (a small --max-stacks must not fill while the program keeps making new stacks).
 *
 * Prints "ready PID", then reads commands, one a line:
 *   hold          keep HOLD blocks of 1000 bytes from hold_site(); prints "held"
 *   churn A B     one malloc(48) + free at each path A..B-1 (each its own stack: a chain of
 *                 DEPTH calls, path_a() or path_b() at each level by the path's bits); "done"
 *   storm T S     T threads for S seconds on paths of a moving window (see storm_thread()), each
 *                 path keeping its last block, then all freed but the held ones; "stormed N"
 *                 (allocations made)
 *   keep A B      at each path A..B-1 one malloc(48) kept (the path's last one freed); "kept"
 *   pin           run on the first CPU allowed from now on (the unwinder's per-CPU memory of
 *                 the last stack is met again); "pinned"
 *   expect        prints the expectation: {"pid":P,"held_bytes":..,"held_allocs":..,
 *                 "allocs":..,"alloc_bytes":..} (the process's allocations since "ready")
 *   quit          exits
 * No stdio after start (write(2)); pointers escape through volatile globals.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEPTH 10
#define PATHS (1 << DEPTH)
#define HOLD 10
#define HOLD_SIZE 1000
#define LEAF_SIZE 48

void *volatile held[HOLD], *volatile sink;
void *volatile kept[PATHS];
static unsigned long churned, stormed;
static unsigned int kept_now; /* blocks kept by "keep" */
static int holding;

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

__attribute__((noinline, noclone)) static void hold_site(void)
{
	for (int i = 0; i < HOLD; i++)
		held[i] = malloc(HOLD_SIZE);
}

/* keep < 0: malloc and free; else keep the block in kept[keep], freeing the one there */
__attribute__((noinline, noclone)) static void leaf(int keep)
{
	void *p = malloc(LEAF_SIZE);

	if (keep < 0) {
		sink = p;
		free(p);
		return;
	}
	p = __atomic_exchange_n(&kept[keep], p, __ATOMIC_ACQ_REL);
	free(p);
}

static void step(unsigned int path, int d, int keep);

/* the empty asm after each call: no tail call, so each level is a frame of the stack */
__attribute__((noinline, noclone)) static void path_a(unsigned int path, int d, int keep)
{
	step(path, d + 1, keep);
	asm volatile("" ::: "memory");
}

__attribute__((noinline, noclone)) static void path_b(unsigned int path, int d, int keep)
{
	step(path, d + 1, keep);
	asm volatile("" ::: "memory");
}

__attribute__((noinline, noclone)) static void step(unsigned int path, int d, int keep)
{
	if (d == DEPTH)
		leaf(keep);
	else if (path >> d & 1)
		path_a(path, d, keep);
	else
		path_b(path, d, keep);
	asm volatile("" ::: "memory");
}

struct storm {
	double until, secs;
	unsigned int seed;
	unsigned long allocs;
};

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/*
 * Paths from a window of 64 that moves on by 16 every 50 ms (and wraps): the paths behind it
 * have their blocks freed and go idle, to be retired, and come back at the wrap.
 */
static void *storm_thread(void *arg)
{
	struct storm *s = arg;
	double start = s->until - s->secs;

	for (double t = now(); t < s->until; t = now()) {
		unsigned int base = (unsigned int)((t - start) / 0.05) * 16;

		for (int i = 0; i < 16; i++) {
			unsigned int path = (base + rand_r(&s->seed) % 64) % PATHS;
			unsigned int behind = (base + PATHS - 1 - rand_r(&s->seed) % 32) % PATHS;

			step(path, 0, (int)path);
			s->allocs++;
			free(__atomic_exchange_n(&kept[behind], NULL, __ATOMIC_ACQ_REL));
		}
		usleep(200);
	}
	return NULL;
}

static void storm(int threads, double secs)
{
	struct storm st[8];
	pthread_t t[8];

	if (threads > 8)
		threads = 8;
	for (int i = 0; i < threads; i++) {
		st[i] = (struct storm){now() + secs, secs, 12345u + (unsigned int)i, 0};
		pthread_create(&t[i], NULL, storm_thread, &st[i]);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(t[i], NULL);
		stormed += st[i].allocs;
	}
	for (int i = 0; i < PATHS; i++) {
		free(kept[i]);
		kept[i] = NULL;
	}
	kept_now = 0;
}

int main(void)
{
	char line[128], out[256];
	size_t n = 0;

	snprintf(out, sizeof(out), "ready %d\n", getpid());
	say(out);
	for (;;) {
		ssize_t r = read(0, line + n, 1);
		unsigned int a, b;
		int threads;
		double secs;

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return 0;
		if (line[n] != '\n' && n < sizeof(line) - 2) {
			n++;
			continue;
		}
		line[n] = 0;
		n = 0;
		if (!strcmp(line, "hold")) {
			hold_site();
			holding = 1;
			say("held\n");
		} else if (sscanf(line, "churn %u %u", &a, &b) == 2) {
			for (unsigned int p = a; p < b && p < PATHS; p++) {
				step(p, 0, -1);
				churned++;
			}
			say("done\n");
		} else if (sscanf(line, "keep %u %u", &a, &b) == 2) {
			for (unsigned int p = a; p < b && p < PATHS; p++) {
				kept_now += !kept[p];
				step(p, 0, (int)p);
				churned++;
			}
			say("kept\n");
		} else if (!strcmp(line, "pin")) {
			cpu_set_t set;

			sched_getaffinity(0, sizeof(set), &set);
			for (int c = 0; c < CPU_SETSIZE; c++) {
				if (CPU_ISSET(c, &set)) {
					CPU_ZERO(&set);
					CPU_SET(c, &set);
					break;
				}
			}
			say(sched_setaffinity(0, sizeof(set), &set) ? "pin failed\n" : "pinned\n");
		} else if (sscanf(line, "storm %d %lf", &threads, &secs) == 2) {
			storm(threads, secs);
			snprintf(out, sizeof(out), "stormed %lu\n", stormed);
			say(out);
		} else if (!strcmp(line, "expect")) {
			unsigned long allocs = churned + stormed + (holding ? HOLD : 0);

			snprintf(out, sizeof(out),
				 "{\"pid\":%d,\"held_bytes\":%d,\"held_allocs\":%d,\"allocs\":%lu,"
				 "\"kept\":%u,\"alloc_bytes\":%lu}\n",
				 getpid(), holding ? HOLD * HOLD_SIZE : 0, holding ? HOLD : 0, allocs,
				 kept_now,
				 (churned + stormed) * LEAF_SIZE + (holding ? HOLD * HOLD_SIZE : 0));
			say(out);
		} else if (!strcmp(line, "quit")) {
			return 0;
		}
	}
}
