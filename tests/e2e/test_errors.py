# SPDX-License-Identifier: MIT
"""Bad inputs: each gives a non-zero exit status below 128 (2 for usage errors, 1 for runtime
errors), exactly one line on stderr starting with "asizeof-bpf: ", and leaves no probe."""

import os
import signal
import subprocess
import tempfile
import time

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
    "duration-beyond-the-clock": (["-d", "1e20", "--", "true"], "1e20"),
    "top-duration-beyond-the-clock": (["top", "-b", "-d", "99999999999999999999", "--", "true"], "-d"),
    "sort-unknown": (["-s", "bogus", "--", "true"], "bogus"),
    "format-unknown": (["-f", "xml", "--", "true"], "xml"),
    "unknown-long-option": (["--bogus", "--", "true"], "--bogus"),
    "unknown-short-option": (["-x", "--", "true"], "-x"),
    # in a group, the option itself is named (not the element before, or the group)
    "unknown-short-option-in-group": (["-p", "2147483647", "-xv"], "unknown option '-x'"),
    "unknown-short-option-first-of-all": (["-xv", "--", "true"], "unknown option '-x'"),
    "unknown-short-option-last-in-group": (["-vx", "--", "true"], "unknown option '-x'"),
    "missing-value-in-group": (["-vp"], "option '-p' needs an argument"),
    "long-option-given-a-value": (["--help=3"], "option '--help' takes no argument"),
    "top-unknown-short-option-in-group": (["top", "-i", "1", "-xb"], "unknown option '-x'"),
    "top-long-option-given-a-value": (["top", "--bytes=1"], "option '--bytes' takes no argument"),
    "serve-unknown-short-option-in-group": (["serve", "-i", "1", "-xv"], "unknown option '-x'"),
    "serve-long-option-given-a-value": (["serve", "--verbose=2"], "option '--verbose' takes no argument"),
    "comm-with-pid": (["--comm", "x", "-p", "1"], "--comm"),
    "comm-too-long": (["--comm", "a" * 16], "--comm"),
    "min-size-not-a-number": (["--min-size", "big", "--", "true"], "big"),
    # --weight weighs collapsed stacks only: elsewhere it would change nothing, silently
    "weight-with-json": (["-f", "json", "--weight", "allocs", "--", "true"], "--weight"),
    "weight-with-text": (["--weight", "alloc_bytes", "-p", "2147483647"], "--weight"),
    "missing-command-after-dashdash": (["--"], None),
    "missing-command-after-options": (["-f", "json", "-i", "1", "--"], None),
    # "--" as an option's value is that value, not the end of the options
    "dashdash-as-output-then-argument": (["-o", "--", "true"], "unexpected argument 'true'"),
    "dashdash-as-comm-with-pid": (["-p", "2147483647", "--comm", "--"], "--comm"),
    "top-dashdash-as-comm-then-argument": (["top", "--comm", "--", "true"], "unexpected argument 'true'"),
    "top-dashdash-as-comm-with-pid": (["top", "-p", "2147483647", "--comm", "--"], "--comm"),
    "serve-dashdash-as-listen-then-argument": (["serve", "--listen", "--", "true"], "unexpected argument 'true'"),
    "serve-dashdash-as-comm-with-pid": (["serve", "-p", "2147483647", "--comm", "--"], "--comm"),
}


@pytest.mark.parametrize("args,mentions", list(USAGE_ERRORS.values()), ids=list(USAGE_ERRORS))
def test_usage_error(profiler_bin, probe_guard, args, mentions):
    rc, out, err = helpers.run_profiler(args, timeout=60)
    helpers.check_one_error_line(rc, out, err, want_rc=2, mentions=mentions)


def test_no_such_pid(bpf_ok, probe_guard):
    pid = helpers.free_pid()
    rc, out, err = helpers.run_profiler(["-p", str(pid)], timeout=60)
    helpers.check_one_error_line(rc, out, err, want_rc=1)


def test_dashdash_as_output_file(bpf_ok, probe_guard, tmp_path):
    """-o -- writes to a file named "--": the run goes on to its target (here: none such)."""
    rc, out, err = helpers.run_profiler(["-p", str(helpers.free_pid()), "-o", "--"], timeout=60, cwd=tmp_path)
    helpers.check_one_error_line(rc, out, err, want_rc=1, mentions="no such process")
    rc, out, err = helpers.run_profiler(["-d", "5", "-o", "--", "--", "true"], timeout=60, cwd=tmp_path)
    assert rc == 0 and out == "", err
    assert "final report" in (tmp_path / "--").read_text()


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


