# SPDX-License-Identifier: MIT
"""Attach mode (-p PID): blocks allocated before attach, frees of them (unknown_frees), growth
between reports, targets exiting mid-run, several -p, Ctrl-C/SIGTERM and -d."""

import os
import signal
import time

import pytest

import helpers
from helpers import Profiler, Workload

JSON_ARGS = ["-f", "json", "-n", "0", "-i", "1"]
PRE_ATTACH_BLOCKS = 5  # alloc_sites attach: blocks allocated before "ready", freed after "go"


def attach_sites(env):
    return Workload(env["reaper"], [env["workloads"]["alloc_sites"], "attach"])


def check_exact(rep, exp, exited):
    pid = exp["pid"]
    p = helpers.proc_of(rep, pid)
    assert p["exited"] is exited, p
    assert p["comm"] == "alloc_sites"
    helpers.check_sites(rep, pid, exp["sites"])
    helpers.check_proc_is_sum_of_stacks(rep, pid)
    helpers.check_proc_exact(rep, pid, exp["proc"])


def test_attach_target_exits(env):
    """The target exits mid-run: the profiler ends by itself (status 0) with a final report that
    marks it exited and still shows what it never freed. The blocks it allocated before the
    attach and freed after are unknown frees. Another process doing the same work at the same
    time, not given with -p, is not counted anywhere."""
    wl = attach_sites(env)
    other = attach_sites(env)
    t0 = time.time()
    prof = Profiler(env["reaper"], JSON_ARGS + ["-p", str(wl.pid)])
    prof.wait_attached()
    other.send("go")
    exp = wl.expect_json("go")
    assert other.reply().startswith("{")
    assert exp["proc"]["unknown_frees"] == PRE_ATTACH_BLOCKS
    assert exp["sites"]["pre_attach_alloc"]["allocs"] == 0  # allocated before the attach
    wl.send("exit")
    assert wl.wait() == 0
    rc = prof.drain()
    assert rc == 0, prof.err.lines
    rep = helpers.final_report(prof.reports)
    for r in prof.reports:
        helpers.check_schema(r)
    check_exact(rep, exp, exited=True)
    assert exp["proc"]["live_bytes"] > 0 and helpers.proc_of(rep, wl.pid)["live_bytes"] == exp["proc"]["live_bytes"]
    helpers.check_drops(rep, unknown_frees=PRE_ATTACH_BLOCKS)
    helpers.check_growth_consistent(prof.reports, {wl.pid})
    for r in prof.reports:
        assert [p["pid"] for p in r["processes"]] == [wl.pid]
        assert {s["pid"] for s in r["stacks"]} <= {wl.pid}
        assert t0 - 1 <= r["time"] <= time.time() + 1, (t0, r["time"])
    assert other.p.poll() is None
    other.send("exit")
    assert other.wait() == 0


def test_attach_frees_then_sigint(env):
    """Live numbers in periodic reports follow the target's frees; Ctrl-C prints the final
    report, exits 0 and leaves the target running."""
    wl = attach_sites(env)
    prof = Profiler(env["reaper"], JSON_ARGS + ["-p", str(wl.pid)])
    prof.wait_attached()
    exp1 = wl.expect_json("go")
    rep = prof.reports_after(prof.sync(), 2)
    assert rep["final"] is False
    check_exact(rep, exp1, exited=False)

    exp2 = wl.expect_json("free")
    assert exp2["proc"]["live_bytes"] == 0 and exp2["proc"]["live_allocs"] == 0
    rep = prof.reports_after(prof.sync(), 2)
    check_exact(rep, exp2, exited=False)
    helpers.check_drops(rep, unknown_frees=PRE_ATTACH_BLOCKS)

    rc = prof.stop(signal.SIGINT)
    assert rc == 0, prof.err.lines
    rep = helpers.final_report(prof.reports)
    check_exact(rep, exp2, exited=False)
    assert wl.p.poll() is None, "Ctrl-C of the profiler must not end the traced process"
    helpers.check_growth_consistent(prof.reports, {wl.pid})
    wl.send("exit")
    assert wl.wait() == 0


