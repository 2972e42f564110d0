// SPDX-License-Identifier: MIT
/*
 * Sampling-mode workload: sites that allocate many times the sampling period, so that the
 * sampled estimates can be checked against exact figures. Usage: sampling_sites OUTFILE
 * Writes {"pid":..,"sites":{"name":{"live_bytes":..,"live_allocs":..}}} to OUTFILE at the end.
 * No stdio before the end: every allocation the process makes is one of the sites'.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NSMALL 400000
#define NMID 5000
#define NBIG 40
#define NCHURN 200000

void *volatile small[NSMALL], *volatile mid[NMID], *volatile big[NBIG], *volatile sink;
static long small_bytes;

__attribute__((noinline, noclone)) static void site_small(void)
{
	for (int i = 0; i < NSMALL; i++) {
		size_t n = 64 + (i * 37) % 257;

		small[i] = malloc(n);
		small_bytes += n;
	}
}

__attribute__((noinline, noclone)) static void site_mid(void)
{
	for (int i = 0; i < NMID; i++)
		mid[i] = malloc(8192);
}

__attribute__((noinline, noclone)) static void site_big(void)
{
	for (int i = 0; i < NBIG; i++)
		big[i] = malloc(1 << 20);
}

__attribute__((noinline, noclone)) static void site_churn(void)
{
	for (int i = 0; i < NCHURN; i++) {
		void *p = malloc(32 + i % 200);

		sink = p;
		free(p);
	}
}

int main(int argc, char **argv)
{
	char buf[512];
	int fd, n;

	if (argc < 2)
		return 2;
	site_small();
	site_mid();
	site_big();
	site_churn();
	n = snprintf(buf, sizeof(buf),
		     "{\"pid\":%d,\"sites\":{\"site_small\":{\"live_bytes\":%ld,"
		     "\"live_allocs\":%d},\"site_mid\":{\"live_bytes\":%ld,\"live_allocs\":%d},"
		     "\"site_big\":{\"live_bytes\":%ld,\"live_allocs\":%d},"
		     "\"site_churn\":{\"live_bytes\":0}}}\n",
		     getpid(), small_bytes, NSMALL, (long)NMID * 8192, NMID, (long)NBIG << 20, NBIG);
	fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, n) != n)
		return 1;
	close(fd);
	return 0;
}
