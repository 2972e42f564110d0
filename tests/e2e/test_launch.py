# SPDX-License-Identifier: MIT
"""Launch mode (asizeof-bpf [options] -- CMD ...): exact numbers per call site and per process,
frames[0], sorting, exit status and argument passthrough."""

import json
import resource
import os
import re
import signal
import subprocess
import time

import pytest

import helpers
from helpers import ATTACHED_RE

# ---------------------------------------------------------------- alloc_sites, run once per module


def _launch(guarded, tmp, wl, extra=()):
    report = tmp / "report.json"
    expected = tmp / "expected.json"
    rc, out, err = guarded.run(
        ["-f", "json", "-n", "0", "-i", "1", "-o", str(report), *extra, "--", wl, "launch", str(expected)]
    )
    reps = helpers.parse_reports(report.read_text()) if report.exists() else []
    exp = json.loads(expected.read_text()) if expected.exists() else None
    return {"rc": rc, "stdout": out, "stderr": err, "reports": reps, "exp": exp}


@pytest.fixture(scope="module")
def sites_run(bpf_ok, workloads, guarded, tmp_path_factory):
    return _launch(guarded, tmp_path_factory.mktemp("sites"), workloads["alloc_sites"])


def _final(run):
    assert run["exp"] is not None, "the workload wrote no expectation; stderr %r" % run["stderr"]
    return helpers.final_report(run["reports"])


def test_launch_exits_with_status_and_one_final_report(sites_run):
    assert sites_run["rc"] == 0, sites_run["stderr"]
    rep = _final(sites_run)
    for r in sites_run["reports"]:
        helpers.check_schema(r)
    pid = sites_run["exp"]["pid"]
    p = helpers.proc_of(rep, pid)
    assert p["exited"] is True
    assert p["comm"] == "alloc_sites"
    assert [p["pid"] for p in rep["processes"]] == [pid], "only the launched command is traced"
    attached = [l for l in sites_run["stderr"].splitlines() if ATTACHED_RE.match(l)]
    assert len(attached) == 1, sites_run["stderr"]
    assert sites_run["stdout"] == "", "with -o FILE nothing goes to stdout: %r" % sites_run["stdout"][:300]


def test_launch_sites_exact(sites_run):
    rep = _final(sites_run)
    exp = sites_run["exp"]
    # the workload did exercise both realloc paths
    assert exp["info"] == {"realloc_grow_in_place": 1, "realloc_move_moved": 1}
    helpers.check_sites(rep, exp["pid"], exp["sites"])


def test_launch_process_totals_exact(sites_run):
    # alloc_sites allocates nothing besides its sites (checked with gdb on every allocator entry):
    # the process totals are exactly the sum of the sites and the sum of the reported stacks.
    rep = _final(sites_run)
    exp = sites_run["exp"]
    helpers.check_proc_is_sum_of_stacks(rep, exp["pid"])
    helpers.check_proc_exact(rep, exp["pid"], exp["proc"])
    helpers.check_drops(rep, unknown_frees=0)


def test_launch_no_stray_stacks(sites_run):
    """Every reported stack of the workload belongs to one of its sites."""
    rep = _final(sites_run)
    exp = sites_run["exp"]
    names = set(exp["sites"])
    stray = [
        (helpers.frame0_func(s), s["allocator"], s["live_bytes"], s["allocs"])
        for s in helpers.stacks_of(rep, exp["pid"])
        if not (helpers.frame0_func(s) in names or helpers.is_strdup(helpers.frame0_func(s)))
    ]
    assert not stray, "stacks whose frames[0] is no site: %r" % stray


def test_frames0_name_the_site(sites_run):
    rep = _final(sites_run)
    exp = sites_run["exp"]
    pid = exp["pid"]
    stacks = helpers.stacks_of(rep, pid)
    funcs = {}
    for s in stacks:
        assert s["frames"], "stack without frames: %r" % s
        funcs.setdefault(helpers.frame0_func(s), []).append(s)
    for name, site in exp["sites"].items():
        if site["allocs"] == 0:
            continue
        if name == "strdup":
            got = [f for f in funcs if helpers.is_strdup(f)]
            assert got, "no stack with frames[0] in libc's strdup; frames[0] seen: %r" % sorted(map(str, funcs))
            for f in got:
                for s in funcs[f]:
                    fr = s["frames"][0]
                    assert fr["module"] and re.search(r"/libc[.-]", fr["module"]), fr
            continue
        assert name in funcs, "no stack with frames[0] %s; frames[0] seen: %r" % (name, sorted(map(str, funcs)))
        for s in funcs[name]:
            fr = s["frames"][0]
            assert fr["module"] == helpers.workload("alloc_sites"), fr
            assert fr["file"] and fr["file"].endswith("tests/workloads/alloc_sites.c"), fr
            assert isinstance(fr["line"], int) and fr["line"] > 0, fr
            assert fr["inlined"] is False, fr


