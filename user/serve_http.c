// SPDX-License-Identifier: MIT
/*
 * HTTP endpoints of `serve` (see serve_http.h):
 *   GET /metrics            Prometheus text exposition 0.0.4
 *   GET /debug/pprof/heap   gzipped pprof; ?pid=N, ?comm=NAME, ?seconds=N (delta over a window)
 *   GET /healthz            "ok"
 * Anything else is 404, another method on these paths 405, a bad query 400. Requests take a
 * reference to the current state under a mutex held only for that, then render without locks.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <microhttpd.h>
#include "log.h"
#include "serve_http.h"
#include "util.h"

/*
 * Clients at once, and how long an idle one may hold a connection. A client sending a byte
 * every few seconds holds its connection as long as it likes (libmicrohttpd has no deadline
 * per request): room for many, few from any one address.
 */
#define HTTP_MAX_CONNECTIONS 1024
#define HTTP_MAX_PER_IP 256
#define HTTP_TIMEOUT_S 10
#define HTTP_THREADS 2
/* A connection's memory for its request (the default 32 KiB stalled at ~500 parameters). */
#define HTTP_CONNECTION_MEMORY (256 * 1024)
/* ?seconds= beyond this is refused (the history holds at most SERVE_MAX_WINDOW_S anyway). */
#define HTTP_MAX_SECONDS 86400.0

struct serve_http {
	struct MHD_Daemon *d;
	pthread_mutex_t lock;
	struct serve_state *cur;
};

static struct serve_state *current(struct serve_http *h)
{
	struct serve_state *st;

	pthread_mutex_lock(&h->lock);
	st = h->cur;
	if (st)
		serve_state__get(st);
	pthread_mutex_unlock(&h->lock);
	return st;
}

void serve_http__publish(struct serve_http *h, struct serve_state *st)
{
	struct serve_state *old;

	pthread_mutex_lock(&h->lock);
	old = h->cur;
	h->cur = st;
	pthread_mutex_unlock(&h->lock);
	serve_state__put(old);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned int code, const char *type,
			     void *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
	enum MHD_Result ret;

	if (!r) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	if (code == MHD_HTTP_OK && strcmp(type, "application/octet-stream") == 0)
		MHD_add_response_header(r, "Content-Disposition", "attachment; filename=\"heap\"");
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned int code, const char *fmt,
				  ...)
{
	char *msg = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		return MHD_NO;
	return reply(c, code, "text/plain; charset=utf-8", msg, n, MHD_RESPMEM_MUST_FREE);
}

/* ---------------------------------------------------------------- /debug/pprof/heap query */

struct heap_args {
	struct serve_heap_query q;
	unsigned int seen; /* bit per known key: each may be given once */
	char comm[UTIL_UTF8_COMM_LEN]; /* valid UTF-8, as the profiles' names are */
	char err[160];
};

static void bad(struct heap_args *a, const char *fmt, const char *key, const char *value)
{
	if (!a->err[0])
		snprintf(a->err, sizeof(a->err), fmt, key, value ? value : "");
}

static enum MHD_Result heap_arg(void *cls, enum MHD_ValueKind kind, const char *key,
				size_t key_size, const char *value, size_t value_size)
{
	static const char *const keys[] = {"pid", "comm", "seconds", "gc", "debug"};
	struct heap_args *a = cls;
	unsigned int k;
	__u64 v;

	(void)kind;
	/* %00 decodes to a NUL: "comm=a%00b" must not pass for "a" */
	if (strlen(key) != key_size || (value && strlen(value) != value_size)) {
		bad(a, "parameter '%.40s': a NUL byte in it%s\n", key, "");
		return MHD_NO;
	}
	for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
		if (strcmp(key, keys[k]) == 0)
			break;
	if (k == sizeof(keys) / sizeof(keys[0])) {
		bad(a, "unknown parameter '%.40s'%s (pid, comm, seconds)\n", key, "");
		return MHD_NO;
	}
	if (a->seen & (1u << k)) {
		bad(a, "parameter '%s' given twice%s\n", key, "");
		return MHD_NO;
	}
	a->seen |= 1u << k;
	if (!value)
		value = "";
	switch (k) {
	case 0:
		if (util__parse_u64(value, &v) || v < 1 || v > INT_MAX)
			bad(a, "%s: '%.40s' is not a process id\n", key, value);
		else
			a->q.pid = v;
		break;
	case 1:
		/* its raw bytes or the name shown (U+FFFD for bytes that are not UTF-8) */
		if (!util__is_comm(value))
			bad(a, "%s: '%.40s' is not a process name (1-15 bytes, or as shown)\n", key,
			    value);
		util__utf8_copy(a->comm, sizeof(a->comm), value);
		a->q.comm = a->comm;
		break;
	case 2:
		if (util__parse_double(value, &a->q.seconds) || a->q.seconds <= 0 ||
		    a->q.seconds > HTTP_MAX_SECONDS)
			bad(a, "%s: '%.40s' is not a window in seconds (0-86400]\n", key, value);
		break;
	case 3: /* Go's handler forces a GC first; there is nothing to force here */
		break;
	case 4:
		if (strcmp(value, "0") != 0)
			bad(a, "%s=%.40s: only the binary profile (debug=0) is served\n", key, value);
		break;
	}
	return a->err[0] ? MHD_NO : MHD_YES;
}