def test_growth_between_reports(env):
    """Steps driven on stdin; each is checked in the second report after it (the first may have
    been snapshotted before the step): exact live bytes per site, and growth_bytes of every
    report equal to the live change since the previous one."""
    wl = Workload(env["reaper"], [env["workloads"]["alloc_growth"]])
    prof = Profiler(env["reaper"], JSON_ARGS + ["-p", str(wl.pid)])
    prof.wait_attached()
    pid = wl.pid

    def live(rep, func):
        a = helpers.by_frame0(rep, pid).get(func)
        return (a["live_bytes"], a["live_allocs"]) if a else (0, 0)

    steps = [
        (["a 1000 10"], (10000, 10, 0, 0)),
        (["b 4096 5"], (10000, 10, 20480, 5)),
        (["fa 4"], (6000, 6, 20480, 5)),
        (["a 1 100", "fb 5"], (6100, 106, 0, 0)),  # two changes within one interval
        (["b 70000 3"], (6100, 106, 210000, 3)),
    ]
    checks = []
    prev_live = 0
    for cmds, want in steps:
        n = prof.sync()
        for c in cmds:
            wl.send(c)
            reply = wl.reply()
            assert reply.startswith("ok "), reply
        assert tuple(int(x) for x in reply.split()[1:]) == want, reply
        rep = prof.reports_after(n, 2)
        assert live(rep, "site_grow_a") == (want[0], want[1]), (cmds, live(rep, "site_grow_a"))
        assert live(rep, "site_grow_b") == (want[2], want[3]), (cmds, live(rep, "site_grow_b"))
        p = helpers.check_proc_is_sum_of_stacks(rep, pid)
        assert p["live_bytes"] == want[0] + want[2]
        # growth since the last step, summed over the reports in between
        idx = prof.reports.index(rep)
        first = checks[-1] + 1 if checks else 0
        grown = sum(helpers.proc_of(r, pid)["growth_bytes"] for r in prof.reports[first : idx + 1])
        assert grown == want[0] + want[2] - prev_live, (cmds, grown)
        checks.append(idx)
        prev_live = want[0] + want[2]

    # default sort: growth, descending
    for r in prof.reports:
        g = [s["growth_bytes"] for s in r["stacks"]]
        assert g == sorted(g, reverse=True), g

    # nothing happens: the next report grows by exactly 0, per process and per stack
    rep = prof.reports_after(len(prof.reports), 1)
    assert helpers.proc_of(rep, pid)["growth_bytes"] == 0
    assert all(s["growth_bytes"] == 0 for s in helpers.stacks_of(rep, pid))
    assert helpers.proc_of(rep, pid)["live_bytes"] == prev_live

    wl.send("exit")
    assert wl.wait() == 0
    rc = prof.drain()
    assert rc == 0, prof.err.lines
    rep = helpers.final_report(prof.reports)
    p = helpers.proc_of(rep, pid)
    assert p["exited"] is True
    assert p["live_bytes"] == prev_live
    assert live(rep, "site_grow_a") == (6100, 106) and live(rep, "site_grow_b") == (210000, 3)
    assert helpers.by_frame0(rep, pid)["site_grow_b"]["allocators"] == {"calloc"}
    assert p["allocs"] == 10 + 5 + 100 + 3 and p["frees"] == 4 + 5 and p["unknown_frees"] == 0
    helpers.check_drops(rep, unknown_frees=0)
    helpers.check_growth_consistent(prof.reports, {pid})


