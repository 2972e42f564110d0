# SPDX-License-Identifier: MIT
"""mremap(2) followed by its syscall tracepoints (libc's mremap probed with --unwind fp) and
glibc's memalign family probed past its cmpb, under threads, forks and threads that exit. Each
mode of the remap_threads workload writes what every call site holds; the final JSON report must
show exactly that by frame 0 (mappings exact also with --sample-bytes)."""

import json
import os

import pytest

import helpers

THRESHOLD_ENV = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
# glibc's pthread_create maps each thread's stack through mmap: counted as the program's
THREAD_STACKS = "allocate_stack"


def run(guarded, workloads, tmp_path, mode, *opts):
    report, expected = tmp_path / "r.json", tmp_path / "e.json"
    rc, out, err = guarded.run(list(opts) + ["-v", "-f", "json", "-n", "0", "-o", str(report), "--",
                                             workloads["remap_threads"], mode, str(expected)],
                               env=THRESHOLD_ENV, timeout=120)
    assert rc == 0, err
    return helpers.final_report(helpers.parse_reports(report.read_text())), json.loads(expected.read_text()), err


def by_site(rep, pid):
    maps, heap = {}, {}
    for s in helpers.stacks_of(rep, pid):
        d = maps if s["kind"] == "mmap" else heap
        f = helpers.frame0_func(s)
        d[f] = d.get(f, 0) + s["live_bytes"]
    return maps, heap


def check(rep, exp, heap_sites=True):
    """Every site of exp exactly (heap ones too unless heap_sites is False: sampled estimates),
    the process's mappings exactly (glibc's thread stacks aside), its totals its stacks' sums."""
    pid = exp["pid"]
    p = helpers.check_proc_is_sum_of_stacks(rep, pid)
    maps, heap = by_site(rep, pid)
    errors = []
    for site, want in exp["mmap"].items():
        if maps.get(site, 0) != want:
            errors.append("mmap %s: expected %d, got %d" % (site, want, maps.get(site, 0)))
    if heap_sites:
        for site, want in exp["heap"].items():
            if heap.get(site, 0) != want:
                errors.append("heap %s: expected %d, got %d" % (site, want, heap.get(site, 0)))
    stacks = [s for s in helpers.stacks_of(rep, pid) if s["kind"] == "mmap" and helpers.frame0_func(s) == THREAD_STACKS]
    have = (p["mmap_bytes"] - sum(s["live_bytes"] for s in stacks),
            p["mmap_regions"] - sum(s["live_allocs"] for s in stacks))
    if have != (exp["mmap_bytes"], exp["mmap_regions"]):
        errors.append("mmap_bytes, mmap_regions (thread stacks aside): expected %r, got %r"
                      % ((exp["mmap_bytes"], exp["mmap_regions"]), have))
    others = {f: b for f, b in maps.items() if b and f not in exp["mmap"] and f != THREAD_STACKS}
    if others:
        errors.append("mappings of no site: %r" % others)
    assert not errors, "pid %d:\n  " % pid + "\n  ".join(errors)
    return p


@pytest.mark.parametrize("unwind", ["dwarf", "fp"])
def test_threads_remap_and_memalign_exact(bpf_ok, workloads, guarded, tmp_path, unwind):
    """4 threads at once: mremaps that grow (moving), shrink in place, a raw one (dwarf), a
    failing one (EINVAL), MREMAP_FIXED onto another mapping's head, a part moved; reallocs of
    mapped blocks (glibc's mremap inside realloc); the memalign family, a quarter freed and a
    quarter realloc'ed by another thread (and a mapped memalign(4096) block grown there)."""
    rep, exp, err = run(guarded, workloads, tmp_path, "threads" if unwind == "dwarf" else "threads_fp",
                        "--unwind", unwind)
    assert ("mremap: followed by its syscall tracepoints" in err) == (unwind == "dwarf"), err
    helpers.check_drops(rep, unknown_frees=0)
    assert rep["dropped"]["missed_frees"] == 0
    check(rep, exp)


@pytest.mark.parametrize("unwind", ["dwarf", "fp"])
def test_threads_mappings_exact_when_sampling(bpf_ok, workloads, guarded, tmp_path, unwind):
    """The same under --sample-bytes 4096: mappings are never sampled, and blocks of 16 periods or
    more (the 300 KiB reallocs) are each counted as themselves."""
    rep, exp, _ = run(guarded, workloads, tmp_path, "threads" if unwind == "dwarf" else "threads_fp",
                      "--unwind", unwind, "--sample-bytes", "4096")
    check(rep, exp, heap_sites=False)
    _, heap = by_site(rep, exp["pid"])
    assert heap.get("site_reshrink", 0) == exp["heap"]["site_reshrink"], heap


