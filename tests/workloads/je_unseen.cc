// SPDX-License-Identifier: MIT
//
// je_unseen: an operator new of a size that fails for sure (nothrow: NULL; plain: bad_alloc,
// caught), then, from a deeper frame whose stack still holds that new's return address (a
// large local buffer not written yet), an anonymous mmap of the program's own, and blocks.
//
//   je_unseen MODE OUT   MODE: nothrow or throw; write the expectation to OUT and exit.
//
// Expectation: {"pid":P,"mmap":{"site_map":BYTES},"mmap_regions":N,"sites":{"site_after":{...}}}
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <new>
#include <sys/mman.h>
#include <unistd.h>

#define SITE extern "C" __attribute__((noipa, used))

void *volatile g_sink;
void *volatile kept[64];
volatile size_t g_huge = (size_t)1 << 62; // fails for sure (>= 128 TiB)
static int throwing;

static void die(const char *msg)
{
	ssize_t r = write(2, msg, strlen(msg));

	(void)r;
	_exit(99);
}

SITE void site_fail(void)
{
	if (!throwing) {
		g_sink = ::operator new(g_huge, std::nothrow);
		return;
	}
	try {
		g_sink = ::operator new(g_huge);
	} catch (const std::bad_alloc &) {
		g_sink = nullptr;
	}
}

// the buffer spans the stack the failed new's call used, unwritten until after the mmap
SITE void site_map(int i)
{
	char buf[16384];
	void *p = mmap(nullptr, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("je_unseen: mmap failed\n");
	kept[i] = p;
	asm volatile("" : : "r"(buf) : "memory");
	buf[0] = 1;
	g_sink = buf;
	g_sink = nullptr;
}

SITE void site_after(int i)
{
	kept[32 + i] = ::operator new(100);
}

int main(int argc, char **argv)
{
	char out[512];
	int fd, n;

	if (argc != 3)
		die("usage: je_unseen nothrow|throw OUT\n");
	throwing = !strcmp(argv[1], "throw");
	for (int i = 0; i < 4; i++) {
		site_fail();
		site_map(i);
		site_after(i);
	}
	n = snprintf(out, sizeof(out),
		     "{\"pid\":%d,\"mmap\":{\"site_map\":%d},\"mmap_regions_at_least\":4,"
		     "\"sites\":{\"site_after\":{\"live_bytes\":400,\"live_allocs\":4,\"allocs\":4,"
		     "\"frees\":0,\"alloc_bytes\":400}}}\n",
		     (int)getpid(), 4 * 65536);
	fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, out, n) != n)
		die("je_unseen: cannot write the expectation\n");
	close(fd);
	_exit(0);
}