def test_frames0_offsets_match_eu_addr2line(sites_run):
    """module_offset is the ELF address of frames[0] in its module (what eu-addr2line takes),
    addr is the same address in the process: addr - module_offset is one load bias per module."""
    rep = _final(sites_run)
    pid = sites_run["exp"]["pid"]
    bias = {}
    queries = {}
    for s in helpers.stacks_of(rep, pid):
        fr = s["frames"][0]
        assert isinstance(fr["module_offset"], int), fr
        b = fr["addr"] - fr["module_offset"]
        assert bias.setdefault(fr["module"], b) == b, "two load biases for %s" % fr["module"]
        queries.setdefault(fr["module"], {})[fr["module_offset"]] = fr
    for module, frames in queries.items():
        offs = sorted(frames)
        p = subprocess.run(
            ["eu-addr2line", "-f", "-e", module] + ["0x%x" % o for o in offs], capture_output=True, timeout=120
        )
        assert p.returncode == 0, p.stderr
        lines = p.stdout.decode().splitlines()
        assert len(lines) == 2 * len(offs), lines
        for i, off in enumerate(offs):
            fr = frames[off]
            func, loc = lines[2 * i], lines[2 * i + 1]
            if helpers.is_strdup(fr["func"]):
                assert "strdup" in func, (fr, func)
            else:
                assert func == fr["func"], (fr, func)
                m = re.match(r"^(.+?):(\d+)(?::\d+)?$", loc)
                assert m and int(m.group(2)) == fr["line"] and m.group(1).endswith(os.path.basename(fr["file"])), (
                    fr,
                    loc,
                )


# ---------------------------------------------------------------- same workload, other options


def test_launch_perf_links(bpf_ok, workloads, guarded, tmp_path):
    """One perf-event link per probe (--attach perf): same exact numbers, no link left."""
    run = _launch(guarded, tmp_path, workloads["alloc_sites"], extra=("--attach", "perf"))
    assert run["rc"] == 0, run["stderr"]
    rep = _final(run)
    exp = run["exp"]
    helpers.check_sites(rep, exp["pid"], exp["sites"])
    helpers.check_proc_exact(rep, exp["pid"], exp["proc"])
    helpers.check_drops(rep, unknown_frees=0)


def test_top_n_and_sort_live(sites_run, workloads, guarded, tmp_path):
    exp = sites_run["exp"]
    report = tmp_path / "top.json"
    rc, out, err = guarded.run(
        ["-f", "json", "-n", "3", "-s", "live", "-o", str(report), "--", workloads["alloc_sites"], "launch", "-"]
    )
    assert rc == 0, err
    rep = helpers.final_report(helpers.parse_reports(report.read_text()))
    funcs = [helpers.frame0_func(s) for s in rep["stacks"]]
    assert funcs == ["site_realloc_mmap", "site_big_mmap", "site_calloc_big"], funcs
    assert [s["live_bytes"] for s in rep["stacks"]] == [5 << 20, 4 << 20, 2 << 20]
    # the process totals do not depend on -n
    p = helpers.proc_of(rep, rep["processes"][0]["pid"])
    assert p["live_bytes"] == exp["proc"]["live_bytes"]
    assert p["allocs"] == exp["proc"]["allocs"]


def test_sort_allocs_orders_stacks(bpf_ok, workloads, guarded, tmp_path):
    report = tmp_path / "allocs.json"
    rc, out, err = guarded.run(
        ["-f", "json", "-n", "0", "-s", "allocs", "-o", str(report), "--", workloads["alloc_sites"], "launch", "-"]
    )
    assert rc == 0, err
    rep = helpers.final_report(helpers.parse_reports(report.read_text()))
    allocs = [s["allocs"] for s in rep["stacks"]]
    assert allocs == sorted(allocs, reverse=True), allocs
    assert helpers.frame0_func(rep["stacks"][0]) == "site_churn"


# ---------------------------------------------------------------- threads


