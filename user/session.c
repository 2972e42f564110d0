// SPDX-License-Identifier: MIT
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "log.h"
#include "session.h"
#include "target.h"
#include "util.h"

/* After a launch, mappings are re-read this often so short-lived commands still symbolize. */
#define STARTUP_POLL_MS 2
#define STARTUP_POLL_NS 1000000000ull
#define MAPS_POLL_MS 100

struct tracked {
	pid_t pid;
	int pidfd; /* -1 for the launched command (reaped with waitpid) */
	bool exited;
	int looks_left;	   /* new processes (system-wide), exec'd targets (-p, -- CMD) are... */
	__u64 next_look_ns; /* ...looked at again when ld.so has mapped their libraries */
	char *lib, *libc;   /* -p and -- CMD: what its probes are on (libc NULL: lib is libc) */
	dev_t lib_dev;	    /* the file lib named then (the path may name another after an exec) */
	ino_t lib_ino;
};

/* A process seen at exec is inspected again this often, this many times. */
#define NEW_LOOK_NS 20000000ull
#define NEW_LOOKS 3
/* An exec'd target (-p, -- CMD): at 1 ms, then 4, 16, 64 and 256 ms later. */
#define EXEC_LOOK_NS 1000000ull
#define EXEC_LOOKS 5

struct libid {
	dev_t dev;
	ino_t ino;
	bool failed; /* could not be probed: the processes using it are not traced */
};

/* A process's program as its exec event named it: it may be gone before /proc/PID/exe is read. */
struct exec_path {
	pid_t pid;
	char path[ASZ_EXEC_PATH_LEN];
};

struct session {
	struct engine *eng;
	struct symbolizer *sym;
	bool system_wide;
	struct tracked *t;
	int nr;
	size_t cap;
	struct libid *libs; /* system-wide: allocator libraries probed, one probe set each */
	int nr_libs;
	const char *const *comms; /* system-wide --comm filter */
	int nr_comms;
	pid_t *reported_dead; /* exited, in the last snapshot: forgotten at the next one */
	int nr_reported_dead;
	struct exec_path *exec_paths; /* system-wide: each process's program, by its exec event */
	int nr_exec_paths;
	__u64 untraced; /* processes and exec'd images not traced (ASZ_DROP_PROCS_UNTRACED) */
	pid_t *untraced_pids; /* system-wide: those counted, until their next exec or exit */
	int nr_untraced_pids;
	struct launched child;
	char child_path[PATH_MAX];
	char child_lib[PATH_MAX], child_libc[PATH_MAX]; /* its allocator; libc "": lib is libc */
	char **child_objs; /* what its program loads, and a script's interpreter */
	int nr_child_objs;
	bool launched;
	bool child_done;
	int child_status;
	__u64 started_ns;
	__u64 next_maps_ns;
	struct snapshot *prev;
};

static struct tracked *find_tracked(struct session *s, pid_t pid)
{
	for (int i = 0; i < s->nr; i++)
		if (s->t[i].pid == pid)
			return &s->t[i];
	return NULL;
}

static int set_libs(struct tracked *t, const char *lib, const char *libc)
{
	struct stat st;

	free(t->lib);
	free(t->libc);
	t->lib = lib ? strdup(lib) : NULL;
	t->libc = libc ? strdup(libc) : NULL;
	if ((lib && !t->lib) || (libc && !t->libc))
		return -ENOMEM;
	if (lib && stat(lib, &st) == 0) {
		t->lib_dev = st.st_dev;
		t->lib_ino = st.st_ino;
	}
	return 0;
}

/* pidfd: -1 none (the launched command is reaped; system-wide exits come as events) */
static int track(struct session *s, pid_t pid, bool want_pidfd, const char *lib,
		 const char *libc)
{
	struct tracked *t;

	if (util__reserve(&s->t, &s->cap, (size_t)s->nr + 1, sizeof(*s->t), 64))
		return -ENOMEM;
	t = &s->t[s->nr++];
	memset(t, 0, sizeof(*t));
	t->pid = pid;
	t->pidfd = want_pidfd ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
	return set_libs(t, lib, libc);
}

static void mark_exited(struct session *s, struct tracked *t)
{
	if (t->exited)
		return;
	/* (an image that allocated through the probes it had used the probed library) */
	if (!s->system_wide && t->looks_left && engine__image_allocs(s->eng, t->pid) <= 0)
		elog("pid %d exited right after an exec, before its new image could be inspected, "
		     "and nothing it allocated was seen: had it another allocator library than the "
		     "one probed, its allocations were missed\n",
		     t->pid);
	t->exited = true;
	engine__set_exited(s->eng, t->pid);
	vlog("pid %d exited\n", t->pid);
}

