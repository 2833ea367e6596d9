#!/usr/bin/env bash
# The main job end to end: start a Kontrol on embedded SQLite, start the math kite, which registers
# with it, then list it with `kitectl query` and call it with `kitectl tell`.
# Everything lives in a temporary KITE_HOME and data directory; both servers stop when the script ends.
#
#   bash examples/main_job.sh            (run from the repository root after `pip install -e .`)
#   KONTROL_PORT=4100 MATH_PORT=6100 bash examples/main_job.sh     (when 4000 or 6000 is taken)
set -euo pipefail
cd "$(dirname "$0")/.."

KONTROL_PORT=${KONTROL_PORT:-4000}
MATH_PORT=${MATH_PORT:-6000}
work=$(mktemp -d)
export KITE_HOME="$work/home"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# Wait up to 30 s for a condition while the server with this pid is alive; on failure show its log.
wait_for() {
    local what=$1 pid=$2 log=$3; shift 3
    for _ in $(seq 150); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "main_job: the process for $what exited; its log:" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "main_job: timed out waiting for $what; its log:" >&2
    cat "$log" >&2
    return 1
}

echo "== kitectl kontrol serve --port $KONTROL_PORT --db $work/kontrol.db"
kitectl kontrol serve --host 127.0.0.1 --port "$KONTROL_PORT" --db "$work/kontrol.db" >"$work/kontrol.log" 2>&1 &
pids+=($!)
wait_for "Kontrol to serve" "$!" "$work/kontrol.log" grep -q "kontrol serving on" "$work/kontrol.log"
grep -v "^[0-9-]* [0-9:,]* " "$work/kontrol.log" || true

echo "== python examples/math_kite.py (port $MATH_PORT)"
KITE_PORT=$MATH_PORT python3 examples/math_kite.py >"$work/math.log" 2>&1 &
pids+=($!)
wait_for "the math kite to register" "$!" "$work/math.log" grep -q "registered .* with Kontrol" "$work/math.log"

echo "== kitectl query --name math"
kitectl query --name math

echo "== kitectl tell --query name=math square 4"
kitectl tell --query name=math square 4

echo "== python examples/find_math.py (get_kites through Kontrol, then tell with the issued token)"
python3 examples/find_math.py
