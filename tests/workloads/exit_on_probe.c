// SPDX-License-Identifier: MIT
/*
 * exit_on_probe: prints "ready PID", reads the profiler's pid from stdin, then watches the first
 * byte of its own malloc, calloc, realloc and free. When one becomes a breakpoint (a uprobe is
 * placed there: int3 on x86-64, brk on arm64, in this process's copy of the page) it stops the
 * profiler (SIGSTOP) and exits: the profiler, continued, goes on attaching to a process gone.
 * Exits 0 once it has stopped the profiler, 1 if no probe came within 60 s.
 */
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const fns[] = {"malloc", "calloc", "realloc", "free"};

int main(void)
{
	volatile const unsigned char *code[4];
	unsigned char orig[4];
	time_t end = time(NULL) + 60;
	char line[32];
	pid_t prof;

	for (int i = 0; i < 4; i++) {
		code[i] = dlsym(RTLD_DEFAULT, fns[i]);
		if (!code[i])
			return 2;
		orig[i] = *code[i];
	}
	printf("ready %d\n", getpid());
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 2;
	prof = atoi(line);
	while (time(NULL) < end)
		for (int i = 0; i < 4; i++)
			if (*code[i] != orig[i]) {
				kill(prof, SIGSTOP);
				_exit(0);
			}
	return 1;
}
