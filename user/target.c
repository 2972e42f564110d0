// SPDX-License-Identifier: MIT
#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <fcntl.h>
#include <gelf.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "attach.h"
#include "target.h"
#include "log.h"
#include "util.h"

extern char **environ;

int target__comm(pid_t pid, char *comm, size_t len)
{
	char path[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, comm, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	comm[n] = 0;
	if (n > 0 && comm[n - 1] == '\n')
		comm[n - 1] = 0;
	return 0;
}

int target__status(pid_t pid, pid_t *tgid, char *state, int *threads)
{
	char path[64], line[256];
	int found = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (found < 3 && fgets(line, sizeof(line), f)) {
		int v;

		if (sscanf(line, "State: %c", state) == 1) {
			found++;
		} else if (sscanf(line, "Tgid: %d", &v) == 1) {
			*tgid = v;
			found++;
		} else if (sscanf(line, "Threads: %d", &v) == 1) {
			*threads = v;
			found++;
		}
	}
	fclose(f);
	return found == 3 ? 0 : -EINVAL;
}

bool target__gone(pid_t pid)
{
	int threads = 0;
	char state = 0;
	pid_t tgid;

	return pid > 0 && (target__status(pid, &tgid, &state, &threads) ||
			   ((state == 'Z' || state == 'X') && threads <= 1));
}

int target__exe(pid_t pid, char *buf, size_t len)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/exe", pid);
	n = readlink(path, buf, len - 1);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return 0;
}

int target__cgroup(pid_t pid, char *buf, size_t len)
{
	char path[64], line[PATH_MAX + 16];
	int err = -ENOENT;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "0::", 3))
			continue;
		line[strcspn(line, "\n")] = 0;
		snprintf(buf, len, "%s", line + 3);
		err = 0;
		break;
	}
	fclose(f);
	return err;
}

int target__container_id(const char *cgroup, char *out)
{
	const char *p = cgroup;

	for (; p && *p; p++) {
		size_t n = strspn(p, "0123456789abcdef");

		if (n == 64 && (p == cgroup || !isxdigit((unsigned char)p[-1]))) {
			memcpy(out, p, 64);
			out[64] = 0;
			return 1;
		}
		if (n)
			p += n - 1;
	}
	return 0;
}

static __u64 want_ino;
static char found_path[PATH_MAX];

static int match_ino(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	if (type == FTW_D && st->st_ino == want_ino) {
		snprintf(found_path, sizeof(found_path), "%s", path);
		return 1;
	}
	return 0;
}

/* Where cgroup v2 is mounted: /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid systems. */
static int cgroup2_root(char *buf, size_t len)
{
	char dev[64], dir[PATH_MAX], type[64];
	int err = -ENOENT;
	FILE *f = fopen("/proc/self/mounts", "re");

	if (!f)
		return -errno;
	while (fscanf(f, "%63s %4095s %63s %*[^\n]", dev, dir, type) == 3) {
		if (strcmp(type, "cgroup2") == 0) {
			snprintf(buf, len, "%s", dir);
			err = 0;
			break;
		}
	}
	fclose(f);
	return err;
}

int target__cgroup_path(__u64 id, char *buf, size_t len)
{
	static struct {
		__u64 id;
		char path[256];
	} cache[64];
	static int next;
	char root[PATH_MAX];
	int i;

	for (i = 0; i < 64; i++)
		if (cache[i].id == id && id) {
			snprintf(buf, len, "%s", cache[i].path);
			return 0;
		}
	if (cgroup2_root(root, sizeof(root)))
		return -ENOENT;
	want_ino = id;
	found_path[0] = 0;
	if (!id || nftw(root, match_ino, 16, FTW_PHYS | FTW_MOUNT) != 1)
		return -ENOENT;
	/* as /proc/PID/cgroup shows it: relative to the cgroup2 root */
	snprintf(buf, len, "%s", found_path[strlen(root)] ? found_path + strlen(root) : "/");
	i = next++ % 64;
	cache[i].id = id;
	snprintf(cache[i].path, sizeof(cache[i].path), "%s", buf);
	return 0;
}

/* Kernel threads have no address space: empty maps and cmdline, flag PF_KTHREAD in stat. */
static bool is_kthread(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long flags = 0;
	FILE *f;
	int i;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return false;
	}
	fclose(f);
	p = strrchr(buf, ')');
	if (!p)
		return false;
	/* after "pid (comm)": state ppid pgrp session tty_nr tpgid flags */
	for (i = 0; i < 7 && p; i++)
		p = strchr(p + 1, ' ');
	if (p)
		flags = strtoul(p + 1, NULL, 10);
	return flags & 0x00200000; /* PF_KTHREAD */
}

