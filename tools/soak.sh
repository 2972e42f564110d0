#!/bin/bash
# Soak: system-wide profiling at -i 1 while hundreds of short-lived processes come and go.
# Prints the profiler's RSS, the processes and stacks per report, and the drop counters over
# time: memory must stay flat and the counters truthful. Usage: tools/soak.sh [SECONDS] [RATE/s]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-600}
RATE=${2:-20}
mkdir -p build
cc -O2 -o build/soak_child tools/soak_child.c
out=$(mktemp -d)
./asizeof-bpf -f json -n 5 -i 1 -d "$DUR" -o "$out/reports.jsonl" 2>"$out/err" &
prof=$!
sleep 2
spawned=0
end=$((SECONDS + DUR - 4))
next_sample=$SECONDS
printf '%6s %10s %9s %7s %7s %s\n' t_s rss_kib spawned procs stacks drops
while [ $SECONDS -lt $end ]; do
	for ((i = 0; i < RATE; i++)); do build/soak_child $((i % 64)) & done
	wait $(jobs -p | grep -v "^$prof$") 2>/dev/null || true
	spawned=$((spawned + RATE))
	if [ $SECONDS -ge $next_sample ]; then
		rss=$(awk '/VmRSS/{print $2}' /proc/$prof/status)
		last=$(tail -n 1 "$out/reports.jsonl" 2>/dev/null || echo '{}')
		procs=$(echo "$last" | jq '.processes | length' 2>/dev/null || echo -)
		stacks=$(echo "$last" | jq '.stacks | length' 2>/dev/null || echo -)
		drops=$(echo "$last" | jq -c '.dropped | with_entries(select(.value > 0))' 2>/dev/null || echo -)
		printf '%6d %10s %9d %7s %7s %s\n' "$SECONDS" "$rss" "$spawned" "$procs" "$stacks" "$drops"
		next_sample=$((SECONDS + 30))
	fi
	sleep 1
done
kill -INT $prof 2>/dev/null || true
wait $prof || true
echo "peak RSS: $(grep -h VmHWM /proc/$prof/status 2>/dev/null || echo 'n/a (exited)')"
echo "reports: $(wc -l < "$out/reports.jsonl"), stderr lines: $(wc -l < "$out/err")"
rm -rf "$out"
