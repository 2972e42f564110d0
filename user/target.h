/* SPDX-License-Identifier: MIT */
/* Target processes: inspection of a running pid, and launching a command held until attached. */
#ifndef ASZ_TARGET_H
#define ASZ_TARGET_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>
#include "asizeof.h"

/*
 * Inspect a running process. Fills comm and the path (reachable from here, through
 * /proc/PID/root or /proc/PID/exe, so other mount namespaces work) of the module whose
 * malloc it uses: its executable if that defines one (static programs), else an allocator
 * library (jemalloc, tcmalloc), else glibc. libc (may be NULL) gets glibc's path when the
 * allocator is another module (its entry points fill the other's gaps), else "".
 * Returns 0; -ESRCH no such process; -EPERM a kernel thread; -ENOENT no allocator found;
 * -EACCES not allowed to inspect it.
 */
int target__inspect(pid_t pid, char *comm, size_t comm_len, char *lib, size_t lib_len,
		    char *libc, size_t libc_len);

/* The executable's path (readlink /proc/PID/exe); returns 0 or -errno. */
int target__exe(pid_t pid, char *buf, size_t len);
/* The cgroup v2 path from /proc/PID/cgroup ("0::/path"); returns 0 or -errno. */
int target__cgroup(pid_t pid, char *buf, size_t len);
/*
 * The container id a cgroup path names (a 64-hex-digit component: docker-<id>.scope,
 * /docker/<id>, cri-containerd-<id>.scope, libpod-<id>...): 1 and the id in out[65], or 0.
 */
int target__container_id(const char *cgroup, char *out);
/* The cgroup v2 path of cgroup id (its directory's inode under /sys/fs/cgroup); cached. */
int target__cgroup_path(__u64 id, char *buf, size_t len);

/*
 * From /proc/PID/status: the process pid belongs to (pid itself unless a thread), its state,
 * its threads.
 */
int target__status(pid_t pid, pid_t *tgid, char *state, int *threads);
/*
 * Did pid exit, or is it a zombie (its /proc/PID/root and map_files are no more)? Not a main
 * thread that exited while other threads run on. False for pid <= 0.
 */
bool target__gone(pid_t pid);

/* Read /proc/PID/comm; returns 0 or -errno. */
int target__comm(pid_t pid, char *comm, size_t len);

/*
 * The ELF program the kernel runs for path: path itself, or the interpreter of a #! script (the
 * last of a chain of them, each checked to exist and be executable). Returns 0; -EISDIR,
 * -ENOEXEC (neither an ELF file nor a #! script, or an empty #! line), -ELIBEXEC (an ELF file
 * but no executable: an object file, a core dump, truncated), -ELOOP (too many #! levels),
 * -errno; prog then names the file at fault (path, or an interpreter).
 */
int target__program(const char *path, char *prog, size_t len);

/*
 * Find the allocator module an ELF program (target__program's) will use: the program itself if
 * it defines malloc (static programs), else the first allocator among the objects its dynamic
 * linker resolves (asked with LD_TRACE_LOADED_OBJECTS, as ldd does; the program does not run;
 * static programs are not asked), else its libc. each (may be NULL) is called with every object
 * resolved. Returns 0, -EISDIR, -ENOEXEC (not an ELF file), -ENODATA for a static program
 * without malloc symbols, -ESRCH when nothing is found, -ETIMEDOUT when the dynamic linker did
 * not answer in 5 s (the child is killed), the exec's -errno.
 */
int target__exec_allocator(const char *path, char *lib, size_t lib_len, char *libc,
			   size_t libc_len, void (*each)(const char *object, void *ctx), void *ctx);

/* Resolve a command name through PATH like execvp. Returns 0, -ENOENT or -EACCES. */
int target__resolve_cmd(const char *cmd, char *path, size_t len);

struct launched {
	pid_t pid;
	int go_fd;   /* write end: one byte releases the child into execve() */
	int exec_fd; /* read end of a close-on-exec pipe: EOF once execve() replaced the child */
	bool exec_failed; /* target__release's error is execve()'s (the child exits 127) */
};

/*
 * Fork a child that waits (blocked on a pipe, never stopped) until target__release(), with the
 * caller's signal mask; it execs with mask (NULL: none blocked) and SIGPIPE's default action.
 */
int target__launch(const char *path, char *const argv[], const sigset_t *mask, struct launched *l);
/*
 * Release the child and wait until it has exec'd. Returns 0, or -errno: the pipe's, or execve()'s
 * (exec_failed; the child then exits by itself).
 */
int target__release(struct launched *l);
/* Make the held child exit without running the command (attach failed). */
void target__abort(struct launched *l);

#endif