def test_threads(bpf_ok, workloads, guarded, tmp_path):
    report = tmp_path / "report.json"
    expected = tmp_path / "expected.json"
    rc, out, err = guarded.run(
        ["-f", "json", "-n", "0", "-i", "1", "-o", str(report), "--", workloads["alloc_threads"], str(expected)]
    )
    assert rc == 0, err
    exp = json.loads(expected.read_text())
    rep = helpers.final_report(helpers.parse_reports(report.read_text()))
    pid = exp["pid"]
    helpers.check_sites(rep, pid, exp["sites"])
    p = helpers.check_proc_is_sum_of_stacks(rep, pid)
    helpers.check_drops(rep, unknown_frees=0)
    assert p["unknown_frees"] == 0
    # Besides our sites, only the dynamic loader allocates: one DTV per thread (calloc from
    # ld.so's allocate_dtv), live for the threads' life.
    others = [s for s in helpers.stacks_of(rep, pid)
              if s["kind"] == "heap" and helpers.frame0_func(s) not in exp["sites"]]
    for s in others:
        fr = s["frames"][0]
        assert s["allocator"] == "calloc" and fr["module"] and "ld-linux" in fr["module"], (
            "unexpected allocation outside the sites: %r" % s
        )
    assert sum(s["live_allocs"] for s in others) == exp["threads"], others
    assert sum(s["allocs"] for s in others) == exp["threads"], others
    # and glibc maps each thread's stack itself (not from inside malloc): anonymous memory
    # beside the heap, one region per thread of RLIMIT_STACK bytes (+ a guard page)
    maps = [s for s in helpers.stacks_of(rep, pid) if s["kind"] == "mmap"]
    assert {s["allocator"] for s in maps} == {"mmap"}
    assert all(s["frames"][0]["func"] in ("allocate_stack", "pthread_create") for s in maps), maps
    assert p["mmap_regions"] == exp["threads"]
    stack = resource.getrlimit(resource.RLIMIT_STACK)[0]
    assert p["mmap_bytes"] == exp["threads"] * (stack + 4096), p
    extra = sum(s["live_bytes"] for s in others)
    for k in ("live_bytes", "alloc_bytes"):
        assert p[k] == exp["proc"][k] + extra, (k, p[k], exp["proc"][k], extra)
    for k in ("live_allocs", "allocs"):
        assert p[k] == exp["proc"][k] + exp["threads"], (k, p[k], exp["proc"][k])
    assert p["frees"] == exp["proc"]["frees"]


# ---------------------------------------------------------------- C++


def test_cxx_frames0_operator_new(bpf_ok, workloads, guarded, tmp_path):
    """A short C++ program launched: exact totals per frames[0] (operator new variants),
    the emergency pool of libstdc++ as the only other allocation. (Attach mode: test_attach.)"""
    report = tmp_path / "report.json"
    expected = tmp_path / "expected.json"
    rc, out, err = guarded.run(
        ["-f", "json", "-n", "0", "-i", "1", "-o", str(report), "--", workloads["alloc_cxx"], str(expected)]
    )
    assert rc == 0, err
    exp = json.loads(expected.read_text())
    rep = helpers.final_report(helpers.parse_reports(report.read_text()))
    pid = exp["pid"]
    # every C++ allocation has operator new as frames[0]
    helpers.check_sites(rep, pid, exp["frame0"], group=helpers.norm_func)
    for s in helpers.stacks_of(rep, pid):
        f = helpers.norm_func(helpers.frame0_func(s))
        if f in exp["frame0"]:
            assert "libstdc++" in (s["frames"][0]["module"] or ""), s["frames"][0]
    p = helpers.check_proc_is_sum_of_stacks(rep, pid)
    helpers.check_drops(rep, unknown_frees=0)
    # the only other allocation: libstdc++'s exception emergency pool, one malloc before main
    others = [s for s in helpers.stacks_of(rep, pid) if helpers.norm_func(helpers.frame0_func(s)) not in exp["frame0"]]
    assert len(others) == 1 and others[0]["allocs"] == 1 and others[0]["live_allocs"] == 1, others
    assert others[0]["allocator"] == "malloc"
    assert "libstdc++" in (others[0]["frames"][0]["module"] or ""), others[0]["frames"][0]
    assert p["live_bytes"] == exp["proc"]["live_bytes"] + others[0]["live_bytes"]
    assert p["allocs"] == exp["proc"]["allocs"] + 1
    assert p["frees"] == exp["proc"]["frees"]


