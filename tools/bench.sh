#!/bin/bash
# make bench: interleaved runs (A B C A B C ...), medians and min-max per configuration.
# Each workload times its own hot loop, so attach/detach is not counted.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-7}
PAIRS=${PAIRS:-200000}
mkdir -p build
cc -O2 -o build/bench_alloc tools/bench_alloc.c

if bpftool link list 2>/dev/null | grep -q uprobe || bpftool perf list 2>/dev/null | grep -q uprobe; then
	echo "bench: another profiler has uprobes attached (bpftool link/perf list): results would be wrong" >&2
	exit 1
fi

run_untraced() { build/bench_alloc "$PAIRS" | awk '/ns_per_pair/{print $2}'; }
run_traced() { # $1 = attach mode, $2 = extra option
	./asizeof-bpf --attach "$1" ${2:-} -f json -o /dev/null -- build/bench_alloc "$PAIRS" 2>/dev/null |
		awk '/ns_per_pair/{print $2}'
}

declare -A res
configs=(untraced floor multi perf)
for ((r = 0; r < ROUNDS; r++)); do
	for c in "${configs[@]}"; do
		case $c in
		untraced) v=$(run_untraced) ;;
		floor) v=$(run_traced multi --empty-probes) ;;
		*) v=$(run_traced "$c") ;;
		esac
		res[$c]="${res[$c]:-} $v"
	done
done

stats() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f %.1f %.1f", m, a[1], a[NR]}'; }
echo "machine: $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "workload: bench_alloc, $PAIRS malloc+free pairs (16-4111 bytes, 1 in 16 kept), $ROUNDS interleaved rounds"
printf '%-28s %12s %18s %10s\n' configuration "ns/pair(med)" "min-max" "vs untraced"
base=$(echo "${res[untraced]}" | stats | cut -d' ' -f1)
for c in "${configs[@]}"; do
	read -r med lo hi <<<"$(echo "${res[$c]}" | stats)"
	case $c in
	untraced) name="untraced" ;;
	floor) name="empty probes (floor)" ;;
	multi) name="asizeof-bpf (uprobe_multi)" ;;
	perf) name="asizeof-bpf (perf links)" ;;
	esac
	printf '%-28s %12s %18s %9.1fx\n' "$name" "$med" "$lo-$hi" "$(echo "$med $base" | awk '{print $1/$2}')"
done
