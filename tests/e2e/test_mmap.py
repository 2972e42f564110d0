# SPDX-License-Identifier: MIT
"""Anonymous memory beside the heap: mmap/mremap/munmap made by the program itself are counted
exactly as "kind":"mmap" (per stack) and mmap_bytes (per process); the mappings malloc makes
while serving a large block are not (that block is heap)."""

import json
import subprocess

import pytest

import fleet_tools
import helpers


@pytest.mark.parametrize("unwind", ["dwarf", "fp"])
def test_mmap_category(bpf_ok, workloads, guarded, tmp_path, unwind):
    """With DWARF unwinding mremap is followed by its syscall tracepoints (libc's mremap begins
    sub $N,%rsp: single-stepped at a probe), a raw syscall(SYS_mremap) included; with frame
    pointers libc's mremap is probed (its caller is found at its entry only), and a raw one is
    not seen: its mapping stays where it was made, at its old size."""
    report, expected = tmp_path / "r.json", tmp_path / "e.json"
    rc, out, err = guarded.run(["-v", "--unwind", unwind, "-f", "json", "-n", "0", "-o", str(report), "--",
                                workloads["mmap_sites"], str(expected)])
    assert rc == 0, err
    exp = json.loads(expected.read_text())
    assert ("mremap: followed by its syscall tracepoints" in err) == (unwind == "dwarf"), err
    if unwind == "fp":
        exp["mmap"].update(site_remap_raw=0, anon=8192)  # site_remap_raw_src's inlined anon()
        exp["mmap_bytes"] -= 32768 - 8192
    rep = helpers.final_report(helpers.parse_reports(report.read_text()))
    check_sites(rep, exp)
    # a head unmapped: the same mapping, smaller (not a free and a new allocation)
    (head,) = [s for s in helpers.stacks_of(rep, exp["pid"]) if helpers.frame0_func(s) == "site_map_head"]
    assert (head["allocs"], head["frees"], head["alloc_bytes"], head["live_allocs"]) == (1, 0, 16384, 1), head


def check_sites(rep, exp):
    """Each site of exp (a workload's expectation: its pid, "mmap" and "heap" sites with their
    live bytes, mmap_bytes, mmap_regions) holds exactly what exp says, by frame 0."""
    pid = exp["pid"]
    p = helpers.check_proc_is_sum_of_stacks(rep, pid)
    assert (p["mmap_bytes"], p["mmap_regions"]) == (exp["mmap_bytes"], exp["mmap_regions"]), p
    maps, heap = {}, {}
    for s in helpers.stacks_of(rep, pid):
        d = maps if s["kind"] == "mmap" else heap
        f = helpers.frame0_func(s)
        d[f] = d.get(f, 0) + s["live_bytes"]
    for site, want in exp["mmap"].items():
        assert maps.get(site, 0) == want, (site, maps)
    for site, want in exp["heap"].items():
        assert heap.get(site, 0) == want, (site, heap)
        assert site not in maps, "a mapping made inside malloc was counted as the program's"
    assert p["live_bytes"] == sum(exp["heap"].values()), (p, heap)
    return p


def test_text_report_shows_mmap_bytes(bpf_ok, workloads, guarded, tmp_path):
    """The text report listed mmap stacks under a process whose LIVE (the heap's) left them
    out, with no column for them: an MMAP column where a process has mappings of its own."""
    expected = tmp_path / "e.json"
    rc, out, err = guarded.run(["-n", "3", "--", workloads["mmap_sites"], str(expected)])
    assert rc == 0, err
    exp = json.loads(expected.read_text())
    lines = out.splitlines()
    head = next(i for i, l in enumerate(lines) if l.split()[:2] == ["PID", "COMM"])
    assert lines[head].split()[4] == "MMAP", lines[head]
    # columns are right-aligned under their heads
    end = lines[head].index("MMAP") + len("MMAP")
    cell = lines[head + 1][:end].rsplit("  ", 1)[-1].strip()
    n, unit = cell.split()
    assert unit == "KiB" and "%.1f" % (exp["mmap_bytes"] / 1024) == n, (cell, exp["mmap_bytes"])


def test_collapsed_stacks_end_mappings_in_an_mmap_frame(bpf_ok, workloads, guarded, tmp_path):
    """Folded stacks carry no allocator: the program's own mappings end in an "[mmap]" frame, so
    they neither merge with nor pass for heap blocks of the same call stack; the lines without
    it sum to the heap's live bytes, those with it to mmap_bytes."""
    out, expected = tmp_path / "stacks.folded", tmp_path / "e.json"
    rc, _, err = guarded.run(["-f", "collapsed", "-o", str(out), "--", workloads["mmap_sites"], str(expected)])
    assert rc == 0, err
    exp = json.loads(expected.read_text())
    maps, heap = {}, {}
    for frames, w in fleet_tools.parse_collapsed(out.read_text()):
        if frames[-1] == "[mmap]":
            site = fleet_tools.site_of(frames[-2])
            maps[site] = maps.get(site, 0) + w
        else:
            assert "[mmap]" not in frames, frames
            site = fleet_tools.site_of(frames[-1])
            heap[site] = heap.get(site, 0) + w
    assert sum(maps.values()) == exp["mmap_bytes"], maps
    assert sum(heap.values()) == sum(exp["heap"].values()), heap
    for site, want in exp["mmap"].items():
        assert maps.get(site, 0) == want, (site, maps)


