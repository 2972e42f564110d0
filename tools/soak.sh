#!/bin/bash
# Soak: system-wide profiling while hundreds of short-lived processes come and go, a third of
# them from a fresh copy of their program (deleted after its run, like a build running its
# tests). Prints the profiler's RSS and open fds over time, and in report mode the processes,
# stacks and drop counters per report: memory and fds must stay flat, the counters truthful.
# Usage: tools/soak.sh [SECONDS] [RATE/s] [report|serve]   (needs jq; serve mode also curl)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-600}
RATE=${2:-20}
MODE=${3:-report}
need() { command -v "$1" >/dev/null || { echo "soak.sh: needs $1 (apt-get install $1)" >&2; exit 2; }; }
need jq
[ "$MODE" = serve ] && need curl
mkdir -p build
cc -O2 -o build/soak_child tools/soak_child.c
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
case $MODE in
report) ./asizeof-bpf -f json -n 5 -i 1 -d "$DUR" -o "$out/reports.jsonl" 2>"$out/err" & ;;
serve) ./asizeof-bpf serve --listen 127.0.0.1:0 -i 1 2>"$out/err" & ;;
*) echo "soak.sh: mode is report or serve" >&2; exit 2 ;;
esac
prof=$!
sleep 2
port=$(grep -o '127\.0\.0\.1:[0-9]*' "$out/err" | head -n 1 | cut -d: -f2 || true)
spawned=0
end=$((SECONDS + DUR - 4))
next_sample=$SECONDS
printf '%6s %10s %5s %9s %7s %7s %s\n' t_s rss_kib fds spawned procs stacks drops
while [ $SECONDS -lt $end ]; do
	for ((i = 0; i < RATE; i++)); do
		if ((i % 3 == 0)); then
			mkdir -p "$out/bin$i"
			cp build/soak_child "$out/bin$i/soak_child"
			(
				"$out/bin$i/soak_child" $((i % 64))
				rm -f "$out/bin$i/soak_child"
			) &
		else
			build/soak_child $((i % 64)) &
		fi
	done
	wait $(jobs -p | grep -v "^$prof$") 2>/dev/null || true
	spawned=$((spawned + RATE))
	if [ $MODE = serve ]; then
		curl -sf "127.0.0.1:$port/metrics" >/dev/null
		curl -sf "127.0.0.1:$port/debug/pprof/heap?seconds=60" >/dev/null
	fi
	if [ $SECONDS -ge $next_sample ]; then
		rss=$(awk '/VmRSS/{print $2}' /proc/$prof/status)
		fds=$(ls /proc/$prof/fd | wc -l)
		procs=- stacks=- drops=-
		if [ $MODE = report ]; then
			last=$(tail -n 1 "$out/reports.jsonl" 2>/dev/null || echo '{}')
			procs=$(echo "$last" | jq '.processes | length' 2>/dev/null || echo -)
			stacks=$(echo "$last" | jq '.stacks | length' 2>/dev/null || echo -)
			drops=$(echo "$last" | jq -c '.dropped | with_entries(select(.value > 0))' 2>/dev/null || echo -)
		fi
		printf '%6d %10s %5s %9d %7s %7s %s\n' "$SECONDS" "$rss" "$fds" "$spawned" "$procs" "$stacks" "$drops"
		next_sample=$((SECONDS + 30))
	fi
	sleep 1
done
echo "peak RSS: $(grep -h VmHWM /proc/$prof/status 2>/dev/null || echo 'n/a (exited)')"
kill -INT $prof 2>/dev/null || true
wait $prof || true
[ $MODE = report ] && echo "reports: $(wc -l < "$out/reports.jsonl"), stderr lines: $(wc -l < "$out/err")"
exit 0
