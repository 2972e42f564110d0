// SPDX-License-Identifier: MIT
//
// alloc_cxx: C++ allocations (new/delete, new[], aligned new, std::string, std::vector growth),
// each kind from its own non-inlinable function.
//
//   alloc_cxx [OUTFILE]   write the expected-JSON line to OUTFILE (default stdout), exit without
//                         freeing the kept objects.
//   alloc_cxx attach      print "ready <pid>", wait for "go" on stdin, do the same work, print the
//                         expected-JSON line, then wait for "exit" (or EOF) and exit.
//
// Every C++ allocation reaches malloc (or aligned_alloc for aligned new) from libstdc++'s
// operator new, so frames[0] of all of them is "operator new(unsigned long)" (or the aligned
// variant), and the site function is the first frame outside libstdc++. The JSON therefore has:
//   "sites":    per site function (keyed by name): the expected live/total numbers of the
//               allocations made below that function;
//   "frame0":   expected totals per frames[0] function ("operator new(unsigned long)", ...),
//               i.e. the same allocations grouped by what frames[0] must show.
// Sizes come from the library at run time (capacity() of strings and vectors), so the numbers
// are exact for the libstdc++ in use: a string of capacity c owns a block of c + 1 bytes; a
// vector<T> of capacity c owns c * sizeof(T) bytes; every capacity change is one new block and
// (when the old capacity was non-zero) one freed block.
//
// Allocations that are not ours: libstdc++ mallocs its exception-handling emergency pool
// (~70 KiB) in a static constructor before main (found with gdb breakpoints on every allocator
// entry: it is the only one). Launch-mode tests check it separately (one malloc from libstdc++,
// not from operator new) and the process total against the sum of its stacks; in attach mode it
// happened before the attach, so the process totals are exactly "proc".
// No <iostream> (its static init would allocate more) and no stdio after start.
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <new>
#include <string>
#include <unistd.h>
#include <vector>

#define SITE __attribute__((noipa, used))

struct counts {
	long long live_bytes = 0, live_allocs = 0, alloc_bytes = 0, allocs = 0, frees = 0;
	void alloc(long long size)
	{
		live_bytes += size;
		live_allocs++;
		alloc_bytes += size;
		allocs++;
	}
	void release(long long size)
	{
		live_bytes -= size;
		live_allocs--;
		frees++;
	}
};

struct Obj {
	long a[6]; // 48 bytes, trivial
};

struct Tracked {
	long v[3]; // 24 bytes, non-trivial destructor: new[] adds an 8-byte array cookie
	~Tracked() { v[0] = 0; }
};

struct alignas(64) Aligned {
	char c[200]; // 256 bytes with alignment 64: aligned new -> aligned_alloc(64, 256)
};

enum { C_NEW, C_NEW_ARRAY, C_DELETE, C_ALIGNED_NEW, C_STRING, C_VECTOR, NR_C };
static const char *const cname[NR_C] = { "site_new",	     "site_new_array", "site_delete",
					 "site_aligned_new", "site_string",    "site_vector" };
static counts c[NR_C];

Obj *volatile g_obj[4];
int *volatile g_ints;
Tracked *volatile g_tracked;
Aligned *volatile g_aligned;
std::string *volatile g_str;
std::vector<long> *volatile g_vec;
void *volatile g_sink;
// a source string the compiler cannot see through
char g_text[256];
const char *volatile g_textp = g_text;

SITE void site_new()
{
	for (int i = 0; i < 3; i++) {
		g_obj[i] = new Obj();
		c[C_NEW].alloc(sizeof(Obj));
	}
}

SITE void site_new_array()
{
	g_ints = new int[100];
	c[C_NEW_ARRAY].alloc(100 * sizeof(int));
	g_tracked = new Tracked[5];
	c[C_NEW_ARRAY].alloc(5 * sizeof(Tracked) + sizeof(size_t));
}

SITE void site_delete()
{
	for (int i = 0; i < 10; i++) {
		Obj *o = new Obj();
		c[C_DELETE].alloc(sizeof(Obj));
		g_obj[3] = o;
		delete g_obj[3];
		c[C_DELETE].release(sizeof(Obj));
	}
	int *a = new int[50];
	c[C_DELETE].alloc(50 * sizeof(int));
	g_sink = a;
	delete[] static_cast<int *>(g_sink);
	c[C_DELETE].release(50 * sizeof(int));
}

SITE void site_aligned_new()
{
	g_aligned = new Aligned();
	c[C_ALIGNED_NEW].alloc(sizeof(Aligned));
}