static void reap_child(struct session *s, bool block)
{
	int status;

	if (!s->launched || s->child_done)
		return;
	if (waitpid(s->child.pid, &status, block ? 0 : WNOHANG) != s->child.pid)
		return;
	s->child_done = true;
	s->child_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	for (int i = 0; i < s->nr; i++)
		if (s->t[i].pid == s->child.pid)
			mark_exited(s, &s->t[i]);
}

static void check_exits(struct session *s)
{
	reap_child(s, false);
	for (int i = 0; i < s->nr; i++) {
		struct tracked *t = &s->t[i];
		struct pollfd p = {.fd = t->pidfd, .events = POLLIN};

		if (t->exited)
			continue;
		/* without a pidfd (old kernel) a vanished /proc entry tells */
		if (t->pidfd < 0 ? (t->pid != s->child.pid && kill(t->pid, 0) && errno == ESRCH)
				 : poll(&p, 1, 0) == 1)
			mark_exited(s, t);
	}
}

static void refresh_maps(struct session *s)
{
	engine__refresh(s->eng);
	/*
	 * A library dlopen'ed since gets its unwind table now, not when the unwinder first meets
	 * it: by then a burst of allocations through it would be walked without one. (System-wide,
	 * hundreds of processes: tables only for modules the unwinder meets.)
	 */
	for (int i = 0; i < s->nr; i++) {
		if (s->t[i].exited)
			continue;
		symbolizer__add_pid(s->sym, s->t[i].pid);
		if (!s->system_wide)
			engine__unwind_pid(s->eng, s->t[i].pid);
	}
}

/* A file of a probed library or of the launched command: its symbols are kept for the run. */
static void add_file(const char *path, void *ctx)
{
	struct session *s = ctx;

	symbolizer__add_file(s->sym, path, true);
	engine__unwind_file(s->eng, path);
}

static void add_vma(const struct asz_vma_key *k, const struct asz_vma *v, void *sym)
{
	symbolizer__add_mapping(sym, k->tgid, k->start, v->end, v->pgoff, v->dev >> 20,
				v->dev & 0xfffff, v->ino);
}

static int attach_pid(struct session *s, pid_t pid)
{
	char comm[ASZ_COMM_LEN] = "", lib[PATH_MAX], libc[PATH_MAX], state = 0;
	pid_t tgid = pid;
	int err, threads = 1;

	if (pid > 0 && target__status(pid, &tgid, &state, &threads) == 0) {
		if (tgid != pid) {
			elog("pid %d is a thread of process %d: give -p %d (its threads are traced "
			     "together)\n",
			     pid, tgid, tgid);
			return -EINVAL;
		}
		/* (a main thread that called pthread_exit is a zombie too, its process alive) */
		if ((state == 'Z' || state == 'X') && threads <= 1) {
			elog("pid %d has exited (a zombie its parent has not reaped): nothing to "
			     "trace\n",
			     pid);
			return -ESRCH;
		}
	}
	err = target__inspect(pid, comm, sizeof(comm), lib, sizeof(lib), libc, sizeof(libc));
	/* (its maps, or a library through its /proc/PID/root, gone with it) */
	if (err && err != -EPERM && target__gone(pid))
		err = -ESRCH;
	if (err == -ESRCH)
		elog("pid %d: no such process\n", pid);
	else if (err == -EPERM)
		elog("pid %d (%s) is a kernel thread: it has no heap to trace\n", pid, comm);
	else if (err == -ENOENT)
		elog("pid %d (%s): no allocator found (no malloc/free symbols in its program or "
		     "libraries)\n",
		     pid, comm);
	else if (err)
		elog("pid %d: %s\n", pid, strerror(-err));
	if (err)
		return err;
	/* tables before probes: the first stacks are already complete */
	engine__unwind_pid(s->eng, pid);
	err = engine__attach(s->eng, pid, lib, libc[0] ? libc : NULL);
	if (err == -ESRCH)
		elog("pid %d: no such process (it exited while being attached)\n", pid);
	if (err)
		return err;
	err = track(s, pid, true, lib, libc[0] ? libc : NULL);
	if (err)
		return err;
	symbolizer__add_pid(s->sym, pid);
	return 0;
}

/*
 * System-wide: know this process, and make sure its allocator library is probed (probes are
 * per library file, so processes sharing one cost nothing more). Quiet: processes come and go.
 */
static bool comm_wanted(const struct session *s, const char *comm)
{
	for (int i = 0; i < s->nr_comms; i++)
		if (strcmp(comm, s->comms[i]) == 0)
			return true;
	return s->nr_comms == 0;
}