@pytest.mark.parametrize("target", ["pid", "command"])
def test_failed_run_keeps_the_output_file(bpf_ok, probe_guard, tmp_path, target):
    """A run that fails before tracing leaves an existing -o FILE as it was (it was emptied)."""
    rep = tmp_path / "rep.txt"
    rep.write_text("precious\n")
    args = ["-p", str(helpers.free_pid())] if target == "pid" else ["--", str(tmp_path / "nonexistent")]
    rc, out, err = helpers.run_profiler(["-o", str(rep)] + args, timeout=60)
    helpers.check_one_error_line(rc, out, err, want_rc=1)
    assert rep.read_text() == "precious\n"
    # a run that does start replaces what the file held
    rep.write_text("x" * 100000)
    rc, out, err = helpers.run_profiler(["-d", "5", "-o", str(rep), "--", "true"], timeout=60)
    assert rc == 0, err
    text = rep.read_text()
    assert text.startswith("asizeof-bpf final report") and "x" * 10 not in text, text[:200]


@pytest.mark.parametrize("args,mentions", [
    (["-o", "", "-p", "2147483647"], "asizeof-bpf: '': No such file or directory"),
    (["--", ""], "asizeof-bpf: '': command not found"),
], ids=["output", "command"])
def test_empty_name_is_quoted(bpf_ok, probe_guard, args, mentions):
    """An empty file or command name shows as '' (the error began "asizeof-bpf: : ...")."""
    rc, out, err = helpers.run_profiler(args, timeout=60)
    helpers.check_one_error_line(rc, out, err, want_rc=1, mentions=mentions)


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


def test_root_without_its_capabilities(profiler_bin, probe_guard, sleeper):
    """uid 0 in a process whose capabilities were dropped (a container, setpriv): one line,
    not libbpf's page of failures."""
    for cmd in ([], ["top", "-b"], ["serve", "--listen", "127.0.0.1:0"]):
        rc, out, err = helpers.run_profiler(
            cmd + ["-p", str(sleeper)], timeout=60, prefix=("setpriv", "--inh-caps=-all", "--bounding-set=-all")
        )
        helpers.check_one_error_line(rc, out, err, want_rc=1, mentions="CAP_")


def test_zombie_pid(bpf_ok, probe_guard):
    z = subprocess.Popen(["true"])  # never waited for until the end: a zombie
    try:
        deadline = time.monotonic() + 10
        while open("/proc/%d/stat" % z.pid).read().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        rc, out, err = helpers.run_profiler(["-p", str(z.pid)], timeout=60)
        helpers.check_one_error_line(rc, out, err, want_rc=1, mentions="zombie")
    finally:
        z.wait()


def test_thread_id_as_pid(bpf_ok, probe_guard, reaper):
    p = reaper.add(
        subprocess.Popen(
            ["/usr/bin/python3", "-c", "import threading, time\n"
             "t = threading.Thread(target=time.sleep, args=(60,)); t.start()\n"
             "print(t.native_id, flush=True); t.join()"],
            stdout=subprocess.PIPE, start_new_session=True,
        )
    )
    tid = int(p.stdout.readline())
    assert tid != p.pid
    rc, out, err = helpers.run_profiler(["-p", str(tid)], timeout=60)
    helpers.check_one_error_line(rc, out, err, want_rc=1, mentions="thread of process %d" % p.pid)


def test_cgroup_that_is_not_cgroup_v2(bpf_ok, probe_guard):
    rc, out, err = helpers.run_profiler(["-d", "1", "--cgroup", "/etc"], timeout=60)
    helpers.check_one_error_line(rc, out, err, want_rc=1, mentions="not a cgroup v2 directory")


@pytest.mark.parametrize("what", ["directory", "no-shebang", "truncated-elf", "object-file"])
def test_command_that_is_not_a_program(bpf_ok, probe_guard, tmp_path, what):
    """Found before attaching. A truncated ELF file and an object file were said to be
    "statically linked without malloc symbols"."""
    cmd = str(tmp_path / "prog")
    if what == "directory":
        cmd, mentions = str(tmp_path), "is a directory"
    elif what == "no-shebang":
        mentions = "not a program"
        (tmp_path / "prog").write_text("echo hi\n")
    elif what == "truncated-elf":
        mentions = "not an executable"
        with open("/bin/true", "rb") as f:
            (tmp_path / "prog").write_bytes(f.read(200))
    else:
        mentions = "not an executable"
        (tmp_path / "f.c").write_text("int f(void) { return 1; }\n")
        subprocess.run(["gcc", "-c", "-o", cmd, str(tmp_path / "f.c")], check=True, timeout=60)
    if what != "directory":
        os.chmod(cmd, 0o755)
    rc, out, err = helpers.run_profiler(["--", cmd], timeout=60)
    helpers.check_one_error_line(rc, out, err, want_rc=1, mentions=mentions)


