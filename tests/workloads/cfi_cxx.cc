// SPDX-License-Identifier: MIT
/*
 * cfi_cxx: an allocation through libstdc++, for unwinder tests. Built plain g++ -O2 (no frame
 * pointers). main raises SIGSTOP (so a tracer can set a breakpoint in the loaded libraries), then
 *
 *   _start -> libc start-up -> main -> cxx_outer -> cxx_make_string
 *     -> std::string(101, 'x') (libstdc++: _M_construct) -> operator new -> malloc(102)
 *
 * and exits 0. The functions are noipa and each call is followed by work: no inlining, no tail
 * calls.
 */
#include <csignal>
#include <string>

#define NOIPA __attribute__((noipa))

volatile unsigned long sink;

NOIPA void cxx_use(const std::string &s)
{
	sink += s.size();
}

NOIPA void cxx_make_string(unsigned long n)
{
	std::string s(n, 'x');

	cxx_use(s);
}

NOIPA void cxx_outer(void)
{
	cxx_make_string(101);
	sink++;
}

int main()
{
	raise(SIGSTOP);
	cxx_outer();
	return 0;
}