def test_several_pids(env):
    """-p A -p B (A given twice: traced once): each process exact on its own; A exits mid-run and
    stays in the reports as exited; SIGTERM ends the profiler with status 0."""
    a, b = attach_sites(env), attach_sites(env)
    prof = Profiler(env["reaper"], JSON_ARGS + ["-p", str(a.pid), "-p", str(b.pid), "-p", str(a.pid)])
    prof.wait_attached()
    exp_a = a.expect_json("go")
    exp_b = b.expect_json("go")
    rep = prof.reports_after(prof.sync(), 2)
    check_exact(rep, exp_a, exited=False)
    check_exact(rep, exp_b, exited=False)
    assert sorted(p["pid"] for p in rep["processes"]) == sorted([a.pid, b.pid])

    a.send("exit")
    assert a.wait() == 0
    rep = prof.reports_after(prof.sync(), 2)
    check_exact(rep, exp_a, exited=True)
    check_exact(rep, exp_b, exited=False)

    rc = prof.stop(signal.SIGTERM)
    assert rc == 0, prof.err.lines
    rep = helpers.final_report(prof.reports)
    check_exact(rep, exp_a, exited=True)
    check_exact(rep, exp_b, exited=False)
    helpers.check_drops(rep, unknown_frees=2 * PRE_ATTACH_BLOCKS)
    helpers.check_growth_consistent(prof.reports, {a.pid, b.pid})
    assert b.p.poll() is None
    b.send("exit")
    assert b.wait() == 0


def test_forked_twins_are_told_apart(env):
    """Two processes forked from one image allocate from one site: the same stack, so the same
    stack id (and the same kept aggregate hint, see stack_hint_set in BPF); each process's aggregate is
    its own, exactly."""
    wl = Workload(env["reaper"], [env["workloads"]["fork_twins"]])
    line = wl.reply()
    assert line.startswith("twins "), line
    kids = [int(x) for x in line.split()[1:]]
    prof = Profiler(env["reaper"], JSON_ARGS + ["-p", str(kids[0]), "-p", str(kids[1])])
    prof.wait_attached()
    wl.send("go")
    assert wl.reply() == "done"
    rep = prof.reports_after(prof.sync(), 2)
    ids = []
    for i, pid in enumerate(kids):
        k = i + 1
        got = helpers.by_frame0(rep, pid)
        assert set(got) == {"site_twin"}, got
        twin = got["site_twin"]
        assert {key: twin[key] for key in helpers.COUNT_KEYS} == {
            "live_bytes": 100 * k * (10 * k - k), "live_allocs": 10 * k - k,
            "alloc_bytes": 100 * k * 10 * k, "allocs": 10 * k, "frees": k}, (pid, twin)
        ids.append({s["stack_id"] for s in helpers.stacks_of(rep, pid)})
    # the case this is about: one stack id, two processes
    assert ids[0] == ids[1] and len(ids[0]) == 1, ids
    assert prof.stop() == 0, prof.err.lines
    wl.p.stdin.close()
    assert wl.wait() == 0


def test_duration(env):
    """-d SECS ends an attach run by itself with status 0 and a final report; the target runs on."""
    wl = Workload(env["reaper"], [env["workloads"]["alloc_growth"]])
    prof = Profiler(env["reaper"], ["-f", "json", "-n", "0", "-i", "0.5", "-d", "1.5", "-p", str(wl.pid)])
    prof.wait_attached()
    wl.send("a 64 3")
    assert wl.reply() == "ok 192 3 0 0"
    rc = prof.drain(timeout=30)
    assert rc == 0, prof.err.lines
    rep = helpers.final_report(prof.reports)
    p = helpers.proc_of(rep, wl.pid)
    assert p["exited"] is False and p["live_bytes"] == 192 and p["live_allocs"] == 3
    assert 1.0 <= rep["elapsed_s"] < 10, rep["elapsed_s"]
    assert wl.p.poll() is None
    wl.send("exit")
    assert wl.wait() == 0


