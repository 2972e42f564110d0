// SPDX-License-Identifier: MIT
/*
 * A realloc whose mremap(2) a seccomp filter denies (ENOMEM): glibc's realloc of a block it
 * mapped then mallocs the new one, copies and unmaps the old. The kernel skips the system
 * call's entry tracepoint for a call seccomp denies, but not its exit.
 *   remap_denied OUT   run the sites, write the expectation to OUT, exit (blocks kept)
 * site_big: 256 KiB (mapped by glibc), site_grow: realloc'ed to 512 KiB (the realloc's
 * stack owns it), site_after: 100 bytes after it (the thread state is back at the outermost
 * level). site_denied: a raw mremap, denied, of a mapping made by site_src (it stays).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

void *volatile keep[8];

#if defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#else
#define ARCH AUDIT_ARCH_X86_64
#endif

static int deny_mremap(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mremap, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOMEM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

__attribute__((noinline, noclone)) static void site_big(void)
{
	keep[0] = malloc(256 << 10);
}

__attribute__((noinline, noclone)) static void site_grow(void)
{
	keep[0] = realloc(keep[0], 512 << 10);
}

__attribute__((noinline, noclone)) static void site_after(void)
{
	keep[1] = malloc(100);
}

__attribute__((noinline, noclone)) static void *site_src(void)
{
	void *p = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	keep[3] = p; /* no tail call: the mapping's frame 0 is this function */
	return p;
}

__attribute__((noinline, noclone)) static long site_denied(void)
{
	return syscall(SYS_mremap, site_src(), 2 * 4096, 8 * 4096, MREMAP_MAYMOVE);
}

int main(int argc, char **argv)
{
	char buf[512];
	int fd, n;

	if (argc < 2)
		return 2;
	if (deny_mremap()) {
		perror("seccomp");
		return 1;
	}
	/* the filter works: a raw mremap fails with its errno */
	if (site_denied() != -1 || errno != ENOMEM) {
		fprintf(stderr, "mremap was not denied\n");
		return 1;
	}
	site_big();
	site_grow();
	site_after();
	if (!keep[0] || !keep[1])
		return 1;
	n = snprintf(buf, sizeof(buf),
		     "{\"pid\":%d,\"heap\":{\"site_big\":0,\"site_grow\":524288,\"site_after\":100},"
		     "\"mmap\":{\"site_src\":8192,\"site_denied\":0},\"mmap_bytes\":8192,"
		     "\"mmap_regions\":1}\n",
		     getpid());
	fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, n) != n)
		return 1;
	close(fd);
	return 0;
}
