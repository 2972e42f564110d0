// SPDX-License-Identifier: MIT
/*
 * JSON report: one object per report on one line (JSON lines), for scripts and the e2e tests.
 * Field names are a contract; see the OUTPUT section of asizeof-bpf(8).
 */
#include <errno.h>
#include <string.h>
#include "json_writer.h"
#include "report.h"
#include "target.h"
#include "util.h"

/* Frames one return address can expand to (its inline chain); deeper chains are cut. */
#define REPORT_MAX_INLINE 32

/* comm is a fixed array, NUL-terminated unless full; empty means unknown. */
static void write_comm(struct json_writer *w, const char *comm)
{
	json_writer__key(w, "comm");
	if (!comm || !comm[0])
		json_writer__null(w);
	else
		json_writer__string_len(w, comm, ASZ_COMM_LEN);
}

static void write_frame(struct json_writer *w, const struct sym_frame *fr)
{
	json_writer__begin_object(w);
	json_writer__field_u64(w, "addr", fr->addr);
	json_writer__field_string(w, "func", fr->func);
	json_writer__field_string(w, "file", fr->file);
	if (fr->line > 0)
		json_writer__field_s64(w, "line", fr->line);
	else
		json_writer__field_null(w, "line");
	json_writer__field_string(w, "module", fr->module);
	json_writer__field_bool(w, "inlined", fr->inlined);
	/* An offset means nothing without the module it is relative to. */
	if (fr->module)
		json_writer__field_u64(w, "module_offset", fr->module_offset);
	else
		json_writer__field_null(w, "module_offset");
	json_writer__end_object(w);
}

/*
 * Every return address expands to its inline chain, innermost first. Without a symbolizer (or
 * if it fails) a frame carries only the looked-up address, ip - 1: the call instruction rather
 * than the one after it, as symbolizers report it.
 */
static void write_frames(struct json_writer *w, const struct snap_stack *st,
			 struct symbolizer *sym)
{
	struct sym_frame frames[REPORT_MAX_INLINE];
	__u32 i;
	int n, j;

	json_writer__key(w, "frames");
	json_writer__begin_array(w);
	for (i = 0; st->ips && i < st->nr_frames; i++) {
		__u64 ip = st->ips[i];

		n = sym ? symbolizer__resolve(sym, st->pid, ip, frames, REPORT_MAX_INLINE) : 0;
		if (n <= 0) {
			memset(frames, 0, sizeof(frames[0]));
			frames[0].addr = ip ? ip - 1 : 0;
			n = 1;
		}
		for (j = 0; j < n; j++)
			write_frame(w, &frames[j]);
	}
	json_writer__end_array(w);
}

static void write_proc(struct json_writer *w, const struct snap_proc *p)
{
	char cid[65];
	json_writer__begin_object(w);
	json_writer__field_u64(w, "pid", p->pid);
	write_comm(w, p->comm);
	json_writer__field_s64(w, "live_bytes", p->live_bytes);
	json_writer__field_s64(w, "live_allocs", p->live_allocs);
	json_writer__field_s64(w, "growth_bytes", p->growth_bytes);
	json_writer__field_u64(w, "alloc_bytes", p->alloc_bytes);
	json_writer__field_u64(w, "allocs", p->allocs);
	json_writer__field_u64(w, "frees", p->frees);
	json_writer__field_bool(w, "exited", p->exited);
	json_writer__field_s64(w, "growth_total_bytes", p->growth_total_bytes);
	json_writer__field_double(w, "alloc_rate", p->alloc_rate);
	json_writer__field_double(w, "free_rate", p->free_rate);
	json_writer__field_u64(w, "unknown_frees", p->unknown_frees);
	json_writer__field_u64(w, "dropped", p->drops);
	json_writer__field_s64(w, "mmap_bytes", p->mmap_bytes);
	json_writer__field_s64(w, "mmap_regions", p->mmap_regions);
	json_writer__field_u64(w, "retired_allocs", p->retired_allocs);
	json_writer__field_u64(w, "retired_alloc_bytes", p->retired_alloc_bytes);
	json_writer__field_string(w, "exe", p->exe);
	json_writer__field_string(w, "cgroup", p->cgroup[0] ? p->cgroup : NULL);
	json_writer__field_string(w, "container_id",
				  target__container_id(p->cgroup, cid) ? cid : NULL);
	json_writer__end_object(w);
}