/* Does this file define malloc and free (an allocator to probe)? Cached per file. */
static bool defines_malloc(const char *path)
{
	static struct {
		dev_t dev;
		ino_t ino;
		bool yes;
	} cache[256];
	static int next;
	struct alloc_syms syms;
	struct stat st;
	bool yes;
	int i;

	if (stat(path, &st))
		return false;
	for (i = 0; i < (int)(sizeof(cache) / sizeof(cache[0])); i++)
		if (cache[i].ino == st.st_ino && cache[i].dev == st.st_dev)
			return cache[i].yes;
	yes = attach__find_syms(path, &syms) == 0;
	i = next++ % (int)(sizeof(cache) / sizeof(cache[0]));
	cache[i].dev = st.st_dev;
	cache[i].ino = st.st_ino;
	cache[i].yes = yes;
	return yes;
}

/* target__inspect's look at the executable mappings: the first defining malloc, and libc */
struct inspect_ctx {
	pid_t pid;
	char *lib;
	size_t lib_len;
	bool found;
	char libc[PATH_MAX + 64];
};

static bool is_mapped_file(const char *path, const struct util_maps_line *m)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_ino == m->ino;
}

/*
 * A path, seen from here, to the file of a maps line. The kernel writes maps paths as the
 * reader sees them: a container's (another mount namespace) are under its /proc/PID/root, a
 * chroot's are whole already. Each is taken if it is that very file (its inode), else the
 * container's path as before (overlayfs may show other inode numbers); a deleted or replaced
 * file, or one reachable by neither, by the mapping itself in map_files (which needs
 * CAP_SYS_ADMIN). false: none.
 */
static bool mapped_path(pid_t pid, const struct util_maps_line *m, char *out, size_t len)
{
	bool deleted = strstr(m->path, " (deleted)") != NULL;

	if (!deleted) {
		snprintf(out, len, "/proc/%d/root%s", pid, m->path);
		if (is_mapped_file(out, m))
			return true;
		if (is_mapped_file(m->path, m)) {
			snprintf(out, len, "%s", m->path);
			return true;
		}
		if (access(out, R_OK) == 0) /* still the container's path */
			return true;
	}
	snprintf(out, len, "/proc/%d/map_files/%llx-%llx", pid, (unsigned long long)m->start,
		 (unsigned long long)m->end);
	return is_mapped_file(out, m);
}

static bool inspect_line(void *ctx, const struct util_maps_line *m)
{
	struct inspect_ctx *c = ctx;
	char path[PATH_MAX + 64];

	if (strcmp(m->perms, "r-xp") || m->path[0] != '/' || !mapped_path(c->pid, m, path, sizeof(path)))
		return true;
	if (util__is_libc_name(m->path)) {
		snprintf(c->libc, sizeof(c->libc), "%s", path);
		return true;
	}
	if (!c->found && defines_malloc(path)) {
		snprintf(c->lib, c->lib_len, "%s", path);
		c->found = true;
	}
	return true;
}

/*
 * The module whose malloc the dynamic linker binds: the executable if it defines one (static
 * programs, programs with their own allocator), else an allocator library beside libc
 * (jemalloc, tcmalloc, preloaded or linked), else libc.
 */
int target__inspect(pid_t pid, char *comm, size_t comm_len, char *lib, size_t lib_len,
		    char *libc_out, size_t libc_len)
{
	struct inspect_ctx c = {.pid = pid, .lib = lib, .lib_len = lib_len};
	char path[64];
	int err;

	if (pid <= 0)
		return -ESRCH;
	err = target__comm(pid, comm, comm_len);
	if (err)
		return err == -ENOENT ? -ESRCH : err;
	if (is_kthread(pid))
		return -EPERM;
	snprintf(path, sizeof(path), "/proc/%d/exe", pid);
	if (defines_malloc(path)) {
		snprintf(lib, lib_len, "%s", path);
		c.found = true;
	}
	err = util__for_each_maps_line(pid, inspect_line, &c);
	if (err)
		return err;
	if (libc_out)
		snprintf(libc_out, libc_len, "%s", c.found ? c.libc : "");
	if (!c.found && c.libc[0]) {
		snprintf(lib, lib_len, "%s", c.libc);
		c.found = true;
	}
	return c.found ? 0 : -ENOENT;
}

