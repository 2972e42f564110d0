# SPDX-License-Identifier: MIT
"""Targets whose allocator library is not where the host sees it: a chroot (maps paths are whole
already), a library deleted after it was mapped (found through map_files), and a target that
execs into a program using another copy of libc (probed again there)."""

import json
import os
import shutil
import subprocess
import time

import pytest

import helpers
from helpers import Workload

JSON_ARGS = ["-f", "json", "-n", "0", "-i", "1"]


def _attach_and_check(env, wl, frames_module=None):
    rep, exp = helpers.attach_go_exit(env["reaper"], wl, JSON_ARGS)
    helpers.check_sites(rep, wl.pid, exp["sites"])
    helpers.check_proc_exact(rep, wl.pid, exp["proc"])
    if frames_module:
        mods = {f["module"] for s in helpers.stacks_of(rep, wl.pid) for f in s["frames"]}
        assert any(frames_module in m for m in mods), mods
        for s in helpers.stacks_of(rep, wl.pid):
            assert not s["truncated"], s
    return rep


def _check_frames_named(rep, pid, module, full):
    """Each stack's frame 0 in module (a stripped copy of full) says what eu-addr2line says of
    full at that offset: function, file and line; at least 5 of them."""
    checked = 0
    for s in helpers.stacks_of(rep, pid):
        f = s["frames"][0]
        if f["module"] != str(module) or f["inlined"]:
            continue
        a2l = subprocess.run(["eu-addr2line", "-f", "-e", full, hex(f["module_offset"])],
                             capture_output=True, text=True, check=True).stdout.split("\n")
        line = a2l[1].rsplit(":", 2)
        assert (f["func"], f["file"], f["line"]) == (a2l[0], line[0], int(line[1])), (f, a2l)
        checked += 1
    assert checked >= 5, rep


