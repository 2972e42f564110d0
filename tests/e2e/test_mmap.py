# SPDX-License-Identifier: MIT
"""Anonymous memory beside the heap: mmap/mremap/munmap made by the program itself are counted
exactly as "kind":"mmap" (per stack) and mmap_bytes (per process); the mappings malloc makes
while serving a large block are not (that block is heap)."""

import json

import helpers


def test_mmap_category(bpf_ok, workloads, guarded, tmp_path):
    report, expected = tmp_path / "r.json", tmp_path / "e.json"
    rc, out, err = guarded.run(["-f", "json", "-n", "0", "-o", str(report), "--", workloads["mmap_sites"],
                                str(expected)])
    assert rc == 0, err
    exp = json.loads(expected.read_text())
    rep = helpers.final_report(helpers.parse_reports(report.read_text()))
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
        assert heap.get(site) == want, (site, heap)
        assert site not in maps, "a mapping made inside malloc was counted as the program's"
    assert p["live_bytes"] == sum(exp["heap"].values())
    # a head unmapped: the same mapping, smaller (not a free and a new allocation)
    (head,) = [s for s in helpers.stacks_of(rep, pid) if helpers.frame0_func(s) == "site_map_head"]
    assert (head["allocs"], head["frees"], head["alloc_bytes"], head["live_allocs"]) == (1, 0, 16384, 1), head
