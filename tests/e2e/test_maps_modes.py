# SPDX-License-Identifier: MIT
"""The program's own mappings in more modes: --attach perf with -- CMD, -p attach to a process whose
mappings were made before the profiler came (never recorded: nothing may go negative or be
counted freed), and system-wide (--comm) exactness of mmap_bytes/mmap_regions."""

import json
import os
import subprocess
import time
from collections import Counter

import pytest

import helpers
from helpers import Profiler, Workload

W = helpers.WORKLOADS
THRESHOLD_ENV = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
REMAP_MODES = ["threads", "race", "race_head", "merged_grow", "dup"]


def mmap_check(rep, exp, sites=True):
    pid = exp["pid"]
    p = helpers.check_proc_is_sum_of_stacks(rep, pid)
    maps = Counter()
    ts = tsr = 0
    for s in helpers.stacks_of(rep, pid):
        if s["kind"] != "mmap":
            continue
        assert s["live_bytes"] >= 0 and s["live_allocs"] >= 0, s
        f = helpers.frame0_func(s)
        maps[f] += s["live_bytes"]
        if f == "allocate_stack":  # glibc's thread stacks
            ts += s["live_bytes"]
            tsr += s["live_allocs"]
    assert (p["mmap_bytes"] - ts, p["mmap_regions"] - tsr) == (exp["mmap_bytes"], exp["mmap_regions"]), p
    for site, want in (exp.get("mmap", {}) if sites else {}).items():
        assert maps.get(site, 0) == want, (site, dict(maps))


def _run_launch(guarded, tmp_path, argv, *opts):
    report = tmp_path / "r.json"
    rc, _, err = guarded.run(list(opts) + ["-f", "json", "-n", "0", "-o", str(report), "--"] + argv,
                             env=THRESHOLD_ENV, timeout=60)
    assert rc == 0, err
    return helpers.final_report(helpers.parse_reports(report.read_text()))


@pytest.mark.parametrize("mode", REMAP_MODES)
def test_attach_perf_remap_threads_exact(bpf_ok, workloads, guarded, tmp_path, mode):
    exp_f = tmp_path / "e.json"
    rep = _run_launch(guarded, tmp_path, [workloads["remap_threads"], mode, str(exp_f)], "--attach", "perf")
    mmap_check(rep, json.loads(exp_f.read_text()))


@pytest.mark.parametrize("step", ["middle", "tail", "span", "grow", "move", "fixed", "part", "map_fixed"])
def test_attach_perf_mmap_partial_exact(bpf_ok, workloads, guarded, tmp_path, step):
    exp_f = tmp_path / "e.json"
    rep = _run_launch(guarded, tmp_path, [workloads["mmap_partial"], step, str(exp_f)], "--attach", "perf")
    mmap_check(rep, json.loads(exp_f.read_text()))
    helpers.check_drops(rep)


def test_attach_perf_mmap_sites_exact(bpf_ok, workloads, guarded, tmp_path):
    exp_f = tmp_path / "e.json"
    rep = _run_launch(guarded, tmp_path, [workloads["mmap_sites"], str(exp_f)], "--attach", "perf")
    mmap_check(rep, json.loads(exp_f.read_text()))


@pytest.mark.parametrize("opts", [[], ["--unwind", "fp"], ["--attach", "perf"]])
def test_premapped_mappings_are_never_counted(env, tmp_path, opts):
    """Mappings made before -p attached, unmapped whole/head/tail/middle, mremapped (grown,
    shrunk, MREMAP_FIXED onto a new one) and mapped over after: only those made after count."""
    exp_f = tmp_path / "e.json"
    wl = Workload(env["reaper"], [helpers.workload("premapped"), str(exp_f)])
    prof = Profiler(env["reaper"], ["-f", "json", "-n", "0", "-i", "0.5"] + opts + ["-p", str(wl.pid)])
    prof.wait_attached()
    wl.send("go")
    assert wl.reply() == "ok"
    wl.send("exit")
    assert wl.wait() == 0
    assert prof.drain() == 0, prof.err.lines
    rep = helpers.final_report(prof.reports)
    exp = json.loads(exp_f.read_text())
    mmap_check(rep, exp)
    helpers.check_drops(rep, unknown_frees=0)
    assert rep["dropped"]["missed_frees"] == 0
    for s in helpers.stacks_of(rep, wl.pid):
        assert s["frees"] <= s["allocs"], s


def test_system_wide_comm_mappings_exact(env, tmp_path):
    prof = Profiler(env["reaper"], ["-f", "json", "-n", "0", "-i", "0.5",
                                    "--comm", "remap_threads", "--comm", "mmap_sites"])
    prof.wait_attached()
    time.sleep(1)
    exps = []
    for argv in [[env["workloads"]["remap_threads"], m] for m in REMAP_MODES] + [[env["workloads"]["mmap_sites"]]]:
        e = tmp_path / ("e%d.json" % len(exps))
        assert subprocess.run(argv + [str(e)], env=THRESHOLD_ENV, timeout=30).returncode == 0
        exps.append(json.loads(e.read_text()))
    prof.reports_after(prof.sync(), 3)
    assert prof.stop() == 0, prof.err.lines
    for exp in exps:
        rep = [r for r in prof.reports if any(q["pid"] == exp["pid"] and q["exited"] for q in r["processes"])]
        assert len(rep) == 1, exp["pid"]
        # totals only: a program's first run may be walked before its table (README)
        mmap_check(rep[0], exp, sites=False)