@pytest.mark.parametrize("what", ["missing", "not-executable", "missing-at-depth-2"])
def test_script_with_a_bad_interpreter(bpf_ok, probe_guard, tmp_path, what):
    """Found before attaching, named as a shell names it. The command was found out only when
    it was released, attached: a second line, and the command's 127 as the exit status."""
    interp = "/nonexistent/interp" if what != "not-executable" else "/etc/passwd"
    script = tmp_path / "badint.sh"
    script.write_text("#!%s\n" % interp)
    script.chmod(0o755)
    cmd = str(script)
    if what == "missing-at-depth-2":
        outer = tmp_path / "outer.sh"
        outer.write_text("#! %s arg\n" % script)
        outer.chmod(0o755)
        cmd = str(outer)
    rc, out, err = helpers.run_profiler(["--", cmd], timeout=60)
    helpers.check_one_error_line(rc, out, err, want_rc=1, mentions="badint.sh: bad interpreter %s: " % interp
                                 if what != "missing-at-depth-2" else "bad interpreter %s: " % interp)
    assert out == ""


def test_output_fifo_without_reader(bpf_ok, probe_guard, tmp_path):
    """Would block in open() forever (with the signals that end a run blocked)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    rc, out, err = helpers.run_profiler(["-d", "1", "-o", str(fifo), "--", "true"], timeout=30)
    helpers.check_one_error_line(rc, out, err, want_rc=1, mentions="no reader")


def test_write_error_says_what_failed(bpf_ok, probe_guard):
    """After the run: the attach line, then the write's own error (not "Input/output error")."""
    for fmt in ("text", "json", "collapsed", "pprof"):
        rc, out, err = helpers.run_profiler(["-f", fmt, "-o", "/dev/full", "--", "ls", "/"], timeout=60)
        lines = err.splitlines()
        assert rc == 1 and len(lines) == 2, (fmt, rc, err)
        assert lines[1] == "asizeof-bpf: cannot write the report: No space left on device", (fmt, err)


def test_sighup_ends_a_run_with_its_final_report(env, sleeper, tmp_path):
    """A closed terminal: the run ends as with SIGTERM, its final report written."""
    out = tmp_path / "r.json"
    prof = helpers.Profiler(env["reaper"], ["-f", "json", "-i", "60", "-o", str(out), "-p", str(sleeper)])
    prof.wait_attached()
    assert prof.stop(signal.SIGHUP) == 0, prof.err.lines
    rep = helpers.final_report(helpers.parse_reports(out.read_text()))
    assert [p["pid"] for p in rep["processes"]] == [sleeper]


def test_root_with_the_older_wider_capabilities(bpf_ok, probe_guard, sleeper):
    """CAP_SYS_ADMIN stands for CAP_BPF and CAP_PERFMON, CAP_DAC_OVERRIDE for
    CAP_DAC_READ_SEARCH, as the kernel has it (containers of older runtimes grant these)."""
    caps = "--bounding-set=-all,+sys_admin,+sys_ptrace,+dac_override,+sys_resource"
    rc, out, err = helpers.run_profiler(["-d", "1", "-p", str(sleeper)], timeout=60, prefix=("setpriv", caps))
    assert rc == 0, err
    assert "final report" in out and str(sleeper) in out, out


@pytest.mark.parametrize("cmd", ["report", "top", "serve"])
@pytest.mark.parametrize("flag", ["--help", "--version"])
@pytest.mark.parametrize("redirect,error", [(">/dev/full", "No space left on device"),
                                            (">&-", "Bad file descriptor")], ids=["full", "closed"])
def test_help_that_cannot_be_written(profiler_bin, cmd, flag, redirect, error):
    """--help and --version are output too: a standard output that does not take them is an
    error (exit 1), not a silent success."""
    rc, out, err = helpers.run_profiler([cmd, flag], timeout=30, prefix=("sh", "-c", 'exec "$@" ' + redirect, "sh"))
    helpers.check_one_error_line(rc, out, err, want_rc=1, mentions="standard output: " + error)


CLOSED_STDOUT = ("sh", "-c", 'exec "$@" >&-', "sh")


@pytest.mark.parametrize("cmd", [[], ["top", "-b"]], ids=["report", "top"])
def test_closed_stdout(bpf_ok, probe_guard, tmp_path, cmd):
    """Output for a closed standard output is an error before anything runs (the report went
    into the profiler's signalfd, which had taken descriptor 1)."""
    marker = tmp_path / "ran"
    rc, out, err = helpers.run_profiler(cmd + ["-d", "3", "--", "touch", str(marker)], timeout=60,
                                        prefix=CLOSED_STDOUT)
    helpers.check_one_error_line(rc, out, err, want_rc=1, mentions="standard output is closed")
    assert not marker.exists()


def test_closed_stdout_with_output_file(bpf_ok, probe_guard, tmp_path):
    """With -o FILE a closed standard output is no error; descriptors 0-2 are /dev/null rather
    than closed, for the profiler and the command it launches (whose echo then succeeds)."""
    rep = tmp_path / "rep.txt"
    rc, out, err = helpers.run_profiler(["-d", "10", "-o", str(rep), "--", "sh", "-c", "echo hi"],
                                        timeout=60, prefix=("sh", "-c", 'exec "$@" <&- >&-', "sh"))
    assert rc == 0, err
    assert "final report" in rep.read_text()