/* Does pid see the file system from our root (no container)? */
static bool same_root(pid_t pid)
{
	char path[64];
	struct stat a, b;

	snprintf(path, sizeof(path), "/proc/%d/root", pid);
	return stat(path, &a) == 0 && stat("/", &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

/* Take pid out of a list of pids (in any order). */
static void pids_remove(pid_t *pids, int *nr, pid_t pid)
{
	for (int i = 0; i < *nr; i++)
		if (pids[i] == pid)
			pids[i--] = pids[--*nr];
}

/*
 * A pid reported exited and given to a new process before it was forgotten: forgetting it
 * would delete the new process's entries. The old image's are stale by its exec generation, and
 * go as after an exec.
 */
static void unforget(struct session *s, pid_t pid)
{
	pids_remove(s->reported_dead, &s->nr_reported_dead, pid);
}

/* System-wide: pid (named comm) uses an allocator library that could not be probed. */
static void count_untraced(struct session *s, pid_t pid, const char *comm)
{
	pid_t *p;

	if (!comm_wanted(s, comm))
		return;
	/* once per image: it is looked at again and again */
	for (int i = 0; i < s->nr_untraced_pids; i++)
		if (s->untraced_pids[i] == pid)
			return;
	s->untraced++;
	p = realloc(s->untraced_pids, (s->nr_untraced_pids + 1) * sizeof(*p));
	if (!p)
		return;
	s->untraced_pids = p;
	s->untraced_pids[s->nr_untraced_pids++] = pid;
}

/* Its next image (or a new process under its pid) is counted again if not traced. */
static void uncount_untraced(struct session *s, pid_t pid)
{
	pids_remove(s->untraced_pids, &s->nr_untraced_pids, pid);
}

/* young: it exec'd just now; last: the last look at one that did (no allocator yet: none) */
static void adopt(struct session *s, pid_t pid, bool young, bool last)
{
	char comm[ASZ_COMM_LEN], lib[PATH_MAX], libc[PATH_MAX];
	struct tracked *t = find_tracked(s, pid);
	bool lib_failed = false;
	struct stat st;
	int i, err, links;

	if (pid == getpid())
		return;
	err = target__inspect(pid, comm, sizeof(comm), lib, sizeof(lib), libc, sizeof(libc));
	/* right after exec ld.so has not mapped libc yet: look again soon */
	if (err && !(young && err == -ENOENT)) {
		/*
		 * A static program without malloc symbols, a file we cannot read... Counted only
		 * when asked for by name: every Go program of a machine has no malloc either, and
		 * nothing of it is lost.
		 */
		if (last && err == -ENOENT && s->nr_comms && !target__gone(pid))
			count_untraced(s, pid, comm);
		return;
	}
	/* probed whatever its name: a process started later with a wanted name may use it */
	if (!err && stat(lib, &st) == 0) {
		for (i = 0; i < s->nr_libs; i++)
			if (s->libs[i].dev == st.st_dev && s->libs[i].ino == st.st_ino)
				break;
		lib_failed = i < s->nr_libs && s->libs[i].failed;
		if (i == s->nr_libs) {
			struct libid *l = realloc(s->libs, (s->nr_libs + 1) * sizeof(*l));

			if (!l)
				return;
			s->libs = l;
			/*
			 * Recorded even if attaching fails: one error per library, not per
			 * process. But not when the process was gone before its library could be
			 * opened by its path: the next process mapping it tries again.
			 */
			s->libs[s->nr_libs++] = (struct libid){st.st_dev, st.st_ino, false};
			links = engine__nr_links(s->eng);
			if (engine__attach_lib(s->eng, lib, libc[0] ? libc : NULL)) {
				/* nothing attached (a retry cannot probe twice) */
				if (target__gone(pid) && engine__nr_links(s->eng) == links) {
					s->nr_libs--;
					return;
				}
				s->libs[s->nr_libs - 1].failed = true;
				count_untraced(s, pid, comm);
				return;
			}
			/*
			 * Its table now, and its symbols when its name here is the one the
			 * process's maps give (not a container's): processes that use it may be
			 * gone before they are adopted.
			 */
			if (same_root(pid)) {
				add_file(lib, s);
				if (libc[0])
					add_file(libc, s);
			} else {
				engine__unwind_file(s->eng, lib);
				if (libc[0])
					engine__unwind_file(s->eng, libc);
			}
		}
	}
	if (lib_failed)
		count_untraced(s, pid, comm);
	if (!comm_wanted(s, comm))
		return;
	if (!t) {
		if (track(s, pid, false, NULL, NULL))
			return;
		t = &s->t[s->nr - 1];
	}
	t->exited = false;
	unforget(s, pid);
	if (young) {
		t->looks_left = NEW_LOOKS;
		t->next_look_ns = util__mono_ns() + NEW_LOOK_NS;
	}
	engine__track(s->eng, pid);
	engine__unwind_pid(s->eng, pid);
	symbolizer__add_pid(s->sym, pid);
}

/* System-wide: the second looks at processes that exec'd recently. */
static void look_again(struct session *s, __u64 now)
{
	for (int i = 0; i < s->nr; i++) {
		struct tracked *t = &s->t[i];

		if (!t->looks_left || t->exited || now < t->next_look_ns)
			continue;
		t->looks_left--;
		t->next_look_ns = now + NEW_LOOK_NS * (NEW_LOOKS - t->looks_left + 1);
		adopt(s, t->pid, false, !t->looks_left);
	}
}

static int scan_all(struct session *s)
{
	struct dirent *d;
	DIR *dir = opendir("/proc");

	if (!dir)
		return -errno;
	while ((d = readdir(dir))) {
		char *end;
		long pid = strtol(d->d_name, &end, 10);

		if (*end || pid <= 0)
			continue;
		adopt(s, pid, false, false);
	}
	closedir(dir);
	if (!s->nr_libs) {
		elog("no process with a glibc allocator found\n");
		return -ENOENT;
	}
	return 0;
}

/*
 * A target exec'd from another thread than its main one: the links made for its pid followed
 * the old main thread, now gone. With uprobe_multi links, probes are made again, on the same
 * allocator library (the new image has not mapped its libraries yet: the dynamic linker runs
 * after the exec event); allocations made before are not seen, their frees count as unknown
 * frees. Perf-event links cannot follow (the kernel refuses them, or takes them and never
 * fires, while the pid still names the old main thread): said so.
 */
static void follow_exec(struct session *s, struct tracked *t)
{
	int err = t->lib ? engine__reattach(s->eng, t->pid, t->lib, t->libc) : -ENOENT;

	if (err == -EOPNOTSUPP) {
		elog("pid %d exec'd from a thread: its new image is not traced (perf-event links "
		     "cannot follow that; uprobe_multi links can)\n",
		     t->pid);
		s->untraced++;
		return;
	}
	if (err) {
		engine__detach_pid(s->eng, t->pid);
		s->untraced++;
		elog("pid %d exec'd from a thread: its new image is not traced: %s\n", t->pid,
		     strerror(-err));
		return;
	}
	elog("pid %d exec'd from a thread: traced again from now on (the new image's first "
	     "allocations were not seen)\n",
	     t->pid);
}

/* Is the path of an exec event, seen from here, the file that was exec'd (same device, inode)? */
static bool exec_file_is_here(const struct asz_event *ev)
{
	struct stat st;

	if (ev->path[0] != '/' || !memchr(ev->path, '\0', sizeof(ev->path)) ||
	    stat(ev->path, &st))
		return false;
	return st.st_ino == ev->ino && util__kernel_dev(st.st_dev) == ev->dev;
}

/*
 * -p and -- CMD: a target exec'd, and its new image may bind malloc elsewhere (a container's or
 * a chroot's libc, another LD_LIBRARY_PATH, a static program, jemalloc): looked at once ld.so
 * has mapped it. Probed again on that library if so: its first allocations were not seen.
 */
static void look_after_exec(struct session *s, struct tracked *t)
{
	char comm[ASZ_COMM_LEN], lib[PATH_MAX], libc[PATH_MAX];
	struct stat st;
	int err;

	err = target__inspect(t->pid, comm, sizeof(comm), lib, sizeof(lib), libc, sizeof(libc));
	if (err == -ENOENT && t->looks_left)
		return; /* ld.so has not mapped it yet */
	t->looks_left = 0;
	if (err || stat(lib, &st) || (st.st_dev == t->lib_dev && st.st_ino == t->lib_ino)) {
		if (err && err != -ESRCH) {
			s->untraced++;
			elog("pid %d exec'd: %s: its new image is not traced\n", t->pid,
			     err == -ENOENT ? "no allocator found" : strerror(-err));
		}
		return;
	}
	err = engine__reprobe(s->eng, t->pid, lib, libc[0] ? libc : NULL);
	if (!err)
		err = set_libs(t, lib, libc[0] ? libc : NULL);
	if (err) {
		s->untraced++;
		elog("pid %d exec'd into a program with another allocator (%s): not traced: %s\n",
		     t->pid, lib,
		     target__gone(t->pid) ? "it exited before it could be probed" : strerror(-err));
		return;
	}
	engine__unwind_pid(s->eng, t->pid);
	elog("pid %d exec'd into a program with another allocator (%s): traced there from now on "
	     "(its first allocations were not seen)\n",
	     t->pid, lib);
}

/* path: an exec event's, NUL-terminated within ASZ_EXEC_PATH_LEN */
static void note_exec_path(struct session *s, pid_t pid, const char *path)
{
	char real[PATH_MAX];
	struct exec_path *e = NULL;

	for (int i = 0; i < s->nr_exec_paths && !e; i++)
		if (s->exec_paths[i].pid == pid)
			e = &s->exec_paths[i];
	if (!e) {
		e = realloc(s->exec_paths, (s->nr_exec_paths + 1) * sizeof(*e));
		if (!e)
			return;
		s->exec_paths = e;
		e = &s->exec_paths[s->nr_exec_paths++];
		e->pid = pid;
	}
	/* named as /proc/PID/exe names it: symbolic links resolved (if that fits) */
	if (realpath(path, real) && strlen(real) < sizeof(e->path))
		path = real;
	memcpy(e->path, path, strlen(path) + 1);
}

static void on_event(const struct asz_event *ev, void *ctx)
{
	struct session *s = ctx;
	struct tracked *t = find_tracked(s, ev->tgid);

	switch (ev->type) {
	case ASZ_EV_EXEC:
		/* a new image: new name, maybe a new allocator library, new mappings */
		if (s->system_wide) {
			/*
			 * Its program by the path exec was given: a process gone before it is
			 * adopted still has its frames named, and the next run of the same program
			 * its table (this one's stacks were walked before it).
			 */
			if (exec_file_is_here(ev)) {
				symbolizer__add_file(s->sym, ev->path, false);
				engine__unwind_file(s->eng, ev->path);
				note_exec_path(s, ev->tgid, ev->path);
			}
			uncount_untraced(s, ev->tgid);
			adopt(s, ev->tgid, true, false);
		} else if (t) {
			if (ev->flags & ASZ_EV_NEW_LEADER)
				follow_exec(s, t);
			symbolizer__add_pid(s->sym, ev->tgid);
			t->looks_left = EXEC_LOOKS;
			t->next_look_ns = util__mono_ns() + EXEC_LOOK_NS;
		}
		engine__refresh(s->eng);
		break;
	case ASZ_EV_EXIT:
		uncount_untraced(s, ev->tgid);
		if (t)
			mark_exited(s, t);
		break;
	case ASZ_EV_FORK:
		/* its first (the kernel counts the rest: said at the end) */
		if (t)
			elog("pid %d started process %u, which is not traced: child processes are not "
			     "followed (system-wide, asizeof-bpf --comm NAME traces them)\n",
			     ev->tgid, ev->gen);
		break;
	case ASZ_EV_REUSED:
		/* the new process under that pid: tracked (and not forgotten) like an exec'd one */
		if (s->system_wide) {
			uncount_untraced(s, ev->tgid);
			adopt(s, ev->tgid, true, false);
		}
		break;
	}
}

/* An object the command's program loads (ld.so said): its symbols and table once attached. */
static void keep_object(const char *path, void *ctx)
{
	struct session *s = ctx;
	char **objs, *copy = strdup(path);

	objs = copy ? realloc(s->child_objs, (s->nr_child_objs + 1) * sizeof(*objs)) : NULL;
	if (!objs) {
		free(copy);
		return;
	}
	s->child_objs = objs;
	s->child_objs[s->nr_child_objs++] = copy;
}

static const char *program_error(int err)
{
	switch (err) {
	case -ENOEXEC:
		return "not a program (neither an ELF file nor a #! script)";
	case -EISDIR:
		return "is a directory";
	case -ELIBEXEC:
		return "not an executable (an ELF object file, a core dump, or truncated)";
	case -ELOOP:
		return "too many levels of #! interpreters";
	}
	return strerror(-err);
}

static const char *allocator_error(int err)
{
	switch (err) {
	case -ENODATA:
		return "statically linked without malloc symbols: nothing to probe";
	case -ESRCH:
		return "cannot find the allocator it uses";
	case -ETIMEDOUT:
		return "its dynamic linker did not say in 5 s which libraries it loads (asked with "
		       "LD_TRACE_LOADED_OBJECTS=1): not run";
	}
	return program_error(err);
}

/*
 * -- CMD, before BPF is loaded: the program it runs (a script's interpreter) and the allocator
 * that one uses, found once. Errors are one line.
 */
static int find_command(struct session *s, char **cmd)
{
	char prog[PATH_MAX];
	bool script;
	int err;

	err = target__resolve_cmd(cmd[0], s->child_path, sizeof(s->child_path));
	if (err) {
		elog("%s: %s\n", util__name(cmd[0]),
		     err == -ENOENT ? "command not found" : strerror(-err));
		return err;
	}
	err = target__program(s->child_path, prog, sizeof(prog));
	/* a script's interpreter is the program that runs, and allocates */
	script = strcmp(prog, s->child_path) != 0;
	if (err && script)
		elog("%s: bad interpreter %s: %s\n", s->child_path, prog, program_error(err));
	else if (err)
		elog("%s: %s\n", s->child_path, program_error(err));
	if (err)
		return err;
	if (script)
		keep_object(prog, s);
	err = target__exec_allocator(prog, s->child_lib, sizeof(s->child_lib), s->child_libc,
				     sizeof(s->child_libc), keep_object, s);
	if (err && script)
		elog("%s: its interpreter %s: %s\n", s->child_path, prog, allocator_error(err));
	else if (err)
		elog("%s: %s\n", s->child_path, allocator_error(err));
	return err;
}

static int launch(struct session *s, char **cmd, const sigset_t *sigmask)
{
	const char *libc = s->child_libc[0] ? s->child_libc : NULL;
	int err;

	/*
	 * The command's files are opened now: if it exits before its /proc/PID/maps is read, the
	 * mappings the kernel recorded for its stacks name them by device and inode.
	 */
	add_file(s->child_path, s);
	for (int i = 0; i < s->nr_child_objs; i++)
		add_file(s->child_objs[i], s);
	err = target__launch(s->child_path, cmd, sigmask, &s->child);
	if (err) {
		elog("cannot start %s: %s\n", s->child_path, strerror(-err));
		return err;
	}
	s->launched = true;
	err = engine__attach(s->eng, s->child.pid, s->child_lib, libc);
	if (err == -ESRCH)
		elog("the command's process %d was killed while held\n", s->child.pid);
	if (!err)
		err = track(s, s->child.pid, false, s->child_lib, libc);
	if (err) {
		target__abort(&s->child);
		s->child_done = true;
		return err;
	}
	return 0;
}

static void raise_nofile(void)
{
	struct rlimit r;

	if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
		r.rlim_cur = r.rlim_max;
		setrlimit(RLIMIT_NOFILE, &r);
	}
}

/*
 * May a target's malloc be in another library than libc (jemalloc, tcmalloc, the program's
 * own), whose C++ operator new is probed too? System-wide, always; else as its maps or (a
 * command, found already) its dynamic linker say (errors are left to the attach that follows).
 */
static bool own_new_possible(const struct session *s, const struct session_opts *o)
{
	char comm[ASZ_COMM_LEN], lib[PATH_MAX], libc[PATH_MAX];

	if (o->eo.system_wide)
		return true;
	for (int i = 0; i < o->nr_pids; i++)
		if (!target__inspect(o->pids[i], comm, sizeof(comm), lib, sizeof(lib), libc,
				     sizeof(libc)) &&
		    !util__is_libc_name(lib))
			return true;
	return o->cmd && !util__is_libc_name(s->child_lib);
}

int session__open(struct session **out, const struct session_opts *o)
{
	struct engine_opts eo;
	struct session *s;
	int err, i;

	if (o->nr_pids > SESSION_MAX_TARGETS)
		return -E2BIG;
	/* one-line errors about rlimits are not worth it: many processes want many descriptors */
	raise_nofile();
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->child.go_fd = -1;
	s->child.exec_fd = -1;
	s->sym = symbolizer__new();
	if (!s->sym) {
		err = -ENOMEM;
		elog("out of memory\n");
		goto cleanup;
	}
	s->system_wide = o->eo.system_wide;
	s->comms = o->eo.comms;
	s->nr_comms = o->eo.nr_comms;
	if (o->cmd) {
		err = find_command(s, o->cmd);
		if (err)
			goto cleanup;
	}
	eo = o->eo;
	eo.own_new = own_new_possible(s, o);
	err = engine__open(&s->eng, &eo);
	if (err)
		goto cleanup;
	if (s->system_wide) {
		err = scan_all(s);
		if (err)
			goto cleanup;
	}
	for (i = 0; i < o->nr_pids; i++) {
		err = attach_pid(s, o->pids[i]);
		if (err)
			goto cleanup;
	}
	if (o->cmd) {
		err = launch(s, o->cmd, o->cmd_sigmask);
		if (err)
			goto cleanup;
	}
	s->started_ns = util__mono_ns();
	*out = s;
	return 0;
cleanup:
	session__close(s);
	return err;
}

int session__start(struct session *s)
{
	char exe[PATH_MAX];
	int err;

	if (!s->launched || s->child.go_fd < 0)
		return 0;
	/*
	 * Ctrl-C while attaching (the held child has it blocked): the run ends as at any later
	 * time, the command never started.
	 */
	if (util__ending_signal_pending()) {
		vlog("a signal came while attaching: %s is not started\n", s->child_path);
		return 0;
	}
	err = target__release(&s->child);
	if (err && s->child.exec_failed)
		elog("cannot run %s: %s\n", s->child_path, strerror(-err));
	else if (err)
		elog("cannot start the command: %s\n", strerror(-err));
	if (err) {
		reap_child(s, true);
		return err;
	}
	/*
	 * exec has happened: the kernel named the process after the file. It may be gone already,
	 * /proc with it: what it ran is known (before, its exe was this program's, as forked).
	 */
	if (!realpath(s->child_path, exe))
		snprintf(exe, sizeof(exe), "%s", s->child_path);
	engine__set_image(s->eng, s->child.pid, util__basename(s->child_path), exe);
	engine__refresh(s->eng);
	s->started_ns = util__mono_ns();
	s->next_maps_ns = s->started_ns;
	return 0;
}

int session__nr_targets(const struct session *s)
{
	return s->nr;
}

int session__pollfds(const struct session *s, struct pollfd *fds, int max)
{
	int n = 0;

	if (max > 0)
		fds[n++] = (struct pollfd){.fd = engine__events_fd(s->eng), .events = POLLIN};
	for (int i = 0; i < s->nr && n < max; i++)
		if (!s->t[i].exited && s->t[i].pidfd >= 0)
			fds[n++] = (struct pollfd){.fd = s->t[i].pidfd, .events = POLLIN};
	return n;
}

__u64 session__service(struct session *s)
{
	__u64 now = util__mono_ns(), wake;

	engine__consume_events(s->eng, on_event, s);
	engine__unwind_service(s->eng);
	check_exits(s);
	if (s->system_wide) {
		/* hundreds of processes: their maps are read at exec and at each report only */
		look_again(s, now);
		return now + NEW_LOOK_NS;
	}
	for (int i = 0; i < s->nr; i++) {
		struct tracked *t = &s->t[i];

		if (!t->looks_left || t->exited)
			continue;
		if (now < t->next_look_ns)
			continue;
		t->looks_left--;
		t->next_look_ns = now + EXEC_LOOK_NS * (1 << 2 * (EXEC_LOOKS - t->looks_left));
		look_after_exec(s, t);
	}
	if (now >= s->next_maps_ns) {
		bool startup = s->launched && now - s->started_ns < STARTUP_POLL_NS;

		refresh_maps(s);
		s->next_maps_ns = now + (startup ? STARTUP_POLL_MS : MAPS_POLL_MS) * 1000000ull;
	}
	wake = s->next_maps_ns;
	for (int i = 0; i < s->nr; i++)
		if (s->t[i].looks_left && !s->t[i].exited && s->t[i].next_look_ns < wake)
			wake = s->t[i].next_look_ns;
	/* the launched command is reaped by polling: SIGCHLD may be blocked by the caller */
	if (s->launched && !s->child_done && wake > now + 50000000ull)
		return now + 50000000ull;
	return wake;
}

bool session__all_exited(const struct session *s)
{
	/* system-wide, processes come and go: never "all gone" */
	if (s->system_wide)
		return false;
	for (int i = 0; i < s->nr; i++)
		if (!s->t[i].exited)
			return false;
	return true;
}

/*
 * System-wide: processes that exited are reported once more, then forgotten (at the next
 * snapshot: the caller is still writing the report that shows them). Keeps memory and maps
 * flat over time.
 */
static void note_exited(struct session *s, const struct snapshot *cur)
{
	pid_t *dead = malloc((s->nr + cur->nr_procs + 1) * sizeof(*dead));
	int n = 0, i, j;

	if (!dead)
		return;
	/* those we tracked, and those seen only in the kernel's maps (forked children...) */
	for (size_t k = 0; k < cur->nr_procs; k++)
		if (cur->procs[k].exited && !find_tracked(s, cur->procs[k].pid))
			dead[n++] = cur->procs[k].pid;
	for (i = j = 0; i < s->nr; i++) {
		if (s->t[i].exited) {
			dead[n++] = s->t[i].pid;
			free(s->t[i].lib);
			free(s->t[i].libc);
		} else {
			s->t[j++] = s->t[i];
		}
	}
	s->nr = j;
	free(s->reported_dead);
	s->reported_dead = dead;
	s->nr_reported_dead = n;
}

static void forget_reported(struct session *s)
{
	engine__forget(s->eng, s->reported_dead, s->nr_reported_dead);
	for (int i = 0; i < s->nr_reported_dead; i++)
		symbolizer__remove_pid(s->sym, s->reported_dead[i]);
	symbolizer__trim(s->sym);
	for (int i = 0, j; i < s->nr_reported_dead; i++)
		for (j = 0; j < s->nr_exec_paths; j++)
			if (s->exec_paths[j].pid == s->reported_dead[i])
				s->exec_paths[j--] = s->exec_paths[--s->nr_exec_paths];
	s->nr_reported_dead = 0;
}

/*
 * Processes gone before their exe was read: named by the path their exec gave (metrics group by
 * it). The paths of processes gone that the snapshot does not show (filtered out, or nothing
 * allocated) are forgotten: with --comm, every other exec on the machine would stay here.
 */
static void name_by_exec_paths(struct session *s, struct snapshot *cur)
{
	for (int j = 0; j < s->nr_exec_paths;) {
		const struct exec_path *e = &s->exec_paths[j];
		const struct snap_proc *p = snapshot__find_proc(cur, e->pid);

		if (p && !p->exe)
			snapshot__set_exe(&cur->procs[p - cur->procs], e->path);
		if (!p && kill(e->pid, 0) && errno == ESRCH)
			s->exec_paths[j] = s->exec_paths[--s->nr_exec_paths];
		else
			j++;
	}
}

int session__snapshot(struct session *s, bool final, struct snapshot **out)
{
	struct snapshot *cur;
	pid_t *gone;
	int err, nr_gone = 0;

	/*
	 * events first: a pid reported exited and given to a new process since (ASZ_EV_REUSED) is
	 * taken off the list to forget, whose entries are the new process's now
	 */
	engine__consume_events(s->eng, on_event, s);
	if (s->system_wide)
		forget_reported(s);
	/* last look at the mappings before they may be needed for good */
	check_exits(s);
	refresh_maps(s);
	/*
	 * With -p or -- CMD the targets' tables are current now: a library a target dlclose'd is
	 * closed at the second report after (a plugin loaded again and again from a new file
	 * held an fd, a Dwfl with its debuginfod client and, deleted, its disk space each).
	 */
	if (!s->system_wide)
		symbolizer__trim(s->sym);
	err = engine__collect(s->eng, &cur);
	if (err) {
		elog("cannot read the kernel maps: %s\n", strerror(-err));
		return err;
	}
	cur->drops[ASZ_DROP_PROCS_UNTRACED] = s->untraced;
	/* gone processes (also forked children never seen alive): the kernel-recorded mappings */
	gone = malloc((cur->nr_procs + 1) * sizeof(*gone));
	if (gone) {
		for (size_t i = 0; i < cur->nr_procs; i++)
			if (cur->procs[i].exited)
				gone[nr_gone++] = cur->procs[i].pid;
		engine__for_each_vma(s->eng, gone, nr_gone, add_vma, s->sym);
		free(gone);
	}
	name_by_exec_paths(s, cur);
	cur->final = final;
	/* counting starts at attach, so growth since attach is measured from zero */
	snapshot__diff(cur, s->prev, NULL);
	snapshot__free(s->prev);
	s->prev = cur;
	*out = cur;
	if (s->system_wide)
		note_exited(s, cur);
	return 0;
}

void session__stop_command(struct session *s)
{
	struct tracked *t;

	if (!s->launched || s->child_done)
		return;
	/* it may have exited already (seen by its exit event), not yet reaped: no SIGTERM */
	t = find_tracked(s, s->child.pid);
	reap_child(s, t && t->exited);
	if (s->child_done)
		return;
	if (s->child.go_fd >= 0) {
		/* never released: it exits without running the command */
		target__abort(&s->child);
		s->child_done = true;
		return;
	}
	kill(s->child.pid, SIGTERM);
	for (int i = 0; i < 200 && !s->child_done; i++) {
		usleep(10000);
		reap_child(s, false);
	}
	if (!s->child_done) {
		kill(s->child.pid, SIGKILL);
		reap_child(s, true);
	}
}

int session__command_status(const struct session *s)
{
	return s->launched && s->child_done ? s->child_status : -1;
}

bool session__launched(const struct session *s)
{
	return s->launched;
}

pid_t session__command_pid(const struct session *s)
{
	return s->launched ? s->child.pid : 0;
}

struct symbolizer *session__symbolizer(struct session *s)
{
	return s->sym;
}

struct engine *session__engine(struct session *s)
{
	return s->eng;
}

void session__close(struct session *s)
{
	if (!s)
		return;
	session__stop_command(s);
	/* system-wide, no process is a target: none is counted (one lookup each, for nothing) */
	for (int i = 0; i < s->nr && s->eng && !s->system_wide; i++) {
		unsigned int n = engine__forks(s->eng, s->t[i].pid);

		if (n > 1)
			elog("pid %d started %u processes in all, none traced\n", s->t[i].pid, n);
	}
	engine__close(s->eng);
	if (s->sym) {
		struct symbolizer_stats st;

		symbolizer__stats(s->sym, &st);
		dlog("symbolizer: %llu addresses symbolized, %llu DWARF units indexed, "
		     "%llu whole-unit walks, %llu module files open, %llu closed\n",
		     (unsigned long long)st.symbolized, (unsigned long long)st.units_indexed,
		     (unsigned long long)st.unit_walks, (unsigned long long)st.files_open,
		     (unsigned long long)st.files_closed);
	}
	if (s->system_wide)
		dlog("session: %d exec paths kept\n", s->nr_exec_paths);
	symbolizer__free(s->sym);
	snapshot__free(s->prev);
	for (int i = 0; i < s->nr; i++) {
		if (s->t[i].pidfd >= 0)
			close(s->t[i].pidfd);
		free(s->t[i].lib);
		free(s->t[i].libc);
	}
	free(s->t);
	for (int i = 0; i < s->nr_child_objs; i++)
		free(s->child_objs[i]);
	free(s->child_objs);
	free(s->libs);
	free(s->reported_dead);
	free(s->exec_paths);
	free(s->untraced_pids);
	free(s);
}
