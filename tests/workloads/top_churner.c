/* SPDX-License-Identifier: MIT */
/*
 * top_churner: allocates and frees all the time without growing, for `asizeof-bpf top`.
 *
 *   top_churner [OPS_PER_TICK [TICK_MS]]     (defaults 200 and 10)
 *
 * Prints "ready <pid>", then every TICK_MS replaces OPS_PER_TICK blocks of a ring of RING
 * blocks (free the oldest, malloc a new one of 16-4111 bytes from top_churn_site()): its live
 * bytes stay within RING * 4111. Exits 0 on "exit" or at the end of stdin.
 * No stdio (snprintf into a stack buffer, write(2)).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RING 64

void *volatile ring[RING];

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

#define SITE __attribute__((noipa, used, optimize("no-omit-frame-pointer")))

SITE void top_churn_site(unsigned int slot, size_t size)
{
	free(ring[slot]);
	ring[slot] = malloc(size);
}

/* Returns 1 on "exit" or end of input. */
static int input_says_exit(void)
{
	static char line[64];
	static size_t n;
	char c;
	ssize_t r = read(0, &c, 1);

	if (r < 0)
		return errno != EINTR && errno != EAGAIN;
	if (r == 0)
		return 1;
	if (c != '\n') {
		if (n + 1 < sizeof(line))
			line[n++] = c;
		return 0;
	}
	line[n] = 0;
	n = 0;
	return !strcmp(line, "exit");
}

/* frame pointers on the allocating path: every block of a site gets the same stack */
__attribute__((optimize("no-omit-frame-pointer"))) int main(int argc, char **argv)
{
	long ops = argc > 1 ? atol(argv[1]) : 200, tick = argc > 2 ? atol(argv[2]) : 10;
	unsigned int seed = (unsigned int)getpid() * 2654435761u, slot = 0;
	struct pollfd p = {.fd = 0, .events = POLLIN};
	char msg[64];

	if (ops <= 0 || tick <= 0) {
		say("top_churner: bad arguments\n");
		return 2;
	}
	snprintf(msg, sizeof(msg), "ready %d\n", (int)getpid());
	say(msg);
	for (;;) {
		for (long i = 0; i < ops; i++) {
			/* xorshift: rand() is fine too, but this needs no state of libc's */
			seed ^= seed << 13;
			seed ^= seed >> 17;
			seed ^= seed << 5;
			top_churn_site(slot, 16 + seed % 4096);
			slot = (slot + 1) % RING;
		}
		if (poll(&p, 1, (int)tick) > 0 && input_says_exit())
			return 0;
	}
}
