/* SPDX-License-Identifier: MIT */
/*
 * A tracing session: the targets (pids given, or a command launched and held until attached),
 * their lifecycle (exits, reaping), the engine and the symbolizer, and the stream of snapshots.
 * Every mode (report, top, serve) drives one session from its own loop.
 */
#ifndef ASZ_SESSION_H
#define ASZ_SESSION_H

#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>
#include "engine.h"
#include "snapshot.h"
#include "symbolizer.h"

#define SESSION_MAX_TARGETS 64

struct session_opts {
	const pid_t *pids;
	int nr_pids;
	char **cmd; /* argv of a command to launch, or NULL */
	const sigset_t *cmd_sigmask; /* the signal mask it starts with (NULL: none blocked) */
	struct engine_opts eo; /* eo.system_wide: every process, no pids and no command */
};

struct session;

/*
 * Load BPF, inspect and attach every target; a command is launched but held. Errors are
 * logged as one line; returns 0 or a negative errno.
 */
int session__open(struct session **out, const struct session_opts *o);
/*
 * Let a launched command exec (returns once it has); no-op without one, or when SIGINT, SIGTERM
 * or SIGHUP (blocked by the caller) is pending: the caller's loop ends the run on it, and the
 * held command never runs.
 */
int session__start(struct session *s);
/* Number of targets; fds to poll (exits, kernel events; returns how many were written). */
int session__nr_targets(const struct session *s);
int session__pollfds(const struct session *s, struct pollfd *fds, int max);
/*
 * Housekeeping to call whenever the caller wakes: notice exits, reap the launched command,
 * re-read mappings when due. Returns the monotonic time (ns) it next wants to run.
 */
__u64 session__service(struct session *s);
bool session__all_exited(const struct session *s);
/*
 * Collect a snapshot diffed against the previous one. The session keeps it as the new
 * previous one: valid until the next call or session__close(); do not free it.
 */
int session__snapshot(struct session *s, bool final, struct snapshot **out);
/* End a launched command still running (SIGTERM, then SIGKILL after 2 s). */
void session__stop_command(struct session *s);
/* The launched command's exit status (128+N if killed by signal N), or -1 if none/running. */
int session__command_status(const struct session *s);
bool session__launched(const struct session *s);
pid_t session__command_pid(const struct session *s);
struct symbolizer *session__symbolizer(struct session *s);
struct engine *session__engine(struct session *s);
/* Detach everything and free; ends a held or running launched command. Safe on NULL. */
void session__close(struct session *s);

#endif