def test_cxx_attach(env):
    """C++ in attach mode: every allocation of new/new[]/aligned new/std::string/std::vector has
    operator new as frames[0] (in libstdc++), exact per frames[0]; nothing else after attach."""
    wl = Workload(env["reaper"], [env["workloads"]["alloc_cxx"], "attach"])
    prof = Profiler(env["reaper"], JSON_ARGS + ["-p", str(wl.pid)])
    prof.wait_attached()
    exp = wl.expect_json("go")
    wl.send("exit")
    assert wl.wait() == 0
    rc = prof.drain()
    assert rc == 0, prof.err.lines
    rep = helpers.final_report(prof.reports)
    pid = wl.pid
    p = helpers.proc_of(rep, pid)
    assert p["exited"] is True and p["comm"] == "alloc_cxx", p
    helpers.check_sites(rep, pid, exp["frame0"], group=helpers.norm_func)
    funcs = {helpers.norm_func(helpers.frame0_func(s)) for s in helpers.stacks_of(rep, pid)}
    assert funcs == set(exp["frame0"]), funcs
    for s in helpers.stacks_of(rep, pid):
        assert "libstdc++" in (s["frames"][0]["module"] or ""), s["frames"][0]
    helpers.check_proc_is_sum_of_stacks(rep, pid)
    helpers.check_proc_exact(rep, pid, exp["proc"])
    helpers.check_drops(rep, unknown_frees=0)


@pytest.mark.parametrize("lib", ["/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
                                 "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"],
                         ids=["jemalloc", "tcmalloc"])
def test_cxx_with_an_allocator_that_has_its_own_operator_new(env, lib):
    """jemalloc and tcmalloc define operator new/delete, which do not call the public malloc
    (jemalloc's delete calls the public free): probed too, every C++ allocation is exact."""
    wl = Workload(env["reaper"], [env["workloads"]["alloc_cxx"], "attach"], env=dict(os.environ, LD_PRELOAD=lib))
    rep, exp = helpers.attach_go_exit(env["reaper"], wl, JSON_ARGS)
    helpers.check_proc_is_sum_of_stacks(rep, wl.pid)
    helpers.check_proc_exact(rep, wl.pid, exp["proc"])
    assert {s["allocator"] for s in helpers.stacks_of(rep, wl.pid)} == {"operator new"}
    helpers.check_drops(rep, unknown_frees=0)


def test_many_live_blocks(env):
    """150,000 live blocks at once, then 100,000 freed: exact, nothing dropped."""
    wl = Workload(env["reaper"], [env["workloads"]["alloc_growth"]])
    prof = Profiler(env["reaper"], JSON_ARGS + ["-p", str(wl.pid)])
    prof.wait_attached()
    wl.send("a 24 100000")
    assert wl.reply(timeout=120) == "ok 2400000 100000 0 0"
    wl.send("b 40 50000")
    assert wl.reply(timeout=120) == "ok 2400000 100000 2000000 50000"
    rep = prof.reports_after(prof.sync(), 2)
    a = helpers.by_frame0(rep, wl.pid)
    assert (a["site_grow_a"]["live_bytes"], a["site_grow_a"]["live_allocs"]) == (2400000, 100000)
    assert (a["site_grow_b"]["live_bytes"], a["site_grow_b"]["live_allocs"]) == (2000000, 50000)
    wl.send("fa 100000")
    assert wl.reply(timeout=120) == "ok 0 0 2000000 50000"
    rc = prof.stop(signal.SIGINT)
    assert rc == 0, prof.err.lines
    rep = helpers.final_report(prof.reports)
    a = helpers.by_frame0(rep, wl.pid)
    assert {k: a["site_grow_a"][k] for k in helpers.COUNT_KEYS} == {
        "live_bytes": 0,
        "live_allocs": 0,
        "alloc_bytes": 2400000,
        "allocs": 100000,
        "frees": 100000,
    }
    assert {k: a["site_grow_b"][k] for k in helpers.COUNT_KEYS} == {
        "live_bytes": 2000000,
        "live_allocs": 50000,
        "alloc_bytes": 2000000,
        "allocs": 50000,
        "frees": 0,
    }
    p = helpers.check_proc_is_sum_of_stacks(rep, wl.pid)
    assert p["live_bytes"] == 2000000 and p["unknown_frees"] == 0
    helpers.check_drops(rep, unknown_frees=0)
    wl.send("exit")
    assert wl.wait() == 0