PARTIAL_STEPS = ["middle", "tail", "span", "span_whole", "span_many", "grow", "move", "shrink", "fixed", "part",
                 "map_fixed", "map_fixed_same", "dontneed",
                 "zero_len", "many", "over_8192", "foreign"]


@pytest.mark.parametrize("step", PARTIAL_STEPS)
def test_mmap_parts_unmapped_remapped_mapped_over(bpf_ok, workloads, guarded, tmp_path, step):
    """Only a whole mapping or its head was followed: an munmap of a mapping's tail or middle, one
    spanning two mappings, an mremap of a part or onto another mapping (MREMAP_FIXED) and a
    MAP_FIXED mapping over one left the old bytes counted. madvise(MADV_DONTNEED) keeps them: the
    program still holds the mapping (sizes are what it asked for). An munmap of 0 bytes (EINVAL)
    retired the whole mapping (and counted allocs_map_full). A process's index of its mappings
    holds 64: the 16 of 80 that do not fit are counted (mappings_unindexed), and followed as
    exactly; munmaps of mappings not the program's (malloc's, a file's) take nothing from it."""
    report, expected = tmp_path / "r.json", tmp_path / "e.json"
    rc, out, err = guarded.run(["-f", "json", "-n", "0", "-o", str(report), "--", workloads["mmap_partial"],
                                step, str(expected)])
    assert rc == 0, err
    exp = json.loads(expected.read_text())
    rep = helpers.final_report(helpers.parse_reports(report.read_text()))
    p = helpers.check_proc_is_sum_of_stacks(rep, exp["pid"])
    assert (p["mmap_bytes"], p["mmap_regions"]) == (exp["mmap_bytes"], exp["mmap_regions"]), p
    helpers.check_drops(rep)
    assert rep["dropped"]["missed_frees"] == 0, rep["dropped"]
    # the index holds 64 a process (the mappings map as many as --max-allocs: it held 8,192, and
    # the 9,000th mapping's tail unmap was missed, its add counted as allocs_map_full)
    unindexed = {"many": 80 - 64, "over_8192": 9000 - 64}.get(step, 0)
    assert rep["dropped"]["mappings_unindexed"] == unindexed, rep["dropped"]



def test_syscall_tracepoints_count_only_the_targets(env, tmp_path):
    """mremap's (and munmap's) syscall tracepoints fire in every process: with -p only the
    target's calls count, and all of them. Other processes' mremaps were taken for a target's
    (their links filter by process, so the programs trusted every caller): each such stack,
    unwound without its process's tables, counted as stack_incomplete, its mapping recorded
    under a process no one asked for."""
    wl = helpers.Workload(env["reaper"], [env["workloads"]["mmap_sites"], str(tmp_path / "t.json"), "wait"])
    prof = helpers.Profiler(env["reaper"], ["-v", "--unwind", "dwarf", "-f", "json", "-n", "0", "-i", "60",
                                            "-p", str(wl.pid)])
    prof.wait_attached()
    helpers.wait_stderr(prof, "mremap: followed by its syscall tracepoints")
    for _ in range(5):  # an mremap of its own mapping, a raw one, mmaps and munmaps each
        subprocess.run([env["workloads"]["mmap_sites"], str(tmp_path / "e.json")], check=True, timeout=60)
    wl.send("go")
    assert wl.reply() == "ok"
    assert prof.stop() == 0, prof.err.lines
    rep = helpers.final_report(prof.reports)
    assert [p["pid"] for p in rep["processes"]] == [wl.pid], rep["processes"]
    assert {s["pid"] for s in rep["stacks"]} == {wl.pid}
    helpers.check_drops(rep)
    assert rep["dropped"]["stack_incomplete"] == 0, rep["dropped"]
    # the target's own: libc's mremap and a raw one, through the tracepoints too
    check_sites(rep, json.loads((tmp_path / "t.json").read_text()))
    wl.send("exit")
    assert wl.wait() == 0


def test_mremap_denied_by_seccomp(bpf_ok, workloads, guarded, tmp_path):
    """A system call seccomp denies skips its entry tracepoint, not its exit: mremap's exit
    alone, inside glibc's realloc of a block it mapped (which then mallocs, copies and unmaps),
    ended the realloc's call: the malloc inside it was recorded as the program's, under
    realloc's frame, and realloc's return found nothing to do."""
    report, expected = tmp_path / "r.json", tmp_path / "e.json"
    rc, out, err = guarded.run(["-v", "--unwind", "dwarf", "-f", "json", "-n", "0", "-o", str(report), "--",
                                workloads["remap_denied"], str(expected)])
    assert rc == 0, err
    assert "mremap: followed by its syscall tracepoints" in err, err
    exp = json.loads(expected.read_text())
    rep = helpers.final_report(helpers.parse_reports(report.read_text()))
    helpers.check_drops(rep)
    check_sites(rep, exp)
    (grow,) = [s for s in helpers.stacks_of(rep, exp["pid"]) if helpers.frame0_func(s) == "site_grow"]
    assert (grow["allocator"], grow["live_allocs"], grow["live_bytes"]) == ("realloc", 1, 524288), grow
