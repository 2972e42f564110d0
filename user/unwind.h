/* SPDX-License-Identifier: MIT */
/*
 * Unwind tables for the BPF unwinder (bpf/unwind.h): each module a target maps gets its
 * .eh_frame compiled (cfi__build) into rows written straight into the mmapped cfi_rows map, and
 * an entry in cfi_mods keyed by the file the kernel maps. Tables are built once per file and
 * shared by build-id; modules the kernel meets without a table (dlopen, exec, a process adopted
 * later) are read from cfi_wanted and built on the next service.
 */
#ifndef ASZ_UNWIND_H
#define ASZ_UNWIND_H

#include <stdbool.h>
#include <sys/types.h>
#include <linux/types.h>

enum unwind_mode {
	UNWIND_AUTO = 0, /* dwarf where the kernel has what it needs, else fp */
	UNWIND_DWARF,
	UNWIND_FP,
};

struct unwind;

/* "auto", "dwarf" or "fp"; returns 0 or -EINVAL. */
int unwind__parse_mode(const char *s, enum unwind_mode *out);

struct unwind_stats {
	__u32 modules;	   /* files known to the kernel side now */
	__u32 tables;	   /* of which with rows now (the rest: frame pointers) */
	__u32 shared;	   /* tables reused for another file with the same build-id */
	__u32 no_cfi;	   /* files without call-frame information */
	__u32 failed;	   /* files that could not be opened or read */
	__u32 full;	   /* tables that did not fit in --max-unwind-rows */
	__u32 evicted;	   /* modules forgotten when no process mapped them any more */
	__u64 rows;	   /* rows in use */
	__u64 max_rows;
	__u64 bytes;	   /* memory of the rows used */
	__u64 build_ns;	   /* time spent building tables */
};

/* rows_fd: the mmapable cfi_rows array of max_rows; mods_fd, wanted_fd: the hash maps. */
int unwind__new(struct unwind **out, int rows_fd, __u32 max_rows, int mods_fd, int wanted_fd);
/* Tables for every executable file mapping of pid (quiet: a process may be gone). */
void unwind__add_pid(struct unwind *u, pid_t pid);
/* A table for a file before any process maps it (a launched command's objects). */
int unwind__add_file(struct unwind *u, const char *path);
/* Build the tables the kernel asked for; returns how many modules were added. */
int unwind__service(struct unwind *u);
void unwind__stats(const struct unwind *u, struct unwind_stats *st);
/* How long a new table is kept, mapped or not, when rows are short (default 10 s; tests). */
void unwind__set_keep_new(struct unwind *u, __u64 ns);
void unwind__free(struct unwind *u);

#endif
