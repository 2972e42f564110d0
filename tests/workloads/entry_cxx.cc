// SPDX-License-Identifier: MIT
//
// entry_cxx: every C++ operator new and delete, each from its own site_* function, blocks kept.
//
//   entry_cxx MODE OUT   MODE: ops (each operator once), ops-libstdc++ (the same, with
//                        the sizes libstdc++'s operator new asks glibc's malloc for) or threads
//                        (4 threads deleting each other's objects); write the expectation to
//                        OUT, exit without freeing.
//
// Expectation as entry_points': {"pid":P,"sites":{"NAME":{"live_bytes","live_allocs"[,"allocs",
// "frees"]}}}, the sizes operator new was asked for, whatever the allocator rounds to. With
// glibc, libstdc++'s operator new asks malloc for 1 byte where it was asked for 0, and its
// aligned new asks aligned_alloc for a multiple of the alignment: those are what is counted.
#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <new>
#include <pthread.h>
#include <unistd.h>

#define SITE __attribute__((noipa, used))
#define MAX_SITES 16

struct site {
	const char *name;
	long long live_bytes, live_allocs, allocs, frees;
	int exact; // allocs and frees known
};

static site sites[MAX_SITES];
static int nr_sites;
void *volatile kept[4096];
static int nr_kept;
volatile size_t g_huge = (size_t)1 << 62; // fails for sure: its return is left alone

static void die(const char *msg)
{
	ssize_t r = write(2, msg, strlen(msg));

	(void)r;
	_exit(99);
}

static site *get(const char *name)
{
	for (int i = 0; i < nr_sites; i++)
		if (!strcmp(sites[i].name, name))
			return &sites[i];
	if (nr_sites == MAX_SITES)
		die("entry_cxx: too many sites\n");
	sites[nr_sites].name = name;
	sites[nr_sites].exact = 1;
	return &sites[nr_sites++];
}

static int libstdcxx_sizes;

// What libstdc++'s operator new (size, align) asks malloc or aligned_alloc for.
static long long asked(long long size, long long align)
{
	if (!libstdcxx_sizes)
		return size;
	if (!size)
		size = 1;
	return (size + align - 1) / align * align;
}

static void *keep(const char *name, void *p, long long size)
{
	site *s = get(name);

	if (!p)
		die("entry_cxx: allocation failed\n");
	s->live_bytes += size;
	s->live_allocs++;
	s->allocs++;
	kept[nr_kept++] = p;
	return p;
}

static void gone(const char *name, long long size)
{
	site *s = get(name);

	s->live_bytes -= size;
	s->live_allocs--;
	s->frees++;
}

SITE void site_new(void)
{
	keep("site_new", ::operator new(100), 100);
	keep("site_new", ::operator new[](200), 200);
}

SITE void site_new_zero(void)
{
	// operator new(0) must return a distinct block: of 0 bytes asked
	keep("site_new_zero", ::operator new(0), asked(0, 1));
	keep("site_new_zero", ::operator new[](0), asked(0, 1));
}

SITE void site_new_nothrow(void)
{
	keep("site_new_nothrow", ::operator new(300, std::nothrow), 300);
	keep("site_new_nothrow", ::operator new[](400, std::nothrow), 400);
}

SITE void site_new_nothrow_fail(void)
{
	// fails: nothing kept (libstdc++'s may throw and catch inside: its exception's block)
	void *p = ::operator new(g_huge, std::nothrow);

	get("site_new_nothrow_fail")->exact = 0;
	if (p)
		die("huge nothrow new succeeded\n");
}

SITE void site_new_aligned(void)
{
	// 100 bytes asked with alignment 64 (libstdc++ asks aligned_alloc for 128)
	keep("site_new_aligned", ::operator new(100, std::align_val_t(64)), asked(100, 64));
	keep("site_new_aligned", ::operator new[](1000, std::align_val_t(256)), asked(1000, 256));
	keep("site_new_aligned", ::operator new(40, std::align_val_t(32), std::nothrow),
	     asked(40, 32));
	keep("site_new_aligned", ::operator new[](50, std::align_val_t(32), std::nothrow),
	     asked(50, 32));
}