def test_a_process_in_a_chroot(env, tmp_path):
    """/proc/PID/maps of a chrooted process names its files as seen from here (the chroot's
    directory included): /proc/PID/root in front named the directory twice, and the process
    could not be traced ("no allocator symbols")."""
    root = tmp_path / "root"
    (root / "app").mkdir(parents=True)
    (root / "lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "lib64").mkdir()
    shutil.copy(env["workloads"]["alloc_sites"], root / "app/alloc_sites")
    shutil.copy(helpers.libc_path(), root / "lib/x86_64-linux-gnu/libc.so.6")
    shutil.copy("/lib64/ld-linux-x86-64.so.2", root / "lib64/ld-linux-x86-64.so.2")
    wl = Workload(env["reaper"], ["chroot", str(root), "/app/alloc_sites", "attach"])
    _attach_and_check(env, wl, frames_module=str(root / "lib/x86_64-linux-gnu/libc.so.6"))


def test_a_process_whose_libc_was_deleted(env, tmp_path):
    """Its libc file deleted (an image layer replaced) while it runs: probed through the mapping
    itself (/proc/PID/map_files), exact. It was refused: "no allocator found"."""
    d = tmp_path / "lib"
    d.mkdir()
    shutil.copy(helpers.libc_path(), d / "libc.so.6")
    wl = Workload(env["reaper"], [env["workloads"]["alloc_sites"], "attach"],
                  env=dict(os.environ, LD_LIBRARY_PATH=str(d)))
    assert str(d / "libc.so.6") in open("/proc/%d/maps" % wl.pid).read()
    (d / "libc.so.6").unlink()
    _attach_and_check(env, wl, frames_module="libc.so.6 (deleted)")


def test_exec_into_a_program_with_another_libc(env, tmp_path):
    """`-- env LD_LIBRARY_PATH=COPY lifecycle ...`: env runs on the host's libc, lifecycle on a
    copy. The probes stayed on the host's libc and nothing of lifecycle was counted, silently;
    now it is probed again once ld.so has mapped its libc (said on stderr), and what it allocates
    from then on is exact (it waits until the profiler has said so)."""
    d = tmp_path / "lib"
    d.mkdir()
    shutil.copy(helpers.libc_path(), d / "libc.so.6")
    report = tmp_path / "report.out"
    prof = helpers.Profiler(env["reaper"], ["-f", "json", "-n", "0", "-i", "60", "-o", str(report), "--", "env",
                                            "LD_LIBRARY_PATH=%s" % d, env["workloads"]["lifecycle"], "image2",
                                            str(tmp_path), "late"], stdin=subprocess.PIPE)
    helpers.send_after_stderr(prof, "traced there from now on")
    t0 = time.time()
    while not list(tmp_path.glob("*.json")) and time.time() - t0 < 60:
        time.sleep(0.05)
    time.sleep(0.3)
    prof.p.stdin.write(b"\n")
    prof.p.stdin.close()
    rc = prof.drain()
    err = "\n".join(prof.err.lines)
    assert rc == 0, err
    assert "exec'd into a program with another allocator (" in err, err
    assert "%s): traced there from now on" % (d / "libc.so.6") in err, err
    (exp,) = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    final = helpers.final_report(helpers.parse_reports(report.read_text()))
    got = helpers.by_frame0(final, exp["pid"])["site_image2"]
    for k, v in exp["sites"]["site_image2"].items():
        assert got[k] == v, (k, got)
    frames = [f["module"] for s in helpers.stacks_of(final, exp["pid"]) for f in s["frames"]]
    assert any(m == str(d / "libc.so.6") for m in frames), frames


def test_a_stripped_program_in_a_chroot_finds_its_debug_file_under_usr_lib_debug(env, tmp_path):
    """A stripped program in a chroot whose debug file is in the chroot's
    /usr/lib/debug/<directory of the program>/ (the layout of debug files by path): each
    site's frame 0 says what eu-addr2line says of the unstripped program. (A review feared
    that maps paths of a chroot, ours with its directory in front, would miss this layout.)"""
    root = tmp_path / "root"
    for d in ("app", "lib/x86_64-linux-gnu", "lib64", "usr/lib/debug/app"):
        (root / d).mkdir(parents=True)
    full = env["workloads"]["alloc_sites"]
    debug = root / "usr/lib/debug/app/alloc_sites.debug"
    subprocess.run(["objcopy", "--only-keep-debug", full, str(debug)], check=True)
    subprocess.run(["objcopy", "--strip-all", "--add-gnu-debuglink=" + str(debug), full,
                    str(root / "app/alloc_sites")], check=True)
    shutil.copy(helpers.libc_path(), root / "lib/x86_64-linux-gnu/libc.so.6")
    shutil.copy("/lib64/ld-linux-x86-64.so.2", root / "lib64/ld-linux-x86-64.so.2")
    wl = Workload(env["reaper"], ["chroot", str(root), "/app/alloc_sites", "attach"])
    rep = _attach_and_check(env, wl)
    _check_frames_named(rep, wl.pid, root / "app/alloc_sites", full)


@pytest.mark.parametrize("where", ["next_to_it", "usr_lib_debug"])
def test_a_stripped_program_in_another_mount_namespace_finds_its_debug_file(env, tmp_path, where):
    """A stripped program whose debug file is next to it (.gnu_debuglink), or in the namespace's
    own /usr/lib/debug/<directory of the program>/ (a tmpfs over /usr/lib/debug: the layout of
    debug files by path), in a tmpfs only its mount namespace sees (a container's image): the
    debug file is looked for in that namespace too. Only the host's directories were searched,
    and every frame of the program came out with neither function nor file:line. Each site's
    frame 0 must now say what eu-addr2line says of the unstripped program at that offset."""
    src, ns_dir = tmp_path / "src", tmp_path / "ns"
    src.mkdir()
    ns_dir.mkdir()
    full = env["workloads"]["alloc_sites"]
    subprocess.run(["objcopy", "--only-keep-debug", full, str(src / "alloc_sites.debug")], check=True)
    subprocess.run(["objcopy", "--strip-all", "--add-gnu-debuglink=alloc_sites.debug", full,
                    str(src / "alloc_sites")], cwd=str(src), check=True)
    debug_dir = "/usr/lib/debug" + str(ns_dir) if where == "usr_lib_debug" else str(ns_dir)
    script = "mount -t tmpfs none {d} && cp {s}/alloc_sites {d}/ && "
    if where == "usr_lib_debug":
        script += "mkdir -p /usr/lib/debug && mount -t tmpfs none /usr/lib/debug && mkdir -p {g} && "
    script += "cp {s}/alloc_sites.debug {g}/ && rm {s}/alloc_sites.debug && exec {d}/alloc_sites attach"
    wl = Workload(env["reaper"], ["unshare", "-m", "--propagation", "private", "sh", "-c",
                                  script.format(d=ns_dir, s=src, g=debug_dir)])
    assert not os.listdir(str(ns_dir)), "the namespace's tmpfs is visible from here"
    assert where != "usr_lib_debug" or not os.path.exists(debug_dir), "its /usr/lib/debug is visible from here"
    rep = _attach_and_check(env, wl)
    _check_frames_named(rep, wl.pid, ns_dir / "alloc_sites", full)
