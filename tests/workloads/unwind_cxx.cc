// SPDX-License-Identifier: MIT
/*
 * unwind_cxx: allocations through libstdc++ for the DWARF unwinder's end-to-end tests, built
 * plain g++ -O2 (no frame pointers). Chains, innermost first:
 *
 *   malloc <- operator new (libstdc++) <- std::string's construction (libstdc++)
 *          <- cxx_string <- cxx_sites <- main <- libc <- _start
 *   malloc <- operator new (libstdc++) <- [std::vector<long>::reserve, may be inlined]
 *          <- cxx_vector <- cxx_sites <- main <- libc <- _start
 *
 * The string holds 101 characters (operator new(102)), the vector 1000 longs (operator
 * new(8000)); the objects themselves come from new in cxx_string / cxx_vector (32 and 24
 * bytes). Nothing is freed. Functions are noipa, calls are followed by work.
 */
#include <cstdio>
#include <string>
#include <vector>

#define NOIPA __attribute__((noipa))

volatile unsigned long sink;
std::string *volatile kept_string;
std::vector<long> *volatile kept_vector;
NOIPA void cxx_string(unsigned long n)
{
	kept_string = new std::string(n, 'x');
	sink += kept_string->size();
}

NOIPA void cxx_vector(unsigned long n)
{
	kept_vector = new std::vector<long>();
	kept_vector->reserve(n);
	sink += kept_vector->capacity();
}

NOIPA void cxx_sites(void)
{
	cxx_string(101);
	cxx_vector(1000);
	sink++;
}

int main()
{
	cxx_sites();
	std::printf("%p %p\n", (void *)kept_string->data(), (void *)kept_vector->data());
	return 0;
}
