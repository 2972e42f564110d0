/* SPDX-License-Identifier: MIT */
/*
 * The HTTP side of `serve` (libmicrohttpd, its own threads): GET /metrics, /debug/pprof/heap,
 * /healthz. It only reads published states (serve_state.h), never the engine, BPF maps or the
 * symbolizer, so no client can stall sampling. Connections are limited in number and time.
 */
#ifndef ASZ_SERVE_HTTP_H
#define ASZ_SERVE_HTTP_H

#include "serve_state.h"

struct serve_http;

/*
 * Serve on listen_fd (bound and listening; owned by the server from now on, even on error),
 * starting with state st (the reference is taken). Threads are started here: block the
 * signals the caller handles itself first. Returns 0 or a negative errno.
 */
int serve_http__start(struct serve_http **out, int listen_fd, struct serve_state *st);
/* Make st the state requests see from now on (the reference is taken). */
void serve_http__publish(struct serve_http *h, struct serve_state *st);
/* Stop the threads, close every connection and the socket, release the state. Safe on NULL. */
void serve_http__stop(struct serve_http *h);

#endif