def test_a_failed_realloc_of_an_untracked_block_frees_nothing(env):
    """Blocks from before the attach: a realloc that fails keeps its block (no free yet: it is
    counted once, at its real free), one that succeeds frees it (an unknown free)."""
    wl = Workload(env["reaper"], [env["workloads"]["lifecycle"], "attach-realloc"])
    prof = Profiler(env["reaper"], JSON_ARGS + ["-p", str(wl.pid)])
    prof.wait_attached()
    exp = wl.expect_json("go")
    rep = prof.reports_after(prof.sync(), 2)
    p = helpers.proc_of(rep, wl.pid)
    assert p["unknown_frees"] == exp["unknown_frees"], p
    assert p["live_bytes"] == exp["live_bytes"], p
    helpers.check_proc_is_sum_of_stacks(rep, wl.pid)
    helpers.check_drops(rep, unknown_frees=exp["unknown_frees"])
    assert prof.stop() == 0, prof.err.lines
    wl.send("exit")
    assert wl.wait() == 0


@pytest.mark.parametrize("attach", ["multi", "perf"])
def test_a_target_that_exits_while_being_attached(env, attach):
    """The target exits while its probes are being placed (exit_on_probe stops the profiler
    when the first one is in place, and exits): one line saying so, exit 1. The next attach
    failed on the path through the process's /proc/PID/root, and said "cannot attach to
    /proc/N/root/.../libc.so.6 (pid N): No such file or directory", after libbpf's own
    warnings (perf-event links)."""
    caught = 0
    for attempt in range(5):
        wl = Workload(env["reaper"], [env["workloads"]["exit_on_probe"]])
        prof = Profiler(env["reaper"], ["-f", "json", "-n", "0", "-d", "10", "--attach", attach, "-p", str(wl.pid)])
        wl.send(str(prof.p.pid))
        assert wl.wait() == 0, wl.err.lines  # it stopped the profiler; reaped here, its pid gone
        os.kill(prof.p.pid, signal.SIGCONT)
        rc = prof.drain()
        if rc == 0 and helpers.ATTACHED_RE.match(prof.err.lines[0]):
            continue  # stopped after the last probe was placed: it exited after the attach
        helpers.check_one_error_line(rc, "", "\n".join(prof.err.lines) + "\n", want_rc=1,
                                     mentions="pid %d: no such process" % wl.pid)
        caught += 1
    assert caught, "the target never exited during the attach"


def test_processes_beyond_max_procs_are_counted(env):
    """--max-procs N with N + 1 targets: the N that allocated first are exact, every allocation
    of the last is counted under procs_map_full and each of its frees under unknown_frees (the
    kernel's process map was a fixed 4096 entries, filled by a fork storm system-wide)."""
    a, b, c = attach_sites(env), attach_sites(env), attach_sites(env)
    prof = Profiler(env["reaper"], JSON_ARGS + ["--max-procs", "2", "-p", str(a.pid), "-p", str(b.pid),
                                                "-p", str(c.pid)])
    prof.wait_attached()
    exp_a = a.expect_json("go")
    exp_b = b.expect_json("go")
    exp_c = c.expect_json("go")
    rc = prof.stop(signal.SIGTERM)
    assert rc == 0, prof.err.lines
    rep = helpers.final_report(prof.reports)
    check_exact(rep, exp_a, exited=False)
    check_exact(rep, exp_b, exited=False)
    assert helpers.proc_of(rep, c.pid)["allocs"] == 0
    d = rep["dropped"]
    c_allocs = exp_c["proc"]["allocs"]
    assert c_allocs > 0
    assert d["procs_map_full"] == c_allocs, (d, exp_c["proc"])
    assert d["unknown_frees"] == 2 * PRE_ATTACH_BLOCKS + exp_c["proc"]["frees"] + exp_c["proc"]["unknown_frees"], \
        (d, exp_c["proc"])
    assert {k: v for k, v in d.items() if k not in ("procs_map_full", "unknown_frees")} == \
        {k: 0 for k in d if k not in ("procs_map_full", "unknown_frees")}, d
    for w in (a, b, c):
        w.send("exit")
        assert w.wait() == 0