static void write_stack(struct json_writer *w, const struct snapshot *s,
			const struct snap_stack *st, struct symbolizer *sym)
{
	const struct snap_proc *p = snapshot__find_proc(s, st->pid);
	char id[24];

	json_writer__begin_object(w);
	json_writer__field_u64(w, "pid", st->pid);
	write_comm(w, p ? p->comm : NULL);
	json_writer__field_string(w, "allocator", snapshot__allocator_name(st->allocator));
	/* heap blocks, or anonymous mappings the program made itself */
	json_writer__field_string(w, "kind", ASZ_IS_MMAP(st->allocator) ? "mmap" : "heap");
	json_writer__field_s64(w, "live_bytes", st->live_bytes);
	json_writer__field_s64(w, "live_allocs", st->live_allocs);
	json_writer__field_s64(w, "growth_bytes", st->growth_bytes);
	json_writer__field_u64(w, "alloc_bytes", st->alloc_bytes);
	json_writer__field_u64(w, "allocs", st->allocs);
	json_writer__field_u64(w, "frees", st->frees);
	/* a string: ids take 64 bits, and jq and JavaScript keep 53 of a number's */
	snprintf(id, sizeof(id), "%llu", (unsigned long long)st->stack_id);
	json_writer__field_string(w, "stack_id", id);
	json_writer__field_bool(w, "truncated", st->flags & ASZ_STACK_PARTIAL);
	write_frames(w, st, sym);
	json_writer__end_object(w);
}

int report_json__write(FILE *f, const struct snapshot *s, struct symbolizer *sym,
		       const struct report_opts *o)
{
	struct json_writer w;
	size_t i, nr_stacks;
	int err;

	if (!f || !s || !o)
		return -EINVAL;
	nr_stacks = s->nr_stacks;
	if (o->top_n > 0 && (size_t)o->top_n < nr_stacks)
		nr_stacks = o->top_n;

	json_writer__init(&w, f);
	json_writer__begin_object(&w);
	json_writer__field_string(&w, "type", "report");
	json_writer__field_double(&w, "time", s->time);
	json_writer__field_double(&w, "elapsed_s", s->elapsed_s);
	json_writer__field_bool(&w, "final", s->final);
	/* sampled figures are estimates: say so, with the period */
	json_writer__field_bool(&w, "sampled", s->sample_bytes != 0);
	json_writer__field_u64(&w, "sample_bytes", s->sample_bytes);
	/* totals leave out blocks below --min-size: say so, or they read as the whole heap */
	json_writer__field_u64(&w, "min_size", s->min_size);
	json_writer__key(&w, "unwind");
	json_writer__begin_object(&w);
	json_writer__field_string(&w, "mode", s->unwind.dwarf ? "dwarf" : "fp");
	json_writer__field_u64(&w, "modules", s->unwind.modules);
	json_writer__field_u64(&w, "tables", s->unwind.tables);
	json_writer__field_u64(&w, "rows", s->unwind.rows);
	json_writer__field_u64(&w, "bytes", s->unwind.bytes);
	json_writer__field_double(&w, "build_ms", s->unwind.build_ns / 1e6);
	json_writer__field_u64(&w, "stacks", s->unwind.work.stacks);
	json_writer__field_u64(&w, "frames_unwound", s->unwind.work.frames_unwound);
	json_writer__field_u64(&w, "frames_checked", s->unwind.work.frames_checked);
	json_writer__field_u64(&w, "rule_searches", s->unwind.work.rule_searches);
	json_writer__field_u64(&w, "stack_reads", s->unwind.work.stack_reads);
	json_writer__field_u64(&w, "stacks_repeated", s->unwind.work.stacks_repeated);
	json_writer__end_object(&w);

	json_writer__key(&w, "processes");
	json_writer__begin_array(&w);
	for (i = 0; i < s->nr_procs; i++)
		write_proc(&w, &s->procs[i]);
	json_writer__end_array(&w);

	json_writer__key(&w, "stacks");
	json_writer__begin_array(&w);
	for (i = 0; i < nr_stacks; i++)
		write_stack(&w, s, &s->stacks[i], sym);
	json_writer__end_array(&w);

	/* Every counter, zeros included, so consumers never have to guess a missing key. */
	json_writer__key(&w, "dropped");
	json_writer__begin_object(&w);
	for (i = 0; i < ASZ_NR_DROPS; i++)
		json_writer__field_u64(&w, snapshot__drop_name(i), s->drops[i]);
	json_writer__end_object(&w);

	json_writer__end_object(&w);
	fputc('\n', f);
	err = json_writer__status(&w);
	/* Each report is a complete line: push it out so a reader of a pipe sees it now. */
	if (fflush(f) && !err)
		err = util__write_error(f);
	return err;
}