/*
 * An ELF file the kernel can run: an executable or a shared object (PIE) whose program headers
 * are there and whose loaded segments are within the file (not a relocatable object, a core
 * dump, a truncated file).
 */
static bool is_executable_elf(int fd, __u64 size)
{
	bool ok = false, load = false;
	size_t i, n;
	GElf_Ehdr eh;
	GElf_Phdr ph;
	Elf *elf;

	elf_version(EV_CURRENT);
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (elf && elf_kind(elf) == ELF_K_ELF && gelf_getehdr(elf, &eh) &&
	    (eh.e_type == ET_EXEC || eh.e_type == ET_DYN) && elf_getphdrnum(elf, &n) == 0) {
		for (ok = true, i = 0; i < n && ok; i++) {
			ok = gelf_getphdr(elf, i, &ph) != NULL;
			if (ok && ph.p_type == PT_LOAD) {
				load = true;
				ok = ph.p_offset <= size && ph.p_filesz <= size - ph.p_offset;
			}
		}
	}
	if (elf)
		elf_end(elf);
	return ok && load;
}

/*
 * 0 for an ELF executable, 1 for a #! script, -EISDIR, -ELIBEXEC (an ELF file of another kind,
 * or truncated), -ENOEXEC (anything else), -errno.
 */
static int program_kind(const char *path)
{
	unsigned char magic[4] = {0};
	struct stat st;
	int fd, kind;

	if (stat(path, &st))
		return -errno;
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (pread(fd, magic, 4, 0) < 2)
		magic[0] = 0;
	if (magic[0] == '#' && magic[1] == '!')
		kind = 1;
	else if (memcmp(magic, "\177ELF", 4))
		kind = -ENOEXEC;
	else
		kind = is_executable_elf(fd, st.st_size) ? 0 : -ELIBEXEC;
	close(fd);
	return kind;
}

/* Does the ELF program need a dynamic linker (a PT_INTERP header)? */
static bool has_interp(const char *path)
{
	bool dyn = false;
	size_t i, n;
	GElf_Phdr ph;
	Elf *elf;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	elf_version(EV_CURRENT);
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (elf && elf_kind(elf) == ELF_K_ELF && elf_getphdrnum(elf, &n) == 0)
		for (i = 0; i < n && !dyn; i++)
			dyn = gelf_getphdr(elf, i, &ph) && ph.p_type == PT_INTERP;
	if (elf)
		elf_end(elf);
	close(fd);
	return dyn;
}

/* #! scripts whose interpreter is a script too: as many levels as the kernel's exec follows */
#define MAX_SCRIPT_DEPTH 5

/*
 * The interpreter a #! line names, read as the kernel reads it (binfmt_script): within the
 * first 256 bytes, after "#!" and blanks, up to a blank or the line's end. 0 and its path in
 * out; -ENOEXEC no name (or not a script), or one longer than those bytes; -errno.
 */
static int script_interp(const char *path, char *out, size_t len)
{
	char buf[257];
	size_t name_len;
	ssize_t n;
	char *p;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	if (n < 2 || buf[0] != '#' || buf[1] != '!')
		return -ENOEXEC;
	buf[n] = 0;
	p = memchr(buf, '\n', n);
	if (p)
		*p = 0;
	p = buf + 2 + strspn(buf + 2, " \t");
	name_len = strcspn(p, " \t");
	/* (a name up to the end of those bytes may go on past them) */
	if (!name_len || p + name_len == buf + sizeof(buf) - 1)
		return -ENOEXEC;
	if (name_len >= len)
		return -ENAMETOOLONG;
	memcpy(out, p, name_len);
	out[name_len] = 0;
	return 0;
}

int target__program(const char *path, char *prog, size_t len)
{
	char interp[PATH_MAX];
	int err;

	snprintf(prog, len, "%s", path);
	for (int depth = 0;; depth++) {
		err = program_kind(prog);
		if (err <= 0)
			return err; /* an ELF file, or an error */
		err = script_interp(prog, interp, sizeof(interp));
		if (err)
			return err;
		if (depth == MAX_SCRIPT_DEPTH)
			return -ELOOP;
		/* checked here: execve() would say ENOENT or EACCES of the script itself */
		snprintf(prog, len, "%s", interp);
		if (access(prog, X_OK))
			return -errno;
	}
}

/* ld.so's answer is awaited this long: a program whose PT_INTERP is no ld.so may never answer */
#define LD_TRACE_TIMEOUT_MS 5000

