# SPDX-License-Identifier: MIT
"""The documents against the program: --help, the man page and the README name the same
commands and options."""

import re

import pytest

import helpers


def test_help_names_every_command(profiler_bin):
    """The main --help is where a user finds top and serve: each is named there, and each
    named command answers its own --help."""
    rc, out, err = helpers.run_profiler(["--help"], timeout=30)
    assert rc == 0 and err == ""
    assert out.startswith("Usage: asizeof-bpf ")
    for cmd in ("report", "top", "serve"):
        assert "asizeof-bpf %s " % cmd in out or "asizeof-bpf [%s]" % cmd in out, cmd
        rc, sub, err = helpers.run_profiler([cmd, "--help"], timeout=30)
        assert rc == 0 and err == "" and sub.startswith("Usage: asizeof-bpf"), cmd


@pytest.mark.parametrize("cmd", ["report", "top", "serve"])
def test_every_option_is_documented(profiler_bin, cmd):
    """Each long option a command's --help offers is described in the man page and the
    README (the documents drifted once: options added by later work were in neither)."""
    rc, out, err = helpers.run_profiler([cmd, "--help"], timeout=30)
    assert rc == 0
    opts = sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", out)))
    assert len(opts) >= 5, opts
    man = (helpers.REPO / "tools" / "asizeof-bpf.8").read_text().replace("\\-", "-")
    readme = (helpers.REPO / "README.md").read_text()
    missing = [(o, doc) for o in opts for doc, text in (("man page", man), ("README", readme))
               if not re.search(re.escape(o) + r"(?![a-z-])", text)]
    assert not missing, missing
