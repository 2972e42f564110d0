// SPDX-License-Identifier: MIT
/* Soak workload: a short-lived process that allocates a little, keeps some, and exits. */
#include <stdlib.h>
#include <unistd.h>

void *volatile kept[64];

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 32;

	for (int i = 0; i < n && i < 64; i++) {
		kept[i] = malloc(64 + (i * 97 + getpid()) % 4000);
		if (i % 3 == 0)
			free(kept[i]);
	}
	return 0;
}
