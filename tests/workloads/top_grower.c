/* SPDX-License-Identifier: MIT */
/*
 * top_grower: grows from one call site at a steady pace, then holds, for `asizeof-bpf top`.
 *
 *   top_grower [-w] [-o FILE] STEP_BYTES PERIOD_MS STEPS
 *
 * Prints "ready <pid>" (on stdout, or into FILE with -o: when it shares the profiler's
 * output); with -w waits for a line "go" on stdin (so that a profiler attached before sees
 * every block). Then every PERIOD_MS it allocates one block of STEP_BYTES from
 * top_grow_site() and keeps it, printing "step N LIVE_BYTES" once the block is held. After STEPS
 * steps (0: until MAX_STEPS) it prints "held LIVE_BYTES BLOCKS" and allocates nothing more.
 * It exits 0 on "exit" or at the end of stdin, at any time: a test that dies leaves nothing.
 *
 * Nothing else allocates: no stdio (snprintf into a stack buffer, write(2), read(2)).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_STEPS 1000

void *volatile kept[MAX_STEPS];
static long long live_bytes;
static long nr_kept;

static int out_fd = 1;

static void say(const char *s)
{
	size_t len = strlen(s);

	while (len) {
		ssize_t n = write(out_fd, s, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(98);
		s += n;
		len -= (size_t)n;
	}
}

/* The call site the profiler must name. */
#define SITE __attribute__((noipa, used, optimize("no-omit-frame-pointer")))

SITE int top_grow_site(size_t size)
{
	void *p = malloc(size);

	if (!p)
		return -1;
	kept[nr_kept++] = p;
	live_bytes += (long long)size;
	return 0;
}

/*
 * Waits up to ms for input; returns 1 if the caller should exit ("exit" or end of input), else
 * 0. With want_go, returns 2 when a "go" line arrived. Input is read a byte at a time: lines are
 * short and rare.
 */
static int check_input(int ms, int want_go)
{
	static char line[64];
	static size_t n;
	struct pollfd p = {.fd = 0, .events = POLLIN};
	struct timespec now, end;

	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += ms / 1000;
	end.tv_nsec += (ms % 1000) * 1000000L;
	if (end.tv_nsec >= 1000000000L) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000L;
	}
	for (;;) {
		long left;
		char c;
		ssize_t r;

		clock_gettime(CLOCK_MONOTONIC, &now);
		left = (end.tv_sec - now.tv_sec) * 1000 + (end.tv_nsec - now.tv_nsec) / 1000000;
		if (ms >= 0 && left <= 0)
			return 0;
		if (poll(&p, 1, ms < 0 ? -1 : (int)left) <= 0)
			continue;
		r = read(0, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return 1;
		if (c != '\n') {
			if (n + 1 < sizeof(line))
				line[n++] = c;
			continue;
		}
		line[n] = 0;
		n = 0;
		if (!strcmp(line, "exit"))
			return 1;
		if (want_go && !strcmp(line, "go"))
			return 2;
	}
}

/* frame pointers on the allocating path: every block of a site gets the same stack */
__attribute__((optimize("no-omit-frame-pointer"))) int main(int argc, char **argv)
{
	int wait_go = 0, a = 1;
	char msg[128];
	long step, period, steps;

	for (; a < argc && argv[a][0] == '-'; a++) {
		if (!strcmp(argv[a], "-w")) {
			wait_go = 1;
		} else if (!strcmp(argv[a], "-o") && a + 1 < argc) {
			out_fd = open(argv[++a], O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
			if (out_fd < 0)
				return 2;
		} else {
			break;
		}
	}
	if (argc - a != 3) {
		say("usage: top_grower [-w] [-o FILE] STEP_BYTES PERIOD_MS STEPS\n");
		return 2;
	}
	step = atol(argv[a]);
	period = atol(argv[a + 1]);
	steps = atol(argv[a + 2]);
	if (step <= 0 || period <= 0 || steps < 0 || steps > MAX_STEPS) {
		say("top_grower: bad arguments\n");
		return 2;
	}
	if (!steps)
		steps = MAX_STEPS;
	snprintf(msg, sizeof(msg), "ready %d\n", (int)getpid());
	say(msg);
	if (wait_go && check_input(-1, 1) != 2)
		return 0;
	for (long i = 1; i <= steps; i++) {
		if (check_input((int)period, 0))
			return 0;
		if (top_grow_site((size_t)step)) {
			say("error: malloc failed\n");
			return 1;
		}
		snprintf(msg, sizeof(msg), "step %ld %lld\n", i, live_bytes);
		say(msg);
	}
	snprintf(msg, sizeof(msg), "held %lld %ld\n", live_bytes, nr_kept);
	say(msg);
	while (!check_input(-1, 0))
		;
	return 0;
}
