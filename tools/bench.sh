#!/bin/bash
# make bench: overhead of asizeof-bpf against an untraced run, the empty-probe floors and a
# bpftrace peer, interleaved (A B C ... A B C ...), medians and min-max; then the profiler's own
# CPU, memory, attach, detach and symbolization cost. A benchmark: it prints figures, asserts none.
# The work is done by tools/bench_run.py (its docstring lists the knobs: ROUNDS=9, PAIRS, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
	echo "bench: must run as root (BPF, uprobes)" >&2
	exit 1
fi
exec /usr/bin/python3 tools/bench_run.py "$@"
