# SPDX-License-Identifier: MIT
"""Fixtures of the end-to-end tests.

Run from the repository root as root: /usr/bin/python3 -m pytest -q tests/e2e
Tests that need BPF are skipped when it cannot be loaded (not root, or the profiler fails with a
BPF load error), except with CI=true in the environment: then they fail.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import helpers  # noqa: E402
from helpers import BIN, REPO, WORKLOADS  # noqa: E402

BPF_LOAD_ERROR = re.compile(
    r"(?i)(cannot load bpf|libbpf|verifier|bpf program|must run as root|operation not permitted|"
    r"permission denied|uprobe)"
)


skip_or_fail = helpers.skip_or_fail


# ---------------------------------------------------------------- binaries

WORKLOAD_SOURCES = {
    "alloc_sites": "alloc_sites.c",
    "alloc_growth": "alloc_growth.c",
    "alloc_threads": "alloc_threads.c",
    "alloc_cxx": "alloc_cxx.cc",
    "print_args": "print_args.c",
    "sampling_sites": "sampling_sites.c",
    "sampling_tails": "sampling_tails.c",
    "lifecycle": "lifecycle.c",
    "simple_sites": "simple_sites.c",
    "min_size_sites": "min_size_sites.c",
    "unwind_nocfi": "unwind_nocfi.c",
    "clone_vm": "clone_vm.c",
    "cxx_bad_alloc": "cxx_bad_alloc.cc",
    "unwind_signal": "unwind_signal.c",
    "mmap_sites": "mmap_sites.c",
    "mmap_partial": "mmap_partial.c",
    "remap_denied": "remap_denied.c",
    "remap_threads": "remap_threads.c",
    "je_threads": "je_threads.cc",
    "je_unseen": "je_unseen.cc",
    "unwind_libc": "unwind_libc.c",
    "unwind_cxx": "unwind_cxx.cc",
    "unwind_dlopen": "unwind_dlopen.c",
    "plugin_reload": "plugin_reload.c",
    "dlopen_reuse": "dlopen_reuse.c",
    "unwind_memo": "unwind_memo.c",
    "unwind_alternate": "unwind_alternate.c",
    "unwind_span": "unwind_span.c",
    "cfi_recurse": "cfi_recurse.c",
    "short_lived": "short_lived.c",
    "scale_hold": "scale_hold.c",
    "cxx_bulk": "cxx_bulk.cc",
    "exit_on_probe": "exit_on_probe.c",
    "entry_points": "entry_points.c",
    "entry_cxx": "entry_cxx.cc",
    "stack_churn": "stack_churn.c",
    "fork_twins": "fork_twins.c",
}


def _ensure_workload(name):
    """Build a workload exactly as the Makefile does when it is missing or older than its source
    (`make workloads` normally did it already)."""
    src = REPO / "tests" / "workloads" / WORKLOAD_SOURCES[name]
    out = WORKLOADS / name
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return str(out)
    WORKLOADS.mkdir(parents=True, exist_ok=True)
    cc = "g++" if src.suffix == ".cc" else "gcc"
    cmd = [cc, "-O2", "-g", "-Wall", "-o", str(out), str(src), "-lpthread"]
    p = subprocess.run(cmd, capture_output=True, timeout=300)
    if p.returncode != 0:
        pytest.fail("cannot build %s: %s" % (name, p.stderr.decode(errors="replace")), pytrace=False)
    return str(out)


@pytest.fixture(scope="session")
def workloads():
    return {name: _ensure_workload(name) for name in WORKLOAD_SOURCES}


@pytest.fixture(scope="session")
def profiler_bin():
    if not BIN.exists() or not os.access(str(BIN), os.X_OK):
        skip_or_fail("%s is not built (make)" % BIN)
    return str(BIN)


@pytest.fixture(scope="session")
def bpf_ok(profiler_bin):
    """The profiler can load and attach its BPF programs here."""
    if os.geteuid() != 0:
        skip_or_fail("not root: cannot load BPF programs")
    before = helpers.probe_snapshot()
    try:
        rc, out, err = helpers.run_profiler(["-f", "json", "-n", "0", "-i", "5", "--", "/bin/true"], timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the profiler did not finish tracing /bin/true within 120 s", pytrace=False)
    if rc != 0 and BPF_LOAD_ERROR.search(err):
        skip_or_fail("the profiler cannot load BPF here: " + err.strip())
    left = helpers.leftover_probes(before, set())
    assert not left, "probes left behind after tracing /bin/true: %r" % left
    return True


# ---------------------------------------------------------------- per-test process and probe hygiene


@pytest.fixture
def reaper():
    r = helpers.Reaper()
    yield r
    r.cleanup()


@pytest.fixture
def probe_guard(reaper):
    """Fails the test if, once every process it started is gone, a BPF link or perf-event
    attachment of ours is left in the system (compared with before the test). Without root
    nothing can be attached, and bpftool cannot look: no check."""
    if os.geteuid() != 0:
        yield None
        reaper.cleanup()
        return
    before = helpers.probe_snapshot()
    yield before
    ours = reaper.pids()
    reaper.cleanup()
    left = helpers.leftover_probes(before, ours)
    assert not left, "probes left behind after the profiler exited: %r" % left


@pytest.fixture
def env(bpf_ok, workloads, probe_guard, reaper):
    """Everything a test running the profiler needs."""
    return {"workloads": workloads, "reaper": reaper}


class GuardedRuns:
    """For module-scoped fixtures: run the profiler to completion and check for leftovers."""

    @staticmethod
    def run(args, timeout=180, **kw):
        before = helpers.probe_snapshot()
        try:
            res = helpers.run_profiler(args, timeout=timeout, **kw)
        finally:
            left = helpers.leftover_probes(before, set())
        assert not left, "probes left behind after `asizeof-bpf %s`: %r" % (" ".join(args), left)
        return res


@pytest.fixture(scope="session")
def guarded():
    return GuardedRuns
