/* SPDX-License-Identifier: MIT */
/*
 * Symbolizer: return addresses of a process -> function, file:line, module, inline chain.
 * Mappings are recorded when a process is first seen so that its stacks still symbolize after it
 * exits. Results are cached per (module file, address).
 */
#ifndef ASZ_SYMBOLIZER_H
#define ASZ_SYMBOLIZER_H

#include <stdbool.h>
#include <libelf.h>
#include <linux/types.h>

struct symbolizer;

struct sym_frame {
	__u64 addr;	       /* the address symbolized (return address - 1), process virtual */
	__u64 module_offset;   /* the same address as an ELF virtual address of the module file
				* (what `eu-addr2line -e MODULE` takes) */
	const char *func;      /* demangled; NULL if unknown */
	const char *file;      /* source file; NULL if unknown */
	int line;	       /* 0 if unknown */
	const char *module;    /* path of the mapped file; NULL if the address is in no file mapping */
	bool inlined;	       /* this frame was inlined into the next (outer) one */
};

/* What the symbolizer did so far (for -vv and tests). */
struct symbolizer_stats {
	__u64 symbolized;    /* addresses symbolized (cache misses) */
	__u64 units_indexed; /* DWARF compile units whose functions were indexed by address */
	__u64 unit_walks;    /* lookups no index answered: libdw walked a whole unit's DIEs */
	__u64 files_open;    /* module files known now (each holds an fd or a Dwfl) */
	__u64 files_closed;  /* module files closed by symbolizer__trim() */
	__u64 results;	     /* addresses whose frames are cached now */
	__u64 strings;	     /* strings interned now (names, files, module paths) */
};

struct symbolizer *symbolizer__new(void);
void symbolizer__free(struct symbolizer *s);

/*
 * Record (or refresh) the file mappings of a live process from /proc/PID/maps, opening each
 * mapped file so it can be read after the process is gone. Cheap when nothing changed.
 * Returns 0, or a negative errno (-ESRCH: no such process).
 */
int symbolizer__add_pid(struct symbolizer *s, __u32 pid);

/*
 * Make a file known by path (opened now), so that mappings of it given to
 * symbolizer__add_mapping() can be symbolized later. keep: never closed by symbolizer__trim()
 * (probed libraries, the launched command), else closed there once no process maps it.
 * Returns 0 or a negative errno.
 */
int symbolizer__add_file(struct symbolizer *s, const char *path, bool keep);

/*
 * Add one mapping of pid by file identity (device major:minor, inode), for a process whose
 * /proc/PID/maps was never read. Ignored where a known mapping already covers start.
 * Returns 0, -ENOENT when the file is not known, or another negative errno.
 */
int symbolizer__add_mapping(struct symbolizer *s, __u32 pid, __u64 start, __u64 end, __u64 pgoff,
			    __u32 dev_major, __u32 dev_minor, __u64 ino);

void symbolizer__stats(const struct symbolizer *s, struct symbolizer_stats *out);

/* Forget a process's mappings (it is gone and reported). Module files and results stay cached. */
void symbolizer__remove_pid(struct symbolizer *s, __u32 pid);

/*
 * Close the module files no recorded process has mapped at this call and the one before (not
 * kept ones), with their cached results. Call after removing processes; a file's second chance
 * lets a process whose mappings are not recorded yet (an exec event's program) still find it.
 */
void symbolizer__trim(struct symbolizer *s);

/*
 * Symbolize return address ip of process pid (ip - 1 is looked up). Fills up to max frames,
 * innermost first: inlined frames (inlined = true) before the function they were inlined
 * into. Always returns >= 1 when max >= 1 (an unknown address gives one frame with func NULL).
 * Strings are owned by the symbolizer and live until symbolizer__free().
 */
int symbolizer__resolve(struct symbolizer *s, __u32 pid, __u64 ip, struct sym_frame *out, int max);

/*
 * The ELF file of the module that return address ip of pid is in, after symbolizer__resolve()
 * named it: the very file mapped (also deleted, or in another mount namespace), with its
 * identity (device as major << 32 | minor, inode) in *dev and *ino. Owned by the symbolizer,
 * valid until symbolizer__trim() or symbolizer__free(). NULL if not known or not loaded.
 */
Elf *symbolizer__module_elf(struct symbolizer *s, __u32 pid, __u64 ip, __u64 *dev, __u64 *ino);

#endif