struct trace_ctx {
	char *lib;
	size_t lib_len;
	char libc[PATH_MAX];
	bool found;
	void (*each)(const char *object, void *ctx);
	void *ctx;
};

/*
 * One line of ld.so's list, objects in load order (preloads first): "\tlibc.so.6 =>
 * /lib/.../libc.so.6 (0x...)", and for the dynamic linker itself "\t/lib64/ld-linux-x86-64.so.2
 * (0x...)".
 */
static void trace_line(char *p, struct trace_ctx *c)
{
	char *obj = strstr(p, "=> "), *end;

	obj = obj ? obj + 3 : p + strspn(p, " \t");
	end = strstr(obj, " (");
	if (end)
		*end = 0;
	if (obj[0] != '/')
		return;
	if (c->each)
		c->each(obj, c->ctx);
	if (util__is_libc_name(obj)) {
		if (!c->libc[0])
			snprintf(c->libc, sizeof(c->libc), "%s", obj);
	} else if (!c->found && defines_malloc(obj)) {
		snprintf(c->lib, c->lib_len, "%s", obj);
		c->found = true;
	}
}

/*
 * In a forked child whose exec failed: its errno to the parent through fd, the write end of a
 * close-on-exec pipe (EOF there means the exec succeeded), then exit.
 */
static void __attribute__((noreturn)) exec_failed(int fd)
{
	int exec_err = errno;

	if (write(fd, &exec_err, sizeof(exec_err)) < 0)
		_exit(126);
	_exit(127);
}

/*
 * Run path with LD_TRACE_LOADED_OBJECTS=1 (ld.so lists the objects it would load and exits, the
 * program does not run), each line to trace_line(). 0, the exec's -errno, -ETIMEDOUT (killed).
 */
static int ld_trace(const char *path, struct trace_ctx *c)
{
	__u64 deadline = util__mono_ns() + LD_TRACE_TIMEOUT_MS * 1000000ull;
	int pfd[2], ex[2], status, exec_err = 0, err = 0;
	char buf[2 * PATH_MAX], *nl;
	size_t used = 0;
	ssize_t n;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC))
		return -errno;
	if (pipe2(ex, O_CLOEXEC)) {
		err = -errno;
		close(pfd[0]);
		close(pfd[1]);
		return err;
	}
	pid = fork();
	if (pid < 0) {
		err = -errno;
		close(pfd[0]);
		close(pfd[1]);
		close(ex[0]);
		close(ex[1]);
		return err;
	}
	if (pid == 0) {
		char *argv[] = {(char *)path, NULL};
		int devnull = open("/dev/null", O_RDWR);

		dup2(pfd[1], 1);
		if (devnull >= 0) {
			dup2(devnull, 0);
			dup2(devnull, 2);
		}
		setenv("LD_TRACE_LOADED_OBJECTS", "1", 1);
		execv(path, argv);
		exec_failed(ex[1]);
	}
	close(pfd[1]);
	close(ex[1]);
	for (;;) {
		__u64 now = util__mono_ns();
		struct pollfd p = {.fd = pfd[0], .events = POLLIN};
		int ready = now < deadline ? poll(&p, 1, (int)((deadline - now) / 1000000) + 1) : 0;

		if (ready < 0 && errno == EINTR)
			continue;
		if (ready == 0) {
			err = -ETIMEDOUT;
			break;
		}
		n = read(pfd[0], buf + used, sizeof(buf) - 1 - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		used += n;
		buf[used] = 0;
		while ((nl = strchr(buf, '\n'))) {
			*nl = 0;
			trace_line(buf, c);
			used -= nl + 1 - buf;
			memmove(buf, nl + 1, used + 1);
		}
		if (used == sizeof(buf) - 1) /* no path is that long: not ld.so's list */
			used = 0;
	}
	if (!err && used)
		trace_line(buf, c);
	close(pfd[0]);
	/* ld.so exits once it has written the list */
	while (!err && waitpid(pid, &status, WNOHANG) == 0) {
		if (util__mono_ns() >= deadline)
			err = -ETIMEDOUT;
		else
			usleep(1000);
	}
	if (err) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	if (!err && read(ex[0], &exec_err, sizeof(exec_err)) == sizeof(exec_err))
		err = -exec_err;
	close(ex[0]);
	return err;
}

