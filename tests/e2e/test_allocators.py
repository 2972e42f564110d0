# SPDX-License-Identifier: MIT
"""Whatever the allocator: a statically linked program, jemalloc and tcmalloc preloaded; and
exact accounts across fork and exec (system-wide mode)."""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import helpers
from helpers import Profiler, Workload

JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"


def _build_static(d, name):
    out = d / "alloc_sites"  # one comm for every variant: --comm alloc_sites selects them
    src = helpers.REPO / "tests" / "workloads" / (name + ".c")
    p = subprocess.run(["gcc", "-O2", "-g", "-static", "-o", str(out), str(src)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return str(out)


@pytest.fixture(scope="module")
def static_sites(tmp_path_factory):
    return _build_static(tmp_path_factory.mktemp("static"), "alloc_sites")


@pytest.fixture(scope="module")
def static_simple(tmp_path_factory):
    # nothing allocated before "go": exact even though its file is probed only after its exec
    return _build_static(tmp_path_factory.mktemp("static_simple"), "simple_sites")


def check_simple(rep, exp):
    """simple_sites: live bytes and blocks per site, exactly."""
    got = helpers.by_frame0(rep, exp["pid"])
    for site, want in exp["sites"].items():
        have = got.get(site, {"live_bytes": 0, "live_allocs": 0})
        assert (have["live_bytes"], have["live_allocs"]) == (want["live_bytes"], want["live_allocs"]), site
    helpers.check_proc_is_sum_of_stacks(rep, exp["pid"])


def launch_exact(guarded, tmp, wl, env=None, simple=False):
    report, expected = tmp / "r.json", tmp / "e.json"
    rc, out, err = guarded.run(["-f", "json", "-n", "0", "-i", "5", "-o", str(report), "--", wl, "launch", str(expected)],
                               env=env)
    assert rc == 0, err
    exp = json.loads(expected.read_text())
    final = helpers.final_report(helpers.parse_reports(report.read_text()))
    if simple:
        check_simple(final, exp)
    else:
        helpers.check_sites(final, exp["pid"], exp["sites"])
        helpers.check_proc_is_sum_of_stacks(final, exp["pid"])
    return final, exp


def test_static_program(bpf_ok, guarded, static_sites, tmp_path):
    launch_exact(guarded, tmp_path, static_sites)


@pytest.mark.parametrize("lib", [JEMALLOC, TCMALLOC], ids=["jemalloc", "tcmalloc"])
def test_preloaded_allocator(bpf_ok, guarded, workloads, tmp_path, lib):
    assert os.path.exists(lib), "%s missing: make deps installs it" % lib
    env = dict(os.environ, LD_PRELOAD=lib)
    launch_exact(guarded, tmp_path, workloads["simple_sites"], env=env, simple=True)


def test_system_wide_static_and_jemalloc(env, static_simple, tmp_path):
    """Started after the profiler: a static program and one with jemalloc preloaded (library
    files never probed before), both exact once they are running."""
    reaper = env["reaper"]
    prof = Profiler(reaper, ["-f", "json", "-n", "0", "-i", "1", "-v", "--comm", "alloc_sites"])
    prof.wait_attached()
    st = Workload(reaper, [static_simple, "attach"])
    je_env = dict(os.environ, LD_PRELOAD=JEMALLOC)
    je_bin = tmp_path / "alloc_sites"  # simple_sites under the name --comm selects
    shutil.copy(env["workloads"]["simple_sites"], je_bin)
    je = reaper.add(subprocess.Popen([str(je_bin), "attach"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=je_env, start_new_session=True))
    assert je.stdout.readline().decode().startswith("ready ")
    # new library files are probed after the exec (~100 ms; said at -v)
    helpers.wait_stderr(prof, "probe points in /proc/%d/exe " % st.pid,
                        re.compile(r"probe points in /proc/\d+/root%s " % re.escape(JEMALLOC)))
    exp_st = st.expect_json("go")
    je.stdin.write(b"go\n")
    je.stdin.flush()
    exp_je = json.loads(je.stdout.readline().decode())
    prof.reports_after(prof.sync(), 2)
    assert prof.stop() == 0, prof.err.lines
    final = helpers.final_report(prof.reports)
    check_simple(final, exp_st)
    check_simple(final, exp_je)
    st.send("exit")
    je.stdin.write(b"exit\n")
    je.stdin.flush()


def _wait_files(d, n, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted(Path(d).glob("*.json"))
        if len(files) >= n:
            time.sleep(0.05)
            return [json.loads(f.read_text()) for f in files]
        time.sleep(0.02)
    raise AssertionError("workload wrote %d of %d expectations" % (len(list(Path(d).glob("*.json"))), n))


def _check_lifecycle(rep, exp):
    pid = exp["pid"]
    p = helpers.proc_of(rep, pid)
    got = helpers.by_frame0(rep, pid)
    for site, want in exp["sites"].items():
        assert got[site]["live_bytes"] == want["live_bytes"], (pid, site, got.get(site))
        assert got[site]["live_allocs"] == want["live_allocs"], (pid, site, got.get(site))
    assert p["live_bytes"] == sum(w["live_bytes"] for w in exp["sites"].values()) or not exp["sites"], p
    assert p["unknown_frees"] == exp["unknown_frees"], p
    for k in ("live_bytes", "live_allocs", "alloc_bytes", "allocs", "frees"):
        if k in exp:
            assert p[k] == exp[k], (k, p)  # of the image its stacks are in
    assert p["comm"] == "lifecycle"


def test_fork_keeps_exact_accounts(env, tmp_path):
    """The child inherits the parent's heap: its frees of inherited blocks are its unknown
    frees and never touch the parent's accounts."""
    reaper = env["reaper"]
    prof = Profiler(reaper, ["-f", "json", "-n", "0", "-i", "1", "--comm", "lifecycle"])
    prof.wait_attached()
    p = reaper.add(subprocess.Popen([env["workloads"]["lifecycle"], "fork", str(tmp_path)], stdin=subprocess.PIPE,
                                    start_new_session=True))
    exps = {e["pid"]: e for e in _wait_files(tmp_path, 2)}
    assert p.pid in exps and len(exps) == 2
    child = next(pid for pid in exps if pid != p.pid)
    prof.reports_after(prof.sync(), 2)
    assert prof.stop() == 0, prof.err.lines
    final = helpers.final_report(prof.reports)
    _check_lifecycle(final, exps[p.pid])
    # the child exited: its last appearance is the report that shows it exited
    last = [r for r in prof.reports if any(q["pid"] == child for q in r["processes"])][-1]
    assert helpers.proc_of(last, child)["exited"] is True
    _check_lifecycle(last, exps[child])
    p.stdin.write(b"\n")
    p.stdin.flush()


def _launch_lifecycle(env, tmp_path, opts, args, run_env=None, go_after=None):
    """Run `-- lifecycle ARGS` to its expectation file, let it exit: (final report, expectation,
    stderr). go_after: a line is sent to the workload once stderr has it (an image that waits
    for the profiler to probe it)."""
    report = tmp_path / "report.out"  # not *.json: those are the workload's
    prof = helpers.Profiler(env["reaper"], ["-f", "json", "-n", "0", *opts, "-o", str(report), "--",
                                            env["workloads"]["lifecycle"], *args],
                            stdin=subprocess.PIPE, env=run_env)
    if go_after:
        helpers.send_after_stderr(prof, go_after)
    (exp,) = _wait_files(tmp_path, 1, timeout=60)
    time.sleep(0.3)  # a report or more after its last allocation
    prof.p.stdin.write(b"\n")
    prof.p.stdin.close()
    rc = prof.drain()
    err = "\n".join(prof.err.lines)
    assert rc == 0, err
    return helpers.final_report(helpers.parse_reports(report.read_text())), exp, err


@pytest.mark.parametrize("attach", ["multi", "perf"])
@pytest.mark.parametrize("mode", ["exec", "thread-exec"])
def test_exec_of_a_launched_command(env, tmp_path, mode, attach):
    """`-- CMD` that execs, from its main thread or another one (the kernel then moves the
    process's pid to that thread, and the old main thread is gone: probes made for the pid
    are made again): the new image is traced exactly, the process's figures are the new
    image's."""
    final, exp, err = _launch_lifecycle(env, tmp_path, ["-i", "60", "--attach", attach], [mode, str(tmp_path)],
                                        go_after="exec'd from a thread" if mode == "thread-exec" else None)
    if mode == "thread-exec" and attach == "perf":
        # perf-event links cannot follow (the kernel refuses them, or takes them and never fires,
        # while the pid names the old main thread): said in one line, nothing counted
        assert "exec'd from a thread: its new image is not traced" in err, err
        assert helpers.proc_of(final, exp["pid"])["allocs"] == 0
        assert final["dropped"]["procs_untraced"] == 1, final["dropped"]  # not on stderr only
        return
    # after an exec by a thread the probes follow late (the workload waits for them): said so
    assert ("exec'd from a thread" in err) == (mode == "thread-exec"), err
    _check_lifecycle(final, exp)
    assert "site_before_exec" not in helpers.by_frame0(final, exp["pid"])
    helpers.check_drops(final, unknown_frees=0)


def test_images_exec_d_away_do_not_fill_the_maps(env, tmp_path):
    """A process that execs again and again: each image's aggregates and stacks are deleted
    (at the reports after its exec), so the maps never fill: the last image is exact, nothing
    dropped, with maps that could hold only two images' stacks."""
    final, exp, _ = _launch_lifecycle(
        env, tmp_path, ["-i", "0.05", "--max-stacks", "64"], ["exec-chain", str(tmp_path), "6"]
    )
    _check_lifecycle(final, exp)
    stacks = helpers.stacks_of(final, exp["pid"])
    assert len(stacks) == exp["stacks"] and all(s["live_bytes"] == 100 for s in stacks), stacks
    helpers.check_proc_is_sum_of_stacks(final, exp["pid"])
    helpers.check_drops(final, unknown_frees=0)


@pytest.mark.parametrize("lib", [None, JEMALLOC, TCMALLOC], ids=["glibc", "jemalloc", "tcmalloc"])
def test_realloc_to_zero_frees_the_block(env, tmp_path, lib):
    """realloc(p, 0) frees p: through the public free in glibc (whose probe retires it), inside
    the allocator in jemalloc and tcmalloc (retired at realloc's entry)."""
    run_env = dict(os.environ, LD_PRELOAD=lib) if lib else None
    final, exp, _ = _launch_lifecycle(env, tmp_path, ["-i", "60"], ["realloc-zero", str(tmp_path)], run_env)
    got = helpers.by_frame0(final, exp["pid"])["site_rz"]
    for k, v in exp["sites"]["site_rz"].items():
        assert got[k] == v, (k, got)
    assert final["dropped"]["missed_frees"] == 0 and final["dropped"]["unknown_frees"] == 0, final["dropped"]


def test_blocks_whose_stack_did_not_fit_are_kept_under_no_stack(env, tmp_path):
    """More distinct stacks than --max-stacks: the blocks of those that did not fit are
    tracked under no stack (counted as stacks_map_full), not lost: the aggregates have room
    for them."""
    final, exp, _ = _launch_lifecycle(env, tmp_path, ["-i", "60", "--max-stacks", "64"],
                                      ["many-stacks", str(tmp_path), "100"])
    _check_lifecycle(final, exp)
    pid = exp["pid"]
    helpers.check_proc_is_sum_of_stacks(final, pid)
    d = final["dropped"]
    nostack = [s for s in helpers.stacks_of(final, pid) if not s["frames"]]
    assert d["aggs_map_full"] == 0 and d["stacks_map_full"] > 0, d
    assert len(nostack) == 1 and nostack[0]["live_allocs"] == d["stacks_map_full"], (nostack, d)
    assert len(helpers.stacks_of(final, pid)) == 100 - d["stacks_map_full"] + 1


def _system_wide_lifecycle(env, tmp_path, mode):
    """`lifecycle MODE` started under a system-wide --comm lifecycle run, to its expectation
    and two reports more: (final report, expectation, the workload's Popen, still waiting)."""
    reaper = env["reaper"]
    prof = Profiler(reaper, ["-f", "json", "-n", "0", "-i", "1", "--comm", "lifecycle"])
    prof.wait_attached()
    p = reaper.add(subprocess.Popen([env["workloads"]["lifecycle"], mode, str(tmp_path)], stdin=subprocess.PIPE,
                                    start_new_session=True))
    (exp,) = _wait_files(tmp_path, 1)
    prof.reports_after(prof.sync(), 2)
    assert prof.stop() == 0, prof.err.lines
    return helpers.final_report(prof.reports), exp, p


def test_a_process_that_leaves_the_comm_filter_still_frees(env, tmp_path):
    """System-wide with --comm: a process renamed out of the filter allocates unrecorded from
    then on, but what it frees of its recorded blocks leaves its accounts (they would stay
    live forever)."""
    final, exp, p = _system_wide_lifecycle(env, tmp_path, "rename")
    got = helpers.by_frame0(final, p.pid)["site_rename"]
    for k, v in exp["sites"]["site_rename"].items():
        assert got[k] == v, (k, got)
    assert helpers.proc_of(final, p.pid)["live_bytes"] == 0
    assert final["dropped"]["unknown_frees"] == 0, final["dropped"]
    p.stdin.write(b"\n")
    p.stdin.flush()


def test_exec_drops_old_image(env, tmp_path):
    """exec: the old image's blocks are gone; the new image's are exact."""
    final, exp, p = _system_wide_lifecycle(env, tmp_path, "exec")
    assert exp["pid"] == p.pid
    _check_lifecycle(final, exp)
    assert "site_before_exec" not in helpers.by_frame0(final, p.pid)
    p.stdin.write(b"\n")
    p.stdin.flush()


@pytest.mark.parametrize("lib", [JEMALLOC, TCMALLOC, "static"], ids=["jemalloc", "tcmalloc", "static"])
def test_bad_alloc_gets_through_a_probed_operator_new(env, tmp_path, lib):
    """jemalloc's and tcmalloc's own operator new is probed, and so is a static program's: no
    exception unwinds through a return probe, and a caught std::bad_alloc became
    std::terminate (exit 134). A size that fails for sure has its return left alone (uprobe
    sessions); what follows is exact."""
    report = tmp_path / "report.out"
    prog, run_env = env["workloads"]["cxx_bad_alloc"], dict(os.environ, LD_PRELOAD=lib)
    if lib == "static":
        prog, run_env = str(tmp_path / "cxx_bad_alloc_static"), None
        subprocess.run(["g++", "-O2", "-g", "-static", "-o", prog, str(Path(helpers.REPO) / "tests/workloads/cxx_bad_alloc.cc")],
                       check=True)
    p = subprocess.run([str(helpers.BIN), "-f", "json", "-n", "0", "-o", str(report), "--", prog],
                       capture_output=True, text=True, timeout=60, env=run_env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "caught", p.stdout
    final = helpers.final_report(helpers.parse_reports(report.read_text()))
    pid = final["processes"][0]["pid"]
    got = helpers.by_frame0(final, pid)["site_after(int)"]
    assert (got["live_bytes"], got["live_allocs"]) == (100000, 100), got


@pytest.fixture(scope="module")
def static_entries(tmp_path_factory):
    """entry_points and entry_cxx linked statically: their own malloc, and operator new."""
    d = tmp_path_factory.mktemp("static_entries")
    progs = {}
    for name, cc in (("entry_points.c", "gcc"), ("entry_cxx.cc", "g++")):
        out = d / name.split(".")[0]
        src = helpers.REPO / "tests" / "workloads" / name
        p = subprocess.run([cc, "-O2", "-g", "-static", "-o", str(out), str(src), "-lpthread"],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        progs[out.name] = str(out)
    return progs


def _entry_program(lib, name, workloads, static_entries):
    """(program, environment) for an entry_* workload with this allocator."""
    if lib == "static":
        return static_entries[name], None
    return workloads[name], (dict(os.environ, LD_PRELOAD=lib) if lib else None)


def _run_entries(guarded, tmp, argv, run_env):
    """`-- ARGV OUT` to its end: (final report, expectation)."""
    report, expected = tmp / "r.json", tmp / "e.json"
    rc, out, err = guarded.run(["-f", "json", "-n", "0", "-i", "60", "-o", str(report), "--", *argv, str(expected)],
                               env=run_env)
    assert rc == 0, err
    return helpers.final_report(helpers.parse_reports(report.read_text())), json.loads(expected.read_text())


def _innermost_site(stack):
    for f in stack["frames"]:
        func = (f["func"] or "").split("(")[0]
        if func.startswith(("site_", "prep_")):
            return func
    return None


def check_entries(rep, exp, allocators=None, partial_site=None):
    """entry_points, entry_cxx: the stacks' totals per innermost site_* (prep_*) frame, exactly,
    each count the workload knows; allocators: {site: the allocator names its stacks show}.
    And nothing counted as an unknown free. partial_site: (the only site, its allocators): the
    stacks of those allocators that the profiler marks truncated (the unwinder stopped early:
    counted as stack_incomplete) and that show no site are its (bytes exact, not the stack;
    pthread_create's own block is a calloc)."""
    pid = exp["pid"]
    got = {}
    for s in helpers.stacks_of(rep, pid):
        site = _innermost_site(s)
        if site is None and s["truncated"] and partial_site and s["allocator"] in partial_site[1]:
            site = partial_site[0]
        g = got.setdefault(site, dict({k: 0 for k in helpers.COUNT_KEYS}, allocators=set()))
        for k in helpers.COUNT_KEYS:
            g[k] += s[k]
        g["allocators"].add(s["allocator"])
    errors = []
    for name, want in exp["sites"].items():
        have = got.get(name, dict({k: 0 for k in helpers.COUNT_KEYS}, allocators=set()))
        diff = {k: (v, have[k]) for k, v in want.items() if have[k] != v}
        if diff:
            errors.append("%s: (expected, reported) %s" % (name, diff))
    for name, names in (allocators or {}).items():
        if got.get(name, {}).get("allocators") != names:
            errors.append("%s: allocators %s, expected %s" % (name, got.get(name, {}).get("allocators"), names))
    other = {k: v for k, v in got.get(None, {}).items() if k != "allocators"}
    assert not errors, "pid %d:\n  " % pid + "\n  ".join(errors) + "\n  stacks in no site: %s, drops: %s" % (
        other, {k: v for k, v in rep["dropped"].items() if v})
    helpers.check_proc_is_sum_of_stacks(rep, pid)
    assert helpers.proc_of(rep, pid)["unknown_frees"] == 0, helpers.proc_of(rep, pid)
    helpers.check_drops(rep, unknown_frees=0)


@pytest.mark.parametrize("lib", [None, "static"], ids=["glibc", "static"])
def test_libc_internals_count_once(bpf_ok, guarded, workloads, static_entries, tmp_path, lib):
    """reallocarray (and its overflow), aligned_alloc with an odd alignment, pvalloc and valloc
    of the size asked, strndup, asprintf, getline and open_memstream through libc's own calls,
    malloc_usable_size (no allocation): each site's live blocks exactly."""
    prog, run_env = _entry_program(lib, "entry_points", workloads, static_entries)
    final, exp = _run_entries(guarded, tmp_path, [prog, "glibc"], run_env)
    check_entries(final, exp, {"site_reallocarray": {"realloc"}, "site_pvalloc_small": {"pvalloc"}})


def test_jemalloc_extended_api(bpf_ok, guarded, workloads, tmp_path):
    """mallocx, rallocx (a move), xallocx (in place: the size asked is the block's now), dallocx
    and sdallocx (frees), nallocx and sallocx (no allocation), a mallocx block given to free.
    Not probed, they were uncounted and their frees left blocks live forever."""
    final, exp = _run_entries(guarded, tmp_path, [workloads["entry_points"], "jemalloc"],
                              dict(os.environ, LD_PRELOAD=JEMALLOC))
    check_entries(final, exp, {"site_mallocx": {"mallocx"}, "site_rallocx": {"rallocx"},
                               "site_xallocx": {"xallocx"}, "prep_je": {"malloc"}})


def test_tcmalloc_tc_functions(bpf_ok, guarded, workloads, tmp_path):
    """tcmalloc's tc_* functions called by name: aliases of the standard ones, but for
    tc_malloc_skip_new_handler, a function of its own (it was not counted)."""
    final, exp = _run_entries(guarded, tmp_path, [workloads["entry_points"], "tcmalloc"],
                              dict(os.environ, LD_PRELOAD=TCMALLOC))
    check_entries(final, exp, {"site_tc_skip_new_handler": {"malloc"}})


@pytest.mark.parametrize("lib", [None, JEMALLOC, TCMALLOC, "static"], ids=["glibc", "jemalloc", "tcmalloc", "static"])
def test_every_operator_new_and_delete(bpf_ok, guarded, workloads, static_entries, tmp_path, lib):
    """Every operator new and delete (sized, nothrow, aligned, arrays; a nothrow new that fails)
    at the size the program asked for, or, with glibc, what libstdc++ asks malloc for (1 byte
    for 0, aligned sizes rounded up to the alignment). With jemalloc, a nothrow new that fails
    for sure made the mappings jemalloc made inside count as the program's. A static program's
    sized delete calls the unsized one, which calls free: each such delete was counted as an
    unknown free."""
    prog, run_env = _entry_program(lib, "entry_cxx", workloads, static_entries)
    final, exp = _run_entries(guarded, tmp_path, [prog, "ops-libstdc++" if lib is None else "ops"], run_env)
    new = {"malloc"} if lib is None else {"operator new"}
    check_entries(final, exp, {"site_new": new, "site_new_zero": new, "site_new_nothrow": new})


@pytest.mark.parametrize("lib", [None, JEMALLOC, TCMALLOC, "static"], ids=["glibc", "jemalloc", "tcmalloc", "static"])
@pytest.mark.parametrize("prog", ["entry_points", "entry_cxx"], ids=["malloc", "new"])
def test_threads_free_each_others_blocks(bpf_ok, guarded, workloads, static_entries, tmp_path, lib, prog):
    """4 threads, each freeing (deleting) blocks the next one allocated, 5 rounds: exact, and no
    unknown frees (an operator delete's note of the block it retired was per CPU: lost when
    the thread moved to another CPU, or another thread deleted there, before its free; with
    glibc, each thread's exit freed its malloc cache through free: ~350 frees of blocks the
    program had freed already, counted as unknown)."""
    wl, run_env = _entry_program(lib, prog, workloads, static_entries)
    final, exp = _run_entries(guarded, tmp_path, [wl, "threads"], run_env)
    (site,) = exp["sites"]
    check_entries(final, exp, partial_site=(site, {"malloc", "operator new"}))
