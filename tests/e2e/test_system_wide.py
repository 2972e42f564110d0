# SPDX-License-Identifier: MIT
"""System-wide mode (no -p, no command): processes started before and after the profiler, one
using a copy of libc at another path (a new library file, probed when it appears), exited
processes reported once more then forgotten, and the --comm filter."""

import json
import os
import re
import signal
import shutil
import subprocess
import time

import pytest

import helpers
from helpers import Profiler, Workload

COMM = "alloc_sites"
ARGS = ["-f", "json", "-n", "0", "-i", "1", "--comm", COMM]


def check_exact(rep, exp, exited):
    pid = exp["pid"]
    p = helpers.proc_of(rep, pid)
    assert p["exited"] is exited, p
    assert p["comm"] == COMM
    helpers.check_sites(rep, pid, exp["sites"])
    helpers.check_proc_is_sum_of_stacks(rep, pid)


@pytest.fixture
def libc_copy(tmp_path):
    d = tmp_path / "libcopy"
    d.mkdir()
    shutil.copy(helpers.libc_path(), d / "libc.so.6")
    return str(d)


def test_system_wide(env, libc_copy, tmp_path):
    wl_bin = env["workloads"]["alloc_sites"]
    reaper = env["reaper"]
    # started before the profiler
    before = Workload(reaper, [wl_bin, "attach"])
    # a process with another name, doing the same work: --comm must leave it out
    other_bin = tmp_path / "other_sites"
    shutil.copy(wl_bin, other_bin)
    other = Workload(reaper, [str(other_bin), "attach"])

    prof = Profiler(reaper, ARGS + ["-v"])
    line = prof.wait_attached()
    assert "all processes" in line
    exp_before = before.expect_json("go")
    other.send("go")
    assert other.reply().startswith("{")

    # started after: runs every site and exits
    out = tmp_path / "after.json"
    after = reaper.add(subprocess.Popen([wl_bin, "launch", str(out)], start_new_session=True))
    assert after.wait(timeout=60) == 0
    exp_after = json.loads(out.read_text())

    # a copy of libc at another path: a library file never probed before
    env2 = dict(os.environ, LD_LIBRARY_PATH=libc_copy)
    p = reaper.add(subprocess.Popen([wl_bin, "attach"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    env=env2, start_new_session=True))
    ready = p.stdout.readline().decode()
    assert ready.startswith("ready "), ready
    maps = open("/proc/%d/maps" % p.pid).read()
    assert libc_copy in maps, "the workload does not use the copied libc"
    # the profiler probes a new library after the exec (~100 ms; said at -v)
    helpers.wait_stderr(prof, "probe points in /proc/%d/root%s/libc.so.6 " % (p.pid, libc_copy))
    p.stdin.write(b"go\n")
    p.stdin.flush()
    exp_copy = json.loads(p.stdout.readline().decode())

    n = prof.sync()
    prof.reports_after(n, 3)  # at least two full intervals after everything happened
    rc = prof.stop()
    assert rc == 0, prof.err.lines
    final = helpers.final_report(prof.reports)

    check_exact(final, exp_before, exited=False)
    check_exact(final, exp_copy, exited=False)
    # the process that exited: in exactly one report, marked exited, exact; then forgotten
    seen = [r for r in prof.reports if any(q["pid"] == exp_after["pid"] for q in r["processes"])]
    exited = [r for r in seen if helpers.proc_of(r, exp_after["pid"])["exited"]]
    assert len(exited) == 1, "an exited process is reported once more, then forgotten"
    check_exact(exited[0], exp_after, exited=True)
    assert seen[-1] is exited[0]
    assert prof.reports[-1] is not exited[0]
    for r in prof.reports:
        for q in r["processes"]:
            assert q["comm"] == COMM, q
            assert q["pid"] != other.pid
    p.stdin.write(b"exit\n")
    p.stdin.flush()
    before.send("exit")
    other.send("exit")


def test_stacks_of_exited_processes_are_deleted(env):
    """Stacks no live process refers to are deleted from the kernel two sweeps after their
    process is forgotten: those of up to 23 frames and the deeper ones (another map)."""
    reaper = env["reaper"]
    prof = Profiler(reaper, ["-f", "json", "-n", "0", "-i", "1", "-vv", "--comm", "cfi_recurse"])
    prof.wait_attached()
    # cfi_recurse stops itself in main, then allocates 31 frames deep and exits
    wl = reaper.add(subprocess.Popen([env["workloads"]["cfi_recurse"], "alloc"], start_new_session=True))
    helpers.wait_stopped(wl.pid)
    # its unwind table is built after the exec (~100 ms; said at -v): else frame pointers
    helpers.wait_stderr(prof, "unwind: %s: " % env["workloads"]["cfi_recurse"])
    os.kill(wl.pid, signal.SIGCONT)
    assert wl.wait(timeout=60) == 0
    n = prof.sync()
    prof.reports_after(n, 4)  # reported exited, forgotten, then two sweeps
    assert prof.stop() == 0, prof.err.lines

    last = [r for r in prof.reports if any(p["pid"] == wl.pid for p in r["processes"])][-1]
    assert helpers.proc_of(last, wl.pid)["exited"] is True
    stacks = {int(s["stack_id"]): sum(not f["inlined"] for f in s["frames"]) for s in helpers.stacks_of(last, wl.pid)}
    deep = [i for i, n in stacks.items() if i >> 63]
    assert len(deep) >= 2 and all(stacks[i] > 23 for i in deep), stacks
    assert all(n <= 23 for i, n in stacks.items() if not i >> 63), stacks
    sweeps = [re.search(r"stack sweep: (\d+) deleted \((\d+) of over 23 frames\)", l) for l in prof.err.lines]
    sweeps = [m for m in sweeps if m]
    assert sum(int(m[1]) for m in sweeps) >= len(stacks), prof.err.lines
    assert sum(int(m[2]) for m in sweeps) >= len(deep), prof.err.lines


def test_short_lived_processes_of_a_program_seen_before_are_complete(env):
    """--comm of a program that exits at once, run five times: gone before it can be adopted,
    so its stacks are walked with what the profiler had. Its libc (probed when first seen) has
    its table from then on, its program from the first exec event (by the path exec was given):
    the later runs' stacks are complete and named."""
    prof = Profiler(env["reaper"], ["-f", "json", "-n", "0", "-i", "0.2", "--comm", "short_lived"])
    prof.wait_attached()
    pids = []
    for _ in range(5):
        p = subprocess.run([env["workloads"]["short_lived"]], timeout=30)
        assert p.returncode == 0
        time.sleep(0.3)
    prof.reports_after(prof.sync(), 3)
    assert prof.stop() == 0, prof.err.lines
    seen = {}
    for r in prof.reports:
        for s in r["stacks"]:
            if s["live_bytes"] > 0:
                seen[s["pid"]] = s
    pids = sorted(seen)
    assert len(pids) == 5, seen
    for pid in pids[1:]:
        st = seen[pid]
        funcs = [f["func"] for f in st["frames"]]
        assert not st["truncated"], (pid, funcs)
        assert funcs[:3] == ["strdup", "site_short", "main"], (pid, funcs)
        assert st["frames"][0]["module"] == os.path.realpath(st["frames"][0]["module"]), st["frames"][0]


def test_a_process_with_many_live_blocks_is_forgotten_without_stalling(env):
    """400,000 live blocks of a process that exits: its entries are deleted from the kernel's
    maps in batches. One by one (two syscalls each) that stalled the report loop for minutes
    (-d 5 then ended after ~200 s, past this test's 60 s wait for the end)."""
    cmd = [env["workloads"]["lifecycle"], "keep-many", "400000"]
    prof = Profiler(env["reaper"], ["-f", "json", "-n", "1", "-i", "0.5", "-d", "5", "--comm", "lifecycle"])
    prof.wait_attached()
    wl = env["reaper"].add(subprocess.Popen(cmd, start_new_session=True))
    assert wl.wait(timeout=60) == 0
    assert prof.drain(timeout=60) == 0, prof.err.lines
    # by pid: another program named lifecycle may run meanwhile
    seen = [r for r in prof.reports if any(p["pid"] == wl.pid for p in r["processes"])]
    assert seen and helpers.proc_of(seen[-1], wl.pid)["live_allocs"] == 400001, seen[-1]["processes"]
    assert seen[-1] is not prof.reports[-1], "the exited process was never forgotten"


def _fds(pid):
    d = "/proc/%d/fd" % pid
    links = []
    for n in os.listdir(d):
        try:
            links.append(os.readlink(os.path.join(d, n)))
        except FileNotFoundError:
            pass
    return links


def test_programs_no_process_maps_anymore_are_closed(env, tmp_path):
    """40 programs, each run once from its own file and then deleted (a build running its
    tests): the symbolizer closes a program's file once its process is reported and forgotten.
    It used to keep every file it opened (an fd and a Dwfl each) until the end, deleted ones
    with their disk space: +3 fds a program here."""
    src = env["workloads"]["short_lived"]
    prof = Profiler(env["reaper"], ["-f", "json", "-n", "0", "-i", "0.2", "-vv", "--comm", "short_lived"])
    prof.wait_attached()

    def run(i):
        d = tmp_path / ("p%d" % i)
        d.mkdir()
        exe = d / "short_lived"
        shutil.copy(src, exe)
        assert subprocess.run([str(exe)], timeout=30).returncode == 0
        exe.unlink()

    for i in range(3):
        run(i)
    prof.reports_after(prof.sync(), 3)
    base = len(_fds(prof.p.pid))
    for i in range(3, 40):
        run(i)
        time.sleep(0.05)
    prof.reports_after(prof.sync(), 4)  # reported, forgotten, then two trims
    fds = _fds(prof.p.pid)
    deleted = [l for l in fds if "short_lived" in l]
    assert prof.stop() == 0, prof.err.lines
    assert not deleted, fds
    assert len(fds) <= base + 3, (base, fds)
    seen = {s["pid"] for r in prof.reports for s in r["stacks"] if s["live_bytes"] > 0}
    assert len(seen) == 40, "every run was seen"
    # every program file the symbolizer loaded was closed (under load many are gone, and
    # deleted, before their process is read: never loaded, nothing to close)
    loaded = {m[1] for m in (re.search(r"symbolizer: loaded (\S*/short_lived): ", l) for l in prof.err.lines) if m}
    closed = {m[1] for m in (re.search(r"symbolizer: closing (\S*/short_lived) \(no process maps it\)$", l)
                             for l in prof.err.lines) if m}
    assert len(loaded) >= 5, prof.err.lines
    assert closed == loaded, sorted(loaded ^ closed)


def test_a_process_gone_before_it_is_read_is_named_by_its_exec(env):
    """Programs that exit at once, 40 at a time: many are gone before /proc/PID/exe can be read.
    Their exe is the path their exec event gave (metrics group by it); it was "", all such
    programs one group."""
    prof = Profiler(env["reaper"], ["-f", "json", "-n", "0", "-i", "0.2", "--comm", "short_lived"])
    prof.wait_attached()
    runs = [subprocess.Popen([env["workloads"]["short_lived"]]) for _ in range(40)]
    assert all(p.wait(timeout=30) == 0 for p in runs)
    prof.reports_after(prof.sync(), 3)
    assert prof.stop() == 0, prof.err.lines
    procs = {p["pid"]: p for r in prof.reports for p in r["processes"] if p["comm"] == "short_lived"}
    assert len(procs) == 40, len(procs)
    want = os.path.realpath(env["workloads"]["short_lived"])
    unnamed = [p["pid"] for p in procs.values() if p["exe"] != want]
    assert not unnamed, unnamed


def test_exec_paths_of_processes_never_shown_are_forgotten(env):
    """The paths exec events give are kept for processes gone before they are read; those of
    processes gone that no report shows (/bin/true allocates nothing; 40 at a time, many are
    gone before they are adopted) go too, or a system-wide run would keep one per such exec on
    the machine (11 to 42 of 120 here)."""
    prof = Profiler(env["reaper"], ["-f", "json", "-n", "0", "-i", "0.2", "-vv", "--comm", "true"])
    prof.wait_attached()
    for _ in range(3):
        burst = "for i in $(seq 40); do /bin/true & done; wait"
        assert subprocess.run(["/bin/sh", "-c", burst], timeout=30).returncode == 0
    prof.reports_after(prof.sync(), 2)
    assert prof.stop() == 0, prof.err.lines
    kept = [int(re.search(r"(\d+) exec paths kept", l)[1]) for l in prof.err.lines if "exec paths kept" in l]
    assert kept and kept[-1] <= 3, kept


def _hold_expect(k):
    return {"live_bytes": k * 1000 + 666, "live_allocs": k + 2, "allocs": k + 3, "frees": 1}


def test_a_pid_given_again_is_the_new_process(env, tmp_path):
    """A process exits and a new one gets its pid (forced with ns_last_pid) before, while and
    after the old one is reported exited, exec'd or forked from a process that allocated nothing
    (a fork counted to the exited one's accounts, which then were forgotten with it): the new
    one is reported alive, with its own exe, blocks and stacks. A pid adopted again before it
    was forgotten was shown exited for the rest of the run (a second target of that pid, the
    first exited, named it); one adopted after its exit was reported had its entries deleted by
    the forgetting: never reported at all."""
    wl = env["workloads"]["scale_hold"]
    copy = tmp_path / "scale_hold"
    shutil.copy(wl, copy)
    prof = Profiler(env["reaper"], ["-f", "json", "-n", "0", "-i", "0.5", "--comm", "scale_hold"])
    prof.wait_attached()
    news = []
    for gap, prog in [(g, p) for g in (0, 0.2, 0.4, 0.6) for p in (copy, "-")]:
        old = Workload(env["reaper"], [wl, "hold", "5"])
        time.sleep(0.6)  # reported alive once
        old.p.stdin.close()
        assert old.wait() == 0
        time.sleep(gap)
        argv = [wl, "at", str(old.pid)] + ([str(prog), "hold", "2"] if prog != "-" else ["-", "2"])
        new = env["reaper"].add(subprocess.Popen(argv,
                                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                 start_new_session=True))
        assert new.stdout.readline().decode() == "pid %d\n" % old.pid
        assert new.stdout.readline().decode() == "ready %d\n" % old.pid
        news.append((new, old.pid, str(prog) if prog != "-" else wl))
    prof.reports_after(prof.sync(), 4)
    rc = prof.stop()
    assert rc == 0, prof.err.lines
    final = helpers.final_report(prof.reports)
    for new, pid, exe in news:
        p = helpers.proc_of(final, pid)
        assert p["exited"] is False, p
        assert p["exe"] == exe, p
        assert {k: p[k] for k in _hold_expect(2)} == _hold_expect(2), p
        # by site: a block allocated before the new program's unwind table was built has a
        # shorter stack of its own (walked with frame pointers) than the next one there
        live = {}
        for s in helpers.stacks_of(final, pid):
            if s["live_bytes"]:
                live.setdefault(s["frames"][0]["func"], []).append(s["live_bytes"])
        assert sum(live.get("site_keep", [])) == 2000, live
        assert sorted(live.get("site_pair", [])) == [333, 333] and set(live) == {"site_keep", "site_pair"}, live
    for new, _, _ in news:
        new.stdin.close()
        assert new.wait(timeout=30) == 0


def test_a_new_process_it_cannot_probe_is_counted(env, tmp_path):
    """System-wide, a process started later whose malloc cannot be found (a stripped static
    program): counted once under procs_untraced, however often it is looked at and reported
    (nothing said it, not even stderr); one started before the profiler is not counted."""
    prog = helpers.stripped_static(tmp_path)
    comm = os.path.basename(prog)[:15]
    before = env["reaper"].add(subprocess.Popen([prog, "wait"], stdin=subprocess.PIPE))
    time.sleep(0.1)
    prof = Profiler(env["reaper"], ["-f", "json", "-n", "0", "-i", "0.3", "-d", "20", "--comm", comm])
    prof.wait_attached()
    p = env["reaper"].add(subprocess.Popen([prog, "wait"], stdin=subprocess.PIPE))
    deadline = time.monotonic() + 15
    while not prof.reports or prof.reports[-1]["dropped"]["procs_untraced"] < 1:
        assert time.monotonic() < deadline, prof.reports[-1:]
        prof.next_report()
    prof.reports_after(prof.sync(), 3)
    for w in (p, before):
        w.stdin.close()
        assert w.wait(timeout=30) == 0
    prof.reports_after(prof.sync(), 2)
    assert prof.stop() == 0, prof.err.lines
    final = helpers.final_report(prof.reports)
    assert final["dropped"]["procs_untraced"] == 1, final["dropped"]
    assert all(r["dropped"]["procs_untraced"] <= 1 for r in prof.reports)


def _map_ids_of(pid):
    """The ids of the BPF maps a process holds open (its fds' fdinfo map_id)."""
    ids = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            for line in open("/proc/%d/fdinfo/%s" % (pid, fd)):
                if line.startswith("map_id:"):
                    ids.add(int(line.split()[1]))
        except OSError:
            pass
    return ids


def _mapidx_keys(prof_pid):
    """The tgids in the map named mapidx of the profiler prof_pid (its index of its processes'
    mappings; another profiler running meanwhile has its own)."""
    maps = json.loads(subprocess.run(["bpftool", "map", "show", "-j"], capture_output=True, check=True,
                                     timeout=30).stdout)
    ours = _map_ids_of(prof_pid)
    ids = [m["id"] for m in maps if m.get("name") == "mapidx" and m["id"] in ours]
    assert len(ids) == 1, (ids, ours)
    dump = subprocess.run(["bpftool", "map", "dump", "id", str(ids[0]), "-j"], capture_output=True, check=True,
                          timeout=30).stdout
    return {e["formatted"]["key"] if "formatted" in e else e["key"] for e in json.loads(dump)}


def test_mapping_index_of_an_exited_process_is_deleted(env, tmp_path):
    """A process's index of its own mappings (mapidx) is deleted with its other entries when it
    is forgotten: left, the map fills (4,096) and a later process under the same pid would find
    the old starts there."""
    if not shutil.which("bpftool"):
        pytest.skip("no bpftool")
    expected = tmp_path / "e.json"
    prof = Profiler(env["reaper"], ["-f", "json", "-n", "0", "-i", "0.3", "--comm", "mmap_partial"])
    prof.wait_attached()
    wl = subprocess.run([env["workloads"]["mmap_partial"], "many", str(expected)], timeout=60)
    assert wl.returncode == 0
    pid = json.loads(expected.read_text())["pid"]
    n = prof.sync()
    prof.reports_after(n, 4)  # reported exited, forgotten, then two more
    keys = _mapidx_keys(prof.p.pid)
    assert prof.stop() == 0, prof.err.lines
    last = [r for r in prof.reports if any(p["pid"] == pid for p in r["processes"])][-1]
    p = helpers.proc_of(last, pid)
    assert p["exited"] is True and p["mmap_regions"] == 70, p
    assert pid not in keys, keys
