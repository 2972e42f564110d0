# SPDX-License-Identifier: MIT
"""Signals that end a run, whatever the profiler is doing when they come: a second one during
the final report and detach, and one while the report's reader has stopped reading."""

import array
import fcntl
import os
import signal
import subprocess
import termios
import time

import pytest

import helpers
from helpers import Profiler, Workload

F_SETPIPE_SZ = 1031


def _wait_pipe_full(r, timeout=60):
    """Until the pipe read by r stops filling (its writer waits), with reports coming every
    10-100 ms."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        buf = array.array("i", [0])
        fcntl.ioctl(r, termios.FIONREAD, buf)
        if buf[0] != last:
            last, since = buf[0], time.monotonic()
        elif last > 0 and time.monotonic() - since > 1.0:
            return
        time.sleep(0.05)
    raise AssertionError("the pipe never filled")


@pytest.mark.parametrize("cmd", [
    ["-f", "json", "-n", "0", "-i", "60"],
    ["top", "-b", "-i", "60"],
    ["serve", "--listen", "127.0.0.1:0", "-i", "60"],
])
def test_signals_during_the_final_report_keep_the_exit_status(env, cmd):
    """SIGTERM, then more SIGTERMs every few ms while the final report is written and the
    probes are detached: the run still ends with status 0 (stopped by a signal), not by the
    signal (143)."""
    wl = Workload(env["reaper"], [env["workloads"]["alloc_sites"], "attach"])
    for attach in ("multi", "perf"):
        prof = Profiler(env["reaper"], cmd + ["--attach", attach, "-p", str(wl.pid)])
        prof.wait_attached()
        deadline = time.monotonic() + 30
        while prof.p.poll() is None and time.monotonic() < deadline:
            prof.p.send_signal(signal.SIGTERM)
            time.sleep(0.003)
        assert prof.p.wait(timeout=30) == 0, (attach, prof.err.lines)
        if cmd[0] == "-f":
            rep = helpers.final_report(helpers.parse_reports("\n".join(prof.out.lines)))
            assert rep["final"] is True
    wl.send("exit")
    assert wl.wait() == 0


@pytest.mark.parametrize("cmd,what,sig", [
    (["-f", "json", "-n", "0", "-i", "0.01"], "the report", signal.SIGTERM),
    (["top", "-b", "-i", "0.1"], "the screen", signal.SIGTERM),
    (["top", "-b", "-i", "0.1"], "the screen", signal.SIGQUIT),
], ids=["report", "top", "top-sigquit"])
def test_a_reader_that_stopped_reading_does_not_hold_the_run(env, cmd, what, sig):
    """Reports into a pipe nobody reads: once it is full, SIGTERM (and top's Ctrl-\\, SIGQUIT)
    still ends the run at once (one line on stderr, status 1: the report was not written) and
    detaches, instead of sleeping in the write with the signal blocked."""
    wl = Workload(env["reaper"], [env["workloads"]["alloc_sites"], "attach"])
    r, w = os.pipe()
    prof = env["reaper"].add(subprocess.Popen(
        [str(helpers.BIN), *cmd, "-p", str(wl.pid)],
        stdin=subprocess.DEVNULL, stdout=w, stderr=subprocess.PIPE, start_new_session=True))
    os.close(w)
    try:
        _wait_pipe_full(r)
        t0 = time.monotonic()
        prof.send_signal(sig)
        rc = prof.wait(timeout=20)
        took = time.monotonic() - t0
        err = prof.stderr.read().decode(errors="replace")
    finally:
        os.close(r)
    assert rc == 1, err
    assert "cannot write %s: its reader stopped reading" % what in err, err
    assert took < 10, took
    wl.send("exit")
    assert wl.wait() == 0


def test_a_stderr_reader_that_stopped_reading_does_not_hold_the_run(env, tmp_path):
    """Diagnostics (-v: ~50 KB/s at -i 0.01) into a pipe nobody reads, a stalled log reader:
    once it is full, SIGTERM still ends the run and the final report is written (the write to
    stderr slept with the signal blocked: the run hung, probes attached, until SIGKILL)."""
    wl = Workload(env["reaper"], [env["workloads"]["alloc_sites"], "attach"])
    out = tmp_path / "report.json"
    r, w = os.pipe()
    fcntl.fcntl(r, F_SETPIPE_SZ, 4096)
    prof = env["reaper"].add(subprocess.Popen(
        [str(helpers.BIN), "-v", "-f", "json", "-n", "0", "-i", "0.01", "-o", str(out),
         "-p", str(wl.pid)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=w, start_new_session=True))
    os.close(w)
    try:
        _wait_pipe_full(r)
        t0 = time.monotonic()
        prof.send_signal(signal.SIGTERM)
        try:
            rc = prof.wait(timeout=helpers.EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.monotonic() - t0
    finally:
        os.close(r)
    assert rc == 0, (rc, took)
    rep = helpers.final_report(helpers.parse_reports(out.read_text()))
    assert rep["final"] is True
    wl.send("exit")
    assert wl.wait() == 0


def test_a_slow_reader_and_signals_that_do_not_end_the_run(env):
    """SIGCHLD (the command exits) and SIGWINCH come while the reader is slow: the writes wait
    for it (they gave up on any signal: the final report was cut and the status was 1)."""
    r, w = os.pipe()
    fcntl.fcntl(r, F_SETPIPE_SZ, 4096)
    prof = env["reaper"].add(subprocess.Popen(
        [str(helpers.BIN), "-i", "0.1", "-n", "20", "--", "sh", "-c", "sleep 1; exit 3"],
        stdin=subprocess.DEVNULL, stdout=w, stderr=subprocess.PIPE, start_new_session=True))
    os.close(w)
    try:
        _wait_pipe_full(r)
        time.sleep(1.5)  # the command has exited: SIGCHLD is pending while the write waits
        prof.send_signal(signal.SIGWINCH)
        time.sleep(0.3)
        chunks = []
        while True:
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
        rc = prof.wait(timeout=30)
        err = prof.stderr.read().decode(errors="replace")
    finally:
        os.close(r)
    text = b"".join(chunks).decode(errors="replace")
    assert rc == 3, err
    assert "asizeof-bpf final report" in text, text[-500:]
    assert "cannot write" not in err, err