def test_fork_after_mremaps(bpf_ok, workloads, guarded, tmp_path):
    """A child forked after mremaps (not a target: README) mremaps, unmaps, reallocs and frees
    its copies: the parent's accounts do not move; the parent's own mremap after it counts."""
    rep, exp, _ = run(guarded, workloads, tmp_path, "fork")
    helpers.check_drops(rep, unknown_frees=0)
    assert [p["pid"] for p in rep["processes"]] == [exp["pid"]], rep["processes"]
    check(rep, exp)


def test_threads_exiting_while_others_allocate(bpf_ok, workloads, guarded, tmp_path):
    """Threads that use the memalign family and mremap, then exit (their tcache teardown frees
    are no unknown frees), while others allocate: what they kept stays, exactly."""
    rep, exp, _ = run(guarded, workloads, tmp_path, "exiting")
    helpers.check_drops(rep, unknown_frees=0)
    check(rep, exp)


@pytest.mark.parametrize("unwind", ["dwarf", "fp"])
@pytest.mark.parametrize("mode", ["merged_grow", "merged_shrink"])
def test_mremap_over_two_adjacent_mappings(bpf_ok, workloads, guarded, tmp_path, unwind, mode):
    """Two adjacent mappings are one VMA to the kernel, and one mremap of both moves (or shrinks)
    them together: only the first was retired (an mremap of one mapping "or more" was taken for
    a whole one), the second stayed counted."""
    rep, exp, _ = run(guarded, workloads, tmp_path, mode, "--unwind", unwind)
    check(rep, exp)


@pytest.mark.parametrize("unwind", ["dwarf", "fp"])
@pytest.mark.parametrize("mode", ["race", "race_head"])
def test_part_moved_hole_reused_by_another_thread(bpf_ok, workloads, guarded, tmp_path, mode, unwind):
    """An mremap that moves a part of a mapping leaves a hole the kernel may give another thread's
    mmap before the mremap's exit runs; that exit took the part from whatever was recorded there:
    the other thread's new mapping (29-46 of its 600 in every run). Mappings now carry the time
    they were made: an exit leaves those made since its call began alone. Where the mapping
    at the part's start is one made since (the other thread's return came first), the part is
    still found (a search, not the look-up at its start: the move was not recorded). A head
    moved away: the other thread's mmap, given the head's pages, found the old mapping still
    recorded there and retired it whole (a missed free), racing with the mremap's exit, which
    cut its head (negative bytes with --attach perf): the mapping is now taken at the entry, as
    a whole one is, and its rest put back at the return. A middle moved: the other thread's
    mapping made at the part's start hid the mapping it was cut from (the index's search began
    at the last start at or below the part, not below it): the old mapping kept its 8 pages,
    and the munmap of its head found the other thread's at its rest (allocs_map_full in 8 of 20
    runs with --unwind fp, where libc's mremap returns through a uretprobe: a wider window)."""
    rep, exp, _ = run(guarded, workloads, tmp_path, mode, "--unwind", unwind)
    helpers.check_drops(rep)
    check(rep, exp)


def test_mremap_below_a_stale_unsampled_frame(bpf_ok, workloads, guarded, tmp_path):
    """Under --sample-bytes an unsampled malloc's frame is remembered (mappings made below it are
    malloc's); an mremap made later from a frame whose buffer still held that malloc's return
    address was taken for one made inside it: not followed (the moved mapping's old entry
    stayed, then counted a missed free when its address was mapped again). No allocator we
    probe calls mremap inside malloc, calloc or operator new: mremap is no longer checked."""
    rep, exp, _ = run(guarded, workloads, tmp_path, "stale_skip", "--sample-bytes", "4096")
    assert rep["dropped"]["missed_frees"] == 0, rep["dropped"]
    check(rep, exp, heap_sites=False)


def test_stale_skip_full_mode_exact(bpf_ok, workloads, guarded, tmp_path):
    """The same layout in full mode (no call goes unseen there)."""
    rep, exp, _ = run(guarded, workloads, tmp_path, "stale_skip")
    helpers.check_drops(rep)
    check(rep, exp, heap_sites=False)


def test_mremap_of_zero_bytes_duplicates(bpf_ok, workloads, guarded, tmp_path):
    """mremap(old, 0, n, MREMAP_MAYMOVE) of a shared anonymous mapping makes a second mapping of
    its pages (the old one stays): it was not counted."""
    rep, exp, _ = run(guarded, workloads, tmp_path, "dup")
    check(rep, exp, heap_sites=False)
