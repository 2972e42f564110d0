/* SPDX-License-Identifier: MIT */
/* Target processes: inspection of a running pid, and launching a command held until attached. */
#ifndef ASZ_TARGET_H
#define ASZ_TARGET_H

#include <limits.h>
#include <sys/types.h>
#include "asizeof.h"

/*
 * Inspect a running process. Fills comm and the path of its C library as reachable from here
 * (through /proc/PID/root, so libraries in other mount namespaces work).
 * Returns 0; -ESRCH no such process; -EPERM a kernel thread; -ENOENT no glibc mapped;
 * -EACCES not allowed to inspect it.
 */
int target__inspect(pid_t pid, char *comm, size_t comm_len, char *libc, size_t libc_len);

/* Read /proc/PID/comm; returns 0 or -errno. */
int target__comm(pid_t pid, char *comm, size_t len);

/*
 * Find the C library a command will load, by asking its dynamic linker (LD_TRACE_LOADED_OBJECTS,
 * as ldd does; the program itself does not run). each (may be NULL) is called with every
 * object the dynamic linker resolves. Returns 0, -ENOEXEC for a static program or -ENOENT when
 * no libc is found.
 */
int target__exec_libc(const char *path, char *libc, size_t libc_len,
		      void (*each)(const char *object, void *ctx), void *ctx);

/* Resolve a command name through PATH like execvp. Returns 0, -ENOENT or -EACCES. */
int target__resolve_cmd(const char *cmd, char *path, size_t len);

struct launched {
	pid_t pid;
	int go_fd;   /* write end: one byte releases the child into execve() */
	int exec_fd; /* read end of a close-on-exec pipe: EOF once execve() has replaced the child */
};

/* Fork a child that waits (blocked on a pipe, never stopped) until target__release(). */
int target__launch(const char *path, char *const argv[], struct launched *l);
/* Release the child and wait until it has exec'd (or failed to: it then exits by itself). */
int target__release(struct launched *l);
/* Make the held child exit without running the command (attach failed). */
void target__abort(struct launched *l);

#endif