def test_a_command_by_a_relative_path_is_named_as_it_ran(bpf_ok, workloads, guarded, tmp_path):
    """`-- ./prog` of a program that is gone before its /proc is read: the process's exe is
    the file it ran (not the profiler, as forked) and modules have the names /proc/PID/maps
    gives them (absolute, links resolved), the same in every run."""
    import shutil

    shutil.copy(workloads["alloc_cxx"], tmp_path / "cxx_prog")
    names = []
    for i in range(3):
        report = tmp_path / ("report%d.json" % i)
        rc, out, err = guarded.run(
            ["-f", "json", "-n", "0", "-i", "60", "-o", str(report), "--", "./cxx_prog", str(tmp_path / "exp.json")],
            prefix=("env", "-C", str(tmp_path)),
        )
        assert rc == 0, err
        rep = helpers.final_report(helpers.parse_reports(report.read_text()))
        (p,) = rep["processes"]
        assert p["exe"] == os.path.realpath(tmp_path / "cxx_prog"), p
        mods = sorted({f["module"] for s in rep["stacks"] for f in s["frames"] if f["module"]})
        assert any("libstdc++" in m for m in mods), mods
        for m in mods:
            assert m == os.path.realpath(m), "a module named otherwise than in /proc/PID/maps: %s" % m
        names.append(mods)
    assert names[0] == names[1] == names[2], names