SITE void site_string()
{
	// the std::string object itself comes from new (frames[0] operator new as well)
	std::string *s = new std::string(g_textp); // 40 chars: beyond the small-string buffer
	c[C_STRING].alloc(sizeof(std::string));
	c[C_STRING].alloc((long long)s->capacity() + 1);
	for (int i = 0; i < 6; i++) {
		size_t before = s->capacity();
		s->append(g_textp, 40);
		if (s->capacity() != before) {
			c[C_STRING].alloc((long long)s->capacity() + 1);
			c[C_STRING].release((long long)before + 1);
		}
	}
	g_str = s;
}

SITE void site_vector()
{
	std::vector<long> *v = new std::vector<long>();
	c[C_VECTOR].alloc(sizeof(std::vector<long>));
	for (long i = 0; i < 1000; i++) {
		size_t before = v->capacity();
		v->push_back(i);
		if (v->capacity() != before) {
			c[C_VECTOR].alloc((long long)(v->capacity() * sizeof(long)));
			if (before)
				c[C_VECTOR].release((long long)(before * sizeof(long)));
		}
	}
	g_vec = v;
}

static char out[1 << 14];
static size_t out_len;

__attribute__((format(printf, 1, 2))) static void emit(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out + out_len, sizeof(out) - out_len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(out) - out_len)
		_exit(99);
	out_len += (size_t)n;
}

static void emit_counts(const char *name, const char *allocator, const counts &k, bool first)
{
	emit("%s\"%s\":{\"allocator\":\"%s\",\"live_bytes\":%lld,\"live_allocs\":%lld,"
	     "\"alloc_bytes\":%lld,\"allocs\":%lld,\"frees\":%lld}",
	     first ? "" : ",", name, allocator, k.live_bytes, k.live_allocs, k.alloc_bytes, k.allocs,
	     k.frees);
}

static void add(counts &t, const counts &k)
{
	t.live_bytes += k.live_bytes;
	t.live_allocs += k.live_allocs;
	t.alloc_bytes += k.alloc_bytes;
	t.allocs += k.allocs;
	t.frees += k.frees;
}

static void write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(97);
		buf += n;
		len -= (size_t)n;
	}
}

// One line from stdin without stdio; false at EOF.
static bool read_line(char *buf, size_t size)
{
	size_t n = 0;
	for (;;) {
		char ch;
		ssize_t r = read(0, &ch, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			buf[n] = 0;
			return n > 0;
		}
		if (ch == '\n')
			break;
		if (n + 1 < size)
			buf[n++] = ch;
	}
	buf[n] = 0;
	return true;
}

int main(int argc, char **argv)
{
	bool attach = argc >= 2 && !strcmp(argv[1], "attach");
	char line[128];

	for (int i = 0; i < 40; i++)
		g_text[i] = (char)('A' + (i * 5 + argc) % 26);

	if (attach) {
		int n = snprintf(line, sizeof(line), "ready %d\n", (int)getpid());
		write_all(1, line, (size_t)n);
		for (;;) {
			if (!read_line(line, sizeof(line)) || !strcmp(line, "exit"))
				return 0;
			if (!strcmp(line, "go"))
				break;
		}
	}
	site_new();
	site_new_array();
	site_delete();
	site_aligned_new();
	site_string();
	site_vector();

	emit("{\"pid\":%d,\"mode\":\"%s\",\"sites\":{", (int)getpid(), attach ? "attach" : "launch");
	counts plain, aligned, total;
	for (int i = 0; i < NR_C; i++) {
		emit_counts(cname[i], i == C_ALIGNED_NEW ? "memalign" : "malloc", c[i], i == 0);
		add(i == C_ALIGNED_NEW ? aligned : plain, c[i]);
		add(total, c[i]);
	}
	emit("},\"frame0\":{");
	emit_counts("operator new(unsigned long)", "malloc", plain, true);
	emit_counts("operator new(unsigned long, std::align_val_t)", "memalign", aligned, false);
	emit("},\"proc\":{\"live_bytes\":%lld,\"live_allocs\":%lld,\"alloc_bytes\":%lld,"
	     "\"allocs\":%lld,\"frees\":%lld,\"unknown_frees\":0}}\n",
	     total.live_bytes, total.live_allocs, total.alloc_bytes, total.allocs, total.frees);

	if (attach) {
		write_all(1, out, out_len);
		while (read_line(line, sizeof(line)) && strcmp(line, "exit"))
			;
		return 0;
	}
	int fd = 1;
	if (argc >= 2 && strcmp(argv[1], "-")) {
		fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			_exit(98);
	}
	write_all(fd, out, out_len);
	return 0;
}
