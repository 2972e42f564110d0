# SPDX-License-Identifier: MIT
"""jemalloc's and tcmalloc's probes moved past their first instructions (operator new at +7,
nothrow new at +7, rallocx at +2, sized deletes at +3, free at +48, ...), from 4 threads at
once, each freeing blocks another one allocated: every operator new and delete variant,
mallocx/rallocx/xallocx/dallocx/sdallocx with flags (alignment, zero, no tcache, an arena of
its own), realloc and rallocx that move and that fail, nothrow news that fail. Each site's
allocs equal the calls the program made there (a moved probe hit once per call), every figure
exact; jemalloc preloaded and linked (-ljemalloc), uprobe_multi and perf-event links; roughly
unbiased with --sample-bytes 4096. And a program's own mmap after a nothrow new of a size that
fails for sure (its return is left alone)."""

import json
import math
import os
import subprocess

import pytest

import helpers

JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
KEYS = ("live_bytes", "live_allocs", "allocs", "frees", "alloc_bytes")


@pytest.fixture(scope="module")
def je_linked(tmp_path_factory, workloads):
    """je_threads linked against jemalloc (-ljemalloc: DT_NEEDED before libstdc++ and libc), with
    a libjemalloc.so of its own pointing at the runtime library where no dev package is."""
    d = tmp_path_factory.mktemp("je_linked")
    (d / "libjemalloc.so").symlink_to(JEMALLOC)
    out = d / "je_threads"
    src = helpers.REPO / "tests" / "workloads" / "je_threads.cc"
    p = subprocess.run(["g++", "-O2", "-g", "-Wall", "-o", str(out), str(src), "-L" + str(d), "-ljemalloc",
                        "-lpthread"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return str(out)


def _run(guarded, tmp, argv, lib, args=(), tail=()):
    report, expected = tmp / "r.json", tmp / "e.json"
    run_env = dict(os.environ, LD_PRELOAD=lib) if lib else None
    rc, _, err = guarded.run(["-f", "json", "-n", "0", "-i", "60", *args, "-o", str(report), "--", *argv,
                              str(expected), *tail], env=run_env, timeout=120)
    assert rc == 0, err
    return helpers.final_report(helpers.parse_reports(report.read_text())), json.loads(expected.read_text())


def _check_exact(rep, exp):
    pid = exp["pid"]
    got = helpers.by_frame0(rep, pid)
    errors = []
    for name, want in exp["sites"].items():
        have = got.get(name, {k: 0 for k in helpers.COUNT_KEYS})
        diff = {k: (want[k], have[k]) for k in KEYS if have[k] != want[k]}
        if diff:
            errors.append("%s: (expected, reported) %s" % (name, diff))
        # one allocator call, one allocation: nothing counted twice by a moved probe
        if want["allocs"] and have["allocs"] != exp["calls"][name]:
            errors.append("%s: %d calls, %d allocs" % (name, exp["calls"][name], have["allocs"]))
    assert not errors, "pid %d:\n  " % pid + "\n  ".join(errors) + "\n  drops: %s" % (
        {k: v for k, v in rep["dropped"].items() if v})
    helpers.check_proc_is_sum_of_stacks(rep, pid)
    assert helpers.proc_of(rep, pid)["unknown_frees"] == 0, helpers.proc_of(rep, pid)
    helpers.check_drops(rep, unknown_frees=0)


@pytest.mark.parametrize("attach", ["multi", "perf"])
@pytest.mark.parametrize("how", ["jemalloc-preload", "jemalloc-linked", "tcmalloc-preload"])
def test_every_entry_point_from_threads_exact(bpf_ok, guarded, workloads, je_linked, tmp_path, how, attach):
    if how == "jemalloc-preload":
        argv, lib = [workloads["je_threads"], "all"], JEMALLOC
    elif how == "jemalloc-linked":
        argv, lib = [je_linked, "all"], None
    else:
        argv, lib = [workloads["je_threads"], "new"], TCMALLOC  # no extended API
    rep, exp = _run(guarded, tmp_path, argv, lib, ["--attach", attach])
    _check_exact(rep, exp)


def test_sampled_is_roughly_unbiased(bpf_ok, guarded, workloads, tmp_path):
    """--sample-bytes 4096, 8 rounds: every site's estimated alloc_bytes within 5 standard
    deviations (sqrt(B * N)) of what it allocated, and the sum of them within 4."""
    n = 4096
    rep, exp = _run(guarded, tmp_path, [workloads["je_threads"], "all"], JEMALLOC, ["--sample-bytes", str(n)],
                    ["8"])
    got = helpers.by_frame0(rep, exp["pid"])
    far, total_want, total_have = [], 0, 0
    for name, want in exp["sites"].items():
        have = got.get(name, {"alloc_bytes": 0})["alloc_bytes"]
        total_want += want["alloc_bytes"]
        total_have += have
        sd = math.sqrt(max(want["alloc_bytes"], 1) * n)
        if abs(have - want["alloc_bytes"]) > 5 * sd:
            far.append("%s: %d allocated, %d estimated (%.1f sd)" % (name, want["alloc_bytes"], have,
                                                                    (have - want["alloc_bytes"]) / sd))
    assert not far, far
    assert abs(total_have - total_want) <= 4 * math.sqrt(total_want * n), (total_want, total_have)


@pytest.mark.parametrize("mode", ["nothrow", "throw"])
@pytest.mark.parametrize("lib", [JEMALLOC, TCMALLOC], ids=["jemalloc", "tcmalloc"])
def test_own_mmap_after_a_huge_new_is_counted(bpf_ok, guarded, workloads, tmp_path, lib, mode):
    """Full mode: an operator new of 2^62 bytes (nothrow: NULL; plain: bad_alloc, caught) has its
    return left alone (uprobe session); the program's own anonymous mmap made after it returned,
    from a deeper frame whose stack still holds that new's return address (a 16 KiB local
    buffer not written yet), is the program's: 4 x 64 KiB at site_map."""
    rep, exp = _run(guarded, tmp_path, [workloads["je_unseen"], mode], lib)
    got = helpers.by_frame0(rep, exp["pid"])
    have = got.get("site_map", {"live_bytes": 0, "live_allocs": 0})
    assert (have["live_bytes"], have["live_allocs"]) == (exp["mmap"]["site_map"], 4), (
        "site_map: expected %d bytes in 4 mappings, got %d in %d"
        % (exp["mmap"]["site_map"], have["live_bytes"], have["live_allocs"]))
    after = got["site_after"]
    assert {k: after[k] for k in KEYS} == exp["sites"]["site_after"], after
