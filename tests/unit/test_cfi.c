// SPDX-License-Identifier: MIT
/*
 * Unwind tables (user/cfi.c). Oracles: libdw's own CFI evaluation (dwarf_cfi_addrframe), checked
 * against the compiled rows at every address of whole modules, and eu-stack for a real unwind.
 * The real unwinds run tests/workloads/cfi_recurse.c, compiled here with plain gcc -O2 (no frame
 * pointers), stopped under ptrace (the tests may use ptrace; the product never does), with the
 * tables of every module it maps, exactly as the BPF side will walk them.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <dwarf.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>
#include <elfutils/libdw.h>

#include "cfi.h"
#include "symbolizer.h"

#define CT_LIBC "/lib/x86_64-linux-gnu/libc.so.6"
#define CT_LIBSTDCXX "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"
#define CT_CC1 "/usr/lib/gcc/x86_64-linux-gnu/12/cc1"
#define CT_DEPTH 20 /* cfi_recurse's recursion: 21 frames */
#define CT_MAX_FRAMES 128
#define CT_MAX_MAPS 256
#define CT_MAX_TABLES 32

/* ---- helpers: the test program ---- */

struct ct_prog {
	char dir[64];
	char path[128];
};

/* What a failed assertion leaves behind, for ct_fini (each test runs in its own process). */
static struct ct_prog ct_left_prog;
static pid_t ct_left_child;

/* Compile tests/workloads/NAME (.c with gcc, .cc with g++) -O2 -g plus extra flags. */
static void ct_compile_src(struct ct_prog *p, const char *name, const char *extra)
{
	char src[PATH_MAX], cmd[2 * PATH_MAX];
	const char *file = __FILE__, *slash = strrchr(file, '/');
	const char *cc = strstr(name, ".cc") ? "g++" : "gcc";
	int rc;

	snprintf(src, sizeof(src), "tests/workloads/%s", name);
	if (access(src, R_OK) && slash)
		snprintf(src, sizeof(src), "%.*s/../workloads/%s", (int)(slash - file), file, name);
	cr_assert_eq(access(src, R_OK), 0, "cannot find %s (run from the repository)", name);
	snprintf(p->dir, sizeof(p->dir), "/tmp/asz_cfi_XXXXXX");
	cr_assert_not_null(mkdtemp(p->dir));
	snprintf(p->path, sizeof(p->path), "%s/%.*s", p->dir, (int)strcspn(name, "."), name);
	snprintf(cmd, sizeof(cmd), "%s -O2 -g -Wall %s -o '%s' '%s'", cc, extra, p->path, src);
	ct_left_prog = *p;
	rc = system(cmd);
	cr_assert_eq(rc, 0, "%s", cmd);
}

static void ct_compile(struct ct_prog *p, const char *extra)
{
	ct_compile_src(p, "cfi_recurse.c", extra);
}

static void ct_prog_remove(struct ct_prog *p)
{
	unlink(p->path);
	rmdir(p->dir);
	ct_left_prog.dir[0] = '\0';
}

/* Teardown, also after a failed assertion: no process or file left behind. */
static void ct_fini(void)
{
	if (ct_left_child > 0) {
		kill(ct_left_child, SIGKILL);
		waitpid(ct_left_child, NULL, 0);
	}
	if (ct_left_prog.dir[0])
		ct_prog_remove(&ct_left_prog);
}

/* ---- helpers: symbols and segments ---- */

