// SPDX-License-Identifier: MIT
//
// cxx_bulk: 100,000 x new char[200] kept from site_bulk (20,000,000 bytes), for sampling tests
// with allocators that have their own operator new. Usage: cxx_bulk OUTFILE (the expectation).
#include <cstdio>

char *volatile kept[100000];

__attribute__((noinline, noclone)) static void site_bulk()
{
	for (int i = 0; i < 100000; i++)
		kept[i] = new char[200];
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	site_bulk();
	FILE *f = std::fopen(argv[1], "w");
	if (!f)
		return 1;
	std::fprintf(f, "{\"live_bytes\":20000000,\"live_allocs\":100000}\n");
	return std::fclose(f) ? 1 : 0;
}
