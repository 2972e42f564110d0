# SPDX-License-Identifier: MIT
"""Idle aggregates retired under pressure: a program that keeps making new call stacks must not
fill a small --max-stacks (every new stack dropped after), and the figures stay exact: live bytes
per site, and each process's totals equal to its stacks' plus what its retired aggregates had
counted (retired_allocs, retired_alloc_bytes)."""

import helpers
from helpers import Profiler, Workload

MAX_STACKS = 256  # a small stacks map (4 * 256 aggregate slots)
HELD_PATHS = range(800, 930)  # 130 stacks kept live: the map stays over its pressure mark (128)
BATCH = 24  # new stacks per step
STEPS = 24  # 576 distinct stacks in all, beside the held ones: 2.8 maps' worth


def start(env, max_stacks=MAX_STACKS):
    wl = Workload(env["reaper"], [env["workloads"]["stack_churn"]])
    prof = Profiler(
        env["reaper"], ["-f", "json", "-n", "0", "-i", "0.2", "--max-stacks", str(max_stacks), "-p", str(wl.pid)]
    )
    prof.wait_attached()
    assert wl.expect_json("expect")["allocs"] == 0
    wl.send("hold")
    assert wl.reply() == "held"
    return wl, prof


def check_totals(rep, pid):
    """The process's totals: its stacks' figures plus its retired aggregates' (which held no
    block: as many frees as allocations)."""
    p = helpers.proc_of(rep, pid)
    s = helpers.sum_stacks(rep, pid)
    assert (p["live_bytes"], p["live_allocs"]) == (s["live_bytes"], s["live_allocs"]), (p, s)
    assert p["allocs"] == s["allocs"] + p["retired_allocs"], (p, s)
    assert p["frees"] == s["frees"] + p["retired_allocs"], (p, s)
    assert p["alloc_bytes"] == s["alloc_bytes"] + p["retired_alloc_bytes"], (p, s)
    return p


def check_held(rep, pid, exp, only=True):
    """The held blocks, exactly; the paths' (leaf's) those kept; with only, nothing else live."""
    sites = helpers.by_frame0(rep, pid)
    h = sites.get("hold_site")
    assert h and (h["live_bytes"], h["live_allocs"]) == (exp["held_bytes"], exp["held_allocs"]), h
    leaf = sites.get("leaf", {"live_bytes": 0, "live_allocs": 0})
    assert (leaf["live_bytes"], leaf["live_allocs"]) == (48 * exp["kept"], exp["kept"]), (leaf, exp)
    others = {f: a["live_bytes"] for f, a in sites.items() if f not in ("hold_site", "leaf") and a["live_bytes"]}
    assert not only or not others, "live bytes outside hold_site: %r" % others


def test_new_stacks_keep_finding_room(env):
    """576 distinct 26-frame stacks beside 130 held ones through a map of 256, in steps of 24
    with three reports between: without retirement the map fills at the sixth step and every new
    stack after is dropped (stacks_map_full); with it, none is, and the numbers stay exact. After
    each step the last path's stack (retired and swept by then) is allocated from again on the
    same CPU, by the very same call, which the unwinder remembers: its id must be looked up again
    (stack_swept 0); then a block kept there is shown under its whole stack."""
    wl, prof = start(env)
    pid = wl.pid
    wl.send("pin")
    assert wl.reply() == "pinned"
    wl.send("keep %d %d" % (HELD_PATHS.start, HELD_PATHS.stop))
    assert wl.reply() == "kept"
    for i in range(STEPS):
        n = prof.sync()
        last = (i + 1) * BATCH - 1
        wl.send("churn %d %d" % (i * BATCH, last + 1))
        assert wl.reply() == "done"
        # seen at one report, idle at the next (retired), its stack gone two sweeps later
        rep = prof.reports_after(n, 3)
        check_totals(rep, pid)
        # the very same call again (same registers: the unwinder's memo matches it whole)
        wl.send("churn %d %d" % (last, last + 1))
        assert wl.reply() == "done"
        wl.send("keep %d %d" % (last, last + 1))
        assert wl.reply() == "kept"
    exp = wl.expect_json("expect")
    n = prof.sync()
    rep = prof.reports_after(n, 2)
    wl.send("quit")
    assert prof.drain() == 0
    final = helpers.final_report(prof.reports)
    for r in (rep, final):
        helpers.check_drops(r)
        assert r["dropped"]["stacks_map_full"] == 0, r["dropped"]
        assert r["dropped"]["aggs_retired"] >= STEPS * BATCH - MAX_STACKS, r["dropped"]
        assert r["dropped"]["stack_swept"] == 0, r["dropped"]
        check_held(r, pid, exp)
        p = check_totals(r, pid)
        # every allocation counted, most of them now in the retired figures
        assert (p["allocs"], p["alloc_bytes"]) == (exp["allocs"], exp["alloc_bytes"]), (p, exp)
        assert p["retired_allocs"] > 0
    # every block under a whole stack: 10 levels of paths, the leaf, main
    leaves = 0
    for st in helpers.stacks_of(final, pid):
        funcs = [f["func"] for f in st["frames"]]
        assert funcs or not st["live_allocs"], st
        if funcs and funcs[0] == "leaf" and st["live_allocs"]:
            assert funcs.count("step") == 11 and "main" in funcs, funcs
            leaves += st["live_allocs"]
    assert leaves == exp["kept"] == len(HELD_PATHS) + STEPS


def test_storm_of_returning_stacks(env):
    """Two threads allocate on the paths of a window moving over 1,024 (each path keeping its
    last block until the window has passed it), through a map of 512: paths go idle, are
    retired, and come back at the wrap while the others retire. Live bytes stay exact (a block
    allocated while its aggregate was being retired counts in its slot until freed), nothing is
    dropped, and every block freed at the end leaves only the held ones."""
    wl, prof = start(env, max_stacks=512)
    pid = wl.pid
    wl.send("storm 2 4")
    reply = wl.reply(timeout=120)
    assert reply.startswith("stormed "), reply
    exp = wl.expect_json("expect")
    rep = prof.reports_after(prof.sync(), 2)
    wl.send("quit")
    assert prof.drain() == 0
    final = helpers.final_report(prof.reports)
    stormed = int(reply.split()[1])
    for r in (rep, final):
        helpers.check_drops(r)
        assert r["dropped"]["aggs_retired"] > 0, r["dropped"]
        # glibc keeps the threads' TLS blocks (their stacks are cached for reuse)
        check_held(r, pid, exp, only=False)
        check_totals(r, pid)
        p = helpers.proc_of(r, pid)
        # the threads' own allocations (glibc's thread set-up) come on top of the storm's
        assert p["allocs"] >= stormed, (p, stormed)