/* An ELF symbol (.symtab or .dynsym) by name: vaddr and size. */
static bool ct_symbol(const char *path, const char *name, __u64 *value, __u64 *size)
{
	int fd = open(path, O_RDONLY);
	Elf_Scn *scn = NULL;
	bool found = false;
	Elf *elf;

	cr_assert_geq(fd, 0, "%s", path);
	elf_version(EV_CURRENT);
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	cr_assert_not_null(elf);
	while (!found && (scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *d;

		if (!gelf_getshdr(scn, &sh) ||
		    (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM))
			continue;
		d = elf_getdata(scn, NULL);
		for (size_t i = 0; d && sh.sh_entsize && i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym sym;
			const char *n;

			if (!gelf_getsym(d, i, &sym) || !sym.st_value)
				continue;
			n = elf_strptr(elf, sh.sh_link, sym.st_name);
			if (n && !strcmp(n, name)) {
				*value = sym.st_value;
				*size = sym.st_size;
				found = true;
				break;
			}
		}
	}
	elf_end(elf);
	close(fd);
	return found;
}

/* ---- helpers: libdw as the oracle ---- */

struct ct_oracle {
	int fd;
	Elf *elf;
	Dwarf *dw;
	Dwarf_CFI *cfi;
	bool debug_frame;
};

static void ct_oracle_open(struct ct_oracle *o, const char *path, bool debug_frame)
{
	memset(o, 0, sizeof(*o));
	o->fd = open(path, O_RDONLY);
	cr_assert_geq(o->fd, 0, "%s", path);
	elf_version(EV_CURRENT);
	o->elf = elf_begin(o->fd, ELF_C_READ_MMAP, NULL);
	cr_assert_not_null(o->elf);
	o->debug_frame = debug_frame;
	if (debug_frame) {
		o->dw = dwarf_begin_elf(o->elf, DWARF_C_READ, NULL);
		cr_assert_not_null(o->dw, "%s: %s", path, dwarf_errmsg(-1));
		o->cfi = dwarf_getcfi(o->dw);
	} else {
		o->cfi = dwarf_getcfi_elf(o->elf);
	}
	cr_assert_not_null(o->cfi, "%s: no CFI: %s", path, dwarf_errmsg(-1));
}

static void ct_oracle_close(struct ct_oracle *o)
{
	if (o->dw)
		dwarf_end(o->dw);
	else
		dwarf_cfi_end(o->cfi);
	elf_end(o->elf);
	close(o->fd);
}

static struct asz_cfi_row ct_kind_row(__u8 kind)
{
	return (struct asz_cfi_row){ .cfa_reg = kind, .rbp_rule = ASZ_RBP_UNDEFINED };
}

/* "CFA + off" as libdw spells a saved register's location: DW_OP_call_frame_cfa [plus_uconst]. */
static bool ct_cfa_offset(const Dwarf_Op *ops, size_t n, __s64 *off)
{
	if (n == 1 && ops[0].atom == DW_OP_call_frame_cfa) {
		*off = 0;
		return true;
	}
	if (n == 2 && ops[0].atom == DW_OP_call_frame_cfa && ops[1].atom == DW_OP_plus_uconst) {
		*off = (__s64)ops[1].number;
		return true;
	}
	return false;
}

/*
 * The row libdw implies at vaddr, and the end of the range libdw gives it ([start, end) of the
 * frame state; vaddr + 1 where there is no FDE). *covered: an FDE covers vaddr.
 */
static struct asz_cfi_row ct_oracle_row(struct ct_oracle *o, __u64 vaddr, __u64 *end,
					bool *covered)
{
	struct asz_cfi_row r = ct_kind_row(ASZ_CFA_UNSUPPORTED);
	Dwarf_Op mem[3], *ops;
	Dwarf_Frame *fr = NULL;
	Dwarf_Addr s, e;
	size_t n;
	bool sig;
	__s64 off;
	int ra;

	*end = vaddr + 1;
	*covered = false;
	if (dwarf_cfi_addrframe(o->cfi, vaddr, &fr)) {
		const char *msg = dwarf_errmsg(-1);

		if (!strcmp(msg, "no matching address range"))
			return ct_kind_row(ASZ_CFA_UNDEFINED);
		/* A CFA program error: the builder marks those rows unsupported. */
		*covered = true;
		return r;
	}
	*covered = true;
	ra = dwarf_frame_info(fr, &s, &e, &sig);
	*end = e;
	if (sig || ra != 16)
		goto out;
	if (dwarf_frame_register(fr, 16, mem, &ops, &n))
		goto out;
	if (n == 0 && ops == mem) {
		r = ct_kind_row(ASZ_CFA_END); /* return address undefined: outermost */
		goto out;
	}
	if (!ct_cfa_offset(ops, n, &off) || off != -8)
		goto out;
	if (dwarf_frame_cfa(fr, &ops, &n) || n != 1)
		goto out;
	if (ops[0].atom == DW_OP_bregx && (ops[0].number == 6 || ops[0].number == 7)) {
		r.cfa_reg = ops[0].number == 7 ? ASZ_CFA_RSP : ASZ_CFA_RBP;
		off = (__s64)ops[0].number2;
	} else if (ops[0].atom == DW_OP_breg6 || ops[0].atom == DW_OP_breg7) {
		r.cfa_reg = ops[0].atom == DW_OP_breg7 ? ASZ_CFA_RSP : ASZ_CFA_RBP;
		off = (__s64)ops[0].number;
	} else {
		goto out;
	}
	if (off < INT32_MIN || off > INT32_MAX) {
		r = ct_kind_row(ASZ_CFA_UNSUPPORTED);
		goto out;
	}
	r.cfa_off = (__s32)off;
	if (dwarf_frame_register(fr, 6, mem, &ops, &n))
		goto out;
	if (n == 0 && !ops) {
		r.rbp_rule = ASZ_RBP_SAME;
	} else if (ct_cfa_offset(ops, n, &off) && off >= INT32_MIN && off <= INT32_MAX) {
		r.rbp_rule = ASZ_RBP_OFFSET;
		r.rbp_off = (__s32)off;
	}
out:
	free(fr);
	return r;
}

static bool ct_row_eq(const struct asz_cfi_row *a, const struct asz_cfi_row *b)
{
	return a->cfa_reg == b->cfa_reg && a->cfa_off == b->cfa_off &&
	       a->rbp_rule == b->rbp_rule && a->rbp_off == b->rbp_off;
}

struct ct_cmp {
	long addrs;	/* addresses whose row was compared */
	long queries;	/* libdw lookups */
	long covered;	/* addresses inside some FDE */
	long mismatches;
};

/*
 * Compare the table with libdw over [lo, hi). Every byte when every_byte; otherwise once per
 * libdw row (and per byte outside FDEs), checking that the table's row covering the start
 * extends at least to libdw's row end: rows are merged, so a boundary inside libdw's range would
 * be a different rule. Either way every address in [lo, hi) is accounted for.
 */
static void ct_compare(struct ct_oracle *o, const struct cfi_table *t, __u64 lo, __u64 hi,
		       bool every_byte, struct ct_cmp *c)
{
	__u64 x = lo;

	while (x < hi) {
		struct asz_cfi_row none = ct_kind_row(ASZ_CFA_UNDEFINED), want;
		const struct asz_cfi_row *got = NULL;
		__u64 end, next = UINT64_MAX;
		bool covered;

		want = ct_oracle_row(o, x, &end, &covered);
		c->queries++;
		if (x >= t->base)
			got = cfi_table__lookup(t, x - t->base);
		if (got && got + 1 < t->rows + t->nr_rows)
			next = t->base + got[1].pc;
		if (!got)
			got = &none;
		if (end > hi)
			end = hi;
		if (every_byte || !covered)
			end = x + 1;
		if (!ct_row_eq(got, &want) || next < end) {
			if (c->mismatches++ < 10)
				cr_log_error("vaddr %#llx: table {%u %d %u %d} up to %#llx, "
					     "libdw {%u %d %u %d} up to %#llx",
					     (unsigned long long)x, got->cfa_reg, got->cfa_off,
					     got->rbp_rule, got->rbp_off, (unsigned long long)next,
					     want.cfa_reg, want.cfa_off, want.rbp_rule,
					     want.rbp_off, (unsigned long long)end);
		}
		c->addrs += end - x;
		if (covered)
			c->covered += end - x;
		x = end;
	}
}

/* Compare every executable segment of a module. */
static void ct_compare_module(const char *path, bool debug_frame, const struct cfi_table *t,
			      struct ct_cmp *c)
{
	struct ct_oracle o;

	ct_oracle_open(&o, path, debug_frame);
	memset(c, 0, sizeof(*c));
	for (__u32 i = 0; i < t->nr_segs; i++)
		if (t->segs[i].exec)
			ct_compare(&o, t, t->segs[i].vaddr, t->segs[i].vaddr + t->segs[i].filesz,
				   false, c);
	ct_oracle_close(&o);
	cr_log_info("%s: %ld addresses compared (%ld in FDEs), %ld libdw lookups", path, c->addrs,
		    c->covered, c->queries);
}

/* Sorted, strictly increasing, merged, ending in an undefined row. */
static void ct_check_shape(const struct cfi_table *t)
{
	cr_assert_gt(t->nr_rows, 1);
	for (__u32 i = 1; i < t->nr_rows; i++) {
		cr_assert_gt(t->rows[i].pc, t->rows[i - 1].pc, "row %u", i);
		cr_assert(!ct_row_eq(&t->rows[i], &t->rows[i - 1]), "rows %u and %u not merged",
			  i - 1, i);
	}
	for (__u32 i = 0; i < t->nr_rows; i++) {
		const struct asz_cfi_row *r = &t->rows[i];

		cr_assert_lt(r->cfa_reg, 5, "row %u", i);
		cr_assert_lt(r->rbp_rule, 3, "row %u", i);
		cr_assert_eq(r->pad, 0, "row %u", i);
		if (r->cfa_reg >= ASZ_CFA_UNDEFINED)
			cr_assert(r->cfa_off == 0 && r->rbp_rule == ASZ_RBP_UNDEFINED &&
				  r->rbp_off == 0, "row %u", i);
		if (r->rbp_rule != ASZ_RBP_OFFSET)
			cr_assert_eq(r->rbp_off, 0, "row %u", i);
	}
	cr_assert_eq(t->rows[t->nr_rows - 1].cfa_reg, ASZ_CFA_UNDEFINED);
}

static const char *ct_kind_name(__u8 k)
{
	static const char *const names[] = { "rsp", "rbp", "undefined", "unsupported", "end" };

	return k < 5 ? names[k] : "?";
}

/* Every byte of a function: libdw agrees, and each row is usable (a CFA the BPF side can use). */
static void ct_check_function(const char *path, const struct cfi_table *t, const char *name)
{
	const struct asz_cfi_row *r;
	struct ct_oracle o;
	struct ct_cmp c = { 0 };
	__u64 value, size;

	cr_assert(ct_symbol(path, name, &value, &size), "%s: no symbol %s", path, name);
	cr_assert_gt(size, 0, "%s", name);
	ct_oracle_open(&o, path, false);
	ct_compare(&o, t, value, value + size, true, &c);
	ct_oracle_close(&o);
	cr_assert_eq(c.mismatches, 0, "%s: %ld of %ld bytes differ from libdw", name,
		     c.mismatches, c.addrs);
	cr_assert_eq(c.covered, (long)size, "%s: %ld of %llu bytes covered by an FDE", name,
		     c.covered, (unsigned long long)size);
	/* At the first instruction the CFA is rsp + 8 and rbp is untouched. */
	r = cfi_table__lookup(t, value - t->base);
	cr_assert_not_null(r);
	cr_assert(r->cfa_reg == ASZ_CFA_RSP && r->cfa_off == 8 && r->rbp_rule == ASZ_RBP_SAME,
		  "%s entry: %s%+d", name, ct_kind_name(r->cfa_reg), r->cfa_off);
	for (__u64 a = value; a < value + size; a++) {
		r = cfi_table__lookup(t, a - t->base);
		cr_assert(r && r->cfa_reg <= ASZ_CFA_RBP, "%s+%#llx: %s", name,
			  (unsigned long long)(a - value), r ? ct_kind_name(r->cfa_reg) : "none");
	}
}

/* ---- helpers: a traced process ---- */

struct ct_module {
	char path[PATH_MAX];
	struct cfi_table table;
	int err;
};

struct ct_proc {
	pid_t pid;
	int memfd;
	struct ct_module mods[CT_MAX_TABLES];
	int nr_mods;
	struct cfi_map maps[CT_MAX_MAPS];
	struct ct_module *map_mod[CT_MAX_MAPS]; /* NULL for anonymous code ([vdso]) */
	__u32 nr_maps;
};

static int ct_read(void *ctx, __u64 addr, __u64 *val)
{
	struct ct_proc *p = ctx;

	return pread(p->memfd, val, 8, (off_t)addr) == 8 ? 0 : -EFAULT;
}

/* Start the program under ptrace; it stops at exec, then runs to its raise(SIGSTOP). */
static void ct_spawn(struct ct_proc *p, const char *path, const char *mode)
{
	int st;

	memset(p, 0, sizeof(*p));
	p->memfd = -1;
	p->pid = fork();
	cr_assert_geq(p->pid, 0);
	if (p->pid == 0) {
		/* Never outlive the test, even stopped. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		ptrace(PTRACE_TRACEME, 0, NULL, NULL);
		execl(path, path, mode, (char *)NULL);
		_exit(127);
	}
	ct_left_child = p->pid;
	cr_assert_eq(waitpid(p->pid, &st, 0), p->pid);
	cr_assert(WIFSTOPPED(st) && WSTOPSIG(st) == SIGTRAP, "status %#x", st);
	ptrace(PTRACE_SETOPTIONS, p->pid, NULL, (void *)(long)PTRACE_O_EXITKILL);
	cr_assert_eq(ptrace(PTRACE_CONT, p->pid, NULL, NULL), 0);
	cr_assert_eq(waitpid(p->pid, &st, 0), p->pid);
	cr_assert(WIFSTOPPED(st) && WSTOPSIG(st) == SIGSTOP, "status %#x", st);
}

static void ct_kill(struct ct_proc *p)
{
	if (p->pid > 0) {
		kill(p->pid, SIGKILL);
		waitpid(p->pid, NULL, 0);
		p->pid = 0;
		ct_left_child = 0;
	}
	if (p->memfd >= 0)
		close(p->memfd);
	p->memfd = -1;
	for (int i = 0; i < p->nr_mods; i++)
		cfi_table__free(&p->mods[i].table);
	p->nr_mods = 0;
}

static struct ct_module *ct_module(struct ct_proc *p, const char *path)
{
	struct ct_module *m;

	for (int i = 0; i < p->nr_mods; i++)
		if (!strcmp(p->mods[i].path, path))
			return &p->mods[i];
	cr_assert_lt(p->nr_mods, CT_MAX_TABLES);
	m = &p->mods[p->nr_mods++];
	snprintf(m->path, sizeof(m->path), "%s", path);
	m->err = cfi__build(path, &m->table);
	return m;
}

/*
 * Executable mappings from /proc/PID/maps, in address order (as the kernel lists them), each
 * with its module's table and the bias: row pc = address - bias.
 */
static void ct_read_maps(struct ct_proc *p)
{
	char fn[64], line[PATH_MAX + 128];
	FILE *f;

	snprintf(fn, sizeof(fn), "/proc/%d/mem", p->pid);
	p->memfd = open(fn, O_RDONLY);
	cr_assert_geq(p->memfd, 0);
	snprintf(fn, sizeof(fn), "/proc/%d/maps", p->pid);
	f = fopen(fn, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long long start, end, pgoff;
		char perms[8], path[PATH_MAX] = "";
		struct cfi_map *m;
		int pos = 0;

		if (sscanf(line, "%llx-%llx %7s %llx %*s %*s%n", &start, &end, perms, &pgoff,
			   &pos) < 4 || !strchr(perms, 'x'))
			continue;
		sscanf(line + pos, " %4095[^\n]", path);
		cr_assert_lt(p->nr_maps, CT_MAX_MAPS);
		m = &p->maps[p->nr_maps++];
		*m = (struct cfi_map){ .start = start, .end = end };
		if (path[0] == '/') {
			struct ct_module *mod = ct_module(p, path);

			p->map_mod[p->nr_maps - 1] = mod;
			if (!mod->err && !cfi_table__bias(&mod->table, start, pgoff, &m->bias))
				m->table = &mod->table;
		}
	}
	fclose(f);
}

/* The function of ip (a return address, or an exact pc with ip + 1) and its module. */
struct ct_frame {
	__u64 ip;
	char func[256];
	char module[PATH_MAX];
	char chain[1024]; /* every name of the inline chain, space-separated */
};

static void ct_symbolize(struct symbolizer *s, pid_t pid, __u64 ip, struct ct_frame *out)
{
	struct sym_frame f[16];
	int n = symbolizer__resolve(s, pid, ip, f, 16);

	out->ip = ip;
	out->chain[0] = '\0';
	cr_assert_geq(n, 1);
	snprintf(out->func, sizeof(out->func), "%s", f[n - 1].func ? f[n - 1].func : "?");
	snprintf(out->module, sizeof(out->module), "%s", f[n - 1].module ? f[n - 1].module : "?");
	for (int i = 0; i < n; i++) {
		size_t len = strlen(out->chain);

		snprintf(out->chain + len, sizeof(out->chain) - len, "%s ",
			 f[i].func ? f[i].func : "?");
	}
}

static bool ct_is_libc(const struct ct_frame *f)
{
	const char *b = strrchr(f->module, '/');

	return b && !strcmp(b, "/libc.so.6");
}

static bool ct_is_prog(const struct ct_frame *f, const char *prog)
{
	return !strcmp(f->module, prog);
}

/* Run the unwinder from the current registers, symbolize every frame. */
struct ct_stack {
	struct user_regs_struct regs;
	__u64 ips[CT_MAX_FRAMES];
	int n;
	enum cfi_stop stop;
	struct ct_frame frames[CT_MAX_FRAMES + 1]; /* [0] is regs.rip itself */
};

static void ct_unwind(struct ct_proc *p, unsigned int flags, struct ct_stack *s)
{
	struct symbolizer *sym = symbolizer__new();
	struct cfi_regs regs = { .pc = s->regs.rip, .sp = s->regs.rsp, .rbp = s->regs.rbp };

	cr_assert_not_null(sym);
	s->n = cfi__unwind(p->maps, p->nr_maps, &regs, ct_read, p, flags, s->ips, CT_MAX_FRAMES,
			   &s->stop);
	cr_assert_eq(symbolizer__add_pid(sym, p->pid), 0);
	/* An exact pc: symbolize pc + 1 so that the "- 1" of return addresses lands on it. */
	ct_symbolize(sym, p->pid, s->regs.rip + 1, &s->frames[0]);
	for (int i = 0; i < s->n; i++)
		ct_symbolize(sym, p->pid, s->ips[i], &s->frames[i + 1]);
	symbolizer__free(sym);
}

static void ct_dump(const struct ct_stack *s)
{
	for (int i = 0; i <= s->n; i++)
		cr_log_info("#%d %#llx %s (%s) [%s]", i, (unsigned long long)s->frames[i].ip,
			    s->frames[i].func, s->frames[i].module, s->frames[i].chain);
	cr_log_info("stop: %s", cfi__stop_name(s->stop));
}

/*
 * The program's part of the chain from frame i on: cfi_leaf, 21 x cfi_recurse, cfi_cmp, libc's
 * qsort, cfi_sort, main, libc start-up, _start, and nothing after.
 */
static void ct_check_chain(const struct ct_stack *s, int i, const char *prog)
{
	const struct ct_frame *f = s->frames;
	int n = s->n + 1, libc;

	cr_assert_lt(i, n);
	cr_assert_str_eq(f[i].func, "cfi_leaf", "frame %d", i);
	cr_assert(ct_is_prog(&f[i], prog), "frame %d in %s", i, f[i].module);
	for (int k = 0; k <= CT_DEPTH; k++) {
		i++;
		cr_assert_lt(i, n, "stack ends after %d frames of cfi_recurse", k);
		cr_assert_str_eq(f[i].func, "cfi_recurse", "frame %d (recursion level %d)", i, k);
	}
	i++;
	cr_assert_lt(i, n);
	cr_assert_str_eq(f[i].func, "cfi_cmp", "frame %d", i);
	/* qsort's frames in libc call the comparator. */
	for (libc = 0, i++; i < n && ct_is_libc(&f[i]); i++, libc++)
		;
	cr_assert_geq(libc, 1, "no libc frame between cfi_cmp and cfi_sort");
	cr_assert(strstr(f[i - 1].chain, "qsort"), "frame %d: %s", i - 1, f[i - 1].chain);
	cr_assert_lt(i, n);
	cr_assert_str_eq(f[i].func, "cfi_sort", "frame %d", i);
	i++;
	cr_assert_lt(i, n);
	cr_assert_str_eq(f[i].func, "main", "frame %d", i);
	for (libc = 0, i++; i < n && ct_is_libc(&f[i]); i++, libc++)
		;
	cr_assert_geq(libc, 1, "no libc start-up frame below main");
	cr_assert_lt(i, n);
	cr_assert_str_eq(f[i].func, "_start", "frame %d", i);
	cr_assert(ct_is_prog(&f[i], prog));
	cr_assert_eq(i, n - 1, "%d frames after _start", n - 1 - i);
	cr_assert_eq(s->stop, CFI_STOP_END, "stop: %s", cfi__stop_name(s->stop));
}

/* eu-stack -p PID: "#N  0xADDR ..." lines of the (single) thread. */
static int ct_eu_stack(pid_t pid, __u64 *pcs, int max)
{
	char cmd[64], line[1024];
	FILE *f;
	int n = 0;

	snprintf(cmd, sizeof(cmd), "eu-stack -p %d 2>&1", pid);
	f = popen(cmd, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long long pc;
		int idx;

		if (sscanf(line, "#%d %llx", &idx, &pc) == 2 && idx == n && n < max)
			pcs[n++] = pc;
	}
	pclose(f);
	return n;
}

/* Is f's function name (without parameters) name? */
static bool ct_func_is(const struct ct_frame *f, const char *name)
{
	size_t n = strlen(name);

	return !strncmp(f->func, name, n) && (f->func[n] == '\0' || f->func[n] == '(');
}

/* Is f in the module whose file name starts with base ("libstdc++.so.6" -> .so.6.0.30)? */
static bool ct_is_module(const struct ct_frame *f, const char *base)
{
	const char *b = strrchr(f->module, '/');

	return b && !strncmp(b + 1, base, strlen(base));
}

/* Address of a function of a mapped module (by file name) in the traced process. */
static __u64 ct_proc_symbol(struct ct_proc *p, const char *module, const char *sym)
{
	for (__u32 i = 0; i < p->nr_maps; i++) {
		const struct ct_module *mod = p->map_mod[i];
		__u64 value, size, a;

		if (!p->maps[i].table || strcmp(strrchr(mod->path, '/') + 1, module) ||
		    !ct_symbol(mod->path, sym, &value, &size))
			continue;
		a = value - p->maps[i].table->base + p->maps[i].bias;
		if (a >= p->maps[i].start && a < p->maps[i].end)
			return a;
	}
	return 0;
}

/*
 * Run the stopped process to a breakpoint at addr; regs then hold the state at addr. A debug
 * register, not an int3 in the text: a uprobe on the same instruction (another test's, or a
 * profiler's) put in or taken out meanwhile writes that byte too, and the program then ran
 * past it to its end.
 */
static void ct_run_to(struct ct_proc *p, __u64 addr, struct user_regs_struct *regs)
{
	long dr0 = offsetof(struct user, u_debugreg[0]), dr6 = offsetof(struct user, u_debugreg[6]);
	long dr7 = offsetof(struct user, u_debugreg[7]);
	int st;

	cr_assert_eq(ptrace(PTRACE_POKEUSER, p->pid, (void *)dr0, (void *)(long)addr), 0,
		     "DR0: %s", strerror(errno));
	/* L0 enabled, R/W0 = 00 (execution), LEN0 = 00 */
	cr_assert_eq(ptrace(PTRACE_POKEUSER, p->pid, (void *)dr7, (void *)1L), 0, "DR7: %s",
		     strerror(errno));
	cr_assert_eq(ptrace(PTRACE_CONT, p->pid, NULL, NULL), 0);
	cr_assert_eq(waitpid(p->pid, &st, 0), p->pid);
	cr_assert(WIFSTOPPED(st) && WSTOPSIG(st) == SIGTRAP, "status %#x", st);
	cr_assert_eq(ptrace(PTRACE_GETREGS, p->pid, NULL, regs), 0);
	/* an execution breakpoint traps before the instruction: rip is addr */
	cr_assert_eq(regs->rip, addr, "rip %#llx", (unsigned long long)regs->rip);
	cr_assert_eq(ptrace(PTRACE_POKEUSER, p->pid, (void *)dr7, (void *)0L), 0);
	cr_assert_eq(ptrace(PTRACE_POKEUSER, p->pid, (void *)dr6, (void *)0L), 0);
}

/* Hand the process, stopped, to eu-stack and read its frames. */
static int ct_eu_stack_detached(struct ct_proc *p, __u64 *pcs, int max)
{
	int st;

	ptrace(PTRACE_DETACH, p->pid, NULL, (void *)(long)SIGSTOP);
	cr_assert_eq(waitpid(p->pid, &st, WUNTRACED), p->pid);
	return ct_eu_stack(p->pid, pcs, max);
}

static void ct_check_eu_stack(const struct ct_stack *s, const __u64 *eu, int neu)
{
	cr_assert_eq(neu, s->n + 1, "eu-stack: %d frames, unwinder %d", neu, s->n + 1);
	cr_assert_eq(eu[0], s->regs.rip);
	for (int i = 0; i < s->n; i++)
		cr_assert_eq(eu[i + 1], s->ips[i], "frame %d: eu-stack %#llx, unwinder %#llx",
			     i + 1, (unsigned long long)eu[i + 1], (unsigned long long)s->ips[i]);
}

/* ---- tests ---- */

Test(cfi, errors)
{
	struct cfi_table t;
	char path[] = "/tmp/asz_cfi_txt_XXXXXX";
	int fd, err_missing, err_text;
	ssize_t wr;

	err_missing = cfi__build("/nonexistent/libfoo.so", &t);
	cr_assert_null(t.rows);
	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	wr = write(fd, "not an ELF file\n", 16);
	err_text = cfi__build_fd(fd, &t);
	close(fd);
	unlink(path);
	cr_assert_eq(err_missing, -ENOENT);
	cr_assert_eq(wr, 16);
	cr_assert_eq(err_text, -ENOEXEC);
	cr_assert_eq(t.nr_rows, 0);
	cfi_table__free(&t);
	cfi_table__free(NULL);
}

/* A module without call-frame information: -ENODATA, the caller's cue to use frame pointers. */
Test(cfi, no_cfi_is_enodata)
{
	char dir[] = "/tmp/asz_cfi_XXXXXX", src[64], so[64], cmd[256];
	struct cfi_table t;
	int rc, err;
	FILE *f;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(src, sizeof(src), "%s/f.c", dir);
	snprintf(so, sizeof(so), "%s/f.so", dir);
	f = fopen(src, "w");
	if (f) {
		fputs("int f(int x) { return x * 3; }\n", f);
		fclose(f);
	}
	snprintf(cmd, sizeof(cmd),
		 "gcc -O2 -shared -fPIC -nostdlib -fno-asynchronous-unwind-tables "
		 "-fno-exceptions -o %s %s", so, src);
	rc = system(cmd);
	err = cfi__build(so, &t);
	unlink(src);
	unlink(so);
	rmdir(dir);
	cr_assert_not_null(f);
	cr_assert_eq(rc, 0, "%s", cmd);
	cr_assert_eq(err, -ENODATA);
	cr_assert_null(t.rows);
}

/* The test program: every byte of every executable segment agrees with libdw. */
Test(cfi, program_matches_libdw, .fini = ct_fini)
{
	static const char *const funcs[] = { "cfi_leaf", "cfi_recurse", "cfi_cmp", "cfi_sort",
					     "main" };
	struct ct_prog p;
	struct cfi_table t;
	struct ct_oracle o;
	struct ct_cmp c = { 0 };
	__u64 value, size;

	ct_compile(&p, "");
	cr_assert_eq(cfi__build(p.path, &t), 0);
	ct_check_shape(&t);
	cr_assert_gt(t.stats.fdes, 5);
	cr_assert_eq(t.stats.fdes_debug_frame, 0);
	cr_assert_eq(t.stats.fde_ra_undefined, 1, "_start"); /* crt1's _start */
	ct_oracle_open(&o, p.path, false);
	for (__u32 i = 0; i < t.nr_segs; i++)
		if (t.segs[i].exec)
			ct_compare(&o, &t, t.segs[i].vaddr, t.segs[i].vaddr + t.segs[i].filesz,
				   true, &c);
	ct_oracle_close(&o);
	cr_assert_eq(c.mismatches, 0, "%ld mismatching ranges in %ld addresses", c.mismatches,
		     c.addrs);
	cr_assert_gt(c.covered, 200);
	for (size_t i = 0; i < sizeof(funcs) / sizeof(funcs[0]); i++)
		ct_check_function(p.path, &t, funcs[i]);
	/* cfi_cmp pushes rbp (used as a plain register): after the push, rbp is at CFA-16. */
	cr_assert(ct_symbol(p.path, "cfi_cmp", &value, &size));
	{
		const struct asz_cfi_row *r = cfi_table__lookup(&t, value + 1 - t.base);

		cr_assert(r->cfa_reg == ASZ_CFA_RSP && r->cfa_off == 16 &&
			  r->rbp_rule == ASZ_RBP_OFFSET && r->rbp_off == -16,
			  "cfi_cmp+1: %s%+d rbp %u%+d", ct_kind_name(r->cfa_reg), r->cfa_off,
			  r->rbp_rule, r->rbp_off);
	}
	cfi_table__free(&t);
	ct_prog_remove(&p);
}

/* Built with frame pointers: rbp-based CFA rows, still equal to libdw. */
Test(cfi, frame_pointer_program_matches_libdw, .fini = ct_fini)
{
	struct ct_prog p;
	struct cfi_table t;
	struct ct_cmp c;
	__u32 rbp_rows = 0;

	ct_compile(&p, "-fno-omit-frame-pointer");
	cr_assert_eq(cfi__build(p.path, &t), 0);
	ct_check_shape(&t);
	ct_compare_module(p.path, false, &t, &c);
	cr_assert_eq(c.mismatches, 0, "%ld mismatching ranges in %ld addresses", c.mismatches,
		     c.addrs);
	for (__u32 i = 0; i < t.nr_rows; i++)
		rbp_rows += t.rows[i].cfa_reg == ASZ_CFA_RBP && t.rows[i].cfa_off == 16 &&
			    t.rows[i].rbp_rule == ASZ_RBP_OFFSET && t.rows[i].rbp_off == -16;
	cr_assert_geq(rbp_rows, 5, "%u rows rbp+16", rbp_rows);
	cfi_table__free(&t);
	ct_prog_remove(&p);
}

/* Without unwind tables gcc -g writes .debug_frame: used where .eh_frame has nothing. */
Test(cfi, debug_frame_matches_libdw, .fini = ct_fini)
{
	static const char *const funcs[] = { "cfi_leaf", "cfi_recurse", "cfi_cmp", "cfi_sort",
					     "main" };
	struct ct_prog p;
	struct cfi_table t;
	struct ct_oracle o;

	ct_compile(&p, "-fno-asynchronous-unwind-tables -fno-exceptions");
	cr_assert_eq(cfi__build(p.path, &t), 0);
	ct_check_shape(&t);
	cr_assert_geq(t.stats.fdes_debug_frame, 5, "%u FDEs from .debug_frame",
		      t.stats.fdes_debug_frame);
	ct_oracle_open(&o, p.path, true);
	for (size_t i = 0; i < sizeof(funcs) / sizeof(funcs[0]); i++) {
		struct ct_cmp c = { 0 };
		__u64 value, size;
		const struct asz_cfi_row *r;

		cr_assert(ct_symbol(p.path, funcs[i], &value, &size));
		ct_compare(&o, &t, value, value + size, true, &c);
		cr_assert_eq(c.mismatches, 0, "%s: %ld of %ld bytes differ from .debug_frame",
			     funcs[i], c.mismatches, c.addrs);
		cr_assert_eq(c.covered, (long)size, "%s", funcs[i]);
		r = cfi_table__lookup(&t, value - t.base);
		cr_assert(r->cfa_reg == ASZ_CFA_RSP && r->cfa_off == 8, "%s", funcs[i]);
	}
	ct_oracle_close(&o);
	cfi_table__free(&t);
	ct_prog_remove(&p);
}

/* libc: builds fast, every address agrees with libdw, allocator entry points are covered. */
Test(cfi, libc_matches_libdw, .timeout = 60)
{
	static const char *const funcs[] = { "malloc", "free", "calloc", "realloc", "strdup",
					     "qsort", "fopen", "getline" };
	struct cfi_table t;
	struct ct_cmp c;

	cr_assert_eq(cfi__build(CT_LIBC, &t), 0);
	cr_log_info("libc: %u rows, %zu bytes, %.2f ms", t.nr_rows, cfi_table__bytes(&t),
		    t.stats.build_ns / 1e6);
	cr_assert_lt(t.stats.build_ns, 1000000000ULL, "libc table took %llu ns",
		     (unsigned long long)t.stats.build_ns);
	ct_check_shape(&t);
	cr_assert_gt(t.stats.fdes, 1000);
	cr_assert_eq(t.stats.bad_entries, 0);
	cr_assert_eq(t.stats.fde_bad_program, 0);
	cr_assert_eq(t.stats.fde_signal, 1, "__restore_rt");
	cr_assert_gt(t.build_id_len, 0);
	ct_compare_module(CT_LIBC, false, &t, &c);
	cr_assert_eq(c.mismatches, 0, "%ld mismatching ranges in %ld addresses", c.mismatches,
		     c.addrs);
	cr_assert_gt(c.covered, 1000000);
	for (size_t i = 0; i < sizeof(funcs) / sizeof(funcs[0]); i++)
		ct_check_function(CT_LIBC, &t, funcs[i]);
	cfi_table__free(&t);
}

Test(cfi, libstdcxx_matches_libdw, .timeout = 60)
{
	/* operator new, new[], delete; std::string's allocation */
	static const char *const funcs[] = {
		"_Znwm", "_Znam", "_ZdlPv",
		"_ZNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEE9_M_createERmm",
	};
	struct cfi_table t;
	struct ct_cmp c;

	cr_assert_eq(cfi__build(CT_LIBSTDCXX, &t), 0);
	cr_log_info("libstdc++: %u rows, %zu bytes, %.2f ms", t.nr_rows, cfi_table__bytes(&t),
		    t.stats.build_ns / 1e6);
	cr_assert_lt(t.stats.build_ns, 1000000000ULL);
	ct_check_shape(&t);
	cr_assert_gt(t.stats.fdes, 1000);
	cr_assert_eq(t.stats.bad_entries, 0);
	cr_assert_eq(t.stats.fde_bad_program, 0);
	ct_compare_module(CT_LIBSTDCXX, false, &t, &c);
	cr_assert_eq(c.mismatches, 0, "%ld mismatching ranges in %ld addresses", c.mismatches,
		     c.addrs);
	for (size_t i = 0; i < sizeof(funcs) / sizeof(funcs[0]); i++)
		ct_check_function(CT_LIBSTDCXX, &t, funcs[i]);
	cfi_table__free(&t);
}

/* A large non-PIE program: table base is its text segment, far above 0. */
Test(cfi, large_program, .timeout = 120)
{
	struct cfi_table t;
	struct ct_cmp c;
	__u64 bias;

	if (access(CT_CC1, R_OK))
		cr_skip_test("%s not installed", CT_CC1);
	cr_assert_eq(cfi__build(CT_CC1, &t), 0);
	cr_log_info("cc1: %u rows, %zu bytes, %.2f ms", t.nr_rows, cfi_table__bytes(&t),
		    t.stats.build_ns / 1e6);
	cr_assert_lt(t.stats.build_ns, 1000000000ULL);
	cr_assert_eq(t.base, 0x631000, "base %#llx", (unsigned long long)t.base);
	/* Non-PIE: mapped at its link address, so row pc = address - base. */
	cr_assert_eq(cfi_table__bias(&t, 0x631000, 0x231000, &bias), 0);
	cr_assert_eq(bias, t.base);
	ct_check_shape(&t);
	cr_assert_gt(t.stats.fdes, 10000);
	cr_assert_eq(t.stats.bad_entries, 0);
	ct_compare_module(CT_CC1, false, &t, &c);
	cr_assert_eq(c.mismatches, 0, "%ld mismatching ranges in %ld addresses", c.mismatches,
		     c.addrs);
	cfi_table__free(&t);
}

/* The bias maps this process's own libc mapping onto the table: malloc lands on malloc. */
Test(cfi, bias_of_a_live_mapping)
{
	void *h = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	unsigned long long start, end, pgoff, addr;
	char line[PATH_MAX + 128];
	struct cfi_table t;
	__u64 value, size, bias = 0;
	bool found = false;
	FILE *f;

	cr_assert_not_null(h);
	addr = (unsigned long long)(uintptr_t)dlsym(h, "malloc");
	dlclose(h);
	cr_assert_eq(cfi__build(CT_LIBC, &t), 0);
	cr_assert(ct_symbol(CT_LIBC, "malloc", &value, &size));
	f = fopen("/proc/self/maps", "r");
	cr_assert_not_null(f);
	while (!found && fgets(line, sizeof(line), f))
		found = sscanf(line, "%llx-%llx %*s %llx", &start, &end, &pgoff) == 3 &&
			addr >= start && addr < end;
	fclose(f);
	cr_assert(found);
	cr_assert_eq(cfi_table__bias(&t, start, pgoff, &bias), 0);
	cr_assert_eq(addr - bias, value - t.base, "row pc %#llx, want %#llx", addr - bias,
		     (unsigned long long)(value - t.base));
	cr_assert_eq(cfi_table__bias(&t, start, 0x7fffffff000ULL, &bias), -ENOENT);
	cfi_table__free(&t);
}

/*
 * A process stopped inside raise(SIGSTOP) at the bottom of the chain: the unwind gives libc's
 * raise frames, cfi_leaf, all 21 cfi_recurse frames, cfi_cmp, qsort's frames, cfi_sort, main,
 * libc start-up and _start; eu-stack agrees address by address.
 */
Test(cfi, unwind_stopped_process, .timeout = 60, .fini = ct_fini)
{
	struct ct_prog prog;
	struct ct_proc p;
	struct ct_stack *s = calloc(1, sizeof(*s));
	__u64 eu[CT_MAX_FRAMES + 1];
	int neu, first;

	cr_assert_not_null(s);
	ct_compile(&prog, "");
	ct_spawn(&p, prog.path, "stop");
	cr_assert_eq(ptrace(PTRACE_GETREGS, p.pid, NULL, &s->regs), 0);
	ct_read_maps(&p);
	ct_unwind(&p, 0, s);
	neu = ct_eu_stack_detached(&p, eu, CT_MAX_FRAMES + 1);
	ct_kill(&p);
	ct_prog_remove(&prog);
	ct_dump(s);

	/* Innermost: libc's raise -> pthread_kill -> tgkill, then the program's chain. */
	cr_assert(ct_is_libc(&s->frames[0]), "pc in %s", s->frames[0].module);
	for (first = 0; first <= s->n && ct_is_libc(&s->frames[first]); first++)
		;
	cr_assert_geq(first, 1);
	cr_assert(strstr(s->frames[first - 1].chain, "raise"), "%s", s->frames[first - 1].chain);
	ct_check_chain(s, first, prog.path);
	ct_check_eu_stack(s, eu, neu);
	free(s);
}

/*
 * The BPF case: stopped at malloc's first instruction (a breakpoint where the uprobe goes),
 * called by libc's strdup from the bottom of the chain.
 */
Test(cfi, unwind_from_malloc_entry, .timeout = 60, .fini = ct_fini)
{
	struct ct_prog prog;
	struct ct_proc p;
	struct ct_stack *s = calloc(1, sizeof(*s));
	__u64 eu[CT_MAX_FRAMES + 1], addr;
	int neu;

	cr_assert_not_null(s);
	ct_compile(&prog, "");
	ct_spawn(&p, prog.path, "alloc");
	ct_read_maps(&p);
	addr = ct_proc_symbol(&p, "libc.so.6", "malloc");
	cr_assert_neq(addr, 0, "malloc not found in the process");
	ct_run_to(&p, addr, &s->regs);
	ct_unwind(&p, CFI_UNWIND_ENTRY, s);
	neu = ct_eu_stack_detached(&p, eu, CT_MAX_FRAMES + 1);
	ct_kill(&p);
	ct_prog_remove(&prog);
	ct_dump(s);

	/* strdup(100 chars) -> malloc(101): the first allocation after the program's stop. */
	cr_assert_eq(s->regs.rdi, 101, "malloc(%llu)", (unsigned long long)s->regs.rdi);
	cr_assert(ct_is_libc(&s->frames[0]) && strstr(s->frames[0].chain, "malloc"), "%s",
		  s->frames[0].chain);
	cr_assert_geq(s->n, 1);
	cr_assert(ct_is_libc(&s->frames[1]) && strstr(s->frames[1].chain, "strdup"), "%s",
		  s->frames[1].chain);
	ct_check_chain(s, 2, prog.path);
	ct_check_eu_stack(s, eu, neu);
	free(s);
}

/*
 * g++ -O2 program, stopped at malloc's entry under operator new under std::string's
 * construction in libstdc++: malloc, operator new, libstdc++'s string frames, the program's
 * cxx_make_string, cxx_outer, main, libc start-up, _start.
 */
Test(cfi, unwind_through_libstdcxx, .timeout = 60, .fini = ct_fini)
{
	struct ct_prog prog;
	struct ct_proc p;
	struct ct_stack *s = calloc(1, sizeof(*s));
	const struct ct_frame *f;
	__u64 eu[CT_MAX_FRAMES + 1], addr;
	int neu, i, lib;

	cr_assert_not_null(s);
	ct_compile_src(&prog, "cfi_cxx.cc", "");
	ct_spawn(&p, prog.path, NULL);
	ct_read_maps(&p);
	addr = ct_proc_symbol(&p, "libc.so.6", "malloc");
	cr_assert_neq(addr, 0, "malloc not found in the process");
	ct_run_to(&p, addr, &s->regs);
	ct_unwind(&p, CFI_UNWIND_ENTRY, s);
	neu = ct_eu_stack_detached(&p, eu, CT_MAX_FRAMES + 1);
	ct_kill(&p);
	ct_prog_remove(&prog);
	ct_dump(s);

	f = s->frames;
	cr_assert_eq(s->regs.rdi, 102, "malloc(%llu)", (unsigned long long)s->regs.rdi);
	cr_assert(ct_is_libc(&f[0]) && strstr(f[0].chain, "malloc"), "%s", f[0].chain);
	cr_assert_geq(s->n, 1);
	cr_assert(ct_is_module(&f[1], "libstdc++.so.6") && strstr(f[1].chain, "operator new"),
		  "frame 1: %s in %s", f[1].chain, f[1].module);
	for (i = 2, lib = 0; i <= s->n && ct_is_module(&f[i], "libstdc++.so.6"); i++, lib++)
		cr_assert(strstr(f[i].chain, "basic_string"), "frame %d: %s", i, f[i].chain);
	cr_assert_geq(lib, 1, "no std::string frame in libstdc++");
	cr_assert_leq(i + 3, s->n, "stack ends at frame %d", i);
	cr_assert(ct_func_is(&f[i], "cxx_make_string") && ct_is_prog(&f[i], prog.path),
		  "frame %d: %s", i, f[i].func);
	cr_assert(ct_func_is(&f[++i], "cxx_outer"), "frame %d: %s", i, f[i].func);
	cr_assert(ct_func_is(&f[++i], "main"), "frame %d: %s", i, f[i].func);
	for (lib = 0, i++; i <= s->n && ct_is_libc(&f[i]); i++, lib++)
		;
	cr_assert_geq(lib, 1);
	cr_assert_eq(i, s->n, "frame %d of %d", i, s->n);
	cr_assert(ct_func_is(&f[i], "_start") && ct_is_prog(&f[i], prog.path));
	cr_assert_eq(s->stop, CFI_STOP_END);
	ct_check_eu_stack(s, eu, neu);
	free(s);
}

/* ---- the unwinder on synthetic tables and memory ---- */

#define SYN_STACK 0x7ff000ULL
#define SYN_WORDS 64

struct syn_mem {
	__u64 w[SYN_WORDS];
};

static int syn_read(void *ctx, __u64 addr, __u64 *val)
{
	struct syn_mem *m = ctx;

	if (addr < SYN_STACK || addr + 8 > SYN_STACK + 8 * SYN_WORDS || (addr & 7))
		return -EFAULT;
	*val = m->w[(addr - SYN_STACK) / 8];
	return 0;
}

static void syn_set(struct syn_mem *m, __u64 addr, __u64 val)
{
	m->w[(addr - SYN_STACK) / 8] = val;
}

/*
 * Module A at [0x401000, 0x402000), row pc = address - 0x401000:
 *   f   0x000 entry rsp+8; 0x004.. rsp+24
 *   g   0x100 rsp+16, rbp at CFA-16; 0x104.. rbp+16, rbp at CFA-16 (frame-pointer function)
 *   0x200 end (outermost), 0x300 unsupported,
 *   h   0x400 rsp+8, rbp undefined; 0x500 rsp+0 (a broken rule); 0x600.. no FDE (a gap)
 * Module B at [0x500000, 0x501000): no table (frame pointers).
 */
static struct asz_cfi_row syn_rows[] = {
	{ .pc = 0x000, .cfa_reg = ASZ_CFA_RSP, .cfa_off = 8, .rbp_rule = ASZ_RBP_SAME },
	{ .pc = 0x004, .cfa_reg = ASZ_CFA_RSP, .cfa_off = 24, .rbp_rule = ASZ_RBP_SAME },
	{ .pc = 0x100, .cfa_reg = ASZ_CFA_RSP, .cfa_off = 16, .rbp_rule = ASZ_RBP_OFFSET,
	  .rbp_off = -16 },
	{ .pc = 0x104, .cfa_reg = ASZ_CFA_RBP, .cfa_off = 16, .rbp_rule = ASZ_RBP_OFFSET,
	  .rbp_off = -16 },
	{ .pc = 0x200, .cfa_reg = ASZ_CFA_END, .rbp_rule = ASZ_RBP_UNDEFINED },
	{ .pc = 0x300, .cfa_reg = ASZ_CFA_UNSUPPORTED, .rbp_rule = ASZ_RBP_UNDEFINED },
	{ .pc = 0x400, .cfa_reg = ASZ_CFA_RSP, .cfa_off = 8, .rbp_rule = ASZ_RBP_UNDEFINED },
	{ .pc = 0x500, .cfa_reg = ASZ_CFA_RSP, .cfa_off = 0, .rbp_rule = ASZ_RBP_SAME },
	{ .pc = 0x600, .cfa_reg = ASZ_CFA_UNDEFINED, .rbp_rule = ASZ_RBP_UNDEFINED },
};

static const struct cfi_table syn_table = {
	.base = 0x1000,
	.rows = syn_rows,
	.nr_rows = sizeof(syn_rows) / sizeof(syn_rows[0]),
};

static const struct cfi_map syn_maps[] = {
	{ .start = 0x401000, .end = 0x402000, .bias = 0x401000, .table = &syn_table },
	{ .start = 0x500000, .end = 0x501000, .bias = 0, .table = NULL },
};

#define S0 (SYN_STACK + 0x40)

/* f (entry) <- f+0x10 <- g+0x108 (rbp frame) <- B+0x50 (frame pointers) <- A+0x210 (end). */
static void syn_chain(struct syn_mem *m, struct cfi_regs *r)
{
	memset(m, 0, sizeof(*m));
	*r = (struct cfi_regs){ .pc = 0x401000, .sp = S0, .rbp = S0 + 48 };
	syn_set(m, S0, 0x401010);	/* f entry: ra at rsp; f+0x10 -> rsp+24 */
	syn_set(m, S0 + 24, 0x401108);	/* CFA S0+32: ra into g's rbp-based row */
	syn_set(m, S0 + 48, S0 + 80);	/* g: CFA = rbp+16 = S0+64, caller rbp at CFA-16 */
	syn_set(m, S0 + 56, 0x500050);	/* ra into B */
	syn_set(m, S0 + 80, 0);		/* B: frame pointers: saved rbp, ra above */
	syn_set(m, S0 + 88, 0x401210);	/* ra into the outermost frame */
}

Test(cfi_unwind, lookup_bounds)
{
	const struct asz_cfi_row *r;

	cr_assert_eq(cfi_table__lookup(&syn_table, 0x000), &syn_rows[0]);
	cr_assert_eq(cfi_table__lookup(&syn_table, 0x003), &syn_rows[0]);
	cr_assert_eq(cfi_table__lookup(&syn_table, 0x004), &syn_rows[1]);
	cr_assert_eq(cfi_table__lookup(&syn_table, 0x0ff), &syn_rows[1]);
	cr_assert_eq(cfi_table__lookup(&syn_table, 0x5ff), &syn_rows[7]);
	r = cfi_table__lookup(&syn_table, 0x600);
	cr_assert_eq(r, &syn_rows[8]);
	cr_assert_eq(cfi_table__lookup(&syn_table, 0xffffffffULL), &syn_rows[8]);
	cr_assert_null(cfi_table__lookup(&syn_table, 0x100000000ULL));
	{
		struct asz_cfi_row late[] = {
			{ .pc = 0x10, .cfa_reg = ASZ_CFA_RSP, .cfa_off = 8 },
		};
		struct cfi_table t = { .rows = late, .nr_rows = 1 };
		struct cfi_table empty = { 0 };

		cr_assert_null(cfi_table__lookup(&t, 0xf));
		cr_assert_eq(cfi_table__lookup(&t, 0x10), &late[0]);
		cr_assert_null(cfi_table__lookup(&empty, 0));
	}
}

Test(cfi_unwind, chain_with_frame_pointer_fallback)
{
	struct syn_mem m;
	struct cfi_regs r;
	__u64 ips[8];
	enum cfi_stop stop;
	int n;

	syn_chain(&m, &r);
	n = cfi__unwind(syn_maps, 2, &r, syn_read, &m, CFI_UNWIND_FP_FALLBACK, ips, 8, &stop);
	cr_assert_eq(n, 4);
	cr_assert_eq(ips[0], 0x401010);
	cr_assert_eq(ips[1], 0x401108);
	cr_assert_eq(ips[2], 0x500050);
	cr_assert_eq(ips[3], 0x401210);
	cr_assert_eq(stop, CFI_STOP_END);

	/* Without the fallback the module without a table ends the walk. */
	n = cfi__unwind(syn_maps, 2, &r, syn_read, &m, 0, ips, 8, &stop);
	cr_assert_eq(n, 3);
	cr_assert_eq(stop, CFI_STOP_NO_TABLE);

	/* Depth limit: exactly max frames, marked as such. */
	n = cfi__unwind(syn_maps, 2, &r, syn_read, &m, CFI_UNWIND_FP_FALLBACK, ips, 2, &stop);
	cr_assert_eq(n, 2);
	cr_assert_eq(ips[1], 0x401108);
	cr_assert_eq(stop, CFI_STOP_DEPTH);
	n = cfi__unwind(syn_maps, 2, &r, syn_read, &m, CFI_UNWIND_FP_FALLBACK, ips, 0, &stop);
	cr_assert_eq(n, 0);
	cr_assert_eq(stop, CFI_STOP_DEPTH);

	/* A frame-pointer frame whose saved rbp is below sp is not followed. */
	syn_set(&m, S0 + 48, S0 + 8);
	n = cfi__unwind(syn_maps, 2, &r, syn_read, &m, CFI_UNWIND_FP_FALLBACK, ips, 8, &stop);
	cr_assert_eq(n, 3);
	cr_assert_eq(stop, CFI_STOP_BAD_FRAME);
}

Test(cfi_unwind, stops)
{
	struct syn_mem m;
	struct cfi_regs r;
	__u64 ips[8];
	enum cfi_stop stop;
	int n;

	syn_chain(&m, &r);
	/* Unsupported and undefined rows at frame 0. */
	r.pc = 0x401300;
	n = cfi__unwind(syn_maps, 2, &r, syn_read, &m, 0, ips, 8, &stop);
	cr_assert_eq(n, 0);
	cr_assert_eq(stop, CFI_STOP_UNSUPPORTED);
	r.pc = 0x401200;
	n = cfi__unwind(syn_maps, 2, &r, syn_read, &m, 0, ips, 8, &stop);
	cr_assert_eq(n, 0);
	cr_assert_eq(stop, CFI_STOP_END);
	/* code no FDE covers is no outermost frame: as a module without a table */
	r.pc = 0x401600;
	n = cfi__unwind(syn_maps, 2, &r, syn_read, &m, 0, ips, 8, &stop);
	cr_assert_eq(n, 0);
	cr_assert_eq(stop, CFI_STOP_NO_TABLE);

	/* No mapping; with CFI_UNWIND_ENTRY the return address is still at *rsp. */
	r.pc = 0x900000;
	n = cfi__unwind(syn_maps, 2, &r, syn_read, &m, 0, ips, 8, &stop);
	cr_assert_eq(n, 0);
	cr_assert_eq(stop, CFI_STOP_NO_MAPPING);
	n = cfi__unwind(syn_maps, 2, &r, syn_read, &m, CFI_UNWIND_ENTRY | CFI_UNWIND_FP_FALLBACK,
			ips, 8, &stop);
	cr_assert_eq(n, 4);
	cr_assert_eq(ips[0], 0x401010);
	cr_assert_eq(ips[3], 0x401210);
	cr_assert_eq(stop, CFI_STOP_END);

	/* h clobbers rbp (undefined); returning into g, whose CFA needs rbp, cannot go on. */
	r.pc = 0x401400;
	syn_set(&m, S0, 0x401108);
	n = cfi__unwind(syn_maps, 2, &r, syn_read, &m, 0, ips, 8, &stop);
	cr_assert_eq(n, 1);
	cr_assert_eq(ips[0], 0x401108);
	cr_assert_eq(stop, CFI_STOP_BAD_FRAME);

	/* A CFA not above sp would loop. */
	r.pc = 0x401500;
	n = cfi__unwind(syn_maps, 2, &r, syn_read, &m, 0, ips, 8, &stop);
	cr_assert_eq(n, 0);
	cr_assert_eq(stop, CFI_STOP_BAD_FRAME);

	/* Unreadable stack; a zero return address ends the stack. */
	r = (struct cfi_regs){ .pc = 0x401000, .sp = SYN_STACK + 8 * SYN_WORDS };
	n = cfi__unwind(syn_maps, 2, &r, syn_read, &m, 0, ips, 8, &stop);
	cr_assert_eq(n, 0);
	cr_assert_eq(stop, CFI_STOP_READ);
	r = (struct cfi_regs){ .pc = 0x401000, .sp = S0 };
	syn_set(&m, S0, 0);
	n = cfi__unwind(syn_maps, 2, &r, syn_read, &m, 0, ips, 8, &stop);
	cr_assert_eq(n, 0);
	cr_assert_eq(stop, CFI_STOP_END);
	cr_assert_str_eq(cfi__stop_name(CFI_STOP_DEPTH), "depth");
}

/* The row of pc by a search of the whole table: what the bucket index must agree with. */
static const struct asz_cfi_row *ct_plain_lookup(const struct cfi_table *t, __u64 pc)
{
	struct cfi_table plain = *t;

	plain.nr_buckets = 0;
	return cfi_table__lookup(&plain, pc);
}

/*
 * The bucket index (the kernel's search too: bpf/unwind.h's uw_find_row) finds the row a search
 * of the whole table finds, at every row's first byte and the byte before it, at bucket
 * boundaries, past the last row and below the first; and it is laid out as the kernel reads it.
 */
Test(cfi_index, agrees_with_whole_table_search)
{
	struct cfi_table t;
	__u32 words, checked = 0;

	cr_assert_eq(cfi__build(CT_LIBC, &t), 0);
	cr_assert_gt(t.nr_buckets, 1);
	cr_assert_geq(t.index_shift, 4);
	/* about CFI_ROWS_PER_BUCKET rows a bucket: not one bucket for the whole table */
	cr_assert_leq(t.nr_buckets, t.nr_rows / CFI_ROWS_PER_BUCKET + 1);
	cr_assert_gt((__u64)t.nr_buckets << t.index_shift, t.rows[t.nr_rows - 1].pc);
	words = ASZ_CFI_INDEX_ROWS(t.nr_buckets) * 4;
	for (__u32 b = 0; b < words; b++) {
		__u32 below = 0;

		if (b >= t.nr_buckets) {
			cr_assert_eq(t.index[b], t.nr_rows, "padding word %u", b);
			continue;
		}
		while (below < t.nr_rows && t.rows[below].pc < ((__u64)b << t.index_shift))
			below++;
		cr_assert_eq(t.index[b], below, "bucket %u", b);
		if (b % 64)
			continue;
		for (__u64 d = 0; d < 3; d++) {
			__u64 pc = ((__u64)b << t.index_shift) + d - 1;

			if (pc > UINT32_MAX)
				continue;
			cr_assert_eq(cfi_table__lookup(&t, pc), ct_plain_lookup(&t, pc), "pc %#llx",
				     (unsigned long long)pc);
			checked++;
		}
	}
	for (__u32 i = 0; i < t.nr_rows; i++) {
		__u64 pc = t.rows[i].pc;

		cr_assert_eq(cfi_table__lookup(&t, pc), &t.rows[i], "row %u", i);
		if (pc)
			cr_assert_eq(cfi_table__lookup(&t, pc - 1), ct_plain_lookup(&t, pc - 1));
		checked += 2;
	}
	cr_assert_eq(cfi_table__lookup(&t, t.rows[t.nr_rows - 1].pc + 100000),
		     &t.rows[t.nr_rows - 1]);
	cr_assert_eq(cfi_table__lookup(&t, UINT32_MAX), &t.rows[t.nr_rows - 1]);
	if (t.rows[0].pc)
		cr_assert_null(cfi_table__lookup(&t, t.rows[0].pc - 1));
	cr_assert_gt(checked, t.nr_rows);
	cfi_table__free(&t);
}

/* A table of one row, and one whose rows sit in a few buckets of many (most buckets empty). */
Test(cfi_index, small_and_sparse_tables)
{
	struct asz_cfi_row one[] = { { .pc = 0x10, .cfa_reg = ASZ_CFA_RSP, .cfa_off = 8 } };
	struct asz_cfi_row sparse[64];
	struct cfi_table t = { .rows = one, .nr_rows = 1 };

	cr_assert_eq(cfi_table__index(&t), 0);
	cr_assert_eq(t.nr_buckets, 1);
	cr_assert_null(cfi_table__lookup(&t, 0xf));
	cr_assert_eq(cfi_table__lookup(&t, 0x10), &one[0]);
	cr_assert_eq(cfi_table__lookup(&t, 0x12345), &one[0]);
	free(t.index);
	for (__u32 i = 0; i < 64; i++)
		sparse[i] = (struct asz_cfi_row){ .pc = (i < 32 ? i * 4 : 0x100000 + i * 4),
						  .cfa_reg = ASZ_CFA_RSP, .cfa_off = 8 + i };
	t = (struct cfi_table){ .rows = sparse, .nr_rows = 64 };
	cr_assert_eq(cfi_table__index(&t), 0);
	cr_assert_leq(t.nr_buckets, 64 / CFI_ROWS_PER_BUCKET);
	for (__u64 pc = 0; pc < 0x100200; pc += pc < 0x200 || pc > 0xfff00 ? 1 : 0x100)
		cr_assert_eq(cfi_table__lookup(&t, pc), ct_plain_lookup(&t, pc), "pc %#llx",
			     (unsigned long long)pc);
	free(t.index);
}
