#!/usr/bin/env bash
# The CPU measurement committed under results/efficiency/: the scaled-down shape (cpu-small), fp32,
# wall clock, all CPU threads torch uses by default. A timing taken on a busy machine is not honest, so
# this refuses to start while the 1-minute load average is above MAX_LOAD (default 1.5); the load
# before and after is recorded in the JSON.
# Usage: cpu.sh [OUTPUT_JSON] [--max-load L] [extra efficiency.latency options]
#        (default results/efficiency/cpu-small.json; about 7 minutes with one thread on an idle core)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python=.venv/bin/python; [ -x "$python" ] || python=python
output=results/efficiency/cpu-small.json
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then output=$1; shift; fi
max_load=1.5
if [ "${1:-}" = "--max-load" ]; then
  if [ $# -lt 2 ] || ! [[ "$2" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
    echo "cpu.sh: --max-load needs a number >= 0 (a 1-minute load average), got '${2:-}'" >&2
    exit 2
  fi
  max_load=$2; shift 2
fi
load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" -v m="$max_load" 'BEGIN { exit !(l > m) }'; then
  echo "cpu.sh: 1-minute load average $load > $max_load: the machine is busy and timings would not be honest." >&2
  echo "        Wait until it is idle (see uptime), or pass --max-load to override knowingly." >&2
  exit 1
fi
exec nice "$python" -m efficiency.latency --shape cpu-small --device cpu --dtype float32 \
  --tokens 128 64 32 --batch 1 8 32 --repeats 3 --warmup 1 --decode-tokens 8 --output "$output" "$@"
