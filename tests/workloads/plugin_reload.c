/* SPDX-License-Identifier: MIT */
/*
 * plugin_reload: a program that loads a plugin again and again, each time from a new file it
 * deletes after dlclose (a hot-reloaded plugin, a test harness), for the end-to-end tests. Built
 * plain gcc -O2. Usage: plugin_reload DIR N. It copies libz.so.1 (found by loading it once) to
 * DIR/plugin<i>.so, dlopens the copy, allocates through it (deflateInit_, freed by deflateEnd),
 * holds it 250 ms (the profiler re-reads a target's mappings every 100 ms), dlcloses and deletes
 * it, N times. Then it waits 3.5 s and prints "held K": how many descriptors its parent (the
 * profiler that launched it) still holds on files in DIR. Exits 0.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct zstream {
	char pad[64];
	void *zalloc, *zfree, *opaque;
	char rest[112 - 64 - 24];
};

typedef int (*deflate_init_fn)(struct zstream *, int, const char *, int);
typedef int (*deflate_end_fn)(struct zstream *);

volatile int sink;

static int copy_file(const char *from, const char *to)
{
	char buf[65536];
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);
	ssize_t n = 0;

	while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, n) != n)
			n = -1;
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return in < 0 || out < 0 || n < 0 ? -1 : 0;
}

/* Descriptors of process pid on files under dir (deleted ones too). */
static int fds_under(pid_t pid, const char *dir)
{
	char path[64], link[4096], target[4200];
	struct dirent *d;
	DIR *fds;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	fds = opendir(path);
	if (!fds)
		return -1;
	while ((d = readdir(fds))) {
		ssize_t len;

		snprintf(target, sizeof(target), "%s/%s", path, d->d_name);
		len = readlink(target, link, sizeof(link) - 1);
		if (len <= 0)
			continue;
		link[len] = 0;
		n += !strncmp(link, dir, strlen(dir)) && link[strlen(dir)] == '/';
	}
	closedir(fds);
	return n;
}

int main(int argc, char **argv)
{
	struct timespec hold = {0, 250 * 1000 * 1000}, settle = {3, 500 * 1000 * 1000};
	char src[4096], path[4200];
	struct link_map *lm;
	void *h;

	if (argc != 3)
		return 2;
	h = dlopen("libz.so.1", RTLD_NOW);
	if (!h || dlinfo(h, RTLD_DI_LINKMAP, &lm)) {
		fprintf(stderr, "plugin_reload: %s\n", dlerror());
		return 1;
	}
	snprintf(src, sizeof(src), "%s", lm->l_name);
	dlclose(h);
	for (int i = 0; i < atoi(argv[2]); i++) {
		struct zstream z;
		deflate_init_fn init;
		deflate_end_fn end;

		snprintf(path, sizeof(path), "%s/plugin%d.so", argv[1], i);
		if (copy_file(src, path) || !(h = dlopen(path, RTLD_NOW))) {
			fprintf(stderr, "plugin_reload: cannot load a copy of %s at %s\n", src, path);
			return 1;
		}
		init = (deflate_init_fn)dlsym(h, "deflateInit_");
		end = (deflate_end_fn)dlsym(h, "deflateEnd");
		memset(&z, 0, sizeof(z));
		sink += init(&z, 6, "1.2.13", (int)sizeof(z));
		nanosleep(&hold, NULL);
		sink += end(&z);
		dlclose(h);
		unlink(path);
	}
	nanosleep(&settle, NULL);
	printf("held %d\n", fds_under(getppid(), argv[1]));
	return 0;
}
