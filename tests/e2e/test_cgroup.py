# SPDX-License-Identifier: MIT
"""System-wide --cgroup filter, and the cgroup and executable reported per process."""

import os
import time

import pytest

import helpers
from helpers import Profiler, Workload


def _cgroup2_root():
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, path, fstype = line.split()[:3]
            if fstype == "cgroup2":
                return path
    return None


@pytest.fixture
def cgroup_dir():
    root = _cgroup2_root()
    if root is None:
        helpers.skip_or_fail("no cgroup v2 hierarchy mounted")
    d = os.path.join(root, "asizeof_test_%d" % os.getpid())
    os.mkdir(d)
    yield d, d[len(root):]
    # the test's processes are gone (reaper) before this runs
    for _ in range(50):
        try:
            os.rmdir(d)
            break
        except OSError:
            time.sleep(0.1)


def test_cgroup_filter(env, cgroup_dir):
    d, rel = cgroup_dir
    reaper = env["reaper"]
    wl = env["workloads"]["simple_sites"]
    inside = Workload(reaper, [wl, "attach"])
    outside = Workload(reaper, [wl, "attach"])
    with open(os.path.join(d, "cgroup.procs"), "w") as f:
        f.write(str(inside.pid))
    prof = Profiler(reaper, ["-f", "json", "-n", "0", "-i", "1", "--cgroup", d])
    prof.wait_attached()
    exp = inside.expect_json("go")
    outside.expect_json("go")
    prof.reports_after(prof.sync(), 2)
    assert prof.stop() == 0, prof.err.lines
    final = helpers.final_report(prof.reports)
    assert {p["pid"] for p in final["processes"]} == {inside.pid}
    p = helpers.proc_of(final, inside.pid)
    assert p["cgroup"] == rel
    assert p["exe"] == os.path.realpath(wl)
    assert p["container_id"] is None
    got = helpers.by_frame0(final, inside.pid)
    for site, want in exp["sites"].items():
        have = got.get(site, {"live_bytes": 0})
        assert have["live_bytes"] == want["live_bytes"], site
    inside.send("exit")
    outside.send("exit")
    inside.wait()


def test_cgroup_bad_path(bpf_ok, probe_guard):
    rc, out, err = helpers.run_profiler(["--cgroup", "/nonexistent/cgroup", "-d", "1"])
    helpers.check_one_error_line(rc, out, err, want_rc=1, mentions="--cgroup")