static enum MHD_Result heap(struct MHD_Connection *c, struct serve_state *st)
{
	struct heap_args a = {};
	void *buf = NULL;
	size_t len = 0;
	int err;

	MHD_get_connection_values_n(c, MHD_GET_ARGUMENT_KIND, heap_arg, &a);
	if (a.err[0])
		return reply_text(c, MHD_HTTP_BAD_REQUEST, "%s", a.err);
	err = serve_state__heap(st, &a.q, &buf, &len);
	if (err)
		return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot render: %s\n",
				  strerror(-err));
	return reply(c, MHD_HTTP_OK, "application/octet-stream", buf, len, MHD_RESPMEM_MUST_FREE);
}

/* ---------------------------------------------------------------- routing */

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_size, void **con_cls)
{
	static const char *const paths[] = {"/metrics", "/debug/pprof/heap", "/healthz"};
	struct serve_http *h = cls;
	struct serve_state *st;
	enum MHD_Result ret;
	size_t i, len;
	const char *text;

	(void)version, (void)upload;
	/* absolute-form ("GET http://host/metrics"), which HTTP/1.1 servers must take too */
	if (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0) {
		url = strchr(strchr(url, ':') + 3, '/');
		if (!url)
			url = "/";
	}
	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (strcmp(url, paths[i]) == 0)
			break;
	/* errors at once (the connection then closes, a body sent is not read) */
	if (i == sizeof(paths) / sizeof(paths[0]))
		return reply_text(c, MHD_HTTP_NOT_FOUND, "not found: try /metrics, "
				  "/debug/pprof/heap or /healthz\n");
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
	/*
	 * The first call is for the headers alone: answered there, libmicrohttpd closes the
	 * connection (no keep-alive, pipelined requests dropped). A body is read and ignored.
	 */
	if (!*con_cls) {
		*con_cls = (void *)1;
		return MHD_YES;
	}
	if (*upload_size) {
		*upload_size = 0;
		return MHD_YES;
	}
	if (i == 2)
		return reply(c, MHD_HTTP_OK, "text/plain; charset=utf-8", "ok\n", 3,
			     MHD_RESPMEM_PERSISTENT);
	st = current(h);
	if (!st)
		return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "no snapshot yet\n");
	if (i == 0) {
		text = serve_state__metrics(st, &len);
		ret = reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", (void *)text,
			    len, MHD_RESPMEM_MUST_COPY);
	} else {
		ret = heap(c, st);
	}
	serve_state__put(st);
	return ret;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	if (env_verbosity < 1)
		return;
	fprintf(stderr, "asizeof-bpf: http: ");
	vfprintf(stderr, fmt, ap);
}

int serve_http__start(struct serve_http **out, int listen_fd, struct serve_state *st)
{
	struct serve_http *h = calloc(1, sizeof(*h));

	*out = NULL;
	if (!h) {
		close(listen_fd);
		serve_state__put(st);
		return -ENOMEM;
	}
	pthread_mutex_init(&h->lock, NULL);
	h->cur = st;
	/* ITC: stopping wakes every thread, also one whose connections are all taken */
	h->d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC,
				0, NULL, NULL,
				handle, h, MHD_OPTION_LISTEN_SOCKET, listen_fd,
				MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)HTTP_THREADS,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned int)HTTP_MAX_CONNECTIONS,
				MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)HTTP_MAX_PER_IP,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTP_TIMEOUT_S,
				MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONNECTION_MEMORY,
				MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
	if (!h->d) {
		close(listen_fd);
		serve_http__stop(h);
		return -EIO;
	}
	*out = h;
	return 0;
}

void serve_http__stop(struct serve_http *h)
{
	if (!h)
		return;
	if (h->d)
		MHD_stop_daemon(h->d);
	serve_state__put(h->cur);
	pthread_mutex_destroy(&h->lock);
	free(h);
}
