// SPDX-License-Identifier: MIT
// cxx_bad_alloc: a failing operator new (an absurd size, as a corrupted length gives) whose
// std::bad_alloc is caught, then 100 x 1000 bytes by new at site_after, kept. Under an
// allocator with its own operator new (jemalloc, tcmalloc) that function is probed: the
// exception must get through. Prints "caught" and exits 0.
#include <cstdio>
#include <cstdlib>
#include <new>

#define NOIPA __attribute__((noipa))

void *volatile kept[100];
volatile size_t huge = (size_t)1 << 62;

NOIPA void *site_huge()
{
	return new char[huge];
}

NOIPA void site_after(int i)
{
	kept[i] = new char[1000];
}

int main()
{
	try {
		kept[0] = site_huge();
		std::puts("not thrown");
		return 1;
	} catch (const std::bad_alloc &) {
		std::puts("caught");
	}
	for (int i = 0; i < 100; i++)
		site_after(i);
	return 0;
}