SITE void site_deletes(void)
{
	void *p;

	p = keep("site_deletes", ::operator new(11), 11);
	::operator delete(p);
	p = keep("site_deletes", ::operator new[](12), 12);
	::operator delete[](p);
	p = keep("site_deletes", ::operator new(13), 13);
	::operator delete(p, (size_t)13);
	p = keep("site_deletes", ::operator new[](14), 14);
	::operator delete[](p, (size_t)14);
	p = keep("site_deletes", ::operator new(15, std::nothrow), 15);
	::operator delete(p, std::nothrow);
	p = keep("site_deletes", ::operator new[](16, std::nothrow), 16);
	::operator delete[](p, std::nothrow);
	p = keep("site_deletes", ::operator new(17, std::align_val_t(64)), 17);
	::operator delete(p, std::align_val_t(64));
	p = keep("site_deletes", ::operator new[](18, std::align_val_t(64)), 18);
	::operator delete[](p, std::align_val_t(64));
	p = keep("site_deletes", ::operator new(19, std::align_val_t(64)), 19);
	::operator delete(p, (size_t)19, std::align_val_t(64));
	p = keep("site_deletes", ::operator new[](20, std::align_val_t(64)), 20);
	::operator delete[](p, (size_t)20, std::align_val_t(64));
	p = keep("site_deletes", ::operator new(21, std::align_val_t(64), std::nothrow), 21);
	::operator delete(p, std::align_val_t(64), std::nothrow);
	nr_kept -= 11;
	for (long long n = 11; n <= 21; n++)
		gone("site_deletes", n);
	::operator delete(nullptr);
	::operator delete[](nullptr);
}

#define NR_THREADS 4
#define PER_THREAD 2000

static void *objs[NR_THREADS][PER_THREAD];
static pthread_barrier_t barrier;

static size_t obj_size(int t, int i)
{
	return 8 + (size_t)(t * 100 + i * 13) % 500;
}

SITE void site_thread_new(int t)
{
	for (int i = 0; i < PER_THREAD; i++)
		objs[t][i] = ::operator new(obj_size(t, i));
}

static void *thread_main(void *arg)
{
	int t = (int)(intptr_t)arg, o = (t + 1) % NR_THREADS;

	for (int round = 0; round < 5; round++) {
		site_thread_new(t);
		pthread_barrier_wait(&barrier);
		for (int i = 0; i < PER_THREAD; i += 2)
			::operator delete(objs[o][i], obj_size(o, i)); // sized delete
		for (int i = 1; i < PER_THREAD && round < 4; i += 4)
			::operator delete(objs[o][i]);
		pthread_barrier_wait(&barrier);
		for (int i = 3; i < PER_THREAD && round < 4; i += 4)
			::operator delete(objs[t][i]);
	}
	return nullptr;
}

static void run_threads(void)
{
	pthread_t th[NR_THREADS];
	site *s = get("site_thread_new");

	pthread_barrier_init(&barrier, nullptr, NR_THREADS);
	for (int t = 0; t < NR_THREADS; t++)
		if (pthread_create(&th[t], nullptr, thread_main, (void *)(intptr_t)t))
			die("pthread_create\n");
	for (int t = 0; t < NR_THREADS; t++)
		pthread_join(th[t], nullptr);
	for (int t = 0; t < NR_THREADS; t++)
		for (int i = 0; i < PER_THREAD; i++) {
			s->allocs += 5;
			s->frees += i % 2 ? 4 : 5;
			if (i % 2) {
				s->live_bytes += obj_size(t, i);
				s->live_allocs++;
			}
		}
}

static char out[1 << 13];
static size_t out_len;

__attribute__((format(printf, 1, 2))) static void emit(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out + out_len, sizeof(out) - out_len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(out) - out_len)
		die("entry_cxx: output buffer full\n");
	out_len += n;
}

int main(int argc, char **argv)
{
	int fd;

	if (argc != 3)
		die("usage: entry_cxx ops|ops-libstdc++|threads OUT\n");
	libstdcxx_sizes = !strcmp(argv[1], "ops-libstdc++");
	if (!strcmp(argv[1], "ops") || libstdcxx_sizes) {
		site_new();
		site_new_zero();
		site_new_nothrow();
		site_new_nothrow_fail();
		site_new_aligned();
		site_deletes();
	} else if (!strcmp(argv[1], "threads")) {
		run_threads();
	} else {
		die("entry_cxx: unknown mode\n");
	}
	emit("{\"pid\":%d,\"sites\":{", (int)getpid());
	for (int i = 0; i < nr_sites; i++) {
		emit("%s\"%s\":{\"live_bytes\":%lld,\"live_allocs\":%lld", i ? "," : "",
		     sites[i].name, sites[i].live_bytes, sites[i].live_allocs);
		if (sites[i].exact)
			emit(",\"allocs\":%lld,\"frees\":%lld", sites[i].allocs, sites[i].frees);
		emit("}");
	}
	emit("}}\n");
	fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, out, out_len) != (ssize_t)out_len)
		die("entry_cxx: cannot write the expectation\n");
	close(fd);
	return 0;
}
