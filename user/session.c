// SPDX-License-Identifier: MIT
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
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
};

struct session {
	struct engine *eng;
	struct symbolizer *sym;
	struct tracked t[SESSION_MAX_TARGETS + 1];
	int nr;
	struct launched child;
	char child_path[PATH_MAX];
	bool launched;
	bool child_done;
	int child_status;
	__u64 started_ns;
	__u64 next_maps_ns;
	struct snapshot *prev;
};

static void track(struct session *s, pid_t pid, bool child)
{
	struct tracked *t = &s->t[s->nr++];

	t->pid = pid;
	t->exited = false;
	t->pidfd = child ? -1 : (int)syscall(SYS_pidfd_open, pid, 0);
}

static void mark_exited(struct session *s, struct tracked *t)
{
	if (t->exited)
		return;
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
	for (int i = 0; i < s->nr; i++)
		if (!s->t[i].exited)
			symbolizer__add_pid(s->sym, s->t[i].pid);
}

static void add_file(const char *path, void *sym)
{
	symbolizer__add_file(sym, path);
}

static void add_vma(const struct asz_vma_key *k, const struct asz_vma *v, void *sym)
{
	symbolizer__add_mapping(sym, k->tgid, k->start, v->end, v->pgoff, v->dev >> 20,
				v->dev & 0xfffff, v->ino);
}

static int attach_pid(struct session *s, pid_t pid)
{
	char comm[ASZ_COMM_LEN] = "", lib[PATH_MAX];
	int err;

	err = target__inspect(pid, comm, sizeof(comm), lib, sizeof(lib));
	if (err == -ESRCH)
		elog("pid %d: no such process\n", pid);
	else if (err == -EPERM)
		elog("pid %d (%s) is a kernel thread: it has no heap to trace\n", pid, comm);
	else if (err == -ENOENT)
		elog("pid %d (%s): no glibc mapped (static or another libc: not supported yet)\n",
		     pid, comm);
	else if (err)
		elog("pid %d: %s\n", pid, strerror(-err));
	if (err)
		return err;
	err = engine__attach(s->eng, pid, lib);
	if (err)
		return err;
	track(s, pid, false);
	symbolizer__add_pid(s->sym, pid);
	return 0;
}

static int launch(struct session *s, char **cmd)
{
	char lib[PATH_MAX];
	int err;

	err = target__resolve_cmd(cmd[0], s->child_path, sizeof(s->child_path));
	if (err) {
		elog("%s: %s\n", cmd[0], err == -ENOENT ? "command not found" : strerror(-err));
		return err;
	}
	/*
	 * The command's files are opened now: if it exits before its /proc/PID/maps is read, the
	 * mappings the kernel recorded for its stacks name them by device and inode.
	 */
	symbolizer__add_file(s->sym, s->child_path);
	err = target__exec_libc(s->child_path, lib, sizeof(lib), add_file, s->sym);
	if (err) {
		elog("%s: %s\n", s->child_path,
		     err == -ENOEXEC ? "statically linked: no glibc to probe (not supported yet)"
				     : "cannot find the C library it loads");
		return err;
	}
	err = target__launch(s->child_path, cmd, &s->child);
	if (err) {
		elog("cannot start %s: %s\n", s->child_path, strerror(-err));
		return err;
	}
	s->launched = true;
	err = engine__attach(s->eng, s->child.pid, lib);
	if (err) {
		target__abort(&s->child);
		s->child_done = true;
		return err;
	}
	track(s, s->child.pid, true);
	return 0;
}

int session__open(struct session **out, const struct session_opts *o)
{
	struct session *s;
	int err, i;

	if (o->nr_pids > SESSION_MAX_TARGETS)
		return -E2BIG;
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
	err = engine__open(&s->eng, &o->eo);
	if (err)
		goto cleanup;
	for (i = 0; i < o->nr_pids; i++) {
		err = attach_pid(s, o->pids[i]);
		if (err)
			goto cleanup;
	}
	if (o->cmd) {
		err = launch(s, o->cmd);
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
	int err;

	if (!s->launched || s->child.go_fd < 0)
		return 0;
	err = target__release(&s->child);
	if (err) {
		elog("cannot start the command: %s\n", strerror(-err));
		return err;
	}
	/* exec has happened; the kernel named the process after the file (it may be gone) */
	engine__set_comm(s->eng, s->child.pid, util__basename(s->child_path));
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

	for (int i = 0; i < s->nr && n < max; i++)
		if (!s->t[i].exited && s->t[i].pidfd >= 0)
			fds[n++] = (struct pollfd){.fd = s->t[i].pidfd, .events = POLLIN};
	return n;
}

__u64 session__service(struct session *s)
{
	__u64 now = util__mono_ns();

	check_exits(s);
	if (now >= s->next_maps_ns) {
		bool startup = s->launched && now - s->started_ns < STARTUP_POLL_NS;

		refresh_maps(s);
		s->next_maps_ns = now + (startup ? STARTUP_POLL_MS : MAPS_POLL_MS) * 1000000ull;
	}
	/* the launched command is reaped by polling: SIGCHLD may be blocked by the caller */
	if (s->launched && !s->child_done && s->next_maps_ns > now + 50000000ull)
		return now + 50000000ull;
	return s->next_maps_ns;
}

bool session__all_exited(const struct session *s)
{
	for (int i = 0; i < s->nr; i++)
		if (!s->t[i].exited)
			return false;
	return true;
}

int session__snapshot(struct session *s, bool final, struct snapshot **out)
{
	struct snapshot *cur;
	int err;

	/* last look at the mappings before they may be needed for good */
	check_exits(s);
	refresh_maps(s);
	for (int i = 0; i < s->nr; i++)
		if (s->t[i].exited)
			engine__for_each_vma(s->eng, s->t[i].pid, add_vma, s->sym);
	err = engine__collect(s->eng, &cur);
	if (err) {
		elog("cannot read the kernel maps: %s\n", strerror(-err));
		return err;
	}
	cur->final = final;
	/* counting starts at attach, so growth since attach is measured from zero */
	snapshot__diff(cur, s->prev, NULL);
	snapshot__free(s->prev);
	s->prev = cur;
	*out = cur;
	return 0;
}

void session__stop_command(struct session *s)
{
	if (!s->launched || s->child_done)
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
	engine__close(s->eng);
	symbolizer__free(s->sym);
	snapshot__free(s->prev);
	for (int i = 0; i < s->nr; i++)
		if (s->t[i].pidfd >= 0)
			close(s->t[i].pidfd);
	free(s);
}