int target__exec_allocator(const char *path, char *lib, size_t lib_len, char *libc_out,
			   size_t libc_len, void (*each)(const char *object, void *ctx), void *ctx)
{
	struct trace_ctx c = {.lib = lib, .lib_len = lib_len, .each = each, .ctx = ctx};
	int err;

	libc_out[0] = 0;
	err = program_kind(path);
	if (err)
		return err == 1 ? -ENOEXEC : err;
	/* a static program: nothing else is loaded, and LD_TRACE_LOADED_OBJECTS would run it */
	if (!has_interp(path)) {
		if (!defines_malloc(path))
			return -ENODATA;
		snprintf(lib, lib_len, "%s", path);
		return 0;
	}
	err = ld_trace(path, &c);
	if (err)
		return err;
	/* a dynamic program defining malloc itself: the linker binds that one first */
	if (defines_malloc(path)) {
		snprintf(lib, lib_len, "%s", path);
		c.found = true;
	}
	if (c.found)
		snprintf(libc_out, libc_len, "%s", c.libc);
	else if (c.libc[0])
		snprintf(lib, lib_len, "%s", c.libc);
	/* (not this profiler's libc instead: the program would not map it) */
	return c.found || c.libc[0] ? 0 : -ESRCH;
}

int target__resolve_cmd(const char *cmd, char *out, size_t len)
{
	const char *path = getenv("PATH"), *p, *colon;
	int err = -ENOENT;

	if (strchr(cmd, '/')) {
		snprintf(out, len, "%s", cmd);
		return access(out, X_OK) == 0 ? 0 : -errno;
	}
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (p = path; p; p = colon ? colon + 1 : NULL) {
		struct stat st;
		size_t dlen;

		colon = strchr(p, ':');
		dlen = colon ? (size_t)(colon - p) : strlen(p);
		snprintf(out, len, "%.*s/%s", (int)dlen, dlen ? p : ".", cmd);
		if (stat(out, &st) || !S_ISREG(st.st_mode))
			continue;
		if (access(out, X_OK) == 0)
			return 0;
		err = -EACCES;
	}
	return err;
}

int target__launch(const char *path, char *const argv[], const sigset_t *mask, struct launched *l)
{
	int go[2], ex[2] = {-1, -1}, err;
	pid_t pid;
	char c;

	if (pipe2(go, O_CLOEXEC))
		return -errno;
	if (pipe2(ex, O_CLOEXEC)) {
		err = -errno;
		goto fail;
	}
	pid = fork();
	if (pid < 0) {
		err = -errno;
		goto fail;
	}
	if (pid == 0) {
		sigset_t none;
		ssize_t n;

		close(go[1]);
		close(ex[0]);
		/*
		 * Held here, running, until the probes are in place; EOF means give up. The
		 * profiler's signals stay blocked meanwhile: Ctrl-C reaches the whole process
		 * group, and is the profiler's to answer (it then does not release the command).
		 */
		while ((n = read(go[0], &c, 1)) < 0 && errno == EINTR)
			;
		if (n != 1)
			_exit(127);
		/* the profiler's blocked signals, ignored SIGPIPE must not leak into the command */
		sigemptyset(&none);
		signal(SIGPIPE, SIG_DFL);
		sigprocmask(SIG_SETMASK, mask ? mask : &none, NULL);
		execve(path, argv, environ);
		/* the profiler says why: its report would show this process, not the command */
		exec_failed(ex[1]);
	}
	close(go[0]);
	close(ex[1]);
	l->pid = pid;
	l->go_fd = go[1];
	l->exec_fd = ex[0];
	return 0;
fail:
	close(go[0]);
	close(go[1]);
	if (ex[0] >= 0) {
		close(ex[0]);
		close(ex[1]);
	}
	return err;
}

int target__release(struct launched *l)
{
	int exec_err, err;
	ssize_t n = 0;
	char c = 1;

	err = write(l->go_fd, &c, 1) == 1 ? 0 : -errno;
	close(l->go_fd);
	l->go_fd = -1;
	/*
	 * The write end closes at exec: the command's name and image are then in place. Or the
	 * child writes why execve() failed, and exits.
	 */
	while (!err && (n = read(l->exec_fd, &exec_err, sizeof(exec_err))) < 0 && errno == EINTR)
		;
	l->exec_failed = !err && n == sizeof(exec_err);
	if (l->exec_failed)
		err = -exec_err;
	close(l->exec_fd);
	l->exec_fd = -1;
	return err;
}

void target__abort(struct launched *l)
{
	int status;

	if (l->go_fd >= 0)
		close(l->go_fd);
	if (l->exec_fd >= 0)
		close(l->exec_fd);
	l->go_fd = -1;
	l->exec_fd = -1;
	waitpid(l->pid, &status, 0);
}