def test_stack_ids_survive_jq(bpf_ok, workloads, tmp_path):
    """jq 1.6 (the man page's examples) reads each stack_id as it was written, so stacks match
    across reports: ids take 64 bits, and as JSON numbers above 2^53 jq rounded them."""
    import shutil

    jq = shutil.which("jq")
    if not jq:
        helpers.skip_or_fail("jq is not installed (make deps)")
    report = tmp_path / "report.json"
    rc, out, err = helpers.run_profiler(["-f", "json", "-n", "0", "-i", "60", "-o", str(report), "--",
                                         workloads["alloc_sites"], "launch", str(tmp_path / "exp.json")])
    assert rc == 0, err
    ids = [s["stack_id"] for r in helpers.parse_reports(report.read_text()) for s in r["stacks"]]
    assert ids and any(int(i) >= 2**53 for i in ids), ids
    got = subprocess.run([jq, "-r", ".stacks[].stack_id", str(report)], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert got == ids


def test_an_exe_path_longer_than_255_bytes_is_whole(env, tmp_path):
    """A program 300+ bytes deep: its exe in the JSON is the whole path, launched or attached
    to (it was cut to 255 bytes)."""
    import shutil

    d = tmp_path
    for c in "abc":
        d = d / (c * 100)
    d.mkdir(parents=True)
    prog = d / "alloc_sites"
    shutil.copy(env["workloads"]["alloc_sites"], prog)
    want = os.path.realpath(prog)
    assert len(want) > 300
    report = tmp_path / "report.json"
    rc, out, err = helpers.run_profiler(["-f", "json", "-n", "0", "-i", "60", "-o", str(report), "--", str(prog),
                                         "launch", str(tmp_path / "exp.json")])
    assert rc == 0, err
    (p,) = helpers.final_report(helpers.parse_reports(report.read_text()))["processes"]
    assert p["exe"] == want
    wl = helpers.Workload(env["reaper"], [str(prog), "attach"])
    rep, exp = helpers.attach_go_exit(env["reaper"], wl, ["-f", "json", "-n", "0", "-i", "60"])
    assert helpers.proc_of(rep, wl.pid)["exe"] == want


# ---------------------------------------------------------------- exit status and arguments


@pytest.mark.parametrize("code", [0, 7, 1, 255])
def test_exit_status_passthrough(bpf_ok, guarded, code):
    rc, out, err = guarded.run(["-f", "json", "-i", "1", "--", "sh", "-c", "exit %d" % code])
    assert rc == code, err
    assert "Traceback" not in err


def test_exit_status_of_killed_command(bpf_ok, guarded):
    """A command killed by signal N: 128 + N (as documented in --help), like a shell."""
    rc, out, err = guarded.run(["-f", "json", "-i", "1", "--", "sh", "-c", "kill -TERM $$"])
    assert rc == 128 + signal.SIGTERM, (rc, err)


def test_launched_command_signal_state(bpf_ok, guarded, tmp_path):
    """The command starts with the signal mask and dispositions it would have without the
    profiler (which blocks or ignores signals for itself): compare /proc/self/status."""
    cmd = ["grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"]
    direct = subprocess.run(cmd, capture_output=True, timeout=30).stdout.decode()
    rc, out, err = guarded.run(["-f", "json", "-o", str(tmp_path / "r.json"), "--", *cmd])
    assert rc == 0, err
    assert out == direct, "signal state of the launched command:\n%s\nwithout the profiler:\n%s" % (out, direct)


def test_text_format(bpf_ok, workloads, guarded):
    """The default text format: exit 0, the biggest sites by name, nothing on stderr but the
    attach line."""
    rc, out, err = guarded.run(["-n", "0", "-s", "live", "--", workloads["alloc_sites"], "launch", "/dev/null"])
    assert rc == 0, err
    for name in ("site_realloc_mmap", "site_big_mmap", "site_calloc_big", "site_malloc"):
        assert name in out, out[:2000]
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and ATTACHED_RE.match(lines[0]), err


def test_argument_passthrough(bpf_ok, workloads, guarded, tmp_path):
    outfile = tmp_path / "args.json"
    args = ["a b", "", "-p", "1", "--", "-i", "abc", "--output=x", "  lead and trail  ", "*", "$HOME", "ünï\tcode", "-"]
    report = tmp_path / "report.json"
    rc, out, err = guarded.run(
        ["-f", "json", "-o", str(report), "--", workloads["print_args"], str(outfile), *args]
    )
    assert rc == 3 + len(args), err  # print_args exits with 3 + its argument count
    got = json.loads(outfile.read_text())
    assert [bytes.fromhex(a).decode() for a in got["args"]] == args
    rep = helpers.final_report(helpers.parse_reports(report.read_text()))
    p = helpers.proc_of(rep, got["pid"])
    assert p["exited"] is True
    # the command's name, not the launcher's (print_args lives for a millisecond)
    assert p["comm"] == "print_args", p


def test_launch_command_not_found(bpf_ok, guarded):
    rc, out, err = guarded.run(["--", "/nonexistent/asizeof-test-command"])
    helpers.check_one_error_line(rc, out, err)


# ---------------------------------------------------------------- launched child: fds, Ctrl-C


def test_launch_child_holds_no_bpf_and_sigint(env, tmp_path):
    """The launched command inherits no BPF link, program, map or perf event; Ctrl-C ends the
    profiler with status 0 after a final report that still shows the command's live blocks."""
    wl = env["workloads"]["alloc_growth"]
    report = tmp_path / "report.json"
    prof = helpers.Profiler(
        env["reaper"], ["-f", "json", "-n", "0", "-i", "1", "-o", str(report), "--", wl], stdin=subprocess.PIPE
    )
    prof.wait_attached()
    line = prof.out.get(30)  # the command's own stdout is the profiler's
    assert line and line.startswith("ready "), (line, prof.err.lines)
    child = int(line.split()[1])
    prof.p.stdin.write(b"a 100 10\n")
    prof.p.stdin.flush()
    assert prof.out.get(30) == "ok 1000 10 0 0"
    assert helpers.bpf_fds_of(child) == [], "the launched command holds BPF/perf fds"
    perf = helpers._bpftool_json("perf", "list")
    assert [e for e in perf if e.get("pid") == child] == []
    # a report that includes the allocations, then Ctrl-C
    deadline = time.monotonic() + 30
    while True:
        reps = helpers.parse_reports(report.read_text()) if report.exists() else []
        if len(reps) >= 2:
            break
        assert time.monotonic() < deadline, "no periodic report in %s" % report
        time.sleep(0.2)
    rc = prof.stop(signal.SIGINT)
    assert rc == 0, prof.err.lines
    reps = helpers.parse_reports(report.read_text())
    rep = helpers.final_report(reps)
    sites = helpers.by_frame0(rep, child)
    assert sites["site_grow_a"]["live_bytes"] == 1000 and sites["site_grow_a"]["live_allocs"] == 10, sites
    helpers.check_proc_is_sum_of_stacks(rep, child)
    helpers.check_growth_consistent(reps, {child})
    # the profiler does not leave the command it started running
    assert not os.path.exists("/proc/%d" % child) or open("/proc/%d/stat" % child).read().split(") ")[1][0] in "ZX"


@pytest.mark.parametrize("attach", ["multi", "perf"])
def test_a_clone_vm_child_is_not_traced(bpf_ok, workloads, guarded, tmp_path, attach):
    """A clone(CLONE_VM) child shares the target's address space but is another process: not
    traced, as children are not. Perf-event links filter by address space only, and it was
    traced as a second process (20 x 500 bytes at site_child)."""
    out = tmp_path / "report.json"
    rc, _, err = guarded.run(["-f", "json", "-n", "0", "--attach", attach, "-o", str(out), "--",
                              workloads["clone_vm"]])
    assert rc == 0, err
    rep = helpers.final_report(helpers.parse_reports(out.read_text()))
    assert len(rep["processes"]) == 1, rep["processes"]
    pid = rep["processes"][0]["pid"]
    sites = helpers.by_frame0(rep, pid)
    assert sites["site_parent"]["live_bytes"] == 10000, sites
    assert "site_child" not in sites, sites
    # and stderr says a process was started and not traced
    assert re.search(r"pid %d started process \d+, which is not traced" % pid, err), err


def test_children_not_followed_are_said(bpf_ok, workloads, guarded, tmp_path):
    """A shell running three commands: the report is the shell's alone, and stderr says, once
    at the first child and once at the end with their number, that its children were not
    traced. Threads are not children: a threaded workload says nothing."""
    out = tmp_path / "report.json"
    prog = workloads["alloc_sites"]
    script = "%s launch /dev/null; %s launch /dev/null; %s launch /dev/null" % (prog, prog, prog)
    rc, _, err = guarded.run(["-f", "json", "-n", "0", "-o", str(out), "--", "/bin/sh", "-c", script])
    assert rc == 0, err
    rep = helpers.final_report(helpers.parse_reports(out.read_text()))
    assert len(rep["processes"]) == 1, rep["processes"]
    pid = rep["processes"][0]["pid"]
    assert "site_malloc" not in helpers.by_frame0(rep, pid)
    first = re.findall(r"pid %d started process (\d+), which is not traced" % pid, err)
    assert len(first) == 1 and int(first[0]) != pid, err
    total = re.findall(r"pid %d started (\d+) processes in all, none traced" % pid, err)
    assert len(total) == 1 and int(total[0]) >= 2, err
    rc, _, err = guarded.run(["-f", "json", "-n", "0", "-o", str(out), "--", workloads["alloc_threads"],
                              str(tmp_path / "expected.json")])
    assert rc == 0, err
    assert "not traced" not in err, err


def _held_child(prof_pid, skip=()):
    """A child of the profiler that has not exec'd (its exe still the profiler), or None."""
    try:
        with open("/proc/%d/task/%d/children" % (prof_pid, prof_pid)) as f:
            kids = [int(k) for k in f.read().split()]
    except OSError:
        return None
    for k in kids:
        try:
            if k not in skip and os.readlink("/proc/%d/exe" % k) == os.path.realpath(helpers.BIN):
                return k
        except OSError:
            pass
    return None


def _stop_while_held(prof):
    """Stop the profiler while its launched command is held before exec: the held child's pid,
    or None (missed: the command was released first). A child that stays unexec'd while the
    profiler is stopped is the held one (the profiler may run others, briefly)."""
    skip, deadline = set(), time.monotonic() + helpers.ATTACH_TIMEOUT
    while prof.p.poll() is None and time.monotonic() < deadline:
        child = _held_child(prof.p.pid, skip)
        if child is None:
            continue
        os.kill(prof.p.pid, signal.SIGSTOP)
        time.sleep(0.1)
        try:
            if _held_child(prof.p.pid, skip) == child and _state(child) == "S":
                return child
        except OSError:
            pass
        skip.add(child)
        os.kill(prof.p.pid, signal.SIGCONT)
    return None


def _state(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@pytest.mark.parametrize("attach", ["auto", "perf"])
def test_ctrl_c_while_the_command_is_held(env, tmp_path, attach):
    """Ctrl-C (SIGINT to the whole foreground process group) while the command is held before
    its exec: the run ends as a signal ends it later (final report, exit 0), and the command,
    never released, does not run. The held child died by it and the profiler then said
    "cannot start the command: Broken pipe" and died by SIGINT itself. The profiler is stopped
    while the signal is sent, so that the child is caught held."""
    marker = tmp_path / "ran"
    for attempt in range(10):
        prof = helpers.Profiler(
            env["reaper"],
            ["-f", "json", "-n", "0", "--attach", attach, "--", "sh", "-c", "touch %s; sleep 0.2" % marker],
        )
        child = _stop_while_held(prof)
        if child is not None:
            break
        assert prof.drain() == 0, prof.err.lines
        marker.unlink(missing_ok=True)
    else:
        pytest.fail("never caught the command held")
    os.killpg(prof.p.pid, signal.SIGINT)
    os.kill(prof.p.pid, signal.SIGCONT)
    rc = prof.drain()
    assert rc == 0, (rc, prof.err.lines)
    assert len(prof.err.lines) == 1 and ATTACHED_RE.match(prof.err.lines[0]), prof.err.lines
    rep = helpers.final_report(prof.reports)
    assert [p["pid"] for p in rep["processes"]] == [child], rep["processes"]
    assert not marker.exists(), "the command ran although Ctrl-C came before it was released"
    assert not os.path.exists("/proc/%d" % child), "the held child is left behind"


def test_an_exec_that_fails_once_released(env, tmp_path):
    """execve() of the released command fails (here its file lost its x bits while it was held):
    one line and exit 1, no report. The child said it and exited 126 (127 for ENOENT), the
    profiler passed that on, after a report of a process named asizeof-bpf (the child as
    forked)."""
    import shutil

    prog = tmp_path / "prog"
    shutil.copy("/bin/true", prog)
    rep = tmp_path / "rep.json"
    for attempt in range(10):
        rep.write_text("precious\n")
        prof = helpers.Profiler(env["reaper"], ["-f", "json", "-n", "0", "-o", str(rep), "--", str(prog)])
        if _stop_while_held(prof) is not None:
            break
        assert prof.drain() == 0, prof.err.lines
    else:
        pytest.fail("never caught the command held")
    prog.chmod(0o644)
    os.kill(prof.p.pid, signal.SIGCONT)
    rc = prof.drain()
    assert rc == 1, (rc, prof.err.lines)
    assert prof.reports == [], "a report after the command could not run"
    lines = [l for l in prof.err.lines if not ATTACHED_RE.match(l)]
    assert lines == ["asizeof-bpf: cannot run %s: Permission denied" % prog], prof.err.lines
    # a run that failed leaves an existing -o FILE as it was
    assert rep.read_text() == "precious\n"


def test_the_released_command_dies_by_sigint(bpf_ok, guarded):
    """Once released the command has the default disposition and an unblocked SIGINT (the held
    child keeps the profiler's blocked signals only until its exec)."""
    rc, out, err = guarded.run(["-f", "json", "-i", "60", "--", "sh", "-c", "kill -INT $$; sleep 5"], timeout=60)
    assert rc == 128 + signal.SIGINT, (rc, err)


# ---------------------------------------------------------------- #! scripts, and programs ld.so does not answer for

STATIC_INTERP_C = r"""
#include <stdio.h>
#include <stdlib.h>

void *volatile kept[50];

__attribute__((noinline, noclone)) static void site_interp(void)
{
	for (int i = 0; i < 50; i++)
		kept[i] = malloc(4321);
}

/* run as a #! interpreter: a line to the file $INTERP_LOG names, then the site */
int main(void)
{
	FILE *f = fopen(getenv("INTERP_LOG"), "a");

	if (!f)
		return 2;
	fprintf(f, "ran\n");
	fclose(f);
	site_interp();
	return 0;
}
"""

# a "dynamic linker" that never answers (x86-64 Linux): pause() for ever
HANG_INTERP_C = r"""
void _start(void)
{
	for (;;)
		__asm__ volatile("syscall" : : "a"(34) : "rcx", "r11", "memory");
}
"""


def _cc(d, name, src, *flags):
    (d / (name + ".c")).write_text(src)
    p = subprocess.run(["gcc", "-O2", "-g", *flags, "-o", str(d / name), str(d / (name + ".c"))],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return str(d / name)


@pytest.mark.parametrize("depth", [1, 2])
def test_script_with_a_static_interpreter(bpf_ok, guarded, tmp_path, depth):
    """A #! script whose interpreter is a static program (directly, or through a script that
    names it): the interpreter's own malloc is probed and counted, and it runs once, as the
    command. LD_TRACE_LOADED_OBJECTS was given to the script, and static programs ignore it:
    the interpreter ran ahead, twice, and the profiler's own libc was probed (nothing counted)."""
    interp = _cc(tmp_path, "static_interp", STATIC_INTERP_C, "-static")
    script = interp
    for i in range(depth):
        nxt = tmp_path / ("script%d" % i)
        nxt.write_text("#!%s\n" % script)
        nxt.chmod(0o755)
        script = str(nxt)
    log, report = tmp_path / "ran.log", tmp_path / "r.json"
    rc, out, err = guarded.run(["-f", "json", "-n", "0", "-o", str(report), "--", script], timeout=60,
                               env=dict(os.environ, INTERP_LOG=str(log)))
    assert rc == 0, err
    assert log.read_text() == "ran\n", "the interpreter ran %d times" % log.read_text().count("ran")
    rep = helpers.final_report(helpers.parse_reports(report.read_text()))
    (p,) = rep["processes"]
    site = helpers.by_frame0(rep, p["pid"]).get("site_interp")
    assert site and (site["live_bytes"], site["live_allocs"]) == (50 * 4321, 50), helpers.by_frame0(rep, p["pid"])


def test_a_dynamic_linker_that_never_answers(bpf_ok, guarded, tmp_path):
    """A program whose PT_INTERP is no ld.so (it never answers LD_TRACE_LOADED_OBJECTS): one
    error after a few seconds, and the child asked is killed. The profiler waited for ever."""
    if os.uname().machine != "x86_64":
        pytest.skip("the never-answering interpreter is x86-64 code")
    hang = _cc(tmp_path, "hang_interp", HANG_INTERP_C, "-nostdlib", "-static")
    prog = _cc(tmp_path, "prog", "int main(void) { return 0; }\n", "-Wl,--dynamic-linker=" + hang)
    t0 = time.monotonic()
    rc, out, err = guarded.run(["--", prog], timeout=30)
    helpers.check_one_error_line(rc, out, err, want_rc=1, mentions="dynamic linker")
    assert time.monotonic() - t0 < 20
    left = []
    for d in os.listdir("/proc"):
        try:
            if d.isdigit() and os.readlink("/proc/%s/exe" % d) == prog:
                left.append(int(d))
        except OSError:
            pass
    assert not left, "the program asked is left running: %r" % left


def _proc_state(pid):
    """A process's state letter (R, S, Z, ...), None if it is gone."""
    try:
        return open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def test_exec_events_lost_are_counted(env, tmp_path):
    """The kernel tells the profiler of each exec (and exit) through a ring buffer; when the
    profiler falls behind (here: stopped) and the ring fills, the events it cannot send are
    counted in events_lost, not lost silently. 1,500 images: 1,499 exec events and an exit;
    the 256 KiB ring holds 885 of them (296 bytes each with its header)."""
    report, wl_dir = tmp_path / "report.json", tmp_path / "wl"
    wl_dir.mkdir()
    prof = helpers.Profiler(env["reaper"], ["-f", "json", "-n", "0", "-i", "60", "-o", str(report), "--",
                                            helpers.workload("lifecycle"), "exec-loop", str(wl_dir), "1500"])
    prof.wait_attached()
    prof.p.send_signal(signal.SIGSTOP)
    try:
        (wl_dir / "go").touch()
        deadline = time.monotonic() + 120
        while not list(wl_dir.glob("*.json")):
            assert time.monotonic() < deadline, "the exec loop did not end"
            time.sleep(0.05)
        # its exit too: the last image is the stopped profiler's child, a zombie once it exited
        (exp,) = [json.loads(f.read_text()) for f in wl_dir.glob("*.json")]
        while _proc_state(exp["pid"]) not in ("Z", None):
            assert time.monotonic() < deadline, "the last image did not exit"
            time.sleep(0.05)
    finally:
        prof.p.send_signal(signal.SIGCONT)
    assert prof.p.wait(timeout=60) == 0, prof.err.lines
    final = helpers.final_report(helpers.parse_reports(report.read_text()))
    assert final["dropped"]["events_lost"] == 1500 - 885, final["dropped"]



@pytest.mark.parametrize("fmt", ["text", "json"])
def test_an_exec_into_a_program_it_cannot_probe_is_counted(bpf_ok, guarded, tmp_path, fmt):
    """-- CMD that execs into a static program whose malloc cannot be found (stripped): "its new
    image is not traced" on stderr, and procs_untraced counts it in the report (it was said on
    stderr only: no JSON field, nothing in the text report)."""
    prog = helpers.stripped_static(tmp_path)
    report = tmp_path / "r.out"
    rc, out, err = guarded.run(["-f", fmt, "-n", "0", "-o", str(report), "--", "/bin/sh", "-c",
                                "exec " + prog], timeout=60)
    assert rc == 0, err
    assert "no allocator found: its new image is not traced" in err, err
    text = report.read_text()
    if fmt == "text":
        drops = [l for l in text.splitlines() if l.startswith("dropped:")]
        assert drops and "procs_untraced=1" in drops[-1].split(), drops
    else:
        d = helpers.final_report(helpers.parse_reports(text))["dropped"]
        assert d["procs_untraced"] == 1, d
