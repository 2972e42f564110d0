/* SPDX-License-Identifier: MIT */
/*
 * print_args OUTFILE [ARGS...]: writes {"pid":P,"args":["<hex>",...]} (every argument after
 * OUTFILE, hex-encoded byte for byte) to OUTFILE, then exits with status 3 plus the number of
 * arguments modulo 100, so a test can check that a launcher passes arguments and the exit status
 * through untouched. No allocation, no stdio.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char out[1 << 16];

int main(int argc, char **argv)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;
	if (argc < 2)
		return 2;
	n += (size_t)snprintf(out, sizeof(out), "{\"pid\":%d,\"args\":[", (int)getpid());
	for (int i = 2; i < argc; i++) {
		size_t len = strlen(argv[i]);
		if (n + 2 * len + 8 > sizeof(out))
			return 2;
		if (i > 2)
			out[n++] = ',';
		out[n++] = '"';
		for (size_t j = 0; j < len; j++) {
			out[n++] = hex[(unsigned char)argv[i][j] >> 4];
			out[n++] = hex[(unsigned char)argv[i][j] & 15];
		}
		out[n++] = '"';
	}
	out[n++] = ']';
	out[n++] = '}';
	out[n++] = '\n';
	int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return 2;
	if (write(fd, out, n) != (ssize_t)n)
		return 2;
	close(fd);
	return 3 + (argc - 2) % 100;
}
