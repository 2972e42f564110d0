# SPDX-License-Identifier: MIT
"""Bad inputs: each gives a non-zero exit status below 128 (2 for usage errors, 1 for runtime
errors), exactly one line on stderr starting with "asizeof-bpf: ", and leaves no probe."""

import os
import subprocess
import tempfile

import pytest

import helpers


NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


@pytest.fixture
def sleeper(reaper):
    """A live, harmless target process."""
    p = reaper.add(subprocess.Popen(["sleep", "300"], start_new_session=True))
    return p.pid


# name: (arguments, what the error line must name)
USAGE_ERRORS = {
    "interval-not-a-number": (["-i", "abc", "--", "true"], "abc"),
    "interval-negative": (["-i", "-1", "--", "true"], "-1"),
    "interval-empty": (["-i", "", "--", "true"], "-i"),
    "top-negative": (["-n", "-3", "--", "true"], "-3"),
    "top-not-a-number": (["-n", "ten", "--", "true"], "ten"),
    "pid-not-a-number": (["-p", "xyz"], "xyz"),
    "pid-negative": (["-p", "-5"], "-5"),
    "pid-trailing-garbage": (["-p", "12abc"], "12abc"),
    "pid-empty": (["-p", ""], "-p"),
    "pid-missing-value": (["-p"], "-p"),
    "long-pid-missing-value": (["--pid"], "pid"),
    "duration-not-a-number": (["-d", "abc", "--", "true"], "abc"),
    "sort-unknown": (["-s", "bogus", "--", "true"], "bogus"),
    "format-unknown": (["-f", "xml", "--", "true"], "xml"),
    "unknown-long-option": (["--bogus", "--", "true"], "--bogus"),
    "unknown-short-option": (["-x", "--", "true"], "-x"),
    "comm-with-pid": (["--comm", "x", "-p", "1"], "--comm"),
    "comm-too-long": (["--comm", "a" * 16], "--comm"),
    "min-size-not-a-number": (["--min-size", "big", "--", "true"], "big"),
    "missing-command-after-dashdash": (["--"], None),
    "missing-command-after-options": (["-f", "json", "-i", "1", "--"], None),
}


@pytest.mark.parametrize("args,mentions", list(USAGE_ERRORS.values()), ids=list(USAGE_ERRORS))
def test_usage_error(profiler_bin, probe_guard, args, mentions):
    rc, out, err = helpers.run_profiler(args, timeout=60)
    helpers.check_one_error_line(rc, out, err, want_rc=2, mentions=mentions)


def test_no_such_pid(bpf_ok, probe_guard):
    pid = helpers.free_pid()
    rc, out, err = helpers.run_profiler(["-p", str(pid)], timeout=60)
    helpers.check_one_error_line(rc, out, err, want_rc=1)


def test_kernel_thread(bpf_ok, probe_guard):
    with open("/proc/2/comm") as f:
        assert f.read().strip() == "kthreadd"
    rc, out, err = helpers.run_profiler(["-p", "2"], timeout=60)
    helpers.check_one_error_line(rc, out, err, want_rc=1)


def test_no_such_pid_among_good_ones(bpf_ok, probe_guard, sleeper):
    """One bad -p fails the whole run and detaches what was already attached."""
    rc, out, err = helpers.run_profiler(["-p", str(sleeper), "-p", str(helpers.free_pid())], timeout=60)
    helpers.check_one_error_line(rc, out, err, want_rc=1)



@pytest.mark.parametrize(
    "path",
    ["/proc/nonexistent/x", "/sys/kernel/asizeof-test.json", "DIR"],
    ids=["missing-dir", "read-only-dir", "is-a-directory"],
)
def test_unwritable_output(bpf_ok, probe_guard, sleeper, path):
    if path == "DIR":
        path = tempfile.gettempdir()
    rc, out, err = helpers.run_profiler(["-o", path, "-p", str(sleeper)], timeout=60)
    helpers.check_one_error_line(rc, out, err, want_rc=1)
    assert not os.path.exists("/sys/kernel/asizeof-test.json")


def test_unwritable_output_launch_mode(bpf_ok, probe_guard, tmp_path):
    marker = tmp_path / "ran"
    rc, out, err = helpers.run_profiler(
        ["-o", "/proc/nonexistent/x", "--", "sh", "-c", "touch %s" % marker], timeout=60
    )
    helpers.check_one_error_line(rc, out, err, want_rc=1)
    assert not marker.exists(), "the command ran although the profiler could not start"


def test_not_root(profiler_bin, probe_guard, sleeper):
    if os.geteuid() != 0:
        helpers.skip_or_fail("needs root to drop to another user")
    rc, out, err = helpers.run_profiler(["-p", str(sleeper)], timeout=60, prefix=NOBODY)
    helpers.check_one_error_line(rc, out, err, want_rc=1)


def test_not_root_launch_mode(profiler_bin, probe_guard, tmp_path):
    if os.geteuid() != 0:
        helpers.skip_or_fail("needs root to drop to another user")
    marker = tmp_path / "ran"
    os.chmod(tmp_path, 0o777)
    rc, out, err = helpers.run_profiler(["--", "touch", str(marker)], timeout=60, prefix=NOBODY)
    helpers.check_one_error_line(rc, out, err, want_rc=1)
    assert not marker.exists()
